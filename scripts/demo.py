"""``make demo``: run the flagship example DAG end to end against a local Qikberry emulator, then report.

Steps: a throwaway AIRFLOW_HOME under ``.demo/`` (wiped at the start of every run, kept afterwards for its
logs), the emulator as a subprocess on a free loopback port with a random token, ``airflow db migrate``,
``example_dags/qikberry_campaign_pipeline.py`` copied into the DAGs folder, ``airflow dags test
qikberry_campaign_pipeline`` (balance check -> bulk campaign from a CSV -> deferrable delivery sensor ->
report; a non-zero exit fails the demo), and a table of what the campaign did: recipients, accepted,
delivered, failed by status, credits spent. The token is never printed: everything echoed from a subprocess
passes through :func:`redact`.

Usage: ``python scripts/demo.py`` (the Makefile runs it with the project's virtualenv).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from airflow_qikberry.phone import mask_number

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_DIR = REPO_ROOT / ".demo"
DAG_FILE = REPO_ROOT / "example_dags" / "qikberry_campaign_pipeline.py"
DAG_ID = "qikberry_campaign_pipeline"
STARTUP_SECONDS = 20.0


class DemoError(Exception):
    """A step failed; the message says which."""


class Redactor:
    """Replaces the token in any text shown to the user."""

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def __call__(self, text: str) -> str:
        return text.replace(self.secret, "***")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str, timeout: float = 5.0) -> Any:
    # The control API needs no token; loopback must bypass any configured HTTP proxy.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as response:
        return json.loads(response.read().decode("utf-8"))


def airflow_env(home: Path, base_url: str, token: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
    connection = {
        "conn_type": "qikberry",
        "host": base_url,
        "password": token,
        "extra": {"sender": "QIKBRY", "service": "T", "default_region": "IN"},
    }
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
            "AIRFLOW_CONN_QIKBERRY_DEFAULT": json.dumps(connection),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    return env


def start_emulator(port: int, token: str, log_path: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "airflow_qikberry.emulator", "--host", "127.0.0.1", "--port", str(port)]
    # Through the environment rather than --token, so the token does not show in the process list either.
    env = {**os.environ, "QIKBERRY_EMULATOR_TOKEN": token}
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DemoError(f"the emulator exited with code {process.returncode}; see {log_path}")
        try:
            get_json(f"http://127.0.0.1:{port}/_emulator/clock", timeout=1.0)
            return process
        except OSError:
            time.sleep(0.2)
    process.terminate()
    raise DemoError(f"the emulator did not answer within {STARTUP_SECONDS:g}s; see {log_path}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_quiet(command: list[str], env: dict[str, str], redact: Redactor, what: str) -> None:
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stdout.write(redact(result.stdout + result.stderr))
        raise DemoError(f"{what} failed with exit code {result.returncode}")


def run_streaming(command: list[str], env: dict[str, str], redact: Redactor) -> int:
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    assert process.stdout is not None
    for line in process.stdout:
        sys.stdout.write(redact(line))
    return process.wait()


def campaign_summary(home: Path) -> dict[str, Any]:
    """The campaign task's XCom summary, read from the demo's own throwaway metadata database."""
    import sqlite3

    with sqlite3.connect(home / "airflow.db") as db:
        row = db.execute(
            "SELECT value FROM xcom WHERE dag_id = ? AND task_id = 'campaign' AND key = 'return_value'",
            (DAG_ID,),
        ).fetchone()
    if row is None:
        raise DemoError("the campaign task left no summary in XCom")
    value = json.loads(row[0]) if isinstance(row[0], (str, bytes)) else row[0]
    return value if isinstance(value, dict) else json.loads(value)


def render_report(messages: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    """What the campaign did, from the emulator's accepted list and the campaign's own summary."""
    by_status: dict[str, int] = {}
    for message in messages:
        by_status[str(message.get("status", ""))] = by_status.get(str(message.get("status", "")), 0) + 1
    delivered = by_status.pop("DELIVRD", 0)
    pending = by_status.pop("AWAITING-DLR", 0)
    credits = sum(float(m.get("charges") or 0) for m in messages)
    rejected = summary.get("rejected_total", 0)
    duplicates = summary.get("duplicates_removed", 0)
    rows = [
        ("campaign", str(summary.get("campaign", ""))),
        ("recipients in the table", str(len(messages) + int(rejected) + int(duplicates))),
        ("rejected before sending", f"{rejected} {summary.get('rejected', {})}"),
        ("duplicates removed", str(duplicates)),
        ("accepted by the API", str(len(messages))),
        ("delivered", str(delivered)),
        *((f"failed: {status}", str(n)) for status, n in sorted(by_status.items())),
        *((("still pending", str(pending)),) if pending else ()),
        ("credits spent", f"{credits:g}"),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"  {label.ljust(width)}  {value}" for label, value in rows)


def render_messages(messages: list[dict[str, Any]]) -> str:
    headers = ("id", "mobile", "status", "units", "text")
    rows = [
        (
            str(m.get("id", "")),
            mask_number(str(m.get("mobile", ""))),
            str(m.get("status", "")),
            str(m.get("units", "")),
            str(m.get("message", "")),
        )
        for m in messages
    ]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    table = [headers, tuple("-" * w for w in widths), *rows]
    lines = ("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in table)
    return "\n".join(line.rstrip() for line in lines)


def main(*, token: str | None = None, demo_dir: Path = DEMO_DIR) -> int:
    """Run the demo; ``token`` and ``demo_dir`` exist for the test that checks the token is never shown."""
    token = token or secrets.token_urlsafe(24)
    redact = Redactor(token)
    home = demo_dir / "airflow-home"
    shutil.rmtree(home, ignore_errors=True)
    (home / "dags").mkdir(parents=True)
    (home / "plugins").mkdir()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    emulator: subprocess.Popen[bytes] | None = None
    try:
        print(f"Starting the Qikberry emulator on {url} (random token, not shown)")
        emulator = start_emulator(port, token, demo_dir / "emulator.log")
        env = airflow_env(home, f"{url}/api/v2/", token)
        print(f"Airflow home: {home}; migrating its SQLite database")
        run_quiet([sys.executable, "-m", "airflow", "db", "migrate"], env, redact, "airflow db migrate")
        shutil.copy2(DAG_FILE, home / "dags" / DAG_FILE.name)

        print(f"Running: airflow dags test {DAG_ID}")
        code = run_streaming([sys.executable, "-m", "airflow", "dags", "test", DAG_ID], env, redact)
        if code != 0:
            raise DemoError(f"airflow dags test {DAG_ID} exited with code {code}")

        messages = get_json(f"{url}/_emulator/messages")["messages"]
        if not messages:
            raise DemoError("the DAG succeeded but the emulator received no message")
        print("\nA few of the messages the emulator accepted (numbers masked):\n")
        print(redact(render_messages(messages[:5])))
        print("\nWhat the campaign did:\n")
        print(redact(render_report(messages, campaign_summary(home))))
    except DemoError as err:
        print(f"\nDemo failed: {err}", file=sys.stderr)
        return 1
    finally:
        if emulator is not None:
            stop(emulator)
    print(
        "\nDemo finished: balance checked, campaign sent from a CSV, delivery awaited by the deferrable "
        f"sensor (logs: {home / 'logs'})."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
