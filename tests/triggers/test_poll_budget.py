"""The poll budget and lookup coalescing under the delivery trigger and sensor: token-bucket holds and
refunds, bucket chains, the ``poll_budget_per_minute`` connection extra, the coalescer, and the hooks' poll
methods against the emulator."""

from __future__ import annotations

import asyncio
import threading
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_qikberry import clock, ratelimit
from airflow_qikberry.connection import ConnectionSettings
from airflow_qikberry.exceptions import QikberryServerError, QikberryValidationError
from airflow_qikberry.hooks.qikberry import QikberryHook
from airflow_qikberry.hooks.qikberry_async import QikberryAsyncHook
from airflow_qikberry.ratelimit import BucketChain, BudgetRegistry, TokenBucket
from airflow_qikberry.transport.coalesce import Coalescer, request_key
from airflow_qikberry.transport.retry import RetryPolicy
from airflow_qikberry.transport.sync import RequestsTransport
from tests.helpers import TEST_TOKEN
from tests.triggers.support import (
    assert_within_budget,
    fresh_poll_budgets,
    send_group,
    status_calls,
    status_requests,
)


@pytest.fixture(autouse=True)
def _fresh_budgets() -> Iterator[None]:
    fresh_poll_budgets()
    yield
    fresh_poll_budgets()


