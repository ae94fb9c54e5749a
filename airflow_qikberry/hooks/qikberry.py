"""QikberryHook: the only code in this provider that speaks HTTP to the Qikberry API."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, TypeVar

import tenacity
from airflow.providers.common.compat.sdk import BaseHook

from airflow_qikberry import __version__
from airflow_qikberry import validation as v
from airflow_qikberry.exceptions import (
    QikberryDeliveryUnknownError,
    QikberryError,
    QikberryServerError,
    QikberryValidationError,
)
from airflow_qikberry.get_provider_info import CONN_FIELDS, CONN_TYPE, UI_FIELD_BEHAVIOUR
from airflow_qikberry.models import Balance, BatchResult, MessageStatus, SentMessage
from airflow_qikberry.protocol import (
    DEFAULT_BASE_URL,
    ApiResponse,
    Paths,
    decode_body,
    error_for,
    parse_response,
)

if TYPE_CHECKING:
    import requests

    from airflow_qikberry._ratelimit import TokenBucket

__all__ = ["ConnectionSettings", "QikberryHook"]

T = TypeVar("T")
EncodingChoice = Literal["auto", "gsm7", "ucs2"]

_API_TYPE = {"gsm7": "N", "ucs2": "U"}
_MAX_BULK_BYTES = 200 * 1024 * 1024  # campaign file limit (reference section 3.9)
_MAX_BATCH_NODES = 50_000  # numbers per request: the quick-campaign limit (reference section 3.9)
_TOKEN_IN_TEXT = re.compile(r"((?:access|api)_token=)[^&\s'\"]+", re.IGNORECASE)


def redact(text: str, *secrets: str) -> str:
    """Remove ``access_token=...`` query values and the given secrets from ``text``."""
    text = _TOKEN_IN_TEXT.sub(r"\1***", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class _RedactQueryTokens(logging.Filter):
    """urllib3 logs request URLs (with their query string) at DEBUG: keep query-mode tokens out of them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)  # type: ignore[union-attr]
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_RedactQueryTokens())


@dataclass(frozen=True)
class ConnectionSettings:
    """The `qikberry` connection, parsed and checked. ``token`` is excluded from ``repr``."""

    base_url: str
    token: str = field(repr=False)
    sender: str | None = None
    service: str = "T"
    entity_id: str | None = None
    timeout: float = 30.0
    rate_limit_per_minute: int = 1000
    auth_in: Literal["header", "query"] = "header"
    default_region: str | None = None
    verify_ssl: bool = True

    @classmethod
    def from_connection(cls, conn: Any) -> ConnectionSettings:
        extra = conn.extra_dejson or {}

        def get(name: str) -> Any:
            # Airflow < 2.3 style prefixed keys still turn up in connections saved by old UIs.
            value = extra.get(name, extra.get(f"extra__{CONN_TYPE}__{name}"))
            return None if value == "" else value

        token = conn.password or ""
        if not token:
            raise QikberryValidationError(
                f"Connection '{conn.conn_id}' has no access token: put it in the password field.",
                field="password",
            )
        auth_in = str(get("auth_in") or "header").lower()
        if auth_in not in ("header", "query"):
            raise QikberryValidationError(
                f"Connection extra auth_in must be 'header' or 'query', got {auth_in!r}.", field="auth_in"
            )
        timeout = _positive_number(get("timeout"), "timeout", 30.0)
        rate = int(_positive_number(get("rate_limit_per_minute"), "rate_limit_per_minute", 1000))
        region = get("default_region")
        return cls(
            base_url=_base_url(conn),
            token=token,
            sender=get("sender"),
            service=str(get("service") or "T"),
            entity_id=None if get("entity_id") is None else str(get("entity_id")),
            timeout=timeout,
            rate_limit_per_minute=rate,
            auth_in="query" if auth_in == "query" else "header",
            default_region=str(region).upper() if region else None,
            verify_ssl=_boolean(get("verify_ssl"), default=True),
        )


def _positive_number(value: Any, name: str, default: float) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if number <= 0:
        raise QikberryValidationError(
            f"Connection extra {name} must be a positive number, got {value!r}.", field=name
        )
    return number


def _boolean(value: Any, *, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "off")
    return bool(value)


def _base_url(conn: Any) -> str:
    host = (conn.host or "").strip()
    if not host:
        return DEFAULT_BASE_URL
    if "://" not in host:
        # A URI-style connection splits the URL into host, port and schema (the path).
        port = f":{conn.port}" if conn.port else ""
        path = (conn.schema or "api/v2").strip("/")
        host = f"https://{host}{port}/{path}"
    return host if host.endswith("/") else host + "/"


# --- custom ids

_occurrences: Counter[tuple[str, ...]] = Counter()
_occurrences_lock = threading.Lock()


TaskIdentity = tuple[str, str, str, str, str]


_get_current_context: Callable[[], Any] | None = None


