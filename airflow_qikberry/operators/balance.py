"""
QikberryCheckBalanceOperator: fail or skip when a service's credits are below a threshold.

DAG files import this module at every parse, so it imports only the base class and the exception types; the
hook is imported and built when the task runs.

Example::

    from airflow_qikberry.operators.balance import QikberryCheckBalanceOperator

    QikberryCheckBalanceOperator(task_id="enough_credits", min_credits=5000, on_low="skip")
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_qikberry.exceptions import QikberryValidationError

if TYPE_CHECKING:
    from airflow_qikberry.hooks.qikberry import QikberryHook

__all__ = ["QikberryCheckBalanceOperator"]

_ON_LOW = ("fail", "skip")


def _threshold(value: Any) -> Decimal:
    """``min_credits`` as a Decimal: a number >= 0, or text of one (a template renders to text)."""
    problem = None
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        problem = f"must be a number, got {type(value).__name__}"
    else:
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            problem = f"{str(value)[:40]!r} is not a number"
        else:
            if not number.is_finite():
                problem = f"must be a finite number, got {value!r}"
            elif number < 0:
                problem = f"must be 0 or more, got {value!r}"
            else:
                return number
    raise QikberryValidationError(
        f"min_credits: {problem}; pass the fewest credits the service must have, e.g. min_credits=5000",
        field="min_credits",
    )


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _json_number(value: Decimal) -> int | float:
    """Return an int when whole (``9997``), else a float (``12.5``): what XCom and templates handle."""
    return int(value) if value == value.to_integral_value() else float(value)


class QikberryCheckBalanceOperator(BaseOperator):
    """
    Check that a Qikberry service has at least ``min_credits`` credits; fail or skip when it has fewer.

    Put it before a send or a campaign: with ``on_low="fail"`` the task fails (no retries:
    ``AirflowFailException``) with the credits and the threshold in the message; with ``on_low="skip"`` it is
    skipped (``AirflowSkipException``), and with the default trigger rule so are the tasks downstream of it.
    A postpaid service always counts as enough (the log says so). Returns the credits (XCom): an ``int`` when
    whole, else a ``float``.

    Example::

        from airflow_qikberry.operators.balance import QikberryCheckBalanceOperator
        from airflow_qikberry.operators.sms import QikberrySendSmsOperator

        check = QikberryCheckBalanceOperator(
            task_id="enough_credits", service="T", min_credits=500, on_low="skip"
        )
        send = QikberrySendSmsOperator(task_id="send", to="{{ params.numbers }}", message="Sale starts now")
        check >> send  # skipped too when credits are low

    :param min_credits: the fewest credits the service must have (templated): a number >= 0.
    :param service: the service (route) code (templated); default: the connection's ``service``.
    :param on_low: ``"fail"`` (default) or ``"skip"``.
    :param dry_run: check and log as usual, but on low credits only log what would happen (fail or skip) and
        succeed, so that a DAG run in dry-run mode (e.g. ``default_args={"dry_run": True}``) reaches the send
        tasks' own dry runs.
    :param qikberry_conn_id: the Airflow connection (templated).
    """

    template_fields: Sequence[str] = ("service", "min_credits", "qikberry_conn_id")
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        min_credits: float | int | str | Decimal,
        service: str | None = None,
        on_low: str = "fail",
        dry_run: bool = False,
        qikberry_conn_id: str = "qikberry_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if on_low not in _ON_LOW:
            raise QikberryValidationError(
                f"on_low: {on_low!r} is not an option; use 'fail' (the task fails) or 'skip' (it and the "
                "tasks after it are skipped)",
                field="on_low",
            )
        if not _is_template(min_credits):
            _threshold(min_credits)  # a constant fails the DAG file's import; a template is checked later
        self.min_credits = min_credits
        self.service = service
        self.on_low = on_low
        # Not self.dry_run: that name is BaseOperator's dry_run() method (Airflow 2's `tasks test --dry-run`).
        self.is_dry_run = bool(dry_run)
        self.qikberry_conn_id = qikberry_conn_id

    @cached_property
    def hook(self) -> QikberryHook:
        """Built on first use, after the templates are rendered (never at DAG parse time)."""
        from airflow_qikberry.hooks.qikberry import QikberryHook

        return QikberryHook(qikberry_conn_id=self.qikberry_conn_id)

    def execute(self, context: Any) -> int | float:
        from airflow.providers.common.compat.sdk import AirflowFailException, AirflowSkipException

        from airflow_qikberry.validation import validate_service

        threshold = _threshold(self.min_credits)
        service = validate_service(self.service or self.hook.settings.service)
        balances = self.hook.get_balance()
        row = next((b for b in balances if b.service == service), None)
        if row is None:
            known = ", ".join(sorted(repr(b.service) for b in balances)) or "none"
            raise QikberryValidationError(
                f"service: {service!r} has no balance row on this account (services with a balance: "
                f"{known}); pass one of those as service, or set service on the connection",
                field="service",
            )
        credits = _json_number(row.credits)
        if row.postpaid:
            self.log.info(
                "Qikberry service %s (%s) is postpaid: its %s credits are not a limit, counted as enough "
                "(min_credits %s)",
                service,
                row.name,
                credits,
                threshold,
            )
            return credits
        if row.credits >= threshold:
            self.log.info(
                "Qikberry service %s (%s) has %s credits, at least min_credits %s",
                service,
                row.name,
                credits,
                threshold,
            )
            return credits
        message = (
            f"Qikberry service {service!r} has {credits} credits, below min_credits {threshold}: top up the "
            "account or lower min_credits"
        )
        if self.is_dry_run:
            self.log.warning("DRY RUN: the task would %s here: %s", self.on_low, message)
            return credits
        if self.on_low == "skip":
            self.log.info("Skipping: %s", message)
            raise AirflowSkipException(message)
        raise AirflowFailException(message)
