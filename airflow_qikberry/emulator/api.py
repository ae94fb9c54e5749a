"""
The Qikberry v2 endpoints: validation, state changes and the documented response shapes.

Transport-free: the HTTP layer hands over an :class:`ApiRequest` and writes back the :class:`ApiResult`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_qikberry.emulator.api_developer import DeveloperApi
from airflow_qikberry.emulator.api_dlt import DltApi
from airflow_qikberry.emulator.dlt import render
from airflow_qikberry.emulator.encoding import encode
from airflow_qikberry.emulator.envelope import (
    ApiError,
    ApiRequest,
    ApiResult,
    Errors,
    attr,
    ok,
    page_number,
    paginate,
    required,
    scalar,
    split_list,
    validation_error,
)
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

if TYPE_CHECKING:
    from airflow_qikberry.emulator.forms import UploadedFile
    from airflow_qikberry.emulator.registry import Template

NUMBER_RE = re.compile(r"^[1-9][0-9]{7,14}$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
ISO_PREFIXES = (("91", "IN"), ("44", "GB"), ("1", "US"))
TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %I:%M%p", "%Y-%m-%d %I:%M %p", "%Y-%m-%d %H:%M")
ROOT_ONLY = ("service", "time", "webhook_id")
MOBILE_HEADER_HINTS = ("mobile", "phone", "number")


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
            "sms/send/template": {"POST": self.send_template},
        }
        developer = DeveloperApi(state)
        dlt = DltApi(state)
        self._routes.update(developer.routes())
        self._routes.update(dlt.routes())
        self._item_routes = {**developer.item_routes(), **dlt.item_routes()}

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
        """
        Refuse a blocked number.

        With a 422 naming the field, or only a message that names neither the node nor the number
        (``refusal_names_node=False``).
        """
        if self.state.config.refusal_names_node:
            errors.add(field_name, text)
        else:
            raise ApiError(422, "The request contains a blocked number.")

    def _not_suppressed(self, numbers: list[str]) -> list[str]:
        """Return the numbers a send goes to: suppressed ones (opted out of everything) are left out."""
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

    def _numbers(self, raw: Any, field_name: str, errors: Errors) -> list[str]:
        """Return the recipients of a one-text send (``to``), checked; one bad number refuses the request."""
        cfg = self.state.config
        numbers = split_list(raw)
        if not numbers:
            errors.add(field_name, f"The {field_name} field is required.")
            return []
        bad = [n for n in numbers if not NUMBER_RE.match(n)]
        blocked = set(cfg.refused_numbers)
        refused = [n for n in numbers if n in blocked]
        if bad:
            errors.add(field_name, f"The {field_name} field contains an invalid number: {bad[0]}.")
        elif refused:
            self._refuse(
                errors, field_name, f"The {field_name} field contains a blocked number: {refused[0]}."
            )
        elif len(numbers) > cfg.max_numbers_per_request:
            errors.add(
                field_name,
                f"The {field_name} field must not have more than {cfg.max_numbers_per_request} numbers.",
            )
        return numbers

    # ------------------------------------------------------------------ sms/send
    def send(self, req: ApiRequest) -> ApiResult:
        params, now = req.params, self.state.time()
        errors = Errors()
        numbers = self._numbers(params.get("to"), "to", errors)
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

    # ------------------------------------------------------------------ sms/send/template
    def send_template(self, req: ApiRequest) -> ApiResult:
        """
        Send a stored template (reference 4.6).

        ``alias`` or ``id``, ``recipient.to``, ``data`` (variable values), optional ``meta`` {webhook_id,
        foreign_id, tags, flash}. ``foreign_id`` is the messages' custom id: ``sms/status?cid=`` finds them by
        it and delivery reports carry it as ``cid``/``custom``.
        """
        params, cfg, now = req.params, self.state.config, self.state.time()
        errors = Errors()
        template = self._stored_template(params, errors)
        recipient = params.get("recipient")
        if not isinstance(recipient, dict):
            recipient = {}
            if params.get("recipient") is not None:
                errors.add("recipient", "The recipient must be an object.")
        numbers: list[str] = []
        if recipient.get("to") is None and recipient.get("group_id") is not None:
            errors.add("recipient.group_id", "Contact segments are not emulated: give recipient.to.")
        elif not errors.has("recipient"):
            numbers = self._numbers(recipient.get("to"), "recipient.to", errors)
        meta = params.get("meta")
        if meta is None:
            meta = {}
        elif not isinstance(meta, dict):
            errors.add("meta", "The meta must be an object.")
            meta = {}
        opts = Options(sms_type="A")
        opts.custom = scalar(meta, "foreign_id", "meta.foreign_id", errors) or ""
        flash = scalar(meta, "flash", "meta.flash", errors) or "0"
        if flash not in ("0", "1"):
            errors.add("meta.flash", "The selected meta.flash is invalid.")
        else:
            opts.flash = int(flash)
        self._tags({"meta": meta}, "", opts, errors)
        webhook_id = self._webhook(meta, "meta.webhook_id", errors)
        data = params.get("data")
        if data is None:
            data = {}
        elif not isinstance(data, dict):
            errors.add("data", "The data must be an object.")
            data = {}
        if template is not None and not errors.has("data"):
            opts.text = self._render(template, data, errors)
        errors.raise_if_any()
        assert template is not None  # errors were raised otherwise
        opts.sender, opts.template_id = template.sender, template.template_id
        numbers = self._not_suppressed(numbers)
        accepted: list[Message] = []
        if numbers:
            first = self._build(opts, template.service, numbers[0], "", errors)
            errors.raise_if_any()
            first.template_ref = template.id
            items = [first] + [_with_mobile(first, n) for n in numbers[1:]]
            _, accepted = self._accept(
                items,
                service=template.service,
                webhook_id=webhook_id,
                scheduled_at=None,
                now=now,
                endpoint="sms/send/template",
                webhook_field="meta.webhook_id",
            )
        rows = [
            {
                "id": m.id,
                "channel": "sms",
                "from": m.sender,
                "to": display_mobile(m.mobile, cfg.number_format),
                "credits": str(m.charges),
                "created_at": m.submitted_at,
                "status": AWAITING_DLR,
                "foreign_id": m.custom,
            }
            for m in accepted
        ]
        return ok({"status": "OK", "message": "Message(s) Queued successfully", "data": rows})

    def _stored_template(self, params: dict[str, Any], errors: Errors) -> Template | None:
        """Return the template named by ``id`` (its uuid; wins when both are given) or ``alias``."""
        template_uuid = scalar(params, "id", "id", errors)
        alias = scalar(params, "alias", "alias", errors)
        state = self.state
        with state.lock:
            if template_uuid is not None:
                found = state.registry.templates.get(template_uuid)
                if found is None:
                    errors.add("id", "The selected id is invalid.")
                return found
            if alias is not None:
                found = state.registry.template_by_alias(alias)
                if found is None:
                    errors.add("alias", "The selected alias is invalid.")
                return found
        if not errors.has("id") and not errors.has("alias"):
            errors.add("alias", "The alias field is required when id is not present.")
        return None

    def _render(self, template: Template, data: dict[str, Any], errors: Errors) -> str:
        values: dict[str, str] = {}
        for name in template.body.variables:
            value = scalar(data, name, f"data.{name}", errors)
            if value is None:
                if not errors.has(f"data.{name}"):
                    errors.add(f"data.{name}", f"The data.{name} field is required.")
                continue
            # A value is inserted as given (scalar() stripped it; keep the original string's spaces).
            raw = data[name]
            values[name] = raw if isinstance(raw, str) else value
        if len(values) < len(template.body.variables):
            return ""
        text = render(template.body, values)
        limit = self.state.config.max_message_chars
        if len(text) > limit:
            errors.add("data", f"The rendered message must not be greater than {limit} characters.")
        return text

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

    # ------------------------------------------------------------------ text the API cannot store
    def check_text(self, req: ApiRequest) -> None:
        r"""
        Refuse a request whose parameters hold an unpaired UTF-16 surrogate.

        JSON can carry ``"\ud83d"`` and Python's json reads it into a str; it has no UTF-8 form, so the API
        cannot store it.

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
        item = self._item_routes.get(head)
        if item is not None and tail:
            return item, (tail,)
        return None


# ---------------------------------------------------------------------------- helpers
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def unpaired_surrogate(value: Any, path: str = "") -> str | None:
    r"""
    Return the dotted path (``nodes.3.message``) of the first key or string holding a surrogate, or None.

    Python's json joins an escaped pair (``"\ud83d\ude00"``) into one character, so any surrogate left in a
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
        template_ref=template.template_ref,
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


def read_numbers(upload: UploadedFile, column: str | None) -> list[str]:
    """Return valid numbers from an uploaded TXT (one per line) or CSV file; invalid rows are skipped."""
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
