"""Delivery tracking shared by QikberryDeliverySensor and QikberryDeliveryTrigger (pure: no I/O).

A :class:`DeliveryTracker` holds what is known about a watched set of messages - named by message id, or by
group (campaign) id - and works out, sweep after sweep, which lookups answer "delivered yet?" with the fewest
calls. It turns what those lookups return into a :class:`Verdict` (delivered enough / can no longer be /
still waiting) and a JSON-ready summary. The sensor and the trigger only execute the lookups
(:func:`run_sweep`, :func:`arun_sweep`); a trigger fed by pushed delivery reports (roadmap item 1) can call
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

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from airflow_qikberry.exceptions import (
    QikberryConnectionError,
    QikberryError,
    QikberryRateLimitError,
    QikberryServerError,
    QikberryValidationError,
)
from airflow_qikberry.models import StatusPage, StatusRow
from airflow_qikberry.protocol import DELIVERED, PENDING_STATUSES

__all__ = [
    "MAX_LISTED_IDS",
    "STATUS_PAGE_SIZE",
    "SUMMARY_XCOM_KEY",
    "DeliveryTracker",
    "StatusPage",
    "StatusSets",
    "Step",
    "Verdict",
    "arun_sweep",
    "describe",
    "event_payload",
    "is_transient",
    "pack_ids",
    "parse_group_ids",
    "parse_message_ids",
    "run_sweep",
    "unpack_ids",
]

#: Rows per page of ``sms/status`` by ``group_id`` (reference 4.7); learned from answers when it differs.
STATUS_PAGE_SIZE = 100
#: At most this many ids are listed in a summary (``failed_ids``, ``pending_ids``); totals are exact.
MAX_LISTED_IDS = 100
#: The XCom key under which the sensor pushes its summary, on success and before raising.
SUMMARY_XCOM_KEY = "delivery_summary"

Outcome = Literal["pending", "delivered", "failed"]
Mode = Literal["message_ids", "group_id"]


# -- status vocabulary


def _status_set(value: Iterable[str] | None, name: str) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    out: set[str] = set()
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise QikberryValidationError(
                f"{name} must be a list of status strings such as 'DELIVRD', got {item!r}.", field=name
            )
        out.add(item.strip())
    return frozenset(out)


@dataclass(frozen=True)
class StatusSets:
    """Which delivery statuses mean pending, delivered and failed.

    Defaults follow the API (reference 6.1): ``AWAITING-DLR`` pending, ``DELIVRD`` delivered, every other
    status a final failure (``failed=None``). With an explicit ``failed`` set, a status in none of the three
    sets counts as still pending. A row without a status counts as pending.

    Example::

        StatusSets.of(pending=["AWAITING-DLR", "TIMEOUT-DLR"])  # operators that send late reports
    """

    pending: frozenset[str] = PENDING_STATUSES
    delivered: frozenset[str] = frozenset({DELIVERED})
    failed: frozenset[str] | None = None

    @classmethod
    def of(
        cls,
        pending: Iterable[str] | None = None,
        delivered: Iterable[str] | None = None,
        failed: Iterable[str] | None = None,
    ) -> StatusSets:
        """Sets from user input (None: the default), checked: delivered non-empty, no status in two sets."""
        p = _status_set(pending, "pending_statuses")
        d = _status_set(delivered, "delivered_statuses")
        f = _status_set(failed, "failed_statuses")
        sets = cls(
            pending=PENDING_STATUSES if p is None else p,
            delivered=frozenset({DELIVERED}) if d is None else d,
            failed=f,
        )
        if not sets.delivered:
            raise QikberryValidationError(
                "delivered_statuses must name at least one status (the API's is 'DELIVRD').",
                field="delivered_statuses",
            )
        named = {
            "pending_statuses": sets.pending,
            "delivered_statuses": sets.delivered,
            "failed_statuses": sets.failed or frozenset(),
        }
        names = list(named)
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                both = named[first] & named[second]
                if both:
                    raise QikberryValidationError(
                        f"{first} and {second} both contain {sorted(both)}: "
                        "a status can mean one thing only.",
                        field=second,
                    )
        return sets

    def outcome(self, status: str) -> Outcome:
        if not status or status in self.pending:
            return "pending"
        if status in self.delivered:
            return "delivered"
        if self.failed is None or status in self.failed:
            return "failed"
        return "pending"

    def to_kwargs(self) -> dict[str, list[str] | None]:
        """The sets as JSON-ready keyword arguments (sorted lists), for a trigger's ``serialize()``."""
        return {
            "pending_statuses": sorted(self.pending),
            "delivered_statuses": sorted(self.delivered),
            "failed_statuses": None if self.failed is None else sorted(self.failed),
        }


