"""Send one SMS through Qikberry, then wait for its delivery report.

``make demo`` runs this DAG against the local emulator. Pointed at the real API (a ``qikberry_default``
connection with your access token), it sends a real message to ``RECIPIENT``.

Task ``send_sms`` returns only message ids (phone numbers are personal data and stay out of XCom);
``wait_for_delivery`` polls their status once a second until every one is final, for at most a minute.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import dag, task

CONN_ID = "qikberry_default"
RECIPIENT = "919876543210"
SENDER = "QIKBRY"
POLL_SECONDS = 1.0
WAIT_SECONDS = 60.0


@dag(
    dag_id="qikberry_demo",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["qikberry", "example"],
    doc_md=__doc__,
)
def qikberry_demo() -> None:
    @task
    def send_sms() -> list[str]:
        # Imported inside the task: the scheduler parses this file often and must not pay for the hook.
        from airflow_qikberry.hooks.qikberry import QikberryHook

        hook = QikberryHook(qikberry_conn_id=CONN_ID)
        sent = hook.send_sms(RECIPIENT, "Hello from Airflow: the qikberry_demo DAG says hi.", sender=SENDER)
        return [message.message_id for message in sent]

    @task
    def wait_for_delivery(message_ids: list[str]) -> dict[str, str]:
        import logging
        import time

        from airflow.providers.common.compat.sdk import AirflowFailException

        from airflow_qikberry.hooks.qikberry import QikberryHook

        log = logging.getLogger(__name__)
        hook = QikberryHook(qikberry_conn_id=CONN_ID)
        statuses: dict[str, str] = {}
        pending = set(message_ids)
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            for message_id in sorted(pending):
                for row in hook.get_status(message_id=message_id):
                    statuses[message_id] = row.status
                    if row.is_final:
                        pending.discard(message_id)
            if not pending:
                break
            if time.monotonic() >= deadline:
                raise AirflowFailException(f"Still pending after {WAIT_SECONDS:g}s: {sorted(pending)}")
            time.sleep(POLL_SECONDS)
        for message_id, status in statuses.items():
            log.info("Message %s: %s", message_id, status)
        return statuses

    # TaskFlow hands over an XComArg that Airflow resolves to the list at run time.
    wait_for_delivery(send_sms())  # type: ignore[arg-type]


qikberry_demo()
