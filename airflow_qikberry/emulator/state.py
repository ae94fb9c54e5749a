"""
In-memory state of the emulator: messages, credits, webhooks, throttle windows, faults and logs.

One lock guards everything. It is never held while a webhook is called or a fault sleeps. Delivery
statuses are computed lazily: a heap orders pending messages by the emulator time at which they become
final, and every read (and the background ticker) first finalises whatever is due.

A second, separate condition counts the API requests being handled, so :meth:`EmulatorState.reset` can
wait for them: a reset never lands in the middle of a request, and a request that arrives during a reset
starts only once the reset is done.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import random
import re
import threading
import time
import traceback
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from airflow_qikberry.emulator.config import EmulatorConfig, apply_updates, validate_outcome_rules
from airflow_qikberry.emulator.developer import Developer, Webhook
from airflow_qikberry.emulator.faults import FaultRule, PushFaultRule, parse_push_rules, parse_rules, pick
from airflow_qikberry.emulator.registry import Registry, dlt_check

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


class EmulatorState:
    """All mutable emulator state behind one lock. Times are emulator epoch seconds (see :meth:`time`)."""

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
        return time.time() + self.offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), self.tz)

    def fmt(self, ts: float) -> str:
        return datetime.fromtimestamp(ts, self.tz).strftime(TS_FORMAT)

    def advance(self, seconds: float) -> None:
        if seconds < 0 or math.isnan(seconds):
            raise ValueError("the clock only moves forward: seconds must be >= 0")
        with self.lock:
            self.offset += seconds

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

    # ----------------------------------------------------------------- sending
    def accept(
        self,
        items: list[NewMessage],
        *,
        service: str,
        webhook_id: str | None,
        scheduled_at: float | None,
        now: float,
        endpoint: str,
        name: str = "",
    ) -> tuple[str, list[Message]]:
        """Store accepted messages atomically; raises InsufficientBalance / UnknownWebhook."""
        group_id = str(uuid.uuid4())
        total = sum(item.charges for item in items)
        with self.lock:
            if webhook_id is not None and webhook_id not in self.developer.webhooks:
                raise UnknownWebhook(webhook_id)
            dlt = self._dlt_verdicts(items, service)
            available = self.credits.get(service, 0.0)
            if total > available + 1e-9 and service not in self.config.postpaid_services:
                raise InsufficientBalance(service)
            self.credits[service] = available - total
            submitted = self.fmt(now)
            submit_date = submitted[:10]
            start = scheduled_at if scheduled_at is not None else now
            due = start + self.config.dlr_delay_seconds
            offsets = self._dlr_offsets(len(items))
            delay = self.config.visibility_delay_seconds
            visible_at = now + delay if delay > 0 else None
            window = self.config.duplicate_window_seconds
            accepted: list[Message] = []
            date_bucket = self.by_date.setdefault(submit_date, [])
            group_bucket = self.by_group.setdefault(group_id, [])
            for n, item in enumerate(items, start=1):
                key = (item.mobile, item.sender, item.text)
                previous = self.last_sent.get(key)
                self.last_sent[key] = now
                msg = Message(
                    seq=len(self.messages),
                    id=f"{group_id}:{n}",
                    group_id=group_id,
                    mobile=item.mobile,
                    text=item.text,
                    sender=item.sender,
                    service=service,
                    custom=item.custom,
                    units=item.units,
                    length=item.length,
                    charges=item.charges,
                    encoding=item.encoding,
                    sms_type=item.sms_type,
                    flash=item.flash,
                    webhook_id=webhook_id,
                    entity_id=item.entity_id,
                    template_id=item.template_id,
                    port=item.port,
                    name=name,
                    tags=item.tags,
                    endpoint=endpoint,
                    received_at=now,
                    submitted_at=submitted,
                    submit_date=submit_date,
                    scheduled_at=scheduled_at,
                    due_at=due + offsets[n - 1],
                    duplicate=previous is not None and now - previous <= window,
                    visible_at=visible_at,
                    template_ref=item.template_ref,
                )
                if dlt is not None:
                    msg.dlt_status, msg.dlt_reason = dlt[n - 1]
                    msg.dlt_status = msg.dlt_status or None
                self.messages.append(msg)
                self.by_id[msg.id] = msg
                if msg.custom:
                    self.by_custom.setdefault(msg.custom, []).append(msg)
                self.by_mobile.setdefault(msg.mobile, []).append(msg)
                group_bucket.append(msg)
                date_bucket.append(msg)
                heapq.heappush(self.pending, (msg.due_at, msg.seq))
                accepted.append(msg)
            return group_id, accepted

    def _dlt_verdicts(self, items: list[NewMessage], service: str) -> list[tuple[str, str]] | None:
        """
        Return each message's DLT verdict: (final DLT status or "", reason), or None when DLT mode is off.

        Checked when accepted, as the network checks at submission; None as well when the service is not a
        DLT route.

        A message is checked when it carries a template_id or was sent by a stored template.
        """
        cfg = self.config
        if not cfg.dlt_mode or service not in cfg.dlt_services:
            return None
        seen: dict[tuple[str, str, str], tuple[str, str]] = {}
        out: list[tuple[str, str]] = []
        for item in items:
            if not item.template_id and not item.template_ref:
                out.append(("", ""))
                continue
            key = (item.template_id, item.sender, item.text)
            verdict = seen.get(key)
            if verdict is None:
                verdict = seen[key] = dlt_check(
                    self.registry, item.template_id, item.sender, item.text, cfg.dlt_variable_max_chars
                )
            out.append(verdict)
        return out

    def _dlr_offsets(self, count: int) -> list[float]:
        """Seconds after the DLR delay at which each of ``count`` messages of one request becomes final."""
        spread = self.config.dlr_spread_seconds
        if spread <= 0 or count < 2:
            return [0.0] * count
        ranks = list(range(count))
        if self.config.dlr_spread_order == "random":
            self.dlr_rng.shuffle(ranks)
        return [spread * rank / (count - 1) for rank in ranks]

    # ----------------------------------------------------------------- lifecycle
    def _outcome(self, msg: Message) -> str:
        # The DLT scrubber rejects before the operator sees the message, so before anything else.
        if msg.dlt_status:
            return msg.dlt_status
        if msg.duplicate:
            return DUPLICATE
        for pattern, status in self._compiled:
            if pattern.search(msg.mobile):
                return status
        return DELIVERED

    def _finalize_locked(self, msg: Message, at: float, now: float) -> None:
        if msg.status != AWAITING_DLR:
            return
        msg.status = self._outcome(msg)
        msg.delivered_at = at
        msg.delivered_str = self.fmt(at)
        targets = self.developer.targets(msg.webhook_id, self.config.webhook_routing)
        if not targets:
            return
        submit = msg.scheduled_at if msg.scheduled_at is not None else msg.received_at
        payload = {
            "id": msg.id,
            "mobile": display_mobile(msg.mobile, self.config.number_format),
            "status": msg.status,
            "credits": f"{float(msg.charges):.4f}",
            "units": msg.units,
            "deliv_at": str(int(at)),
            "sent_at": str(int(msg.received_at)),
            "submit_at": str(int(submit)),
            "deliv_time": msg.delivered_str,
            "sent_time": msg.submitted_at,
            "submit_time": self.fmt(submit),
            "cid": msg.custom,
            "custom": msg.custom,
        }
        # The report exists from the moment the message became final: its pushes are due then.
        due = min(at, now)
        for hook_id, source in targets:
            delivery = Delivery(
                message_seq=msg.seq,
                webhook_id=hook_id,
                payload=payload,
                generation=self.generation,
                due_at=due,
                source=source,
            )
            heapq.heappush(self.deliveries, (due, next(self._delivery_seq), delivery))

    def finalize_due_locked(self) -> None:
        now = self.time()
        pending = self.pending
        while pending and pending[0][0] <= now:
            due, seq = heapq.heappop(pending)
            self._finalize_locked(self.messages[seq], due, now)

    def flush_locked(self) -> int:
        now = self.time()
        count = 0
        while self.pending:
            due, seq = heapq.heappop(self.pending)
            msg = self.messages[seq]
            if msg.status == AWAITING_DLR:
                count += 1
            self._finalize_locked(msg, min(due, now), now)
        return count

    def take_due_deliveries_locked(self) -> list[tuple[Delivery, dict[str, Any]]]:
        """Pop deliveries due now, paired with the uri and secret of their (active) webhook."""
        now = self.time()
        out: list[tuple[Delivery, dict[str, Any]]] = []
        while self.deliveries and self.deliveries[0][0] <= now:
            _, _, delivery = heapq.heappop(self.deliveries)
            hook = self.developer.webhooks.get(delivery.webhook_id)
            if hook is None:
                continue
            if hook.status != 1:
                hook.stats["skipped_inactive"] += 1  # inactive (deleted, unverified) webhooks receive nothing
                continue
            out.append((delivery, {"uri": hook.uri, "secret": hook.secret}))
        self.inflight += len(out)
        return out

    def pending_deliveries(self) -> dict[str, int]:
        """Pushes waiting (first attempts and retries) per webhook id (the lock must be held)."""
        counts: dict[str, int] = {}
        for _, _, delivery in self.deliveries:
            counts[delivery.webhook_id] = counts.get(delivery.webhook_id, 0) + 1
        return counts

    def record_delivery(
        self, delivery: Delivery, uri: str, status_code: int | None, error: str | None
    ) -> None:
        with self.lock:
            if delivery.generation != self.generation:
                return
            self.inflight -= 1
            ok = status_code in (200, 202)
            now = self.time()
            retry_due: float | None = None
            if not ok and delivery.attempt <= self.config.webhook_retries:
                retry_due = delivery.due_at + self.config.webhook_retry_interval
            outcome = "delivered" if ok else ("retrying" if retry_due is not None else "dropped")
            entry = {
                "webhook_id": delivery.webhook_id,
                "source": delivery.source,
                "message_id": delivery.payload["id"],
                "uri": uri,
                "attempt": delivery.attempt,
                "status_code": status_code,
                "error": error,
                "ok": ok,
                "outcome": outcome,
                "at": self.fmt(now),
                "due_at": self.fmt(delivery.due_at),
                "next_attempt_at": None if retry_due is None else self.fmt(retry_due),
                "payload": delivery.payload,
            }
            self.delivery_log.append(entry)
            hook = self.developer.webhooks.get(delivery.webhook_id)
            if hook is not None:
                hook.stats["attempts"] += 1
                hook.stats["succeeded" if ok else "failed_attempts"] += 1
                if outcome == "dropped":
                    hook.stats["dropped"] += 1
            msg = self.messages[delivery.message_seq]
            if msg.webhook_attempts is None:
                msg.webhook_attempts = []
            msg.webhook_attempts.append(
                {
                    "webhook_id": delivery.webhook_id,
                    "attempt": delivery.attempt,
                    "status_code": status_code,
                    "ok": ok,
                    "outcome": outcome,
                    "at": entry["at"],
                }
            )
            if retry_due is not None:
                retry = Delivery(
                    message_seq=delivery.message_seq,
                    webhook_id=delivery.webhook_id,
                    payload=delivery.payload,
                    generation=delivery.generation,
                    attempt=delivery.attempt + 1,
                    due_at=retry_due,
                    source=delivery.source,
                )
                heapq.heappush(self.deliveries, (retry_due, next(self._delivery_seq), retry))
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no webhook call is in flight (the lock must not be held by the caller)."""
        with self.lock:
            return self._idle.wait_for(lambda: self.inflight == 0, timeout=timeout)

    def webhook_deliveries(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(entry) for entry in self.delivery_log]

    # ----------------------------------------------------------------- reads
    def message_dicts(self) -> list[dict[str, Any]]:
        with self.lock:
            self.finalize_due_locked()
            return [self._inspect(m) for m in self.messages]

    def _inspect(self, m: Message) -> dict[str, Any]:
        return {
            "id": m.id,
            "group_id": m.group_id,
            "mobile": m.mobile,
            "message": m.text,
            "text": m.text,
            "sender": m.sender,
            "service": m.service,
            "custom": m.custom,
            "status": m.status,
            "units": m.units,
            "length": m.length,
            "charges": m.charges,
            "encoding": m.encoding,
            "type": m.sms_type,
            "flash": m.flash,
            "webhook_id": m.webhook_id,
            "entity_id": m.entity_id,
            "template_id": m.template_id,
            "port": m.port,
            "name": m.name,
            "tags": list(m.tags),
            "endpoint": m.endpoint,
            "submitted_at": m.submitted_at,
            "scheduled_at": None if m.scheduled_at is None else self.fmt(m.scheduled_at),
            "delivered_at": m.delivered_str,
            "webhook_attempts": list(m.webhook_attempts or []),
            "dlt_status": m.dlt_status,
            "dlt_reason": m.dlt_reason,
            "template": m.template_ref or None,
        }

    def status_row(self, m: Message) -> dict[str, Any]:
        return {
            "id": m.id,
            "mobile": display_mobile(m.mobile, self.config.number_format),
            "status": m.status,
            "units": m.units,
            "service": m.service,
            "length": m.length,
            "charges": m.charges,
            "custom": m.custom,
            "custom1": "",
            "location": "",
            "provider": "",
            "submitted_at": m.submitted_at,
            "delivered_at": m.delivered_str,
            "sender": m.sender,
        }

    def lookup(self, filters: dict[str, str]) -> list[Message]:
        """
        Return the visible messages matching every filter (keys: id, cid, mobile, group_id, date).

        They come in submit order (newest first with ``status_order="newest_first"``).

        A message is visible once ``visibility_delay_seconds`` (as configured when it was accepted) have
        passed on the emulator clock. Must be called with the lock held (the caller renders rows under the
        same lock).
        """
        self.finalize_due_locked()
        found = self._matching(filters)
        now = self.time()
        visible = [m for m in found if m.visible_at is None or m.visible_at <= now]
        return visible[::-1] if self.config.status_order == "newest_first" else visible

    def _matching(self, filters: dict[str, str]) -> list[Message]:
        candidates: list[list[Message]] = []
        if "id" in filters:
            found = self.by_id.get(filters["id"])
            candidates.append([found] if found is not None else [])
        if "cid" in filters:
            candidates.append(self.by_custom.get(filters["cid"], []))
        if "mobile" in filters:
            candidates.append(self.by_mobile.get(canonical_mobile(filters["mobile"]), []))
        if "group_id" in filters:
            candidates.append(self.by_group.get(filters["group_id"], []))
        if "date" in filters:
            candidates.append(self.by_date.get(filters["date"], []))
        if not candidates:
            return []
        candidates.sort(key=len)
        smallest, others = candidates[0], candidates[1:]
        if not others:
            return list(smallest)
        other_sets = [{m.seq for m in c} for c in others]
        return [m for m in smallest if all(m.seq in s for s in other_sets)]

    def balance_rows(self, service: str | None) -> list[dict[str, Any]]:
        with self.lock:
            rows = []
            for code, title in self.config.services.items():
                if service and code != service:
                    continue
                rows.append(
                    {
                        "service": code,
                        "name": title,
                        "postpaid": 1 if code in self.config.postpaid_services else 0,
                        "credits": number(self.credits.get(code, 0.0)),
                        "charges": number(self.config.unit_charges.get(code, 1)),
                    }
                )
            return rows

    # ----------------------------------------------------------------- webhooks and subscriptions
    def iso_stamp(self) -> str:
        """Laravel's JSON timestamp (UTC, microseconds zeroed) on the emulator clock."""
        return datetime.fromtimestamp(self.time(), timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000000Z")

    def _verification(self, hook: Webhook, result: dict[str, Any] | None) -> None:
        if result is not None:
            hook.verified = bool(result["ok"])
            hook.verifications.append({**result, "at": self.fmt(self.time())})

    def create_webhook(
        self,
        hook_id: str,
        fields: dict[str, Any],
        status: int,
        token: str,
        verification: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Store a webhook (``verification``: the challenge's result, None when none was sent)."""
        stamp = self.iso_stamp()
        hook = Webhook(
            id=hook_id,
            name=fields["name"],
            uri=fields["uri"],
            secret=fields.get("secret", ""),
            token=token,
            status=status,
            created_at=stamp,
            updated_at=stamp,
        )
        with self.lock:
            self._verification(hook, verification)
            self.developer.webhooks[hook.id] = hook
            return hook.view()

    def webhook_snapshot(self, hook_id: str) -> dict[str, Any] | None:
        """Return what an update needs to decide on a new challenge: uri, secret, token, status, verified."""
        with self.lock:
            hook = self.developer.webhooks.get(hook_id)
            if hook is None:
                return None
            return {
                "uri": hook.uri,
                "secret": hook.secret,
                "token": hook.token,
                "status": hook.status,
                "verified": hook.verified,
            }

    def update_webhook(
        self, hook_id: str, changes: dict[str, Any], verification: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        with self.lock:
            hook = self.developer.webhooks.get(hook_id)
            if hook is None:
                return None
            if any(
                key in changes and changes[key] != getattr(hook, key) for key in ("uri", "secret", "token")
            ):
                hook.verified = None  # pointed elsewhere: the last challenge says nothing any more
            for key, value in changes.items():
                setattr(hook, key, value)
            self._verification(hook, verification)
            hook.updated_at = self.iso_stamp()
            return hook.view()

    def get_webhook(self, hook_id: str) -> dict[str, Any] | None:
        with self.lock:
            hook = self.developer.webhooks.get(hook_id)
            return None if hook is None else hook.view()

    def list_webhooks(self, name_filter: str | None) -> list[dict[str, Any]]:
        with self.lock:
            return [hook.view() for hook in self.developer.list_webhooks(name_filter)]

    def inspect_webhooks(self) -> list[dict[str, Any]]:
        with self.lock:
            self.finalize_due_locked()
            return self.developer.inspect(self.pending_deliveries())

    def create_subscription(self, event: str, identity: str, webhook_id: str) -> dict[str, Any]:
        with self.lock:
            if webhook_id not in self.developer.webhooks:
                raise UnknownWebhook(webhook_id)
            return self.developer.add_subscription(event, identity, webhook_id, self.iso_stamp()).view()

    def list_subscriptions(self) -> list[dict[str, Any]]:
        with self.lock:
            return [sub.view() for sub in self.developer.subscriptions.values()]

    def get_subscription(self, sub_id: int) -> dict[str, Any] | None:
        with self.lock:
            sub = self.developer.subscriptions.get(sub_id)
            return None if sub is None else sub.view()

    def delete_subscription(self, sub_id: int) -> bool:
        with self.lock:
            return self.developer.subscriptions.pop(sub_id, None) is not None

    def set_outcome_rules(self, rules: Any) -> list[dict[str, str]]:
        clean = validate_outcome_rules(rules)
        with self.lock:
            self._compile_rules(clean)
            self.config.outcome_rules = [dict(r) for r in clean]
            return [dict(r) for r in clean]

    def get_outcome_rules(self) -> list[dict[str, str]]:
        with self.lock:
            return [dict(r) for r in self.outcome_rules]
