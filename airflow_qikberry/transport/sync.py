"""The sync transport: one pooled ``requests.Session``, explicit timeouts, streamed multipart uploads."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cached_property
from typing import IO, TYPE_CHECKING, Any

from airflow_qikberry.protocol import ApiResponse, auth_headers, query_params
from airflow_qikberry.transport.base import (
    USER_AGENT,
    RawResponse,
    Transport,
    TransportFailure,
    caused_by,
    failure,
    get_answered,
    get_failed,
    install_log_filter,
)

if TYPE_CHECKING:
    import requests

    from airflow_qikberry.connection import ConnectionSettings
    from airflow_qikberry.transport.retry import Deadline

__all__ = ["RequestsTransport"]


class RequestsTransport(Transport):
    """
    Sends one request at a time over a pooled keep-alive session; retries are the caller's business.

    Example::

        transport = RequestsTransport(settings, policy=RetryPolicy())
        balance = transport.get("finance/balance")
    """

    def __init__(self, settings: ConnectionSettings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.timeouts = (self.connect_timeout, self.read_timeout)
        install_log_filter("urllib3.connectionpool")

    @cached_property
    def session(self) -> requests.Session:
        import requests
        from requests.adapters import HTTPAdapter

        s = self.settings
        session = requests.Session()
        # Retries are ours (they know which requests are safe to repeat); urllib3 must not repeat anything.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=16, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers.update(auth_headers(s.token, s.auth_in, USER_AGENT))
        # With trust_env on, requests re-reads proxy and CA-bundle variables from os.environ on every
        # request, which costs more than the rest of a send: read them once, here, with the same precedence.
        session.trust_env = False
        session.proxies.update(requests.utils.get_environ_proxies(s.base_url))
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        session.verify = (bundle or True) if s.verify_ssl else False
        return session

    def _open_pool(self) -> None:
        self.session  # noqa: B018  (a cached property: this creates it)

    def close(self) -> None:
        if "session" in self.__dict__:
            self.session.close()
            del self.__dict__["session"]

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> RawResponse:
        """One HTTP exchange. Raises :class:`TransportFailure` when there is no answer."""
        import requests

        s = self.settings
        try:
            response = self.session.request(
                method,
                s.base_url + path,
                params=query_params(params, s.token, s.auth_in),
                json=json,
                data=data,
                headers=dict(headers) if headers else None,
                timeout=self.timeouts,
            )
        except requests.RequestException as exc:
            raise _classified(exc, f"{method} {path}", s.token) from None
        # Not response.text: without a charset requests runs charset detection, which costs milliseconds.
        return RawResponse(
            response.status_code, response.content.decode("utf-8", "replace"), response.headers
        )

    def get(
        self, path: str, params: Mapping[str, Any] | None = None, deadline: Deadline | None = None
    ) -> ApiResponse:
        """
        GET within the rate budget, retried on connection errors, 408, 429 (honouring Retry-After) and 5xx.

        Errors that cannot heal fail at once.
        """

        def attempt() -> ApiResponse:
            self.bucket.acquire()
            try:
                raw = self.request("GET", path, params=params)
            except TransportFailure as exc:
                raise get_failed(exc) from None
            return get_answered(raw)

        return self.policy.run(attempt, deadline, hold=self.hold)

    def post_multipart(
        self,
        path: str,
        fields: Mapping[str, str],
        *,
        file_field: str,
        filename: str,
        fileobj: IO[bytes],
        content_type: str,
    ) -> RawResponse:
        """POST a multipart form whose file part is streamed from ``fileobj`` with a ``Content-Length``."""
        from requests_toolbelt import MultipartEncoder

        part = _FromHere(fileobj)
        encoder = MultipartEncoder(fields={**fields, file_field: (filename, part, content_type)})
        return self.request("POST", path, data=encoder, headers={"Content-Type": encoder.content_type})


def _classified(exc: BaseException, what: str, token: str) -> TransportFailure:
    import ssl

    import requests
    from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

    fatal = (
        requests.exceptions.InvalidURL,
        requests.exceptions.MissingSchema,
        requests.exceptions.InvalidSchema,
        requests.exceptions.InvalidHeader,
        requests.exceptions.URLRequired,
    )
    if isinstance(exc, fatal):
        return failure("fatal", what, exc, token, "not retried: fix the connection's host")
    if isinstance(exc, requests.exceptions.SSLError) and "WRONG_VERSION_NUMBER" in str(exc).upper().replace(
        " ", "_"
    ):
        return failure(
            "fatal",
            what,
            exc,
            token,
            "not retried: the server does not speak TLS; use http:// for it, or check the port",
        )
    if caused_by(exc, (ssl.SSLCertVerificationError,)):
        return failure(
            "fatal",
            what,
            exc,
            token,
            "not retried: TLS verification failed; fix the certificate chain, "
            "point REQUESTS_CA_BUNDLE at your CA, or set verify_ssl false for a sandbox",
        )
    if isinstance(exc, requests.exceptions.ConnectTimeout) or caused_by(
        exc, (NewConnectionError, ConnectTimeoutError, NameResolutionError)
    ):
        return failure("not_sent", what, exc, token)
    return failure("ambiguous", what, exc, token)


class _FromHere:
    """
    A seekable file's bytes from its current position to its end, as the multipart encoder reads them.

    The encoder would send a ``BytesIO`` whole (``getvalue()``) and size a real file by ``fstat``, both
    ignoring the position; this wrapper offers only ``read`` and a ``len`` that shrinks as it is read.
    """

    def __init__(self, fileobj: IO[bytes]) -> None:
        self._file = fileobj
        here = fileobj.tell()
        self._end = fileobj.seek(0, os.SEEK_END)
        fileobj.seek(here)

    @property
    def len(self) -> int:
        return self._end - self._file.tell()

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)
