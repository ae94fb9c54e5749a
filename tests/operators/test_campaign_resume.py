"""Resuming a campaign: the engine (run_campaign) with the real hook against the emulator over HTTP.

Each test plays two tries of one Airflow task by passing the task identity the engine would read from the
running task (try 1, then try 2): dag.test() cannot stop a try at an arbitrary chunk or between an accepted
chunk and its record, and the DAG-level tests (test_campaign_dag.py) cover the real task, retries and task
state store. Here the store is a dict with the accessor's get/set, so the lag and "no store" (Airflow 2.11)
cases can be staged exactly. Waits are recorded by :class:`tests.helpers.Sleeps`, which moves the emulator
clock, so reconcile windows run in milliseconds.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from airflow_qikberry import campaign as c
from airflow_qikberry import idempotency as ido
from airflow_qikberry.exceptions import QikberryDeliveryUnknownError, QikberryError, QikberryValidationError
from airflow_qikberry.hooks.qikberry import QikberryHook
from tests.helpers import Sleeps, count

TRY_1 = ("campaign_dag", "send", "manual__2026-11-28", "-1", "1")
TRY_2 = (*TRY_1[:4], "2")
ROWS = 40
CHUNK = 2  # 20 chunks


class DictStore:
    """Stands in for Airflow's ``task_state_store`` accessor: get(key, default) / set(key, value)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.sets = 0

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        assert value is not None
        self.sets += 1
        self.data[key] = value


def numbers(n: int = ROWS) -> list[str]:
    return [f"9198765{i:05d}" for i in range(n)]


@pytest.fixture
def sleeps(emulator: Any) -> Sleeps:
    return Sleeps(emulator)


@pytest.fixture
def hook(make_qikberry_conn: Callable[..., str], sleeps: Sleeps) -> QikberryHook:
    hook = QikberryHook(qikberry_conn_id=make_qikberry_conn(reconcile_window=10), clock=sleeps)
    return hook


def run(
    hook: QikberryHook,
    identity: Any,
    *,
    rows: list[str] | None = None,
    store: Any = None,
    **options: Any,
) -> dict[str, Any]:
    options.setdefault("chunk_size", CHUNK)
    opts = c.CampaignOptions.checked(name="diwali", has_template=True, **options)
    recipients = [{"mobile": n, "name": f"C{i}"} for i, n in enumerate(rows or numbers())]
    return c.run_campaign(
        opts,
        source=c.Source("recipients", lambda: c.recipient_rows(recipients)),
        hook=hook,
        render=lambda row: f"Hi {row['name']}, 20% off today",
        store=store,
        identity=identity,
    )


def kill_at(emulator: Any, chunk: int, *, lost_answer: bool = False) -> None:
    """Make try 1 die at ``chunk``: refused (501, nothing accepted) or accepted with the answer lost and
    the hook's lookup failing (unknown outcome)."""
    if lost_answer:
        lost = {"endpoint": "sms/send/json", "method": "POST", "kind": "drop_after_accept"}
        lookup_fails = {"endpoint": "sms/status", "method": "GET", "kind": "error", "status": 501}
        emulator.set_faults([{**lost, "after": chunk, "times": 1}, {**lookup_fails, "times": 1}])
    else:
        emulator.set_faults(
            [{"endpoint": "sms/send/json", "method": "POST", "kind": "error", "status": 501, "after": chunk}]
        )


def first_try(hook: QikberryHook, emulator: Any, chunk: int, *, lost_answer: bool = False, **kw: Any) -> None:
    kill_at(emulator, chunk, lost_answer=lost_answer)
    with pytest.raises(QikberryDeliveryUnknownError if lost_answer else QikberryError):
        run(hook, TRY_1, **kw)
    emulator.clear_faults()


def assert_each_number_once(emulator: Any, expected: list[str] | None = None) -> None:
    sent = Counter(m["mobile"] for m in emulator.messages())
    assert sorted(sent) == sorted(expected or numbers())
    assert set(sent.values()) == {1}, [n for n, k in sent.items() if k > 1]


def status_gets(emulator: Any) -> int:
    return count(emulator, "GET sms/status")


