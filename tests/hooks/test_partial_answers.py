"""A send the API accepts only in part is judged by every node, never by the first (issue 16, item 4).

The emulator leaves ``suppressed_numbers`` out of its 200 answers (an opted-out number is not texted, and the
API says so only by its absence). The hook must then look the missing messages up over the reconcile
window and, still absent, report them as not accepted (``QikberryPartialSendError``, with the rows that
were accepted), never resend them and never call the send a success; and a retried task must find a batch
whose first node is missing by its other nodes instead of posting it again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from airflow_qikberry.exceptions import QikberryDeliveryUnknownError, QikberryPartialSendError
from airflow_qikberry.hooks.qikberry import QikberryHook
from tests.helpers import Sleeps, count, fake_task_identity

NUMBERS = [f"9198766{i:05d}" for i in range(250)]  # more than two 100-row status pages
WINDOW_30 = [1.0, 2.0, 4.0, 8.0, 8.0, 7.0]
TRY_1 = ("partial_dag", "send", "manual__2026-12-01", "-1", "1")
TRY_2 = (*TRY_1[:4], "2")


@pytest.fixture
def sleeps(emulator: Any) -> Sleeps:
    return Sleeps(emulator)


@pytest.fixture
def make_hook(qikberry_conn: str, sleeps: Sleeps) -> Callable[..., QikberryHook]:
    def make(**kwargs: Any) -> QikberryHook:
        hook = QikberryHook(qikberry_conn_id=qikberry_conn, clock=sleeps, **kwargs)
        return hook

    return make


def nodes(numbers: list[str]) -> list[dict[str, Any]]:
    return [
        {"to": n, "message": f"Hi customer {i}", "custom_id": f"order-{i}"} for i, n in enumerate(numbers)
    ]


def sent(emulator: Any) -> Counter[str]:
    return Counter(m["mobile"] for m in emulator.messages())


@pytest.mark.parametrize("left_out", [0, 124, 249], ids=["first", "middle", "last"])
def test_a_batch_answer_that_leaves_a_node_out_reports_it_not_accepted(
    make_hook: Callable[..., QikberryHook], emulator: Any, sleeps: Sleeps, left_out: int
) -> None:
    emulator.configure(suppressed_numbers=[NUMBERS[left_out]])
    with pytest.raises(QikberryPartialSendError) as info:
        make_hook().send_batch(nodes(NUMBERS), name="orders")
    error = info.value
    assert isinstance(error, QikberryDeliveryUnknownError)  # what callers caught before still catches it
    assert error.numbers == [NUMBERS[left_out]]
    assert error.missing_custom_ids == [f"order-{left_out}"]
    assert len(error.accepted) == 249
    assert NUMBERS[left_out] not in {m.mobile for m in error.accepted}
    assert error.group_id == emulator.messages()[0]["group_id"]
    assert "not accepted" in error.message
    assert "opted out" in error.message
    # The missing node was looked for over the whole window, by its custom id alone (one lookup per step;
    # the answer's own rows prove the others), and was never posted again.
    assert sleeps == WINDOW_30
    assert count(emulator, "GET sms/status") == len(WINDOW_30)
    assert count(emulator, "POST sms/send/json") == 1
    assert len(emulator.messages()) == 249


def test_a_batch_answer_missing_many_nodes_is_checked_by_its_group_pages(
    make_hook: Callable[..., QikberryHook], emulator: Any, sleeps: Sleeps
) -> None:
    emulator.configure(suppressed_numbers=NUMBERS[:10])
    with pytest.raises(QikberryPartialSendError) as info:
        make_hook().send_batch(nodes(NUMBERS), name="orders")
    assert sorted(info.value.numbers) == NUMBERS[:10]
    assert len(info.value.accepted) == 240
    # 10 missing of 250: the group's 3 pages per step cost less than 10 custom-id lookups.
    assert count(emulator, "GET sms/status") == 3 * len(WINDOW_30)


def test_a_send_answer_that_leaves_a_number_out(
    make_hook: Callable[..., QikberryHook], emulator: Any, sleeps: Sleeps
) -> None:
    emulator.configure(suppressed_numbers=[NUMBERS[1]])
    with pytest.raises(QikberryPartialSendError) as info:
        make_hook().send_sms(NUMBERS[:3], "Your order has shipped")
    assert info.value.numbers == [NUMBERS[1]]
    assert [m.mobile for m in info.value.accepted] == [NUMBERS[0], NUMBERS[2]]
    assert count(emulator, "POST sms/send") == 1
    assert sent(emulator) == {NUMBERS[0]: 1, NUMBERS[2]: 1}


def test_a_late_node_that_shows_up_in_the_window_is_accepted(
    make_hook: Callable[..., QikberryHook], emulator: Any, sleeps: Sleeps
) -> None:
    """The answer leaves a node out but the API did accept it (it shows in sms/status 5 s later): the
    lookups find it and the send is a success, without a second POST."""
    hook = make_hook()
    # The emulator answers every node it accepts; a real answer missing a row it did accept can only be
    # produced by changing the body (a requests response hook on the real HTTP answer).
    from tests.hooks.test_exactly_once import rewrite_answers

    rewrite_answers(hook, "sms/send/json", lambda body: {**body, "data": body["data"][1:]})
    emulator.configure(visibility_delay_seconds=5)
    result = hook.send_batch(nodes(NUMBERS[:5]), name="late")
    assert [m.mobile for m in result.messages] == NUMBERS[:5]
    assert sleeps == [1.0, 2.0, 4.0]
    assert count(emulator, "POST sms/send/json") == 1


@pytest.fixture
def as_task(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    identity = [TRY_1]
    fake_task_identity(monkeypatch, lambda: identity[0])
    return identity


@pytest.mark.parametrize("left_out", [0, 249], ids=["first-node", "last-node"])
def test_a_retried_task_judges_the_earlier_batch_by_every_node(
    make_hook: Callable[..., QikberryHook],
    emulator: Any,
    sleeps: Sleeps,
    as_task: list[tuple[str, ...]],
    left_out: int,
) -> None:
    """Try 1's batch was accepted without one node, its answer lost and every lookup failing: try 1 ends
    with an unknown outcome. Try 2 must find the batch by a node that is there (the first may be the one
    left out), post nothing, and report the missing node as not accepted."""
    emulator.configure(suppressed_numbers=[NUMBERS[left_out]])
    emulator.set_faults(
        [
            {"endpoint": "sms/send/json", "method": "POST", "kind": "drop_after_accept", "times": 1},
            {"endpoint": "sms/status", "method": "GET", "kind": "error", "status": 501},
        ]
    )
    with pytest.raises(QikberryDeliveryUnknownError) as first:
        make_hook().send_batch(nodes(NUMBERS), name="orders")
    assert not isinstance(first.value, QikberryPartialSendError)
    emulator.clear_faults()
    as_task[0] = TRY_2
    with pytest.raises(QikberryPartialSendError) as info:
        make_hook().send_batch(nodes(NUMBERS), name="orders")
    assert info.value.missing_custom_ids == [f"order-{left_out}"]
    assert len(info.value.accepted) == 249
    assert count(emulator, "POST sms/send/json") == 1
    assert set(sent(emulator).values()) == {1}
    assert len(emulator.messages()) == 249
