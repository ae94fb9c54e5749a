"""The client-side rate limit: TokenBucket (threads and coroutines) and the per-(base URL, token) registry."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any

import pytest

from airflow_qikberry import ratelimit
from airflow_qikberry.clock import Clock
from airflow_qikberry.hooks.qikberry import QikberryHook
from airflow_qikberry.ratelimit import BucketChain, Budget, BudgetRegistry, TokenBucket
from tests.helpers import TEST_TOKEN, count


class FakeClock(Clock):
    """Time that moves only when a test moves it, or when something waits on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


class Ticking(Clock):
    """Each reading a microsecond after the last (``YieldingTime``: giving the GIL away in arithmetic)."""

    def __init__(self) -> None:
        self.ticks = itertools.count(1)  # next() is atomic under the GIL

    def monotonic(self) -> float:
        return YieldingTime(next(self.ticks) * 1e-6)


def test_token_bucket_waits_instead_of_failing() -> None:
    clock = FakeClock()
    bucket = TokenBucket(600, burst=5, clock=clock)
    for _ in range(5):
        assert bucket.acquire() == 0
    assert bucket.acquire() == pytest.approx(0.1)
    assert bucket.acquire() == pytest.approx(0.1)
    clock.now += 10
    assert bucket.acquire() == 0


def test_token_bucket_holds_rate_over_a_minute() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, clock=clock)
    for _ in range(3000):
        bucket.acquire()
    # 3000 calls at 1000/min with a burst of 100: (3000 - 100) / 1000 minutes of waiting.
    assert clock.now == pytest.approx(174.0, rel=1e-6)


# -- threads


class YieldingTime(float):
    """A clock reading that gives the GIL away whenever the bucket does arithmetic with it.

    The bucket reads its state, computes with the time (``elapsed * rate``) and writes the result back; a
    thread switch forced right there is the interleaving that loses updates when nothing serialises
    :meth:`TokenBucket.reserve`. Left to the interpreter's switch interval that window is almost never hit.
    """

    def __sub__(self, other: float) -> YieldingTime:
        time.sleep(0)
        return YieldingTime(float(self) - float(other))

    def __mul__(self, other: float) -> float:
        time.sleep(0)
        return float(self) * float(other)

    __rmul__ = __mul__


def test_token_bucket_is_thread_safe() -> None:
    """Many threads reserving at once get exactly ``capacity`` free tokens and every later slot once.

    Fails with the lock in ``TokenBucket.reserve`` removed: a refill written back after another thread's
    decrement loses that decrement, so more than ``capacity`` calls go through without waiting.
    """
    # Each reading is a microsecond after the last: every reserve refills (and writes back) a sliver.
    bucket = TokenBucket(60, burst=50, clock=Ticking())
    threads_count, per_thread = 16, 25
    delays: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(threads_count)

    def worker() -> None:
        start.wait()
        mine = [bucket.reserve() for _ in range(per_thread)]
        with lock:
            delays.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(threads_count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = threads_count * per_thread
    assert len(delays) == total
    # At most ~1 ms of clock passes in all (400 readings): well under one token of refill at 1 token/s.
    assert sum(1 for d in delays if d == 0) == 50
    # The other 350 reservations queue at 1 s apart, each slot handed out exactly once.
    assert sorted(round(d) for d in delays if d > 0) == list(range(1, total - 50 + 1))


# -- coroutines


def test_acquire_async_waits_without_blocking_the_loop() -> None:
    bucket = TokenBucket(300, burst=1)  # real clock: one token, then one per 0.2 s

    async def main() -> tuple[float, float, int]:
        assert await bucket.acquire_async() == 0
        ticks = 0
        done = False

        async def ticker() -> None:
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)  # the ticker runs up to its first sleep
        before = ticks
        started = time.monotonic()
        waited = await bucket.acquire_async()
        elapsed = time.monotonic() - started
        done = True
        await task
        return waited, elapsed, ticks - before

    waited, elapsed, ticks_meanwhile = asyncio.run(main())
    assert 0.1 < waited <= 0.2
    assert elapsed >= waited * 0.9  # it really waited...
    assert ticks_meanwhile >= 5  # ...and the loop kept running other coroutines meanwhile


def test_threads_and_tasks_share_one_budget() -> None:
    """Threads (``acquire``) and asyncio tasks (``acquire_async``) drawing from one bucket at the same
    moment get ``capacity`` free tokens between them, then one slot per ``1/rate`` each, never more."""
    thread_waits: list[float] = []
    task_waits: list[float] = []

    class Frozen(FakeClock):
        """Frozen while they draw: every wait is measured from the same instant."""

        def sleep(self, seconds: float) -> None:
            thread_waits.append(seconds)

        async def asleep(self, seconds: float) -> None:
            task_waits.append(seconds)
            await asyncio.sleep(0)

    clock = Frozen()
    bucket = TokenBucket(600, burst=10, clock=clock)
    threads_count, tasks_count, each = 4, 4, 30
    delays: list[float] = []
    lock = threading.Lock()
    go = threading.Event()

    def thread_worker() -> None:
        go.wait()
        mine = []
        for _ in range(each):
            mine.append(bucket.acquire())
            time.sleep(0)
        with lock:
            delays.extend(mine)

    async def task_worker() -> None:
        for _ in range(each):
            delay = await bucket.acquire_async()
            with lock:
                delays.append(delay)
            await asyncio.sleep(0)

    async def main() -> None:
        threads = [threading.Thread(target=thread_worker) for _ in range(threads_count)]
        for t in threads:
            t.start()
        go.set()
        await asyncio.gather(*(task_worker() for _ in range(tasks_count)))
        for t in threads:
            t.join()

    asyncio.run(main())
    total = (threads_count + tasks_count) * each
    assert len(delays) == total
    # 240 grants at one instant: 10 free, then one every 0.1 s - the budget of 600/min, whoever asked.
    assert sorted(delays) == pytest.approx([0.0] * 10 + [k / 10 for k in range(1, total - 10 + 1)])
    assert len(thread_waits) + len(task_waits) == total - 10  # each positive delay was waited, once
    assert thread_waits
    assert task_waits
    # Later on, the refill never exceeds the rate: 1 s after the last slot, one burst of 10 at most.
    clock.now += (total - 10) / 10 + 1.0
    assert [bucket.reserve() for _ in range(11)][-2:] == [0.0, pytest.approx(0.1)]


