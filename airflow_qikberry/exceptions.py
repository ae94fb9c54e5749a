"""
Typed errors raised by the Qikberry provider.

Every error carries the HTTP ``status_code`` (``None`` for client-side checks and transport failures) and the
API's human-readable ``message``. The mapping from responses to these classes lives in
:mod:`airflow_qikberry.protocol`, nowhere else.

Example::

    from airflow_qikberry.exceptions import QikberryRateLimitError, QikberryValidationError

    try:
        hook.send_sms("919876543210", text)
    except QikberryValidationError as err:
        print(err.field, err.message)
    except QikberryRateLimitError as err:
        print("retry in", err.retry_after, "s")
"""

from __future__ import annotations

from collections.abc import Sequence

from airflow.providers.common.compat.sdk import AirflowException

__all__ = [
    "QikberryAuthError",
    "QikberryConnectionError",
    "QikberryCustomIdReusedError",
    "QikberryDeliveryUnknownError",
    "QikberryDltCheckUnavailableError",
    "QikberryDltMismatchError",
    "QikberryError",
    "QikberryInsufficientBalanceError",
    "QikberryPartialSendError",
    "QikberryRateLimitError",
    "QikberryRowsNotSentError",
    "QikberryServerError",
    "QikberrySourceChangedError",
    "QikberryValidationError",
]


class QikberryError(AirflowException):
    """Base class of every error raised by this provider."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        self.message = message
        # AirflowException declares a class-level HTTPStatus; ours is the API's status (None: no response).
        self.status_code = status_code  # type: ignore[assignment]
        prefix = f"[HTTP {status_code}] " if status_code is not None else ""
        super().__init__(f"{prefix}{message}")

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only constructors break default pickling (Airflow pickles exceptions across processes).
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[QikberryError], state: dict[str, object]) -> QikberryError:
    err = cls.__new__(cls)
    Exception.__init__(err, str(state.get("message", "")))
    err.__dict__.update(state)
    return err


class QikberryAuthError(QikberryError):
    """The token is missing, invalid, expired or not allowed (HTTP 401/403, or the portal login page)."""


class QikberryValidationError(QikberryError):
    """
    A request was rejected as invalid, by a client-side check or by the API (HTTP 400/422).

    ``field`` names the offending parameter when known; ``errors`` holds the API's per-field messages.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        status_code: int | None = None,
        errors: dict[str, list[str]] | None = None,
    ) -> None:
        self.field = field
        self.errors = dict(errors or {})
        super().__init__(message, status_code=status_code)


class QikberryDltMismatchError(QikberryValidationError):
    """
    The DLT pre-check found a text that its registered template would not let through.

    The network would accept it, charge it and then reject it (``status``: ``DLT-REJECTED``,
    ``DLT-TM-VAR-EXECEED``, ``DLT-SENDER-NOT-REG-TM``, ...). Nothing was sent. ``template_id`` is the DLT
    template id, ``detail`` says what differs, ``field`` where (``message``, ``nodes[3].message``,
    ``sender``), and ``count`` how many texts of the send failed the check.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        template_id: str | None = None,
        status: str = "DLT-REJECTED",
        detail: str = "",
        count: int = 1,
    ) -> None:
        self.template_id = template_id
        self.status = status
        self.detail = detail
        self.count = count
        super().__init__(message, field=field)


class QikberryDltCheckUnavailableError(QikberryValidationError):
    """
    ``dlt_check="required"``, and the DLT pre-check could not run.

    The template is not among the account's, or the account may not read ``sms/templates``. Nothing was
    sent.
    """


class QikberrySourceChangedError(QikberryValidationError):
    """
    A retried campaign's source object is not the one an earlier try read and sent part of.

    ``changes`` maps each differing property (``size``, ``etag``, ``version_id``, ``modified``, ``sha256``)
    to ``(earlier, now)``. Nothing was sent in the try that raises it.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        changes: dict[str, tuple[object, object]] | None = None,
    ) -> None:
        self.changes = dict(changes or {})
        super().__init__(message, field=field)


class QikberryInsufficientBalanceError(QikberryError):
    """The account does not have enough credits for the send."""


class QikberryRateLimitError(QikberryError):
    """HTTP 429. ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one."""

    def __init__(
        self, message: str, *, status_code: int | None = 429, retry_after: float | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, status_code=status_code)


class QikberryServerError(QikberryError):
    """HTTP 5xx, or a response the provider could not understand."""


class QikberryConnectionError(QikberryServerError):
    """
    No usable HTTP exchange took place: refused or dropped connection, timeout, TLS or URL problem.

    ``retryable`` is False for problems that cannot heal by themselves (TLS verification, an invalid or
    schema-less URL): those fail at once, with the fix in the message.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        self.retryable = retryable
        super().__init__(message)


class QikberryDeliveryUnknownError(QikberryError):
    """
    A send may or may not have been accepted, and the provider could not find out which.

    Do not blindly resend: look the messages up by ``custom_id`` first. ``numbers`` lists the recipients whose
    fate is unknown (normalised, country code + digits).
    """

    def __init__(
        self,
        message: str,
        *,
        numbers: Sequence[str] = (),
        custom_id: str | None = None,
        status_code: int | None = None,
    ) -> None:
        self.numbers = list(numbers)
        self.custom_id = custom_id
        super().__init__(message, status_code=status_code)


class QikberryCustomIdReusedError(QikberryDeliveryUnknownError):
    """
    A custom id given to this call already names messages submitted before the call began.

    A caller's ``custom_id`` is an idempotency key: one id, one send. When a lookup finds rows for it that
    are older than this call, they belong to an earlier send, so they cannot be returned as this call's
    result, and whether this call's own request was accepted is unknown. Use a fresh custom id per send.
    """


class QikberryPartialSendError(QikberryDeliveryUnknownError):
    """
    The API accepted only some messages of a send.

    It answered for part of the numbers, and the others were still absent from ``sms/status`` when the
    reconcile window closed, so they were not accepted (a number that opted out or is blocked is left out this
    way). They are not sent again automatically.

    ``accepted`` holds the rows of the messages that were accepted (``SentMessage``), ``group_id`` their
    request's group; ``numbers`` and ``missing_custom_ids`` name the messages that were not accepted.
    """

    def __init__(
        self,
        message: str,
        *,
        numbers: Sequence[str] = (),
        custom_id: str | None = None,
        accepted: Sequence[object] = (),
        group_id: str | None = None,
        missing_custom_ids: Sequence[str] = (),
    ) -> None:
        self.accepted = list(accepted)
        self.group_id = group_id
        self.missing_custom_ids = list(missing_custom_ids)
        super().__init__(message, numbers=numbers, custom_id=custom_id)


class QikberryRowsNotSentError(QikberryError):
    """
    A campaign sent everything it could, but more rows than ``max_invalid_ratio`` allows were not sent.

    Rejected before sending, or refused or left out by the API. ``summary`` is the campaign's summary (the
    XCom it would have returned), with the rows not sent counted and listed (numbers masked).
    """

    def __init__(self, message: str, *, summary: dict[str, object] | None = None) -> None:
        self.summary = dict(summary or {})
        super().__init__(message)
