"""
Typed results of Qikberry API calls (data only: parsing lives here, transport in the hook).

Example::

    sent = hook.send_sms("919876543210", "Build finished")
    sent[0].message_id   # "b34e35ad-...:1"
    sent[0].to_dict()    # JSON-safe dict, e.g. for XCom
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Generic, Protocol, TypeVar

from airflow_qikberry.exceptions import QikberryValidationError
from airflow_qikberry.phone import mask_number
from airflow_qikberry.protocol import canonical_number, is_delivered, is_final

__all__ = [
    "Balance",
    "BatchResult",
    "CostEstimate",
    "MessageStatus",
    "SentMessage",
    "StatusPage",
    "StatusRow",
    "estimate_cost",
]


def _decimal(value: Any) -> Decimal:
    # The API mixes 1, "1" and "2.0000" for money fields (reference section 10, item 10).
    # Kept only where equal keys are equal text (not 1 and 1.0, nor 0.0 and -0.0): str and int values.
    kept = type(value) is str or type(value) is int
    if kept and (known := _DECIMALS.get((type(value), value))) is not None:
        return known
    if value is None or value == "":
        made = Decimal(0)
    else:
        try:
            made = Decimal(str(value))
        except InvalidOperation:
            made = Decimal(0)
    if kept and len(_DECIMALS) < 1024:
        _DECIMALS[type(value), value] = made
    return made


# Each charge value the API writes as text or an int, read once: an answer repeats the same few values in
# every row, and a Decimal is immutable, so one instance serves them all.
_DECIMALS: dict[tuple[type, Any], Decimal] = {}


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: JSON's Infinity, decoded as float("inf")
        return 0


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text or None


def group_of(message_id: str) -> str | None:
    """Return the request/campaign uuid of a ``<uuid>:<n>`` message id."""
    head, sep, _ = message_id.rpartition(":")
    return head if sep else None


@dataclass(frozen=True)
class _Row:
    """The fields a send result and a status row share, and the group (request or campaign) of the message."""

    message_id: str
    mobile: str
    status: str
    units: int
    length: int
    charges: Decimal
    custom_id: str | None

    @property
    def group_id(self) -> str | None:
        return group_of(self.message_id)


RowT = TypeVar("RowT", bound=_Row)


def _row_fields(row: Mapping[str, Any], *custom_keys: str) -> dict[str, Any]:
    """
    Return the fields a send result and a status row read alike from an API row.

    The custom id is the first of ``custom_keys`` the row has (each endpoint spells it its own way first).
    Read once per row of every answer (5,000 a campaign chunk): values already of their field's type (an
    int count, a non-empty str id) are taken as they are, which is what the converters would return.
    """
    custom = None
    for key in custom_keys:
        if key in row:
            custom = row[key]
            break
    get = row.get
    units, length = get("units"), get("length")
    return {
        "message_id": str(get("id", "")),
        "mobile": canonical_number(get("mobile")),
        "status": str(get("status", "")),
        "units": units if type(units) is int else _int(units),
        "length": length if type(length) is int else _int(length),
        "charges": _decimal(get("charges")),
        "custom_id": custom if type(custom) is str and custom else _opt_str(custom),
    }


def _made(cls: type[RowT], fields: dict[str, Any]) -> RowT:
    """
    Return a row dataclass holding ``fields``: what ``cls(**fields)`` returns, made faster.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__`` (about 1 us a row, a
    third of reading one); these classes have no defaults, ``__post_init__`` or slots, so filling the
    instance's ``__dict__`` with every field is the same object. ``tests/test_row_reading.py`` compares
    both on every shape of row.
    """
    obj = object.__new__(cls)
    obj.__dict__.update(fields)
    return obj


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return {key: (str(val) if isinstance(val, Decimal) else val) for key, val in data.items()}


@dataclass(frozen=True)
class SentMessage(_Row):
    """
    One recipient row of an accepted send (``sms/send``, ``sms/send/json``).

    ``mobile`` is in one canonical form, digits with the country code, however the API wrote it.
    """

    submitted_at: str | None

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> SentMessage:
        """
        Read a row of a send's answer.

        ``sms/send`` and ``sms/send/json`` rows carry ``mobile``, ``charges``, ``customid`` and
        ``submitted_at``; ``sms/send/template`` rows ``to``, ``credits``, ``foreign_id`` and ``created_at``
        (no units or length).
        """
        fields = _row_fields(row, "customid", "custom", "foreign_id")
        if "mobile" not in row:
            fields["mobile"] = canonical_number(row.get("to"))
        if "charges" not in row:
            fields["charges"] = _decimal(row.get("credits"))
        fields["submitted_at"] = _opt_str(row.get("submitted_at", row.get("created_at")))
        return _made(cls, fields)

    @classmethod
    def from_status(cls, status: MessageStatus) -> SentMessage:
        """Rebuild a send result from a status lookup (used when reconciling an ambiguous send)."""
        return cls(
            message_id=status.message_id,
            mobile=status.mobile,
            status=status.status,
            units=status.units,
            length=status.length,
            charges=status.charges,
            custom_id=status.custom_id,
            submitted_at=status.submitted_at,
        )

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    def to_xcom(self) -> dict[str, Any]:
        """
        Return what an operator returns for this message: JSON-safe, the number masked (it is personal data).

        ``charges`` is a float so templates can sum it; ``id`` feeds a delivery sensor directly.
        """
        return {
            "id": self.message_id,
            "mobile": mask_number(self.mobile),
            "status": self.status,
            "units": self.units,
            "charges": float(self.charges),
            "custom_id": self.custom_id,
        }


@dataclass(frozen=True)
class BatchResult:
    """Result of ``sms/send/json``: the campaign ``group_id`` and one :class:`SentMessage` per node."""

    group_id: str | None
    messages: tuple[SentMessage, ...]

    @property
    def accepted(self) -> int:
        return len(self.messages)

    def to_dict(self) -> dict[str, Any]:
        return {"group_id": self.group_id, "messages": [m.to_dict() for m in self.messages]}


@dataclass(frozen=True)
class MessageStatus(_Row):
    """A delivery-status row from ``sms/status``."""

    service: str | None
    sender: str | None
    submitted_at: str | None
    delivered_at: str | None

    @property
    def is_final(self) -> bool:
        return is_final(self.status)

    @property
    def is_delivered(self) -> bool:
        return is_delivered(self.status)

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> MessageStatus:
        fields = _row_fields(row, "custom", "customid")
        fields["service"] = _opt_str(row.get("service"))
        fields["sender"] = _opt_str(row.get("sender"))
        fields["submitted_at"] = _opt_str(row.get("submitted_at"))
        fields["delivered_at"] = _opt_str(row.get("delivered_at"))
        return _made(cls, fields)

    def to_dict(self) -> dict[str, Any]:
        data = _jsonable(asdict(self))
        data["is_final"] = self.is_final
        data["is_delivered"] = self.is_delivered
        return data


class StatusRow(Protocol):
    """What delivery tracking reads from a status row (:class:`MessageStatus` is one)."""

    @property
    def message_id(self) -> str: ...

    @property
    def status(self) -> str: ...


Row = TypeVar("Row", bound=StatusRow, covariant=True)


@dataclass(frozen=True)
class StatusPage(Generic[Row]):
    """
    One page of ``sms/status`` rows.

    With the number of the page after it (None: it was the last) and, when the API says, how many rows the
    query has in all (``meta.total``).

    Example::

        page = hook.poll_page(group_id)
        while page.next_page is not None:
            page = hook.poll_page(group_id, page.next_page)
    """

    rows: Sequence[Row]
    next_page: int | None
    total: int | None = None


@dataclass(frozen=True)
class Balance:
    """Credits left on one service (``finance/balance``). ``charges`` is the price of one SMS unit."""

    service: str
    name: str
    credits: Decimal
    charges: Decimal
    postpaid: bool

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> Balance:
        return cls(
            service=str(row.get("service", "")),
            name=str(row.get("name", "")),
            credits=_decimal(row.get("credits")),
            charges=_decimal(row.get("charges")),
            postpaid=bool(_int(row.get("postpaid"))),
        )

    @classmethod
    def list_from(cls, rows: Iterable[Mapping[str, Any]], service: str | None = None) -> list[Balance]:
        """Return the balance rows of a response, only ``service``'s when given."""
        balances = [cls.from_api(row) for row in rows]
        return [b for b in balances if service is None or b.service == service]

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class CostEstimate:
    """
    What a send is expected to cost on one service, against what the account has.

    ``credits_needed`` is ``units`` times the service's per-unit ``charges`` (reference section 4.10); a
    postpaid service is always covered. Example::

        estimate = estimate_cost(120, hook.get_balance(), "T")
        if not estimate.covered:
            raise ValueError(estimate.shortfall_message())
    """

    service: str
    units: int
    charges_per_unit: Decimal
    credits_needed: Decimal
    credits_available: Decimal
    postpaid: bool

    @property
    def covered(self) -> bool:
        return self.postpaid or self.credits_available >= self.credits_needed

    def shortfall_message(self) -> str:
        return (
            f"service {self.service!r} has {self.credits_available} credits but this send needs an "
            f"estimated {self.credits_needed} ({self.units} SMS units x {self.charges_per_unit} credits per "
            "unit): top up the account or send fewer messages"
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("charges_per_unit", "credits_needed", "credits_available"):
            data[key] = float(data[key])
        return data


def estimate_cost(units: int, balances: Iterable[Balance], service: str) -> CostEstimate:
    """
    Price ``units`` SMS parts on ``service`` from the account's balance rows.

    Raises :class:`~airflow_qikberry.exceptions.QikberryValidationError` (field ``service``) when the account
    has no balance row for the service, naming the services it has.
    """
    rows = list(balances)
    for row in rows:
        if row.service == service:
            return CostEstimate(
                service=service,
                units=units,
                charges_per_unit=row.charges,
                credits_needed=row.charges * units,
                credits_available=row.credits,
                postpaid=row.postpaid,
            )

    known = ", ".join(sorted(repr(r.service) for r in rows)) or "none"
    raise QikberryValidationError(
        f"service {service!r} has no balance row on this account (services with a balance: {known}); "
        "pass one of those as service, or set service on the connection",
        field="service",
    )
