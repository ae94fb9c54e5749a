"""QikberrySendSmsOperator against the emulator over real HTTP.

The many bad inputs, dry runs and XCom shapes run at execute() level (fast); the DAG-run tests at the end
(marked slow) cover templating from XCom with and without native rendering, a representative few bad inputs,
dry run, and task retries with and without ``resend``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from airflow_qikberry.exceptions import QikberryValidationError
from airflow_qikberry.operators.sms import QikberrySendSmsOperator
from airflow_qikberry.sms_text import measure
from airflow_qikberry.validation import rendered_list
from tests.helpers import TEST_TOKEN, all_log_text, api_counts

HINDI = "नमस्ते 🙏 आपका ऑर्डर भेज दिया गया है"


def make(**kwargs: Any) -> QikberrySendSmsOperator:
    kwargs.setdefault("to", "919876543210")
    kwargs.setdefault("message", "Nightly load finished")
    return QikberrySendSmsOperator(task_id="send", **kwargs)


# Every bad input: (overrides, field named by the error). Each must fail before any request, dry run or not.
BAD_INPUTS: list[tuple[dict[str, Any], str]] = [
    ({"to": "12"}, "to"),
    ({"to": "9198765 4321x"}, "to"),
    ({"to": ["919876543210", "12"]}, "to"),
    ({"message": ""}, "message"),
    ({"message": "   "}, "message"),
    ({"message": 12345}, "message"),
    ({"message": "a" * 161, "max_units": 1}, "message"),
    ({"message": HINDI * 3, "max_units": 1}, "message"),
    ({"message": "x" * 4097}, "message"),
    ({"sender": "QIK BRY"}, "sender"),
    ({"sender": "qikbry"}, "sender"),  # DLT headers are upper case on the T route
    ({"service": "T!"}, "service"),
    ({"schedule_at": "2020-01-01T09:00:00+05:30"}, "schedule_at"),
    ({"schedule_at": "2030-01-01 09:00"}, "schedule_at"),  # no offset
    ({"schedule_at": "tomorrow"}, "schedule_at"),
    ({"tags": ["a", "b", "c", "d"]}, "tags"),
    ({"tags": "['a', 'b', 'c', 'd']"}, "tags"),  # a list rendered without native rendering
    ({"custom_id": " order-1"}, "custom_id"),
    ({"custom_id": "x" * 256}, "custom_id"),
    ({"custom_id": "a\tb"}, "custom_id"),
    ({"template_id": "abc"}, "template_id"),
    ({"entity_id": "123"}, "entity_id"),
    # Shapes an XCom or a template hands over by mistake.
    ({"to": None}, "to"),
    ({"to": ""}, "to"),
    ({"to": []}, "to"),
    ({"to": "[]"}, "to"),
    ({"to": {"mobile": "919876543210"}}, "to"),
    ({"to": "{'mobile': '919876543210'}"}, "to"),
    ({"to": [{"mobile": "919876543210"}]}, "to"),
    ({"to": "[{'mobile': '919876543210'}]"}, "to"),
    ({"to": [["919876543210"]]}, "to"),
    ({"to": [919876543210.0]}, "to"),
    ({"to": [True]}, "to"),
    ({"to": [None]}, "to"),
    ({"to": "[919876543210, oops]"}, "to"),
    ({"to": "[__import__('os').getcwd()]"}, "to"),  # never evaluated
    ({"to": b"919876543210"}, "to"),
    ({"to": 3.5}, "to"),
]


@pytest.mark.parametrize("dry_run", [False, True], ids=["send", "dry_run"])
@pytest.mark.parametrize(
    ("overrides", "field"), BAD_INPUTS, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD_INPUTS)]
)
def test_bad_input_is_a_typed_error_before_any_request(
    qikberry_conn: str, emulator: Any, overrides: dict[str, Any], field: str, dry_run: bool
) -> None:
    op = make(dry_run=dry_run, **overrides)
    with pytest.raises(QikberryValidationError) as caught:
        op.execute({})
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}:")
    assert api_counts(emulator) == {}  # not one request: no send, no balance lookup, no status lookup
    assert emulator.messages() == []
    assert "919876543210" not in str(caught.value)  # numbers in errors are masked


def test_xcom_shape_errors_say_how_to_fix_the_template(qikberry_conn: str, emulator: Any) -> None:
    with pytest.raises(QikberryValidationError, match=r"map\(attribute='mobile'\)"):
        make(to=[{"mobile": "919876543210"}]).execute({})
    with pytest.raises(QikberryValidationError, match="render_template_as_native_obj"):
        make(to="[919876543210, oops]").execute({})
    with pytest.raises(QikberryValidationError, match="upstream"):
        make(to=[]).execute({})


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"encoding": "utf8"}, "encoding"), ({"max_units": 0}, "max_units"), ({"max_units": "2"}, "max_units")],
)
def test_constant_arguments_are_checked_when_the_dag_file_is_parsed(
    kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(QikberryValidationError) as caught:
        make(**kwargs)
    assert caught.value.field == field


def test_construction_needs_no_connection_and_makes_no_call(
    monkeypatch: pytest.MonkeyPatch, emulator: Any
) -> None:
    from airflow_qikberry.hooks.qikberry import QikberryHook

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the hook or the connection was used while the DAG file was parsed")

    monkeypatch.setattr(QikberryHook, "__init__", refuse)
    monkeypatch.setattr(QikberryHook, "get_connection", refuse)
    op = make(qikberry_conn_id="no_such_connection", dry_run=True)
    assert "hook" not in op.__dict__
    assert api_counts(emulator) == {}


def test_send_returns_masked_json_safe_xcom(qikberry_conn: str, emulator: Any) -> None:
    result = make(to="+91 98765 43210, 447700900123", message=HINDI, tags=["diwali"]).execute({})
    stored = emulator.messages()
    assert [(m["mobile"], m["message"], m["tags"]) for m in stored] == [
        ("919876543210", HINDI, ["diwali"]),
        ("447700900123", HINDI, ["diwali"]),
    ]
    assert result == [
        {
            "id": m["id"],
            "mobile": masked,
            "status": "AWAITING-DLR",
            "units": measure(HINDI).units,
            "charges": float(measure(HINDI).units),
            "custom_id": m["custom"],
        }
        for m, masked in zip(stored, ["9198XXXXX210", "4477XXXXX123"], strict=True)
    ]
    text = json.dumps(result)
    assert "919876543210" not in text
    assert "447700900123" not in text
    assert TEST_TOKEN not in text


def test_rendering_that_turned_text_into_numbers_is_undone(qikberry_conn: str, emulator: Any) -> None:
    # render_template_as_native_obj turns "919876543210" and a numeric custom id into ints.
    make(to=919876543210, custom_id=4711, tags="('a', 'b')").execute({})
    (stored,) = emulator.messages()
    assert (stored["mobile"], stored["custom"], stored["tags"]) == ("919876543210", "4711", ["a", "b"])


def test_dry_run_result(qikberry_conn: str, emulator: Any) -> None:
    emulator.configure(unit_charges={"T": 0.25})
    to = ["+91 98765 43210", "919876543211", "919876543210", 447700900123]  # one duplicate, one int
    long_text = "a" * 200  # 2 GSM-7 units
    result: Any = make(to=to, message=long_text, dry_run=True, custom_id="order-1").execute({})
    assert result == {
        "dry_run": True,
        "messages": 3,
        "units": 6,
        "estimated_credits": 1.5,
        "credits_available": 10000.0,
        "postpaid": False,
        "service": "T",
        "sender": "QIKBRY",
        "encoding": "gsm7",
        "units_per_message": 2,
        "schedule_at": None,
        "custom_id": "order-1",
        "sample": [
            {"mobile": "9198XXXXX210", "text": long_text, "units": 2},
            {"mobile": "9198XXXXX211", "text": long_text, "units": 2},
            {"mobile": "4477XXXXX123", "text": long_text, "units": 2},
        ],
        "warnings": [],
    }
    json.dumps(result)  # JSON-safe
    assert api_counts(emulator) == {"GET finance/balance": 1}
    assert emulator.messages() == []


def test_dry_run_of_unicode_scheduled_text(
    qikberry_conn: str, emulator: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    when = datetime.now(timezone.utc) + timedelta(days=1)
    text = HINDI * 3  # more than one UCS-2 part
    result: Any = make(to="919876543210", message=text, schedule_at=when, dry_run=True).execute({})
    length = measure(text)
    assert (length.encoding, length.units) == ("ucs2", 2)
    assert (result["encoding"], result["units"], result["units_per_message"]) == ("ucs2", 2, 2)
    assert result["schedule_at"] == when.astimezone(ZoneInfo("Asia/Kolkata")).strftime("%Y-%m-%d %H:%M:%S")
    assert result["sample"] == [{"mobile": "9198XXXXX210", "text": text, "units": 2}]
    assert api_counts(emulator) == {"GET finance/balance": 1}
    logged = all_log_text(caplog, capfd)
    assert "DRY RUN" in logged
    assert "9198XXXXX210" in logged
    assert "919876543210" not in logged


def test_dry_run_warns_when_credits_do_not_cover_the_send(qikberry_conn: str, emulator: Any) -> None:
    emulator.configure(credits={"T": 1})
    result: Any = make(to="919876543210, 919876543211", dry_run=True).execute({})
    assert (result["estimated_credits"], result["credits_available"]) == (2.0, 1.0)
    assert len(result["warnings"]) == 1
    assert "would not cover" in result["warnings"][0]
    assert emulator.messages() == []


def test_dry_run_survives_a_failed_balance_lookup(qikberry_conn: str, emulator: Any) -> None:
    # 401 is not retried, so the lookup fails at once.
    emulator.set_faults([{"endpoint": "finance/balance", "kind": "error", "status": 401}])
    result: Any = make(dry_run=True).execute({})
    assert result["estimated_credits"] is None
    assert result["credits_available"] is None
    assert len(result["warnings"]) == 1
    assert "balance lookup failed" in result["warnings"][0]
    assert TEST_TOKEN not in json.dumps(result)
    assert result["messages"] == 1
    assert result["units"] == 1
    assert not any(key.startswith("POST") for key in api_counts(emulator))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("['919876543210', '919876543211']", ["919876543210", "919876543211"]),
        ('["919876543210"]', ["919876543210"]),
        ("  ('a', 'b')  ", ["a", "b"]),
        ("[1, 2]", [1, 2]),
        ("919876543210, 919876543211", "919876543210, 919876543211"),
        (["x"], ["x"]),
        (None, None),
    ],
)
def test_rendered_list_reads_back_only_list_literals(value: Any, expected: Any) -> None:
    assert rendered_list(value, "to") == expected


def test_rendered_list_refuses_a_list_that_is_not_closed() -> None:
    # No number starts with "[": a broken literal is a template mistake, named at once.
    with pytest.raises(QikberryValidationError) as caught:
        rendered_list("[not closed", "to")
    assert caught.value.field == "to"


def test_rendered_list_never_evaluates_code() -> None:
    with pytest.raises(QikberryValidationError) as caught:
        rendered_list("[__import__('os').remove('x')]", "to")
    assert caught.value.field == "to"
    with pytest.raises(QikberryValidationError, match="not a list"):
        rendered_list("({'a': 1})", "tags")


HEAVY = (
    "requests",
    "phonenumbers",
    "airflow_qikberry.hooks",
    "airflow_qikberry.validation",
    "airflow_qikberry.phone",
    "airflow_qikberry.sms_text",
    "airflow_qikberry.protocol",
    "airflow_qikberry.payloads",
    "airflow_qikberry.send_options",
    "airflow_qikberry.sends",
    "airflow_qikberry.recipients",
)


def imported_by(module: str) -> list[str]:
    """Modules that ``import <module>`` loads on top of Airflow's base operator, in a fresh interpreter.

    The baseline goes through common.compat (``airflow.sdk`` on Airflow 3, ``airflow.models`` on 2.11), the
    way a DAG file gets its base classes.
    """
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from airflow.providers.common.compat.sdk import BaseOperator, BaseSensorOperator\n"
        "before = set(sys.modules)\n"
        f"import {module}\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return out.stdout.split()


def test_module_is_cheap_to_import() -> None:
    # DAG files import it at every parse: no hook, HTTP library or phone-number metadata at module level.
    loaded = imported_by("airflow_qikberry.operators.sms")
    assert "airflow_qikberry.operators.sms" in loaded
    assert [m for m in loaded if m.startswith(HEAVY)] == []


# ---------------------------------------------------------------------------------------------------------
# Inside real DAG runs (dag.test(), the task runner, XCom, templating)

XCOM_DAG = """
import pendulum
from airflow.providers.common.compat.sdk import dag, task
from airflow_qikberry.operators.sms import QikberrySendSmsOperator

