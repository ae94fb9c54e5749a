"""
DeliveryTracker: what is known about a watched set of messages, and the next sweep's cheapest plan.

A :class:`DeliveryTracker` holds what is known about a watched set of messages - named by message id, or by
group (campaign) id - and works out, sweep after sweep, which lookups answer "delivered yet?" with the fewest
calls. It turns what those lookups return into a :class:`DeliveryVerdict` (delivered enough / can no longer
be / still waiting) and a JSON-ready summary. It does no I/O: :mod:`airflow_qikberry.delivery.sweep` carries
its plans out; a trigger fed by pushed delivery reports (roadmap item 1) can call
:meth:`DeliveryTracker.observe` instead and keep the same status vocabulary, verdicts, summaries and events.

What a sweep costs (see docs/sensor.md, "How many calls"): for each group (the ``<uuid>`` of ``<uuid>:<n>``
ids) it takes the cheapest of

* one ``sms/status?id=`` lookup per pending message,
* the 100-row group pages that hold pending messages (``sms/status?group_id=&page=``), where a page is known
  from an earlier answer or, for an id never seen, estimated from its position ``n`` (the API lists a group
  in submit order), plus one id lookup for each pending message whose page is unknown,
* a walk of the group's pages from the first (needed anyway to discover a group's messages),

and only ever asks about messages that are still pending: final statuses are never asked for again.

Example::

    tracker = DeliveryTracker(group_ids=["b34e35ad-..."], success_ratio=0.95)
    while tracker.verdict().state == "pending":
        run_sweep(tracker, hook.poll_page, hook.poll_message)
        time.sleep(60)
    tracker.summary()["delivered_ratio"]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from airflow_qikberry.delivery.inputs import Outcome, StatusSets, check_expected_count, check_ratio, split_id
from airflow_qikberry.exceptions import QikberryValidationError

if TYPE_CHECKING:
    from airflow_qikberry.models import StatusRow

__all__ = ["MAX_LISTED_IDS", "STATUS_PAGE_SIZE", "DeliveryTracker", "DeliveryVerdict", "Step"]

#: Rows per page of ``sms/status`` by ``group_id`` (reference 4.7); learned from answers when it differs.
STATUS_PAGE_SIZE = 100
#: At most this many ids are listed in a summary (``failed_ids``, ``pending_ids``); totals are exact.
MAX_LISTED_IDS = 100

Mode = Literal["message_ids", "group_id"]


class Step(NamedTuple):
    """One lookup of a sweep: an ``id`` lookup, one group ``page``, or a ``walk`` of a group's pages."""

    kind: Literal["id", "page", "walk"]
    target: str  # a message id, or a group id
    page: int = 0
    expected: tuple[str, ...] = ()  # for a page: the pending ids it should hold


class DeliveryVerdict(NamedTuple):
    """Where a wait stands: ``success`` (delivered enough), ``failure`` (it can no longer be), ``pending``."""

    state: Literal["pending", "success", "failure"]
    summary: dict[str, Any]


@dataclass
class _Group:
    group_id: str
    # Watched ids of this group (ids mode) or every id seen in it (group mode), in discovery order.
    members: dict[str, None] = field(default_factory=dict)
    positions: dict[str, int] = field(default_factory=dict)
    page_of: dict[str, int] = field(default_factory=dict)  # the page an id was last seen on
    lost: set[str] = field(default_factory=set)  # ids not found where expected: page unknown
    walked: bool = False  # a walk reached the group's last page
    pages: int | None = None  # how many pages that walk read
    walk_seen: set[str] | None = None

    def add(self, message_id: str) -> None:
        if message_id not in self.members:
            self.members[message_id] = None
            _, pos = split_id(message_id)
            if pos is not None:
                self.positions[message_id] = pos

    def page(self, message_id: str, page_size: int) -> int | None:
        """Where the id is: the page it was seen on, else estimated from its position (unless disproved)."""
        if message_id in self.page_of:
            return self.page_of[message_id]
        pos = self.positions.get(message_id)
        if pos is None or message_id in self.lost:
            return None
        return math.ceil(pos / page_size)

    def walk_cost(self, page_size: int) -> int | None:
        if self.pages is not None:
            return self.pages
        highest = max(self.positions.values(), default=0)
        return math.ceil(highest / page_size) if highest else None

    def gaps(self) -> int:
        """Positions below the highest seen that were never seen (messages not yet visible)."""
        return max(0, max(self.positions.values(), default=0) - len(self.positions))


