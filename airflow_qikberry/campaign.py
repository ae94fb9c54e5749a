"""The bulk-campaign engine behind :class:`~airflow_qikberry.operators.campaign.QikberryBulkCampaignOperator`.

A campaign is two passes over its rows, neither of which holds the rows in memory:

1. **Prepare**: read the source once (a list, a CSV file, a SQL query or an XCom), validate each row's number,
   render and measure its text, drop exact duplicates (same number and text), count SMS units, and write the
   accepted rows to a spool file in a temporary directory and the rejected ones to the rejected report.
   Every limit is then checked before anything is sent: at most 500,000 messages, the ``max_invalid_ratio``
   of rejected rows, the split-schedule window, and the balance.
2. **Send**: stream the spool in chunks of ``chunk_size`` rows, strictly in order, each through
   ``QikberryHook.send_batch`` (``sms/send/json`` with the campaign ``name``, so each chunk gets a group id).
   Every row carries a deterministic custom id ``qc-<key>-<chunk>-<position>``, so a retried task finds the
   prefix of chunks its earlier tries got accepted with a few status lookups and sends only the rest.

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
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from airflow_qikberry import validation as v
from airflow_qikberry.exceptions import QikberryInsufficientBalanceError, QikberryValidationError

if TYPE_CHECKING:
    from airflow_qikberry.hooks.qikberry import QikberryHook
    from airflow_qikberry.idempotency import TaskIdentity

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
    text = _LONG_DIGITS.sub(lambda m: v.mask_number(m.group()), " ".join(str(text).split()))
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
        v.validate_encoding(self.encoding)
        v.validate_max_units(self.max_units)
        if self.message is not None:
            v.validate_message(self.message, encoding=self.encoding, max_units=self.max_units)  # type: ignore[arg-type]
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
        items = v.split_recipients(recipients)
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

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self._handle: IO[str] | None = None
        self._writer: Any = None

    def __enter__(self) -> RejectedReport:
        if self.path:
            try:
                # backslashreplace: a rejected value may hold half of a surrogate pair (no UTF-8 form).
                self._handle = open(self.path, "w", newline="", encoding="utf-8", errors="backslashreplace")
            except OSError as exc:
                raise QikberryValidationError(
                    f"rejected_path: cannot write {self.path!r} ({exc.strerror or exc}).",
                    field="rejected_path",
                ) from None
            self._writer = csv.writer(self._handle)
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
    chunk_offsets: list[int] = field(default_factory=list)  # spool byte offset of each chunk's first row
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
    its API ``type`` for the campaign's encoding; see :func:`airflow_qikberry.protocol.validated_batch_node`).
    Exact duplicates (same canonical number and text) are recognised by an 8-byte BLAKE2b digest of the line
    kept in a set: about 70-100 bytes per accepted row, the only memory that grows with the campaign
    (docs/campaign.md). More than 500,000 accepted messages stop the pass with an error at once.
    """
    from airflow_qikberry.protocol import API_TYPE

    if (message is None) == (render is None):
        raise ValueError("prepare needs exactly one of message and render")
    out = Prepared()
    seen: set[int] = set()
    digest = hashlib.blake2b(digest_size=16)
    offset = 0
    key: str | None = None
    static = (
        v.validate_message(message, encoding=encoding, max_units=max_units)  # type: ignore[arg-type]
        if message is not None
        else None
    )
    normalize, blake2b = v.normalize_number, hashlib.blake2b
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
        digest.update(data)
        offset += len(data)
        out.chunk_units[-1] += info.units
        out.units += info.units
        if len(out.sample) < SAMPLE_ROWS:
            out.sample.append(
                {
                    "row": number_in_source,
                    "mobile": v.mask_number(number),
                    "message": message if static is not None else text,
                    "units": info.units,
                    "encoding": info.encoding,
                }
            )
        out.accepted += 1
    out.digest = digest.hexdigest()
    return out


def measure_text(text: str, encoding: str, max_units: int | None) -> v.MessageLength | tuple[str, str]:
    """How a rendered text is billed, or why it cannot be sent: ``(reason, detail)``."""
    if not isinstance(text, str) or not text.strip():
        return EMPTY_MESSAGE, "the rendered text is empty"
    if len(text) > v.MAX_MESSAGE_CHARS:
        return MESSAGE_TOO_LONG, f"{len(text)} characters; the API accepts at most {v.MAX_MESSAGE_CHARS}"
    try:
        v.check_sendable(text)  # half an emoji or a NUL: this row is rejected, the campaign goes on
        info = v.measure(text, encoding)  # type: ignore[arg-type]
    except QikberryValidationError as exc:
        return INVALID_MESSAGE, exc.message
    if max_units is not None and info.units > max_units:
        detail = f"needs {info.units} SMS parts but max_units is {max_units}"
        try:  # for its advice: how much to cut, which character forced Unicode
            v.validate_message(text, encoding=encoding, max_units=max_units)  # type: ignore[arg-type]
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


# --- resuming


