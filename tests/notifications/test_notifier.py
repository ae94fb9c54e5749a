"""QikberryNotifier against the emulator over real HTTP, and inside real Airflow DAG runs (dag.test())."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_qikberry.notifications.qikberry import (
    QikberryNotifier,
    default_message,
    send_qikberry_notification,
)
from airflow_qikberry.sms_text import measure
from tests.helpers import (
    TEST_TOKEN,
    all_log_text,
    conn_env_var,
    count,
    only_before_airflow,
    qikberry_conn_json,
)

NUMBER = "919876543210"


def _texts(emulator: Any) -> list[str]:
    return [m["message"] for m in emulator.messages()]


def _task_context(**overrides: Any) -> dict[str, Any]:
    ti = SimpleNamespace(dag_id="sales_etl", task_id="load", try_number=2, max_tries=2, state="failed")
    context: dict[str, Any] = {
        "ti": ti,
        "run_id": "manual__2026-11-27T02:00:00+00:00",
        "logical_date": datetime(2026, 11, 27, 2, 0, tzinfo=timezone.utc),
        "exception": KeyError("amount"),
    }
    context.update(overrides)
    return context


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------------------
# default message (pure)


def test_default_message_for_a_failed_task() -> None:
    # Break: drop the "(try n/max)" part or use max_tries instead of max_tries + 1 -> fails.
    assert default_message(_task_context()) == (
        "[Airflow] sales_etl.load failed (try 2/3) 2026-11-27T02:00Z: KeyError 'amount'"
    )
    assert send_qikberry_notification is QikberryNotifier


def test_default_message_for_retry_success_dag_level_and_missing_keys() -> None:
    # Break: ignore ti.state (always "failed") -> the retry/success lines fail; ignore "reason" -> DAG line.
    retry_ti = SimpleNamespace(dag_id="d", task_id="t", try_number=1, max_tries=1, state="up_for_retry")
    assert default_message({"ti": retry_ti, "run_id": "r1", "exception": ValueError("boom\nmore")}) == (
        "[Airflow] d.t failed, will retry (try 1/2) r1: ValueError boom"
    )
    ok_ti = SimpleNamespace(dag_id="d", task_id="t", try_number=1, max_tries=0, state="success")
    assert default_message({"ti": ok_ti, "run_id": "r1"}) == "[Airflow] d.t succeeded (try 1/1) r1"
    dag_run = SimpleNamespace(dag_id="d", run_id="r9", state="failed", logical_date=None)
    assert (
        default_message({"dag_run": dag_run, "reason": "task_failure", "ti": ok_ti})
        == "[Airflow] d failed r9"
    )
    assert default_message({}) == "[Airflow] unknown_dag finished"


# ---------------------------------------------------------------------------------------------------
# sending, over real HTTP


def test_notify_sends_one_message_per_recipient_and_a_bad_number_does_not_stop_the_others(
    qikberry_conn: str, emulator: Any, caplog: Any, capfd: Any
) -> None:
    # Break: normalise the whole list at once (one bad entry aborts all) -> nothing is sent, fails.
    # Break: stop the loop at the first failing send -> the third number is missing, fails.
    emulator.set_faults(
        [{"endpoint": "sms/send", "method": "POST", "kind": "error", "status": 422, "times": 1}]
    )
    notifier = QikberryNotifier(to=f"919876543211, 12, {NUMBER}; +91 98765 43212", message="disk full")
    notifier(_task_context())
    # The first number's send failed (422, not retried), "12" is not a number: the other two still got it.
    assert sorted(m["mobile"] for m in emulator.messages()) == [NUMBER, "919876543212"]
    logs = all_log_text(caplog, capfd)
    assert "recipient 2 skipped" in logs
    assert "9198XXXXX211 was not sent" in logs
    assert "919876543211" not in logs.replace("9198XXXXX211", "")


@pytest.mark.parametrize(
    ("to", "said"),
    [
        ("", "to: is empty"),
        ("  ", "to: is empty"),
        ([], "to: is an empty list"),
        ({"mobile": NUMBER}, "to: got a dict"),
        ("{'mobile': '919876543210'}", "to: the rendered value is a dict, not a list"),
    ],
)
def test_no_recipients_at_all_is_reported_not_silent(
    qikberry_conn: str, emulator: Any, caplog: Any, capfd: Any, to: Any, said: str
) -> None:
    # The send operator's reader of `to` (recipients.recipient_list): an alert with no recipient says so.
    # Break: split an empty string into no entries, as the notifier once did -> nothing is logged, fails.
    QikberryNotifier(to=to, message="disk full")(_task_context())
    logs = all_log_text(caplog, capfd)
    assert "Qikberry alert was not sent" in logs
    assert said in logs
    assert NUMBER not in logs
    assert emulator.messages() == []


def test_a_record_among_the_recipients_is_skipped_with_a_hint(
    qikberry_conn: str, emulator: Any, caplog: Any, capfd: Any
) -> None:
    QikberryNotifier(to=[{"mobile": "919876543211"}, NUMBER], message="disk full")(_task_context())
    assert [m["mobile"] for m in emulator.messages()] == [NUMBER]
    logs = all_log_text(caplog, capfd)
    assert "recipient 1 skipped" in logs
    assert "map(attribute='mobile')" in logs


def test_templated_fields_are_rendered(qikberry_conn: str, emulator: Any) -> None:
    # Break: drop "to"/"message" from template_fields -> the literal "{{ ... }}" text is refused / sent.
    notifier = QikberryNotifier(to="{{ params.oncall }}", message="{{ ti.task_id }} broke")
    notifier({**_task_context(), "params": {"oncall": [NUMBER]}})
    assert [(m["mobile"], m["message"]) for m in emulator.messages()] == [(NUMBER, "load broke")]


@only_before_airflow((3, 0), "Airflow 3's task context is a plain dict: no key of it is deprecated")
def test_a_context_without_dag_is_not_copied(qikberry_conn: str, emulator: Any) -> None:
    # A notifier called directly with an Airflow 2 Context that has no "dag" gets one added for
    # BaseNotifier. Break: copy the context for that ({**context, "dag": None}) -> every deprecated key
    # is read, the warning (an error here) stops the alert, and nothing is sent.
    from airflow.utils.context import Context

    context = Context({**_task_context(), "next_ds": "2026-11-28", "params": {"oncall": [NUMBER]}})
    notifier = QikberryNotifier(to="{{ params.oncall }}", message="{{ ti.task_id }} broke")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        notifier(context)
    assert [(m["mobile"], m["message"]) for m in emulator.messages()] == [(NUMBER, "load broke")]
    assert "dag" not in context  # the caller's context is left as it was


def test_async_notify_sends_once(qikberry_conn: str, emulator: Any) -> None:
    # Break: make async_notify a no-op (or raise NotImplementedError) -> no message / exception, fails.
    notifier = QikberryNotifier(to=NUMBER)
    asyncio.run(notifier.async_notify(_task_context()))
    assert _texts(emulator) == [
        "[Airflow] sales_etl.load failed (try 2/3) 2026-11-27T02:00Z: KeyError 'amount'"
    ]
    assert count(emulator, "POST sms/send") == 1


@pytest.mark.parametrize(
    ("message", "max_units", "encoding", "check"),
    [
        pytest.param("Load failed: " + "x" * 400, 1, "GSM", lambda t: t.endswith("..."), id="gsm7-long"),
        pytest.param(
            "KeyError \u2018amount\u2019 \u2013 see \u201crunbook\u201d\u2026 " + "y" * 300,
            1,
            "GSM",
            lambda t: t.startswith("KeyError 'amount' - see \"runbook\"... y"),
            id="curly-quotes-en-dash",
        ),
        pytest.param(
            "Pipeline down \U0001f525 " * 20,
            1,
            "UCS2",
            lambda t: "\U0001f525" in t and t.endswith("\u2026"),
            id="emoji",
        ),
        pytest.param(
            "\u0932\u094b\u0921 \u0935\u093f\u092b\u0932 " * 40,
            2,
            "UCS2",
            lambda t: t.endswith("\u2026"),
            id="devanagari",
        ),
    ],
)
def test_text_is_transliterated_and_shortened_to_max_units(
    qikberry_conn: str, emulator: Any, message: str, max_units: int, encoding: str, check: Any
) -> None:
    # Break: skip the transliteration -> curly quotes go out as UCS-2, fails. Skip truncate_to_units ->
    # every case is over max_units (or refused by the hook's max_units check), fails.
    QikberryNotifier(to=NUMBER, message=message, max_units=max_units)(_task_context())
    (sent,) = emulator.messages()
    info = measure(sent["message"])
    assert info.units <= max_units
    assert sent["units"] <= max_units
    assert sent["encoding"] == encoding
    assert info.encoding == ("gsm7" if encoding == "GSM" else "ucs2")
    if check is not None:
        assert check(sent["message"])
    if encoding == "UCS2":  # counted honestly: close to the UCS-2 budget, not cut to nothing
        assert info.septets > max_units * 67 - 8


_CHILD = """
import sys
from airflow_qikberry.notifications.qikberry import QikberryNotifier
notifier = QikberryNotifier(
    to=sys.argv[1],
    message=sys.argv[2],
    qikberry_conn_id="alerts",
    dedupe_window=float(sys.argv[3]),
    lock_dir=sys.argv[4],
)
notifier({"run_id": "r1"})
"""


def _run_child(emulator: Any, text: str, lock_dir: Path, window: float = 600.0) -> None:
    env = {**os.environ, conn_env_var("alerts"): qikberry_conn_json(emulator.base_url)}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, NUMBER, text, str(window), str(lock_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_dedupe_across_two_processes(emulator: Any, tmp_path: Path) -> None:
    # Two lock directories: two machines, which share nothing but the API. The second alert is skipped
    # because the lookup of its custom id finds the first one.
    # Break: put os.getpid()/uuid into the custom id, or skip the get_status lookup -> two messages, fails.
    # Windows are counted from the epoch (time // window): with the default 600 s, two children that straddle
    # a 10-minute boundary (each takes seconds, more on a busy machine) are rightly two alerts; a run across
    # 21:30:00 failed so. With a window of 10**6 s a boundary between them is all but impossible; the window's
    # own length is test_dedupe_window_is_configurable's business.
    window = 10.0**6
    _run_child(emulator, "nightly load failed", tmp_path / "machine-a", window)
    _run_child(emulator, "nightly load failed", tmp_path / "machine-b", window)
    assert _texts(emulator) == ["nightly load failed"]
    # another text: another alert
    _run_child(emulator, "nightly load failed again", tmp_path / "machine-b", window)
    assert _texts(emulator) == ["nightly load failed", "nightly load failed again"]


def test_dedupe_window_is_configurable(qikberry_conn: str, emulator: Any) -> None:
    # Break: ignore dedupe_window (fixed 600 s) -> the second window's id equals the first, one message.
    notifier = QikberryNotifier(to=NUMBER, message="same text", dedupe_window=60)
    first, same, later = (notifier.custom_id(NUMBER, "same text", now=t) for t in (120.0, 179.0, 180.0))
    assert first == same != later
    notifier(_task_context())
    notifier(_task_context())
    assert len(emulator.messages()) == 1
    assert QikberryNotifier(to=NUMBER, dedupe_window=1).custom_id(NUMBER, "x", now=0) != QikberryNotifier(
        to=NUMBER, dedupe_window=1
    ).custom_id(NUMBER, "x", now=1)


# ---------------------------------------------------------------------------------------------------
# failures while alerting


def test_unreachable_api_is_logged_not_raised(
    make_qikberry_conn: Any, emulator: Any, caplog: Any, capfd: Any
) -> None:
    # Break: re-raise in _send_one (or drop the try/except) -> QikberryConnectionError escapes, fails.
    conn_id = make_qikberry_conn("alerts", host=f"http://127.0.0.1:{_closed_port()}/api/v2/")
    QikberryNotifier(to=NUMBER, qikberry_conn_id=conn_id, max_attempts=1).notify(_task_context())
    logs = all_log_text(caplog, capfd)
    assert "Qikberry alert to 9198XXXXX210 was not sent" in logs
    assert "Connection" in logs
    assert TEST_TOKEN not in logs
    assert NUMBER not in logs


def test_emulator_faults_on_send_and_status_are_logged_not_raised(
    qikberry_conn: str, emulator: Any, caplog: Any, capfd: Any
) -> None:
    # Break: skip the except branch -> QikberryServerError escapes notify(), fails.
    emulator.set_faults(
        [
            {"endpoint": "sms/status", "kind": "error", "status": 503},
            {"endpoint": "sms/send", "kind": "error", "status": 503},
        ]
    )
    QikberryNotifier(to=NUMBER, max_attempts=1).notify(_task_context())
    logs = all_log_text(caplog, capfd)
    assert "was not sent" in logs
    assert "503" in logs
    assert TEST_TOKEN not in logs
    assert emulator.messages() == []


def test_missing_connection_is_logged_not_raised(emulator: Any, caplog: Any, capfd: Any) -> None:
    # Break: build the hook outside the try in notify() -> AirflowNotFoundException escapes, fails.
    QikberryNotifier(to=NUMBER, qikberry_conn_id="no_such_conn").notify(_task_context())
    logs = all_log_text(caplog, capfd)
    assert "Qikberry alert was not sent (connection 'no_such_conn')" in logs
    assert emulator.messages() == []


def test_no_hook_or_connection_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    # Break: build the hook (or read the connection) in __init__ -> the patched get_connection raises.
    from airflow.providers.common.compat.sdk import BaseHook

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("connection read at construction")

    monkeypatch.setattr(BaseHook, "get_connection", boom)
    notifier = QikberryNotifier(to=NUMBER, qikberry_conn_id="x")
    assert "hook" not in vars(notifier)


# ---------------------------------------------------------------------------------------------------
# real DAG runs

FAILING_TASK_DAG = """
import pendulum
from airflow.providers.common.compat.sdk import dag, task
from airflow_qikberry.notifications.qikberry import QikberryNotifier

