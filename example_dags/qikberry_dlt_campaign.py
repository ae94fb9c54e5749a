"""A campaign sent by a registered DLT template, with the DLT pre-check showing the row that would bounce.

``export_customers`` -> ``show_templates`` -> ``campaign`` -> ``wait_for_delivery`` -> ``report``

In India every SMS must match a template registered on the DLT portal (docs/dlt.md). This pipeline sends a
bill reminder by the account's stored template ``bill-reminder``:

    Dear {{name}}, your bill of Rs {{amount}} is due on {{due}}. Pay at acme.in/pay -Acme

1. ``export_customers`` writes the customer table to a CSV file whose columns are the template's variables
   (``name``, ``amount``, ``due``) plus the number. One customer's name is 35 characters long: a DLT
   variable may hold at most 30, so the network would accept, charge and then reject that message.
2. ``show_templates`` logs the account's DLT senders and templates (what ``test_connection`` also shows).
3. ``campaign`` renders each row from the template (``template="bill-reminder"``), sends from the
   template's sender with its DLT template id, and checks every text against the template first: the row
   with the long name is not sent; it is in the rejected report with reason ``dlt_mismatch`` and what
   differs.
4. ``wait_for_delivery`` waits in the triggerer until the campaign is delivered.
5. ``report`` logs the rejected rows (numbers masked) next to the delivery counts.

Against the emulator, start it with the template: ``python -m airflow_qikberry.emulator --templates-file
example_dags/dlt_templates.json --dlt-mode``. Against the real API, register the template (and its sender)
on the DLT portal and in your Qikberry account, and replace the customer table first.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import dag, task

from airflow_qikberry.operators.campaign import QikberryBulkCampaignOperator
from airflow_qikberry.sensors.delivery import QikberryDeliverySensor

CONN_ID = "qikberry_default"
TEMPLATE = "bill-reminder"  # the stored template's alias (its DLT template id or its name work too)
CUSTOMERS = 12


@dag(
    dag_id="qikberry_dlt_campaign",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=5)},
    tags=["qikberry", "example", "dlt"],
    doc_md=__doc__,
)
def qikberry_dlt_campaign() -> None:
    @task
    def export_customers() -> dict[str, str]:
        """Write the customers to a CSV file; returns its path and where the rejected report goes."""
        import csv
        import tempfile
        from pathlib import Path

        names = ["Asha", "Ravi", "Meera", "Arjun", "Priya", "Kabir"]
        folder = Path(tempfile.mkdtemp(prefix="qikberry-dlt-"))
        path = folder / "customers.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["phone", "name", "amount", "due"])
            for i in range(CUSTOMERS):
                name = "Srinivasa Venkata Ramanujan Iyengar" if i == 4 else names[i % len(names)]
                writer.writerow([f"+91 98765 1{i:04d}", name, f"{450 + 25 * i}.00", "5 Dec"])
        return {"csv": str(path), "rejected": str(folder / "rejected.csv")}

    @task
    def show_templates() -> list[dict[str, Any]]:
        """Log the account's DLT senders and templates (read-only)."""
        import logging

        from airflow_qikberry.hooks.qikberry import QikberryHook

        log = logging.getLogger(__name__)
        with QikberryHook(qikberry_conn_id=CONN_ID) as hook:
            for sender in hook.get_senders():
                log.info("Sender %s: service %s, approved %s", sender.name, sender.service, sender.approved)
            templates = hook.get_templates()
        for t in templates:
            log.info("Template %s (DLT %s, sender %s): %s", t.alias, t.template_id, t.sender, t.body)
        return [{"alias": t.alias, "template_id": t.template_id, "sender": t.sender} for t in templates]

    files = export_customers()

    campaign = QikberryBulkCampaignOperator(
        task_id="campaign",
        qikberry_conn_id=CONN_ID,
        name="dlt-bill-reminder-{{ dag_run.start_date.strftime('%Y-%m-%d') }}",
        csv_path="{{ ti.xcom_pull(task_ids='export_customers')['csv'] }}",
        phone_column="phone",
        template=TEMPLATE,
        rejected_path="{{ ti.xcom_pull(task_ids='export_customers')['rejected'] }}",
        chunk_size=5,
        max_invalid_ratio=0.1,
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
    def report(files: dict[str, str], delivery: dict[str, Any]) -> dict[str, Any]:
        """Log the rows the DLT pre-check kept back (numbers masked) and the delivery counts."""
        import csv
        import logging

        from airflow_qikberry.phone import mask_number

        log = logging.getLogger(__name__)
        with open(files["rejected"], encoding="utf-8") as handle:
            rejected = [
                {
                    "row": int(r["row"]),
                    "reason": r["reason"],
                    "mobile": mask_number(r["value"]),
                    "detail": r["detail"],
                }
                for r in csv.DictReader(handle)
            ]
        for row in rejected:
            log.info(
                "Not sent, row %d to %s (%s): %s", row["row"], row["mobile"], row["reason"], row["detail"]
            )
        log.info("Delivery: %s", delivery)
        return {"rejected": rejected, "delivered": delivery["delivered"], "failed": delivery["failed"]}

    files >> show_templates() >> campaign >> wait_for_delivery
    report(files, wait_for_delivery.output)  # type: ignore[arg-type]


qikberry_dlt_campaign()
