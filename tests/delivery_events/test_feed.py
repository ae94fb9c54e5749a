"""The delivery feed against the emulator over real HTTP and the real metadata database (Variables).

A sweep reads the sends registry, the push inbox and (catch-up) ``sms/status``; these tests check that it
finds every final report once, reads only the groups it must, stays inside the poll budget, and that a
sweep counts whole or not at all.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_qikberry.delivery.dlr import DeliveryReport
from airflow_qikberry.delivery.feed import DeliveryFeed, FeedSettings, Selection
from airflow_qikberry.delivery.inbox import (
    INBOX_PREFIX,
    REGISTRY_PREFIX,
    MetadataDbVariables,
    SentEntry,
    inbox_key,
    positions_by_group,
    sent_key,
)
from airflow_qikberry.delivery.inputs import StatusSets
from airflow_qikberry.delivery.memory import EventMemory
from airflow_qikberry.hooks.qikberry_async import QikberryAsyncHook
from tests.triggers.support import assert_within_budget, fresh_poll_budgets, send_group, status_requests

VARIABLES = MetadataDbVariables()


@pytest.fixture
def store(airflow_db: Path) -> Iterator[MetadataDbVariables]:
    """The metadata database's Variables, with no inbox or registry entry left by another test."""

    def clean() -> None:
        for prefix in (INBOX_PREFIX, REGISTRY_PREFIX):
            for key in asyncio.run(VARIABLES.keys(prefix)):
                asyncio.run(VARIABLES.delete(key))

    clean()
    fresh_poll_budgets()
    yield VARIABLES
    clean()


def register(conn_id: str, ids: list[str], *, campaign: str | None = "c1", known: bool = True) -> None:
    """What the operators record for a send (positions known for a request, unknown for campaign chunks)."""
    for group_id, positions in positions_by_group(ids).items():
        entry = SentEntry(positions=",".join(map(str, positions or [])) if known else None, campaign=campaign)
        VARIABLES.put(sent_key(conn_id, time.time() - 5, group_id), entry.to_json(), "test")


def push(conn_id: str, emulator: Any, message_id: str) -> None:
    """What the receiver records for a pushed report of this message (its final status on the emulator)."""
    row = next(m for m in emulator.messages() if m["id"] == message_id)
    report = DeliveryReport.from_push(
        {"id": row["id"], "status": row["status"], "mobile": row["mobile"]}, StatusSets(), "Asia/Kolkata"
    )
    key = inbox_key(conn_id, int(time.time() * 1000), report.message_id, report.status)
    VARIABLES.put(key, json.dumps(report.to_dict()), "test")


def feed(conn_id: str, memory: EventMemory | None = None, **selection: Any) -> DeliveryFeed:
    settings = FeedSettings(conn_id=conn_id, selection=Selection(**selection), settle=0.0)
    hook = QikberryAsyncHook(qikberry_conn_id=conn_id)
    return DeliveryFeed(settings, memory or EventMemory(), variables=VARIABLES, hook=hook)


async def sweeps(f: DeliveryFeed, *catch_ups: bool) -> list[Any]:
    try:
        return [await f.sweep(catch_up=c) for c in catch_ups]
    finally:
        await f.hook.close()


def settle(emulator: Any) -> None:
    emulator.advance_clock(10)  # past the emulator's DLR delay: every status final


def test_catch_up_alone_finds_every_failure_once_and_reads_only_recorded_groups(
    store: Any, qikberry_conn: str, emulator: Any
) -> None:
    _, failing = send_group(emulator, 30, fail=True)
    _, fine = send_group(emulator, 20)
    stranger, _ = send_group(emulator, 5, fail=True)  # sent by someone else: never recorded
    register(qikberry_conn, failing + fine)
    settle(emulator)

    first, second = asyncio.run(sweeps(feed(qikberry_conn), True, True))

    assert sorted(r.message_id for r in first.reports) == sorted(failing)
    assert {r.outcome for r in first.reports} == {"failed"}
    assert {r.source for r in first.reports} == {"status"}
    assert first.stats["read_back"] == 50
    assert first.stats["groups_open"] == 0
    assert second.reports == []
    assert second.stats["lookups"] == 0
    requests = status_requests(emulator)
    assert len(requests) == first.stats["lookups"] <= 4
    assert not [r for r in emulator.request_log()["requests"] if stranger in json.dumps(r)]


def test_pushed_reports_are_emitted_once_and_catch_up_reads_only_what_is_missing(
    store: Any, qikberry_conn: str, emulator: Any
) -> None:
    _, ids = send_group(emulator, 10, fail=True)
    register(qikberry_conn, ids)
    settle(emulator)
    for message_id in ids[:7]:
        push(qikberry_conn, emulator, message_id)
    push(qikberry_conn, emulator, ids[0])  # the API pushed it twice (it retries when unsure)

    f = feed(qikberry_conn)
    inbox_only, again, caught_up = asyncio.run(sweeps(f, False, False, True))

    assert sorted(r.message_id for r in inbox_only.reports) == sorted(ids[:7])
    assert inbox_only.stats["pushed"] == 7
    assert inbox_only.stats["lookups"] == 0
    assert again.reports == []
    assert again.stats["inbox_reads"] == 0
    assert sorted(r.message_id for r in caught_up.reports) == sorted(ids[7:])
    # Only the three missing messages were looked up (by id), not the group's pages.
    assert len(status_requests(emulator)) == caught_up.stats["lookups"]
    assert 1 <= caught_up.stats["lookups"] <= 3


