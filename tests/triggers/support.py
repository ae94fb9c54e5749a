"""Helpers of the delivery sensor and trigger tests: send straight to the emulator, run a trigger, read logs.

Messages are sent with plain HTTP (not through the hook) so these tests depend only on the emulator and on
the code under test.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import urllib.request
from typing import Any

from airflow_qikberry import _ratelimit
from tests.helpers import TEST_TOKEN

_numbers = itertools.count(1)


def send_group(
    emulator: Any, count: int, *, fail: bool = False, name: str = "delivery-test"
) -> tuple[str, list[str]]:
    """Send ``count`` messages in one ``sms/send/json`` request; returns ``(group_id, message_ids)``.

    ``fail`` uses numbers ending in 999, which the emulator's default outcome rules finalise as UNDELIV.
    Numbers and texts are unique per call, so nothing becomes DUPLICATE.
    """
    batch = next(_numbers)
    nodes = []
    for i in range(count):
        tail = "999" if fail else f"{i % 800 + 100:03d}"  # never 997-999: the failing outcome rules
        nodes.append({"to": f"91{batch % 90 + 10:02d}{i:05d}{tail}"})
    body = {
        "root": {"sender": "QIKBRY", "service": "T", "message": f"delivery test {batch}", "name": name},
        "nodes": nodes,
    }
    request = urllib.request.Request(
        emulator.base_url + "sms/send/json",
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {TEST_TOKEN}",
            "Accept": "application/json",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    ids = [str(row["id"]) for row in answer["data"]]
    assert len(ids) == count, answer
    return str(answer["group_id"]), ids


def status_requests(emulator: Any) -> list[dict[str, Any]]:
    """The emulator's log of ``GET sms/status`` requests (status, timestamp, fault), oldest first."""
    return [
        r for r in emulator.request_log()["requests"] if r["method"] == "GET" and r["path"] == "sms/status"
    ]


def status_calls(emulator: Any) -> int:
    return int(emulator.request_log()["counts"].get("GET sms/status", 0))


async def first_event(trigger: Any) -> dict[str, Any]:
    """Run a trigger until its first event, then close it as the triggerer does; returns the payload."""
    gen = trigger.run()
    try:
        event = await gen.__anext__()
    finally:
        await gen.aclose()
    return dict(event.payload)


def run_trigger(trigger: Any) -> dict[str, Any]:
    return asyncio.run(first_event(trigger))


def fresh_poll_budgets() -> None:
    """Forget the process-wide poll budgets: a test that holds or drains one must not slow the next."""
    with _ratelimit._buckets_lock:
        _ratelimit._poll_buckets.clear()
