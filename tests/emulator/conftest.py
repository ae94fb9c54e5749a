"""Fixtures for the emulator's own tests: one session-scoped emulator, reset before every test.

Like the suite-wide ``emulator`` fixture, ``emu`` fails a test during which the emulator raised an internal
error (a bug answered as a bare 500); tests that provoke one on purpose call ``emu.clear_internal_errors()``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from airflow_qikberry.emulator import Emulator, EmulatorConfig

EMU_TOKEN = "emu-test-token-0123456789abcdef"
TIMEOUT = 10


class Client:
    """A keep-alive client that authenticates with the Bearer header and asks for JSON."""

    def __init__(self, emu: Emulator, token: str = EMU_TOKEN) -> None:
        self.emu = emu
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})

    def url(self, path: str) -> str:
        return self.emu.base_url + path

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.url(path), timeout=TIMEOUT, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.post(self.url(path), timeout=TIMEOUT, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.put(self.url(path), timeout=TIMEOUT, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.patch(self.url(path), timeout=TIMEOUT, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.delete(self.url(path), timeout=TIMEOUT, **kwargs)

    def send(self, **fields: Any) -> requests.Response:
        body = {"to": "919876543210", "message": "Hello", "sender": "QIKBRY", "service": "T", **fields}
        return self.post("sms/send", json={k: v for k, v in body.items() if v is not None})

    def control(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, f"{self.emu.url}/_emulator/{path}", timeout=TIMEOUT, **kwargs)

    def close(self) -> None:
        self.session.close()


@pytest.fixture(scope="session")
def emu_server() -> Iterator[Emulator]:
    emu = Emulator(EmulatorConfig(token=EMU_TOKEN, seed=1234)).start()
    yield emu
    emu.stop()


def internal_error_report(errors: list[dict[str, Any]]) -> str:
    listed = "\n".join(f"  {e['method']} {e['path']}: {e['type']}: {e['message']}" for e in errors)
    return (
        f"the Qikberry emulator had {len(errors)} internal error(s) during this test "
        f"(tracebacks: emu.internal_errors() or GET /_emulator/errors):\n{listed}"
    )


@pytest.fixture
def emu(emu_server: Emulator) -> Iterator[Emulator]:
    """The session emulator, reset; fails the test if the emulator had internal errors during it."""
    emu_server.reset()
    yield emu_server
    errors = emu_server.internal_errors()
    if errors:
        pytest.fail(internal_error_report(errors), pytrace=False)


@pytest.fixture
def client(emu: Emulator) -> Iterator[Client]:
    c = Client(emu)
    yield c
    c.close()


class Receiver:
    """A local webhook endpoint that records every request and answers with scripted statuses.

    It answers the verification challenge (a body with ``validation_key`` and ``challenge``) as documented,
    recording it in ``challenges`` instead of ``calls``; ``answer_challenge = False`` makes it answer a
    challenge like any other call (so the challenge fails), ``challenge_answer`` overrides the answer body.
    """

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.challenges: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.answer_challenge = True
        self.challenge_answer: Any = None
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                body = json.loads(raw) if raw else None
                is_challenge = isinstance(body, dict) and set(body) == {"validation_key", "challenge"}
                if is_challenge and receiver.answer_challenge:
                    with receiver._cond:
                        receiver.challenges.append(
                            {"path": self.path, "headers": dict(self.headers.items()), "body": body}
                        )
                    answer = receiver.challenge_answer
                    data = json.dumps({"challenge": body["challenge"]} if answer is None else answer).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                with receiver._cond:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.calls.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers.items()),
                            "body": body,
                            "answered": status,
                        }
                    )
                    receiver._cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/dlr"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.calls) >= count, timeout=timeout)
            return list(self.calls)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()
