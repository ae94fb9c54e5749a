"""Load: 200 concurrent clients (100 threads with the sync hook, 100 asyncio tasks with the async hook)
against one emulator. The process-wide limiter must hold the configured GET rate - measured from the
emulator's own request log, not from the client - nothing may crash, and every send must arrive once."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import pytest

from airflow_qikberry.hooks.qikberry import QikberryHook
from airflow_qikberry.hooks.qikberry_async import QikberryAsyncHook

pytestmark = pytest.mark.slow

THREADS = 100
TASKS = 100
SYNC_GETS = 2  # per thread: its message's status, the balance
ASYNC_GETS = 1  # per task: a status lookup
# 20 GET/s (the bucket holds a tenth of a minute's, 120, as burst): well below what this machine does
# unthrottled, so a limiter that let requests through early would show in the server's log.
RATE_PER_MINUTE = 1200
JITTER = 0.5


def peak(timestamps: list[float], window: float) -> int:
    """The most requests the server saw in any ``window`` seconds."""
    stamps = sorted(timestamps)
    best, start = 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] > window:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_200_concurrent_clients_hold_the_rate_and_lose_nothing(
    emulator: Any, make_qikberry_conn: Any, figure: Any
) -> None:
    # The server must not throttle here: what is measured is the client's own limiter.
    emulator.configure(rate_limit_per_minute=10**9, request_log_limit=100_000)
    conn_id = make_qikberry_conn("load", rate_limit_per_minute=RATE_PER_MINUTE)
    errors: list[BaseException] = []
    sent_ids: dict[str, str] = {}
    lock = threading.Lock()

    def sync_client(i: int) -> None:
        try:
            hook = QikberryHook(qikberry_conn_id=conn_id)
            number = f"9198765{i:05d}"
            [message] = hook.send_sms(number, f"load test {i}", sender="QIKBRY")
            with lock:
                sent_ids[number] = message.message_id
            hook.get_status(message_id=message.message_id)
            hook.get_balance()
        except BaseException as exc:  # anything at all is a failure of this test
            errors.append(exc)

    async def async_client(hook: QikberryAsyncHook, i: int) -> None:
        try:
            await hook.get_status(custom_id=f"nobody-{i}")
        except BaseException as exc:
            errors.append(exc)

    async def async_clients() -> None:
        hooks = [QikberryAsyncHook(qikberry_conn_id=conn_id) for _ in range(TASKS)]
        try:
            await asyncio.gather(*(async_client(h, i) for i, h in enumerate(hooks)))
        finally:
            for hook in hooks:
                await hook.close()

    threads = [threading.Thread(target=sync_client, args=(i,)) for i in range(THREADS)]
    loop_thread = threading.Thread(target=lambda: asyncio.run(async_clients()))
    for thread in [*threads, loop_thread]:
        thread.start()
    for thread in [*threads, loop_thread]:
        thread.join(timeout=240)

    assert not errors, errors[:3]
    assert not any(t.is_alive() for t in [*threads, loop_thread])

    log = emulator.request_log()
    gets = [r["timestamp"] for r in log["requests"] if r["method"] == "GET"]
    expected_gets = THREADS * SYNC_GETS + TASKS * ASYNC_GETS
    assert len(gets) == expected_gets
    assert not [r for r in log["requests"] if r["status"] == 429]

    # Nothing lost, nothing doubled: each thread's number was accepted exactly once.
    mobiles = Counter(m["mobile"] for m in emulator.messages())
    assert set(mobiles) == set(sent_ids)
    assert set(mobiles.values()) == {1}
    assert len(sent_ids) == THREADS

    per_second = RATE_PER_MINUTE / 60
    burst = RATE_PER_MINUTE / 10
    duration = max(gets) - min(gets)
    peaks = {w: peak(gets, w) for w in (1.0, 2.0, 5.0)}
    for window, seen in peaks.items():
        # A bucket hands out at most its burst plus the refill of the window. The server stamps arrivals, not
        # the client's acquisitions: allow half a second of in-flight jitter (threads, GIL, a busy machine).
        assert seen <= burst + per_second * (window + JITTER), (window, seen)
    # Over the whole run the average rate cannot beat burst + rate x time either.
    assert expected_gets <= burst + per_second * (duration + JITTER)
    figure(
        "load",
        clients=THREADS + TASKS,
        gets=expected_gets,
        sends=THREADS,
        seconds=round(duration, 2),
        configured_get_per_s=per_second,
        burst=burst,
        peak_1s=peaks[1.0],
        peak_2s=peaks[2.0],
        peak_5s=peaks[5.0],
        http_429=0,
        lost=0,
        duplicates=0,
        errors=0,
    )
