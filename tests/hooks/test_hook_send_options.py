"""Every option of send_sms / send_batch reaches the server, and batch nodes carry their own overrides.

Assertions read what the emulator stored (``emulator.messages()``); where the emulator keeps no trace of an
option (``max_units`` only bounds a text), the JSON body the hook put on the wire is read instead.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from airflow_qikberry.exceptions import QikberryValidationError
from airflow_qikberry.hooks.qikberry import QikberryHook
from tests.helpers import TEST_TOKEN, SentRequests, Sleeps, api_counts, count

A, B, C = "919876543210", "919876543211", "919876543212"
KOLKATA = ZoneInfo("Asia/Kolkata")
TEMPLATE, ENTITY = "1107160000000012345", "1101160000000012345"


@pytest.fixture
def hook(qikberry_conn: str, emulator: Any) -> QikberryHook:
    # Nothing becomes final (and no DLR is pushed to a webhook) while a test runs.
    emulator.configure(dlr_delay_seconds=3600)
    hook = QikberryHook(qikberry_conn_id=qikberry_conn, clock=Sleeps())
    return hook


def create_webhook(emulator: Any) -> str:
    """A webhook registered on the emulator (it refuses sends naming an unknown webhook_id)."""
    response = requests.post(
        emulator.base_url + "developer/webhooks",
        headers={"Authorization": f"Bearer {TEST_TOKEN}", "Accept": "application/json"},
        json={"name": "dlr", "uri": "http://127.0.0.1:9/dlr"},
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["data"]["id"])


def in_a_day() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=1)


def api_wall_time(when: datetime) -> str:
    return when.astimezone(KOLKATA).strftime("%Y-%m-%d %H:%M:%S")


def by_mobile(emulator: Any) -> dict[str, dict[str, Any]]:
    return {m["mobile"]: m for m in emulator.messages()}


def test_send_sms_options_reach_the_server(hook: QikberryHook, emulator: Any) -> None:
    webhook = create_webhook(emulator)
    wire = SentRequests.on(hook.session)
    when = in_a_day().astimezone(ZoneInfo("Europe/London"))  # any zone: the API gets its own wall time
    sent = hook.send_sms(
        A,
        "Your OTP is 123456",
        sender="ALERTS",
        service="P",
        template_id=TEMPLATE,
        entity_id=ENTITY,
        schedule_at=when,
        encoding="ucs2",
        flash=True,
        custom_id="order-42",
        webhook_id=webhook,
        max_units=1,
        tags=["promo", "otp"],
    )
    assert sent[0].custom_id == "order-42"
    (stored,) = emulator.messages()
    assert {k: stored[k] for k in ("sender", "service", "template_id", "entity_id", "custom")} == {
        "sender": "ALERTS",
        "service": "P",
        "template_id": TEMPLATE,
        "entity_id": ENTITY,
        "custom": "order-42",
    }
    assert stored["scheduled_at"] == api_wall_time(when)
    assert (stored["type"], stored["encoding"]) == ("U", "UCS2")
    assert stored["flash"] == 1
    assert stored["webhook_id"] == webhook
    assert stored["tags"] == ["promo", "otp"]
    (body,) = wire.json_bodies("sms/send")
    assert body["max_units"] == 1
    assert body["time"] == api_wall_time(when)


def test_send_sms_defaults_send_no_optional_fields(hook: QikberryHook, emulator: Any) -> None:
    wire = SentRequests.on(hook.session)
    hook.send_sms(A, "plain")
    (stored,) = emulator.messages()
    assert stored["sender"] == "QIKBRY"
    assert stored["service"] == "T"
    assert stored["scheduled_at"] is None
    assert stored["flash"] == 0
    assert stored["webhook_id"] is None
    (body,) = wire.json_bodies("sms/send")
    assert set(body) == {"to", "message", "type", "sender", "service", "custom"}


@pytest.mark.parametrize(
    ("text", "encoding", "wire_type", "stored_encoding"),
    [
        ("Build finished", "auto", "N", "GSM"),
        ("नमस्ते", "auto", "U", "UCS2"),
        ("Build finished", "ucs2", "U", "UCS2"),
        ("Build finished", "gsm7", "N", "GSM"),
    ],
)
def test_send_sms_encoding_reaches_the_server(
    hook: QikberryHook, emulator: Any, text: str, encoding: Any, wire_type: str, stored_encoding: str
) -> None:
    hook.send_sms(A, text, encoding=encoding)
    (stored,) = emulator.messages()
    assert (stored["type"], stored["encoding"], stored["message"]) == (wire_type, stored_encoding, text)


def test_schedule_given_as_an_iso_string_is_sent_in_api_wall_time(hook: QikberryHook, emulator: Any) -> None:
    when = in_a_day()
    sent = hook.send_sms(A, "later", schedule_at=when.strftime("%Y-%m-%dT%H:%M:%SZ"))
    (stored,) = emulator.messages()
    assert stored["scheduled_at"] == api_wall_time(when)
    assert stored["status"] == "AWAITING-DLR"
    assert sent[0].status == "AWAITING-DLR"


def test_send_batch_root_options_reach_every_node(hook: QikberryHook, emulator: Any) -> None:
    webhook = create_webhook(emulator)
    when = in_a_day()
    result = hook.send_batch(
        [{"to": A}, {"to": B}],
        name="diwali",
        message="Sale ends tonight",
        sender="OFFERS",
        service="P",
        template_id=TEMPLATE,
        entity_id=ENTITY,
        schedule_at=when,
        flash=True,
        webhook_id=webhook,
        tags=["sale"],
    )
    assert result.accepted == 2
    assert result.group_id
    for stored in emulator.messages():
        assert stored["name"] == "diwali"
        assert stored["group_id"] == result.group_id
        assert (stored["sender"], stored["service"]) == ("OFFERS", "P")
        assert stored["message"] == "Sale ends tonight"
        assert (stored["template_id"], stored["entity_id"]) == (TEMPLATE, ENTITY)
        assert stored["scheduled_at"] == api_wall_time(when)
        assert stored["flash"] == 1
        assert stored["webhook_id"] == webhook
        assert stored["tags"] == ["sale"]


def test_batch_nodes_carry_their_own_encoding(hook: QikberryHook, emulator: Any) -> None:
    hook.send_batch(
        [
            {"to": A},
            {"to": B, "message": "नमस्ते"},
            {"to": C, "message": "Hi Ravi"},
            {"to": "919876543213", "message": "Hi Meena", "encoding": "ucs2"},
        ],
        message="Hello from Qikberry",
    )
    stored = by_mobile(emulator)
    # The Hindi node goes out as unicode under a GSM-7 root, instead of arriving as question marks.
    assert (stored[B]["type"], stored[B]["encoding"], stored[B]["message"]) == ("U", "UCS2", "नमस्ते")
    assert (stored[A]["type"], stored[A]["encoding"]) == ("N", "GSM")
    assert stored[A]["message"] == "Hello from Qikberry"
    assert (stored[C]["type"], stored[C]["encoding"]) == ("N", "GSM")
    assert (stored["919876543213"]["type"], stored["919876543213"]["encoding"]) == ("U", "UCS2")


def test_batch_node_under_a_unicode_root(hook: QikberryHook, emulator: Any) -> None:
    hook.send_batch([{"to": A}, {"to": B, "message": "Hi"}], message="नमस्ते सब")
    stored = by_mobile(emulator)
    assert (stored[A]["type"], stored[A]["message"]) == ("U", "नमस्ते सब")
    assert (stored[B]["type"], stored[B]["encoding"]) == ("N", "GSM")


def test_batch_node_overrides_reach_the_server(hook: QikberryHook, emulator: Any) -> None:
    node_template, node_entity = "1107160000000099999", "1101160000000099999"
    result = hook.send_batch(
        [
            {"to": A},
            {
                "to": B,
                "message": "x" * 200,  # 2 units: accepted only if the node's max_units (2) reaches the API
                "sender": "ALERTS",
                "template_id": node_template,
                "entity_id": node_entity,
                "flash": False,
                "max_units": 2,
                "tags": ["vip"],
                "custom_id": "node-b",
            },
        ],
        message="Short root text",
        sender="OFFERS",
        template_id=TEMPLATE,
        entity_id=ENTITY,
        flash=True,
        max_units=1,
    )
    assert [m.mobile for m in result.messages] == [A, B]
    stored = by_mobile(emulator)
    assert {k: stored[A][k] for k in ("sender", "template_id", "entity_id", "flash", "units", "tags")} == {
        "sender": "OFFERS",
        "template_id": TEMPLATE,
        "entity_id": ENTITY,
        "flash": 1,
        "units": 1,
        "tags": [],
    }
    assert {k: stored[B][k] for k in ("sender", "template_id", "entity_id", "flash", "units", "tags")} == {
        "sender": "ALERTS",
        "template_id": node_template,
        "entity_id": node_entity,
        "flash": 0,
        "units": 2,
        "tags": ["vip"],
    }
    assert stored[B]["custom"] == "node-b"
    assert count(emulator, "POST sms/send/json") == 1


@pytest.mark.parametrize(
    ("key", "value", "argument"),
    [
        ("service", "P", "service"),
        ("webhook_id", "3f1e0c1a-0000-4000-8000-000000000000", "webhook_id"),
        ("schedule_at", in_a_day(), "schedule_at"),
        ("time", "2030-01-01 10:00:00", "schedule_at"),
    ],
)
def test_batch_node_with_a_root_only_key_is_refused_before_any_request(
    hook: QikberryHook, emulator: Any, key: str, value: Any, argument: str
) -> None:
    with pytest.raises(QikberryValidationError) as info:
        hook.send_batch([{"to": A, "message": "ok"}, {"to": B, "message": "ok", key: value}])
    assert info.value.field == f"nodes[1].{key}"
    assert f"nodes[1].{key}" in info.value.message
    assert f"{argument} argument" in info.value.message
    assert api_counts(emulator) == {}
