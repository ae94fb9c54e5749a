"""The retry policy shared by both transports: attempts, Retry-After, and one deadline per call."""

from __future__ import annotations

import asyncio

import pytest

from airflow_qikberry.clock import Clock
from airflow_qikberry.exceptions import QikberryRateLimitError, QikberryServerError
from airflow_qikberry.transport.retry import Retry, RetryPolicy, bounded_by


class FakeTime(Clock):
    """A clock that only moves when the policy sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


def policy(fake: FakeTime, **kwargs: float) -> RetryPolicy:
    return RetryPolicy(clock=fake, **kwargs)  # type: ignore[arg-type]


def limited(after: float) -> Retry:
    return Retry(QikberryRateLimitError("Too Many Attempts.", retry_after=after), after)


def test_retry_after_waits_never_run_past_the_deadline() -> None:
    fake = FakeTime()
    calls = []

    def attempt() -> str:
        calls.append(fake.now)
        raise limited(50.0)

    with pytest.raises(QikberryRateLimitError):
        policy(fake, deadline=60.0, max_attempts=10, max_retry_after=60.0).run(attempt)
    # One 50 s wait fits in 60 s; a second would end at 100 s, so it is never started.
    assert fake.sleeps == [50.0]
    assert calls == [0.0, 50.0]


def test_max_retry_after_caps_the_server_wait() -> None:
    fake = FakeTime()
    with pytest.raises(QikberryRateLimitError):
        policy(fake, deadline=1000.0, max_attempts=3, max_retry_after=5.0).run(
            lambda: (_ for _ in ()).throw(limited(900))
        )
    assert fake.sleeps == [5.0, 5.0]


def test_a_nested_call_shares_the_enclosing_deadline() -> None:
    fake = FakeTime()
    outer = policy(fake, deadline=10.0)
    inner = policy(fake, deadline=120.0, max_attempts=50)

    def failing_get() -> None:
        raise Retry(QikberryServerError("Server Error"), 4.0)

    with bounded_by(outer.start()), pytest.raises(QikberryServerError):
        inner.run(failing_get)
    # The inner call's own deadline (120 s) would allow many 4 s waits; the enclosing 10 s allows two.
    assert fake.sleeps == [4.0, 4.0]
    assert inner.start().seconds == 120.0  # outside the block, calls get their own deadline again


def test_async_run_follows_the_same_policy() -> None:
    fake = FakeTime()
    calls = 0

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise limited(2.0)
        return "ok"

    assert asyncio.run(policy(fake, deadline=60.0).run_async(attempt)) == "ok"
    assert fake.sleeps == [2.0, 2.0]
