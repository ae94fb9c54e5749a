"""
What a delivery-event watcher remembers across restarts: the groups it watches and what it processed.

A message is *processed* once its final status was seen and, when it matched the watcher's selection, put in
an event. Positions ``n`` of ``<group>:<n>`` ids are kept as runs (``"1-4998,5000"``), so a campaign of
500,000 messages takes a few bytes once its reports are in. Groups older than the watcher's lookback are
forgotten. :meth:`EventMemory.to_json` is what the watcher stores in Airflow's asset state store (3.3+);
no I/O here.

Example::

    memory = EventMemory.from_json(stored)
    memory.watch("b34e35ad-...", since=time.time(), source="sent", positions=PositionSet.parse("1-250"))
    if not memory.processed("b34e35ad-...:7"):
        memory.mark("b34e35ad-...:7")
    stored = memory.to_json()
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["MEMORY_VERSION", "EventMemory", "GroupMemory", "PositionSet"]

#: Bumped when the stored form changes incompatibly; another version is read as empty memory.
MEMORY_VERSION = 1
#: At most this many processed ids of no group (ids without ``:<n>``) are kept, the newest.
MAX_LOOSE_IDS = 10_000

GroupSource = Literal["sent", "push"]


class PositionSet:
    """
    A set of positive integers kept as sorted, non-adjacent runs ``[first, last]``.

    Example::

        s = PositionSet.parse("1-3,7")
        s.add(4)
        str(s), 5 in s, len(s)  # ("1-4,7", False, 5)
    """

    def __init__(self, runs: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for first, last in runs:
            self.add_run(first, last)

    @classmethod
    def parse(cls, text: str | None) -> PositionSet:
        """
        Read a set from the ``"1-3,7"`` form (``pack_ids`` writes the same); blank is empty.

        Bad text raises ``ValueError``.
        """
        out = cls()
        for part in (text or "").split(","):
            part = part.strip()
            if not part:
                continue
            first, _, last = part.partition("-")
            out.add_run(int(first), int(last or first))
        return out

    @classmethod
    def of(cls, positions: Iterable[int]) -> PositionSet:
        out = cls()
        for pos in positions:
            out.add(pos)
        return out

    def add(self, pos: int) -> None:
        self.add_run(pos, pos)

    def add_run(self, first: int, last: int) -> None:
        if first < 1 or last < first:
            raise ValueError(f"not a run of positions: {first}-{last}")
        # Runs that overlap or touch [first, last] merge into one.
        lo = bisect.bisect_left(self._ends, first - 1)
        hi = bisect.bisect_right(self._starts, last + 1)
        if lo < hi:
            first = min(first, self._starts[lo])
            last = max(last, self._ends[hi - 1])
        self._starts[lo:hi] = [first]
        self._ends[lo:hi] = [last]

    def __contains__(self, pos: object) -> bool:
        if not isinstance(pos, int):
            return False
        i = bisect.bisect_right(self._starts, pos) - 1
        return i >= 0 and pos <= self._ends[i]

    def __len__(self) -> int:
        return sum(last - first + 1 for first, last in zip(self._starts, self._ends, strict=True))

    def __iter__(self) -> Iterator[int]:
        for first, last in zip(self._starts, self._ends, strict=True):
            yield from range(first, last + 1)

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PositionSet) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __repr__(self) -> str:
        return f"PositionSet({str(self)!r})"

    def runs(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))

    def without(self, other: PositionSet) -> list[int]:
        """Return the positions of this set that are not in ``other``, in order."""
        return [pos for pos in self if pos not in other]

    def __str__(self) -> str:
        return ",".join(
            str(a) if a == b else f"{a}-{b}" for a, b in zip(self._starts, self._ends, strict=True)
        )


@dataclass
class GroupMemory:
    """
    A watched group (a request or campaign chunk: the ``<uuid>`` of ``<uuid>:<n>`` ids).

    ``since`` is when it was sent (or first heard of, for a group learned from a push); ``expected`` the
    positions the provider recorded sending (None: unknown, the group's pages show them); ``done`` the
    positions processed; ``closed`` once nothing in it is pending.
    """

    group_id: str
    since: float
    source: GroupSource = "sent"
    expected: PositionSet | None = None
    done: PositionSet = field(default_factory=PositionSet)
    closed: bool = False
    campaign: str | None = None
    sender: str | None = None

    def pending_positions(self) -> list[int] | None:
        """
        Return the expected positions not processed yet.

        None when the expected positions are unknown.
        """
        if self.expected is None:
            return None
        return self.expected.without(self.done)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"t": round(self.since, 3), "l": self.source, "d": str(self.done)}
        if self.expected is not None:
            data["x"] = str(self.expected)
        if self.closed:
            data["c"] = 1
        if self.campaign is not None:
            data["cp"] = self.campaign
        if self.sender is not None:
            data["s"] = self.sender
        return data

    @classmethod
    def from_json(cls, group_id: str, data: dict[str, Any]) -> GroupMemory:
        return cls(
            group_id=group_id,
            since=float(data["t"]),
            source="push" if data.get("l") == "push" else "sent",
            expected=PositionSet.parse(data["x"]) if "x" in data else None,
            done=PositionSet.parse(data.get("d")),
            closed=bool(data.get("c")),
            campaign=data.get("cp"),
            sender=data.get("s"),
        )


class EventMemory:
    """
    The watched groups, the processed messages and where the push inbox was read up to.

    ``inbox_bucket`` is the last inbox time bucket read (see :mod:`airflow_qikberry.delivery.inbox`).
    """

    def __init__(self) -> None:
        self.groups: dict[str, GroupMemory] = {}
        self.loose: dict[str, float] = {}  # processed ids that have no <group>:<n> form -> when
        self.inbox_bucket: int | None = None

    # -- groups

    def watch(
        self,
        group_id: str,
        *,
        since: float,
        source: GroupSource,
        positions: PositionSet | None = None,
        campaign: str | None = None,
        sender: str | None = None,
    ) -> GroupMemory:
        """
        Watch a group, or complete what is known of one already watched.

        A group first learned from a push gets the positions, campaign and sender the provider recorded
        when it sent.
        """
        group = self.groups.get(group_id)
        if group is None:
            group = self.groups[group_id] = GroupMemory(group_id, since, source)
        if source == "sent":
            group.source = "sent"
            group.since = since
        if positions is not None:
            group.expected = (
                positions if group.expected is None else PositionSet(group.expected.runs() + positions.runs())
            )
            group.closed = group.closed and not group.pending_positions()
        group.campaign = campaign if campaign is not None else group.campaign
        group.sender = sender if sender is not None else group.sender
        return group

    def open_groups(self) -> list[GroupMemory]:
        return [g for g in self.groups.values() if not g.closed]

    def expire(self, before: float) -> list[GroupMemory]:
        """
        Forget groups sent before ``before`` (the lookback) and processed ids of no group.

        Returns the groups forgotten.
        """
        old = [g for g in self.groups.values() if g.since < before]
        for group in old:
            del self.groups[group.group_id]
        self.loose = {mid: at for mid, at in self.loose.items() if at >= before}
        return old

    # -- messages

    def processed(self, message_id: str) -> bool:
        from airflow_qikberry.delivery.inputs import split_id

        group_id, pos = split_id(message_id)
        if group_id is None or pos is None:
            return message_id in self.loose
        group = self.groups.get(group_id)
        return group is not None and pos in group.done

    def mark(self, message_id: str, at: float) -> None:
        """Record a message as processed (its group must be watched, unless the id has no group)."""
        from airflow_qikberry.delivery.inputs import split_id

        group_id, pos = split_id(message_id)
        if group_id is None or pos is None:
            self.loose[message_id] = at
            if len(self.loose) > MAX_LOOSE_IDS:
                for old in sorted(self.loose, key=self.loose.__getitem__)[: len(self.loose) - MAX_LOOSE_IDS]:
                    del self.loose[old]
            return
        self.groups[group_id].done.add(pos)

    # -- stored form

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": MEMORY_VERSION,
                "g": {gid: g.to_json() for gid, g in self.groups.items()},
                "o": self.loose,
                "i": self.inbox_bucket,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: Any) -> EventMemory:
        """
        Read memory from its stored form.

        Anything unreadable (or of another version) is empty memory, so a watcher starts over rather than
        fails (it then emits the lookback's reports again).
        """
        memory = cls()
        if not text:
            return memory
        try:
            data = json.loads(text) if isinstance(text, (str, bytes)) else text
            if not isinstance(data, dict) or data.get("v") != MEMORY_VERSION:
                return memory
            memory.groups = {
                gid: GroupMemory.from_json(gid, g) for gid, g in dict(data.get("g") or {}).items()
            }
            memory.loose = {str(k): float(v) for k, v in dict(data.get("o") or {}).items()}
            bucket = data.get("i")
            memory.inbox_bucket = None if bucket is None else int(bucket)
        except (TypeError, ValueError, KeyError):
            return cls()
        return memory
