"""Exactly-once sends under the API's real behaviour (issue 6), against the emulator over HTTP.

The emulator is made to disagree with a naive client the way the real API may: accepted messages show in
``sms/status`` only seconds later (``visibility_delay_seconds``), lookups by custom id are paged
(``paginate_lookups``, ``status_page_size``), numbers come back as ``+91...`` (``number_format``) and bulk
rows may lose their custom id (``bulk_keeps_custom``). The hook's waits are recorded by
:class:`tests.helpers.Sleeps`, which moves the emulator clock (and the hook's deadline clock) by the same
amount, so a reconcile window of 30 s runs in milliseconds.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from airflow_qikberry.exceptions import (
    QikberryCustomIdReusedError,
    QikberryDeliveryUnknownError,
)
from airflow_qikberry.hooks.qikberry import QikberryHook
from airflow_qikberry.idempotency import ReuseCheck, match_batch_rows, match_send_rows, submitted_before
from airflow_qikberry.models import MessageStatus
from tests.helpers import Sleeps, all_log_text, count, fake_task_identity

A, B, C = "919876543210", "919876543211", "919876543212"
# Lookups of an unknown outcome wait 1, 2, 4, 8, 8 s and then the rest of the 30 s default window.
WINDOW_30 = [1.0, 2.0, 4.0, 8.0, 8.0, 7.0]


@pytest.fixture
def sleeps(emulator: Any) -> Sleeps:
    return Sleeps(emulator)


@pytest.fixture
def make_hook(qikberry_conn: str, sleeps: Sleeps) -> Callable[..., QikberryHook]:
    """A hook whose waits are recorded (moving the emulator clock) and whose deadline runs on them."""

    def make(conn_id: str = qikberry_conn, **kwargs: Any) -> QikberryHook:
        hook = QikberryHook(qikberry_conn_id=conn_id, clock=sleeps, **kwargs)
        return hook

    return make


def ambiguous(endpoint: str, kind: str, **extra: Any) -> list[dict[str, Any]]:
    """One fault on the next POST to ``endpoint`` (``slow_response`` answers after 0.6 s)."""
    rule: dict[str, Any] = {"endpoint": endpoint, "method": "POST", "kind": kind, "times": 1, **extra}
    if kind == "slow_response":
        rule.setdefault("seconds", 0.6)
    return [rule]


def hook_timeout(kind: str) -> float | None:
    """A read timeout shorter than the slow response, so the hook gives up on the answer."""
    return 0.2 if kind == "slow_response" else None


def settled_count(emulator: Any, key: str, expected: int, timeout: float = 5.0) -> int:
    """``count(emulator, key)`` once it reached ``expected`` (a slow response is logged only once its late
    answer is written, after the hook has stopped waiting for it), or after ``timeout``."""
    end = time.monotonic() + timeout
    while count(emulator, key) < expected and time.monotonic() < end:
        time.sleep(0.05)
    return count(emulator, key)


def per_number(emulator: Any) -> Counter[str]:
    return Counter(m["mobile"] for m in emulator.messages())


def numbers_file(tmp_path: Path, n: int, name: str = "numbers.txt") -> tuple[Path, list[str]]:
    numbers = [f"91987654{i:04d}" for i in range(n)]
    path = tmp_path / name
    path.write_text("\n".join(numbers) + "\n")
    return path, numbers


# -- 1. the reconcile window


@pytest.mark.parametrize("kind", ["drop_after_accept", "slow_response"])
def test_ambiguous_send_is_looked_up_until_visible_not_resent(
    make_hook: Callable[..., QikberryHook], emulator: Any, sleeps: Sleeps, kind: str
) -> None:
    emulator.configure(visibility_delay_seconds=6)
    emulator.set_faults(ambiguous("sms/send", kind))
    hook = make_hook(timeout=hook_timeout(kind))
    sent = hook.send_sms([A, B], "exactly once")
    assert [s.mobile for s in sent] == [A, B]
    # Lookups after 1, 3 and 7 s of (simulated) waiting: the rows show from 6 s on, and are returned.
    assert sleeps == [1.0, 2.0, 4.0]
    assert count(emulator, "GET sms/status") == 3
    assert per_number(emulator) == {A: 1, B: 1}
    assert {m["custom"] for m in emulator.messages()} == {sent[0].custom_id}
    assert [s.message_id for s in sent] == [m["id"] for m in emulator.messages()]
    assert settled_count(emulator, "POST sms/send", 1) == 1


@pytest.mark.parametrize("status", [500, 502, 504])
def test_window_closing_with_nothing_found_resends_exactly_once(
    make_hook: Callable[..., QikberryHook],
    emulator: Any,
    sleeps: Sleeps,
    status: int,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # An "error" fault answers before processing: the API never accepted the first POST.
    emulator.configure(visibility_delay_seconds=5)
    emulator.set_faults(ambiguous("sms/send", "error", status=status))
    sent = make_hook().send_sms(A, "resend me")
    assert sleeps[:6] == WINDOW_30  # the whole window was looked at before concluding "not accepted"
    assert count(emulator, "GET sms/status") == 6
    assert count(emulator, "POST sms/send") == 2
    assert [(m["mobile"], m["custom"]) for m in emulator.messages()] == [(A, sent[0].custom_id)]
    assert "No record of the send after the 30 s reconcile window" in all_log_text(caplog, capfd)


@pytest.mark.parametrize(
    ("argument", "extra", "waits"),
    [
        (10.0, None, [1.0, 2.0, 4.0, 3.0]),
        (None, 5, [1.0, 2.0, 2.0]),
        (3.0, 20, [1.0, 2.0]),  # the argument wins over the connection extra
    ],
    ids=["argument", "connection-extra", "argument-over-extra"],
)
def test_reconcile_window_is_configurable(
    make_hook: Callable[..., QikberryHook],
    make_qikberry_conn: Callable[..., str],
    emulator: Any,
    sleeps: Sleeps,
    argument: float | None,
    extra: int | None,
    waits: list[float],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    conn_id = make_qikberry_conn("windowed", **({"reconcile_window": extra} if extra else {}))
    hook = make_hook(conn_id, reconcile_window=argument)
    emulator.set_faults(ambiguous("sms/send", "drop_before"))
    hook.send_sms(A, "windowed")
    assert sleeps[: len(waits)] == waits
    assert count(emulator, "GET sms/status") == len(waits)
    assert count(emulator, "POST sms/send") == 2
    assert per_number(emulator) == {A: 1}
    window = int(argument or extra or 30)
    assert f"No record of the send after the {window} s reconcile window" in all_log_text(caplog, capfd)


def test_scheduled_send_is_reconciled(
    make_hook: Callable[..., QikberryHook], emulator: Any, sleeps: Sleeps
) -> None:
    emulator.configure(visibility_delay_seconds=5)
    emulator.set_faults(ambiguous("sms/send", "drop_after_accept"))
    when = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=1)
    sent = make_hook().send_sms(A, "tomorrow", schedule_at=when)
    assert [s.mobile for s in sent] == [A]
    (stored,) = emulator.messages()
    assert stored["scheduled_at"] is not None
    assert stored["id"] == sent[0].message_id
    assert count(emulator, "POST sms/send") == 1


def test_reconcile_cut_short_by_the_deadline_is_unknown_and_never_resent(
    make_hook: Callable[..., QikberryHook], emulator: Any, sleeps: Sleeps
) -> None:
    # The call may spend 70 s in all (the least a 30 s window and 30 s timeout allow); a 429 first spends
    # 55 of them. The message is then accepted but shows only after 20 s: nothing found within the 15 s
    # left of the 30 s window proves nothing: unknown, not "not sent" (and not a resend).
    emulator.configure(visibility_delay_seconds=20)
    emulator.set_faults(
        [
            {"endpoint": "sms/send", "method": "POST", "kind": "rate_limit", "seconds": 55, "times": 1},
            *ambiguous("sms/send", "drop_after_accept"),
        ]
    )
    with pytest.raises(QikberryDeliveryUnknownError, match="deadline") as info:
        make_hook(retry_deadline=70).send_sms(A, "accepted, but not visible yet")
    assert info.value.numbers == [A]
    assert info.value.custom_id == emulator.messages()[0]["custom"]
    assert sleeps == [55.0, 1.0, 2.0, 4.0, 8.0]  # no wait past the deadline
    assert count(emulator, "GET sms/status") == 4
    assert count(emulator, "POST sms/send") == 2
    assert per_number(emulator) == {A: 1}


# -- 2. paged lookups


@pytest.mark.parametrize(("page_size", "how_many"), [(10, 25), (100, 150)])
def test_reconcile_follows_every_page_of_a_custom_id_lookup(
    make_hook: Callable[..., QikberryHook], emulator: Any, page_size: int, how_many: int
) -> None:
    emulator.configure(paginate_lookups=True, status_page_size=page_size)
    emulator.set_faults(ambiguous("sms/send", "drop_after_accept"))
    numbers = [f"91987650{i:04d}" for i in range(how_many)]
    sent = make_hook().send_sms(numbers, "paged")
    assert [s.mobile for s in sent] == numbers
    assert count(emulator, "GET sms/status") == math.ceil(how_many / page_size)  # one lookup, every page
    assert count(emulator, "POST sms/send") == 1
    assert per_number(emulator) == dict.fromkeys(numbers, 1)


def test_batch_reconcile_follows_every_page(make_hook: Callable[..., QikberryHook], emulator: Any) -> None:
    emulator.configure(paginate_lookups=True, status_page_size=10)
    emulator.set_faults(ambiguous("sms/send/json", "drop_after_accept"))
    nodes = [{"to": f"91987650{i:04d}", "message": f"hello {i}"} for i in range(25)]
    result = make_hook().send_batch(nodes, name="paged-batch")
    assert [m.mobile for m in result.messages] == [n["to"] for n in nodes]
    assert result.group_id == emulator.messages()[0]["group_id"]
    # The first node's custom id (one row, one page), then the batch's group: 3 pages of 10.
    assert count(emulator, "GET sms/status") == 1 + 3
    assert count(emulator, "POST sms/send/json") == 1
    assert len(emulator.messages()) == 25


# -- 3. numbers written as +91...


def test_plus_numbers_are_reconciled_and_returned_canonical(
    make_hook: Callable[..., QikberryHook], emulator: Any, sleeps: Sleeps
) -> None:
    emulator.configure(number_format="plus", visibility_delay_seconds=2)
    emulator.set_faults(ambiguous("sms/send", "drop_after_accept"))
    sent = make_hook().send_sms([A, "+44 7700 900123"], "plus")
    assert [s.mobile for s in sent] == [A, "447700900123"]
    assert count(emulator, "POST sms/send") == 1
    assert per_number(emulator) == {A: 1, "447700900123": 1}


def test_plus_numbers_in_a_send_answer_are_accounted_for(
    make_hook: Callable[..., QikberryHook], emulator: Any
) -> None:
    emulator.configure(number_format="plus")
    sent = make_hook().send_sms([A, B], "plus")
    assert [s.mobile for s in sent] == [A, B]
    # The answer's "+91..." rows matched the numbers sent: no lookup was needed to settle anything.
    assert count(emulator, "GET sms/status") == 0
    assert count(emulator, "POST sms/send") == 1


def test_plus_numbers_batch_reconciled(make_hook: Callable[..., QikberryHook], emulator: Any) -> None:
    emulator.configure(number_format="plus")
    emulator.set_faults(ambiguous("sms/send/json", "drop_after_accept"))
    result = make_hook().send_batch([{"to": A, "message": "one"}, {"to": B, "message": "two"}])
    assert [m.mobile for m in result.messages] == [A, B]
    assert count(emulator, "POST sms/send/json") == 1
    assert per_number(emulator) == {A: 1, B: 1}


# -- 4. rows in another shape: unknown, never resent


def test_custom_id_naming_other_numbers_is_unknown_and_not_resent(
    make_hook: Callable[..., QikberryHook], emulator: Any
) -> None:
    hook = make_hook()
    hook.send_sms(A, "first", custom_id="shared-1")
    emulator.set_faults(ambiguous("sms/send", "drop_before"))
    # Submitted within clock_skew of the first send, so the lookup cannot call the id "reused": it finds
    # the id on a number this send did not include.
    with pytest.raises(QikberryDeliveryUnknownError) as info:
        hook.send_sms(B, "second", custom_id="shared-1")
    assert type(info.value) is QikberryDeliveryUnknownError
    assert "did not include" in info.value.message
    assert info.value.custom_id == "shared-1"
    assert info.value.numbers == [B]
    assert count(emulator, "GET sms/status") == 1  # settled by the first lookup: nothing to wait for
    assert count(emulator, "POST sms/send") == 2
    assert per_number(emulator) == {A: 1}


def test_batch_rows_without_a_group_id_are_unknown_and_not_resent(
    make_hook: Callable[..., QikberryHook], emulator: Any
) -> None:
    hook = make_hook()

    # The emulator always writes ids as "<uuid>:<n>". The unified endpoint's bare-uuid ids (reference 3.5)
    # carry no group; to see the hook meet such rows, the real sms/status answers are rewritten on their
    # way into the hook (a requests response hook), everything else runs for real.
    def bare_ids(response: Any, *args: Any, **kwargs: Any) -> None:
        if urlsplit(response.url).path.endswith("/sms/status"):
            body = response.json()
            for row in body["data"]:
                row["id"] = row["id"].rpartition(":")[0]
            response._content = json.dumps(body).encode()

    hook.session.hooks["response"].append(bare_ids)
    emulator.set_faults(ambiguous("sms/send/json", "drop_after_accept"))
    nodes = [{"to": A, "message": "one"}, {"to": B, "message": "two"}]
    with pytest.raises(QikberryDeliveryUnknownError, match="carry no group id") as info:
        hook.send_batch(nodes)
    assert info.value.custom_id == emulator.messages()[0]["custom"]
    assert count(emulator, "GET sms/status") == 1
    assert count(emulator, "POST sms/send/json") == 1
    assert per_number(emulator) == {A: 1, B: 1}


def row(
    mobile: str = A,
    custom_id: str | None = "cid-1",
    submitted_at: str | None = "2026-01-01 10:00:00",
    message_id: str = "g-1:1",
) -> MessageStatus:
    """A status row as the hook reads it from an ``sms/status`` answer."""
    return MessageStatus.from_api(
        {
            "id": message_id,
            "mobile": mobile,
            "status": "AWAITING-DLR",
            "units": 1,
            "length": 2,
            "charges": 1,
            "custom": custom_id,
            "service": "T",
            "sender": "QIKBRY",
            "submitted_at": submitted_at,
            "delivered_at": "",
        }
    )


def test_match_send_rows() -> None:
    assert match_send_rows([], "cid-1", [A], None).kind == "absent"
    # Rows of another custom id (an API that ignored the filter) do not count.
    assert match_send_rows([row(custom_id="other")], "cid-1", [A], None).kind == "absent"
    found = match_send_rows([row(B, message_id="g:2"), row("+" + A, message_id="g:1")], "cid-1", [A, B], None)
    assert found.kind == "found"
    assert found.result is not None
    assert [(m.mobile, m.message_id) for m in found.result] == [(A, "g:1"), (B, "g:2")]  # in send order
    other = match_send_rows([row(C)], "cid-1", [A], None)
    assert other.kind == "unknown"
    assert other.settled
    assert "did not include" in other.reason
    twice = match_send_rows([row(A), row(A, message_id="g:2")], "cid-1", [A], None)
    assert twice.kind == "unknown"  # two messages for one number sent once: not this send's shape
    partial = match_send_rows([row(A)], "cid-1", [A, B, C], None)
    assert partial.kind == "partial"
    assert not partial.settled
    assert partial.numbers == (B, C)


def test_match_batch_rows() -> None:
    cids, numbers = ["b-1", "b-2"], [A, B]
    rows = [row(B, "b-2", message_id="g:2"), row(A, "b-1", message_id="g:1"), row(C, "unrelated")]
    found = match_batch_rows(rows, cids, numbers)
    assert found.kind == "found"
    assert found.result is not None
    assert [(m.custom_id, m.mobile) for m in found.result] == [("b-1", A), ("b-2", B)]  # in node order
    assert match_batch_rows([], cids, numbers).kind == "absent"
    partial = match_batch_rows([row(A, "b-1")], cids, numbers)
    assert partial.kind == "partial"
    assert partial.numbers == (B,)
    assert match_batch_rows([row(C, "b-1"), row(B, "b-2")], cids, numbers).kind == "unknown"  # wrong number
    assert match_batch_rows([row(A, "b-1"), row(A, "b-1"), row(B, "b-2")], cids, numbers).kind == "unknown"


# -- 5. bulk uploads are never repeated after an ambiguous outcome


@pytest.mark.parametrize("kind", ["drop_after_accept", "slow_response"])
def test_ambiguous_bulk_upload_found_by_its_custom_id(
    make_hook: Callable[..., QikberryHook], emulator: Any, sleeps: Sleeps, tmp_path: Path, kind: str
) -> None:
    emulator.configure(visibility_delay_seconds=6)  # bulk_keeps_custom is True by default
    emulator.set_faults(ambiguous("sms/bulk", kind))
    path, numbers = numbers_file(tmp_path, 30)
    assert make_hook(timeout=hook_timeout(kind)).upload_bulk(path, "bulk once") == 30
    assert sleeps == [1.0, 2.0, 4.0]
    assert per_number(emulator) == dict.fromkeys(numbers, 1)
    assert settled_count(emulator, "POST sms/bulk", 1) == 1


@pytest.mark.parametrize(
    ("kind", "keeps_custom", "accepted"),
    [("drop_after_accept", False, 30), ("slow_response", False, 30), ("drop_before", True, 0)],
)
def test_ambiguous_bulk_upload_without_proof_is_reported_not_repeated(
    make_hook: Callable[..., QikberryHook],
    emulator: Any,
    sleeps: Sleeps,
    tmp_path: Path,
    kind: str,
    keeps_custom: bool,
    accepted: int,
) -> None:
    emulator.configure(bulk_keeps_custom=keeps_custom)
    emulator.set_faults(ambiguous("sms/bulk", kind))
    path, _ = numbers_file(tmp_path, 30, "customers.txt")
    with pytest.raises(QikberryDeliveryUnknownError) as info:
        make_hook(timeout=hook_timeout(kind)).upload_bulk(path, "bulk maybe")
    cid = info.value.custom_id
    assert cid
    assert cid.startswith("af-")
    text = info.value.message
    assert "'customers.txt'" in text
    assert cid in text
    assert f"hook.get_status(custom_id={cid!r})" in text
    assert "panel" in text
    assert sleeps == WINDOW_30  # looked for the whole window, then gave up rather than upload again
    assert len(emulator.messages()) == accepted
    assert settled_count(emulator, "POST sms/bulk", 1) == 1


@pytest.mark.parametrize("source", ["path", "file object"])
def test_bulk_503_is_retried_and_the_whole_file_resent(
    make_hook: Callable[..., QikberryHook], emulator: Any, tmp_path: Path, source: str
) -> None:
    emulator.set_faults([{"endpoint": "sms/bulk", "kind": "error", "status": 503, "times": 1}])
    path, numbers = numbers_file(tmp_path, 40)
    hook = make_hook()
    if source == "path":
        assert hook.upload_bulk(path, "bulk retried") == 40
    else:
        # A real file: the multipart encoder sends a BytesIO whole (getvalue()), wherever it stands.
        with path.open("rb") as handle:
            assert hook.upload_bulk(handle, "bulk retried") == 40
            assert not handle.closed  # the caller's object: rewound for the resend, never closed
    assert count(emulator, "POST sms/bulk") == 2
    assert per_number(emulator) == dict.fromkeys(numbers, 1)
    assert count(emulator, "GET sms/status") == 0  # a 503 is refused before processing: nothing to look up


# -- 7. a custom id is an idempotency key


def wait_past_next_second() -> None:
    """Real time (not the hook's) until the wall clock is past the next whole second plus one: rows
    submitted before this call then read as more than one second older than a call started after it
    (``submitted_at`` has whole seconds)."""
    target = math.floor(time.time()) + 1.05
    time.sleep(max(0.0, target - time.time()))


def test_reused_custom_id_is_reported_not_returned(
    make_hook: Callable[..., QikberryHook], emulator: Any
) -> None:
    # The emulator runs in this process on the same wall clock as the hook, so the only clock difference
    # is the whole-second resolution of submitted_at: clock_skew=1 is the honest allowance here.
    hook = make_hook(clock_skew=1.0)
    first = hook.send_sms(A, "order confirmed", custom_id="order-1")
    wait_past_next_second()
    emulator.set_faults(ambiguous("sms/send", "drop_after_accept"))
    with pytest.raises(QikberryCustomIdReusedError) as info:
        hook.send_sms(A, "order confirmed", custom_id="order-1")
    assert isinstance(info.value, QikberryDeliveryUnknownError)
    assert info.value.custom_id == "order-1"
    assert "'order-1'" in info.value.message
    assert "idempotency key" in info.value.message
    assert f"first at {first[0].submitted_at}" in info.value.message  # names the earlier send it found
    assert count(emulator, "GET sms/status") == 1
    assert count(emulator, "POST sms/send") == 2  # no further POST after the failure
    assert [m["custom"] for m in emulator.messages()] == ["order-1", "order-1"]


def test_task_retry_returns_an_earlier_try_older_than_clock_skew(
    qikberry_conn: str, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a retried task the rows of try 1 are older than this call by nature: that is not reuse.
    identity = ["dag", "task", "run-1", "-1", "1"]
    fake_task_identity(monkeypatch, lambda: tuple(identity))
    first = QikberryHook(qikberry_conn_id=qikberry_conn, clock_skew=1.0).send_sms(A, "once per run")
    wait_past_next_second()
    identity[4] = "2"
    second = QikberryHook(qikberry_conn_id=qikberry_conn, clock_skew=1.0).send_sms(A, "once per run")
    assert [s.message_id for s in second] == [s.message_id for s in first]
    assert count(emulator, "POST sms/send") == 1
    assert count(emulator, "GET sms/status") == 1


def test_submitted_before_reads_the_api_local_time() -> None:
    ten_in_kolkata = datetime(2026, 1, 1, 4, 30, tzinfo=timezone.utc)  # 10:00 in Asia/Kolkata (UTC+5:30)
    assert submitted_before(row(submitted_at="2026-01-01 09:59:59"), ten_in_kolkata, "Asia/Kolkata")
    assert not submitted_before(row(submitted_at="2026-01-01 10:00:00"), ten_in_kolkata, "Asia/Kolkata")
    assert not submitted_before(row(submitted_at="2026-01-01 10:00:01"), ten_in_kolkata, "Asia/Kolkata")
    # The same wall time read in another zone is another instant.
    assert not submitted_before(row(submitted_at="2026-01-01 09:59:59"), ten_in_kolkata, "UTC")
    assert submitted_before(row(submitted_at="2026-01-01 04:29:59"), ten_in_kolkata, "UTC")
    # A timestamp with its own offset needs no zone.
    assert submitted_before(row(submitted_at="2026-01-01T04:29:59Z"), ten_in_kolkata, "Asia/Kolkata")
    assert not submitted_before(row(submitted_at="2026-01-01T04:30:00Z"), ten_in_kolkata, "Asia/Kolkata")
    # Unreadable or missing times never make a row "old".
    for unreadable in (None, "", "yesterday"):
        assert not submitted_before(row(submitted_at=unreadable), ten_in_kolkata, "Asia/Kolkata")


def test_reuse_check_allows_the_clock_skew() -> None:
    check = ReuseCheck.starting_now(120, "Asia/Kolkata")
    expected = datetime.now(timezone.utc) - timedelta(seconds=120)
    assert abs((check.not_before - expected).total_seconds()) < 5

    def kolkata(seconds_ago: float) -> str:
        from zoneinfo import ZoneInfo

        when = datetime.now(ZoneInfo("Asia/Kolkata")) - timedelta(seconds=seconds_ago)
        return when.strftime("%Y-%m-%d %H:%M:%S")

    old, recent = row(submitted_at=kolkata(600)), row(submitted_at=kolkata(60))
    assert check.older([old, recent]) == [old]
    verdict = match_send_rows([old], "cid-1", [A], check)
    assert verdict.kind == "reused"
    assert "'cid-1'" in verdict.reason
    assert match_send_rows([recent], "cid-1", [A], check).kind == "found"
    assert match_send_rows([old], "cid-1", [A], None).kind == "found"  # no check on a task retry


# -- a 2xx that does not account for every number sent is an unknown outcome, never a quiet success


def rewrite_answers(hook: QikberryHook, path: str, change: Callable[[dict[str, Any]], Any]) -> None:
    """Rewrite the API's real answers to ``path`` on their way into the hook.

    The emulator always answers a send with one row per number; a real API's odd answers (rows missing,
    a garbled ``data``, a bulk answer without a count) can only be produced by changing its body.
    """

    def rewrite(response: Any, *args: Any, **kwargs: Any) -> None:
        if urlsplit(response.url).path.endswith("/" + path) and response.request.method == "POST":
            body = response.json()
            response._content = json.dumps(change(body)).encode()

    hook.session.hooks["response"].append(rewrite)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda body: {**body, "data": body["data"][:1]}, id="a-row-missing"),
        pytest.param(lambda body: {**body, "data": []}, id="no-rows"),
        pytest.param(lambda body: {**body, "data": body["data"] + body["data"][:1]}, id="a-row-twice"),
        pytest.param(lambda body: {**body, "data": "accepted"}, id="garbled-data"),
    ],
)
def test_a_send_answer_missing_numbers_is_looked_up_not_trusted(
    make_hook: Callable[..., QikberryHook], emulator: Any, change: Callable[[dict[str, Any]], Any]
) -> None:
    hook = make_hook()
    rewrite_answers(hook, "sms/send", change)
    sent = hook.send_sms([A, B], "two numbers, one answer")
    # Both messages were accepted: the lookup proves it, and nothing is sent again.
    assert sorted(s.mobile for s in sent) == [A, B]
    assert count(emulator, "POST sms/send") == 1
    assert count(emulator, "GET sms/status") >= 1
    assert per_number(emulator) == {A: 1, B: 1}


def test_a_send_answer_missing_numbers_is_never_resent(
    make_hook: Callable[..., QikberryHook], emulator: Any
) -> None:
    hook = make_hook()
    rewrite_answers(hook, "sms/send", lambda body: {**body, "data": []})
    emulator.configure(visibility_delay_seconds=3600)  # the lookups never see the accepted messages
    with pytest.raises(QikberryDeliveryUnknownError, match="not sent again automatically") as info:
        hook.send_sms([A, B], "answered without rows")
    assert sorted(info.value.numbers) == [A, B]
    assert count(emulator, "POST sms/send") == 1


def test_a_batch_answer_missing_nodes_is_looked_up(
    make_hook: Callable[..., QikberryHook], emulator: Any
) -> None:
    hook = make_hook()
    rewrite_answers(hook, "sms/send/json", lambda body: {**body, "data": body["data"][1:]})
    result = hook.send_batch([{"to": A, "message": "one"}, {"to": B, "message": "two"}], name="odd")
    assert sorted(m.mobile for m in result.messages) == [A, B]
    assert count(emulator, "POST sms/send/json") == 1


def test_a_bulk_answer_without_a_count_is_looked_up(
    make_hook: Callable[..., QikberryHook], emulator: Any, tmp_path: Path
) -> None:
    hook = make_hook()
    rewrite_answers(hook, "sms/bulk", lambda body: {**body, "message": "Accepted."})
    numbers = tmp_path / "numbers.txt"
    numbers.write_text(f"{A}\n{B}\n{C}\n")
    assert hook.upload_bulk(numbers, "count me") == 3
    assert count(emulator, "POST sms/bulk") == 1
