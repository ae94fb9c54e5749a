"""
What the sync and the async Qikberry hook share: their connection, their call settings and their clock.

:class:`QikberryBaseHook` holds the keyword arguments both hooks take (timeout, attempts, deadline,
``Retry-After`` cap, clock), builds the one :class:`~airflow_qikberry.transport.retry.RetryPolicy` their
transports use, and turns an Airflow connection into
:class:`~airflow_qikberry.connection.ConnectionSettings` with the token registered with the secrets masker
first. How each hook fetches the connection (blocking, or with common.compat's async helper) and fits the
deadline to it is its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict

from airflow.providers.common.compat.sdk import BaseHook, mask_secret

from airflow_qikberry.clock import SYSTEM_CLOCK, Clock
from airflow_qikberry.exceptions import QikberryValidationError
from airflow_qikberry.get_provider_info import CONN_TYPE
from airflow_qikberry.transport.retry import DEFAULT_RETRY_DEADLINE, RetryPolicy

if TYPE_CHECKING:
    from airflow_qikberry.connection import ConnectionSettings

__all__ = ["HookArgs", "QikberryBaseHook", "positive_seconds"]


class HookArgs(TypedDict, total=False):
    """The keyword arguments both hooks take (see :class:`QikberryBaseHook`), typed once."""

    timeout: float | None
    max_attempts: int
    retry_deadline: float | None
    max_retry_after: float
    clock: Clock
    logger_name: str | None


class QikberryBaseHook(BaseHook):
    """
    The connection and call settings of a Qikberry hook (use :class:`QikberryHook` or its async twin).

    Example::

        class MyHook(QikberryBaseHook):
            def settings(self) -> ConnectionSettings:
                return self.settings_from(self.get_connection(self.qikberry_conn_id))

    :param qikberry_conn_id: the Airflow connection to use.
    :param timeout: read timeout in seconds for every call (overrides the connection's ``timeout`` extra).
    :param max_attempts: attempts per call, first try included.
    :param retry_deadline: seconds that bound a whole call, waits included (default: the connection's
        ``retry_deadline`` extra, else derived; each hook says how).
    :param max_retry_after: cap, in seconds, on how long a server's ``Retry-After`` may make us wait.
    :param clock: how the hook reads time and waits (default: the real clock; see
        :mod:`airflow_qikberry.clock`).
    """

    conn_name_attr = "qikberry_conn_id"
    default_conn_name = "qikberry_default"
    conn_type = CONN_TYPE

    def __init__(
        self,
        qikberry_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        max_attempts: int = 5,
        retry_deadline: float | None = None,
        max_retry_after: float = 60.0,
        clock: Clock = SYSTEM_CLOCK,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.qikberry_conn_id = qikberry_conn_id
        self.timeout_override = timeout
        self.retry_deadline_override = positive_seconds(retry_deadline, "retry_deadline")
        # The deadline is set again when the connection is read: it may come from the connection.
        self.policy = RetryPolicy(
            max_attempts=max_attempts,
            deadline=retry_deadline or DEFAULT_RETRY_DEADLINE,
            max_retry_after=max_retry_after,
            log=self.log,
            clock=clock,
        )

    @staticmethod
    def settings_from(conn: Any) -> ConnectionSettings:
        """Return the connection parsed and checked, its token registered with the secrets masker first."""
        # Imported here, not at the top: with the wire format it brings (protocol, phone, validation) it would
        # add about 5 ms to every DAG parse that imports a hook (bench/import_cost.py).
        from airflow_qikberry.connection import ConnectionSettings

        if conn.password:
            mask_secret(conn.password)
        return ConnectionSettings.from_connection(conn)


def positive_seconds(value: float | None, name: str) -> float | None:
    """Return ``value`` when it is None or a positive number of seconds, else raise a typed error."""
    if value is not None and not value > 0:
        raise QikberryValidationError(
            f"{name} must be a positive number of seconds, got {value!r}.", field=name
        )
    return value
