"""
The two drivers of the provider's sans-IO cores: one blocking, one awaiting. Cores do no I/O; drivers do.

A core is a generator that yields a request and receives its answer (``answer = yield request``). When the
request fails with a typed API error (:class:`~airflow_qikberry.exceptions.QikberryError`), the error is
raised inside the core at that ``yield``, so the core alone decides what an error means there (a 404 that
means "not found yet", a fallback to another endpoint) and the sync and async paths cannot disagree. What
the core returns is the result. Both drivers close the core when they stop, so its ``finally`` blocks run
even when a call is cancelled.

The status and balance lookups (:mod:`airflow_qikberry.lookups`) and delivery sweeps
(:mod:`airflow_qikberry.delivery.sweep`) are such cores.

Example::

    def balance_core(service):
        try:
            response = yield Request(Paths.BALANCE, {"service": service})
        except QikberryValidationError as exc:
            if exc.status_code != 404:
                raise
            response = yield Request(Paths.BALANCE_LEGACY, {"service": service})
        return Balance.list_from(rows_of(response, what="finance/balance"))

    drive(balance_core("T"), lambda request: transport.get(*request))  # a worker
    await adrive(balance_core("T"), lambda request: async_transport.get(*request))  # a trigger
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, Generic, TypeVar

from airflow_qikberry.exceptions import QikberryError

__all__ = ["Core", "adrive", "drive"]

Q = TypeVar("Q")
A = TypeVar("A")
T = TypeVar("T")

#: A sans-IO core: it yields requests ``Q``, receives answers ``A`` and returns a ``T``.
Core = Generator[Q, A, T]

_Outcome = tuple[Any, QikberryError | None]


class _Exchange(Generic[Q, A, T]):
    """Where a core stands: the request it waits on, or (``done``) what it returned. Closes it on exit."""

    def __init__(self, core: Core[Q, A, T]) -> None:
        self._core = core
        self.done = False
        self.request: Q
        self.result: T
        self._resume(core.send, None)

    def _resume(self, step: Callable[[Any], Q], value: Any) -> None:
        try:
            self.request = step(value)
        except StopIteration as stop:
            self.done, self.result = True, stop.value

    def settle(self, outcome: _Outcome) -> None:
        """Send the answer to the pending request into the core, or raise its error there."""
        answer, error = outcome
        if error is None:
            self._resume(self._core.send, answer)
        else:
            self._resume(self._core.throw, error)

    def __enter__(self) -> _Exchange[Q, A, T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self._core.close()


def drive(core: Core[Q, A, T], call: Callable[[Q], A]) -> T:
    """Carry ``core`` out with a blocking ``call`` per request (a worker: a sensor, an operator)."""
    with _Exchange(core) as exchange:
        while not exchange.done:
            exchange.settle(_outcome(call, exchange.request))
    return exchange.result


async def adrive(core: Core[Q, A, T], call: Callable[[Q], Awaitable[A]]) -> T:
    """Carry ``core`` out awaiting ``call`` per request (the triggerer's event loop)."""
    with _Exchange(core) as exchange:
        while not exchange.done:
            exchange.settle(await _awaited(call(exchange.request)))
    return exchange.result


def _outcome(call: Callable[[Q], A], request: Q) -> _Outcome:
    try:
        return call(request), None
    except QikberryError as exc:
        return None, exc


async def _awaited(answer: Awaitable[A]) -> _Outcome:
    try:
        return await answer, None
    except QikberryError as exc:
        return None, exc
