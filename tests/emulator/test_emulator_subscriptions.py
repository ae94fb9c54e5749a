"""``developer/subscriptions`` (reference 4.14) and where a delivery report goes: the send's ``webhook_id``
or the ``sms:message:status`` subscriptions (precedence configurable, ``webhook_routing``)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow_qikberry.emulator import Emulator
    from tests.emulator.conftest import Client, Receiver

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.000000Z$")


def webhook(client: Client, uri: str, **fields: Any) -> str:
    r = client.post("developer/webhooks", json={"name": "DLR", "uri": uri, **fields})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["status"] == 1, r.text
    return str(r.json()["data"]["id"])


def subscribe(client: Client, webhook_id: str, event: str = "sms:message:status") -> dict[str, Any]:
    r = client.post(
        "developer/subscriptions", json={"event": event, "identity": "all", "webhook_id": webhook_id}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["code"], body["message"]) == ("OK", 200, "Subscription Saved Successfully")
    return body["data"]


def test_create_get_list_delete_shapes(client: Client, receiver: Receiver) -> None:
    hook_id = webhook(client, receiver.url)
    sub = subscribe(client, hook_id)
    assert list(sub) == ["id", "event", "identity", "payload", "webhook_id", "created_at"]
    assert (sub["event"], sub["identity"], sub["payload"], sub["webhook_id"]) == (
        "sms:message:status",
        "all",
        [],
        hook_id,
    )
    assert isinstance(sub["id"], int)
    assert ISO_Z.match(sub["created_at"])
    other = subscribe(client, hook_id, "sms:unsubscription")
    assert other["id"] == sub["id"] + 1
    assert client.get(f"developer/subscriptions/{sub['id']}").json() == {
        "status": "OK",
        "code": 200,
        "message": "OK",
        "data": sub,
    }
    listed = client.get("developer/subscriptions").json()
    assert [s["id"] for s in listed["data"]] == [sub["id"], other["id"]]
    assert listed["meta"]["per_page"] == 15
    assert listed["meta"]["total"] == 2
    deleted = client.delete(f"developer/subscriptions/{sub['id']}")
    assert deleted.json() == {"status": "OK", "code": 200, "message": "Deleted Successfully", "data": []}
    for path in (f"developer/subscriptions/{sub['id']}", "developer/subscriptions/nope"):
        r = client.get(path)
        assert r.status_code == 404
        assert r.json()["message"] == "Not Found."
    assert client.delete(f"developer/subscriptions/{sub['id']}").status_code == 404


def test_list_pages_by_15(client: Client, receiver: Receiver) -> None:
    hook_id = webhook(client, receiver.url)
    ids = [subscribe(client, hook_id)["id"] for _ in range(17)]
    second = client.get("developer/subscriptions", params={"page": 2}).json()
    assert [s["id"] for s in second["data"]] == ids[15:]
    assert second["meta"]["last_page"] == 2
    assert second["links"]["prev"].endswith("?page=1")


def test_create_validation(client: Client, receiver: Receiver) -> None:
    r = client.post("developer/subscriptions", json={})
    assert r.status_code == 422
    assert list(r.json()["errors"]) == ["event", "identity", "webhook_id"]
    hook_id = webhook(client, receiver.url)
    r = client.post(
        "developer/subscriptions", json={"event": "sms:message:sent", "identity": "some", "webhook_id": "x"}
    )
    assert r.json()["errors"] == {
        "event": ["The selected event is invalid."],
        "identity": ["The selected identity is invalid."],
        "webhook_id": ["The selected webhook id is invalid."],
    }
    assert subscribe(client, hook_id)["webhook_id"] == hook_id


def test_a_subscription_routes_reports_of_sends_without_webhook_id(
    client: Client, emu: Emulator, receiver: Receiver
) -> None:
    subscribe(client, webhook(client, receiver.url, secret="sub-secret"))
    row = client.send(custom="c1").json()["data"][0]
    emu.flush_dlrs()
    [call] = receiver.wait_for(1)
    assert call["body"]["id"] == row["id"]
    assert call["body"]["cid"] == "c1"
    assert call["headers"]["Authorization"] == "Bearer sub-secret"
    [attempt] = emu.webhook_deliveries()
    assert (attempt["source"], attempt["outcome"]) == ("subscription", "delivered")


def test_subscriptions_are_read_when_the_report_is_produced(
    client: Client, emu: Emulator, receiver: Receiver
) -> None:
    hook_id = webhook(client, receiver.url)
    client.send(to="919876543210")  # sent before any subscription
    sub = subscribe(client, hook_id)
    emu.flush_dlrs()
    assert len(receiver.wait_for(1)) == 1
    client.delete(f"developer/subscriptions/{sub['id']}")
    client.send(to="919876543211")
    emu.flush_dlrs()
    assert len(receiver.calls) == 1


def test_the_unsubscription_event_routes_no_delivery_report(
    client: Client, emu: Emulator, receiver: Receiver
) -> None:
    subscribe(client, webhook(client, receiver.url), "sms:unsubscription")
    client.send()
    emu.flush_dlrs()
    assert receiver.calls == []
    assert emu.webhook_deliveries() == []


def test_every_subscribed_webhook_gets_the_report_once(
    client: Client, emu: Emulator, receiver: Receiver
) -> None:
    first = webhook(client, receiver.url + "?n=1")
    second = webhook(client, receiver.url + "?n=2")
    subscribe(client, first)
    subscribe(client, first)  # a second subscription of the same webhook adds no second push
    subscribe(client, second)
    client.send()
    emu.flush_dlrs()
    calls = receiver.wait_for(2)
    assert sorted(call["path"] for call in calls) == ["/dlr?n=1", "/dlr?n=2"]
    emu.advance_clock(1)
    assert len(receiver.calls) == 2


@pytest.mark.parametrize(
    ("routing", "expected"),
    [("webhook_id_first", ["/dlr?to=named"]), ("both", ["/dlr?to=named", "/dlr?to=subscribed"])],
)
def test_webhook_id_precedence(
    client: Client, emu: Emulator, receiver: Receiver, routing: str, expected: list[str]
) -> None:
    emu.configure(webhook_routing=routing)
    named = webhook(client, receiver.url + "?to=named")
    subscribe(client, webhook(client, receiver.url + "?to=subscribed"))
    client.send(webhook_id=named)
    emu.flush_dlrs()
    calls = receiver.wait_for(len(expected))
    assert sorted(call["path"] for call in calls) == expected
    assert len(receiver.calls) == len(expected)


def test_both_routing_pushes_a_webhook_named_and_subscribed_once(
    client: Client, emu: Emulator, receiver: Receiver
) -> None:
    emu.configure(webhook_routing="both")
    hook_id = webhook(client, receiver.url)
    subscribe(client, hook_id)
    client.send(webhook_id=hook_id)
    emu.flush_dlrs()
    assert len(receiver.wait_for(1)) == 1
    assert [a["source"] for a in emu.webhook_deliveries()] == ["webhook_id"]


def test_a_named_inactive_webhook_wins_and_nothing_is_pushed(
    client: Client, emu: Emulator, receiver: Receiver
) -> None:
    # webhook_id_first: the send's webhook_id decides, even when that webhook was deleted meanwhile.
    named = webhook(client, receiver.url + "?to=named")
    subscribe(client, webhook(client, receiver.url + "?to=subscribed"))
    client.send(webhook_id=named)
    client.delete(f"developer/webhooks/{named}")
    emu.flush_dlrs()
    emu.advance_clock(1)
    assert receiver.calls == []
    [seen] = [h for h in emu.webhooks() if h["id"] == named]
    assert seen["deliveries"]["skipped_inactive"] == 1


def test_send_json_and_bulk_reports_follow_subscriptions(
    client: Client, emu: Emulator, receiver: Receiver
) -> None:
    subscribe(client, webhook(client, receiver.url))
    root = {"message": "m", "sender": "QIKBRY", "service": "T"}
    client.post(
        "sms/send/json", json={"root": root, "nodes": [{"to": "919876543210"}, {"to": "919876543211"}]}
    )
    client.post("sms/bulk", data=root, files={"file": ("n.txt", b"919876543212\n", "text/plain")})
    emu.flush_dlrs()
    calls = receiver.wait_for(3)
    assert sorted(call["body"]["mobile"] for call in calls) == [
        "919876543210",
        "919876543211",
        "919876543212",
    ]
