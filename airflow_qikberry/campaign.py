"""The bulk-campaign engine behind :class:`~airflow_qikberry.operators.campaign.QikberryBulkCampaignOperator`.

A campaign is two passes over its rows, neither of which holds the rows in memory:

1. **Prepare**: read the source once (a list, a CSV file, a SQL query or an XCom), validate each row's number,
   render and measure its text, drop exact duplicates (same number and text), count SMS units, and write the
   accepted rows to a spool file in a temporary directory and the rejected ones to the rejected report.
   Every limit is then checked before anything is sent: at most 500,000 messages, the ``max_invalid_ratio``
   of rejected rows, the split-schedule window, and the balance.
2. **Send**: stream the spool in chunks of ``chunk_size`` rows, strictly in order, each through
   ``QikberryHook.send_batch`` (``sms/send/json`` with the campaign ``name``, so each request gets a group
   id). A row the API refuses (a 422 naming it) or leaves out of its answer is reported not sent and the
   rest of its chunk still goes out. Every row carries a deterministic custom id
   ``qc-<key>-<chunk>-<position>``, so a retried task finds the prefix of chunks its earlier tries reached
   with a few status lookups, settles them row by row, and sends only the rest.

The functions here are pure where they can be (sources, checks, planning, the prepare pass); only
:func:`run_campaign` talks to the API, through the hook it is given. See docs/campaign.md.

Example::

    from airflow_qikberry.campaign import CampaignOptions, recipient_rows, run_campaign

    summary = run_campaign(
        CampaignOptions(name="welcome", message="Welcome to Qikberry!"),
        source=Source("recipients", lambda: recipient_rows(["919876543210", "919876543211"])),
        hook=QikberryHook(),
    )
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from airflow_qikberry import phone, sms_text
from airflow_qikberry import validation as v
from airflow_qikberry.exceptions import QikberryInsufficientBalanceError, QikberryValidationError

if TYPE_CHECKING:
    from airflow_qikberry.exceptions import QikberryDeliveryUnknownError
    from airflow_qikberry.hooks.qikberry import QikberryHook
    from airflow_qikberry.idempotency import TaskIdentity
    from airflow_qikberry.models import MessageStatus

__all__ = [
    "CampaignOptions",
    "ChunkPlan",
    "Prepared",
    "RejectedReport",
    "Source",
    "check_limits",
    "choose_source",
    "csv_rows",
    "prepare",
    "recipient_rows",
    "run_campaign",
    "sql_rows",
]

MAX_CAMPAIGN_MESSAGES = 500_000  # the API's bulk limit (reference section 3.9)
MAX_CHUNK_SIZE = 50_000  # the quick-campaign limit per request
DEFAULT_CHUNK_SIZE = 5_000
MIN_BATCH_SIZE, MAX_BATCH_SIZE = 1_000, 500_000  # split schedule limits (reference section 3.9)
MIN_INTERVAL, MAX_INTERVAL = timedelta(minutes=5), timedelta(hours=1)
MAX_CSV_BYTES = 200 * 1024 * 1024  # campaign files <= 200 MB (reference section 3.9)
SAMPLE_ROWS = 5
SQL_FETCH_SIZE = 1_000
STORE_PAGE = 100  # group ids per task-state-store key: one write per chunk, whatever the chunk count

#: Column names taken as the phone number when ``phone_column`` is not given (case-insensitive, in order);
#: failing those, the first column whose name contains "mobile" or "phone".
PHONE_COLUMNS = ("mobile", "phone", "msisdn", "to", "number", "mobile_number", "phone_number")

#: Why a row was rejected (the keys of the summary's ``rejected`` counts and the report's ``reason`` column).
MISSING_NUMBER = "missing_number"
INVALID_NUMBER = "invalid_number"
TEMPLATE_ERROR = "template_error"
EMPTY_MESSAGE = "empty_message"
MESSAGE_TOO_LONG = "message_too_long"
INVALID_MESSAGE = "invalid_message"

SOURCE_FIELDS = ("recipients", "csv_path", "sql", "recipients_xcom_task_id")

_CURRENT_TASK: Any = object()  # run_campaign's default identity: the running task's, looked up
_LONG_DIGITS = re.compile(r"\+?\d[\d ]{6,}\d")


def _scrub(text: str, limit: int = 200) -> str:
    """Mask anything number-like (an error text may quote a row) and cut it short, for logs and errors."""
    text = _LONG_DIGITS.sub(lambda m: phone.mask_number(m.group()), " ".join(str(text).split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- options


@dataclass(frozen=True)
class CampaignOptions:
    """What to send and how; :meth:`checked` validates every field before anything is read or sent.

    ``message`` is one text for every row; otherwise ``render`` (see :func:`compile_row_template`) makes each
    row's text. Send parameters (``sender``, ``service``, ``template_id``, ...) left ``None`` come from the
    connection, as for every send.
    """

    name: str
    message: str | None = None
    sender: str | None = None
    service: str | None = None
    template_id: str | None = None
    entity_id: str | None = None
    schedule_at: datetime | None = None
    batch_size: int | None = None
    interval: timedelta | None = None
    tags: list[str] = field(default_factory=list)
    encoding: str = "auto"
    max_units: int | None = None
    flash: bool = False
    webhook_id: str | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    max_invalid_ratio: float = 0.05
    check_balance: bool = True
    dry_run: bool = False
    resend: bool = False

    @classmethod
    def checked(
        cls,
        *,
        name: str,
        message: str | None = None,
        has_template: bool = False,
        schedule_at: datetime | str | None = None,
        interval: timedelta | float | None = None,
        tags: Sequence[str] | str | None = None,
        **kwargs: Any,
    ) -> CampaignOptions:
        """Validate and build. ``has_template`` says a per-row template was given instead of ``message``."""
        if not isinstance(name, str) or not name.strip():
            raise QikberryValidationError("name: the campaign needs a non-blank name.", field="name")
        v.validate_text_id(name, field="name")
        for flag in ("flash", "check_balance", "dry_run", "resend"):
            if flag in kwargs:
                kwargs[flag] = v.validate_flag(kwargs[flag], field=flag)
        if "webhook_id" in kwargs:
            kwargs["webhook_id"] = v.validate_text_id(kwargs["webhook_id"], field="webhook_id")
        if (message is None) == (not has_template):
            given = (
                "both message and message_template"
                if has_template
                else "neither message nor message_template"
            )
            raise QikberryValidationError(
                f"message: got {given}; give exactly one: message (one text for every row) or "
                "message_template (a Jinja template rendered per row, with `row` in scope).",
                field="message",
            )
        options = cls(
            name=name.strip(),
            message=message,
            schedule_at=_aware(schedule_at),
            interval=_interval(interval),
            tags=v.validate_tags(literal_list(tags, "tags")),
            **kwargs,
        )
        options._check()
        return options

    def _check(self) -> None:
        size = self.chunk_size
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_CHUNK_SIZE:
            raise QikberryValidationError(
                f"chunk_size: {size!r} is not a whole number from 1 to {MAX_CHUNK_SIZE} (the API's limit per "
                "request); the default 5,000 suits most campaigns.",
                field="chunk_size",
            )
        ratio = self.max_invalid_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
            raise QikberryValidationError(
                f"max_invalid_ratio: {ratio!r} is not a fraction from 0 to 1 (0.05 = 5% of rows).",
                field="max_invalid_ratio",
            )
        sms_text.validate_encoding(self.encoding)
        sms_text.validate_max_units(self.max_units)
        if self.message is not None:
            sms_text.validate_message(self.message, encoding=self.encoding, max_units=self.max_units)  # type: ignore[arg-type]
        self._check_split()

    def _check_split(self) -> None:
        if self.batch_size is None:
            if self.interval is not None:
                raise QikberryValidationError(
                    "interval: a split schedule needs batch_size too (e.g. batch_size=10000, "
                    "interval=timedelta(minutes=10)).",
                    field="interval",
                )
            return
        size = self.batch_size
        if (
            isinstance(size, bool)
            or not isinstance(size, int)
            or not MIN_BATCH_SIZE <= size <= MAX_BATCH_SIZE
        ):
            raise QikberryValidationError(
                f"batch_size: {size!r}; the API splits a schedule into batches of {MIN_BATCH_SIZE:,} to "
                f"{MAX_BATCH_SIZE:,} messages.",
                field="batch_size",
            )
        if self.interval is None or not MIN_INTERVAL <= self.interval <= MAX_INTERVAL:
            raise QikberryValidationError(
                f"interval: {self.interval!r}; a split schedule needs an interval from 5 minutes to 1 hour "
                "between batches (a timedelta or seconds).",
                field="interval",
            )
        if self.schedule_at is None:
            raise QikberryValidationError(
                "schedule_at: a split schedule needs the time of its first batch (timezone-aware, more than "
                "5 minutes ahead); the others follow every `interval`.",
                field="schedule_at",
            )


def _aware(when: datetime | str | None) -> datetime | None:
    """``schedule_at`` as an aware datetime; its window is checked later, per batch, by validate_schedule."""
    if when is None or when == "":
        return None
    v.validate_schedule(when, min_ahead=timedelta(days=-36500), max_ahead=timedelta(days=36500))
    if isinstance(when, str):
        text = when.strip()
        return datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "Zz" else text)
    return when


def _interval(value: timedelta | float | None) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise QikberryValidationError(
            f"interval: {value!r} is neither a timedelta nor a number of seconds.", field="interval"
        )
    return timedelta(seconds=value)


# --- sources


class Source(NamedTuple):
    """Where the rows come from: the operator field that named it, and a function that streams its rows
    (called once; each row a mapping of column name to value)."""

    field: str
    rows: Callable[[], Iterator[Mapping[str, Any]]]


def choose_source(**given: Any) -> str:
    """The one source field that is set (``recipients``, ``csv_path``, ``sql``, ``recipients_xcom_task_id``).

    ``None`` means not given; an empty list of recipients is given (and later fails as "no rows").
    """
    named = [name for name in SOURCE_FIELDS if given.get(name) not in (None, "")]
    if len(named) == 1:
        return named[0]
    fields = ", ".join(SOURCE_FIELDS)
    if not named:
        raise QikberryValidationError(
            f"recipients: no recipients given; set exactly one of {fields} (sql with sql_conn_id).",
            field="recipients",
        )
    raise QikberryValidationError(
        f"{named[0]}: several recipient sources given ({', '.join(named)}); set exactly one of {fields}.",
        field=named[0],
    )


def literal_list(value: Any, field: str) -> Any:
    """A list (or one dict) that a template rendered to its text form, read back (never evaluated): see
    :func:`airflow_qikberry.validation.rendered_literal`. Any other value is returned as is."""
    parsed = v.rendered_literal(value, field)
    if parsed is value or isinstance(parsed, (list, dict)):
        return parsed
    raise QikberryValidationError(
        f"{field}: the rendered value is a {type(parsed).__name__}; pass a list of numbers or of dicts (one "
        "per row).",
        field=field,
    )


def recipient_rows(
    recipients: Any, *, phone_column: str | None = None, field: str = "recipients"
) -> Iterator[Mapping[str, Any]]:
    """Rows of a ``recipients`` value: a list of numbers and/or dicts (one row each), one dict, or a string
    of numbers (comma, semicolon or newline separated; a rendered Python/JSON list is read as a list).

    A bare number becomes ``{"mobile": number}`` (``{phone_column: number}`` when that is given).
    """
    items: Iterable[Any]
    recipients = literal_list(recipients, field)
    if isinstance(recipients, str):
        items = phone.split_recipients(recipients)
    elif isinstance(recipients, Mapping):
        items = [recipients]
    elif isinstance(recipients, (bytes, int, float)) or not isinstance(recipients, Iterable):
        raise QikberryValidationError(
            f"{field}: got {type(recipients).__name__}; pass a list of numbers or of dicts (one per row).",
            field=field,
        )
    else:
        items = recipients
    key = phone_column or "mobile"
    for item in items:
        yield dict(item) if isinstance(item, Mapping) else {key: item}


def check_csv_file(path: str, *, field: str = "csv_path") -> None:
    """The CSV exists and is within the API's 200 MB campaign-file limit (checked before reading it)."""
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise QikberryValidationError(
            f"{field}: cannot read {path!r} ({exc.strerror or exc}).", field=field
        ) from None
    if size > MAX_CSV_BYTES:
        raise QikberryValidationError(
            f"{field}: {path!r} is {size:,} bytes; campaign files may be at most {MAX_CSV_BYTES:,} (200 MB). "
            "Split it into several campaigns.",
            field=field,
        )