@dag(
    dag_id="{dag_id}",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    render_template_as_native_obj={native},
)
def send_from_xcom():
    @task
    def numbers():
        return ["+91 98765 43210", "447700900123"]

    @task
    def text():
        return {{"greeting": "नमस्ते 🙏", "tags": ["diwali", "sale"]}}

    send = QikberrySendSmsOperator(
        task_id="send",
        to="{{{{ ti.xcom_pull('numbers') }}}}",
        message="{{{{ ti.xcom_pull('text')['greeting'] }}}} {{{{ task.task_id }}}} 🎉",
        tags="{{{{ ti.xcom_pull('text')['tags'] }}}}",
    )

    @task
    def ids(message_ids):
        return message_ids

    [numbers(), text()] >> send
    send >> ids("{{{{ ti.xcom_pull('send') | map(attribute='id') | list }}}}")

send_from_xcom()
"""


@pytest.mark.slow
@pytest.mark.parametrize("native", [True, False], ids=["native", "text_rendering"])
def test_to_and_tags_templated_from_xcom_in_a_dag_run(
    run_dag: Any,
    qikberry_conn: str,
    emulator: Any,
    native: bool,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    dag_id = f"sms_from_xcom_{'native' if native else 'text'}"
    result = run_dag(XCOM_DAG.format(dag_id=dag_id, native=native), dag_id)
    assert result == {"numbers": "success", "text": "success", "send": "success", "ids": "success"}
    stored = emulator.messages()
    assert [m["mobile"] for m in stored] == ["919876543210", "447700900123"]
    assert [m["message"] for m in stored] == ["नमस्ते 🙏 send 🎉"] * 2
    assert all(m["tags"] == ["diwali", "sale"] and m["encoding"] == "UCS2" for m in stored)
    xcom = result.xcom("send")
    assert [x["mobile"] for x in xcom] == ["9198XXXXX210", "4477XXXXX123"]
    assert [x["id"] for x in xcom] == [m["id"] for m in stored]
    # The downstream template takes the ids straight from the XCom; without native rendering the task
    # receives the list as its text form.
    ids = result.xcom("ids")
    assert ids == [m["id"] for m in stored] if native else ids == str([m["id"] for m in stored])
    text = json.dumps(xcom)
    assert "919876543210" not in text
    assert TEST_TOKEN not in text
    logged = all_log_text(caplog, capfd)
    assert "Sending SMS to 2 number(s) [9198XXXXX210, 4477XXXXX123]" in logged  # the capture sees task logs
    assert "Qikberry accepted 2 message(s)" in logged
    # The test's own upstream task logs its return value (the numbers); every other line must not.
    leaks = [
        line
        for line in logged.splitlines()
        if ("919876543210" in line or "447700900123" in line) and "Returned value was" not in line
    ]
    assert leaks == []


BAD_INPUT_DAG = """
import pendulum
from airflow.providers.common.compat.sdk import dag, task
from airflow_qikberry.operators.sms import QikberrySendSmsOperator

