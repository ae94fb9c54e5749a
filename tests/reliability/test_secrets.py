"""Secrets: the example DAGs end to end, in both auth modes (token in a header, token in the query string),
with every task log, XCom value, rendered template field and exception text scanned for the token.

Also: no full phone number in INFO logs or XComs (numbers are personal data). Template fields the DAG
author fills with numbers (``to``) are shown rendered in Airflow's UI like any template field; that is
documented and not scanned for numbers here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import TEST_TOKEN, all_log_text

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
# The example DAGs text +91 98765 xxxxx numbers; any 12-digit run of them, with or without +, is a leak.
FULL_NUMBER = re.compile(r"\+?9198765\d{5}\b")
EXAMPLES = [
    ("qikberry_campaign_pipeline", None),
    ("qikberry_send_sms", None),
    ("qikberry_failure_alerts", {"fail_load": True}),
]
SCANNED: dict[str, int] = {"dag_runs": 0, "xcom_values": 0, "rendered_fields": 0, "log_chars": 0}


def stored_values(dag_id: str, run_id: str) -> tuple[list[Any], list[Any]]:
    """Every XCom value and every rendered template field of the run, from the metadata database."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session
    from sqlalchemy import select

    try:
        from airflow.models.xcom import XComModel
    except ImportError:  # Airflow 2.x: the ORM model is XCom itself, and it deserializes on load
        from airflow.models.xcom import XCom as XComModel

        def value_of(row: Any) -> Any:
            return row.value
    else:
        value_of = XComModel.deserialize_value

    with create_session() as session:
        xcoms = session.scalars(
            select(XComModel).where(XComModel.dag_id == dag_id, XComModel.run_id == run_id)
        ).all()
        values = [value_of(x) for x in xcoms]
        rendered = session.scalars(
            select(RenderedTaskInstanceFields).where(
                RenderedTaskInstanceFields.dag_id == dag_id, RenderedTaskInstanceFields.run_id == run_id
            )
        ).all()
        fields = [r.rendered_fields for r in rendered]
    return values, fields


@pytest.mark.parametrize("auth_in", ["header", "query"])
@pytest.mark.parametrize(("dag_id", "conf"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_no_token_anywhere_and_no_number_in_info_logs_or_xcom(
    dag_id: str,
    conf: dict[str, Any] | None,
    auth_in: str,
    run_dag: Any,
    make_qikberry_conn: Any,
    emulator: Any,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    make_qikberry_conn(auth_in=auth_in)
    source = (REPO_ROOT / "example_dags" / f"{dag_id}.py").read_text(encoding="utf-8")
    result = run_dag(source, dag_id, conf=conf)
    assert emulator.messages(), "the DAG sent nothing: nothing was tested"
    if auth_in == "query":
        # The token really travelled in URLs, where a careless log line would show it.
        assert any(r["method"] == "GET" for r in emulator.request_log()["requests"])

    logs = all_log_text(caplog, capfd)
    xcoms, rendered = stored_values(dag_id, result.run_id)
    stored = json.dumps([xcoms, rendered], default=str)

    assert TEST_TOKEN not in logs
    assert TEST_TOKEN not in stored
    info_and_up = "\n".join(line for line in logs.splitlines() if "debug" not in line.lower()[:60])
    assert not FULL_NUMBER.search(info_and_up), FULL_NUMBER.search(info_and_up)
    assert not FULL_NUMBER.search(json.dumps(xcoms, default=str))
    if dag_id == "qikberry_failure_alerts":
        assert result.state == "failed"
        assert "warehouse load rejected row 812" in logs
    SCANNED["dag_runs"] += 1
    SCANNED["xcom_values"] += len(xcoms)
    SCANNED["rendered_fields"] += sum(len(f or {}) for f in rendered)
    SCANNED["log_chars"] += len(logs)


def test_secret_scan_figures(figure: Any) -> None:
    if SCANNED["dag_runs"] != 2 * len(EXAMPLES):
        pytest.skip("run together with the DAG runs of this module")
    figure("secrets", **SCANNED, token_occurrences=0, full_numbers_in_info_logs_or_xcom=0)