def csv_rows(path: str, *, delimiter: str = ",", field: str = "csv_path") -> Iterator[Mapping[str, Any]]:
    """Stream the rows of a CSV file with a header line (UTF-8, a BOM is ignored)."""
    check_csv_file(path, field=field)
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        if not reader.fieldnames:
            raise QikberryValidationError(f"{field}: {path!r} is empty; it needs a header line.", field=field)
        try:
            yield from reader
        except (csv.Error, UnicodeDecodeError) as exc:
            raise QikberryValidationError(
                f"{field}: {path!r} is not a readable UTF-8 CSV file at line {reader.line_num} ({exc}).",
                field=field,
            ) from None


def sql_rows(
    db_hook: Any, sql: str, parameters: Any = None, *, fetch_size: int = SQL_FETCH_SIZE
) -> Iterator[Mapping[str, Any]]:
    """Stream a query's rows as dicts (column names from ``cursor.description``), ``fetch_size`` at a time.

    ``db_hook`` is any hook with ``get_conn()`` returning a DB-API connection (every common.sql
    ``DbApiHook``).
    """
    get_conn = getattr(db_hook, "get_conn", None)
    if not callable(get_conn):
        raise QikberryValidationError(
            f"sql_conn_id: its hook ({type(db_hook).__name__}) has no get_conn(); use a connection of a "
            "database type (a common.sql DbApiHook).",
            field="sql_conn_id",
        )
    conn = get_conn()
    try:
        cursor = conn.cursor()
        try:
            if parameters is None:
                cursor.execute(sql)
            else:
                cursor.execute(sql, parameters)
            if not cursor.description:
                raise QikberryValidationError(
                    "sql: the statement returned no result set; write a SELECT.", field="sql"
                )
            names = [str(col[0]) for col in cursor.description]
            while batch := cursor.fetchmany(fetch_size):
                for values in batch:
                    yield dict(zip(names, values, strict=False))
        finally:
            cursor.close()
    finally:
        conn.close()


def phone_key(keys: Iterable[str], phone_column: str | None) -> str:
    """The column that holds the number: ``phone_column`` (exact, else case-insensitive) or a guess."""
    columns = [str(k) for k in keys]
    lowered = {c.lower(): c for c in reversed(columns)}
    if phone_column:
        found = phone_column if phone_column in columns else lowered.get(phone_column.lower())
        if found is None:
            raise QikberryValidationError(
                f"phone_column: {phone_column!r} is not a column of the rows (columns: {columns!r}).",
                field="phone_column",
            )
        return found
    for name in PHONE_COLUMNS:
        if name in lowered:
            return lowered[name]
    for column in columns:
        if "mobile" in column.lower() or "phone" in column.lower():
            return column
    raise QikberryValidationError(
        f"phone_column: none of the columns {columns!r} looks like a phone number column; name it with "
        f"phone_column (guessed names: {', '.join(PHONE_COLUMNS)}).",
        field="phone_column",
    )


# --- rendering


def context_globals(context: Mapping[str, Any] | None) -> dict[str, Any]:
    """The task context as a plain dict of template globals, without reading a deprecated key.

    Airflow 2's context warns each time a deprecated key (``execution_date``, ``next_ds``... 13 of them) is
    read, and ``dict(context)`` reads every key. Airflow 2 itself hands a context to ``**kwargs`` through
    ``lazy_mapping_from_context``, which copies the entries without reading them and wraps each deprecated
    one in a lazy proxy that warns only when it is used: a template that names ``next_ds`` still gets its
    value and Airflow's warning, one that does not gets no warning. Airflow 3's context is a plain dict with
    no deprecated keys (its ``airflow.utils.context`` is itself deprecated, so it is not imported there).
    """
    if not context:
        return {}
    from airflow_qikberry.version_compat import AIRFLOW_V_3_0_PLUS

    if not AIRFLOW_V_3_0_PLUS:
        from airflow.utils.context import lazy_mapping_from_context  # type: ignore[attr-defined]  # 2.x only

        return dict(lazy_mapping_from_context(context))
    return dict(context)


