"""The Qikberry v2 wire protocol in one place: API paths, status vocabulary, envelopes, error mapping,
what an HTTP outcome means for a retry, and the pure builders of every request payload.

Both transports (requests and httpx) and both hooks go through this module, so they can never disagree
about what a request looks like or what a response means. This module does no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, NamedTuple

from airflow_qikberry import phone, sms_text, validation
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
    """What to do after an HTTP answer: ``ok``; ``retry`` (safe to repeat); ``ambiguous`` (a POST that may
    have been processed: reconcile, never blindly repeat); ``fail`` (repeating cannot help).

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
    digits = _NOT_DIGIT.sub("", str(number or ""))
    return digits[2:] if digits.startswith("00") else digits


# --- response bodies


def rows_of(response: ApiResponse, *, what: str) -> list[Mapping[str, Any]]:
    """The ``data`` rows of a response that must carry a list of objects; a garbled body is a typed error."""
    data = response.data
    if data is None:
        return []
    if not isinstance(data, list) or not all(isinstance(row, Mapping) for row in data):
        raise QikberryServerError(
            f"The API answered {what} with a body whose data is not a list of rows: "
            f"{_snippet(json.dumps(data, default=str))}",
            status_code=response.status_code,
        )
    return data


def next_page(body: Mapping[str, Any], page: int, rows_on_page: int) -> int | None:
    """The page after ``page`` of a Laravel-paginated answer, or None when ``page`` was the last.

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
    """The rows of one ``sms/status`` answer and the number of the next page (None: this was the last).

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
    """How many rows a paginated ``sms/status`` query has in all (``meta.total``, or a flat paginator's
    ``total``), or None when the answer does not say."""
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
    """Query of an ``sms/status`` lookup; combined keys AND. At least one key is required. Each key is checked
    before any request: a dict or a list would otherwise be sent as its repr."""
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
    """The count in ``"<N> numbers accepted for delivery."``, or None when the message has none."""
    match = re.match(r"\s*(\d+)", message)
    return int(match.group(1)) if match else None


# --- request payloads

EncodingChoice = Literal["auto", "gsm7", "ucs2"]
API_TYPE: dict[str, str] = {"gsm7": "N", "ucs2": "U"}
MAX_NUMBERS_PER_REQUEST = 50_000  # the quick-campaign limit (reference section 3.9)
MAX_BULK_BYTES = 200 * 1024 * 1024  # campaign file limit (reference section 3.9)

# Per-node keys of sms/send/json: every send parameter except webhook_id, service and time (reference 4.2).
NODE_KEYS = frozenset(
    {
        "to",
        "message",
        "sender",
        "template_id",
        "entity_id",
        "encoding",
        "flash",
        "max_units",
        "tags",
        "custom_id",
    }
)
_ROOT_ONLY = {
    "service": "service",
    "webhook_id": "webhook_id",
    "schedule_at": "schedule_at",
    "time": "schedule_at",
}


# NamedTuples, not dataclasses, for these records: DAG files import this module at every parse, and a
# dataclass costs about a millisecond to build.
class SendDefaults(NamedTuple):
    """What a connection supplies when a call leaves a send parameter out."""

    sender: str | None = None
    service: str = "T"
    entity_id: str | None = None
    default_region: str | None = None
    check_dlt_sender: bool = True
    timezone: str = "Asia/Kolkata"


def _sender(value: str | None, defaults: SendDefaults, service: str, field: str) -> str:
    return validation.validate_sender(
        value, service=service, dlt=None if defaults.check_dlt_sender else False, field=field
    )


def _given(value: Any) -> bool:
    """Whether a caller gave a parameter: ``None`` and ``""`` mean "use the default"; anything else, even an
    empty dict or list, is given and gets checked (and refused) rather than quietly replaced."""
    return value is not None and not (isinstance(value, str) and value == "")


def _message_fields(text: str, encoding: EncodingChoice, max_units: int | None, field: str) -> dict[str, Any]:
    length = sms_text.validate_message(text, encoding=encoding, max_units=max_units, field=field)
    return {"message": text, "type": API_TYPE[length.encoding]}


