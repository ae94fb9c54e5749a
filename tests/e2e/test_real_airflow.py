"""The flagship DAG through real Airflow services: scheduler, DAG processor, triggerer and API server.

``dag.test()`` runs triggers inline in one process; here the delivery sensor must really defer: its worker
process ends, the triggerer polls the emulator, and a new worker process resumes the task.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.s3 import s3_server
from tests.e2e.stack import AirflowStack
from tests.helpers import PROVIDER_DIR, TEST_TOKEN, qikberry_conn_json, requires_airflow, warning_lines

pytestmark = [
    pytest.mark.slow,
    requires_airflow(
        (3, 0),
        "runs the Airflow 3 services (api-server, dag-processor) with LocalExecutor on SQLite; Airflow 2.11 "
        "has neither an api-server nor LocalExecutor on SQLite (the example DAGs run on 2.11 via dag.test())",
    ),
]

REPO_ROOT = Path(__file__).resolve().parents[2]
FLAGSHIP = "qikberry_campaign_pipeline"


def test_flagship_dag_defers_its_sensor_to_the_triggerer(emulator: Any, tmp_path: Path) -> None:
    conn = {"AIRFLOW_CONN_QIKBERRY_DEFAULT": qikberry_conn_json(emulator.base_url, TEST_TOKEN)}
    # No delivery report arrives on its own: with the default 2 s delay, a run slowed down by a busy machine
    # could reach the sensor after every report and never defer. Reports are released (the emulator
    # finalises every pending message) once the sensor is seen deferred, while the triggerer is polling.
    emulator.configure(dlr_delay_seconds=3600)
    with AirflowStack(tmp_path / "home", extra_env=conn) as stack:
        shutil.copy(REPO_ROOT / "example_dags" / f"{FLAGSHIP}.py", stack.dags)
        stack.wait_for_dag(FLAGSHIP)
        run_id = stack.trigger(FLAGSHIP)
        stack.wait_for_task_state(FLAGSHIP, run_id, "wait_for_delivery", "deferred", timeout=300)
        assert emulator.flush_dlrs() == 60
        state = stack.wait_for_run(FLAGSHIP, run_id, timeout=420)
        states = stack.task_states(FLAGSHIP, run_id)
        sensor_log = stack.task_log(FLAGSHIP, run_id, "wait_for_delivery")
        failed_logs = {
            t: stack.task_log(FLAGSHIP, run_id, t)[-4000:] for t, s in states.items() if s == "failed"
        }

    assert state == "success", (states, failed_logs)
    assert set(states.values()) == {"success"}
    # The sensor handed its wait to the triggerer: seen deferred in the metadata DB, its worker logged the
    # hand-over, and the triggerer wrote the trigger's own log next to the task's.
    assert "deferred" in stack.seen["wait_for_delivery"]
    assert "Pausing task as DEFERRED" in sensor_log
    trigger_logs = list(
        (stack.home / "logs" / f"dag_id={FLAGSHIP}" / f"run_id={run_id}" / "task_id=wait_for_delivery").glob(
            "*.trigger.*.log"
        )
    )
    assert trigger_logs, "the triggerer left no log for the delivery trigger"
    trigger_events = [
        json.loads(line).get("event", "")
        for p in trigger_logs
        for line in p.read_text().splitlines()
        if line.startswith("{")
    ]
    assert any("Trigger fired event" in e for e in trigger_events)
    # Everything the campaign accepted went through the emulator once.
    messages = emulator.messages()
    assert len(messages) == 60
    assert len({m["mobile"] for m in messages}) == 60
    # No task or trigger log reports a warning the provider (or the example DAG) caused: a deployment's task
    # process shows those (Airflow's "default" filter for module regex "airflow" matches airflow_qikberry).
    logs_folder = stack.home / "logs" / f"dag_id={FLAGSHIP}" / f"run_id={run_id}"
    logs = {
        str(p.relative_to(logs_folder)): p.read_text(errors="replace")
        for p in sorted(logs_folder.glob("task_id=*/*.log"))
    }
    assert len(logs) >= len(states) + 1, sorted(logs)  # one per task at least, and the trigger's
    reported = warning_lines("\n".join(logs.values()), PROVIDER_DIR, str(stack.dags))
    assert not reported, "\n".join(reported)


def test_flagship_keeps_its_files_on_s3_across_worker_processes(emulator: Any, tmp_path: Path) -> None:
    """The export task's process writes the CSV to an S3 server (moto's, over HTTP), the campaign task's
    process reads it from there and writes its rejected report there: no file passes through a local path.
    """
    with s3_server("flagship-campaigns") as (storage_env, s3):
        env = {
            "AIRFLOW_CONN_QIKBERRY_DEFAULT": qikberry_conn_json(emulator.base_url, TEST_TOKEN),
            **storage_env,
        }
        with AirflowStack(tmp_path / "home", extra_env=env) as stack:
            shutil.copy(REPO_ROOT / "example_dags" / f"{FLAGSHIP}.py", stack.dags)
            stack.wait_for_dag(FLAGSHIP)
            run_id = stack.trigger(FLAGSHIP)
            state = stack.wait_for_run(FLAGSHIP, run_id, timeout=420)
            states = stack.task_states(FLAGSHIP, run_id)
            campaign_log = stack.task_log(FLAGSHIP, run_id, "campaign")
        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="flagship-campaigns").get("Contents", []))

    assert state == "success", (states, campaign_log[-4000:])
    assert len(keys) == 2, keys
    assert keys[0].endswith("/customers.csv"), keys
    assert keys[1].endswith("/rejected.csv"), keys
    assert "read s3://campaign_s3@flagship-campaigns/exports/" in campaign_log
    assert "test-secret-key" not in campaign_log
    messages = emulator.messages()
    assert len(messages) == 60
    assert len({m["mobile"] for m in messages}) == 60