def compile_row_template(
    env: Any, source: str, variables: Mapping[str, Any] | None = None
) -> Callable[..., str]:
    """Compile ``source`` once with ``env`` (the task's sandboxed Jinja environment); the result renders a
    row's text with ``row`` in scope, next to ``variables`` (the task context: ``ds``, ``params``...)."""
    import jinja2

    if not isinstance(source, str) or not source.strip():
        raise QikberryValidationError(
            "message_template: is empty; write the text, e.g. 'Hi {{ row.name }}'.", field="message_template"
        )
    try:
        template = env.from_string(source, globals=context_globals(variables))
    except jinja2.TemplateSyntaxError as exc:
        raise QikberryValidationError(
            f"message_template: line {exc.lineno}: {exc.message}", field="message_template"
        ) from None
    # Every render copies the template's globals into a new context, twice; they are a ChainMap of the task
    # context (dozens of keys) over the environment's globals, slow to walk. A plain dict of the same values,
    # taken once (nothing changes them during a campaign), makes a render 2-4 times cheaper. Both maps are
    # plain dicts by now (context_globals), so this reads no context key.
    template.globals = dict(template.globals)
    if env.is_async:  # render() runs its own event loop; the steps below are the sync path only

        def render_async_env(row: Mapping[str, Any]) -> str:
            return str(template.render(row=row))

        return render_async_env
    new_context, root_render, concat = template.new_context, template.root_render_func, env.concat

    def render(row: Mapping[str, Any]) -> str:
        # Template.render(row=row), step for step, less its copy of the keyword arguments.
        try:
            return str(concat(root_render(new_context({"row": row}))))
        except Exception:
            env.handle_exception()  # re-raises, the traceback pointing at the template's line
            raise

    return render


# --- planning


@dataclass(frozen=True, slots=True)
class Chunk:
    """One request's worth of rows."""

    index: int
    start: int  # position of its first row among the accepted rows
    size: int
    batch: int  # split-schedule batch (0 without a split schedule)


class ChunkPlan(NamedTuple):
    """Chunks of ``chunk_size`` rows that never straddle a split-schedule batch of ``batch_size`` rows."""

    chunk_size: int
    batch_size: int | None = None

    def starts_chunk(self, position: int) -> bool:
        within = position % self.batch_size if self.batch_size else position
        return within % self.chunk_size == 0

    def chunks(self, total: int) -> list[Chunk]:
        batch = self.batch_size or max(total, 1)
        out: list[Chunk] = []
        for b, first in enumerate(range(0, total, batch)):
            end = min(first + batch, total)
            for start in range(first, end, self.chunk_size):
                out.append(Chunk(len(out), start, min(self.chunk_size, end - start), b))
        return out


def batch_times(
    options: CampaignOptions, chunks: Sequence[Chunk], start: int, timezone: str
) -> list[datetime | None]:
    """The scheduled time of each batch: ``schedule_at + i * interval`` (one time for all without a split
    schedule, none without ``schedule_at``). Every batch still to be sent (those of ``chunks[start:]``) must
    lie in the API's schedule window: all are checked before the first chunk goes out."""
    batches = chunks[-1].batch + 1 if chunks else 0
    if options.schedule_at is None:
        return [None] * batches
    step = options.interval if options.batch_size and options.interval else timedelta(0)
    times: list[datetime | None] = [options.schedule_at + i * step for i in range(batches)]
    for i in sorted({c.batch for c in chunks[start:]}):
        where = "schedule_at" if i == 0 else f"schedule_at + {i} x interval, batch {i + 1} of {batches}"
        try:
            v.validate_schedule(times[i], timezone=timezone, field="schedule_at")
        except QikberryValidationError as exc:
            raise QikberryValidationError(
                f"{exc.message} ({where}); nothing was sent.", field="schedule_at"
            ) from None
    return times


# --- the prepare pass


class RejectedReport:
    """Rejected rows: counts by reason, one example each, and (with a path) a CSV ``row,reason,value,detail``.

    ``value`` is the number as given (the report is the user's own file: it must identify the row); ``detail``
    is the validation message, numbers masked.
    """

    def __init__(self, path: str | None = None, *, append: bool = False) -> None:
        self.path = path
        self.append = append  # the send pass adds the rows the API did not take to the prepare pass's report
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self._handle: IO[str] | None = None
        self._writer: Any = None

    def __enter__(self) -> RejectedReport:
        if self.path:
            try:
                # backslashreplace: a rejected value may hold half of a surrogate pair (no UTF-8 form).
                self._handle = open(
                    self.path,
                    "a" if self.append else "w",
                    newline="",
                    encoding="utf-8",
                    errors="backslashreplace",
                )
            except OSError as exc:
                raise QikberryValidationError(
                    f"rejected_path: cannot write {self.path!r} ({exc.strerror or exc}).",
                    field="rejected_path",
                ) from None
            self._writer = csv.writer(self._handle)
            if not self.append:
                self._writer.writerow(["row", "reason", "value", "detail"])
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()

    def add(self, row: int, reason: str, value: Any, detail: str) -> None:
        self.counts[reason] += 1
        detail = _scrub(detail)
        self.examples.setdefault(reason, f"row {row}: {detail}")
        if self._writer is not None:
            self._writer.writerow([row, reason, "" if value is None else str(value), detail])

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class Prepared:
    """What the prepare pass found; the accepted rows themselves are in the spool file."""

    rows_read: int = 0
    accepted: int = 0
    duplicates: int = 0
    units: int = 0
    digest: str = ""
    # The digest of the rows as a set (a sum of each row's fingerprint): equal when only their order changed.
    set_digest: str = ""
    chunk_offsets: list[int] = field(default_factory=list)  # spool byte offset of each chunk's first row
    # Source row (1-based, as in the rejected report) of each accepted row, in spool order: 4 bytes a row.
    source_rows: array[int] = field(default_factory=lambda: array("I"))
    chunk_units: list[int] = field(default_factory=list)
    sample: list[dict[str, Any]] = field(default_factory=list)


def _number_value(raw: Any) -> Any:
    """A row's number as ``normalize_number`` takes it, or None when the cell is empty.

    Number values (int, float, Decimal from a SQL driver or pandas) are passed on unchanged: the validation
    rule decides (an int is exact; a float is refused because it may already have lost digits). A float or
    Decimal NaN is how pandas and some drivers write an empty cell: it counts as a missing number.
    """
    if isinstance(raw, float) and raw != raw:
        return None
    if isinstance(raw, Decimal) and raw.is_nan():
        return None
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return raw


def prepare(
    rows: Iterable[Mapping[str, Any]],
    spool: IO[bytes],
    report: RejectedReport,
    *,
    plan: ChunkPlan,
    message: str | None = None,
    render: Callable[[Mapping[str, Any]], str] | None = None,
    phone_column: str | None = None,
    default_region: str | None = None,
    encoding: str = "auto",
    max_units: int | None = None,
    field_name: str = "recipients",
) -> Prepared:
    """Pass 1: validate, render, de-duplicate and measure every row; spool the accepted ones.

    Spool lines are JSON ``[number]`` (one ``message`` for all) or ``[number, text, type]``: what the send
    pass needs to build each node without validating it again (the number canonical, the text measured, and
    its API ``type`` for the campaign's encoding; see :func:`airflow_qikberry.payloads.validated_batch_node`).
    Exact duplicates (same canonical number and text) are recognised by an 8-byte BLAKE2b digest of the line
    kept in a set: about 70-100 bytes per accepted row, the only memory that grows with the campaign
    (docs/campaign.md). More than 500,000 accepted messages stop the pass with an error at once.
    """
    from airflow_qikberry.payloads import API_TYPE

    if (message is None) == (render is None):
        raise ValueError("prepare needs exactly one of message and render")
    out = Prepared()
    seen: set[int] = set()
    set_sum = 0
    source_rows = out.source_rows.append
    digest = hashlib.blake2b(digest_size=16)
    offset = 0
    key: str | None = None
    static = (
        sms_text.validate_message(message, encoding=encoding, max_units=max_units)  # type: ignore[arg-type]
        if message is not None
        else None
    )
    normalize, blake2b = phone.normalize_number, hashlib.blake2b
    # json.dumps(..., ensure_ascii=False) builds an encoder per call; this is the same encoder, built once.
    encode = json.JSONEncoder(ensure_ascii=False).encode
    for number_in_source, row in enumerate(rows, start=1):
        out.rows_read = number_in_source
        if key is None:
            key = phone_key(row.keys(), phone_column)
        given = row.get(key)
        raw = _number_value(given)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            report.add(number_in_source, MISSING_NUMBER, given, f"the {key!r} column is empty")
            continue
        try:
            number = normalize(raw, default_region=default_region, field=key)
        except QikberryValidationError as exc:
            report.add(number_in_source, INVALID_NUMBER, given, exc.message)
            continue
        if static is not None:
            text, info = "", static
            line = encode([number])
        else:
            try:
                text = render(row)  # type: ignore[misc]
            except Exception as exc:
                report.add(number_in_source, TEMPLATE_ERROR, given, f"{type(exc).__name__}: {exc}")
                continue
            measured = measure_text(text, encoding, max_units)
            if isinstance(measured, tuple):
                report.add(number_in_source, measured[0], given, measured[1])
                continue
            info = measured
            line = encode([number, text, API_TYPE[info.encoding]])
        data = (line + "\n").encode()
        fingerprint = int.from_bytes(blake2b(data, digest_size=8).digest(), "big")
        if fingerprint in seen:
            out.duplicates += 1
            continue
        seen.add(fingerprint)
        set_sum += fingerprint
        if out.accepted >= MAX_CAMPAIGN_MESSAGES:
            raise QikberryValidationError(
                f"{field_name}: more than {MAX_CAMPAIGN_MESSAGES:,} valid messages (stopped at source row "
                f"{number_in_source:,}); the API takes at most {MAX_CAMPAIGN_MESSAGES:,} per campaign. Split "
                "it into several campaigns. Nothing was sent.",
                field=field_name,
            )
        if plan.starts_chunk(out.accepted):
            out.chunk_offsets.append(offset)
            out.chunk_units.append(0)
        spool.write(data)
        source_rows(number_in_source)
        digest.update(data)
        offset += len(data)
        out.chunk_units[-1] += info.units
        out.units += info.units
        if len(out.sample) < SAMPLE_ROWS:
            out.sample.append(
                {
                    "row": number_in_source,
                    "mobile": phone.mask_number(number),
                    "message": message if static is not None else text,
                    "units": info.units,
                    "encoding": info.encoding,
                }
            )
        out.accepted += 1
    out.digest = digest.hexdigest()
    out.set_digest = f"{set_sum % 2**64:016x}"
    return out


