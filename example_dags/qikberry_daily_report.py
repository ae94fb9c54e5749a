"""A scheduled report: yesterday's orders from a SQL database, texted as a one-line summary.

``build_orders_db`` fills a small SQLite database through the ``sqlite_default`` connection (the file the
connection points at, so the example runs anywhere; in real life this is your warehouse).
``daily_totals`` queries it through common.sql's ``SQLExecuteQueryOperator``, and ``text_summary`` sends
the figures with ``QikberrySendSmsOperator``, its text rendered from that query's XCom.

It is a scheduled DAG and reports on its logical date (``ds``); trigger it by hand with a logical date
(``airflow dags trigger qikberry_daily_report --logical-date 2026-11-27``), since a manual run of Airflow 3
has none by default.

Needs ``apache-airflow-providers-sqlite`` and a ``sqlite_default`` connection whose host is the database
file, e.g. ``AIRFLOW_CONN_SQLITE_DEFAULT='{"conn_type": "sqlite", "host": "/tmp/qikberry_orders.db"}'``.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import dag, task
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator

from airflow_qikberry.operators.sms import QikberrySendSmsOperator

CONN_ID = "qikberry_default"
SQL_CONN_ID = "sqlite_default"
MANAGERS = ["+91 98765 43210"]


@dag(
    dag_id="qikberry_daily_report",
    schedule="0 6 * * *",
    start_date=pendulum.datetime(2024, 1, 1, tz="Asia/Kolkata"),
    catchup=False,
    tags=["qikberry", "example"],
    doc_md=__doc__,
)
def qikberry_daily_report() -> None:
    @task
    def build_orders_db(ds: str | None = None) -> None:
        from airflow.providers.sqlite.hooks.sqlite import SqliteHook

        hook = SqliteHook(sqlite_conn_id=SQL_CONN_ID)
        hook.run("CREATE TABLE IF NOT EXISTS orders (day TEXT, amount REAL)")
        hook.run("DELETE FROM orders WHERE day = ?", parameters=(ds,))  # re-runnable for the same day
        hook.insert_rows("orders", [(ds, 250.0 + 10 * i) for i in range(17)], target_fields=["day", "amount"])

    daily_totals = SQLExecuteQueryOperator(
        task_id="daily_totals",
        conn_id=SQL_CONN_ID,
        sql="SELECT COUNT(*), ROUND(SUM(amount), 2) FROM orders WHERE day = :day",
        parameters={"day": "{{ ds }}"},
    )

    text_summary = QikberrySendSmsOperator(
        task_id="text_summary",
        qikberry_conn_id=CONN_ID,
        to=MANAGERS,
        message=(
            "Orders {{ ds }}: {{ ti.xcom_pull(task_ids='daily_totals')[0][0] }} orders, "
            "Rs {{ ti.xcom_pull(task_ids='daily_totals')[0][1] }} in total."
        ),
    )

    build_orders_db() >> daily_totals >> text_summary


qikberry_daily_report()
