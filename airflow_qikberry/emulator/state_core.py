"""
The core of the emulator's state: records, lifecycle, config, clock, throttle, faults and logs.

:class:`StateCore` owns the one lock, every collection (:meth:`StateCore._reset_locked` creates them all),
the emulator clock, the rate limiter, the fault rules, the request log and the internal errors. The
delivery reports, webhooks and sends build on it (``state_dlr``, ``state_webhooks``, ``state``).
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import re
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from airflow_qikberry.emulator.config import EmulatorConfig, apply_updates
from airflow_qikberry.emulator.developer import Developer
from airflow_qikberry.emulator.faults import FaultRule, PushFaultRule, parse_push_rules, parse_rules, pick
from airflow_qikberry.emulator.registry import Registry

AWAITING_DLR = "AWAITING-DLR"
DELIVERED = "DELIVRD"
DUPLICATE = "DUPLICATE"
TS_FORMAT = "%Y-%m-%d %H:%M:%S"
# How long reset() waits for in-flight API requests before resetting anyway.
RESET_TIMEOUT_SECONDS = 10.0
# Most internal errors kept for /_emulator/errors (the oldest are dropped first).
INTERNAL_ERROR_LIMIT = 100

logger = logging.getLogger("airflow_qikberry.emulator")


def display_mobile(mobile: str, number_format: str) -> str:
    """Return a stored number (digits with country code) as responses write it under ``number_format``."""
    return "+" + mobile if number_format == "plus" else mobile


def canonical_mobile(value: str) -> str:
    """Return a ``mobile`` filter in either form (``919876543210`` or ``+919876543210``) as stored."""
    return value.strip().lstrip("+").strip()


def number(value: float) -> int | float:
    """Money and credits as the API shows them: an int when whole."""
    rounded = round(value, 4)
    return int(rounded) if float(rounded).is_integer() else rounded


class InsufficientBalance(Exception):
    """A send would take the balance below zero on a prepaid account."""


class UnknownWebhook(Exception):
    """A send names a webhook id that does not exist."""


@dataclass(slots=True)
class Message:
    """One accepted message, its delivery report and what it cost."""

    seq: int
    id: str
    group_id: str
    mobile: str
    text: str
    sender: str
    service: str
    custom: str
    units: int
    length: int
    charges: int | float
    encoding: str
    sms_type: str
    flash: int
    webhook_id: str | None
    entity_id: str
    template_id: str
    port: str
    name: str
    tags: list[str]
    endpoint: str
    received_at: float
    submitted_at: str
    submit_date: str
    scheduled_at: float | None
    due_at: float
    duplicate: bool
    # Emulator time from which status lookups show the message (None: at once).
    visible_at: float | None = None
    status: str = AWAITING_DLR
    delivered_at: float | None = None
    delivered_str: str = ""
    webhook_attempts: list[dict[str, Any]] | None = None
    # DLT mode: the final status the network's template check gives (None: not checked or passed).
    dlt_status: str | None = None
    dlt_reason: str = ""
    # The stored template (its uuid) of a send by template.
    template_ref: str = ""


@dataclass
class NewMessage:
    """A validated message waiting to be accepted (built by the API layer)."""

    mobile: str
    text: str
    sender: str
    custom: str
    units: int
    length: int
    charges: int | float
    encoding: str
    sms_type: str
    flash: int
    entity_id: str = ""
    template_id: str = ""
    port: str = ""
    tags: list[str] = field(default_factory=list)
    template_ref: str = ""


@dataclass
class Delivery:
    """One push of a delivery report to a webhook: its attempt and when it is due."""

    message_seq: int
    webhook_id: str
    payload: dict[str, Any]
    generation: int
    attempt: int = 1
    # Emulator time the attempt is due at: retries follow the schedule, not the moment the previous
    # attempt happened to be made, so advancing the clock by 90 minutes makes all three retries.
    due_at: float = 0.0
    source: str = "webhook_id"  # "webhook_id" (named by the send) or "subscription"


@dataclass
class Throttle:
    """The rate limiter's answer for one request: allowed or not, and the headers to send."""

    allowed: bool
    limit: int
    remaining: int
    retry_after: int


