"""The endpoints ``developer/webhooks`` (with the challenge) and ``developer/subscriptions`` (4.13, 4.14)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from airflow_qikberry.emulator.developer import EVENTS, IDENTITIES
from airflow_qikberry.emulator.envelope import (
    ApiError,
    ApiRequest,
    ApiResult,
    Errors,
    name_filter,
    ok,
    paged,
    required,
    scalar,
    validation_error,
)
from airflow_qikberry.emulator.state import EmulatorState, UnknownWebhook
from airflow_qikberry.emulator.webhooks import challenge

PER_PAGE = 15
Handler = Callable[[ApiRequest], ApiResult]
NOT_FOUND = "Not Found."


def valid_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


class DeveloperApi:
    """Webhook and subscription endpoints over one :class:`EmulatorState`."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def routes(self) -> dict[str, dict[str, Handler]]:
        return {
            "developer/webhooks": {"GET": self.webhook_list, "POST": self.webhook_create},
            "developer/subscriptions": {"GET": self.subscription_list, "POST": self.subscription_create},
        }

    def item_routes(self) -> dict[str, dict[str, Handler]]:
        return {
            "developer/webhooks": {
                "GET": self.webhook_get,
                "PUT": self.webhook_update,
                "PATCH": self.webhook_update,
                "DELETE": self.webhook_delete,
            },
            "developer/subscriptions": {"GET": self.subscription_get, "DELETE": self.subscription_delete},
        }

    # ------------------------------------------------------------------ webhooks
    def _webhook_fields(self, params: dict[str, Any], *, partial: bool) -> dict[str, Any]:
        errors = Errors()
        changes: dict[str, Any] = {}
        for key in ("name", "uri"):
            value = (scalar if partial else required)(params, key, key, errors)
            if value is not None:
                changes[key] = value
        uri = changes.get("uri")
        if uri is not None and not valid_url(uri):
            errors.add("uri", "The uri must be a valid URL.")
        status = scalar(params, "status", "status", errors)
        if status is not None:
            if status not in ("0", "1"):
                errors.add("status", "The selected status is invalid.")
            else:
                changes["status"] = int(status)
        for key in ("secret", "token"):
            value = scalar(params, key, key, errors)
            if value is not None:
                changes[key] = value
        errors.raise_if_any()
        return changes

    def _challenge(self, hook_id: str, uri: str, key: str, secret: str) -> dict[str, Any]:
        """
        Send the challenge (outside the state lock).

        With ``webhook_verification="reject"`` a failure is a 422 on ``uri`` and nothing is stored.
        """
        result = challenge(self.state, hook_id, uri, key, secret)
        if not result["ok"] and self.state.config.webhook_verification == "reject":
            raise validation_error(
                "uri", f"The uri did not answer the verification challenge: {result['error']}."
            )
        return result

    def webhook_create(self, req: ApiRequest) -> ApiResult:
        fields = self._webhook_fields(req.params, partial=False)
        hook_id = str(uuid.uuid4())
        # Without a token the platform makes up the validation key (the object's "verification_code").
        key = fields.get("token") or secrets.token_hex(16)
        wanted = fields.get("status", 1)
        result: dict[str, Any] | None = None
        if wanted == 1 and self.state.config.webhook_verification != "off":
            result = self._challenge(hook_id, fields["uri"], key, fields.get("secret", ""))
        status = 0 if result is not None and not result["ok"] else wanted
        hook = self.state.create_webhook(hook_id, fields, status, key, result)
        return ok({"status": "OK", "code": 200, "message": "Created successfully", "data": hook})

    def webhook_list(self, req: ApiRequest) -> ApiResult:
        flt = name_filter(req.params)
        rows = self.state.list_webhooks(flt)
        return paged(req, rows, PER_PAGE, "developer/webhooks", [("filter[name]", flt)] if flt else [])

    def webhook_get(self, req: ApiRequest) -> ApiResult:
        hook = self.state.get_webhook(req.args[0])
        if hook is None:
            raise ApiError(404, NOT_FOUND)
        return ok({"status": "OK", "code": 200, "message": "OK", "data": hook})

    def webhook_update(self, req: ApiRequest) -> ApiResult:
        hook_id = req.args[0]
        current = self.state.webhook_snapshot(hook_id)
        if current is None:
            raise ApiError(404, NOT_FOUND)
        changes = self._webhook_fields(req.params, partial=req.method == "PATCH")
        after = {**current, **changes}
        repointed = any(after[key] != current[key] for key in ("uri", "secret", "token"))
        result: dict[str, Any] | None = None
        # A webhook that is (or becomes) active is challenged when its uri, secret or key changed, or when
        # it has not passed a challenge yet (re-activating one saved inactive after a failed challenge).
        if (
            after["status"] == 1
            and self.state.config.webhook_verification != "off"
            and (repointed or current["verified"] is not True)
        ):
            result = self._challenge(hook_id, after["uri"], after["token"], after["secret"])
            if not result["ok"]:
                changes["status"] = 0
        hook = self.state.update_webhook(hook_id, changes, result)
        if hook is None:
            raise ApiError(404, NOT_FOUND)
        return ok({"status": "OK", "code": 200, "message": "Updated successfully", "data": hook})

    def webhook_delete(self, req: ApiRequest) -> ApiResult:
        # Soft delete, as documented: the webhook stays listed with status 0, receives nothing, and a
        # PUT/PATCH with status 1 restores it.
        if self.state.update_webhook(req.args[0], {"status": 0}) is None:
            raise ApiError(404, NOT_FOUND)
        return ok({"status": "OK", "code": 200, "message": "Deleted successfully", "data": []})

    # ------------------------------------------------------------------ subscriptions
    def subscription_create(self, req: ApiRequest) -> ApiResult:
        errors = Errors()
        event = required(req.params, "event", "event", errors)
        identity = required(req.params, "identity", "identity", errors)
        webhook_id = required(req.params, "webhook_id", "webhook_id", errors)
        if event is not None and event not in EVENTS:
            errors.add("event", "The selected event is invalid.")
        if identity is not None and identity not in IDENTITIES:
            errors.add("identity", "The selected identity is invalid.")
        if webhook_id is not None and self.state.get_webhook(webhook_id) is None:
            errors.add("webhook_id", "The selected webhook id is invalid.")
        errors.raise_if_any()
        assert event is not None
        assert identity is not None
        assert webhook_id is not None
        try:
            sub = self.state.create_subscription(event, identity, webhook_id)
        except UnknownWebhook:
            raise validation_error("webhook_id", "The selected webhook id is invalid.") from None
        return ok({"status": "OK", "code": 200, "message": "Subscription Saved Successfully", "data": sub})

    def subscription_list(self, req: ApiRequest) -> ApiResult:
        return paged(req, self.state.list_subscriptions(), PER_PAGE, "developer/subscriptions", [])

    def _subscription_id(self, req: ApiRequest) -> int:
        raw = req.args[0]
        if not raw.isdigit():
            raise ApiError(404, NOT_FOUND)
        return int(raw)

    def subscription_get(self, req: ApiRequest) -> ApiResult:
        sub = self.state.get_subscription(self._subscription_id(req))
        if sub is None:
            raise ApiError(404, NOT_FOUND)
        return ok({"status": "OK", "code": 200, "message": "OK", "data": sub})

    def subscription_delete(self, req: ApiRequest) -> ApiResult:
        if not self.state.delete_subscription(self._subscription_id(req)):
            raise ApiError(404, NOT_FOUND)
        return ok({"status": "OK", "code": 200, "message": "Deleted Successfully", "data": []})
