"""QikberryBulkCampaignOperator inside real DAG runs (dag.test()) against the emulator over HTTP."""

from __future__ import annotations

import csv
import json
import math
import re
import sqlite3
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_qikberry.idempotency import campaign_key
from tests.helpers import AIRFLOW_VERSION, all_log_text, api_counts, conn_env_var, count

pytestmark = pytest.mark.slow

HEADER = """
import pendulum
from datetime import timedelta
from airflow.providers.common.compat.sdk import dag, task
from airflow_qikberry.operators.campaign import QikberryBulkCampaignOperator
"""
FULL_NUMBER = re.compile(r"\b91\d{10}\b")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> str:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def numbers(n: int) -> list[str]:
    return [f"9198765{i:05d}" for i in range(n)]


def assert_each_once(emulator: Any, expected: list[str]) -> None:
    sent = Counter(m["mobile"] for m in emulator.messages())
    assert sorted(sent) == sorted(expected)
    assert set(sent.values()) == {1}


# --- a CSV with per-row texts


CSV_DAG = (
    HEADER
    + """
@dag(dag_id="campaign_csv", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
     params={"offer": "20%"})
def campaign_csv():
    QikberryBulkCampaignOperator(
        task_id="send",
        name="diwali-{{ ds }}",
        csv_path="{{ dag_run.conf['csv'] }}",
        message_template="{{ row.greeting }} {{ row.name }}! {{ params.offer }} off till {{ ds }}",
        rejected_path="{{ dag_run.conf['rejected'] }}",
        chunk_size=4,
    )

campaign_csv()
"""
)


def test_csv_per_row_template_devanagari_and_emoji(
    run_dag: Any, qikberry_conn: str, emulator: Any, tmp_path: Path, caplog: Any, capfd: Any
) -> None:
    greetings = ["Hello", "नमस्ते", "Hi 🎉"]
    rows = [{"mobile": n, "name": f"C{i}", "greeting": greetings[i % 3]} for i, n in enumerate(numbers(30))]
    rows.append({"mobile": "12345", "name": "Bad", "greeting": "Hello"})  # 1 of 32 rows: under 5%
    rows.append(dict(rows[4]))  # an exact duplicate
    conf = {"csv": write_csv(tmp_path / "c.csv", rows), "rejected": str(tmp_path / "rejected.csv")}
    result = run_dag(CSV_DAG, "campaign_csv", conf=conf)
    assert result == {"send": "success"}

    messages = emulator.messages()
    assert_each_once(emulator, numbers(30))
    ds = messages[0]["text"].rsplit(" ", 1)[1]
    for i, m in enumerate(messages):
        greeting = greetings[i % 3]
        assert m["text"] == f"{greeting} C{i}! 20% off till {ds}"
        # Each node carried its own encoding: Devanagari and emoji rows as Unicode, the rest as GSM-7.
        assert m["type"] == ("N" if greeting == "Hello" else "U"), m
        assert m["name"] == f"diwali-{ds}"
        assert m["endpoint"] == "sms/send/json"
    assert messages[1]["units"] == 1
    assert messages[1]["length"] == len(messages[1]["text"])

    summary = result.xcom("send")
    key = campaign_key((result.dag_id, "send", result.run_id, "-1", "1"), f"diwali-{ds}")
    assert [m["custom"] for m in messages[:5]] == [f"qc-{key}-0-{p}" for p in range(4)] + [f"qc-{key}-1-0"]
    assert summary == {
        "campaign": f"diwali-{ds}",
        "group_ids": list(dict.fromkeys(m["group_id"] for m in messages)),
        "accepted": 30,
        "accepted_earlier_tries": 0,
        "rejected": {"invalid_number": 1},
        "rejected_total": 1,
        "duplicates_removed": 1,
        "estimated_units": 30,
        "estimated_credits": 30.0,
        "chunks": 8,
        "resumed_from_chunk": None,
        "not_sent": 0,
        "not_sent_by_reason": {},
        "not_sent_rows": [],
        "dry_run": False,
    }
    with open(conf["rejected"], encoding="utf-8") as handle:
        assert [(r["row"], r["reason"], r["value"]) for r in csv.DictReader(handle)] == [
            ("31", "invalid_number", "12345")
        ]
    logs = all_log_text(caplog, capfd)
    # dict.fromkeys: on Airflow 2.11 a task's log line reaches the captured text up to three times.
    progress = list(
        dict.fromkeys(
            re.findall(r"chunk (\d)/8 accepted; (\d+)/30 messages sent \((\d+\.\d)%\), \d+ msg/s, ETA ", logs)
        )
    )
    assert [p[0] for p in progress] == [str(i) for i in range(1, 9)]
    assert progress[-1][1:] == ("30", "100.0")
    assert not FULL_NUMBER.search(logs)
    assert not FULL_NUMBER.search(json.dumps(summary))


