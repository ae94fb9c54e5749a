"""Delivery events through real Airflow services: a campaign, and a DAG scheduled on its "SMS failed" asset.

The example pair (``qikberry_payment_reminders`` and ``qikberry_failed_sms_followup``) runs in a real
deployment in miniature (:class:`tests.e2e.stack.AirflowStack`): the DAG processor registers the asset's
watcher, the triggerer runs it, the API server runs the provider's delivery-report receiver (the emulator
pushes to it after the verification challenge), the scheduler starts a follow-up run per batch of failures.

Run 1 (push): every failure report reaches the follow-up DAG once, also across a restart of the triggerer.
Run 2 (pushes lost): the emulator cannot reach the receiver; the reports are read back from ``sms/status``
(catch-up), inside the poll budget.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack import AIRFLOW, AirflowStack
from tests.helpers import PROVIDER_DIR, TEST_TOKEN, qikberry_conn_json, requires_airflow, warning_lines
from tests.triggers.support import status_requests

pytestmark = [
    pytest.mark.slow,
    requires_airflow(
        (3, 3),
        "asset watchers are Airflow 3; the watcher's memory (asset state store) and the shared-stream ack "
        "mode it relies on are 3.3",
    ),
]

REPO_ROOT = Path(__file__).resolve().parents[2]
CAMPAIGN = "qikberry_payment_reminders"
FOLLOW_UP = "qikberry_failed_sms_followup"
#: Customers per wave of the campaign example, and how many of them fail (numbers ending in 999).
PER_WAVE, FAILING_PER_WAVE = 30, 3


def _api(emulator: Any, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        emulator.base_url + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {TEST_TOKEN}",
            "Accept": "application/json",
            "Content-Type": "application/json",
        },
        method=method,
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


class Deployment:
    """The stack with the example pair, a connection with delivery events on, and the webhook set up."""

    def __init__(self, stack: AirflowStack, emulator: Any, secret: str, token: str) -> None:
        self.stack, self.emulator, self.secret, self.token = stack, emulator, secret, token

    def register_webhook(self) -> dict[str, Any]:
        uri = f"http://127.0.0.1:{self.stack.port}/qikberry/dlr/qikberry_default"
        deadline = time.monotonic() + 120
        while True:  # the api-server takes a while to listen
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.stack.port}/api/v2/version", timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        hook = _api(
            self.emulator,
            "POST",
            "developer/webhooks",
            {"name": "airflow", "uri": uri, "secret": self.secret, "token": self.token},
        )["data"]
        _api(
            self.emulator,
            "POST",
            "developer/subscriptions",
            {"event": "sms:message:status", "identity": "all", "webhook_id": hook["id"]},
        )
        return hook

    def run_campaign(self, wave: int) -> None:
        run_id = self.stack.trigger(CAMPAIGN, {"wave": wave})
        assert self.stack.wait_for_run(CAMPAIGN, run_id, timeout=300) == "success"

    def follow_up_runs(self) -> list[tuple[str, str]]:
        rows = self.stack.query("SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id", FOLLOW_UP)
        return [(str(r), str(s)) for r, s in rows]

    def followed_up_ids(self) -> list[str]:
        """Every message id the follow-up DAG's successful runs handled, in run order (repeats kept)."""
        rows = self.stack.query(
            "SELECT x.value FROM xcom x JOIN dag_run d ON x.dag_run_id = d.id "
            "WHERE x.dag_id = ? AND x.task_id = 'follow_up' AND x.key = 'return_value' "
            "AND d.state = 'success' ORDER BY d.id",
            FOLLOW_UP,
        )
        ids: list[str] = []
        for (value,) in rows:
            data = json.loads(value) if isinstance(value, (str, bytes)) else value
            ids.extend(data["ids"])
        return ids

    def wait_for_follow_ups(self, expected: set[str], timeout: float = 240) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.stack._check_alive()
            runs = self.follow_up_runs()
            done = all(state in ("success", "failed") for _, state in runs)
            ids = self.followed_up_ids()
            if done and expected <= set(ids):
                return ids
            time.sleep(2)
        raise TimeoutError(
            f"follow-ups saw {sorted(set(self.followed_up_ids()))}, expected {sorted(expected)}"
        )

    def failed_ids(self) -> set[str]:
        return {m["id"] for m in self.emulator.messages() if m["status"] not in ("DELIVRD", "AWAITING-DLR")}

    def memory_rows(self) -> list[str]:
        return [str(v) for (v,) in self.stack.query("SELECT value FROM asset_state_store")]

    def wait_for_memory(self, processed: int, timeout: float = 60) -> None:
        """Until the watcher's stored memory counts ``processed`` messages as processed."""
        from airflow_qikberry.delivery.memory import EventMemory

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for value in self.memory_rows():
                memory = EventMemory.from_json(json.loads(value))
                if sum(len(g.done) for g in memory.groups.values()) >= processed:
                    return
            time.sleep(1)
        raise TimeoutError(f"the watcher's memory never counted {processed} messages: {self.memory_rows()}")

    def stop_triggerer(self) -> None:
        proc = self.stack.procs.pop("triggerer")  # a stopped service is not a dead one for the stack
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)

    def start_triggerer(self) -> None:
        log = (self.stack.home / "triggerer.log").open("ab")
        self.stack.procs["triggerer"] = subprocess.Popen(
            [AIRFLOW, "triggerer"],
            env=self.stack.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _deployment(tmp_path: Path, emulator: Any, **extra: Any) -> Deployment:
    secret, token = secrets.token_hex(16), secrets.token_hex(8)
    conn = qikberry_conn_json(
        emulator.base_url,
        TEST_TOKEN,
        delivery_events=True,
        webhook_secret=secret,
        webhook_token=token,
        **extra,
    )
    env = {
        "AIRFLOW_CONN_QIKBERRY_DEFAULT": conn,
        # Provider plugins (the receiver) are loaded when providers are discovered eagerly.
        "AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS": "False",
        "QIKBERRY_FOLLOW_UP_DIR": str(tmp_path / "follow-up"),
    }
    stack = AirflowStack(tmp_path / "home", extra_env=env)
    for name in (CAMPAIGN, FOLLOW_UP):
        shutil.copy(REPO_ROOT / "example_dags" / f"{name}.py", stack.dags)
    return Deployment(stack, emulator, secret, token)


def _start(d: Deployment) -> None:
    d.stack.wait_for_dag(CAMPAIGN)
    d.stack.wait_for_dag(FOLLOW_UP)
    d.stack.cli("dags", "unpause", FOLLOW_UP)
    hook = d.register_webhook()
    # The receiver answered the verification challenge: the webhook is active.
    assert hook["status"] in (1, "1"), hook


def _follow_up_files(tmp_path: Path) -> dict[str, str]:
    """message id -> the full number the follow-up DAG wrote for it, over every file it wrote."""
    import csv

    out: dict[str, str] = {}
    for path in sorted((tmp_path / "follow-up").glob("failed-*.csv")):
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                out[row["message_id"]] = row["mobile"]
    return out


def _watcher_lookups(stack: AirflowStack) -> int:
    return sum(int(n) for n in re.findall(r"read back in (\d+) lookup", stack.service_log("triggerer")))


def _provider_warnings(stack: AirflowStack) -> list[str]:
    logs = [stack.service_log("triggerer")]
    logs += [p.read_text(errors="replace") for p in sorted((stack.home / "logs").glob("**/*.log"))]
    return warning_lines("\n".join(logs), PROVIDER_DIR, str(stack.dags))


def test_failed_reports_reach_the_follow_up_dag_by_push_once_across_a_triggerer_restart(
    emulator: Any, tmp_path: Path
) -> None:
    d = _deployment(tmp_path, emulator)
    with d.stack as stack:
        _start(d)
        d.run_campaign(1)
        emulator.advance_clock(5)  # past the DLR delay: final statuses, and their pushes made
        wave1 = d.failed_ids()
        assert len(wave1) == FAILING_PER_WAVE
        d.wait_for_follow_ups(wave1)
        # The watcher stored what it emitted once Airflow had the events; a restart must not emit it again.
        d.wait_for_memory(len(emulator.messages()))

        # The triggerer stops; a second wave is sent meanwhile: its reports are pushed while nothing
        # listens (the receiver records them), and are emitted when the triggerer is back.
        d.stop_triggerer()
        d.run_campaign(2)
        emulator.advance_clock(5)
        wave2 = d.failed_ids() - wave1
        assert len(wave2) == FAILING_PER_WAVE
        pushes = emulator.webhook_deliveries()
        assert len(pushes) == 2 * PER_WAVE
        assert all(p["ok"] for p in pushes)
        d.start_triggerer()
        ids = d.wait_for_follow_ups(wave1 | wave2)
        time.sleep(20)  # two more sweeps of the watcher: nothing else may come
        ids = d.followed_up_ids()
        numbers = _follow_up_files(tmp_path)
        messages = {m["id"]: m for m in emulator.messages()}
        warnings = _provider_warnings(stack)
        lookups = _watcher_lookups(stack)
        runs = d.follow_up_runs()

    print(
        f"push run: {len(wave1 | wave2)} failed reports, {len(ids)} reached the follow-up DAG "
        f"({len(set(ids))} distinct) in {len(runs)} run(s); {len(pushes)} pushes; watcher lookups {lookups}"
    )
    # Every failure report reached the follow-up DAG, and none twice (not across the restart either).
    assert sorted(ids) == sorted(wave1 | wave2), ids
    # It got the failed numbers (looked up by id: asset events and XCom hold them masked).
    assert numbers == {mid: messages[mid]["mobile"] for mid in wave1 | wave2}
    # Pushed, none read back from the status API by the watcher beyond its group checks.
    assert not warnings, "\n".join(warnings)


def test_reports_whose_pushes_are_lost_are_read_back_within_the_poll_budget(
    emulator: Any, tmp_path: Path
) -> None:
    budget = 30  # status polls a minute for the triggerer's process
    d = _deployment(tmp_path, emulator, poll_budget_per_minute=budget)
    with d.stack as stack:
        _start(d)
        # Every delivery-report push fails (the receiver is unreachable): the API retries 3 times, 30
        # minutes apart on its clock, then drops the reports.
        emulator.set_push_faults([{"webhook_id": "*", "push": "dlr", "kind": "unreachable"}])
        started = time.time()
        d.run_campaign(1)
        emulator.advance_clock(5 + 3 * 1800)
        failed = d.failed_ids()
        assert len(failed) == FAILING_PER_WAVE
        ids = d.wait_for_follow_ups(failed)
        elapsed = time.time() - started
        pushes = emulator.webhook_deliveries()
        stamps = [r["timestamp"] for r in status_requests(emulator)]
        lookups = _watcher_lookups(stack)
        warnings = _provider_warnings(stack)

    assert sorted(ids) == sorted(failed)
    assert {p["outcome"] for p in pushes if p["attempt"] == 4} == {"dropped"}
    assert len([p for p in pushes if p["outcome"] == "dropped"]) == PER_WAVE
    # The watcher read them back from sms/status, within the token's poll budget of its process (the
    # follow-up task's own id lookups, one per failed message, come from worker processes on top).
    assert lookups >= 1
    assert len(stamps) == lookups + len(ids)
    assert lookups <= budget / 10 + budget * elapsed / 60
    print(f"watcher lookups: {lookups} in {elapsed:.0f} s (budget {budget}/min)")
    assert not warnings, "\n".join(warnings)
