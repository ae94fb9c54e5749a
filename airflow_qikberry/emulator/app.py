"""The :class:`Emulator`: owns the state, the HTTP server thread and the delivery ticker."""

from __future__ import annotations

import dataclasses
import threading
from datetime import datetime
from types import TracebackType
from typing import Any

from airflow_qikberry.emulator.api import Api
from airflow_qikberry.emulator.config import EmulatorConfig, apply_updates
from airflow_qikberry.emulator.server import EmulatorHTTPServer
from airflow_qikberry.emulator.state import RESET_TIMEOUT_SECONDS, EmulatorState
from airflow_qikberry.emulator.webhooks import Dispatcher


class Emulator:
    """
    A local, in-memory Qikberry v2 API over real HTTP, with inspection, clock and fault controls.

    Example::

        from airflow_qikberry.emulator import Emulator, EmulatorConfig

        with Emulator(EmulatorConfig(token="tok", seed=1234)) as emu:
            requests.post(emu.base_url + "sms/send", headers={"Authorization": "Bearer tok",
                          "Accept": "application/json"}, json={"to": "919876543210", "message": "Hi",
                          "sender": "QIKBRY", "service": "T"})
            emu.advance_clock(5)
            assert emu.messages()[0]["status"] == "DELIVRD"
    """

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        config = config or EmulatorConfig()
        # Validate every field the same way runtime updates are validated.
        apply_updates(EmulatorConfig(), dataclasses.asdict(config))
        self._start_config = config.copy()
        self.state = EmulatorState(config)
        self.api = Api(self.state)
        self._dispatcher = Dispatcher(self.state)
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ process lifecycle
    def start(self) -> Emulator:
        if self._server is not None:
            return self
        cfg = self._start_config
        server = EmulatorHTTPServer((cfg.host, cfg.port), self)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="qikberry-emulator", daemon=True
        )
        self._thread.start()
        self._dispatcher.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._dispatcher.stop()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        host = self._start_config.host
        return "127.0.0.1" if host in ("", "0.0.0.0") else host

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + self.state.config.base_path

    @property
    def config(self) -> EmulatorConfig:
        """A copy of the current configuration."""
        return self.state.config.copy()

    # ------------------------------------------------------------------ controls
    def reset(self, timeout: float = RESET_TIMEOUT_SECONDS) -> bool:
        """
        Forget what the emulator holds and restore its config (and the senders and templates it seeds).

        Forgotten: messages, requests, faults, push faults, webhooks, subscriptions, internal errors and the
        clock offset.

        First waits (at most ``timeout`` seconds) until no API request is being handled, so a request in
        flight finishes against the old state and one arriving meanwhile starts against the new state.
        Returns False when the wait timed out: the reset happened anyway, was logged, and is recorded as an
        internal error of type ``ResetTimeout``.
        """
        return self.state.reset(timeout)

    def configure(self, **fields: Any) -> None:
        """Change configuration fields at runtime (``ValueError`` on unknown fields or bad values)."""
        self.state.configure(fields)

    def messages(self) -> list[dict[str, Any]]:
        return self.state.message_dicts()

    def request_log(self) -> dict[str, Any]:
        return self.state.request_report()

    def faults(self) -> list[dict[str, Any]]:
        return self.state.fault_list()

    def set_faults(self, faults: Any) -> list[dict[str, Any]]:
        """Replace the fault rules (see docs/emulator.md for the rule format)."""
        return self.state.set_faults(faults)

    def clear_faults(self) -> None:
        self.state.set_faults([])

    def outcome_rules(self) -> list[dict[str, str]]:
        return self.state.get_outcome_rules()

    def set_outcome_rules(self, rules: Any) -> list[dict[str, str]]:
        return self.state.set_outcome_rules(rules)

    def now(self) -> datetime:
        """Return the emulator clock (wall clock plus every ``advance_clock``) as an aware datetime."""
        return self.state.now()

    def wait_requests_done(self, timeout: float = RESET_TIMEOUT_SECONDS) -> bool:
        """
        Wait (at most ``timeout`` s) until no API request is being handled; False when the wait timed out.

        For a client that simulates its waits: before it "waits" N seconds, the requests the emulator is still
        handling (a send it already gave up on, say) finish, as they would within N real seconds.
        """
        return self.state.wait_requests_done(timeout)

    def advance_clock(self, seconds: float) -> None:
        """Move emulator time forward, then finalise due messages and make due webhook calls."""
        self.state.advance(seconds)
        self._dispatcher.process(wait=True)

    def flush_dlrs(self) -> int:
        """Finalise every pending message now (firing webhooks); returns how many were finalised."""
        return self._dispatcher.process(wait=True, flush=True)

    def webhook_deliveries(self) -> list[dict[str, Any]]:
        """Every push attempt, oldest first: webhook, source, message, attempt, status, outcome, times."""
        return self.state.webhook_deliveries()

    def webhooks(self) -> list[dict[str, Any]]:
        """
        Every webhook as stored (secrets masked), with its challenges, subscriptions and delivery counts.

        ``attempts``, ``succeeded``, ``failed_attempts``, ``dropped``, ``skipped_inactive``, ``pending``.
        """
        return self.state.inspect_webhooks()

    def push_faults(self) -> list[dict[str, Any]]:
        return self.state.push_fault_list()

    def set_push_faults(self, faults: Any) -> list[dict[str, Any]]:
        """Replace the rules that make the emulator's calls to webhooks fail (see docs/emulator.md)."""
        return self.state.set_push_faults(faults)

    def clear_push_faults(self) -> None:
        self.state.set_push_faults([])

    def internal_errors(self) -> list[dict[str, Any]]:
        """
        Exceptions raised inside the emulator (answered as 500), oldest first, since the last reset.

        Each: ``method``, ``path`` (no query string), ``type``, ``message``, ``traceback``, ``at`` (emulator
        clock, ``Y-m-d H:i:s``) and ``timestamp`` (emulator epoch seconds). Injected faults are not listed.
        """
        return self.state.internal_error_list()

    def clear_internal_errors(self) -> None:
        self.state.clear_internal_errors()