# --- recipients from XCom, two ways


XCOM_DAG = (
    HEADER
    + """
@dag(dag_id="campaign_xcom", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
def campaign_xcom():
    @task
    def people():
        return [{"phone": "+91 98765 00001", "name": "Asha"}, {"phone": "919876500002", "name": "Ravi"}]

    @task
    def vips():
        return ["919876500003", "919876500004"]

    by_task_id = QikberryBulkCampaignOperator(
        task_id="by_task_id",
        recipients_xcom_task_id="people",
        message_template="Hi {{ row.name }}",
        name="people",
    )
    # Rendered without render_template_as_native_obj: the list arrives as its text form.
    templated = QikberryBulkCampaignOperator(
        task_id="templated",
        recipients="{{ ti.xcom_pull('vips') }}",
        message="VIP preview tonight",
        name="vips",
    )
    people() >> by_task_id
    vips() >> templated

campaign_xcom()
"""
)


def test_recipients_from_xcom(run_dag: Any, qikberry_conn: str, emulator: Any) -> None:
    result = run_dag(XCOM_DAG, "campaign_xcom")
    assert result == {"people": "success", "vips": "success", "by_task_id": "success", "templated": "success"}
    sent = {m["mobile"]: (m["text"], m["name"]) for m in emulator.messages()}
    assert sent == {
        "919876500001": ("Hi Asha", "people"),
        "919876500002": ("Hi Ravi", "people"),
        "919876500003": ("VIP preview tonight", "vips"),
        "919876500004": ("VIP preview tonight", "vips"),
    }
    assert result.xcom("by_task_id")["accepted"] == 2
    assert result.xcom("templated")["accepted"] == 2


# --- a SQL source


SQL_DAG = (
    HEADER
    + """
@dag(dag_id="campaign_sql", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
def campaign_sql():
    QikberryBulkCampaignOperator(
        task_id="send",
        sql="SELECT msisdn, first_name, amount FROM bills WHERE amount > :minimum ORDER BY id",
        sql_parameters={"minimum": 100},
        sql_conn_id="crm_db",
        phone_column="msisdn",
        message_template="Hi {{ row.first_name }}, your bill of Rs {{ row.amount }} is due",
        chunk_size=2,
    )

campaign_sql()
"""
)


