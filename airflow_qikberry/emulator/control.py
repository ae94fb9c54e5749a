"""The ``/_emulator/`` inspection and control API (not part of Qikberry's API; no auth; JSON in and out)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_qikberry.emulator.state import RESET_TIMEOUT_SECONDS

if TYPE_CHECKING:
    from airflow_qikberry.emulator.app import Emulator

Handler = Callable[["Emulator", Any], Any]


def _reset(emu: Emulator, body: Any) -> Any:
    timeout = body.get("timeout", RESET_TIMEOUT_SECONDS) if isinstance(body, dict) else RESET_TIMEOUT_SECONDS
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 <= timeout < math.inf:
        raise ValueError('body must be empty or {"timeout": <seconds >= 0>}')
    if emu.reset(float(timeout)):
        return {"status": "OK"}
    return {"status": "OK", "timed_out": True}


def _messages(emu: Emulator, body: Any) -> Any:
    return {"messages": emu.messages()}


def _requests(emu: Emulator, body: Any) -> Any:
    return emu.request_log()


def _faults_get(emu: Emulator, body: Any) -> Any:
    return {"faults": emu.faults()}


def _faults_set(emu: Emulator, body: Any) -> Any:
    return {"faults": emu.set_faults(body)}


def _faults_clear(emu: Emulator, body: Any) -> Any:
    emu.clear_faults()
    return {"faults": []}


def _outcomes_get(emu: Emulator, body: Any) -> Any:
    return {"rules": emu.outcome_rules()}


def _outcomes_set(emu: Emulator, body: Any) -> Any:
    rules = body.get("rules") if isinstance(body, dict) else body
    return {"rules": emu.set_outcome_rules(rules)}


def _config_get(emu: Emulator, body: Any) -> Any:
    return {"config": emu.config.public_dict()}


def _config_set(emu: Emulator, body: Any) -> Any:
    if not isinstance(body, dict):
        raise ValueError("config updates must be a JSON object")
    emu.configure(**body)
    return {"config": emu.config.public_dict()}


def _clock_get(emu: Emulator, body: Any) -> Any:
    now = emu.now()
    return {"now": now.isoformat(), "timestamp": now.timestamp()}


def _clock_advance(emu: Emulator, body: Any) -> Any:
    seconds = body.get("seconds") if isinstance(body, dict) else None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ValueError('body must be {"seconds": <number>}')
    emu.advance_clock(float(seconds))
    return _clock_get(emu, body)


def _flush(emu: Emulator, body: Any) -> Any:
    return {"finalized": emu.flush_dlrs()}


def _deliveries(emu: Emulator, body: Any) -> Any:
    return {"deliveries": emu.webhook_deliveries()}


def _webhooks(emu: Emulator, body: Any) -> Any:
    return {"webhooks": emu.webhooks()}


def _push_faults_get(emu: Emulator, body: Any) -> Any:
    return {"faults": emu.push_faults()}


def _push_faults_set(emu: Emulator, body: Any) -> Any:
    return {"faults": emu.set_push_faults(body)}


def _push_faults_clear(emu: Emulator, body: Any) -> Any:
    emu.clear_push_faults()
    return {"faults": []}


def _errors_get(emu: Emulator, body: Any) -> Any:
    return {"errors": emu.internal_errors()}


def _errors_clear(emu: Emulator, body: Any) -> Any:
    emu.clear_internal_errors()
    return {"errors": []}


ROUTES: dict[str, dict[str, Handler]] = {
    "reset": {"POST": _reset},
    "messages": {"GET": _messages},
    "requests": {"GET": _requests},
    "faults": {"GET": _faults_get, "POST": _faults_set, "PUT": _faults_set, "DELETE": _faults_clear},
    "outcomes": {"GET": _outcomes_get, "POST": _outcomes_set, "PUT": _outcomes_set},
    "config": {"GET": _config_get, "POST": _config_set, "PATCH": _config_set},
    "clock": {"GET": _clock_get},
    "clock/advance": {"POST": _clock_advance},
    "dlr/flush": {"POST": _flush},
    "webhook-deliveries": {"GET": _deliveries},
    "webhooks": {"GET": _webhooks},
    "push-faults": {
        "GET": _push_faults_get,
        "POST": _push_faults_set,
        "PUT": _push_faults_set,
        "DELETE": _push_faults_clear,
    },
    "errors": {"GET": _errors_get, "DELETE": _errors_clear},
}


def handle(emu: Emulator, method: str, path: str, body: Any) -> tuple[int, Any]:
    """Run one control request; returns (HTTP status, JSON body)."""
    handlers = ROUTES.get(path.strip("/"))
    if handlers is None:
        return 404, {"status": "ERROR", "code": 404, "message": "Not Found."}
    handler = handlers.get(method)
    if handler is None:
        return 405, {"status": "ERROR", "code": 405, "message": "Method Not Allowed."}
    try:
        return 200, handler(emu, body)
    except (ValueError, TypeError) as exc:
        return 400, {"status": "ERROR", "code": 400, "message": str(exc)}
