"""Consumer half of the delivery-events pair: runs when payment reminders fail, with the failed reports.

The DAG is scheduled on the "SMS failed" asset of the ``payment-reminder-*`` campaigns
(:func:`airflow_qikberry.assets.sms_failed`). Its watcher runs in the triggerer and adds an asset event for
each batch of new failure reports, pushed by the API or read back from the status API; each event starts a
run (events that come while a run is queued join it).

1. ``failed_reports`` reads the reports of the events that started the run, each once
   (:func:`airflow_qikberry.delivery.events.reports_in`): message id, masked number, status, error code,
   units, credits, custom id, group id, campaign and times.
2. ``follow_up`` gets each failed message's full number from the status API (numbers are masked in asset
   events and XCom) and writes the follow-up list, for another channel or the CRM, to a CSV file in
   ``QIKBERRY_FOLLOW_UP_DIR`` (default: a temporary directory). It returns the count and the file, no
   number.

Delivery events need Airflow 3 (asset watchers); on Airflow 2.11 this DAG parses with no schedule.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import dag, task

from airflow_qikberry.assets import DELIVERY_EVENTS_SUPPORTED, sms_failed

CONN_ID = "qikberry_default"

# Airflow 2.11 has no asset watchers: there the DAG only runs when triggered (and finds no reports).
SCHEDULE = (
    [sms_failed(CONN_ID, campaign="payment-reminder-*", poll_interval=10)]
    if DELIVERY_EVENTS_SUPPORTED
    else None
)


@dag(
    dag_id="qikberry_failed_sms_followup",
    schedule=SCHEDULE,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["qikberry", "example", "delivery-events"],
    doc_md=__doc__,
)
def qikberry_failed_sms_followup() -> None:
    @task
    def failed_reports(**context: Any) -> list[dict[str, Any]]:
        """The failure reports that started this run, each once (the numbers masked)."""
        from airflow_qikberry.delivery.events import reports_in

        reports = reports_in(context.get("triggering_asset_events"), outcome="failed")
        for report in reports:
            print(
                f"{report['id']} to {report['mobile']}: {report['status']} "
                f"(error code {report['error_code']}, campaign {report['campaign']}, {report['source']})"
            )
        return reports

    @task
    def follow_up(reports: list[dict[str, Any]]) -> dict[str, Any]:
        """Write the failed numbers to a follow-up CSV; returns how many and where (never a number)."""
        import csv
        import os
        import tempfile
        from pathlib import Path

        from airflow_qikberry.hooks.qikberry import QikberryHook

        folder = Path(os.environ.get("QIKBERRY_FOLLOW_UP_DIR") or tempfile.mkdtemp(prefix="qikberry-"))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"failed-{pendulum.now('UTC').format('YYYYMMDDTHHmmssSSS')}.csv"
        with QikberryHook(qikberry_conn_id=CONN_ID) as hook, path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["message_id", "mobile", "status", "campaign"])
            for report in reports:
                rows = hook.get_status(message_id=report["id"])
                mobile = rows[0].mobile if rows else ""
                writer.writerow([report["id"], mobile, report["status"], report["campaign"]])
        return {"failed": len(reports), "file": str(path), "ids": [r["id"] for r in reports]}

    follow_up(failed_reports())  # type: ignore[arg-type]  # an XComArg at parse time


qikberry_failed_sms_followup()