@dag(
    dag_id="sms_bad_inputs",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    render_template_as_native_obj=True,
)
def sms_bad_inputs():
    @task
    def records():
        return [{"mobile": "919876543210"}]

    bad_xcom = QikberrySendSmsOperator(
        task_id="bad_xcom", to="{{ ti.xcom_pull('records') }}", message="hi", retries=1, retry_delay=0
    )
    records() >> bad_xcom
    QikberrySendSmsOperator(task_id="bad_number", to="12", message="hi", dry_run=True)
    QikberrySendSmsOperator(task_id="too_long", to="919876543210", message="a" * 161, max_units=1)
    QikberrySendSmsOperator(task_id="bad_tags", to="919876543210", message="hi", tags=["a", "b", "c", "d"])

sms_bad_inputs()
"""


@pytest.mark.slow
def test_bad_inputs_fail_their_tasks_without_any_request(
    run_dag: Any,
    qikberry_conn: str,
    emulator: Any,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    result = run_dag(BAD_INPUT_DAG, "sms_bad_inputs")
    assert result == {
        "records": "success",
        "bad_xcom": "failed",
        "bad_number": "failed",
        "too_long": "failed",
        "bad_tags": "failed",
    }
    assert api_counts(emulator) == {}  # the retry of bad_xcom made none either
    logged = all_log_text(caplog, capfd)
    for hint in ("to: entry 1 is a dict", "to: entry 1:", "message: needs 2 SMS parts", "tags: has 4 tags"):
        assert hint in logged
    assert "QikberryValidationError" in logged


DRY_RUN_DAG = """
import pendulum
from airflow.providers.common.compat.sdk import dag
from airflow_qikberry.operators.sms import QikberrySendSmsOperator

