"""The hook inside real Airflow tasks (dag.test() with the throwaway SQLite home, emulator over HTTP)."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.slow

RETRY_DAG = """
import pendulum
from datetime import timedelta
from airflow.providers.common.compat.sdk import dag, task, get_current_context

@dag(dag_id="hook_task_retry", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
def hook_task_retry():
    @task(retries=1, retry_delay=timedelta(seconds=0))
    def send():
        from airflow_qikberry.hooks.qikberry import QikberryHook

        hook = QikberryHook()
        sent = hook.send_sms("919876543210", "Nightly load finished")
        hook.send_sms("919876543211", "Nightly load finished")
        if get_current_context()["ti"].try_number == 1:
            raise RuntimeError("the task fails after sending; Airflow retries it")
        return [m.message_id for m in sent]

    send()

hook_task_retry()
"""


def test_task_retry_does_not_resend(run_dag: Any, qikberry_conn: str, emulator: Any) -> None:
    result = run_dag(RETRY_DAG, "hook_task_retry")
    assert result == {"send": "success"}
    messages = emulator.messages()
    assert sorted(m["mobile"] for m in messages) == ["919876543210", "919876543211"]  # once each, not twice
    assert all(m["custom"].startswith("af-") for m in messages)
    assert result.xcom("send") == [m["id"] for m in messages if m["mobile"] == "919876543210"]
    # Try 2 looked each derived custom id up and found it instead of posting again.
    assert emulator.request_log()["counts"]["POST sms/send"] == 2


RESEND_DAG = """
import pendulum
from datetime import timedelta
from airflow.providers.common.compat.sdk import dag, task, get_current_context

@dag(dag_id="hook_task_resend", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
def hook_task_resend():
    @task(retries=1, retry_delay=timedelta(seconds=0))
    def send():
        from airflow_qikberry.hooks.qikberry import QikberryHook

        context = get_current_context()
        resend = bool(context["dag_run"].conf.get("resend", False))
        sent = QikberryHook().send_sms("919876543210", "Nightly load finished", resend=resend)
        if context["ti"].try_number == 1:
            raise RuntimeError("the task fails after sending; Airflow retries it")
        return [m.custom_id for m in sent]

    send()

hook_task_resend()
"""


@pytest.mark.parametrize("resend", [False, True])
def test_resend_sends_again_on_a_task_retry(
    run_dag: Any, qikberry_conn: str, emulator: Any, resend: bool
) -> None:
    result = run_dag(RESEND_DAG, "hook_task_resend", conf={"resend": resend})
    assert result == {"send": "success"}
    messages = emulator.messages()
    counts = emulator.request_log()["counts"]
    if not resend:
        # Try 2 looked try 1's custom id up and returned its message instead of sending again.
        assert len(messages) == 1
        assert counts["POST sms/send"] == 1
        assert counts["GET sms/status"] == 1
        assert result.xcom("send") == [messages[0]["custom"]]
        return
    # A deliberate re-send: try 2 sends again, under a custom id of its own, without looking try 1 up.
    assert [m["mobile"] for m in messages] == ["919876543210", "919876543210"]
    assert counts["POST sms/send"] == 2
    assert "GET sms/status" not in counts
    first, second = (m["custom"] for m in messages)
    assert first.startswith("af-")
    assert second.startswith("af-")
    assert first != second
    assert result.xcom("send") == [second]


FAILING_SEND_DAG = """
import pendulum
from airflow.providers.common.compat.sdk import dag, task

@dag(dag_id="hook_bad_input", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
def hook_bad_input():
    @task
    def send():
        from airflow_qikberry.hooks.qikberry import QikberryHook

        QikberryHook().send_sms("12", "hello")

    send()

hook_bad_input()
"""


def test_bad_input_fails_the_task_without_a_request(run_dag: Any, qikberry_conn: str, emulator: Any) -> None:
    result = run_dag(FAILING_SEND_DAG, "hook_bad_input")
    assert result == {"send": "failed"}
    assert emulator.messages() == []
    assert not any(k.startswith("POST") for k in emulator.request_log()["counts"])