def measure_text(text: str, encoding: str, max_units: int | None) -> sms_text.MessageLength | tuple[str, str]:
    """How a rendered text is billed, or why it cannot be sent: ``(reason, detail)``."""
    if not isinstance(text, str) or not text.strip():
        return EMPTY_MESSAGE, "the rendered text is empty"
    if len(text) > sms_text.MAX_MESSAGE_CHARS:
        return (
            MESSAGE_TOO_LONG,
            f"{len(text)} characters; the API accepts at most {sms_text.MAX_MESSAGE_CHARS}",
        )
    try:
        sms_text.check_sendable(text)  # half an emoji or a NUL: this row is rejected, the campaign goes on
        info = sms_text.measure(text, encoding)  # type: ignore[arg-type]
    except QikberryValidationError as exc:
        return INVALID_MESSAGE, exc.message
    if max_units is not None and info.units > max_units:
        detail = f"needs {info.units} SMS parts but max_units is {max_units}"
        try:  # for its advice: how much to cut, which character forced Unicode
            sms_text.validate_message(text, encoding=encoding, max_units=max_units)  # type: ignore[arg-type]
        except QikberryValidationError as exc:
            detail = exc.message
        return MESSAGE_TOO_LONG, detail
    return info


def check_limits(prepared: Prepared, report: RejectedReport, *, max_invalid_ratio: float, field: str) -> None:
    """After pass 1, before any request: rows exist, the rejected share is tolerable, something is left."""
    if prepared.rows_read == 0:
        raise QikberryValidationError(f"{field}: the source has no rows; nothing to send.", field=field)
    rejected = report.total
    ratio = rejected / prepared.rows_read
    where = f" (every rejected row is listed in {report.path})" if report.path else ""
    if ratio > max_invalid_ratio:
        reasons = "; ".join(
            f"{reason} {count:,} (e.g. {report.examples[reason]})"
            for reason, count in report.counts.most_common()
        )
        raise QikberryValidationError(
            f"max_invalid_ratio: {rejected:,} of {prepared.rows_read:,} rows ({ratio:.1%}) were rejected, "
            f"more than the {max_invalid_ratio:.1%} allowed: {reasons}. Nothing was sent{where}. Fix the "
            "source or raise max_invalid_ratio.",
            field="max_invalid_ratio",
        )
    if prepared.accepted == 0:
        raise QikberryValidationError(
            f"{field}: none of the {prepared.rows_read:,} rows can be sent ({rejected:,} rejected, "
            f"{prepared.duplicates:,} duplicates){where}.",
            field=field,
        )


# --- progress