@dag(dag_id="sms_dry_run", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
def sms_dry_run():
    QikberrySendSmsOperator(
        task_id="send",
        to="{{ params.numbers }}",
        message="Hi {{ params.name }}, आपका बिल {{ params.amount }} है",
        dry_run=True,
        params={"numbers": "919876543210, +44 7700 900123", "name": "Asha", "amount": "₹499"},
    )

sms_dry_run()
"""


@pytest.mark.slow
def test_dry_run_in_a_dag_run_sends_nothing(run_dag: Any, qikberry_conn: str, emulator: Any) -> None:
    result = run_dag(DRY_RUN_DAG, "sms_dry_run")
    assert result == {"send": "success"}
    summary = result.xcom("send")
    text = "Hi Asha, आपका बिल ₹499 है"
    assert summary["dry_run"] is True
    assert (summary["messages"], summary["units"], summary["estimated_credits"]) == (2, 2, 2.0)
    assert summary["sample"] == [
        {"mobile": "9198XXXXX210", "text": text, "units": 1},
        {"mobile": "4477XXXXX123", "text": text, "units": 1},
    ]
    assert api_counts(emulator) == {"GET finance/balance": 1}
    assert emulator.messages() == []


RETRY_DAG = """
import pendulum
from datetime import timedelta
from airflow.providers.common.compat.sdk import dag
from airflow_qikberry.operators.sms import QikberrySendSmsOperator


def fail_first_try(context, result):
    # Runs after execute() returned: the SMS is out, then the task fails and Airflow retries it.
    if context["ti"].try_number == 1:
        raise RuntimeError("try 1 fails after sending")


@dag(dag_id="sms_retry", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
def sms_retry():
    QikberrySendSmsOperator(
        task_id="send",
        to=["919876543210", "919876543211"],
        message="Nightly load finished",
        resend={resend},
        retries=1,
        retry_delay=timedelta(seconds=0),
        post_execute=fail_first_try,
    )

sms_retry()
"""


@pytest.mark.slow
@pytest.mark.parametrize("resend", [False, True], ids=["retry_resumes", "resend"])
def test_task_retry_sends_once_unless_resend(
    run_dag: Any, qikberry_conn: str, emulator: Any, resend: bool
) -> None:
    result = run_dag(RETRY_DAG.replace("{resend}", str(resend)), "sms_retry")
    assert result == {"send": "success"}
    stored = emulator.messages()
    counts = api_counts(emulator)
    xcom = result.xcom("send")
    if not resend:
        # Try 2 found try 1's messages by their derived custom id and returned them without posting.
        assert [m["mobile"] for m in stored] == ["919876543210", "919876543211"]
        assert counts["POST sms/send"] == 1
        assert counts["GET sms/status"] == 1
        assert [x["id"] for x in xcom] == [m["id"] for m in stored]
        return
    # A deliberate re-send: try 2 sends again under new custom ids.
    assert [m["mobile"] for m in stored] == ["919876543210", "919876543211"] * 2
    assert counts["POST sms/send"] == 2
    assert stored[0]["custom"] != stored[2]["custom"]
    assert [x["id"] for x in xcom] == [m["id"] for m in stored[2:]]
