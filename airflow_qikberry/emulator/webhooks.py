"""Delivery-report pushes: a background ticker that finalises due messages and calls webhooks.

Webhook calls run outside the state lock with a short timeout; results (and retries) are recorded back
under the lock. ``process(wait=True)`` lets the clock and flush controls return only after every call
they triggered has finished, so tests never need to sleep.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

from airflow_qikberry.emulator.state import Delivery, EmulatorState

if TYPE_CHECKING:
    import urllib.request

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
    uri: str, payload: dict[str, Any], secret: str, timeout: float
) -> tuple[int | None, str | None]:
    """POST ``payload`` to ``uri``; return (HTTP status or None, error text or None)."""
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
            response.read()
            return int(response.status), None
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code), f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        return None, f"{type(exc).__name__}: {reason}"


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
        """Finalise due (or, with ``flush``, all pending) messages and make due webhook calls."""
        state = self._state
        with state.lock:
            flushed = state.flush_locked() if flush else 0
            state.finalize_due_locked()
            batch = state.take_due_deliveries_locked()
            timeout = state.config.webhook_timeout_seconds
        for delivery, hook in batch:
            self._deliver(delivery, hook, timeout)
        if wait:
            state.wait_idle(timeout=timeout + 5.0)
        return flushed

    def _deliver(self, delivery: Delivery, hook: dict[str, Any], timeout: float) -> None:
        uri = str(hook.get("uri", ""))
        status: int | None = None
        error: str | None = "not attempted"
        try:
            status, error = post_json(uri, delivery.payload, str(hook.get("secret") or ""), timeout)
        finally:
            self._state.record_delivery(delivery, uri, status, error)
