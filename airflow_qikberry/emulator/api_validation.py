"""
What the send endpoints share: per-message options, recipients, service, webhook and schedule checks.

:class:`SendValidation` validates a send's parameters the way the API does, builds the messages and hands
them to :meth:`EmulatorState.accept <airflow_qikberry.emulator.state.EmulatorState.accept>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from airflow_qikberry.emulator.encoding import encode
from airflow_qikberry.emulator.envelope import (
    ApiError,
    Errors,
    attr,
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

NUMBER_RE = re.compile(r"^[1-9][0-9]{7,14}$")
ISO_PREFIXES = (("91", "IN"), ("44", "GB"), ("1", "US"))
TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %I:%M%p", "%Y-%m-%d %I:%M %p", "%Y-%m-%d %H:%M")


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


class SendValidation:
    """Validation and acceptance shared by the send endpoints over one :class:`EmulatorState`."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

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
        """
        Accept one text (``sms/send``, ``sms/bulk``) for every number: one validated template, copied.

        Suppressed numbers are left out first; when none is left, nothing is accepted (and the text, sent to
        nobody, is not checked).
        """
        numbers = self._not_suppressed(numbers)
        if not numbers:
            return []
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
