"""
The async transport: one ``httpx.AsyncClient`` per hook, for lookups made from the triggerer.

It never sends messages (sends happen on workers, never in a trigger, which a triggerer restart would
repeat); it speaks the same protocol, with the same retry policy and the same per-token GET budget as the
sync transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_qikberry.protocol import ApiResponse, auth_headers, query_params
from airflow_qikberry.transport import base

if TYPE_CHECKING:
    import httpx

    from airflow_qikberry.connection import ConnectionSettings
    from airflow_qikberry.transport.retry import Deadline


__all__ = ["HttpxTransport", "TransportClosed"]


class TransportClosed(Exception):
    """
    A request on a transport whose hook was closed.

    Not a :class:`QikberryError`: a coalesced lookup that dies of it is made again by each caller that
    joined it, on its own transport.
    """


class _Pool:
    """
    The client and the requests in flight on it, shared by a transport and its :meth:`for_polls` view.

    Closing either closes both, and nothing opens a new client afterwards.
    """

    def __init__(self) -> None:
        self.client: httpx.AsyncClient | None = None
        self.closed = False
        self.in_flight: set[asyncio.Future[None]] = set()


class HttpxTransport(base.Transport):
    """
    Async GETs over a pooled ``httpx.AsyncClient``.

    Example::

        transport = HttpxTransport(settings, policy=RetryPolicy())
        response = await transport.get("sms/status", {"id": message_id})
        await transport.aclose()
    """

    def __init__(self, settings: ConnectionSettings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self._pool = _Pool()
        base.install_log_filter("httpx")
        base.install_log_filter("httpcore")

    @property
    def client(self) -> httpx.AsyncClient:
        pool = self._pool
        if pool.closed:
            # A coalesced lookup outlives the trigger that started it; reopening here leaked its sockets.
            raise TransportClosed("the Qikberry hook of this request was closed")
        if pool.client is None:
            import httpx

            s = self.settings
            pool.client = httpx.AsyncClient(
                headers=auth_headers(s.token, s.auth_in, base.USER_AGENT),
                timeout=httpx.Timeout(self.read_timeout, connect=self.connect_timeout),
                verify=s.verify_ssl,
                limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
            )
        return pool.client

    def _open_pool(self) -> None:
        self.client  # noqa: B018  (a property that creates the client)

    async def aclose(self) -> None:
        """
        Close the client once the requests still on it have their answers (at most a request timeout).

        Such a request belongs to a coalesced lookup another trigger may still await; closing its connection
        under it made it retry on a new one, which nothing closed (a ResourceWarning in the task log).
        Afterwards, requests on this transport raise :class:`TransportClosed`.
        """
        pool = self._pool
        pool.closed = True
        try:
            if pool.in_flight:
                await asyncio.wait(set(pool.in_flight), timeout=self.read_timeout + self.connect_timeout)
        finally:
            if pool.client is not None:
                await pool.client.aclose()
                pool.client = None

    async def request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None
    ) -> base.RawResponse:
        import httpx

        s = self.settings
        client = self.client
        answered = asyncio.get_running_loop().create_future()
        self._pool.in_flight.add(answered)
        try:
            response = await client.request(
                method, s.base_url + path, params=query_params(params, s.token, s.auth_in)
            )
        except httpx.HTTPError as exc:
            raise _classified(exc, f"{method} {path}", s.token) from None
        finally:
            self._pool.in_flight.discard(answered)
            answered.set_result(None)
        return base.RawResponse(
            response.status_code, response.content.decode("utf-8", "replace"), response.headers
        )

    async def get(
        self, path: str, params: Mapping[str, Any] | None = None, deadline: Deadline | None = None
    ) -> ApiResponse:
        """GET within the shared rate budget, with the sync transport's retry rules."""

        async def attempt() -> ApiResponse:
            await self.bucket.acquire_async()
            try:
                raw = await self.request("GET", path, params=params)
            except base.TransportFailure as exc:
                raise base.get_failed(exc) from None
            return base.get_answered(raw)

        return await self.policy.run_async(attempt, deadline, hold=self.hold)


def _classified(exc: BaseException, what: str, token: str) -> base.TransportFailure:
    import ssl

    import httpx

    if isinstance(exc, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
        return base.failure("fatal", what, exc, token, "not retried: fix the connection's host")
    if base.caused_by(exc, (ssl.SSLCertVerificationError,)):
        return base.failure(
            "fatal",
            what,
            exc,
            token,
            "not retried: TLS verification failed; fix the certificate chain "
            "or set verify_ssl false for a sandbox",
        )
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return base.failure("not_sent", what, exc, token)
    return base.failure("ambiguous", what, exc, token)
