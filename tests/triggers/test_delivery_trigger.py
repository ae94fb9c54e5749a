"""QikberryDeliveryTrigger against the emulator over real HTTP: events, restarts, visibility, number format,
early verdicts, 429 bursts, the shared poll budget and coalesced lookups.

Triggers run in real time (poll intervals of a few tenths of a second); the emulator's clock is only moved
where a test says so.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import math
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_qikberry.delivery.inputs import pack_ids
from airflow_qikberry.delivery.sweep import arun_sweep
from airflow_qikberry.delivery.tracker import DeliveryTracker
from airflow_qikberry.exceptions import QikberryValidationError
from airflow_qikberry.hooks.qikberry_async import QikberryAsyncHook
from airflow_qikberry.transport.aio import HttpxTransport
from airflow_qikberry.triggers.delivery import QikberryDeliveryTrigger
from tests.triggers.support import (
    assert_within_budget,
    emulator_time_follows_trigger_waits,
    first_event,
    fresh_poll_budgets,
    run_trigger,
    send_group,
    status_calls,
    status_requests,
)

CLASSPATH = "airflow_qikberry.triggers.delivery.QikberryDeliveryTrigger"


@pytest.fixture(autouse=True)
def _fresh_budgets() -> Iterator[None]:
    fresh_poll_budgets()
    yield
    fresh_poll_budgets()


def posts(emulator: Any) -> int:
    return sum(n for key, n in emulator.request_log()["counts"].items() if key.startswith("POST"))


# -- serialization


def test_serialize_round_trips_everything_needed_to_resume() -> None:
    ids = [f"{'a' * 8}-0000-0000-0000-{'0' * 12}:{n}" for n in range(1, 501)] + ["bare-id"]
    trigger = QikberryDeliveryTrigger(
        message_ids=ids,
        end_time=1_900_000_000.5,
        success_ratio=0.9,
        pending_statuses=["AWAITING-DLR", "TIMEOUT-DLR"],
        failed_statuses=["UNDELIV"],
        poll_interval=30,
        exponential_backoff=True,
        max_wait=600,
        qikberry_conn_id="qb_prod",
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == CLASSPATH
    assert kwargs == {
        "end_time": 1_900_000_000.5,
        "message_ids": pack_ids(ids),
        "group_ids": None,
        "success_ratio": 0.9,
        "expected_count": None,
        "pending_statuses": ["AWAITING-DLR", "TIMEOUT-DLR"],
        "delivered_statuses": ["DELIVRD"],
        "failed_statuses": ["UNDELIV"],
        "poll_interval": 30.0,
        "exponential_backoff": True,
        "max_wait": 600.0,
        "qikberry_conn_id": "qb_prod",
    }
    assert len(str(kwargs["message_ids"])) < 200  # 501 ids, stored compactly in the trigger table
    again = QikberryDeliveryTrigger(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    assert sorted(again.message_ids or []) == sorted(ids)

    groups = QikberryDeliveryTrigger(group_ids=["g-1", "g-2"], expected_count=7, end_time=5.0)
    assert QikberryDeliveryTrigger(**groups.serialize()[1]).serialize() == groups.serialize()

    # Airflow stores trigger kwargs with its own serializer: they must survive it unchanged.
    from airflow.serialization.serialized_objects import BaseSerialization

    stored = BaseSerialization.deserialize(BaseSerialization.serialize(kwargs))
    assert QikberryDeliveryTrigger(**stored).serialize() == (classpath, kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({}, "message_ids"),
        ({"message_ids": ["x:1"], "group_ids": ["g"]}, "group_id"),
        ({"group_ids": ["g"], "success_ratio": 0}, "success_ratio"),
        ({"group_ids": ["g"], "delivered_statuses": []}, "delivered_statuses"),
    ],
)
def test_bad_trigger_input_is_refused_when_deferring(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(QikberryValidationError) as info:
        QikberryDeliveryTrigger(end_time=time.time() + 60, **kwargs)
    assert info.value.field == field


# -- run()


def test_run_waits_through_delayed_visibility_with_plus_numbers(
    qikberry_conn: str, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator_time_follows_trigger_waits(monkeypatch, emulator)
    emulator.configure(visibility_delay_seconds=1.0, dlr_delay_seconds=1.8, number_format="plus")
    group, ids = send_group(emulator, 150)
    sent = posts(emulator)
    by_id = QikberryDeliveryTrigger(message_ids=ids, end_time=time.time() + 30, poll_interval=0.3)
    by_group = QikberryDeliveryTrigger(group_ids=[group], end_time=time.time() + 30, poll_interval=0.3)

    async def both() -> list[dict[str, Any]]:
        return list(await asyncio.gather(first_event(by_id), first_event(by_group)))

    for event in asyncio.run(both()):
        assert event["status"] == "success", event
        summary = event["summary"]
        assert (summary["total"], summary["delivered"], summary["not_visible"]) == (150, 150, 0)
        assert summary["checks"] >= 3  # invisible, then awaiting, then delivered
        assert "+91" not in str(summary)  # numbers never reach the summary, in any format
    assert posts(emulator) == sent  # run() only reads


def test_group_mode_waits_for_a_group_that_is_not_visible_yet(
    qikberry_conn: str, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator_time_follows_trigger_waits(monkeypatch, emulator)
    emulator.configure(dlr_delay_seconds=0.2)
    early, _ = send_group(emulator, 5)
    emulator.configure(visibility_delay_seconds=1.5)
    late, _ = send_group(emulator, 7)
    emulator.configure(visibility_delay_seconds=0.0)
    event = run_trigger(
        QikberryDeliveryTrigger(group_ids=[early, late], end_time=time.time() + 30, poll_interval=0.3)
    )
    # Deciding while the second campaign was invisible would have been "5 of 5 delivered".
    assert event["status"] == "success"
    assert event["summary"]["total"] == 12
    assert event["summary"]["checks"] >= 3


def test_timeout_then_a_restart_rederives_everything_from_the_api(qikberry_conn: str, emulator: Any) -> None:
    emulator.configure(dlr_delay_seconds=3600)
    _, ids = send_group(emulator, 120)
    sent = posts(emulator)
    trigger = QikberryDeliveryTrigger(message_ids=ids, end_time=time.time() + 1.0, poll_interval=0.3)
    timed_out = run_trigger(trigger)
    assert timed_out["status"] == "timeout"
    summary = timed_out["summary"]
    assert (summary["pending"], summary["pending_ids_total"], len(summary["pending_ids"])) == (120, 120, 100)
    assert "Timed out" in timed_out["message"]
    assert "120 pending" in timed_out["message"]

    emulator.flush_dlrs()
    kwargs = {**trigger.serialize()[1], "end_time": time.time() + 30}
    resumed = run_trigger(QikberryDeliveryTrigger(**kwargs))
    assert resumed["status"] == "success"
    assert resumed["summary"]["delivered"] == 120
    assert posts(emulator) == sent


def test_a_group_that_fails_entirely_ends_early_with_the_failure_summary(
    qikberry_conn: str, emulator: Any
) -> None:
    emulator.configure(dlr_delay_seconds=0.3)
    group, _ = send_group(emulator, 20, fail=True)
    started = time.monotonic()
    event = run_trigger(
        QikberryDeliveryTrigger(group_ids=[group], end_time=time.time() + 120, poll_interval=0.3)
    )
    assert time.monotonic() - started < 10  # not the 120 s deadline
    assert event["status"] == "failure"
    summary = event["summary"]
    assert (summary["failed"], summary["delivered"], summary["failed_by_status"]) == (20, 0, {"UNDELIV": 20})
    assert len(summary["failed_ids"]) == 20
    assert summary["group_ids"] == [group]
    assert "20 failed (UNDELIV: 20)" in event["message"]


def test_one_failure_ends_a_full_delivery_wait_before_the_rest_is_final(
    qikberry_conn: str, emulator: Any
) -> None:
    emulator.configure(dlr_delay_seconds=0.2, dlr_spread_seconds=3600)  # the first number is final at once
    group, _ = send_group(emulator, 10, fail=True)
    event = run_trigger(
        QikberryDeliveryTrigger(group_ids=[group], end_time=time.time() + 30, poll_interval=0.3)
    )
    assert event["status"] == "failure"
    assert (event["summary"]["failed"], event["summary"]["pending"]) == (1, 9)


def test_success_ratio_below_one_succeeds_before_everything_is_final(
    qikberry_conn: str, emulator: Any
) -> None:
    # Message n final at n-1 s of emulator time, which a manual clock keeps still while the triggers run.
    emulator.configure(dlr_delay_seconds=0.0, dlr_spread_seconds=9.0, manual_clock=True)
    _, ids = send_group(emulator, 10)
    emulator.advance_clock(5.5)  # 6 of 10 delivered
    event = run_trigger(
        QikberryDeliveryTrigger(
            message_ids=ids, success_ratio=0.6, end_time=time.time() + 30, poll_interval=0.2
        )
    )
    assert event["status"] == "success"
    assert (event["summary"]["delivered"], event["summary"]["pending"]) == (6, 4)
    stricter = QikberryDeliveryTrigger(message_ids=ids, success_ratio=0.8, end_time=time.time() + 0.5)
    assert run_trigger(stricter)["status"] == "timeout"


def test_a_burst_of_429s_is_waited_out(qikberry_conn: str, emulator: Any) -> None:
    _, ids = send_group(emulator, 1)
    emulator.flush_dlrs()
    # Six 429s: the hook's five attempts give up (the check is incomplete), the next check meets the sixth.
    emulator.set_faults([{"endpoint": "sms/status", "kind": "rate_limit", "seconds": 1, "times": 6}])
    event = run_trigger(
        QikberryDeliveryTrigger(message_ids=ids, end_time=time.time() + 60, poll_interval=0.2)
    )
    assert event["status"] == "success"
    assert event["summary"]["checks"] >= 2
    log = status_requests(emulator)
    assert [r["status"] for r in log] == [429] * 6 + [200]
    for refused, following in itertools.pairwise(log):
        # Retry-After: 1 honoured every time, across checks too (the budget holds for it).
        assert following["timestamp"] - refused["timestamp"] >= 0.9, log


def test_an_error_that_cannot_heal_ends_with_an_error_event(make_qikberry_conn: Any, emulator: Any) -> None:
    conn_id = make_qikberry_conn("qb_bad_token", password="not-the-token")
    _, ids = send_group(emulator, 1)
    event = run_trigger(
        QikberryDeliveryTrigger(
            message_ids=ids, end_time=time.time() + 30, poll_interval=0.1, qikberry_conn_id=conn_id
        )
    )
    assert event["status"] == "error"
    assert "Token not found" in event["message"]
    assert "not-the-token" not in str(event)


# -- many triggers in one triggerer


def test_two_triggers_on_one_group_make_one_call_per_page_per_sweep(
    qikberry_conn: str, emulator: Any
) -> None:
    emulator.configure(dlr_delay_seconds=3600)
    group, _ = send_group(emulator, 250)  # 3 pages
    end = time.time() + 2.6

    async def both() -> list[dict[str, Any]]:
        triggers = [
            QikberryDeliveryTrigger(group_ids=[group], end_time=end, poll_interval=0.5) for _ in range(2)
        ]
        return list(await asyncio.gather(*(first_event(t) for t in triggers)))

    events = asyncio.run(both())
    checks = [e["summary"]["checks"] for e in events]
    assert all(e["status"] == "timeout" for e in events)
    assert min(checks) >= 3
    # Apart, the two would make 3 * (checks[0] + checks[1]). Together: 3 per sweep; their very first sweeps
    # may land one grid point apart (they deferred at slightly different instants), hence the + 3.
    assert 3 * max(checks) <= status_calls(emulator) <= 3 * max(checks) + 3


def test_triggers_deferred_at_different_moments_still_check_together(
    qikberry_conn: str, emulator: Any
) -> None:
    emulator.configure(dlr_delay_seconds=3600)
    group, _ = send_group(emulator, 150)  # 2 pages
    end = time.time() + 3.4

    async def later(delay: float) -> dict[str, Any]:
        await asyncio.sleep(delay)
        return await first_event(QikberryDeliveryTrigger(group_ids=[group], end_time=end, poll_interval=1.0))

    async def both() -> list[dict[str, Any]]:
        return list(await asyncio.gather(later(0.0), later(0.45)))

    events = asyncio.run(both())
    checks = [e["summary"]["checks"] for e in events]
    assert min(checks) >= 2
    # Checks land on a shared 1 s grid: the second trigger's lookups join the first's (0.45 s apart, they
    # would be further apart than the reuse window of a quarter interval).
    assert status_calls(emulator) <= 2 * (max(checks) + 1) < 2 * sum(checks)


def test_twenty_triggers_stay_within_the_poll_budget(
    make_qikberry_conn: Any, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 triggers (group mode, 20 campaigns) share a poll budget of 120/min for about 6 s.

    A token bucket of 120/min lets out at most its burst (a tenth: 12) plus 2 per second: in any window of w
    seconds at most 12 + 2w calls, so at most 120 in any 60 s window. The test is shorter than a minute, so
    "no minute above the budget" is checked at every scale: every window of the calls' send times.

    Send times are stamped as each request leaves the transport, in the step in which the budget let it go.
    The emulator's own stamps (when it answers) were checked before: on a loaded machine the emulator, which
    shares this process, answered calls let go over 1.5 s within 0.25 s, and the test failed for lack of CPU.
    The emulator still counts the calls: every call sent reached it. Without the budget the triggers make
    about 25 calls per half second.
    """
    make_qikberry_conn(poll_budget_per_minute=120)
    emulator.configure(dlr_delay_seconds=3600)
    sizes = [100] * 10 + [150] * 5 + [30] * 5  # 1, 2 and 1 pages
    groups = [send_group(emulator, n)[0] for n in sizes]
    sent: list[float] = []
    request = HttpxTransport.request

    async def stamped(self: HttpxTransport, method: str, path: str, **kwargs: Any) -> Any:
        if path == "sms/status":
            sent.append(time.monotonic())  # no await since the budget let it go: this is its grant time
        return await request(self, method, path, **kwargs)

    monkeypatch.setattr(HttpxTransport, "request", stamped)
    end = time.time() + 6.0

    async def all_of_them() -> list[dict[str, Any]]:
        triggers = [QikberryDeliveryTrigger(group_ids=[g], end_time=end, poll_interval=0.5) for g in groups]
        return list(await asyncio.gather(*(first_event(t) for t in triggers)))

    events = asyncio.run(all_of_them())
    assert all(e["status"] == "timeout" for e in events)
    assert time.time() < end + 1.0  # checks queued for the budget are cut at the deadline
    answered = status_requests(emulator)
    assert sent
    assert len(sent) <= 120
    assert len(answered) <= len(sent)  # a call cut at the deadline may never have reached it
    assert_within_budget(sent, 120, latency=0.0)
    # Group mode: at most ceil(pending / 100) calls per sweep (nothing was delivered: pending = size).
    allowed = sum(e["summary"]["checks"] * math.ceil(n / 100) for e, n in zip(events, sizes, strict=True))
    assert len(sent) <= allowed


