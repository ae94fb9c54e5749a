"""Client-side rate limiting: one token bucket per (base URL, token) per process.

The API allows 1000 GET requests per minute per token. Every hook, sync or async (and so every sensor and
trigger) in a process that uses the same token draws from the same bucket, so together they stay under the
limit. The bucket waits rather than fails; the server's 429 is still handled by the transports' retries.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

__all__ = ["TokenBucket", "bucket_for"]


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
            if self._tokens >= 0:
                return 0.0
            return -self._tokens / self._per_second

    def acquire(self) -> float:
        """Block until a token is available; returns the seconds waited."""
        delay = self.reserve()
        if delay > 0:
            self._sleep(delay)
        return delay

    async def acquire_async(self) -> float:
        """Wait, without blocking the event loop, until a token is available; returns the seconds waited.

        Draws from the same budget as :meth:`acquire`, so threads and coroutines of one process share it.
        """
        delay = self.reserve()
        if delay > 0:
            import asyncio

            await asyncio.sleep(delay)
        return delay


_buckets: dict[tuple[str, str], TokenBucket] = {}
_buckets_lock = threading.Lock()


def bucket_for(base_url: str, token: str, rate_per_minute: float) -> TokenBucket:
    """The process-wide bucket of a (base URL, token); a changed rate replaces the bucket."""
    # Key on a digest so the registry never holds the token itself.
    key = (base_url.rstrip("/"), hashlib.sha256(token.encode()).hexdigest())
    with _buckets_lock:
        bucket = _buckets.get(key)
        if bucket is None or bucket.rate_per_minute != float(rate_per_minute):
            bucket = TokenBucket(rate_per_minute)
            _buckets[key] = bucket
        return bucket