def _task_identity() -> TaskIdentity | None:
    """(dag_id, task_id, run_id, map_index, try_number) of the running task, or None outside a task."""
    global _get_current_context
    if _get_current_context is None:
        # Resolved once: the compat module's lazy lookup costs more than the call itself.
        from airflow.providers.common.compat.sdk import get_current_context

        _get_current_context = get_current_context
    try:
        context = _get_current_context()
    except Exception:
        return None
    ti = context.get("ti") or context.get("task_instance")
    if ti is None:
        return None
    return (
        str(ti.dag_id),
        str(ti.task_id),
        str(ti.run_id),
        str(getattr(ti, "map_index", -1)),
        str(getattr(ti, "try_number", 1)),
    )


_LOOK_UP: Any = object()


def _is_task_retry(identity: TaskIdentity | None) -> bool:
    return identity is not None and identity[4].isdigit() and int(identity[4]) > 1


def derive_custom_id(fingerprint: str, identity: TaskIdentity | None = _LOOK_UP) -> str:
    """A custom id that a retry of the same Airflow task reproduces, so the retry can find earlier sends.

    Inside a task: sha256 of (dag_id, task_id, run_id, map_index, n, fingerprint), where ``n`` counts
    the sends with the same fingerprint made so far in this try. The try number is left out, so try 2
    derives exactly the ids try 1 used, in the same order. Outside a task nothing is stable: a random id,
    reused by the hook's own retries of that call.
    """
    ident = _task_identity() if identity is _LOOK_UP else identity
    if ident is None:
        basis = uuid.uuid4().hex
    else:
        dag_id, task_id, run_id, map_index, try_number = ident
        key = (dag_id, task_id, run_id, map_index, try_number, fingerprint)
        with _occurrences_lock:
            _occurrences[key] += 1
            nth = _occurrences[key]
        basis = "|".join((dag_id, task_id, run_id, map_index, str(nth), fingerprint))
    return "af-" + hashlib.sha256(basis.encode()).hexdigest()[:24]


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


# --- transport outcomes


class _Transient(Exception):
    """A failure after which the request provably was not processed: safe to repeat."""

    def __init__(self, error: QikberryError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


class _Ambiguous(Exception):
    """The request may or may not have been processed (read timeout, reset after sending, 500/502/504)."""

    def __init__(self, error: QikberryError) -> None:
        super().__init__(error.message)
        self.error = error


def _never_reached_server(exc: BaseException) -> bool:
    """True when requests failed before the request could reach the server (nothing was sent)."""
    import requests
    from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (NewConnectionError, ConnectTimeoutError, NameResolutionError)):
            return True
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException) and id(reason) not in seen:
            current = reason
            continue
        args = getattr(current, "args", ())
        nested = next((a for a in args if isinstance(a, BaseException)), None)
        current = nested or current.__cause__ or current.__context__
    return False


def _quote_free(name: str) -> str:
    # A quote or line break in a filename would end the Content-Disposition header early.
    return re.sub(r'["\r\n\\]', "_", name)


class _MultipartStream(io.RawIOBase):
    """A multipart/form-data body read in blocks, so a large upload never sits in memory whole."""

    def __init__(
        self,
        fields: Mapping[str, str],
        file_field: str,
        filename: str,
        fileobj: IO[bytes],
        file_size: int,
        content_type: str,
    ) -> None:
        super().__init__()
        self.boundary = "qikberry-" + uuid.uuid4().hex
        head = io.BytesIO()
        for name, value in fields.items():
            head.write(
                f"--{self.boundary}\r\n"
                f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            )
        head.write(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
            f'filename="{_quote_free(filename)}"\r\nContent-Type: {content_type}\r\n\r\n'.encode()
        )
        self._parts: list[IO[bytes]] = [
            io.BytesIO(head.getvalue()),
            fileobj,
            io.BytesIO(f"\r\n--{self.boundary}--\r\n".encode()),
        ]
        self.len = len(head.getvalue()) + file_size + len(self._parts[2].getvalue())  # type: ignore[attr-defined]

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        out = bytearray()
        while self._parts and (size < 0 or len(out) < size):
            chunk = self._parts[0].read(-1 if size < 0 else size - len(out))
            if not chunk:
                self._parts.pop(0)
                continue
            out += chunk
        return bytes(out)

    def __len__(self) -> int:
        return int(self.len)


# --- the hook