class Clock(clock.Clock):
    """Time that moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


# -- buckets


def test_hold_makes_every_caller_wait_out_a_retry_after() -> None:
    clock = Clock()
    bucket = TokenBucket(600, burst=5, clock=clock)
    assert bucket.reserve() == 0
    bucket.hold(3.0)
    assert bucket.reserve() == pytest.approx(3.0)
    clock.now += 2.0
    assert bucket.reserve() == pytest.approx(1.0)
    bucket.hold(0.5)  # a shorter hold never shortens a longer one
    assert bucket.reserve() == pytest.approx(1.0)
    clock.now += 1.0
    assert bucket.reserve() == 0


def test_a_cancelled_wait_gives_its_token_back() -> None:
    bucket = TokenBucket(60, burst=1)  # one token, then one a second
    bucket.reserve()

    async def main() -> None:
        waiter = asyncio.ensure_future(bucket.acquire_async())
        await asyncio.sleep(0.05)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

    asyncio.run(main())
    # The cancelled caller's token is back: the next caller waits one token's worth (~1 s), not two.
    assert bucket.reserve() < 1.0


def test_a_chain_takes_from_every_bucket_and_waits_for_the_slowest() -> None:
    clock = Clock()
    fast = TokenBucket(6000, burst=10, clock=clock)
    slow = TokenBucket(60, burst=1, clock=clock)
    chain = BucketChain(fast, slow)
    assert chain.reserve() == 0
    assert chain.reserve() == pytest.approx(1.0)  # the slow bucket's wait
    assert fast._tokens == pytest.approx(8)
    assert slow._tokens == pytest.approx(-1)
    chain.refund()
    assert fast._tokens == pytest.approx(9)
    assert slow._tokens == pytest.approx(0)
    chain.hold(5)
    assert fast.reserve() >= 4.9
    assert slow.reserve() >= 4.9
    with pytest.raises(ValueError, match="at least one bucket"):
        BucketChain()


def test_poll_budgets_are_per_token_apart_from_the_get_budget() -> None:
    url = "http://127.0.0.1:1/api/v2/"
    poll_bucket_for, bucket_for = ratelimit.POLL_BUDGETS.bucket, ratelimit.GET_BUDGETS.bucket
    poll = poll_bucket_for(url, "tok-a", 500)
    assert poll is poll_bucket_for(url, "tok-a", 500)
    assert poll is not poll_bucket_for(url, "tok-b", 500)
    assert poll is not bucket_for(url, "tok-a", 500)
    # What a poll draws from: both budgets of its token; a 429 holds the poll budget.
    polls = RequestsTransport(settings(base_url=url, token="tok-a"), policy=RetryPolicy()).for_polls()
    assert isinstance(polls.bucket, BucketChain)
    assert polls.bucket.buckets == (bucket_for(url, "tok-a", 1000), poll)
    assert polls.hold == poll.hold
    assert "tok-a" not in repr(vars(ratelimit.POLL_BUDGETS))


# -- the connection extra


def settings(base_url: str | None = None, token: str = "tok-1", **extra: Any) -> ConnectionSettings:
    conn = types.SimpleNamespace(
        conn_id="c", host=base_url, port=None, schema=None, password=token, extra_dejson=extra
    )
    return ConnectionSettings.from_connection(conn)


def test_poll_budget_extra() -> None:
    assert settings().poll_budget_per_minute == 500  # half the API's 1000 GET/min
    assert settings(poll_budget_per_minute="120").poll_budget_per_minute == 120
    assert settings(poll_budget_per_minute=None).poll_budget_per_minute == 500
    for bad in (0, -5, "lots", 2.5):
        with pytest.raises(QikberryValidationError) as info:
            settings(poll_budget_per_minute=bad)
        assert info.value.field == "poll_budget_per_minute"


def test_poll_budget_is_a_connection_form_field() -> None:
    # The form (conn-fields for Airflow 3.2+, WTForms widgets for older UIs) is built from CONN_FIELDS;
    # tests/hooks/test_hook_secrets_and_parts.py checks the widgets match it.
    from airflow_qikberry.get_provider_info import CONN_FIELDS

    schema = CONN_FIELDS["poll_budget_per_minute"]["schema"]
    # No default in the form: left empty, the budget is derived (half the GET budget, 500 by default).
    assert "default" not in schema
    assert schema["minimum"] == 1
    assert "integer" in schema["type"]


# -- the coalescer


def test_identical_concurrent_lookups_make_one_call() -> None:
    calls: list[int] = []

    async def fetch() -> str:
        calls.append(1)
        await asyncio.sleep(0.05)
        return "answer"

    async def main() -> list[str]:
        coalescer = Coalescer()
        key = request_key("http://h/api/v2/", "tok", "sms/status", {"group_id": "g", "page": 2})
        same = request_key("http://h/api/v2", "tok", "sms/status", {"page": 2, "group_id": "g", "x": None})
        return list(await asyncio.gather(*(coalescer.run(k, fetch) for k in [key, same, key])))

    assert asyncio.run(main()) == ["answer"] * 3
    assert calls == [1]


def test_answers_are_never_shared_across_tokens_or_parameters() -> None:
    base = request_key("http://h/", "tok-a", "sms/status", {"id": "m:1"})
    assert base != request_key("http://h/", "tok-b", "sms/status", {"id": "m:1"})
    assert base != request_key("http://h/", "tok-a", "sms/status", {"id": "m:2"})
    assert base != request_key("http://other/", "tok-a", "sms/status", {"id": "m:1"})
    assert "tok-a" not in str(base)


def test_recent_answers_are_reused_only_within_max_age() -> None:
    clock = Clock()
    coalescer = Coalescer(clock=clock)
    key = request_key("http://h/", "t", "p", {})
    answers = iter(["first", "second", "third"])

    async def fetch() -> str:
        return next(answers)

    async def main() -> list[str]:
        out = [await coalescer.run(key, fetch, max_age=2)]
        clock.now += 1
        out.append(await coalescer.run(key, fetch, max_age=2))  # 1 s old: reused
        out.append(await coalescer.run(key, fetch))  # max_age 0: asks again
        clock.now += 3
        out.append(await coalescer.run(key, fetch, max_age=2))  # too old
        return out

    assert asyncio.run(main()) == ["first", "first", "second", "third"]
    assert (coalescer.calls, coalescer.shared) == (3, 1)


def test_an_api_error_is_shared_but_a_dead_flight_is_retried_by_each_caller() -> None:
    async def main() -> None:
        coalescer = Coalescer()
        key = request_key("http://h/", "t", "p", {})
        gate = asyncio.Event()

        async def failing() -> str:
            await gate.wait()
            raise QikberryServerError("boom", status_code=500)

        async def own() -> str:
            return "own"

        first = asyncio.ensure_future(coalescer.run(key, failing))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(coalescer.run(key, own))
        await asyncio.sleep(0)
        gate.set()
        for task in (first, second):
            with pytest.raises(QikberryServerError):
                await task

        async def closed_client() -> str:
            await gate.wait()
            raise RuntimeError("Cannot send a request, as the client has been closed.")

        gate.clear()
        owner = asyncio.ensure_future(coalescer.run(key, closed_client))
        await asyncio.sleep(0)
        joined = asyncio.ensure_future(coalescer.run(key, own))
        await asyncio.sleep(0)
        gate.set()
        assert await joined == "own"
        with pytest.raises(RuntimeError):
            await owner

    asyncio.run(main())


def test_a_cancelled_caller_does_not_cancel_the_lookup_for_the_others() -> None:
    async def main() -> str:
        coalescer = Coalescer()
        key = request_key("http://h/", "t", "p", {})

        async def slow() -> str:
            await asyncio.sleep(0.05)
            return "answer"

        owner = asyncio.ensure_future(coalescer.run(key, slow))
        await asyncio.sleep(0)
        other = asyncio.ensure_future(coalescer.run(key, slow))
        await asyncio.sleep(0)
        owner.cancel()
        result = await other
        assert coalescer.calls == 1
        return result

    assert asyncio.run(main()) == "answer"


# -- the hooks' poll methods


def test_poll_methods_draw_from_the_poll_budget(make_qikberry_conn: Any, emulator: Any) -> None:
    conn_id = make_qikberry_conn(poll_budget_per_minute=60)  # burst 6, then one a second
    group, ids = send_group(emulator, 3)
    sync_hook = QikberryHook(qikberry_conn_id=conn_id)
    assert [r.message_id for r in sync_hook.poll_page(group).rows] == ids
    assert sync_hook.poll_page(group).next_page is None
    assert [r.message_id for r in sync_hook.poll_message(ids[0])] == [ids[0]]
    assert sync_hook.poll_message(f"{group}:99") == []
    poll = ratelimit.POLL_BUDGETS.bucket(emulator.base_url, TEST_TOKEN, 60)
    assert poll._tokens == pytest.approx(2, abs=0.2)  # 4 of 6 spent, by the sync hook

    async def lookups() -> None:
        async with QikberryAsyncHook(qikberry_conn_id=conn_id) as hook:
            page = await hook.poll_page(group)
            assert [r.message_id for r in page.rows] == ids
            assert [r.message_id for r in await hook.poll_message(ids[1])] == [ids[1]]
            started = time.monotonic()
            for _ in range(2):
                await hook.poll_message(ids[2])
            assert time.monotonic() - started >= 0.8  # the budget is spent: about a second a lookup

    asyncio.run(lookups())
    assert status_calls(emulator) == 8
    # Ordinary hook lookups do not draw from the poll budget.
    tokens = poll._tokens
    sync_hook.get_status(message_id=ids[0])
    assert poll._tokens == pytest.approx(tokens, abs=0.1)
    sync_hook.close()


def test_a_429_holds_every_poll_of_the_token(qikberry_conn: str, emulator: Any) -> None:
    _, ids = send_group(emulator, 3)
    emulator.set_faults([{"endpoint": "sms/status", "kind": "rate_limit", "seconds": 2, "times": 1}])

    async def main() -> None:
        async with (
            QikberryAsyncHook(qikberry_conn_id=qikberry_conn) as first,
            QikberryAsyncHook(qikberry_conn_id=qikberry_conn) as second,
        ):
            refused = asyncio.ensure_future(first.poll_message(ids[0]))
            # Until the 429 is in (the first call in a process also imports the HTTP stack, which alone can
            # outlast a fixed wait: the polls below then ran first), then 0.3 s for its Retry-After to hold
            # the budget.
            deadline = time.monotonic() + 30
            while not status_requests(emulator) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)
            await asyncio.gather(refused, second.poll_message(ids[1]), second.poll_message(ids[2]))

    asyncio.run(main())
    log = status_requests(emulator)
    assert [r["status"] for r in log] == [429, 200, 200, 200]
    assert all(r["timestamp"] - log[0]["timestamp"] >= 1.9 for r in log[1:])


def test_a_429_holds_every_sync_poll_of_the_token(qikberry_conn: str, emulator: Any) -> None:
    """The sync twin of the test above (sensors in poke or reschedule mode, threads of one worker): after a
    429 with ``Retry-After: 2`` no poll of the token leaves the process for 2 s. Seen failing when the sync
    poll path retried with the hook's plain policy: the second hook's polls went out at once."""
    _, ids = send_group(emulator, 3)
    emulator.set_faults([{"endpoint": "sms/status", "kind": "rate_limit", "seconds": 2, "times": 1}])
    first = QikberryHook(qikberry_conn_id=qikberry_conn)
    second = QikberryHook(qikberry_conn_id=qikberry_conn)
    refused = threading.Thread(target=first.poll_message, args=(ids[0],))
    refused.start()
    time.sleep(0.3)  # the 429 is in; its Retry-After holds the budget
    assert [r.message_id for r in second.poll_message(ids[1])] == [ids[1]]
    assert [r.message_id for r in second.poll_message(ids[2])] == [ids[2]]
    refused.join()
    log = status_requests(emulator)
    assert [r["status"] for r in log] == [429, 200, 200, 200]
    assert all(r["timestamp"] - log[0]["timestamp"] >= 1.9 for r in log[1:])
    first.close()
    second.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_get_budget_holds_past_its_burst(
    qikberry_conn: str, emulator: Any, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """130 lookups against the default GET budget (1000/min: a burst of 100, then one every 0.06 s), from
    the sync hook (threads wait in ``acquire``) and from the async hook (``acquire_async``); the emulator's
    log shows every stretch of them within the budget."""
    monkeypatch.setattr(ratelimit, "GET_BUDGETS", BudgetRegistry())  # a full burst, whatever ran before
    calls = 130
    if mode == "sync":
        with QikberryHook(qikberry_conn_id=qikberry_conn) as hook:
            for _ in range(calls):
                hook.get_balance()
    else:

        async def lookups() -> None:
            async with QikberryAsyncHook(qikberry_conn_id=qikberry_conn) as hook:
                for _ in range(calls):
                    await hook.get_balance()

        asyncio.run(lookups())
    log = [r for r in emulator.request_log()["requests"] if r["path"] == "finance/balance"]
    assert len(log) == calls
    assert all(r["status"] == 200 for r in log)
    assert_within_budget([r["timestamp"] for r in log], 1000)


def test_group_lookups_refuse_a_bad_group_id_before_any_request(qikberry_conn: str, emulator: Any) -> None:
    """One check for every group lookup, sync and async: a blank id, or a list (which would be sent as its
    repr). Seen failing before the check was written once: the async hook sent ``['g']`` to the API."""
    bad: list[Any] = [" ", "", ["11111111-1111-1111-1111-111111111111"]]
    sync_hook = QikberryHook(qikberry_conn_id=qikberry_conn)
    for group in bad:
        for lookup in (sync_hook.poll_page, sync_hook.group_page, sync_hook.iter_group_status):
            with pytest.raises(QikberryValidationError) as info:
                lookup(group)
            assert info.value.field == "group_id"

    async def main() -> None:
        async with QikberryAsyncHook(qikberry_conn_id=qikberry_conn) as hook:
            for group in bad:
                with pytest.raises(QikberryValidationError):
                    await hook.poll_page(group)
                with pytest.raises(QikberryValidationError):
                    hook.iter_group_status(group)

    asyncio.run(main())
    assert status_calls(emulator) == 0
