"""Delivery lifecycle on the emulator clock: lazy finalisation, flush, outcome rules, DUPLICATE, schedules."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_qikberry.emulator import Emulator
    from tests.emulator.conftest import Client, Receiver


def status_of(client: Client, message_id: str) -> dict[str, str]:
    [row] = client.get("sms/status", params={"id": message_id}).json()["data"]
    return row


def test_status_turns_final_after_the_dlr_delay(client: Client, emu: Emulator) -> None:
    emu.configure(manual_clock=True)  # 1 s short of the 2 s delay, with no real seconds counted on top
    message_id = client.send().json()["data"][0]["id"]
    emu.advance_clock(1.0)
    assert status_of(client, message_id)["status"] == "AWAITING-DLR"
    emu.advance_clock(1.5)
    row = status_of(client, message_id)
    assert row["status"] == "DELIVRD"
    assert row["delivered_at"] != ""
    assert row["delivered_at"] >= row["submitted_at"]


def test_dlr_delay_is_configurable(client: Client, emu: Emulator) -> None:
    emu.configure(dlr_delay_seconds=60)
    message_id = client.send().json()["data"][0]["id"]
    emu.advance_clock(30)
    assert status_of(client, message_id)["status"] == "AWAITING-DLR"
    emu.advance_clock(31)
    assert status_of(client, message_id)["status"] == "DELIVRD"


def test_default_outcome_rules(client: Client, emu: Emulator) -> None:
    client.send(to="919876543999,919876543998,919876543997,919876543210")
    assert emu.flush_dlrs() == 4
    assert [m["status"] for m in emu.messages()] == ["UNDELIV", "EXPIRED", "DNDNUMB", "DELIVRD"]
    assert emu.flush_dlrs() == 0


def test_custom_outcome_rules_apply_in_order(client: Client, emu: Emulator) -> None:
    emu.set_outcome_rules([{"match": "^44", "status": "BARRED"}, {"match": "0$", "status": "MOB-OFF"}])
    client.send(to="447700900120,919876543210,919876543999")
    emu.flush_dlrs()
    assert [m["status"] for m in emu.messages()] == ["BARRED", "MOB-OFF", "DELIVRD"]
    assert emu.outcome_rules()[0] == {"match": "^44", "status": "BARRED"}


def test_identical_message_within_window_is_duplicate(client: Client, emu: Emulator) -> None:
    client.send(message="same")
    client.send(message="same")  # same text, sender, number: anti-loop protection
    client.send(message="same", sender="OTHER")
    client.send(message="different")
    emu.advance_clock(601)
    client.send(message="same")  # outside the window again
    emu.flush_dlrs()
    assert [m["status"] for m in emu.messages()] == ["DELIVRD", "DUPLICATE", "DELIVRD", "DELIVRD", "DELIVRD"]


def test_duplicate_window_is_configurable(client: Client, emu: Emulator) -> None:
    emu.configure(duplicate_window_seconds=30)
    client.send(message="same")
    emu.advance_clock(31)  # past the 30 s window (the 600 s default would still call it a duplicate)
    client.send(message="same")
    emu.advance_clock(10)
    client.send(message="same")  # within 30 s of the previous one
    emu.configure(duplicate_window_seconds=0)
    emu.advance_clock(1)
    client.send(message="same")  # no window at all
    emu.flush_dlrs()
    assert [m["status"] for m in emu.messages()] == ["DELIVRD", "DELIVRD", "DUPLICATE", "DELIVRD"]


def test_scheduled_message_waits_for_its_time(client: Client, emu: Emulator) -> None:
    at = (emu.now() + timedelta(minutes=10)).strftime("%Y-%m-%d %H:%M:%S")
    message_id = client.send(time=at).json()["data"][0]["id"]
    emu.advance_clock(300)
    assert status_of(client, message_id)["status"] == "AWAITING-DLR"
    emu.advance_clock(305)
    assert status_of(client, message_id)["status"] == "DELIVRD"


def test_flush_finalises_scheduled_messages_too(client: Client, emu: Emulator) -> None:
    at = (emu.now() + timedelta(days=3)).strftime("%Y-%m-%d %H:%M:%S")
    client.send(time=at)
    assert emu.flush_dlrs() == 1
    assert emu.messages()[0]["status"] == "DELIVRD"


def test_ticker_finalises_without_reads(client: Client, emu: Emulator, receiver: Receiver) -> None:
    # The clock moves (no advance_clock processing) and only the background ticker can notice.
    emu.configure(dlr_delay_seconds=0)
    hook = client.post("developer/webhooks", json={"name": "h", "uri": receiver.url}).json()["data"]
    client.send(webhook_id=hook["id"])
    calls = receiver.wait_for(1)
    assert calls[0]["body"]["status"] == "DELIVRD"


def test_clock_only_moves_forward(emu: Emulator) -> None:
    before = emu.now()
    emu.advance_clock(3600)
    assert emu.now() - before >= timedelta(hours=1)
    try:
        emu.advance_clock(-1)
    except ValueError:
        pass
    else:
        raise AssertionError("negative advance accepted")


def test_a_manual_clock_moves_only_when_advanced(client: Client, emu: Emulator) -> None:
    emu.configure(manual_clock=True)
    message_id = client.send().json()["data"][0]["id"]
    stopped_at = emu.now()
    time.sleep(2.2)  # longer than the 2 s DLR delay, in real time
    assert emu.now() == stopped_at
    assert status_of(client, message_id)["status"] == "AWAITING-DLR"
    emu.advance_clock(2.0)
    assert emu.now() == stopped_at + timedelta(seconds=2)
    assert status_of(client, message_id)["status"] == "DELIVRD"
    # Back to the real clock: time runs on from where it stood, without a jump to the real time.
    emu.configure(manual_clock=False)
    resumed = emu.now()
    assert timedelta(0) <= resumed - (stopped_at + timedelta(seconds=2)) < timedelta(seconds=1)
    time.sleep(0.3)
    assert emu.now() > resumed
    emu.reset()  # a reset returns to the configured (real) clock
    assert abs((emu.now() - datetime.now(emu.now().tzinfo)).total_seconds()) < 1