class QikberryHook(BaseHook):
    """Talk to the Qikberry SMS API (MOBtexting v2): send, look up delivery status, check balance.

    The connection (conn type ``qikberry``) holds the access token in its password, the base URL in its
    host and defaults (sender, service, DLT entity id, default region, ...) in its extras. It is read
    lazily, on the first call, so DAG files parse without it.

    Sends never duplicate a message: every send carries a custom id, is retried only when the request was
    provably not processed, and an ambiguous outcome is resolved by looking the custom id up.

    Example::

        from airflow_qikberry.hooks.qikberry import QikberryHook

        hook = QikberryHook(qikberry_conn_id="qikberry_default")
        sent = hook.send_sms(["919876543210", "+44 7700 900123"], "Nightly load finished", sender="QIKBRY")
        for status in hook.get_status(message_id=sent[0].message_id):
            print(status.status, status.is_final)
        print(hook.get_balance(service="T")[0].credits)

    :param qikberry_conn_id: the Airflow connection to use.
    :param timeout: read timeout in seconds for every call (overrides the connection's ``timeout`` extra).
    :param max_attempts: attempts per call, first try included.
    :param retry_deadline: seconds after which a call stops retrying.
    :param max_retry_after: cap, in seconds, on how long a server's ``Retry-After`` may make us wait.
    :param reconcile_delay: seconds to wait after an ambiguous send before looking its custom id up.
    """

    conn_name_attr = "qikberry_conn_id"
    default_conn_name = "qikberry_default"
    conn_type = CONN_TYPE
    hook_name = "Qikberry"

    def __init__(
        self,
        qikberry_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        max_attempts: int = 5,
        retry_deadline: float = 120.0,
        max_retry_after: float = 60.0,
        reconcile_delay: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.qikberry_conn_id = qikberry_conn_id
        self.timeout_override = timeout
        self.max_attempts = max(1, max_attempts)
        self.retry_deadline = retry_deadline
        self.max_retry_after = max_retry_after
        self.reconcile_delay = reconcile_delay
        # Seams for tests: how the hook sleeps between retries (recorded instead of waited).
        self._sleep: Callable[[float], None] = time.sleep

    # -- connection and transport

    @cached_property
    def settings(self) -> ConnectionSettings:
        """The parsed connection; reading it also registers the token with Airflow's secrets masker."""
        from airflow.providers.common.compat.sdk import mask_secret

        conn = self.get_connection(self.qikberry_conn_id)
        if conn.password:
            mask_secret(conn.password)
        return ConnectionSettings.from_connection(conn)

    @cached_property
    def session(self) -> requests.Session:
        """One pooled keep-alive session per hook."""
        import requests
        from requests.adapters import HTTPAdapter

        session = requests.Session()
        # Retries are ours (they know which requests are safe to repeat); urllib3 must not repeat anything.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=16, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        # Without a JSON Accept header the API answers an auth failure with its HTML login page.
        session.headers.update(
            {"Accept": "application/json", "User-Agent": f"airflow-provider-qikberry/{__version__}"}
        )
        if self.settings.auth_in == "header":
            session.headers["Authorization"] = f"Bearer {self.settings.token}"
        # With trust_env on, requests re-reads proxy and CA-bundle variables from os.environ on every
        # request, which costs more than the rest of a send: read them once, here, with the same precedence.
        session.trust_env = False
        session.proxies.update(requests.utils.get_environ_proxies(self.settings.base_url))
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        session.verify = (bundle or True) if self.settings.verify_ssl else False
        return session

    @cached_property
    def _bucket(self) -> TokenBucket:
        from airflow_qikberry._ratelimit import bucket_for

        s = self.settings
        return bucket_for(s.base_url, s.token, s.rate_limit_per_minute)

    @property
    def _timeouts(self) -> tuple[float, float]:
        read = self.timeout_override or self.settings.timeout
        return (min(10.0, read), read)

    def get_conn(self) -> requests.Session:
        return self.session

    def close(self) -> None:
        if "session" in self.__dict__:
            self.session.close()
            del self.__dict__["session"]

    def __enter__(self) -> QikberryHook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _url(self, path: str) -> str:
        return self.settings.base_url + path

    def _params(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        out = {k: val for k, val in (params or {}).items() if val is not None}
        if self.settings.auth_in == "query":
            out["access_token"] = self.settings.token
        return out

    def _redact(self, text: str) -> str:
        return redact(text, self.settings.token)

    def _transport_error(self, exc: BaseException, what: str) -> QikberryServerError:
        # requests puts the full URL (query included) into its exception text: redact before it goes anywhere.
        return QikberryServerError(f"{what} failed: {type(exc).__name__}: {self._redact(str(exc))}")

    def _raw(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs["params"] = self._params(kwargs.get("params"))
        return self.session.request(method, self._url(path), timeout=self._timeouts, **kwargs)

    @staticmethod
    def _body_text(response: requests.Response) -> str:
        # Not response.text: without a charset requests runs charset detection, which costs milliseconds.
        return response.content.decode("utf-8", errors="replace")

    def _parse(self, response: requests.Response) -> ApiResponse:
        return parse_response(response.status_code, self._body_text(response), response.headers)

    def _error_of(self, response: requests.Response) -> QikberryError:
        text = self._body_text(response)
        return error_for(response.status_code, decode_body(text), response.headers, text=text)

    def _retrying(self) -> tenacity.Retrying:
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Transient),
            stop=tenacity.stop_after_attempt(self.max_attempts)
            | tenacity.stop_after_delay(self.retry_deadline),
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )

    # 0.5 s doubling up to 30 s, plus up to 0.5 s of jitter (spelled this way for tenacity 8 and 9 alike).
    _backoff = tenacity.wait_exponential(multiplier=0.5, max=30.0) + tenacity.wait_random(0, 0.5)

    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_retry_after)
        return float(self._backoff(retry_state))

    def _log_retry(self, retry_state: tenacity.RetryCallState) -> None:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
        self.log.warning(
            "Qikberry call not processed (%s); retrying in %.1f s (attempt %d of %d)",
            exc,
            wait,
            retry_state.attempt_number + 1,
            self.max_attempts,
        )

    def _run(self, attempt: Callable[[], T]) -> T:
        # Nearly every call succeeds at once: only a failure pays for tenacity's bookkeeping. The first
        # failure is replayed as tenacity's attempt 1 so its wait (and Retry-After) logic sees it.
        try:
            return attempt()
        except _Transient as exc:
            replay: list[_Transient] = [exc]

        def again() -> T:
            if replay:
                raise replay.pop()
            return attempt()

        try:
            for try_ in self._retrying():
                with try_:
                    return again()
        except _Transient as exc:
            raise exc.error from None
        raise AssertionError("tenacity returned without an outcome")  # pragma: no cover

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> ApiResponse:
        """GET, retried on connection errors, 429 (honouring Retry-After) and 5xx, within the rate budget."""
        import requests

        def attempt() -> ApiResponse:
            self._bucket.acquire()
            try:
                response = self._raw("GET", path, params=params)
            except requests.RequestException as exc:
                raise _Transient(self._transport_error(exc, f"GET {path}")) from None
            if response.status_code == 429 or response.status_code >= 500:
                error = self._error_of(response)
                raise _Transient(error, getattr(error, "retry_after", None))
            return self._parse(response)

        return self._run(attempt)

    def _post_send(
        self,
        path: str,
        *,
        parse: Callable[[ApiResponse], T],
        reconcile: Callable[[], T | None],
        on_unknown: Callable[[str], QikberryDeliveryUnknownError],
        body: Callable[[], dict[str, Any]],
        can_resend: Callable[[], bool] = lambda: True,
        task_retry: bool = False,
    ) -> T:
        """POST a send. Repeat it only when it provably was not processed; resolve ambiguity by lookup.

        On a retry of the Airflow task the send is first looked up by its (re-derived) custom id: if the
        earlier try's send was accepted, its rows are returned and nothing is posted.
        """
        import requests

        def lookup(failed_because: str) -> T | None:
            try:
                return reconcile()
            except QikberryDeliveryUnknownError:
                raise
            except QikberryError as lookup_error:
                raise on_unknown(
                    f"{failed_because} and the lookup failed ({lookup_error.message}). "
                    "Look the custom id up before sending again."
                ) from None

        if task_retry:
            earlier = lookup("This is a retry of the task, an earlier try may already have sent this")
            if earlier is not None:
                self.log.info("An earlier try of this task already sent this; not sending it again")
                return earlier

        def attempt() -> T:
            ambiguous: QikberryError
            try:
                # Built per attempt: a resent upload must reopen its file, not reuse a drained stream.
                response = self._raw("POST", path, **body())
            except requests.RequestException as exc:
                ambiguous = self._transport_error(exc, f"POST {path}")
                if _never_reached_server(exc):
                    raise _Transient(ambiguous) from None
            else:
                if response.status_code in (429, 503):
                    refused = self._error_of(response)
                    raise _Transient(refused, getattr(refused, "retry_after", None))
                if response.status_code not in (500, 502, 504):
                    return parse(self._parse(response))
                ambiguous = self._error_of(response)
            self.log.warning("Outcome of POST %s unknown (%s); looking it up by custom id", path, ambiguous)
            if self.reconcile_delay > 0:
                self._sleep(self.reconcile_delay)
            found = lookup(f"The send may or may not have been accepted ({ambiguous.message})")
            if found is not None:
                self.log.info("The API had accepted the send before the failure; not sending it again")
                return found
            if not can_resend():
                raise on_unknown(
                    f"The send failed ({ambiguous.message}), the API has no record of it, and the upload "
                    "cannot be read again to resend it."
                )
            self.log.info("The API has no record of the send; it is safe to send it again")
            raise _Transient(ambiguous)

        return self._run(attempt)

    # -- lookups by custom id (reconciliation and task-retry safety)

    def _accepted_for(self, custom_id: str, numbers: Sequence[str]) -> list[SentMessage] | None:
        """The rows of an earlier accepted send with this custom id, None if the API has none."""
        wanted = set(numbers)
        rows = [s for s in self.get_status(custom_id=custom_id) if s.mobile in wanted]
        if not rows:
            return None
        by_mobile = {row.mobile for row in rows}
        missing = [n for n in numbers if n not in by_mobile]
        if missing:
            raise QikberryDeliveryUnknownError(
                f"Custom id {custom_id} matches an earlier send to only some of the numbers; "
                "use a custom id unique to each send.",
                numbers=missing,
                custom_id=custom_id,
            )
        return [SentMessage.from_status(row) for row in rows]

    # -- public API

    def send_sms(
        self,
        to: str | Iterable[str],
        message: str,
        *,
        sender: str | None = None,
        service: str | None = None,
        template_id: str | None = None,
        entity_id: str | None = None,
        schedule_at: datetime | str | None = None,
        encoding: EncodingChoice = "auto",
        flash: bool = False,
        custom_id: str | None = None,
        webhook_id: str | None = None,
        max_units: int | None = None,
        tags: Sequence[str] | str | None = None,
    ) -> list[SentMessage]:
        """Send one text to one or more numbers (``sms/send``); returns one :class:`SentMessage` per number.

        Every argument is validated before any request. Numbers may be written in any common format; numbers
        without a country code need ``default_region`` on the connection.
        """
        s = self.settings
        numbers = v.normalize_numbers(to, default_region=s.default_region)
        if len(numbers) > _MAX_BATCH_NODES:
            raise QikberryValidationError(
                f"to: {len(numbers)} numbers; the API accepts at most {_MAX_BATCH_NODES} per request. "
                "Split the list or use upload_bulk.",
                field="to",
            )
        payload = self._common_payload(
            message=message,
            sender=sender,
            service=service,
            template_id=template_id,
            entity_id=entity_id,
            schedule_at=schedule_at,
            encoding=encoding,
            flash=flash,
            webhook_id=webhook_id,
            max_units=max_units,
            tags=tags,
        )
        identity = _task_identity()
        cid = v.validate_custom_id(custom_id) or derive_custom_id(
            _fingerprint("send_sms", numbers, sorted(payload.items())), identity
        )
        payload["to"] = ",".join(numbers)
        payload["custom"] = cid
        self.log.info(
            "Sending SMS to %d number(s) [%s] via service %s, custom id %s",
            len(numbers),
            ", ".join(v.mask_number(n) for n in numbers[:5]) + (", ..." if len(numbers) > 5 else ""),
            payload["service"],
            cid,
        )

        def parse(response: ApiResponse) -> list[SentMessage]:
            rows = response.data if isinstance(response.data, list) else []
            sent = [SentMessage.from_api(row) for row in rows]
            if len(sent) != len(numbers):
                self.log.warning(
                    "Sent to %d number(s) but the API returned %d row(s)", len(numbers), len(sent)
                )
            return sent

        return self._post_send(
            Paths.SEND,
            body=lambda: {"json": payload},
            parse=parse,
            reconcile=lambda: self._accepted_for(cid, numbers),
            on_unknown=lambda msg: QikberryDeliveryUnknownError(msg, numbers=numbers, custom_id=cid),
            task_retry=_is_task_retry(identity),
        )

    def _common_payload(
        self,
        *,
        message: str | None,
        sender: str | None,
        service: str | None,
        template_id: str | None,
        entity_id: str | None,
        schedule_at: datetime | str | None,
        encoding: EncodingChoice,
        flash: bool,
        webhook_id: str | None,
        max_units: int | None,
        tags: Sequence[str] | str | None,
        require_message: bool = True,
    ) -> dict[str, Any]:
        s = self.settings
        service_value = v.validate_service(service or s.service)
        payload: dict[str, Any] = {
            "sender": v.validate_sender(sender or s.sender, service=service_value),
            "service": service_value,
        }
        if message is not None or require_message:
            length = v.validate_message(message or "", encoding=encoding, max_units=max_units)
            payload["message"] = message
            payload["type"] = _API_TYPE[length.encoding]
        elif encoding != "auto":
            payload["type"] = _API_TYPE[encoding]
        if max_units is not None:
            payload["max_units"] = max_units
        ids = {
            "template_id": v.validate_dlt_id(template_id, field="template_id"),
            "entity_id": v.validate_dlt_id(entity_id or s.entity_id, field="entity_id"),
        }
        payload.update({k: val for k, val in ids.items() if val})
        when = v.validate_schedule(schedule_at)
        if when:
            payload["time"] = when
        if flash:
            payload["flash"] = 1
        if webhook_id:
            payload["webhook_id"] = str(webhook_id)
        tag_list = v.validate_tags(tags)
        if tag_list:
            payload["tags"] = tag_list
        return payload

    def send_batch(
        self,
        nodes: Sequence[Mapping[str, Any]],
        *,
        name: str | None = None,
        message: str | None = None,
        sender: str | None = None,
        service: str | None = None,
        template_id: str | None = None,
        entity_id: str | None = None,
        schedule_at: datetime | str | None = None,
        encoding: EncodingChoice = "auto",
        flash: bool = False,
        webhook_id: str | None = None,
        max_units: int | None = None,
        tags: Sequence[str] | str | None = None,
    ) -> BatchResult:
        """Send per-recipient texts in one request (``sms/send/json``).

        Each node is a mapping with ``to`` (one number) and optionally ``message``, ``sender``,
        ``template_id`` and ``custom_id``; the keyword arguments are the defaults for every node (``root``).
        ``service``, ``schedule_at`` and ``webhook_id`` apply to the whole batch. With ``name`` the API groups
        the batch as a campaign and returns its ``group_id``.

        Example::

            result = hook.send_batch(
                [{"to": "919876543210", "message": "Hi Asha"}, {"to": "919876543211", "message": "Hi Ravi"}],
                name="welcome-2026-11",
                sender="QIKBRY",
            )
            result.group_id, result.accepted
        """
        s = self.settings
        if not nodes:
            raise QikberryValidationError("nodes is empty: give at least one recipient.", field="nodes")
        if len(nodes) > _MAX_BATCH_NODES:
            raise QikberryValidationError(
                f"nodes has {len(nodes)} entries; the API accepts at most {_MAX_BATCH_NODES} per request. "
                "Split the batch.",
                field="nodes",
            )
        root = self._common_payload(
            message=message,
            sender=sender,
            service=service,
            template_id=template_id,
            entity_id=entity_id,
            schedule_at=schedule_at,
            encoding=encoding,
            flash=flash,
            webhook_id=webhook_id,
            max_units=max_units,
            tags=tags,
            require_message=False,
        )
        if name is not None:
            if not str(name).strip():
                raise QikberryValidationError("name must not be blank.", field="name")
            root["name"] = str(name)
        api_nodes, numbers, given_ids = [], [], []
        for i, node in enumerate(nodes):
            field_prefix = f"nodes[{i}]"
            if not isinstance(node, Mapping) or "to" not in node:
                raise QikberryValidationError(
                    f"{field_prefix} needs a 'to' number.", field=f"{field_prefix}.to"
                )
            found = v.normalize_numbers(
                node["to"], default_region=s.default_region, field=f"{field_prefix}.to"
            )
            if len(found) != 1:
                raise QikberryValidationError(
                    f"{field_prefix}.to must be exactly one number; use one node per recipient.",
                    field=f"{field_prefix}.to",
                )
            text = node.get("message", message)
            if text is None:
                raise QikberryValidationError(
                    f"{field_prefix} has no message and no default message was given.",
                    field=f"{field_prefix}.message",
                )
            v.validate_message(text, encoding=encoding, max_units=max_units, field=f"{field_prefix}.message")
            api_node: dict[str, Any] = {"to": found[0]}
            if "message" in node:
                api_node["message"] = text
            if node.get("sender"):
                api_node["sender"] = v.validate_sender(
                    node["sender"], service=root["service"], field=f"{field_prefix}.sender"
                )
            if node.get("template_id"):
                api_node["template_id"] = v.validate_dlt_id(
                    node["template_id"], field=f"{field_prefix}.template_id"
                )
            given = node.get("custom_id", node.get("custom"))
            given_ids.append(
                v.validate_custom_id(given, field=f"{field_prefix}.custom_id") if given else None
            )
            numbers.append(found[0])
            api_nodes.append(api_node)
        explicit = [c for c in given_ids if c]
        if len(set(explicit)) != len(explicit):
            raise QikberryValidationError(
                "nodes carry duplicate custom ids; each must be unique.", field="nodes"
            )
        identity = _task_identity()
        base = derive_custom_id(_fingerprint("send_batch", api_nodes, sorted(root.items())), identity)
        cids = [given or f"{base}-{i + 1}" for i, given in enumerate(given_ids)]
        for api_node, cid in zip(api_nodes, cids, strict=True):
            api_node["custom"] = cid
        self.log.info(
            "Sending a batch of %d message(s) via service %s%s",
            len(api_nodes),
            root["service"],
            f" as campaign {name!r}" if name else "",
        )

        def reconcile() -> BatchResult | None:
            first = self.get_status(custom_id=cids[0])
            if not first:
                return None
            group = first[0].group_id
            if group is None:
                return None
            wanted = set(cids)
            rows = [r for r in self.iter_group_status(group) if r.custom_id in wanted]
            if len(rows) != len(cids):
                raise QikberryDeliveryUnknownError(
                    f"Batch {group} holds {len(rows)} of the {len(cids)} messages sent.",
                    numbers=numbers,
                    custom_id=cids[0],
                )
            return BatchResult(group_id=group, messages=tuple(SentMessage.from_status(r) for r in rows))

        def parse(response: ApiResponse) -> BatchResult:
            rows = response.data if isinstance(response.data, list) else []
            sent = tuple(SentMessage.from_api(row) for row in rows)
            group = response.body.get("group_id") or (sent[0].group_id if sent else None)
            return BatchResult(group_id=str(group) if group else None, messages=sent)

        return self._post_send(
            Paths.SEND_JSON,
            body=lambda: {"json": {"root": root, "nodes": api_nodes}},
            parse=parse,
            reconcile=reconcile,
            on_unknown=lambda msg: QikberryDeliveryUnknownError(msg, numbers=numbers, custom_id=cids[0]),
            task_retry=_is_task_retry(identity),
        )

    def upload_bulk(
        self,
        file: str | os.PathLike[str] | IO[bytes],
        message: str,
        *,
        column: str | None = None,
        sender: str | None = None,
        service: str | None = None,
        template_id: str | None = None,
        entity_id: str | None = None,
        schedule_at: datetime | str | None = None,
        encoding: EncodingChoice = "auto",
        flash: bool = False,
        custom_id: str | None = None,
        webhook_id: str | None = None,
        max_units: int | None = None,
        filename: str | None = None,
    ) -> int:
        """Send one text to every number in a TXT/CSV file (``sms/bulk``); returns the accepted count.

        The file is streamed from disk in blocks, never read into memory whole. ``column`` names the CSV
        column holding the numbers. Numbers inside the file are checked by the API, not here (the file is
        not read twice); rows it rejects are not counted.

        Example::

            accepted = hook.upload_bulk("/data/customers.csv", "Sale ends tonight", column="mobile")
        """
        payload = self._common_payload(
            message=message,
            sender=sender,
            service=service,
            template_id=template_id,
            entity_id=entity_id,
            schedule_at=schedule_at,
            encoding=encoding,
            flash=flash,
            webhook_id=webhook_id,
            max_units=max_units,
            tags=None,
        )
        if column is not None:
            if not str(column).strip():
                raise QikberryValidationError("column must not be blank.", field="column")
            payload["column"] = str(column)
        opener, size, name = _bulk_source(file, filename)
        if size is not None and size > _MAX_BULK_BYTES:
            raise QikberryValidationError(
                f"file is {size} bytes; the API accepts at most {_MAX_BULK_BYTES} (200 MB). Split it.",
                field="file",
            )
        if column is not None and name.lower().endswith(".csv") and _reopenable(file):
            _check_csv_column(opener, str(column), owned=not hasattr(file, "read"))
        identity = _task_identity()
        cid = v.validate_custom_id(custom_id) or derive_custom_id(
            _fingerprint("upload_bulk", name, size, sorted(payload.items())), identity
        )
        payload["custom"] = cid
        fields = {k: (",".join(val) if isinstance(val, list) else str(val)) for k, val in payload.items()}
        content_type = "text/csv" if name.lower().endswith(".csv") else "text/plain"
        self.log.info("Uploading %s (%s bytes) for a bulk send, custom id %s", name, size, cid)
        handles: list[IO[bytes]] = []

        def reconcile() -> int | None:
            rows = self.get_status(custom_id=cid)
            return len(rows) or None

        def attempt_body() -> dict[str, Any]:
            handle = opener()
            handles.append(handle)
            body_size = size if size is not None else _remaining(handle)
            stream = _MultipartStream(fields, "file", name, handle, body_size, content_type)
            return {"data": stream, "headers": {"Content-Type": stream.content_type}}

        def parse(response: ApiResponse) -> int:
            match = re.match(r"\s*(\d+)", response.message)
            return int(match.group(1)) if match else 0

        try:
            return self._post_send(
                Paths.BULK,
                body=attempt_body,
                parse=parse,
                reconcile=reconcile,
                on_unknown=lambda msg: QikberryDeliveryUnknownError(msg, custom_id=cid),
                can_resend=lambda: _reopenable(file),
                task_retry=_is_task_retry(identity),
            )
        finally:
            for handle in handles:
                if handle is not file:
                    handle.close()

    def get_status(
        self,
        *,
        message_id: str | None = None,
        custom_id: str | None = None,
        mobile: str | None = None,
    ) -> list[MessageStatus]:
        """Delivery status by message id, custom id and/or number (``sms/status``); combined keys AND."""
        if not (message_id or custom_id or mobile):
            raise QikberryValidationError(
                "get_status needs message_id, custom_id or mobile.", field="message_id"
            )
        params = {
            "id": message_id or None,
            "cid": custom_id or None,
            "mobile": v.normalize_number(mobile, default_region=self.settings.default_region, field="mobile")
            if mobile
            else None,
        }
        response = self._get(Paths.STATUS, params)
        rows = response.data if isinstance(response.data, list) else []
        return [MessageStatus.from_api(row) for row in rows if isinstance(row, Mapping)]

    def iter_group_status(self, group_id: str) -> Iterator[MessageStatus]:
        """Every message of a request or campaign, walking the API's 100-row pages lazily."""
        if not group_id or not str(group_id).strip():
            raise QikberryValidationError("group_id must not be empty.", field="group_id")
        page = 1
        while True:
            response = self._get(Paths.STATUS, {"group_id": group_id, "page": page})
            rows = response.data if isinstance(response.data, list) else []
            for row in rows:
                if isinstance(row, Mapping):
                    yield MessageStatus.from_api(row)
            meta = response.body.get("meta") or {}
            last = meta.get("last_page") if isinstance(meta, Mapping) else None
            links = response.body.get("links") or {}
            has_next = bool(links.get("next")) if isinstance(links, Mapping) else False
            if not rows or (isinstance(last, int) and page >= last) or (last is None and not has_next):
                return
            page += 1

    def get_balance(self, service: str | None = None) -> list[Balance]:
        """Credits per service (``finance/balance``; falls back to the legacy ``account/balance``)."""
        wanted = v.validate_service(service) if service is not None else None
        params = {"service": wanted} if wanted else None
        try:
            response = self._get(Paths.BALANCE, params)
        except QikberryValidationError as exc:
            if exc.status_code != 404:
                raise
            response = self._get(Paths.BALANCE_LEGACY, params)
        rows = response.data if isinstance(response.data, list) else []
        balances = [Balance.from_api(row) for row in rows if isinstance(row, Mapping)]
        return [b for b in balances if wanted is None or b.service == wanted]

    def test_connection(self) -> tuple[bool, str]:
        """Check the token with ``auth/me``: never sends, never spends."""
        try:
            response = self._get(Paths.AUTH_ME)
        except QikberryError as exc:
            return False, self._redact(str(exc))
        except Exception as exc:
            token = self.__dict__.get("settings")
            return False, redact(f"{type(exc).__name__}: {exc}", token.token if token else "")
        data = response.data if isinstance(response.data, Mapping) else {}
        who = data.get("username") or data.get("name") or data.get("email")
        return True, f"Connected to {self.settings.base_url}" + (f" as {who}" if who else "")

    # -- connection form (Airflow < 3.2; newer versions read conn-fields from provider info)

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """WTForms widgets built from the same ``CONN_FIELDS`` the declarative form uses."""
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import BooleanField, IntegerField, StringField
        from wtforms.validators import NumberRange, Optional

        widgets: dict[str, Any] = {}
        for name, spec in CONN_FIELDS.items():
            types = spec["schema"]["type"]
            types = types if isinstance(types, list) else [types]
            label = lazy_gettext(spec["label"])
            description = spec.get("description", "")
            if "boolean" in types:
                widgets[name] = BooleanField(
                    label, description=description, default=spec["schema"].get("default")
                )
            elif "integer" in types or "number" in types:
                widgets[name] = IntegerField(
                    label,
                    validators=[Optional(), NumberRange(min=spec["schema"].get("minimum", 0))],
                    widget=BS3TextFieldWidget(),
                    description=description,
                    default=spec["schema"].get("default"),
                )
            else:
                widgets[name] = StringField(label, widget=BS3TextFieldWidget(), description=description)
        return widgets

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {key.replace("-", "_"): value for key, value in UI_FIELD_BEHAVIOUR.items()}


