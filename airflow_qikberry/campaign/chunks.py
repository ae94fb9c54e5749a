"""
Sending one chunk of a campaign.

What became of each of its rows (accepted, refused by the API, left out of its answer), and how a row the API
refuses is isolated so that the rest of the chunk still goes out.

See :mod:`airflow_qikberry.campaign` and docs/campaign.md.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_qikberry import idempotency as ido
from airflow_qikberry import payloads as p
from airflow_qikberry import phone, sends
from airflow_qikberry import validation as v
from airflow_qikberry.campaign.preparation import RejectedReport, Spool, scrub
from airflow_qikberry.exceptions import QikberryPartialSendError, QikberryValidationError

if TYPE_CHECKING:
    from airflow_qikberry.campaign.options import CampaignOptions, Chunk
    from airflow_qikberry.hooks.qikberry import QikberryHook

__all__ = [
    "API_REFUSED",
    "EARLIER_LEFT_OUT",
    "LEFT_OUT",
    "MAX_SPLIT_REFUSALS",
    "NOT_ACCEPTED",
    "NOT_ACCEPTED_EARLIER",
    "NOT_SENT_LISTED",
    "Built",
    "BuiltAhead",
    "ChunkOutcome",
    "ChunkSender",
    "NotSentRows",
    "runs",
]


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
    """
    What became of a chunk's rows.

    The group ids holding its accepted messages (one per request that was accepted), how many were accepted,
    and the rows not sent as ``(position, reason, detail)``.
    """

    groups: list[str] = field(default_factory=list)
    accepted: int = 0
    not_sent: list[tuple[int, str, str]] = field(default_factory=list)

    def stored(self, size: int) -> Any:
        """Return the task-state form: the group id alone for a chunk accepted whole in one request."""
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
    """
    Rows the API did not take.

    Counted by reason, the first :data:`NOT_SENT_LISTED` listed with the number masked (for the summary),
    every one added to the rejected report (with the number, as for rows rejected before sending: the report
    is the user's file).
    """

    def __init__(self, report: RejectedReport, source_rows: Sequence[int]) -> None:
        self.report, self.source_rows = report, source_rows
        self.listed: list[dict[str, Any]] = []

    def add(self, chunk: Chunk, position: int, number: str, reason: str, detail: str) -> None:
        row = int(self.source_rows[chunk.start + position])
        self.report.add(row, reason, number, detail)
        if len(self.listed) < NOT_SENT_LISTED:
            self.listed.append(
                {"row": row, "mobile": phone.mask_number(number), "reason": reason, "detail": scrub(detail)}
            )


def _refused_nodes(error: QikberryValidationError, count: int, row_fields: set[str]) -> dict[int, str] | None:
    """
    Return the nodes a 422 from ``sms/send/json`` names (``nodes.<i>.<field>``), each with the API's message.

    ``{}`` when it names none; None when it is about the request as a whole: a root field, a field every row
    shares (the sender, a DLT id: only ``row_fields`` differ from row to row), or every node of the request
    for a reason other than its number.
    """
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


def runs(positions: Sequence[int]) -> list[int]:
    """
    For each run of consecutive positions, its first, last and middle one.

    The rows looked up to find a request that holds part of the run (a request holds a run of a chunk, less
    the rows the API refused).
    """
    out: list[int] = []
    i = 0
    while i < len(positions):
        j = i
        while j + 1 < len(positions) and positions[j + 1] == positions[j] + 1:
            j += 1
        out.extend(dict.fromkeys((positions[i], positions[j], positions[(i + j) // 2])))
        i = j + 1
    return out


class ChunkSender:
    """
    Post a chunk's rows (all of them, or those still to send) and settle what became of each one.

    Each row is:

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
        self.options, self.hook, self.key, self.log = options, hook, key, log
        self.settings = hook.settings
        # The send parameters of each split-schedule batch: the campaign's, at the batch's time. Pass 1 ran
        # the DLT pre-check on every row already: the chunks are not checked again.
        self.batch_options = [options.send.replace(schedule_at=when, dlt_check="off") for when in times]
        # What differs from row to row: the number, and with per-row texts the text and its encoding.
        self.row_fields = {"to"} if options.message is not None else {"to", "message", "type", "max_units"}

    def send(
        self,
        chunk: Chunk,
        rows: list[list[str]],
        positions: Sequence[int] | None = None,
        built: sends.BatchRequest | None = None,
    ) -> ChunkOutcome:
        """
        Send the chunk's rows (those at ``positions``, else all) and settle each one.

        ``built``: :meth:`build` of all its rows, made ahead (only when all are sent).
        """
        # Every id is made the same way and the last is the longest: checking it checks them all.
        v.validate_custom_id(ido.campaign_custom_id(self.key, chunk.index, chunk.size - 1), field="custom_id")
        outcome = ChunkOutcome()
        todo: list[list[int]] = [list(range(chunk.size)) if positions is None else list(positions)]
        split_refusals = 0
        while todo:
            batch = todo.pop()
            try:
                if built is not None and len(batch) == chunk.size:
                    request, built = built, None
                else:
                    request = self.build(chunk, rows, batch)
                result = self.hook.send_prepared(request)
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
                scrub(outcome.not_sent[0][2]),
                outcome.accepted,
                len(outcome.groups),
            )
        return outcome

    def build(self, chunk: Chunk, rows: list[list[str]], batch: Sequence[int]) -> sends.BatchRequest:
        """
        Return the request of the chunk's rows at positions ``batch``, body encoded, ready to post.

        Makes no request and touches nothing shared: the engine builds the next chunk's request on another
        thread while the current one is in flight.
        """
        node, cid, key, k = p.validated_batch_node, ido.campaign_custom_id, self.key, chunk.index
        # Pass 1 validated every number and measured every text: the nodes go to the hook as validated
        # BatchNodes, built from the spool, and are not checked again (docs/campaign.md, Performance).
        if self.options.message is not None:
            nodes = [node(rows[i][0], cid(key, k, i)) for i in batch]
        else:
            nodes = [node(rows[i][0], cid(key, k, i), message=rows[i][1], api_type=rows[i][2]) for i in batch]
        # Whether these rows went out is established (a first try; a retry's search; a 422, which accepts
        # nothing), so no lookup before posting.
        return sends.prepare_batch(
            self.settings,
            nodes,
            self.batch_options[chunk.batch],
            message=self.options.message,
            check_first=False,
        )

    def build_all(self, chunk: Chunk, rows: list[list[str]]) -> Built:
        """Return ``rows`` and :meth:`build` of all of them: what :class:`BuiltAhead` makes."""
        return rows, self.build(chunk, rows, range(chunk.size))

    def _left_out(self, chunk: Chunk, batch: Sequence[int], error: Any, outcome: ChunkOutcome) -> None:

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
            f"chunk {chunk.index + 1}: the API refused the request as a whole: {scrub(error.message)}"
            f"{' (' + ', '.join(sorted(error.errors)[:3]) + ')' if error.errors else ''}{sent}. It is not "
            "about single rows, so the rest of the campaign was not sent; fix the cause and retry the task "
            "(what was accepted is not sent again).",
            field=error.field,
            status_code=error.status_code,
        )


