"""GET rate limiting and every fault kind, including determinism of probabilistic faults."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
import requests

from tests.emulator.conftest import Client

if TYPE_CHECKING:
    from airflow_qikberry.emulator import Emulator


def test_get_rate_limit_with_headers(client: Client, emu: Emulator) -> None:
    emu.configure(rate_limit_per_minute=5)
    remaining = []
    for _ in range(5):
        r = client.get("auth/me")
        assert r.status_code == 200
        assert r.headers["X-RateLimit-Limit"] == "5"
        remaining.append(int(r.headers["X-RateLimit-Remaining"]))
    assert remaining == [4, 3, 2, 1, 0]
    r = client.get("finance/balance")
    assert r.status_code == 429
    assert r.json() == {"status": "ERROR", "code": 429, "message": "Too Many Attempts."}
    assert r.headers["X-RateLimit-Remaining"] == "0"
    assert r.headers["X-RateLimit-Limit"] == "5"
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert client.send().status_code == 200  # POSTs are not limited
    emu.advance_clock(20)
    assert int(client.get("auth/me").headers["Retry-After"]) <= 41
    emu.advance_clock(41)
    assert client.get("auth/me").status_code == 200


def test_default_get_limit_is_1000_per_minute(client: Client) -> None:
    r = client.get("auth/me")
    assert (r.headers["X-RateLimit-Limit"], r.headers["X-RateLimit-Remaining"]) == ("1000", "999")
    r = client.get("sms/send", params={"to": "919876543210", "message": "m", "sender": "S", "service": "T"})
    assert r.status_code == 200
    assert r.headers["X-RateLimit-Remaining"] == "998"
    assert "X-RateLimit-Limit" not in client.send().headers  # POSTs are not limited


def test_rate_limit_window_is_per_token(emu: Emulator) -> None:
    emu.configure(rate_limit_per_minute=2)
    first = Client(emu)
    try:
        assert [first.get("auth/me").status_code for _ in range(3)] == [200, 200, 429]
        emu.configure(token="second-token")
        second = Client(emu, token="second-token")
        try:
            r = second.get("auth/me")
            assert r.status_code == 200
            assert r.headers["X-RateLimit-Remaining"] == "1"
        finally:
            second.close()
    finally:
        first.close()


def set_fault(emu: Emulator, **rule: Any) -> None:
    emu.set_faults([{"endpoint": "sms/send", "method": "POST", **rule}])


def test_error_fault_answers_before_processing(client: Client, emu: Emulator) -> None:
    set_fault(emu, kind="error", status=503, times=2)
    for _ in range(2):
        r = client.send()
        assert r.status_code == 503
        assert r.json() == {"status": "ERROR", "code": 503, "message": "Server Error"}
    assert client.send().status_code == 200
    assert len(emu.messages()) == 1
    assert emu.faults()[0]["remaining"] == 0


def test_error_fault_default_status_is_500(client: Client, emu: Emulator) -> None:
    set_fault(emu, kind="error", times=1)
    assert client.send().status_code == 500


def test_rate_limit_fault(client: Client, emu: Emulator) -> None:
    set_fault(emu, kind="rate_limit", seconds=3, times=1)
    r = client.send()
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "3"
    assert r.json()["message"] == "Too Many Attempts."
    assert emu.messages() == []
    set_fault(emu, kind="rate_limit", times=1)
    assert client.send().headers["Retry-After"] == "1"


def test_latency_fault_delays_then_processes(client: Client, emu: Emulator) -> None:
    set_fault(emu, kind="latency", seconds=0.3, times=1)
    started = time.monotonic()
    r = client.send(custom="late")
    assert time.monotonic() - started >= 0.3
    assert r.status_code == 200
    assert r.json()["data"][0]["customid"] == "late"
    assert [m["custom"] for m in emu.messages()] == ["late"]
    assert emu.request_log()["requests"][0]["fault"] == "latency"
    assert client.send().status_code == 200
    # Applied once only: the log says so (a wall-clock bound on the second send would depend on the load).
    assert [r["fault"] for r in emu.request_log()["requests"]] == ["latency", None]


def test_slow_response_accepts_then_answers_late(client: Client, emu: Emulator) -> None:
    set_fault(emu, kind="slow_response", seconds=0.6, times=1)
    with pytest.raises(requests.ReadTimeout):
        client.session.post(
            client.url("sms/send"),
            json={"to": "919876543210", "message": "m", "sender": "S", "service": "T"},
            timeout=0.2,
        )
    assert len(emu.messages()) == 1  # the message was accepted even though the client gave up


def test_drop_after_accept(client: Client, emu: Emulator) -> None:
    set_fault(emu, kind="drop_after_accept", times=1)
    with pytest.raises(requests.ConnectionError):
        client.send(custom="lost-answer")
    [msg] = emu.messages()
    assert msg["custom"] == "lost-answer"
    assert msg["status"] == "AWAITING-DLR"
    assert client.send().status_code == 200  # a fresh connection works
    log = emu.request_log()["requests"]
    assert [(e["status"], e["fault"]) for e in log] == [(200, "drop_after_accept"), (200, None)]


def test_drop_before(client: Client, emu: Emulator) -> None:
    set_fault(emu, kind="drop_before", times=1)
    with pytest.raises(requests.ConnectionError):
        client.send()
    assert emu.messages() == []
    assert emu.request_log()["requests"][0]["fault"] == "drop_before"


def test_fault_matching_by_endpoint_and_method(client: Client, emu: Emulator) -> None:
    emu.set_faults([{"endpoint": "sms/status", "method": "GET", "kind": "error", "times": 1}])
    assert client.send().status_code == 200
    assert client.get("auth/me").status_code == 200
    assert client.get("sms/status", params={"id": "x"}).status_code == 500
    emu.set_faults([{"endpoint": "*", "kind": "error", "status": 502, "times": 2}])
    assert client.get("auth/me").status_code == 502
    assert client.send().status_code == 502
    emu.set_faults([{"endpoint": "developer/webhooks/*", "kind": "error"}])
    assert client.get("developer/webhooks/abc").status_code == 500
    assert client.get("developer/webhooks").status_code == 200


def test_faults_come_after_routing_and_auth(client: Client, emu: Emulator) -> None:
    emu.set_faults([{"endpoint": "*", "kind": "error"}])
    assert client.get("no/such/path").status_code == 404
    r = requests.get(emu.base_url + "auth/me", headers={"Accept": "application/json"}, timeout=10)
    assert r.status_code == 401
    emu.clear_faults()
    assert emu.faults() == []


def outcome_pattern(emu: Emulator, client: Client, seed: int | None = None) -> list[int]:
    rule: dict[str, Any] = {"endpoint": "sms/send", "kind": "error", "probability": 0.3}
    if seed is not None:
        rule["seed"] = seed
    emu.set_faults([rule])
    return [client.send(to=f"9198765{i:05d}").status_code for i in range(40)]


def test_probabilistic_faults_are_deterministic(client: Client, emu: Emulator) -> None:
    first = outcome_pattern(emu, client)
    second = outcome_pattern(emu, client)
    assert first == second
    assert 0 < first.count(500) < 40
    assert outcome_pattern(emu, client, seed=99) == outcome_pattern(emu, client, seed=99)
    assert outcome_pattern(emu, client, seed=99) != first


def test_emulator_seed_drives_the_fault_sequence(client: Client, emu: Emulator) -> None:
    emu.configure(seed=1)
    one = outcome_pattern(emu, client)
    emu.configure(seed=1)
    assert outcome_pattern(emu, client) == one
    emu.configure(seed=2)
    assert outcome_pattern(emu, client) != one


def test_probability_and_times_combine(client: Client, emu: Emulator) -> None:
    emu.set_faults([{"endpoint": "sms/send", "kind": "error", "probability": 1.0, "times": 3}])
    assert [client.send().status_code for _ in range(5)] == [500, 500, 500, 200, 200]


@pytest.mark.parametrize(
    ("rule", "error"),
    [
        ({"kind": "explode"}, "kind must be one of"),
        ({"kind": "error", "times": 0}, "times must be a positive integer"),
        ({"kind": "error", "probability": 1.5}, "probability must be a number between 0 and 1"),
        ({"kind": "error", "method": "TRACE"}, "method must be GET, POST"),
        ({"kind": "error", "status": 99}, "status must be an HTTP status code"),
        ({"kind": "latency", "seconds": -1}, "seconds must be a number >= 0"),
        ({"kind": "error", "colour": "red"}, "unknown key"),
    ],
)
def test_invalid_fault_rules_are_rejected(emu: Emulator, rule: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        emu.set_faults([rule])