def _sqlite_hook_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make conn type ``sqlite`` resolve to a DbApiHook. apache-airflow-providers-sqlite is not installed in
    this environment and no other installed provider offers a database hook, so without it the test
    registers a minimal common.sql DbApiHook over sqlite3 (the class below) for the conn type; the path
    under test (Connection.get_hook(), get_conn(), cursor, fetchmany) is the real one either way."""
    try:
        import airflow.providers.sqlite.hooks.sqlite  # noqa: F401
    except ImportError:
        from airflow._shared.providers_discovery.providers_discovery import HookInfo
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

        info = HookInfo(
            hook_class_name=f"{__name__}.SqliteDbApiHook",
            connection_id_attribute_name="sqlite_conn_id",
            package_name="tests",
            hook_name="SQLite (test)",
            connection_type="sqlite",
            connection_testable=False,
        )
        monkeypatch.setitem(ProvidersManagerTaskRuntime().hooks, "sqlite", info)


try:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    class SqliteDbApiHook(DbApiHook):
        """A DbApiHook over sqlite3, for the test only (see _sqlite_hook_registered)."""

        conn_name_attr = "sqlite_conn_id"
        default_conn_name = "sqlite_default"
        conn_type = "sqlite"
        hook_name = "SQLite (test)"

        def get_conn(self) -> sqlite3.Connection:
            return sqlite3.connect(self.get_connection(self.get_conn_id()).host)

except ImportError:  # pragma: no cover - common.sql is part of the dev environment
    pass


def test_sql_source(
    run_dag: Any, qikberry_conn: str, emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "crm.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE bills (id INTEGER, msisdn INTEGER, first_name TEXT, amount INTEGER)")
        conn.executemany(
            "INSERT INTO bills VALUES (?, ?, ?, ?)",
            [(i, 919876500000 + i, f"N{i}", 50 * i) for i in range(1, 8)],
        )
    monkeypatch.setenv(conn_env_var("crm_db"), json.dumps({"conn_type": "sqlite", "host": str(db)}))
    _sqlite_hook_registered(monkeypatch)
    result = run_dag(SQL_DAG, "campaign_sql")
    assert result == {"send": "success"}
    assert [(m["mobile"], m["text"]) for m in emulator.messages()] == [
        (f"9198765000{i:02d}", f"Hi N{i}, your bill of Rs {50 * i} is due") for i in range(3, 8)
    ]
    assert result.xcom("send")["chunks"] == 3


# --- failing before anything is sent


RATIO_DAG = (
    HEADER
    + """
