"""The Qikberry v2 wire protocol in one place: API paths, status vocabulary, envelopes and error mapping.

Both the sync hook and (later) the async hook parse responses through :func:`parse_response`, so the two
transports can never disagree about what a response means. This module does no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_qikberry.exceptions import (
    QikberryAuthError,
    QikberryError,
    QikberryInsufficientBalanceError,
    QikberryRateLimitError,
    QikberryServerError,
    QikberryValidationError,
)

DEFAULT_BASE_URL = "https://alerts.qikberry.com/api/v2/"


class Paths:
    """Endpoint paths relative to the ``/api/v2/`` base URL (see docs/api-assumptions.md)."""

    SEND = "sms/send"
    SEND_JSON = "sms/send/json"
    BULK = "sms/bulk"
    STATUS = "sms/status"
    BALANCE = "finance/balance"
    BALANCE_LEGACY = "account/balance"
    AUTH_ME = "auth/me"
    WEBHOOKS = "developer/webhooks"


# Delivery-report vocabulary (reference section 6.1). Everything but AWAITING-DLR is final.
AWAITING_DLR = "AWAITING-DLR"
DELIVERED = "DELIVRD"
PENDING_STATUSES: frozenset[str] = frozenset({AWAITING_DLR})
FAILED_STATUSES: frozenset[str] = frozenset(
    {
        "UNDELIV", "TIMEOUT-DLR", "EXPIRED", "FAILED", "BARRED", "BLACKLST", "INVALID-SUB", "ABSENT-SUB",
        "HANDSET-ERR", "NET-ERR", "MEMEXEC", "MOB-OFF", "HANDSET-BUSY", "SERIES-BLK", "SERIES-BLOCK",
        "NO-CREDITS", "NO-ACCOUNT", "SERVER-ERR", "INV-NUMBER", "SPAM", "DNDNUMB", "SNDR-BLOCK",
        "TEMPLATE-NOT-FOUND", "INV-TEMPLATE", "INV-SENDER", "NOT-OPTIN", "OPTOUT-REJ", "PROMO-TMOUT",
        "REJECTED", "NOTALLOWED", "DUPLICATE", "THROTTLED", "DLT-REJECTED", "REJ-MULTIPART", "DLT-INV-TMID",
        "DLT-INV-ENTITY", "DLT-INV-TM-ID", "DLT-TM-VAR-EXECEED", "DLT-ENTITY-NOT-FOUND", "DLT-TM-BLACKLST",
        "DLT-ENTITY-BLACKLST", "DLT-HEADER-INACTIVE", "DLT-TM-INACTIVE", "DLT-SENDER-NOT-REG-TM",
        "INV-PROVISION", "INV-SERVICE", "INV-SCHEDULE",
    }
)  # fmt: skip


def is_final(status: str) -> bool:
    """True when a delivery status will not change any more (unknown statuses count as final)."""
    return status not in PENDING_STATUSES


def is_delivered(status: str) -> bool:
    return status == DELIVERED


# Markers of the portal's HTML login page, which the API serves instead of a 401 when it decides the client
# does not want JSON (reference section 3.7).
_LOGIN_PAGE_MARKERS = ("/login", "<form", "password")

# Phrases with which the API (or the emulator, by assumption) reports a lack of credits.
_BALANCE_MARKERS = ("insufficient balance", "insufficient credit", "not enough credit", "no credits")


@dataclass(frozen=True)
class ApiResponse:
    """A successful, parsed response: the whole JSON body plus its ``data`` member."""

    status_code: int
    body: dict[str, Any]

    @property
    def data(self) -> Any:
        return self.body.get("data")

    @property
    def message(self) -> str:
        return str(self.body.get("message", ""))


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form only), or ``None``."""
    raw = _header(headers, "Retry-After")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key, val in headers.items():
            if key.lower() == lowered:
                return val
    return value


def decode_body(text: str) -> Any:
    """The JSON value of a response body, or None when it is not JSON."""
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _is_success_envelope(body: Mapping[str, Any]) -> bool:
    # Two envelopes coexist: {"status": 200} on classic endpoints, {"status": "OK", "code": 200} on newer.
    status = body.get("status")
    if isinstance(status, str):
        if status.upper() == "OK":
            return True
        return status.strip().isdigit() and 200 <= int(status) < 300
    if isinstance(status, int) and not isinstance(status, bool):
        return 200 <= status < 300
    return status is None and "data" in body


def _errors_of(body: Mapping[str, Any]) -> dict[str, list[str]]:
    raw = body.get("errors")
    if not isinstance(raw, Mapping):
        return {}
    out: dict[str, list[str]] = {}
    for key, val in raw.items():
        out[str(key)] = [str(v) for v in val] if isinstance(val, list) else [str(val)]
    return out


def error_for(
    status_code: int,
    body: Any,
    headers: Mapping[str, str] | None = None,
    *,
    text: str = "",
) -> QikberryError:
    """Map an unsuccessful response to the matching typed error. Never includes request secrets."""
    headers = headers or {}
    if isinstance(body, Mapping):
        message = str(body.get("message") or "").strip()
        code = body.get("code")
        api_code = code if isinstance(code, int) and not isinstance(code, bool) else None
        status = body.get("status")
        if api_code is None and isinstance(status, int) and not isinstance(status, bool) and status >= 300:
            api_code = status
    else:
        message, api_code = "", None
    # The HTTP status line is authoritative unless the server answered 200 with an error envelope.
    effective = status_code if status_code >= 300 or api_code is None else api_code
    lowered = message.lower()

    if body is None and _looks_like_login_page(text):
        return QikberryAuthError(
            "The API answered with its HTML login page: the access token is missing or invalid.",
            status_code=status_code,
        )
    if effective in (401, 403):
        return QikberryAuthError(message or "Authentication failed.", status_code=effective)
    if effective == 402 or any(marker in lowered for marker in _BALANCE_MARKERS):
        return QikberryInsufficientBalanceError(message or "Insufficient balance.", status_code=effective)
    if effective == 429:
        return QikberryRateLimitError(
            message or "Too Many Attempts.", status_code=429, retry_after=parse_retry_after(headers)
        )
    if effective in (400, 404, 409, 413, 422):
        errors = _errors_of(body) if isinstance(body, Mapping) else {}
        field = next(iter(errors), None)
        return QikberryValidationError(
            message or "The request was rejected as invalid.",
            field=field,
            status_code=effective,
            errors=errors,
        )
    if effective >= 500:
        return QikberryServerError(message or "Server Error.", status_code=effective)
    if body is None:
        return QikberryServerError(
            f"Unexpected non-JSON response (HTTP {status_code}): {_snippet(text)}", status_code=status_code
        )
    return QikberryError(message or f"Unexpected response (HTTP {effective}).", status_code=effective)


def parse_response(status_code: int, text: str, headers: Mapping[str, str] | None = None) -> ApiResponse:
    """Turn an HTTP response into an :class:`ApiResponse`, or raise the typed error it stands for."""
    body = decode_body(text)
    if 200 <= status_code < 300 and isinstance(body, dict) and _is_success_envelope(body):
        return ApiResponse(status_code=status_code, body=body)
    if 200 <= status_code < 300 and body is None and not _looks_like_login_page(text):
        raise QikberryServerError(f"Expected a JSON body, got: {_snippet(text)}", status_code=status_code)
    raise error_for(status_code, body, headers, text=text)


def _looks_like_login_page(text: str) -> bool:
    head = text[:4096].lower()
    return "<html" in head and all(marker in head for marker in _LOGIN_PAGE_MARKERS[:1])


def _snippet(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."