def _duration(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class Progress:
    """One INFO line per accepted chunk: messages accepted of the total, percent, rate and ETA."""

    def __init__(self, log: Any, name: str, total: int, chunks: int, done: int = 0) -> None:
        self.log, self.name, self.total, self.chunks = log, name, total, chunks
        self.done = done
        self.start_done = done
        self.started = time.monotonic()

    def chunk_accepted(self, chunk: Chunk, accepted: int) -> None:
        self.done += accepted
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = (self.done - self.start_done) / elapsed
        left = self.total - self.done
        eta = _duration(left / rate) if rate > 0 else "unknown"
        self.log.info(
            "Campaign %r: chunk %d/%d accepted; %d/%d messages sent (%.1f%%), %.0f msg/s, ETA %s",
            self.name,
            chunk.index + 1,
            self.chunks,
            self.done,
            self.total,
            100.0 * self.done / self.total if self.total else 100.0,
            rate,
            eta,
        )


# --- what became of each chunk's rows

#: Why the API did not take a row (its ``reason`` in the rejected report and ``not_sent_by_reason``).
API_REFUSED = "api_refused"
NOT_ACCEPTED = "not_accepted"
# Absent from a chunk an earlier try settled, found by a retry without task state, which cannot tell which.
NOT_ACCEPTED_EARLIER = "not_accepted_earlier"
NOT_SENT_LISTED = 100  # rows not sent listed (masked) in the summary; the rejected report has every one
MAX_SPLIT_REFUSALS = (
    4  # rows one chunk may lose to 422s naming no row before it counts as the whole request's
)
LEFT_OUT = (
    "the API's answer left this row out and it was not in sms/status when the reconcile window closed: not "
    "accepted (a number that opted out or is blocked is left out this way)"
)
EARLIER_LEFT_OUT = (
    "an earlier try of this task sent it and the API does not hold it: refused or left out then (which of "
    "the two is known only with the task state store)"
)
_NODE_ERROR = re.compile(r"^nodes\.(\d+)\.(\w+)$")


@dataclass
class ChunkOutcome:
    """What became of a chunk's rows: the group ids holding its accepted messages (one per request that was
    accepted), how many were accepted, and the rows not sent as ``(position, reason, detail)``."""

    groups: list[str] = field(default_factory=list)
    accepted: int = 0
    not_sent: list[tuple[int, str, str]] = field(default_factory=list)

    def stored(self, size: int) -> Any:
        """The task-state form: the group id alone for a chunk accepted whole in one request."""
        if len(self.groups) == 1 and not self.not_sent and self.accepted == size:
            return self.groups[0]
        return {"g": list(self.groups), "a": self.accepted, "n": [list(row) for row in self.not_sent]}

    @classmethod
    def from_stored(cls, value: Any, size: int) -> ChunkOutcome | None:
        """Read :meth:`stored` back; None when it says nothing usable (the chunk is then looked up)."""
        if isinstance(value, str) and value:
            return cls([value], size)
        if isinstance(value, Mapping):
            try:
                return cls(
                    [str(g) for g in value.get("g", [])],
                    int(value.get("a", 0)),
                    [(int(p), str(reason), str(detail)) for p, reason, detail in value.get("n", [])],
                )
            except (TypeError, ValueError):
                return None
        return None


class NotSentRows:
    """Rows the API did not take: counted by reason, the first :data:`NOT_SENT_LISTED` listed with the number
    masked (for the summary), every one added to the rejected report (with the number, as for rows rejected
    before sending: the report is the user's file)."""

    def __init__(self, report: RejectedReport, source_rows: Sequence[int]) -> None:
        self.report, self.source_rows = report, source_rows
        self.listed: list[dict[str, Any]] = []

    def add(self, chunk: Chunk, position: int, number: str, reason: str, detail: str) -> None:
        row = int(self.source_rows[chunk.start + position])
        self.report.add(row, reason, number, detail)
        if len(self.listed) < NOT_SENT_LISTED:
            self.listed.append(
                {"row": row, "mobile": phone.mask_number(number), "reason": reason, "detail": _scrub(detail)}
            )


# --- resuming


class ProgressRecord:
    """The campaign's progress in Airflow's task state store (3.3+), a hint for a retry.

    Written after each chunk is settled: the page holding that chunk's outcome (its group id; for a chunk
    some of whose rows the API did not take, ``{"g": group ids, "a": accepted, "n": rows not sent}``), then
    ``{"chunks_done", "chunks", "digest", ...}``. It can lag one chunk behind the API (the worker may die
    between the two), never lead it.
    """

    def __init__(
        self,
        store: Any,
        key: str,
        *,
        digest: str,
        chunks: int,
        plan: ChunkPlan,
        log: Any,
        set_digest: str = "",
    ) -> None:
        self.store, self.log = store, log
        self.prefix = f"qikberry_campaign_{key}"
        self.identity = {
            "digest": digest,
            "chunks": chunks,
            "chunk_size": plan.chunk_size,
            "batch": plan.batch_size,
        }
        self.set_digest = set_digest
        self.usable = store is not None  # False when there is none, or it could not be read

    def read(self) -> tuple[int, list[Any]] | None:
        """``(chunks_done, stored outcomes)`` recorded by an earlier try, None when there is no usable record.

        Raises when the record belongs to other rows (the source changed, or only its order, between tries).
        """
        if self.store is None:
            return None
        try:
            record = self.store.get(self.prefix)
            if not isinstance(record, Mapping):
                return None
            done = int(record.get("chunks_done", 0))
            pages = [self.store.get(f"{self.prefix}:groups:{i}") for i in range(-(-done // STORE_PAGE))]
        except Exception as exc:
            self.usable = False
            self.log.warning(
                "Could not read the campaign's task state (%s); finding progress by lookups", exc
            )
            return None
        if any(record.get(k) != val for k, val in self.identity.items()):
            if self.set_digest and record.get("rows") == self.set_digest:
                raise QikberryValidationError(
                    "The rows of this campaign came in another order than in the earlier try of this task "
                    f"that sent part of it ({done} chunk(s)), e.g. from a SQL query without ORDER BY: custom "
                    "ids name positions, so it cannot be resumed safely. Nothing was sent in this try. Give "
                    "the query an ORDER BY (or restore the file's order) and clear the task, or clear it "
                    "with resend=True to send it all again.",
                    field="recipients",
                )
            raise QikberryValidationError(
                "The rows or the chunking of this campaign changed since an earlier try of this task sent "
                f"part of it ({done} chunk(s) were accepted), so it cannot be resumed safely. {_CHANGED_FIX}",
                field="recipients",
            )
        entries: list[Any] = []
        for page in pages:
            entries.extend(page if isinstance(page, list) else [])
        if len(entries) < done:
            return done, [None] * done  # pages lost: the chunks are looked up instead
        return done, entries[:done]

    def write(self, chunks_done: int, page_entries: Sequence[Any]) -> None:
        """Record that ``chunks_done`` chunks are settled; ``page_entries`` are the stored outcomes of the
        page of :data:`STORE_PAGE` chunks the last one belongs to, up to it."""
        if self.store is None:
            return
        page = (chunks_done - 1) // STORE_PAGE
        try:
            self.store.set(f"{self.prefix}:groups:{page}", list(page_entries))
            self.store.set(
                self.prefix, {**self.identity, "rows": self.set_digest, "chunks_done": chunks_done}
            )
        except Exception as exc:
            # Only a hint: a retry without it finds the progress by lookups.
            self.log.warning("Could not record the campaign's progress in the task state (%s)", exc)


_CHANGED_FIX = (
    "Nothing was sent in this try. Restore the source, or clear the task with resend=True to send it "
    "all again."
)


class _Spool:
    """Random access to the accepted rows: the first row of any chunk, or a chunk's rows in order."""

    def __init__(self, handle: IO[bytes], offsets: list[int], chunks: Sequence[Chunk]) -> None:
        self.handle, self.offsets, self.chunks = handle, offsets, chunks
        self._last: tuple[int, list[list[str]]] | None = None

    def first_number(self, chunk: int) -> str:
        if self._last is not None and self._last[0] == chunk:
            return str(self._last[1][0][0])
        self.handle.seek(self.offsets[chunk])
        return str(json.loads(self.handle.readline())[0])

    def rows(self, chunk: int) -> list[list[str]]:
        """The rows of chunk ``chunk`` (the last chunk read is kept)."""
        if self._last is None or self._last[0] != chunk:
            self.handle.seek(self.offsets[chunk])
            readline = self.handle.readline
            size = self.chunks[chunk].size
            # One JSON array of the chunk's lines: a single parse instead of one per row.
            rows: list[list[str]] = json.loads(b"[" + b",".join([readline() for _ in range(size)]) + b"]")
            self._last = (chunk, rows)
        return self._last[1]


def _refused_nodes(error: QikberryValidationError, count: int, row_fields: set[str]) -> dict[int, str] | None:
    """The nodes a 422 from ``sms/send/json`` names (``nodes.<i>.<field>``), each with the API's message;
    ``{}`` when it names none; None when it is about the request as a whole: a root field, a field every
    row shares (the sender, a DLT id: only ``row_fields`` differ from row to row), or every node of the
    request for a reason other than its number."""
    named: dict[int, str] = {}
    fields: set[str] = set()
    for key, messages in error.errors.items():
        match = _NODE_ERROR.match(key)
        if match is None or int(match.group(1)) >= count or match.group(2) not in row_fields:
            return None
        fields.add(match.group(2))
        named.setdefault(int(match.group(1)), messages[0] if messages else error.message)
    if count > 1 and len(named) == count and fields != {"to"}:
        return None
    return named


def _runs(positions: Sequence[int]) -> list[int]:
    """For each run of consecutive positions, its first, last and middle one: the rows looked up to find a
    request that holds part of the run (a request holds a run of a chunk, less the rows the API refused)."""
    out: list[int] = []
    i = 0
    while i < len(positions):
        j = i
        while j + 1 < len(positions) and positions[j + 1] == positions[j] + 1:
            j += 1
        out.extend(dict.fromkeys((positions[i], positions[j], positions[(i + j) // 2])))
        i = j + 1
    return out


class _ChunkSender:
    """Posts a chunk's rows (all of them, or those still to send) and settles what became of each one:

    * accepted (the answer's rows, or a lookup's when the answer was lost);
    * refused by the API with a 422 that names it (``nodes.<i>.to``): it is recorded as not sent
      (``api_refused``, with the API's message) and the rest of the request is posted again without it, under
      the same custom ids; a 422 that names no row is narrowed down by posting each half of the request;
    * left out of an accepted answer and still absent when the reconcile window closed (``not_accepted``).

    A 422 about the request as a whole (a root field, the same non-number field of every node) is raised.
    """

    def __init__(
        self,
        options: CampaignOptions,
        hook: QikberryHook,
        key: str,
        times: Sequence[datetime | None],
        log: Any,
    ) -> None:
        self.options, self.hook, self.key, self.times, self.log = options, hook, key, times, log
        # What differs from row to row: the number, and with per-row texts the text and its encoding.
        self.row_fields = {"to"} if options.message is not None else {"to", "message", "type", "max_units"}

    def send(
        self, chunk: Chunk, rows: list[list[str]], positions: Sequence[int] | None = None
    ) -> ChunkOutcome:
        from airflow_qikberry import idempotency as ido
        from airflow_qikberry.exceptions import QikberryPartialSendError

        # Every id is made the same way and the last is the longest: checking it checks them all.
        v.validate_custom_id(ido.campaign_custom_id(self.key, chunk.index, chunk.size - 1), field="custom_id")
        outcome = ChunkOutcome()
        todo: list[list[int]] = [list(range(chunk.size)) if positions is None else list(positions)]
        split_refusals = 0
        while todo:
            batch = todo.pop()
            try:
                result = self._post(chunk, rows, batch)
            except QikberryPartialSendError as exc:
                self._left_out(chunk, batch, exc, outcome)
                continue
            except QikberryValidationError as exc:
                if exc.status_code != 422:  # a client-side check, or not about the request's content
                    raise
                named = _refused_nodes(exc, len(batch), self.row_fields)
                if named is None:
                    raise self._whole_request(chunk, outcome, exc) from None
                if named:
                    outcome.not_sent.extend((batch[i], API_REFUSED, text) for i, text in named.items())
                    rest = [p for i, p in enumerate(batch) if i not in named]
                    if rest:
                        todo.append(rest)
                elif len(batch) > 1:  # the 422 names no row: post each half (the first half first)
                    half = len(batch) // 2
                    todo.extend((batch[half:], batch[:half]))
                else:
                    split_refusals += 1
                    if split_refusals > MAX_SPLIT_REFUSALS:
                        raise self._whole_request(chunk, outcome, exc) from None
                    outcome.not_sent.append((batch[0], API_REFUSED, exc.message))
                continue
            if result.group_id and result.accepted:
                outcome.groups.append(result.group_id)
            outcome.accepted += result.accepted
        if outcome.not_sent:
            outcome.not_sent.sort()
            reasons = Counter(reason for _, reason, _ in outcome.not_sent)
            self.log.warning(
                "Campaign %r: chunk %d: %d row(s) not sent (%s), e.g. %s; %d accepted in %d request(s)",
                self.options.name,
                chunk.index + 1,
                len(outcome.not_sent),
                ", ".join(f"{reason} {count}" for reason, count in reasons.items()),
                _scrub(outcome.not_sent[0][2]),
                outcome.accepted,
                len(outcome.groups),
            )
        return outcome

    def _post(self, chunk: Chunk, rows: list[list[str]], batch: Sequence[int]) -> Any:
        from airflow_qikberry import idempotency as ido
        from airflow_qikberry import payloads as p

        node, cid, key, k = p.validated_batch_node, ido.campaign_custom_id, self.key, chunk.index
        # Pass 1 validated every number and measured every text: the nodes go to the hook as validated
        # BatchNodes, built from the spool, and are not checked again (docs/campaign.md, Performance).
        if self.options.message is not None:
            nodes = [node(rows[i][0], cid(key, k, i)) for i in batch]
        else:
            nodes = [node(rows[i][0], cid(key, k, i), message=rows[i][1], api_type=rows[i][2]) for i in batch]
        options = self.options
        # Whether these rows went out is established (a first try; a retry's search; a 422, which accepts
        # nothing), so no lookup before posting.
        return self.hook.send_batch(
            nodes,
            name=options.name,
            message=options.message,
            sender=options.sender,
            service=options.service,
            template_id=options.template_id,
            entity_id=options.entity_id,
            schedule_at=self.times[chunk.batch],
            encoding=options.encoding,  # type: ignore[arg-type]
            flash=options.flash,
            webhook_id=options.webhook_id,
            max_units=options.max_units,
            tags=options.tags or None,
            check_first=False,
        )

    def _left_out(self, chunk: Chunk, batch: Sequence[int], error: Any, outcome: ChunkOutcome) -> None:
        from airflow_qikberry import idempotency as ido

        prefix = ido.campaign_custom_id(self.key, chunk.index, 0)[:-1]
        missing = sorted(
            int(c[len(prefix) :])
            for c in error.missing_custom_ids
            if c.startswith(prefix) and c[len(prefix) :].isdigit()
        )
        if len(missing) + len(error.accepted) != len(batch) or not set(missing) <= set(batch):
            raise error  # an answer that does not add up row by row: an unknown outcome
        if error.group_id and error.accepted:  # a group of no message is nothing to watch
            outcome.groups.append(str(error.group_id))
        outcome.accepted += len(error.accepted)
        outcome.not_sent.extend((p, NOT_ACCEPTED, LEFT_OUT) for p in missing)

    def _whole_request(
        self, chunk: Chunk, outcome: ChunkOutcome, error: QikberryValidationError
    ) -> QikberryValidationError:
        sent = f" ({outcome.accepted} of its rows were accepted before)" if outcome.accepted else ""
        return QikberryValidationError(
            f"chunk {chunk.index + 1}: the API refused the request as a whole: {_scrub(error.message)}"
            f"{' (' + ', '.join(sorted(error.errors)[:3]) + ')' if error.errors else ''}{sent}. It is not "
            "about single rows, so the rest of the campaign was not sent; fix the cause and retry the task "
            "(what was accepted is not sent again).",
            field=error.field,
            status_code=error.status_code,
        )


class _Resume:
    """How far earlier tries of a campaign task got, chunk by chunk and row by row: a retry's first step.

    :meth:`find` fills ``outcomes`` for the chunks earlier tries settled and says where this try starts.
    Every row found must carry the number the spool has at its position; otherwise the source changed (or
    came in another order) between tries and the task fails, sending nothing.
    """

    def __init__(
        self,
        hook: QikberryHook,
        key: str,
        chunks: Sequence[Chunk],
        spool: _Spool,
        outcomes: list[ChunkOutcome | None],
        *,
        field: str,
        log: Any,
    ) -> None:
        from airflow_qikberry import idempotency as ido

        self.hook, self.key, self.chunks, self.spool, self.outcomes = hook, key, chunks, spool, outcomes
        self.field, self.log = field, log
        self.runner = ido.ExactlyOnce(
            hook.policy, window=hook.reconcile_window, log=log, first_delay=hook.reconcile_delay
        )

    def cid(self, chunk: int, position: int) -> str:
        from airflow_qikberry import idempotency as ido

        return ido.campaign_custom_id(self.key, chunk, position)

    def row(self, chunk: int, position: int) -> MessageStatus | None:
        """The message of one row, by its custom id (None: not there, or not yet visible)."""
        cid = self.cid(chunk, position)
        rows = [r for r in self.hook.get_status(custom_id=cid) if r.custom_id == cid]
        if not rows:
            return None
        self.check(chunk, position, rows[0])
        return rows[0]

    def probe(self, chunk: int, positions: Iterable[int]) -> MessageStatus | None:
        """The first of these rows that is there."""
        for position in positions:
            if (found := self.row(chunk, position)) is not None:
                return found
        return None

    def check(self, chunk: int, position: int, row: MessageStatus) -> None:
        from airflow_qikberry.protocol import canonical_number

        expected = (
            self.spool.first_number(chunk) if position == 0 else str(self.spool.rows(chunk)[position][0])
        )
        if canonical_number(row.mobile) != canonical_number(expected):
            raise QikberryValidationError(
                f"{self.field}: row {position + 1} of chunk {chunk + 1} of this campaign was sent by an "
                f"earlier try of this task to {phone.mask_number(row.mobile)}, but that row is now "
                f"{phone.mask_number(expected)}: the recipients changed between tries (or came in another "
                "order, e.g. from a SQL query without ORDER BY), so the campaign cannot be resumed safely. "
                f"{_CHANGED_FIX}",
                field=self.field,
            )

    def unknown(self, chunk: int) -> Callable[[str], QikberryDeliveryUnknownError]:
        from airflow_qikberry.exceptions import QikberryDeliveryUnknownError

        return lambda msg: QikberryDeliveryUnknownError(
            f"Resuming the campaign: {msg.rstrip('.')}. Nothing more was sent in this try.",
            custom_id=self.cid(chunk, 0),
        )

    def find(self, start: int) -> tuple[int, list[int] | None]:
        """Where this try starts: ``(chunk, None)`` to send from ``chunk`` on, or ``(chunk, positions)`` when
        an earlier try sent part of ``chunk`` and these rows of it are still to send.

        Looks up the first row of chunks from ``start`` on (exponential, then binary search: a chunk is
        posted only once the one before it is settled); the first chunk whose first row is missing is
        looked for over the reconcile window (it may have been accepted a moment before the earlier try
        died), then by its last and middle rows too (the first may be a row the API refused or left out).
        Every chunk before it is then settled from its rows: ``outcomes`` gets its group ids, accepted
        count and rows not sent; the last of them may be only partly sent.
        """
        from airflow_qikberry import idempotency as ido

        anchors: dict[int, MessageStatus] = {}

        def accepted(index: int) -> bool:
            found = self.row(index, 0)
            if found is not None:
                anchors[index] = found
            return found is not None

        def absent(index: int) -> bool:
            gone = ido.confirm_absent(
                self.runner,
                lambda: accepted(index),
                what=f"chunk {index + 1} (custom id {self.cid(index, 0)})",
                unknown=self.unknown(index),
            )
            if not gone:
                return False
            found = self.probe(index, ido.sample_positions(self.chunks[index].size)[1:])
            if found is None:
                return True
            anchors[index] = found
            return False

        boundary = ido.resume_point(len(self.chunks), accepted, absent, start=start)
        last = boundary - 1
        for index in range(start, boundary):
            if self.outcomes[index] is None:
                pending = self.settle(index, anchors.get(index), last=index == last)
                if pending:
                    return index, pending
        return boundary, None

    def settle(self, index: int, anchor: MessageStatus | None, *, last: bool) -> list[int]:
        """Fill ``outcomes[index]`` from what the API holds of chunk ``index``; return the rows of it still to
        send (only for the ``last`` chunk an earlier try reached, which it may have left part-sent).

        The group of a row found holds every row of its request; a chunk accepted whole costs one page
        (its ``meta.total``). Rows in none of the groups found are looked up by their custom ids (the
        first, last and middle row of each run of them: another request's group shows there); rows still
        absent were refused or left out then (``not_accepted_earlier``: a later chunk was posted, so this
        one was settled), or, for the ``last`` chunk, are confirmed absent over the reconcile window and
        sent again.
        """
        from airflow_qikberry import idempotency as ido

        chunk = self.chunks[index]
        size = chunk.size
        found: dict[int, MessageStatus] = {}
        groups: list[str] = []
        first: dict[str, int] = {}  # a group's first row: the groups are listed in the order of their rows
        prefix = self.cid(index, 0)[:-1]

        def take(row: MessageStatus) -> None:
            group = row.group_id
            if group is None:
                raise self.unknown(index)(
                    f"rows of chunk {index + 1} (custom id {row.custom_id}) carry no group id to find the "
                    "chunk by"
                )
            if group in groups:
                return
            groups.append(group)
            first[group] = size
            for r in self.hook.iter_group_status(group):
                tail = (r.custom_id or "")[len(prefix) :] if (r.custom_id or "").startswith(prefix) else ""
                if tail.isdigit() and int(tail) < size:
                    self.check(index, int(tail), r)
                    found.setdefault(int(tail), r)
                    first[group] = min(first[group], int(tail))

        if anchor is None:
            spread = [*ido.sample_positions(size), *(i * size // 16 for i in range(1, 16))]
            anchor = self.probe(index, dict.fromkeys(spread))
        if anchor is None:
            if last:  # not reached (the last chunk reached was found by a row), but never sent unconfirmed
                pending = self.confirm(index, list(range(size)), found, take)
                self.outcomes[index] = ChunkOutcome(sorted(groups, key=first.__getitem__), len(found))
                return pending
            # Not one row of a chunk that a later chunk followed: the API took none of them.
            self.outcomes[index] = ChunkOutcome(
                [], 0, [(p, NOT_ACCEPTED_EARLIER, EARLIER_LEFT_OUT) for p in range(size)]
            )
            return []
        if not last and anchor.group_id is not None:
            page, _, total = self.hook.group_page(anchor.group_id)
            if total == size:  # its request held every row of the chunk, and all were accepted
                for r in page:
                    tail = (r.custom_id or "")[len(prefix) :]
                    if (r.custom_id or "").startswith(prefix) and tail.isdigit() and int(tail) < size:
                        self.check(index, int(tail), r)
                self.outcomes[index] = ChunkOutcome([anchor.group_id], size)
                return []
        take(anchor)
        looked: set[int] = set()
        shown: MessageStatus | None = anchor
        while shown is not None:
            shown = None
            for p in _runs([p for p in range(size) if p not in found]):
                if p in looked:
                    continue
                looked.add(p)
                if (shown := self.row(index, p)) is not None:
                    take(shown)  # another request of this chunk: the runs change
                    break
        absent = [p for p in range(size) if p not in found]
        if last and absent:
            absent = self.confirm(index, absent, found, take)
        self.outcomes[index] = ChunkOutcome(
            sorted(groups, key=first.__getitem__),
            len(found),
            [] if last else [(p, NOT_ACCEPTED_EARLIER, EARLIER_LEFT_OUT) for p in absent],
        )
        return absent if last else []

    def confirm(
        self, index: int, absent: list[int], found: Mapping[int, Any], take: Callable[[MessageStatus], None]
    ) -> list[int]:
        """The rows of ``absent`` that stay absent over the reconcile window (looked up by the ends and
        middle of each run of them); a row that shows up brings its request's group, and the rest is
        confirmed again."""
        from airflow_qikberry import idempotency as ido

        shown: list[MessageStatus] = []
        probes: list[int] = []

        def lookup() -> bool:
            row = self.probe(index, probes)
            if row is not None:
                shown.append(row)
            return row is not None

        while absent:
            probes[:] = _runs(absent)
            if ido.confirm_absent(
                self.runner,
                lookup,
                what=f"{len(absent)} row(s) of chunk {index + 1}",
                unknown=self.unknown(index),
            ):
                return absent
            take(shown[-1])
            absent = [p for p in absent if p not in found]
        return absent


# --- the whole campaign


def run_campaign(
    options: CampaignOptions,
    *,
    source: Source,
    hook: QikberryHook,
    render: Callable[[Mapping[str, Any]], str] | None = None,
    phone_column: str | None = None,
    rejected_path: str | None = None,
    store: Any = None,
    identity: Any = _CURRENT_TASK,
    log: Any = None,
) -> dict[str, Any]:
    """Prepare, check, and send (or, with ``dry_run``, only report) a campaign; returns its summary.

    ``store`` is Airflow's ``task_state_store`` (3.3+) or None; ``identity`` defaults to the running task's.
    The summary is JSON-safe and holds no phone number: ``campaign, group_ids, accepted,
    accepted_earlier_tries, rejected, rejected_total, duplicates_removed, estimated_units, estimated_credits,
    chunks, resumed_from_chunk, dry_run`` (plus ``sample`` and ``rejected_path`` in a dry run).
    """
    import logging
    import tempfile

    from airflow_qikberry import idempotency as ido
    from airflow_qikberry.payloads import root_payload
    from airflow_qikberry.send_options import SendOptions

    log = log if log is not None else logging.getLogger(__name__)
    ident: TaskIdentity | None = ido.task_identity() if identity is _CURRENT_TASK else identity
    settings = hook.settings  # reads the connection; no request
    # Every send parameter is checked now, with the connection's defaults, not at the first chunk.
    send_options = SendOptions(
        sender=options.sender,
        service=options.service,
        template_id=options.template_id,
        entity_id=options.entity_id,
        encoding=options.encoding,  # type: ignore[arg-type]
        flash=options.flash,
        webhook_id=options.webhook_id,
        max_units=options.max_units,
        tags=options.tags,
    )
    root, _ = root_payload(send_options, settings, options.message, require_message=False)
    service = str(root["service"])
    plan = ChunkPlan(options.chunk_size, options.batch_size)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="qikberry-campaign-") as tmp:
        spool_path = os.path.join(tmp, "rows.jsonl")
        with open(spool_path, "wb") as writer, RejectedReport(rejected_path) as report:
            prepared = prepare(
                source.rows(),
                writer,
                report,
                plan=plan,
                message=options.message,
                render=render,
                phone_column=phone_column,
                default_region=settings.default_region,
                encoding=options.encoding,
                max_units=options.max_units,
                field_name=source.field,
            )
        check_limits(prepared, report, max_invalid_ratio=options.max_invalid_ratio, field=source.field)
        chunks = plan.chunks(prepared.accepted)
        summary: dict[str, Any] = {
            "campaign": options.name,
            "group_ids": [],
            "accepted": 0,
            "accepted_earlier_tries": 0,
            "rejected": dict(report.counts.most_common()),
            "rejected_total": report.total,
            "duplicates_removed": prepared.duplicates,
            "estimated_units": prepared.units,
            "estimated_credits": None,
            "chunks": len(chunks),
            "resumed_from_chunk": None,
            "not_sent": 0,
            "not_sent_by_reason": {},
            "not_sent_rows": [],
            "dry_run": options.dry_run,
        }
        log.info(
            "Campaign %r: %d row(s) read, %d to send in %d chunk(s) (%d SMS units), %d rejected%s, "
            "%d duplicate(s) removed (checked in %s)",
            options.name,
            prepared.rows_read,
            prepared.accepted,
            len(chunks),
            prepared.units,
            report.total,
            f" {dict(report.counts.most_common())}" if report.total else "",
            prepared.duplicates,
            _duration(time.monotonic() - began),
        )
        if options.dry_run:
            batch_times(options, chunks, 0, settings.api_timezone)
            return _dry_run(options, prepared, hook, service, summary, rejected_path, log)

        key = ido.campaign_key(ident, options.name, resend=options.resend, content=prepared.digest)
        record = ProgressRecord(
            store,
            key,
            digest=prepared.digest,
            set_digest=prepared.set_digest,
            chunks=len(chunks),
            plan=plan,
            log=log,
        )
        outcomes: list[ChunkOutcome | None] = [None] * len(chunks)
        start, pending, scan = 0, None, None
        with open(spool_path, "rb") as handle:
            spool = _Spool(handle, prepared.chunk_offsets, chunks)
            if ido.is_task_retry(ident) and not options.resend:
                hint = 0
                recorded = record.read()
                if recorded is not None:
                    hint = min(recorded[0], len(chunks))
                    for index, entry in enumerate(recorded[1][:hint]):
                        outcomes[index] = ChunkOutcome.from_stored(entry, chunks[index].size)
                resume = _Resume(hook, key, chunks, spool, outcomes, field=source.field, log=log)
                log.info(
                    "Retry of a campaign task: finding what earlier tries sent (%d chunk(s); %s)",
                    len(chunks),
                    f"the task state says the first {hint} were settled"
                    if hint
                    else "no task state to start from",
                )
                start, pending = resume.find(hint)
                unknown = [i for i in range(start) if outcomes[i] is None]  # task state pages lost
                if unknown:
                    log.info("Looking up %d chunk(s) settled by an earlier try", len(unknown))
                for index in unknown:
                    resume.settle(index, None, last=False)
                # Without task state an earlier try may have gone on past a chunk that left no trace.
                scan = resume if not record.usable else None
                summary["resumed_from_chunk"] = start
                summary["accepted_earlier_tries"] = sum(o.accepted for o in outcomes if o is not None)
                log.info(
                    "Campaign %r: earlier tries settled %d of %d chunk(s) (%d messages accepted); sending "
                    "from chunk %d%s",
                    options.name,
                    start,
                    len(chunks),
                    summary["accepted_earlier_tries"],
                    start + 1,
                    f" ({len(pending)} of its rows)" if pending is not None else "",
                )
            times = batch_times(options, chunks, start, settings.api_timezone)
            if options.check_balance and start < len(chunks):
                from airflow_qikberry.models import estimate_cost

                balances = hook.get_balance(service)
                summary["estimated_credits"] = float(
                    estimate_cost(prepared.units, balances, service).credits_needed
                )
                left = estimate_cost(sum(prepared.chunk_units[start:]), balances, service)
                if not left.covered:
                    raise QikberryInsufficientBalanceError(
                        f"Balance guard: {left.shortfall_message()}. Nothing was sent"
                        + (" in this try." if start else ".")
                    )
            sent = _send(
                options, hook, chunks, start, pending, spool, key, times, outcomes, record, scan, log, summary
            )
            settled = [o for o in outcomes if o is not None]
            if len(settled) != len(chunks):  # every chunk is sent or found sent by now
                raise AssertionError(
                    f"{len(chunks) - len(settled)} chunk(s) of the campaign were not settled"
                )
            summary["group_ids"] = [g for o in settled for g in o.groups]
            summary["accepted"] = sum(o.accepted for o in settled)
            summary["accepted_earlier_tries"] = summary["accepted"] - sent
            reasons, listed = _not_sent(outcomes, chunks, spool, prepared, rejected_path)
        return _finish(options, prepared, report, summary, reasons, listed, rejected_path, log)


def _dry_run(
    options: CampaignOptions,
    prepared: Prepared,
    hook: QikberryHook,
    service: str,
    summary: dict[str, Any],
    rejected_path: str | None,
    log: Any,
) -> dict[str, Any]:
    if options.check_balance:
        from airflow_qikberry.models import estimate_cost

        estimate = estimate_cost(prepared.units, hook.get_balance(service), service)
        summary["estimated_credits"] = float(estimate.credits_needed)
        summary["balance_covers"] = estimate.covered
        summary["credits_available"] = float(estimate.credits_available)
    summary["sample"] = prepared.sample
    summary["rejected_path"] = rejected_path
    for row in prepared.sample:
        log.info("Dry run sample, row %d to %s (%d unit(s), %s): %s", row["row"], row["mobile"], row["units"],
                 row["encoding"], row["message"])  # fmt: skip
    log.info(
        "Dry run of campaign %r: would send %d message(s) in %d chunk(s), %d SMS units%s; nothing was sent",
        options.name,
        prepared.accepted,
        summary["chunks"],
        prepared.units,
        f", about {summary['estimated_credits']:g} credits"
        if summary["estimated_credits"] is not None
        else "",
    )
    return summary


def _send(
    options: CampaignOptions,
    hook: QikberryHook,
    chunks: Sequence[Chunk],
    start: int,
    pending: list[int] | None,
    spool: _Spool,
    key: str,
    times: Sequence[datetime | None],
    outcomes: list[ChunkOutcome | None],
    record: ProgressRecord,
    scan: _Resume | None,
    log: Any,
    summary: dict[str, Any],
) -> int:
    """Pass 2: send chunks ``start..`` in order (of chunk ``start`` only the ``pending`` rows, when an earlier
    try sent the rest); returns how many messages this try got accepted.

    ``scan`` (a retry without task state): when a chunk this try sent comes out with no row accepted, an
    earlier try may have sent it the same way and gone on, leaving no trace to search by; so the next chunk
    is looked up (first, last and middle row) before it is posted, and found sent, the search goes on from
    there. The API refuses or leaves out the same rows in every try, so a chunk it accepts rows of now was
    never sent before: the scan costs nothing then.
    """
    from airflow_qikberry import idempotency as ido

    if start >= len(chunks):
        log.info("Campaign %r: every chunk was already settled; nothing left to send", options.name)
        return 0
    total = sum(c.size for c in chunks)
    progress = Progress(log, options.name, total, len(chunks), done=summary["accepted_earlier_tries"])
    sender = _ChunkSender(options, hook, key, times, log)
    sent = 0
    index, look = start, False
    while index < len(chunks):
        chunk = chunks[index]
        if scan is not None and look:
            look = False
            if scan.probe(index, ido.sample_positions(chunk.size)) is not None:
                log.info(
                    "Campaign %r: chunk %d was sent by an earlier try; finding where it stopped",
                    options.name,
                    index + 1,
                )
                index, pending = scan.find(index)
                continue
        outcome = sender.send(chunk, spool.rows(index), pending)
        look = outcome.accepted == 0 and pending is None
        pending = None
        sent += outcome.accepted
        progress.chunk_accepted(chunk, outcome.accepted)
        earlier = outcomes[index]
        if earlier is not None:  # the part an earlier try sent
            outcome = ChunkOutcome(
                earlier.groups + outcome.groups, earlier.accepted + outcome.accepted, outcome.not_sent
            )
        outcomes[index] = outcome
        if record.store is not None:
            first = index // STORE_PAGE * STORE_PAGE
            record.write(index + 1, [_stored(outcomes[i], chunks[i]) for i in range(first, index + 1)])
        index += 1
    return sent


def _stored(outcome: ChunkOutcome | None, chunk: Chunk) -> Any:
    return outcome.stored(chunk.size) if outcome is not None else None


def _not_sent(
    outcomes: Sequence[ChunkOutcome | None],
    chunks: Sequence[Chunk],
    spool: _Spool,
    prepared: Prepared,
    rejected_path: str | None,
) -> tuple[Counter[str], list[dict[str, Any]]]:
    """Every row the API did not take, added to the rejected report; counts by reason and the first rows."""
    with RejectedReport(rejected_path, append=True) as report:
        rows = NotSentRows(report, prepared.source_rows)
        for outcome, chunk in zip(outcomes, chunks, strict=True):
            if outcome is None or not outcome.not_sent:
                continue
            numbers = spool.rows(chunk.index)
            for position, reason, detail in outcome.not_sent:
                rows.add(chunk, position, str(numbers[position][0]), reason, detail)
        return report.counts, rows.listed


def _finish(
    options: CampaignOptions,
    prepared: Prepared,
    report: RejectedReport,
    summary: dict[str, Any],
    reasons: Counter[str],
    listed: list[dict[str, Any]],
    rejected_path: str | None,
    log: Any,
) -> dict[str, Any]:
    """The summary with the rows the API did not take; a typed error when, with the rows rejected before
    sending, they are more than ``max_invalid_ratio`` allows (everything else was sent by then)."""
    from airflow_qikberry.exceptions import QikberryRowsNotSentError

    not_sent = sum(reasons.values())
    summary["not_sent"] = not_sent
    summary["not_sent_by_reason"] = dict(reasons.most_common())
    summary["not_sent_rows"] = listed
    where = f" (every one is listed in {rejected_path})" if rejected_path else ""
    by_reason = ", ".join(f"{reason} {count:,}" for reason, count in reasons.most_common())
    if not_sent:
        log.warning(
            "Campaign %r: %d row(s) were not sent, the API refused or left them out (%s), e.g. row %s: %s%s",
            options.name,
            not_sent,
            by_reason,
            listed[0]["row"],
            listed[0]["detail"],
            where,
        )
    unsent = report.total + not_sent
    if unsent / prepared.rows_read > options.max_invalid_ratio:
        raise QikberryRowsNotSentError(
            f"max_invalid_ratio: {unsent:,} of {prepared.rows_read:,} rows "
            f"({unsent / prepared.rows_read:.1%}) were not sent, more than the "
            f"{options.max_invalid_ratio:.1%} allowed: {report.total:,} rejected before sending and "
            f"{not_sent:,} refused or left out by the API ({by_reason or 'none'}). Everything else was sent "
            f"({summary['accepted']:,} messages accepted){where}; a retry of the task does not send any of "
            "them again. Fix the rows (or the account's opt-outs and blocks), or raise max_invalid_ratio.",
            summary=summary,
        )
    return summary