def build_common(
    defaults: SendDefaults,
    *,
    message: str | None,
    sender: str | None = None,
    service: str | None = None,
    template_id: str | None = None,
    entity_id: str | None = None,
    schedule_at: datetime | str | None = None,
    encoding: EncodingChoice = "auto",
    flash: bool = False,
    webhook_id: str | None = None,
    max_units: int | None = None,
    tags: Sequence[str] | str | None = None,
    require_message: bool = True,
) -> dict[str, Any]:
    """The parameters shared by every send endpoint, validated, in wire form (``root`` of a batch)."""
    service_value = validation.validate_service(service if _given(service) else defaults.service)
    payload: dict[str, Any] = {
        "sender": _sender(sender if _given(sender) else defaults.sender, defaults, service_value, "sender"),
        "service": service_value,
    }
    if message is not None or require_message:
        payload.update(_message_fields(message or "", encoding, max_units, "message"))
    elif encoding != "auto":
        payload["type"] = API_TYPE[encoding]
    if max_units is not None:
        payload["max_units"] = max_units
    ids = {
        "template_id": validation.validate_dlt_id(template_id, field="template_id"),
        "entity_id": validation.validate_dlt_id(
            entity_id if _given(entity_id) else defaults.entity_id, field="entity_id"
        ),
    }
    payload.update({k: val for k, val in ids.items() if val})
    when = validation.validate_schedule(schedule_at, timezone=defaults.timezone)
    if when:
        payload["time"] = when
    if validation.validate_flag(flash, field="flash"):
        payload["flash"] = 1
    hook_id = validation.validate_text_id(webhook_id, field="webhook_id")
    if hook_id:
        payload["webhook_id"] = hook_id
    tag_list = validation.validate_tags(tags)
    if tag_list:
        payload["tags"] = tag_list
    return payload


def check_request_size(count: int, field: str) -> None:
    if count > MAX_NUMBERS_PER_REQUEST:
        raise QikberryValidationError(
            f"{field}: {count} numbers; the API accepts at most {MAX_NUMBERS_PER_REQUEST} per request. "
            "Split the list (or use upload_bulk for one text to many numbers).",
            field=field,
        )


class BatchNode(NamedTuple):
    """One validated node of a batch: its wire form, its number and the custom id the caller gave.

    A BatchNode is validated by definition: only this module's builders make one (:func:`build_batch_node`
    from a caller's mapping, :func:`validated_batch_node` from parts validated elsewhere), and
    ``QikberryHook.send_batch`` sends it as it is, without checking it again. Build it for the root it is
    sent with: its ``type`` is relative to that root's.
    """

    payload: dict[str, Any]
    number: str
    given_custom_id: str | None


def validated_batch_node(
    number: str, custom_id: str | None, *, message: str | None = None, api_type: str | None = None
) -> BatchNode:
    """A :class:`BatchNode` from parts the caller has already validated; nothing is checked again.

    For a caller that validates a large batch once, in an earlier pass, and must not pay for it twice (the
    campaign engine, whose prepare pass spools exactly these parts). The caller vouches that ``number`` is
    the output of ``phone.normalize_number``, that ``message`` (None: the root's text) was measured with
    the batch's ``encoding`` and ``max_units`` and ``api_type`` is ``API_TYPE`` of its encoding, and that
    ``custom_id`` passes ``validation.validate_custom_id``. A node with its own text always carries its
    ``type``, as :func:`build_batch_node` makes it; without a text it inherits the root's text and type.

    Example::

        node = validated_batch_node("919876543210", "order-1", message="Hi Asha", api_type="N")
        hook.send_batch([node], name="welcome")
    """
    payload: dict[str, Any] = {"to": number}
    if message is not None:
        payload["message"] = message
        payload["type"] = api_type
    return BatchNode(payload, number, custom_id)


