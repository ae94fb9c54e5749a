"""Every row of a campaign is settled on its own (issue 16, items 2 and 4): the engine (``run_campaign``)
with the real hook against the emulator over HTTP, tries staged by task identity as in
``test_campaign_resume.py``.

The emulator leaves ``suppressed_numbers`` out of its 200 answers (an opted-out number) and refuses
``refused_numbers`` with a 422 for the whole request, naming the node (or, with ``refusal_names_node``
False, naming nothing). A campaign must send everything else, report those rows as not sent (never as
accepted), go on with the rest, and a retry must judge an earlier try's chunks by every row.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_qikberry import campaign as c
from airflow_qikberry.exceptions import (
    QikberryDeliveryUnknownError,
    QikberryError,
    QikberryRowsNotSentError,
    QikberryValidationError,
)
from tests.helpers import Sleeps, count
from tests.operators.test_campaign_resume import TRY_1, TRY_2, DictStore, hook, sleeps

if TYPE_CHECKING:
    from airflow_qikberry.hooks.qikberry import QikberryHook

__all__ = ["hook", "sleeps"]  # fixtures

ROWS = 250
CHUNK = 120  # chunks of 120, 120 and 10 rows: more than one 100-row status page per group


def numbers(n: int = ROWS) -> list[str]:
    return [f"9198767{i:05d}" for i in range(n)]


def at(chunk: int, position: int) -> str:
    return numbers()[chunk * CHUNK + position]


def run(
    hook: QikberryHook,
    identity: Any,
    *,
    rows: list[str] | None = None,
    store: Any = None,
    rejected_path: str | None = None,
    order: Any = list,
    **options: Any,
) -> dict[str, Any]:
    options.setdefault("chunk_size", CHUNK)
    opts = c.CampaignOptions.checked(name="rows", has_template=True, **options)
    recipients = order([{"mobile": n, "name": f"C{i}"} for i, n in enumerate(rows or numbers())])
    return c.run_campaign(
        opts,
        source=c.Source("recipients", lambda: c.recipient_rows(recipients)),
        hook=hook,
        render=lambda row: f"Hi {row['name']}, your order has shipped",
        store=store,
        identity=identity,
        rejected_path=rejected_path,
    )


def dies_at(emulator: Any, chunk: int) -> None:
    """Try 1's chunk ``chunk`` is accepted, its answer lost and every lookup of it fails: the try ends with
    an unknown outcome there (and its task state, if any, one chunk behind)."""
    emulator.set_faults(
        [
            {
                "endpoint": "sms/send/json",
                "method": "POST",
                "kind": "drop_after_accept",
                "after": chunk,
                "times": 1,
            },
            {"endpoint": "sms/status", "method": "GET", "kind": "error", "status": 501},
        ]
    )


def sent(emulator: Any) -> Counter[str]:
    return Counter(m["mobile"] for m in emulator.messages())


def assert_once_except(emulator: Any, missing: list[str], rows: list[str] | None = None) -> None:
    accepted = sent(emulator)
    assert set(accepted.values()) == {1}, [n for n, k in accepted.items() if k > 1][:5]
    assert sorted(accepted) == sorted(set(rows or numbers()) - set(missing))


def report_rows(path: Path) -> list[tuple[str, str, str]]:
    with path.open(encoding="utf-8") as handle:
        return [(r["row"], r["reason"], r["value"]) for r in csv.DictReader(handle)]


# --- rows left out of an accepted answer (item 4)


def test_rows_left_out_of_answers_are_reported_and_the_campaign_goes_on(
    hook: QikberryHook, emulator: Any, sleeps: Sleeps, tmp_path: Path
) -> None:
    left_out = [at(0, 0), at(1, 60), at(2, 9)]  # first row, a middle row, the campaign's last row
    emulator.configure(suppressed_numbers=left_out)
    report = tmp_path / "rejected.csv"
    summary = run(hook, TRY_1, rejected_path=str(report))
    assert_once_except(emulator, left_out)
    assert (summary["accepted"], summary["not_sent"]) == (ROWS - 3, 3)
    assert summary["not_sent_by_reason"] == {"not_accepted": 3}
    assert [(r["row"], r["mobile"], r["reason"]) for r in summary["not_sent_rows"]] == [
        (1, "9198XXXXX000", "not_accepted"),
        (181, "9198XXXXX180", "not_accepted"),
        (250, "9198XXXXX249", "not_accepted"),
    ]
    assert report_rows(report) == [("1", "not_accepted", left_out[0]), ("181", "not_accepted", left_out[1]),
                                   ("250", "not_accepted", left_out[2])]  # fmt: skip
    assert summary["group_ids"] == list(dict.fromkeys(m["group_id"] for m in emulator.messages()))
    # Each chunk was posted once; its missing row looked up (alone) at each step of one reconcile window.
    assert count(emulator, "POST sms/send/json") == 3
    assert count(emulator, "GET sms/status") == len(sleeps) == 3 * 4  # a 10 s window: 1, 2, 4, 3 s


@pytest.mark.parametrize("with_store", [True, False], ids=["task-state", "no-task-state"])
@pytest.mark.parametrize(
    ("chunk", "position"), [(1, 0), (1, 119), (2, 9)], ids=["first-row", "last-row", "campaign-last-row"]
)
def test_a_retry_judges_a_partly_accepted_chunk_by_every_row(
    hook: QikberryHook, emulator: Any, sleeps: Sleeps, with_store: bool, chunk: int, position: int
) -> None:
    """Try 1 dies at a chunk the API accepted without one row (its answer lost, its lookups failing). The
    retry must neither post the chunk's other rows again (the first-row case: they were sent) nor claim the
    missing row accepted (the last-row case: it never was)."""
    left_out = at(chunk, position)
    emulator.configure(suppressed_numbers=[left_out])
    store = DictStore() if with_store else None
    dies_at(emulator, chunk)
    with pytest.raises(QikberryDeliveryUnknownError):
        run(hook, TRY_1, store=store)
    emulator.clear_faults()
    try:
        summary = run(hook, TRY_2, store=store)
    finally:
        assert_once_except(emulator, [left_out])
    assert summary["accepted"] == ROWS - 1  # never more than the API holds
    assert summary["not_sent"] == 1
    assert summary["not_sent_rows"][0]["row"] == chunk * CHUNK + position + 1
    assert summary["accepted_earlier_tries"] == min((chunk + 1) * CHUNK, ROWS) - 1
    groups = list(dict.fromkeys(m["group_id"] for m in emulator.messages()))
    assert summary["group_ids"] == groups
    assert len(groups) == 3
    # The missing row was posted once more by the retry (it cannot tell a row left out from one never
    # posted) and left out again: 3 chunks, that row again, nothing else.
    assert count(emulator, "POST sms/send/json") == 4


# --- rows the API refuses (item 2, the campaign half)


def test_a_refused_row_does_not_stall_the_campaign(
    hook: QikberryHook, emulator: Any, sleeps: Sleeps, tmp_path: Path
) -> None:
    refused = [at(0, 0), at(0, 77), at(1, 5)]
    emulator.configure(refused_numbers=refused)
    report = tmp_path / "rejected.csv"
    summary = run(hook, TRY_1, rejected_path=str(report))
    assert_once_except(emulator, refused)
    assert (summary["accepted"], summary["not_sent"]) == (ROWS - 3, 3)
    assert summary["not_sent_by_reason"] == {"api_refused": 3}
    first = summary["not_sent_rows"][0]
    assert first["reason"] == "api_refused"
    assert "blocked" in first["detail"]
    assert [r[:2] for r in report_rows(report)] == [("1", "api_refused"), ("78", "api_refused"),
                                                    ("126", "api_refused")]  # fmt: skip
    # Chunk 0: refused (naming both rows), then posted without them; chunk 1 the same; chunk 2 at once.
    assert count(emulator, "POST sms/send/json") == 5
    assert count(emulator, "GET sms/status") == 0
    # The custom ids stay those of the rows' positions.
    customs = {m["mobile"]: m["custom"] for m in emulator.messages()}
    assert customs[at(0, 1)].endswith("-0-1")
    assert customs[at(1, 6)].endswith("-1-6")


def test_a_refusal_that_names_no_row_is_narrowed_down_by_halves(
    hook: QikberryHook, emulator: Any, sleeps: Sleeps
) -> None:
    refused = [at(1, 37)]
    emulator.configure(refused_numbers=refused, refusal_names_node=False)
    store = DictStore()
    summary = run(hook, TRY_1, store=store)
    assert_once_except(emulator, refused)
    assert summary["not_sent_by_reason"] == {"api_refused": 1}
    assert "blocked" in summary["not_sent_rows"][0]["detail"]
    # Chunk 1 went out in several requests, each its own group: every one is listed, in order.
    groups = list(dict.fromkeys(m["group_id"] for m in emulator.messages()))
    assert summary["group_ids"] == groups
    assert len(groups) > 3
    # And recorded in the task state for a retry.
    assert {len(v) for v in store.data.values() if isinstance(v, list)} == {3}


@pytest.mark.parametrize("with_store", [True, False], ids=["task-state", "no-task-state"])
def test_a_retry_finds_every_request_of_a_split_chunk(
    hook: QikberryHook, emulator: Any, sleeps: Sleeps, with_store: bool
) -> None:
    """Try 1 splits chunk 1 around a refused row (a 422 naming no row), then dies at chunk 2. The retry
    finds every group of chunk 1 (a sensor must watch them all), sends chunk 2, and does not take the
    refused row for a sign that chunk 1 was never sent."""
    refused = [at(1, 0)]  # the chunk's first row: the one a first-row search would look up
    emulator.configure(refused_numbers=refused, refusal_names_node=False)
    store = DictStore() if with_store else None
    # Chunk 0 is one request; chunk 1 is 13: the whole, then halves down to its first row (120, 60, 30, 15,
    # 7, 3, 1 rows refused), and each accepted other half. The next request, chunk 2, fails.
    emulator.set_faults([{"endpoint": "sms/send/json", "method": "POST", "kind": "error", "status": 501,
                          "after": 1 + 13, "times": 1}])  # fmt: skip
    with pytest.raises(QikberryError) as died:
        run(hook, TRY_1, store=store)
    assert died.value.status_code == 501
    posts_before_death = count(emulator, "POST sms/send/json")
    emulator.clear_faults()
    summary = run(hook, TRY_2, store=store)
    assert_once_except(emulator, refused)
    groups = list(dict.fromkeys(m["group_id"] for m in emulator.messages()))
    assert summary["group_ids"] == groups
    assert summary["not_sent"] == 1
    assert summary["accepted"] == ROWS - 1
    assert posts_before_death
    assert count(emulator, "POST sms/send/json") > posts_before_death


def test_a_chunk_of_one_refused_row_leaves_no_trace_and_the_retry_still_finds_what_followed(
    hook: QikberryHook, emulator: Any, sleeps: Sleeps
) -> None:
    """chunk_size=1: a refused row is a chunk of which the API took nothing. Try 1 goes on past it and dies
    later; a retry without task state cannot see past such a chunk by searching, so it looks up the chunk
    after one that comes out empty again before posting it."""
    rows = numbers(12)
    emulator.configure(refused_numbers=[rows[3], rows[4]])  # two in a row
    emulator.set_faults(
        [
            {
                "endpoint": "sms/send/json",
                "method": "POST",
                "kind": "error",
                "status": 501,
                "after": 9,
                "times": 1,
            }
        ]
    )
    with pytest.raises(QikberryError):
        run(hook, TRY_1, rows=rows, chunk_size=1, max_invalid_ratio=0.2)
    emulator.clear_faults()
    summary = run(hook, TRY_2, rows=rows, chunk_size=1, max_invalid_ratio=0.2)
    assert_once_except(emulator, rows[3:5], rows)
    assert (summary["accepted"], summary["not_sent"]) == (10, 2)


def test_a_refusal_of_the_whole_request_stops_the_campaign(
    hook: QikberryHook, emulator: Any, sleeps: Sleeps
) -> None:
    # A webhook id of the right form that the account does not have: a 422 on root.webhook_id.
    with pytest.raises(QikberryValidationError, match="refused the request as a whole") as err:
        run(hook, TRY_1, webhook_id="0b0e8a51-6b3d-4a4e-9c1e-1f2d3c4b5a69")
    assert err.value.field == "root.webhook_id"
    assert count(emulator, "POST sms/send/json") == 1
    assert emulator.messages() == []


def test_rows_not_sent_beyond_max_invalid_ratio_fail_the_task_after_everything_else_is_sent(
    hook: QikberryHook, emulator: Any, sleeps: Sleeps
) -> None:
    refused = numbers()[100:115]  # 15 of 250 rows: 6%, over the default 5%
    emulator.configure(refused_numbers=refused)
    with pytest.raises(QikberryRowsNotSentError, match="15 refused or left out by the API") as err:
        run(hook, TRY_1)
    assert_once_except(emulator, refused)
    summary = err.value.summary
    assert (summary["accepted"], summary["not_sent"]) == (ROWS - 15, 15)
    assert all("9198767" not in str(r["mobile"]) for r in summary["not_sent_rows"])  # masked
    assert run(hook, TRY_1, max_invalid_ratio=0.1)["not_sent"] == 15  # within a higher tolerance


# --- the source in another order on a retry (item 3, the campaign half)


@pytest.mark.parametrize("with_store", [True, False], ids=["task-state", "no-task-state"])
def test_rows_in_another_order_on_a_retry_are_refused_without_sending(
    hook: QikberryHook, emulator: Any, with_store: bool
) -> None:
    store = DictStore() if with_store else None
    emulator.set_faults(
        [
            {
                "endpoint": "sms/send/json",
                "method": "POST",
                "kind": "error",
                "status": 501,
                "after": 1,
                "times": 1,
            }
        ]
    )
    with pytest.raises(QikberryError):
        run(hook, TRY_1, store=store)
    emulator.clear_faults()
    posts = count(emulator, "POST sms/send/json")
    with pytest.raises(QikberryValidationError, match="another order") as err:
        run(hook, TRY_2, store=store, order=lambda rows: rows[::-1])  # the same rows, the other way round
    assert err.value.field == "recipients"
    assert count(emulator, "POST sms/send/json") == posts
    assert "9198767" not in err.value.message.replace("9198XXXXX", "")
