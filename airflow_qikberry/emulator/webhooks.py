"""
Calls to webhooks.

Delivery-report pushes (a background ticker that finalises due messages and calls webhooks) and the
verification challenge sent when a webhook is created or re-pointed.

Webhook calls run outside the state lock with a short timeout; results (and retries) are recorded back
under the lock. ``process(wait=True)`` lets the clock and flush controls return only after every call
they triggered has finished, so tests never need to sleep.
"""

from __future__ import annotations

import json
import secrets
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

if TYPE_CHECKING:
    import urllib.request

    from airflow_qikberry.emulator.state import Delivery, EmulatorState

_opener: urllib.request.OpenerDirector | None = None


def _get_opener() -> urllib.request.OpenerDirector:
    # Built on first use (urllib.request is a costly import). Deliberately without proxies: receivers are
    # usually local and environment proxies would intercept them.
    global _opener
    if _opener is None:
        import urllib.request

        _opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return _opener


def post_json(
    uri: str, payload: dict[str, Any], secret: str, timeout: float, answer: list[bytes] | None = None
) -> tuple[int | None, str | None]:
    """
    POST ``payload`` to ``uri``; return (HTTP status or None, error text or None).

    With ``answer``, the first 64 KiB of a 2xx answer's body are appended to it.
    """
    import http.client
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "application/json", "User-Agent": "Qikberry-Emulator-Webhook/1.0"}
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    request = urllib.request.Request(
        uri, data=json.dumps(payload).encode("utf-8"), headers=headers, method="POST"
    )
    try:
        with _get_opener().open(request, timeout=timeout) as response:
            body = response.read(65536)
            if answer is not None:
                answer.append(body)
            return int(response.status), None
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code), f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        return None, f"{type(exc).__name__}: {reason}"


def challenge(state: EmulatorState, hook_id: str, uri: str, key: str, secret: str) -> dict[str, Any]:
    """
    Send the verification challenge and judge the answer (reference 4.13, ``help/verify-webhook.md``).

    ``POST <uri>?token=<key>`` with ``{"validation_key": key, "challenge": <random>}`` (and the Bearer
    secret when set); passed only by HTTP 200 with a JSON object whose ``challenge`` is the same value.
    Returns ``{"uri", "status_code", "ok", "error"}`` (never the key, the challenge or the secret).
    """
    value = secrets.token_urlsafe(24)
    target = uri + ("&" if "?" in uri else "?") + urlencode({"token": key})
    status: int | None
    error: str | None
    body: list[bytes] = []
    fault = state.pick_push_fault("challenge", hook_id)
    if fault is not None:
        status, error = injected(fault.kind, fault.status)
    else:
        payload = {"validation_key": key, "challenge": value}
        status, error = post_json(target, payload, secret, state.config.webhook_timeout_seconds, body)
    ok = False
    if status == 200:
        try:
            answer = json.loads(body[0]) if body else None
        except ValueError:
            answer = None
        ok = isinstance(answer, dict) and answer.get("challenge") == value
        if not ok:
            error = 'the answer is not {"challenge": <the challenge sent>}'
    elif status is not None and error is None:
        error = f"HTTP {status} (the challenge needs a 200)"
    return {"uri": uri, "status_code": status, "ok": ok, "error": None if ok else error}


def injected(kind: str, status: int) -> tuple[int | None, str]:
    """Return the result of a call a push fault stopped: no connection, or an error status."""
    if kind == "unreachable":
        return None, "injected fault: receiver unreachable"
    return status, f"injected fault: HTTP {status}"


class Dispatcher:
    """Runs the delivery lifecycle: a ticker thread plus synchronous processing on demand."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="qikberry-emulator-ticker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._state.config.tick_interval_seconds):
            try:
                self.process(wait=False)
            except Exception as exc:
                # The ticker must survive anything (the next tick retries), but never silently.
                self._state.record_internal_error("TICK", "(delivery ticker)", exc)

    def process(self, *, wait: bool, flush: bool = False) -> int:
        """
        Finalise due (or, with ``flush``, all pending) messages and make due webhook calls.

        With ``wait``, return only when no call is due any more: retries that fall due within the time the
        clock was advanced are made too (advancing 90 minutes makes a failed push's three retries).
        """
        state = self._state
        with state.lock:
            flushed = state.flush_locked() if flush else 0
        while True:
            with state.lock:
                state.finalize_due_locked()
                batch = state.take_due_deliveries_locked()
                timeout = state.config.webhook_timeout_seconds
            for delivery, hook in batch:
                self._deliver(delivery, hook, timeout)
            if not wait:
                return flushed
            state.wait_idle(timeout=timeout + 5.0)
            with state.lock:
                due = bool(state.deliveries) and state.deliveries[0][0] <= state.time()
            if not due:
                return flushed

    def _deliver(self, delivery: Delivery, hook: dict[str, Any], timeout: float) -> None:
        uri = str(hook.get("uri", ""))
        status: int | None = None
        error: str | None = "not attempted"
        try:
            fault = self._state.pick_push_fault("dlr", delivery.webhook_id)
            if fault is not None:
                status, error = injected(fault.kind, fault.status)
            else:
                status, error = post_json(uri, delivery.payload, str(hook.get("secret") or ""), timeout)
        finally:
            self._state.record_delivery(delivery, uri, status, error)