def build_batch_node(
    node: Mapping[str, Any],
    index: int,
    root: Mapping[str, Any],
    defaults: SendDefaults,
    *,
    encoding: EncodingChoice,
    max_units: int | None,
) -> BatchNode:
    """Validate one ``sms/send/json`` node and give it every parameter it overrides, its encoding included.

    A node whose text differs from the root's carries its own ``type``: a Hindi node under a GSM-7 root
    goes out as ``U``, not as question marks.
    """
    prefix = f"nodes[{index}]"
    if not isinstance(node, Mapping):
        raise QikberryValidationError(f"{prefix} must be a mapping with a 'to' number.", field=prefix)
    node = dict(node)
    if "custom" in node and "custom_id" not in node:
        node["custom_id"] = node.pop("custom")
    for key in node:
        if key in _ROOT_ONLY:
            raise QikberryValidationError(
                f"{prefix}.{key}: the API applies {key} to the whole batch only; pass it as the "
                f"{_ROOT_ONLY[key]} argument instead.",
                field=f"{prefix}.{key}",
            )
        if key not in NODE_KEYS:
            raise QikberryValidationError(
                f"{prefix}.{key} is not a node parameter; use one of {', '.join(sorted(NODE_KEYS))}.",
                field=f"{prefix}.{key}",
            )
    if "to" not in node:
        raise QikberryValidationError(f"{prefix} needs a 'to' number.", field=f"{prefix}.to")
    found = phone.normalize_numbers(node["to"], default_region=defaults.default_region, field=f"{prefix}.to")
    if len(found) != 1:
        raise QikberryValidationError(
            f"{prefix}.to must be exactly one number; use one node per recipient.", field=f"{prefix}.to"
        )
    out: dict[str, Any] = {"to": found[0]}
    node_encoding: EncodingChoice = sms_text.validate_encoding(
        node.get("encoding", encoding), field=f"{prefix}.encoding"
    )
    node_units = node.get("max_units", max_units)
    text = node.get("message", root.get("message"))
    if text is None:
        raise QikberryValidationError(
            f"{prefix} has no message and no default message was given.", field=f"{prefix}.message"
        )
    fields = _message_fields(text, node_encoding, node_units, f"{prefix}.message")
    if "message" in node:
        out["message"] = text
    if "message" in node or fields["type"] != root.get("type"):
        out["type"] = fields["type"]
    if "max_units" in node:
        out["max_units"] = node_units
    if _given(node.get("sender")):
        out["sender"] = _sender(node["sender"], defaults, str(root["service"]), f"{prefix}.sender")
    for key in ("template_id", "entity_id"):
        if _given(node.get(key)):
            out[key] = validation.validate_dlt_id(node[key], field=f"{prefix}.{key}")
    if "flash" in node:
        out["flash"] = 1 if validation.validate_flag(node["flash"], field=f"{prefix}.flash") else 0
    if _given(node.get("tags")):
        tags = validation.validate_tags(node["tags"], field=f"{prefix}.tags")
        if tags:
            out["tags"] = tags
    given = node.get("custom_id")
    given_id = validation.validate_custom_id(given, field=f"{prefix}.custom_id") if _given(given) else None
    return BatchNode(payload=out, number=found[0], given_custom_id=given_id)


def build_batch_nodes(
    nodes: Iterable[Mapping[str, Any] | BatchNode],
    root: Mapping[str, Any],
    defaults: SendDefaults,
    *,
    encoding: EncodingChoice,
    max_units: int | None,
) -> list[BatchNode]:
    """Validate every mapping of ``nodes`` with :func:`build_batch_node`; a :class:`BatchNode` is already
    validated and is taken as it is. The batch itself is checked whatever its nodes: not empty, within the
    per-request limit, no custom id twice, and a text for every node."""
    built = [
        node
        if isinstance(node, BatchNode)
        else build_batch_node(node, i, root, defaults, encoding=encoding, max_units=max_units)
        for i, node in enumerate(nodes)
    ]
    if not built:
        raise QikberryValidationError("nodes is empty: give at least one recipient.", field="nodes")
    check_request_size(len(built), "nodes")
    if "message" not in root:
        # A mapping without a text failed above; a prebuilt node made for a root with a text fails here,
        # before the request, not as the API's 422 after it.
        for i, b in enumerate(built):
            if "message" not in b.payload:
                raise QikberryValidationError(
                    f"nodes[{i}] has no message and no default message was given.",
                    field=f"nodes[{i}].message",
                )
    explicit = [b.given_custom_id for b in built if b.given_custom_id]
    if len(set(explicit)) != len(explicit):
        raise QikberryValidationError("nodes carry duplicate custom ids; each must be unique.", field="nodes")
    return built


def multipart_fields(payload: Mapping[str, Any]) -> dict[str, str]:
    """Form fields of a multipart upload: lists become comma-separated values."""
    return {k: (",".join(map(str, val)) if isinstance(val, list) else str(val)) for k, val in payload.items()}