# -- the registry


def test_registry_keys_never_hold_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "GET_BUDGETS", BudgetRegistry())
    bucket_for = ratelimit.GET_BUDGETS.bucket  # what every hook's transport draws from
    token = "sk-live-9f8e7d6c5b4a"
    first = bucket_for("https://alerts.example.com/api/v2/", token, 1000)
    assert bucket_for("https://alerts.example.com/api/v2", token, 1000) is first  # trailing slash alike
    assert bucket_for("https://alerts.example.com/api/v2/", token + "x", 1000) is not first
    assert bucket_for("https://other.example.com/api/v2/", token, 1000) is not first
    replaced = bucket_for("https://alerts.example.com/api/v2/", token, 500)  # a changed rate: new bucket
    assert replaced is not first
    assert replaced.rate_per_minute == 500
    held = vars(ratelimit.GET_BUDGETS)  # everything the registry holds: its keys and its buckets
    assert token not in repr(held)
    for bucket in (first, replaced):
        assert all(token not in repr(value) for value in vars(bucket).values())


def test_hooks_on_one_token_share_a_bucket(make_qikberry_conn: Any) -> None:
    a = QikberryHook(qikberry_conn_id=make_qikberry_conn("a1"))
    b = QikberryHook(qikberry_conn_id=make_qikberry_conn("b1"))
    other = QikberryHook(qikberry_conn_id=make_qikberry_conn("c1", password="another-token"))
    assert a.transport.bucket is b.transport.bucket
    assert a.transport.bucket is not other.transport.bucket
    assert TEST_TOKEN not in repr(vars(ratelimit.GET_BUDGETS))
    assert ratelimit.GET_BUDGETS.bucket("u", "t", 10).rate_per_minute == 10


def test_hook_gets_are_rate_limited(
    make_qikberry_conn: Any, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(ratelimit, "GET_BUDGETS", BudgetRegistry(clock=clock))  # budgets on a clock we move
    hook = QikberryHook(qikberry_conn_id=make_qikberry_conn("slowrate", rate_limit_per_minute=60))
    for _ in range(12):
        hook.get_balance()  # one GET each (test_connection also reads the DLT senders and templates)
    assert count(emulator, "GET finance/balance") == 12
    assert clock.slept == pytest.approx([1.0] * 6)  # a burst of 6 (a tenth of 60/min), then one per second


# -- chains (a delivery poll draws from the GET budget and the poll budget at once)


@pytest.mark.parametrize("slower", ["get", "poll"])
def test_a_chain_waits_for_its_slower_bucket_in_threads_and_coroutines(slower: str) -> None:
    """Sync sensors wait in ``acquire``, triggers in ``acquire_async``: past the burst, both wait for the
    slower member, whichever it is. (A chain that could not wait crashed the poke-mode sensor of any
    campaign larger than the poll burst with an AttributeError.)"""
    clock = FakeClock()
    fast = TokenBucket(6000, burst=20, clock=clock)  # 100 a second
    slow = TokenBucket(600, burst=5, clock=clock)  # 10 a second
    get, poll = (slow, fast) if slower == "get" else (fast, slow)
    chain = BucketChain(get, poll)
    budget: Budget = chain  # both kinds satisfy the one protocol transports are typed with
    assert budget.capacity == 5
    assert budget.rate_per_minute == 600
    waits = [chain.acquire() for _ in range(8)]
    assert waits[:5] == [0.0] * 5
    assert waits[5:] == pytest.approx([0.1] * 3)  # one slow token each, the clock moved by each sleep
    assert clock.slept == pytest.approx([0.1] * 3)

    async def draw() -> list[float]:
        return [await chain.acquire_async() for _ in range(3)]

    assert asyncio.run(draw()) == pytest.approx([0.1] * 3)
    assert clock.slept[3:] == pytest.approx([0.1] * 3)  # waited on the event loop, on the same clock


class WaitsForReal(FakeClock):
    """Time stands still, but a wait on the event loop really waits (so that it can be cancelled)."""

    asleep = Clock.asleep


def test_a_cancelled_chain_wait_gives_back_every_members_token() -> None:
    clock = WaitsForReal()
    get, poll = TokenBucket(600, burst=2, clock=clock), TokenBucket(60, burst=1, clock=clock)
    chain = BucketChain(get, poll)
    chain.acquire()  # the poll bucket's only token

    async def main() -> None:
        waiter = asyncio.ensure_future(chain.acquire_async())  # 1 s for the poll bucket's next token
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

    asyncio.run(main())
    assert get._tokens == pytest.approx(1)
    assert poll._tokens == pytest.approx(0)
