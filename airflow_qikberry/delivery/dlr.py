"""
One delivery report (DLR) as delivery events carry it, read from a pushed payload or a status row.

The API reports a message's final status two ways: it pushes a payload (reference 4.13) to a webhook, and it
serves the message's row from ``sms/status`` (4.7), the source of truth. Both become one
:class:`DeliveryReport` with one shape: the number masked (it is personal data; asset events are stored in
the metadata database and shown in the UI), times as ISO-8601 in UTC, credits as a decimal string.

Consumers deduplicate by :attr:`DeliveryReport.key` (``"<message id>|<status>"``): delivery is at least once.

Example::

    report = DeliveryReport.from_push(payload, StatusSets(), "Asia/Kolkata")
    report.key, report.outcome, report.to_dict()["mobile"]  # "b34e...:1|UNDELIV", "failed", "9198XXXXX123"
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal

from airflow_qikberry.exceptions import QikberryValidationError

if TYPE_CHECKING:
    from airflow_qikberry.delivery.inputs import Outcome, StatusSets
    from airflow_qikberry.models import MessageStatus

__all__ = ["ERROR_CODES", "DeliveryReport", "report_key"]

#: The SMPP error code of a status, where reference 6.1 gives it exactly one (UNDELIV, for one, has three:
#: 034, 099 and 461, so it has none here). The REST API carries the status string only.
ERROR_CODES: dict[str, str] = {
    "DELIVRD": "000",
    "MEMEXEC": "009",
    "MOB-OFF": "013",
    "HANDSET-BUSY": "016",
    "SERIES-BLK": "018",
    "EXPIRED": "021",
    "SERIES-BLOCK": "400",
    "NO-CREDITS": "401",
    "NO-ACCOUNT": "402",
    "INV-NUMBER": "404",
    "SPAM": "407",
    "DNDNUMB": "408",
    "BLACKLST": "450",
    "SNDR-BLOCK": "451",
    "TEMPLATE-NOT-FOUND": "452",
    "INV-TEMPLATE": "453",
    "INV-SENDER": "454",
    "NOT-OPTIN": "455",
    "OPTOUT-REJ": "456",
    "PROMO-TMOUT": "457",
    "REJECTED": "458",
    "NOTALLOWED": "459",
    "DUPLICATE": "460",
    "THROTTLED": "463",
    "DLT-REJECTED": "777",
    "REJ-MULTIPART": "778",
    "DLT-INV-TMID": "780",
    "DLT-INV-ENTITY": "781",
    "DLT-INV-TM-ID": "782",
    "DLT-TM-VAR-EXECEED": "783",
    "DLT-ENTITY-NOT-FOUND": "784",
    "DLT-TM-BLACKLST": "785",
    "DLT-ENTITY-BLACKLST": "786",
    "DLT-HEADER-INACTIVE": "787",
    "DLT-TM-INACTIVE": "788",
    "DLT-SENDER-NOT-REG-TM": "789",
    "INV-PROVISION": "790",
    "INV-SERVICE": "791",
    "INV-SCHEDULE": "792",
}

Source = Literal["push", "status"]


def report_key(message_id: str, status: str) -> str:
    """Return what consumers deduplicate reports by: one message reaches one final status once."""
    return f"{message_id}|{status}"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _credits(value: Any) -> str | None:
    # The API writes money as 1, "1" or "2.0000" (reference section 10, item 10): one decimal text.
    if value is None or value == "":
        return None
    try:
        return str(Decimal(str(value)).normalize().quantize(Decimal("0.0001")))
    except (InvalidOperation, ValueError):
        return None


def _units(value: Any) -> int:
    try:
        return max(0, int(str(value).strip()))
    except (TypeError, ValueError):
        return 0


def _from_unix(value: Any) -> str | None:
    try:
        seconds = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    if seconds <= 0:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat()


def _from_wall(value: Any, zone: str) -> str | None:
    """
    Read an API ``Y-m-d H:i:s`` wall time in ``zone`` as ISO-8601 UTC.

    None when blank or unreadable.
    """
    text = _text(value)
    if text is None:
        return None
    from zoneinfo import ZoneInfo

    try:
        wall = datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return wall.replace(tzinfo=ZoneInfo(zone)).astimezone(timezone.utc).isoformat()


def _masked(number: Any) -> str:
    from airflow_qikberry.phone import mask_number
    from airflow_qikberry.protocol import canonical_number

    digits = canonical_number(number)
    return mask_number(digits) if digits else ""


@dataclass(frozen=True)
class DeliveryReport:
    """
    A message's final status with what the API says about it; the number is masked.

    ``submitted_at`` is when the API received the request, ``operator_at`` when it handed the message to
    the operator (pushes only), ``delivered_at`` when the report came; all ISO-8601 UTC or None. ``source``
    says where it was read: ``push`` (a webhook delivery) or ``status`` (an ``sms/status`` lookup).
    ``campaign`` and ``sender`` come from the row, or from what the provider recorded when it sent.
    """

    message_id: str
    status: str
    outcome: Outcome
    mobile: str
    units: int = 0
    credits: str | None = None
    custom_id: str | None = None
    submitted_at: str | None = None
    operator_at: str | None = None
    delivered_at: str | None = None
    sender: str | None = None
    service: str | None = None
    campaign: str | None = None
    error_code: str | None = None
    source: Source = "status"

    @property
    def key(self) -> str:
        """``"<message id>|<status>"``: what to deduplicate by (delivery is at least once)."""
        return report_key(self.message_id, self.status)

    @property
    def group_id(self) -> str | None:
        from airflow_qikberry.delivery.inputs import split_id

        return split_id(self.message_id)[0]

    @classmethod
    def from_push(cls, payload: Any, statuses: StatusSets, api_timezone: str) -> DeliveryReport:
        """
        Read a pushed report (reference 4.13).

        A body that names no message id or status is a
        :class:`~airflow_qikberry.exceptions.QikberryValidationError` naming the field.
        """
        if not isinstance(payload, Mapping):
            raise QikberryValidationError(
                f"A delivery report must be a JSON object, got {type(payload).__name__}.", field="body"
            )
        for name in ("id", "status"):
            if not isinstance(payload.get(name), (str, int, type(None))) or isinstance(
                payload.get(name), bool
            ):
                raise QikberryValidationError(
                    f"The delivery report's {name!r} must be text, got {type(payload[name]).__name__}.",
                    field=name,
                )
        message_id, status = _text(payload.get("id")), _text(payload.get("status"))
        if message_id is None:
            raise QikberryValidationError("The delivery report has no message id ('id').", field="id")
        if status is None:
            raise QikberryValidationError("The delivery report has no 'status'.", field="status")
        custom = _text(payload.get("custom")) or _text(payload.get("cid"))
        code = _text(payload.get("error_code")) or _text(payload.get("code")) or ERROR_CODES.get(status)
        return cls(
            message_id=message_id,
            status=status,
            outcome=statuses.outcome(status),
            mobile=_masked(payload.get("mobile")),
            units=_units(payload.get("units")),
            credits=_credits(payload.get("credits")),
            custom_id=custom,
            submitted_at=_from_unix(payload.get("sent_at"))
            or _from_wall(payload.get("sent_time"), api_timezone),
            operator_at=_from_unix(payload.get("submit_at"))
            or _from_wall(payload.get("submit_time"), api_timezone),
            delivered_at=_from_unix(payload.get("deliv_at"))
            or _from_wall(payload.get("deliv_time"), api_timezone),
            error_code=code,
            source="push",
        )

    @classmethod
    def from_status(cls, row: MessageStatus, statuses: StatusSets, api_timezone: str) -> DeliveryReport:
        """Read a status row of ``sms/status`` (its number is masked here)."""
        return cls(
            message_id=row.message_id,
            status=row.status,
            outcome=statuses.outcome(row.status),
            mobile=_masked(row.mobile),
            units=row.units,
            credits=_credits(row.charges),
            custom_id=row.custom_id,
            submitted_at=_from_wall(row.submitted_at, api_timezone),
            delivered_at=_from_wall(row.delivered_at, api_timezone),
            sender=row.sender,
            service=row.service,
            error_code=ERROR_CODES.get(row.status),
            source="status",
        )

    def with_context(self, *, campaign: str | None, sender: str | None) -> DeliveryReport:
        """Return this report with what the provider recorded when it sent (the row's own sender wins)."""
        return replace(self, campaign=campaign or self.campaign, sender=self.sender or sender)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form an asset event carries: the fields plus ``id``, ``key`` and ``group_id``."""
        data = asdict(self)
        data["id"] = data.pop("message_id")
        data["group_id"] = self.group_id
        data["key"] = self.key
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeliveryReport:
        """Read back :meth:`to_dict` output (the push inbox stores reports in this form)."""
        fields: dict[str, Any] = {
            name: data[name]
            for name in cls.__dataclass_fields__
            if name != "message_id" and data.get(name) is not None
        }
        return cls(message_id=str(data["id"]), **fields)
