"""Internal errors are never silent, and reset() waits for the API requests in flight."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from tests.emulator.conftest import TIMEOUT, Client

if TYPE_CHECKING:
    from airflow_qikberry.emulator import Emulator

LOGGER = "airflow_qikberry.emulator"
REPO = Path(__file__).resolve().parents[2]


def boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("emulator bug 42")


# ------------------------------------------------------------------------------------- internal errors
def test_an_exception_in_a_handler_is_a_500_that_is_logged_and_recorded(
    emu: Emulator, client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(emu.state, "balance_rows", boom)
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        r = client.get("finance/balance", params={"service": "T", "access_token": "query-secret"})
    # The client still gets the generic 500 ...
    assert r.status_code == 500
    assert r.json() == {"status": "ERROR", "code": 500, "message": "Server Error"}
    # ... but the emulator recorded it ...
    [error] = emu.internal_errors()
    assert {k: error[k] for k in ("method", "path", "type", "message")} == {
        "method": "GET",
        "path": "/api/v2/finance/balance",  # never the query string (it may carry a token)
        "type": "RuntimeError",
        "message": "emulator bug 42",
    }
    assert "Traceback (most recent call last)" in error["traceback"]
    assert 'raise RuntimeError("emulator bug 42")' in error["traceback"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", error["at"])
    assert isinstance(error["timestamp"], float)
    assert "query-secret" not in repr(error)
    # ... shows it on the control API ...
    listed = client.control("GET", "errors")
    assert listed.status_code == 200
    assert listed.json() == {"errors": [error]}
    # ... and logged it loudly, with the traceback.
    [record] = [rec for rec in caplog.records if rec.name == LOGGER]
    assert record.levelno == logging.ERROR
    assert "GET /api/v2/finance/balance" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[0] is RuntimeError
    # The server carries on.
    monkeypatch.undo()
    assert client.get("finance/balance").status_code == 200
    assert client.control("DELETE", "errors").json() == {"errors": []}
    assert emu.internal_errors() == []  # cleared: the emu fixture must not fail this test


def test_an_exception_in_the_control_api_is_recorded(
    emu: Emulator, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(emu, "messages", boom)
    r = client.control("GET", "messages")
    assert r.status_code == 500
    assert [(e["method"], e["path"], e["type"]) for e in emu.internal_errors()] == [
        ("GET", "/_emulator/messages", "RuntimeError")
    ]
    emu.clear_internal_errors()


def test_an_exception_in_the_delivery_ticker_is_recorded(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    dispatcher = emu._dispatcher
    real_process = dispatcher.process
    armed, passed = threading.Event(), threading.Event()
    armed.set()

    def process(**kwargs: Any) -> int:
        if armed.is_set():
            raise RuntimeError("ticker bug")
        passed.set()
        return real_process(**kwargs)

    monkeypatch.setattr(dispatcher, "process", process)
    deadline = time.monotonic() + 10
    while not emu.internal_errors() and time.monotonic() < deadline:
        time.sleep(0.05)
    armed.clear()
    assert passed.wait(10)  # the ticker survived, and no failing tick is still being recorded
    errors = emu.internal_errors()
    assert errors
    assert {(e["method"], e["path"], e["type"]) for e in errors} == {
        ("TICK", "(delivery ticker)", "RuntimeError")
    }
    emu.clear_internal_errors()


def test_injected_faults_are_not_internal_errors(emu: Emulator, client: Client) -> None:
    emu.set_faults([{"endpoint": "sms/send", "kind": "error", "status": 500, "times": 1}])
    r = client.send()
    assert r.status_code == 500
    assert emu.internal_errors() == []
    assert client.control("GET", "errors").json() == {"errors": []}


def test_reset_clears_internal_errors_and_the_list_is_bounded(emu: Emulator) -> None:
    for i in range(150):
        emu.state.record_internal_error("GET", f"/x/{i}", ValueError(str(i)))
    errors = emu.internal_errors()
    assert len(errors) == 100
    assert [e["message"] for e in errors] == [str(i) for i in range(50, 150)]
    emu.reset()
    assert emu.internal_errors() == []


FIXTURE_CHECK = """
    import requests
    from airflow_qikberry.emulator import Emulator

    from tests.conftest import emulator, emulator_server  # noqa: F401
    from tests.emulator.conftest import emu, emu_server  # noqa: F401


    def break_balance(server: Emulator) -> None:
        def boom(*args, **kwargs):
            raise RuntimeError("planted bug")

        server.state.balance_rows = boom
        r = requests.get(server.base_url + "finance/balance", headers={"Authorization": server.config.token})
        del server.state.balance_rows
        assert r.status_code == 500


    def test_suite_fixture_fails(emulator: Emulator) -> None:
        break_balance(emulator)


    def test_emulator_tests_fixture_fails(emu: Emulator) -> None:
        break_balance(emu)


    def test_cleared_errors_pass(emu: Emulator) -> None:
        break_balance(emu)
        emu.clear_internal_errors()


    def test_clean_test_passes(emulator: Emulator) -> None:
        assert emulator.internal_errors() == []
