"""The pure parts of the campaign engine: sources, options, planning, the prepare pass, limits, and the
custom-id scheme and accepted-prefix search of :mod:`airflow_qikberry.idempotency`. No HTTP; Airflow only
where its task context is the input."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sqlite3
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jinja2.sandbox
import pytest

from airflow_qikberry import campaign as c
from airflow_qikberry import idempotency as ido
from airflow_qikberry.exceptions import QikberryValidationError
from tests.helpers import only_before_airflow

IDENTITY = ("dag", "task", "manual__1", "-1", "1")


def _prepare(rows: list[dict[str, Any]], **kwargs: Any) -> tuple[c.Prepared, c.RejectedReport, list[Any]]:
    spool = io.BytesIO()
    report = c.RejectedReport()
    kwargs.setdefault("plan", c.ChunkPlan(2))
    kwargs.setdefault("default_region", "IN")
    if "message" not in kwargs and "render" not in kwargs:
        kwargs["message"] = "Hello"
    prepared = c.prepare(rows, spool, report, **kwargs)
    lines = [json.loads(line) for line in spool.getvalue().decode().splitlines()]
    return prepared, report, lines


def _render(source: str) -> Any:
    return c.compile_row_template(
        jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined), source
    )


# --- sources


def test_exactly_one_source() -> None:
    assert c.choose_source(csv_path="/x.csv") == "csv_path"
    assert c.choose_source(recipients=[]) == "recipients"  # given, empty: fails later as "no rows"
    with pytest.raises(QikberryValidationError) as none:
        c.choose_source(recipients=None, csv_path="")
    assert none.value.field == "recipients"
    assert "csv_path, sql, recipients_xcom_task_id" in str(none.value)
    with pytest.raises(QikberryValidationError) as several:
        c.choose_source(csv_path="/x.csv", sql="SELECT 1")
    assert several.value.field == "csv_path"
    assert "csv_path, sql" in str(several.value)


def test_recipient_rows_shapes() -> None:
    assert list(c.recipient_rows(["919876543210", 919876543211])) == [
        {"mobile": "919876543210"},
        {"mobile": 919876543211},
    ]
    assert list(c.recipient_rows("[{'phone': '91 98765 43210', 'name': 'A'}]")) == [
        {"phone": "91 98765 43210", "name": "A"}
    ]
    assert list(c.recipient_rows("919876543210; 919876543211")) == [
        {"mobile": "919876543210"},
        {"mobile": "919876543211"},
    ]
    assert list(c.recipient_rows(["919876543210"], phone_column="msisdn")) == [{"msisdn": "919876543210"}]
    with pytest.raises(QikberryValidationError) as bad:
        list(c.recipient_rows("[not a list", field="recipients_xcom_task_id"))
    assert bad.value.field == "recipients_xcom_task_id"
    with pytest.raises(QikberryValidationError):
        list(c.recipient_rows(42.0))


def test_phone_column_detection() -> None:
    assert c.phone_key(["Name", "MOBILE"], None) == "MOBILE"
    assert c.phone_key(["name", "msisdn", "phone"], None) == "phone"  # PHONE_COLUMNS order wins
    assert c.phone_key(["name", "cust_mobile_no"], None) == "cust_mobile_no"
    assert c.phone_key(["Cell"], "cell") == "Cell"
    with pytest.raises(QikberryValidationError) as missing:
        c.phone_key(["name", "city"], None)
    assert missing.value.field == "phone_column"
    assert "'city'" in str(missing.value)
    with pytest.raises(QikberryValidationError) as wrong:
        c.phone_key(["name", "mobile"], "msisdn")
    assert wrong.value.field == "phone_column"


def test_csv_rows_streams_and_checks_the_file(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("\ufeffmobile,name\n919876543210,Asha\n", encoding="utf-8")
    assert list(c.csv_rows(str(path))) == [{"mobile": "919876543210", "name": "Asha"}]
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(QikberryValidationError, match="needs a header"):
        list(c.csv_rows(str(empty)))
    with pytest.raises(QikberryValidationError) as absent:
        c.check_csv_file(str(tmp_path / "nope.csv"))
    assert absent.value.field == "csv_path"


def test_csv_over_200_mb_is_refused_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    with open(big, "wb") as handle:
        handle.truncate(c.MAX_CSV_BYTES + 1)  # sparse: no 200 MB written
    with pytest.raises(QikberryValidationError) as err:
        next(iter(c.csv_rows(str(big))))
    assert err.value.field == "csv_path"
    assert "200 MB" in str(err.value)


class _SqliteHook:
    """Just what sql_rows needs from a DbApiHook: get_conn() returning a DB-API connection."""

    def __init__(self, path: str) -> None:
        self.path = path

    def get_conn(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path)


def test_sql_rows_fetch_in_batches_as_dicts(tmp_path: Path) -> None:
    db = str(tmp_path / "crm.db")
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE customers (mobile INTEGER, name TEXT)")
        conn.executemany(
            "INSERT INTO customers VALUES (?, ?)", [(919876543210 + i, f"C{i}") for i in range(5)]
        )
    query = "SELECT mobile, name FROM customers WHERE name != ?"
    rows = list(c.sql_rows(_SqliteHook(db), query, ("C1",), fetch_size=2))
    assert rows[0] == {"mobile": 919876543210, "name": "C0"}
    assert len(rows) == 4
    with pytest.raises(QikberryValidationError) as no_conn:
        list(c.sql_rows(object(), "SELECT 1"))
    assert no_conn.value.field == "sql_conn_id"


# --- options


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"message": None}, "message"),
        ({"message": "hi", "has_template": True}, "message"),
        ({"message": ""}, "message"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"chunk_size": 50_001}, "chunk_size"),
        ({"max_invalid_ratio": 1.5}, "max_invalid_ratio"),
        ({"tags": ["a", "b", "c", "d"]}, "tags"),
        ({"tags": "['a', 'b', 'c', 'd']"}, "tags"),
        ({"encoding": "latin1"}, "encoding"),
        ({"max_units": 0}, "max_units"),
        ({"message": "x" * 200, "max_units": 1}, "message"),
        ({"batch_size": 999, "interval": 600, "schedule_at": "2099-01-01T00:00:00+00:00"}, "batch_size"),
        ({"batch_size": 1000, "interval": 60, "schedule_at": "2099-01-01T00:00:00+00:00"}, "interval"),
        ({"batch_size": 1000, "interval": 600}, "schedule_at"),
        ({"interval": 600}, "interval"),
        ({"schedule_at": "2099-01-01 00:00:00"}, "schedule_at"),  # no offset
        ({"name": " "}, "name"),
    ],
)
def test_options_are_checked(kwargs: dict[str, Any], field: str) -> None:
    args = {"name": "camp", "message": "Hello", **kwargs}
    with pytest.raises(QikberryValidationError) as err:
        c.CampaignOptions.checked(**args)
    assert err.value.field == field


def test_options_accept_a_split_schedule() -> None:
    options = c.CampaignOptions.checked(
        name="camp", message="Hi", batch_size=1000, interval=600, schedule_at="2099-01-01T10:00:00+05:30"
    )
    assert options.interval == timedelta(minutes=10)
    assert options.send.schedule_at is not None
    assert options.send.schedule_at.utcoffset() == timedelta(hours=5, minutes=30)


# --- planning


def test_chunks_never_straddle_batches() -> None:
    plan = c.ChunkPlan(chunk_size=400, batch_size=1000)
    chunks = plan.chunks(2300)
    assert [(ch.start, ch.size, ch.batch) for ch in chunks] == [
        (0, 400, 0), (400, 400, 0), (800, 200, 0),
        (1000, 400, 1), (1400, 400, 1), (1800, 200, 1),
        (2000, 300, 2),
    ]  # fmt: skip
    assert [ch.index for ch in chunks] == list(range(7))
    starts = [0]
    while (following := plan.next_start(starts[-1])) < 2300:
        starts.append(following)
    assert starts == [ch.start for ch in chunks]
    for plan in (c.ChunkPlan(3), c.ChunkPlan(3, 7), c.ChunkPlan(5, 5), c.ChunkPlan(4, 10)):
        chunks = plan.chunks(100)
        assert [min(plan.next_start(ch.start + i), 100) for ch in chunks for i in range(ch.size)] == [
            ch.start + ch.size for ch in chunks for _ in range(ch.size)
        ]
    assert [ch.size for ch in c.ChunkPlan(3).chunks(7)] == [3, 3, 1]
    assert c.ChunkPlan(3).chunks(0) == []


def test_batch_times_follow_the_interval_and_are_all_checked() -> None:
    start = datetime.now(timezone.utc) + timedelta(minutes=30)
    options = c.CampaignOptions.checked(
        name="camp", message="Hi", batch_size=1000, interval=timedelta(hours=1), schedule_at=start
    )
    chunks = c.ChunkPlan(500, 1000).chunks(2500)
    assert c.batch_times(options, chunks, 0, "Asia/Kolkata") == [start + timedelta(hours=i) for i in range(3)]
    late = c.CampaignOptions.checked(
        name="camp", message="Hi", batch_size=1000, interval=timedelta(hours=1),
        schedule_at=datetime.now(timezone.utc) + timedelta(days=91, hours=23, minutes=30),
    )  # fmt: skip
    with pytest.raises(QikberryValidationError) as err:
        c.batch_times(late, chunks, 0, "Asia/Kolkata")
    assert err.value.field == "schedule_at"
    assert "batch 2 of 3" in str(err.value)
    # A resumed campaign checks only the batches it still has to send: batch 1 is past, batch 2 is not.
    past = c.CampaignOptions.checked(
        name="camp", message="Hi", batch_size=1000, interval=timedelta(hours=1),
        schedule_at=datetime.now(timezone.utc) - timedelta(minutes=50),
    )  # fmt: skip
    assert len(c.batch_times(past, chunks, 2, "Asia/Kolkata")) == 3
    with pytest.raises(QikberryValidationError, match="in the past"):
        c.batch_times(past, chunks, 1, "Asia/Kolkata")


# --- the prepare pass


def test_prepare_rejects_counts_and_spools() -> None:
    rows = [
        {"mobile": "+91 98765 43210", "name": "Asha"},
        {"mobile": "12", "name": "Short"},
        {"mobile": "", "name": "Blank"},
        {"mobile": "9876543211", "name": "नमस्ते"},  # national number: default_region IN
        {"mobile": "919876543210", "name": "Asha"},  # same number and text as row 1
        {"mobile": "919876543210", "name": "Ravi"},  # same number, other text: sent
        {"mobile": "919876543212", "name": "x" * 400},  # 3 SMS parts, max_units 2
        {"mobile": "919876543213"},
    ]
    prepared, report, lines = _prepare(
        rows, message=None, render=_render("Hi {{ row.name }}"), max_units=2, plan=c.ChunkPlan(2)
    )
    # Each line is what the send pass needs, validated once here: number, text and the text's API type.
    assert lines == [
        ["919876543210", "Hi Asha", "N"],
        ["919876543211", "Hi नमस्ते", "U"],
        ["919876543210", "Hi Ravi", "N"],
    ]
    assert (prepared.rows_read, prepared.accepted, prepared.duplicates) == (8, 3, 1)
    assert dict(report.counts) == {
        "invalid_number": 1, "missing_number": 1, "message_too_long": 1, "template_error": 1
    }  # fmt: skip
    assert prepared.units == 3
    assert prepared.chunk_units == [2, 1]
    assert prepared.sample[1] == {
        "row": 4, "mobile": "9198XXXXX211", "message": "Hi नमस्ते", "units": 1, "encoding": "ucs2"
    }  # fmt: skip
    assert "row 8: UndefinedError" in report.examples["template_error"]


def test_prepare_chunk_offsets_point_at_each_chunk_first_row() -> None:
    rows = [{"mobile": f"91987654{i:04d}"} for i in range(7)]
    spool = io.BytesIO()
    prepared = c.prepare(rows, spool, c.RejectedReport(), plan=c.ChunkPlan(3), message="Hello")
    data = spool.getvalue()
    firsts = [json.loads(data[o:].split(b"\n", 1)[0]) for o in prepared.chunk_offsets]
    assert firsts == [["919876540000"], ["919876540003"], ["919876540006"]]
    assert prepared.chunk_units == [3, 3, 1]


def test_prepare_same_number_same_static_text_is_a_duplicate() -> None:
    prepared, _, lines = _prepare([{"mobile": "919876543210"}, {"mobile": "+91 98765-43210"}])
    assert prepared.duplicates == 1
    assert lines == [["919876543210"]]


def test_prepare_digest_changes_with_the_rows() -> None:
    first, _, _ = _prepare([{"mobile": "919876543210"}])
    again, _, _ = _prepare([{"mobile": "919876543210"}])
    other, _, _ = _prepare([{"mobile": "919876543211"}])
    assert first.digest == again.digest != other.digest


def test_prepare_stops_past_the_message_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # The mechanism; 500,000 rows would take 30 s.
    monkeypatch.setattr("airflow_qikberry.campaign.preparation.MAX_CAMPAIGN_MESSAGES", 3)
    rows = [{"mobile": f"91987654{i:04d}"} for i in range(10)]
    with pytest.raises(QikberryValidationError) as err:
        _prepare(rows, field_name="csv_path")
    assert err.value.field == "csv_path"
    assert "stopped at source row 4" in str(err.value)


def test_sandbox_and_encoding_rejections() -> None:
    rows = [{"mobile": "919876543210", "name": "Asha"}]
    _, report, _ = _prepare(rows, message=None, render=_render("{{ row.__class__.__mro__ }}"))
    assert dict(report.counts) == {"template_error": 1}  # SecurityError: the sandbox holds
    _, report, _ = _prepare(rows, message=None, render=_render("नमस्ते {{ row.name }}"), encoding="gsm7")
    assert dict(report.counts) == {"invalid_message": 1}
    _, report, _ = _prepare(rows, message=None, render=_render("{{ '' }}  "))
    assert dict(report.counts) == {"empty_message": 1}


def test_row_template_sees_row_and_task_context_like_template_render() -> None:
    env = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined)
    env.globals["brand"] = "Qikberry"
    source = "{{ brand }}: hi {{ row.name }}, {{ ds }}{% set x = row.name %} {{ x | upper }}"
    context = {"ds": "2026-11-28", "params": {}}
    render = c.compile_row_template(env, source, context)
    expected = env.from_string(source, globals=dict(context))
    for name in ("Asha", "Ravi"):  # a second row sees nothing the first one set
        assert render({"name": name}) == expected.render(row={"name": name})
    assert render({"name": "Asha"}) == "Qikberry: hi Asha, 2026-11-28 ASHA"
    with pytest.raises(jinja2.UndefinedError):
        render({})
    async_env = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined, enable_async=True)
    assert c.compile_row_template(async_env, "hi {{ row.name }}", context)({"name": "Asha"}) == "hi Asha"


@only_before_airflow((3, 0), "Airflow 3's task context is a plain dict: no key of it is deprecated")
def test_row_template_reads_no_deprecated_context_key_it_does_not_use() -> None:
    # Airflow 2.11's Context warns on every read of a deprecated key; the campaign task's log got all 13 of
    # them at each try while the template named none (issue 22). Break: build the globals with
    # dict(context) again -> the first block raises AirflowContextDeprecationWarning.
    from airflow.utils.context import AirflowContextDeprecationWarning, Context

    context = Context({"ds": "2026-11-28", "next_ds": "2026-11-29", "prev_ds": "2026-11-27", "params": {}})
    env = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        render = c.compile_row_template(env, "hi {{ row.name }}, {{ ds }}", context)
        texts = [render({"name": name}) for name in ("Asha", "Ravi")]
        assert texts == ["hi Asha, 2026-11-28", "hi Ravi, 2026-11-28"]
        with pytest.raises(jinja2.UndefinedError):
            render({})  # Jinja's error path copies the template's globals: still no deprecated key read
    # A template that does name one still gets its value, and Airflow's warning is the template's own.
    render = c.compile_row_template(env, "{{ row.name }} {{ next_ds }}", context)
    with pytest.warns(AirflowContextDeprecationWarning, match="next_ds"):
        assert render({"name": "Asha"}) == "Asha 2026-11-29"


def test_template_syntax_error_is_a_typed_error() -> None:
    with pytest.raises(QikberryValidationError) as err:
        _render("Hi {{ row.name ")
    assert err.value.field == "message_template"


def test_rejected_report_csv_and_masked_details(tmp_path: Path) -> None:
    path = tmp_path / "rejected.csv"
    with c.RejectedReport(str(path)) as report:
        c.prepare(
            [{"mobile": "919876543210"}, {"mobile": "91987654321000000"}, {"mobile": None}],
            io.BytesIO(),
            report,
            plan=c.ChunkPlan(5),
            message="Hi",
        )
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert [(r["row"], r["reason"], r["value"]) for r in rows] == [
        ("2", "invalid_number", "91987654321000000"),
        ("3", "missing_number", ""),
    ]
    assert "91987654321000000" not in rows[0]["detail"]  # the detail (also used in logs) is masked
    assert "91987654321000000" not in report.examples["invalid_number"]


def test_rejected_path_that_cannot_be_written(tmp_path: Path) -> None:
    with pytest.raises(QikberryValidationError) as err, c.RejectedReport(str(tmp_path / "no" / "x.csv")):
        pass
    assert err.value.field == "rejected_path"


def test_limits() -> None:
    rows = [{"mobile": "919876543210"}, {"mobile": "12"}]
    prepared, report, _ = _prepare(rows)
    with pytest.raises(QikberryValidationError) as err:
        c.check_limits(prepared, report, max_invalid_ratio=0.05, field="csv_path")
    assert err.value.field == "max_invalid_ratio"
    assert "1 of 2 rows (50.0%)" in str(err.value)
    assert "invalid_number 1 (e.g. row 2:" in str(err.value)
    c.check_limits(prepared, report, max_invalid_ratio=0.5, field="csv_path")
    empty, report, _ = _prepare([])
    with pytest.raises(QikberryValidationError, match="no rows") as none:
        c.check_limits(empty, report, max_invalid_ratio=0.05, field="sql")
    assert none.value.field == "sql"
    bad, report, _ = _prepare([{"mobile": "12"}])
    with pytest.raises(QikberryValidationError, match="none of the 1 rows") as nothing:
        c.check_limits(bad, report, max_invalid_ratio=1.0, field="recipients")
    assert nothing.value.field == "recipients"


# --- custom ids and the accepted-prefix search


def test_campaign_key_is_stable_across_tries_unless_resend() -> None:
    retry = (*IDENTITY[:4], "2")
    assert ido.campaign_key(IDENTITY, "camp") == ido.campaign_key(retry, "camp")
    assert ido.campaign_key(IDENTITY, "camp") != ido.campaign_key(IDENTITY, "other")
    assert ido.campaign_key(IDENTITY, "camp", resend=True) != ido.campaign_key(retry, "camp", resend=True)
    assert ido.campaign_key(None, "camp", content="a") == ido.campaign_key(None, "camp", content="a")
    assert ido.campaign_key(None, "camp", content="a") != ido.campaign_key(None, "camp", content="b")
    key = ido.campaign_key(IDENTITY, "camp")
    assert ido.campaign_custom_id(key, 3, 17) == f"qc-{key}-3-17"
    assert len(key) == 16


@pytest.mark.parametrize("total", [1, 2, 7, 100, 1000])
def test_accepted_prefix_is_exact_and_logarithmic(total: int) -> None:
    for prefix in sorted({0, 1, total // 3, total // 2, total - 1, total}):
        probes: list[int] = []

        def accepted(k: int, prefix: int = prefix, probes: list[int] = probes) -> bool:
            probes.append(k)
            return k < prefix

        assert ido.accepted_prefix(total, accepted) == prefix
        assert len(probes) <= 2 * math.ceil(math.log2(total + 1)) + 1, (prefix, probes)
        assert len(set(probes)) == len(probes)


def test_accepted_prefix_starts_from_a_hint() -> None:
    probes: list[int] = []
    assert ido.accepted_prefix(1000, lambda k: probes.append(k) or k < 501, start=500) == 501
    assert probes == [500, 501]
    assert ido.accepted_prefix(10, lambda k: pytest.fail("no lookup needed"), start=10) == 10


def test_resume_point_confirms_the_boundary_and_goes_on_when_it_shows_up() -> None:
    visible = {0, 1, 2}
    late = {3}  # accepted, shows up only on the confirming lookups
    confirmed: list[int] = []

    def confirm(k: int) -> bool:
        confirmed.append(k)
        if k in late:
            visible.add(k)
            return False
        return True

    assert ido.resume_point(10, lambda k: k in visible, confirm) == 4
    assert confirmed == [3, 4]
    assert ido.resume_point(3, lambda k: True, lambda k: pytest.fail("nothing left to confirm")) == 3


def test_digit_runs_are_masked_in_details() -> None:
    assert c.scrub("number 919876543210 is bad") == "number 9198XXXXX210 is bad"
    assert len(c.scrub("x" * 500)) == 200
    assert os.path.sep  # keep os imported for the sparse-file test on every platform


def test_heap_frozen_freezes_for_the_block_and_unfreezes_after_it_even_on_error() -> None:
    import gc

    from airflow_qikberry.campaign.engine import heap_frozen

    if gc.get_freeze_count():
        pytest.skip("this process froze its heap already")
    with heap_frozen():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), heap_frozen():
        raise RuntimeError("a chunk failed")
    assert gc.get_freeze_count() == 0


def test_heap_frozen_leaves_a_heap_frozen_by_someone_else_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    from airflow_qikberry.campaign.engine import heap_frozen

    # As in a process forked from a parent that froze its heap. (Not with a real gc.freeze: the count of
    # frozen objects falls whenever one of them is freed, so it cannot be compared.)
    calls: list[str] = []
    monkeypatch.setattr(gc, "get_freeze_count", lambda: 870_709)
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(gc, "unfreeze", lambda: calls.append("unfreeze"))
    with heap_frozen():
        pass
    assert calls == []  # not unfrozen: that would undo the other freeze


def test_prepare_digests_are_those_earlier_versions_wrote() -> None:
    """
    A retry compares the content digests with the ones its task state holds, maybe written by an earlier
    version of the provider: the bytes they are made of (spool lines, in order) must not change with how
    pass 1 is written. Pinned from the row-by-row pass 1 (e08f75d), across chunk and batch boundaries, with
    duplicates, rejected rows and UCS-2 texts.
    """
    import jinja2.sandbox

    rows = [
        {
            "mobile": f"91987654{i % 1100:04d}" if i % 97 else "12",
            "name": ("नमस्ते" if i % 5 == 0 else f"C{i % 1200}") + "{" * (i % 3),
        }
        for i in range(1300)
    ]
    env = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined)
    expected = {
        "message": ("01a04043f1bbf384120cc3cc5daf61e1", "5dfffcd55c9549f3", 1091, 195, 18547),
        "render": ("2ab8efa3b59545b980355c00f6ab041a", "3244448ebe53d279", 1286, 0, 47306),
    }
    offsets = {
        ("message", 100): [0, 1700, 3400, 5100, 6800],
        ("message", 70): [0, 1190, 2380, 3570, 4250],
        ("render", 100): [0, 3594, 7272, 10953, 14634],
        ("render", 70): [0, 2512, 5065, 7641, 9112],
    }
    for kind, kwargs in (
        ("message", {"message": "Hello"}),
        ("render", {"render": c.compile_row_template(env, "Hi {{ row.name }}")}),
    ):
        for plan in (c.ChunkPlan(100), c.ChunkPlan(70, 250)):
            spool = io.BytesIO()
            p = c.prepare(rows, spool, c.RejectedReport(), plan=plan, default_region="IN", **kwargs)  # type: ignore[arg-type]
            got = (p.digest, p.set_digest, p.accepted, p.duplicates, len(spool.getvalue()))
            assert got == expected[kind], (kind, plan)
            assert p.chunk_offsets[:5] == offsets[kind, plan.chunk_size]
            assert sum(p.chunk_units) == p.units == p.accepted
            assert len(p.chunk_units) == len(p.chunk_offsets) == len(plan.chunks(p.accepted))
