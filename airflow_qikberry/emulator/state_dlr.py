"""
Delivery reports: outcomes, finalising due messages and pushing their reports to webhooks.

A heap orders pending messages by the emulator time at which they become final; a second heap orders the
pushes (first attempts and retries) of their reports to webhooks.
"""

from __future__ import annotations

import heapq
from typing import Any

from airflow_qikberry.emulator.config import validate_outcome_rules
from airflow_qikberry.emulator.state_core import (
    AWAITING_DLR,
    DELIVERED,
    DUPLICATE,
    Delivery,
    Message,
    StateCore,
    display_mobile,
)


class DeliveryState(StateCore):
    """Outcome rules, finalisation of due messages and the pushes of their delivery reports."""

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

    def set_outcome_rules(self, rules: Any) -> list[dict[str, str]]:
        clean = validate_outcome_rules(rules)
        with self.lock:
            self._compile_rules(clean)
            self.config.outcome_rules = [dict(r) for r in clean]
            return [dict(r) for r in clean]

    def get_outcome_rules(self) -> list[dict[str, str]]:
        with self.lock:
            return [dict(r) for r in self.outcome_rules]