def _bulk_source(
    file: str | os.PathLike[str] | IO[bytes], filename: str | None
) -> tuple[Callable[[], IO[bytes]], int | None, str]:
    if isinstance(file, (str, os.PathLike)):
        path = Path(file)
        if not path.is_file():
            raise QikberryValidationError(
                f"file {str(path)!r} does not exist or is not a file.", field="file"
            )
        return (lambda: path.open("rb")), path.stat().st_size, filename or path.name
    if not hasattr(file, "read"):
        raise QikberryValidationError("file must be a path or a binary file object.", field="file")
    name = filename or Path(str(getattr(file, "name", "numbers.txt"))).name
    start = file.tell() if file.seekable() else None

    def reopen() -> IO[bytes]:
        if start is not None:
            file.seek(start)
        return file

    size = _remaining(file) if start is not None else None
    return reopen, size, name


def _remaining(handle: IO[bytes]) -> int:
    here = handle.tell()
    end = handle.seek(0, os.SEEK_END)
    handle.seek(here)
    return end - here


def _reopenable(file: str | os.PathLike[str] | IO[bytes]) -> bool:
    return isinstance(file, (str, os.PathLike)) or bool(getattr(file, "seekable", lambda: False)())


def _check_csv_column(opener: Callable[[], IO[bytes]], column: str, *, owned: bool) -> None:
    import csv

    handle = opener()
    try:
        header_line = handle.readline(65536).decode("utf-8-sig", errors="replace")
    finally:
        if owned:
            handle.close()
    header = [h.strip() for h in next(csv.reader([header_line]), [])]
    if column not in header:
        raise QikberryValidationError(
            f"column {column!r} is not in the CSV header {header!r}.", field="column"
        )
