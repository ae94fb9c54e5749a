"""
Request bodies: a bounded reader (Content-Length or chunked), PHP-style form keys, streaming multipart.

The multipart parser reads the body in fixed-size blocks and spools file parts to a temporary file, so a
large upload never sits in memory whole and nothing beyond the request body is read from the socket.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import Message
from typing import IO, Any, Protocol
from urllib.parse import parse_qsl

BLOCK = 64 * 1024
MAX_FIELD_BYTES = 8 * 1024 * 1024
MAX_PART_HEADER_BYTES = 16 * 1024
SPOOL_BYTES = 1024 * 1024


class BodyError(Exception):
    """The request body cannot be read or parsed; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class Readable(Protocol):
    """What :class:`BodyReader` reads from: a buffered socket file."""

    def read(self, size: int = ..., /) -> bytes: ...
    def readline(self, size: int = ..., /) -> bytes: ...


class BodyReader:
    """Reads exactly one request body from a buffered socket file, never past its end."""

    def __init__(self, rfile: Readable, length: int | None, chunked: bool, limit: int) -> None:
        self._rfile = rfile
        self._remaining = length or 0
        self._chunked = chunked
        self._chunk_left = 0
        self._done = not chunked and not length
        self._limit = limit
        self._consumed = 0

    @property
    def consumed(self) -> int:
        return self._consumed

    def read(self, size: int = BLOCK) -> bytes:
        if self._done:
            return b""
        data = self._read_chunked(size) if self._chunked else self._read_plain(size)
        self._consumed += len(data)
        if self._consumed > self._limit:
            raise BodyError("The request body is too large.", status=413)
        return data

    def read_all(self) -> bytes:
        blocks = []
        while block := self.read(BLOCK):
            blocks.append(block)
        return b"".join(blocks)

    def drain(self, max_bytes: int) -> bool:
        """Discard the rest of the body; False when more than ``max_bytes`` remain (caller closes instead)."""
        if not self._chunked and self._remaining > max_bytes:
            return False
        try:
            while self.read(BLOCK):
                pass
        except (BodyError, OSError, ValueError):
            return False
        return True

    def _read_plain(self, size: int) -> bytes:
        data = self._rfile.read(min(size, self._remaining))
        if not data:
            raise BodyError("The request body ended early.")
        self._remaining -= len(data)
        if self._remaining <= 0:
            self._done = True
        return data

    def _read_chunked(self, size: int) -> bytes:
        if self._chunk_left == 0:
            line = self._rfile.readline(1024)
            try:
                self._chunk_left = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BodyError("Malformed chunked request body.") from None
            if self._chunk_left == 0:
                # Trailer section: header lines until an empty line.
                while (trailer := self._rfile.readline(8192)) not in (b"\r\n", b"\n", b""):
                    del trailer
                self._done = True
                return b""
        data = self._rfile.read(min(size, self._chunk_left))
        if not data:
            raise BodyError("The request body ended early.")
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            self._rfile.readline(8)  # the CRLF closing the chunk
        return data


