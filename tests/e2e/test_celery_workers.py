"""The unchanged flagship DAG under CeleryExecutor, on two workers that share no disk (issue 21).

:class:`tests.e2e.celery_stack.CeleryStack` starts the Airflow services and two ``airflow celery worker``
processes, each with its own home, temporary folder, log folder and DAG files; a cluster policy sends
``export_customers`` to worker A and ``campaign`` to worker B. With its files on an S3 server (moto's, over
HTTP) the flagship succeeds; with its local default (a folder under the worker's temporary folder) the
campaign on worker B cannot find the file worker A wrote, which shows the test tells shared from
shared-nothing.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.celery_stack import CeleryStack, user_namespaces_work
from tests.e2e.s3 import s3_server
from tests.helpers import TEST_TOKEN, qikberry_conn_json, requires_airflow

pytestmark = [
    pytest.mark.slow,
    requires_airflow(
        (3, 0),
        "runs the Airflow 3 services (api-server, dag-processor) and Celery workers that reach the task "
        'execution API over HTTP; Airflow 2.11 refuses CeleryExecutor on SQLite ("cannot use SQLite with '
        'the CeleryExecutor") and its workers use the metadata database directly',
    ),
]

REPO_ROOT = Path(__file__).resolve().parents[2]
FLAGSHIP = "qikberry_campaign_pipeline"
# Worker A serves the export, worker B the campaign; both serve the other tasks (queue "default").
WORKERS = {"a": "default,worker_a", "b": "default,worker_b"}
ROUTES = {"export_customers": "worker_a", "campaign": "worker_b"}


def _run_flagship(stack: CeleryStack) -> tuple[str, str]:
    stack.add_dag(REPO_ROOT / "example_dags" / f"{FLAGSHIP}.py")
    stack.wait_for_dag(FLAGSHIP)
    run_id = stack.trigger(FLAGSHIP)
    return run_id, stack.wait_for_run(FLAGSHIP, run_id, timeout=300)


def test_flagship_on_s3_runs_on_two_workers_that_share_no_disk(emulator: Any, tmp_path: Path) -> None:
    bucket = _bucket()
    with s3_server(bucket) as (storage_env, s3):
        env = {
            "AIRFLOW_CONN_QIKBERRY_DEFAULT": qikberry_conn_json(emulator.base_url, TEST_TOKEN),
            **storage_env,
        }
        with CeleryStack(tmp_path / "home", workers=WORKERS, routes=ROUTES, extra_env=env) as stack:
            run_id, state = _run_flagship(stack)
            states = stack.task_states(FLAGSHIP, run_id)
            hosts = stack.task_hosts(FLAGSHIP, run_id)
            campaign_log = stack.task_log(FLAGSHIP, run_id, "campaign")
        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))

    assert state == "success", (states, hosts, campaign_log[-4000:])
    assert set(states.values()) == {"success"}, states
    # The export ran on worker A, from queue worker_a; the campaign on worker B, from queue worker_b.
    assert hosts["export_customers"] == ("a", "worker_a"), hosts
    assert hosts["campaign"] == ("b", "worker_b"), hosts
    # Each worker wrote its task's log into its own log folder, and only there.
    assert _logs_of(stack, "a", run_id, "export_customers")
    assert _logs_of(stack, "b", run_id, "campaign")
    assert not _logs_of(stack, "b", run_id, "export_customers")
    assert not _logs_of(stack, "a", run_id, "campaign")
    # The CSV went to the object store, never through either worker's temporary folder.
    assert len(keys) == 2, keys
    assert keys[0].endswith("/customers.csv"), keys
    assert keys[1].endswith("/rejected.csv"), keys
    for name in WORKERS:
        assert not list(stack.worker_tmp(name).rglob("*.csv")), name
    assert f"read s3://campaign_s3@{bucket}/exports/" in campaign_log
    messages = emulator.messages()
    assert len(messages) == 60
    assert len({m["mobile"] for m in messages}) == 60


@pytest.mark.skipif(
    not user_namespaces_work(),
    reason="needs unprivileged user namespaces (unshare -rm) to give each worker its own folder at one "
    "TMPDIR path, as separate machines have; without them a worker can read another's temporary folder",
)
def test_flagship_with_local_files_fails_when_its_workers_share_no_disk(
    emulator: Any, tmp_path: Path
) -> None:
    """The same routing with the flagship's local default (no storage Variables): worker A writes the CSV
    under its own temporary folder, and the campaign on worker B is told a path that is not on its disk."""
    env = {"AIRFLOW_CONN_QIKBERRY_DEFAULT": qikberry_conn_json(emulator.base_url, TEST_TOKEN)}
    with CeleryStack(tmp_path / "home", workers=WORKERS, routes=ROUTES, extra_env=env) as stack:
        assert stack.private_mounts
        stack.add_dag(REPO_ROOT / "example_dags" / f"{FLAGSHIP}.py")
        stack.wait_for_dag(FLAGSHIP)
        run_id = stack.trigger(FLAGSHIP)
        # The first try's failure is the answer; its two retries (5 s apart) would fail the same way on the
        # same worker and only add time.
        ended = {"up_for_retry", "failed", "success", "upstream_failed", "skipped"}
        _wait_for(lambda: stack.task_states(FLAGSHIP, run_id).get("campaign") in ended, "the campaign", 240)
        states = stack.task_states(FLAGSHIP, run_id)
        assert states["campaign"] == "up_for_retry", states
        tries = stack.tries(FLAGSHIP, run_id, "campaign")
        hosts = stack.task_hosts(FLAGSHIP, run_id)
        _wait_for(lambda: "does not exist" in stack.task_log(FLAGSHIP, run_id, "campaign"), "the log", 30)
        campaign_log = stack.task_log(FLAGSHIP, run_id, "campaign")

    assert states["export_customers"] == "success", states
    assert hosts["export_customers"] == ("a", "worker_a"), hosts
    assert tries[0][:2] == (1, "b"), tries
    assert hosts["campaign"][1] == "worker_b", hosts
    # The file is on worker A's disk, at the very path worker B was given, and not on worker B's.
    written = list(stack.worker_tmp("a").rglob("customers.csv"))
    assert len(written) == 1, written
    seen_at = stack.shared_tmp / written[0].relative_to(stack.worker_tmp("a"))
    assert not list(stack.worker_tmp("b").rglob("customers.csv"))
    # The campaign refused it before sending anything.
    assert f"csv_path: 'file://{seen_at}' does not exist." in campaign_log, campaign_log[-4000:]
    assert emulator.messages() == []


def _logs_of(stack: CeleryStack, worker: str, run_id: str, task_id: str) -> list[Path]:
    folder = (
        stack.worker_dir(worker) / "logs" / f"dag_id={FLAGSHIP}" / f"run_id={run_id}" / f"task_id={task_id}"
    )
    return list(folder.glob("attempt=*.log"))


def test_flagship_campaign_resumes_on_the_other_worker_after_kill_9(emulator: Any, tmp_path: Path) -> None:
    """Both workers serve every task. The worker running the campaign dies (``kill -9`` of all its processes)
    with one chunk answered and the next accepted but not yet answered; the scheduler finds the task's
    heartbeat gone, and the retry runs on the other worker, reads the same bytes from S3, finds what the dead
    try sent, and sends the rest: every customer texted exactly once."""
    # The second chunk's answer is held back (the API accepted its messages): the worker dies waiting for it.
    emulator.set_faults(
        [{"endpoint": "sms/send/json", "method": "POST", "kind": "slow_response", "after": 1, "times": 1,
          "seconds": 30}]
    )  # fmt: skip
    workers = {"a": "default", "b": "default"}
    bucket = _bucket()
    with s3_server(bucket) as (storage_env, s3):
        env = {
            # A short reconcile window: the retry confirms what the dead try sent in seconds, not 30 s.
            "AIRFLOW_CONN_QIKBERRY_DEFAULT": qikberry_conn_json(
                emulator.base_url, TEST_TOKEN, reconcile_window=3
            ),
            **storage_env,
            # A task whose heartbeat stops for 15 s is found dead (default 300 s); live ones beat every 2 s.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "15",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
        }
        with CeleryStack(tmp_path / "home", workers=workers, extra_env=env) as stack:
            stack.add_dag(REPO_ROOT / "example_dags" / f"{FLAGSHIP}.py")
            stack.wait_for_dag(FLAGSHIP)
            run_id = stack.trigger(FLAGSHIP)
            stack.wait_for_task_state(FLAGSHIP, run_id, "campaign", "running", timeout=240)
            _wait_for(lambda: len(emulator.messages()) == 50, "the second chunk accepted", timeout=120)
            victim = stack.task_hosts(FLAGSHIP, run_id)["campaign"][0]
            stack.kill_worker(victim)
            state = stack.wait_for_run(FLAGSHIP, run_id, timeout=300)
            states = stack.task_states(FLAGSHIP, run_id)
            tries = stack.tries(FLAGSHIP, run_id, "campaign")
            campaign_log = stack.task_log(FLAGSHIP, run_id, "campaign")
        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))

    survivor = "b" if victim == "a" else "a"
    assert state == "success", (states, tries, campaign_log[-4000:])
    assert set(states.values()) == {"success"}, states
    # Try 1 on the dead worker, found dead and failed; try 2 on the other one, successful.
    assert tries == [(1, victim, "failed"), (2, survivor, "success")], tries
    # Each try's log is in its own worker's folder: the dead one's up to its second chunk.
    first, second = _logs_of(stack, victim, run_id, "campaign"), _logs_of(stack, survivor, run_id, "campaign")
    assert [p.name for p in first] == ["attempt=1.log"], first
    assert [p.name for p in second] == ["attempt=2.log"], second
    assert "chunk 1/3 accepted" in first[0].read_text()
    assert "chunk 2/3 accepted" not in first[0].read_text()  # it died waiting for that answer
    # Both tries read the one object, the same bytes (the retry checks them against what the first recorded).
    assert len(keys) == 2, keys
    reads = re.findall(r"read s3://campaign_s3@\S+/customers\.csv \(([^)]*sha256 \w+)\)", campaign_log)
    assert len(reads) == 2, reads
    assert reads[0] == reads[1], reads
    # The retry found chunk 2 accepted by the dead try (its answer never arrived) and sent only chunk 3.
    assert "Retry of a campaign task: finding what earlier tries sent" in campaign_log
    assert (
        "earlier tries settled 2 of 3 chunk(s) (50 messages accepted); sending from chunk 3" in campaign_log
    )
    messages = emulator.messages()
    assert len(messages) == 60
    assert len({m["mobile"] for m in messages}) == 60


def _bucket() -> str:
    # moto's servers in one process share their buckets: each test its own, or it sees another's objects.
    return f"flagship-{uuid.uuid4().hex[:12]}"


def _wait_for(condition: Any, what: str, timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g}s")
        time.sleep(0.2)
