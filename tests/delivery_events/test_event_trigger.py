"""QikberryDeliveryEventTrigger: stable kwargs, validation, batches, memory across restarts, no leaks."""

from __future__ import annotations

import asyncio
import gc
import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from airflow_qikberry.delivery.dlr import DeliveryReport
from airflow_qikberry.delivery.feed import Sweep
from airflow_qikberry.delivery.inputs import StatusSets
from airflow_qikberry.exceptions import QikberryValidationError
from airflow_qikberry.triggers.delivery_events import QikberryDeliveryEventTrigger
from tests.delivery_events.test_feed import register, settle, store  # noqa: F401 - the fixture
from tests.helpers import all_log_text, dag_bag, requires_airflow
from tests.triggers.support import send_group

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"


def _watcher_kwargs() -> tuple[str, dict[str, Any]]:
    bag = dag_bag(EXAMPLES / "qikberry_failed_sms_followup.py")
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["qikberry_failed_sms_followup"]
    (asset,) = dag.timetable.asset_condition.objects
    (watcher,) = asset.watchers
    return watcher.trigger.serialize()


@requires_airflow((3, 0), "asset watchers are Airflow 3")
def test_the_watchers_kwargs_are_identical_across_two_parses_of_the_dag_file() -> None:
    # Airflow keys a watcher's row by a hash of its kwargs: a change restarts the watcher.
    first, second = _watcher_kwargs(), _watcher_kwargs()
    assert first == second
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert first[0] == "airflow_qikberry.triggers.delivery_events.QikberryDeliveryEventTrigger"
    assert not any("secret" in key or "token" in key for key in first[1])


def test_equal_selections_serialize_alike_and_round_trip() -> None:
    a = QikberryDeliveryEventTrigger(outcomes=["failed", "delivered"], statuses=["EXPIRED", "UNDELIV"])
    b = QikberryDeliveryEventTrigger(
        outcomes=("delivered", "failed"), statuses=["UNDELIV", "EXPIRED", "UNDELIV"]
    )
    assert a.serialize() == b.serialize()
    path, kwargs = a.serialize()
    assert QikberryDeliveryEventTrigger(**kwargs).serialize() == (path, kwargs)
    assert a.memory_key() == QikberryDeliveryEventTrigger(**{**kwargs, "poll_interval": 5}).memory_key()
    assert a.memory_key() != QikberryDeliveryEventTrigger(**{**kwargs, "campaign": "x"}).memory_key()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"outcomes": ["lost"]}, "outcomes"),
        ({"outcomes": []}, "outcomes"),
        ({"statuses": [""]}, "statuses"),
        ({"campaign": ""}, "campaign"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"lookback_hours": 10_000}, "lookback_hours"),
        ({"max_batch": 0}, "max_batch"),
        ({"max_batch": True}, "max_batch"),
        ({"qikberry_conn_id": " "}, "qikberry_conn_id"),
    ],
)
def test_bad_arguments_are_typed_errors_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(QikberryValidationError) as caught:
        QikberryDeliveryEventTrigger(**kwargs)
    assert caught.value.field == field


def test_reports_are_batched_into_few_events() -> None:
    reports = [
        DeliveryReport.from_push({"id": f"g-1:{n}", "status": "UNDELIV"}, StatusSets(), "UTC")
        for n in range(1, 1201)
    ]
    trigger = QikberryDeliveryEventTrigger(max_batch=500)
    payloads = trigger.payloads(Sweep(reports, "{}", {}))
    assert [len(p["reports"]) for p in payloads] == [500, 500, 200]
    assert [(p["part"], p["parts"]) for p in payloads] == [(1, 3), (2, 3), (3, 3)]
    assert trigger.payloads(Sweep([], "{}", {})) == []


class DictAccessor:
    """An asset state store accessor (``aget``/``aset``) holding values in a dict: Airflow's own needs a
    running API server; the e2e test runs against it."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    async def aget(self, key: str) -> Any:
        return self.values.get(key)

    async def aset(self, key: str, value: Any) -> None:
        self.values[key] = value


async def _events_for(trigger: QikberryDeliveryEventTrigger, seconds: float) -> list[dict[str, Any]]:
    """The trigger's events for ``seconds``, then cancelled as the triggerer cancels a watcher."""
    events: list[dict[str, Any]] = []

    async def consume() -> None:
        async for event in trigger.run():
            events.append(event.payload)

    task = asyncio.create_task(consume())
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return events


