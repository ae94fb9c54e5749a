"""
A campaign and its DLT template.

Sending by a stored template (each row's variables from its columns) and the per-row DLT pre-check.

Before pass 1 (:func:`plan`), the template is found among the account's, checked as a whole (active, the
campaign's sender its sender, that sender approved: a failure there is every row's, so it fails the task
before anything is read or sent) and its sender and DLT template id become the campaign's. Pass 1 then
renders each row (:class:`RowRenderer`: the template's body with each variable taken from the row's column
of that name, or the column ``template_columns`` maps it to) and checks each text against the template
(:attr:`CampaignDlt.check`): a row that does not fit is a rejected row with reason ``dlt_mismatch`` and what
differs, and is never sent. A campaign with its own text (``message`` or ``message_template``) and a
``template_id`` is checked the same way.

The chunks are then sent through ``sms/send/json`` with the template's DLT id, one request per chunk
(``sms/send/template`` takes one set of variable values per request). See docs/dlt.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow_qikberry import precheck
from airflow_qikberry.exceptions import (
    QikberryDltCheckUnavailableError,
    QikberryError,
    QikberryValidationError,
)

if TYPE_CHECKING:
    from airflow_qikberry.campaign.options import CampaignOptions
    from airflow_qikberry.catalog import Catalog, DltTemplate
    from airflow_qikberry.connection import ConnectionSettings
    from airflow_qikberry.dlt import TemplateBody
    from airflow_qikberry.hooks.qikberry import QikberryHook
    from airflow_qikberry.send_options import SendOptions

__all__ = ["DLT_MISMATCH", "CampaignDlt", "RowRenderer", "plan"]

#: The rejected report's reason for a row whose text its DLT template would not let through.
DLT_MISMATCH = "dlt_mismatch"


class CampaignDlt(NamedTuple):
    """
    What a campaign's DLT template changes.

    Its send options (the template's sender and DLT id filled in), how a row's text is rendered (a campaign
    by template), and the per-row check (text -> what differs, or None).
    """

    send: SendOptions
    render: Callable[[Mapping[str, Any]], str] | None = None
    check: Callable[[str], str | None] | None = None


class RowRenderer:
    """
    A row's text from a template body.

    Each ``{{name}}`` is the row's value of column ``name`` (exact, else without regard to case) or of the
    column ``columns`` maps it to. A value is inserted as text, as a
    Jinja ``{{ row.col }}`` would be; an empty cell (None, "", a NaN) is a row error, as the API refuses a
    blank variable.

    Example::

        render = RowRenderer(TemplateBody.parse("Hi {{name}}"), {"name": "first_name"})
        render({"mobile": "919876543210", "first_name": "Asha"})  # "Hi Asha"
    """

    def __init__(self, body: TemplateBody, columns: Mapping[str, str] | None = None) -> None:
        self.body = body
        self.columns = dict(columns or {})
        self._keys: dict[str, str] | None = None

    def _resolve(self, row: Mapping[str, Any]) -> dict[str, str]:
        names = [str(k) for k in row]
        lowered = {n.casefold(): n for n in reversed(names)}
        keys: dict[str, str] = {}
        for variable in self.body.variables:
            wanted = self.columns.get(variable, variable)
            found = wanted if wanted in names else lowered.get(wanted.casefold())
            if found is None:
                raise QikberryValidationError(
                    f"template_columns: the template's {{{{{variable}}}}} needs a column {wanted!r}, and the "
                    f"rows have none (columns: {names!r}); map it with template_columns={{{variable!r}: "
                    "'<column>'}.",
                    field="template_columns",
                )
            keys[variable] = found
        return keys

    def __call__(self, row: Mapping[str, Any]) -> str:
        if self._keys is None:  # the columns are the same in every row: resolved once, from the first
            self._keys = self._resolve(row)
        values: dict[str, str] = {}
        for variable, key in self._keys.items():
            value = _text(row.get(key))
            if value is None:
                raise ValueError(
                    f"the {key!r} column is empty, and the template's {{{{{variable}}}}} needs it"
                )
            values[variable] = value
        return self.body.render(values)


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, Decimal) and value.is_nan():
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def plan(options: CampaignOptions, hook: QikberryHook, settings: ConnectionSettings, log: Any) -> CampaignDlt:
    """
    Return the campaign's template, checked as a whole.

    With it, its per-row renderer and check (see the module).
    """
    send, mode = options.send, options.send.dlt_check
    if send.template is not None:
        return _by_template(options, hook.dlt_catalog(), settings, log)
    service = send.service or settings.service
    if mode == "off" or not send.template_id or service not in precheck.DLT_SERVICES:
        if mode == "required":
            raise QikberryDltCheckUnavailableError(
                "dlt_check: 'required', but this campaign names no DLT template (template or template_id on "
                "a DLT route); nothing was sent.",
                field="dlt_check",
            )
        return CampaignDlt(send)
    try:
        catalog: Catalog | None = hook.dlt_catalog()
        why = catalog.templates_unavailable if catalog is not None else None
    except QikberryError as exc:
        catalog, why = None, exc.message
    template = catalog.by_template_id(send.template_id) if catalog is not None and not why else None
    if template is None or template.parsed is None:
        reason = (
            f"the account's templates could not be read ({why})"
            if why
            else f"template_id {send.template_id} is not among the account's templates"
            if template is None
            else f"the body of template {template.describe()} cannot be read"
        )
        if mode == "required":
            raise QikberryDltCheckUnavailableError(
                f"dlt_check: 'required', but the DLT pre-check could not run: {reason}. Nothing was sent.",
                field="dlt_check",
            )
        log.warning(
            "Campaign %r: the DLT pre-check could not run: %s; sending without it", options.name, reason
        )
        return CampaignDlt(send)
    sender = send.sender or settings.sender or ""
    _whole(template, sender, catalog, "sender")
    check: Callable[[str], str | None] | None = _row_check(template)
    if options.message is not None:
        problem = precheck.text_problem(template, options.message)
        if problem is not None:
            raise _mismatch("message", template, problem)
        check = None  # one text, checked once
    log.info("Campaign %r: each text is checked against DLT template %s", options.name, template.describe())
    return CampaignDlt(send, check=check)


def _by_template(
    options: CampaignOptions, catalog: Catalog, settings: ConnectionSettings, log: Any
) -> CampaignDlt:
    send = options.send
    ref = str(send.template)
    if catalog.templates_unavailable:
        raise QikberryValidationError(
            f"template: the account's templates could not be read ({catalog.templates_unavailable}); a "
            "campaign by template renders each row from the template's body. Give the text as "
            "message_template with template_id instead.",
            field="template",
        )
    template = catalog.find(ref)
    if template is None:
        raise QikberryValidationError(
            f"template: {ref!r} is not among the account's {len(catalog.templates)} template(s) (by alias, "
            "id, DLT template id or name); hook.get_templates() lists them.",
            field="template",
        )
    body = template.parsed
    if body is None:
        raise QikberryValidationError(
            f"template: the body of {template.describe()} is not one this provider can read: "
            f"{template.body!r}",
            field="template",
        )
    if send.template_id and template.template_id and send.template_id != template.template_id:
        raise QikberryValidationError(
            f"template_id: {send.template_id} is not the DLT id of template {template.describe()}; leave it "
            "out.",
            field="template_id",
        )
    sender = send.sender or template.sender or settings.sender
    service = send.service or catalog.service_of(template)
    if send.dlt_check != "off":
        _whole(template, sender or "", catalog, "sender" if send.sender else "template")
    changed = send.replace(
        sender=sender,
        service=service,
        template_id=send.template_id or template.template_id,
        template=None,
        template_data=None,
    )
    log.info(
        "Campaign %r: by template %s, each row's variables (%s) from its columns",
        options.name,
        template.describe(),
        ", ".join(f"{{{{{v}}}}}" for v in body.variables) or "none",
    )
    check = _row_check(template) if send.dlt_check != "off" else None
    return CampaignDlt(changed, render=RowRenderer(body, options.template_columns), check=check)


def _whole(template: DltTemplate, sender: str, catalog: Catalog | None, where: str) -> None:
    problem = precheck.template_problem(template, sender, catalog)
    if problem is not None:
        raise _mismatch(where, template, problem)


def _mismatch(where: str, template: DltTemplate, problem: precheck.Problem) -> QikberryError:
    subject = precheck.Subject(where, None, "", "", template.template_id, template)
    return precheck.mismatch_error([(subject, template, problem)], "every text of this campaign")


def _row_check(template: DltTemplate) -> Callable[[str], str | None]:
    def check(text: str) -> str | None:
        problem = precheck.text_problem(template, text)
        return None if problem is None else f"{problem.status}: {problem.detail}"

    return check
