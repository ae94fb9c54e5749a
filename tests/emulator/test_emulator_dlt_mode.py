"""DLT mode: sends on an Indian DLT route that carry a template_id (or are sent by template) get the final
statuses a network gives a text that does not fit its registered template (reference 6.1), over HTTP."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow_qikberry.emulator import Emulator
    from tests.emulator.conftest import Client, Receiver

OTP_ID = "1107000000000000001"
BODY = "Dear {{name}}, your OTP is {{otp}}.\nDo not share it. -Acme"
GOOD = "Dear Asha, your OTP is 482913.\nDo not share it. -Acme"
SEEDS: dict[str, Any] = {
    "senders": [
        {"name": "ACMEIN", "service": "T", "country_code": "IN", "entity_id": "1101", "entity_name": "Acme"},
        {"name": "OTHERS", "service": "T", "country_code": "IN", "entity_id": "1101", "entity_name": "Acme"},
        {
            "name": "PENDNG",
            "service": "T",
            "country_code": "IN",
            "entity_id": "1101",
            "entity_name": "Acme",
            "status": 0,
        },
        {"name": "ABROAD", "service": "T", "country_code": "GB"},
    ],
    "templates": [
        {"sender": "ACMEIN", "name": "otp", "body": BODY, "template_id": OTP_ID, "type": "T"},
        {
            "sender": "ACMEIN",
            "name": "old",
            "body": "Old {{x}}",
            "template_id": "1107000000000000009",
            "type": "T",
            "status": 0,
        },
        {
            "sender": "PENDNG",
            "name": "pending",
            "body": "Hi {{x}}",
            "template_id": "1107000000000000003",
            "type": "T",
        },
        {"sender": "ABROAD", "name": "no-dlt-id", "body": "Hello {{x}}"},
    ],
}


@pytest.fixture
def dlt(emu: Emulator) -> Emulator:
    emu.configure(dlt_mode=True, **SEEDS)
    return emu


def flat(client: Client, message: str, **fields: Any) -> str:
    r = client.send(
        message=message,
        sender=fields.pop("sender", "ACMEIN"),
        template_id=fields.pop("template_id", OTP_ID),
        **fields,
    )
    assert r.status_code == 200, r.text  # accepted at send time: the network rejects later
    return str(r.json()["data"][0]["id"])


def final(client: Client, emu: Emulator, message_id: str) -> str:
    emu.flush_dlrs()
    [row] = client.get("sms/status", params={"id": message_id}).json()["data"]
    return str(row["status"])


def reason(emu: Emulator, message_id: str) -> str:
    [msg] = [m for m in emu.messages() if m["id"] == message_id]
    return str(msg["dlt_reason"])


def test_off_by_default(client: Client, emu: Emulator) -> None:
    emu.configure(**SEEDS)
    assert emu.config.dlt_mode is False
    assert final(client, emu, flat(client, "anything at all")) == "DELIVRD"


def test_a_matching_text_is_delivered(client: Client, dlt: Emulator) -> None:
    assert final(client, dlt, flat(client, GOOD)) == "DELIVRD"
    assert (
        final(client, dlt, flat(client, GOOD.replace("\n", "\r\n"))) == "DELIVRD"
    )  # line endings normalised
    assert final(client, dlt, flat(client, GOOD, sender="acmein")) == "DELIVRD"  # sender case ignored


def test_one_changed_fixed_word_is_rejected(client: Client, dlt: Emulator) -> None:
    message_id = flat(client, GOOD.replace("your OTP", "your code"))
    assert final(client, dlt, message_id) == "DLT-REJECTED"
    assert "', your OTP is '" in reason(dlt, message_id)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(GOOD.replace("Dear", "dear"), id="case"),
        pytest.param(GOOD.replace("OTP is", "OTP  is"), id="extra space"),
        pytest.param(GOOD + " ", id="trailing space"),
        pytest.param(GOOD.replace("\n", " "), id="line break as space"),
        pytest.param(GOOD.replace("Asha", "Asha\nRao"), id="line break in a variable"),
    ],
)
def test_fixed_text_is_compared_exactly(client: Client, dlt: Emulator, text: str) -> None:
    assert final(client, dlt, flat(client, text)) == "DLT-REJECTED"


def test_variable_limit_is_30_characters(client: Client, dlt: Emulator) -> None:
    at_limit = flat(client, GOOD.replace("Asha", "A" * 30))
    over = flat(client, GOOD.replace("Asha", "A" * 31))
    empty = flat(client, GOOD.replace("Asha", ""))
    assert final(client, dlt, at_limit) == "DELIVRD"
    assert final(client, dlt, over) == "DLT-TM-VAR-EXECEED"  # sic: the API's spelling
    assert final(client, dlt, empty) == "DELIVRD"
    assert "30 characters" in reason(dlt, over)


def test_the_variable_limit_is_configurable(client: Client, dlt: Emulator) -> None:
    dlt.configure(dlt_variable_max_chars=3)
    assert final(client, dlt, flat(client, GOOD)) == "DLT-TM-VAR-EXECEED"


def test_unknown_template_id(client: Client, dlt: Emulator) -> None:
    message_id = flat(client, GOOD, template_id="1107999999999999999")
    assert final(client, dlt, message_id) == "DLT-INV-TM-ID"
    assert "not registered" in reason(dlt, message_id)


def test_inactive_template(client: Client, dlt: Emulator) -> None:
    assert final(client, dlt, flat(client, "Old x", template_id="1107000000000000009")) == "DLT-TM-INACTIVE"


def test_template_made_inactive_through_the_api(client: Client, dlt: Emulator) -> None:
    [otp] = [t for t in client.get("sms/templates").json()["data"] if t["alias"] == "otp"]
    client.patch(f"sms/templates/{otp['id']}", json={"status": 0})
    assert final(client, dlt, flat(client, GOOD)) == "DLT-TM-INACTIVE"


def test_wrong_sender(client: Client, dlt: Emulator) -> None:
    message_id = flat(client, GOOD, sender="OTHERS")
    assert final(client, dlt, message_id) == "DLT-SENDER-NOT-REG-TM"
    assert final(client, dlt, flat(client, GOOD, sender="NOTREG")) == "DLT-SENDER-NOT-REG-TM"


def test_sender_not_approved(client: Client, dlt: Emulator) -> None:
    message_id = flat(client, "Hi there", sender="PENDNG", template_id="1107000000000000003")
    assert final(client, dlt, message_id) == "DLT-HEADER-INACTIVE"


def test_the_first_failing_rule_wins(client: Client, dlt: Emulator) -> None:
    # Inactive template, wrong sender and wrong text at once: the template check comes first.
    assert final(client, dlt, flat(client, "nope", template_id="1107000000000000009", sender="OTHERS")) == (
        "DLT-TM-INACTIVE"
    )
    assert final(client, dlt, flat(client, "nope", sender="OTHERS")) == "DLT-SENDER-NOT-REG-TM"


def test_sends_without_template_id_or_off_the_dlt_routes_are_not_checked(
    client: Client, dlt: Emulator
) -> None:
    r = client.send(message="free text", sender="ACMEIN")
    assert final(client, dlt, r.json()["data"][0]["id"]) == "DELIVRD"
    assert final(client, dlt, flat(client, "free text 2", service="G")) == "DELIVRD"
    dlt.configure(dlt_services=["P"])
    assert final(client, dlt, flat(client, "free text 3")) == "DELIVRD"


def test_checked_at_submission(client: Client, dlt: Emulator) -> None:
    message_id = flat(client, "changed later")
    [otp] = [t for t in client.get("sms/templates").json()["data"] if t["alias"] == "otp"]
    client.put(f"sms/templates/{otp['id']}", json={"body": "changed {{x}}"})
    assert final(client, dlt, message_id) == "DLT-REJECTED"


def test_dlt_statuses_come_before_duplicate_and_outcome_rules(client: Client, dlt: Emulator) -> None:
    assert final(client, dlt, flat(client, "bad", to="919876543999")) == "DLT-REJECTED"
    flat(client, "bad twice", to="919876543210")
    assert final(client, dlt, flat(client, "bad twice", to="919876543210")) == "DLT-REJECTED"


def test_rejected_messages_are_charged_and_pushed(client: Client, dlt: Emulator, receiver: Receiver) -> None:
    hook = client.post("developer/webhooks", json={"name": "d", "uri": receiver.url}).json()["data"]
    message_id = flat(client, "x" * 200, webhook_id=hook["id"])
    dlt.flush_dlrs()
    [call] = receiver.wait_for(1)
    assert (call["body"]["id"], call["body"]["status"], call["body"]["credits"]) == (
        message_id,
        "DLT-REJECTED",
        "2.0000",
    )
    balance = client.get("finance/balance", params={"service": "T"}).json()["data"][0]["credits"]
    assert balance == 10000 - 2


def test_send_json_nodes_are_checked_one_by_one(client: Client, dlt: Emulator) -> None:
    root = {"sender": "ACMEIN", "service": "T", "template_id": OTP_ID, "message": GOOD}
    nodes = [
        {"to": "919876543210"},
        {"to": "919876543211", "message": GOOD.replace("Asha", "B" * 31)},
        {"to": "919876543212", "message": "Dear Asha, your PIN is 1.\nDo not share it. -Acme"},
        {"to": "919876543213", "template_id": "1107999999999999999"},
    ]
    rows = client.post("sms/send/json", json={"root": root, "nodes": nodes}).json()["data"]
    dlt.flush_dlrs()
    statuses = [client.get("sms/status", params={"id": r["id"]}).json()["data"][0]["status"] for r in rows]
    assert statuses == ["DELIVRD", "DLT-TM-VAR-EXECEED", "DLT-REJECTED", "DLT-INV-TM-ID"]


def test_bulk_uploads_are_checked(client: Client, dlt: Emulator) -> None:
    fields = {
        "message": "Dear Asha, your OTP is 1.",
        "sender": "ACMEIN",
        "service": "T",
        "template_id": OTP_ID,
    }
    r = client.post(
        "sms/bulk", data=fields, files={"file": ("n.txt", b"919876543210\n919876543211\n", "text/plain")}
    )
    assert r.status_code == 200
    dlt.flush_dlrs()
    assert [m["status"] for m in dlt.messages()] == ["DLT-REJECTED", "DLT-REJECTED"]


def test_send_by_template_is_checked(client: Client, dlt: Emulator) -> None:
    def by_template(alias: str, data: dict[str, str]) -> str:
        r = client.post(
            "sms/send/template", json={"alias": alias, "recipient": {"to": ["919876543210"]}, "data": data}
        )
        assert r.status_code == 200, r.text
        return str(r.json()["data"][0]["id"])

    ok = by_template("otp", {"name": "Asha", "otp": "1"})
    long = by_template("otp", {"name": "Asha " * 7, "otp": "1"})
    broken = by_template("otp", {"name": "Asha\nRao", "otp": "1"})
    inactive = by_template("old", {"x": "1"})
    no_dlt_id = by_template("no-dlt-id", {"x": "1"})
    assert [final(client, dlt, i) for i in (ok, long, broken, inactive, no_dlt_id)] == [
        "DELIVRD",
        "DLT-TM-VAR-EXECEED",
        "DLT-REJECTED",
        "DLT-TM-INACTIVE",
        "DLT-INV-TM-ID",
    ]


def test_inspection_shows_the_dlt_verdict(client: Client, dlt: Emulator) -> None:
    flat(client, GOOD)
    flat(client, "nope")
    first, second = dlt.messages()
    assert (first["dlt_status"], first["dlt_reason"]) == (None, "")
    assert second["dlt_status"] == "DLT-REJECTED"
    assert second["dlt_reason"]
