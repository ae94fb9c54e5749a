"""
What both transports share.

Their settings, retry policy and budgets (:class:`Transport`), what they hand back (a raw response, or a
failure that says whether the request was sent), and the log filter that keeps query-string tokens out of HTTP
libraries' logs.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Literal, NamedTuple, TypeVar

from airflow_qikberry import __version__, ratelimit
from airflow_qikberry.exceptions import QikberryConnectionError, QikberryError
from airflow_qikberry.protocol import ApiResponse, classify, decode_body, error_for, parse_response, redact
from airflow_qikberry.transport.retry import Retry

if TYPE_CHECKING:
    from airflow_qikberry.connection import ConnectionSettings
    from airflow_qikberry.ratelimit import Budget
    from airflow_qikberry.transport.retry import RetryPolicy

__all__ = [
    "USER_AGENT",
    "FailureKind",
    "RawResponse",
    "Transport",
    "TransportFailure",
    "caused_by",
    "failure",
    "get_answered",
    "get_failed",
    "install_log_filter",
]

#: How both transports introduce themselves to the API.
USER_AGENT = f"airflow-provider-qikberry/{__version__}"

TransportT = TypeVar("TransportT", bound="Transport")

# not_sent: the request provably never reached the server (safe to repeat, even a send).
# ambiguous: it may have been processed (read timeout, connection dropped after sending).
# fatal: repeating cannot help (TLS verification, invalid URL).
FailureKind = Literal["not_sent", "ambiguous", "fatal"]


class RawResponse(NamedTuple):
    """An HTTP answer as a transport hands it over: status, text and headers, not yet interpreted."""

    status_code: int
    text: str
    headers: Mapping[str, str]

    def parse(self) -> ApiResponse:
        """Return the parsed success envelope, or the typed error this response stands for."""
        return parse_response(self.status_code, self.text, self.headers)

    def error(self) -> QikberryError:
        return error_for(self.status_code, decode_body(self.text), self.headers, text=self.text)


class TransportFailure(Exception):
    """No HTTP answer. ``error`` is the (redacted) typed error to raise if nothing else works."""

    def __init__(self, kind: FailureKind, error: QikberryConnectionError) -> None:
        super().__init__(error.message)
        self.kind = kind
        self.error = error


class Transport:
    """
    What both transports hold.

    The connection's settings, the retry policy and the budget every request draws from (default: the token's
    process-wide GET budget). ``hold``, when set, is told the wait of each 429 (see :meth:`for_polls`).

    Example::

        transport = RequestsTransport(settings, policy=RetryPolicy())
        polls = transport.for_polls()  # same session and policy, within the poll budget too
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        policy: RetryPolicy,
        bucket: Budget | None = None,
        hold: Callable[[float], None] | None = None,
        timeout: float | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.bucket: Budget = bucket or ratelimit.GET_BUDGETS.bucket(
            settings.base_url, settings.token, settings.rate_limit_per_minute
        )
        self.hold = hold
        self.read_timeout = timeout or settings.timeout
        self.connect_timeout = min(10.0, self.read_timeout)

    def _open_pool(self) -> None:
        """Create the connection pool now, so that :meth:`for_polls` shares it (each transport overrides)."""

    def for_polls(self: TransportT) -> TransportT:
        """
        Return this transport for delivery polls.

        The same settings, retry policy and connection pool (closed with this transport), drawing from the
        token's GET budget and its poll budget (``poll_budget_per_minute``) both; a 429 holds the poll budget
        of the whole process for its wait, so that every sensor and trigger of the token waits it out together
        instead of each spending a call to meet the same 429.
        """
        s = self.settings
        poll = ratelimit.POLL_BUDGETS.bucket(s.base_url, s.token, s.poll_budget_per_minute)
        self._open_pool()
        polls = copy.copy(self)
        polls.bucket = ratelimit.BucketChain(
            ratelimit.GET_BUDGETS.bucket(s.base_url, s.token, s.rate_limit_per_minute), poll
        )
        polls.hold = poll.hold
        return polls


def get_failed(exc: TransportFailure) -> Exception:
    """Return what a GET that got no answer raises: the error when it cannot heal, else a :class:`Retry`."""
    return exc.error if exc.kind == "fatal" else Retry(exc.error)


def get_answered(raw: RawResponse) -> ApiResponse:
    """Return what a GET's answer means: the body, a :class:`Retry` (408, 429, 5xx) or a typed error."""
    if classify("GET", raw.status_code) == "retry":
        error = raw.error()
        raise Retry(error, getattr(error, "retry_after", None))
    return raw.parse()


def failure(kind: FailureKind, what: str, exc: BaseException, token: str, hint: str = "") -> TransportFailure:
    # Both HTTP libraries put the full URL (query included) into their exception text: redact it first.
    text = redact(f"{what} failed: {type(exc).__name__}: {exc}", token)
    if hint:
        text += f" ({hint})"
    return TransportFailure(kind, QikberryConnectionError(text, retryable=kind != "fatal"))


def caused_by(exc: BaseException, types: tuple[type[BaseException], ...]) -> bool:
    """Return True when ``exc`` or anything in its cause/context/reason/args chain is one of ``types``."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, types):
            return True
        reason = getattr(current, "reason", None)
        nested = [reason, current.__cause__, current.__context__, *getattr(current, "args", ())]
        stack.extend(n for n in nested if isinstance(n, BaseException))
    return False


class _RedactQueryTokens(logging.Filter):
    """HTTP libraries log request URLs (with their query string) at DEBUG: keep query-mode tokens out."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(a) for a in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {k: _redacted(a) for k, a in record.args.items()}
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def _redacted(arg: object) -> object:
    # Not only strings: httpx logs its URL objects, whose str() carries the query string.
    if arg is None or isinstance(arg, (int, float, bool)):
        return arg
    text = str(arg)
    clean = redact(text)
    return clean if clean != text else arg


_FILTER = _RedactQueryTokens()


def install_log_filter(logger_name: str) -> None:
    """Attach the redacting filter to a library logger once (called when a transport is created)."""
    logger = logging.getLogger(logger_name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