"""


def test_fixtures_fail_a_test_that_caused_internal_errors(tmp_path: Path) -> None:
    (tmp_path / "test_fixture_check.py").write_text(textwrap.dedent(FIXTURE_CHECK))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "4 passed, 2 errors" in out, out  # the calls pass; their teardowns are the errors
    assert "ERROR at teardown of test_suite_fixture_fails" in out, out
    assert "ERROR at teardown of test_emulator_tests_fixture_fails" in out, out
    assert "GET /api/v2/finance/balance: RuntimeError: planted bug" in out, out
    assert "ERROR test_fixture_check.py::test_cleared_errors_pass" not in out, out
    assert "ERROR test_fixture_check.py::test_clean_test_passes" not in out, out


# ------------------------------------------------------------------------------------- reset vs in-flight
def send_in_background(emu: Emulator) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def run() -> None:
        c = Client(emu)
        try:
            r = c.send(custom="in-flight")
            result["status"], result["body"] = r.status_code, r.json()
        except BaseException as exc:  # surfaced by the test
            result["error"] = exc
        finally:
            result["done"] = time.monotonic()
            c.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def wait_in_flight(emu: Emulator, count: int = 1) -> None:
    deadline = time.monotonic() + TIMEOUT
    while emu.state.active_requests < count:
        assert time.monotonic() < deadline, "the request never reached the emulator"
        time.sleep(0.005)


@pytest.mark.parametrize("kind", ["latency", "slow_response"])
def test_reset_waits_for_the_request_in_flight(emu: Emulator, client: Client, kind: str) -> None:
    emu.set_faults([{"endpoint": "sms/send", "method": "POST", "kind": kind, "seconds": 0.5, "times": 1}])
    thread, result = send_in_background(emu)
    wait_in_flight(emu)
    started = time.monotonic()
    assert emu.reset() is True
    waited = time.monotonic() - started
    thread.join(TIMEOUT)
    assert "error" not in result, result
    assert result["status"] == 200, result
    # reset() returned only after the request was answered: it waited out (most of) the 0.5 s hold ...
    assert waited >= 0.3, waited
    assert emu.state.active_requests == 0
    # ... and it reset after the request: the message that request accepted is gone, as is its log entry.
    msg_id = result["body"]["data"][0]["id"]
    assert emu.messages() == []
    assert emu.request_log()["requests"] == []
    assert client.get("sms/status", params={"id": msg_id}).json()["data"] == []
    assert client.get("sms/status", params={"cid": "in-flight"}).json()["data"] == []


def test_reset_over_http_waits_too_and_is_not_counted_itself(emu: Emulator, client: Client) -> None:
    started = time.monotonic()
    assert client.control("POST", "reset").json() == {"status": "OK"}
    assert time.monotonic() - started < 2  # a reset does not wait for itself
    emu.set_faults([{"endpoint": "sms/send", "kind": "latency", "seconds": 0.5, "times": 1}])
    thread, result = send_in_background(emu)
    wait_in_flight(emu)
    started = time.monotonic()
    assert client.control("POST", "reset").json() == {"status": "OK"}
    assert time.monotonic() - started >= 0.3
    thread.join(TIMEOUT)
    assert result["status"] == 200
    assert emu.messages() == []
    assert client.control("POST", "reset", json={"timeout": -1}).status_code == 400


def _held_latency(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """
    A ``latency`` fault of the (in-process) emulator holds its request until the returned event is set.

    The request then stays in flight for as long as the test needs, whatever the load: a real 0.6 s latency
    once ended before a reset sent over HTTP reached the emulator on a loaded CI machine.
    """
    from airflow_qikberry.emulator import server

    release = threading.Event()

    class _Time:
        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        @staticmethod
        def sleep(seconds: float) -> None:
            assert release.wait(TIMEOUT), "the held request was never released"

    monkeypatch.setattr(server, "time", _Time())
    return release


def test_reset_gives_up_after_its_timeout_and_says_so(
    emu: Emulator, client: Client, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = _held_latency(monkeypatch)
    emu.set_faults([{"endpoint": "sms/send", "kind": "latency", "seconds": 1.0, "times": 1}])
    thread, result = send_in_background(emu)
    wait_in_flight(emu)
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        assert emu.reset(timeout=0.2) is False
    waited = time.monotonic() - started
    release.set()
    assert 0.15 <= waited < 5, waited
    [error] = emu.internal_errors()
    assert (error["method"], error["type"]) == ("RESET", "ResetTimeout")
    assert "1 in-flight API request" in error["message"]
    assert any("reset anyway" in rec.getMessage() for rec in caplog.records if rec.name == LOGGER)
    # What the guarantee would have prevented: the straggler's message lands in the fresh state.
    thread.join(TIMEOUT)
    assert result["status"] == 200
    assert [m["custom"] for m in emu.messages()] == ["in-flight"]
    # Over HTTP, a timed-out reset says so too. (The first request's handler may still be finishing: it must
    # be done before the next one is counted as in flight.)
    assert emu.wait_requests_done(TIMEOUT)
    release.clear()
    emu.set_faults([{"endpoint": "sms/send", "kind": "latency", "seconds": 0.6, "times": 1}])
    thread, result = send_in_background(emu)
    wait_in_flight(emu)
    r = requests.post(f"{emu.url}/_emulator/reset", json={"timeout": 0.1}, timeout=TIMEOUT)
    release.set()
    assert r.json() == {"status": "OK", "timed_out": True}
    thread.join(TIMEOUT)
    emu.reset()
    emu.clear_internal_errors()
