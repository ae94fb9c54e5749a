"""The webhook verification challenge (reference 4.13): sent on creation and when a webhook is re-pointed or
re-activated; a webhook that fails it is saved inactive (or refused, or never challenged: options)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest

if TYPE_CHECKING:
    from airflow_qikberry.emulator import Emulator
    from tests.emulator.conftest import Client, Receiver

DEAD = "http://127.0.0.1:9/dlr"  # the discard port: connection refused


def create(client: Client, **fields: Any) -> dict[str, Any]:
    r = client.post("developer/webhooks", json={"name": "DLR", **fields})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def inspected(emu: Emulator, hook_id: str) -> dict[str, Any]:
    [hook] = [h for h in emu.webhooks() if h["id"] == hook_id]
    return hook


def test_challenge_is_sent_as_documented_and_passes(
    client: Client, emu: Emulator, receiver: Receiver
) -> None:
    hook = create(client, uri=receiver.url + "?app=x", secret="hook-secret", token="my-validation-key")
    assert hook["status"] == 1
    [call] = receiver.challenges
    target = urlsplit(call["path"])
    assert target.path == "/dlr"
    assert parse_qs(target.query) == {"app": ["x"], "token": ["my-validation-key"]}
    assert call["body"]["validation_key"] == "my-validation-key"
    assert isinstance(call["body"]["challenge"], str)
    assert len(call["body"]["challenge"]) >= 16
    assert call["headers"]["Authorization"] == "Bearer hook-secret"
    assert call["headers"]["Content-Type"] == "application/json"
    seen = inspected(emu, hook["id"])
    assert seen["verified"] is True
    assert seen["has_secret"] is True
    [check] = seen["verifications"]
    assert (check["ok"], check["status_code"], check["error"]) == (True, 200, None)
    # Neither the secret, the key nor the challenge is shown anywhere.
    shown = json.dumps(emu.webhooks()) + client.get(f"developer/webhooks/{hook['id']}").text
    for hidden in ("hook-secret", "my-validation-key", call["body"]["challenge"]):
        assert hidden not in shown


def test_each_challenge_is_a_new_random_value(client: Client, receiver: Receiver) -> None:
    create(client, uri=receiver.url)
    create(client, uri=receiver.url)
    first, second = receiver.challenges
    assert first["body"]["challenge"] != second["body"]["challenge"]


def test_without_token_the_platform_makes_up_the_validation_key(client: Client, receiver: Receiver) -> None:
    create(client, uri=receiver.url)
    [call] = receiver.challenges
    key = call["body"]["validation_key"]
    assert len(key) == 32
    assert parse_qs(urlsplit(call["path"]).query) == {"token": [key]}
    assert "Authorization" not in call["headers"]  # no secret, no Bearer


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param({"challenge": "not-what-was-sent"}, id="wrong value"),
        pytest.param({"other": 1}, id="no challenge key"),
        pytest.param(["challenge"], id="not an object"),
    ],
)
def test_a_wrong_answer_saves_the_webhook_inactive(
    client: Client, emu: Emulator, receiver: Receiver, answer: Any
) -> None:
    receiver.challenge_answer = answer
    hook = create(client, uri=receiver.url)
    assert hook["status"] == 0
    assert client.get(f"developer/webhooks/{hook['id']}").json()["data"]["status"] == 0
    seen = inspected(emu, hook["id"])
    assert seen["verified"] is False
    assert "challenge" in seen["verifications"][0]["error"]


def test_non_200_and_unreachable_receivers_fail_the_challenge(
    client: Client, emu: Emulator, receiver: Receiver
) -> None:
    receiver.answer_challenge = False  # it answers the challenge like any push: 202, empty body
    receiver.statuses = [202]
    hook = create(client, uri=receiver.url)
    assert hook["status"] == 0
    check = inspected(emu, hook["id"])["verifications"][0]
    assert (check["ok"], check["status_code"]) == (False, 202)
    dead = create(client, uri=DEAD)
    assert dead["status"] == 0
    check = inspected(emu, dead["id"])["verifications"][0]
    assert check["status_code"] is None
    assert check["error"]


def test_an_unverified_webhook_receives_no_reports(client: Client, emu: Emulator, receiver: Receiver) -> None:
    receiver.answer_challenge = False
    hook = create(client, uri=receiver.url)
    receiver.statuses = []
    client.send(webhook_id=hook["id"])  # a send may still name it: it exists
    emu.flush_dlrs()
    assert receiver.calls[1:] == []  # only the failed challenge reached it
    assert inspected(emu, hook["id"])["deliveries"]["skipped_inactive"] == 1


def test_reactivating_a_failed_webhook_challenges_again(
    client: Client, emu: Emulator, receiver: Receiver
) -> None:
    receiver.answer_challenge = False
    hook = create(client, uri=receiver.url)
    assert hook["status"] == 0
    receiver.answer_challenge = True
    restored = client.patch(f"developer/webhooks/{hook['id']}", json={"status": 1}).json()["data"]
    assert restored["status"] == 1
    assert [c["ok"] for c in inspected(emu, hook["id"])["verifications"]] == [False, True]


def test_a_verified_webhook_is_challenged_again_only_when_re_pointed(
    client: Client, emu: Emulator, receiver: Receiver
) -> None:
    hook = create(client, uri=receiver.url, secret="a")
    client.patch(f"developer/webhooks/{hook['id']}", json={"name": "renamed"})
    client.delete(f"developer/webhooks/{hook['id']}")  # soft delete ...
    restored = client.patch(f"developer/webhooks/{hook['id']}", json={"status": 1}).json()["data"]
    assert restored["status"] == 1  # ... and restore, without a new challenge: same uri, secret and key
    assert len(receiver.challenges) == 1
    moved = client.put(f"developer/webhooks/{hook['id']}", json={"name": "n", "uri": DEAD}).json()["data"]
    assert moved["status"] == 0  # the new uri did not answer
    assert len(receiver.challenges) == 1
    back = client.put(
        f"developer/webhooks/{hook['id']}", json={"name": "n", "uri": receiver.url, "status": 1}
    )
    assert back.json()["data"]["status"] == 1
    client.patch(f"developer/webhooks/{hook['id']}", json={"secret": "b"})
    assert len(receiver.challenges) == 3
    assert receiver.challenges[-1]["headers"]["Authorization"] == "Bearer b"


def test_creating_an_inactive_webhook_sends_no_challenge(
    client: Client, emu: Emulator, receiver: Receiver
) -> None:
    hook = create(client, uri=receiver.url, status=0)
    assert hook["status"] == 0
    assert receiver.challenges == []
    assert inspected(emu, hook["id"])["verified"] is None


def test_reject_mode_refuses_a_webhook_that_fails(client: Client, emu: Emulator, receiver: Receiver) -> None:
    emu.configure(webhook_verification="reject")
    r = client.post("developer/webhooks", json={"name": "x", "uri": DEAD})
    assert r.status_code == 422
    assert list(r.json()["errors"]) == ["uri"]
    assert "verification challenge" in r.json()["message"]
    assert client.get("developer/webhooks").json()["data"] == []
    assert create(client, uri=receiver.url)["status"] == 1


def test_off_mode_sends_no_challenge(client: Client, emu: Emulator, receiver: Receiver) -> None:
    emu.configure(webhook_verification="off")
    hook = create(client, uri=receiver.url)
    assert hook["status"] == 1
    assert receiver.challenges == []
    assert inspected(emu, hook["id"])["verified"] is None


def test_a_push_fault_can_fail_the_challenge(client: Client, emu: Emulator, receiver: Receiver) -> None:
    emu.set_push_faults([{"push": "challenge", "kind": "error", "status": 503, "times": 1}])
    assert create(client, uri=receiver.url)["status"] == 0
    assert receiver.challenges == []  # the fault stood in for the receiver
    assert create(client, uri=receiver.url)["status"] == 1


class SlowReceiver:
    """Answers the challenge only after ``delay`` seconds: longer than the emulator's push timeout."""

    def __init__(self, delay: float) -> None:
        release = self.release = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                release.wait(delay)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/dlr"


@pytest.fixture
def slow_receiver() -> Iterator[SlowReceiver]:
    r = SlowReceiver(delay=5)
    yield r
    r.release.set()
    r.server.shutdown()
    r.server.server_close()


def test_a_receiver_slower_than_the_timeout_fails(
    client: Client, emu: Emulator, slow_receiver: SlowReceiver
) -> None:
    emu.configure(webhook_timeout_seconds=0.3)
    hook = create(client, uri=slow_receiver.url)
    assert hook["status"] == 0
    assert inspected(emu, hook["id"])["verifications"][0]["status_code"] is None
