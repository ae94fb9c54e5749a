"""
Sends by stored template, prepared.

The request of ``sms/send/template`` built and checked, and how its answer is read and its foreign id
looked up. The sibling of :mod:`airflow_qikberry.sends` (same :class:`~airflow_qikberry.sends.PreparedSend`
shape, run by ``QikberryHook.send_prepared``), kept apart so
each module stays small.

Example::

    catalog = hook.dlt_catalog()
    prepared = prepare_template(hook.settings, ["919876543210"], SendOptions(template="otp-login",
                                template_data={"otp": "4711"}), catalog)
    prepared.text, prepared.length.units  # what a dry run shows
    sent = hook.send_prepared(prepared)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from airflow_qikberry import idempotency as ido
from airflow_qikberry import phone
from airflow_qikberry.exceptions import QikberryValidationError
from airflow_qikberry.payloads import check_request_size
from airflow_qikberry.precheck import Subject
from airflow_qikberry.protocol import Paths
from airflow_qikberry.send_options import DltCheck, SendOptions, TemplateSendParams
from airflow_qikberry.sends import SendIO, _flag, one_text_send, shown_numbers

if TYPE_CHECKING:
    from airflow_qikberry.catalog import Catalog, DltTemplate
    from airflow_qikberry.connection import ConnectionSettings
    from airflow_qikberry.models import SentMessage
    from airflow_qikberry.sms_text import MessageLength

__all__ = ["TemplateRequest", "prepare_template"]


class TemplateRequest(NamedTuple):
    """
    A checked ``sms/send/template``.

    Its numbers and its body less recipients and foreign id, and, when the account's templates could be
    read, the stored template, the text it renders (``text``), how that text is billed and the route it
    takes. ``unresolved`` says why the template could not be looked up.
    """

    numbers: list[str]
    payload: dict[str, Any]
    template: DltTemplate | None
    text: str | None
    length: MessageLength | None
    service: str | None
    custom_id: str | None
    resend: bool
    dlt_check: DltCheck = "auto"
    unresolved: str | None = None

    @property
    def sender(self) -> str | None:
        return self.template.sender if self.template is not None else None

    def dlt_subjects(self) -> list[Subject]:
        template = self.template
        if template is None:
            return [Subject("template", None, "", self.service or "", None, skip=self.unresolved)]
        service = self.service or ""
        return [
            Subject("template", self.text, template.sender or "", service, template.template_id, template)
        ]

    def to_send(self, io: SendIO) -> tuple[ido.Send[list[SentMessage]], bool]:
        numbers, length = self.numbers, self.length
        identity = ido.task_identity()
        cid = self.custom_id or ido.derive_custom_id(
            ido.send_fingerprint(numbers, {**self.payload, "endpoint": Paths.SEND_TEMPLATE}),
            identity,
            fresh=self.resend,
        )
        meta = {**self.payload["meta"], "foreign_id": cid}
        body = {**self.payload, "recipient": {"to": list(numbers)}, "meta": meta}
        io.log.info(
            "Sending template %s to %d number(s) [%s], foreign id %s",
            self.template.describe() if self.template is not None else repr(self.payload),
            len(numbers),
            shown_numbers(numbers),
            cid,
        )
        send = one_text_send(io, Paths.SEND_TEMPLATE, body, numbers, cid, length=length)
        return send, ido.is_task_retry(identity) and not self.resend


def prepare_template(
    settings: ConnectionSettings,
    to: Any,
    options: SendOptions,
    catalog: Catalog | None,
    *,
    resend: bool = False,
) -> TemplateRequest:
    """
    Check and build a send of a stored template (``sms/send/template``).

    With the account's templates (``catalog``) the template is found by alias, stored id, DLT template id
    or name, its variables are checked, and its text is rendered and measured here; without them (the
    account may not read ``sms/templates``) the API alone resolves ``options.template`` (as ``id`` when
    uuid-shaped, else as ``alias``) and renders it. See ``QikberryHook.send_template``.
    """
    from airflow_qikberry import sms_text
    from airflow_qikberry.payloads import template_payload

    resend = _flag(resend, "resend")
    options.refuse_unless(TemplateSendParams, Paths.SEND_TEMPLATE)
    ref = options.template
    if ref is None:
        raise QikberryValidationError(
            "template: name the stored template: its alias, its id, or its DLT template id.", field="template"
        )
    numbers = phone.normalize_numbers(to, default_region=settings.default_region)
    check_request_size(len(numbers), "to")
    data = dict(options.template_data or ())
    if catalog is None or catalog.templates_unavailable:
        why = catalog.templates_unavailable if catalog is not None else "not read"
        unresolved = f"the account's templates could not be read ({why}), so the text is not known"
        payload = template_payload(options, None)
        return TemplateRequest(
            numbers, payload, None, None, None, None, options.custom_id, resend, options.dlt_check, unresolved
        )
    template = catalog.find(ref)
    if template is None:
        known = ", ".join(repr(t.alias or t.name) for t in catalog.templates[:10]) or "none"
        raise QikberryValidationError(
            f"template: {ref!r} is not among the account's {len(catalog.templates)} template(s) (by alias, "
            f"id, DLT template id or name); the account has: {known}"
            + (", ..." if len(catalog.templates) > 10 else "")
            + ". hook.get_templates() lists them.",
            field="template",
        )
    body = template.parsed
    text = length = None
    if body is not None:
        missing = [name for name in body.variables if name not in data]
        if missing:
            raise QikberryValidationError(
                f"template_data.{missing[0]}: missing; template {template.describe()} needs "
                + ", ".join(f"{{{{{name}}}}}" for name in body.variables)
                + f" (given: {', '.join(sorted(data)) or 'none'}).",
                field=f"template_data.{missing[0]}",
            )
        text = body.render(data)
        length = sms_text.validate_message(text, field="template_data")
    payload = template_payload(options, template)
    return TemplateRequest(
        numbers,
        payload,
        template,
        text,
        length,
        catalog.service_of(template),
        options.custom_id,
        resend,
        options.dlt_check,
    )
