"""QikberrySendSmsOperator sending a stored DLT template, and its DLT pre-check, against the emulator over
real HTTP (issue 20)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from airflow_qikberry.exceptions import QikberryDltMismatchError, QikberryValidationError
from airflow_qikberry.operators.sms import QikberrySendSmsOperator
from tests.helpers import api_counts
from tests.hooks.test_dlt_hook import DATA, GOOD, OTP_ID, SEEDS


@pytest.fixture
def seeded(emulator: Any, qikberry_conn: str) -> Any:
    emulator.configure(**SEEDS)
    return emulator


def make(**kwargs: Any) -> QikberrySendSmsOperator:
    kwargs.setdefault("to", "919876543210")
    return QikberrySendSmsOperator(task_id="send", **kwargs)


def test_sends_a_stored_template(seeded: Any) -> None:
    result = make(template="otp-login", template_data=DATA, custom_id="login-1").execute({})
    (stored,) = seeded.messages()
    assert (stored["message"], stored["sender"], stored["custom"]) == (GOOD, "ACMEIN", "login-1")
    assert result == [
        {
            "id": stored["id"],
            "mobile": "9198XXXXX210",
            "status": "AWAITING-DLR",
            "units": 1,
            "charges": 1.0,
            "custom_id": "login-1",
        }
    ]


def test_template_data_rendered_as_text_is_read_back(seeded: Any) -> None:
    make(template=OTP_ID, template_data="{'name': 'Asha', 'otp': 482913, 'mins': '10'}").execute({})
    assert [m["message"] for m in seeded.messages()] == [GOOD]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({}, "message"),  # neither message nor template
        ({"message": "hi", "template": "otp-login"}, "message"),  # both
        ({"template": "otp-login", "template_data": "['a']"}, "template_data"),
        ({"template": "otp-login", "template_data": {"otp": None}}, "template_data.otp"),
        ({"template": "otp-login", "template_data": DATA, "sender": "ACMEIN"}, "sender"),
        ({"template": "otp-login", "template_data": {"otp": "1"}}, "template_data.name"),
        ({"template": "otp-login", "template_data": DATA, "dlt_check": "maybe"}, "dlt_check"),
        # A row of a DataFrame handed over as a dict: an empty cell is NaN, which would go out as "nan".
        ({"template": "otp-login", "template_data": {**DATA, "otp": float("nan")}}, "template_data.otp"),
        ({"template": "otp-login", "template_data": {**DATA, "otp": Decimal("NaN")}}, "template_data.otp"),
        ({"template": "otp-login", "template_data": {**DATA, "mins": float("inf")}}, "template_data.mins"),
    ],
)
def test_bad_template_input_fails_before_any_request(
    seeded: Any, overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(QikberryValidationError) as err:
        make(**overrides).execute({})
    assert err.value.field == field, err.value
    assert not any(key.startswith("POST") for key in api_counts(seeded))


def test_dry_run_shows_the_rendered_text_and_runs_the_pre_check(seeded: Any) -> None:
    result: Any = make(template="otp-login", template_data=DATA, dry_run=True).execute({})
    assert result["sample"] == [{"mobile": "9198XXXXX210", "text": GOOD, "units": 1}]
    assert (result["units"], result["sender"], result["service"]) == (1, "ACMEIN", "T")
    assert result["template"] == f"'otp-login' (DLT {OTP_ID}, sender ACMEIN)"
    with pytest.raises(QikberryDltMismatchError, match="DLT-TM-VAR-EXECEED"):
        make(template="otp-login", template_data={**DATA, "otp": "9" * 31}, dry_run=True).execute({})
    with pytest.raises(QikberryDltMismatchError, match="DLT-REJECTED"):
        make(message=GOOD.upper(), sender="ACMEIN", template_id=OTP_ID, dry_run=True).execute({})
    assert seeded.messages() == []
    assert not any(key.startswith("POST") for key in api_counts(seeded))


def test_a_text_with_a_template_id_is_checked_unless_turned_off(seeded: Any) -> None:
    changed = GOOD.replace("Valid", "valid")
    with pytest.raises(QikberryDltMismatchError) as err:
        make(message=changed, sender="ACMEIN", template_id=OTP_ID).execute({})
    assert "'. Valid for '" in err.value.detail
    assert seeded.messages() == []
    make(message=changed, sender="ACMEIN", template_id=OTP_ID, dlt_check=False).execute({})
    assert [m["message"] for m in seeded.messages()] == [changed]


TEMPLATE_DAG = """
import pendulum
from airflow.providers.common.compat.sdk import dag
from airflow_qikberry.operators.sms import QikberrySendSmsOperator

@dag(dag_id="sms_by_template", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
def sms_by_template():
    QikberrySendSmsOperator(
        task_id="send",
        to="{{ params.number }}",
        template="{{ params.template }}",
        template_data={"name": "{{ params.name }}", "otp": "{{ params.otp }}", "mins": "10"},
        params={"number": "919876543210", "template": "otp-login", "name": "Asha", "otp": "482913"},
    )

sms_by_template()
"""


@pytest.mark.slow
def test_a_templated_send_by_template_in_a_dag_run(run_dag: Any, seeded: Any) -> None:
    result = run_dag(TEMPLATE_DAG, "sms_by_template")
    assert result == {"send": "success"}
    assert [m["message"] for m in seeded.messages()] == [GOOD]
    assert [m["id"] for m in result.xcom("send")] == [m["id"] for m in seeded.messages()]
