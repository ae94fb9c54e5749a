"""
The file of a bulk upload (``sms/bulk``).

A path, reopened for every attempt, or a seekable binary file object, rewound to where it stood. Checked
before any request: that it exists, is binary and can be read again, its size, and a CSV's header.

Example::

    source = UploadSource.of("/data/customers.csv", None)
    source.check_csv_column("mobile")
    with source.open() as handle:
        transport.post_multipart("sms/bulk", fields, file_field="file", filename=source.name, fileobj=handle,
                                 content_type=source.content_type)
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from airflow_qikberry.exceptions import QikberryValidationError

__all__ = ["UploadSource"]


class UploadSource:
    """The file of a bulk upload: its name, its size in bytes and how to open it (once per attempt)."""

    def __init__(self, name: str, size: int, opener: Callable[[], Any]) -> None:
        self.name, self.size, self.open = name, size, opener

    @property
    def content_type(self) -> str:
        return "text/csv" if self.name.lower().endswith(".csv") else "text/plain"

    @classmethod
    def of(cls, file: str | os.PathLike[str] | IO[bytes], filename: str | None) -> UploadSource:
        """Return the source of ``file``, named ``filename`` (default: the file's own name)."""
        if isinstance(file, (str, os.PathLike)):
            path = Path(file)
            if not path.is_file():
                raise QikberryValidationError(
                    f"file {str(path)!r} does not exist or is not a file.", field="file"
                )
            return cls(filename or path.name, path.stat().st_size, lambda: path.open("rb"))
        if not hasattr(file, "read"):
            raise QikberryValidationError("file must be a path or a binary file object.", field="file")
        if isinstance(file, io.TextIOBase) or isinstance(file.read(0), str):
            # Text mode would fail mid-upload (the multipart writer needs bytes) after the POST has begun.
            raise QikberryValidationError(
                "file is open in text mode; open it in binary mode, open(path, 'rb'), or pass the path.",
                field="file",
            )
        seekable = getattr(file, "seekable", None)
        if not (callable(seekable) and seekable()):
            raise QikberryValidationError(
                "file is a stream that cannot be rewound (not seekable): its length is unknown and a retry "
                "could not read it again. Pass a path, or a seekable binary file such as open(path, 'rb').",
                field="file",
            )
        start = file.tell()
        end = file.seek(0, os.SEEK_END)
        file.seek(start)

        @contextlib.contextmanager
        def rewound() -> Iterator[IO[bytes]]:
            file.seek(start)
            yield file  # the caller's object: rewound, never closed

        name = filename or Path(str(getattr(file, "name", "numbers.txt"))).name
        return cls(name, end - start, rewound)

    def check_csv_column(self, column: str) -> None:
        """Refuse a ``column`` that the CSV's header line does not name."""
        import csv

        with self.open() as handle:
            header_line = handle.readline(65536).decode("utf-8-sig", errors="replace")
        header = [h.strip() for h in next(csv.reader([header_line]), [])]
        if column not in header:
            raise QikberryValidationError(
                f"column {column!r} is not in the CSV header {header!r}.", field="column"
            )
