"""
Client-side checks of send parameters, run before any HTTP request.

Sender, service, DLT ids, custom ids, tags, yes/no flags, text ids, the schedule, and the reader of lists
rendered as text.

Phone numbers live in :mod:`airflow_qikberry.phone`, SMS text (alphabets, length, units) in
:mod:`airflow_qikberry.sms_text`. No I/O and no Airflow import. Every failure raises
:class:`~airflow_qikberry.exceptions.QikberryValidationError` with ``field`` set and a message that names the
field, the bad value and the fix; :func:`fail` and :func:`shown` are the two helpers every checking module of
the package uses to say so. See ``docs/validation.md`` for the rules and the assumptions behind them.

Example::

    from airflow_qikberry.validation import validate_schedule, validate_sender, validate_tags

    validate_sender("TXTSMS", service="T")  # 'TXTSMS'
    validate_tags("promo, diwali")  # ['promo', 'diwali']
    validate_schedule("2030-01-01T09:00:00+05:30")  # '2030-01-01 09:00:00' (API time, Asia/Kolkata)
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, tzinfo
from datetime import timezone as dt_timezone
from typing import Any, NoReturn

from airflow_qikberry.exceptions import QikberryValidationError

__all__ = [
    "MAX_CUSTOM_ID_CHARS",
    "MAX_TAGS",
    "fail",
    "parse_schedule",
    "rendered_list",
    "rendered_literal",
    "shown",
    "validate_custom_id",
    "validate_dlt_id",
    "validate_flag",
    "validate_schedule",
    "validate_sender",
    "validate_service",
    "validate_tags",
    "validate_text_id",
]

MAX_TAGS = 3

_SERVICE_RE = re.compile(r"[A-Za-z0-9_-]{1,16}")
_DLT_ALPHA_RE = re.compile(r"[A-Z]{6}")
_DLT_NUMERIC_RE = re.compile(r"[0-9]{6}")
_SENDER_NUMERIC_RE = re.compile(r"[0-9]{3,15}")
_SENDER_ALNUM_RE = re.compile(r"[A-Za-z0-9]{3,11}")
_DLT_SERVICES = frozenset({"T", "P", "S"})
MAX_CUSTOM_ID_CHARS = 255  # assumed: a Laravel string column (docs/validation.md)
_DLT_ID_RE = re.compile(r"[0-9]{10,30}")


def fail(field: str, message: str) -> NoReturn:
    """Raise the typed error of a bad ``field``: ``"<field>: <message>"``, with ``field`` set."""
    raise QikberryValidationError(f"{field}: {message}", field=field)


def shown(value: object, limit: int = 40) -> str:
    """Return a short repr for error messages; long values are cut so one bad row cannot flood a log."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


_LITERAL_BRACKETS = (("[", "]"), ("(", ")"), ("{", "}"))


