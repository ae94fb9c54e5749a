"""
HTTP plumbing: a keep-alive ThreadingHTTPServer whose handler routes, authenticates and injects faults.

The hot path (``POST sms/send``) avoids per-request logging and writes each response with one ``send``
(status line, headers and body together) on a TCP_NODELAY socket, so keep-alive clients never wait on
delayed ACKs.

An exception raised inside the emulator still answers the client with a generic 500, but is never silent:
it is logged (logger ``airflow_qikberry.emulator``, with traceback) and recorded for ``/_emulator/errors``.
"""

from __future__ import annotations

import hmac
import http.client
import json
import socket
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from airflow_qikberry.emulator import control
from airflow_qikberry.emulator.api import ApiError, ApiRequest, ApiResult
from airflow_qikberry.emulator.forms import (
    BodyError,
    BodyReader,
    MultipartResult,
    UploadedFile,
    boundary_of,
    nest,
    parse_multipart,
    parse_query,
)
from airflow_qikberry.emulator.server_auth import LOGIN_PAGE, resolve_token

if TYPE_CHECKING:
    from airflow_qikberry.emulator.app import Emulator

OVERRIDABLE = frozenset({"PUT", "PATCH", "DELETE"})
DRAIN_LIMIT = 1024 * 1024
CONTROL_PREFIX = "/_emulator/"