def log_bound(chunks: int) -> int:
    return 2 * math.ceil(math.log2(chunks + 1)) + 1


@pytest.mark.parametrize("dies_at", [0, 7, 13, 19])
def test_retry_without_task_state_sends_the_rest_once(
    hook: QikberryHook, emulator: Any, sleeps: Sleeps, dies_at: int
) -> None:
    first_try(hook, emulator, dies_at)
    assert len(emulator.messages()) == dies_at * CHUNK
    before = status_gets(emulator)
    summary = run(hook, TRY_2)
    assert_each_number_once(emulator)
    assert (summary["resumed_from_chunk"], summary["accepted_earlier_tries"]) == (dies_at, dies_at * CHUNK)
    assert summary["accepted"] == ROWS
    assert summary["chunks"] == 20
    # Group ids of every chunk, earlier tries' included, in order.
    groups = list(dict.fromkeys(m["group_id"] for m in emulator.messages()))
    assert summary["group_ids"] == groups
    # The search is logarithmic; the boundary chunk is looked for over the window, then by its other row;
    # each earlier chunk costs two lookups without task state (its first row's custom id, then the first
    # page of its group, whose total says whether every row of it is there).
    window = len(sleeps)
    assert status_gets(emulator) - before <= log_bound(20) + window + 1 + 2 * dies_at, sleeps


