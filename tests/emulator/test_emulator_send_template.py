"""``sms/send/template`` (reference 4.6): a stored template by alias or id, rendered with ``data``; the
messages are stored like any other (status by id, group and ``cid`` = ``foreign_id``) and pushed."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow_qikberry.emulator import Emulator
    from tests.emulator.conftest import Client, Receiver

TS = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
OTP_BODY = "Dear {{name}}, your OTP is {{otp}}. Valid for {{mins}} minutes. -Acme"
SEEDS: dict[str, Any] = {
    "senders": [
        {"name": "ACMEIN", "service": "T", "country_code": "IN", "entity_id": "1101", "entity_name": "Acme"},
        {"name": "ACMEPR", "service": "P", "country_code": "IN", "entity_id": "1101", "entity_name": "Acme"},
    ],
    "templates": [
        {
            "sender": "ACMEIN",
            "name": "otp",
            "body": OTP_BODY,
            "template_id": "1107000000000000001",
            "type": "T",
        },
        {
            "sender": "ACMEPR",
            "name": "sale",
            "body": "Sale! {{pct}} off ₹ today",
            "template_id": "1107000000000000002",
            "type": "P",
        },
    ],
}
DATA = {"name": "Asha", "otp": "482913", "mins": 10}


@pytest.fixture
def seeded(emu: Emulator) -> Emulator:
    emu.configure(**SEEDS)
    return emu


def send(client: Client, **fields: Any) -> Any:
    body = {"alias": "otp", "recipient": {"to": ["919876543210"]}, "data": DATA, **fields}
    return client.post("sms/send/template", json={k: v for k, v in body.items() if v is not None})


def test_response_shape(client: Client, seeded: Emulator) -> None:
    r = send(client, recipient={"to": ["919876543210", "919876543211"]}, meta={"foreign_id": "order-17"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["status", "message", "data"]
    assert (body["status"], body["message"]) == ("OK", "Message(s) Queued successfully")
    first, second = body["data"]
    assert list(first) == ["id", "channel", "from", "to", "credits", "created_at", "status", "foreign_id"]
    group = first["id"].split(":")[0]
    assert (first["id"], second["id"]) == (f"{group}:1", f"{group}:2")
    assert (first["channel"], first["from"], first["to"], second["to"]) == (
        "sms",
        "ACMEIN",
        "919876543210",
        "919876543211",
    )
    assert first["credits"] == "1"
    assert isinstance(first["credits"], str)
    assert TS.match(first["created_at"])
    assert first["status"] == "AWAITING-DLR"
    assert first["foreign_id"] == "order-17"


def test_renders_the_body_and_stores_the_message(client: Client, seeded: Emulator) -> None:
    row = send(client, meta={"foreign_id": "order-17", "tags": ["otp"], "flash": 1}).json()["data"][0]
    [msg] = seeded.messages()
    assert msg["text"] == "Dear Asha, your OTP is 482913. Valid for 10 minutes. -Acme"
    assert (msg["sender"], msg["service"], msg["template_id"], msg["endpoint"]) == (
        "ACMEIN",
        "T",
        "1107000000000000001",
        "sms/send/template",
    )
    assert (msg["custom"], msg["tags"], msg["flash"], msg["id"]) == ("order-17", ["otp"], 1, row["id"])
    assert msg["template"] == seeded.messages()[0]["template"]
    assert msg["template"]
    by_cid = client.get("sms/status", params={"cid": "order-17"}).json()["data"]
    assert [r["id"] for r in by_cid] == [row["id"]]
    assert by_cid[0]["custom"] == "order-17"
    assert by_cid[0]["length"] == len(msg["text"])
    by_group = client.get("sms/status", params={"group_id": row["id"].split(":")[0]}).json()
    assert by_group["meta"]["total"] == 1


def test_by_id_and_id_wins_over_alias(client: Client, seeded: Emulator) -> None:
    templates = {t["alias"]: t for t in client.get("sms/templates").json()["data"]}
    r = send(client, alias="otp", id=templates["sale"]["id"], data={"pct": "20%"})
    assert r.status_code == 200
    assert r.json()["data"][0]["from"] == "ACMEPR"
    assert seeded.messages()[0]["text"] == "Sale! 20% off ₹ today"


def test_units_are_measured_on_the_rendered_text(client: Client, seeded: Emulator) -> None:
    long_name = "A" * 130  # the rendered text passes 160 GSM characters: 2 units
    row = send(client, data={**DATA, "name": long_name}).json()["data"][0]
    assert row["credits"] == "2"
    [msg] = seeded.messages()
    assert (msg["units"], msg["encoding"]) == (2, "GSM")
    unicode_row = send(client, alias="sale", data={"pct": "20%"}).json()["data"][0]
    assert unicode_row["credits"] == "1"
    assert seeded.messages()[1]["encoding"] == "UCS2"  # the template's ₹ makes it Unicode
    balance = client.get("finance/balance", params={"service": "T"}).json()["data"][0]["credits"]
    assert balance == 10000 - 2


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"alias": "nope"}, ["alias"]),
        ({"alias": None, "id": "00000000-0000-0000-0000-000000000000"}, ["id"]),
        ({"alias": None}, ["alias"]),
        ({"data": {"name": "Asha"}}, ["data.otp", "data.mins"]),
        ({"data": {"name": "Asha", "otp": " ", "mins": 5}}, ["data.otp"]),
        ({"data": {"name": "Asha", "otp": ["1"], "mins": 5}}, ["data.otp"]),
        ({"data": "name=Asha"}, ["data"]),
        ({"recipient": {"to": []}}, ["recipient.to"]),
        ({"recipient": {"to": ["12"]}}, ["recipient.to"]),
        ({"recipient": {"group_id": "segment-1"}}, ["recipient.group_id"]),
        ({"recipient": "919876543210"}, ["recipient"]),
        ({"meta": {"webhook_id": "nope"}}, ["meta.webhook_id"]),
        ({"meta": {"tags": ["a", "b", "c", "d"]}}, ["meta.tags"]),
        ({"meta": {"flash": 3}}, ["meta.flash"]),
        ({"meta": "x"}, ["meta"]),
    ],
)
def test_errors_name_the_field(
    client: Client, seeded: Emulator, fields: dict[str, Any], errors: list[str]
) -> None:
    r = send(client, **fields)
    assert r.status_code == 422, r.text
    assert r.json()["status"] == "ERROR"
    assert list(r.json()["errors"]) == errors
    assert seeded.messages() == []


def test_rendered_text_over_the_limit_is_refused(client: Client, seeded: Emulator) -> None:
    seeded.configure(max_message_chars=80)
    r = send(client, data={**DATA, "name": "N" * 40})
    assert r.status_code == 422
    assert list(r.json()["errors"]) == ["data"]


def test_extra_data_is_ignored_and_values_are_inserted_as_given(client: Client, seeded: Emulator) -> None:
    send(client, data={**DATA, "name": " Asha  Rao", "unused": "x"})
    assert seeded.messages()[0]["text"].startswith("Dear  Asha  Rao, your OTP")


def test_suppressed_numbers_are_left_out(client: Client, seeded: Emulator) -> None:
    seeded.configure(suppressed_numbers=["919876543211"])
    rows = send(client, recipient={"to": ["919876543210", "919876543211"]}).json()["data"]
    assert [r["to"] for r in rows] == ["919876543210"]


def test_insufficient_balance(client: Client, seeded: Emulator) -> None:
    seeded.configure(credits={"T": 0})
    r = send(client)
    assert r.status_code == 422
    assert r.json()["message"] == "Insufficient balance."


def test_meta_webhook_id_gets_the_report_with_the_foreign_id(
    client: Client, seeded: Emulator, receiver: Receiver
) -> None:
    hook = client.post("developer/webhooks", json={"name": "d", "uri": receiver.url}).json()["data"]
    row = send(client, meta={"webhook_id": hook["id"], "foreign_id": "order-9"}).json()["data"][0]
    seeded.flush_dlrs()
    [call] = receiver.wait_for(1)
    body = call["body"]
    assert (body["id"], body["status"], body["cid"], body["custom"], body["credits"]) == (
        row["id"],
        "DELIVRD",
        "order-9",
        "order-9",
        "1.0000",
    )


def test_recipient_to_as_a_comma_string(client: Client, seeded: Emulator) -> None:
    rows = send(client, recipient={"to": "919876543210,919876543211"}).json()["data"]
    assert len(rows) == 2