class StateCore:
    """The lock, the collections, the config, the clock, the throttle, faults and logs of the state."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.lock = threading.Lock()
        self._idle = threading.Condition(self.lock)
        # API requests being handled; its own lock (taken before ``lock``, never while holding it).
        self._requests = threading.Condition(threading.Lock())
        self.active_requests = 0
        self._initial = config.copy()
        self.reset()

    # ----------------------------------------------------------------- lifecycle & config
    def begin_request(self) -> None:
        """Count an API request as in flight; blocks while a reset is running."""
        with self._requests:
            self.active_requests += 1

    def end_request(self) -> None:
        with self._requests:
            self.active_requests -= 1
            if self.active_requests == 0:
                self._requests.notify_all()

    def wait_requests_done(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until no API request is being handled; False when it timed out."""
        with self._requests:
            return self._requests.wait_for(lambda: self.active_requests == 0, timeout=timeout)

    def reset(self, timeout: float = RESET_TIMEOUT_SECONDS) -> bool:
        """
        Wait (at most ``timeout`` s) for in-flight API requests, then forget everything.

        Returns False when the wait timed out; the reset happens anyway and the timeout is recorded as an
        internal error (a request straddling a reset can leave its effects in the new state).
        """
        with self._requests:
            drained = self._requests.wait_for(lambda: self.active_requests == 0, timeout=timeout)
            busy = self.active_requests
            with self.lock:
                self._reset_locked(self._initial.copy())
                self._idle.notify_all()  # calls in flight now belong to the old generation: nobody waits
            if not drained:
                message = (
                    f"reset() waited {timeout:g} s for {busy} in-flight API request(s) and reset anyway; "
                    "their effects may show up after the reset"
                )
                logger.error("Qikberry emulator: %s", message)
                self._add_internal_error("RESET", "/_emulator/reset", "ResetTimeout", message, "")
        return drained

    def _reset_locked(self, config: EmulatorConfig) -> None:
        # Webhook calls still in flight when a reset happens belong to an older generation and are ignored.
        self.generation = getattr(self, "generation", 0) + 1
        self.config = config
        self.tz = ZoneInfo(config.timezone)
        self.offset = 0.0
        # With a manual clock, the real time it stopped at; emulator time is then frozen_at + offset.
        self.frozen_at: float | None = time.time() if config.manual_clock else None
        self.messages: list[Message] = []
        self.by_id: dict[str, Message] = {}
        self.by_custom: dict[str, list[Message]] = {}
        self.by_mobile: dict[str, list[Message]] = {}
        self.by_group: dict[str, list[Message]] = {}
        self.by_date: dict[str, list[Message]] = {}
        self.pending: list[tuple[float, int]] = []
        self.last_sent: dict[tuple[str, str, str], float] = {}
        self.credits: dict[str, float] = {
            code: float(config.credits.get(code, 10000)) for code in config.services
        }
        self.developer = Developer()
        self.registry = self._seeded_registry(config)
        self.push_faults: list[PushFaultRule] = []
        self.deliveries: list[tuple[float, int, Delivery]] = []
        self.delivery_log: list[dict[str, Any]] = []
        self.inflight = 0
        self._delivery_seq = itertools.count(1)
        self.windows: dict[str, list[float]] = {}
        self.faults: list[FaultRule] = []
        self.request_log: deque[tuple[str, str, int, float, str | None]] = deque(
            maxlen=config.request_log_limit
        )
        self.request_counts: dict[str, int] = {}
        self.per_minute: dict[int, int] = {}
        self.internal_errors: deque[dict[str, Any]] = deque(maxlen=INTERNAL_ERROR_LIMIT)
        self._compile_rules(config.outcome_rules)
        self.dlr_rng = random.Random(f"{config.seed}:dlr-spread")

    def _seeded_registry(self, config: EmulatorConfig) -> Registry:
        registry = Registry(dict(config.services))
        registry.seed(config.senders, config.templates, self.iso_stamp())
        return registry

    def _compile_rules(self, rules: list[dict[str, str]]) -> None:
        self.outcome_rules = [dict(r) for r in rules]
        self._compiled = [(re.compile(r["match"]), r["status"]) for r in rules]

    def configure(self, updates: dict[str, Any]) -> EmulatorConfig:
        """Apply validated partial updates (``ValueError`` on bad input); given credits reset balances."""
        with self.lock:
            new = apply_updates(self.config, updates)
            self.config = new
            if "timezone" in updates:
                self.tz = ZoneInfo(new.timezone)
            if "manual_clock" in updates:
                self._switch_clock(manual=new.manual_clock)
            if "outcome_rules" in updates:
                self._compile_rules(new.outcome_rules)
            if "senders" in updates or "templates" in updates:
                self.registry = self._seeded_registry(new)  # seeds replace every sender and template
            elif "services" in updates:
                self.registry.services = dict(new.services)
            if "request_log_limit" in updates:
                self.request_log = deque(self.request_log, maxlen=new.request_log_limit)
            if "credits" in updates or "services" in updates:
                for code in new.services:
                    if "credits" in updates and code in new.credits:
                        self.credits[code] = float(new.credits[code])
                    else:
                        self.credits.setdefault(code, float(new.credits.get(code, 10000)))
            return new.copy()

    # ----------------------------------------------------------------- clock
    def time(self) -> float:
        frozen_at = self.frozen_at
        return (time.time() if frozen_at is None else frozen_at) + self.offset

    def _switch_clock(self, *, manual: bool) -> None:
        # Emulator time runs on from where it is: switching neither jumps nor rewinds it.
        if manual and self.frozen_at is None:
            self.frozen_at = time.time()
        elif not manual and self.frozen_at is not None:
            self.offset += self.frozen_at - time.time()
            self.frozen_at = None

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), self.tz)

    def fmt(self, ts: float) -> str:
        return datetime.fromtimestamp(ts, self.tz).strftime(TS_FORMAT)

    def advance(self, seconds: float) -> None:
        if seconds < 0 or math.isnan(seconds):
            raise ValueError("the clock only moves forward: seconds must be >= 0")
        with self.lock:
            self.offset += seconds

    def iso_stamp(self) -> str:
        """Laravel's JSON timestamp (UTC, microseconds zeroed) on the emulator clock."""
        return datetime.fromtimestamp(self.time(), timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000000Z")

    # ----------------------------------------------------------------- throttle, faults, log
    def throttle(self, key: str) -> Throttle:
        with self.lock:
            limit = self.config.rate_limit_per_minute
            now = self.time()
            window = self.windows.get(key)
            if window is None or now >= window[0] + 60.0:
                window = self.windows[key] = [now, 0.0]
            if window[1] >= limit:
                retry = max(1, math.ceil(window[0] + 60.0 - now))
                return Throttle(False, limit, 0, retry)
            window[1] += 1
            return Throttle(True, limit, int(limit - window[1]), 0)

    def set_faults(self, raw: Any) -> list[dict[str, Any]]:
        rules = parse_rules(raw, self.config.seed)
        with self.lock:
            self.faults = rules
            return [r.to_dict() for r in rules]

    def fault_list(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r.to_dict() for r in self.faults]

    def set_push_faults(self, raw: Any) -> list[dict[str, Any]]:
        rules = parse_push_rules(raw, self.config.seed)
        with self.lock:
            self.push_faults = rules
            return [r.to_dict() for r in rules]

    def push_fault_list(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r.to_dict() for r in self.push_faults]

    def pick_push_fault(self, push: str, webhook_id: str) -> FaultRule | None:
        """Return the push fault (``push``: "dlr" or "challenge") for this call to a webhook, if any."""
        with self.lock:
            return pick(self.push_faults, push, webhook_id) if self.push_faults else None

    def pick_fault(self, method: str, endpoint: str) -> FaultRule | None:
        if not self.faults:  # unlocked fast path: a stale empty list only delays a new rule by one request
            return None
        with self.lock:
            return pick(self.faults, method, endpoint)

    def log_request(self, method: str, path: str, status: int, fault: str | None) -> None:
        with self.lock:
            now = self.time()
            self.request_log.append((method, path, status, now, fault))
            key = f"{method} {path}"
            self.request_counts[key] = self.request_counts.get(key, 0) + 1
            minute = int(now // 60)
            self.per_minute[minute] = self.per_minute.get(minute, 0) + 1

    def request_report(self) -> dict[str, Any]:
        with self.lock:
            rows = [
                {"method": m, "path": p, "status": s, "at": self.fmt(t), "timestamp": t, "fault": f}
                for m, p, s, t, f in self.request_log
            ]
            per_minute = {
                datetime.fromtimestamp(minute * 60, self.tz).strftime("%Y-%m-%d %H:%M"): n
                for minute, n in sorted(self.per_minute.items())
            }
            return {"requests": rows, "counts": dict(self.request_counts), "per_minute": per_minute}

    # ----------------------------------------------------------------- internal errors
    def record_internal_error(self, method: str, path: str, exc: BaseException) -> None:
        """Log (with traceback) and keep an exception raised inside the emulator while serving a request."""
        logger.error("Qikberry emulator: internal error while handling %s %s", method, path, exc_info=exc)
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self._add_internal_error(method, path, type(exc).__name__, str(exc), text)

    def _add_internal_error(self, method: str, path: str, kind: str, message: str, text: str) -> None:
        with self.lock:
            now = self.time()
            self.internal_errors.append(
                {
                    "method": method,
                    "path": path,
                    "type": kind,
                    "message": message,
                    "traceback": text,
                    "at": self.fmt(now),
                    "timestamp": now,
                }
            )

    def internal_error_list(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(entry) for entry in self.internal_errors]

    def clear_internal_errors(self) -> None:
        with self.lock:
            self.internal_errors.clear()