class DeliveryTracker:
    """
    What is known about a watched set of messages, the next sweep's plan, the verdict and the summary.

    Give exactly one of ``message_ids`` or ``group_ids``. In group mode the group's size is what its pages
    show (plus positions missing below the highest one seen); ``expected_count`` (the number of messages
    the campaign accepted) makes it exact, so that messages not yet visible count as pending.

    Example::

        tracker = DeliveryTracker(message_ids=ids, success_ratio=1.0)
        for step in tracker.plan(): ...          # or run_sweep(tracker, fetch_page, fetch_message)
        tracker.observe("b34e35ad-...:1", "DELIVRD")  # e.g. from a pushed delivery report
        verdict = tracker.verdict()              # .state: pending / success / failure; .summary
    """

    def __init__(
        self,
        *,
        message_ids: Iterable[str] | None = None,
        group_ids: Iterable[str] | None = None,
        success_ratio: float = 1.0,
        statuses: StatusSets | None = None,
        expected_count: int | None = None,
    ) -> None:
        if (message_ids is None) == (group_ids is None):
            raise QikberryValidationError(
                "Give exactly one of message_ids and group_id.",
                field="message_ids" if message_ids is None else "group_id",
            )
        self.success_ratio = check_ratio(success_ratio)
        self.statuses = statuses or StatusSets()
        self.expected_count = check_expected_count(expected_count)
        self.page_size = STATUS_PAGE_SIZE
        self.checks = 0
        self.status: dict[str, str] = {}
        self._groups: dict[str, _Group] = {}
        self._loose: dict[str, None] = {}  # watched ids of no group: only an id lookup finds them
        self.mode: Mode
        if message_ids is not None:
            if self.expected_count is not None:
                raise QikberryValidationError(
                    "expected_count is for group_id: with message_ids the count is the number of ids.",
                    field="expected_count",
                )
            self.mode = "message_ids"
            self._watched = list(dict.fromkeys(message_ids))
            if not self._watched:
                raise QikberryValidationError("message_ids is empty.", field="message_ids")
            for mid in self._watched:
                group, _ = split_id(mid)
                if group is None:
                    self._loose[mid] = None
                else:
                    self._groups.setdefault(group, _Group(group)).add(mid)
        else:
            self.mode = "group_id"
            self._watched = []
            for gid in group_ids or ():
                self._groups.setdefault(gid, _Group(gid))
            if not self._groups:
                raise QikberryValidationError("group_id is empty.", field="group_id")

    @property
    def group_ids(self) -> list[str]:
        return list(self._groups)

    @property
    def message_ids(self) -> list[str]:
        """The watched ids (ids mode); in group mode, the ids seen so far."""
        return list(self._ids())

    # -- what is pending

    def _outcome(self, message_id: str) -> Outcome:
        return self.statuses.outcome(self.status.get(message_id, ""))

    def _pending(self, ids: Iterable[str]) -> list[str]:
        return [mid for mid in ids if self._outcome(mid) == "pending"]

    def _complete(self, group: _Group) -> bool:
        """Group mode: every message of the group has been seen, so only pending ones need asking about."""
        if not group.walked or not group.members or group.gaps():
            return False
        if self.expected_count is not None:
            seen = sum(len(g.members) + g.gaps() for g in self._groups.values())
            return seen >= self.expected_count
        return True

    # -- the plan

    def plan(self) -> list[Step]:
        """Plan the lookups of the next sweep: only messages still pending, the cheapest way per group."""
        steps = [Step("id", mid) for mid in self._pending(self._loose)]
        for group in self._groups.values():
            steps.extend(self._plan_group(group))
        return steps

    def _plan_group(self, group: _Group) -> list[Step]:
        if self.mode == "group_id" and not self._complete(group):
            return [Step("walk", group.group_id)]
        pending = self._pending(group.members)
        if not pending:
            return []
        by_page: dict[int, list[str]] = {}
        lost: list[str] = []
        for mid in pending:
            page = group.page(mid, self.page_size)
            if page is None:
                lost.append(mid)
            else:
                by_page.setdefault(page, []).append(mid)
        located = sum(len(ids) for ids in by_page.values())
        # Equal costs go to id lookups: they do not rely on the API listing a group in a stable order.
        if len(by_page) < located:
            steps = [Step("page", group.group_id, page, tuple(ids)) for page, ids in sorted(by_page.items())]
        else:
            steps = [Step("id", mid) for ids in by_page.values() for mid in ids]
        steps.extend(Step("id", mid) for mid in lost)
        walk = group.walk_cost(self.page_size)
        if walk is not None and walk < len(steps):
            return [Step("walk", group.group_id)]
        return steps

    # -- observations

    def begin_sweep(self) -> list[Step]:
        """Count a check and return its plan."""
        self.checks += 1
        return self.plan()

    def observe(self, message_id: str, status: str) -> bool:
        """
        Record a status for a watched message (from any source: a lookup, a pushed delivery report).

        Returns False for a message this tracker does not watch. A final status is never replaced.
        """
        group_id, _ = split_id(message_id)
        if message_id in self._loose:
            pass
        elif group_id in self._groups and (
            self.mode == "group_id" or message_id in self._groups[group_id].members
        ):
            self._groups[group_id].add(message_id)
        else:
            return False
        self._record(message_id, status)
        return True

    def _record(self, message_id: str, status: str) -> None:
        if self._outcome(message_id) == "pending":
            self.status[message_id] = str(status or "")

    def observe_message(self, message_id: str, rows: Iterable[StatusRow]) -> None:
        """Return the answer of an id lookup (no row: the message is not visible yet)."""
        for row in rows:
            if row.message_id == message_id:
                self.observe(message_id, row.status)
                return

    def observe_page(
        self,
        group_id: str,
        page: int,
        rows: Sequence[StatusRow],
        next_page: int | None,
        expected: Iterable[str] = (),
    ) -> None:
        """
        One page of a group: statuses and where each message sits.

        ``expected`` ids missing from it lose their page (the next plan finds them another way).
        """
        group = self._groups[group_id]
        if rows and next_page is not None:
            self.page_size = len(rows)  # a full page: the API's real page size
        for row in rows:
            mid = row.message_id
            if not mid:
                continue
            if self.mode == "group_id":
                group.add(mid)
            elif mid not in group.members:
                continue
            group.page_of[mid] = page
            group.lost.discard(mid)
            if group.walk_seen is not None:
                group.walk_seen.add(mid)
            self._record(mid, row.status)
        present = {row.message_id for row in rows}
        for mid in expected:
            # Seen on another page meanwhile (lookups run concurrently): that page is where it is now.
            if mid not in present and group.page_of.get(mid, page) == page:
                group.page_of.pop(mid, None)
                group.lost.add(mid)

    def begin_walk(self, group_id: str) -> None:
        self._groups[group_id].walk_seen = set()

    def walk_may_stop(self, group_id: str) -> bool:
        """Ids mode: the walk has seen every pending watched message of the group; reading on is waste."""
        group = self._groups[group_id]
        if self.mode == "group_id" or group.walk_seen is None:
            return False
        return all(mid in group.walk_seen for mid in self._pending(group.members))

    def end_walk(self, group_id: str, pages: int, *, reached_end: bool) -> None:
        group = self._groups[group_id]
        if reached_end:
            group.walked = True
            group.pages = pages
            for mid in self._pending(group.members):
                if group.walk_seen is not None and mid not in group.walk_seen:
                    group.page_of.pop(mid, None)
                    group.lost.add(mid)
        group.walk_seen = None

    # -- verdict and summary

    def verdict(self) -> DeliveryVerdict:
        """
        Success once delivered/total reaches success_ratio; failure once it no longer can; else pending.

        Group mode never decides while a group has shown no message at all (its size is unknown), unless
        ``expected_count`` says how many to expect.
        """
        summary = self.summary()
        total, delivered = summary["total"], summary["delivered"]
        required = summary["required_delivered"]
        unknown = self.expected_count is None and any(not g.members for g in self._groups.values())
        if unknown:
            return DeliveryVerdict("pending", summary)
        if total > 0 and delivered >= required:
            return DeliveryVerdict("success", summary)
        if delivered + summary["pending"] < required:
            return DeliveryVerdict("failure", summary)
        return DeliveryVerdict("pending", summary)

    def _ids(self) -> list[str]:
        if self.mode == "message_ids":
            return self._watched
        return [mid for group in self._groups.values() for mid in group.members]

    def summary(self) -> dict[str, Any]:
        """Count by status, delivered ratio, failed and pending ids (at most MAX_LISTED_IDS listed)."""
        by_status: dict[str, int] = {}
        failed_by_status: dict[str, int] = {}
        failed: list[str] = []
        pending: list[str] = []
        delivered = unseen = 0
        ids = self._ids()
        for mid in ids:
            status = self.status.get(mid)
            if status is None:
                unseen += 1
                pending.append(mid)
                continue
            by_status[status] = by_status.get(status, 0) + 1
            outcome = self.statuses.outcome(status)
            if outcome == "delivered":
                delivered += 1
            elif outcome == "failed":
                failed.append(mid)
                failed_by_status[status] = failed_by_status.get(status, 0) + 1
            else:
                pending.append(mid)
        total = len(ids)
        if self.mode == "group_id":
            total += sum(g.gaps() for g in self._groups.values())
            if self.expected_count is not None:
                total = max(total, self.expected_count)
            unseen += total - len(ids)
        pending_count = total - delivered - len(failed)
        out: dict[str, Any] = {
            "mode": self.mode,
            "total": total,
            "delivered": delivered,
            "failed": len(failed),
            "pending": pending_count,
            "not_visible": unseen,
            "delivered_ratio": round(delivered / total, 6) if total else 0.0,
            "success_ratio": self.success_ratio,
            "required_delivered": math.ceil(self.success_ratio * total - 1e-9),
            "by_status": dict(sorted(by_status.items(), key=lambda kv: (-kv[1], kv[0]))),
            "failed_by_status": dict(sorted(failed_by_status.items(), key=lambda kv: (-kv[1], kv[0]))),
            "failed_ids": failed[:MAX_LISTED_IDS],
            "failed_ids_total": len(failed),
            "pending_ids": pending[:MAX_LISTED_IDS],
            "pending_ids_total": len(pending),
            "checks": self.checks,
        }
        if self.mode == "group_id":
            out["group_ids"] = self.group_ids
        return out
