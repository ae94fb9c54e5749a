"""
QikberryNotifier: SMS alerts from task callbacks, DAG callbacks and Deadline Alerts.

DAG files import notifiers at every parse, so this module imports only the base class: the hook and the
validation helpers are imported when an alert is actually sent, and the hook (which reads the connection)
is built on first use, never in ``__init__``.

Example::

    from airflow_qikberry.notifications.qikberry import QikberryNotifier

    @task(on_failure_callback=QikberryNotifier(to=["+91 98765 43210"], qikberry_conn_id="qikberry_default"))
    def load(): ...
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import ChainMap
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.notifier import BaseNotifier

from airflow_qikberry.clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from airflow_qikberry.hooks.qikberry import QikberryHook
    from airflow_qikberry.send_options import SendOptions

__all__ = ["QikberryNotifier", "send_qikberry_notification"]

_STATE_WORDS = {
    "failed": "failed",
    "up_for_retry": "failed, will retry",
    "success": "succeeded",
    "skipped": "skipped",
    "upstream_failed": "upstream failed",
    "running": "running",
    "queued": "queued",
}
_REASON_WORDS = {
    "task_failure": "failed",
    "success": "succeeded",
    "all_tasks_deadlocked": "failed (deadlocked)",
    "timed_out": "timed out",
}


def _get(obj: Any, name: str) -> Any:
    """``obj[name]`` or ``obj.name``, ``None`` when neither exists or reading it fails."""
    try:
        if isinstance(obj, Mapping):
            return obj.get(name)
        return getattr(obj, name, None)
    except Exception:
        return None


def _state_value(state: Any) -> str | None:
    if state is None:
        return None
    return str(getattr(state, "value", state)).lower()


def _when(context: Mapping[str, Any]) -> str:
    """Return the logical date as ``2026-11-27T02:00Z`` (UTC) or ISO with offset; else the run id."""
    dag_run = context.get("dag_run")
    date = context.get("logical_date") or _get(dag_run, "logical_date")
    if date is not None and hasattr(date, "strftime"):
        try:
            offset = date.utcoffset()
            if offset is not None and not offset:
                return str(date.strftime("%Y-%m-%dT%H:%MZ"))
            return str(date.isoformat(timespec="minutes"))
        except Exception:
            pass
    return str(context.get("run_id") or _get(dag_run, "run_id") or "")


def _first_line(error: Any) -> str:
    if error is None:
        return ""
    if isinstance(error, BaseException):
        text = str(error).strip()
        first = text.splitlines()[0].strip() if text else ""
        return f"{type(error).__name__} {first}".strip()
    text = str(error).strip()
    return text.splitlines()[0].strip() if text else ""


def default_message(context: Mapping[str, Any]) -> str:
    """
    ``[Airflow] sales_etl.load failed (try 2/3) 2026-11-27T02:00Z: KeyError 'amount'``.

    Task callbacks name the task and the try; DAG-level callbacks (their context carries ``reason``) name
    the DAG only. Every context key is optional.
    """
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    dag = context.get("dag")
    dag_id = _get(ti, "dag_id") or _get(dag_run, "dag_id") or _get(dag, "dag_id") or "unknown_dag"
    reason = context.get("reason")
    error = context.get("exception")
    if reason is not None:  # a DAG-level callback (its context may still hold the last task instance)
        run_state = _state_value(_get(dag_run, "state"))
        word = _REASON_WORDS.get(str(reason)) or _STATE_WORDS.get(run_state or "") or str(reason)
        head = f"[Airflow] {dag_id} {word}"
    else:
        task = context.get("task")
        task_id = _get(ti, "task_id") or _get(task, "task_id")
        state = _state_value(_get(ti, "state"))
        word = _STATE_WORDS.get(state or "") or ("failed" if error is not None else (state or "finished"))
        head = f"[Airflow] {dag_id}.{task_id}" if task_id else f"[Airflow] {dag_id}"
        head += f" {word}"
        try_number = _get(ti, "try_number")
        max_tries = _get(ti, "max_tries")
        if max_tries is None:
            max_tries = _get(task, "retries")
        if isinstance(try_number, int) and try_number > 0:
            head += (
                f" (try {try_number}/{max_tries + 1})"
                if isinstance(max_tries, int)
                else f" (try {try_number})"
            )
    when = _when(context)
    if when:
        head += f" {when}"
    detail = _first_line(error)
    return f"{head}: {detail}" if detail else head


def fit_text(text: str, max_units: int) -> str:
    """
    Transliterate what has a GSM-7 form, then shorten to ``max_units`` parts without splitting a character.

    Text that still needs UCS-2 (emoji, Devanagari) is counted as UCS-2 and shortened to fit.
    """
    from airflow_qikberry import sms_text

    # An exception text may hold half of a surrogate pair or a control character, which cannot be sent: an
    # alert replaces them rather than being lost (a send refuses such text).
    text = sms_text.replace_unsendable(sms_text.transliterate(text))
    text = text.strip() or "[Airflow] alert"
    fitted = sms_text.truncate_to_units(text, max_units)
    while fitted and sms_text.measure(fitted).units > max_units:  # defensive: never send more than asked for
        fitted = fitted[:-1]
    return fitted


class QikberryNotifier(BaseNotifier):
    """
    Send an SMS alert through the Qikberry API from an Airflow callback.

    Use it as ``on_failure_callback`` / ``on_retry_callback`` / ``on_success_callback`` of a task or a DAG,
    or (through ``async_notify``) as the callback of a Deadline Alert. It never raises: an alert that cannot
    be sent is logged as an error and the task's own outcome is left as it was.

    :param to: one number, a comma-separated string of numbers or a list of them (templated). Each number
        gets its own send, so one bad number does not stop the others.
    :param message: the text (templated). Default: DAG id, task id, state, try, logical date or run id and
        the first line of the exception.
    :param sender: sender id / DLT header (templated); default: the connection's.
    :param qikberry_conn_id: the Airflow connection (templated).
    :param max_units: SMS parts the alert may use (default 1); the text is shortened to fit.
    :param dedupe_window: seconds within which the same text to the same number is sent only once: exactly
        within a process and on one machine, across machines as far as a lookup of the API can tell (the
        custom id encodes number, text and window; see docs/notifier.md for where that ends).
    :param lock_dir: directory of the same-machine alert claims (default: one per user under the system
        temp directory). Processes that share it never send the same alert twice within the window.
    :param clock: how the notifier's hook reads time and waits (default: the real clock; see
        :mod:`airflow_qikberry.clock`).
    :param max_attempts: attempts per API call (the hook's retries), kept low so a callback does not hang.
    :param retry_deadline: seconds bounding each API call, retries and lookups included. Default: the
        shortest that lets one unknown outcome (a 502, a timeout, a dropped connection) be looked up over
        the connection's reconcile window and the alert be sent again: timeout + window + 10 s (70 s with
        the connection's defaults), or the connection's ``retry_deadline`` extra. A value shorter than that is
        refused (logged, the alert not sent).
    """

    template_fields = ("to", "message", "sender", "qikberry_conn_id")

    def __init__(
        self,
        *,
        to: str | Iterable[str],
        message: str | None = None,
        sender: str | None = None,
        qikberry_conn_id: str = "qikberry_default",
        max_units: int = 1,
        dedupe_window: float = 600.0,
        max_attempts: int = 3,
        retry_deadline: float | None = None,
        lock_dir: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.to = to
        self.message = message
        self.sender = sender
        self.qikberry_conn_id = qikberry_conn_id
        self.max_units = max_units
        self.dedupe_window = dedupe_window
        self.max_attempts = max_attempts
        self.retry_deadline = retry_deadline
        self.lock_dir = lock_dir
        self.clock = clock

    @cached_property
    def hook(self) -> QikberryHook:
        """Return the hook, built on first use, after the templates are rendered (never at DAG parse time)."""
        from airflow_qikberry.hooks.qikberry import QikberryHook

        return QikberryHook(
            qikberry_conn_id=self.qikberry_conn_id,
            max_attempts=self.max_attempts,
            retry_deadline=self.retry_deadline,
            # Not the hook's 120 s: a callback should not hang longer than one unknown outcome needs.
            least_derived_deadline=0.0,
            clock=self.clock,
        )

    def get_template_env(self, dag: Any = None) -> Any:
        # Under dag.test() a DAG-level callback gets a SerializedDAG without get_template_env
        # (apache/airflow#64649): render with the default sandboxed environment instead of failing.
        if dag is not None and not hasattr(dag, "get_template_env"):
            dag = None
        return super().get_template_env(dag=dag)

    def __call__(self, *args: Any) -> None:
        # BaseNotifier renders the templates before notify(); a broken template must not raise out of the
        # callback either.
        try:
            if len(args) == 1 and isinstance(args[0], Mapping) and "dag" not in args[0]:
                # Airflow 2.11's BaseNotifier renders with context["dag"] (3.x: .get("dag")): a context
                # without one (a notifier called directly) renders with the default environment instead.
                # A layer over the context, not a copy: copying reads every key, and Airflow 2 warns on
                # each deprecated one (execution_date, next_ds...) it reads.
                args = (ChainMap({"dag": None}, args[0]),)  # type: ignore[arg-type]  # writes go to the first map
            super().__call__(*args)
        except Exception as err:
            self.log.error("Qikberry alert was not sent: %s: %s", type(err).__name__, err)

    def render_text(self, context: Mapping[str, Any]) -> str:
        """Return the final SMS text: the message (or the default one), transliterated and shortened."""
        text = self.message if isinstance(self.message, str) and self.message.strip() else None
        if text is None:
            text = default_message(context)
        return fit_text(text, self.max_units)

    def custom_id(self, number: str, text: str, now: float | None = None) -> str:
        """Return the custom id of (number, text, dedupe window): the same in every process."""
        window = self._window(now)
        digest = hashlib.sha256(f"{number}\x1f{text}\x1f{window}".encode()).hexdigest()
        return "an-" + digest[:24]

    def _window(self, now: float | None = None) -> int:
        """Return the dedupe window ``now`` falls in (windows: a fixed grid of ``dedupe_window`` seconds)."""
        return int((time.time() if now is None else now) // max(self.dedupe_window, 1e-9))

    def _numbers(self, default_region: str | None) -> list[str]:
        """
        Normalised recipients; a bad entry is logged and skipped, the others stay.

        No recipients at all (``to`` empty, a mapping, ...) is an error: the alert is not sent, and says so.
        """
        from airflow_qikberry import phone
        from airflow_qikberry.recipients import recipient_entry, recipient_list

        to = recipient_list(self.to)
        entries = phone.split_recipients(to) if isinstance(to, str) else to
        numbers: dict[str, None] = {}
        for position, entry in enumerate(entries, start=1):
            try:
                # A number value goes to the validator as it is (not str()-ed, which turns a float into
                # "919876543210.0"): the same rule as every send, an int exact, a float refused.
                one = recipient_entry(entry, position)
                one = one if isinstance(one, str) else [one]
                numbers.update(dict.fromkeys(phone.normalize_numbers(one, default_region=default_region)))
            except Exception as err:
                self.log.error("Qikberry alert: recipient %d skipped: %s", position, err)
        return list(numbers)

    def notify(self, context: Any) -> None:
        """Send the alert to every recipient (sync). Never raises."""
        from airflow_qikberry.send_options import SendOptions

        try:
            text = self.render_text(context or {})
            numbers = self._numbers(self.hook.settings.default_region)
            # The send parameters (sender, max_units) are this notifier's attributes of the same names.
            options = SendOptions.from_operator(self)
        except Exception as err:
            self.log.error(
                "Qikberry alert was not sent (connection %r): %s: %s",
                self.qikberry_conn_id,
                type(err).__name__,
                err,
            )
            return
        for number in numbers:
            self._send_one(number, text, options)

    def _send_one(self, number: str, text: str, options: SendOptions) -> None:
        from pathlib import Path

        from airflow_qikberry import sends
        from airflow_qikberry.notifications._dedupe import claim, default_lock_dir
        from airflow_qikberry.phone import mask_number
        from airflow_qikberry.sms_text import measure

        masked = mask_number(number)
        now = time.time()
        cid = self.custom_id(number, text, now)
        until = (self._window(now) + 1) * max(self.dedupe_window, 1e-9)
        lock_dir = Path(self.lock_dir) if self.lock_dir else default_lock_dir()
        try:
            # Claimed before the lookup: a second alert in this process or on this machine waits here for
            # the first one's send, then sees it sent (even while the API does not show it yet).
            # Waiting longer than one send (plus its last request) means the holder is stuck on the API.
            wait = self.hook.retry_deadline + self.hook.settings.timeout
            with claim(cid, until=until, lock_dir=lock_dir, log=self.log, wait=wait) as alert:
                if alert.sent or self.hook.get_status(custom_id=cid):
                    alert.mark_sent()
                    self.log.info(
                        "Qikberry alert to %s already sent within the dedupe window (%gs, custom id %s); "
                        "skipped",
                        masked,
                        self.dedupe_window,
                        cid,
                    )
                    return
                prepared = sends.prepare_sms(self.hook.settings, number, text, options.replace(custom_id=cid))
                self.hook.send_prepared(prepared)
                alert.mark_sent()
        except Exception as err:
            self.log.error(
                "Qikberry alert to %s was not sent (connection %r): %s: %s",
                masked,
                self.qikberry_conn_id,
                type(err).__name__,
                err,
            )
            return
        length = measure(text)
        self.log.info(
            "Qikberry alert sent to %s (%d unit(s), %s), custom id %s",
            masked,
            length.units,
            length.encoding,
            cid,
        )

    async def async_notify(self, context: Any) -> None:
        """
        Send the alert from the triggerer (Deadline Alerts' ``AsyncCallback``). Never raises.

        The async hook deliberately cannot send (a send in the triggerer would be repeated on every triggerer
        restart). An alert is a one-shot callback whose repeats are already deduplicated by its custom id
        (number, text, window), so the sync send runs in a worker thread instead.
        """
        try:
            await asyncio.to_thread(self.notify, context)
        except Exception as err:  # notify() does not raise; this guards the thread hand-off itself
            self.log.error("Qikberry alert was not sent: %s: %s", type(err).__name__, err)


send_qikberry_notification = QikberryNotifier
