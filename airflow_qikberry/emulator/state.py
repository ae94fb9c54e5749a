"""
In-memory state of the emulator: messages, credits, webhooks, throttle windows, faults and logs.

One lock guards everything. It is never held while a webhook is called or a fault sleeps. Delivery
statuses are computed lazily: a heap orders pending messages by the emulator time at which they become
final, and every read (and the background ticker) first finalises whatever is due.

A second, separate condition counts the API requests being handled, so :meth:`EmulatorState.reset` can
wait for them: a reset never lands in the middle of a request, and a request that arrives during a reset
starts only once the reset is done.

:class:`EmulatorState` is assembled in layers: ``state_core`` (records, lifecycle, config, clock, throttle,
faults, logs), ``state_dlr`` (delivery reports and their pushes), ``state_webhooks`` (webhooks and
subscriptions) and, here, sends and reads.
"""

from __future__ import annotations

import heapq
import uuid
from typing import Any

from airflow_qikberry.emulator.registry import dlt_check
from airflow_qikberry.emulator.state_core import (
    AWAITING_DLR,
    RESET_TIMEOUT_SECONDS,
    Delivery,
    InsufficientBalance,
    Message,
    NewMessage,
    UnknownWebhook,
    canonical_mobile,
    display_mobile,
    number,
)
from airflow_qikberry.emulator.state_webhooks import WebhookState

# Names other modules import from here (they moved to state_core with the split of issue 17).
__all__ = [
    "AWAITING_DLR",
    "RESET_TIMEOUT_SECONDS",
    "Delivery",
    "EmulatorState",
    "InsufficientBalance",
    "Message",
    "NewMessage",
    "UnknownWebhook",
    "display_mobile",
    "number",
]


class EmulatorState(WebhookState):
    """All mutable emulator state behind one lock. Times are emulator epoch seconds (see :meth:`time`)."""

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
