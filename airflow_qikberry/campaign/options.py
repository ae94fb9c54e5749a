"""
What a campaign sends and how.

:class:`CampaignOptions` (checked before anything is read or sent) and the plan of its chunks and
split-schedule batches.

See :mod:`airflow_qikberry.campaign` and docs/campaign.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from airflow_qikberry import sms_text
from airflow_qikberry import validation as v
from airflow_qikberry.exceptions import QikberryValidationError
from airflow_qikberry.send_options import SendOptions

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MAX_BATCH_SIZE",
    "MAX_CAMPAIGN_MESSAGES",
    "MAX_CHUNK_SIZE",
    "MAX_INTERVAL",
    "MIN_BATCH_SIZE",
    "MIN_INTERVAL",
    "CampaignOptions",
    "Chunk",
    "ChunkPlan",
    "batch_times",
]


MAX_CAMPAIGN_MESSAGES = 500_000  # the API's bulk limit (reference section 3.9)


MAX_CHUNK_SIZE = 50_000  # the quick-campaign limit per request


DEFAULT_CHUNK_SIZE = 5_000


MIN_BATCH_SIZE, MAX_BATCH_SIZE = 1_000, 500_000  # split schedule limits (reference section 3.9)


MIN_INTERVAL, MAX_INTERVAL = timedelta(minutes=5), timedelta(hours=1)

_SEND_PARAMS = frozenset(f.name for f in fields(SendOptions))


@dataclass(frozen=True)
class CampaignOptions:
    """
    What to send and how; :meth:`checked` validates every field before anything is read or sent.

    ``send`` holds the send parameters (:class:`~airflow_qikberry.send_options.SendOptions`), the campaign
    ``name`` among them; left out, sender, service and entity id come from the connection, as for every
    send. ``message`` is one text for every row; otherwise ``render`` (see
    :func:`~airflow_qikberry.campaign.preparation.compile_row_template`) makes each row's text, or the
    stored DLT template ``send.template`` does, each variable from the row's column of that name or the one
    ``template_columns`` maps it to (:mod:`airflow_qikberry.campaign.dlt`). The other fields are the
    campaign's own: its split schedule, chunks, limits and mode.

    Example::

        options = CampaignOptions.checked(name="welcome", message="Welcome!", sender="QIKBRY", chunk_size=500)
        options.send.sender, options.chunk_size
    """

    send: SendOptions
    message: str | None = None
    batch_size: int | None = None
    interval: timedelta | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    max_invalid_ratio: float = 0.05
    check_balance: bool = True
    dry_run: bool = False
    resend: bool = False
    template_columns: Mapping[str, str] | None = None

    @property
    def name(self) -> str:
        """The campaign's name (the ``name`` of its send parameters)."""
        return str(self.send.name)

    @classmethod
    def checked(
        cls,
        *,
        name: str | None = None,
        message: str | None = None,
        has_template: bool = False,
        send: SendOptions | None = None,
        interval: timedelta | float | None = None,
        **kwargs: Any,
    ) -> CampaignOptions:
        """
        Validate and build. ``has_template`` says a per-row template was given instead of ``message``.

        The send parameters are ``send`` (an operator's, read from its fields) and any send parameter among
        ``kwargs`` (``sender=``, ``tags=``, ...; a value rendered as text is read back as a
        :class:`SendOptions` operator's is); ``name`` is the campaign's (default: ``send``'s).
        """
        params = {key: kwargs.pop(key) for key in _SEND_PARAMS & kwargs.keys()}
        if name is None and send is not None:
            name = send.name
        if not isinstance(name, str) or not name.strip():
            raise QikberryValidationError("name: the campaign needs a non-blank name.", field="name")
        v.validate_text_id(name, field="name")
        params["name"] = name.strip()
        send = SendOptions.rendered(**params) if send is None else send.replace(**params)
        texts = [
            what
            for what, given in (
                ("message", message is not None),
                ("message_template", has_template),
                ("template", send.template is not None),
            )
            if given
        ]
        if len(texts) != 1:
            got = {
                0: "neither message nor message_template nor template",
                2: f"both {' and '.join(texts)}",
            }.get(len(texts), "message, message_template and template")
            raise QikberryValidationError(
                f"message: got {got}; give exactly one: message (one text "
                "for every row), message_template (a Jinja template rendered per row, with `row` in scope) "
                "or template (a stored DLT template, its variables from the row's columns).",
                field="message",
            )
        if send.template_data is not None:
            raise QikberryValidationError(
                "template_data: a campaign fills the template's variables from each row's columns; map a "
                "variable to another column with template_columns={'otp': 'code'}.",
                field="template_data",
            )
        if "template_columns" in kwargs:
            kwargs["template_columns"] = _columns(kwargs["template_columns"])
        for flag in ("check_balance", "dry_run", "resend"):
            if flag in kwargs:
                kwargs[flag] = v.validate_flag(kwargs[flag], field=flag)
        options = cls(send=send, message=message, interval=_interval(interval), **kwargs)
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
        if self.message is not None:
            sms_text.validate_message(
                self.message, encoding=self.send.encoding, max_units=self.send.max_units
            )
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
        if self.send.schedule_at is None:
            raise QikberryValidationError(
                "schedule_at: a split schedule needs the time of its first batch (timezone-aware, more than "
                "5 minutes ahead); the others follow every `interval`.",
                field="schedule_at",
            )


def _columns(value: Any) -> dict[str, str] | None:
    """``template_columns``: template variable -> column name (a dict rendered as text is read back)."""
    if value is None:
        return None
    value = v.rendered_literal(value, "template_columns")
    if not isinstance(value, Mapping) or not all(
        isinstance(key, str) and isinstance(column, str) and key and column.strip()
        for key, column in value.items()
    ):
        raise QikberryValidationError(
            f"template_columns: must map template variables to column names, e.g. {{'otp': 'code'}}, got "
            f"{v.shown(value)}.",
            field="template_columns",
        )
    return dict(value)


def _interval(value: timedelta | float | None) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise QikberryValidationError(
            f"interval: {value!r} is neither a timedelta nor a number of seconds.", field="interval"
        )
    return timedelta(seconds=value)


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

    def next_start(self, position: int) -> int:
        """Return where the chunk after the one holding row ``position`` starts (0-based, in send order)."""
        batch = self.batch_size
        if batch:
            base = position - position % batch
            return base + min((position - base) // self.chunk_size * self.chunk_size + self.chunk_size, batch)
        return position - position % self.chunk_size + self.chunk_size

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
    """
    Return the scheduled time of each batch.

    ``schedule_at + i * interval`` (one time for all without a split schedule, none without ``schedule_at``).
    Every batch still to be sent (those of ``chunks[start:]``) must lie in the API's schedule window: all are
    checked before the first chunk goes out.
    """
    batches = chunks[-1].batch + 1 if chunks else 0
    first = options.send.schedule_at
    if first is None:
        return [None] * batches
    step = options.interval if options.batch_size and options.interval else timedelta(0)
    times: list[datetime | None] = [first + i * step for i in range(batches)]
    for i in sorted({c.batch for c in chunks[start:]}):
        where = "schedule_at" if i == 0 else f"schedule_at + {i} x interval, batch {i + 1} of {batches}"
        try:
            v.validate_schedule(times[i], timezone=timezone, field="schedule_at")
        except QikberryValidationError as exc:
            raise QikberryValidationError(
                f"{exc.message} ({where}); nothing was sent.", field="schedule_at"
            ) from None
    return times
