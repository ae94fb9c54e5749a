"""
QikberryDeliveryTrigger: waits in the triggerer until enough messages are delivered (no worker slot).

It only reads: sends happen on workers, never here (a triggerer restart would repeat them). It keeps no state
that matters outside the API: a restarted trigger re-derives everything from the status API on its first
sweep, so it is safe to stop and resume at any point. Its lookups go through
:class:`~airflow_qikberry.hooks.qikberry_async.QikberryAsyncHook`'s poll methods, so every trigger of a
triggerer shares the token's poll budget and makes identical lookups once.

Triggerer modules are imported by the triggerer, not by DAG files; still, the work is imported when it runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from airflow_qikberry.delivery.tracker import DeliveryTracker
    from airflow_qikberry.hooks.qikberry_async import QikberryAsyncHook

__all__ = ["QikberryDeliveryTrigger"]

#: Sweeps are never closer together than this, whatever poll interval is asked for.
MIN_POLL_INTERVAL = 0.1


class QikberryDeliveryTrigger(BaseTrigger):
    """
    Poll delivery statuses until the wait is decided, then yield one event.

    It is decided when ``success_ratio`` of the messages are delivered, when that can no longer be reached,
    or when ``end_time`` passes.

    Events: ``{"status": "success" | "failure" | "timeout" | "error", "summary": {...}, "message": "..."}``;
    the summary is the one :class:`~airflow_qikberry.sensors.delivery.QikberryDeliverySensor` returns. A
    transient API error (429, 5xx, a dropped connection) is logged and the next sweep tries again; only an
    error that cannot heal (a bad token, a rejected request) ends the trigger with an ``error`` event.

    Sweeps happen on a grid of ``poll_interval`` seconds of wall-clock time, so the sweeps of triggers with
    the same interval line up and their identical lookups are made once.

    Example::

        self.defer(
            trigger=QikberryDeliveryTrigger(
                group_ids=["b34e35ad-..."], end_time=time.time() + 3600, poll_interval=60
            ),
            method_name="execute_complete",
        )

    :param end_time: when to give up, as a Unix timestamp (absolute, so a restart keeps the deadline).
    :param message_ids: the messages to wait for (a list, or the packed form :meth:`serialize` writes).
    :param group_ids: or the groups (campaigns) to wait for.
    :param success_ratio: delivered share that counts as success (0 < ratio <= 1).
    :param expected_count: group mode: how many messages the groups hold, when known.
    :param pending_statuses: statuses that mean "not final yet" (default ``AWAITING-DLR``).
    :param delivered_statuses: statuses that mean delivered (default ``DELIVRD``).
    :param failed_statuses: statuses that mean failed (default: every other status).
    :param poll_interval: seconds between sweeps.
    :param exponential_backoff: double the interval after each sweep (capped by ``max_wait``).
    :param max_wait: longest interval between sweeps with exponential backoff, in seconds.
    :param qikberry_conn_id: the Airflow connection to use.
    """

    def __init__(
        self,
        *,
        end_time: float,
        message_ids: Sequence[str] | Mapping[str, Any] | None = None,
        group_ids: Sequence[str] | None = None,
        success_ratio: float = 1.0,
        expected_count: int | None = None,
        pending_statuses: Sequence[str] | None = None,
        delivered_statuses: Sequence[str] | None = None,
        failed_statuses: Sequence[str] | None = None,
        poll_interval: float = 60.0,
        exponential_backoff: bool = False,
        max_wait: float | None = None,
        qikberry_conn_id: str = "qikberry_default",
    ) -> None:
        from airflow_qikberry.delivery.inputs import StatusSets, unpack_ids

        super().__init__()
        if isinstance(message_ids, Mapping):
            message_ids = unpack_ids(message_ids)
        self.message_ids = None if message_ids is None else list(message_ids)
        self.group_ids = None if group_ids is None else list(group_ids)
        self.success_ratio = float(success_ratio)
        self.expected_count = expected_count
        self.statuses = StatusSets.of(pending_statuses, delivered_statuses, failed_statuses)
        self.end_time = float(end_time)
        self.poll_interval = max(MIN_POLL_INTERVAL, float(poll_interval))
        self.exponential_backoff = bool(exponential_backoff)
        self.max_wait = None if max_wait is None else float(max_wait)
        self.qikberry_conn_id = qikberry_conn_id
        self._tracker()  # every input is checked here, where the sensor defers, not later in the triggerer

    def _tracker(self) -> DeliveryTracker:
        from airflow_qikberry.delivery.tracker import DeliveryTracker

        return DeliveryTracker(
            message_ids=self.message_ids,
            group_ids=self.group_ids,
            success_ratio=self.success_ratio,
            statuses=self.statuses,
            expected_count=self.expected_count,
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        from airflow_qikberry.delivery.inputs import pack_ids

        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "end_time": self.end_time,
                "message_ids": None if self.message_ids is None else pack_ids(self.message_ids),
                "group_ids": self.group_ids,
                "success_ratio": self.success_ratio,
                "expected_count": self.expected_count,
                **self.statuses.to_kwargs(),
                "poll_interval": self.poll_interval,
                "exponential_backoff": self.exponential_backoff,
                "max_wait": self.max_wait,
                "qikberry_conn_id": self.qikberry_conn_id,
            },
        )

    def interval(self, waits: int) -> float:
        """Seconds between sweep ``waits`` and the next one (before aligning to the wall-clock grid)."""
        seconds = self.poll_interval
        if self.exponential_backoff:
            seconds *= 2 ** min(waits, 32)
            if self.max_wait is not None:
                seconds = min(seconds, max(MIN_POLL_INTERVAL, self.max_wait))
        return seconds

    def next_wait(self, waits: int, now: float) -> float:
        """
        Time until the grid point of ``interval`` nearest to ``now + interval``.

        Sweeps of triggers with the same interval happen together, and on average still one interval apart.
        """
        step = self.interval(waits)
        target = round((now + step) / step) * step
        if target - now < step / 2:
            target += step
        return target - now

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_qikberry.hooks.qikberry_async import QikberryAsyncHook

        hook = QikberryAsyncHook(qikberry_conn_id=self.qikberry_conn_id)
        try:
            payload = await self._wait(hook)
        finally:
            # Closed before the event is given: Airflow 2.11's dag.test() takes the first event and never
            # closes the generator, so a close after the yield would not run (its sockets leaked).
            await hook.close()
        yield TriggerEvent(payload)

    async def _wait(self, hook: QikberryAsyncHook) -> dict[str, Any]:
        """Sweep until a verdict, the deadline or an error that cannot heal; return the event's payload."""
        from airflow_qikberry.delivery.report import describe, event_payload
        from airflow_qikberry.delivery.sweep import is_transient
        from airflow_qikberry.exceptions import QikberryError

        tracker = self._tracker()
        waits = 0
        while True:
            # The worker checked just before deferring; a restarted trigger waits one interval too.
            now = time.time()
            remaining = self.end_time - now
            if remaining > 0:
                await asyncio.sleep(min(self.next_wait(waits, now), remaining))
            # Another trigger's answer from this grid point is fresh; our own previous one never is.
            max_age = min(self.interval(waits) / 4, 10.0)
            waits += 1
            remaining = self.end_time - time.time()
            if remaining <= 0:
                return event_payload("timeout", tracker.summary())
            try:
                lookups = await asyncio.wait_for(self._sweep(hook, tracker, max_age), timeout=remaining)
            except asyncio.TimeoutError:
                return event_payload("timeout", tracker.summary())
            except QikberryError as exc:
                if not is_transient(exc):
                    return event_payload("error", tracker.summary(), f"Qikberry delivery check failed: {exc}")
                self.log.warning("Qikberry delivery check %d incomplete, next one retries: %s", waits, exc)
                continue
            verdict = tracker.verdict()
            self.log.info(
                "Qikberry delivery check %d (%d lookups): %s", waits, lookups, describe(verdict.summary)
            )
            if verdict.state != "pending":
                return event_payload(verdict.state, verdict.summary)

    @staticmethod
    async def _sweep(hook: QikberryAsyncHook, tracker: DeliveryTracker, max_age: float) -> int:
        from airflow_qikberry.delivery.sweep import arun_sweep

        return await arun_sweep(
            tracker,
            lambda group_id, page: hook.poll_page(group_id, page, max_age=max_age),
            lambda message_id: hook.poll_message(message_id, max_age=max_age),
        )
