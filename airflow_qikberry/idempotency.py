"""Exactly-once sends: custom ids, task identity, and the state machine that settles an unknown outcome.

Every send carries a custom id (``custom``). A send is repeated only when it provably was not processed
(connection refused, 429, 503). When its outcome is unknown (read timeout, connection dropped after
sending, 408/500/502/504/52x, a 200 whose rows do not account for every number) the custom id is looked up,
page by page, for a bounded *reconcile window* with backoff, because the API shows accepted messages in
``sms/status`` only after a while. What the lookup finds decides:

* rows for exactly the numbers sent: the send was accepted; they are returned, nothing is sent again;
* nothing, when the window closes: the send was not accepted and is repeated (never for bulk uploads,
  whose processing can outlast any window; those raise :class:`QikberryDeliveryUnknownError`);
* rows in another shape (other numbers, no group id, only some numbers), or rows submitted before this
  call began (the custom id was reused): unknown, reported, never resent.

Inside an Airflow task the derived custom id is stable across tries, so a retried task finds what an
earlier try sent and returns it instead of sending again; ``resend=True`` derives fresh ids on purpose.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Generic, Literal, NamedTuple, TypeVar

from airflow_qikberry.exceptions import (
    QikberryCustomIdReusedError,
    QikberryDeliveryUnknownError,
    QikberryError,
    QikberryPartialSendError,
    QikberryServerError,
)
from airflow_qikberry.models import BatchResult, MessageStatus, SentMessage
from airflow_qikberry.protocol import ApiResponse, canonical_number, classify
from airflow_qikberry.transport.base import RawResponse, TransportFailure
from airflow_qikberry.transport.retry import Deadline, Retry, RetryPolicy, bounded_by

__all__ = [
    "TaskIdentity",
    "Verdict",
    "accepted_prefix",
    "batch_identity",
    "campaign_custom_id",
    "campaign_key",
    "confirm_absent",
    "derive_custom_id",
    "fingerprint",
    "is_task_retry",
    "match_batch_rows",
    "match_send_rows",
    "resume_point",
    "sample_positions",
    "send_fingerprint",
    "task_identity",
]

T = TypeVar("T")

# --- task identity and custom ids

TaskIdentity = tuple[str, str, str, str, str]
_occurrences: Counter[tuple[str, ...]] = Counter()
_occurrences_lock = threading.Lock()
_get_current_context: Callable[[], Any] | None = None
_LOOK_UP: Any = object()


def task_identity() -> TaskIdentity | None:
    """(dag_id, task_id, run_id, map_index, try_number) of the running task, or None outside a task."""
    global _get_current_context
    if _get_current_context is None:
        # Resolved once: the compat module's lazy lookup costs more than the call itself.
        from airflow.providers.common.compat.sdk import get_current_context

        _get_current_context = get_current_context
    try:
        context = _get_current_context()
    except Exception:
        return None
    ti = context.get("ti") or context.get("task_instance")
    if ti is None:
        return None
    return (
        str(ti.dag_id),
        str(ti.task_id),
        str(ti.run_id),
        str(getattr(ti, "map_index", -1)),
        str(getattr(ti, "try_number", 1)),
    )


def is_task_retry(identity: TaskIdentity | None) -> bool:
    return identity is not None and identity[4].isdigit() and int(identity[4]) > 1


def derive_custom_id(
    fingerprint: str, identity: TaskIdentity | None = _LOOK_UP, *, fresh: bool = False
) -> str:
    """A custom id that a retry of the same Airflow task reproduces, so the retry can find earlier sends.

    Inside a task: sha256 of (dag_id, task_id, run_id, map_index, n, fingerprint), where ``n`` counts
    the sends with the same fingerprint made so far in this try. The try number is left out, so try 2
    derives exactly the ids try 1 used, in the same order; with ``fresh`` (a deliberate re-send) it is put
    in, so a cleared task sends under new ids. Outside a task nothing is stable: a random id, reused by the
    hook's own retries of that call.
    """
    ident = task_identity() if identity is _LOOK_UP else identity
    if ident is None:
        basis = uuid.uuid4().hex
    else:
        dag_id, task_id, run_id, map_index, try_number = ident
        key = (dag_id, task_id, run_id, map_index, try_number, fingerprint)
        with _occurrences_lock:
            _occurrences[key] += 1
            nth = _occurrences[key]
        parts = [dag_id, task_id, run_id, map_index, str(nth), fingerprint]
        if fresh:
            parts.append(f"try={try_number}")
        basis = "|".join(parts)
    return "af-" + hashlib.sha256(basis.encode()).hexdigest()[:24]


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def canonical_fields(payload: Mapping[str, Any]) -> str:
    """A send's parameters in one form whatever order they came in: keys sorted, and the tags (a set of
    opt-out tags, which a caller may pass as a Python set) sorted too."""
    return repr(sorted((key, sorted(val) if key == "tags" else val) for key, val in payload.items()))


def send_fingerprint(numbers: Iterable[str], payload: Mapping[str, Any]) -> str:
    """The identity of a ``sms/send``: its numbers as a set (their order does not matter: a Python set
    iterates in another order in every process, so in every try of a task) and its parameters."""
    return fingerprint("send_sms", sorted(numbers), canonical_fields(payload))


def batch_identity(nodes: Sequence[Mapping[str, Any]], root: Mapping[str, Any]) -> tuple[str, list[int]]:
    """The identity of a ``sms/send/json`` batch and each node's rank in it.

    A batch is the multiset of its nodes (each node's number, text and overrides) under its root: the same
    nodes in another order are the same batch. The rank of a node is its place when the nodes are sorted by
    content, so a derived node id ``<base>-<rank + 1>`` follows the node, not its position. Identical nodes
    (the same number and text twice) are interchangeable and get consecutive ranks.
    """
    keys = [canonical_fields(node) for node in nodes]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    ranks = [0] * len(keys)
    for rank, index in enumerate(order):
        ranks[index] = rank
    return fingerprint("send_batch", [keys[i] for i in order], canonical_fields(root)), ranks


def sample_positions(size: int) -> list[int]:
    """Positions of a batch looked up to find it when its first node may be missing: first, last, middle.

    A node the API refused or left out is absent while the rest of its request is there, so one node
    proves nothing by its absence; all three absent while others were accepted would take three nodes
    refused at exactly these places (docs/guarantees.md).
    """
    return list(dict.fromkeys(p for p in (0, size - 1, size // 2) if 0 <= p < size))


# --- what a lookup found

VerdictKind = Literal["found", "absent", "partial", "unknown", "reused"]


class Verdict(Generic[T]):
    """The meaning of the rows a custom-id lookup returned."""

    __slots__ = ("keys", "kind", "numbers", "reason", "result")

    def __init__(
        self,
        kind: VerdictKind,
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
        return f"Verdict({self.kind!r}, reason={self.reason!r}, numbers={self.numbers!r})"

    @property
    def settled(self) -> bool:
        """True when looking again cannot change the answer."""
        return self.kind in ("found", "unknown", "reused")


ABSENT: Verdict[Any] = Verdict("absent")


def submitted_before(row: MessageStatus, not_before: datetime, api_timezone: str) -> bool:
    """True when the row's ``submitted_at`` (API-local wall time) is earlier than ``not_before``."""
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


def reused(rows: Sequence[MessageStatus], reuse: ReuseCheck | None) -> Verdict[Any] | None:
    """A ``reused`` verdict when any of ``rows`` was submitted before this call began, else None."""
    old = reuse.older(rows) if reuse is not None else []
    if not old:
        return None
    return Verdict(
        "reused",
        reason=f"custom id {old[0].custom_id!r} already names {len(old)} message(s) submitted before this "
        f"call (first at {old[0].submitted_at}): a custom id is an idempotency key, one per send",
    )


def match_send_rows(
    rows: Sequence[MessageStatus], custom_id: str, numbers: Sequence[str], reuse: ReuseCheck | None
) -> Verdict[list[SentMessage]]:
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
        return Verdict(
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
        return Verdict(
            "partial",
            ordered,
            reason=f"custom id {custom_id!r} shows {len(rows)} of the {len(numbers)} messages sent",
            numbers=tuple(n for n in numbers if canonical_number(n) in missing),
        )
    return Verdict("found", ordered)


def match_batch_rows(
    rows: Sequence[MessageStatus],
    custom_ids: Sequence[str],
    numbers: Sequence[str],
    reuse: ReuseCheck | None = None,
) -> Verdict[list[SentMessage]]:
    """Judge the rows of a batch's group against the nodes sent (custom id ``custom_ids[i]`` to
    ``numbers[i]``)."""
    wanted = {cid: canonical_number(n) for cid, n in zip(custom_ids, numbers, strict=True)}
    if (verdict := reused([r for r in rows if r.custom_id in wanted], reuse)) is not None:
        return verdict
    by_cid: dict[str, MessageStatus] = {}
    for row in rows:
        if row.custom_id not in wanted:
            continue
        if row.custom_id in by_cid or canonical_number(row.mobile) != wanted[row.custom_id]:
            return Verdict(
                "unknown",
                reason=f"the batch's rows for custom id {row.custom_id!r} do not match the node sent",
                numbers=tuple(numbers),
            )
        by_cid[row.custom_id] = row
    found = [SentMessage.from_status(by_cid[cid]) for cid in custom_ids if cid in by_cid]
    if len(by_cid) < len(custom_ids):
        missing = [(cid, n) for cid, n in zip(custom_ids, numbers, strict=True) if cid not in by_cid]
        kind: VerdictKind = "partial" if by_cid else "absent"
        return Verdict(
            kind,
            found if by_cid else None,
            reason=f"the batch shows {len(by_cid)} of {len(custom_ids)} nodes",
            numbers=tuple(n for _, n in missing),
            keys=tuple(cid for cid, _ in missing),
        )
    return Verdict("found", found)


def match_upload_rows(
    rows: Sequence[MessageStatus], custom_id: str, reuse: ReuseCheck | None
) -> Verdict[int]:
    """Judge the rows a ``cid`` lookup found for a bulk upload: any row of ours proves it was accepted
    (the count is of the rows visible so far; the API may still be processing the file)."""
    rows = [r for r in rows if r.custom_id == custom_id]
    if not rows:
        return ABSENT
    return reused(rows, reuse) or Verdict("found", len(rows))


# --- the send state machine


class Unaccounted(QikberryServerError):
    """A 2xx answer to a send whose rows do not account for every number sent: an unknown outcome."""


def accounted_for(sent: Sequence[SentMessage], numbers: Sequence[str], what: str) -> None:
    """Raise :class:`Unaccounted` unless the rows of a send's answer name exactly the numbers sent."""
    if Counter(m.mobile for m in sent) != Counter(canonical_number(n) for n in numbers):
        raise Unaccounted(
            f"the API accepted the {what} but answered {len(sent)} row(s) for {len(numbers)} number(s)"
        )


class Send(Generic[T]):
    """One send, prepared: how to post it, read its answer, look it up, and describe an unknown outcome.

    ``lookup(check_reuse)``: when ``check_reuse`` is true, rows submitted before this call began count as a
    reused custom id. ``resend_after_ambiguity`` is False for uploads: an ambiguous upload is never posted
    again automatically.
    """

    def __init__(
        self,
        *,
        what: str,
        post: Callable[[], RawResponse],
        parse: Callable[[ApiResponse], T],
        lookup: Callable[[bool], Verdict[T]],
        unknown: Callable[[str], QikberryDeliveryUnknownError],
        resend_after_ambiguity: bool = True,
    ) -> None:
        self.what = what
        self.post = post
        self.parse = parse
        self.lookup = lookup
        self.unknown = unknown
        self.resend_after_ambiguity = resend_after_ambiguity


class ExactlyOnce:
    """Runs a :class:`Send` so that it is accepted once, or reported as not sent or unknown.

    Example::

        runner = ExactlyOnce(policy, window=30.0, log=hook.log)
        rows = runner.run(send, task_retry=False)
    """

    def __init__(self, policy: RetryPolicy, *, window: float, log: Any, first_delay: float = 1.0) -> None:
        self.policy = policy
        self.window = window
        self.first_delay = first_delay
        self.log = log

    def _lookup(self, send: Send[T], because: str, *, check_reuse: bool = True) -> Verdict[T]:
        try:
            return send.lookup(check_reuse)
        except QikberryError as exc:
            raise send.unknown(
                f"{because}, and looking its custom id up failed ({exc.message}). "
                "Look it up before sending again."
            ) from None

    def _raise_unsettled(self, send: Send[T], verdict: Verdict[T], because: str) -> None:
        if verdict.kind == "partial" and verdict.result is not None:
            # Only reached once the whole window has passed (a window cut short makes it "unknown"): the
            # missing messages are as absent as a send found nowhere, which the rule takes as not accepted.
            accepted, group = _accepted_rows(verdict.result)
            error = send.unknown(
                f"{because}; {verdict.reason}: the API accepted {len(accepted)}, and the other "
                f"{len(verdict.numbers) or len(verdict.keys)} were still not in sms/status when the "
                f"{self.window:.0f} s reconcile window closed, so they were not accepted (the API leaves out "
                "numbers that opted out or are blocked). They are not sent again automatically."
            )
            raise QikberryPartialSendError(
                error.message,
                numbers=verdict.numbers,
                custom_id=error.custom_id,
                accepted=accepted,
                group_id=group,
                missing_custom_ids=verdict.keys,
            ) from None
        if verdict.kind == "reused":
            error = send.unknown(f"{because}; {verdict.reason}.")
            raise QikberryCustomIdReusedError(
                error.message, numbers=error.numbers, custom_id=error.custom_id
            ) from None
        if verdict.kind in ("unknown", "partial"):
            error = send.unknown(f"{because}; {verdict.reason}. Check sms/status before sending again.")
            if verdict.numbers:
                # Only the numbers whose fate is unknown: the others were found accepted.
                error.numbers = list(verdict.numbers)
            raise error

    def look_until_settled(self, send: Send[T], because: str, deadline: Deadline) -> Verdict[T]:
        """Look the send up with backoff (1, 2, 4, 8, 8 ... s) until settled or the window closes.

        When the call's deadline ends the lookups before the window has closed, "nothing found yet" proves
        nothing: the verdict is then ``unknown``, never ``absent``.
        """
        # The window is measured in waits, not wall time, so it also holds when sleeps are simulated.
        waited, delay = 0.0, self.first_delay
        verdict: Verdict[T] = ABSENT
        while True:
            if waited < self.window and deadline.remaining() <= 0:
                if verdict.kind in ("absent", "partial"):
                    # Not the whole window: what is still missing may yet show up.
                    found = "nothing was found yet" if verdict.kind == "absent" else verdict.reason
                    return Verdict(
                        "unknown",
                        reason=f"the call's retry deadline ended the lookups after {waited:.0f} s, before "
                        f"the {self.window:.0f} s reconcile window closed; {found}",
                        numbers=verdict.numbers,
                    )
                return verdict
            left = min(self.window - waited, deadline.remaining())
            if left <= 0:
                return verdict
            wait = min(delay, left)
            if wait > 0:
                self.policy.sleep(wait)
            waited += max(wait, 0.25)  # a zero first delay still moves the window on
            verdict = self._lookup(send, because)
            if verdict.settled:
                return verdict
            delay = min(max(delay, 0.5) * 2, 8.0)

    def run(self, send: Send[T], *, task_retry: bool = False) -> T:
        deadline = self.policy.start()
        with bounded_by(deadline):
            return self._run(send, deadline, task_retry)

    def _run(self, send: Send[T], deadline: Deadline, task_retry: bool) -> T:
        if task_retry:
            # An earlier try's rows are older than this call by nature: they are what we are looking for.
            earlier = self._lookup(
                send, "This is a retry of the task, and an earlier try may have sent this", check_reuse=False
            )
            if earlier.kind == "partial":
                # Part of it is there: the rest may still show up, or was never accepted. Look for it over
                # the reconcile window before saying which.
                earlier = self.look_until_settled(
                    send, "An earlier try of this task sent part of this", deadline
                )
                if earlier.kind == "absent":
                    earlier = Verdict("unknown", reason="rows an earlier try sent are no longer found")
            if earlier.kind == "found" and earlier.result is not None:
                self.log.info("An earlier try of this task already sent this; not sending it again")
                return earlier.result
            self._raise_unsettled(send, earlier, "An earlier try of this task may have sent this")

        def settle(reason: str, error: QikberryError, may_resend: bool) -> T:
            self.log.warning(
                "Outcome of %s unknown (%s); looking its custom id up for up to %.0f s (reconcile window)",
                send.what,
                reason,
                self.window,
            )
            verdict = self.look_until_settled(
                send, f"The send may or may not have been accepted ({reason})", deadline
            )
            if verdict.kind == "found" and verdict.result is not None:
                self.log.info("The API had accepted the send before the failure; not sending it again")
                return verdict.result
            self._raise_unsettled(send, verdict, f"The send may or may not have been accepted ({reason})")
            if not may_resend:
                raise send.unknown(
                    f"The send may or may not have been accepted ({reason}) and looking its custom id up for "
                    f"{self.window:.0f} s found nothing; it is not sent again automatically."
                )
            self.log.warning(
                "No record of the send after the %.0f s reconcile window: not accepted; sending it again",
                self.window,
            )
            raise Retry(error)

        def attempt() -> T:
            try:
                raw = send.post()
            except TransportFailure as exc:
                if exc.kind == "fatal":
                    raise exc.error from None
                if exc.kind == "not_sent":
                    raise Retry(exc.error) from None
                return settle(exc.error.message, exc.error, send.resend_after_ambiguity)
            disposition = classify("POST", raw.status_code)
            if disposition == "ok":
                try:
                    return send.parse(raw.parse())
                except QikberryServerError as exc:
                    # Answered 2xx, so the server processed something: find out what, never resend.
                    return settle(exc.message, exc, False)
            error = raw.error()
            if disposition == "retry":
                raise Retry(error, getattr(error, "retry_after", None))
            if disposition == "fail":
                raise error
            return settle(error.message, error, send.resend_after_ambiguity)

        return self.policy.run(attempt, deadline)


def _accepted_rows(result: Any) -> tuple[list[SentMessage], str | None]:
    """The messages of a partial verdict's result (a batch's or a send's) and their group id."""
    if isinstance(result, BatchResult):
        return list(result.messages), result.group_id
    messages = list(result) if isinstance(result, (list, tuple)) else []
    groups = {m.group_id for m in messages if isinstance(m, SentMessage)}
    return messages, groups.pop() if len(groups) == 1 else None


# --- campaigns: per-row custom ids and how far an earlier try got

CAMPAIGN_ID_PREFIX = "qc-"


def campaign_key(identity: TaskIdentity | None, name: str, *, resend: bool = False, content: str = "") -> str:
    """The key in a campaign's custom ids ``qc-<key>-<chunk>-<position>`` (16 hex characters).

    Inside a task: a hash of (dag_id, task_id, run_id, map_index, campaign name) without the try number, so
    a retried task derives the very ids its earlier tries sent and can find how far they got; with
    ``resend`` the try number is put in, so a cleared task sends afresh under new ids. Outside a task there
    is no stable identity but the campaign itself: the name and ``content`` (a digest of its rows).

    Example::

        key = campaign_key(task_identity(), "diwali-2026")
        campaign_custom_id(key, 0, 0)  # 'qc-3f0c...-0-0': chunk 0, first row
    """
    if identity is None:
        parts = ["campaign", name, content]
    else:
        dag_id, task_id, run_id, map_index, try_number = identity
        parts = [dag_id, task_id, run_id, map_index, name]
        if resend:
            parts.append(f"try={try_number}")
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def campaign_custom_id(key: str, chunk: int, position: int) -> str:
    """The custom id of the row at ``position`` (0-based) of chunk ``chunk`` of campaign ``key``."""
    return f"{CAMPAIGN_ID_PREFIX}{key}-{chunk}-{position}"


def accepted_prefix(total: int, accepted: Callable[[int], bool], *, start: int = 0) -> int:
    """How many of ``total`` chunks sent strictly in order were accepted (the first ``p``; none after them).

    ``accepted(k)`` looks chunk ``k`` up; chunks below ``start`` are already known to be accepted. The search
    steps exponentially from ``start`` (start, +1, +3, +7, ...) until a chunk is missing, then bisects between
    the last chunk found and the first one missing: about ``2 * log2(p - start + 1)`` lookups, not ``p``.

    Example::

        accepted_prefix(100, lambda k: k < 37)  # 37, after 12 lookups
    """
    if start >= total:
        return total
    if not accepted(start):
        return start
    found, step = start, 1
    while True:
        candidate = found + step
        if candidate >= total:
            if found == total - 1 or accepted(total - 1):
                return total
            missing = total - 1
            break
        if not accepted(candidate):
            missing = candidate
            break
        found, step = candidate, step * 2
    while missing - found > 1:
        middle = (found + missing) // 2
        if accepted(middle):
            found = middle
        else:
            missing = middle
    return missing


def resume_point(
    total: int, accepted: Callable[[int], bool], confirm_absent: Callable[[int], bool], *, start: int = 0
) -> int:
    """The first chunk a retried campaign must send.

    :func:`accepted_prefix` sees what the API shows now, but a chunk accepted moments before the earlier try
    died may become visible only later. So the boundary chunk counts as unsent only once ``confirm_absent``
    has kept missing it across the reconcile window; if it shows up, the search goes on after it.
    """
    while True:
        boundary = accepted_prefix(total, accepted, start=start)
        if boundary >= total or confirm_absent(boundary):
            return boundary
        start = boundary + 1


def confirm_absent(
    runner: ExactlyOnce,
    lookup: Callable[[], bool],
    *,
    what: str,
    unknown: Callable[[str], QikberryDeliveryUnknownError],
) -> bool:
    """True when ``lookup`` (a custom-id lookup: is it there?) keeps finding nothing for the runner's whole
    reconcile window, with the same backoff as an ambiguous send; False as soon as it finds it.

    A window cut short by the call's retry deadline proves nothing: ``unknown`` is raised then.
    """

    def verdict(_check_reuse: bool) -> Verdict[bool]:
        return Verdict("found", True) if lookup() else ABSENT

    def never(*_args: Any) -> Any:
        raise AssertionError("confirming an absence never posts")

    send: Send[bool] = Send(what=what, post=never, parse=never, lookup=verdict, unknown=unknown)
    deadline = runner.policy.start()
    with bounded_by(deadline):
        result = runner.look_until_settled(
            send, f"{what} may have been accepted just before the earlier try ended", deadline
        )
    if result.kind == "found":
        return False
    if result.kind == "absent":
        return True
    raise unknown(result.reason)
