"""
Pass 1 of a campaign: validate, render, de-duplicate and measure every row.

Spool the accepted ones and report the rejected ones; then check the limits before anything is sent.

See :mod:`airflow_qikberry.campaign` and docs/campaign.md.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import IO, Any

from airflow_qikberry import phone, sms_text
from airflow_qikberry.campaign.dlt import DLT_MISMATCH
from airflow_qikberry.campaign.options import MAX_CAMPAIGN_MESSAGES, Chunk, ChunkPlan
from airflow_qikberry.campaign.row_template import plain_row_render
from airflow_qikberry.campaign.sources import phone_key
from airflow_qikberry.exceptions import QikberryValidationError
from airflow_qikberry.payloads import API_TYPE

__all__ = [
    "EMPTY_MESSAGE",
    "INVALID_MESSAGE",
    "INVALID_NUMBER",
    "MESSAGE_TOO_LONG",
    "MISSING_NUMBER",
    "SAMPLE_ROWS",
    "TEMPLATE_ERROR",
    "Prepared",
    "RejectedReport",
    "Spool",
    "check_limits",
    "compile_row_template",
    "context_globals",
    "measure_text",
    "prepare",
    "scrub",
    "spool_line",
]


SAMPLE_ROWS = 5


#: Why a row was rejected (the keys of the summary's ``rejected`` counts and the report's ``reason`` column).
MISSING_NUMBER = "missing_number"


INVALID_NUMBER = "invalid_number"


TEMPLATE_ERROR = "template_error"


EMPTY_MESSAGE = "empty_message"


MESSAGE_TOO_LONG = "message_too_long"


INVALID_MESSAGE = "invalid_message"


_LONG_DIGITS = re.compile(r"\+?\d[\d ]{6,}\d")


def scrub(text: str, limit: int = 200) -> str:
    """Mask anything number-like (an error text may quote a row) and cut it short, for logs and errors."""
    text = _LONG_DIGITS.sub(lambda m: phone.mask_number(m.group()), " ".join(str(text).split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def context_globals(context: Mapping[str, Any] | None) -> dict[str, Any]:
    """
    Return the task context as a plain dict of template globals, without reading a deprecated key.

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
    """
    Compile ``source`` once with ``env`` (the task's sandboxed Jinja environment).

    The result renders a row's text with ``row`` in scope, next to ``variables`` (the task context: ``ds``,
    ``params``...).
    """
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

    # Text and row values only ("Hi {{ row.name }}"): joined without Jinja where the answer is Jinja's.
    return plain_row_render(env, source, render) or render