@dag(dag_id="campaign_ratio", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
def campaign_ratio():
    QikberryBulkCampaignOperator(
        task_id="send",
        recipients={{ recipients }},
        message="Hello",
        rejected_path={{ rejected }},
        max_invalid_ratio=0.1,
    )

campaign_ratio()
"""
)


def test_too_many_rejected_rows_fail_before_any_request(
    run_dag: Any, qikberry_conn: str, emulator: Any, tmp_path: Path, caplog: Any, capfd: Any
) -> None:
    recipients = [*numbers(8), "12", "919876"]  # 2 of 10 rejected: 20% > 10%
    rejected = tmp_path / "rejected.csv"
    source = RATIO_DAG.replace("{{ recipients }}", repr(recipients)).replace(
        "{{ rejected }}", repr(str(rejected))
    )
    result = run_dag(source, "campaign_ratio")
    assert result == {"send": "failed"}
    assert api_counts(emulator) == {}  # not even the balance lookup
    assert "max_invalid_ratio: 2 of 10 rows (20.0%) were rejected" in all_log_text(caplog, capfd)
    with rejected.open(encoding="utf-8") as handle:
        assert [r["value"] for r in csv.DictReader(handle)] == ["12", "919876"]


BAD_INPUTS = {
    "no_source": "message='Hi'",
    "two_sources": "recipients=['919876543210'], csv_path='/tmp/x.csv', message='Hi'",
    "message_and_template": "recipients=['919876543210'], message='Hi', message_template='{{ row.mobile }}'",
    "no_text": "recipients=['919876543210']",
    "template_syntax": "recipients=['919876543210'], message_template='Hi {{ row.name '",
    "too_many_tags": "recipients=['919876543210'], message='Hi', tags=['a', 'b', 'c', 'd']",
    "chunk_size": "recipients=['919876543210'], message='Hi', chunk_size=50001",
    "csv_missing": "csv_path='/nonexistent/customers.csv', message='Hi'",
    "phone_column": "recipients=[{'name': 'A', 'city': 'Pune'}], message='Hi'",
    "bad_sender": "recipients=['919876543210'], message='Hi', sender='Q!'",
    "naive_schedule": "recipients=['919876543210'], message='Hi', schedule_at='2099-01-01 10:00:00'",
    "past_schedule": "recipients=['919876543210'], message='Hi', schedule_at='2020-01-01T10:00:00+05:30'",
    "split_without_interval": "recipients=['919876543210'], message='Hi', batch_size=1000, "
    "schedule_at='2099-01-01T10:00:00+05:30'",
    "sql_without_conn": "sql='SELECT 1', message='Hi'",
    "empty_recipients": "recipients=[], message='Hi'",
    "all_invalid": "recipients=['12', '34'], message='Hi', max_invalid_ratio=1.0",
    "xcom_empty": "recipients_xcom_task_id='nothing', message='Hi'",
}
EXPECTED_FIELDS = {
    "no_source": "recipients: no recipients given",
    "two_sources": "recipients: several recipient sources given (recipients, csv_path)",
    "message_and_template": "message: got both message and message_template",
    "no_text": "message: got neither message nor message_template",
    "template_syntax": "message_template: line 1",
    "too_many_tags": "tags: has 4 tags",
    "chunk_size": "chunk_size: 50001 is not a whole number from 1 to 50000",
    "csv_missing": "csv_path: cannot read '/nonexistent/customers.csv'",
    "phone_column": "phone_column: none of the columns ['name', 'city']",
    "bad_sender": "sender: ",
    "naive_schedule": "schedule_at: '2099-01-01 10:00:00' has no UTC offset",
    "past_schedule": "is in the past",
    "split_without_interval": "interval: ",
    "sql_without_conn": "sql_conn_id: sql needs sql_conn_id",
    "empty_recipients": "recipients: the source has no rows",
    "all_invalid": "recipients: none of the 2 rows can be sent",
    "xcom_empty": "recipients_xcom_task_id: task 'nothing' pushed nothing",
}


def test_every_bad_input_fails_with_a_typed_error_and_no_request(
    run_dag: Any, qikberry_conn: str, emulator: Any, caplog: Any, capfd: Any
) -> None:
    tasks = "\n".join(
        f"    QikberryBulkCampaignOperator(task_id={name!r}, {args})" for name, args in BAD_INPUTS.items()
    )
    source = (
        HEADER
        + f"""
@dag(dag_id="campaign_bad", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
def campaign_bad():
    @task
    def nothing():
        return None

{tasks}
    nothing()

campaign_bad()
"""
    )
    result = run_dag(source, "campaign_bad")
    assert {k: v for k, v in result.items() if k != "nothing"} == dict.fromkeys(BAD_INPUTS, "failed")
    assert api_counts(emulator) == {}
    logs = all_log_text(caplog, capfd)
    assert logs.count("QikberryValidationError") >= len(BAD_INPUTS)
    missing = {name: text for name, text in EXPECTED_FIELDS.items() if text not in logs}
    assert not missing


BALANCE_DAG = (
    HEADER
    + """
@dag(dag_id="campaign_balance", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
def campaign_balance():
    QikberryBulkCampaignOperator(
        task_id="send", recipients={{ recipients }}, message="{{ text }}", chunk_size=3
    )

campaign_balance()
"""
)


def test_balance_guard_sends_nothing(
    run_dag: Any, qikberry_conn: str, emulator: Any, caplog: Any, capfd: Any
) -> None:
    emulator.configure(credits=10)
    text = "x" * 200  # 2 units each: 8 messages need 16 credits
    source = BALANCE_DAG.replace("{{ recipients }}", repr(numbers(8))).replace("{{ text }}", text)
    result = run_dag(source, "campaign_balance")
    assert result == {"send": "failed"}
    assert api_counts(emulator) == {"GET finance/balance": 1}
    logs = all_log_text(caplog, capfd)
    assert "QikberryInsufficientBalanceError" in logs
    assert "has 10 credits but this send needs an estimated 16 (16 SMS units x 1 credits per unit)" in logs


# --- a split schedule


SPLIT_DAG = (
    HEADER
    + """
@dag(dag_id="campaign_split", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
def campaign_split():
    QikberryBulkCampaignOperator(
        task_id="send",
        csv_path="{{ dag_run.conf['csv'] }}",
        message="Sale starts now",
        schedule_at="{{ dag_run.conf['start'] }}",
        batch_size=1000,
        interval=timedelta(minutes=10),
        chunk_size=600,
    )

campaign_split()
"""
)


def test_split_schedule_times_reach_the_emulator(
    run_dag: Any, qikberry_conn: str, emulator: Any, tmp_path: Path
) -> None:
    start = (datetime.now(timezone.utc) + timedelta(hours=2)).replace(microsecond=0)
    path = write_csv(tmp_path / "split.csv", [{"mobile": n} for n in numbers(2500)])
    result = run_dag(SPLIT_DAG, "campaign_split", conf={"csv": path, "start": start.isoformat()})
    assert result == {"send": "success"}
    messages = emulator.messages()
    assert len(messages) == 2500
    by_batch = Counter(m["scheduled_at"] for m in messages)
    expected = [(start + timedelta(minutes=10 * b)).astimezone(timezone(timedelta(hours=5, minutes=30)))
                for b in range(3)]  # fmt: skip
    assert sorted(by_batch.values()) == [500, 1000, 1000]
    shown = sorted(by_batch)
    assert [s[:19].replace("T", " ") for s in shown] == [e.strftime("%Y-%m-%d %H:%M:%S") for e in expected]
    # 2 chunks per 1,000-row batch (600 + 400): a chunk never straddles a batch.
    assert count(emulator, "POST sms/send/json") == 5
    assert result.xcom("send")["chunks"] == 5


# --- a dry run


DRY_DAG = (
    HEADER
    + """
@dag(dag_id="campaign_dry", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
def campaign_dry():
    QikberryBulkCampaignOperator(
        task_id="send",
        recipients=[{"mobile": m, "name": f"N{i}"} for i, m in enumerate({{ recipients }})],
        message_template="नमस्ते {{ '{{' }} row.name {{ '}}' }}",
        rejected_path={{ rejected }},
        dry_run=True,
    )

campaign_dry()
"""
)


def test_dry_run_sends_nothing(
    run_dag: Any, qikberry_conn: str, emulator: Any, tmp_path: Path, caplog: Any, capfd: Any
) -> None:
    rejected = tmp_path / "rejected.csv"
    recipients = [*numbers(40), "12"]
    source = DRY_DAG.replace("{{ recipients }}", repr(recipients)).replace(
        "{{ rejected }}", repr(str(rejected))
    )
    source = source.replace("{{ '{{' }}", "{{").replace("{{ '}}' }}", "}}")
    result = run_dag(source, "campaign_dry")
    assert result == {"send": "success"}
    assert api_counts(emulator) == {"GET finance/balance": 1}  # read-only: no POST at all
    summary = result.xcom("send")
    assert summary["dry_run"] is True
    assert summary["accepted"] == 0
    assert summary["group_ids"] == []
    assert (summary["estimated_units"], summary["estimated_credits"], summary["chunks"]) == (40, 40.0, 1)
    assert summary["rejected"] == {"invalid_number": 1}
    assert summary["balance_covers"] is True
    assert summary["sample"][0] == {
        "row": 1, "mobile": "9198XXXXX000", "message": "नमस्ते N0", "units": 1, "encoding": "ucs2"
    }  # fmt: skip
    assert len(summary["sample"]) == 5
    assert rejected.exists()
    logs = all_log_text(caplog, capfd)
    assert "would send 40 message(s) in 1 chunk(s), 40 SMS units, about 40 credits; nothing was sent" in logs
    assert not FULL_NUMBER.search(logs)
    assert not FULL_NUMBER.search(json.dumps(summary))


# --- kill and retry


KILL_DAG = (
    HEADER
    + """
@dag(dag_id="campaign_kill", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
def campaign_kill():
    QikberryBulkCampaignOperator(
        task_id="send",
        csv_path="{{ dag_run.conf['csv'] }}",
        message_template="Hi {{ row.name }}, your order has shipped",
        chunk_size=3,
        use_task_state_store={{ store }},
        retries=1,
        retry_delay=timedelta(seconds=0),
    )

campaign_kill()
"""
)
KILL_ROWS = 30  # 10 chunks of 3


@pytest.mark.parametrize(
    ("dies_at", "lost_answer", "store"),
    [
        pytest.param(0, False, True, id="first-chunk"),
        pytest.param(5, False, True, id="middle-chunk"),
        pytest.param(9, False, True, id="last-chunk"),
        pytest.param(4, True, True, id="accepted-answer-lost"),
        pytest.param(6, False, False, id="middle-chunk-no-task-state"),
    ],
)
def test_kill_and_retry_sends_every_row_exactly_once(
    run_dag: Any,
    make_qikberry_conn: Any,
    emulator: Any,
    tmp_path: Path,
    dies_at: int,
    lost_answer: bool,
    store: bool,
) -> None:
    make_qikberry_conn(reconcile_window=1)
    path = write_csv(
        tmp_path / "k.csv", [{"mobile": n, "name": f"C{i}"} for i, n in enumerate(numbers(KILL_ROWS))]
    )
    post = {"endpoint": "sms/send/json", "method": "POST", "after": dies_at, "times": 1}
    if lost_answer:
        # Chunk `dies_at` is accepted but its answer is lost, and the hook's lookup of it fails: try 1 ends
        # with an unknown outcome, before recording the chunk in the task state.
        lookup_fails = {"endpoint": "sms/status", "method": "GET", "kind": "error", "status": 501, "times": 1}
        emulator.set_faults([{**post, "kind": "drop_after_accept"}, lookup_fails])
    else:
        # Chunk `dies_at` is refused with an error that no retry inside the try can fix: the try fails.
        emulator.set_faults([{**post, "kind": "error", "status": 501}])
    result = run_dag(KILL_DAG.replace("{{ store }}", str(store)), "campaign_kill", conf={"csv": path})
    assert result == {"send": "success"}
    assert_each_once(emulator, numbers(KILL_ROWS))

    summary = result.xcom("send")
    earlier = dies_at + 1 if lost_answer else dies_at
    assert (summary["resumed_from_chunk"], summary["accepted_earlier_tries"]) == (earlier, 3 * earlier)
    assert summary["accepted"] == KILL_ROWS
    assert summary["group_ids"] == list(dict.fromkeys(m["group_id"] for m in emulator.messages()))

    counts = api_counts(emulator)
    # Every chunk posted once, plus the refused post of try 1 (a lost answer's post was accepted).
    assert counts["POST sms/send/json"] == 10 + (0 if lost_answer else 1)
    retry_gets = counts.get("GET sms/status", 0) - (1 if lost_answer else 0)
    # With the task state: the boundary chunk, its confirmation (window 1 s: one more lookup) and its last
    # and middle rows (its first may be one the API refused), plus, when the state lags behind an answer
    # that was lost, one more chunk and the page of its group. Without: a logarithmic search, the same
    # confirmation, plus two lookups per chunk sent by try 1 (its first row, then its group's first page,
    # whose total says whether every row is there).
    # The task state store exists from Airflow 3.3 on; before, the operator searches as without it.
    has_store = store and AIRFLOW_VERSION >= (3, 3)
    confirm = 1 + 2
    if has_store:
        bound = 1 + confirm + 2 * int(lost_answer)
    else:
        bound = 2 * math.ceil(math.log2(10 + 1)) + 1 + confirm + 2 * earlier
    assert retry_gets <= bound, counts