def rendered_literal(value: Any, field: str) -> Any:
    """
    Return a list, tuple or dict that a template rendered to its text form, read back (others as they are).

    Without ``render_template_as_native_obj`` a template such as ``{{ ti.xcom_pull('numbers') }}`` renders a
    list to its repr, ``"['919876543210', '919876543211']"``. Text that starts and ends with matching
    brackets is read as a literal (``ast.literal_eval``, then JSON); nothing is ever evaluated. A tuple comes
    back as a list. Text that looks like a literal but is not one is a typed error naming ``field``; callers
    check the shape they need.

    Example::

        >>> rendered_literal("['919876543210', '919876543211']", "to")
        ['919876543210', '919876543211']
        >>> rendered_literal("919876543210, 919876543211", "to")
        '919876543210, 919876543211'
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    # No phone number, id or name starts with "[" or "{": such text is a literal or a mistake. "(" can open
    # a number ("(022) 2345 6789"), so a tuple must also end with ")".
    if not (text[:1] in "[{" and text[:1]) and (text[:1], text[-1:]) not in _LITERAL_BRACKETS:
        return value
    import ast
    import json

    parsed: Any
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        try:
            parsed = json.loads(text)
        except ValueError:
            fail(
                field,
                f"the rendered value starts and ends like a list but is not a list literal ({len(text)} "
                "characters); render it with render_template_as_native_obj=True, or pass the items as a "
                "comma-separated string",
            )
    return list(parsed) if isinstance(parsed, tuple) else parsed


def rendered_list(
    value: Any, field: str, *, dicts: bool = False, hint: str = "pass a list of strings"
) -> Any:
    """
    Return a list that a template rendered to its text form, read back as a list; any other value as it is.

    The one reader of lists rendered as text (recipients, tags, a campaign's rows): see
    :func:`rendered_literal`. The text must hold a list or tuple (with ``dicts``, a dict too, one row);
    anything else is a typed error naming ``field``, ending with ``hint``.

    Example::

        >>> rendered_list("['919876543210', '919876543211']", "to")
        ['919876543210', '919876543211']
    """
    parsed = rendered_literal(value, field)
    if parsed is value or isinstance(parsed, list) or (dicts and isinstance(parsed, dict)):
        return parsed
    fail(field, f"the rendered value is a {type(parsed).__name__}, not a list; {hint}")


# ----------------------------------------------------------------------------------------------------
# sender, service and ids


def validate_service(service: str | None, *, field: str = "service") -> str:
    """
    Check a service (route) code: 1-16 letters, digits, ``_`` or ``-``, e.g. ``T``, ``P``, ``MKT``.

    The API documents product codes only by example (``T``, ``P``, ``S``, ``G``; ``MKT``, ``A2P`` on other
    tenants), so anything code-shaped passes and the API decides; only blanks and punctuation are refused.

    Example::

        >>> validate_service("T"), validate_service("A2P")
        ('T', 'A2P')
    """
    if service is None or (isinstance(service, str) and not service.strip()):
        fail(field, "is required; set the route code, e.g. 'T' (transactional) or 'P' (promotional)")
    if not isinstance(service, str):
        fail(field, f"must be a string, got {type(service).__name__}")
    value = service.strip()
    if _SERVICE_RE.fullmatch(value):
        return value
    fail(
        field, f"{shown(value)} is not a service code; use 1-16 letters, digits, '_' or '-', e.g. 'T' or 'G'"
    )


def validate_sender(
    sender: str | None, *, service: str | None = None, dlt: bool | None = None, field: str = "sender"
) -> str:
    """
    Check a sender id.

    Outside India's DLT routes: 3-11 letters/digits (alphanumeric sender id) or 3-15 digits (numeric
    sender). On DLT routes (``dlt=True``, or ``dlt=None`` and service ``T``/``P``/``S``): a registered
    6-letter upper-case header; promotional (``P``, or ``dlt=True`` without a service) also allows a 6-digit
    numeric header.

    Example::

        >>> validate_sender("TXTSMS", service="T"), validate_sender("MyShop", service="G")
        ('TXTSMS', 'MyShop')
    """
    if sender is None or (isinstance(sender, str) and not sender.strip()):
        fail(field, "is required; set sender to your approved sender id (DLT header), e.g. 'TXTSMS'")
    if not isinstance(sender, str):
        fail(field, f"must be a string, got {type(sender).__name__}")
    value = sender.strip()
    route = service.strip().upper() if isinstance(service, str) else None
    if dlt is None:
        dlt = route in _DLT_SERVICES
    if dlt:
        numeric_ok = route not in ("T", "S")
        if _DLT_ALPHA_RE.fullmatch(value) or (numeric_ok and _DLT_NUMERIC_RE.fullmatch(value)):
            return value
        if _DLT_ALPHA_RE.fullmatch(value.upper()):
            fail(
                field,
                f"{shown(value)} must be upper case on Indian DLT routes: use {value.upper()!r} "
                "(or pass dlt=False for a non-Indian route)",
            )
        allowed = "6 letters A-Z or 6 digits" if numeric_ok else "exactly 6 letters A-Z"
        fail(
            field,
            f"{shown(value)} is not a DLT header: Indian {route or 'DLT'} routes need {allowed} "
            "(the header registered on the DLT portal); pass dlt=False for a non-Indian route",
        )
    if value.isascii() and value.isdigit():
        if _SENDER_NUMERIC_RE.fullmatch(value):
            return value
        fail(field, f"{shown(value)} has {len(value)} digits; a numeric sender id has 3-15 digits")
    if _SENDER_ALNUM_RE.fullmatch(value):
        return value
    if value.isascii() and value.isalnum():
        fail(field, f"{shown(value)} is {len(value)} characters; an alphanumeric sender id has 3-11")
    fail(field, f"{shown(value)} may contain only letters A-Z, a-z and digits (no spaces or punctuation)")


def validate_custom_id(custom_id: str | None, *, field: str = "custom_id") -> str | None:
    """
    Check your own reference id: 1-255 characters, no control characters, no edge spaces.

    ``None`` and ``""`` mean "no custom id". The API documents ``custom`` only as a string; the length cap
    assumes a database string column, and edge spaces are refused because the server trims them, which
    would make a later lookup by custom id miss (docs/validation.md).

    Example::

        >>> validate_custom_id("order-1234"), validate_custom_id(None)
        ('order-1234', None)
    """
    if custom_id is None or custom_id == "":
        return None
    if not isinstance(custom_id, str):
        fail(field, f"must be a string, got {type(custom_id).__name__}")
    if len(custom_id) > MAX_CUSTOM_ID_CHARS:
        fail(field, f"{shown(custom_id)} is {len(custom_id)} characters; use at most {MAX_CUSTOM_ID_CHARS}")
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in custom_id):
        fail(
            field,
            f"{shown(custom_id)} contains a control character (tab, line break, ...) or half of a UTF-16 "
            "surrogate pair; remove it",
        )
    if custom_id != custom_id.strip():
        fail(
            field,
            f"{shown(custom_id)} has edge spaces, which the server strips (lookups would miss); remove them",
        )
    return custom_id


def validate_dlt_id(value: str | None, *, field: str) -> str | None:
    """
    Check an Indian DLT id (``entity_id`` or ``template_id``): 10-30 digits. ``None``/``""`` -> ``None``.

    Example::

        >>> validate_dlt_id("1101456780000012345", field="entity_id")
        '1101456780000012345'
    """
    if value is None or value == "":
        return None
    if isinstance(value, float):
        fail(field, f"got the float {value!r}, which has lost digits; pass the id as a string of digits")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        fail(field, f"must be a string of digits, got {type(value).__name__}")
    text = value.strip()
    if _DLT_ID_RE.fullmatch(text):
        return text
    if text.isascii() and text.isdigit():
        fail(field, f"{shown(text)} has {len(text)} digits; DLT ids have 10-30 digits (usually 19)")
    fail(field, f"{shown(text)} must contain only digits (the id from the DLT portal, usually 19 digits)")


def validate_tags(tags: str | Sequence[str] | None, *, field: str = "tags") -> list[str]:
    """
    Check opt-out tags: at most 3 non-empty strings. A string is read as a comma-separated list.

    Exact duplicates are dropped before counting.

    Example::

        >>> validate_tags("promo, diwali"), validate_tags(None)
        (['promo', 'diwali'], [])
    """
    if tags is None:
        return []
    items: list[object]
    if isinstance(tags, str):
        items = [part for part in (piece.strip() for piece in tags.split(",")) if part]
    elif isinstance(tags, (bytes, Mapping)) or not isinstance(tags, Iterable):
        fail(field, f"must be a list of strings or a comma-separated string, got {type(tags).__name__}")
    else:
        items = list(tags)
    result: dict[str, None] = {}
    for position, item in enumerate(items, start=1):
        if not isinstance(item, str):
            fail(field, f"tag {position} must be a string, got {type(item).__name__}")
        tag = item.strip()
        if not tag:
            fail(field, f"tag {position} is empty; remove it")
        if "," in tag:
            fail(field, f"tag {position} {shown(tag)} contains ','; pass tags as separate list items")
        if any(unicodedata.category(char) in ("Cc", "Cs") for char in tag):
            fail(
                field,
                f"tag {position} {shown(tag)} contains a control character or half of a UTF-16 surrogate "
                "pair; remove it",
            )
        result[tag] = None
    if len(result) > MAX_TAGS:
        fail(field, f"has {len(result)} tags {list(result)!r}; the API allows at most {MAX_TAGS} per send")
    return list(result)


_TRUE_WORDS = frozenset({"true", "t", "yes", "y", "on", "1"})
_FALSE_WORDS = frozenset({"false", "f", "no", "n", "off", "0"})


def validate_flag(value: object, *, field: str) -> bool:
    """
    Return a yes/no parameter as Python, a template, a connection or JSON give it.

    A bool, 0 or 1, or one of the words Airflow's ``to_boolean`` reads (``true/t/yes/y/on/1``,
    ``false/f/no/n/off/0``, any case, spaces around ignored). Anything else is a typed error naming ``field``:
    ``"false"`` is never true because it is a non-empty string, and ``"maybe"`` is never quietly false.

    Example::

        >>> validate_flag("false", field="flash"), validate_flag("On", field="flash")
        (False, True)
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    fail(
        field,
        f"must be true or false, got {shown(value)}; pass True/False, or as text 'true'/'false' "
        "('yes'/'no', 'on'/'off', '1'/'0')",
    )


