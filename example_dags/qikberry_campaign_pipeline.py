"""Flagship: a bulk SMS campaign from a table, guarded by a balance check, waited on without a worker slot.

``export_customers`` -> ``check_balance`` -> ``campaign`` -> ``wait_for_delivery`` -> ``report``

1. ``export_customers`` writes the customer table to a CSV file on object storage, as an upstream extract
   would (a few rows are deliberately bad: an invalid number and a duplicate, to show the rejected report).
   Only its URL goes through XCom, so ``campaign`` may run on another worker that shares no disk with this
   one. Where: the Airflow Variable ``qikberry_campaign_storage``, a base URL such as
   ``s3://my-bucket/campaigns`` (with the Variable ``qikberry_campaign_storage_conn_id`` naming the
   connection whose credentials reach it); by default ``file://`` + the temporary folder, which needs no
   cloud account and serves a single machine (or workers that mount the same folder).
2. ``check_balance`` skips the rest of the run when the account has too few credits
   (:class:`~airflow_qikberry.operators.balance.QikberryCheckBalanceOperator` with ``on_low="skip"``).
3. ``campaign`` texts every customer a personal message rendered from their row, Devanagari included
   (:class:`~airflow_qikberry.operators.campaign.QikberryBulkCampaignOperator`). It is resumable: if the
   worker dies mid-campaign, the retry sends only what was not accepted, after checking that the file
   still holds the very bytes the first try read. Its rejected rows go next to the file (``rejected.csv``).
4. ``wait_for_delivery`` defers to the triggerer until at least 95% of the campaign is delivered
   (:class:`~airflow_qikberry.sensors.delivery.QikberryDeliverySensor`); numbers ending in 999 are
   undeliverable on the emulator, so a few messages fail on purpose.
5. ``report`` prints delivered and failed counts.

``make demo`` runs this DAG against the local emulator. Against the real API it sends real messages: point
the ``qikberry_default`` connection at your account and replace the customer table first.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import dag, task

from airflow_qikberry.operators.balance import QikberryCheckBalanceOperator
from airflow_qikberry.operators.campaign import QikberryBulkCampaignOperator
from airflow_qikberry.sensors.delivery import QikberryDeliverySensor

CONN_ID = "qikberry_default"
CUSTOMERS = 60
MIN_CREDITS = 100
STORAGE_VARIABLE = "qikberry_campaign_storage"  # base URL of the campaign files, e.g. s3://bucket/campaigns
STORAGE_CONN_VARIABLE = "qikberry_campaign_storage_conn_id"  # the connection that reaches it, if any


@dag(
    dag_id="qikberry_campaign_pipeline",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=5)},
    tags=["qikberry", "example"],
    doc_md=__doc__,
)
def qikberry_campaign_pipeline() -> None:
    @task(multiple_outputs=True)
    def export_customers(run_id: str | None = None) -> dict[str, str]:
        """Write the customer table to a CSV file on object storage; returns its URL and where the rejected
        report goes (the URLs, not the rows, go to XCom)."""
        import csv
        import os
        import re
        import tempfile

        from airflow.providers.common.compat.sdk import ObjectStoragePath, Variable

        base = Variable.get(STORAGE_VARIABLE, None) or f"file://{tempfile.gettempdir()}/qikberry-campaigns"
        conn_id = Variable.get(STORAGE_CONN_VARIABLE, None) or None
        # URLs joined as text: on Airflow 2.11, ObjectStoragePath's "/" warns (universal_pathlib 0.2).
        folder = f"{base.rstrip('/')}/{re.sub(r'[^A-Za-z0-9._-]', '_', str(run_id))}"
        path = ObjectStoragePath(f"{folder}/customers.csv", conn_id=conn_id)
        rejected = ObjectStoragePath(f"{folder}/rejected.csv", conn_id=conn_id)
        if path.protocol in ("file", "local"):  # object stores have no folders to make
            os.makedirs(os.path.dirname(path.path), exist_ok=True)
        names = ["Asha", "Ravi", "Meera", "Arjun", "Priya", "Kabir", "अनीता", "Vikram", "Sara", "Dev"]
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["name", "phone", "amount", "due"])
            for i in range(CUSTOMERS):
                # Numbers ending in 999 are undeliverable on the emulator: the sensor's ratio allows for them.
                local = f"{i:02d}999" if i % 20 == 7 else f"{i:05d}"
                writer.writerow([names[i % len(names)], f"+91 98765 {local}", f"{120 + 7 * i}.00", "5 Dec"])
            writer.writerow(["Nobody", "12345", "1.00", "5 Dec"])  # not a phone number: rejected, not sent
            writer.writerow([names[0], "+91 98765 00000", "120.00", "5 Dec"])  # the first row again: dropped
        return {"csv": str(path), "rejected": str(rejected)}

    customers = export_customers()

    check_balance = QikberryCheckBalanceOperator(
        task_id="check_balance", qikberry_conn_id=CONN_ID, min_credits=MIN_CREDITS, on_low="skip"
    )

    campaign = QikberryBulkCampaignOperator(
        task_id="campaign",
        qikberry_conn_id=CONN_ID,
        # Not ds: a manually triggered run has no logical date in Airflow 3. The run's start date is there in
        # every run and stays the same across task retries (the campaign name is part of its custom ids).
        name="bill-reminder-{{ dag_run.start_date.strftime('%Y-%m-%d') }}",
        # The export's XComs by key (multiple_outputs); the stubs type a task's output as a bare XComArg.
        csv_path=customers["csv"],  # type: ignore[index]
        rejected_path=customers["rejected"],  # type: ignore[index]
        storage_conn_id="{{ var.value.get('qikberry_campaign_storage_conn_id', '') }}",
        phone_column="phone",
        message_template="Hi {{ row.name }}, your bill of Rs {{ row.amount }} is due on {{ row.due }}. 🙏",
        chunk_size=25,
        max_invalid_ratio=0.05,
    )

    wait_for_delivery = QikberryDeliverySensor(
        task_id="wait_for_delivery",
        qikberry_conn_id=CONN_ID,
        group_id="{{ ti.xcom_pull(task_ids='campaign')['group_ids'] }}",
        success_ratio=0.9,
        poke_interval=2,
        timeout=600,
        deferrable=True,
    )

    @task
    def report(campaign_summary: dict[str, Any], delivery: dict[str, Any]) -> dict[str, Any]:
        """Log the campaign in one place: what was sent, rejected, delivered and failed."""
        import logging

        log = logging.getLogger(__name__)
        log.info(
            "Campaign %s: %s accepted, %s rejected, %s duplicates removed, ~%s credits",
            campaign_summary["campaign"],
            campaign_summary["accepted"],
            campaign_summary["rejected_total"],
            campaign_summary["duplicates_removed"],
            campaign_summary["estimated_credits"],
        )
        log.info("Delivery: %s", delivery)
        return {"campaign": campaign_summary, "delivery": delivery}

    check_balance >> campaign
    customers >> campaign
    campaign >> wait_for_delivery
    report(campaign.output, wait_for_delivery.output)  # type: ignore[arg-type]


qikberry_campaign_pipeline()
