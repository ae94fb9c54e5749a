"""
Campaign files on object storage.

A source CSV read, and a rejected report written, through Airflow's ``ObjectStoragePath`` (``s3://``,
``gs://``, ``file://``..., credentials from an Airflow connection).

A source object is read as a stream (never whole into memory) and measured while it is read: its size, and
a SHA-256 of its bytes. With what the store says of it (ETag, version id, modification time) that is its
identity, recorded in the campaign's task state, so a retry can prove it read exactly the same bytes, or
refuse, saying what changed (:class:`~airflow_qikberry.exceptions.QikberrySourceChangedError`).

fsspec and ``ObjectStoragePath`` are imported here only when an object is opened: DAG files never import
this module. See docs/campaign.md, "Files on object storage".

Example::

    path = object_path("s3://crm/customers.csv", "aws_crm", field="csv_path")
    source = ObjectSource(path, field="csv_path")
    source.check()  # exists, at most 200 MB
    rows = object_csv_rows(source)  # streamed; source.identity() once they are read
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator, Mapping
from typing import IO, Any

from airflow_qikberry.exceptions import QikberrySourceChangedError, QikberryValidationError

__all__ = [
    "ObjectSource",
    "ObjectTarget",
    "check_unchanged",
    "is_object_storage",
    "object_csv_rows",
    "object_path",
    "shown",
]


_BLOCK = 4 * 1024 * 1024  # bytes fetched from the store at a time

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def is_object_storage(value: Any) -> bool:
    """
    Check whether ``value`` is object storage.

    True for an ``ObjectStoragePath`` or a URL (``s3://...``, ``file://...``); False for a local path.
    """
    if value is None:
        return False
    if isinstance(value, str):
        return bool(_URL.match(value.strip()))
    return hasattr(value, "protocol") and hasattr(value, "fs") and hasattr(value, "open")


def _path_class() -> Any:
    try:
        from airflow.sdk import ObjectStoragePath  # Airflow 3
    except ImportError:  # Airflow 2.x
        from airflow.io.path import ObjectStoragePath  # type: ignore[no-redef]
    return ObjectStoragePath


def shown(path: Any) -> str:
    """Return the path as text for logs and errors: its URL, without any password put in it."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.\-]*://)([^/@:]*):[^/@]*@", r"\1\2@", str(path))


def object_path(value: Any, conn_id: str | None, *, field: str) -> Any:
    """
    Return an ``ObjectStoragePath`` for ``value`` (one already, or a URL).

    It carries ``conn_id``'s credentials when the URL names no connection itself (``s3://conn_id@bucket/key``
    does).
    """
    cls = _path_class()
    if isinstance(value, cls):
        return value
    try:
        return cls(str(value).strip(), conn_id=conn_id or None)
    except Exception as exc:
        raise QikberryValidationError(
            f"{field}: cannot use {shown(value)!r} ({type(exc).__name__}: {exc}); give a local path, a URL "
            "such as s3://bucket/key (with storage_conn_id naming the connection) or an ObjectStoragePath.",
            field=field,
        ) from None


def _info(path: Any, field: str) -> dict[str, Any]:
    try:
        info = path.fs.info(path.path)
    except FileNotFoundError:
        raise QikberryValidationError(f"{field}: {shown(path)!r} does not exist.", field=field) from None
    except Exception as exc:  # any store's error: permissions, a missing bucket, no such connection...
        raise QikberryValidationError(
            f"{field}: cannot read {shown(path)!r} ({type(exc).__name__}: {exc}).", field=field
        ) from None
    if info.get("type") == "directory":
        raise QikberryValidationError(f"{field}: {shown(path)!r} is a folder, not a file.", field=field)
    return dict(info)


def _meta(info: Mapping[str, Any]) -> dict[str, Any]:
    """Return what the store says identifies a version of the object (whichever of these it reports)."""
    lowered = {str(k).lower(): v for k, v in info.items()}
    meta: dict[str, Any] = {}
    for name, keys in (
        ("etag", ("etag", "md5_hash", "md5", "content_md5")),
        ("version_id", ("versionid", "version_id", "generation")),
        ("modified", ("lastmodified", "last_modified", "updated", "mtime")),
    ):
        for key in keys:
            if lowered.get(key) not in (None, ""):
                meta[name] = str(lowered[key])
                break
    return meta


class _Measured(io.RawIOBase):
    """A binary stream that counts and hashes what is read through it, and stops past ``limit`` bytes."""

    def __init__(self, raw: IO[bytes], limit: int, on_over: Any) -> None:
        self.raw, self.limit, self.on_over = raw, limit, on_over
        self.size = 0
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.size += n
        if self.size > self.limit:
            self.on_over(self.size)
        self.sha256.update(data)
        return n


