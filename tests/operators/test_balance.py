"""QikberryCheckBalanceOperator against the emulator over real HTTP, at execute() level and in DAG runs."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, AirflowSkipException

from airflow_qikberry.exceptions import QikberryValidationError
from airflow_qikberry.operators.balance import QikberryCheckBalanceOperator
from tests.helpers import api_counts
from tests.operators.test_send_sms import HEAVY, imported_by


def make(**kwargs: Any) -> QikberryCheckBalanceOperator:
    kwargs.setdefault("min_credits", 100)
    return QikberryCheckBalanceOperator(task_id="check", **kwargs)


@pytest.mark.parametrize("threshold", [100, 10000, "10000", 9999.5, Decimal("0"), " 500 "])
def test_enough_credits_returns_them(qikberry_conn: str, emulator: Any, threshold: Any) -> None:
    credits = make(min_credits=threshold).execute({})
    assert credits == 10000
    assert type(credits) is int
    assert api_counts(emulator) == {"GET finance/balance": 1}


def test_fractional_credits_are_a_float(qikberry_conn: str, emulator: Any) -> None:
    emulator.configure(credits={"T": 12.5})
    credits = make(min_credits=12.5).execute({})
    assert credits == 12.5
    assert type(credits) is float
    assert json.loads(json.dumps(credits)) == 12.5


def test_low_credits_fail_with_credits_and_threshold(qikberry_conn: str, emulator: Any) -> None:
    emulator.configure(credits={"T": 99})
    with pytest.raises(AirflowFailException) as caught:
        make(min_credits=100).execute({})
    assert "'T' has 99 credits, below min_credits 100" in str(caught.value)


def test_low_credits_skip_when_asked(qikberry_conn: str, emulator: Any) -> None:
    emulator.configure(credits={"T": 12.5})
    with pytest.raises(AirflowSkipException, match=r"has 12\.5 credits, below min_credits 13"):
        make(min_credits=13, on_low="skip").execute({})


def test_service_defaults_to_the_connection_and_can_be_chosen(make_qikberry_conn: Any, emulator: Any) -> None:
    make_qikberry_conn(service="P")
    emulator.configure(credits={"T": 1, "P": 700, "G": 5})
    assert make(min_credits=500).execute({}) == 700
    with pytest.raises(AirflowFailException, match="'G' has 5 credits"):
        make(min_credits=500, service="G").execute({})


def test_postpaid_service_counts_as_enough(
    qikberry_conn: str, emulator: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    from tests.helpers import all_log_text

    emulator.configure(credits={"T": 3}, postpaid_services=["T"])
    assert make(min_credits=100).execute({}) == 3
    assert "is postpaid" in all_log_text(caplog, capfd)


def test_dry_run_logs_what_would_happen_and_succeeds(
    qikberry_conn: str, emulator: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    from tests.helpers import all_log_text

    emulator.configure(credits={"T": 99})
    assert make(min_credits=100, on_low="skip", dry_run=True).execute({}) == 99
    assert "DRY RUN: the task would skip here" in all_log_text(caplog, capfd)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"on_low": "warn"}, "on_low"),
        ({"on_low": "Fail"}, "on_low"),
        ({"min_credits": -1}, "min_credits"),
        ({"min_credits": "lots"}, "min_credits"),
        ({"min_credits": float("nan")}, "min_credits"),
        ({"min_credits": float("inf")}, "min_credits"),
        ({"min_credits": True}, "min_credits"),
        ({"min_credits": None}, "min_credits"),
        ({"min_credits": [100]}, "min_credits"),
    ],
)
def test_constant_arguments_are_checked_when_the_dag_file_is_parsed(
    kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(QikberryValidationError) as caught:
        make(**kwargs)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"min_credits": "{{ params.min }}", "params": {"min": "lots"}}, "min_credits"),
        ({"min_credits": "{{ params.min }}", "params": {"min": "-5"}}, "min_credits"),
        ({"service": "T!"}, "service"),
    ],
)
def test_bad_rendered_values_fail_before_any_request(
    qikberry_conn: str, emulator: Any, kwargs: dict[str, Any], field: str
) -> None:
    op = make(**kwargs)  # a template is checked once rendered
    if "params" in kwargs:
        op.min_credits = kwargs["params"]["min"]  # what rendering produces
    with pytest.raises(QikberryValidationError) as caught:
        op.execute({})
    assert caught.value.field == field
    assert api_counts(emulator) == {}


def test_unknown_service_names_the_services_the_account_has(qikberry_conn: str, emulator: Any) -> None:
    with pytest.raises(
        QikberryValidationError, match=r"'X' has no balance row .*'G', 'P', 'S', 'T'"
    ) as caught:
        make(service="X").execute({})
    assert caught.value.field == "service"


def test_construction_needs_no_connection_and_makes_no_call(
    monkeypatch: pytest.MonkeyPatch, emulator: Any
) -> None:
    from airflow_qikberry.hooks.qikberry import QikberryHook

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the hook or the connection was used while the DAG file was parsed")

    monkeypatch.setattr(QikberryHook, "__init__", refuse)
    monkeypatch.setattr(QikberryHook, "get_connection", refuse)
    op = make(qikberry_conn_id="no_such_connection", min_credits="{{ params.min }}")
    assert "hook" not in op.__dict__
    assert api_counts(emulator) == {}


def test_module_is_cheap_to_import() -> None:
    # DAG files import it at every parse: no hook, HTTP library or phone-number metadata at module level.
    loaded = imported_by("airflow_qikberry.operators.balance")
    assert "airflow_qikberry.operators.balance" in loaded
    assert [m for m in loaded if m.startswith(HEAVY)] == []


# ---------------------------------------------------------------------------------------------------------
# Inside real DAG runs

GUARD_DAG = """
import pendulum
from datetime import timedelta
from airflow.providers.common.compat.sdk import dag
from airflow_qikberry.operators.balance import QikberryCheckBalanceOperator
from airflow_qikberry.operators.sms import QikberrySendSmsOperator

