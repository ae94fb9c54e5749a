"""The Qikberry v2 endpoints: validation, state changes and the documented response shapes.

Transport-free: the HTTP layer hands over an :class:`ApiRequest` and writes back the :class:`ApiResult`.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from airflow_qikberry.emulator.encoding import encode
from airflow_qikberry.emulator.forms import UploadedFile
from airflow_qikberry.emulator.state import (
    AWAITING_DLR,
    EmulatorState,
    InsufficientBalance,
    Message,
    NewMessage,
    UnknownWebhook,
    display_mobile,
    number,
)

NUMBER_RE = re.compile(r"^[1-9][0-9]{7,14}$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
ISO_PREFIXES = (("91", "IN"), ("44", "GB"), ("1", "US"))
TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %I:%M%p", "%Y-%m-%d %I:%M %p", "%Y-%m-%d %H:%M")
WEBHOOKS_PER_PAGE = 15
ROOT_ONLY = ("service", "time", "webhook_id")
MOBILE_HEADER_HINTS = ("mobile", "phone", "number")


@dataclass
class ApiRequest:
    method: str
    path: str
    params: dict[str, Any]
    query: dict[str, Any]
    base_url: str
    files: dict[str, UploadedFile] = field(default_factory=dict)
    args: tuple[str, ...] = ()


@dataclass
class ApiResult:
    status: int
    body: Any
    headers: list[tuple[str, str]] = field(default_factory=list)


class ApiError(Exception):
    """An error answer in the ``{"status":"ERROR","code":...,"message":...}`` envelope."""

    def __init__(self, status: int, message: str, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "ERROR", "code": self.status, "message": self.message}
        if self.errors:
            out["errors"] = self.errors
        return out


class Errors:
    """Laravel-style validation errors: first error's text becomes the message."""

    def __init__(self) -> None:
        self.items: dict[str, list[str]] = {}

    def add(self, field_name: str, text: str) -> None:
        self.items.setdefault(field_name, []).append(text)

    def has(self, field_name: str) -> bool:
        return field_name in self.items

    def raise_if_any(self) -> None:
        if self.items:
            first = next(iter(self.items.values()))[0]
            raise ApiError(422, first, self.items)


def attr(field_name: str) -> str:
    return field_name.replace("_", " ")


def validation_error(field_name: str, text: str) -> ApiError:
    return ApiError(422, text, {field_name: [text]})


def ok(body: dict[str, Any], headers: list[tuple[str, str]] | None = None) -> ApiResult:
    return ApiResult(200, body, headers or [])


# ---------------------------------------------------------------------------- value helpers
def scalar(params: dict[str, Any], key: str, field_name: str, errors: Errors) -> str | None:
    """A string parameter (JSON numbers/bools accepted and stringified); None when absent or empty."""
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        value = value.strip()
        return value or None
    errors.add(field_name, f"The {attr(field_name)} must be a string.")
    return None


def required(params: dict[str, Any], key: str, field_name: str, errors: Errors) -> str | None:
    value = scalar(params, key, field_name, errors)
    if value is None and not errors.has(field_name):
        errors.add(field_name, f"The {attr(field_name)} field is required.")
    return value


