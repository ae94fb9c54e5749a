"""The emulator refuses what the API cannot take, as the API would: a number outside 8-15 digits fails the
whole ``sms/send/json`` request with a 422 naming the node, and a text holding an unpaired UTF-16 surrogate
is a 422 naming the field, never an internal error (the ``emu`` fixture fails a test that causes one)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import phonenumbers
import pytest

if TYPE_CHECKING:
    from airflow_qikberry.emulator import Emulator
    from tests.emulator.conftest import Client

ROOT = {"sender": "QIKBRY", "service": "T", "message": "Your order has shipped"}
# Possible numbers by phonenumbers' rules (what the provider's validator accepted until it learnt the API's
# 8-15 digit limit), outside that limit.
SIXTEEN_DIGITS = "4912345678901234"  # +49 1234 5678901234
SEVEN_DIGITS = "2901234"  # +290 1234, Saint Helena


@pytest.mark.parametrize("number", [SIXTEEN_DIGITS, SEVEN_DIGITS])
def test_one_number_outside_8_to_15_digits_fails_the_whole_batch(
    client: Client, emu: Emulator, number: str
) -> None:
    assert phonenumbers.is_possible_number(phonenumbers.parse("+" + number))  # the old client-side rule
    nodes = [{"to": f"91987654321{i}"} for i in range(3)] + [{"to": number}, {"to": "919876543219"}]
    r = client.post("sms/send/json", json={"root": ROOT, "nodes": nodes})
    assert r.status_code == 422
    body = r.json()
    assert body["status"] == "ERROR"
    assert body["code"] == 422
    assert list(body["errors"]) == ["nodes.3.to"]
    assert body["message"] == f"The nodes.3.to field contains an invalid number: {number}."
    assert emu.messages() == []  # nothing of the chunk is accepted, the good rows included


@pytest.mark.parametrize("number", [SIXTEEN_DIGITS, SEVEN_DIGITS])
def test_sms_send_refuses_a_number_outside_8_to_15_digits(client: Client, emu: Emulator, number: str) -> None:
    r = client.send(to=f"919876543210,{number}")
    assert r.status_code == 422
    assert list(r.json()["errors"]) == ["to"]
    assert emu.messages() == []


def _raw_json(client: Client, path: str, body: str) -> Any:
    # requests escapes a lone surrogate the same way (json.dumps, ensure_ascii): written out here so the test
    # shows the exact bytes the API receives.
    return client.post(path, data=body.encode("ascii"), headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "sms/send",
            '{"to": "919876543210", "sender": "QIKBRY", "service": "T", "message": "Hi \\ud83d"}',
            "message",
        ),
        (
            "sms/send",
            '{"to": "919876543210", "sender": "QIKBRY", "service": "T", "message": "Hi",'
            ' "custom": "x\\ude00"}',
            "custom",
        ),
        (
            "sms/send/json",
            '{"root": {"sender": "QIKBRY", "service": "T", "message": "Hi"},'
            ' "nodes": [{"to": "919876543210"}, {"to": "919876543211", "message": "\\ud83d cut"}]}',
            "nodes.1.message",
        ),
    ],
)
def test_an_unpaired_surrogate_is_a_422_naming_the_field_and_the_emulator_stays_up(
    client: Client, emu: Emulator, path: str, body: str, field: str
) -> None:
    json.loads(body)  # valid JSON: Python reads the escape into a str holding a lone surrogate
    r = _raw_json(client, path, body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"] == {field: [f"The {field} must be a valid UTF-8 string."]}
    assert emu.messages() == []
    # Still up and still accepting: the next request is answered normally (and `emu` saw no internal error).
    assert client.send().status_code == 200
    assert len(emu.messages()) == 1


def test_a_whole_surrogate_pair_is_one_emoji_and_accepted(client: Client, emu: Emulator) -> None:
    body = '{"to": "919876543210", "sender": "QIKBRY", "service": "T", "message": "Hi \\ud83d\\ude00"}'
    r = _raw_json(client, "sms/send", body)
    assert r.status_code == 200, r.text
    assert emu.messages()[0]["text"] == "Hi \U0001f600"


def test_the_status_for_an_unpaired_surrogate_is_configurable(client: Client, emu: Emulator) -> None:
    emu.configure(unpaired_surrogate_status=400)
    body = '{"to": "919876543210", "sender": "QIKBRY", "service": "T", "message": "Hi \\ud83d"}'
    assert _raw_json(client, "sms/send", body).status_code == 400
    with pytest.raises(ValueError, match="unpaired_surrogate_status"):
        emu.configure(unpaired_surrogate_status=200)