class ProgressRecord:
    """The campaign's progress in Airflow's task state store (3.3+), a hint for a retry.

    Written after each accepted chunk: the group-id page of that chunk, then ``{"chunks_done", "chunks",
    "digest", ...}``. It can lag one chunk behind the API (the worker may die between the two), never lead it.
    """

    def __init__(self, store: Any, key: str, *, digest: str, chunks: int, plan: ChunkPlan, log: Any) -> None:
        self.store, self.log = store, log
        self.prefix = f"qikberry_campaign_{key}"
        self.identity = {
            "digest": digest,
            "chunks": chunks,
            "chunk_size": plan.chunk_size,
            "batch": plan.batch_size,
        }

    def read(self) -> tuple[int, list[str | None]] | None:
        """``(chunks_done, group ids)`` recorded by an earlier try, None when there is no usable record.

        Raises when the record belongs to other rows (the source changed between tries).
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
            self.log.warning(
                "Could not read the campaign's task state (%s); finding progress by lookups", exc
            )
            return None
        if any(record.get(k) != val for k, val in self.identity.items()):
            raise QikberryValidationError(
                "The rows or the chunking of this campaign changed since an earlier try of this task sent "
                f"part of it ({done} chunk(s) were accepted), so it cannot be resumed safely. {_CHANGED_FIX}",
                field="recipients",
            )
        groups: list[str | None] = []
        for page in pages:
            groups.extend(page if isinstance(page, list) else [])
        if len(groups) < done:
            return done, [None] * done  # pages lost: the group ids are looked up instead
        return done, groups[:done]

    def write(self, chunks_done: int, group_ids: Sequence[str | None]) -> None:
        if self.store is None:
            return
        page = (chunks_done - 1) // STORE_PAGE
        try:
            self.store.set(f"{self.prefix}:groups:{page}", list(group_ids[page * STORE_PAGE : chunks_done]))
            self.store.set(self.prefix, {**self.identity, "chunks_done": chunks_done})
        except Exception as exc:
            # Only a hint: a retry without it finds the progress by lookups.
            self.log.warning("Could not record the campaign's progress in the task state (%s)", exc)


_CHANGED_FIX = (
    "Nothing was sent in this try. Restore the source, or clear the task with resend=True to send it "
    "all again."
)


class _Spool:
    """Random access to the accepted rows: the first row of any chunk, or a chunk's rows in order."""

    def __init__(self, handle: IO[bytes], offsets: list[int]) -> None:
        self.handle, self.offsets = handle, offsets

    def first_number(self, chunk: int) -> str:
        self.handle.seek(self.offsets[chunk])
        return str(json.loads(self.handle.readline())[0])

    def seek(self, chunk: int) -> None:
        self.handle.seek(self.offsets[chunk])

    def read(self, size: int) -> list[list[str]]:
        readline = self.handle.readline
        # One JSON array of the chunk's lines: a single parse instead of one per row.
        rows: list[list[str]] = json.loads(b"[" + b",".join([readline() for _ in range(size)]) + b"]")
        return rows


