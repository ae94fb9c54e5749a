"""
QikberryBulkCampaignOperator: text a table of customers, resumably, from a DAG.

DAG files import this module at every parse, so it imports only the base class: the campaign engine
(:mod:`airflow_qikberry.campaign`), the hook, Jinja, ``requests`` and ``phonenumbers`` are imported when the
task runs, and nothing reads a connection before ``execute``.

Example::

    from airflow_qikberry.operators.campaign import QikberryBulkCampaignOperator

    QikberryBulkCampaignOperator(
        task_id="bill_reminders",
        name="bill-reminders-{{ ds }}",
        csv_path="/data/bills/{{ ds }}.csv",
        message_template="Hi {{ row.name }}, your bill of Rs {{ row.amount }} is due on {{ row.due }}",
        rejected_path="/data/bills/{{ ds }}.rejected.csv",
        retries=3,
    )
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import XComArg

    from airflow_qikberry.sms_text import EncodingOption

__all__ = ["QikberryBulkCampaignOperator"]


def _text(value: Any) -> Any:
    # Native rendering turns "123456" (a number in a name or a path) into an int; the API wants text.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if value != "" else None


class QikberryBulkCampaignOperator(BaseOperator):
    """
    Send a campaign: one SMS per row of a list, a CSV file, a SQL query or an upstream XCom.

    Each row's number is validated and its text rendered (one ``message`` for all, or a Jinja
    ``message_template`` with ``row`` in scope, compiled once); invalid rows go to a rejected report,
    exact duplicates are dropped, and the task fails before sending anything when more than
    ``max_invalid_ratio`` of the rows are rejected, the balance does not cover the units, or a limit of the
    API is exceeded (500,000 messages, 200 MB CSV, 3 tags, the schedule window). The rows are then sent in
    ordered chunks through ``sms/send/json``, each row under a custom id derived from the task, so a retried
    task sends only the chunks its earlier tries did not get accepted. See docs/campaign.md.

    Returns (XCom) a summary without any full phone number: ``{"campaign", "group_ids", "accepted",
    "accepted_earlier_tries", "rejected": {reason: count}, "rejected_total", "duplicates_removed",
    "estimated_units", "estimated_credits", "chunks", "resumed_from_chunk", "not_sent",
    "not_sent_by_reason", "not_sent_rows", "dry_run"}``. A delivery sensor can follow the campaign by its
    ``group_ids``. Rows the API refuses or leaves out are reported as not sent, never as accepted; when they
    and the rejected rows together are more than ``max_invalid_ratio``, the task fails after everything
    else was sent (``QikberryRowsNotSentError``), with the summary in the XCom ``summary``.

    Example::

        from airflow_qikberry.operators.campaign import QikberryBulkCampaignOperator

        QikberryBulkCampaignOperator(
            task_id="diwali_offer",
            name="diwali-{{ ds }}",
            sql="SELECT mobile, first_name, city FROM customers WHERE opted_in",
            sql_conn_id="crm_db",
            message_template="नमस्ते {{ row.first_name }}! 🪔 20% off in {{ row.city }} stores this week",
            service="P",
            batch_size=50_000,
            interval=timedelta(minutes=15),
            schedule_at="{{ data_interval_end.add(hours=1).isoformat() }}",
            retries=3,
        )

    Recipients, from exactly one of:

    :param recipients: a list of numbers and/or dicts (one row each; templated, e.g. an XCom rendered with
        ``render_template_as_native_obj=True``; a rendered list's text form is read back as a list).
    :param csv_path: a UTF-8 CSV file with a header line (templated), at most 200 MB: a local path, or on
        object storage a URL (``s3://bucket/key``, ``gs://...``, ``file:///...``) or an ``ObjectStoragePath``,
        streamed, and read byte for byte the same by a retry (a changed object stops it; docs/campaign.md).
    :param storage_conn_id: the Airflow connection whose credentials reach a ``csv_path`` or
        ``rejected_path`` URL (templated), e.g. an ``aws`` connection for ``s3://``; not needed for
        ``file://``, for a URL that names its own (``s3://conn_id@bucket/key``) or an ``ObjectStoragePath``.
    :param sql: a query (templated; a ``.sql`` file is read) run once on ``sql_conn_id``, any database
        connection whose hook has ``get_conn()`` (a common.sql ``DbApiHook``); rows become dicts.
    :param recipients_xcom_task_id: the task whose XCom (``recipients_xcom_key``, default
        ``return_value``) holds the list of recipients.
    :param phone_column: the column with the number (templated); default: the first of ``mobile``,
        ``phone``, ``msisdn``, ``to``, ``number``, ``mobile_number``, ``phone_number`` (any case), else the
        first column whose name contains "mobile" or "phone".
    :param csv_delimiter: the CSV field separator.
    :param sql_conn_id: see ``sql`` (templated).
    :param sql_parameters: parameters of the query (templated).

    Text, exactly one of:

    :param message: one text for every row (templated).
    :param message_template: a Jinja template rendered per row with ``row`` (the row's columns, e.g.
        ``{{ row.name }}``) and the task context (``{{ ds }}``, ``{{ params }}``) in scope, in the task's
        sandboxed environment. Not a template field: Airflow would render it once, without ``row``.
    :param template: a stored DLT template (templated: its alias, id, DLT template id or name): each row's
        text is its body with every ``{{variable}}`` taken from the row's column of that name; its sender
        and DLT template id are the campaign's (docs/dlt.md).
    :param template_columns: with ``template``, variables taken from other columns, e.g.
        ``{"otp": "code"}`` (templated).

    DLT:

    :param dlt_check: check every row's text against its DLT template before sending (``"auto"``, the
        default: where a template or ``template_id`` is given and the template is known; ``"required"``:
        fail when the check cannot run; ``"off"``). A row that does not fit is a rejected row with reason
        ``dlt_mismatch`` and what differs.

    How it is sent:

    :param name: the campaign name (templated); each chunk is grouped under it and gets a group id.
        Default: ``<dag_id>.<task_id>.<run_id>``.
    :param sender: sender id / DLT header (templated); default: the connection's.
    :param service: route code such as ``T`` or ``P`` (templated); default: the connection's.
    :param template_id: DLT template id (templated).
    :param entity_id: DLT entity id (templated); default: the connection's.
    :param schedule_at: send later (templated): an aware datetime or ISO-8601 string with an offset.
    :param batch_size: split schedule: batches of 1,000-500,000 messages, the first at ``schedule_at``...
    :param interval: ...and each next one ``interval`` later (5 minutes to 1 hour; a timedelta or seconds).
    :param tags: up to 3 opt-out tags (templated).
    :param encoding: ``"auto"`` (default: per row, so a Hindi row goes as Unicode), ``"gsm7"``, ``"ucs2"``.
    :param max_units: the most SMS parts a row's text may use; longer texts are rejected rows.
    :param flash: send as flash SMS.
    :param webhook_id: id of a delivery-report webhook registered with the API (templated).
    :param chunk_size: rows per request, 1-50,000 (default 5,000): the unit of resuming and of settling an
        unknown outcome.
    :param max_invalid_ratio: the share of rows not sent (0-1, default 0.05) above which the task fails:
        before sending anything for rows rejected by validation; after sending everything else when rows
        the API refuses or leaves out take it over the limit.
    :param rejected_path: write the rejected rows, and the rows the API refused or left out, to this CSV
        (``row,reason,value,detail``; templated): a local path or, like ``csv_path``, on object storage.
    :param check_balance: fail before sending when the service's credits do not cover the estimated units.
    :param dry_run: read, validate, render and count everything, estimate the credits and return the
        summary with a masked ``sample`` of rendered rows; send nothing.
    :param resend: send the whole campaign again on a retried or cleared task, under new custom ids,
        instead of resuming (each try then sends everything: combine with ``retries=0``).
    :param use_task_state_store: on Airflow 3.3+, record progress in the task state store after each
        chunk, so a retry needs fewer status lookups (it works without, by lookups only).
    :param qikberry_conn_id: the Qikberry connection (templated).
    """

    template_fields: Sequence[str] = (
        "recipients",
        "csv_path",
        "phone_column",
        "sql",
        "sql_conn_id",
        "sql_parameters",
        "recipients_xcom_task_id",
        "recipients_xcom_key",
        "message",
        "template",
        "template_columns",
        "name",
        "sender",
        "service",
        "template_id",
        "entity_id",
        "schedule_at",
        "tags",
        "webhook_id",
        "rejected_path",
        "storage_conn_id",
        "qikberry_conn_id",
    )
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {
        "recipients": "json",
        "sql": "sql",
        "sql_parameters": "json",
        "message": "doc",
    }
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        recipients: Any = None,
        csv_path: str | XComArg | None = None,
        sql: str | XComArg | None = None,
        recipients_xcom_task_id: str | None = None,
        recipients_xcom_key: str = "return_value",
        phone_column: str | None = None,
        csv_delimiter: str = ",",
        sql_conn_id: str | None = None,
        sql_parameters: Any = None,
        message: str | XComArg | None = None,
        message_template: str | None = None,
        template: str | None = None,
        template_columns: Any = None,
        dlt_check: Any = "auto",
        name: str | None = None,
        sender: str | None = None,
        service: str | None = None,
        template_id: str | None = None,
        entity_id: str | None = None,
        schedule_at: datetime | str | None = None,
        batch_size: int | None = None,
        interval: timedelta | float | None = None,
        tags: Sequence[str] | str | None = None,
        encoding: EncodingOption = "auto",
        max_units: int | None = None,
        flash: bool = False,
        webhook_id: str | None = None,
        chunk_size: int = 5_000,
        max_invalid_ratio: float = 0.05,
        rejected_path: str | XComArg | None = None,
        check_balance: bool = True,
        dry_run: bool = False,
        resend: bool = False,
        use_task_state_store: bool = True,
        storage_conn_id: str | None = None,
        qikberry_conn_id: str = "qikberry_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        flags = {
            "flash": flash,
            "check_balance": check_balance,
            "dry_run": dry_run,
            "resend": resend,
            "use_task_state_store": use_task_state_store,
        }
        if not all(isinstance(value, bool) for value in flags.values()):
            # A yes/no given as text ("false" from a Variable or params) is read as Airflow reads booleans;
            # anything else fails the DAG file's import naming the argument. Booleans cost no import.
            from airflow_qikberry.validation import validate_flag

            flags = {name: validate_flag(value, field=name) for name, value in flags.items()}
        flash, check_balance, dry_run = flags["flash"], flags["check_balance"], flags["dry_run"]
        resend, use_task_state_store = flags["resend"], flags["use_task_state_store"]
        self.recipients = recipients
        self.csv_path = csv_path
        self.sql = sql
        self.recipients_xcom_task_id = recipients_xcom_task_id
        self.recipients_xcom_key = recipients_xcom_key
        self.phone_column = phone_column
        self.csv_delimiter = csv_delimiter
        self.sql_conn_id = sql_conn_id
        self.sql_parameters = sql_parameters
        self.message = message
        self.message_template = message_template
        self.template = template
        self.template_columns = template_columns
        self.dlt_check = dlt_check
        self.name = name
        self.sender = sender
        self.service = service
        self.template_id = template_id
        self.entity_id = entity_id
        self.schedule_at = schedule_at
        self.batch_size = batch_size
        self.interval = interval
        self.tags = tags
        self.encoding = encoding
        self.max_units = max_units
        self.flash = flash
        self.webhook_id = webhook_id
        self.chunk_size = chunk_size
        self.max_invalid_ratio = max_invalid_ratio
        self.rejected_path = rejected_path
        self.check_balance = check_balance
        # Not self.dry_run: that name is BaseOperator's dry_run() method (Airflow 2's `tasks test --dry-run`).
        self.is_dry_run = dry_run
        self.resend = resend
        self.use_task_state_store = use_task_state_store
        self.storage_conn_id = storage_conn_id
        self.qikberry_conn_id = qikberry_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow_qikberry import campaign as c
        from airflow_qikberry import idempotency as ido
        from airflow_qikberry.hooks.qikberry import QikberryHook
        from airflow_qikberry.send_options import SendOptions

        identity = ido.task_identity()
        name = _text(self.name)
        options = c.CampaignOptions.checked(
            # The send parameters are this operator's attributes of the same names, as rendered; the name
            # is the campaign's, checked (and defaulted) as such.
            send=SendOptions.from_operator(self, name=None),
            name=self._default_name(context) if name is None else name,
            message=None if self.message is None else str(self.message),
            has_template=self.message_template is not None,
            batch_size=self.batch_size,
            interval=self.interval,
            chunk_size=self.chunk_size,
            max_invalid_ratio=self.max_invalid_ratio,
            check_balance=self.check_balance,
            dry_run=self.is_dry_run,
            resend=self.resend,
            template_columns=self.template_columns,
        )
        source = self._source(context)
        render = None
        if self.message_template is not None:
            render = c.compile_row_template(self._row_template_env(), self.message_template, context)
        from airflow_qikberry.exceptions import QikberryRowsNotSentError

        with QikberryHook(qikberry_conn_id=self.qikberry_conn_id) as hook:
            try:
                summary = c.run_campaign(
                    options,
                    source=source,
                    hook=hook,
                    render=render,
                    phone_column=_text(self.phone_column),
                    rejected_path=_text(self.rejected_path),
                    storage_conn_id=_text(self.storage_conn_id),
                    store=context.get("task_state_store") if self.use_task_state_store else None,
                    identity=identity,
                    log=self.log,
                )
            except QikberryRowsNotSentError as err:
                # Everything else was sent: its summary (group ids for a sensor, the rows not sent) is kept.
                ti = context.get("ti") or context.get("task_instance")
                if ti is not None:
                    ti.xcom_push(key="summary", value=err.summary)
                self._record_for_events(hook, options, err.summary or {}, context)
                raise
            self._record_for_events(hook, options, summary, context)
            return summary

    def _record_for_events(self, hook: Any, options: Any, summary: dict[str, Any], context: Any) -> None:
        """Record the campaign's groups for delivery-event assets, when the connection asks for it."""
        if summary.get("dry_run") or not summary.get("group_ids") or not hook.settings.delivery_events:
            return
        from airflow_qikberry.delivery.inbox import record_sent, task_label

        record_sent(
            self.qikberry_conn_id,
            dict.fromkeys(summary["group_ids"]),
            campaign=summary.get("campaign"),
            sender=options.send.sender or hook.settings.sender,
            service=options.send.service or hook.settings.service,
            task=task_label(context),
            log=self.log,
        )

    @staticmethod
    def _default_name(context: Any) -> str:
        ti = context.get("ti") or context.get("task_instance")
        return f"{ti.dag_id}.{ti.task_id}.{ti.run_id}" if ti is not None else "campaign"

    def _row_template_env(self) -> Any:
        """
        Return the task's Jinja environment (macros, filters, undefined handling), always sandboxed.

        A row's values come from data, and ``render_template_as_native_obj`` must not make texts non-strings.
        """
        dag = self.dag if self.has_dag() else None
        if dag is not None:
            try:
                return dag.get_template_env(force_sandboxed=True)
            except TypeError:  # an Airflow without force_sandboxed
                env = dag.get_template_env()
                from jinja2.sandbox import SandboxedEnvironment

                if isinstance(env, SandboxedEnvironment):
                    return env
        return self.get_template_env()

    def _source(self, context: Any) -> Any:
        from airflow_qikberry import campaign as c

        field = c.choose_source(
            recipients=self.recipients,
            csv_path=self.csv_path,
            sql=self.sql,
            recipients_xcom_task_id=self.recipients_xcom_task_id,
        )
        phone_column = _text(self.phone_column)
        if (field == "sql") != bool(self.sql_conn_id):
            from airflow_qikberry.exceptions import QikberryValidationError

            raise QikberryValidationError(
                "sql_conn_id: sql needs sql_conn_id (the database connection to run it on)"
                if field == "sql"
                else f"sql_conn_id: is only used with sql, but the recipients come from {field}; remove it.",
                field="sql_conn_id",
            )
        if field == "recipients":
            recipients = self.recipients
            return c.Source(field, lambda: c.recipient_rows(recipients, phone_column=phone_column))
        if field == "csv_path" and c.is_object_storage(self.csv_path):
            source = c.ObjectSource(
                c.object_path(self.csv_path, _text(self.storage_conn_id), field=field), field=field
            )
            source.check()
            return c.Source(
                field, lambda: c.object_csv_rows(source, delimiter=self.csv_delimiter), source.identity
            )
        if field == "csv_path":
            path, delimiter = str(self.csv_path), self.csv_delimiter
            c.check_csv_file(path)
            return c.Source(field, lambda: c.csv_rows(path, delimiter=delimiter))
        if field == "sql":
            return c.Source(field, self._sql_rows)
        pulled = context["ti"].xcom_pull(task_ids=self.recipients_xcom_task_id, key=self.recipients_xcom_key)
        if pulled is None:
            from airflow_qikberry.exceptions import QikberryValidationError

            raise QikberryValidationError(
                f"recipients_xcom_task_id: task {self.recipients_xcom_task_id!r} pushed nothing under XCom "
                f"key {self.recipients_xcom_key!r}; it should return the list of recipients.",
                field="recipients_xcom_task_id",
            )
        return c.Source(
            field,
            lambda: c.recipient_rows(pulled, phone_column=phone_column, field="recipients_xcom_task_id"),
        )

    def _sql_rows(self) -> Any:
        from airflow.providers.common.compat.sdk import BaseHook

        from airflow_qikberry import campaign as c

        db_hook = BaseHook.get_connection(str(self.sql_conn_id)).get_hook()
        return c.sql_rows(db_hook, str(self.sql), self.sql_parameters)
