"""
The delivery-report receiver: where the Qikberry API pushes delivery reports (Airflow 3 API server).

An Airflow 3 API-server plugin: a FastAPI app mounted at ``/qikberry`` of every API server that loads it.
Register ``https://<airflow>/qikberry/dlr/<conn id>`` as the webhook's ``uri`` with the connection's
``webhook_secret`` as its ``secret`` (and ``webhook_token``, when set, as its ``token``); the receiver then

* answers the verification challenge (``{"challenge": ...}``) when the Bearer secret and the validation key
  are right;
* authenticates every report by ``Authorization: Bearer <secret>`` against the connection's
  ``webhook_secret`` (a connection without one accepts no pushes: 404), compared in constant time and
  never logged;
* records the report in the push inbox (:mod:`airflow_qikberry.delivery.inbox`: a Variable in the metadata
  database, the number masked) and answers 200 only once that write is committed; if it cannot be written
  the answer is 503, so the API pushes again (3 times, 30 minutes apart), and the catch-up reading of
  ``sms/status`` finds the report anyway.

Every API server writes to the same metadata database, so any number of them can receive; every watcher
of the connection reads what any of them recorded, whichever triggerer it runs in. The same app can be
served alone, e.g. ``uvicorn --factory airflow_qikberry.plugins.delivery_reports:create_app``, on a host
that has the Airflow configuration and database access, where the API server must not be exposed.

Loading it: Airflow loads provider plugins only with ``[core] lazy_discover_providers = False``; or put
``from airflow_qikberry.plugins.delivery_reports import QikberryDeliveryReportsPlugin`` in a file of the
plugins folder. On Airflow 2 the plugin has no app (there is no API server).
"""

# No "from __future__ import annotations" here: FastAPI reads the route's annotations at runtime, and the
# classes they name are imported inside create_app() (FastAPI is not there on Airflow 2).
import asyncio
import hmac
import json
import logging
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow.plugins_manager import AirflowPlugin

from airflow_qikberry.version_compat import AIRFLOW_V_3_0_PLUS

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["URL_PREFIX", "QikberryDeliveryReportsPlugin", "ReceiverSettings", "create_app"]

log = logging.getLogger(__name__)

URL_PREFIX = "/qikberry"
#: A pushed report is a few hundred bytes; anything much larger is not one.
MAX_BODY_BYTES = 64 * 1024
#: How long a connection's receiver settings are reused (seconds), so a burst of pushes does not ask the
#: secrets backend for the connection once per report.
SETTINGS_TTL = 30.0


class ReceiverSettings(NamedTuple):
    """What the receiver needs of a connection; ``secret`` is None when pushes are not enabled."""

    secret: str | None
    validation_key: str | None
    api_timezone: str


_cache: dict[str, tuple[float, ReceiverSettings | None]] = {}


def _load_settings(conn_id: str) -> ReceiverSettings | None:
    """Load the connection's receiver settings (None: no such connection). Blocking: run in a thread."""
    from airflow.models.connection import Connection

    try:
        conn = Connection.get_connection_from_secrets(conn_id)
    except Exception as exc:  # AirflowNotFoundException on every Airflow 3; anything else is logged
        if "isn't defined" not in str(exc) and "not found" not in str(exc).lower():
            log.warning("Qikberry receiver: connection %r could not be read: %s", conn_id, type(exc).__name__)
        return None
    extra = conn.extra_dejson or {}

    def get(name: str) -> str | None:
        value = extra.get(name, extra.get(f"extra__qikberry__{name}"))
        return None if value in (None, "") else str(value)

    return ReceiverSettings(
        get("webhook_secret"), get("webhook_token"), get("api_timezone") or "Asia/Kolkata"
    )


async def receiver_settings(conn_id: str) -> ReceiverSettings | None:
    now = time.monotonic()
    cached = _cache.get(conn_id)
    if cached is not None and now - cached[0] < SETTINGS_TTL:
        return cached[1]
    settings = await asyncio.to_thread(_load_settings, conn_id)
    _cache[conn_id] = (now, settings)
    return settings


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _record(conn_id: str, report: Any) -> None:
    """Write the report to the push inbox (blocking). A duplicate key is an identical report: recorded."""
    from airflow_qikberry.delivery.inbox import MetadataDbVariables, inbox_key

    key = inbox_key(conn_id, int(time.time() * 1000), report.message_id, report.status)
    MetadataDbVariables().put(
        key,
        json.dumps(report.to_dict(), sort_keys=True),
        "Qikberry: a pushed delivery report for delivery-event assets (docs/delivery-events.md); deleted "
        "after a day.",
    )


def create_app() -> "FastAPI":
    """Create the receiver's FastAPI app (routes relative to its mount point: ``POST /dlr/{conn_id}``)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    from airflow_qikberry.delivery.dlr import DeliveryReport
    from airflow_qikberry.delivery.inbox import keyable
    from airflow_qikberry.delivery.inputs import StatusSets
    from airflow_qikberry.exceptions import QikberryValidationError

    app = FastAPI(title="Qikberry delivery reports", openapi_url=None, docs_url=None, redoc_url=None)

    def answer(status: int, message: str, **more: Any) -> JSONResponse:
        body = {"status": "OK" if status < 300 else "ERROR", "code": status, "message": message, **more}
        return JSONResponse(body, status_code=status)

    @app.post("/dlr/{conn_id}")
    async def receive(conn_id: str, request: Request) -> JSONResponse:
        settings = await receiver_settings(conn_id)
        if settings is None or settings.secret is None:
            # Unknown, or pushes not enabled for it: the same answer, so nothing is learnt by probing.
            return answer(404, "Not Found.")
        if not _same(_bearer(request.headers.get("authorization")), settings.secret):
            log.warning("Qikberry receiver: a push for %r had a missing or wrong Bearer secret", conn_id)
            return answer(401, "Unauthenticated.")
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            return answer(413, "Payload Too Large.")
        try:
            body = json.loads(raw)
        except ValueError:
            return answer(400, "The body is not JSON.")
        if isinstance(body, dict) and "challenge" in body:
            key = settings.validation_key
            if key is not None and not (
                _same(request.query_params.get("token"), key)
                and _same(str(body.get("validation_key") or ""), key)
            ):
                log.warning("Qikberry receiver: a verification challenge for %r had a wrong key", conn_id)
                return answer(403, "Wrong validation key.")
            return JSONResponse({"challenge": body["challenge"]})
        try:
            report = DeliveryReport.from_push(body, StatusSets(), settings.api_timezone)
        except QikberryValidationError as exc:
            return answer(422, exc.message)
        if report.outcome == "pending":
            return answer(200, "Not a final status: nothing recorded.")
        if not keyable(report.message_id, report.status):
            return answer(422, "The message id or status holds characters a message id never has.")
        try:
            await asyncio.to_thread(_record, conn_id, report)
        except Exception as exc:  # the database: the API pushes again on anything but 200/202
            log.error("Qikberry receiver: report %s not recorded (%s), answering 503", report.message_id,
                      type(exc).__name__)  # fmt: skip
            return answer(503, "Not recorded, push again later.")
        return answer(200, "Recorded.")

    return app


def _fastapi_apps() -> list[dict[str, Any]]:
    if not AIRFLOW_V_3_0_PLUS:
        return []
    return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Qikberry delivery reports"}]


class QikberryDeliveryReportsPlugin(AirflowPlugin):
    """Mounts the delivery-report receiver on Airflow 3 API servers (see the module docstring)."""

    name = "qikberry_delivery_reports"
    fastapi_apps = _fastapi_apps()
