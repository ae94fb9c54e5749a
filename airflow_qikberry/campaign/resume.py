"""
Resuming a campaign on a task retry.

The progress record in Airflow's task state store (a hint) and the search, by custom-id lookups, for the
chunks an earlier try got accepted, settled row by row.

See :mod:`airflow_qikberry.campaign` and docs/campaign.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_qikberry import idempotency as ido
from airflow_qikberry import phone
from airflow_qikberry.campaign.chunks import EARLIER_LEFT_OUT, NOT_ACCEPTED_EARLIER, ChunkOutcome, runs
from airflow_qikberry.exceptions import QikberryDeliveryUnknownError, QikberryValidationError
from airflow_qikberry.protocol import canonical_number

if TYPE_CHECKING:
    from airflow_qikberry.campaign.options import Chunk, ChunkPlan
    from airflow_qikberry.campaign.preparation import Spool
    from airflow_qikberry.hooks.qikberry import QikberryHook
    from airflow_qikberry.models import MessageStatus

__all__ = [
    "STORE_PAGE",
    "ProgressRecord",
    "Resume",
]


STORE_PAGE = 100  # group ids per task-state-store key: one write per chunk, whatever the chunk count


class ProgressRecord:
    """
    The campaign's progress in Airflow's task state store (3.3+), a hint for a retry.

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
        source: dict[str, Any] | None = None,
        field: str = "recipients",
    ) -> None:
        self.store, self.log = store, log
        # What was read of a source object (storage.ObjectSource.identity): a retry must read the same bytes.
        self.source, self.field = source, field
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
        """
        ``(chunks_done, stored outcomes)`` recorded by an earlier try, None when there is no usable record.

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
        from airflow_qikberry.campaign.storage import check_unchanged

        check_unchanged(record.get("source"), self.source, field=self.field, chunks_done=done)
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
        """
        Record that ``chunks_done`` chunks are settled.

        ``page_entries`` are the stored outcomes of the page of :data:`STORE_PAGE` chunks the last one belongs
        to, up to it.
        """
        if self.store is None:
            return
        page = (chunks_done - 1) // STORE_PAGE
        try:
            self.store.set(f"{self.prefix}:groups:{page}", list(page_entries))
            entry = {**self.identity, "rows": self.set_digest, "chunks_done": chunks_done}
            if self.source is not None:
                entry["source"] = self.source
            self.store.set(self.prefix, entry)
        except Exception as exc:
            # Only a hint: a retry without it finds the progress by lookups.
            self.log.warning("Could not record the campaign's progress in the task state (%s)", exc)


_CHANGED_FIX = (
    "Nothing was sent in this try. Restore the source, or clear the task with resend=True to send it "
    "all again."
)


class Resume:
    """
    How far earlier tries of a campaign task got, chunk by chunk and row by row: a retry's first step.

    :meth:`find` fills ``outcomes`` for the chunks earlier tries settled and says where this try starts.
    Every row found must carry the number the spool has at its position; otherwise the source changed (or
    came in another order) between tries and the task fails, sending nothing.
    """

    def __init__(
        self,
        hook: QikberryHook,
        key: str,
        chunks: Sequence[Chunk],
        spool: Spool,
        outcomes: list[ChunkOutcome | None],
        *,
        field: str,
        log: Any,
    ) -> None:

        self.hook, self.key, self.chunks, self.spool, self.outcomes = hook, key, chunks, spool, outcomes
        self.field, self.log = field, log
        self.runner = ido.ExactlyOnce(
            hook.policy, window=hook.reconcile_window, log=log, first_delay=hook.reconcile_delay
        )

    def cid(self, chunk: int, position: int) -> str:

        return ido.campaign_custom_id(self.key, chunk, position)

    def row(self, chunk: int, position: int) -> MessageStatus | None:
        """Return the message of one row, by its custom id (None: not there, or not yet visible)."""
        cid = self.cid(chunk, position)
        rows = [r for r in self.hook.get_status(custom_id=cid) if r.custom_id == cid]
        if not rows:
            return None
        self.check(chunk, position, rows[0])
        return rows[0]

    def probe(self, chunk: int, positions: Iterable[int]) -> MessageStatus | None:
        """Return the first of these rows that is there."""
        for position in positions:
            if (found := self.row(chunk, position)) is not None:
                return found
        return None

    def check(self, chunk: int, position: int, row: MessageStatus) -> None:

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

        return lambda msg: QikberryDeliveryUnknownError(
            f"Resuming the campaign: {msg.rstrip('.')}. Nothing more was sent in this try.",
            custom_id=self.cid(chunk, 0),
        )

    def find(self, start: int) -> tuple[int, list[int] | None]:
        """
        Where this try starts.

        ``(chunk, None)`` to send from ``chunk`` on, or ``(chunk, positions)`` when an earlier try sent part
        of ``chunk`` and these rows of it are still to send.

        Looks up the first row of chunks from ``start`` on (exponential, then binary search: a chunk is
        posted only once the one before it is settled); the first chunk whose first row is missing is
        looked for over the reconcile window (it may have been accepted a moment before the earlier try
        died), then by its last and middle rows too (the first may be a row the API refused or left out).
        Every chunk before it is then settled from its rows: ``outcomes`` gets its group ids, accepted
        count and rows not sent; the last of them may be only partly sent.
        """
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
                what=f"chunk {index + 1}",
                looking_for=f"custom id {self.cid(index, 0)} (its first row)",
                why=f"{f'chunk {index} was accepted' if index else 'this is a retry'}, so the earlier try "
                f"may have posted chunk {index + 1} just before it stopped, and the API may show an accepted "
                "message only a while later",
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
        """
        Fill ``outcomes[index]`` from what the API holds of chunk ``index``.

        Return the rows of it still to send (only for the ``last`` chunk an earlier try reached, which it may
        have left part-sent).

        The group of a row found holds every row of its request; a chunk accepted whole costs one page
        (its ``meta.total``). Rows in none of the groups found are looked up by their custom ids (the
        first, last and middle row of each run of them: another request's group shows there); rows still
        absent were refused or left out then (``not_accepted_earlier``: a later chunk was posted, so this
        one was settled), or, for the ``last`` chunk, are confirmed absent over the reconcile window and
        sent again.
        """
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
            for p in runs([p for p in range(size) if p not in found]):
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
        """
        Return the rows of ``absent`` that stay absent over the reconcile window.

        They are looked up by the ends and middle of each run of them; a row that shows up brings its
        request's group, and the rest is confirmed again.
        """
        shown: list[MessageStatus] = []
        probes: list[int] = []

        def lookup() -> bool:
            row = self.probe(index, probes)
            if row is not None:
                shown.append(row)
            return row is not None

        while absent:
            probes[:] = runs(absent)
            if ido.confirm_absent(
                self.runner,
                lookup,
                what=f"{len(absent)} row(s) of chunk {index + 1}",
                looking_for=f"{len(probes)} of their custom ids ({self.cid(index, probes[0])}...)",
                why=f"chunk {index + 1} is the last one an earlier try reached, and it may have posted "
                "them just before it stopped; the API may show an accepted message only a while later",
                unknown=self.unknown(index),
            ):
                return absent
            take(shown[-1])
            absent = [p for p in absent if p not in found]
        return absent
