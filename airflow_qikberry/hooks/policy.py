"""The retry settings of :class:`~airflow_qikberry.hooks.qikberry.QikberryHook` as attributes
(``max_attempts``, ``retry_deadline``, ``max_retry_after``), all kept in the hook's
:class:`~airflow_qikberry.transport.retry.RetryPolicy`. Kept apart so the hook module stays small.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from airflow_qikberry.exceptions import QikberryValidationError

if TYPE_CHECKING:
    from airflow_qikberry.connection import ConnectionSettings
    from airflow_qikberry.transport.retry import RetryPolicy

__all__ = ["RetrySettingsMixin", "positive_or_none"]


class RetrySettingsMixin:
    """The hook's retry settings, read and set through its policy.

    Example::

        hook = QikberryHook(max_attempts=3)
        hook.retry_deadline = 300  # checked against the connection's reconcile window and timeout
        hook.max_attempts, hook.retry_deadline
    """

    if TYPE_CHECKING:
        policy: RetryPolicy
        retry_deadline_override: float | None

        @property
        def settings(self) -> ConnectionSettings: ...

        def _fit_to(self, s: ConnectionSettings) -> None: ...

    @property
    def max_attempts(self) -> int:
        return self.policy.max_attempts

    @max_attempts.setter
    def max_attempts(self, value: int) -> None:
        self.policy.max_attempts = max(1, value)

    @property
    def retry_deadline(self) -> float:
        """The deadline of each call, fitted to the connection (reading it, like :attr:`reconcile_window`)."""
        _ = self.settings
        return self.policy.deadline

    @retry_deadline.setter
    def retry_deadline(self, value: float) -> None:
        self.retry_deadline_override = positive_or_none(value, "retry_deadline")
        if "settings" in self.__dict__:
            self._fit_to(self.settings)
        else:
            self.policy.deadline = value

    @property
    def max_retry_after(self) -> float:
        return self.policy.max_retry_after

    @max_retry_after.setter
    def max_retry_after(self, value: float) -> None:
        self.policy.max_retry_after = value

    @property
    def _sleep(self) -> Callable[[float], None]:
        """How the hook waits (retries, lookups); tests replace it to record waits instead."""
        return self.policy.sleep

    @_sleep.setter
    def _sleep(self, sleep: Callable[[float], None]) -> None:
        self.policy.sleep = sleep


def positive_or_none(value: float | None, name: str) -> float | None:
    if value is not None and not value > 0:
        raise QikberryValidationError(
            f"{name} must be a positive number of seconds, got {value!r}.", field=name
        )
    return value
