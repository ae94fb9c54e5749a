"""
Time as the provider reads it and waits it out: :class:`Clock`, the one seam tests replace.

The waits of an API call (retry backoff, ``Retry-After``, the lookups that settle an unknown outcome, rate
budgets) and the readings of time that bound them (deadlines, budget refills, the reuse of a recent answer)
go through a clock. Each of these takes one as an argument and defaults to :data:`SYSTEM_CLOCK`; a test
passes its own (``QikberryHook(clock=...)`` and ``QikberryAsyncHook(clock=...)``, which hand it to their
retry policy; ``QikberryNotifier(..., clock=...)``; ``RetryPolicy(clock=...)``, ``TokenBucket(...,
clock=...)``, ``BudgetRegistry(clock=...)``, ``Coalescer(clock=...)``) to record the waits instead of
sleeping, and to move time by them. See docs/development.md, "Time in tests". (A trigger's poll interval and
end time stay on the wall clock: a trigger is serialised, and the triggerer's time is the one that counts.)
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["SYSTEM_CLOCK", "Clock"]


class Clock:
    """
    The real clock: ``time.monotonic``, ``time.sleep`` and ``asyncio.sleep``.

    Subclass it to control time in a test; the provider calls nothing else.

    Example::

        class Recorded(Clock):
            def __init__(self) -> None:
                self.now, self.waits = 0.0, []

            def monotonic(self) -> float:
                return self.now

            def sleep(self, seconds: float) -> None:
                self.waits.append(seconds)
                self.now += seconds


        hook = QikberryHook(clock=Recorded())
    """

    def monotonic(self) -> float:
        """Return seconds on a clock that never goes back, to measure waits and deadlines."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""
        time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        """Wait ``seconds`` without blocking the event loop."""
        await asyncio.sleep(seconds)


#: The clock every hook, policy, budget and coalescer uses unless it is given another.
SYSTEM_CLOCK = Clock()
