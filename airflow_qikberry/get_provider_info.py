"""
Provider metadata read by Airflow's ProvidersManager through the ``apache_airflow_provider`` entry point.

Hand-written (no provider.yaml): third-party providers own this dict. ``conn-fields`` is the single source
of the connection form; the hook builds its legacy WTForms widgets (Airflow < 3.2) from the same dict.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CONN_FIELDS", "CONN_TYPE", "UI_FIELD_BEHAVIOUR", "get_provider_info"]

CONN_TYPE = "qikberry"

# Extra fields of the `qikberry` connection: name -> {label, description, schema}.
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "sender": {
        "label": "Default sender",
        "description": "Approved sender id / header used when a task gives none (e.g. QIKBRY).",
        "schema": {"type": ["string", "null"], "maxLength": 16},
    },
    "service": {
        "label": "Default service",
        "description": "Product code: T transactional, P promotional, S trans-scrub, G global.",
        "schema": {"type": ["string", "null"], "default": "T", "maxLength": 8},
    },
    "entity_id": {
        "label": "DLT entity id",
        "description": "India DLT principal-entity id sent with every message unless a task overrides it.",
        "schema": {"type": ["string", "null"], "pattern": "^[0-9]*$", "maxLength": 30},
    },
    "timeout": {
        "label": "Timeout (seconds)",
        "description": "Read timeout of every API call; the connect timeout is the smaller of this and 10 s.",
        "schema": {"type": ["number", "null"], "minimum": 1, "default": 30},
    },
    "rate_limit_per_minute": {
        "label": "GET requests per minute",
        "description": "Client-side budget for GET calls, shared per process by every hook on this token.",
        "schema": {"type": ["integer", "null"], "minimum": 1, "default": 1000},
    },
    "auth_in": {
        "label": "Send the token in",
        "description": "'header' (Authorization: Bearer) or 'query' (access_token, redacted in logs).",
        "schema": {"type": ["string", "null"], "enum": ["header", "query", None], "default": "header"},
    },
    "default_region": {
        "label": "Default region",
        "description": "ISO country code (e.g. IN) for numbers written without a country code.",
        "schema": {"type": ["string", "null"], "pattern": "^([A-Za-z]{2})?$"},
    },
    "verify_ssl": {
        "label": "Verify TLS certificates",
        "description": "Turn off only for a sandbox with a self-signed certificate.",
        "schema": {"type": ["boolean", "null"], "default": True},
    },
    "check_dlt_sender": {
        "label": "Check DLT sender format",
        "description": "On T/P/S routes require a 6-character DLT header before sending; turn off to let "
        "the API decide.",
        "schema": {"type": ["boolean", "null"], "default": True},
    },
    "reconcile_window": {
        "label": "Reconcile window (seconds)",
        "description": "How long an ambiguous send is looked up by custom id before it counts as not sent.",
        "schema": {"type": ["number", "null"], "minimum": 1, "default": 30},
    },
    "retry_deadline": {
        "label": "Retry deadline (seconds)",
        "description": "Bounds each API call, retries, waits and lookups included. Empty: derived, 120 or "
        "timeout + reconcile window + 10 if that is more; a value below that is refused.",
        "schema": {"type": ["number", "null"], "minimum": 1},
    },
    "poll_budget_per_minute": {
        "label": "Delivery polls per minute",
        "description": "Status polls of every delivery sensor and trigger on this token, per process; on top "
        "of the GET budget, at most as many. Empty: half the GET budget (500 with the default 1000).",
        "schema": {"type": ["integer", "null"], "minimum": 1},
    },
    "templates_cache_seconds": {
        "label": "DLT templates cache (seconds)",
        "description": "How long the account's DLT senders and templates, read for the DLT pre-check and "
        "sends by template, are reused in a process. 0: read them for every send.",
        "schema": {"type": ["number", "null"], "minimum": 0, "default": 300},
    },
    "delivery_events": {
        "label": "Record sends for delivery events",
        "description": "Operators record each accepted send (its group id), so delivery-event assets can "
        "read its reports back from the status API when no push arrives (Airflow 3).",
        "schema": {"type": ["boolean", "null"], "default": False},
    },
    "webhook_secret": {
        "label": "Webhook secret",
        "description": "The secret of the webhook the API pushes delivery reports to (sent as Authorization: "
        "Bearer); the delivery-report receiver accepts pushes for this connection only when it is set.",
        "schema": {"type": ["string", "null"]},
    },
    "webhook_token": {
        "label": "Webhook validation key",
        "description": "The webhook's token (validation key): the receiver answers the verification "
        "challenge "
        "only when it matches. Empty: any challenge that carries the Bearer secret is answered.",
        "schema": {"type": ["string", "null"]},
    },
    "api_timezone": {
        "label": "API time zone",
        "description": "Time zone of the API's timestamps and of scheduled send times.",
        "schema": {"type": ["string", "null"], "default": "Asia/Kolkata"},
    },
}

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["login", "port", "schema", "extra"],
    "relabeling": {"host": "Base URL", "password": "Access token"},
    "placeholders": {
        "host": "https://alerts.qikberry.com/api/v2/",
        "password": "Developers -> API Keys/Access Tokens",
        "sender": "QIKBRY",
        "service": "T",
        "default_region": "IN",
    },
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-qikberry",
        "name": "Qikberry",
        "description": "Send SMS and track delivery through the Qikberry (MOBtexting v2) messaging API.",
        "versions": ["0.1.0"],
        "integrations": [
            {
                "integration-name": "Qikberry",
                "external-doc-url": "https://alerts.qikberry.com/docs",
                "how-to-guide": [
                    "/docs/operators.md",
                    "/docs/campaign.md",
                    "/docs/sensor.md",
                    "/docs/notifier.md",
                    "/docs/delivery-events.md",
                ],
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Qikberry",
                "python-modules": [
                    "airflow_qikberry.hooks.qikberry",
                    "airflow_qikberry.hooks.qikberry_async",
                ],
            }
        ],
        "operators": [
            {
                "integration-name": "Qikberry",
                "python-modules": [
                    "airflow_qikberry.operators.sms",
                    "airflow_qikberry.operators.campaign",
                    "airflow_qikberry.operators.balance",
                ],
            }
        ],
        "sensors": [
            {"integration-name": "Qikberry", "python-modules": ["airflow_qikberry.sensors.delivery"]}
        ],
        "triggers": [
            {
                "integration-name": "Qikberry",
                "python-modules": [
                    "airflow_qikberry.triggers.delivery",
                    "airflow_qikberry.triggers.delivery_events",
                ],
            }
        ],
        "plugins": [
            {
                "name": "qikberry_delivery_reports",
                "plugin-class": "airflow_qikberry.plugins.delivery_reports.QikberryDeliveryReportsPlugin",
            }
        ],
        "notifications": ["airflow_qikberry.notifications.qikberry.QikberryNotifier"],
        "connection-types": [
            {
                "connection-type": CONN_TYPE,
                "hook-class-name": "airflow_qikberry.hooks.qikberry.QikberryHook",
                "hook-name": "Qikberry",
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
                "conn-fields": CONN_FIELDS,
            }
        ],
    }