#: A chunk's rows and the request of all of them.
Built = tuple[list[list[str]], sends.BatchRequest]


class BuiltAhead:
    """
    The next chunk's rows and request, built on a thread of its own while the current request is in flight.

    The thread reads the spool through a handle of its own and calls only :meth:`ChunkSender.build`, which
    makes no request and changes nothing shared; an error it meets is raised by :meth:`take`, where building
    that chunk would have raised it. A chunk taken in another order (a retry's search moved on) is built
    again where it is sent.

    Example::

        with BuiltAhead(spool_path, prepared.chunk_offsets, chunks) as ahead:
            ahead.build(1, sender)  # begun now, on the other thread
            ...  # chunk 0 is posted meanwhile
            rows, request = ahead.take(1) or sender.build_all(chunks[1], spool.rows(1))
    """

    def __init__(self, spool_path: str, offsets: list[int], chunks: Sequence[Chunk]) -> None:
        self.spool_path, self.offsets, self.chunks = spool_path, offsets, chunks
        self.pool: Any = None
        self.spool: Spool | None = None
        self.pending: tuple[int, Any] | None = None

    def __enter__(self) -> BuiltAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.spool is not None:
            self.spool.handle.close()

    def build(self, index: int, sender: ChunkSender) -> None:
        """Begin building chunk ``index``'s request (all its rows); one at a time, in the order begun."""
        if self.spool is None:  # the thread and its spool handle, on first use
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qikberry-campaign-ahead")
            handle = open(self.spool_path, "rb")  # noqa: SIM115 - closed by __exit__
            self.spool = Spool(handle, self.offsets, self.chunks)
        spool, chunk = self.spool, self.chunks[index]
        self.pending = (index, self.pool.submit(lambda: sender.build_all(chunk, spool.rows(index))))

    def take(self, index: int) -> Built | None:
        """Return chunk ``index``'s rows and request when they are the ones built ahead, else None."""
        pending, self.pending = self.pending, None
        if pending is None:
            return None
        built, future = pending
        if built != index:
            future.cancel()
            return None
        return future.result()  # type: ignore[no-any-return]
