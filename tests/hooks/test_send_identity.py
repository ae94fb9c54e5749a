"""The identity of a send does not depend on the order of its recipients (issue 16, item 3).

A retried task finds what an earlier try sent by the custom id it derives again. That id must not depend
on the order in which the recipients arrive: a Python ``set`` iterates in another order in every process
(``PYTHONHASHSEED`` differs per process, and every Airflow try is a new process), and a query without
``ORDER BY`` returns the same rows in any order. Each try here is a real process (or, for a list given in
another order, a second call with the retry's task identity) sending to the emulator over HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest

from airflow_qikberry import idempotency
from airflow_qikberry.hooks.qikberry import QikberryHook
from tests.helpers import count, fake_task_identity

NUMBERS = [f"9198765{i:05d}" for i in range(12)]
TRY_1 = ("identity_dag", "send", "manual__2026-12-01", "-1", "1")
TRY_2 = (*TRY_1[:4], "2")

# One try of the task, in a process of its own: the recipients are a set, as a DAG author's Python code may
# build them, so they iterate in this process's hash order.
TRY_SCRIPT = """
import json, sys
from airflow_qikberry import idempotency
identity = tuple(json.loads(sys.argv[1]))
idempotency.task_identity = lambda: identity  # what the running Airflow task would give
from airflow_qikberry.hooks.qikberry import QikberryHook
numbers = set(json.loads(sys.argv[2]))
sent = QikberryHook().send_sms(numbers, "Your order has shipped")
print(json.dumps({"order": list(numbers), "custom_ids": sorted({m.custom_id for m in sent})}))
"""


def run_try(identity: tuple[str, ...], hash_seed: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run(
        [sys.executable, "-c", TRY_SCRIPT, json.dumps(identity), json.dumps(NUMBERS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
def test_a_set_of_numbers_retried_in_a_new_process_is_not_sent_again(
    qikberry_conn: str, emulator: Any
) -> None:
    first = run_try(TRY_1, "1")
    second = run_try(TRY_2, "2")
    # The two processes really iterated the set in different orders (else this test would prove nothing).
    assert first["order"] != second["order"]
    assert sorted(first["order"]) == sorted(second["order"])
    assert second["custom_ids"] == first["custom_ids"]  # try 2 derived the id try 1 used, found its rows
    assert count(emulator, "POST sms/send") == 1
    sent = Counter(m["mobile"] for m in emulator.messages())
    assert sorted(sent) == sorted(NUMBERS)
    assert set(sent.values()) == {1}


@pytest.fixture
def as_task(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """Run the hook as the task of ``identity[0]`` (try 1; set it to TRY_2 for the retry)."""
    identity = [TRY_1]
    fake_task_identity(monkeypatch, lambda: identity[0])
    return identity


def test_the_same_numbers_in_another_order_are_the_same_send(
    qikberry_conn: str, emulator: Any, as_task: list[tuple[str, ...]]
) -> None:
    first = QikberryHook().send_sms(NUMBERS, "Your order has shipped")
    as_task[0] = TRY_2
    again = QikberryHook().send_sms(list(reversed(NUMBERS)), "Your order has shipped")
    assert {m.message_id for m in again} == {m.message_id for m in first}
    assert count(emulator, "POST sms/send") == 1
    assert len(emulator.messages()) == len(NUMBERS)


def test_a_batch_in_another_order_is_the_same_batch_and_each_node_keeps_its_id(
    qikberry_conn: str, emulator: Any, as_task: list[tuple[str, ...]]
) -> None:
    nodes = {n: {"to": n, "message": f"Hi customer {i}"} for i, n in enumerate(NUMBERS)}
    first = QikberryHook().send_batch(list(nodes.values()), name="orders")
    as_task[0] = TRY_2
    # The same nodes from a dict built in another order: try 2 finds try 1's batch and posts nothing.
    again = QikberryHook().send_batch([nodes[n] for n in reversed(NUMBERS)], name="orders")
    assert count(emulator, "POST sms/send/json") == 1
    assert len(emulator.messages()) == len(NUMBERS)
    assert again.group_id == first.group_id
    ids = {m.mobile: m.custom_id for m in first.messages}
    assert {m.mobile: m.custom_id for m in again.messages} == ids  # a node's id follows the node
    assert [m.mobile for m in again.messages] == list(reversed(NUMBERS))  # in the order given
    assert {m["custom"]: m["mobile"] for m in emulator.messages()} == {c: n for n, c in ids.items()}


def test_identical_nodes_are_interchangeable(qikberry_conn: str, emulator: Any, as_task: list[Any]) -> None:
    a, b = {"to": NUMBERS[0], "message": "Hi"}, {"to": NUMBERS[1], "message": "Hi"}
    first = QikberryHook().send_batch([a, a, b], name="twice")  # the same number and text twice: two SMS
    as_task[0] = TRY_2
    again = QikberryHook().send_batch([b, a, a], name="twice")
    assert count(emulator, "POST sms/send/json") == 1
    assert len(emulator.messages()) == 3
    assert sorted(m.message_id for m in again.messages) == sorted(m.message_id for m in first.messages)


def test_the_fields_of_a_send_are_one_identity_whatever_their_order() -> None:
    payload = {"message": "Hi", "sender": "QIKBRY", "service": "T", "tags": ["promo", "diwali", "b2c"]}
    shuffled = {"tags": ["b2c", "promo", "diwali"], "service": "T", "sender": "QIKBRY", "message": "Hi"}
    assert idempotency.send_fingerprint(["919876500001", "919876500000"], payload) == (
        idempotency.send_fingerprint(["919876500000", "919876500001"], shuffled)
    )
    assert idempotency.send_fingerprint(["919876500000"], payload) != (
        idempotency.send_fingerprint(["919876500000"], {**payload, "message": "Hi!"})
    )
    nodes = [{"to": "919876500000", "message": "A"}, {"to": "919876500001", "message": "B"}]
    batch, ranks = idempotency.batch_identity(nodes, payload)
    again, reranked = idempotency.batch_identity(nodes[::-1], shuffled)
    assert batch == again
    assert ranks == [0, 1]
    assert reranked == [1, 0]