# -- calls per sweep as pending shrinks


def sweep_counts(
    emulator: Any, conn_id: str, tracker: DeliveryTracker, steps: list[Callable[[], None]]
) -> list[tuple[int, int]]:
    """(pending before the sweep, status calls it made) for a sweep after each of ``steps``."""

    async def main() -> list[tuple[int, int]]:
        out = []
        async with QikberryAsyncHook(qikberry_conn_id=conn_id) as hook:
            for step in steps:
                step()
                pending, before = tracker.summary()["pending"], status_calls(emulator)
                await arun_sweep(tracker, hook.poll_page, hook.poll_message)
                out.append((pending, status_calls(emulator) - before))
        return out

    return asyncio.run(main())


def test_group_sweeps_read_only_pages_holding_pending_messages(qikberry_conn: str, emulator: Any) -> None:
    # Delivery reports arriving in submit order over 100 s: the pending messages are the tail of the group.
    emulator.configure(dlr_delay_seconds=0.0, dlr_spread_seconds=100.0, dlr_spread_order="submit")
    group, _ = send_group(emulator, 1000)
    tracker = DeliveryTracker(group_ids=[group])
    nothing = lambda: None  # noqa: E731
    counts = sweep_counts(
        emulator,
        qikberry_conn,
        tracker,
        [nothing, lambda: emulator.advance_clock(30), lambda: emulator.advance_clock(45), nothing],
    )
    first, *later = counts
    assert first[1] == 10  # discovery: every page once
    for pending, calls in later:
        assert calls <= math.ceil(pending / 100), counts
    assert [calls for _, calls in later] == [10, 7, 3]
    assert tracker.verdict().state == "pending"