_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])+)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def nest(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Fold PHP-style keys (``tags[]=a``, ``meta[tags][]=a``, ``filter[name]=x``) into nested values."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        m = _KEY.match(key)
        if not m:
            out[key] = value
            continue
        segments = [m.group(1), *_SEGMENT.findall(m.group(2))]
        if "" in segments[:-1]:
            out[key] = value  # a[][b] forms are not used by this API: keep the key literally
            continue
        cur = out
        for seg in segments[:-2]:
            nxt = cur.get(seg)
            if not isinstance(nxt, dict):
                nxt = cur[seg] = {}
            cur = nxt
        parent, last = segments[-2], segments[-1]
        if last == "":
            bucket = cur.get(parent)
            if not isinstance(bucket, list):
                bucket = cur[parent] = []
            bucket.append(value)
        else:
            nxt = cur.get(parent)
            if not isinstance(nxt, dict):
                nxt = cur[parent] = {}
            nxt[last] = value
    return out


def parse_query(query: str) -> dict[str, Any]:
    return nest(parse_qsl(query, keep_blank_values=True)) if query else {}


@dataclass
class UploadedFile:
    """A file part of a multipart upload, spooled to a temporary file."""

    filename: str
    content_type: str
    file: IO[bytes]
    size: int = 0


@dataclass
class MultipartResult:
    """The fields and files of a parsed multipart body."""

    fields: list[tuple[str, str]] = field(default_factory=list)
    files: dict[str, UploadedFile] = field(default_factory=dict)

    def close(self) -> None:
        for upload in self.files.values():
            upload.file.close()


class _Scanner:
    def __init__(self, reader: BodyReader) -> None:
        self._reader = reader
        self._buf = b""

    def read_until(self, sep: bytes, sink: Callable[[bytes], None], limit: int | None = None) -> bool:
        """Feed bytes before ``sep`` to ``sink`` and consume ``sep``; False if the body ends first."""
        total = 0
        keep = len(sep) - 1
        while True:
            idx = self._buf.find(sep)
            if idx >= 0:
                total += idx
                if limit is not None and total > limit:
                    raise BodyError("A multipart section is too large.")
                sink(self._buf[:idx])
                self._buf = self._buf[idx + len(sep) :]
                return True
            if len(self._buf) > keep:
                head, self._buf = self._buf[: len(self._buf) - keep], self._buf[len(self._buf) - keep :]
                total += len(head)
                if limit is not None and total > limit:
                    raise BodyError("A multipart section is too large.")
                sink(head)
            block = self._reader.read(BLOCK)
            if not block:
                return False
            self._buf += block

    def take(self, n: int) -> bytes:
        while len(self._buf) < n:
            block = self._reader.read(BLOCK)
            if not block:
                break
            self._buf += block
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


def boundary_of(content_type: str) -> str | None:
    msg = Message()
    msg["content-type"] = content_type
    boundary = msg.get_param("boundary")
    return boundary if isinstance(boundary, str) and boundary else None


def parse_multipart(reader: BodyReader, boundary: str) -> MultipartResult:
    """Parse a ``multipart/form-data`` body; file parts are spooled (memory up to 1 MB, then disk)."""
    result = MultipartResult()
    scanner = _Scanner(reader)
    delimiter = b"--" + boundary.encode("latin-1")

    def discard(_: bytes) -> None:
        return None

    if not scanner.read_until(delimiter, discard, limit=MAX_PART_HEADER_BYTES):
        raise BodyError("Malformed multipart body: no boundary found.")
    try:
        while True:
            marker = scanner.take(2)
            if marker == b"--" or marker == b"":
                break
            if marker != b"\r\n":
                raise BodyError("Malformed multipart body.")
            header_blob = bytearray()
            if not scanner.read_until(b"\r\n\r\n", header_blob.extend, limit=MAX_PART_HEADER_BYTES):
                raise BodyError("Malformed multipart body: truncated part headers.")
            name, filename, ctype = _part_headers(bytes(header_blob))
            if filename is not None:
                spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
                upload = UploadedFile(filename=filename, content_type=ctype, file=spool)

                def write(chunk: bytes, upload: UploadedFile = upload) -> None:
                    upload.file.write(chunk)
                    upload.size += len(chunk)

                found = scanner.read_until(b"\r\n" + delimiter, write)
                spool.seek(0)
                if name:
                    old = result.files.pop(name, None)
                    if old is not None:
                        old.file.close()
                    result.files[name] = upload
                else:
                    spool.close()
            else:
                value = bytearray()
                found = scanner.read_until(b"\r\n" + delimiter, value.extend, limit=MAX_FIELD_BYTES)
                if name:
                    result.fields.append((name, value.decode("utf-8", errors="replace")))
            if not found:
                raise BodyError("Malformed multipart body: missing closing boundary.")
        # Epilogue: consume whatever is left so the connection stays usable.
        while scanner.take(BLOCK):
            pass
    except BaseException:
        result.close()
        raise
    return result


def _part_headers(blob: bytes) -> tuple[str | None, str | None, str]:
    msg = Message()
    for line in blob.decode("utf-8", errors="replace").split("\r\n"):
        key, sep, value = line.partition(":")
        if sep:
            msg[key.strip()] = value.strip()
    name = msg.get_param("name", header="content-disposition")
    filename = msg.get_param("filename", header="content-disposition")
    return (
        name if isinstance(name, str) else None,
        filename if isinstance(filename, str) else None,
        msg.get_content_type() if msg.get("content-type") else "application/octet-stream",
    )
