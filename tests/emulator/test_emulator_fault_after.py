"""The ``after`` option of a fault rule: let the first N matching requests through, then apply."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import requests

if TYPE_CHECKING:
    from airflow_qikberry.emulator import Emulator
    from tests.emulator.conftest import Client


def _batch(client: Client, n: int) -> int:
    body = {
        "root": {"sender": "QIKBRY", "service": "T", "message": "hi"},
        "nodes": [{"to": f"91987654321{n}"}],
    }
    return client.post("sms/send/json", json=body).status_code


def test_after_fails_exactly_the_nth_matching_request(client: Client, emu: Emulator) -> None:
    rule = {"endpoint": "sms/send/json", "method": "POST", "kind": "error", "status": 501}
    emu.set_faults([{**rule, "after": 3, "times": 1}])
    assert client.get("auth/me").status_code == 200  # not matching: neither passed nor counted
    assert [_batch(client, n) for n in range(6)] == [200, 200, 200, 501, 200, 200]
    assert len(emu.messages()) == 5  # the failed batch was refused before processing
    (shown,) = emu.faults()
    assert (shown["after"], shown["applied"], shown["remaining"]) == (3, 1, 0)


def test_after_defaults_to_zero_and_is_shown_over_http(client: Client, emu: Emulator) -> None:
    emu.set_faults([{"endpoint": "sms/send/json", "kind": "error", "status": 501, "times": 1}])
    assert client.control("GET", "faults").json()["faults"][0]["after"] == 0
    assert [_batch(client, n) for n in range(2)] == [501, 200]


def test_after_with_drop_after_accept_keeps_the_message(client: Client, emu: Emulator) -> None:
    emu.set_faults([{"endpoint": "sms/send/json", "kind": "drop_after_accept", "after": 1, "times": 1}])
    assert _batch(client, 0) == 200
    with pytest.raises(requests.ConnectionError):  # the connection is closed without an answer
        _batch(client, 1)
    assert len(emu.messages()) == 2  # the second batch was accepted although its answer was lost


@pytest.mark.parametrize("after", [-1, 1.5, True, "2"])
def test_after_must_be_a_non_negative_integer(client: Client, after: object) -> None:
    r = client.control("POST", "faults", json=[{"kind": "error", "after": after}])
    assert r.status_code == 400
    assert "after must be an integer >= 0" in r.json()["message"]