def test_sweep_bound_when_the_last_page_is_short_or_reports_come_out_of_order(
    qikberry_conn: str, emulator: Any
) -> None:
    # A tail of pending messages that straddles a page boundary costs one page more than ceil(pending/100);
    # reports in random order leave pending messages on every page: never more than a full walk.
    # Message n is final at 5 + (n-1)*10000/249 s: messages 1..190 at 7,595..7,635 s. The emulator's clock
    # also runs in real time; 40 s between reports leaves the sweeps that much real time (0.4 s did not on a
    # loaded machine: 191 was final too).
    emulator.configure(dlr_delay_seconds=5.0, dlr_spread_seconds=10_000.0)
    group, _ = send_group(emulator, 250)
    tracker = DeliveryTracker(group_ids=[group])
    steps = [lambda: None, lambda: emulator.advance_clock(7_600.0), lambda: None]  # then 191..250 pending
    (_, walk), (known, refresh), (pending, calls) = sweep_counts(emulator, qikberry_conn, tracker, steps)
    assert (walk, known, refresh) == (3, 250, 3)
    assert pending == 60
    assert calls == 2 == math.ceil(pending / 100) + 1

    emulator.configure(dlr_spread_seconds=100.0, dlr_spread_order="random")
    shuffled, _ = send_group(emulator, 300)
    scattered = DeliveryTracker(group_ids=[shuffled])
    steps = [lambda: None, lambda: emulator.advance_clock(55.0), lambda: None, lambda: None]
    counts = sweep_counts(emulator, qikberry_conn, scattered, steps)
    assert 100 < counts[2][0] < 200  # about half still pending, on every page
    for pending, calls in counts[1:]:
        assert calls <= min(pending, 3), counts


