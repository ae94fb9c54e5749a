"""
QikberryAsyncHook: delivery-status, balance and DLT template lookups for triggers, over httpx.

It only reads (status, balance): sends happen on workers through :class:`QikberryHook`, never in the
triggerer, whose restarts would repeat them. Its lookups are the sync hook's, written once in
:mod:`airflow_qikberry.lookups` and awaited here, so it parses, maps errors, falls back, retries and
rate-limits exactly as the sync hook does (same retry policy, same per-token GET budget in one process).

Delivery triggers poll through :meth:`QikberryAsyncHook.poll_page` and :meth:`QikberryAsyncHook.poll_message`:
those also draw from the connection's poll budget (``poll_budget_per_minute``), a 429 on them holds every
poll of the token in the process for its ``Retry-After``, and identical polls of one event loop are made once
(:mod:`airflow_qikberry.transport.coalesce`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.providers.common.compat.connection import get_async_connection

from airflow_qikberry.hooks.base import HookArgs, QikberryBaseHook
from airflow_qikberry.lookups import (
    Lookup,
    Request,
    StatusQuery,
    balance,
    group_query,
    message_query,
    page_of,
    status_rows,
)
from airflow_qikberry.protocol import ApiResponse, status_params
from airflow_qikberry.sansio import adrive
from airflow_qikberry.transport.aio import HttpxTransport
from airflow_qikberry.transport.coalesce import coalescer, request_key

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from airflow_qikberry.catalog import DltSender, DltTemplate
    from airflow_qikberry.connection import ConnectionSettings
    from airflow_qikberry.models import Balance, MessageStatus, StatusPage

__all__ = ["QikberryAsyncHook"]

T = TypeVar("T")


class QikberryAsyncHook(QikberryBaseHook):
    """
    Async twin of :class:`~airflow_qikberry.hooks.qikberry.QikberryHook` for lookups (status, balance).

    The connection is fetched with common.compat's async-safe helper on first use; one pooled
    ``httpx.AsyncClient`` serves every call until :meth:`close`.

    Example::

        async with QikberryAsyncHook(qikberry_conn_id="qikberry_default") as hook:
            statuses = await hook.get_status(message_id="b34e35ad-...:1")
            async for row in hook.iter_group_status(group_id):
                print(row.status)

    :param qikberry_conn_id: the Airflow connection to use.
    :param timeout: read timeout in seconds (overrides the connection's ``timeout`` extra).
    :param max_attempts: attempts per call, first try included.
    :param retry_deadline: seconds that bound a whole call, waits included (default: the connection's
        ``retry_deadline`` extra, else 120; lookups have no reconcile window to fit).
    :param max_retry_after: cap, in seconds, on how long a server's ``Retry-After`` may make us wait.
    :param clock: how the hook reads time and waits (default: the real clock; see
        :mod:`airflow_qikberry.clock`).
    """

    hook_name = "Qikberry (async)"

    def __init__(
        self, qikberry_conn_id: str = QikberryBaseHook.default_conn_name, **kwargs: Unpack[HookArgs]
    ) -> None:
        super().__init__(qikberry_conn_id, **kwargs)
        self._settings: ConnectionSettings | None = None
        self._transport: HttpxTransport | None = None
        self._poll_transport: HttpxTransport | None = None

    async def get_settings(self) -> ConnectionSettings:
        """Return the parsed connection, fetched once without blocking the event loop."""
        if self._settings is None:
            self._settings = self.settings_from(await get_async_connection(self.qikberry_conn_id, self))
            if self.retry_deadline_override is None and self._settings.retry_deadline is not None:
                self.policy.deadline = self._settings.retry_deadline
        return self._settings

    async def get_transport(self) -> HttpxTransport:
        """Every call's transport, within the token's process-wide GET budget (created on first use)."""
        if self._transport is None:
            s = await self.get_settings()
            # Checked again after the await: concurrent first lookups each opened a client, one never closed.
            if self._transport is None:
                self._transport = HttpxTransport(s, policy=self.policy, timeout=self.timeout_override)
        return self._transport

    async def get_poll_transport(self) -> HttpxTransport:
        """
        Return the transport of delivery polls.

        This hook's client and retry policy, within both the token's GET budget and its poll budget; a 429
        holds the poll budget of the whole process.
        """
        if self._poll_transport is None:
            transport = await self.get_transport()
            if self._poll_transport is None:
                self._poll_transport = transport.for_polls()
        return self._poll_transport

    async def close(self) -> None:
        self._poll_transport = None
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None

    async def __aenter__(self) -> QikberryAsyncHook:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _get(self, path: str, params: Mapping[str, Any] | None = None) -> ApiResponse:
        return await (await self.get_transport()).get(path, params)

    async def _run(
        self, lookup: Lookup[T], get: Callable[[Request], Awaitable[ApiResponse]] | None = None
    ) -> T:
        """Carry out a lookup of :mod:`airflow_qikberry.lookups` with ``get`` (default: the hook's GETs)."""
        return await adrive(lookup, get or (lambda request: self._get(*request)))

    async def _status_rows(self, params: Mapping[str, str]) -> AsyncIterator[MessageStatus]:
        """Every row of a status query, one page at a time (any query may be paged)."""
        query = StatusQuery(params)
        while query.request is not None:
            for row in query.read(await self._get(*query.request)).rows:
                yield row

    async def get_status(
        self,
        *,
        message_id: str | None = None,
        custom_id: str | None = None,
        mobile: str | None = None,
    ) -> list[MessageStatus]:
        """Delivery status by message id, custom id and/or number, every page of it."""
        settings = await self.get_settings()
        params = status_params(
            message_id=message_id, custom_id=custom_id, mobile=mobile, default_region=settings.default_region
        )
        return await self._run(status_rows(params))

    def iter_group_status(self, group_id: str) -> AsyncIterator[MessageStatus]:
        """Every message of a request or campaign, one 100-row page at a time."""
        return self._status_rows(group_query(group_id))

    async def get_templates(self) -> list[DltTemplate]:
        """Every DLT template of the account (``sms/templates``, all pages)."""
        from airflow_qikberry.lookups import templates

        return await self._run(templates())

    async def get_senders(self) -> list[DltSender]:
        """Every sender (DLT header) of the account (``sms/senders``, all pages)."""
        from airflow_qikberry.lookups import senders

        return await self._run(senders())

    async def get_balance(self, service: str | None = None) -> list[Balance]:
        """Credits per service (``finance/balance``; falls back to the legacy ``account/balance``)."""
        return await self._run(balance(service))

    # -- delivery polling (triggers)

    def _poll(self, max_age: float) -> Callable[[Request], Awaitable[ApiResponse]]:
        """
        Return a delivery trigger's GET.

        Within the poll budget, and made once for every identical GET of this event loop (an answer up to
        ``max_age`` seconds old is reused).
        """

        async def get(request: Request) -> ApiResponse:
            transport = await self.get_poll_transport()
            s = transport.settings
            key = request_key(s.base_url, s.token, request.path, request.params)
            return await coalescer().run(key, lambda: transport.get(*request), max_age=max_age)

        return get

    async def poll_page(
        self, group_id: str, page: int = 1, *, max_age: float = 0.0
    ) -> StatusPage[MessageStatus]:
        """
        One page of a group's statuses, as a delivery trigger polls it.

        Within the poll budget, and made once for every identical poll of this event loop (an answer up to
        ``max_age`` seconds old is reused).

        Example::

            first = await hook.poll_page(group_id)
            while first.next_page: ...
        """
        return await self._run(page_of(group_query(group_id), page), self._poll(max_age))

    async def poll_message(self, message_id: str, *, max_age: float = 0.0) -> list[MessageStatus]:
        """Return the status of one message, as a delivery trigger polls it (see :meth:`poll_page`)."""
        return await self._run(status_rows(message_query(message_id)), self._poll(max_age))
