"""Delivery-report pushes on the emulator clock: 3 retries 30 minutes apart then dropped, push faults,
inspection per webhook, and reports whose pushes were lost recovered from ``sms/status`` (the source of
truth) by date."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_qikberry.emulator import Emulator
    from tests.emulator.conftest import Client, Receiver

HALF_HOUR = 1800


def webhook(client: Client, uri: str, *, subscribe: bool = True) -> str:
    """A verified webhook; with ``subscribe`` every delivery report goes to it (an sms:message:status
    subscription), so sends need no webhook_id."""
    r = client.post("developer/webhooks", json={"name": "DLR", "uri": uri, "secret": "s"})
    assert r.json()["data"]["status"] == 1, r.text
    hook_id = str(r.json()["data"]["id"])
    if subscribe:
        body = {"event": "sms:message:status", "identity": "all", "webhook_id": hook_id}
        assert client.post("developer/subscriptions", json=body).status_code == 200
    return hook_id


def stats(emu: Emulator, hook_id: str) -> dict[str, int]:
    [hook] = [h for h in emu.webhooks() if h["id"] == hook_id]
    return dict(hook["deliveries"])


def test_documented_defaults_three_retries_half_an_hour_apart(emu: Emulator) -> None:
    assert (emu.config.webhook_retries, emu.config.webhook_retry_interval) == (3, 1800.0)


def test_a_failing_receiver_gets_three_retries_then_the_report_is_dropped(
    client: Client, emu: Emulator, receiver: Receiver
) -> None:
    receiver.statuses = [500] * 10
    hook_id = webhook(client, receiver.url)
    client.send()
    emu.flush_dlrs()
    assert len(receiver.wait_for(1)) == 1
    assert stats(emu, hook_id) == {
        "attempts": 1,
        "succeeded": 0,
        "failed_attempts": 1,
        "dropped": 0,
        "skipped_inactive": 0,
        "pending": 1,
    }
    emu.advance_clock(HALF_HOUR - 1)
    assert len(receiver.calls) == 1  # not due yet
    for expected in (2, 3, 4):
        emu.advance_clock(1 if expected == 2 else HALF_HOUR)
        assert len(receiver.wait_for(expected)) == expected
    emu.advance_clock(10 * HALF_HOUR)
    assert len(receiver.calls) == 4  # 1 + 3 retries, then nothing
    attempts = emu.webhook_deliveries()
    assert [(a["attempt"], a["status_code"], a["outcome"]) for a in attempts] == [
        (1, 500, "retrying"),
        (2, 500, "retrying"),
        (3, 500, "retrying"),
        (4, 500, "dropped"),
    ]
    assert attempts[-1]["next_attempt_at"] is None
    assert attempts[0]["next_attempt_at"] == attempts[1]["due_at"]
    assert {call["body"]["id"] for call in receiver.calls} == {attempts[0]["message_id"]}
    assert stats(emu, hook_id) == {
        "attempts": 4,
        "succeeded": 0,
        "failed_attempts": 4,
        "dropped": 1,
        "skipped_inactive": 0,
        "pending": 0,
    }


def test_advancing_ninety_minutes_at_once_makes_every_retry(
    client: Client, emu: Emulator, receiver: Receiver
) -> None:
    receiver.statuses = [503] * 10
    hook_id = webhook(client, receiver.url)
    client.send()
    emu.flush_dlrs()
    emu.advance_clock(3 * HALF_HOUR)  # one call: the retries due at +30, +60 and +90 minutes all happen
    assert len(receiver.calls) == 4
    assert [a["outcome"] for a in emu.webhook_deliveries()] == ["retrying"] * 3 + ["dropped"]
    assert stats(emu, hook_id)["dropped"] == 1


def test_the_retry_schedule_follows_the_report_not_the_call(
    client: Client, emu: Emulator, receiver: Receiver
) -> None:
    # The message became final long before anything looked: its pushes are overdue, and all are made.
    receiver.statuses = [500] * 10
    webhook(client, receiver.url)
    client.send()
    emu.advance_clock(2 + 3 * HALF_HOUR)
    assert len(receiver.calls) == 4


def test_a_retry_that_succeeds_stops_the_retries(client: Client, emu: Emulator, receiver: Receiver) -> None:
    receiver.statuses = [500, 500, 202]
    hook_id = webhook(client, receiver.url)
    client.send()
    emu.flush_dlrs()
    emu.advance_clock(5 * HALF_HOUR)
    assert len(receiver.calls) == 3
    assert [a["outcome"] for a in emu.webhook_deliveries()] == ["retrying", "retrying", "delivered"]
    assert stats(emu, hook_id)["succeeded"] == 1
    assert stats(emu, hook_id)["dropped"] == 0
    [msg] = emu.messages()
    assert [(a["webhook_id"], a["outcome"]) for a in msg["webhook_attempts"]] == [
        (hook_id, "retrying"),
        (hook_id, "retrying"),
        (hook_id, "delivered"),
    ]


def test_retries_and_interval_are_configurable(client: Client, emu: Emulator, receiver: Receiver) -> None:
    emu.configure(webhook_retries=1, webhook_retry_interval=60)
    receiver.statuses = [500] * 5
    webhook(client, receiver.url)
    client.send()
    emu.flush_dlrs()
    emu.advance_clock(3600)
    assert len(receiver.calls) == 2


def test_only_final_reports_are_pushed(client: Client, emu: Emulator, receiver: Receiver) -> None:
    emu.configure(manual_clock=True)
    webhook(client, receiver.url)
    client.send()
    emu.advance_clock(1)  # still AWAITING-DLR (the DLR delay is 2 s): nothing pushed
    assert receiver.calls == []
    emu.advance_clock(2)
    [call] = receiver.wait_for(1)
    assert call["body"]["status"] == "DELIVRD"


def test_push_faults_make_a_receiver_unreachable(client: Client, emu: Emulator, receiver: Receiver) -> None:
    hook_id = webhook(client, receiver.url)
    emu.set_push_faults([{"webhook_id": hook_id, "kind": "unreachable", "times": 2}])
    client.send()
    emu.flush_dlrs()
    emu.advance_clock(2 * HALF_HOUR)
    assert len(receiver.calls) == 1  # attempts 1 and 2 never reached it, the third did
    attempts = emu.webhook_deliveries()
    assert [(a["status_code"], a["ok"]) for a in attempts] == [(None, False), (None, False), (200, True)]
    assert attempts[0]["error"] == "injected fault: receiver unreachable"
    [rule] = emu.push_faults()
    assert (rule["webhook_id"], rule["push"], rule["applied"], rule["remaining"]) == (hook_id, "dlr", 2, 0)


def test_push_faults_over_http(client: Client, emu: Emulator, receiver: Receiver) -> None:
    hook_id = webhook(client, receiver.url)
    rule = {"webhook_id": "*", "kind": "error", "status": 502}
    r = client.control("POST", "push-faults", json={"faults": [rule]})
    assert r.status_code == 200
    assert r.json()["faults"][0]["status"] == 502
    client.send()
    emu.flush_dlrs()
    assert receiver.calls == []
    assert emu.webhook_deliveries()[0]["status_code"] == 502
    assert client.control("GET", "push-faults").json()["faults"][0]["applied"] == 1
    assert client.control("DELETE", "push-faults").json() == {"faults": []}
    emu.advance_clock(HALF_HOUR)
    assert len(receiver.wait_for(1)) == 1
    bad = client.control("POST", "push-faults", json=[{"kind": "explode"}])
    assert bad.status_code == 400
    assert "kind" in bad.json()["message"]
    bad = client.control("POST", "push-faults", json=[{"kind": "error", "push": "sms"}])
    assert bad.status_code == 400
    assert stats(emu, hook_id)["succeeded"] == 1


def test_webhooks_inspection_over_http(client: Client, emu: Emulator, receiver: Receiver) -> None:
    hook_id = webhook(client, receiver.url)
    client.send()
    emu.flush_dlrs()
    [hook] = client.control("GET", "webhooks").json()["webhooks"]
    assert hook["id"] == hook_id
    assert hook["secret"] == "*****"
    assert hook["has_secret"] is True
    assert hook["subscriptions"] == [1]
    assert hook["verified"] is True
    assert hook["deliveries"]["succeeded"] == 1


def test_reset_forgets_webhooks_subscriptions_and_push_faults(
    client: Client, emu: Emulator, receiver: Receiver
) -> None:
    webhook(client, receiver.url)
    emu.set_push_faults([{"kind": "unreachable"}])
    emu.reset()
    assert emu.webhooks() == []
    assert emu.push_faults() == []
    assert client.get("developer/subscriptions").json()["data"] == []


def page_of(client: Client, **params: Any) -> dict[str, Any]:
    r = client.get("sms/status", params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_lost_pushes_are_recovered_from_status_by_date(
    client: Client, emu: Emulator, receiver: Receiver
) -> None:
    """Every push fails for good; a catch-up reader paging ``sms/status?date=`` still sees every report."""
    hook_id = webhook(client, receiver.url, subscribe=False)
    emu.set_push_faults([{"webhook_id": hook_id, "kind": "unreachable"}])
    nodes = [{"to": f"9198765{i:05d}", "custom": f"row-{i}"} for i in range(130)]
    nodes[7]["to"] = "919876500999"  # the outcome rules make *999 UNDELIV
    root = {"message": "m", "sender": "QIKBRY", "service": "T", "webhook_id": hook_id}
    assert client.post("sms/send/json", json={"root": root, "nodes": nodes}).status_code == 200
    emu.advance_clock(2 + 3 * HALF_HOUR)
    assert receiver.calls == []
    assert stats(emu, hook_id)["dropped"] == 130
    assert stats(emu, hook_id)["pending"] == 0
    today = emu.messages()[0]["submitted_at"][:10]
    first = page_of(client, date=today)
    assert first["meta"]["total"] == 130
    assert first["meta"]["per_page"] == 100
    assert first["meta"]["last_page"] == 2
    assert first["links"]["next"].endswith(f"?date={today}&page=2")
    rows = first["data"] + page_of(client, date=today, page=2)["data"]
    assert len({row["id"] for row in rows}) == 130
    assert {row["custom"]: row["status"] for row in rows}["row-7"] == "UNDELIV"
    assert sum(row["status"] == "DELIVRD" for row in rows) == 129
    assert all(row["delivered_at"] for row in rows)
