"""
The delivery feed: what a delivery-event watcher does each sweep to find new final reports.

One sweep, in order:

1. **Registry** - the groups this provider sent on the connection (recorded by the operators, see
   :mod:`airflow_qikberry.delivery.inbox`) within the lookback are watched; new ones are read once.
2. **Push inbox** - reports the receiver recorded since the last sweep are read (each once) and processed;
   a report of a group not watched yet teaches the watcher that group (unless the selection names a
   campaign, which only the registry knows).
3. **Catch-up** (when due) - for every open group, ``sms/status`` is read for the messages still pending,
   the cheapest way (:class:`~airflow_qikberry.delivery.tracker.DeliveryTracker`: id lookups, the pages
   that hold them, or a walk), inside the token's GET and poll budgets of the process
   (:meth:`~airflow_qikberry.hooks.qikberry_async.QikberryAsyncHook.poll_page`). Reports whose push was
   lost or dropped are found here: ``sms/status`` is the source of truth.

Every final report is *processed* once (remembered in :class:`~airflow_qikberry.delivery.memory.EventMemory`)
and returned when it matches the watcher's :class:`Selection`. The sweep returns the memory as it stands
after it, to be stored only once the events made of its reports are safely in Airflow's database.

Example::

    feed = DeliveryFeed(settings, EventMemory(), variables=variable_store(), hook=async_hook)
    sweep = await feed.sweep(catch_up=True)
    sweep.reports, sweep.memory, sweep.stats
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow_qikberry.delivery.dlr import DeliveryReport
from airflow_qikberry.delivery.inbox import (
    INBOX_RETENTION,
    REGISTRY_RETENTION,
    InboxKey,
    SentEntry,
    VariableStore,
    bucket_of,
    bucket_prefix,
    inbox_prefix,
    parse_inbox_key,
    parse_sent_key,
    registry_prefix,
)
from airflow_qikberry.delivery.inputs import StatusSets, split_id
from airflow_qikberry.delivery.memory import EventMemory, GroupMemory, PositionSet

if TYPE_CHECKING:
    from airflow_qikberry.delivery.tracker import DeliveryTracker
    from airflow_qikberry.hooks.qikberry_async import QikberryAsyncHook
    from airflow_qikberry.models import MessageStatus, StatusPage

__all__ = ["DeliveryFeed", "FeedSettings", "Selection", "Sweep"]

#: A listing of more inbox buckets than this reads the connection's whole inbox prefix instead.
MAX_BUCKET_LISTINGS = 12
#: Whole-prefix listings (which also prune old entries) happen at most this often (seconds).
PRUNE_EVERY = 3600.0
#: Groups whose catch-up lookups run at once (each runs up to 8 lookups at once).
GROUP_CONCURRENCY = 4


@dataclass(frozen=True)
class Selection:
    """
    Which final reports a watcher emits.

    By outcome (``delivered``, ``failed``) or exact statuses, and optionally only of one campaign (a name
    or a glob such as ``"bill-reminder-*"``) or sender.
    """

    outcomes: frozenset[str] = frozenset({"failed"})
    statuses: frozenset[str] | None = None
    campaign: str | None = None
    sender: str | None = None

    def wants_group(self, campaign: str | None, sender: str | None) -> bool:
        """Whether a group recorded with this campaign and sender can hold reports this watcher wants."""
        if self.campaign is not None and not fnmatch.fnmatchcase(campaign or "", self.campaign):
            return False
        return self.sender is None or sender is None or sender.upper() == self.sender.upper()

    def matches(self, report: DeliveryReport) -> bool:
        if self.statuses is not None:
            if report.status not in self.statuses:
                return False
        elif report.outcome not in self.outcomes:
            return False
        if self.campaign is not None and not fnmatch.fnmatchcase(report.campaign or "", self.campaign):
            return False
        return self.sender is None or (report.sender or "").upper() == self.sender.upper()

    def describe(self) -> dict[str, Any]:
        return {
            "outcomes": sorted(self.outcomes),
            "statuses": None if self.statuses is None else sorted(self.statuses),
            "campaign": self.campaign,
            "sender": self.sender,
        }


@dataclass(frozen=True)
class FeedSettings:
    """
    How a feed reads: the connection, the selection, the status vocabulary and its time windows.

    ``lookback`` bounds how long a group is watched after it was sent (seconds); ``settle`` how long after
    the send a group whose positions are unknown is read once more before it is closed (rows the API shows
    late); ``learn_from_pushes`` whether a pushed report of an unknown group makes the watcher read that
    group too.
    """

    conn_id: str
    selection: Selection = field(default_factory=Selection)
    statuses: StatusSets = field(default_factory=StatusSets)
    lookback: float = 3 * 24 * 3600.0
    settle: float = 300.0
    learn_from_pushes: bool = True


class Sweep(NamedTuple):
    """
    What one sweep found.

    The new reports the watcher wants, its memory after the sweep (JSON) and counts (``pushed``,
    ``read_back``, ``lookups``, ``inbox_reads``, ``groups_open``, ...).
    """

    reports: list[DeliveryReport]
    memory: str
    stats: dict[str, int]


class DeliveryFeed:
    """Finds new final delivery reports, sweep after sweep (see the module docstring)."""

    def __init__(
        self,
        settings: FeedSettings,
        memory: EventMemory,
        *,
        variables: VariableStore,
        hook: QikberryAsyncHook,
        api_timezone: str = "Asia/Kolkata",
        clock: Callable[[], float] = time.time,
        log: logging.Logger | Any = None,
    ) -> None:
        self.settings = settings
        self.memory = memory
        self.variables = variables
        self.hook = hook
        self.api_timezone = api_timezone
        self.clock = clock
        self.log = log or logging.getLogger(__name__)
        self._trackers: dict[str, tuple[DeliveryTracker, float]] = {}
        self._rewalk_at: dict[str, float] = {}
        self._registry_seen: set[str] = set()
        self._inbox_seen: dict[str, int] = {}
        self._pruned_at = float("-inf")
        self._max_age = 0.0

    # -- the sweep

    async def sweep(self, *, catch_up: bool = True, max_age: float = 0.0) -> Sweep:
        """
        Run one sweep (registry, inbox, then catch-up when ``catch_up``).

        ``max_age`` lets catch-up lookups reuse another watcher's identical answer of up to that many
        seconds (one triggerer's event loop).
        """
        before = (self.memory.to_json(), set(self._registry_seen), dict(self._inbox_seen))
        try:
            return await self._sweep(catch_up, max_age)
        except BaseException:
            # A sweep counts whole or not at all: what it marked processed but did not return would
            # never be emitted.
            memory, self._registry_seen, self._inbox_seen = before
            self.memory = EventMemory.from_json(memory)
            self._trackers.clear()
            raise

    async def _sweep(self, catch_up: bool, max_age: float) -> Sweep:
        now = self.clock()
        self._max_age = max_age
        stats = {"pushed": 0, "read_back": 0, "lookups": 0, "inbox_reads": 0, "registry_reads": 0}
        out: list[DeliveryReport] = []
        for group in self.memory.expire(now - self.settings.lookback):
            self._trackers.pop(group.group_id, None)
            if not group.closed:
                self.log.warning(
                    "Qikberry delivery events: group %s is older than the lookback (%g h) with messages "
                    "still "
                    "pending; it is no longer read",
                    group.group_id,
                    self.settings.lookback / 3600,
                )
        await self._read_registry(now, stats)
        await self._read_inbox(now, stats, out)
        if catch_up:
            await self._catch_up(now, stats, out)
        stats["groups_open"] = len(self.memory.open_groups())
        stats["groups"] = len(self.memory.groups)
        stats["emitted"] = len(out)
        return Sweep(out, self.memory.to_json(), stats)

    def _process(self, report: DeliveryReport, now: float, out: list[DeliveryReport]) -> None:
        """
        Process a final report seen for the first time.

        Remember it, and keep it when the selection wants it.
        """
        group_id = report.group_id
        group = self.memory.groups.get(group_id) if group_id else None
        if group is not None:
            report = report.with_context(campaign=group.campaign, sender=group.sender)
        self.memory.mark(report.message_id, now)
        tracked = self._trackers.get(group_id or "")
        if tracked is not None:
            tracked[0].observe(report.message_id, report.status)
        if self.settings.selection.matches(report):
            out.append(report)

    # -- 1. the sends registry

    async def _read_registry(self, now: float, stats: dict[str, int]) -> None:
        conn_id = self.settings.conn_id
        for key in await self.variables.keys(registry_prefix(conn_id)):
            parsed = parse_sent_key(conn_id, key)
            if parsed is None or key in self._registry_seen:
                continue
            if parsed.sent_at < now - REGISTRY_RETENTION:
                await self.variables.delete(key)
                continue
            known = self.memory.groups.get(parsed.group_id)
            if parsed.sent_at < now - self.settings.lookback or (
                known is not None and known.source == "sent"
            ):
                self._registry_seen.add(key)
                continue
            text = await self.variables.get(key)
            stats["registry_reads"] += 1
            self._registry_seen.add(key)
            if text is None:
                continue
            entry = SentEntry.from_json(text)
            if not self.settings.selection.wants_group(entry.campaign, entry.sender):
                continue
            try:
                positions = None if entry.positions is None else PositionSet.parse(entry.positions)
            except ValueError:
                positions = None
            self.memory.watch(
                parsed.group_id,
                since=float(parsed.sent_at),
                source="sent",
                positions=positions,
                campaign=entry.campaign,
                sender=entry.sender,
            )
            self._trackers.pop(parsed.group_id, None)  # what is known of the group changed: plan anew

    # -- 2. the push inbox

    async def _inbox_keys(self, now: float) -> list[InboxKey]:
        conn_id = self.settings.conn_id
        current = bucket_of(int(now * 1000))
        since = self.memory.inbox_bucket
        if since is None or current - since + 2 > MAX_BUCKET_LISTINGS or now - self._pruned_at > PRUNE_EVERY:
            # The whole inbox of the connection: on a first sweep, after a long pause, and now and then to
            # delete what is older than the retention (whoever received it).
            self._pruned_at = now
            fresh: list[InboxKey] = []
            for name in await self.variables.keys(inbox_prefix(conn_id)):
                found = parse_inbox_key(conn_id, name)
                if found is None:
                    continue
                if found.received_ms < (now - INBOX_RETENTION) * 1000:
                    await self.variables.delete(found.key)
                else:
                    fresh.append(found)
            return fresh
        # One bucket before the last one read: a report received just before a bucket turned over may be
        # written after the listing (or on an API server whose clock is a little behind).
        out: list[InboxKey] = []
        for bucket in range(since - 1, current + 1):
            for key in await self.variables.keys(bucket_prefix(conn_id, bucket)):
                parsed = parse_inbox_key(conn_id, key)
                if parsed is not None:
                    out.append(parsed)
        return out

    async def _read_inbox(self, now: float, stats: dict[str, int], out: list[DeliveryReport]) -> None:
        settings = self.settings
        current = bucket_of(int(now * 1000))
        for key in sorted(await self._inbox_keys(now), key=lambda k: (k.received_ms, k.key)):
            if key.key in self._inbox_seen:
                continue
            self._inbox_seen[key.key] = key.bucket
            if self.memory.processed(key.message_id) or settings.statuses.outcome(key.status) == "pending":
                continue
            group_id, _ = split_id(key.message_id)
            group = self.memory.groups.get(group_id) if group_id else None
            if (
                group is None
                and group_id is not None
                and (not settings.learn_from_pushes or settings.selection.campaign is not None)
            ):
                continue  # a group this watcher does not read: not one of its campaign's, or not learned
            text = await self.variables.get(key.key)
            stats["inbox_reads"] += 1
            if text is None:
                continue  # deleted meanwhile (older than the retention)
            try:
                import json

                report = DeliveryReport.from_dict(json.loads(text))
            except (ValueError, KeyError, TypeError) as exc:
                self.log.warning(
                    "Qikberry delivery events: unreadable inbox entry %s skipped: %s", key.key, exc
                )
                continue
            report = replace(report, outcome=settings.statuses.outcome(report.status))
            if group is None and group_id is not None:
                self.memory.watch(group_id, since=now, source="push")
            stats["pushed"] += 1
            self._process(report, now, out)
        self.memory.inbox_bucket = current
        self._inbox_seen = {k: b for k, b in self._inbox_seen.items() if b >= current - 2}

    # -- 3. catch-up from sms/status

    def _tracker(self, group: GroupMemory, now: float) -> DeliveryTracker | None:
        from airflow_qikberry.delivery.tracker import DeliveryTracker

        tracked = self._trackers.get(group.group_id)
        if tracked is not None:
            return tracked[0]
        pending = group.pending_positions()
        if pending is not None:
            if not pending:
                group.closed = True
                return None
            tracker = DeliveryTracker(
                message_ids=[f"{group.group_id}:{pos}" for pos in pending], statuses=self.settings.statuses
            )
        else:
            if now < self._rewalk_at.get(group.group_id, float("-inf")):
                return None
            tracker = DeliveryTracker(group_ids=[group.group_id], statuses=self.settings.statuses)
        self._trackers[group.group_id] = (tracker, now)
        return tracker

    async def _catch_up(self, now: float, stats: dict[str, int], out: list[DeliveryReport]) -> None:
        from airflow_qikberry.delivery.sweep import arun_sweep, is_transient
        from airflow_qikberry.exceptions import QikberryError

        work = [(g, t) for g in self.memory.open_groups() if (t := self._tracker(g, now)) is not None]
        gate = asyncio.Semaphore(GROUP_CONCURRENCY)
        max_age = self._max_age

        async def read(group: GroupMemory, tracker: DeliveryTracker) -> list[MessageStatus]:
            rows: list[MessageStatus] = []

            async def page(group_id: str, number: int) -> StatusPage[MessageStatus]:
                answer = await self.hook.poll_page(group_id, number, max_age=max_age)
                rows.extend(answer.rows)
                return answer

            async def message(message_id: str) -> Sequence[MessageStatus]:
                answer = await self.hook.poll_message(message_id, max_age=max_age)
                rows.extend(answer)
                return answer

            async with gate:
                try:
                    made = await arun_sweep(tracker, page, message)
                    stats["lookups"] += made
                except QikberryError as exc:
                    level = logging.WARNING if is_transient(exc) else logging.ERROR
                    self.log.log(
                        level,
                        "Qikberry delivery events: reading group %s back incomplete, the next sweep tries "
                        "again: %s",
                        group.group_id,
                        exc,
                    )
            return rows

        results = await asyncio.gather(*(read(g, t) for g, t in work))
        for (group, tracker), rows in zip(work, results, strict=True):
            for row in rows:
                if row.group_id != group.group_id or self.settings.statuses.outcome(row.status) == "pending":
                    continue
                if self.memory.processed(row.message_id):
                    continue
                stats["read_back"] += 1
                self._process(
                    DeliveryReport.from_status(row, self.settings.statuses, self.api_timezone), now, out
                )
            self._maybe_close(group, tracker, now)

    def _maybe_close(self, group: GroupMemory, tracker: DeliveryTracker, now: float) -> None:
        if tracker.plan():
            return
        built = self._trackers.pop(group.group_id, (tracker, now))[1]
        if group.expected is not None or built >= group.since + self.settings.settle:
            group.closed = True
            return
        # Every row the group showed is final, but the group was read soon after it was sent: rows the API
        # shows late would be missed. Read it once more when the settle time has passed, then close it.
        self._rewalk_at[group.group_id] = group.since + self.settings.settle