# -- message ids


def split_id(message_id: str) -> tuple[str | None, int | None]:
    """``("<uuid>", n)`` for a ``<uuid>:<n>`` id; ``(None, None)`` for an id of another shape."""
    group, sep, tail = message_id.rpartition(":")
    if not sep or not group:
        return None, None
    if tail.isascii() and tail.isdigit() and tail == str(int(tail)) and int(tail) > 0:
        return group, int(tail)
    return group, None


def _runs(positions: list[int]) -> str:
    parts: list[str] = []
    start = prev = positions[0]
    for pos in positions[1:]:
        if pos == prev + 1:
            prev = pos
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = pos
    parts.append(str(start) if start == prev else f"{start}-{prev}")
    return ",".join(parts)


def pack_ids(message_ids: Iterable[str]) -> dict[str, Any]:
    """A compact, JSON-ready form of a set of ids: ``<uuid>:1`` .. ``<uuid>:10000`` become ``"1-10000"``.

    Trigger kwargs are stored in the metadata database; 10,000 ids of one campaign take a few dozen bytes
    instead of 400 KB. Ids of another shape are kept as they are. :func:`unpack_ids` reverses it.
    """
    ranges: dict[str, list[int]] = {}
    others: dict[str, None] = {}
    for mid in message_ids:
        group, pos = split_id(mid)
        if group is not None and pos is not None:
            ranges.setdefault(group, []).append(pos)
        else:
            others[mid] = None
    return {
        "ranges": {group: _runs(sorted(set(pos))) for group, pos in ranges.items()},
        "ids": list(others),
    }


def unpack_ids(packed: Mapping[str, Any]) -> list[str]:
    """The ids of :func:`pack_ids` output (grouped, in position order)."""
    out: list[str] = []
    for group, runs in dict(packed.get("ranges") or {}).items():
        for part in str(runs).split(","):
            first, _, last = part.partition("-")
            for pos in range(int(first), int(last or first) + 1):
                out.append(f"{group}:{pos}")
    out.extend(str(mid) for mid in packed.get("ids") or ())
    return out


# -- user input (templated fields, possibly rendered from XCom as text)

_ID_FORBIDDEN = set(" \t\r\n,'\"[](){}")


def _items(value: Any, name: str) -> list[Any]:
    """A list from a list-like value, or from the text a non-native template rendering made of one."""
    if isinstance(value, str):
        from airflow_qikberry.validation import rendered_literal

        text = value.strip()
        parsed = rendered_literal(text, name)
        if parsed is not text:
            value = parsed
        elif text and not (_ID_FORBIDDEN & set(text)):
            return [text]
        else:
            raise QikberryValidationError(
                f"{name} must be a list (or one id), got the text {text[:80]!r}.", field=name
            )
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise QikberryValidationError(f"{name} must be a list, got {type(value).__name__}.", field=name)
    return list(value)


def _clean_id(item: Any, name: str, keys: tuple[str, ...]) -> str:
    if isinstance(item, Mapping):
        item = next((item[key] for key in keys if item.get(key)), None)
    if not isinstance(item, str) or not item.strip() or _ID_FORBIDDEN & set(item.strip()):
        raise QikberryValidationError(f"{name} holds {item!r}, which is not an id.", field=name)
    return item.strip()


def parse_message_ids(value: Any) -> list[str]:
    """The message ids a sensor watches: a list (ids, or send results with an ``id``), a list literal
    rendered as text, or one id. Duplicates are watched once. Raises :class:`QikberryValidationError`."""
    ids = [_clean_id(item, "message_ids", ("id", "message_id")) for item in _items(value, "message_ids")]
    if not ids:
        raise QikberryValidationError(
            "message_ids is empty: there is nothing to wait for.", field="message_ids"
        )
    return list(dict.fromkeys(ids))


