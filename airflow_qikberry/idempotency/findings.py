"""
What a custom-id lookup found, judged against what was sent.

A :class:`Finding` (found, absent, partial, unknown, or a reused custom id).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Generic, Literal, NamedTuple, TypeVar

from airflow_qikberry.models import MessageStatus, SentMessage
from airflow_qikberry.protocol import canonical_number

__all__ = [
    "ABSENT",
    "Finding",
    "FindingKind",
    "ReuseCheck",
    "match_batch_rows",
    "match_send_rows",
    "match_upload_rows",
    "reused",
    "submitted_before",
]

T = TypeVar("T")


FindingKind = Literal["found", "absent", "partial", "unknown", "reused"]


class Finding(Generic[T]):
    """The meaning of the rows a custom-id lookup returned."""

    __slots__ = ("keys", "kind", "numbers", "reason", "result")

    def __init__(
        self,
        kind: FindingKind,
        result: T | None = None,
        reason: str = "",
        numbers: tuple[str, ...] = (),
        keys: tuple[str, ...] = (),
    ) -> None:
        self.kind = kind
        # For "partial": what was found (the messages accepted); ``numbers`` and ``keys`` (custom ids of a
        # batch's nodes) name the missing ones.
        self.result = result
        self.reason = reason
        self.numbers = numbers
        self.keys = keys

    def __repr__(self) -> str:
        return f"Finding({self.kind!r}, reason={self.reason!r}, numbers={self.numbers!r})"

    @property
    def settled(self) -> bool:
        """True when looking again cannot change the answer."""
        return self.kind in ("found", "unknown", "reused")


ABSENT: Finding[Any] = Finding("absent")


def submitted_before(row: MessageStatus, not_before: datetime, api_timezone: str) -> bool:
    """Return True when the row's ``submitted_at`` (API-local wall time) is earlier than ``not_before``."""
    if not row.submitted_at:
        return False
    try:
        when = datetime.fromisoformat(row.submitted_at.strip().replace("Z", "+00:00"))
    except ValueError:
        return False
    if when.tzinfo is None:
        from zoneinfo import ZoneInfo

        when = when.replace(tzinfo=ZoneInfo(api_timezone))
    return when < not_before


class ReuseCheck(NamedTuple):
    """Rows submitted before ``not_before`` (the call's start less the allowed clock skew) are not ours."""

    not_before: datetime
    api_timezone: str

    @classmethod
    def starting_now(cls, skew_seconds: float, api_timezone: str) -> ReuseCheck:
        return cls(datetime.now(timezone.utc) - timedelta(seconds=skew_seconds), api_timezone)

    def older(self, rows: Iterable[MessageStatus]) -> list[MessageStatus]:
        return [r for r in rows if submitted_before(r, self.not_before, self.api_timezone)]


def reused(rows: Sequence[MessageStatus], reuse: ReuseCheck | None) -> Finding[Any] | None:
    """Return a ``reused`` verdict when any of ``rows`` was submitted before this call began, else None."""
    old = reuse.older(rows) if reuse is not None else []
    if not old:
        return None
    return Finding(
        "reused",
        reason=f"custom id {old[0].custom_id!r} already names {len(old)} message(s) submitted before this "
        f"call (first at {old[0].submitted_at}): a custom id is an idempotency key, one per send",
    )


def match_send_rows(
    rows: Sequence[MessageStatus], custom_id: str, numbers: Sequence[str], reuse: ReuseCheck | None
) -> Finding[list[SentMessage]]:
    """Judge the rows a ``cid`` lookup found for a send of one text to ``numbers``."""
    # An API that ignored the filter would answer other messages: only rows carrying the id count.
    rows = [r for r in rows if r.custom_id == custom_id]
    if not rows:
        return ABSENT
    if (verdict := reused(rows, reuse)) is not None:
        return verdict
    want = Counter(canonical_number(n) for n in numbers)
    got = Counter(canonical_number(r.mobile) for r in rows)
    if got - want:
        return Finding(
            "unknown",
            reason=f"custom id {custom_id!r} names {sum((got - want).values())} message(s) to numbers this "
            "send did not include",
            numbers=tuple(numbers),
        )
    missing = want - got
    order = {canonical_number(n): i for i, n in enumerate(numbers)}
    by_order = sorted(rows, key=lambda r: order[canonical_number(r.mobile)])
    ordered = [SentMessage.from_status(r) for r in by_order]
    if missing:
        return Finding(
            "partial",
            ordered,
            reason=f"custom id {custom_id!r} shows {len(rows)} of the {len(numbers)} messages sent",
            numbers=tuple(n for n in numbers if canonical_number(n) in missing),
        )
    return Finding("found", ordered)


def match_batch_rows(
    rows: Sequence[MessageStatus],
    custom_ids: Sequence[str],
    numbers: Sequence[str],
    reuse: ReuseCheck | None = None,
) -> Finding[list[SentMessage]]:
    """Judge the rows of a batch's group against the nodes sent (``custom_ids[i]`` to ``numbers[i]``)."""
    wanted = {cid: canonical_number(n) for cid, n in zip(custom_ids, numbers, strict=True)}
    if (verdict := reused([r for r in rows if r.custom_id in wanted], reuse)) is not None:
        return verdict
    by_cid: dict[str, MessageStatus] = {}
    for row in rows:
        if row.custom_id not in wanted:
            continue
        if row.custom_id in by_cid or canonical_number(row.mobile) != wanted[row.custom_id]:
            return Finding(
                "unknown",
                reason=f"the batch's rows for custom id {row.custom_id!r} do not match the node sent",
                numbers=tuple(numbers),
            )
        by_cid[row.custom_id] = row
    found = [SentMessage.from_status(by_cid[cid]) for cid in custom_ids if cid in by_cid]
    if len(by_cid) < len(custom_ids):
        missing = [(cid, n) for cid, n in zip(custom_ids, numbers, strict=True) if cid not in by_cid]
        kind: FindingKind = "partial" if by_cid else "absent"
        return Finding(
            kind,
            found if by_cid else None,
            reason=f"the batch shows {len(by_cid)} of {len(custom_ids)} nodes",
            numbers=tuple(n for _, n in missing),
            keys=tuple(cid for cid, _ in missing),
        )
    return Finding("found", found)


def match_upload_rows(
    rows: Sequence[MessageStatus], custom_id: str, reuse: ReuseCheck | None
) -> Finding[int]:
    """
    Judge the rows a ``cid`` lookup found for a bulk upload.

    Any row of ours proves it was accepted (the count is of the rows visible so far; the API may still be
    processing the file).
    """
    rows = [r for r in rows if r.custom_id == custom_id]
    if not rows:
        return ABSENT
    return reused(rows, reuse) or Finding("found", len(rows))
