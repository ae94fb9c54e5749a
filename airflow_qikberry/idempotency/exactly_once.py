"""
The send state machine.

:class:`ExactlyOnce` runs a prepared :class:`Send` so that it is accepted once, or reported as not sent or as
an unknown outcome, settling an unknown outcome by looking its custom id up over the reconcile window.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from airflow_qikberry.exceptions import (
    QikberryCustomIdReusedError,
    QikberryDeliveryUnknownError,
    QikberryError,
    QikberryPartialSendError,
    QikberryServerError,
)
from airflow_qikberry.idempotency.findings import ABSENT, Finding
from airflow_qikberry.models import BatchResult, SentMessage
from airflow_qikberry.protocol import ApiResponse, canonical_number, classify
from airflow_qikberry.transport.base import RawResponse, TransportFailure
from airflow_qikberry.transport.retry import Deadline, Retry, RetryPolicy, bounded_by

__all__ = [
    "ExactlyOnce",
    "Send",
    "Unaccounted",
    "accounted_for",
]

T = TypeVar("T")


class Unaccounted(QikberryServerError):
    """A 2xx answer to a send whose rows do not account for every number sent: an unknown outcome."""


def accounted_for(sent: Sequence[SentMessage], numbers: Sequence[str], what: str) -> None:
    """Raise :class:`Unaccounted` unless the rows of a send's answer name exactly the numbers sent."""
    if len(sent) == len(numbers):
        if len(sent) == 1:  # a send_sms, an alert: no multisets
            if sent[0].mobile == canonical_number(numbers[0]):
                return
        else:  # the same multiset; most answers list the numbers in the order sent, which one compare shows
            mobiles = [m.mobile for m in sent]
            wanted = list(map(canonical_number, numbers))
            if mobiles == wanted or Counter(mobiles) == Counter(wanted):
                return
    raise Unaccounted(
        f"the API accepted the {what} but answered {len(sent)} row(s) for {len(numbers)} number(s)"
    )


class Send(Generic[T]):
    """
    One send, prepared: how to post it, read its answer, look it up, and describe an unknown outcome.

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
        lookup: Callable[[bool], Finding[T]],
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
    """
    Runs a :class:`Send` so that it is accepted once, or reported as not sent or unknown.

    Example::

        runner = ExactlyOnce(policy, window=30.0, log=hook.log)
        rows = runner.run(send, task_retry=False)
    """

    def __init__(self, policy: RetryPolicy, *, window: float, log: Any, first_delay: float = 1.0) -> None:
        self.policy = policy
        self.window = window
        self.first_delay = first_delay
        self.log = log

    def _lookup(self, send: Send[T], because: str, *, check_reuse: bool = True) -> Finding[T]:
        try:
            return send.lookup(check_reuse)
        except QikberryError as exc:
            raise send.unknown(
                f"{because}, and looking its custom id up failed ({exc.message}). "
                "Look it up before sending again."
            ) from None

    def _raise_unsettled(self, send: Send[T], verdict: Finding[T], because: str) -> None:
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

    def look_until_settled(
        self,
        lookup: Callable[[], Finding[T]],
        deadline: Deadline,
        *,
        on_wait: Callable[[float, float], None] | None = None,
    ) -> Finding[T]:
        """
        Call ``lookup`` with backoff (1, 2, 4, 8, 8 ... s) until its finding is settled or the window closes.

        ``on_wait(wait, left)`` is told before each wait: how long it is, and how much of the window is left
        before it.

        When the call's deadline ends the lookups before the window has closed, "nothing found yet" proves
        nothing: the verdict is then ``unknown``, never ``absent``.
        """
        # The window is measured in waits, not wall time, so it also holds when sleeps are simulated.
        waited, delay = 0.0, self.first_delay
        verdict: Finding[T] = ABSENT
        while True:
            if waited < self.window and deadline.remaining() <= 0:
                if verdict.kind in ("absent", "partial"):
                    # Not the whole window: what is still missing may yet show up.
                    found = "nothing was found yet" if verdict.kind == "absent" else verdict.reason
                    return Finding(
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
            if on_wait is not None:
                on_wait(wait, left)
            if wait > 0:
                self.policy.clock.sleep(wait)
            waited += max(wait, 0.25)  # a zero first delay still moves the window on
            verdict = lookup()
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
                because = "An earlier try of this task sent part of this"
                earlier = self.look_until_settled(lambda: self._lookup(send, because), deadline)
                if earlier.kind == "absent":
                    earlier = Finding("unknown", reason="rows an earlier try sent are no longer found")
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
            because = f"The send may or may not have been accepted ({reason})"
            verdict = self.look_until_settled(lambda: self._lookup(send, because), deadline)
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
    """Return the messages of a partial verdict's result (a batch's or a send's) and their group id."""
    if isinstance(result, BatchResult):
        return list(result.messages), result.group_id
    messages = list(result) if isinstance(result, (list, tuple)) else []
    groups = {m.group_id for m in messages if isinstance(m, SentMessage)}
    return messages, groups.pop() if len(groups) == 1 else None