def _json(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


class _DateCache:
    """``Date`` header text, recomputed at most once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def get(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._text = formatdate(now, usegmt=True)
            self._second = now
        return self._text


_DATE = _DateCache()


class EmulatorHTTPServer(ThreadingHTTPServer):
    """The emulator's threaded HTTP server; it tracks open connections so that stopping closes them."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, EmulatorHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (timeouts, drop faults) are normal here; stay quiet.
        return None

    def close_connections(self) -> None:
        """Cut open keep-alive connections so no handler thread keeps serving after stop()."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                continue


class EmulatorHandler(BaseHTTPRequestHandler):
    """One connection's requests: API, control API and the fault and rate-limit rules around them."""

    protocol_version = "HTTP/1.1"
    server_version = "QikberryEmulator/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    server: EmulatorHTTPServer
    raw_requestline: bytes
    _answered = False  # whether the current request got (the start of) an answer

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def parse_request(self) -> bool:
        """
        Parse the request line and headers; a lean version of the standard parser for HTTP/1.x.

        The standard one builds headers through the ``email`` feed parser, which costs about a third of
        a ``sms/send`` round trip. Anything other than a plain HTTP/1.0 or 1.1 request line takes the
        standard path (which also produces its error answers).
        """
        line = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = line.split()
        if len(words) != 3 or words[2] not in ("HTTP/1.1", "HTTP/1.0"):
            return super().parse_request()
        self.requestline = line
        self.command, path, self.request_version = words
        self.path = "/" + path.lstrip("/") if path.startswith("//") else path
        headers = http.client.HTTPMessage()
        for _ in range(101):
            raw = self.rfile.readline(65537)
            if len(raw) > 65536:
                self.close_connection = True
                self.send_error(431, "Line too long")
                return False
            if raw in (b"\r\n", b"\n", b""):
                break
            name, sep, value = raw.decode("iso-8859-1").partition(":")
            if not sep or not name.strip():
                self.close_connection = True
                self.send_error(400, "Bad header line")
                return False
            headers[name.strip()] = value.strip()
        else:
            self.close_connection = True
            self.send_error(431, "Too many headers")
            return False
        self.headers = headers
        connection = headers.get("Connection", "").lower()
        if self.request_version == "HTTP/1.1":
            self.close_connection = "close" in connection
        else:
            self.close_connection = "keep-alive" not in connection
        if headers.get("Expect", "").lower() == "100-continue" and self.request_version == "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    # ------------------------------------------------------------------ writing
    def _write(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        self._answered = True
        reason = self.responses.get(status, ("",))[0]
        head = [
            f"HTTP/1.1 {status} {reason}\r\nServer: {self.server_version}\r\nDate: {_DATE.get()}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        ]
        if headers:
            head.extend(f"{k}: {v}\r\n" for k, v in headers)
        if self.close_connection:
            head.append("Connection: close\r\n")
        head.append("\r\n")
        try:
            self.wfile.write("".join(head).encode("latin-1") + body)
        except OSError:
            self.close_connection = True

    def _write_json(self, status: int, body: Any, headers: list[tuple[str, str]] | None = None) -> None:
        self._write(status, _json(body), "application/json", headers)

    def _host_url(self) -> str:
        host = self.headers.get("Host")
        if not host:
            addr, port = self.server.server_address[:2]
            host = f"{addr.decode() if isinstance(addr, bytes) else addr}:{port}"
        return f"http://{host}"

    # ------------------------------------------------------------------ reading
    def _reader(self) -> BodyReader:
        limit = self.server.emulator.state.config.max_body_bytes
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        raw_length = self.headers.get("Content-Length")
        length = 0
        if raw_length and not chunked:
            try:
                length = int(raw_length)
            except ValueError:
                raise BodyError("Invalid Content-Length.") from None
            if length < 0:
                raise BodyError("Invalid Content-Length.")
            if length > limit:
                raise BodyError("The request body is too large.", status=413)
        return BodyReader(self.rfile, length, chunked, limit)

    def _read_body(self, reader: BodyReader) -> tuple[dict[str, Any], MultipartResult | None, bool]:
        """Parse the body by its Content-Type; returns (params, multipart, body_was_json)."""
        ctype = self.headers.get("Content-Type", "").lower()
        if ctype.startswith("multipart/form-data"):
            boundary = boundary_of(self.headers.get("Content-Type", ""))
            if boundary is None:
                raise BodyError("Malformed multipart body: no boundary.")
            parts = parse_multipart(reader, boundary)
            return nest(parts.fields), parts, False
        raw = reader.read_all()
        if "json" in ctype:
            if not raw.strip():
                return {}, None, True
            try:
                data = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise BodyError("Malformed JSON body.") from None
            if not isinstance(data, dict):
                raise BodyError("The JSON body must be an object.")
            return data, None, True
        if ctype.startswith("application/x-www-form-urlencoded"):
            text = raw.decode("utf-8", errors="replace")
            return nest(parse_qsl(text, keep_blank_values=True)), None, False
        return {}, None, False

    # ------------------------------------------------------------------ dispatch
    def _dispatch(self) -> None:
        self._answered = False
        raw_path, _, query_string = self.path.partition("?")
        try:
            if raw_path.startswith(CONTROL_PREFIX):
                self._control(raw_path[len(CONTROL_PREFIX) :])
            else:
                self._route(raw_path, query_string)
        except OSError:
            raise  # the client went away mid-request: nothing to answer (handle_error stays quiet)
        except Exception as exc:
            # A bug in the plumbing (or the control API): answer 500 but never silently.
            self._internal_error(self.command, raw_path, exc)

    def _internal_error(self, method: str, path: str, exc: BaseException) -> None:
        self.server.emulator.state.record_internal_error(method, path, exc)
        self.close_connection = True  # the rest of the request may still be unread
        if not self._answered:
            self._write_json(500, {"status": "ERROR", "code": 500, "message": "Server Error"})

    def _route(self, raw_path: str, query_string: str) -> None:
        emu = self.server.emulator
        state = emu.state
        base = state.config.base_path
        if raw_path.rstrip("/") in ("/login",):
            self._discard_body()
            state.begin_request()
            try:
                state.log_request(self.command, raw_path, 200, None)
                self._write(200, LOGIN_PAGE, "text/html; charset=UTF-8")
            finally:
                state.end_request()
            return
        route = None
        rel = raw_path
        if raw_path.startswith(base):
            rel = unquote(raw_path[len(base) :]).strip("/")
            route = emu.api.route(rel)
        if route is None:
            self._discard_body()
            state.begin_request()
            try:
                state.log_request(self.command, rel, 404, None)
                self._write_json(404, {"status": "ERROR", "code": 404, "message": "Not Found."})
            finally:
                state.end_request()
            return
        handlers, args = route
        self._api(emu, raw_path, rel, handlers, args, query_string)

    def _discard_body(self) -> None:
        try:
            reader = self._reader()
        except BodyError:
            self.close_connection = True
            return
        if not reader.drain(DRAIN_LIMIT):
            self.close_connection = True

    def _api(
        self,
        emu: Emulator,
        raw_path: str,
        rel: str,
        handlers: dict[str, Any],
        args: tuple[str, ...],
        query_string: str,
    ) -> None:
        state = emu.state
        query = parse_query(query_string)
        body: dict[str, Any] = {}
        files: dict[str, UploadedFile] = {}
        multipart: MultipartResult | None = None
        body_error: BodyError | None = None
        try:
            body, multipart, _ = self._read_body(self._reader())
            if multipart is not None:
                files = multipart.files
        except BodyError as exc:
            body_error = exc
            self.close_connection = True  # the rest of the body may still be on the wire
        # From here until the answer is written the request counts as in flight: reset() waits for it.
        state.begin_request()
        try:
            method = self.command
            if method == "POST":
                override = query.get("_method", body.get("_method"))
                if isinstance(override, str) and override.upper() in OVERRIDABLE:
                    method = override.upper()
            handler = handlers.get(method)
            if handler is None:
                allowed = ", ".join(sorted(handlers))
                self._finish(
                    state,
                    method,
                    rel,
                    405,
                    {"status": "ERROR", "code": 405, "message": "Method Not Allowed."},
                    [("Allow", allowed)],
                )
                return
            token = resolve_token(self.headers, query, body)
            expected = emu.state.config.token
            if token is None or not hmac.compare_digest(token.encode(), expected.encode()):
                self._unauthenticated(state, method, rel, query, body, token is None)
                return
            if body_error is not None:
                self._finish(
                    state,
                    method,
                    rel,
                    body_error.status,
                    {"status": "ERROR", "code": body_error.status, "message": body_error.message},
                )
                return
            fault = state.pick_fault(method, rel)
            if fault is not None and fault.kind in ("error", "rate_limit", "drop_before"):
                self._pre_fault(state, method, rel, fault.kind, fault.status, fault.delay(1.0))
                return
            if fault is not None and fault.kind == "latency":
                time.sleep(fault.delay(1.0))
            headers: list[tuple[str, str]] = []
            if method == "GET":
                throttle = state.throttle(token)
                headers = [
                    ("X-RateLimit-Limit", str(throttle.limit)),
                    ("X-RateLimit-Remaining", str(throttle.remaining)),
                ]
                if not throttle.allowed:
                    headers.append(("Retry-After", str(throttle.retry_after)))
                    self._finish(
                        state,
                        method,
                        rel,
                        429,
                        {"status": "ERROR", "code": 429, "message": "Too Many Attempts."},
                        headers,
                    )
                    return
            request = ApiRequest(
                method=method,
                path=rel,
                params={**query, **body},
                query=query,
                base_url=self._host_url() + emu.state.config.base_path,
                files=files,
                args=args,
            )
            try:
                emu.api.check_text(request)
                result: ApiResult = handler(request)
            except ApiError as exc:
                result = ApiResult(exc.status, exc.body())
            except Exception as exc:
                state.record_internal_error(method, raw_path, exc)
                result = ApiResult(500, {"status": "ERROR", "code": 500, "message": "Server Error"})
            result.headers.extend(headers)
            if fault is not None and fault.kind == "slow_response":
                time.sleep(fault.delay(1.0))
            elif fault is not None and fault.kind == "drop_after_accept":
                self.close_connection = True
                state.log_request(method, rel, result.status, fault.kind)
                return
            state.log_request(method, rel, result.status, fault.kind if fault else None)
            self._write_json(result.status, result.body, result.headers)
        finally:
            state.end_request()
            if multipart is not None:
                multipart.close()

    # Every path logs before writing: a client that has its answer must find its request in the log.
    def _finish(
        self,
        state: Any,
        method: str,
        rel: str,
        status: int,
        body: Any,
        headers: list[tuple[str, str]] | None = None,
        fault: str | None = None,
    ) -> None:
        state.log_request(method, rel, status, fault)
        self._write_json(status, body, headers)

    def _pre_fault(self, state: Any, method: str, rel: str, kind: str, status: int, seconds: float) -> None:
        if kind == "drop_before":
            self.close_connection = True
            state.log_request(method, rel, 0, kind)
            return
        if kind == "rate_limit":
            retry_after = str(max(0, int(-(-seconds // 1))))
            body = {"status": "ERROR", "code": 429, "message": "Too Many Attempts."}
            self._finish(state, method, rel, 429, body, [("Retry-After", retry_after)], kind)
            return
        body = {"status": "ERROR", "code": status, "message": "Server Error"}
        self._finish(state, method, rel, status, body, None, kind)

    def _unauthenticated(
        self, state: Any, method: str, rel: str, query: dict[str, Any], body: dict[str, Any], missing: bool
    ) -> None:
        message = "Missing Authorization" if missing else "Token not found"
        accept = self.headers.get("Accept", "").lower()
        wants_json = (
            "/json" in accept
            or "+json" in accept
            or query.get("format") == "json"
            or body.get("format") == "json"
            or self.headers.get("X-Requested-With", "").lower() == "xmlhttprequest"
        )
        if wants_json or not self.server.emulator.state.config.html_login_redirect:
            self._finish(state, method, rel, 401, {"status": "ERROR", "code": 401, "message": message})
            return
        location = self._host_url() + "/login"
        page = (
            f'<!DOCTYPE html>\n<html><head><meta charset="UTF-8" />'
            f'<meta http-equiv="refresh" content="0;url=\'{location}\'" />'
            f"<title>Redirecting to {location}</title></head>"
            f'<body>Redirecting to <a href="{location}">{location}</a>.</body></html>'
        ).encode()
        state.log_request(method, rel, 302, None)
        self._write(302, page, "text/html; charset=UTF-8", [("Location", location)])

    # ------------------------------------------------------------------ control API
    def _control(self, path: str) -> None:
        emu = self.server.emulator
        body: Any = None
        try:
            raw = self._reader().read_all()
            if raw.strip():
                body = json.loads(raw)
        except BodyError as exc:
            self.close_connection = True
            self._write_json(exc.status, {"status": "ERROR", "code": exc.status, "message": exc.message})
            return
        except ValueError:
            self._write_json(400, {"status": "ERROR", "code": 400, "message": "Malformed JSON body."})
            return
        status, payload = control.handle(emu, self.command, path.partition("?")[0], body)
        self._write_json(status, payload)
