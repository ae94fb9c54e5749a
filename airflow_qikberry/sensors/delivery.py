"""
QikberryDeliverySensor: wait until sent messages (or whole campaigns) are delivered.

DAG files import sensors at every parse, so this module imports only the base class: the tracker, the hooks
and the trigger are imported when the sensor runs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from airflow.providers.common.compat.sdk import BaseSensorOperator, conf

if TYPE_CHECKING:
    from airflow_qikberry.delivery.inputs import StatusSets
    from airflow_qikberry.delivery.tracker import DeliveryTracker, DeliveryVerdict
    from airflow_qikberry.hooks.qikberry import QikberryHook

__all__ = ["QikberryDeliverySensor"]

# How much longer than the sensor's timeout Airflow waits for the trigger: the trigger times out first, with
# its summary; Airflow's own deferral timeout is only the backstop for a trigger that never answers.
_DEFER_GRACE_SECONDS = 120.0


class QikberryDeliverySensor(BaseSensorOperator):
    """
    Wait until ``success_ratio`` of the watched messages are delivered.

    Fail as soon as that can no longer happen; return (XCom) a summary: counts by status, delivered ratio,
    failed ids and ids still pending.

    Watch ``message_ids`` (a list, e.g. rendered from the send task's XCom) or ``group_id`` (one campaign id
    or a list of them, e.g. a chunked campaign's ``group_ids``). ``AWAITING-DLR`` is pending, ``DELIVRD``
    delivered, every other status a final failure (configurable). With ``deferrable=True`` (default: the
    ``[operators] default_deferrable`` option) the sensor checks once on the worker - an already delivered
    batch never defers - then waits in the triggerer without holding a worker slot; poke and reschedule modes
    work too. Each check asks only about messages still pending, the cheapest way (per-message lookups or
    100-row group pages), within the connection's poll budget (see docs/sensor.md).

    On failure or timeout the summary is pushed to XCom under ``delivery_summary`` before the task fails, and
    the error says how many messages failed with which statuses. ``soft_fail`` skips instead.

    Example::

        from airflow_qikberry.sensors.delivery import QikberryDeliverySensor

        wait = QikberryDeliverySensor(
            task_id="wait_for_delivery",
            group_id="{{ ti.xcom_pull('campaign')['group_ids'] }}",
            success_ratio=0.95,
            poke_interval=120,
            timeout=6 * 3600,
            deferrable=True,
        )

    :param message_ids: ids of the messages to wait for (a list, send results with an ``id``, or a list
        rendered as text). Templated.
    :param group_id: or a group (campaign) id, or a list of them. Templated.
    :param success_ratio: share of messages that must be delivered (0 < ratio <= 1, default 1.0).
    :param expected_count: with ``group_id``: how many messages the groups hold (the campaign's accepted
        count), so messages not yet visible in the status API count as pending. Templated.
    :param pending_statuses: statuses that mean "not final yet" (default ``["AWAITING-DLR"]``).
    :param delivered_statuses: statuses that mean delivered (default ``["DELIVRD"]``).
    :param failed_statuses: statuses that mean failed (default: every status not pending or delivered; with
        a list, unlisted statuses count as pending).
    :param qikberry_conn_id: the Airflow connection to use. Templated.
    :param deferrable: wait in the triggerer instead of on a worker.
    """

    template_fields: Sequence[str] = ("message_ids", "group_id", "expected_count", "qikberry_conn_id")
    template_fields_renderers = {"message_ids": "py", "group_id": "py"}
    ui_color = "#f0e4ff"

    def __init__(
        self,
        *,
        message_ids: Any = None,
        group_id: Any = None,
        success_ratio: float = 1.0,
        expected_count: int | str | None = None,
        pending_statuses: Sequence[str] | None = None,
        delivered_statuses: Sequence[str] | None = None,
        failed_statuses: Sequence[str] | None = None,
        qikberry_conn_id: str = "qikberry_default",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        from airflow_qikberry.delivery.inputs import StatusSets, check_expected_count, check_ratio
        from airflow_qikberry.exceptions import QikberryValidationError

        super().__init__(**kwargs)
        if (message_ids is None) == (group_id is None):
            raise QikberryValidationError(
                f"{type(self).__name__} '{self.task_id}' needs exactly one of message_ids and group_id, "
                f"got {'both' if message_ids is not None else 'neither'}.",
                field="group_id" if message_ids is not None else "message_ids",
            )
        self.message_ids = message_ids
        self.group_id = group_id
        self.success_ratio = check_ratio(success_ratio)
        if expected_count is not None and not (isinstance(expected_count, str) and "{{" in expected_count):
            check_expected_count(expected_count)
            if message_ids is not None:
                raise QikberryValidationError(
                    "expected_count is for group_id: with message_ids the count is the number of ids.",
                    field="expected_count",
                )
        self.expected_count = expected_count
        self.statuses: StatusSets = StatusSets.of(pending_statuses, delivered_statuses, failed_statuses)
        self.qikberry_conn_id = qikberry_conn_id
        self.deferrable = deferrable
        self._tracker: DeliveryTracker | None = None
        # False once a poke decided the wait (success or failure); see execute() for why it is kept.
        self._undecided = False

    # -- inputs

    def _new_tracker(self) -> DeliveryTracker:
        """Return the rendered inputs, checked (a typed error naming the field, before any request)."""
        from airflow_qikberry.delivery.inputs import check_expected_count, parse_group_ids, parse_message_ids
        from airflow_qikberry.delivery.tracker import DeliveryTracker

        expected = check_expected_count(self.expected_count)
        if self.message_ids is not None:
            return DeliveryTracker(
                message_ids=parse_message_ids(self.message_ids),
                success_ratio=self.success_ratio,
                statuses=self.statuses,
                expected_count=expected,
            )
        return DeliveryTracker(
            group_ids=parse_group_ids(self.group_id),
            success_ratio=self.success_ratio,
            statuses=self.statuses,
            expected_count=expected,
        )

    def _hook(self) -> QikberryHook:
        from airflow_qikberry.hooks.qikberry import QikberryHook

        return QikberryHook(qikberry_conn_id=self.qikberry_conn_id)

    # -- one check

    def _check(self, hook: QikberryHook, tracker: DeliveryTracker) -> DeliveryVerdict:
        """Sweep once; a transient API error (429, 5xx, dropped connection) leaves the verdict pending."""
        from airflow_qikberry.delivery.report import describe
        from airflow_qikberry.delivery.sweep import is_transient, run_sweep
        from airflow_qikberry.exceptions import QikberryError

        try:
            lookups = run_sweep(tracker, hook.poll_page, hook.poll_message)
        except QikberryError as exc:
            if not is_transient(exc):
                raise
            self.log.warning("Qikberry delivery check incomplete, the next one retries: %s", exc)
            return tracker.verdict()
        verdict = tracker.verdict()
        self.log.info("Qikberry delivery check (%d lookups): %s", lookups, describe(verdict.summary))
        return verdict

    def _push(self, context: Any, summary: dict[str, Any]) -> None:
        from airflow_qikberry.delivery.report import SUMMARY_XCOM_KEY

        context["ti"].xcom_push(key=SUMMARY_XCOM_KEY, value=summary)

    def _fail(
        self,
        context: Any,
        outcome: Literal["failure", "timeout", "error"],
        summary: dict[str, Any],
        message: str = "",
        cause: BaseException | None = None,
    ) -> NoReturn:
        """
        How the sensor ends without success, in every mode: push the summary, then raise.

        ``failure`` (the ratio can no longer be reached) raises ``AirflowFailException``: no retries, final
        statuses do not change. ``timeout`` raises ``AirflowSensorTimeout``. With ``soft_fail`` both skip
        instead (a failure with ``never_fail`` too, as Airflow skips a poke's failure). ``error`` (the
        trigger met an error that cannot heal) raises :class:`~airflow_qikberry.exceptions.QikberryError`,
        which the task's ``retries`` apply to.
        """
        from airflow.providers.common.compat.sdk import (
            AirflowFailException,
            AirflowSensorTimeout,
            AirflowSkipException,
        )

        from airflow_qikberry.delivery.report import failure_message, timeout_message
        from airflow_qikberry.exceptions import QikberryError

        self._push(context, summary)
        if outcome == "error":
            raise QikberryError(message or "Qikberry delivery check ended with an error.") from cause
        message = message or (failure_message(summary) if outcome == "failure" else timeout_message(summary))
        if self.soft_fail or (outcome == "failure" and getattr(self, "never_fail", False)):
            raise AirflowSkipException(message) from cause
        raise (AirflowFailException if outcome == "failure" else AirflowSensorTimeout)(message) from cause

    # -- poke and reschedule modes

    def poke(self, context: Any) -> Any:
        from airflow.providers.common.compat.sdk import PokeReturnValue

        self._undecided = True
        if self._tracker is None:
            self._tracker = self._new_tracker()
        with self._hook() as hook:
            verdict = self._check(hook, self._tracker)
        self._undecided = verdict.state == "pending"
        if verdict.state == "success":
            self._push(context, verdict.summary)
            return PokeReturnValue(is_done=True, xcom_value=verdict.summary)
        if verdict.state == "failure":
            self._fail(context, "failure", verdict.summary)
        return False

    def execute(self, context: Any) -> Any:
        from airflow.providers.common.compat.sdk import AirflowSensorTimeout, AirflowSkipException

        from airflow_qikberry.delivery.report import timeout_message

        # Checked before any request: a bad input fails the task at once, in every mode.
        self._tracker = self._new_tracker()
        if self.deferrable:
            return self._execute_deferrable(context)
        try:
            return super().execute(context)
        except (AirflowSensorTimeout, AirflowSkipException) as exc:
            if isinstance(exc, AirflowSkipException) and not self._timeout_skip(exc):
                raise
            summary = self._tracker.summary()
            self._fail(context, "timeout", summary, f"{exc} {timeout_message(summary)}", cause=exc)

    def _timeout_skip(self, skip: BaseException) -> bool:
        """
        Whether Airflow's sensor loop raised ``skip`` for a timeout under ``soft_fail``.

        Airflow (2.11 and 3.x) times a sensor out inside ``BaseSensorOperator.execute``, with no method to
        override: ``AirflowSensorTimeout``, or under ``soft_fail`` a bare ``AirflowSkipException`` that no
        type tells apart from other skips. The loop raises that one only after a poke that did not decide
        the wait (it returned "not yet", or ``silent_fail`` swallowed its error), and without a cause; every
        other skip it raises wraps the poke's exception (``raise ... from e``), and a poke that decided the
        wait (:meth:`_fail` under ``soft_fail``) cleared ``_undecided``.
        """
        return self._undecided and skip.__cause__ is None

    # -- deferrable mode

    def _execute_deferrable(self, context: Any) -> Any:
        from airflow_qikberry.triggers.delivery import QikberryDeliveryTrigger

        assert self._tracker is not None
        with self._hook() as hook:
            verdict = self._check(hook, self._tracker)
        if verdict.state == "success":
            self._push(context, verdict.summary)
            return verdict.summary
        if verdict.state == "failure":
            self._fail(context, "failure", verdict.summary)
        tracker = self._tracker
        trigger = QikberryDeliveryTrigger(
            end_time=time.time() + self.timeout,
            message_ids=tracker.message_ids if tracker.mode == "message_ids" else None,
            group_ids=tracker.group_ids if tracker.mode == "group_id" else None,
            success_ratio=self.success_ratio,
            expected_count=tracker.expected_count,
            **self.statuses.to_kwargs(),
            poll_interval=self.poke_interval,
            exponential_backoff=self.exponential_backoff,
            max_wait=None if self.max_wait is None else self.max_wait.total_seconds(),
            qikberry_conn_id=self.qikberry_conn_id,
        )
        self.defer(
            trigger=trigger,
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + _DEFER_GRACE_SECONDS),
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> Any:
        """Turn the trigger's event into the sensor's result: the summary, or what :meth:`_fail` raises."""
        from airflow_qikberry.exceptions import QikberryError

        if not isinstance(event, dict) or "status" not in event:
            raise QikberryError(f"The delivery trigger sent an event this sensor cannot read: {event!r}")
        summary = event.get("summary") or {}
        message = str(event.get("message") or "")
        status = event["status"]
        if status == "success":
            self._push(context, summary)
            self.log.info("Qikberry delivery: %s", message)
            return summary
        if status in ("failure", "timeout"):
            self._fail(context, status, summary, message)
        self._fail(
            context, "error", summary, message or f"Qikberry delivery check ended with status {status!r}."
        )
