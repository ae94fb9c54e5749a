"""Request bodies built from SendOptions (pure: no connection read, no request). Moved from test_protocol.py
with the builders; what each option does on the wire is tests/hooks/test_hook_send_options.py's."""

from __future__ import annotations

import pytest

from airflow_qikberry.connection import ConnectionSettings
from airflow_qikberry.exceptions import QikberryValidationError
from airflow_qikberry.payloads import build_batch_nodes, root_payload
from airflow_qikberry.send_options import SendOptions

SETTINGS = ConnectionSettings("http://x/", "t", sender="QIKBRY", service="T", default_region="IN")


def test_batch_node_carries_its_own_encoding() -> None:
    defaults = SETTINGS
    root, _ = root_payload(SendOptions(), defaults, "Hello", require_message=False)
    nodes = build_batch_nodes(
        [
            {"to": "9876543210"},
            {"to": "9876543211", "message": "नमस्ते"},
            {"to": "9876543212", "encoding": "ucs2"},
        ],
        root,
        defaults,
        encoding="auto",
        max_units=None,
    )
    assert root["type"] == "N"
    assert "type" not in nodes[0].payload  # inherits the root's N for the root's text
    assert nodes[1].payload["type"] == "U"
    assert nodes[2].payload["type"] == "U"


@pytest.mark.parametrize("key", ["service", "webhook_id", "schedule_at", "time"])
def test_batch_node_cannot_override_batch_wide_parameters(key: str) -> None:
    defaults = SETTINGS
    root, _ = root_payload(SendOptions(), defaults, "Hello", require_message=False)
    with pytest.raises(QikberryValidationError) as info:
        build_batch_nodes([{"to": "9876543210", key: "x"}], root, defaults, encoding="auto", max_units=None)
    assert info.value.field == f"nodes[0].{key}"