def find_resume_point(
    hook: QikberryHook,
    key: str,
    chunks: Sequence[Chunk],
    spool: _Spool,
    groups: list[str | None],
    *,
    hint: int,
    field: str,
    log: Any,
) -> int:
    """The first chunk this retry must send; fills ``groups`` with the group ids of the chunks before it.

    Looks up the first row's custom id of chunks from ``hint`` on (exponential, then binary search), checks
    that each row found was sent to the number the spool has there (else the input changed: error, nothing
    sent), confirms the boundary chunk absent across the reconcile window, and then looks up the group id of
    every earlier chunk the task state did not record (one lookup each).
    """
    from airflow_qikberry import idempotency as ido
    from airflow_qikberry.exceptions import QikberryDeliveryUnknownError
    from airflow_qikberry.protocol import canonical_number

    def rows_of(index: int) -> list[Any]:
        cid = ido.campaign_custom_id(key, index, 0)
        return [r for r in hook.get_status(custom_id=cid) if r.custom_id == cid]

    def accepted(index: int) -> bool:
        rows = rows_of(index)
        if not rows:
            return False
        expected = spool.first_number(index)
        if canonical_number(rows[0].mobile) != canonical_number(expected):
            raise QikberryValidationError(
                f"{field}: chunk {index + 1} of this campaign was sent by an earlier try of this task to "
                f"{v.mask_number(rows[0].mobile)}, but its first row is now {v.mask_number(expected)}: the "
                f"recipients changed between tries, so the campaign cannot be resumed safely. {_CHANGED_FIX}",
                field=field,
            )
        groups[index] = rows[0].group_id
        return True

    runner = ido.ExactlyOnce(
        hook.policy, window=hook.reconcile_window, log=log, first_delay=hook.reconcile_delay
    )

    def absent(index: int) -> bool:
        cid = ido.campaign_custom_id(key, index, 0)
        gone = ido.confirm_absent(
            runner,
            lambda: bool(rows_of(index)),
            what=f"chunk {index + 1} (custom id {cid})",
            unknown=lambda msg: QikberryDeliveryUnknownError(
                f"Resuming the campaign: {msg.rstrip('.')}. Nothing more was sent in this try.", custom_id=cid
            ),
        )
        if not gone:
            accepted(index)  # it showed up late: check it is ours and take its group id
        return gone

    total = len(chunks)
    log.info(
        "Retry of a campaign task: finding the chunks an earlier try got accepted (%d chunk(s); %s)",
        total,
        f"the task state says the first {hint} were" if hint else "no task state to start from",
    )
    boundary = ido.resume_point(total, accepted, absent, start=hint)
    missing = [i for i in range(boundary) if groups[i] is None]
    if missing:
        log.info("Looking up the group ids of %d chunk(s) accepted by an earlier try", len(missing))
    for index in missing:
        if not accepted(index):
            raise QikberryDeliveryUnknownError(
                f"chunk {index + 1} of the campaign was accepted by an earlier try (a later chunk is "
                "visible) but cannot be found now; check sms/status before sending again. Nothing more was "
                "sent.",
                custom_id=ido.campaign_custom_id(key, index, 0),
            )
    return boundary


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
    from airflow_qikberry import protocol as p

    log = log if log is not None else logging.getLogger(__name__)
    ident: TaskIdentity | None = ido.task_identity() if identity is _CURRENT_TASK else identity
    settings = hook.settings  # reads the connection; no request
    # Every send parameter is checked now, with the connection's defaults, not at the first chunk.
    root = p.build_common(
        settings.send_defaults,
        message=options.message,
        sender=options.sender,
        service=options.service,
        template_id=options.template_id,
        entity_id=options.entity_id,
        encoding=options.encoding,  # type: ignore[arg-type]
        flash=options.flash,
        webhook_id=options.webhook_id,
        max_units=options.max_units,
        tags=options.tags,
        require_message=False,
    )
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
        record = ProgressRecord(store, key, digest=prepared.digest, chunks=len(chunks), plan=plan, log=log)
        groups: list[str | None] = [None] * len(chunks)
        start = 0
        with open(spool_path, "rb") as handle:
            spool = _Spool(handle, prepared.chunk_offsets)
            if ido.is_task_retry(ident) and not options.resend:
                hint = 0
                recorded = record.read()
                if recorded is not None:
                    hint, earlier = recorded
                    groups[:hint] = earlier
                start = find_resume_point(
                    hook, key, chunks, spool, groups, hint=min(hint, len(chunks)), field=source.field, log=log
                )
                summary["resumed_from_chunk"] = start
                summary["accepted_earlier_tries"] = sum(c.size for c in chunks[:start])
                log.info(
                    "Campaign %r: %d of %d chunk(s) (%d messages) were accepted by earlier tries; sending "
                    "from chunk %d",
                    options.name,
                    start,
                    len(chunks),
                    summary["accepted_earlier_tries"],
                    start + 1,
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
            sent = _send(options, hook, chunks, start, spool, key, times, groups, record, log, summary)
        summary["group_ids"] = groups
        summary["accepted"] = summary["accepted_earlier_tries"] + sent
    return summary


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
    spool: _Spool,
    key: str,
    times: Sequence[datetime | None],
    groups: list[str | None],
    record: ProgressRecord,
    log: Any,
    summary: dict[str, Any],
) -> int:
    """Pass 2: send chunks ``start..`` in order; returns how many messages this try got accepted."""
    from airflow_qikberry import idempotency as ido
    from airflow_qikberry import protocol as p

    if start >= len(chunks):
        log.info("Campaign %r: every chunk was already accepted; nothing left to send", options.name)
        return 0
    total = sum(c.size for c in chunks)
    progress = Progress(log, options.name, total, len(chunks), done=summary["accepted_earlier_tries"])
    static = options.message is not None
    node, cid = p.validated_batch_node, ido.campaign_custom_id
    sent = 0
    spool.seek(start)
    for chunk in chunks[start:]:
        rows = spool.read(chunk.size)
        ids = [cid(key, chunk.index, pos) for pos in range(chunk.size)]
        # Every id is made the same way and the last is the longest: checking it checks them all.
        v.validate_custom_id(ids[-1], field="custom_id")
        # Pass 1 validated every number and measured every text: the nodes go to the hook as validated
        # BatchNodes, built from the spool, and are not checked again (docs/campaign.md, Performance).
        nodes = (
            [node(row[0], i) for row, i in zip(rows, ids, strict=True)]
            if static
            else [node(row[0], i, message=row[1], api_type=row[2]) for row, i in zip(rows, ids, strict=True)]
        )
        # Whether this chunk went out is established: on a first try nothing did, on a retry the search
        # above confirmed it absent, so no lookup before posting.
        result = hook.send_batch(
            nodes,
            name=options.name,
            message=options.message,
            sender=options.sender,
            service=options.service,
            template_id=options.template_id,
            entity_id=options.entity_id,
            schedule_at=times[chunk.batch],
            encoding=options.encoding,  # type: ignore[arg-type]
            flash=options.flash,
            webhook_id=options.webhook_id,
            max_units=options.max_units,
            tags=options.tags or None,
            check_first=False,
        )
        groups[chunk.index] = result.group_id
        sent += result.accepted
        record.write(chunk.index + 1, groups)
        progress.chunk_accepted(chunk, result.accepted)
    return sent
