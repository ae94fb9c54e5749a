"""
How long and how often to retry: one policy, used by the sync and the async transports alike.

A call gets a :class:`Deadline` when it starts; every wait (backoff, ``Retry-After``, reconciliation
lookups) is taken from it, so ``retry_deadline`` bounds the whole call, not each attempt. A caller may ask
to be told each 429's wait (``hold``): the transport of delivery polls holds the token's poll budget for it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

import tenacity

from airflow_qikberry.clock import SYSTEM_CLOCK, Clock
from airflow_qikberry.exceptions import QikberryError, QikberryRateLimitError

__all__ = ["DEFAULT_RETRY_DEADLINE", "Deadline", "Retry", "RetryPolicy", "bounded_by"]

#: The retry deadline of a call when nothing asks for another and the reconcile window does not need more.
DEFAULT_RETRY_DEADLINE = 120.0

T = TypeVar("T")


class Retry(Exception):
    """Raised by an attempt whose request was provably not processed: it is safe to repeat."""

    def __init__(self, error: QikberryError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


class Deadline:
    """A point in time after which a call makes no new attempt and starts no new wait."""

    def __init__(self, seconds: float, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self.seconds = seconds
        self.end = clock.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.end - self._clock.monotonic())


# The deadline of the call in progress: the GETs a send makes to settle its outcome share the send's deadline.
_current_deadline: ContextVar[Deadline | None] = ContextVar("qikberry_deadline", default=None)


@contextlib.contextmanager
def bounded_by(deadline: Deadline) -> Iterator[Deadline]:
    """Make ``deadline`` the one every call started inside this block is bounded by."""
    token = _current_deadline.set(deadline)
    try:
        yield deadline
    finally:
        _current_deadline.reset(token)


# 0.5 s doubling up to 30 s, plus up to 0.5 s of jitter (spelled this way for tenacity 8 and 9 alike).
_BACKOFF = tenacity.wait_exponential(multiplier=0.5, max=30.0) + tenacity.wait_random(0, 0.5)


class RetryPolicy:
    """
    Attempts, deadline and ``Retry-After`` cap of every call; ``clock`` measures time and waits it out.

    Example::

        policy = RetryPolicy(max_attempts=3, deadline=60)
        response = policy.run(attempt)  # again while attempt() raises Retry (its request was not processed)
    """

    def __init__(
        self,
        *,
        max_attempts: int = 5,
        deadline: float = DEFAULT_RETRY_DEADLINE,
        max_retry_after: float = 60.0,
        log: Any = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.max_attempts = max(1, max_attempts)
        self.deadline = deadline
        self.max_retry_after = max_retry_after
        # Any logger with .warning(msg, *args): stdlib, or the structlog-backed one of Airflow 3 hooks.
        self.log = log if log is not None else logging.getLogger(__name__)
        self.clock = clock

    def start(self) -> Deadline:
        """Return a new deadline, or the enclosing call's inside one (see :func:`bounded_by`)."""
        return _current_deadline.get() or Deadline(self.deadline, self.clock)

    def wait_for(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, Retry) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_retry_after)
        return float(_BACKOFF(retry_state))

    def _waits(self, hold: Callable[[float], None] | None) -> Callable[[tenacity.RetryCallState], float]:
        """How long to wait before the next attempt; with ``hold``, a 429's wait is also passed to it."""
        if hold is None:
            return self.wait_for

        def wait(retry_state: tenacity.RetryCallState) -> float:
            seconds = self.wait_for(retry_state)
            exc = retry_state.outcome.exception() if retry_state.outcome else None
            if isinstance(exc, Retry) and isinstance(exc.error, QikberryRateLimitError):
                hold(seconds)
            return seconds

        return wait

    def _retrying(self, deadline: Deadline, hold: Callable[[float], None] | None) -> dict[str, Any]:
        """Return the tenacity arguments of one call, sync or async (only the sleep differs)."""

        def stop(retry_state: tenacity.RetryCallState) -> bool:
            upcoming = getattr(retry_state, "upcoming_sleep", 0.0) or 0.0
            return retry_state.attempt_number >= self.max_attempts or upcoming >= deadline.remaining()

        return {
            "retry": tenacity.retry_if_exception_type(Retry),
            "stop": stop,
            "wait": self._waits(hold),
            "before_sleep": self._log_retry,
            "reraise": True,
        }

    def _log_retry(self, retry_state: tenacity.RetryCallState) -> None:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
        self.log.warning(
            "Qikberry call not processed (%s); retrying in %.1f s (attempt %d of %d)",
            exc,
            wait,
            retry_state.attempt_number + 1,
            self.max_attempts,
        )

    def run(
        self,
        attempt: Callable[[], T],
        deadline: Deadline | None = None,
        *,
        hold: Callable[[float], None] | None = None,
    ) -> T:
        """
        Call ``attempt`` until it returns, raises anything but :class:`Retry`, or the policy gives up.

        When the policy gives up, the last :class:`Retry`'s error is raised. ``hold`` is told the wait after
        each 429 (a transport of delivery polls holds its poll budget for it: see :class:`~.base.Transport`).
        """
        # Nearly every call succeeds at once: only a failure pays for tenacity's bookkeeping. The first
        # failure is replayed as tenacity's attempt 1 so its wait (and Retry-After) logic sees it.
        try:
            return attempt()
        except Retry as exc:
            replay: list[Retry] = [exc]
        deadline = deadline or self.start()

        def again() -> T:
            if replay:
                raise replay.pop()
            return attempt()

        try:
            retrying = tenacity.Retrying(sleep=self.clock.sleep, **self._retrying(deadline, hold))
            for try_ in retrying:
                with try_:
                    return again()
        except Retry as exc:
            raise exc.error from None
        raise AssertionError("tenacity returned without an outcome")  # pragma: no cover

    async def run_async(
        self,
        attempt: Callable[[], Awaitable[T]],
        deadline: Deadline | None = None,
        *,
        hold: Callable[[float], None] | None = None,
    ) -> T:
        """Run ``attempt``, a coroutine function (the async hook's GETs), as :meth:`run` runs a function."""
        deadline = deadline or self.start()
        try:
            return await attempt()
        except Retry as exc:
            replay: list[Retry] = [exc]

        async def again() -> T:
            if replay:
                raise replay.pop()
            return await attempt()

        try:
            retrying = tenacity.AsyncRetrying(sleep=self.clock.asleep, **self._retrying(deadline, hold))
            async for try_ in retrying:
                with try_:
                    return await again()
        except Retry as exc:
            raise exc.error from None
        raise AssertionError("tenacity returned without an outcome")  # pragma: no cover
