"""
QikberrySendSmsOperator: send one text, or a stored DLT template, to one or more numbers from a DAG.

DAG files import this module at every parse, so it imports only the base class: the hook, the checks,
``requests`` and ``phonenumbers`` are imported when the task runs, and the hook (which reads the connection)
is built in ``execute``, never in ``__init__``. The send parameters are read from the operator's attributes
of the same names into one :class:`~airflow_qikberry.send_options.SendOptions`.

Example::

    from airflow_qikberry.operators.sms import QikberrySendSmsOperator

    QikberrySendSmsOperator(
        task_id="send",
        to="{{ ti.xcom_pull('on_call_numbers') }}",
        message="Nightly load of {{ ds }} finished",
    )
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator

if TYPE_CHECKING:
    from airflow_qikberry.hooks.qikberry import QikberryHook
    from airflow_qikberry.models import SentMessage
    from airflow_qikberry.sends import SmsRequest
    from airflow_qikberry.sms_text import EncodingOption
    from airflow_qikberry.template_sends import TemplateRequest

__all__ = ["QikberrySendSmsOperator"]

#: Recipients shown (masked) in a dry run's ``sample`` and log line.
SAMPLE_SIZE = 5


def _flags(**flags: Any) -> tuple[bool, ...]:
    """
    Yes/no arguments as booleans.

    One given as text ("false" from a template, a Variable, a connection) is read as Airflow reads booleans,
    and anything else fails the DAG file's import naming the argument. Booleans, the usual case, cost nothing:
    validation is imported only for another type.
    """
    if all(isinstance(value, bool) for value in flags.values()):
        return tuple(flags.values())
    from airflow_qikberry.validation import validate_flag

    return tuple(validate_flag(value, field=name) for name, value in flags.items())


class QikberrySendSmsOperator(BaseOperator):
    """
    Send one SMS text to one or more numbers through the Qikberry API; returns the accepted messages.

    Every argument is validated before any request: a bad number, an empty or over-long text, a bad sender,
    schedule, custom id or more than 3 tags fail the task with a
    :class:`~airflow_qikberry.exceptions.QikberryValidationError` naming the field, and nothing is sent.

    The return value (XCom) is one dict per number: ``{"id", "mobile", "status", "units", "charges",
    "custom_id"}``, with ``mobile`` masked (``9198XXXXX210``). A delivery sensor can take the ids with
    ``{{ ti.xcom_pull('send') | map(attribute='id') | list }}``.

    A retried task does not send again what an earlier try had sent (the hook derives a custom id from the
    task and looks it up on a retry). ``resend=True`` sends again on purpose, e.g. after clearing the task.

    ``dry_run=True`` validates and renders everything, counts SMS units, runs the DLT pre-check, estimates
    credits from the balance (read-only calls), logs what would be sent and returns a summary; it sends
    nothing.

    Instead of ``message``, ``template`` sends a stored DLT template (``sms/send/template``) with its
    variables ``template_data``, from the template's sender (docs/dlt.md). Either way, a text sent with a
    DLT ``template_id`` (or by template) is checked against its registered template first (``dlt_check``).

    Example::

        from airflow_qikberry.operators.sms import QikberrySendSmsOperator

        send = QikberrySendSmsOperator(
            task_id="send",
            to="{{ ti.xcom_pull('on_call') }}",  # a list, a number or "9198..., +44 7700 900123"
            message="Load of {{ ds }} finished: {{ ti.xcom_pull('load')['rows'] }} rows",
            sender="QIKBRY",
            max_units=1,
        )

    :param to: recipients (templated): one number, a string of numbers separated by commas, semicolons, new
        lines or spaces, or a list (also a list rendered from XCom, with or without
        ``render_template_as_native_obj``). Numbers without a country code need ``default_region`` on the
        connection. At most 50,000.
    :param message: the text (templated); GSM-7 or Unicode (Devanagari, emoji), at most 4096 characters.
    :param template: instead of ``message``, a stored DLT template (templated): its alias, id, DLT
        template id or name. Sender and route are then the template's.
    :param template_data: the template's variables, e.g. ``{"otp": "4711"}`` (templated; a dict rendered
        as text is read back).
    :param dlt_check: the DLT pre-check: ``"auto"`` (default: where a template id is given and the template
        is known; says so when it cannot run), ``"required"`` (fail when it cannot run) or ``"off"``.
    :param sender: sender id / DLT header (templated); default: the connection's.
    :param service: route code such as ``T`` or ``P`` (templated); default: the connection's.
    :param template_id: DLT template id (templated).
    :param entity_id: DLT entity id (templated); default: the connection's.
    :param schedule_at: send later (templated): an aware datetime or ISO-8601 string with an offset, more
        than 5 minutes and less than 92 days ahead.
    :param custom_id: your idempotency key (templated): one id, one send. Default: derived from the task.
    :param tags: up to 3 opt-out tags, a list or a comma-separated string (templated).
    :param encoding: ``"auto"`` (default), ``"gsm7"`` or ``"ucs2"``.
    :param max_units: the most SMS parts the text may use; a longer text fails before sending.
    :param flash: send as a flash SMS.
    :param webhook_id: id of a delivery-report webhook registered with the API.
    :param resend: send again on a retried try instead of returning what an earlier try sent.
    :param dry_run: validate, count and estimate, but send nothing.
    :param qikberry_conn_id: the Airflow connection (templated).
    """

    template_fields: Sequence[str] = (
        "to",
        "message",
        "template",
        "template_data",
        "sender",
        "service",
        "template_id",
        "entity_id",
        "schedule_at",
        "custom_id",
        "tags",
        "qikberry_conn_id",
    )
    # Airflow 2.x UI: "doc" shows the text as plain text (markdown would eat '*' and '_' of an SMS), lists
    # as indented JSON. The Airflow 3 UI picks a highlighter by looking at the value and ignores these.
    template_fields_renderers = {"to": "json", "message": "doc", "tags": "json", "template_data": "json"}
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        to: str | int | Iterable[str | int],
        message: str | None = None,
        template: str | None = None,
        template_data: Any = None,
        dlt_check: Any = "auto",
        sender: str | None = None,
        service: str | None = None,
        template_id: str | None = None,
        entity_id: str | None = None,
        schedule_at: datetime | str | None = None,
        custom_id: str | None = None,
        tags: Sequence[str] | str | None = None,
        encoding: EncodingOption = "auto",
        max_units: int | None = None,
        flash: bool = False,
        webhook_id: str | None = None,
        resend: bool = False,
        dry_run: bool = False,
        qikberry_conn_id: str = "qikberry_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Arguments that are not templated are checked here, so a typo fails the DAG file's import. The
        # defaults need no check, and DAG files that keep them do not pay for importing validation at parse.
        if encoding != "auto" or max_units is not None:
            from airflow_qikberry.sms_text import validate_encoding, validate_max_units

            validate_encoding(encoding)
            validate_max_units(max_units)
        flash, resend, dry_run = _flags(flash=flash, resend=resend, dry_run=dry_run)
        self.to = to
        self.message = message
        self.template = template
        self.template_data = template_data
        self.dlt_check = dlt_check
        self.sender = sender
        self.service = service
        self.template_id = template_id
        self.entity_id = entity_id
        self.schedule_at = schedule_at
        self.custom_id = custom_id
        self.tags = tags
        self.encoding = encoding
        self.max_units = max_units
        self.flash = flash
        self.webhook_id = webhook_id
        self.resend = resend
        # Not self.dry_run: that name is BaseOperator's dry_run() method (Airflow 2's `tasks test --dry-run`).
        self.is_dry_run = dry_run
        self.qikberry_conn_id = qikberry_conn_id

    @cached_property
    def hook(self) -> QikberryHook:
        """Built on first use, after the templates are rendered (never at DAG parse time)."""
        from airflow_qikberry.hooks.qikberry import QikberryHook

        return QikberryHook(qikberry_conn_id=self.qikberry_conn_id)

    def execute(self, context: Any) -> list[dict[str, Any]] | dict[str, Any]:
        from airflow_qikberry import sends, template_sends
        from airflow_qikberry.exceptions import QikberryValidationError
        from airflow_qikberry.recipients import recipient_entries
        from airflow_qikberry.send_options import SendOptions

        if (self.message is None) == (self.template is None):
            raise QikberryValidationError(
                "message: give exactly one of message (the text) and template (a stored DLT template).",
                field="message",
            )
        to = recipient_entries(self.to)
        # The send parameters are this operator's attributes of the same names, as rendered.
        options = SendOptions.from_operator(self)
        # Every argument is checked before the first request, and a dry run reads this very preparation.
        settings = self.hook.settings
        prepared: SmsRequest | TemplateRequest
        if self.template is not None:
            catalog = self.hook.dlt_catalog()
            prepared = template_sends.prepare_template(settings, to, options, catalog, resend=self.resend)
        else:
            prepared = sends.prepare_sms(settings, to, self.message or "", options, resend=self.resend)
        if self.is_dry_run:
            self.hook.check_dlt(prepared)
            return self._dry_run(prepared)
        sent = self.hook.send_prepared(prepared)
        self._log_sent(sent)
        if self.hook.settings.delivery_events:
            from airflow_qikberry.delivery.inbox import positions_by_group, record_sent, task_label

            label = task_label(context)
            record_sent(
                self.qikberry_conn_id,
                positions_by_group([m.message_id for m in sent]),
                campaign=label,
                sender=prepared.payload.get("sender"),
                service=prepared.payload.get("service"),
                task=label,
                log=self.log,
            )
        return [message.to_xcom() for message in sent]

    def _log_sent(self, sent: Sequence[SentMessage]) -> None:
        from decimal import Decimal

        units = sum(m.units for m in sent)
        charges = sum((m.charges for m in sent), Decimal(0))
        ids = [m.message_id for m in sent]
        self.log.info(
            "Qikberry accepted %d message(s): %d SMS unit(s), %s credits; ids %s",
            len(sent),
            units,
            charges,
            ", ".join(ids[:SAMPLE_SIZE]) + (f", ... ({len(ids)} in all)" if len(ids) > SAMPLE_SIZE else ""),
        )

    def _dry_run(self, prepared: SmsRequest | TemplateRequest) -> dict[str, Any]:
        """Return what the prepared send would post, and a balance lookup; no POST is made."""
        from airflow_qikberry import phone
        from airflow_qikberry.exceptions import QikberryError
        from airflow_qikberry.models import estimate_cost
        from airflow_qikberry.sends import SmsRequest

        numbers, length = prepared.numbers, prepared.length
        if isinstance(prepared, SmsRequest):
            text: str | None = self.message
            service, sender = prepared.payload["service"], prepared.payload["sender"]
            when = prepared.payload.get("time")
        else:  # a send by template: its rendered text, sender and route (unknown without its templates)
            text, service, sender, when = prepared.text, prepared.service, prepared.sender, None
        per_message = length.units if length is not None else None
        total_units = per_message * len(numbers) if per_message is not None else None

        warnings: list[str] = []
        estimate = None
        if total_units is None:
            warnings.append("units and credits not estimated: the template's text is not known")
        else:
            try:
                estimate = estimate_cost(total_units, self.hook.get_balance(service), service)
            except QikberryError as err:
                warnings.append(f"credits not estimated: the balance lookup failed: {err}")
        if estimate is not None and not estimate.covered:
            warnings.append(f"credits would not cover this send: {estimate.shortfall_message()}")

        sample: list[dict[str, Any]] = [
            {"mobile": phone.mask_number(n), "text": text, "units": per_message}
            for n in numbers[:SAMPLE_SIZE]
        ]
        result: dict[str, Any] = {
            "dry_run": True,
            "messages": len(numbers),
            "units": total_units,
            "estimated_credits": float(estimate.credits_needed) if estimate else None,
            "credits_available": float(estimate.credits_available) if estimate else None,
            "postpaid": estimate.postpaid if estimate else None,
            "service": service,
            "sender": sender,
            "encoding": length.encoding if length is not None else None,
            "units_per_message": per_message,
            "schedule_at": when,
            "custom_id": prepared.custom_id,
            "sample": sample,
            "warnings": warnings,
        }
        if not isinstance(prepared, SmsRequest):
            result["template"] = prepared.template.describe() if prepared.template else self.template
        self.log.info(
            "DRY RUN, nothing sent: would send %d message(s) to [%s] via service %s from %s: %s SMS unit(s) "
            "(%s per message, %s, %s characters)%s; estimated credits %s of %s available",
            len(numbers),
            ", ".join(s["mobile"] for s in sample) + (", ..." if len(numbers) > SAMPLE_SIZE else ""),
            service,
            sender,
            total_units,
            per_message,
            result["encoding"],
            length.length if length is not None else None,
            f", scheduled for {when}" if when else "",
            result["estimated_credits"],
            result["credits_available"],
        )
        self.log.info("DRY RUN text: %s", text)
        for warning in warnings:
            self.log.warning("DRY RUN: %s", warning)
        return result