def split_list(value: Any) -> list[str] | None:
    """A list given as JSON array, PHP array or comma-separated string."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    if isinstance(value, dict):
        return [str(v).strip() for v in value.values() if str(v).strip()]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [str(value)]
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return None


def iso_code(mobile: str) -> str | None:
    for prefix, code in ISO_PREFIXES:
        if mobile.startswith(prefix):
            return code
    return None


# ---------------------------------------------------------------------------- message options
@dataclass
class Options:
    """Per-message options shared by all send endpoints."""

    text: str = ""
    sender: str = ""
    custom: str = ""
    sms_type: str = "A"
    flash: int = 0
    entity_id: str = ""
    template_id: str = ""
    port: str = ""
    max_units: int | None = None
    tags: list[str] = field(default_factory=list)
    name: str = ""


class Api:
    """Endpoint implementations over one :class:`EmulatorState`."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self._routes: dict[str, dict[str, Callable[[ApiRequest], ApiResult]]] = {
            "sms/send": {"GET": self.send, "POST": self.send},
            "sms/send/json": {"POST": self.send_json},
            "sms/bulk": {"POST": self.bulk},
            "sms/status": {"GET": self.status},
            "finance/balance": {"GET": self.balance},
            "account/balance": {"GET": self.balance},
            "auth/me": {"GET": self.me},
            "developer/webhooks": {"GET": self.webhook_list, "POST": self.webhook_create},
        }

    # ------------------------------------------------------------------ shared validation
    def _options(self, params: dict[str, Any], prefix: str, errors: Errors) -> Options:
        cfg = self.state.config
        opts = Options()
        text = params.get("message")
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            text = str(text)
        if text is None or (isinstance(text, str) and not text.strip()):
            errors.add(f"{prefix}message", f"The {prefix}message field is required.")
        elif not isinstance(text, str):
            errors.add(f"{prefix}message", f"The {prefix}message must be a string.")
        elif len(text) > cfg.max_message_chars:
            errors.add(
                f"{prefix}message",
                f"The {prefix}message must not be greater than {cfg.max_message_chars} characters.",
            )
        else:
            opts.text = text
        opts.sender = required(params, "sender", f"{prefix}sender", errors) or ""
        opts.custom = scalar(params, "custom", f"{prefix}custom", errors) or ""
        sms_type = (scalar(params, "type", f"{prefix}type", errors) or "A").upper()
        if sms_type not in ("N", "U", "A"):
            errors.add(f"{prefix}type", f"The selected {prefix}type is invalid.")
        opts.sms_type = sms_type
        flash = scalar(params, "flash", f"{prefix}flash", errors) or "0"
        if flash not in ("0", "1"):
            errors.add(f"{prefix}flash", f"The selected {prefix}flash is invalid.")
        else:
            opts.flash = int(flash)
        opts.entity_id = scalar(params, "entity_id", f"{prefix}entity_id", errors) or ""
        opts.template_id = scalar(params, "template_id", f"{prefix}template_id", errors) or ""
        port = scalar(params, "port", f"{prefix}port", errors) or ""
        if port and not port.isdigit():
            errors.add(f"{prefix}port", f"The {prefix}port must be an integer.")
        opts.port = port
        max_units = scalar(params, "max_units", f"{prefix}max_units", errors)
        if max_units is not None:
            if not max_units.isdigit() or int(max_units) < 1:
                errors.add(f"{prefix}max_units", f"The {prefix}max units must be an integer of at least 1.")
            else:
                opts.max_units = int(max_units)
        opts.name = scalar(params, "name", f"{prefix}name", errors) or ""
        self._tags(params, prefix, opts, errors)
        return opts

    def _tags(self, params: dict[str, Any], prefix: str, opts: Options, errors: Errors) -> None:
        raw, field_name = params.get("tags"), f"{prefix}tags"
        meta = params.get("meta")
        if raw is None and isinstance(meta, dict) and meta.get("tags") is not None:
            raw, field_name = meta.get("tags"), f"{prefix}meta.tags"
        if raw is None:
            return
        tags = split_list(raw)
        if tags is None:
            errors.add(field_name, f"The {field_name} must be an array.")
            return
        limit = self.state.config.max_tags
        if len(tags) > limit:
            errors.add(field_name, f"The {field_name} must not have more than {limit} items.")
            return
        opts.tags = tags

    def _service(self, params: dict[str, Any], field_name: str, errors: Errors) -> str:
        service = required(params, "service", field_name, errors)
        if service is not None and service not in self.state.config.services:
            errors.add(field_name, f"The selected {attr(field_name)} is invalid.")
        return service or ""

    def _webhook(self, params: dict[str, Any], field_name: str, errors: Errors) -> str | None:
        hook_id = scalar(params, "webhook_id", field_name, errors)
        if hook_id is not None and self.state.get_webhook(hook_id) is None:
            errors.add(field_name, f"The selected {attr(field_name)} is invalid.")
        return hook_id

    def _schedule(self, params: dict[str, Any], field_name: str, now: float, errors: Errors) -> float | None:
        raw = scalar(params, "time", field_name, errors)
        if raw is None:
            return None
        cfg, tz = self.state.config, self.state.tz
        parsed: datetime | None = None
        for fmt in TIME_FORMATS:
            try:
                parsed = datetime.strptime(raw.upper() if "%p" in fmt else raw, fmt)
                break
            except ValueError:
                continue
        if parsed is None:
            errors.add(field_name, f"The {field_name} does not match the format Y-m-d H:i:s.")
            return None
        when = parsed.replace(tzinfo=tz).timestamp()
        if when <= now + cfg.schedule_min_seconds:
            errors.add(
                field_name,
                f"The {field_name} must be more than {_duration(cfg.schedule_min_seconds)} in the future.",
            )
            return None
        if when >= now + cfg.schedule_max_seconds:
            errors.add(
                field_name,
                f"The {field_name} must be less than {_duration(cfg.schedule_max_seconds)} in the future.",
            )
            return None
        return when

    def _build(
        self, opts: Options, service: str, mobile: str, field_prefix: str, errors: Errors
    ) -> NewMessage:
        enc = encode(opts.text, opts.sms_type)
        if opts.max_units is not None and enc.units > opts.max_units:
            errors.add(
                f"{field_prefix}max_units",
                f"The message needs {enc.units} units, more than max_units ({opts.max_units}).",
            )
        rate = self.state.config.unit_charges.get(service, 1)
        return NewMessage(
            mobile=mobile,
            text=enc.text,
            sender=opts.sender,
            custom=opts.custom,
            units=enc.units,
            length=enc.length,
            charges=number(enc.units * rate),
            encoding=enc.encoding,
            sms_type=opts.sms_type,
            flash=opts.flash,
            entity_id=opts.entity_id,
            template_id=opts.template_id,
            port=opts.port,
            tags=opts.tags,
        )

    def _accept_one_text(
        self,
        opts: Options,
        service: str,
        numbers: list[str],
        errors: Errors,
        *,
        webhook_id: str | None,
        scheduled: float | None,
        now: float,
        endpoint: str,
    ) -> list[Message]:
        """Accept one text (``sms/send``, ``sms/bulk``) for every number: one validated template, copied."""
        template = self._build(opts, service, numbers[0], "", errors)
        errors.raise_if_any()
        items = [template] + [_with_mobile(template, n) for n in numbers[1:]]
        _, accepted = self._accept(
            items,
            service=service,
            webhook_id=webhook_id,
            scheduled_at=scheduled,
            now=now,
            endpoint=endpoint,
            name=opts.name,
        )
        return accepted

    def _accept(
        self,
        items: list[NewMessage],
        *,
        service: str,
        webhook_id: str | None,
        scheduled_at: float | None,
        now: float,
        endpoint: str,
        name: str = "",
        webhook_field: str = "webhook_id",
    ) -> tuple[str, list[Message]]:
        try:
            return self.state.accept(
                items,
                service=service,
                webhook_id=webhook_id,
                scheduled_at=scheduled_at,
                now=now,
                endpoint=endpoint,
                name=name,
            )
        except InsufficientBalance:
            raise ApiError(self.state.config.insufficient_balance_status, "Insufficient balance.") from None
        except UnknownWebhook:
            raise validation_error(webhook_field, f"The selected {attr(webhook_field)} is invalid.") from None

    def _refuse(self, errors: Errors, field_name: str, text: str) -> None:
        """A refused (blocked) number: a 422 naming the field, or only a message that names neither the node
        nor the number (``refusal_names_node=False``)."""
        if self.state.config.refusal_names_node:
            errors.add(field_name, text)
        else:
            raise ApiError(422, "The request contains a blocked number.")

    def _not_suppressed(self, numbers: list[str]) -> list[str]:
        """The numbers a send goes to: suppressed ones (opted out of everything) are left out silently."""
        suppressed = set(self.state.config.suppressed_numbers)
        return [n for n in numbers if n not in suppressed] if suppressed else numbers

    def _send_rows(self, messages: list[Message]) -> list[dict[str, Any]]:
        number_format = self.state.config.number_format
        return [
            {
                "id": m.id,
                "mobile": display_mobile(m.mobile, number_format),
                "status": AWAITING_DLR,
                "units": m.units,
                "length": m.length,
                "charges": m.charges,
                "customid": m.custom,
                "iso_code": iso_code(m.mobile),
                "submitted_at": m.submitted_at,
            }
            for m in messages
        ]

    # ------------------------------------------------------------------ sms/send
    def send(self, req: ApiRequest) -> ApiResult:
        params, cfg, now = req.params, self.state.config, self.state.time()
        errors = Errors()
        numbers = split_list(params.get("to"))
        if not numbers:
            errors.add("to", "The to field is required.")
            numbers = []
        else:
            bad = [n for n in numbers if not NUMBER_RE.match(n)]
            blocked = set(cfg.refused_numbers)
            refused = [n for n in numbers if n in blocked]
            if bad:
                errors.add("to", f"The to field contains an invalid number: {bad[0]}.")
            elif refused:
                self._refuse(errors, "to", f"The to field contains a blocked number: {refused[0]}.")
            elif len(numbers) > cfg.max_numbers_per_request:
                errors.add(
                    "to", f"The to field must not have more than {cfg.max_numbers_per_request} numbers."
                )
        opts = self._options(params, "", errors)
        service = self._service(params, "service", errors)
        webhook_id = self._webhook(params, "webhook_id", errors)
        scheduled = self._schedule(params, "time", now, errors)
        errors.raise_if_any()
        numbers = self._not_suppressed(numbers)
        accepted = (
            self._accept_one_text(
                opts,
                service,
                numbers,
                errors,
                webhook_id=webhook_id,
                scheduled=scheduled,
                now=now,
                endpoint="sms/send",
            )
            if numbers
            else []
        )
        return ok(
            {
                "status": 200,
                "message": f"{len(accepted)} numbers accepted for delivery.",
                "data": self._send_rows(accepted),
            }
        )

    # ------------------------------------------------------------------ sms/send/json
    def send_json(self, req: ApiRequest) -> ApiResult:
        params, cfg, now = req.params, self.state.config, self.state.time()
        root = params.get("root", {})
        if root is None:
            root = {}
        if not isinstance(root, dict):
            raise validation_error("root", "The root must be an object.")
        nodes = params.get("nodes")
        if isinstance(nodes, dict) and all(str(k).isdigit() for k in nodes):
            nodes = [nodes[k] for k in sorted(nodes, key=lambda k: int(k))]
        if not isinstance(nodes, list) or not nodes:
            raise validation_error("nodes", "The nodes field is required.")
        if len(nodes) > cfg.max_numbers_per_request:
            raise validation_error(
                "nodes", f"The nodes must not have more than {cfg.max_numbers_per_request} items."
            )
        errors = Errors()
        service = self._service(root, "root.service", errors)
        webhook_id = self._webhook(root, "root.webhook_id", errors)
        scheduled = self._schedule(root, "root.time", now, errors)
        name = scalar(root, "name", "root.name", errors) or ""
        pending: list[tuple[int, Options, str]] = []
        refused = set(cfg.refused_numbers)
        for i, node in enumerate(nodes):
            prefix = f"nodes.{i}."
            if not isinstance(node, dict):
                errors.add(f"nodes.{i}", f"The nodes.{i} must be an object.")
                continue
            merged = {**root, **{k: v for k, v in node.items() if k not in ROOT_ONLY}}
            numbers = split_list(merged.get("to"))
            mobile = ""
            if not numbers:
                errors.add(f"{prefix}to", f"The {prefix}to field is required.")
            elif len(numbers) != 1:
                errors.add(f"{prefix}to", f"The {prefix}to field must contain a single number.")
            elif not NUMBER_RE.match(numbers[0]):
                errors.add(f"{prefix}to", f"The {prefix}to field contains an invalid number: {numbers[0]}.")
            elif numbers[0] in refused:
                self._refuse(errors, f"{prefix}to", f"The {prefix}to number is blocked (series blocked).")
            else:
                mobile = numbers[0]
            opts = self._options(merged, prefix, errors)
            pending.append((i, opts, mobile))
        errors.raise_if_any()
        items = [self._build(opts, service, mobile, f"nodes.{i}.", errors) for i, opts, mobile in pending]
        errors.raise_if_any()
        if cfg.suppressed_numbers:
            suppressed = set(cfg.suppressed_numbers)
            items = [item for item in items if item.mobile not in suppressed]
        group_id, accepted = self._accept(
            items,
            service=service,
            webhook_id=webhook_id,
            scheduled_at=scheduled,
            now=now,
            endpoint="sms/send/json",
            name=name,
            webhook_field="root.webhook_id",
        )
        body: dict[str, Any] = {"status": 200, "message": f"{len(accepted)} numbers accepted for delivery."}
        if name:
            body["group_id"] = group_id
        body["data"] = self._send_rows(accepted)
        return ok(body)

    # ------------------------------------------------------------------ sms/bulk
    def bulk(self, req: ApiRequest) -> ApiResult:
        params, cfg, now = req.params, self.state.config, self.state.time()
        errors = Errors()
        opts = self._options(params, "", errors)
        service = self._service(params, "service", errors)
        webhook_id = self._webhook(params, "webhook_id", errors)
        scheduled = self._schedule(params, "time", now, errors)
        upload = req.files.get("file")
        if upload is None:
            errors.add("file", "The file field is required.")
        errors.raise_if_any()
        assert upload is not None  # narrowed by the validation above
        column = scalar(params, "column", "column", errors)
        if not cfg.bulk_keeps_custom:
            opts.custom = ""  # whether bulk rows keep `custom` is undocumented: model the answer "no"
        numbers = read_numbers(upload, column)
        if not numbers:
            raise validation_error("file", "The file does not contain any valid mobile number.")
        if len(numbers) > cfg.max_bulk_numbers:
            raise validation_error(
                "file", f"The file must not contain more than {cfg.max_bulk_numbers} numbers."
            )
        numbers = self._not_suppressed(numbers)
        accepted = (
            self._accept_one_text(
                opts,
                service,
                numbers,
                errors,
                webhook_id=webhook_id,
                scheduled=scheduled,
                now=now,
                endpoint="sms/bulk",
            )
            if numbers
            else []
        )
        return ok({"status": 200, "message": f"{len(accepted)} numbers accepted for delivery.", "data": []})

    # ------------------------------------------------------------------ sms/status
    def status(self, req: ApiRequest) -> ApiResult:
        errors = Errors()
        filters: dict[str, str] = {}
        for key in ("id", "mobile", "cid", "group_id", "date"):
            value = scalar(req.params, key, key, errors)
            if value is not None:
                filters[key] = value
        errors.raise_if_any()
        if not filters:
            raise validation_error(
                "id", "The id field is required when none of mobile / cid / group id / date are present."
            )
        if "date" in filters and not _valid_date(filters["date"]):
            raise validation_error("date", "The date does not match the format Y-m-d.")
        state = self.state
        with state.lock:
            cfg = state.config
            paginated = "group_id" in filters or "date" in filters or cfg.paginate_lookups
            found = state.lookup(filters)
            if not paginated:
                rows = [state.status_row(m) for m in found]
                return ok({"status": "OK", "code": 200, "message": "OK", "data": rows})
            per_page = cfg.status_page_size
            page = page_number(req.params)
            start = (page - 1) * per_page
            rows = [state.status_row(m) for m in found[start : start + per_page]]
            total = len(found)
        links, meta = paginate(
            total, page, per_page, len(rows), req.base_url + "sms/status", list(filters.items())
        )
        return ok({"status": "OK", "code": 200, "message": "OK", "data": rows, "links": links, "meta": meta})

    # ------------------------------------------------------------------ balance, auth/me
    def balance(self, req: ApiRequest) -> ApiResult:
        errors = Errors()
        service = scalar(req.params, "service", "service", errors)
        errors.raise_if_any()
        return ok({"status": 200, "message": "OK", "data": self.state.balance_rows(service)})

    def me(self, req: ApiRequest) -> ApiResult:
        return ok(
            {
                "status": "OK",
                "code": 200,
                "message": "OK",
                "data": {
                    "id": 1,
                    "username": "emulator",
                    "name": "Qikberry Emulator",
                    "email": "emulator@example.invalid",
                },
            }
        )

    # ------------------------------------------------------------------ developer/webhooks
    def _webhook_fields(self, params: dict[str, Any], *, partial: bool) -> dict[str, Any]:
        errors = Errors()
        changes: dict[str, Any] = {}
        for key in ("name", "uri"):
            value = (scalar if partial else required)(params, key, key, errors)
            if value is not None:
                changes[key] = value
        uri = changes.get("uri")
        if uri is not None and not _valid_url(uri):
            errors.add("uri", "The uri must be a valid URL.")
        status = scalar(params, "status", "status", errors)
        if status is not None:
            if status not in ("0", "1"):
                errors.add("status", "The selected status is invalid.")
            else:
                changes["status"] = int(status)
        for key in ("secret", "token"):
            value = scalar(params, key, key, errors)
            if value is not None:
                changes[key] = value
        errors.raise_if_any()
        return changes

    def webhook_create(self, req: ApiRequest) -> ApiResult:
        fields = self._webhook_fields(req.params, partial=False)
        hook = self.state.create_webhook(
            name=fields["name"],
            uri=fields["uri"],
            status=fields.get("status", 1),
            secret=fields.get("secret", ""),
            token=fields.get("token", ""),
        )
        return ok({"status": "OK", "code": 200, "message": "Created successfully", "data": hook})

    def webhook_list(self, req: ApiRequest) -> ApiResult:
        name_filter = None
        flt = req.params.get("filter")
        if isinstance(flt, dict) and isinstance(flt.get("name"), str):
            name_filter = flt["name"]
        hooks = self.state.list_webhooks(name_filter)
        page = page_number(req.params)
        start = (page - 1) * WEBHOOKS_PER_PAGE
        rows = hooks[start : start + WEBHOOKS_PER_PAGE]
        extra = [("filter[name]", name_filter)] if name_filter else []
        links, meta = paginate(
            len(hooks), page, WEBHOOKS_PER_PAGE, len(rows), req.base_url + "developer/webhooks", extra
        )
        return ok({"status": "OK", "code": 200, "message": "OK", "data": rows, "links": links, "meta": meta})

    def webhook_get(self, req: ApiRequest) -> ApiResult:
        hook = self.state.get_webhook(req.args[0])
        if hook is None:
            raise ApiError(404, "Not Found.")
        return ok({"status": "OK", "code": 200, "message": "OK", "data": hook})

    def webhook_update(self, req: ApiRequest) -> ApiResult:
        if self.state.get_webhook(req.args[0]) is None:
            raise ApiError(404, "Not Found.")
        changes = self._webhook_fields(req.params, partial=req.method == "PATCH")
        hook = self.state.update_webhook(req.args[0], changes)
        if hook is None:
            raise ApiError(404, "Not Found.")
        return ok({"status": "OK", "code": 200, "message": "Updated successfully", "data": hook})

    def webhook_delete(self, req: ApiRequest) -> ApiResult:
        # Soft delete, as documented: the webhook stays listed with status 0 and receives nothing.
        if self.state.update_webhook(req.args[0], {"status": 0}) is None:
            raise ApiError(404, "Not Found.")
        return ok({"status": "OK", "code": 200, "message": "Deleted successfully", "data": []})

    # ------------------------------------------------------------------ text the API cannot store
    def check_text(self, req: ApiRequest) -> None:
        """Refuse a request whose parameters hold an unpaired UTF-16 surrogate (JSON can carry ``"\\ud83d"``
        and Python's json reads it into a str; it has no UTF-8 form, so the API cannot store it).

        Assumed answer: a validation error (``unpaired_surrogate_status``, 422) naming the parameter, before
        anything is accepted; see docs/emulator.md.
        """
        path = unpaired_surrogate(req.params)
        if path is not None:
            text = f"The {path} must be a valid UTF-8 string."
            raise ApiError(self.state.config.unpaired_surrogate_status, text, {path: [text]})

    # ------------------------------------------------------------------ routing
    def route(self, path: str) -> tuple[dict[str, Callable[[ApiRequest], ApiResult]], tuple[str, ...]] | None:
        handlers = self._routes.get(path)
        if handlers is not None:
            return handlers, ()
        head, _, tail = path.rpartition("/")
        if head == "developer/webhooks" and tail:
            return {
                "GET": self.webhook_get,
                "PUT": self.webhook_update,
                "PATCH": self.webhook_update,
                "DELETE": self.webhook_delete,
            }, (tail,)
        return None


