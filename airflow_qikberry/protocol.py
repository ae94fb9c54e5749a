"""
The Qikberry v2 wire format in one place.

API paths, status vocabulary, envelopes, error mapping, what an HTTP outcome means for a retry, paging,
accepted counts, numbers as the API writes them, and redaction.

Both transports (requests and httpx) and both hooks go through this module, so they can never disagree
about what a response means. This module does no I/O. Request bodies are :mod:`airflow_qikberry.payloads`'s.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from airflow_qikberry import phone, validation
from airflow_qikberry.exceptions import (
    QikberryAuthError,
    QikberryError,
    QikberryInsufficientBalanceError,
    QikberryRateLimitError,
    QikberryServerError,
    QikberryValidationError,
)

__all__ = [
    "AWAITING_DLR",
    "DEFAULT_BASE_URL",
    "DELIVERED",
    "MAX_STATUS_PAGES",
    "PENDING_STATUSES",
    "ApiResponse",
    "Disposition",
    "Paths",
    "accepted_count",
    "auth_headers",
    "canonical_number",
    "classify",
    "decode_body",
    "error_for",
    "is_delivered",
    "is_final",
    "next_page",
    "parse_response",
    "parse_retry_after",
    "query_params",
    "redact",
    "rows_of",
    "status_page",
    "status_params",
    "status_total",
]

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
    SEND_TEMPLATE = "sms/send/template"
    SENDERS = "sms/senders"
    TEMPLATES = "sms/templates"


# Delivery-report vocabulary (reference section 6.1). Everything but AWAITING-DLR is final.
AWAITING_DLR = "AWAITING-DLR"
DELIVERED = "DELIVRD"
PENDING_STATUSES: frozenset[str] = frozenset({AWAITING_DLR})


def is_final(status: str) -> bool:
    """Return True when a delivery status will not change any more (unknown statuses count as final)."""
    return status not in PENDING_STATUSES


def is_delivered(status: str) -> bool:
    return status == DELIVERED


# Markers of the portal's HTML login page, which the API serves instead of a 401 when it decides the client
# does not want JSON (reference section 3.7).
_LOGIN_PAGE_MARKERS = ("/login", "<form", "password")

# Phrases with which the API (or the emulator, by assumption) reports a lack of credits.
_BALANCE_MARKERS = ("insufficient balance", "insufficient credit", "not enough credit", "no credits")


class ApiResponse(NamedTuple):
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
    """Return the JSON value of a response body, or None when it is not JSON."""
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

    # A 5xx error page may well carry a "log in" link: only a non-5xx login page means a bad token.
    if body is None and status_code < 500 and _looks_like_login_page(text):
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


# --- what an HTTP outcome means for retrying

Disposition = Literal["ok", "retry", "ambiguous", "fail"]


def classify(method: str, status_code: int) -> Disposition:
    """
    Return what to do after an HTTP answer.

    ``ok``; ``retry`` (safe to repeat); ``ambiguous`` (a POST that may have been processed: reconcile, never
    blindly repeat); ``fail`` (repeating cannot help).

    GETs repeat on 408, 429 and any 5xx (the 520-524 family of proxies included). A send (POST) repeats only
    on 429 and 503, which refuse before processing; 408, 500, 502, 504, 520-524 and other 5xx may come after
    the server accepted the messages; 501 and 505 say the request can never work.
    """
    if 200 <= status_code < 300:
        return "ok"
    if method.upper() == "GET":
        return (
            "retry"
            if status_code in (408, 429) or (status_code >= 500 and status_code not in (501, 505))
            else "fail"
        )
    if status_code in (429, 503):
        return "retry"
    if status_code in (501, 505):
        return "fail"
    if status_code == 408 or status_code >= 500:
        return "ambiguous"
    return "fail"


# --- authentication placement (reference section 3.1)


def auth_headers(token: str, auth_in: str, user_agent: str) -> dict[str, str]:
    """Headers of every request. Without a JSON ``Accept`` the API answers an auth failure with HTML."""
    headers = {"Accept": "application/json", "User-Agent": user_agent}
    if auth_in == "header":
        headers["Authorization"] = f"Bearer {token}"
    return headers


def query_params(params: Mapping[str, Any] | None, token: str, auth_in: str) -> dict[str, Any]:
    """Query parameters without ``None`` values, plus ``access_token`` when the token goes in the query."""
    out = {k: val for k, val in (params or {}).items() if val is not None}
    if auth_in == "query":
        out["access_token"] = token
    return out


# --- secrets in text

_TOKEN_IN_TEXT = re.compile(r"((?:access|api)_token=)[^&\s'\"]+", re.IGNORECASE)


def redact(text: str, *secrets: str) -> str:
    """Remove ``access_token=...`` query values and the given secrets from ``text``."""
    text = _TOKEN_IN_TEXT.sub(r"\1***", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


# --- numbers as the API writes them

_NOT_DIGIT = re.compile(r"\D")


def canonical_number(number: Any) -> str:
    """One form for a number the API may write as ``91...``, ``+91...`` or ``0091...``: digits only."""
    if type(number) is str and number.isascii() and number.isdigit():  # already digits: nothing to take out
        return number[2:] if number.startswith("00") else number
    digits = _NOT_DIGIT.sub("", str(number or ""))
    return digits[2:] if digits.startswith("00") else digits


# --- response bodies


def rows_of(response: ApiResponse, *, what: str) -> list[Mapping[str, Any]]:
    """Return the ``data`` rows of a response that must carry a list of objects (garbled: a typed error)."""
    data = response.data
    if data is None:
        return []
    # Decoded JSON rows are dicts: one pass in C tells, the Mapping check is for anything else.
    if not isinstance(data, list) or not (
        set(map(type, data)) <= {dict} or all(isinstance(row, Mapping) for row in data)
    ):
        raise QikberryServerError(
            f"The API answered {what} with a body whose data is not a list of rows: "
            f"{_snippet(json.dumps(data, default=str))}",
            status_code=response.status_code,
        )
    return data


def next_page(body: Mapping[str, Any], page: int, rows_on_page: int) -> int | None:
    """
    Return the page after ``page`` of a Laravel-paginated answer, or None when ``page`` was the last.

    Reads the API-resource form (``meta.last_page``, ``links.next``) and the flat paginator form
    (``last_page``, ``next_page_url``); an unpaginated list has no page after it.
    """
    if rows_on_page == 0:
        return None
    meta = body.get("meta")
    meta = meta if isinstance(meta, Mapping) else body
    last = meta.get("last_page")
    if isinstance(last, int) and not isinstance(last, bool):
        return page + 1 if page < last else None
    links = body.get("links")
    if isinstance(links, Mapping):
        return page + 1 if links.get("next") else None
    return page + 1 if body.get("next_page_url") else None


MAX_STATUS_PAGES = 10_000  # 1,000,000 rows: twice the largest bulk upload


def status_page(response: ApiResponse, page: int) -> tuple[list[Mapping[str, Any]], int | None]:
    """
    Return the rows of one ``sms/status`` answer and the number of the next page (None: this was the last).

    Accepts the current envelope (rows in ``data``, ``links``/``meta`` beside it) and the pre-2024 one
    (a flat paginator inside ``data``). Following more than :data:`MAX_STATUS_PAGES` pages is an error,
    not an endless loop.
    """
    data, container = response.data, response.body
    if isinstance(data, Mapping) and isinstance(data.get("data"), list):
        data, container = data["data"], data
    rows = rows_of(ApiResponse(response.status_code, {"data": data}), what="sms/status")
    following = next_page(container, page, len(rows))
    if following is not None and following > MAX_STATUS_PAGES:
        raise QikberryServerError(f"sms/status kept answering 'next page' past page {MAX_STATUS_PAGES}.")
    return rows, following


def status_total(response: ApiResponse) -> int | None:
    """
    Return how many rows a paginated ``sms/status`` query has in all, or None when the answer does not say.

    Read from ``meta.total``, or a flat paginator's ``total``.
    """
    data = response.data
    container: Mapping[str, Any] = response.body
    if isinstance(data, Mapping) and isinstance(data.get("data"), list):
        container = data
    meta = container.get("meta")
    meta = meta if isinstance(meta, Mapping) else container
    total = meta.get("total")
    return total if isinstance(total, int) and not isinstance(total, bool) and total >= 0 else None


def status_params(
    *, message_id: str | None, custom_id: str | None, mobile: str | None, default_region: str | None
) -> dict[str, str]:
    """
    Query of an ``sms/status`` lookup; combined keys AND.

    At least one key is required. Each key is checked before any request: a dict or a list would otherwise be
    sent as its repr.
    """
    params = {
        "id": validation.validate_text_id(message_id, field="message_id"),
        "cid": validation.validate_text_id(custom_id, field="custom_id", allow_int=True),
    }
    if mobile is not None and mobile != "":
        params["mobile"] = phone.normalize_number(mobile, default_region=default_region, field="mobile")
    if not any(params.values()):
        raise QikberryValidationError("get_status needs message_id, custom_id or mobile.", field="message_id")
    return {k: val for k, val in params.items() if val}


def accepted_count(message: str) -> int | None:
    """Return the count in ``"<N> numbers accepted for delivery."``, or None when the message has none."""
    match = re.match(r"\s*(\d+)", message)
    return int(match.group(1)) if match else None
