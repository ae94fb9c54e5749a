"""Campaign half of the delivery-events pair: text payment reminders, and let the failures flow on.

``payment_reminders`` sends one SMS per customer with
:class:`~airflow_qikberry.operators.campaign.QikberryBulkCampaignOperator` and does not wait for delivery:
with ``delivery_events`` on the connection, the operator records the campaign's group ids, and the DAG
``qikberry_failed_sms_followup`` (scheduled on the "SMS failed" asset of this campaign) runs when failure
reports come in, by push or read back from the status API. Numbers ending in 999 are undeliverable on the
emulator, so a few reports fail on purpose.

``make demo``-style use: point ``qikberry_default`` at the emulator or an account, with
``"delivery_events": true`` in its extra (see docs/delivery-events.md).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.common.compat.sdk import dag

from airflow_qikberry.operators.campaign import QikberryBulkCampaignOperator

CONN_ID = "qikberry_default"
CUSTOMERS = 30


@dag(
    dag_id="qikberry_payment_reminders",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=5)},
    params={"wave": 1},
    tags=["qikberry", "example", "delivery-events"],
    doc_md=__doc__,
)
def qikberry_payment_reminders() -> None:
    QikberryBulkCampaignOperator(
        task_id="payment_reminders",
        qikberry_conn_id=CONN_ID,
        # The campaign name is what the follow-up DAG's asset selects ("payment-reminder-*").
        name="payment-reminder-{{ dag_run.start_date.strftime('%Y-%m-%d') }}-{{ params.wave }}",
        recipients=[
            {
                "name": f"Customer {i}",
                # Numbers ending in 999 (every tenth customer) are undeliverable on the emulator.
                "phone": f"+91 98765 {i:02d}{'999' if i % 10 == 3 else f'{100 + i:03d}'}",
                "amount": f"{250 + 10 * i}.00",
            }
            for i in range(CUSTOMERS)
        ],
        phone_column="phone",
        message_template=(
            "Hi {{ row.name }}, Rs {{ row.amount }} is due on your account (wave {{ params.wave }})."
        ),
        chunk_size=10,
    )


qikberry_payment_reminders()