@dag(dag_id="{dag_id}", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
def the_dag():
    alert = QikberryNotifier(to="919876543210", qikberry_conn_id="{conn_id}", max_attempts=1)

    @task(on_failure_callback=alert)
    def load():
        raise KeyError("amount")

    load()

the_dag()
"""


@pytest.mark.slow
def test_failing_task_sends_exactly_one_alert(run_dag: Any, qikberry_conn: str, emulator: Any) -> None:
    # Break: return before sending in notify() -> no message; send per try twice -> two messages, fails.
    result = run_dag(
        FAILING_TASK_DAG.format(dag_id="notif_task_fail", conn_id=qikberry_conn), "notif_task_fail"
    )
    assert result == {"load": "failed"}
    (text,) = _texts(emulator)
    assert text.startswith("[Airflow] notif_task_fail.load failed (try 1/1) ")
    assert text.endswith(": KeyError 'amount'")


@pytest.mark.slow
def test_outage_while_alerting_keeps_the_task_failure(
    run_dag: Any, make_qikberry_conn: Any, emulator: Any, caplog: Any, capfd: Any
) -> None:
    # Break: let notify() raise -> (the task runner swallows callback errors, so) the log assertion
    # for our own "was not sent" line fails; the task state stays "failed" in every case.
    conn_id = make_qikberry_conn("down", host=f"http://127.0.0.1:{_closed_port()}/api/v2/")
    result = run_dag(
        FAILING_TASK_DAG.format(dag_id="notif_task_outage", conn_id=conn_id), "notif_task_outage"
    )
    assert result == {"load": "failed"}
    assert result.state == "failed"
    logs = all_log_text(caplog, capfd)
    assert "Qikberry alert to 9198XXXXX210 was not sent" in logs
    assert "KeyError" in logs  # the task's own failure is still logged
    assert TEST_TOKEN not in logs


DAG_CALLBACK_DAG = """
import pendulum
from airflow.providers.common.compat.sdk import dag, task
from airflow_qikberry.notifications.qikberry import QikberryNotifier

@dag(
    dag_id="notif_dag_fail",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    on_failure_callback=QikberryNotifier(to="919876543210"),
)
def the_dag():
    @task
    def load():
        raise KeyError("amount")

    load()

the_dag()
"""


@pytest.mark.slow
def test_dag_level_failure_callback(run_dag: Any, qikberry_conn: str, emulator: Any) -> None:
    # dag.test() in Airflow 3.3 runs DAG-level callbacks itself (DagRun.execute_dag_callbacks, context with
    # "reason"), so this is a real DAG-level callback, not a hand-built context.
    # Break: treat the DAG-level context like a task's (ignore "reason") -> "notif_dag_fail.load", fails.
    result = run_dag(DAG_CALLBACK_DAG, "notif_dag_fail")
    assert result == {"load": "failed"}
    assert result.state == "failed"
    (text,) = _texts(emulator)
    assert text.startswith("[Airflow] notif_dag_fail failed ")
    assert ".load" not in text
