"""
The account's ``developer/webhooks`` and ``developer/subscriptions``: storage, views and DLR routing.

Transport-free and lock-free: :class:`EmulatorState` owns one :class:`Developer` and calls it under its
lock. Calling a webhook (the verification challenge, a delivery-report push) is the job of
:mod:`airflow_qikberry.emulator.webhooks`, outside the lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MESSAGE_STATUS = "sms:message:status"
UNSUBSCRIPTION = "sms:unsubscription"
EVENTS = (MESSAGE_STATUS, UNSUBSCRIPTION)
IDENTITIES = ("all",)
WEBHOOK_FIELDS = ("id", "name", "uri", "secret", "verification_code", "status", "created_at", "updated_at")
SUBSCRIPTION_FIELDS = ("id", "event", "identity", "payload", "webhook_id", "created_at")
# Where a delivery report goes: "webhook_id_first" (the send's webhook_id, else every subscription) or
# "both" (the send's webhook_id and every subscription, each webhook once).
ROUTINGS = ("webhook_id_first", "both")
# What creating (or re-pointing) a webhook does: "challenge" (send it; a webhook that fails is saved
# inactive), "reject" (send it; a webhook that fails is refused with a 422) or "off" (no challenge).
VERIFICATIONS = ("challenge", "reject", "off")
STAT_KEYS = ("attempts", "succeeded", "failed_attempts", "dropped", "skipped_inactive")


@dataclass
class Webhook:
    """A registered webhook (reference 4.13), as the emulator stores it."""

    id: str
    name: str
    uri: str
    secret: str
    token: str  # the validation key sent with the challenge (the object's "verification_code")
    status: int
    created_at: str
    updated_at: str
    # None: never checked (verification "off" or saved inactive); True / False: the last challenge's result.
    verified: bool | None = None
    verifications: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAT_KEYS, 0))

    def view(self) -> dict[str, Any]:
        """Return the documented object: secret and validation key masked."""
        return {
            "id": self.id,
            "name": self.name,
            "uri": self.uri,
            "secret": "*****",
            "verification_code": "*****",
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass
class Subscription:
    """A subscription of a webhook to an event (reference 4.14)."""

    id: int
    event: str
    identity: str
    webhook_id: str
    created_at: str

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event": self.event,
            "identity": self.identity,
            "payload": [],
            "webhook_id": self.webhook_id,
            "created_at": self.created_at,
        }


@dataclass
class Developer:
    """Webhooks (soft-deleted, never forgotten) and subscriptions of the account."""

    webhooks: dict[str, Webhook] = field(default_factory=dict)
    subscriptions: dict[int, Subscription] = field(default_factory=dict)
    next_subscription_id: int = 1

    def list_webhooks(self, name_filter: str | None) -> list[Webhook]:
        needle = (name_filter or "").lower()
        return [h for h in self.webhooks.values() if needle in h.name.lower()]

    def add_subscription(self, event: str, identity: str, webhook_id: str, stamp: str) -> Subscription:
        sub = Subscription(self.next_subscription_id, event, identity, webhook_id, stamp)
        self.next_subscription_id += 1
        self.subscriptions[sub.id] = sub
        return sub

    def targets(self, webhook_id: str | None, routing: str) -> list[tuple[str, str]]:
        """
        (webhook id, source) pairs a delivery report goes to, each webhook once.

        Subscriptions are read when the report is produced (the message becomes final), not at send time.
        """
        out: list[tuple[str, str]] = []
        if webhook_id is not None:
            out.append((webhook_id, "webhook_id"))
            if routing == "webhook_id_first":
                return out
        seen = {hook_id for hook_id, _ in out}
        for sub in self.subscriptions.values():
            if sub.event == MESSAGE_STATUS and sub.identity == "all" and sub.webhook_id not in seen:
                seen.add(sub.webhook_id)
                out.append((sub.webhook_id, "subscription"))
        return out

    def inspect(self, pending: dict[str, int]) -> list[dict[str, Any]]:
        """Every webhook for ``/_emulator/webhooks``: state, challenges and delivery counts, no secrets."""
        return [
            {
                **hook.view(),
                "has_secret": bool(hook.secret),
                "verified": hook.verified,
                "verifications": [dict(v) for v in hook.verifications],
                "subscriptions": [s.id for s in self.subscriptions.values() if s.webhook_id == hook.id],
                "deliveries": {**hook.stats, "pending": pending.get(hook.id, 0)},
            }
            for hook in self.webhooks.values()
        ]