class ObjectSource:
    """A campaign's CSV source on object storage: checked, streamed, and identified by what was read."""

    def __init__(self, path: Any, *, field: str = "csv_path") -> None:
        self.path, self.field = path, field
        self.url = shown(path)
        self.meta: dict[str, Any] = {}
        self.checked = False
        self._read: _Measured | None = None

    def check(self) -> None:
        """Check the object exists and is within the API's 200 MB campaign-file limit (asked of the store)."""
        from airflow_qikberry.campaign.sources import MAX_CSV_BYTES

        info = _info(self.path, self.field)
        self.meta, self.checked = _meta(info), True
        size = info.get("size")
        if isinstance(size, int) and size > MAX_CSV_BYTES:
            self._too_big(size)

    def _too_big(self, size: int) -> None:
        from airflow_qikberry.campaign.sources import MAX_CSV_BYTES

        raise QikberryValidationError(
            f"{self.field}: {self.url!r} is {'over ' if self._read else ''}{size:,} bytes; campaign files "
            f"may be at most {MAX_CSV_BYTES:,} (200 MB). Split it into several campaigns.",
            field=self.field,
        )

    def open(self) -> IO[bytes]:
        """
        Open the object's bytes as a buffered stream, measured as they are read.

        The limit holds even when the object grew after :meth:`check`.
        """
        from airflow_qikberry.campaign.sources import MAX_CSV_BYTES

        if not self.checked:
            self.check()
        try:
            try:
                # The store's own read-ahead (s3fs: 50 MB blocks by default) bounded too.
                raw = self.path.open("rb", block_size=_BLOCK)
            except TypeError:  # a filesystem without block_size
                raw = self.path.open("rb")
        except Exception as exc:
            raise QikberryValidationError(
                f"{self.field}: cannot read {self.url!r} ({type(exc).__name__}: {exc}).", field=self.field
            ) from None
        self._read = _Measured(raw, MAX_CSV_BYTES, self._too_big)
        return io.BufferedReader(self._read, buffer_size=1 << 20)

    def identity(self) -> dict[str, Any] | None:
        """
        Return what was read.

        ``{"url", "size", "sha256"}`` and the store's ``etag``, ``version_id``, ``modified`` when it reports
        them (None before the object is read).
        """
        if self._read is None:
            return None
        return {
            "url": self.url,
            "size": self._read.size,
            "sha256": self._read.sha256.hexdigest(),
            **self.meta,
        }


def object_csv_rows(
    source: ObjectSource, *, delimiter: str = ",", field: str = "csv_path"
) -> Iterator[Mapping[str, Any]]:
    """Stream the rows of a CSV object with a header line (UTF-8, a BOM is ignored), as ``csv_rows`` does."""
    from airflow_qikberry.campaign.sources import read_csv

    with source.open() as binary, io.TextIOWrapper(binary, encoding="utf-8-sig", newline="") as handle:
        yield from read_csv(handle, source.url, delimiter=delimiter, field=field)


def check_unchanged(
    recorded: Any, current: Mapping[str, Any] | None, *, field: str, chunks_done: int
) -> None:
    """
    Refuse to resume when the source object an earlier try read differs from the one read now.

    The bytes decide (their SHA-256): an object rewritten with the same content resumes. The store's size,
    ETag, version and modification time say what changed.
    """
    if not isinstance(recorded, Mapping) or current is None or not recorded.get("sha256"):
        return
    if recorded.get("sha256") == current.get("sha256"):
        return
    changes = {
        name: (recorded.get(name), current.get(name))
        for name in ("url", "size", "etag", "version_id", "modified", "sha256")
        if recorded.get(name) != current.get(name)
    }
    said = "; ".join(
        f"{name} {old if old is not None else 'unknown'} -> {new if new is not None else 'unknown'}"
        for name, (old, new) in changes.items()
    )
    raise QikberrySourceChangedError(
        f"{field}: {current.get('url')!r} changed since an earlier try of this task read it and sent part of "
        f"the campaign ({chunks_done} chunk(s)): {said}. A resumed campaign must read exactly the same bytes "
        "(custom ids name row positions), so nothing was sent in this try. Put the earlier version back (a "
        "versioned bucket keeps it) and clear the task, or write a new file under a new name for a new "
        "campaign, or clear the task with resend=True to send it all again.",
        field=field,
        changes=changes,
    )


class ObjectTarget:
    """
    Where a rejected report goes on object storage.

    Written locally while the campaign runs, then uploaded whole (object stores cannot append) each time the
    report is closed.
    """

    def __init__(self, path: Any, *, field: str = "rejected_path") -> None:
        self.path, self.field = path, field
        self.url = shown(path)

    def upload(self, local: str) -> None:
        import shutil

        try:
            with open(local, "rb") as src, self.path.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except Exception as exc:
            raise QikberryValidationError(
                f"{self.field}: cannot write {self.url!r} ({type(exc).__name__}: {exc}).", field=self.field
            ) from None
