"""
Single-flight and short reuse of identical async GETs made in one event loop (one triggerer).

Every deferred Qikberry sensor of a triggerer runs its trigger in the same event loop. When two of them wait
on the same group they ask for the same pages: the first request for a key makes the call, identical
requests made while it is in flight (its wait for the rate budget included) share its answer, and a caller
that accepts an answer up to ``max_age`` seconds old reuses one that finished that recently. Keys hold the
base URL and a digest of the token - never the token - so answers are never shared across tokens.

Only typed API errors are shared with the callers that joined a flight; if the flight dies of anything else
(its owner's client was closed, the task was cancelled), each joined caller makes its own request.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from airflow_qikberry.clock import SYSTEM_CLOCK, Clock
from airflow_qikberry.exceptions import QikberryError
from airflow_qikberry.ratelimit import token_key

__all__ = ["MAX_REUSE_SECONDS", "Coalescer", "coalescer", "request_key"]

T = TypeVar("T")
Key = tuple[str, str, str, tuple[tuple[str, str], ...]]

#: The longest a finished answer is kept for reuse; callers ask for less (a fraction of their poll interval).
MAX_REUSE_SECONDS = 10.0


def request_key(base_url: str, token: str, path: str, params: Mapping[str, Any] | None) -> Key:
    """Return the identity of a GET: base URL, token digest, path and the non-empty parameters, sorted."""
    query = tuple(sorted((str(k), str(v)) for k, v in (params or {}).items() if v is not None))
    return (*token_key(base_url, token), path, query)


def _cancelled_from_outside() -> bool:
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    # Python 3.10 cannot tell who was cancelled: assume it was us and stop.
    return cancelling is None or cancelling() > 0


class Coalescer:
    """
    Shares identical in-flight GETs and recent answers among the coroutines of one event loop.

    Example::

        key = request_key(base_url, token, "sms/status", {"group_id": gid, "page": 2})
        response = await coalescer().run(key, lambda: transport.get("sms/status", params), max_age=5)

    ``calls`` counts requests actually made, ``shared`` those answered by another caller's request.
    """

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._flights: dict[Key, asyncio.Task[Any]] = {}
        self._done: OrderedDict[Key, tuple[float, Any]] = OrderedDict()
        self.calls = 0
        self.shared = 0

    def _evict(self, now: float) -> None:
        # Answers are stored in the order they finish, so the oldest are always at the front.
        while self._done:
            key, (finished, _) = next(iter(self._done.items()))
            if now - finished <= MAX_REUSE_SECONDS:
                break
            del self._done[key]

    async def run(self, key: Key, fetch: Callable[[], Awaitable[T]], *, max_age: float = 0.0) -> T:
        """``await fetch()``, unless an identical request is in flight or finished within ``max_age`` s."""
        now = self._clock.monotonic()
        self._evict(now)
        if max_age > 0 and key in self._done:
            finished, value = self._done[key]
            if now - finished <= min(max_age, MAX_REUSE_SECONDS):
                self.shared += 1
                return value  # type: ignore[no-any-return]
        flight = self._flights.get(key)
        if flight is not None:
            self.shared += 1
            try:
                return await asyncio.shield(flight)  # type: ignore[no-any-return]
            except QikberryError:
                raise
            except asyncio.CancelledError:
                if _cancelled_from_outside():
                    raise
            except Exception:
                pass
            self.calls += 1
            return await fetch()
        task: asyncio.Task[T] = asyncio.ensure_future(self._fly(key, fetch))
        self._flights[key] = task
        task.add_done_callback(lambda t: self._landed(key, t))
        self.calls += 1
        # Shielded: the caller that started the flight may be cancelled; the others still need the answer.
        return await asyncio.shield(task)

    async def _fly(self, key: Key, fetch: Callable[[], Awaitable[T]]) -> T:
        value = await fetch()
        self._done[key] = (self._clock.monotonic(), value)
        self._done.move_to_end(key)
        return value

    def _landed(self, key: Key, task: asyncio.Task[Any]) -> None:
        if self._flights.get(key) is task:
            del self._flights[key]
        if not task.cancelled():
            task.exception()  # retrieved here, so an answer nobody awaited any more is not reported as lost


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Coalescer] = weakref.WeakKeyDictionary()


def coalescer() -> Coalescer:
    """Return the coalescer of the running event loop (futures belong to one loop; a triggerer has one)."""
    loop = asyncio.get_running_loop()
    found = _by_loop.get(loop)
    if found is None:
        found = _by_loop[loop] = Coalescer()
    return found
