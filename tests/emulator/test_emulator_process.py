"""Thread safety under concurrent senders, the context manager, and the command-line entry point."""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
from pathlib import Path

import requests

from airflow_qikberry.emulator import Emulator, EmulatorConfig
from tests.emulator.conftest import Client


def test_concurrent_sends_are_consistent(client: Client, emu: Emulator) -> None:
    ids: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        c = Client(emu)
        try:
            for i in range(50):
                r = c.send(to=f"9198{n:02d}{i:06d}")
                assert r.status_code == 200, r.text
                with lock:
                    ids.append(r.json()["data"][0]["id"])
        except BaseException as exc:  # surfaced below; a failing thread must fail the test
            errors.append(exc)
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(ids) == 400
    assert len(set(ids)) == 400
    assert len(emu.messages()) == 400
    credits = {row["service"]: row["credits"] for row in client.get("finance/balance").json()["data"]}
    assert credits["T"] == 10000 - 400
    assert emu.request_log()["counts"]["POST sms/send"] == 400


def test_context_manager_starts_and_stops() -> None:
    with Emulator(EmulatorConfig(token="ctx")) as emu:
        url = emu.base_url + "auth/me"
        session = requests.Session()
        assert session.get(url, headers={"Authorization": "ctx"}, timeout=10).status_code == 200
        assert emu.running
    assert not emu.running
    # Keep-alive connections opened before stop() are cut, not served by a lingering thread.
    try:
        r = session.get(url, headers={"Authorization": "ctx"}, timeout=2)
    except requests.ConnectionError:
        pass
    else:
        raise AssertionError(f"stopped emulator still answered: {r.status_code}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_cli(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], int, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_qikberry.emulator", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    lines: queue.Queue[str] = queue.Queue()
    stdout = proc.stdout
    assert stdout is not None
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        banner = lines.get(timeout=30)
    except queue.Empty:
        proc.kill()
        raise
    return proc, port, banner


def stop_cli(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.terminate()
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    return out, err


def me(port: int, token: str) -> requests.Response:
    return requests.get(
        f"http://127.0.0.1:{port}/api/v2/auth/me",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        timeout=10,
    )


def test_cli_banner_serves_and_stops_on_sigterm() -> None:
    token = "cli-secret-token"
    proc, port, banner = start_cli(
        "--token", token, "--seed", "3", "--dlr-delay", "0.5", "--credits", "42", "--rate-limit", "7"
    )
    try:
        assert (
            banner.strip() == f"Qikberry emulator listening on http://127.0.0.1:{port}/api/v2/ (token: set)"
        )
        r = me(port, token)
        assert r.status_code == 200
        assert r.json()["data"]["username"] == "emulator"
        config = requests.get(f"http://127.0.0.1:{port}/_emulator/config", timeout=10).json()["config"]
        assert (config["seed"], config["dlr_delay_seconds"], config["rate_limit_per_minute"]) == (3, 0.5, 7)
        assert config["credits"] == {"T": 42, "P": 42, "S": 42, "G": 42}
    finally:
        out, err = stop_cli(proc)
    assert token not in banner + out + err


def test_cli_token_from_environment() -> None:
    proc, port, banner = start_cli(env={"QIKBERRY_EMULATOR_TOKEN": "env-token-123"})
    try:
        assert me(port, "env-token-123").status_code == 200
        assert me(port, "emulator-token").status_code == 401
    finally:
        out, err = stop_cli(proc)
    assert "env-token-123" not in banner + out + err


def test_cli_reports_a_busy_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "airflow_qikberry.emulator", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode == 2
    assert "Cannot start" in proc.stderr


def test_cli_serves_seeded_templates_in_dlt_mode(tmp_path: Path) -> None:
    seeds = {
        "senders": [
            {"name": "ACMEIN", "service": "T", "country_code": "IN", "entity_id": "1", "entity_name": "A"}
        ],
        "templates": [
            {"sender": "ACMEIN", "name": "otp", "body": "OTP {{otp}}", "template_id": "11", "type": "T"}
        ],
    }
    path = tmp_path / "dlt.json"
    path.write_text(json.dumps(seeds), encoding="utf-8")
    proc, port, _ = start_cli("--token", "t", "--templates-file", str(path), "--dlt-mode")
    try:
        headers = {"Authorization": "Bearer t", "Accept": "application/json"}
        base = f"http://127.0.0.1:{port}/api/v2/"
        templates = requests.get(base + "sms/templates", headers=headers, timeout=10).json()["data"]
        assert [(t["alias"], t["template_id"]) for t in templates] == [("otp", "11")]
        config = requests.get(f"http://127.0.0.1:{port}/_emulator/config", timeout=10).json()["config"]
        assert config["dlt_mode"] is True
    finally:
        stop_cli(proc)


def test_cli_refuses_a_bad_templates_file(tmp_path: Path) -> None:
    path = tmp_path / "dlt.json"
    path.write_text(
        '{"templates": [{"sender": "ACMEIN", "name": "t", "body": "Hi {{first_name}}"}]}', "utf-8"
    )
    errors = []
    for bad in (str(path), str(tmp_path / "missing.json")):
        proc = subprocess.run(
            [sys.executable, "-m", "airflow_qikberry.emulator", "--port", "0", "--templates-file", bad],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 2
        assert "Cannot start" in proc.stderr
        errors.append(proc.stderr)
    assert "templates[0].body" in errors[0]
    assert "missing.json" in errors[1]
