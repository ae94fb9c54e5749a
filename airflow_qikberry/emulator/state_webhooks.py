"""
Webhooks and subscriptions in the emulator's state: storage under the lock, verification results, views.

What is stored lives in :class:`~airflow_qikberry.emulator.developer.Developer`; this layer takes the lock
and stamps times on the emulator clock.
"""

from __future__ import annotations

from typing import Any

from airflow_qikberry.emulator.developer import Webhook
from airflow_qikberry.emulator.state_core import UnknownWebhook
from airflow_qikberry.emulator.state_dlr import DeliveryState


class WebhookState(DeliveryState):
    """Webhooks (with their verification results) and subscriptions, under the state's lock."""

    # ----------------------------------------------------------------- webhooks and subscriptions
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