class RejectedReport:
    """
    Rejected rows: counts by reason, one example each, and (with a path) a CSV ``row,reason,value,detail``.

    ``value`` is the number as given (the report is the user's own file: it must identify the row); ``detail``
    is the validation message, numbers masked.
    """

    def __init__(self, path: str | None = None, *, append: bool = False, target: Any = None) -> None:
        self.path = path
        # On object storage (an ObjectTarget): ``path`` is a local file, uploaded to the target whole on
        # close; ``shown`` is where the report is, for messages.
        self.target = target
        self.shown = target.url if target is not None else path
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
            if self.target is not None and self.path and exc[0] is None:
                self.target.upload(self.path)

    def add(self, row: int, reason: str, value: Any, detail: str) -> None:
        self.counts[reason] += 1
        detail = scrub(detail)
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
    """
    Return a row's number as ``normalize_number`` takes it, or None when the cell is empty.

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
    check: Callable[[str], str | None] | None = None,
) -> Prepared:
    """
    Pass 1: validate, render, de-duplicate and measure every row; spool the accepted ones.

    Spool lines are JSON ``[number]`` (one ``message`` for all) or ``[number, text, type]``: what the send
    pass needs to build each node without validating it again (the number canonical, the text measured, and
    its API ``type`` for the campaign's encoding; see :func:`airflow_qikberry.payloads.validated_batch_node`).
    Exact duplicates (same canonical number and text) are recognised by an 8-byte BLAKE2b digest of the line
    kept in a set: about 70-100 bytes per accepted row, the only memory that grows with the campaign
    (docs/campaign.md). More than 500,000 accepted messages stop the pass with an error at once. ``check``
    (the DLT pre-check of a rendered text: what differs, or None) rejects a row as ``dlt_mismatch``.
    """
    if (message is None) == (render is None):
        raise ValueError("prepare needs exactly one of message and render")
    out = Prepared()
    seen: set[int] = set()
    set_sum = 0
    source_rows = out.source_rows.append
    digest = hashlib.blake2b(digest_size=16)
    key = ""
    read_number: Callable[[object], str] | None = None
    static = (
        sms_text.validate_message(message, encoding=encoding, max_units=max_units)  # type: ignore[arg-type]
        if message is not None
        else None
    )
    blake2b, from_bytes = hashlib.blake2b, int.from_bytes
    # Per row, only what each row needs: the running counts are locals, and a chunk's lines go to the spool
    # and the digest as one block when it is full (the same bytes, in the same order, as row by row).
    accepted = duplicates = chunk_units = 0
    chunk_end = 0  # where the chunk being filled ends (the first row starts one)
    block: list[bytes] = []
    offset = 0
    number_in_source = 0
    for number_in_source, row in enumerate(rows, start=1):
        if read_number is None:
            key = phone_key(row.keys(), phone_column)
            read_number = phone.number_reader(default_region, field=key)
        given = row.get(key)
        raw = given if type(given) is str else _number_value(given)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            report.add(number_in_source, MISSING_NUMBER, given, f"the {key!r} column is empty")
            continue
        try:
            number = read_number(raw)
        except QikberryValidationError as exc:
            report.add(number_in_source, INVALID_NUMBER, given, exc.message)
            continue
        if static is not None:
            text, info = "", static
            line = spool_line(number)
        else:
            try:
                text = render(row)  # type: ignore[misc]
            except QikberryValidationError:
                raise  # about every row (a template variable without a column), not this one
            except Exception as exc:
                report.add(number_in_source, TEMPLATE_ERROR, given, f"{type(exc).__name__}: {exc}")
                continue
            measured = measure_text(text, encoding, max_units)
            if isinstance(measured, tuple):
                report.add(number_in_source, measured[0], given, measured[1])
                continue
            info = measured
            if check is not None and (differs := check(text)) is not None:
                report.add(number_in_source, DLT_MISMATCH, given, differs)
                continue
            line = spool_line(number, text, API_TYPE[info.encoding])
        data = (line + "\n").encode()
        fingerprint = from_bytes(blake2b(data, digest_size=8).digest(), "big")
        if fingerprint in seen:
            duplicates += 1
            continue
        seen.add(fingerprint)
        set_sum += fingerprint
        if accepted == chunk_end:
            if accepted >= MAX_CAMPAIGN_MESSAGES:
                raise QikberryValidationError(
                    f"{field_name}: more than {MAX_CAMPAIGN_MESSAGES:,} valid messages (stopped at source "
                    f"row {number_in_source:,}); the API takes at most {MAX_CAMPAIGN_MESSAGES:,} per "
                    "campaign. Split it into several campaigns. Nothing was sent.",
                    field=field_name,
                )
            offset = _write_block(block, spool, digest, offset)
            if accepted:
                out.chunk_units.append(chunk_units)
            out.chunk_offsets.append(offset)
            chunk_units = 0
            # A chunk "ends" at the limit too, so that the check above runs once the limit is reached.
            chunk_end = min(plan.next_start(accepted), MAX_CAMPAIGN_MESSAGES)
        block.append(data)
        source_rows(number_in_source)
        chunk_units += info.units
        if accepted < SAMPLE_ROWS:
            out.sample.append(
                {
                    "row": number_in_source,
                    "mobile": phone.mask_number(number),
                    "message": message if static is not None else text,
                    "units": info.units,
                    "encoding": info.encoding,
                }
            )
        accepted += 1
    _write_block(block, spool, digest, offset)
    if accepted:
        out.chunk_units.append(chunk_units)
    out.rows_read, out.accepted, out.duplicates = number_in_source, accepted, duplicates
    out.units = sum(out.chunk_units)
    out.digest = digest.hexdigest()
    out.set_digest = f"{set_sum % 2**64:016x}"
    return out


def _write_block(block: list[bytes], spool: IO[bytes], digest: Any, offset: int) -> int:
    """Write and hash a block of spool lines and empty it; return the spool's offset after it."""
    if not block:
        return offset
    data = b"".join(block)
    block.clear()
    spool.write(data)
    digest.update(data)
    return offset + len(data)


def spool_line(*parts: str) -> str:
    """
    Return the JSON array of ``parts`` exactly as ``json.dumps(parts, ensure_ascii=False)`` writes it.

    The spool and the campaign's digest depend on these bytes. Built without an encoder's machinery per row:
    the encoder's own string escaper, joined by its own separator.
    """
    return "[" + ", ".join(map(_json_string, parts)) + "]"


_json_string = json.encoder.encode_basestring  # what JSONEncoder(ensure_ascii=False) quotes strings with


def measure_text(text: str, encoding: str, max_units: int | None) -> sms_text.MessageLength | tuple[str, str]:
    """How a rendered text is billed, or why it cannot be sent: ``(reason, detail)``."""
    if not isinstance(text, str) or not text.strip():
        return EMPTY_MESSAGE, "the rendered text is empty"
    if len(text) > sms_text.MAX_MESSAGE_CHARS:
        return (
            MESSAGE_TOO_LONG,
            f"{len(text)} characters; the API accepts at most {sms_text.MAX_MESSAGE_CHARS}",
        )
    info = sms_text.measure_printable_ascii(text, encoding)  # type: ignore[arg-type]
    if info is None:
        try:
            sms_text.check_sendable(
                text
            )  # half an emoji or a NUL: this row is rejected, the campaign goes on
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
    where = f" (every rejected row is listed in {report.shown})" if report.shown else ""
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


class Spool:
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
        """Return the rows of chunk ``chunk`` (the last chunk read is kept)."""
        if self._last is None or self._last[0] != chunk:
            self.handle.seek(self.offsets[chunk])
            readline = self.handle.readline
            size = self.chunks[chunk].size
            # One JSON array of the chunk's lines: a single parse instead of one per row.
            rows: list[list[str]] = json.loads(b"[" + b",".join([readline() for _ in range(size)]) + b"]")
            self._last = (chunk, rows)
        return self._last[1]
