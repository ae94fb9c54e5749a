"""The send operator records what it sent for delivery events, in a real DAG run, only when asked to."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from airflow_qikberry.delivery.inbox import SentEntry, parse_sent_key, registry_prefix
from tests.delivery_events.test_feed import VARIABLES, store  # noqa: F401 - the fixture

SEND_DAG = """
import pendulum
from airflow.providers.common.compat.sdk import DAG
from airflow_qikberry.operators.sms import QikberrySendSmsOperator

with DAG("{dag_id}", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    QikberrySendSmsOperator(
        task_id="send", to=["+919876543210", "+919876543211", "+919876543999"], message="Your bill is due"
    )
"""


def _recorded(conn_id: str) -> dict[str, SentEntry]:
    out = {}
    for key in asyncio.run(VARIABLES.keys(registry_prefix(conn_id))):
        parsed = parse_sent_key(conn_id, key)
        assert parsed is not None, key
        out[parsed.group_id] = SentEntry.from_json(asyncio.run(VARIABLES.get(key)))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("on", [True, False], ids=["delivery_events", "off"])
def test_the_send_operator_records_its_group_when_the_connection_asks(
    store: Any,  # noqa: F811
    run_dag: Any,
    make_qikberry_conn: Any,
    emulator: Any,
    on: bool,
) -> None:
    conn_id = make_qikberry_conn(delivery_events=on)
    dag_id = f"record_sends_{on}"
    result = run_dag(SEND_DAG.format(dag_id=dag_id), dag_id)
    assert result == {"send": "success"}
    recorded = _recorded(conn_id)
    if not on:
        assert recorded == {}
        return
    groups = {m["id"].rsplit(":", 1)[0] for m in emulator.messages()}
    assert set(recorded) == groups
    assert len(groups) == 1
    (entry,) = recorded.values()
    assert entry.positions == "1-3"
    assert entry.task == f"{dag_id}.send"
    assert entry.sender == "QIKBRY"
    assert "9876543210" not in json.dumps(entry.__dict__)  # no number in the registry
