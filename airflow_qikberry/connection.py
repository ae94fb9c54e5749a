"""
The ``qikberry`` connection: its fields, how they are parsed and checked, and its legacy UI form.

The declarative form (``conn-fields``) lives in :mod:`airflow_qikberry.get_provider_info`, which Airflow
reads without importing the hook; this module turns a stored connection into :class:`ConnectionSettings`
and builds the WTForms widgets that Airflow < 3.2 asks the hook for, from the same ``CONN_FIELDS``.

Example::

    settings = ConnectionSettings.from_connection(BaseHook.get_connection("qikberry_default"))
    settings.base_url, settings.service
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_qikberry.exceptions import QikberryValidationError
from airflow_qikberry.get_provider_info import CONN_FIELDS, CONN_TYPE, UI_FIELD_BEHAVIOUR
from airflow_qikberry.phone import validate_region
from airflow_qikberry.protocol import DEFAULT_BASE_URL
from airflow_qikberry.transport.retry import DEFAULT_RETRY_DEADLINE
from airflow_qikberry.validation import validate_flag

__all__ = [
    "SETTLE_MARGIN",
    "ConnectionSettings",
    "connection_form_widgets",
    "fitted_retry_deadline",
    "settle_time",
    "ui_field_behaviour",
]

AuthPlacement = Literal["header", "query"]

#: Seconds a send needs, on top of a read timeout and the reconcile window, to settle an unknown outcome and
#: post again: the lookups' own round trips and the backoff before the resend.
SETTLE_MARGIN = 10.0


def settle_time(timeout: float, window: float) -> float:
    """
    Return the longest a send may need to settle one unknown outcome and be posted again.

    Its first post may use a whole read ``timeout`` before the outcome is known to be unknown, the lookups
    then take the reconcile ``window``, and the lookups' round trips and the backoff before the resend take up
    to :data:`SETTLE_MARGIN`. A retry deadline shorter than this ends such a send as unknown, every time.
    """
    return timeout + window + SETTLE_MARGIN


def fitted_retry_deadline(
    deadline: float | None,
    *,
    window: float,
    timeout: float,
    deadline_from: str = "the connection's retry_deadline extra",
    window_from: str = "reconcile_window",
    timeout_from: str = "timeout",
    least: float = DEFAULT_RETRY_DEADLINE,
) -> float:
    """
    Return the retry deadline to use with this reconcile ``window`` and read ``timeout``.

    Unset (``None``), it is derived: ``least`` (:data:`DEFAULT_RETRY_DEADLINE`), or :func:`settle_time` when
    the window and timeout need more. Set, it must leave room for :func:`settle_time`, or the combination is
    refused with an error that names the settings (``*_from`` says where each one came from) and the fix.

    Example::

        fitted_retry_deadline(None, window=150, timeout=30)  # 190.0: derived
        fitted_retry_deadline(120, window=150, timeout=30)  # QikberryValidationError
    """
    need = settle_time(timeout, window)
    if deadline is None:
        return max(least, need)
    if deadline < need:
        raise QikberryValidationError(
            f"{deadline_from} ({deadline:g} s) is too short for {window_from} ({window:g} s) and "
            f"{timeout_from} ({timeout:g} s): a send whose outcome is unknown (a timeout, a 5xx, a dropped "
            f"connection) needs up to timeout + reconcile window + {SETTLE_MARGIN:g} s = {need:g} s to be "
            "looked up and sent again, so with these settings every such send would end unknown and a "
            f"campaign retry could not resume. Set retry_deadline to at least {need:g}, or leave it unset "
            "(it is then derived from the other two), or lower reconcile_window or timeout.",
            field="retry_deadline",
        )
    return deadline


@dataclass(frozen=True)
class ConnectionSettings:
    """
    The `qikberry` connection, parsed and checked. ``token`` is excluded from ``repr``.

    ``reconcile_window`` is how long (seconds) an ambiguous send is looked for by its custom id before it
    is taken as not accepted; ``api_timezone`` is the zone of the API's ``submitted_at`` timestamps;
    ``retry_deadline`` bounds each call (``None``: derived, see :func:`fitted_retry_deadline`). Settings
    that must fit together are checked together when the connection is read: a ``retry_deadline`` too short
    for ``reconcile_window`` and ``timeout``, a ``poll_budget_per_minute`` above ``rate_limit_per_minute``.
    """

    base_url: str
    token: str = field(repr=False)
    sender: str | None = None
    service: str = "T"
    entity_id: str | None = None
    timeout: float = 30.0
    rate_limit_per_minute: int = 1000
    auth_in: AuthPlacement = "header"
    default_region: str | None = None
    verify_ssl: bool = True
    check_dlt_sender: bool = True
    reconcile_window: float = 30.0
    api_timezone: str = "Asia/Kolkata"
    # Delivery polls (sensors, triggers) per minute, per token and process; on top of rate_limit_per_minute.
    poll_budget_per_minute: int = 500
    # Seconds bounding each call, retries and lookups included; None: derived from the window and timeout.
    retry_deadline: float | None = None
    # Seconds the account's DLT senders and templates are reused in a process (0: read for every send).
    templates_cache_seconds: float = 300.0
    # Operators record what they send for delivery-event assets (docs/delivery-events.md).
    delivery_events: bool = False

    @classmethod
    def from_connection(cls, conn: Any) -> ConnectionSettings:
        """From an Airflow ``Connection`` (sync or async-fetched: only its attributes are read)."""
        return cls.from_parts(
            conn_id=str(getattr(conn, "conn_id", "") or ""),
            host=conn.host,
            port=conn.port,
            schema=conn.schema,
            password=conn.password,
            extra=conn.extra_dejson or {},
        )

    @classmethod
    def from_parts(
        cls,
        *,
        conn_id: str,
        host: str | None,
        port: int | None,
        schema: str | None,
        password: str | None,
        extra: Mapping[str, Any],
    ) -> ConnectionSettings:
        def get(name: str) -> Any:
            # Airflow < 2.3 style prefixed keys still turn up in connections saved by old UIs.
            value = extra.get(name, extra.get(f"extra__{CONN_TYPE}__{name}"))
            return None if value == "" else value

        token = password or ""
        if not token:
            raise QikberryValidationError(
                f"Connection '{conn_id}' has no access token: put it in the password field.",
                field="password",
            )
        auth_in = str(get("auth_in") or "header").lower()
        if auth_in not in ("header", "query"):
            raise QikberryValidationError(
                f"Connection extra auth_in must be 'header' or 'query', got {auth_in!r}.", field="auth_in"
            )
        region = get("default_region")
        zone = str(get("api_timezone") or "Asia/Kolkata")
        _check_zone(zone)
        timeout = _number(get("timeout"), "timeout", 30.0)
        window = _number(get("reconcile_window"), "reconcile_window", 30.0)
        deadline = get("retry_deadline")
        if deadline is not None:
            deadline = fitted_retry_deadline(
                _number(deadline, "retry_deadline", 0.0),
                window=window,
                timeout=timeout,
                window_from=_source(get("reconcile_window"), "reconcile_window"),
                timeout_from=_source(get("timeout"), "timeout"),
            )
        rate = int(_number(get("rate_limit_per_minute"), "rate_limit_per_minute", 1000))
        return cls(
            base_url=_base_url(host, port, schema),
            token=token,
            sender=get("sender"),
            service=str(get("service") or "T"),
            entity_id=None if get("entity_id") is None else str(get("entity_id")),
            timeout=timeout,
            rate_limit_per_minute=rate,
            auth_in="query" if auth_in == "query" else "header",
            default_region=_region(region),
            verify_ssl=_boolean(get("verify_ssl"), "verify_ssl", default=True),
            check_dlt_sender=_boolean(get("check_dlt_sender"), "check_dlt_sender", default=True),
            reconcile_window=window,
            api_timezone=zone,
            poll_budget_per_minute=_poll_budget(get("poll_budget_per_minute"), rate),
            retry_deadline=deadline,
            templates_cache_seconds=_number(
                get("templates_cache_seconds"), "templates_cache_seconds", 300.0, zero=True
            ),
            delivery_events=_boolean(get("delivery_events"), "delivery_events", default=False),
        )


def _number(value: Any, name: str, default: float, *, zero: bool = False) -> float:
    """
    Return a connection extra's finite number, more than 0 (or 0 or more with ``zero``).

    Refuses text that is not a number, a boolean (``true`` is not a timeout), NaN and infinity.
    """
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number < 0 or (number == 0 and not zero):
        wanted = "a number of seconds, 0 or more" if zero else "a positive number"
        raise QikberryValidationError(f"Connection extra {name} must be {wanted}, got {value!r}.", field=name)
    return number


def _whole_number(value: Any, name: str, default: int) -> int:
    number = _number(value, name, default)
    if number != int(number) or number < 1:
        raise QikberryValidationError(
            f"Connection extra {name} must be a whole number of at least 1, got {value!r}.", field=name
        )
    return int(number)


def _source(value: Any, name: str) -> str:
    """Where a setting's value came from, for error messages that name the settings to change."""
    return f"the default {name}" if value is None else f"the connection's {name} extra"


