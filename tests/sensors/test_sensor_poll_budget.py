"""QikberryDeliverySensor on more messages than its poll budget's burst, in every mode, in real DAG runs.

The default poll budget (500/min: a burst of 50, then one call every 0.12 s) makes a sweep over a
7,000-message campaign (70 pages) wait for 20 of its calls, and a sweep over 60 single-message sends (60 id
lookups) wait for 10: a real short wait, so each run takes seconds and nothing about the budget is faked.
The emulator's request log then shows the calls kept to the budget.

Seen failing before the bucket chain could wait: poke and reschedule mode crashed with ``AttributeError:
'BucketChain' object has no attribute '_sleep'`` at the 51st call of the first sweep.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import all_log_text
from tests.triggers.support import (
    assert_within_budget,
    fresh_poll_budgets,
    send_group,
    status_calls,
    status_requests,
)

POLL_BUDGET = 500  # the connection's default poll_budget_per_minute
CAMPAIGN = 7_000  # 70 pages of 100: 20 calls past the burst of 50
SENDS = 60  # 60 one-message sends watched by id: 60 lookups, 10 past the burst


@pytest.fixture(autouse=True)
def _fresh_budgets() -> Any:
    fresh_poll_budgets()
    yield
    fresh_poll_budgets()


def sensor_dag(dag_id: str, watch: str, *, mode: str, deferrable: bool) -> str:
    return f"""
import pendulum
from airflow.providers.common.compat.sdk import dag
from airflow_qikberry.sensors.delivery import QikberryDeliverySensor

@dag(dag_id={dag_id!r}, schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
def the_dag():
    QikberryDeliverySensor(
        task_id="wait", {watch}, mode={mode!r}, deferrable={deferrable!r}, poke_interval=0.5, timeout=300
    )

the_dag()
"""


@contextlib.contextmanager
def delivered_after(emulator: Any, calls: int | None) -> Iterator[None]:
    """For messages sent inside the block: deliver every report once ``calls`` status calls were answered
    (the deferrable sensor's first check, on the worker, has then seen them all pending and deferred);
    ``None``: reports are final at once."""
    if calls is None:
        emulator.configure(dlr_delay_seconds=0.0)
        yield
        return
    emulator.configure(dlr_delay_seconds=3600.0)
    done = threading.Event()

    def flush() -> None:
        while not done.is_set():
            if status_calls(emulator) >= calls:
                emulator.flush_dlrs()
                return
            time.sleep(0.02)

    thread = threading.Thread(target=flush, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(5)


def check_run(result: Any, emulator: Any, total: int, *, at_least: int) -> None:
    assert result == {"wait": "success"}, result
    summary = result.xcom("wait")
    assert (summary["total"], summary["delivered"]) == (total, total)
    log = status_requests(emulator)
    assert len(log) >= at_least  # it really went past the burst
    assert all(r["status"] == 200 for r in log)
    assert_within_budget([r["timestamp"] for r in log], POLL_BUDGET)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "deferrable"),
    [("poke", False), ("reschedule", False), ("poke", True)],
    ids=["poke", "reschedule", "deferrable"],
)
def test_a_campaign_larger_than_the_poll_burst(
    run_dag: Any, qikberry_conn: str, emulator: Any, caplog: Any, capfd: Any, mode: str, deferrable: bool
) -> None:
    # Deferrable: the first check on the worker (sync) sees the reports still pending and hands over to the
    # trigger (async), which polls with the budget the worker's sweep has just spent.
    dag_id = f"budget_campaign_{mode}_{deferrable}"
    with delivered_after(emulator, CAMPAIGN // 100 if deferrable else None):
        group, _ = send_group(emulator, CAMPAIGN)
        watch = f"group_id={group!r}, expected_count={CAMPAIGN}"
        result = run_dag(sensor_dag(dag_id, watch, mode=mode, deferrable=deferrable), dag_id)
    check_run(result, emulator, CAMPAIGN, at_least=CAMPAIGN // 100)
    assert ("running trigger in line" in all_log_text(caplog, capfd)) is deferrable


@pytest.mark.slow
@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
def test_more_message_ids_than_the_poll_burst(
    run_dag: Any, qikberry_conn: str, emulator: Any, caplog: Any, capfd: Any, deferrable: bool
) -> None:
    dag_id = f"budget_ids_{deferrable}"
    with delivered_after(emulator, SENDS if deferrable else None):
        ids = [send_group(emulator, 1)[1][0] for _ in range(SENDS)]  # one group each: one lookup each
        result = run_dag(
            sensor_dag(dag_id, f"message_ids={ids!r}", mode="poke", deferrable=deferrable), dag_id
        )
    check_run(result, emulator, SENDS, at_least=SENDS)
    assert ("running trigger in line" in all_log_text(caplog, capfd)) is deferrable