def _failed_ids(events: list[dict[str, Any]]) -> list[str]:
    return sorted(r["id"] for e in events for r in e["reports"])


def test_a_restarted_watcher_with_a_state_store_neither_loses_nor_re_emits(
    store: Any,  # noqa: F811
    qikberry_conn: str,
    emulator: Any,
) -> None:
    accessor = DictAccessor()

    def trigger() -> QikberryDeliveryEventTrigger:
        t = QikberryDeliveryEventTrigger(qikberry_conn_id=qikberry_conn, poll_interval=0.3)
        t.asset_state_store = accessor  # type: ignore[assignment]  # what the triggerer sets (3.3)
        return t

    _, first_ids = send_group(emulator, 6, fail=True)
    register(qikberry_conn, first_ids)
    settle(emulator)
    first = asyncio.run(_events_for(trigger(), 2.0))
    assert _failed_ids(first) == sorted(first_ids)
    assert accessor.values, "the memory of the emitted sweep was stored"

    _, later_ids = send_group(emulator, 4, fail=True)
    register(qikberry_conn, later_ids)
    settle(emulator)
    again = asyncio.run(_events_for(trigger(), 2.0))
    assert _failed_ids(again) == sorted(later_ids)


@pytest.mark.parametrize("how", ["first-event-then-abandoned", "cancelled-mid-lookup"])
def test_the_watcher_leaks_no_socket(store: Any, qikberry_conn: str, emulator: Any, how: str) -> None:  # noqa: F811
    """Airflow 2.11's ``dag.test()`` takes a trigger's first event and never closes the generator; a
    triggerer cancels a watcher whenever its asset goes away. Neither may leave a client open."""
    _, ids = send_group(emulator, 5, fail=True)
    register(qikberry_conn, ids)
    settle(emulator)
    trigger = QikberryDeliveryEventTrigger(qikberry_conn_id=qikberry_conn, poll_interval=0.2)

    async def first_event() -> Any:  # airflow.models.dag._run_inline_trigger, Airflow 2.11
        async for event in trigger.run():
            return event
        return None

    async def cancelled() -> None:
        emulator.set_faults([{"endpoint": "sms/status", "kind": "latency", "seconds": 2.0, "times": 100}])
        task = asyncio.create_task(first_event())
        await asyncio.sleep(1.0)  # the catch-up lookup is on the wire
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if how == "cancelled-mid-lookup":
            asyncio.run(cancelled())
        else:
            # The generator is left suspended at its yield, never closed (no shutdown_asyncgens either).
            loop = asyncio.new_event_loop()
            generator = trigger.run()
            event = loop.run_until_complete(generator.__anext__())
            loop.close()
            assert _failed_ids([event.payload]) == sorted(ids)
            del generator
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_the_watcher_keeps_going_when_the_api_fails(
    store: Any,  # noqa: F811
    qikberry_conn: str,
    emulator: Any,
) -> None:
    # The hook's own retries (5 attempts, about 10 s) give up in the first sweep; a later sweep reads them.
    _, ids = send_group(emulator, 3, fail=True)
    register(qikberry_conn, ids)
    settle(emulator)
    emulator.set_faults([{"endpoint": "sms/status", "kind": "error", "status": 500, "times": 5}])
    events = asyncio.run(
        _events_for(QikberryDeliveryEventTrigger(qikberry_conn_id=qikberry_conn, poll_interval=0.3), 18.0)
    )
    assert _failed_ids(events) == sorted(ids)
    assert emulator.request_log()["counts"]["GET sms/status"] >= 6


def test_a_connection_only_a_person_can_fix_is_logged_as_an_error_each_sweep(
    store: Any,  # noqa: F811
    make_qikberry_conn: Any,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    conn_id = make_qikberry_conn(retry_deadline=2)  # refused: shorter than timeout + reconcile window
    events = asyncio.run(
        _events_for(QikberryDeliveryEventTrigger(qikberry_conn_id=conn_id, poll_interval=0.2), 1.0)
    )
    assert events == []
    failed = [line for line in all_log_text(caplog, capfd).splitlines() if "sweep failed" in line]
    # Logged once per sweep, as an error naming the extra (the lines' format differs between Airflow 2 and 3).
    assert len([line for line in failed if "error" in line.lower() and "retry_deadline" in line]) >= 2
    assert not [line for line in failed if "warning" in line.lower()]
