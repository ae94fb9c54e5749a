"""Client-side rate limiting: one token bucket per (base URL, token) per process.

The API allows 1000 GET requests per minute per token. Every hook, sync or async (and so every sensor and
trigger) in a process that uses the same token draws from the same bucket, so together they stay under the
limit. The bucket waits rather than fails; the server's 429 is still handled by the transports' retries.

Delivery polling (sensors and triggers) draws from a second, smaller bucket per token as well - the poll
budget, ``poll_budget_per_minute`` on the connection - so that waiting on deliveries can never take the whole
API allowance from the rest of a customer's traffic. :func:`polling_bucket_for` chains both: one poll takes
a token from each, and waits for the slower.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["BucketChain", "Budget", "TokenBucket", "bucket_for", "poll_bucket_for", "polling_bucket_for"]


class Budget(Protocol):
    """What a transport draws from before each request: one :class:`TokenBucket`, or a :class:`BucketChain`
    of several used as one."""

    rate_per_minute: float
    capacity: float

    def reserve(self) -> float: ...

    def acquire(self) -> float: ...

    async def acquire_async(self) -> float: ...

    def refund(self) -> None: ...

    def hold(self, seconds: float) -> None: ...


def _acquire(budget: Budget, sleep: Callable[[float], None]) -> float:
    delay = budget.reserve()
    if delay > 0:
        sleep(delay)
    return delay


async def _acquire_async(budget: Budget) -> float:
    delay = budget.reserve()
    if delay > 0:
        import asyncio

        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            # A trigger that times out while queued never makes its call: its token goes back, or the
            # debt it left would delay every other caller for nothing.
            budget.refund()
            raise
    return delay


class TokenBucket:
    """A thread-safe token bucket refilling ``rate_per_minute`` tokens per minute, holding at most ``burst``.

    Example::

        bucket = TokenBucket(rate_per_minute=600)
        bucket.acquire()  # returns at once while tokens remain, else sleeps until one is refilled
    """

    def __init__(
        self,
        rate_per_minute: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        self.rate_per_minute = float(rate_per_minute)
        # A full minute's budget as burst would let a restarted process spend a whole window at once right
        # after a previous one did; a tenth keeps bursts useful but bounded.
        self.capacity = float(burst) if burst is not None else max(1.0, self.rate_per_minute / 10)
        self._per_second = self.rate_per_minute / 60.0
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
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
            now = self._clock()
            self._refill(now)
            self._tokens -= 1.0
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self._per_second
            return max(wait, self._not_before - now)

    def hold(self, seconds: float) -> None:
        """Hand out no token for ``seconds`` from now (a server's ``Retry-After``): every caller in the
        process waits it out, instead of each one spending a request to learn about the 429 again."""
        if seconds > 0:
            with self._lock:
                self._not_before = max(self._not_before, self._clock() + seconds)

    def acquire(self) -> float:
        """Block until a token is available; returns the seconds waited."""
        return _acquire(self, self._sleep)

    async def acquire_async(self) -> float:
        """Wait, without blocking the event loop, until a token is available; returns the seconds waited.

        Draws from the same budget as :meth:`acquire`, so threads and coroutines of one process share it.
        A cancelled wait gives its token back.
        """
        return await _acquire_async(self)

    def refund(self) -> None:
        """Give back a token that was reserved but not used."""
        with self._lock:
            self._tokens = min(self.capacity, self._tokens + 1.0)


class BucketChain:
    """Several buckets used as one: each acquire takes a token from every bucket and waits for the slowest.

    It owns no tokens, only its members do; ``sleep`` is how :meth:`acquire` waits (threads),
    :meth:`acquire_async` waits on the event loop.

    Example::

        chain = BucketChain(get_bucket, poll_bucket)
        chain.acquire()  # within both budgets (a sensor on a worker)
        await chain.acquire_async()  # the same, in a trigger
    """

    def __init__(self, *buckets: TokenBucket, sleep: Callable[[float], None] = time.sleep) -> None:
        if not buckets:
            raise ValueError("a BucketChain needs at least one bucket")
        self.buckets = buckets
        self.rate_per_minute = min(b.rate_per_minute for b in buckets)
        self.capacity = min(b.capacity for b in buckets)
        self._sleep = sleep

    def reserve(self) -> float:
        return max(bucket.reserve() for bucket in self.buckets)

    def acquire(self) -> float:
        """Block until every member has a token for this call; returns the seconds waited."""
        return _acquire(self, self._sleep)

    async def acquire_async(self) -> float:
        """Wait on the event loop until every member has a token; a cancelled wait refunds them all."""
        return await _acquire_async(self)

    def refund(self) -> None:
        for bucket in self.buckets:
            bucket.refund()

    def hold(self, seconds: float) -> None:
        for bucket in self.buckets:
            bucket.hold(seconds)


def _key(base_url: str, token: str) -> tuple[str, str]:
    # Key on a digest so the registries never hold the token itself.
    return base_url.rstrip("/"), hashlib.sha256(token.encode()).hexdigest()


_buckets: dict[tuple[str, str], TokenBucket] = {}
_poll_buckets: dict[tuple[str, str], TokenBucket] = {}
_buckets_lock = threading.Lock()


def _registered(
    registry: dict[tuple[str, str], TokenBucket], key: tuple[str, str], rate: float
) -> TokenBucket:
    with _buckets_lock:
        bucket = registry.get(key)
        if bucket is None or bucket.rate_per_minute != float(rate):
            bucket = TokenBucket(rate)
            registry[key] = bucket
        return bucket


def bucket_for(base_url: str, token: str, rate_per_minute: float) -> TokenBucket:
    """The process-wide bucket of a (base URL, token); a changed rate replaces the bucket."""
    return _registered(_buckets, _key(base_url, token), rate_per_minute)


def poll_bucket_for(base_url: str, token: str, rate_per_minute: float) -> TokenBucket:
    """The process-wide poll budget of a (base URL, token), shared by every delivery sensor and trigger."""
    return _registered(_poll_buckets, _key(base_url, token), rate_per_minute)


def polling_bucket_for(
    base_url: str, token: str, rate_per_minute: float, poll_per_minute: float
) -> BucketChain:
    """What a delivery poll draws from: the token's GET budget and its poll budget, both."""
    return BucketChain(
        bucket_for(base_url, token, rate_per_minute), poll_bucket_for(base_url, token, poll_per_minute)
    )
