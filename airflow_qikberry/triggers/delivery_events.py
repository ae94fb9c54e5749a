"""
QikberryDeliveryEventTrigger: delivery reports as asset events (an ``AssetWatcher``'s trigger, Airflow 3).

It runs in the triggerer for as long as a DAG declares the asset, and every ``poll_interval`` emits one
event (more for big batches) holding the new final reports that match its selection, read from the push
inbox and, every ``catch_up_interval``, from ``sms/status`` (:mod:`airflow_qikberry.delivery.feed`). It
only reads: nothing is sent here.

What it remembers (which messages it processed) is stored in the asset state store of its asset (Airflow
3.3+), and only **after** Airflow confirmed that the events made of those reports are in its database: the
trigger opts into Airflow 3.3's shared-stream *ack mode* with a stream of its own, whose ``advance`` is that
confirmation. So a triggerer that dies loses nothing (what was not confirmed is emitted again) and a
restart emits nothing twice, except the events of the last second or two before a crash. Delivery is at
least once: consumers deduplicate by each report's ``key`` (``"<message id>|<status>"``). On Airflow 3.0 to
3.2 (no state store) the memory lives in the process: a restart emits the lookback's reports again.
Its kwargs (Airflow hashes them to know the watcher) hold no time, no secret, nothing computed at parse time.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Hashable, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.triggers import BaseEventTrigger
from airflow.triggers.base import TriggerEvent

from airflow_qikberry.delivery.state import MemoryStore
from airflow_qikberry.exceptions import QikberryValidationError

if TYPE_CHECKING:
    from airflow_qikberry.delivery.feed import DeliveryFeed, FeedSettings, Sweep
    from airflow_qikberry.delivery.inputs import StatusSets
    from airflow_qikberry.hooks.qikberry_async import QikberryAsyncHook

__all__ = ["OUTCOMES", "QikberryDeliveryEventTrigger"]

OUTCOMES = ("delivered", "failed")
#: Longest lookback: the sends registry keeps a send this long (30 days, in hours).
MAX_LOOKBACK_HOURS = 30 * 24
MAX_BATCH = 5_000
#: The asset state store key prefix of a watcher's memory (a digest of its selection follows).
MEMORY_KEY = "qikberry.delivery_events"
_STREAM = "airflow_qikberry.delivery_events"

# The asset state store of each trigger whose shared stream is being opened: Airflow hands it to the
# trigger, but builds the stream's producer from the trigger's kwargs alone (see shared_stream_key()).
_STORES: dict[Hashable, Any] = {}


def _strings(value: Any, name: str) -> list[str] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    if not items or not all(isinstance(item, str) and item.strip() for item in items):
        raise QikberryValidationError(
            f"{name} must be a non-empty list of strings, got {value!r}.", field=name
        )
    return sorted({item.strip() for item in items})


def _positive(value: Any, name: str, *, maximum: float | None = None) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if not number > 0 or (maximum is not None and number > maximum):
        limit = f" and at most {maximum:g}" if maximum is not None else ""
        raise QikberryValidationError(f"{name} must be a number above 0{limit}, got {value!r}.", field=name)
    return number


class QikberryDeliveryEventTrigger(BaseEventTrigger):
    """
    Emit batches of final delivery reports of a connection as asset events (Airflow 3 asset watchers).

    Each event's payload (the asset event's ``extra["payload"]``) holds ``reports`` (one dict per report:
    ``id``, ``key``, ``group_id``, ``mobile`` masked, ``status``, ``outcome``, ``error_code``, ``units``,
    ``credits``, ``custom_id``, ``campaign``, ``sender``, ``service``, ``submitted_at``, ``operator_at``,
    ``delivered_at``, ``source``), a ``summary`` (counts by status, as the delivery sensor's), a ``message``,
    the ``connection`` and the ``selection``. :func:`airflow_qikberry.delivery.events.reports_in` reads them
    back in a consumer task, deduplicated.

    Example::

        from airflow.sdk import Asset, AssetWatcher

        failed = Asset(
            name="sms_failed",
            watchers=[AssetWatcher(name="sms_failed", trigger=QikberryDeliveryEventTrigger())],
        )

    :param qikberry_conn_id: the connection whose messages to report on (its ``webhook_secret`` and
        ``delivery_events`` extras say whether pushes and recorded sends are there to read).
    :param outcomes: ``["failed"]``, ``["delivered"]`` or both: which final reports to emit.
    :param statuses: or exactly these statuses (e.g. ``["UNDELIV", "EXPIRED"]``), instead of ``outcomes``.
    :param campaign: only messages of this campaign (its name as the campaign operator was given it, or a
        glob such as ``"bill-reminder-*"``); needs the sends registry (``delivery_events`` on).
    :param sender: only messages from this sender id.
    :param pending_statuses: statuses that are not final (default ``AWAITING-DLR``).
    :param delivered_statuses: statuses that mean delivered (default ``DELIVRD``).
    :param failed_statuses: statuses that mean failed (default: every other status).
    :param poll_interval: seconds between sweeps (inbox reads and events).
    :param catch_up_interval: seconds between catch-up readings of ``sms/status`` (default: every sweep).
    :param lookback_hours: how long after its send a message is watched (default 72, at most 720).
    :param max_batch: most reports in one event (default 500).
    :param learn_groups_from_pushes: read back, too, the groups that pushed reports name (default True).
    """

    def __init__(
        self,
        *,
        qikberry_conn_id: str = "qikberry_default",
        outcomes: Sequence[str] | None = ("failed",),
        statuses: Sequence[str] | None = None,
        campaign: str | None = None,
        sender: str | None = None,
        pending_statuses: Sequence[str] | None = None,
        delivered_statuses: Sequence[str] | None = None,
        failed_statuses: Sequence[str] | None = None,
        poll_interval: float = 60.0,
        catch_up_interval: float | None = None,
        lookback_hours: float = 72.0,
        max_batch: int = 500,
        learn_groups_from_pushes: bool = True,
    ) -> None:
        from airflow_qikberry.delivery.inputs import StatusSets

        super().__init__()
        if not isinstance(qikberry_conn_id, str) or not qikberry_conn_id.strip():
            raise QikberryValidationError(
                "qikberry_conn_id must name a connection.", field="qikberry_conn_id"
            )
        self.qikberry_conn_id = qikberry_conn_id
        chosen = _strings(outcomes, "outcomes") or []
        unknown = sorted(set(chosen) - set(OUTCOMES))
        if unknown or (not chosen and statuses is None):
            raise QikberryValidationError(
                f"outcomes must be 'failed', 'delivered' or both, got {outcomes!r}.", field="outcomes"
            )
        self.outcomes = chosen
        self.statuses = _strings(statuses, "statuses")
        for name, value in (("campaign", campaign), ("sender", sender)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise QikberryValidationError(
                    f"{name} must be a non-empty string, got {value!r}.", field=name
                )
        self.campaign = campaign.strip() if campaign else None
        self.sender = sender.strip() if sender else None
        self.status_sets: StatusSets = StatusSets.of(pending_statuses, delivered_statuses, failed_statuses)
        self.poll_interval = _positive(poll_interval, "poll_interval")
        self.catch_up_interval = (
            None if catch_up_interval is None else _positive(catch_up_interval, "catch_up_interval")
        )
        self.lookback_hours = _positive(lookback_hours, "lookback_hours", maximum=MAX_LOOKBACK_HOURS)
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or not 1 <= max_batch <= MAX_BATCH:
            raise QikberryValidationError(
                f"max_batch must be a whole number from 1 to {MAX_BATCH}, got {max_batch!r}.",
                field="max_batch",
            )
        self.max_batch = max_batch
        if not isinstance(learn_groups_from_pushes, bool):
            raise QikberryValidationError(
                "learn_groups_from_pushes must be True or False.", field="learn_groups_from_pushes"
            )
        self.learn_groups_from_pushes = learn_groups_from_pushes

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "qikberry_conn_id": self.qikberry_conn_id,
                "outcomes": self.outcomes,
                "statuses": self.statuses,
                "campaign": self.campaign,
                "sender": self.sender,
                **self.status_sets.to_kwargs(),
                "poll_interval": self.poll_interval,
                "catch_up_interval": self.catch_up_interval,
                "lookback_hours": self.lookback_hours,
                "max_batch": self.max_batch,
                "learn_groups_from_pushes": self.learn_groups_from_pushes,
            },
        )

    # -- what it reads and remembers

    def feed_settings(self) -> FeedSettings:
        from airflow_qikberry.delivery.feed import FeedSettings, Selection

        return FeedSettings(
            conn_id=self.qikberry_conn_id,
            selection=Selection(
                outcomes=frozenset(self.outcomes),
                statuses=None if self.statuses is None else frozenset(self.statuses),
                campaign=self.campaign,
                sender=self.sender,
            ),
            statuses=self.status_sets,
            lookback=self.lookback_hours * 3600,
            learn_from_pushes=self.learn_groups_from_pushes,
        )

    def memory_key(self) -> str:
        """
        Return the asset state store key of this watcher's memory.

        It changes when what it emits changes (its connection, selection or status vocabulary), not with
        its intervals or batch size.
        """
        selection = self.feed_settings().selection.describe()
        basis = {"conn": self.qikberry_conn_id, "selection": selection, **self.status_sets.to_kwargs()}
        digest = hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]
        return f"{MEMORY_KEY}.{digest}"

    def payloads(self, sweep: Sweep) -> list[dict[str, Any]]:
        """
        Return the event payloads of one sweep's reports.

        None when it found none, else batches of ``max_batch``.
        """
        from airflow_qikberry.delivery.report import reports_payload

        reports = sweep.reports
        if not reports:
            return []
        chunks = [reports[i : i + self.max_batch] for i in range(0, len(reports), self.max_batch)]
        selection = self.feed_settings().selection.describe()
        return [
            reports_payload(
                chunk, connection=self.qikberry_conn_id, selection=selection, part=i + 1, parts=len(chunks)
            )
            for i, chunk in enumerate(chunks)
        ]

    # -- Airflow 3.3: a shared stream of its own, in ack mode

    def _stream_key(self) -> tuple[str, str]:
        _, kwargs = self.serialize()
        return _STREAM, hashlib.sha256(json.dumps(kwargs, sort_keys=True).encode()).hexdigest()

    def shared_stream_key(self) -> Hashable | None:
        """Return a stream for this trigger alone: ack mode then tells it when its events are stored."""
        key = self._stream_key()
        _STORES[key] = getattr(self, "asset_state_store", None)
        return key

    @classmethod
    def create_shared_stream_producer(cls, kwargs: dict[str, Any]) -> Any:
        trigger = cls(**kwargs)
        return _producer_class()(trigger, _STORES.pop(trigger._stream_key(), None))

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        async for sweep in shared_stream:
            for payload in self.payloads(sweep):
                yield TriggerEvent(payload)

    # -- any Airflow: its own loop

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """
        Emit events where the triggerer does not use shared streams (Airflow 3.0-3.2) or a test drives it.

        The memory of a sweep is stored one sweep later, when the triggerer has long taken its events.
        """
        async with _Watch(self, getattr(self, "asset_state_store", None)) as watch:
            taken: str | None = None
            async for sweep in watch.sweeps():
                if taken is not None:
                    await watch.save(taken)
                for payload in self.payloads(sweep):
                    yield TriggerEvent(payload)
                taken = sweep.memory


class _Watch:
    """One running watcher: its hook, feed and memory store, and the sweep loop."""

    def __init__(self, trigger: QikberryDeliveryEventTrigger, store: Any) -> None:
        self.trigger = trigger
        self.log = trigger.log
        self.store = MemoryStore(store, trigger.memory_key())
        self.hook: QikberryAsyncHook | None = None
        self.feed: DeliveryFeed | None = None

    async def __aenter__(self) -> _Watch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        hook, self.hook = self.hook, None
        if hook is not None:
            await hook.close()

    async def save(self, memory: str) -> None:
        await self.store.save(memory)

    async def _open(self, hook: QikberryAsyncHook) -> DeliveryFeed:
        from airflow_qikberry.delivery.feed import DeliveryFeed
        from airflow_qikberry.delivery.inbox import variable_store
        from airflow_qikberry.delivery.memory import EventMemory

        trigger = self.trigger
        settings = await hook.get_settings()
        memory = EventMemory.from_json(await self.store.load())
        self.log.info(
            "Qikberry delivery events on %s: emitting %s; %s; memory %s (%d group(s) remembered)",
            trigger.qikberry_conn_id,
            trigger.feed_settings().selection.describe(),
            "catch-up every sweep"
            if trigger.catch_up_interval is None
            else f"catch-up every {trigger.catch_up_interval:g} s",
            "in the asset state store" if self.store.durable else "in this process only (no state store)",
            len(memory.groups),
        )
        return DeliveryFeed(
            trigger.feed_settings(),
            memory,
            variables=variable_store(),
            hook=hook,
            api_timezone=settings.api_timezone,
            log=self.log,
        )

    async def sweep_once(self, *, catch_up: bool, max_age: float) -> Sweep:
        """
        Run one sweep; the hook's client is closed before this returns whatever happens (cancellation too).

        A watcher suspended at its ``yield`` and never closed (2.11's ``dag.test()``) holds no socket. The
        hook itself stays: its connection is read once per watcher, not once per sweep.
        """
        from airflow_qikberry.hooks.qikberry_async import QikberryAsyncHook

        if self.hook is None:
            self.hook = QikberryAsyncHook(qikberry_conn_id=self.trigger.qikberry_conn_id)
        try:
            if self.feed is None:
                self.feed = await self._open(self.hook)
            return await self.feed.sweep(catch_up=catch_up, max_age=max_age)
        finally:
            await self.hook.close()  # the client only: a closed hook opens a new one on its next call

    async def sweeps(self) -> AsyncIterator[Sweep]:
        """
        Yield a sweep every ``poll_interval`` on the wall-clock grid, forever.

        On the grid so watchers and sensors of one triggerer that read the same groups make their
        identical lookups once. A failed sweep (the API or Airflow unreachable) is logged and tried again
        at the next interval.
        """
        from airflow_qikberry.delivery.sweep import is_transient
        from airflow_qikberry.exceptions import QikberryError

        trigger = self.trigger
        interval = trigger.poll_interval
        catch_up_every = trigger.catch_up_interval or interval
        next_catch_up = 0.0
        failures = 0
        while True:
            now = time.time()
            try:
                catch_up = now >= next_catch_up
                sweep = await self.sweep_once(catch_up=catch_up, max_age=min(interval / 4, 10.0))
            except Exception as exc:
                # A watcher keeps going whatever failed (the API, the connection, Airflow's own API): the
                # next sweep tries again. Its memory is untouched, so nothing is lost meanwhile.
                # What only a person can fix (the connection's settings, the token) is an error in the log.
                failures += 1
                ours = isinstance(exc, QikberryError)
                self.log.log(
                    logging.WARNING if not ours or is_transient(exc) else logging.ERROR,
                    "Qikberry delivery events: sweep failed (%d in a row), retrying: %s",
                    failures,
                    str(exc) if ours else repr(exc),
                )
            else:
                failures = 0
                if catch_up:
                    next_catch_up = now + catch_up_every
                stats = sweep.stats
                if stats["emitted"] or stats["pushed"] or stats["read_back"] or stats["lookups"]:
                    self.log.info(
                        "Qikberry delivery events: %d new final report(s) (%d pushed, %d read back in %d "
                        "lookup(s)), %d to emit; %d of %d group(s) open",
                        stats["pushed"] + stats["read_back"],
                        stats["pushed"],
                        stats["read_back"],
                        stats["lookups"],
                        stats["emitted"],
                        stats["groups_open"],
                        stats["groups"],
                    )
                yield sweep
            step = interval
            wake = (time.time() // step + 1) * step
            await asyncio.sleep(max(0.05, wake - time.time()))


_PRODUCER: type | None = None


def _producer_class() -> type:
    """
    Return the ack-mode producer (Airflow 3.3's ``SharedStreamProducer``), defined on first use.

    The base class does not exist before 3.3, where this path is never taken.
    """
    global _PRODUCER
    if _PRODUCER is not None:
        return _PRODUCER
    from airflow.triggers.shared_stream import AdvanceItem, SharedStreamProducer

    class DeliveryEventProducer(SharedStreamProducer):
        """
        Sweeps as the stream's raw events.

        Each sweep's memory is the broker payload ``advance`` stores once Airflow confirmed the events of
        that sweep (and of every one before it) are persisted.
        """

        def __init__(self, trigger: QikberryDeliveryEventTrigger, store: Any) -> None:
            self.watch = _Watch(trigger, store)

        async def open_stream(self) -> AsyncIterator[tuple[Any, Any]]:
            async for sweep in self.watch.sweeps():
                yield sweep, sweep.memory

        async def advance(self, batch: Sequence[AdvanceItem]) -> None:
            for item in batch:
                if not item.outcome.is_clean:
                    # Not confirmed stored (or nobody took it): store nothing more, end the stream; the
                    # trigger restarts from its last stored memory and emits those reports again.
                    raise RuntimeError(
                        f"Qikberry delivery events: a batch was not confirmed stored ({item.outcome}); "
                        "restarting from the last stored memory"
                    )
            await self.watch.save(batch[-1].broker_payload)

        async def aclose(self) -> None:
            await self.watch.close()

    _PRODUCER = DeliveryEventProducer
    return _PRODUCER
