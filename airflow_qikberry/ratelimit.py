"""
Client-side rate limiting: token buckets per (base URL, token), shared by every hook of a process.

The API allows 1000 GET requests per minute per token. Every hook, sync or async (and so every sensor and
trigger) in a process that uses the same token draws from the same bucket (:data:`GET_BUDGETS`), so together
they stay under the limit. A bucket waits rather than fails; the server's 429 is still handled by the
transports' retries.

Delivery polling (sensors and triggers) draws from a second, smaller bucket per token as well
(:data:`POLL_BUDGETS`) - the poll budget, ``poll_budget_per_minute`` on the connection - so that waiting on
deliveries can never take the whole API allowance from the rest of a customer's traffic. A
:class:`BucketChain` of both is what a poll draws from: one token from each, waiting for the slower
(:meth:`airflow_qikberry.transport.base.Transport.for_polls` builds it).

Registries and caches key a (server, token) by :func:`token_key`, a digest: they never hold the token.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from typing import Protocol

from airflow_qikberry.clock import SYSTEM_CLOCK, Clock

__all__ = [
    "GET_BUDGETS",
    "POLL_BUDGETS",
    "BucketChain",
    "Budget",
    "BudgetRegistry",
    "TokenBucket",
    "token_key",
]


class Budget(Protocol):
    """
    What a transport draws from before each request.

    One :class:`TokenBucket`, or a :class:`BucketChain` of several used as one.
    """

    rate_per_minute: float
    capacity: float

    def reserve(self) -> float: ...

    def acquire(self) -> float: ...

    async def acquire_async(self) -> float: ...

    def refund(self) -> None: ...

    def hold(self, seconds: float) -> None: ...


def _acquire(budget: Budget, clock: Clock) -> float:
    delay = budget.reserve()
    if delay > 0:
        clock.sleep(delay)
    return delay


async def _acquire_async(budget: Budget, clock: Clock) -> float:
    delay = budget.reserve()
    if delay > 0:
        try:
            await clock.asleep(delay)
        except asyncio.CancelledError:
            # A trigger that times out while queued never makes its call: its token goes back, or the
            # debt it left would delay every other caller for nothing.
            budget.refund()
            raise
    return delay


class TokenBucket:
    """
    A thread-safe token bucket refilling ``rate_per_minute`` tokens per minute, holding at most ``burst``.

    Example::

        bucket = TokenBucket(rate_per_minute=600)
        bucket.acquire()  # returns at once while tokens remain, else sleeps until one is refilled
    """

    def __init__(
        self,
        rate_per_minute: float,
        *,
        burst: float | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        self.rate_per_minute = float(rate_per_minute)
        # A full minute's budget as burst would let a restarted process spend a whole window at once right
        # after a previous one did; a tenth keeps bursts useful but bounded.
        self.capacity = float(burst) if burst is not None else max(1.0, self.rate_per_minute / 10)
        self._per_second = self.rate_per_minute / 60.0
        self._tokens = self.capacity
        self.clock = clock
        self._updated = clock.monotonic()
        # No token is handed out before this instant: set by hold() when the server answered 429.
        self._not_before = float("-inf")
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        elapsed = now - self._updated
        if elapsed > 0:
            self._tokens = min(self.capacity, self._tokens + elapsed * self._per_second)
            self._updated = now

    def reserve(self) -> float:
        """Take a token, returning how long the caller must wait before using it (0 when available now)."""
        with self._lock:
            now = self.clock.monotonic()
            self._refill(now)
            self._tokens -= 1.0
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self._per_second
            return max(wait, self._not_before - now)

    def hold(self, seconds: float) -> None:
        """
        Hand out no token for ``seconds`` from now (a server's ``Retry-After``).

        Every caller in the process waits it out, instead of each one spending a request to learn about the
        429 again.
        """
        if seconds > 0:
            with self._lock:
                self._not_before = max(self._not_before, self.clock.monotonic() + seconds)

    def acquire(self) -> float:
        """Block until a token is available; returns the seconds waited."""
        return _acquire(self, self.clock)

    async def acquire_async(self) -> float:
        """
        Wait, without blocking the event loop, until a token is available; returns the seconds waited.

        Draws from the same budget as :meth:`acquire`, so threads and coroutines of one process share it.
        A cancelled wait gives its token back.
        """
        return await _acquire_async(self, self.clock)

    def refund(self) -> None:
        """Give back a token that was reserved but not used."""
        with self._lock:
            self._tokens = min(self.capacity, self._tokens + 1.0)


class BucketChain:
    """
    Several buckets used as one: each acquire takes a token from every bucket and waits for the slowest.

    It owns no tokens, only its members do; it waits on the clock of its first member, in a thread
    (:meth:`acquire`) or on the event loop (:meth:`acquire_async`).

    Example::

        chain = BucketChain(get_bucket, poll_bucket)
        chain.acquire()  # within both budgets (a sensor on a worker)
        await chain.acquire_async()  # the same, in a trigger
    """

    def __init__(self, *buckets: TokenBucket) -> None:
        if not buckets:
            raise ValueError("a BucketChain needs at least one bucket")
        self.buckets = buckets
        self.rate_per_minute = min(b.rate_per_minute for b in buckets)
        self.capacity = min(b.capacity for b in buckets)
        self.clock = buckets[0].clock

    def reserve(self) -> float:
        return max(bucket.reserve() for bucket in self.buckets)

    def acquire(self) -> float:
        """Block until every member has a token for this call; returns the seconds waited."""
        return _acquire(self, self.clock)

    async def acquire_async(self) -> float:
        """Wait on the event loop until every member has a token; a cancelled wait refunds them all."""
        return await _acquire_async(self, self.clock)

    def refund(self) -> None:
        for bucket in self.buckets:
            bucket.refund()

    def hold(self, seconds: float) -> None:
        for bucket in self.buckets:
            bucket.hold(seconds)


def token_key(base_url: str, token: str) -> tuple[str, str]:
    """
    Return the identity of a (server, token) that may be kept in memory.

    The base URL without its trailing slash and a SHA-256 digest of the token, never the token itself.
    """
    return base_url.rstrip("/"), hashlib.sha256(token.encode()).hexdigest()


class BudgetRegistry:
    """
    The process-wide buckets of one kind of budget, one per (base URL, token), keyed by :func:`token_key`.

    Example::

        bucket = GET_BUDGETS.bucket(settings.base_url, settings.token, 1000)
        assert bucket is GET_BUDGETS.bucket(settings.base_url + "/", settings.token, 1000)
    """

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._lock = threading.Lock()

    def bucket(self, base_url: str, token: str, rate_per_minute: float) -> TokenBucket:
        """Return the bucket of a (base URL, token); a changed rate replaces it."""
        key = token_key(base_url, token)
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None or bucket.rate_per_minute != float(rate_per_minute):
                bucket = self._buckets[key] = TokenBucket(rate_per_minute, clock=self.clock)
            return bucket


#: The token's GET budget (``rate_limit_per_minute``): every GET of every hook draws from it.
GET_BUDGETS = BudgetRegistry()
#: The token's poll budget (``poll_budget_per_minute``): delivery sensors and triggers draw from it as well.
POLL_BUDGETS = BudgetRegistry()