def parse_group_ids(value: Any) -> list[str]:
    """The group ids a sensor watches: one id, a list of them, a campaign result holding ``group_ids``, or
    any of those rendered as text. Raises :class:`QikberryValidationError`."""
    if isinstance(value, str) and value.strip()[:1] == "{":
        from airflow_qikberry.validation import rendered_literal

        value = rendered_literal(value.strip(), "group_id")
    if isinstance(value, Mapping):
        value = value.get("group_ids", value.get("group_id"))
        if value is None:
            raise QikberryValidationError(
                "group_id got a mapping without 'group_ids' or 'group_id'.", field="group_id"
            )
    ids = [_clean_id(item, "group_id", ("group_id",)) for item in _items(value, "group_id")]
    if not ids:
        raise QikberryValidationError("group_id is empty: there is nothing to wait for.", field="group_id")
    return list(dict.fromkeys(ids))


def check_ratio(value: Any) -> float:
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        ratio = math.nan
    if not 0 < ratio <= 1:
        raise QikberryValidationError(
            f"success_ratio must be a number above 0 and at most 1 (e.g. 0.95), got {value!r}.",
            field="success_ratio",
        )
    return ratio


def check_expected_count(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if number < 1:
        raise QikberryValidationError(
            f"expected_count must be a whole number of at least 1, got {value!r}.", field="expected_count"
        )
    return number


# -- the tracker


class Step(NamedTuple):
    """One lookup of a sweep: an ``id`` lookup, one group ``page``, or a ``walk`` of a group's pages."""

    kind: Literal["id", "page", "walk"]
    target: str  # a message id, or a group id
    page: int = 0
    expected: tuple[str, ...] = ()  # for a page: the pending ids it should hold


class Verdict(NamedTuple):
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
    """What is known about a watched set of messages, the next sweep's plan, the verdict and the summary.

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
        """The lookups of the next sweep: only messages still pending, the cheapest way per group."""
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
        """Record a status for a watched message (from any source: a lookup, a pushed delivery report).

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
        """The answer of an id lookup (no row: the message is not visible yet)."""
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
        """One page of a group: statuses and where each message sits; ``expected`` ids missing from it
        lose their page (the next plan finds them another way)."""
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

    def verdict(self) -> Verdict:
        """success once delivered/total reaches success_ratio; failure once it no longer can; else pending.

        Group mode never decides while a group has shown no message at all (its size is unknown), unless
        ``expected_count`` says how many to expect.
        """
        summary = self.summary()
        total, delivered = summary["total"], summary["delivered"]
        required = summary["required_delivered"]
        unknown = self.expected_count is None and any(not g.members for g in self._groups.values())
        if unknown:
            return Verdict("pending", summary)
        if total > 0 and delivered >= required:
            return Verdict("success", summary)
        if delivered + summary["pending"] < required:
            return Verdict("failure", summary)
        return Verdict("pending", summary)

    def _ids(self) -> list[str]:
        if self.mode == "message_ids":
            return self._watched
        return [mid for group in self._groups.values() for mid in group.members]

    def summary(self) -> dict[str, Any]:
        """Counts by status, delivered ratio, failed and pending ids (at most MAX_LISTED_IDS listed)."""
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


# -- messages and events


def _pct(ratio: float) -> str:
    return f"{ratio * 100:.1f}%".replace(".0%", "%")


def describe(summary: Mapping[str, Any]) -> str:
    """``238 of 250 delivered (95.2%), 12 failed (UNDELIV: 10, EXPIRED: 2), 0 pending``."""
    text = (
        f"{summary['delivered']} of {summary['total']} delivered ({_pct(summary['delivered_ratio'])}), "
        f"{summary['failed']} failed"
    )
    by_status = summary.get("failed_by_status") or {}
    if by_status:
        text += " (" + ", ".join(f"{status}: {n}" for status, n in by_status.items()) + ")"
    text += f", {summary['pending']} pending"
    if summary.get("not_visible"):
        text += f" ({summary['not_visible']} not visible yet)"
    return text


def failure_message(summary: Mapping[str, Any]) -> str:
    return (
        f"Delivery can no longer reach the required {_pct(summary['success_ratio'])}: {describe(summary)}. "
        f"Failed ids are in XCom '{SUMMARY_XCOM_KEY}'."
    )


def timeout_message(summary: Mapping[str, Any]) -> str:
    return (
        f"Timed out waiting for {_pct(summary['success_ratio'])} delivery: {describe(summary)}. "
        f"Pending ids are in XCom '{SUMMARY_XCOM_KEY}'."
    )


def event_payload(
    status: Literal["success", "failure", "timeout", "error"], summary: Mapping[str, Any], message: str = ""
) -> dict[str, Any]:
    """The payload of every delivery trigger event (and of any future push-driven trigger)."""
    if not message:
        if status == "failure":
            message = failure_message(summary)
        elif status == "timeout":
            message = timeout_message(summary)
        else:
            message = describe(summary)
    return {"status": status, "summary": dict(summary), "message": message}


# -- executing a sweep

FetchPage = Callable[[str, int], StatusPage[StatusRow]]
FetchMessage = Callable[[str], Sequence[StatusRow]]
AsyncFetchPage = Callable[[str, int], Awaitable[StatusPage[StatusRow]]]
AsyncFetchMessage = Callable[[str], Awaitable[Sequence[StatusRow]]]


def is_transient(exc: BaseException) -> bool:
    """An error the next sweep may not see (429, 5xx, a dropped connection): keep waiting, do not fail."""
    if isinstance(exc, QikberryConnectionError):
        return exc.retryable
    return isinstance(exc, (QikberryRateLimitError, QikberryServerError))


def _not_found(exc: QikberryError) -> bool:
    # Unknown ids may be answered 404 rather than with an empty list (reference section 10, gap 12).
    return isinstance(exc, QikberryValidationError) and exc.status_code == 404


def run_sweep(tracker: DeliveryTracker, fetch_page: FetchPage, fetch_message: FetchMessage) -> int:
    """Run one sweep with blocking lookups (the sensor on a worker); returns how many lookups it made."""
    lookups = 0

    def page(group_id: str, number: int) -> StatusPage[StatusRow]:
        nonlocal lookups
        lookups += 1
        try:
            return fetch_page(group_id, number)
        except QikberryError as exc:
            if _not_found(exc):
                return StatusPage([], None)
            raise

    for step in tracker.begin_sweep():
        if step.kind == "id":
            lookups += 1
            try:
                rows = fetch_message(step.target)
            except QikberryError as exc:
                if not _not_found(exc):
                    raise
                rows = []
            tracker.observe_message(step.target, rows)
        elif step.kind == "page":
            answer = page(step.target, step.page)
            tracker.observe_page(step.target, step.page, answer.rows, answer.next_page, step.expected)
        else:
            tracker.begin_walk(step.target)
            number: int | None = 1
            read = 0
            try:
                while number is not None:
                    answer = page(step.target, number)
                    read += 1
                    tracker.observe_page(step.target, number, answer.rows, answer.next_page)
                    if tracker.walk_may_stop(step.target):
                        break
                    number = answer.next_page
            finally:
                tracker.end_walk(step.target, read, reached_end=number is None)
    return lookups


async def arun_sweep(
    tracker: DeliveryTracker,
    fetch_page: AsyncFetchPage,
    fetch_message: AsyncFetchMessage,
    *,
    concurrency: int = 8,
) -> int:
    """Run one sweep with ``concurrency`` lookups in flight (the trigger); returns how many it made.

    Lookups that fail leave their messages pending; after all have finished the first non-transient error
    (else the first transient one) is raised, so what the others learned is kept.
    """
    gate = asyncio.Semaphore(max(1, concurrency))
    lookups = 0

    async def page(group_id: str, number: int) -> StatusPage[StatusRow]:
        nonlocal lookups
        async with gate:
            lookups += 1
            try:
                return await fetch_page(group_id, number)
            except QikberryError as exc:
                if _not_found(exc):
                    return StatusPage([], None)
                raise

    async def run(step: Step) -> None:
        nonlocal lookups
        if step.kind == "id":
            async with gate:
                lookups += 1
                try:
                    rows: Sequence[StatusRow] = await fetch_message(step.target)
                except QikberryError as exc:
                    if not _not_found(exc):
                        raise
                    rows = []
            tracker.observe_message(step.target, rows)
        elif step.kind == "page":
            answer = await page(step.target, step.page)
            tracker.observe_page(step.target, step.page, answer.rows, answer.next_page, step.expected)
        else:
            tracker.begin_walk(step.target)
            number: int | None = 1
            read = 0
            try:
                while number is not None:
                    answer = await page(step.target, number)
                    read += 1
                    tracker.observe_page(step.target, number, answer.rows, answer.next_page)
                    if tracker.walk_may_stop(step.target):
                        break
                    number = answer.next_page
            finally:
                tracker.end_walk(step.target, read, reached_end=number is None)

    results = await asyncio.gather(*(run(step) for step in tracker.begin_sweep()), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    for error in errors:
        if not isinstance(error, Exception) or not is_transient(error):
            raise error
    if errors:
        raise errors[0]
    return lookups