def _poll_budget(value: Any, rate: int) -> int:
    """Return the poll budget: half the GET budget unless set; never above it (every poll draws from both)."""
    if value is None:
        return max(1, rate // 2)
    budget = _whole_number(value, "poll_budget_per_minute", 1)
    if budget > rate:
        raise QikberryValidationError(
            f"Connection extra poll_budget_per_minute ({budget}) is more than rate_limit_per_minute "
            f"({rate}): every delivery poll draws from both budgets, so polls could never use more than "
            f"{rate} a minute, and they could take all of it from sends and balance checks. Set "
            f"poll_budget_per_minute to at most {rate}, or leave it empty for half of it "
            f"({max(1, rate // 2)}).",
            field="poll_budget_per_minute",
        )
    return budget


def _boolean(value: Any, name: str, *, default: bool) -> bool:
    if value is None:
        return default

    try:
        return validate_flag(value, field=name)
    except QikberryValidationError:
        raise QikberryValidationError(
            f"Connection extra {name} must be true or false, got {value!r}.", field=name
        ) from None


def _region(value: object) -> str | None:
    """
    Return the connection's default region, refused at once when phonenumbers does not know it.

    Otherwise the mistake would only surface at the first national number, possibly deep into a campaign.
    """
    if value is None or value == "":
        return None

    return validate_region(str(value))


def _check_zone(name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise QikberryValidationError(
            f"Connection extra api_timezone {name!r} is not an IANA time zone (e.g. 'Asia/Kolkata').",
            field="api_timezone",
        ) from None


def _base_url(host: str | None, port: int | None, schema: str | None) -> str:
    text = (host or "").strip()
    if not text:
        return DEFAULT_BASE_URL
    if "://" not in text:
        # A URI-style connection splits the URL into host, port and schema (the path).
        port_part = f":{port}" if port else ""
        path = (schema or "api/v2").strip("/")
        text = f"https://{text}{port_part}/{path}"
    from urllib.parse import urlsplit

    scheme = text.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise QikberryValidationError(
            f"Connection host must be an http(s) URL such as {DEFAULT_BASE_URL!r}, got scheme {scheme!r}.",
            field="host",
        )
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises on a port that is not a number
    except ValueError as exc:
        raise QikberryValidationError(
            f"Connection host is not a valid URL ({exc}); use e.g. {DEFAULT_BASE_URL!r}.", field="host"
        ) from None
    if not parts.hostname:
        raise QikberryValidationError(
            f"Connection host has no host name; use e.g. {DEFAULT_BASE_URL!r}.", field="host"
        )
    return text if text.endswith("/") else text + "/"


# -- connection form (Airflow < 3.2; newer versions read conn-fields from provider info)


def connection_form_widgets() -> dict[str, Any]:
    """WTForms widgets built from the same ``CONN_FIELDS`` the declarative form uses."""
    from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import BooleanField, IntegerField, StringField
    from wtforms.validators import NumberRange, Optional

    widgets: dict[str, Any] = {}
    for name, spec in CONN_FIELDS.items():
        types = spec["schema"]["type"]
        types = types if isinstance(types, list) else [types]
        label = lazy_gettext(spec["label"])
        description = spec.get("description", "")
        minimum = spec["schema"].get("minimum", 0)
        if "boolean" in types:
            widgets[name] = BooleanField(
                label, description=description, default=spec["schema"].get("default")
            )
        elif "integer" in types:
            widgets[name] = IntegerField(
                label,
                validators=[Optional(), NumberRange(min=minimum)],
                widget=BS3TextFieldWidget(),
                description=description,
                default=spec["schema"].get("default"),
            )
        else:
            # Airflow 2 drops a hook's whole form if one field is not an Integer/String/Password/Boolean
            # field, so a "number" (a 2.5 s timeout) is text checked like the schema; the parser reads it.
            widgets[name] = StringField(
                label,
                validators=[Optional(), _at_least(minimum)] if "number" in types else [],
                widget=BS3TextFieldWidget(),
                description=description,
                default=spec["schema"].get("default"),
            )
    return widgets


def _at_least(minimum: float) -> Any:
    """Return a WTForms validator: the text is a number >= ``minimum``."""
    from wtforms.validators import ValidationError

    def check(form: Any, field: Any) -> None:
        try:
            ok = float(field.data) >= minimum
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValidationError(f"Enter a number of at least {minimum:g}.")

    return check


def ui_field_behaviour() -> dict[str, Any]:
    return {key.replace("-", "_"): value for key, value in UI_FIELD_BEHAVIOUR.items()}
