"""A campaign and its DLT template (issue 20), the engine with the real hook against the emulator over HTTP:
sending by a stored template (each row's variables from its columns), the per-row DLT pre-check (a row that
does not fit is rejected as ``dlt_mismatch`` and never sent), what it says when it cannot run, and the
emulator's DLT mode agreeing with every verdict. The delivery sensor counts DLT statuses as failed."""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from airflow_qikberry import campaign as c
from airflow_qikberry.exceptions import (
    QikberryDltCheckUnavailableError,
    QikberryDltMismatchError,
    QikberryValidationError,
)
from airflow_qikberry.hooks.qikberry import QikberryHook
from tests.helpers import all_log_text, api_counts, count
from tests.hooks.test_dlt_hook import GOOD, OTP_ID, SEEDS

IDENTITY = ("dag", "campaign", "manual__1", "-1", "1")
LONG_NAME = "Srinivasa Venkata Ramanujan Iyengar"  # 35 characters: over the DLT variable limit


def rows(n: int = 6) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"mobile": f"91987650{i:04d}", "name": f"Cust{i}", "otp": 100000 + i, "mins": 10} for i in range(n)
    ]
    if n > 2:
        out[2]["name"] = LONG_NAME
    return out


def text(row: dict[str, Any]) -> str:
    return f"Dear {row['name']}, your OTP is {row['otp']}. Valid for {row['mins']} minutes. -Acme"


@pytest.fixture
def seeded(emulator: Any, qikberry_conn: str) -> Any:
    emulator.configure(**SEEDS)
    return emulator


def run(
    recipients: list[dict[str, Any]],
    *,
    render: Any = None,
    rejected_path: str | None = None,
    log: Any = None,
    **options: Any,
) -> dict[str, Any]:
    options.setdefault("chunk_size", 4)
    options.setdefault("max_invalid_ratio", 0.5)
    options.setdefault("name", "dlt")
    opts = c.CampaignOptions.checked(has_template=render is not None, **options)
    with QikberryHook() as hook:
        return c.run_campaign(
            opts,
            source=c.Source("recipients", lambda: c.recipient_rows(recipients)),
            hook=hook,
            render=render,
            identity=IDENTITY,
            rejected_path=rejected_path,
            log=log,
        )


