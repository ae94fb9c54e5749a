"""QikberryAsyncHook against the emulator over real HTTP: lookups, pages, typed errors, retries, emulator
quirks, the shared rate budget and secret hygiene.

Messages are sent with the sync :class:`QikberryHook` (the async hook only reads); every coroutine runs under
``asyncio.run`` inside a plain test, so no pytest async plugin is needed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import traceback
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from airflow_qikberry.clock import Clock
from airflow_qikberry.exceptions import (
    QikberryAuthError,
    QikberryConnectionError,
    QikberryRateLimitError,
    QikberryServerError,
    QikberryValidationError,
)
from airflow_qikberry.hooks.qikberry import QikberryHook
from airflow_qikberry.hooks.qikberry_async import QikberryAsyncHook
from airflow_qikberry.models import Balance, MessageStatus
from tests.helpers import TEST_TOKEN, NoWaits

T = TypeVar("T")


class AsyncSleeps(list[float], Clock):
    """The real clock, except that each wait on the event loop is recorded instead of waited."""

    async def asleep(self, seconds: float) -> None:
        self.append(seconds)


def with_hook(conn_id: str, body: Callable[[QikberryAsyncHook], Awaitable[T]], **kwargs: Any) -> T:
    """Run ``body(hook)`` on a fresh event loop with an async hook whose retry waits are not waited."""

    async def main() -> T:
        async with QikberryAsyncHook(qikberry_conn_id=conn_id, clock=AsyncSleeps(), **kwargs) as hook:
            return await body(hook)

    return asyncio.run(main())


class Frozen(Clock):
    """A clock whose time stands still."""

    def monotonic(self) -> float:
        return 1000.0


def calls(emulator: Any, key: str) -> int:
    return int(emulator.request_log()["counts"].get(key, 0))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sync_hook(qikberry_conn: str) -> QikberryHook:
    hook = QikberryHook(qikberry_conn_id=qikberry_conn, reconcile_delay=0, clock=NoWaits())
    return hook


# -- lookups


def test_get_status_by_each_key(qikberry_conn: str, sync_hook: QikberryHook, emulator: Any) -> None:
    sent = sync_hook.send_sms("919876543210", "async status", custom_id="async-cid-1")
    message_id = sent[0].message_id

    async def body(hook: QikberryAsyncHook) -> list[list[MessageStatus]]:
        return [
            await hook.get_status(message_id=message_id),
            await hook.get_status(custom_id="async-cid-1"),
            await hook.get_status(mobile="+91 98765 43210"),
            await hook.get_status(message_id=message_id, custom_id="async-cid-1"),
        ]

    for rows in with_hook(qikberry_conn, body):
        assert [type(r) for r in rows] == [MessageStatus]
        assert rows[0].message_id == message_id
        assert rows[0].custom_id == "async-cid-1"
        assert rows[0].mobile == "919876543210"
        assert rows[0].status == "AWAITING-DLR"
        assert not rows[0].is_final
    emulator.flush_dlrs()

    async def after(hook: QikberryAsyncHook) -> tuple[list[MessageStatus], list[MessageStatus]]:
        return (
            await hook.get_status(message_id=message_id),
            await hook.get_status(message_id="00000000-0000-0000-0000-000000000000:1"),
        )

    (final,), unknown = with_hook(qikberry_conn, after)
    assert final.is_final
    assert final.is_delivered
    assert final.delivered_at
    assert unknown == []


def test_get_status_needs_a_key_and_validates_before_any_request(qikberry_conn: str, emulator: Any) -> None:
    async def body(hook: QikberryAsyncHook) -> None:
        with pytest.raises(QikberryValidationError):
            await hook.get_status()
        with pytest.raises(QikberryValidationError) as info:
            await hook.get_status(mobile="123")
        assert info.value.field == "mobile"
        with pytest.raises(QikberryValidationError) as info:
            hook.iter_group_status("  ")  # raised when called, not when first iterated
        assert info.value.field == "group_id"

    with_hook(qikberry_conn, body)
    assert calls(emulator, "GET sms/status") == 0


def test_iter_group_status_walks_pages(qikberry_conn: str, sync_hook: QikberryHook, emulator: Any) -> None:
    nodes = [{"to": f"9198765{i:05d}", "message": f"m{i}"} for i in range(150)]
    result = sync_hook.send_batch(nodes, name="async-pages")
    assert result.group_id
    assert result.accepted == 150

    async def body(hook: QikberryAsyncHook) -> list[MessageStatus]:
        return [row async for row in hook.iter_group_status(result.group_id or "")]

    rows = with_hook(qikberry_conn, body)
    assert len(rows) == 150
    assert {r.message_id for r in rows} == {m.message_id for m in result.messages}
    assert all(r.group_id == result.group_id for r in rows)
    assert calls(emulator, "GET sms/status") == 2  # 100 + 50 rows


def test_get_balance(qikberry_conn: str, sync_hook: QikberryHook, emulator: Any) -> None:
    async def body(hook: QikberryAsyncHook) -> tuple[list[Balance], list[Balance]]:
        return await hook.get_balance(), await hook.get_balance(service="T")

    everything, (only_t,) = with_hook(qikberry_conn, body)
    by_service = {b.service: b for b in everything}
    assert set(by_service) >= {"T", "P"}
    assert isinstance(only_t.credits, Decimal)
    assert only_t == by_service["T"]
    sync_hook.send_sms("919876543210", "x" * 170)  # 2 units

    async def again(hook: QikberryAsyncHook) -> list[Balance]:
        return await hook.get_balance(service="T")

    (after,) = with_hook(qikberry_conn, again)
    assert after.credits == only_t.credits - 2 * only_t.charges


def test_get_balance_falls_back_to_legacy_path(qikberry_conn: str, emulator: Any) -> None:
    emulator.set_faults([{"endpoint": "finance/balance", "kind": "error", "status": 404, "times": 1}])

    async def body(hook: QikberryAsyncHook) -> list[Balance]:
        return await hook.get_balance(service="T")

    (balance,) = with_hook(qikberry_conn, body)
    assert balance.service == "T"
    assert calls(emulator, "GET finance/balance") == 1
    assert calls(emulator, "GET account/balance") == 1


# -- typed errors and retries


def test_bad_token_is_auth_error(make_qikberry_conn: Any, emulator: Any) -> None:
    conn_id = make_qikberry_conn("async_bad", password="not-the-token")

    async def body(hook: QikberryAsyncHook) -> None:
        with pytest.raises(QikberryAuthError) as info:
            await hook.get_balance()
        assert info.value.status_code == 401
        assert "Token not found" in info.value.message

    with_hook(conn_id, body)
    assert calls(emulator, "GET finance/balance") == 1  # an auth failure is not retried


@pytest.mark.parametrize(("server_seconds", "cap", "waited"), [(7, 60.0, 7.0), (600, 5.0, 5.0)])
def test_retry_after_is_honoured_and_capped(
    qikberry_conn: str, emulator: Any, server_seconds: int, cap: float, waited: float
) -> None:
    emulator.set_faults(
        [{"endpoint": "finance/balance", "kind": "rate_limit", "seconds": server_seconds, "times": 1}]
    )

    async def body(hook: QikberryAsyncHook) -> list[float]:
        assert await hook.get_balance()
        assert isinstance(hook.policy.clock, AsyncSleeps)
        return list(hook.policy.clock)

    assert with_hook(qikberry_conn, body, max_retry_after=cap) == [waited]
    assert calls(emulator, "GET finance/balance") == 2


def test_rate_limit_error_carries_retry_after(qikberry_conn: str, emulator: Any) -> None:
    emulator.configure(rate_limit_per_minute=2)

    async def body(hook: QikberryAsyncHook) -> None:
        await hook.get_balance()
        await hook.get_balance()
        with pytest.raises(QikberryRateLimitError) as info:
            await hook.get_balance()
        assert info.value.status_code == 429
        assert info.value.retry_after is not None
        assert info.value.retry_after >= 1

    with_hook(qikberry_conn, body, max_attempts=1)


def test_5xx_is_retried_then_succeeds(qikberry_conn: str, emulator: Any) -> None:
    emulator.set_faults([{"endpoint": "sms/status", "kind": "error", "status": 503, "times": 2}])

    async def body(hook: QikberryAsyncHook) -> tuple[list[MessageStatus], int]:
        rows = await hook.get_status(custom_id="nothing-here")
        assert isinstance(hook.policy.clock, AsyncSleeps)
        return rows, len(hook.policy.clock)

    assert with_hook(qikberry_conn, body) == ([], 2)
    assert calls(emulator, "GET sms/status") == 3


def test_5xx_is_retried_then_raised(qikberry_conn: str, emulator: Any) -> None:
    emulator.set_faults([{"endpoint": "finance/balance", "kind": "error", "status": 500, "times": 10}])

    async def body(hook: QikberryAsyncHook) -> list[float]:
        with pytest.raises(QikberryServerError) as info:
            await hook.get_balance()
        assert info.value.status_code == 500
        assert isinstance(hook.policy.clock, AsyncSleeps)
        return list(hook.policy.clock)

    sleeps = with_hook(qikberry_conn, body, max_attempts=3)
    assert len(sleeps) == 2
    assert all(0 < s <= 30.5 for s in sleeps)
    assert calls(emulator, "GET finance/balance") == 3


def test_refused_connection_is_retried_then_connection_error(make_qikberry_conn: Any) -> None:
    conn_id = make_qikberry_conn("async_refused", host=f"http://127.0.0.1:{free_port()}/api/v2/")

    async def body(hook: QikberryAsyncHook) -> list[float]:
        with pytest.raises(QikberryConnectionError) as info:
            await hook.get_balance()
        assert "GET finance/balance failed" in info.value.message
        assert isinstance(hook.policy.clock, AsyncSleeps)
        return list(hook.policy.clock)

    assert len(with_hook(conn_id, body, max_attempts=2)) == 1


# -- the connection


def test_connection_is_read_lazily_with_get_async_connection(
    make_qikberry_conn: Any, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_qikberry.hooks import qikberry_async as compat  # where the hook looks the helper up

    real = compat.get_async_connection
    fetched: list[str] = []

    async def spy(conn_id: str, hook: Any = None) -> Any:
        fetched.append(conn_id)
        assert isinstance(hook, QikberryAsyncHook)
        return await real(conn_id, hook)

    monkeypatch.setattr(compat, "get_async_connection", spy)
    QikberryAsyncHook(qikberry_conn_id="does_not_exist")  # DAG files and triggers build it without a conn
    conn_id = make_qikberry_conn("async_env", timeout=12, rate_limit_per_minute=300)  # AIRFLOW_CONN_ASYNC_ENV

    async def body(hook: QikberryAsyncHook) -> None:
        assert fetched == []
        settings = await hook.get_settings()
        assert settings is await hook.get_settings()
        assert settings.base_url == emulator.base_url
        assert settings.token == TEST_TOKEN
        assert settings.timeout == 12
        assert settings.rate_limit_per_minute == 300
        assert await hook.get_balance()

    with_hook(conn_id, body)
    assert fetched == ["async_env"]

    async def missing(hook: QikberryAsyncHook) -> None:
        with pytest.raises(Exception, match="does_not_exist"):
            await hook.get_balance()

    with_hook("does_not_exist", missing)


# -- ways the emulator can disagree with the reference


def test_plus_prefixed_numbers_come_back_canonical(
    qikberry_conn: str, sync_hook: QikberryHook, emulator: Any
) -> None:
    emulator.configure(number_format="plus")
    sync_hook.send_sms(["919876543210", "447700900123"], "plus", custom_id="async-plus")
    assert sorted(m["mobile"] for m in emulator.messages()) == ["447700900123", "919876543210"]

    async def body(hook: QikberryAsyncHook) -> list[list[MessageStatus]]:
        return [
            await hook.get_status(custom_id="async-plus"),
            await hook.get_status(mobile="+44 7700 900123"),
        ]

    by_cid, by_mobile = with_hook(qikberry_conn, body)
    assert sorted(r.mobile for r in by_cid) == ["447700900123", "919876543210"]
    assert [r.mobile for r in by_mobile] == ["447700900123"]


def test_paginated_custom_id_lookup_returns_every_page(
    qikberry_conn: str, sync_hook: QikberryHook, emulator: Any
) -> None:
    emulator.configure(paginate_lookups=True, status_page_size=10)
    numbers = [f"9198765{i:05d}" for i in range(25)]
    sent = sync_hook.send_sms(numbers, "paged", custom_id="async-paged")
    before = calls(emulator, "GET sms/status")

    async def body(hook: QikberryAsyncHook) -> list[MessageStatus]:
        return await hook.get_status(custom_id="async-paged")

    rows = with_hook(qikberry_conn, body)
    assert sorted(r.message_id for r in rows) == sorted(m.message_id for m in sent)
    assert sorted(r.mobile for r in rows) == numbers
    assert calls(emulator, "GET sms/status") - before == 3  # 10 + 10 + 5 rows


def test_status_is_empty_until_the_message_becomes_visible(
    qikberry_conn: str, sync_hook: QikberryHook, emulator: Any
) -> None:
    # A manual clock: 29 s of emulator time, then 2 more, whatever real time a loaded machine spends between.
    emulator.configure(visibility_delay_seconds=30, manual_clock=True)
    (sent,) = sync_hook.send_sms("919876543210", "later", custom_id="async-late")

    async def body(hook: QikberryAsyncHook) -> list[MessageStatus]:
        return await hook.get_status(message_id=sent.message_id)

    assert with_hook(qikberry_conn, body) == []
    emulator.advance_clock(29)
    assert with_hook(qikberry_conn, body) == []
    emulator.advance_clock(2)
    (row,) = with_hook(qikberry_conn, body)
    assert row.message_id == sent.message_id
    assert row.custom_id == "async-late"


# -- the shared rate budget


def test_sync_and_async_hooks_share_one_bucket(
    make_qikberry_conn: Any, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id = make_qikberry_conn("async_shared")
    sync_hook = QikberryHook(qikberry_conn_id=make_qikberry_conn("sync_shared"))
    other_token = make_qikberry_conn("async_other", password="another-token")

    async def bucket_of(hook: QikberryAsyncHook) -> Any:
        return (await hook.get_transport()).bucket

    bucket = with_hook(conn_id, bucket_of)
    assert bucket is sync_hook.transport.bucket
    assert with_hook(other_token, bucket_of) is not bucket

    # Freeze the bucket's clock: every GET, from either hook, takes exactly one token from the same budget.
    # (monkeypatch: the bucket is process-wide, later tests must get it back running on the real clock.)
    monkeypatch.setattr(bucket, "clock", Frozen())
    monkeypatch.setattr(bucket, "_updated", 1000.0)
    monkeypatch.setattr(bucket, "_tokens", bucket.capacity)

    async def two_lookups(hook: QikberryAsyncHook) -> None:
        await hook.get_balance()
        await hook.get_status(custom_id="nothing")

    with_hook(conn_id, two_lookups)
    sync_hook.get_balance()
    sync_hook.get_status(custom_id="nothing")
    with_hook(conn_id, two_lookups)
    assert bucket._tokens == pytest.approx(bucket.capacity - 6)


# -- secrets


def all_log_text(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> str:
    # Airflow 3 routes hook loggers through structlog to the console, other libraries through logging.
    out, err = capfd.readouterr()
    return "\n".join([caplog.text, *(r.getMessage() for r in caplog.records), out, err])


def test_query_token_never_in_errors_or_logs(
    make_qikberry_conn: Any,
    qikberry_conn: str,
    sync_hook: QikberryHook,
    emulator: Any,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    (sent,) = sync_hook.send_sms("919876543210", "secret check")  # header mode: only the async side is tested
    conn_id = make_qikberry_conn("async_query", auth_in="query")
    dead = make_qikberry_conn(
        "async_query_dead", host=f"http://127.0.0.1:{free_port()}/api/v2/", auth_in="query"
    )
    # httpx logs each request URL (query string included) at INFO, httpcore traces at DEBUG. Airflow quiets
    # httpx to WARNING; a deployment debugging its triggerer turns it back up, which is what this does.
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")
    caplog.clear()
    errors: list[BaseException] = []

    async def lookups(hook: QikberryAsyncHook) -> None:
        assert await hook.get_status(message_id=sent.message_id)
        assert await hook.get_balance()
        emulator.set_faults([{"endpoint": "finance/balance", "kind": "error", "status": 500, "times": 2}])
        with pytest.raises(QikberryServerError) as info:
            await hook.get_balance()
        errors.append(info.value)
        emulator.set_faults([{"endpoint": "sms/status", "kind": "drop_before", "times": 2}])
        with pytest.raises(QikberryConnectionError) as info:
            await hook.get_status(custom_id="dropped")
        errors.append(info.value)

    async def refused(hook: QikberryAsyncHook) -> None:
        with pytest.raises(QikberryConnectionError) as info:
            await hook.get_balance()
        errors.append(info.value)

    with_hook(conn_id, lookups, max_attempts=2)
    with_hook(dead, refused, max_attempts=2)
    assert emulator.request_log()["counts"]["GET sms/status"] >= 1
    assert any(r.name == "httpx" and "access_token" in r.getMessage() for r in caplog.records), (
        "the test must see httpx logging query-string URLs"
    )
    texts = [all_log_text(caplog, capfd)]
    for exc in errors:
        texts += [str(exc), repr(exc), *traceback.format_exception(exc)]
        texts += [repr(exc.__cause__), repr(exc.__context__), str(exc.__context__)]
    for text in texts:
        assert TEST_TOKEN not in text


def test_concurrent_first_lookups_share_one_client(qikberry_conn: str, emulator: Any) -> None:
    """The first lookups of a hook, started together (a sweep's), used to each open a client while the
    connection was being read; only the last one was kept and closed, the others leaked their sockets."""

    async def main() -> tuple[int, int]:
        hook = QikberryAsyncHook(qikberry_conn_id=qikberry_conn)
        try:
            transports = await asyncio.gather(*(hook.get_poll_transport() for _ in range(8)))
            plain = await asyncio.gather(*(hook.get_transport() for _ in range(8)))
            return len({id(t) for t in transports}), len({id(t) for t in plain})
        finally:
            await hook.close()

    assert asyncio.run(main()) == (1, 1)


def test_a_lookup_outliving_its_hook_gets_its_answer_and_opens_nothing(
    qikberry_conn: str, emulator: Any
) -> None:
    """A coalesced lookup another trigger still awaits can outlive the hook whose client it uses. Closing
    waits for the answer on the wire; afterwards nothing reopens a client that nobody would close."""
    from airflow_qikberry.transport.aio import TransportClosed

    emulator.set_faults([{"endpoint": "finance/balance", "kind": "latency", "seconds": 0.5, "times": 1}])

    async def main() -> tuple[Any, Any]:
        hook = QikberryAsyncHook(qikberry_conn_id=qikberry_conn)
        transport = await hook.get_transport()
        lookup = asyncio.ensure_future(transport.get("finance/balance"))
        await asyncio.sleep(0.2)  # on the wire
        await hook.close()
        answer = await lookup
        with pytest.raises(TransportClosed):
            await transport.for_polls().get("finance/balance")
        return answer, transport._pool.client

    answer, client = asyncio.run(main())
    assert answer is not None
    assert client is None