@dag(
    dag_id="{dag_id}",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    params={{"min": "{min_credits}"}},
    default_args={default_args},
)
def balance_guard():
    check = QikberryCheckBalanceOperator(
        task_id="check",
        min_credits="{{{{ params.min }}}}",
        on_low="{on_low}",
        retries=1,
        retry_delay=timedelta(seconds=0),
    )
    send = QikberrySendSmsOperator(task_id="send", to="919876543210", message="Sale starts now")
    check >> send

balance_guard()
"""


def guard_dag(dag_id: str, *, min_credits: str, on_low: str, default_args: str = "{}") -> str:
    return GUARD_DAG.format(dag_id=dag_id, min_credits=min_credits, on_low=on_low, default_args=default_args)


@pytest.mark.slow
def test_enough_credits_let_the_send_run(run_dag: Any, qikberry_conn: str, emulator: Any) -> None:
    result = run_dag(guard_dag("balance_ok", min_credits="500", on_low="skip"), "balance_ok")
    assert result == {"check": "success", "send": "success"}
    assert result.xcom("check") == 10000
    assert len(emulator.messages()) == 1


@pytest.mark.slow
def test_low_credits_skip_the_send(run_dag: Any, qikberry_conn: str, emulator: Any) -> None:
    emulator.configure(credits={"T": 99})
    result = run_dag(guard_dag("balance_skip", min_credits="100", on_low="skip"), "balance_skip")
    assert result == {"check": "skipped", "send": "skipped"}
    assert emulator.messages() == []
    assert api_counts(emulator) == {"GET finance/balance": 1}


@pytest.mark.slow
def test_low_credits_fail_without_retrying(
    run_dag: Any,
    qikberry_conn: str,
    emulator: Any,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from tests.helpers import all_log_text

    emulator.configure(credits={"T": 99})
    result = run_dag(guard_dag("balance_fail", min_credits="100", on_low="fail"), "balance_fail")
    assert result == {"check": "failed", "send": "upstream_failed"}
    assert api_counts(emulator) == {"GET finance/balance": 1}  # retries=1, yet no second try
    assert "'T' has 99 credits, below min_credits 100" in all_log_text(caplog, capfd)


@pytest.mark.slow
def test_a_dag_in_dry_run_mode_goes_through_and_sends_nothing(
    run_dag: Any, qikberry_conn: str, emulator: Any
) -> None:
    emulator.configure(credits={"T": 99})
    source = guard_dag("balance_dry", min_credits="100", on_low="fail", default_args='{"dry_run": True}')
    result = run_dag(source, "balance_dry")
    assert result == {"check": "success", "send": "success"}
    assert result.xcom("check") == 99
    assert result.xcom("send")["dry_run"] is True
    assert emulator.messages() == []
    assert not any(key.startswith("POST") for key in api_counts(emulator))


@pytest.mark.slow
def test_a_bad_rendered_threshold_fails_before_any_request(
    run_dag: Any, qikberry_conn: str, emulator: Any
) -> None:
    result = run_dag(guard_dag("balance_bad_min", min_credits="lots", on_low="skip"), "balance_bad_min")
    assert result == {"check": "failed", "send": "upstream_failed"}
    assert api_counts(emulator) == {}  # neither try made a request