def test_lookups_are_logarithmic_in_the_chunk_count(
    hook: QikberryHook, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = numbers(100)  # 100 chunks of 1
    first_try(hook, emulator, 75, rows=rows, chunk_size=1)
    probed: list[int] = []
    search = ido.accepted_prefix

    def counting(total: int, accepted: Callable[[int], bool], *, start: int = 0) -> int:
        return search(total, lambda k: probed.append(k) or accepted(k), start=start)

    monkeypatch.setattr("airflow_qikberry.idempotency.resume.accepted_prefix", counting)
    summary = run(hook, TRY_2, rows=rows, chunk_size=1)
    assert summary["resumed_from_chunk"] == 75
    assert len(probed) <= log_bound(100) < 20, probed
    assert_each_number_once(emulator, rows)


@pytest.mark.parametrize("dies_at", [0, 9, 19])
def test_retry_with_task_state_needs_a_handful_of_lookups(
    hook: QikberryHook, emulator: Any, sleeps: Sleeps, dies_at: int
) -> None:
    store = DictStore()
    first_try(hook, emulator, dies_at, store=store)
    if dies_at:
        assert store.data[next(k for k in store.data if ":" not in k)]["chunks_done"] == dies_at
    before = status_gets(emulator)
    summary = run(hook, TRY_2, store=store)
    assert_each_number_once(emulator)
    assert summary["resumed_from_chunk"] == dies_at
    # One lookup of the boundary chunk, then its confirmation across the window and a lookup of its other
    # row (its first may be one the API refused); group ids from the store.
    assert status_gets(emulator) - before <= 1 + len(sleeps) + 1
    assert summary["group_ids"] == list(dict.fromkeys(m["group_id"] for m in emulator.messages()))


@pytest.mark.parametrize("with_store", [True, False])
def test_chunk_accepted_but_answer_lost(
    hook: QikberryHook, emulator: Any, sleeps: Sleeps, with_store: bool
) -> None:
    """Try 1's chunk 6 was accepted, its answer lost and the hook's lookup failed: the try fails with an
    unknown outcome and the task state (if any) lags one chunk behind. Try 2 finds chunk 6 and goes on."""
    store = DictStore() if with_store else None
    first_try(hook, emulator, 6, lost_answer=True, store=store)
    assert len(emulator.messages()) == 7 * CHUNK
    summary = run(hook, TRY_2, store=store)
    assert_each_number_once(emulator)
    assert summary["resumed_from_chunk"] == 7
    assert summary["accepted_earlier_tries"] == 14


def test_late_visibility_is_waited_for_before_the_boundary_is_sent(
    hook: QikberryHook, emulator: Any, sleeps: Sleeps
) -> None:
    """Accepted messages show in sms/status only 3 s later, so when try 2 starts nothing of try 1 is visible
    yet: the boundary (chunk 0) is confirmed across the reconcile window, shows up, and the search goes on
    instead of sending everything again."""
    emulator.configure(visibility_delay_seconds=3)
    first_try(hook, emulator, 6, lost_answer=True)
    sleeps.clear()
    summary = run(hook, TRY_2)
    assert_each_number_once(emulator)
    assert summary["resumed_from_chunk"] == 7
    # Chunk 0 was waited for until it became visible (>= 3 s); chunk 7, the real boundary, for the whole
    # 10 s window.
    assert 13 <= sum(sleeps) <= 20, sleeps


def test_changed_rows_are_refused_without_sending(hook: QikberryHook, emulator: Any) -> None:
    first_try(hook, emulator, 5)
    changed = numbers()
    changed[8] = "919999900000"  # the first row of chunk 4 (sent by try 1) is now someone else
    posts = count(emulator, "POST sms/send/json")
    with pytest.raises(QikberryValidationError, match="recipients changed between tries") as err:
        run(hook, TRY_2, rows=changed)
    assert err.value.field == "recipients"
    assert count(emulator, "POST sms/send/json") == posts
    assert "919999900000" not in str(err.value)
    assert "919876500008" not in str(err.value)


def test_changed_rows_are_refused_from_the_task_state(hook: QikberryHook, emulator: Any) -> None:
    store = DictStore()
    first_try(hook, emulator, 5, store=store)
    changed = numbers()
    changed[-1] = "919999900000"  # a row not sent yet: only the digest of the rows can tell
    posts, gets = count(emulator, "POST sms/send/json"), status_gets(emulator)
    with pytest.raises(QikberryValidationError, match="changed since an earlier try"):
        run(hook, TRY_2, rows=changed, store=store)
    assert (count(emulator, "POST sms/send/json"), status_gets(emulator)) == (posts, gets)


def test_first_try_never_looks_up_and_records_each_chunk(hook: QikberryHook, emulator: Any) -> None:
    store = DictStore()
    summary = run(hook, TRY_1, store=store)
    assert status_gets(emulator) == 0
    assert count(emulator, "POST sms/send/json") == 20
    assert summary["resumed_from_chunk"] is None
    assert summary["accepted"] == ROWS
    assert store.sets == 40  # a group-id page and the progress record per chunk
    customs = [m["custom"] for m in emulator.messages()]
    key = ido.campaign_key(TRY_1, "diwali")
    assert customs[:3] == [f"qc-{key}-0-0", f"qc-{key}-0-1", f"qc-{key}-1-0"]


def test_a_finished_campaign_retried_sends_nothing(hook: QikberryHook, emulator: Any) -> None:
    run(hook, TRY_1)
    summary = run(hook, TRY_2)
    assert count(emulator, "POST sms/send/json") == 20
    assert len(emulator.messages()) == ROWS
    assert summary["resumed_from_chunk"] == 20
    assert summary["accepted"] == ROWS
    assert summary["accepted_earlier_tries"] == ROWS


def test_resend_sends_everything_again_under_new_ids(hook: QikberryHook, emulator: Any) -> None:
    run(hook, TRY_1, resend=True)
    run(hook, TRY_2, resend=True)
    sent = Counter(m["mobile"] for m in emulator.messages())
    assert set(sent.values()) == {2}
    assert status_gets(emulator) == 0
    assert len({m["custom"] for m in emulator.messages()}) == 2 * ROWS


def test_balance_guard_on_a_retry_counts_only_what_is_left(hook: QikberryHook, emulator: Any) -> None:
    first_try(hook, emulator, 15)  # 30 of 40 messages accepted, 30 credits spent
    emulator.configure(credits=15)  # not enough for all 40, enough for the last 10
    summary = run(hook, TRY_2)
    assert_each_number_once(emulator)
    assert summary["estimated_credits"] == 40.0


def test_unknown_outcome_while_resuming_sends_nothing(hook: QikberryHook, emulator: Any) -> None:
    first_try(hook, emulator, 4)
    posts = count(emulator, "POST sms/send/json")
    emulator.set_faults([{"endpoint": "sms/status", "method": "GET", "kind": "error", "status": 501}])
    with pytest.raises(QikberryError):
        run(hook, TRY_2)
    assert count(emulator, "POST sms/send/json") == posts
