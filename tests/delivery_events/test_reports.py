"""Delivery reports as events carry them: parsing pushes and status rows, the memory, payloads, reports_in."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from airflow_qikberry.delivery.dlr import DeliveryReport, report_key
from airflow_qikberry.delivery.events import reports_in
from airflow_qikberry.delivery.inputs import StatusSets
from airflow_qikberry.delivery.memory import EventMemory, PositionSet
from airflow_qikberry.delivery.report import reports_payload
from airflow_qikberry.exceptions import QikberryValidationError
from airflow_qikberry.models import MessageStatus

GROUP = "b34e35ad-1c2d-4e5f-8a9b-0c1d2e3f4a5b"


def _push(**fields: Any) -> dict[str, Any]:
    # The documented push body (reference 4.13), values as the API writes them (strings, unix seconds).
    body = {
        "id": f"{GROUP}:1",
        "mobile": "919812345123",
        "status": "UNDELIV",
        "units": "1",
        "credits": "0.2500",
        "custom": "order-17",
        "sent_at": "1732700000",
        "submit_at": "1732700002",
        "deliv_at": "1732700060",
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


def test_a_pushed_report_has_the_number_masked_times_in_utc_and_the_dedupe_key() -> None:
    report = DeliveryReport.from_push(_push(), StatusSets(), "Asia/Kolkata")
    data = report.to_dict()
    assert data["id"] == f"{GROUP}:1"
    assert data["group_id"] == GROUP
    assert data["key"] == report.key == report_key(f"{GROUP}:1", "UNDELIV") == f"{GROUP}:1|UNDELIV"
    assert data["outcome"] == "failed"
    assert data["source"] == "push"
    assert "12345" not in data["mobile"]
    assert data["mobile"].endswith("123")
    assert data["credits"] == "0.2500"
    assert data["units"] == 1
    assert data["custom_id"] == "order-17"
    assert data["submitted_at"] == "2024-11-27T09:33:20+00:00"
    assert data["delivered_at"] == "2024-11-27T09:34:20+00:00"
    assert DeliveryReport.from_dict(json.loads(json.dumps(data))) == report


def test_wall_times_are_read_in_the_api_time_zone() -> None:
    body = _push(sent_at=None, deliv_at=None, sent_time="2024-11-27 15:03:20", deliv_time="")
    report = DeliveryReport.from_push(body, StatusSets(), "Asia/Kolkata")
    assert report.submitted_at == "2024-11-27T09:33:20+00:00"
    assert report.delivered_at is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("not json at all", "body"),
        ([{"id": "x", "status": "DELIVRD"}], "body"),
        (None, "body"),
        ({"status": "DELIVRD"}, "id"),
        ({"id": "  ", "status": "DELIVRD"}, "id"),
        ({"id": {"nested": 1}, "status": "DELIVRD"}, "id"),
        ({"id": f"{GROUP}:1"}, "status"),
        ({"id": f"{GROUP}:1", "status": ["DELIVRD"]}, "status"),
    ],
)
def test_a_garbled_push_is_a_typed_error_naming_the_field(body: Any, field: str) -> None:
    with pytest.raises(QikberryValidationError) as caught:
        DeliveryReport.from_push(body, StatusSets(), "Asia/Kolkata")
    assert caught.value.field == field


def test_a_status_row_becomes_the_same_shape() -> None:
    row = MessageStatus(
        message_id=f"{GROUP}:2",
        mobile="919812345999",
        status="EXPIRED",
        units=2,
        length=170,
        charges=Decimal("0.5"),
        custom_id=None,
        service="T",
        sender="QIKBRY",
        submitted_at="2024-11-27 15:03:20",
        delivered_at="2024-11-27 15:04:20",
    )
    report = DeliveryReport.from_status(row, StatusSets(), "Asia/Kolkata")
    assert (report.outcome, report.error_code, report.credits, report.source) == (
        "failed",
        "021",
        "0.5000",
        "status",
    )
    assert "12345" not in report.mobile
    assert report.delivered_at == "2024-11-27T09:34:20+00:00"
    delivered = DeliveryReport.from_status(replace(row, status="DELIVRD"), StatusSets(), "Asia/Kolkata")
    assert delivered.outcome == "delivered"


def test_position_sets_keep_runs_and_read_back_their_text() -> None:
    s = PositionSet.parse("1-3,7")
    s.add(4)
    s.add(6)
    assert str(s) == "1-4,6-7"
    assert len(s) == 6
    assert 5 not in s
    assert 7 in s
    assert PositionSet.parse(str(PositionSet.of(range(1, 500_001)))).runs() == [(1, 500_000)]
    with pytest.raises(ValueError):  # noqa: PT011 - any refusal: the message is not the contract
        PositionSet.parse("3-1")


def test_memory_survives_its_stored_form_and_garbage_is_empty_memory() -> None:
    memory = EventMemory()
    memory.watch(
        GROUP, since=100.0, source="sent", positions=PositionSet.parse("1-5"), campaign="c", sender="S"
    )
    memory.mark(f"{GROUP}:2", 101.0)
    memory.mark("loose-id", 101.0)
    memory.inbox_bucket = 1732700
    again = EventMemory.from_json(memory.to_json())
    assert again.to_json() == memory.to_json()
    assert again.processed(f"{GROUP}:2")
    assert not again.processed(f"{GROUP}:3")
    assert again.processed("loose-id")
    assert again.groups[GROUP].pending_positions() == [1, 3, 4, 5]
    for garbage in ("{", "[]", json.dumps({"v": 99, "g": {}}), json.dumps({"v": 1, "g": {"x": {}}})):
        assert EventMemory.from_json(garbage).groups == {}
    # Groups older than the lookback are forgotten.
    assert [g.group_id for g in again.expire(before=200.0)] == [GROUP]
    assert not again.groups


def _report(n: int, status: str = "UNDELIV") -> DeliveryReport:
    return DeliveryReport.from_push(_push(id=f"{GROUP}:{n}", status=status), StatusSets(), "Asia/Kolkata")


def test_a_payload_carries_the_reports_and_their_counts() -> None:
    reports = [_report(1), _report(2, "DELIVRD"), _report(3, "EXPIRED"), _report(4)]
    payload = reports_payload(reports, connection="qikberry_default", selection={"outcomes": ["failed"]})
    assert payload["summary"]["failed"] == 3
    assert payload["summary"]["delivered"] == 1
    assert payload["summary"]["failed_by_status"] == {"UNDELIV": 2, "EXPIRED": 1}
    assert payload["message"] == "4 report(s): 1 delivered, 3 failed (UNDELIV: 2, EXPIRED: 1)"
    json.dumps(payload)  # an asset event's extra: JSON only


class _Event:
    def __init__(self, payload: dict[str, Any]) -> None:
        self.extra = {"payload": payload}


def test_reports_in_flattens_events_each_report_once() -> None:
    first = reports_payload([_report(1), _report(2)], connection="c", selection={})
    again = reports_payload([_report(2), _report(3, "DELIVRD")], connection="c", selection={})
    events = {"asset": [_Event(first), _Event(again)]}
    assert [r["id"] for r in reports_in(events)] == [f"{GROUP}:1", f"{GROUP}:2", f"{GROUP}:3"]
    assert [r["id"] for r in reports_in(events, outcome="failed")] == [f"{GROUP}:1", f"{GROUP}:2"]
    as_dicts = [{"extra": {"payload": first}}, {"extra": {"payload": again}}]
    assert len(reports_in(as_dicts)) == 3
    assert reports_in(None) == []
    assert reports_in({"asset": [_Event({"reports": "garbled"})]}) == []
