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

from airflow_qikberry import ratelimit
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
    ratelimit.POLL_BUDGETS = ratelimit.BudgetRegistry()


def assert_within_budget(stamps: list[float], per_minute: float, *, latency: float = 0.25) -> None:
    """The calls stamped ``stamps`` (the emulator's answer times, oldest first) fit a token bucket of
    ``per_minute`` with the provider's burst (a tenth of it): in any stretch from call ``i`` to call ``j``
    at most ``burst + rate * (t_j - t_i + latency)`` calls. ``latency`` allows for a call answered a little
    after the bucket let it go."""
    burst, per_second = max(1.0, per_minute / 10), per_minute / 60
    for i in range(len(stamps)):
        for j in range(i, len(stamps)):
            assert j - i + 1 <= burst + per_second * (stamps[j] - stamps[i] + latency), (
                f"calls {i}..{j}: {j - i + 1} in {stamps[j] - stamps[i]:.3f} s, over a budget of "
                f"{per_minute:g}/min (burst {burst:g})"
            )


def emulator_time_follows_trigger_waits(monkeypatch: Any, emulator: Any) -> None:
    """
    Emulator time stands still (manual clock) but for the trigger's waits between checks, which move it.

    Each ``asyncio.sleep`` of ``triggers.delivery`` advances the emulator clock by its seconds and returns at
    once: the delays a test sets (visibility, DLR) pass in the trigger's checks, not in the machine's real
    seconds, so a check that must come before a delay ends always does, however loaded the machine.
    """
    from airflow_qikberry.triggers import delivery as trigger_module

    class _Waits:
        def __getattr__(self, name: str) -> Any:
            return getattr(asyncio, name)

        @staticmethod
        async def sleep(seconds: float, result: Any = None) -> Any:
            emulator.advance_clock(max(seconds, 0.0))
            await asyncio.sleep(0)
            return result

    emulator.configure(manual_clock=True)
    monkeypatch.setattr(trigger_module, "asyncio", _Waits())
