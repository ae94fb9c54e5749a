"""The delivery tracker (no I/O): status vocabulary, input parsing, sweep plans, verdicts, summaries, sweeps.

No server: lookups are plain functions over an in-memory "API" (:class:`FakeApi`), which lists a group in
submit order, 100 rows per page, as the emulator and the reference do. The same behaviours are exercised
against the emulator over HTTP in tests/triggers and tests/sensors.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any, NamedTuple

import pytest

from airflow_qikberry.delivery.inputs import (
    StatusSets,
    pack_ids,
    parse_group_ids,
    parse_message_ids,
    split_id,
    unpack_ids,
)
from airflow_qikberry.delivery.report import describe, event_payload, failure_message
from airflow_qikberry.delivery.sweep import arun_sweep, is_transient, run_sweep
from airflow_qikberry.delivery.tracker import MAX_LISTED_IDS, DeliveryTracker, Step
from airflow_qikberry.exceptions import (
    QikberryAuthError,
    QikberryConnectionError,
    QikberryRateLimitError,
    QikberryServerError,
    QikberryValidationError,
)
from airflow_qikberry.models import StatusPage

G1 = "11111111-1111-1111-1111-111111111111"
G2 = "22222222-2222-2222-2222-222222222222"


class Row(NamedTuple):
    message_id: str
    status: str


def ids_of(group: str, count: int, start: int = 1) -> list[str]:
    return [f"{group}:{n}" for n in range(start, start + count)]


class FakeApi:
    """Groups of messages with statuses, served like sms/status (submit order, ``page_size`` rows a page)."""

    def __init__(self, page_size: int = 100) -> None:
        self.page_size = page_size
        self.groups: dict[str, list[str]] = {}
        self.status: dict[str, str] = {}
        self.calls: list[tuple[str, Any]] = []

    def add(self, group: str, count: int, status: str = "AWAITING-DLR") -> list[str]:
        ids = ids_of(group, count)
        self.groups[group] = ids
        self.status.update(dict.fromkeys(ids, status))
        return ids

    def page(self, group: str, page: int) -> StatusPage:
        self.calls.append(("page", (group, page)))
        ids = self.groups.get(group, [])
        chunk = ids[(page - 1) * self.page_size : page * self.page_size]
        more = page * self.page_size < len(ids)
        return StatusPage([Row(i, self.status[i]) for i in chunk], page + 1 if more and chunk else None)

    def message(self, message_id: str) -> list[Row]:
        self.calls.append(("id", message_id))
        return [Row(message_id, self.status[message_id])] if message_id in self.status else []

    def sweep(self, tracker: DeliveryTracker) -> int:
        self.calls.clear()
        return run_sweep(tracker, self.page, self.message)


# -- status vocabulary


def test_default_status_sets_follow_the_api() -> None:
    sets = StatusSets()
    assert sets.outcome("AWAITING-DLR") == "pending"
    assert sets.outcome("DELIVRD") == "delivered"
    assert [sets.outcome(s) for s in ("UNDELIV", "EXPIRED", "SOMETHING-NEW")] == ["failed"] * 3
    assert sets.outcome("") == "pending"  # a row without a status is not a verdict


def test_custom_status_sets() -> None:
    sets = StatusSets.of(pending=["AWAITING-DLR", "TIMEOUT-DLR"])
    assert sets.outcome("TIMEOUT-DLR") == "pending"
    assert sets.outcome("UNDELIV") == "failed"
    explicit = StatusSets.of(failed=["UNDELIV"])
    assert explicit.outcome("UNDELIV") == "failed"
    assert explicit.outcome("EXPIRED") == "pending"  # with an explicit failed set, others keep waiting
    assert StatusSets.of(delivered="DELIVERED").outcome("DELIVERED") == "delivered"
    assert explicit.to_kwargs() == {
        "pending_statuses": ["AWAITING-DLR"],
        "delivered_statuses": ["DELIVRD"],
        "failed_statuses": ["UNDELIV"],
    }


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"pending": ["DELIVRD"]}, "delivered_statuses"),
        ({"failed": ["AWAITING-DLR"]}, "failed_statuses"),
        ({"delivered": []}, "delivered_statuses"),
        ({"pending": [""]}, "pending_statuses"),
        ({"failed": [3]}, "failed_statuses"),
    ],
)
def test_bad_status_sets_are_refused(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(QikberryValidationError) as info:
        StatusSets.of(**kwargs)
    assert info.value.field == field


# -- inputs


def test_message_ids_from_every_shape_a_template_can_render() -> None:
    ids = ids_of(G1, 2)
    assert parse_message_ids(ids) == ids
    assert parse_message_ids(tuple(ids)) == ids
    assert parse_message_ids(str(ids)) == ids  # "['…:1', '…:2']": a list rendered without native rendering
    assert parse_message_ids(json.dumps(ids)) == ids
    assert parse_message_ids(f" {ids[0]} ") == [ids[0]]  # one id
    assert parse_message_ids([{"id": ids[0], "mobile": "9198XXXXX210"}, {"message_id": ids[1]}]) == ids
    assert parse_message_ids(str([{"id": ids[0]}])) == [ids[0]]
    assert parse_message_ids([ids[0], ids[0], ids[1]]) == ids  # watched once


@pytest.mark.parametrize(
    "value",
    [[], "[]", "", "a, b", "['a', 'b'", "[1, 2]", 42, [""], [{"mobile": "1"}], ["a b"], None, b"x"],
)
def test_bad_message_ids_are_refused_with_the_field(value: Any) -> None:
    with pytest.raises(QikberryValidationError) as info:
        parse_message_ids(value)
    assert info.value.field == "message_ids"


def test_group_ids_from_a_campaign_result() -> None:
    assert parse_group_ids(G1) == [G1]
    assert parse_group_ids([G1, G2, G1]) == [G1, G2]
    assert parse_group_ids(str([G1, G2])) == [G1, G2]
    assert parse_group_ids({"group_ids": [G1, G2], "accepted": 5}) == [G1, G2]
    assert parse_group_ids(str({"group_ids": [G1]})) == [G1]
    for bad in ([], "", {"accepted": 5}, [None], "{broken"):
        with pytest.raises(QikberryValidationError) as info:
            parse_group_ids(bad)
        assert info.value.field == "group_id"


def test_tracker_needs_exactly_one_input_and_a_sane_ratio() -> None:
    for kwargs in ({}, {"message_ids": [f"{G1}:1"], "group_ids": [G1]}):
        with pytest.raises(QikberryValidationError):
            DeliveryTracker(**kwargs)
    for ratio in (0, -1, 1.5, "x", float("nan")):
        with pytest.raises(QikberryValidationError) as info:
            DeliveryTracker(group_ids=[G1], success_ratio=ratio)  # type: ignore[arg-type]
        assert info.value.field == "success_ratio"
    with pytest.raises(QikberryValidationError) as info:
        DeliveryTracker(message_ids=[f"{G1}:1"], expected_count=3)
    assert info.value.field == "expected_count"
    with pytest.raises(QikberryValidationError) as info:
        DeliveryTracker(group_ids=[G1], expected_count=0)
    assert info.value.field == "expected_count"


def test_pack_ids_round_trips_compactly() -> None:
    ids = [*ids_of(G1, 10_000), f"{G2}:7", f"{G2}:9", f"{G2}:8", "bare-uuid", f"{G1}:01", f"{G1}:x"]
    packed = pack_ids(ids)
    assert packed["ranges"] == {G1: "1-10000", G2: "7-9"}
    assert packed["ids"] == ["bare-uuid", f"{G1}:01", f"{G1}:x"]
    assert len(json.dumps(packed)) < 250
    assert sorted(unpack_ids(packed)) == sorted(ids)
    assert pack_ids(unpack_ids(packed)) == packed
    assert pack_ids([f"{G1}:1", f"{G1}:3", f"{G1}:4"])["ranges"] == {G1: "1,3-4"}
    assert split_id(f"{G1}:12") == (G1, 12)
    assert split_id("bare") == (None, None)


# -- plans: only what is pending, the cheapest way


def test_ids_of_one_group_are_read_as_pages_not_one_by_one() -> None:
    tracker = DeliveryTracker(message_ids=ids_of(G1, 250))
    assert tracker.plan() == [
        Step("page", G1, 1, tuple(ids_of(G1, 100))),
        Step("page", G1, 2, tuple(ids_of(G1, 100, 101))),
        Step("page", G1, 3, tuple(ids_of(G1, 50, 201))),
    ]


def test_scattered_ids_are_looked_up_one_by_one() -> None:
    ids = [f"{G1}:5", f"{G1}:250", f"{G2}:1", "bare-id"]
    assert sorted(DeliveryTracker(message_ids=ids).plan()) == sorted(Step("id", i) for i in ids)


def test_a_sweep_asks_only_about_pending_messages() -> None:
    api = FakeApi()
    ids = api.add(G1, 300)
    tracker = DeliveryTracker(message_ids=ids)
    assert api.sweep(tracker) == 3
    for mid in ids[:250]:
        api.status[mid] = "DELIVRD"
    assert api.sweep(tracker) == 3  # every page still held pending messages
    assert api.sweep(tracker) == 1  # only page 3 holds the 50 still pending
    assert api.calls == [("page", (G1, 3))]
    for mid in ids[250:299]:
        api.status[mid] = "UNDELIV"
    assert api.sweep(tracker) == 1
    assert api.sweep(tracker) == 1
    assert api.calls == [("id", ids[299])]
    api.status[ids[299]] = "DELIVRD"
    api.sweep(tracker)
    assert api.sweep(tracker) == 0  # nothing pending: nothing asked


def test_group_mode_walks_until_it_knows_the_group_then_reads_only_pending_pages() -> None:
    api = FakeApi()
    ids = api.add(G1, 1000)
    tracker = DeliveryTracker(group_ids=[G1])
    assert tracker.plan() == [Step("walk", G1)]
    assert api.sweep(tracker) == 10  # ceil(1000 / 100)
    assert tracker.summary()["total"] == 1000
    for mid in ids[:750]:  # delivery reports arrive in submit order
        api.status[mid] = "DELIVRD"
    api.sweep(tracker)
    pending = tracker.summary()["pending"]
    assert pending == 250
    assert api.sweep(tracker) == math.ceil(pending / 100) == 3
    assert [c[1][1] for c in api.calls] == [8, 9, 10]


def test_a_message_missing_from_its_page_is_found_another_way() -> None:
    api = FakeApi(page_size=50)  # the API pages differently from the documented 100
    ids = api.add(G1, 150)
    tracker = DeliveryTracker(message_ids=ids)
    api.sweep(tracker)  # estimated pages 1 and 2 of 100; the API has 50 per page
    assert tracker.page_size == 50
    assert tracker.summary()["not_visible"] == 50  # ids 101..150 not where expected
    plan = tracker.plan()
    assert plan == [Step("walk", G1)]  # 3 pages of 50 beat 50 id lookups
    api.sweep(tracker)
    assert tracker.summary()["not_visible"] == 0
    assert {c[0] for c in api.calls} == {"page"}


def test_ids_walk_stops_once_every_pending_id_was_seen() -> None:
    api = FakeApi()
    ids = api.add(G1, 1000)
    tracker = DeliveryTracker(message_ids=ids[:150])
    tracker._groups[G1].lost.update(ids[:150])  # as if the estimate had failed: the plan walks
    assert tracker.plan() == [Step("walk", G1)]
    assert api.sweep(tracker) == 2  # pages 1-2 of 10


def test_not_visible_yet_is_pending_and_a_404_is_not_an_error() -> None:
    api = FakeApi()
    tracker = DeliveryTracker(message_ids=[f"{G1}:1", "bare-id"])

    def not_found(message_id: str) -> list[Row]:
        raise QikberryValidationError("Not Found.", status_code=404)

    run_sweep(tracker, api.page, not_found)
    summary = tracker.summary()
    assert summary["not_visible"] == 2
    assert tracker.verdict().state == "pending"


# -- verdicts and summaries


def tracker_with(statuses: list[str], **kwargs: Any) -> DeliveryTracker:
    ids = ids_of(G1, len(statuses))
    tracker = DeliveryTracker(message_ids=ids, **kwargs)
    for mid, status in zip(ids, statuses, strict=True):
        if status:
            tracker.observe(mid, status)
    return tracker


def test_success_needs_the_ratio_and_returns_early_below_one() -> None:
    assert tracker_with(["DELIVRD"] * 3 + ["AWAITING-DLR"]).verdict().state == "pending"
    assert tracker_with(["DELIVRD"] * 4).verdict().state == "success"
    early = tracker_with(["DELIVRD"] * 6 + ["AWAITING-DLR"] * 4, success_ratio=0.6).verdict()
    assert early.state == "success"
    assert early.summary["pending"] == 4
    not_yet = tracker_with(["DELIVRD"] * 5 + ["AWAITING-DLR"] * 5, success_ratio=0.6).verdict()
    assert not_yet.state == "pending"


def test_failure_comes_as_soon_as_the_ratio_is_out_of_reach() -> None:
    one_failed = tracker_with(["UNDELIV"] + [""] * 9).verdict()
    assert one_failed.state == "failure"
    assert one_failed.summary["pending"] == 9
    assert tracker_with(["UNDELIV"] + [""] * 9, success_ratio=0.9).verdict().state == "pending"
    assert tracker_with(["UNDELIV", "EXPIRED"] + [""] * 8, success_ratio=0.9).verdict().state == "failure"


def test_final_statuses_are_never_replaced() -> None:
    tracker = tracker_with(["UNDELIV"])
    assert tracker.observe(f"{G1}:1", "DELIVRD") is True
    assert tracker.summary()["by_status"] == {"UNDELIV": 1}
    assert tracker.observe(f"{G2}:1", "DELIVRD") is False  # not watched


def test_summary_lists_are_capped_and_totals_exact() -> None:
    statuses = ["UNDELIV"] * 120 + ["EXPIRED"] * 30 + ["DELIVRD"] * 40 + ["AWAITING-DLR"] * 5 + [""] * 5
    summary = tracker_with(statuses).summary()
    assert summary["total"] == 200
    assert summary["delivered"] == 40
    assert summary["delivered_ratio"] == 0.2
    assert summary["failed"] == 150
    assert summary["failed_ids_total"] == 150
    assert len(summary["failed_ids"]) == MAX_LISTED_IDS == 100
    assert summary["failed_ids"][0] == f"{G1}:1"
    assert summary["pending"] == 10
    assert summary["pending_ids_total"] == 10
    assert summary["not_visible"] == 5
    assert summary["by_status"] == {"UNDELIV": 120, "DELIVRD": 40, "EXPIRED": 30, "AWAITING-DLR": 5}
    assert summary["failed_by_status"] == {"UNDELIV": 120, "EXPIRED": 30}
    json.dumps(summary)  # XCom- and event-safe
    assert describe(summary) == (
        "40 of 200 delivered (20%), 150 failed (UNDELIV: 120, EXPIRED: 30), 10 pending (5 not visible yet)"
    )
    assert "150 failed (UNDELIV: 120, EXPIRED: 30)" in failure_message(summary)
    assert event_payload("failure", summary)["message"] == failure_message(summary)


def test_group_mode_does_not_decide_on_a_group_it_has_not_seen() -> None:
    api = FakeApi()
    api.add(G1, 5, "DELIVRD")
    tracker = DeliveryTracker(group_ids=[G1, G2])
    api.sweep(tracker)
    assert tracker.summary()["total"] == 5
    assert tracker.verdict().state == "pending"  # G2 shows nothing yet: its size is unknown
    api.add(G2, 5, "DELIVRD")
    api.sweep(tracker)
    assert tracker.verdict().state == "success"
    assert tracker.summary()["total"] == 10


def test_expected_count_counts_messages_not_yet_visible() -> None:
    api = FakeApi()
    ids = api.add(G1, 100, "DELIVRD")
    api.groups[G1] = ids[:60]  # 40 not visible yet
    tracker = DeliveryTracker(group_ids=[G1], expected_count=100)
    api.sweep(tracker)
    summary = tracker.summary()
    assert (summary["total"], summary["pending"], summary["not_visible"]) == (100, 40, 40)
    assert tracker.verdict().state == "pending"
    assert tracker.plan() == [Step("walk", G1)]  # still discovering
    api.groups[G1] = ids
    api.sweep(tracker)
    assert tracker.verdict().state == "success"


def test_gaps_in_positions_count_as_pending() -> None:
    tracker = DeliveryTracker(group_ids=[G1])
    api = FakeApi()
    ids = api.add(G1, 10, "DELIVRD")
    api.groups[G1] = ids[:3] + ids[5:]  # 4 and 5 not visible
    api.sweep(tracker)
    assert tracker.summary()["total"] == 10
    assert tracker.verdict().state == "pending"


def test_pushed_reports_drive_the_same_verdict() -> None:
    # Roadmap item 1: a webhook-driven trigger feeds statuses instead of polling.
    tracker = DeliveryTracker(group_ids=[G1], expected_count=2)
    assert tracker.observe(f"{G1}:1", "DELIVRD")
    assert tracker.observe(f"{G1}:2", "DELIVRD")
    assert tracker.verdict().state == "success"


# -- async sweeps


def test_async_sweep_keeps_what_it_learned_and_raises_the_worst_error() -> None:
    api = FakeApi()
    ids = [*api.add(G1, 1), *api.add(G2, 1)]
    tracker = DeliveryTracker(message_ids=ids)
    for mid in ids:
        api.status[mid] = "DELIVRD"

    def failing(error: Exception) -> Any:
        async def fetch(message_id: str) -> list[Row]:
            if message_id == ids[1]:
                raise error
            return api.message(message_id)

        return fetch

    async def page(group: str, number: int) -> StatusPage:
        return api.page(group, number)

    with pytest.raises(QikberryRateLimitError):
        asyncio.run(arun_sweep(tracker, page, failing(QikberryRateLimitError("slow down"))))
    assert tracker.summary()["delivered"] == 1  # the other lookup's answer is kept
    with pytest.raises(QikberryAuthError):
        asyncio.run(arun_sweep(tracker, page, failing(QikberryAuthError("bad token"))))


def test_transient_errors() -> None:
    assert is_transient(QikberryRateLimitError("x"))
    assert is_transient(QikberryServerError("x", status_code=503))
    assert is_transient(QikberryConnectionError("x"))
    assert not is_transient(QikberryConnectionError("tls", retryable=False))
    assert not is_transient(QikberryAuthError("x"))
    assert not is_transient(QikberryValidationError("x", status_code=422))
