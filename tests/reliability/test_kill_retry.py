"""Kill and retry: a campaign task dies at a random chunk and Airflow retries it (several seeds).

Each seed picks the chunk, how the try dies (the chunk refused by an error no retry inside the try can fix,
or the chunk accepted but its answer lost and its lookup failing, so the try ends with an unknown outcome),
and whether Airflow's task state store is used. The retry must send every remaining row exactly once and
no accepted chunk again; the emulator's accepted list is the judge.
"""

from __future__ import annotations

import csv
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROWS, CHUNK = 200, 20
SEEDS = [11, 23, 37, 41, 59]

DAG = (
    """
import pendulum
from datetime import timedelta
from airflow.providers.common.compat.sdk import dag
from airflow_qikberry.operators.campaign import QikberryBulkCampaignOperator

@dag(dag_id="reliability_kill", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
def reliability_kill():
    QikberryBulkCampaignOperator(
        task_id="campaign",
        name="kill-{{ run_id }}",
        csv_path="{{ dag_run.conf['csv'] }}",
        message_template="Hi {{ row.name }}, order {{ row.order }} has shipped",
        chunk_size={{ chunk }},
        use_task_state_store={{ store }},
        retries=1,
        retry_delay=timedelta(seconds=0),
    )

reliability_kill()
"""
).replace("{{ chunk }}", str(CHUNK))

RESULTS: list[dict[str, Any]] = []


@pytest.mark.parametrize("seed", SEEDS)
def test_campaign_killed_at_a_random_chunk_resumes_exactly_once(
    seed: int, run_dag: Any, make_qikberry_conn: Any, emulator: Any, tmp_path: Path
) -> None:
    rng = random.Random(seed)
    chunks = ROWS // CHUNK
    dies_at = rng.randrange(chunks)
    lost_answer = rng.random() < 0.5
    store = rng.random() < 0.5
    make_qikberry_conn(reconcile_window=1)

    numbers = [f"9198770{i:05d}" for i in range(ROWS)]
    path = tmp_path / "customers.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["mobile", "name", "order"])
        writer.writerows([n, f"Customer {i}", f"A-{i:04d}"] for i, n in enumerate(numbers))

    post = {"endpoint": "sms/send/json", "method": "POST", "after": dies_at, "times": 1}
    if lost_answer:
        emulator.set_faults(
            [
                {**post, "kind": "drop_after_accept"},
                {"endpoint": "sms/status", "method": "GET", "kind": "error", "status": 501, "times": 1},
            ]
        )
    else:
        emulator.set_faults([{**post, "kind": "error", "status": 501}])

    result = run_dag(DAG.replace("{{ store }}", str(store)), "reliability_kill", conf={"csv": str(path)})

    assert result == {"campaign": "success"}
    accepted = Counter(m["mobile"] for m in emulator.messages())
    assert set(accepted) == set(numbers)
    assert set(accepted.values()) == {1}
    per_chunk = Counter(m["custom"].rsplit("-", 2)[-2] for m in emulator.messages())
    assert set(per_chunk.values()) == {CHUNK}  # no chunk twice, none short
    summary = result.xcom("campaign")
    earlier = dies_at + 1 if lost_answer else dies_at
    assert summary["resumed_from_chunk"] == earlier
    assert summary["accepted"] == ROWS
    RESULTS.append(
        {"seed": seed, "died_at_chunk": dies_at, "answer_lost": lost_answer, "task_state": store, "resent": 0}
    )


def test_kill_retry_figures(figure: Any) -> None:
    if len(RESULTS) != len(SEEDS):
        pytest.skip("run together with the seeded kill-and-retry tests of this module")
    figure(
        "kill_and_retry",
        runs=len(RESULTS),
        rows_per_run=ROWS,
        chunks_per_run=ROWS // CHUNK,
        died_at=[r["died_at_chunk"] for r in RESULTS],
        answer_lost=sum(r["answer_lost"] for r in RESULTS),
        with_task_state=sum(r["task_state"] for r in RESULTS),
        accepted_chunks_resent=0,
        rows_sent_twice=0,
        rows_missing=0,
    )
