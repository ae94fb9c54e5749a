"""Send one templated SMS with the operator, then wait for its delivery report with the sensor.

``send`` renders its text from the run's start date and an upstream XCom, sends it to two numbers and
returns one entry per message (``id``, masked ``mobile``, ``status``, ``units``, ``charges``,
``custom_id``; never a full number). ``wait_for_delivery`` takes the ids straight from that XCom and waits
until every message is delivered, checking once on the worker and then deferring to the triggerer. A
retried ``send`` does not send again what its first try got accepted.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import dag, task

from airflow_qikberry.operators.sms import QikberrySendSmsOperator
from airflow_qikberry.sensors.delivery import QikberryDeliverySensor

CONN_ID = "qikberry_default"


@dag(
    dag_id="qikberry_send_sms",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    tags=["qikberry", "example"],
    doc_md=__doc__,
)
def qikberry_send_sms() -> None:
    @task
    def count_new_signups() -> int:
        return 42

    signups = count_new_signups()

    send = QikberrySendSmsOperator(
        task_id="send",
        qikberry_conn_id=CONN_ID,
        to=["+91 98765 43210", "+91 98765 43211"],
        # The run's start date, not ds: a manually triggered run has no logical date in Airflow 3. It is
        # stable across retries, so a retried task derives the same custom id and does not send again.
        message=(
            "{{ dag_run.start_date.strftime('%d %b') }}: "
            "{{ ti.xcom_pull(task_ids='count_new_signups') }} new sign-ups today."
        ),
        retries=2,
    )

    wait_for_delivery = QikberryDeliverySensor(
        task_id="wait_for_delivery",
        qikberry_conn_id=CONN_ID,
        message_ids="{{ ti.xcom_pull(task_ids='send') | map(attribute='id') | list }}",
        poke_interval=2,
        timeout=300,
        deferrable=True,
    )

    signups >> send >> wait_for_delivery


qikberry_send_sms()
