"""Failure alerts by SMS: a task callback and a DAG callback through ``QikberryNotifier``.

``extract`` succeeds; ``load`` fails on purpose while the ``fail_load`` param is true (the default, so the
example shows its alerts), like a warehouse load hitting a bad row. Two alerts go out:

* the task callback on ``load``: ``[Airflow] qikberry_failure_alerts.load failed (try 1/1) ...: ...``
* the DAG callback when the run fails: ``[Airflow] qikberry_failure_alerts failed ...``

A run therefore ends ``failed`` by design; trigger it with ``{"fail_load": false}`` to see a clean run that
sends nothing. The notifier never hides the task's own failure: an SMS that cannot be sent is logged, and the
task's exception is what Airflow records.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import dag, task

from airflow_qikberry.notifications.qikberry import QikberryNotifier

CONN_ID = "qikberry_default"
ON_CALL = ["+91 98765 43210", "+91 98765 43211"]

alert = QikberryNotifier(to=ON_CALL, qikberry_conn_id=CONN_ID)


@dag(
    dag_id="qikberry_failure_alerts",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params={"fail_load": True},
    on_failure_callback=alert,
    tags=["qikberry", "example"],
    doc_md=__doc__,
)
def qikberry_failure_alerts() -> None:
    @task
    def extract() -> int:
        return 1_204

    @task(on_failure_callback=alert)
    def load(rows: int, params: dict[str, bool] | None = None) -> int:
        from airflow.providers.common.compat.sdk import AirflowFailException

        if params and params.get("fail_load"):
            raise AirflowFailException(f"warehouse load rejected row 812 of {rows}: column 'amount' is null")
        return rows

    load(extract())  # type: ignore[arg-type]  # TaskFlow resolves the XComArg to the int at run time


qikberry_failure_alerts()