@pytest.mark.parametrize("mode", ["message_ids", "group_id"])
def test_status_rows_in_another_order_still_count_every_message_once(
    qikberry_conn: str, emulator: Any, mode: str
) -> None:
    # The order of sms/status rows is undocumented; the sweep plan guesses the page of a message it has not
    # seen yet from its submit position. Served newest first, the first five of 1,000 messages are on page
    # 10, not page 1: the sweep must notice, find them another way, count each once, and never read more
    # than every page in one sweep.
    emulator.configure(status_order="newest_first", dlr_delay_seconds=5.0, dlr_spread_seconds=100.0)
    group, ids = send_group(emulator, 1000)
    watched = ids[:5] if mode == "message_ids" else ids
    tracker = (
        DeliveryTracker(message_ids=watched) if mode == "message_ids" else DeliveryTracker(group_ids=[group])
    )
    steps = [lambda: None, lambda: emulator.advance_clock(60.0), lambda: emulator.advance_clock(60.0)]
    counts = sweep_counts(emulator, qikberry_conn, tracker, steps)
    assert all(calls <= 10 for _, calls in counts), counts
    summary = tracker.summary()
    assert (summary["total"], summary["delivered"], summary["pending"]) == (len(watched), len(watched), 0)
    assert tracker.verdict().state == "success"


