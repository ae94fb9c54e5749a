"""HTTP/1.1 wire behaviour that ``requests`` cannot produce: raw sockets against the emulator."""

from __future__ import annotations

import json
import socket
from typing import TYPE_CHECKING

from tests.emulator.conftest import EMU_TOKEN

if TYPE_CHECKING:
    from airflow_qikberry.emulator import Emulator


def exchange(emu: Emulator, raw: bytes, read_until_close: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
        sock.sendall(raw)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
            if not read_until_close:
                break
        return b"".join(chunks)


def request(
    path: str, *, method: str = "GET", version: str = "HTTP/1.1", headers: str = "", body: bytes = b""
) -> bytes:
    head = f"{method} {path} {version}\r\nHost: test\r\nAuthorization: Bearer {EMU_TOKEN}\r\n"
    head += "Accept: application/json\r\n"
    if body:
        head += f"Content-Length: {len(body)}\r\n"
    return (head + headers + "\r\n").encode() + body


def test_keep_alive_pipelined_requests_share_one_connection(emu: Emulator) -> None:
    one = request("/api/v2/auth/me")
    last = request("/api/v2/auth/me", headers="Connection: close\r\n")
    raw = exchange(emu, one + one + last)
    assert raw.count(b"HTTP/1.1 200 OK") == 3
    assert raw.count(b"Connection: close") == 1


def test_http10_connection_is_closed_after_one_answer(emu: Emulator) -> None:
    raw = exchange(emu, request("/api/v2/auth/me", version="HTTP/1.0"))
    assert raw.startswith(b"HTTP/1.1 200 OK")
    assert b"Connection: close" in raw


def test_malformed_header_line_is_400(emu: Emulator) -> None:
    raw = exchange(emu, request("/api/v2/auth/me", headers="this line has no colon\r\n"))
    assert raw.startswith(b"HTTP/1.1 400")


def test_invalid_content_length_is_400(emu: Emulator) -> None:
    raw = exchange(emu, request("/api/v2/sms/send", method="POST", headers="Content-Length: ten\r\n"))
    assert raw.startswith(b"HTTP/1.1 400")


def test_body_over_the_limit_is_413(emu: Emulator) -> None:
    emu.configure(max_body_bytes=100)
    body = json.dumps({"to": "919876543210", "message": "x" * 200, "sender": "S", "service": "T"}).encode()
    raw = exchange(
        emu,
        request("/api/v2/sms/send", method="POST", headers="Content-Type: application/json\r\n", body=body),
    )
    assert raw.startswith(b"HTTP/1.1 413")
    assert emu.messages() == []


def test_expect_100_continue(emu: Emulator) -> None:
    body = json.dumps({"to": "919876543210", "message": "x", "sender": "S", "service": "T"}).encode()
    head = request(
        "/api/v2/sms/send",
        method="POST",
        headers=f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n",
    )
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
        sock.sendall(head)
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert len(emu.messages()) == 1


def test_old_style_request_line_uses_the_standard_parser(emu: Emulator) -> None:
    raw = exchange(emu, b"GET /api/v2/auth/me HTTP/2.0\r\n\r\n")
    assert b" 505 " in raw.split(b"\r\n", 1)[0]
