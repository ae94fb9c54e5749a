"""
The send endpoints: ``sms/send``, ``sms/send/json``, ``sms/bulk`` and ``sms/send/template``.

Built on :class:`~airflow_qikberry.emulator.api_validation.SendValidation`; :func:`read_numbers` reads the
recipients of a bulk upload.
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any

from airflow_qikberry.emulator.api_validation import NUMBER_RE, Options, SendValidation, _with_mobile
from airflow_qikberry.emulator.dlt import render
from airflow_qikberry.emulator.envelope import (
    ApiRequest,
    ApiResult,
    Errors,
    ok,
    scalar,
    split_list,
    validation_error,
)
from airflow_qikberry.emulator.state import (
    AWAITING_DLR,
    Message,
    display_mobile,
)

if TYPE_CHECKING:
    from airflow_qikberry.emulator.forms import UploadedFile
    from airflow_qikberry.emulator.registry import Template

ROOT_ONLY = ("service", "time", "webhook_id")
MOBILE_HEADER_HINTS = ("mobile", "phone", "number")


class SendApi(SendValidation):
    """The send endpoints over one :class:`EmulatorState`."""

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
        accepted = self._accept_one_text(
            opts,
            service,
            numbers,
            errors,
            webhook_id=webhook_id,
            scheduled=scheduled,
            now=now,
            endpoint="sms/send",
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
        accepted = self._accept_one_text(
            opts,
            service,
            numbers,
            errors,
            webhook_id=webhook_id,
            scheduled=scheduled,
            now=now,
            endpoint="sms/bulk",
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
