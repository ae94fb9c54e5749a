"""
Batch answers: how the answer of an ``sms/send/json`` is read, and its nodes looked up by custom id.

The reader :class:`~airflow_qikberry.sends.BatchRequest` hands to the exactly-once send: the answer must
account for every node (the rows it did give are kept by node index when it does not), and an unknown or
partial outcome is settled by looking the nodes up, by custom id or, when many are missing, through the
batch's group. No request of its own: it reads through the :class:`~airflow_qikberry.sends.SendIO` it is
given.

Example::

    reader = _BatchReader(io, cids, numbers)
    send = ido.Send(..., parse=reader.parse, lookup=reader.lookup, ...)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from airflow_qikberry import idempotency as ido
from airflow_qikberry.models import BatchResult, MessageStatus, SentMessage
from airflow_qikberry.protocol import ApiResponse, canonical_number, rows_of

if TYPE_CHECKING:
    from airflow_qikberry.sends import SendIO


class _BatchReader:
    """How a batch's answer is read and its nodes looked up, by their custom ids and their group."""

    def __init__(self, io: SendIO, cids: Sequence[str], numbers: Sequence[str]) -> None:
        self.io, self.cids, self.numbers = io, cids, numbers
        # What a 2xx answer that left nodes out did say: its group and the rows it gave, by node index.
        self.answered: dict[int, SentMessage] = {}
        self.answered_group: list[str] = []

    def parse(self, response: ApiResponse) -> BatchResult:
        sent = tuple(SentMessage.from_api(row) for row in rows_of(response, what="sms/send/json"))
        group = response.body.get("group_id") or (sent[0].group_id if sent else None)
        try:
            ido.accounted_for(sent, self.numbers, "batch")
        except ido.Unaccounted:
            rows = _answer_rows(sent, self.cids, self.numbers)
            if rows is not None and group:
                self.answered.update(rows)
                self.answered_group.append(str(group))
            raise
        return BatchResult(group_id=str(group) if group else None, messages=sent)

    def rows_of_node(self, index: int) -> list[MessageStatus]:
        cid = self.cids[index]
        return [r for r in self.io.status_rows({"cid": cid}) if r.custom_id == cid]

    def lookup_missing(self, check_reuse: bool) -> ido.Finding[BatchResult]:
        # The answer's own rows are accepted messages; only the nodes it left out are looked up.
        cids, numbers = self.cids, self.numbers
        found: dict[int, SentMessage] = dict(self.answered)
        missing = [i for i in range(len(cids)) if i not in found]
        if len(missing) > len(cids) // 100 + 1:
            # Many left out: the group's pages (100 rows each) cost fewer lookups than one per node.
            index_of = {cids[i]: i for i in missing}
            in_group: dict[int, list[MessageStatus]] = {}
            for row in self.io.status_rows({"group_id": self.answered_group[0]}):
                if row.custom_id in index_of:
                    in_group.setdefault(index_of[row.custom_id], []).append(row)
            looked = [(i, in_group.get(i, [])) for i in missing]
        else:
            looked = [(i, self.rows_of_node(i)) for i in missing]
        seen: list[MessageStatus] = []
        for index, rows in looked:
            if len(rows) > 1 or any(canonical_number(r.mobile) != numbers[index] for r in rows):
                return ido.Finding(
                    "unknown", reason=f"the rows of custom id {cids[index]!r} do not match the node sent"
                )
            if rows:
                seen.append(rows[0])
                found[index] = SentMessage.from_status(rows[0])
        if (reused := ido.reused(seen, self.io.reuse_check(check_reuse))) is not None:
            return reused
        result = BatchResult(self.answered_group[0], tuple(found[i] for i in sorted(found)))
        if len(found) == len(cids):
            return ido.Finding("found", result)
        missing = [i for i in range(len(cids)) if i not in found]
        return ido.Finding(
            "partial",
            result,
            reason=f"the batch's answer and lookups show {len(found)} of {len(cids)} nodes",
            numbers=tuple(numbers[i] for i in missing),
            keys=tuple(cids[i] for i in missing),
        )

    def lookup(self, check_reuse: bool) -> ido.Finding[BatchResult]:
        if self.answered_group:
            return self.lookup_missing(check_reuse)
        # Find the batch's group by a node that is there: the first node may be one the API refused or
        # left out, so its absence alone does not prove the batch absent.
        anchor = next(
            (rows[0] for rows in map(self.rows_of_node, ido.sample_positions(len(self.cids))) if rows), None
        )
        if anchor is None:
            return ido.ABSENT
        group = anchor.group_id
        if group is None:
            return ido.Finding(
                "unknown",
                reason=f"rows for custom id {anchor.custom_id!r} exist but carry no group id to find the "
                "batch by",
            )
        rows = list(self.io.status_rows({"group_id": group}))
        verdict = ido.match_batch_rows(rows, self.cids, self.numbers, self.io.reuse_check(check_reuse))
        found = BatchResult(group_id=group, messages=tuple(verdict.result or ()))
        if verdict.kind == "found":
            return ido.Finding("found", found)
        return ido.Finding(
            verdict.kind,
            found if verdict.kind == "partial" else None,
            reason=verdict.reason,
            numbers=verdict.numbers,
            keys=verdict.keys,
        )


def _answer_rows(
    sent: Sequence[SentMessage], cids: Sequence[str], numbers: Sequence[str]
) -> dict[int, SentMessage] | None:
    """
    Return the rows of a batch's answer by node index (by custom id, else by number).

    None when a row names a node that was not sent (an answer that cannot be trusted row by row).
    """
    by_cid = {cid: i for i, cid in enumerate(cids)}
    by_number: dict[str, list[int]] = {}
    for i, n in enumerate(numbers):
        by_number.setdefault(n, []).append(i)
    out: dict[int, SentMessage] = {}
    for row in sent:
        index = by_cid.get(row.custom_id or "")
        if index is None:
            free = [i for i in by_number.get(row.mobile, []) if i not in out]
            index = free[0] if free else None
        if index is None or index in out or numbers[index] != row.mobile:
            return None
        out[index] = row
    return out