def test_a_push_teaches_a_group_unless_the_watcher_selects_a_campaign(
    store: Any, qikberry_conn: str, emulator: Any
) -> None:
    _, ids = send_group(emulator, 6, fail=True)  # sent by hand: not in the registry
    settle(emulator)
    push(qikberry_conn, emulator, ids[0])

    learning, campaign_only = asyncio.run(
        _both(feed(qikberry_conn), feed(qikberry_conn, campaign="payment-reminder-*"))
    )

    # The pushed report, then the rest of its group read back.
    assert sorted(r.message_id for r in learning.reports) == sorted(ids)
    # A campaign watcher cannot know the group's campaign from a push: it reads nothing of it.
    assert campaign_only.reports == []
    assert campaign_only.stats["lookups"] == 0


async def _both(a: DeliveryFeed, b: DeliveryFeed) -> tuple[Any, Any]:
    return (await sweeps(a, True))[0], (await sweeps(b, True))[0]


def test_a_selection_by_campaign_and_status(store: Any, qikberry_conn: str, emulator: Any) -> None:
    _, reminders = send_group(emulator, 4, fail=True)
    _, other = send_group(emulator, 4, fail=True)
    register(qikberry_conn, reminders, campaign="payment-reminder-1")
    register(qikberry_conn, other, campaign="newsletter")
    settle(emulator)

    (sweep,) = asyncio.run(sweeps(feed(qikberry_conn, campaign="payment-reminder-*"), True))
    assert sorted(r.message_id for r in sweep.reports) == sorted(reminders)
    assert {r.campaign for r in sweep.reports} == {"payment-reminder-1"}
    (by_status,) = asyncio.run(sweeps(feed(qikberry_conn, statuses=frozenset({"DELIVRD"})), True))
    assert by_status.reports == []


def test_stored_memory_neither_loses_nor_re_emits_across_a_restart(
    store: Any, qikberry_conn: str, emulator: Any
) -> None:
    _, ids = send_group(emulator, 8, fail=True)
    register(qikberry_conn, ids, known=False)  # a campaign chunk: positions unknown, its pages are read
    settle(emulator)

    (first,) = asyncio.run(sweeps(feed(qikberry_conn), True))
    assert len(first.reports) == 8
    _, later = send_group(emulator, 3, fail=True)
    register(qikberry_conn, later)
    settle(emulator)

    # A new watcher (the triggerer restarted) from the stored memory: only the new reports.
    (restarted,) = asyncio.run(sweeps(feed(qikberry_conn, EventMemory.from_json(first.memory)), True))
    assert sorted(r.message_id for r in restarted.reports) == sorted(later)
    # With no stored memory (Airflow before 3.3) it emits the lookback again: at least once, never lost.
    (forgetful,) = asyncio.run(sweeps(feed(qikberry_conn), True))
    assert len(forgetful.reports) == 11


def test_a_sweep_cancelled_mid_way_counts_for_nothing(store: Any, qikberry_conn: str, emulator: Any) -> None:
    _, ids = send_group(emulator, 5, fail=True)
    register(qikberry_conn, ids)
    settle(emulator)
    push(qikberry_conn, emulator, ids[0])
    emulator.set_faults([{"endpoint": "sms/status", "kind": "latency", "seconds": 3.0, "times": 1}])
    f = feed(qikberry_conn)

    async def cancelled_then_again() -> Any:
        task = asyncio.create_task(f.sweep(catch_up=True))
        await asyncio.sleep(1.0)  # the pushed report is processed, the lookup is on the wire
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return (await sweeps(f, True))[0]

    again = asyncio.run(cancelled_then_again())
    # What the cancelled sweep had marked processed was rolled back: every report comes in the next one.
    assert sorted(r.message_id for r in again.reports) == sorted(ids)


def test_catch_up_stays_inside_the_poll_budget(store: Any, make_qikberry_conn: Any, emulator: Any) -> None:
    conn_id = make_qikberry_conn(poll_budget_per_minute=60)  # burst 6, then one a second
    groups = []
    for _ in range(10):
        _, ids = send_group(emulator, 3, fail=True)
        register(conn_id, ids, known=False)
        groups.append(ids)
    settle(emulator)

    (sweep,) = asyncio.run(sweeps(feed(conn_id), True))

    assert len(sweep.reports) == 30
    stamps = [r["timestamp"] for r in status_requests(emulator)]
    assert len(stamps) == sweep.stats["lookups"] >= 10
    assert_within_budget(stamps, 60)