# ---------------------------------------------------------------------------- helpers
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def unpaired_surrogate(value: Any, path: str = "") -> str | None:
    """The dotted path (``nodes.3.message``) of the first key or string holding a UTF-16 surrogate, or None.

    Python's json joins an escaped pair (``"\\ud83d\\ude00"``) into one character, so any surrogate left in a
    parsed str is an unpaired one.
    """
    if isinstance(value, str):
        return (path or "body") if _SURROGATE_RE.search(value) else None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        here = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and _SURROGATE_RE.search(key):
            return here
        found = unpaired_surrogate(item, here)
        if found is not None:
            return found
    return None


def _with_mobile(template: NewMessage, mobile: str) -> NewMessage:
    return NewMessage(
        mobile=mobile,
        text=template.text,
        sender=template.sender,
        custom=template.custom,
        units=template.units,
        length=template.length,
        charges=template.charges,
        encoding=template.encoding,
        sms_type=template.sms_type,
        flash=template.flash,
        entity_id=template.entity_id,
        template_id=template.template_id,
        port=template.port,
        tags=template.tags,
    )


def _duration(seconds: float) -> str:
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{int(seconds // 86400)} days"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)} minutes"
    return f"{seconds:g} seconds"


def _valid_date(value: str) -> bool:
    if not DATE_RE.match(value):
        return False
    try:
        datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        return False
    return True


def _valid_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def page_number(params: dict[str, Any]) -> int:
    raw = params.get("page")
    try:
        page = int(str(raw))
    except (TypeError, ValueError):
        return 1
    return page if page >= 1 else 1


def paginate(
    total: int, page: int, per_page: int, count: int, path: str, query: list[tuple[str, str]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Laravel API-resource ``links`` and ``meta`` for one page."""
    last_page = max(1, math.ceil(total / per_page))

    def url(n: int) -> str:
        return f"{path}?{urlencode([*query, ('page', str(n))])}"

    # As Laravel's paginator: a previous page exists for every page after the first, even past the end.
    prev_url = url(page - 1) if page > 1 else None
    next_url = url(page + 1) if page < last_page else None
    links = {"first": url(1), "last": url(last_page), "prev": prev_url, "next": next_url}
    meta_links: list[dict[str, Any]] = [{"url": prev_url, "label": "&laquo; Previous", "active": False}]
    for item in _window(page, last_page):
        if item is None:
            meta_links.append({"url": None, "label": "...", "active": False})
        else:
            meta_links.append({"url": url(item), "label": str(item), "active": item == page})
    meta_links.append({"url": next_url, "label": "Next &raquo;", "active": False})
    start = (page - 1) * per_page
    meta = {
        "current_page": page,
        "from": start + 1 if count else None,
        "last_page": last_page,
        "links": meta_links,
        "path": path,
        "per_page": per_page,
        "to": start + count if count else None,
        "total": total,
    }
    return links, meta


def _window(page: int, last_page: int, on_each_side: int = 3) -> list[int | None]:
    """Laravel's UrlWindow: every page when few, else a slider with ``...`` gaps (None)."""
    window = on_each_side * 2
    if last_page < window + 8:
        return list(range(1, last_page + 1))
    if page <= window:
        return [*range(1, window + 3), None, last_page - 1, last_page]
    if page > last_page - window:
        return [1, 2, None, *range(last_page - (window + 2) + 1, last_page + 1)]
    return [1, 2, None, *range(page - on_each_side, page + on_each_side + 1), None, last_page - 1, last_page]


def read_numbers(upload: UploadedFile, column: str | None) -> list[str]:
    """Valid numbers from an uploaded TXT (one per line) or CSV file; invalid rows are skipped."""
    stream = io.TextIOWrapper(upload.file, encoding="utf-8-sig", errors="replace", newline="")
    try:
        name = upload.filename.lower()
        is_csv = name.endswith(".csv") or "csv" in upload.content_type or column is not None
        if not is_csv:
            return [line.strip() for line in stream if NUMBER_RE.match(line.strip())]
        reader = csv.reader(stream)
        header = next(reader, None)
        if header is None:
            return []
        cells = [cell.strip() for cell in header]
        lowered = [cell.lower() for cell in cells]
        index: int | None = None
        header_is_data = False
        if column is not None:
            if column.lower() in lowered:
                index = lowered.index(column.lower())
            elif column.isdigit() and int(column) < max(1, len(cells)):
                index = int(column)
            else:
                raise validation_error("column", "The selected column is invalid.")
        else:
            index = next(
                (i for i, cell in enumerate(lowered) if any(h in cell for h in MOBILE_HEADER_HINTS)), None
            )
            if index is None:
                index = 0
                # A file whose first row is already a number has no header row.
                header_is_data = bool(cells) and bool(NUMBER_RE.match(cells[0]))
        numbers = [cells[index]] if header_is_data else []
        for row in reader:
            if index < len(row):
                cell = row[index].strip()
                if NUMBER_RE.match(cell):
                    numbers.append(cell)
        return numbers
    finally:
        stream.detach()
