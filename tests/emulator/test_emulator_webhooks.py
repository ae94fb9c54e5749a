"""``developer/webhooks`` CRUD and delivery-report pushes (payload, Bearer secret, retries)."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_qikberry.emulator import Emulator
    from tests.emulator.conftest import Client, Receiver

HOOK_KEYS = ["id", "name", "uri", "secret", "verification_code", "status", "created_at", "updated_at"]
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.000000Z$")
TS = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


def create(client: Client, **fields: object) -> dict[str, object]:
    r = client.post("developer/webhooks", json={"name": "DLR", "uri": "http://127.0.0.1:9/dlr", **fields})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["code"], body["message"]) == ("OK", 200, "Created successfully")
    return body["data"]


def test_create_masks_secrets(client: Client, receiver: Receiver) -> None:
    hook = create(client, uri=receiver.url, secret="s3cr3t", token="validation-key")
    assert list(hook) == HOOK_KEYS
    assert hook["secret"] == "*****"
    assert hook["verification_code"] == "*****"
    assert hook["status"] == 1
    assert ISO_Z.match(str(hook["created_at"]))
    assert "s3cr3t" not in client.get("developer/webhooks").text


def test_timestamps_follow_the_emulator_clock(client: Client, emu: Emulator) -> None:
    emu.advance_clock(40 * 86400)
    hook = create(client)
    expected = emu.now().astimezone(timezone.utc)
    created = datetime.strptime(str(hook["created_at"]), "%Y-%m-%dT%H:%M:%S.000000Z")
    assert abs((created.replace(tzinfo=timezone.utc) - expected).total_seconds()) < 5
    emu.advance_clock(3600)
    updated = client.patch(f"developer/webhooks/{hook['id']}", json={"status": 0}).json()["data"]
    assert updated["created_at"] == hook["created_at"]
    later = datetime.strptime(str(updated["updated_at"]), "%Y-%m-%dT%H:%M:%S.000000Z")
    assert (later - created).total_seconds() >= 3600


def test_create_validation(client: Client) -> None:
    r = client.post("developer/webhooks", json={})
    assert r.status_code == 422
    assert list(r.json()["errors"]) == ["name", "uri"]
    r = client.post("developer/webhooks", json={"name": "x", "uri": "not a url"})
    assert r.json()["errors"] == {"uri": ["The uri must be a valid URL."]}
    r = client.post("developer/webhooks", json={"name": "x", "uri": "http://a.b/c", "status": 5})
    assert list(r.json()["errors"]) == ["status"]


def test_get_update_delete(client: Client) -> None:
    hook = create(client)
    got = client.get(f"developer/webhooks/{hook['id']}").json()
    assert got["data"] == hook
    updated = client.put(
        f"developer/webhooks/{hook['id']}", json={"name": "New", "uri": "https://e.x/h"}
    ).json()
    assert updated["message"] == "Updated successfully"
    assert (updated["data"]["name"], updated["data"]["uri"]) == ("New", "https://e.x/h")
    assert client.put(f"developer/webhooks/{hook['id']}", json={"name": "only"}).status_code == 422
    patched = client.patch(f"developer/webhooks/{hook['id']}", json={"status": 0}).json()["data"]
    assert (patched["name"], patched["status"]) == ("New", 0)
    deleted = client.delete(f"developer/webhooks/{hook['id']}")
    assert deleted.json() == {"status": "OK", "code": 200, "message": "Deleted successfully", "data": []}
    assert client.get(f"developer/webhooks/{hook['id']}").json()["data"]["status"] == 0  # soft delete
    for method in ("get", "put", "delete"):
        r = getattr(client, method)("developer/webhooks/no-such-id", json={"name": "a", "uri": "http://a.b"})
        assert r.status_code == 404
        assert r.json() == {"status": "ERROR", "code": 404, "message": "Not Found."}


def test_list_is_paginated_by_15(client: Client, emu: Emulator) -> None:
    for i in range(20):
        create(client, name=f"hook-{i}")
    first = client.get("developer/webhooks").json()
    assert len(first["data"]) == 15
    assert first["meta"]["per_page"] == 15
    assert first["meta"]["total"] == 20
    assert first["meta"]["last_page"] == 2
    assert first["meta"]["path"] == emu.base_url + "developer/webhooks"
    assert first["links"]["next"] == emu.base_url + "developer/webhooks?page=2"
    second = client.get("developer/webhooks", params={"page": 2}).json()
    assert [h["name"] for h in second["data"]] == [f"hook-{i}" for i in range(15, 20)]
    filtered = client.get("developer/webhooks", params={"filter[name]": "hook-1"}).json()
    assert sorted(h["name"] for h in filtered["data"]) == ["hook-1"] + [f"hook-{i}" for i in range(10, 20)]


def test_dlr_push_payload_and_secret(client: Client, emu: Emulator, receiver: Receiver) -> None:
    hook = create(client, uri=receiver.url, secret="hook-secret")
    row = client.send(webhook_id=hook["id"], custom="my-ref", message="a" * 200).json()["data"][0]
    assert receiver.calls == []
    emu.flush_dlrs()
    [call] = receiver.wait_for(1)
    assert call["headers"]["Authorization"] == "Bearer hook-secret"
    assert call["headers"]["Content-Type"] == "application/json"
    body = call["body"]
    assert list(body) == [
        "id",
        "mobile",
        "status",
        "credits",
        "units",
        "deliv_at",
        "sent_at",
        "submit_at",
        "deliv_time",
        "sent_time",
        "submit_time",
        "cid",
        "custom",
    ]
    assert (body["id"], body["mobile"], body["status"]) == (row["id"], "919876543210", "DELIVRD")
    assert (body["credits"], body["units"], body["cid"], body["custom"]) == ("2.0000", 2, "my-ref", "my-ref")
    for key in ("deliv_at", "sent_at", "submit_at"):
        assert isinstance(body[key], str)
        assert body[key].isdigit()
    for key in ("deliv_time", "sent_time", "submit_time"):
        assert TS.match(body[key])
    assert body["sent_time"] == row["submitted_at"]
    [attempt] = emu.webhook_deliveries()
    assert (attempt["ok"], attempt["status_code"], attempt["attempt"]) == (True, 200, 1)
    assert "hook-secret" not in str(emu.webhook_deliveries())
    assert emu.messages()[0]["webhook_attempts"][0]["ok"] is True


def test_send_json_and_bulk_push_with_webhook_id(client: Client, emu: Emulator, receiver: Receiver) -> None:
    hook = create(client, uri=receiver.url, secret="s")
    root = {"message": "m", "sender": "QIKBRY", "service": "T", "webhook_id": hook["id"]}
    rows = client.post(
        "sms/send/json", json={"root": root, "nodes": [{"to": "919876543210", "custom": "n1"}]}
    ).json()["data"]
    r = client.post(
        "sms/bulk",
        data={"message": "b", "sender": "QIKBRY", "service": "T", "webhook_id": hook["id"]},
        files={"file": ("n.txt", b"919876543999\n", "text/plain")},
    )
    assert r.status_code == 200
    bulk_id = emu.messages()[1]["id"]
    emu.flush_dlrs()
    calls = receiver.wait_for(2)
    by_id = {call["body"]["id"]: call for call in calls}
    assert set(by_id) == {rows[0]["id"], bulk_id}
    assert by_id[rows[0]["id"]]["body"]["custom"] == "n1"
    assert by_id[bulk_id]["body"]["status"] == "UNDELIV"
    assert {call["headers"]["Authorization"] for call in calls} == {"Bearer s"}


def test_no_authorization_header_without_secret(client: Client, emu: Emulator, receiver: Receiver) -> None:
    hook = create(client, uri=receiver.url)
    client.send(webhook_id=hook["id"], to="919876543999")
    emu.flush_dlrs()
    [call] = receiver.wait_for(1)
    assert "Authorization" not in call["headers"]
    assert call["body"]["status"] == "UNDELIV"


def test_failed_push_is_retried_then_dropped(client: Client, emu: Emulator, receiver: Receiver) -> None:
    emu.configure(webhook_retries=2, webhook_retry_interval=60)
    receiver.statuses = [500, 201, 503]  # 201 is not success either: only 200/202 are
    hook = create(client, uri=receiver.url)
    client.send(webhook_id=hook["id"])
    emu.flush_dlrs()
    assert len(receiver.wait_for(1)) == 1
    emu.advance_clock(30)
    assert len(receiver.calls) == 1  # not yet due
    emu.advance_clock(30)
    assert len(receiver.wait_for(2)) == 2
    emu.advance_clock(60)
    assert len(receiver.wait_for(3)) == 3
    emu.advance_clock(600)
    assert len(receiver.calls) == 3  # 1 + 2 retries, then dropped
    attempts = emu.webhook_deliveries()
    assert [(a["attempt"], a["status_code"], a["ok"]) for a in attempts] == [
        (1, 500, False),
        (2, 201, False),
        (3, 503, False),
    ]


def test_retry_succeeds_with_202(client: Client, emu: Emulator, receiver: Receiver) -> None:
    emu.configure(webhook_retry_interval=5)
    receiver.statuses = [500, 202]
    hook = create(client, uri=receiver.url)
    client.send(webhook_id=hook["id"])
    emu.flush_dlrs()
    emu.advance_clock(5)
    emu.advance_clock(3600)
    assert [a["ok"] for a in emu.webhook_deliveries()] == [False, True]
    assert len(receiver.calls) == 2


def test_unreachable_receiver_is_recorded(client: Client, emu: Emulator) -> None:
    # Without the challenge a webhook on a dead port stays active, so the push is attempted.
    emu.configure(webhook_retries=0, webhook_verification="off")
    hook = create(client, uri="http://127.0.0.1:9/unreachable")
    client.send(webhook_id=hook["id"])
    emu.flush_dlrs()
    [attempt] = emu.webhook_deliveries()
    assert attempt["ok"] is False
    assert attempt["status_code"] is None
    assert attempt["error"]


def test_deleted_webhook_receives_nothing(client: Client, emu: Emulator, receiver: Receiver) -> None:
    hook = create(client, uri=receiver.url)
    client.send(webhook_id=hook["id"])
    client.delete(f"developer/webhooks/{hook['id']}")
    emu.flush_dlrs()
    assert receiver.calls == []
    assert emu.webhook_deliveries() == []
