"""
One delivery sweep: the lookups a tracker planned, written once, carried out blocking or concurrently.

:func:`step_lookups` is the sans-IO core of one planned step (:mod:`airflow_qikberry.sansio`): an id lookup,
one group page, or a walk of a group's pages that stops as soon as it has seen what it looks for. It yields
each lookup as a :class:`~airflow_qikberry.delivery.tracker.Step` (``id`` or ``page``), receives the
:class:`~airflow_qikberry.models.StatusPage` answering it, feeds it to the tracker and returns how many
lookups it made. A 404 means "not visible yet", never an error, in both drivers because it is decided here.

:func:`run_sweep` runs the steps one after the other with blocking lookups (a sensor on a worker; the first
error stops the sweep); :func:`arun_sweep` runs them concurrently (a trigger) and raises only once all have
finished, so what the others learned is kept.

Example::

    lookups = run_sweep(tracker, hook.poll_page, hook.poll_message)
    lookups = await arun_sweep(tracker, async_hook.poll_page, async_hook.poll_message)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from airflow_qikberry.delivery.tracker import DeliveryTracker, Step
from airflow_qikberry.exceptions import (
    QikberryConnectionError,
    QikberryRateLimitError,
    QikberryServerError,
    QikberryValidationError,
)
from airflow_qikberry.models import StatusPage, StatusRow
from airflow_qikberry.sansio import Core, adrive, drive

__all__ = [
    "AsyncFetchMessage",
    "AsyncFetchPage",
    "FetchMessage",
    "FetchPage",
    "arun_sweep",
    "is_transient",
    "run_sweep",
    "step_lookups",
]

FetchPage = Callable[[str, int], StatusPage[StatusRow]]
FetchMessage = Callable[[str], Sequence[StatusRow]]
AsyncFetchPage = Callable[[str, int], Awaitable[StatusPage[StatusRow]]]
AsyncFetchMessage = Callable[[str], Awaitable[Sequence[StatusRow]]]

Answer = StatusPage[StatusRow]


def is_transient(exc: BaseException) -> bool:
    """Tell whether the next sweep may not see this error (429, 5xx, a dropped connection): keep waiting."""
    if isinstance(exc, QikberryConnectionError):
        return exc.retryable
    return isinstance(exc, (QikberryRateLimitError, QikberryServerError))


def _ask(lookup: Step) -> Core[Step, Answer, Answer]:
    try:
        return (yield lookup)
    except QikberryValidationError as exc:
        # Unknown ids may be answered 404 rather than with an empty list (reference section 10, gap 12).
        if exc.status_code != 404:
            raise
        return StatusPage([], None)


def step_lookups(tracker: DeliveryTracker, step: Step) -> Core[Step, Answer, int]:
    """
    Make the lookups of one planned ``step``, each answer observed by ``tracker``; return how many it made.

    It yields ``Step("id", message_id)``, to be answered with a page of that id's rows, and
    ``Step("page", group_id, n)``, to be answered with page ``n`` of the group.
    """
    if step.kind == "id":
        answer = yield from _ask(step)
        tracker.observe_message(step.target, answer.rows)
        return 1
    if step.kind == "page":
        answer = yield from _ask(step)
        tracker.observe_page(step.target, step.page, answer.rows, answer.next_page, step.expected)
        return 1
    tracker.begin_walk(step.target)
    number: int | None = 1
    read = 0
    try:
        while number is not None:
            answer = yield from _ask(Step("page", step.target, number))
            read += 1
            tracker.observe_page(step.target, number, answer.rows, answer.next_page)
            if tracker.walk_may_stop(step.target):
                break
            number = answer.next_page
    finally:
        tracker.end_walk(step.target, read, reached_end=number is None)
    return read


def run_sweep(tracker: DeliveryTracker, fetch_page: FetchPage, fetch_message: FetchMessage) -> int:
    """
    Run one sweep with blocking lookups, step after step (the sensor on a worker).

    Returns how many lookups it made. The first error that is not a 404 ends the sweep.
    """

    def fetch(lookup: Step) -> Answer:
        if lookup.kind == "page":
            return fetch_page(lookup.target, lookup.page)
        return StatusPage(fetch_message(lookup.target), None)

    return sum(drive(step_lookups(tracker, step), fetch) for step in tracker.begin_sweep())


async def arun_sweep(
    tracker: DeliveryTracker,
    fetch_page: AsyncFetchPage,
    fetch_message: AsyncFetchMessage,
    *,
    concurrency: int = 8,
) -> int:
    """
    Run one sweep with ``concurrency`` lookups in flight (the trigger); returns how many it made.

    Lookups that fail leave their messages pending; after all have finished the first non-transient error
    (else the first transient one) is raised, so what the others learned is kept.
    """
    gate = asyncio.Semaphore(max(1, concurrency))

    async def fetch(lookup: Step) -> Answer:
        async with gate:
            if lookup.kind == "page":
                return await fetch_page(lookup.target, lookup.page)
            return StatusPage(await fetch_message(lookup.target), None)

    steps = tracker.begin_sweep()
    results = await asyncio.gather(
        *(adrive(step_lookups(tracker, s), fetch) for s in steps), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    for error in errors:
        if not isinstance(error, Exception) or not is_transient(error):
            raise error
    if errors:
        raise errors[0]
    return sum(r for r in results if isinstance(r, int))
