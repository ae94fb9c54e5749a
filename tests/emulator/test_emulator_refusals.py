"""Numbers the API will not text: ``suppressed_numbers`` (left out of a send silently, as an opted-out number)
and ``refused_numbers`` (the whole request refused with a 422 naming the node, or naming nothing with
``refusal_names_node=False``). Off by default; checked over real HTTP."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from airflow_qikberry.emulator import Emulator, EmulatorConfig
from airflow_qikberry.emulator.__main__ import build_parser, config_from_args

if TYPE_CHECKING:
    from tests.emulator.conftest import Client

A, B, C = "919876500000", "919876500001", "919876500002"


def batch(client: Client, numbers: list[str], **root: Any) -> Any:
    body = {
        "root": {"sender": "QIKBRY", "service": "T", "message": "Hello", "name": "camp", **root},
        "nodes": [{"to": n, "custom": f"c-{i}"} for i, n in enumerate(numbers)],
    }
    return client.post("sms/send/json", json=body)


def credits(client: Client) -> float:
    rows = client.get("finance/balance", params={"service": "T"}).json()["data"]
    return float(rows[0]["credits"])


def test_off_by_default(emu: Emulator, client: Client) -> None:
    config = emu.config
    assert (config.suppressed_numbers, config.refused_numbers, config.refusal_names_node) == ([], [], True)
    r = batch(client, [A, B, C])
    assert r.status_code == 200
    assert len(r.json()["data"]) == 3


def test_suppressed_number_is_left_out_of_a_batch_answer(emu: Emulator, client: Client) -> None:
    emu.configure(suppressed_numbers=[B])
    before = credits(client)
    r = batch(client, [A, B, C])
    assert r.status_code == 200
    body = r.json()
    assert body["message"] == "2 numbers accepted for delivery."
    assert [(row["mobile"], row["customid"]) for row in body["data"]] == [(A, "c-0"), (C, "c-2")]
    assert [m["mobile"] for m in emu.messages()] == [A, C]  # not stored, so never in sms/status
    assert credits(client) == before - 2  # and not charged
    group = client.get("sms/status", params={"group_id": body["group_id"]}).json()
    assert group["meta"]["total"] == 2


def test_a_batch_of_suppressed_numbers_only_accepts_nothing(emu: Emulator, client: Client) -> None:
    emu.configure(suppressed_numbers=[A, "+" + B])  # a leading + is accepted and dropped
    r = batch(client, [A, B])
    assert r.status_code == 200
    assert (r.json()["message"], r.json()["data"]) == ("0 numbers accepted for delivery.", [])
    assert emu.messages() == []


def test_suppressed_numbers_in_send_and_bulk(emu: Emulator, client: Client) -> None:
    emu.configure(suppressed_numbers=[B])
    r = client.send(to=f"{A},{B}")
    assert r.status_code == 200
    assert [row["mobile"] for row in r.json()["data"]] == [A]
    assert client.send(to=B).json() == {
        "status": 200,
        "message": "0 numbers accepted for delivery.",
        "data": [],
    }
    files = {"file": ("numbers.txt", f"{A}\n{B}\n{C}\n".encode(), "text/plain")}
    r = client.post("sms/bulk", data={"message": "Bulk", "sender": "QIKBRY", "service": "T"}, files=files)
    assert r.json()["message"] == "2 numbers accepted for delivery."
    assert sorted(m["mobile"] for m in emu.messages()) == [A, A, C]


def test_refused_number_refuses_the_whole_batch_naming_the_node(emu: Emulator, client: Client) -> None:
    emu.configure(refused_numbers=[B, C])
    r = batch(client, [A, B, C])
    assert r.status_code == 422
    body = r.json()
    assert body["errors"] == {
        "nodes.1.to": ["The nodes.1.to number is blocked (series blocked)."],
        "nodes.2.to": ["The nodes.2.to number is blocked (series blocked)."],
    }
    assert body["message"] == "The nodes.1.to number is blocked (series blocked)."
    assert emu.messages() == []  # a 422 accepts nothing
    assert batch(client, [A]).status_code == 200


def test_refused_number_in_sms_send(emu: Emulator, client: Client) -> None:
    emu.configure(refused_numbers=[B])
    r = client.send(to=f"{A},{B}")
    assert r.status_code == 422
    assert list(r.json()["errors"]) == ["to"]
    assert emu.messages() == []


def test_refusal_that_names_no_node(emu: Emulator, client: Client) -> None:
    emu.configure(refused_numbers=[C], refusal_names_node=False)
    r = batch(client, [A, B, C])
    assert r.status_code == 422
    assert r.json() == {"status": "ERROR", "code": 422, "message": "The request contains a blocked number."}
    assert emu.messages() == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("suppressed_numbers", ["91987654321a"]),
        ("refused_numbers", [919876543210.0]),
        ("refused_numbers", {"a": 1}),
        ("refusal_names_node", "no"),
    ],
)
def test_bad_values_are_refused(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        Emulator(EmulatorConfig(**{field: value}))


def test_config_api_sets_them(emu: Emulator, client: Client) -> None:
    r = client.control("POST", "config", json={"suppressed_numbers": f"{A},+{B}", "refused_numbers": [C]})
    assert r.status_code == 200, r.text
    served = client.control("GET", "config").json()["config"]
    assert (served["suppressed_numbers"], served["refused_numbers"]) == ([A, B], [C])


def test_cli_flags() -> None:
    args = build_parser().parse_args(
        ["--suppressed-numbers", f"{A},{B}", "--refused-numbers", C, "--refusal-without-node"]
    )
    config = config_from_args(args)
    assert (config.suppressed_numbers, config.refused_numbers, config.refusal_names_node) == (
        [A, B],
        [C],
        False,
    )