def validate_text_id(value: object, *, field: str, allow_int: bool = False) -> str | None:
    """
    Return an optional id or name sent as text (``webhook_id``, a campaign ``name``, a status lookup's id).

    ``None`` or ``""`` -> ``None``; otherwise a non-blank string (an ``int`` too when ``allow_int``, as native
    template rendering makes one of "12345") without control characters or unpaired surrogates. A dict, a list
    or any other type is a typed error naming ``field``: it would otherwise be sent as its repr.

    Example::

        >>> validate_text_id("5f2b8e1c-webhook", field="webhook_id"), validate_text_id(None, field="name")
        ('5f2b8e1c-webhook', None)
    """
    if value is None or value == "":
        return None
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        kind = "a string" + (" or a whole number" if allow_int else "")
        fail(field, f"must be {kind}, got {type(value).__name__} {shown(value)}")
    if not value.strip():
        fail(field, f"is blank ({shown(value)}); pass a value or leave it out")
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in value):
        fail(
            field,
            f"{shown(value)} contains a control character (tab, line break, ...) or half of a UTF-16 "
            "surrogate pair; remove it",
        )
    return value


# ----------------------------------------------------------------------------------------------------
# scheduling


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> tzinfo | None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return None


def _describe(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if abs(seconds) < 120:
        return f"{seconds} seconds"
    if abs(seconds) < 7200:
        return f"{seconds // 60} minutes"
    if abs(seconds) < 172800:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86400:.1f} days"