@pytest.mark.parametrize("outcome", ["success", "timeout", "timeout-mid-request"])
def test_the_connections_are_closed_before_the_event_is_given(
    qikberry_conn: str, emulator: Any, outcome: str
) -> None:
    """Airflow 2.11's ``dag.test()`` runs a trigger as ``async for event in trigger.run(): return event`` in
    ``asyncio.run``: nobody closes the generator, and ``asyncio.run`` cancels its finalizer task, so a client
    closed in a ``finally`` after the ``yield`` leaked its sockets (ResourceWarning in the task log). The
    trigger closes its hook before it yields."""
    if outcome.startswith("timeout"):
        emulator.configure(dlr_delay_seconds=3600)
    _, ids = send_group(emulator, 30)
    if outcome == "timeout-mid-request":  # the deadline passes while lookups are on the wire
        emulator.set_faults([{"endpoint": "sms/status", "kind": "latency", "seconds": 2.0, "times": 1000}])
    wait = 30.0 if outcome == "success" else 1.0
    trigger = QikberryDeliveryTrigger(message_ids=ids, end_time=time.time() + wait, poll_interval=0.1)

    async def inline() -> Any:  # airflow.models.dag._run_inline_trigger, Airflow 2.11
        async for event in trigger.run():
            return event
        return None

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        event = asyncio.run(inline())
        gc.collect()
    assert event.payload["status"] == outcome.split("-")[0]
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
