"""``QikberryHook.send_batch(check_first=...)``: whether a batch is looked up before it is posted.

Outside a task (these tests) the default looks nothing up; the campaign engine passes ``False`` on a retry
after establishing that a chunk was not sent, so the default's lookup-on-retry is covered by the campaign's
DAG-level retry tests (their status-GET counts would grow by one per chunk without it).
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_qikberry.hooks.qikberry import QikberryHook
from tests.helpers import count

NODES = [
    {"to": "919876543210", "message": "Hi A", "custom_id": "qc-test-0-0"},
    {"to": "919876543211", "message": "Hi B", "custom_id": "qc-test-0-1"},
]


# An unsent batch is looked up by its first, last and middle node (a node the API refused or left out is
# absent while the rest of its batch is there): here 2 nodes, 2 lookups.
@pytest.mark.parametrize(("check_first", "gets"), [(None, 0), (False, 0), (True, 2)])
def test_check_first_decides_the_lookup(
    qikberry_conn: str, emulator: Any, check_first: bool | None, gets: int
) -> None:
    result = QikberryHook().send_batch(NODES, name="camp", check_first=check_first)
    assert result.accepted == 2
    assert count(emulator, "GET sms/status") == gets
    assert count(emulator, "POST sms/send/json") == 1


def test_check_first_returns_what_was_sent_instead_of_posting_again(
    qikberry_conn: str, emulator: Any
) -> None:
    first = QikberryHook().send_batch(NODES, name="camp")
    again = QikberryHook().send_batch(NODES, name="camp", check_first=True)
    assert count(emulator, "POST sms/send/json") == 1
    assert len(emulator.messages()) == 2
    assert again.group_id == first.group_id
    assert [m.message_id for m in again.messages] == [m.message_id for m in first.messages]
