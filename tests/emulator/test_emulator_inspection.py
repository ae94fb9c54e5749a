"""The ``/_emulator/`` HTTP control API and the Python configuration API."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from airflow_qikberry.emulator import Emulator, EmulatorConfig
from tests.emulator.conftest import EMU_TOKEN, Client, Receiver


def test_messages_endpoint(client: Client, emu: Emulator) -> None:
    client.send(custom="abc", message="hello there")
    r = client.control("GET", "messages")
    assert r.status_code == 200
    [msg] = r.json()["messages"]
    for key in (
        "id",
        "mobile",
        "message",
        "text",
        "sender",
        "service",
        "custom",
        "status",
        "group_id",
        "units",
        "charges",
        "submitted_at",
        "delivered_at",
        "webhook_attempts",
    ):
        assert key in msg
    assert (msg["custom"], msg["text"], msg["status"]) == ("abc", "hello there", "AWAITING-DLR")


def test_requests_endpoint_never_stores_tokens(client: Client, emu: Emulator) -> None:
    client.send()
    client.session.get(emu.base_url + "auth/me", params={"access_token": EMU_TOKEN}, timeout=10)
    client.get("sms/status", params={"id": "x"})
    r = client.control("GET", "requests").json()
    assert [(e["method"], e["path"], e["status"]) for e in r["requests"]] == [
        ("POST", "sms/send", 200),
        ("GET", "auth/me", 200),
        ("GET", "sms/status", 200),
    ]
    assert r["counts"] == {"POST sms/send": 1, "GET auth/me": 1, "GET sms/status": 1}
    assert sum(r["per_minute"].values()) == 3
    minute = next(iter(r["per_minute"]))
    assert len(minute) == 16
    assert minute[10] == " "
    assert EMU_TOKEN not in client.control("GET", "requests").text
    assert all("?" not in e["path"] for e in r["requests"])


def test_request_log_is_bounded_but_counts_are_not(client: Client, emu: Emulator) -> None:
    emu.configure(request_log_limit=3)
    for _ in range(5):
        client.get("auth/me")
    log = emu.request_log()
    assert len(log["requests"]) == 3
    assert log["counts"]["GET auth/me"] == 5


def test_faults_endpoints(client: Client, emu: Emulator) -> None:
    rule = {"endpoint": "sms/send", "method": "POST", "kind": "error", "status": 503, "times": 1}
    r = client.control("POST", "faults", json=[rule])
    assert r.status_code == 200
    assert r.json()["faults"][0]["kind"] == "error"
    assert client.control("GET", "faults").json()["faults"][0]["remaining"] == 1
    assert client.send().status_code == 503
    assert client.control("POST", "faults", json={"faults": [rule]}).status_code == 200
    assert client.control("DELETE", "faults").json() == {"faults": []}
    assert client.send().status_code == 200
    bad = client.control("POST", "faults", json=[{"kind": "nope"}])
    assert bad.status_code == 400
    assert "kind" in bad.json()["message"]


def test_outcomes_endpoints(client: Client, emu: Emulator) -> None:
    assert client.control("GET", "outcomes").json()["rules"][0] == {"match": "999$", "status": "UNDELIV"}
    r = client.control("POST", "outcomes", json={"rules": [{"match": ".*", "status": "FAILED"}]})
    assert r.json()["rules"] == [{"match": ".*", "status": "FAILED"}]
    client.send()
    client.control("POST", "dlr/flush")
    assert emu.messages()[0]["status"] == "FAILED"
    assert client.control("POST", "outcomes", json=[{"match": "(", "status": "X"}]).status_code == 400


def test_config_endpoints(client: Client, emu: Emulator) -> None:
    cfg = client.control("GET", "config").json()["config"]
    assert cfg["token"] == "*****"
    assert cfg["rate_limit_per_minute"] == 1000
    assert EMU_TOKEN not in client.control("GET", "config").text
    r = client.control("POST", "config", json={"rate_limit_per_minute": 2, "credits": {"T": 7}})
    assert r.json()["config"]["rate_limit_per_minute"] == 2
    assert client.get("finance/balance").json()["data"][0]["credits"] == 7
    assert client.control("POST", "config", json={"no_such_knob": 1}).status_code == 400
    assert client.control("POST", "config", json={"dlr_delay_seconds": -1}).status_code == 400


def test_clock_and_flush_endpoints(client: Client, emu: Emulator) -> None:
    before = client.control("GET", "clock").json()["timestamp"]
    after = client.control("POST", "clock/advance", json={"seconds": 120}).json()["timestamp"]
    assert after - before >= 120
    assert client.control("POST", "clock/advance", json={}).status_code == 400
    client.send()
    assert client.control("POST", "dlr/flush").json() == {"finalized": 1}
    assert emu.messages()[0]["status"] == "DELIVRD"


def test_webhook_deliveries_endpoint(client: Client, emu: Emulator, receiver: Receiver) -> None:
    hook = client.post("developer/webhooks", json={"name": "h", "uri": receiver.url}).json()["data"]
    client.send(webhook_id=hook["id"])
    client.control("POST", "dlr/flush")
    [delivery] = client.control("GET", "webhook-deliveries").json()["deliveries"]
    assert delivery["ok"] is True
    assert delivery["webhook_id"] == hook["id"]


def test_reset_endpoint_restores_everything(client: Client, emu: Emulator) -> None:
    emu.configure(rate_limit_per_minute=3, credits={"T": 1})
    emu.set_faults([{"kind": "latency", "seconds": 0}])
    client.send()
    client.post("developer/webhooks", json={"name": "h", "uri": "http://a.b/c"})
    emu.advance_clock(3600)
    assert client.control("POST", "reset").json() == {"status": "OK"}
    assert emu.messages() == []
    assert emu.faults() == []
    assert emu.request_log()["requests"] == []
    assert emu.config.rate_limit_per_minute == 1000
    assert client.get("developer/webhooks").json()["data"] == []
    assert client.get("finance/balance").json()["data"][0]["credits"] == 10000
    assert abs(emu.now().timestamp() - time.time()) < 5  # clock offset gone


def test_unknown_control_paths(client: Client) -> None:
    assert client.control("GET", "nope").status_code == 404
    assert client.control("GET", "reset").status_code == 405


def test_configure_rejects_bad_values(emu: Emulator) -> None:
    with pytest.raises(ValueError, match="unknown config field"):
        emu.configure(unknown=1)
    with pytest.raises(ValueError, match="unknown timezone"):
        emu.configure(timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="outcome rule 0 needs"):
        emu.configure(outcome_rules=[{"match": "x"}])
    with pytest.raises(ValueError, match="rate_limit_per_minute"):
        Emulator(EmulatorConfig(rate_limit_per_minute=0))


def test_timezone_drives_submitted_at(client: Client, emu: Emulator) -> None:
    emu.configure(timezone="UTC")
    row = client.send().json()["data"][0]
    submitted = datetime.strptime(row["submitted_at"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    assert abs((submitted - datetime.now(timezone.utc)).total_seconds()) < 5
    emu.configure(timezone="Asia/Kolkata")
    assert emu.now().utcoffset() == datetime.now(timezone.utc).astimezone(emu.now().tzinfo).utcoffset()
    assert str(emu.now().tzinfo) == "Asia/Kolkata"