def report(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_a_campaign_by_template_renders_each_row_and_rejects_the_one_that_would_bounce(
    seeded: Any, tmp_path: Path
) -> None:
    path = tmp_path / "rejected.csv"
    summary = run(rows(), template="otp-login", rejected_path=str(path))
    assert (summary["accepted"], summary["rejected"]) == (5, {"dlt_mismatch": 1})
    sent = {m["mobile"]: m for m in seeded.messages()}
    assert len(sent) == 5
    assert "919876500002" not in sent
    for row in rows():
        if row["name"] != LONG_NAME:
            assert sent[row["mobile"]]["message"] == text(row)
    assert {(m["sender"], m["template_id"], m["service"]) for m in sent.values()} == {("ACMEIN", OTP_ID, "T")}
    assert count(seeded, "POST sms/send/json") == 2  # chunks of 4: one request each, not one per row
    [rejected] = report(path)
    assert (rejected["row"], rejected["reason"], rejected["value"]) == ("3", "dlt_mismatch", "919876500002")
    assert rejected["detail"].startswith("DLT-TM-VAR-EXECEED: no choice of values keeps every variable")
    assert "{{name}} would hold 35" in rejected["detail"]
    # The network agrees: in DLT mode every row the check let through is delivered.
    seeded.configure(dlt_mode=True, duplicate_window_seconds=0)
    hook = QikberryHook()
    again = run(rows(), template="otp-login", name="dlt-2")
    seeded.flush_dlrs()
    statuses = [s.status for g in again["group_ids"] for s in hook.iter_group_status(g)]
    assert statuses == ["DELIVRD"] * 5


def test_template_columns_map_variables_to_other_columns_and_values_from_sql_types(seeded: Any) -> None:
    recipients = [{"phone": "919876500001", "first": "Asha", "code": Decimal("4711"), "valid": 10.5}]
    summary = run(
        recipients,
        template=OTP_ID,  # by its DLT template id
        template_columns="{'name': 'first', 'otp': 'code', 'mins': 'valid'}",  # a dict rendered as text
        check_balance=False,
    )
    assert summary["accepted"] == 1
    assert [m["message"] for m in seeded.messages()] == [
        "Dear Asha, your OTP is 4711. Valid for 10.5 minutes. -Acme"
    ]


def test_a_variable_without_a_column_stops_the_campaign_before_anything_is_sent(seeded: Any) -> None:
    with pytest.raises(QikberryValidationError, match=r"needs a column 'otp'") as err:
        run([{"mobile": "919876500001", "name": "Asha", "mins": 1}], template="otp-login")
    assert err.value.field == "template_columns"
    assert not any(k.startswith("POST") for k in api_counts(seeded))


def test_an_empty_cell_is_a_rejected_row(seeded: Any) -> None:
    recipients = rows(4)
    recipients[1]["otp"] = None
    summary = run(recipients, template="otp-login", max_invalid_ratio=0.6)
    assert summary["rejected"] == {"template_error": 1, "dlt_mismatch": 1}
    assert summary["accepted"] == 2


def test_a_message_template_with_a_template_id_is_checked_row_by_row(seeded: Any, tmp_path: Path) -> None:
    path = tmp_path / "rejected.csv"
    recipients = rows(4)
    recipients[2]["name"] = "Ravi"
    recipients[3]["vip"] = True  # the Jinja text adds a word for this row: the template has no such word

    def render(row: Any) -> str:
        return text(row).replace("Dear", "Dearest" if row.get("vip") else "Dear")

    summary = run(recipients, render=render, sender="ACMEIN", template_id=OTP_ID, rejected_path=str(path))
    assert (summary["accepted"], summary["rejected"]) == (3, {"dlt_mismatch": 1})
    [rejected] = report(path)
    assert rejected["row"] == "4"
    assert rejected["detail"] == "DLT-REJECTED: the text should begin with 'Dear ' but begins 'Deare'"


def test_one_text_for_every_row_that_does_not_fit_fails_the_campaign(seeded: Any) -> None:
    with pytest.raises(QikberryDltMismatchError, match="every text of this campaign as DLT-REJECTED") as err:
        run(rows(3), message=GOOD.replace("OTP", "code"), sender="ACMEIN", template_id=OTP_ID)
    assert err.value.field == "message"
    assert not any(k.startswith("POST") for k in api_counts(seeded))
    assert run(rows(3), message=GOOD, sender="ACMEIN", template_id=OTP_ID)["accepted"] == 3


@pytest.mark.parametrize(
    ("options", "status"),
    [
        ({"template": "old"}, "DLT-TM-INACTIVE"),
        ({"template": "otp-login", "sender": "ACMEPR"}, "DLT-SENDER-NOT-REG-TM"),
        ({"template": "pending"}, "DLT-HEADER-INACTIVE"),
    ],
)
def test_a_template_that_fails_as_a_whole_stops_the_campaign(
    seeded: Any, options: dict[str, Any], status: str
) -> None:
    recipients = [{"mobile": "919876500001", "name": "A", "otp": 1, "mins": 1, "x": 1}]
    with pytest.raises(QikberryDltMismatchError) as err:
        run(recipients, **options)
    assert err.value.status == status
    assert not any(k.startswith("POST") for k in api_counts(seeded))


def test_without_the_templates_endpoint(
    seeded: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    seeded.configure(templates_unavailable_status=403)
    with pytest.raises(QikberryValidationError, match=r"could not be read .*HTTP 403") as err:
        run(rows(2), template="otp-login")
    assert err.value.field == "template"
    with pytest.raises(QikberryDltCheckUnavailableError, match="HTTP 403"):
        run(rows(2), render=text, sender="ACMEIN", template_id=OTP_ID, dlt_check="required")
    assert not any(k.startswith("POST") for k in api_counts(seeded))
    assert run(rows(2), render=text, sender="ACMEIN", template_id=OTP_ID)["accepted"] == 2
    assert "the DLT pre-check could not run: the account's templates could not be read" in all_log_text(
        caplog, capfd
    )


def test_dry_run_shows_rendered_texts_and_the_rows_that_would_bounce(seeded: Any) -> None:
    summary = run(rows(), template="otp-login", dry_run=True)
    assert summary["rejected"] == {"dlt_mismatch": 1}
    assert summary["estimated_units"] == 5
    assert summary["sample"][0]["message"] == text(rows()[0])
    assert summary["sample"][0]["units"] == 1
    assert seeded.messages() == []


def test_turned_off_the_rows_go_out_and_the_network_bounces_them(seeded: Any) -> None:
    seeded.configure(dlt_mode=True)
    summary = run(rows(), template="otp-login", dlt_check="off")
    assert summary["accepted"] == 6
    assert summary["rejected"] == {}
    seeded.flush_dlrs()
    hook = QikberryHook()
    statuses = sorted(s.status for g in summary["group_ids"] for s in hook.iter_group_status(g))
    assert statuses == ["DELIVRD"] * 5 + ["DLT-TM-VAR-EXECEED"]


DLT_SENSOR_DAG = """
import pendulum
from airflow.providers.common.compat.sdk import dag, task
from airflow_qikberry.sensors.delivery import QikberryDeliverySensor

@dag(dag_id={dag_id!r}, schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
def the_dag():
    @task
    def send():
        from airflow_qikberry.hooks.qikberry import QikberryHook

        good = {good!r}
        nodes = [
            {{"to": "919876500001", "message": good}},
            {{"to": "919876500002", "message": good.replace("OTP", "code")}},
            {{"to": "919876500003", "message": good.replace("482913", "4" * 31)}},
            {{"to": "919876500004", "message": good, "sender": "ACMEPR"}},
        ]
        result = QikberryHook().send_batch(
            nodes, sender="ACMEIN", template_id={otp_id!r}, name="dlt", dlt_check="off"
        )
        return [m.message_id for m in result.messages]

    send() >> QikberryDeliverySensor(
        task_id="wait", message_ids="{{{{ ti.xcom_pull('send') }}}}", success_ratio=0.25,
        deferrable={deferrable}, poke_interval=0.3, timeout=60,
    )

the_dag()
"""


@pytest.mark.slow
@pytest.mark.parametrize("deferrable", [True, False])
def test_the_delivery_sensor_counts_dlt_statuses_as_failed(
    run_dag: Any, seeded: Any, deferrable: bool
) -> None:
    seeded.configure(dlt_mode=True, dlr_delay_seconds=0.5)
    dag_id = f"dlt_sensor_{deferrable}"
    source = DLT_SENSOR_DAG.format(dag_id=dag_id, good=GOOD, otp_id=OTP_ID, deferrable=deferrable)
    result = run_dag(source, dag_id)
    assert result == {"send": "success", "wait": "success"}
    summary = result.xcom("wait")
    assert (summary["total"], summary["delivered"], summary["failed"], summary["pending"]) == (4, 1, 3, 0)
    assert summary["failed_by_status"] == {
        "DLT-REJECTED": 1,
        "DLT-TM-VAR-EXECEED": 1,
        "DLT-SENDER-NOT-REG-TM": 1,
    }


def test_a_csv_exported_by_excel_is_sent_by_template(seeded: Any, tmp_path: Path) -> None:
    """What a spreadsheet gives: a byte-order mark, CRLF rows, a multi-line cell (Alt+Enter) and numbers
    written as text. The multi-line cell would put a line break inside {{name}}: a DLT variable never
    holds one, so that row is rejected, named, and the rest go out with the texts the template renders."""
    path = tmp_path / "otp.csv"
    lines = [
        "mobile,name,otp,mins",
        "919876500001,Asha,004711,10",
        '919876500002,"Ravi\r\nKumar",123456,10',
        "919876500003,Meera,654321,5",
    ]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8-sig"))
    rejected = tmp_path / "rejected.csv"
    opts = c.CampaignOptions.checked(
        has_template=False, template="otp-login", chunk_size=4, max_invalid_ratio=0.5, name="excel"
    )
    with QikberryHook() as hook:
        summary = c.run_campaign(
            opts,
            source=c.Source("csv", lambda: c.csv_rows(str(path))),
            hook=hook,
            render=None,
            identity=IDENTITY,
            rejected_path=str(rejected),
            log=None,
        )
    assert (summary["accepted"], summary["rejected"]) == (2, {"dlt_mismatch": 1})
    assert sorted(m["message"] for m in seeded.messages()) == [
        "Dear Asha, your OTP is 004711. Valid for 10 minutes. -Acme",  # the leading zeros kept
        "Dear Meera, your OTP is 654321. Valid for 5 minutes. -Acme",
    ]
    [row] = report(rejected)
    assert (row["row"], row["reason"]) == ("2", "dlt_mismatch")
    assert row["detail"].startswith("DLT-REJECTED:")
    assert row["detail"].endswith(
        "(the text has 2 lines, the template 1: a variable cannot hold a line break)"
    )