def parse_schedule(when: datetime | str | None, *, field: str = "schedule_at") -> datetime | None:
    """
    Return a send time as an aware datetime, its form checked.

    An aware datetime, or an ISO-8601 string with a UTC offset (``Z`` too). ``None`` means send now. Its
    window and the API's time zone are :func:`validate_schedule`'s, which needs the connection's zone.

    Example::

        >>> parse_schedule("2030-01-01T09:00:00Z")
        datetime.datetime(2030, 1, 1, 9, 0, tzinfo=datetime.timezone.utc)
    """
    if when is None:
        return None
    if isinstance(when, str):
        text = when.strip()
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"  # fromisoformat only learnt "Z" in Python 3.11
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            fail(field, f"{shown(when)} is not an ISO-8601 date-time; use e.g. '2030-01-01T09:00:00+05:30'")
        if parsed.tzinfo is None:
            fail(field, f"{shown(when)} has no UTC offset; add one, e.g. '{text}+05:30' for India time")
        when = parsed
    elif not isinstance(when, datetime):
        fail(field, f"must be a timezone-aware datetime or ISO-8601 string, got {type(when).__name__}")
    if when.tzinfo is None or when.utcoffset() is None:
        fail(
            field,
            f"{when.isoformat()} is a naive datetime (no timezone), which is ambiguous; pass an aware "
            "datetime, e.g. pendulum.datetime(..., tz='Asia/Kolkata') or datetime(..., tzinfo=timezone.utc)",
        )
    return when


def validate_schedule(
    when: datetime | str | None,
    *,
    now: datetime | None = None,
    min_ahead: timedelta = timedelta(minutes=5),
    max_ahead: timedelta = timedelta(days=92),
    timezone: str = "Asia/Kolkata",
    field: str = "schedule_at",
) -> str | None:
    """
    Check a send time and return it in the API's wire format, ``YYYY-mm-dd HH:MM:SS`` in ``timezone``.

    ``None`` means send now. Naive datetimes and offset-less strings are refused (which zone would they be
    in?). The time must be more than ``min_ahead`` and less than ``max_ahead`` from ``now``; the defaults
    follow the documented "more than 5 minutes and less than 3 months" (the help page says 30 days: pass
    ``max_ahead=timedelta(days=30)`` to be strict). Seconds are kept, fractions dropped.

    Example::

        >>> validate_schedule("2030-01-01T09:00:00+05:30", now=datetime(2029, 12, 1, tzinfo=dt_timezone.utc))
        '2030-01-01 09:00:00'
    """
    when = parse_schedule(when, field=field)
    if when is None:
        return None
    if now is None:
        now = datetime.now(dt_timezone.utc)
    elif now.tzinfo is None or now.utcoffset() is None:
        fail("now", f"{now.isoformat()} is naive; pass an aware datetime")
    zone = _zone(timezone)
    if zone is None:
        fail("timezone", f"unknown time zone {shown(timezone)}; use an IANA name such as 'Asia/Kolkata'")
    # Check what the API will receive: the wire format has whole seconds.
    wire = when.replace(microsecond=0)
    ahead = wire - now
    if ahead <= min_ahead:
        if ahead < timedelta(0):
            position = f"in the past ({_describe(-ahead)} ago)"
        else:
            position = f"only {_describe(ahead)} ahead"
        fail(
            field,
            f"{wire.isoformat()} is {position}; it must be more than {_describe(min_ahead)} ahead: "
            "schedule it later, or pass None to send now",
        )
    if ahead >= max_ahead:
        fail(
            field,
            f"{wire.isoformat()} is {_describe(ahead)} ahead; it must be less than {_describe(max_ahead)} "
            "ahead: schedule it closer, or send it from a later DAG run",
        )
    return wire.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
