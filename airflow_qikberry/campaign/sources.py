"""
Where a campaign's rows come from.

A list, a CSV file, a SQL query or an XCom, each streamed as mappings of column name to value, and which
column holds the phone number.

See :mod:`airflow_qikberry.campaign` and docs/campaign.md.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO, Any, NamedTuple

from airflow_qikberry import phone
from airflow_qikberry import validation as v
from airflow_qikberry.exceptions import QikberryValidationError

__all__ = [
    "MAX_CSV_BYTES",
    "PHONE_COLUMNS",
    "SOURCE_FIELDS",
    "SQL_FETCH_SIZE",
    "Source",
    "check_csv_file",
    "choose_source",
    "csv_rows",
    "phone_key",
    "read_csv",
    "recipient_rows",
    "sql_rows",
]


MAX_CSV_BYTES = 200 * 1024 * 1024  # campaign files <= 200 MB (reference section 3.9)


SQL_FETCH_SIZE = 1_000


#: Column names taken as the phone number when ``phone_column`` is not given (case-insensitive, in order);
#: failing those, the first column whose name contains "mobile" or "phone".
PHONE_COLUMNS = ("mobile", "phone", "msisdn", "to", "number", "mobile_number", "phone_number")


SOURCE_FIELDS = ("recipients", "csv_path", "sql", "recipients_xcom_task_id")


class Source(NamedTuple):
    """
    Where the rows come from.

    The operator field that named it, and a function that streams its rows (called once; each row a mapping of
    column name to value). ``identity``, for a source object on object storage, returns what was read once the
    rows are read (:meth:`~airflow_qikberry.campaign.storage.ObjectSource.identity`): a retry must read the
    same bytes.
    """

    field: str
    rows: Callable[[], Iterator[Mapping[str, Any]]]
    identity: Callable[[], dict[str, Any] | None] | None = None


def choose_source(**given: Any) -> str:
    """
    Return the one source field that is set.

    The fields: ``recipients``, ``csv_path``, ``sql``, ``recipients_xcom_task_id``.

    ``None`` means not given; an empty list of recipients is given (and later fails as "no rows").
    """
    named = [name for name in SOURCE_FIELDS if given.get(name) not in (None, "")]
    if len(named) == 1:
        return named[0]
    fields = ", ".join(SOURCE_FIELDS)
    if not named:
        raise QikberryValidationError(
            f"recipients: no recipients given; set exactly one of {fields} (sql with sql_conn_id).",
            field="recipients",
        )
    raise QikberryValidationError(
        f"{named[0]}: several recipient sources given ({', '.join(named)}); set exactly one of {fields}.",
        field=named[0],
    )


def recipient_rows(
    recipients: Any, *, phone_column: str | None = None, field: str = "recipients"
) -> Iterator[Mapping[str, Any]]:
    """
    Rows of a ``recipients`` value.

    A list of numbers and/or dicts (one row each), one dict, or a string of numbers (comma, semicolon or
    newline separated; a rendered Python/JSON list is read as a list).

    A bare number becomes ``{"mobile": number}`` (``{phone_column: number}`` when that is given).
    """
    items: Iterable[Any]
    recipients = v.rendered_list(
        recipients, field, dicts=True, hint="pass a list of numbers or of dicts (one per row)."
    )
    if isinstance(recipients, str):
        items = phone.split_recipients(recipients)
    elif isinstance(recipients, Mapping):
        items = [recipients]
    elif isinstance(recipients, (bytes, int, float)) or not isinstance(recipients, Iterable):
        raise QikberryValidationError(
            f"{field}: got {type(recipients).__name__}; pass a list of numbers or of dicts (one per row).",
            field=field,
        )
    else:
        items = recipients
    key = phone_column or "mobile"
    for item in items:
        yield dict(item) if isinstance(item, Mapping) else {key: item}


def check_csv_file(path: str, *, field: str = "csv_path") -> None:
    """Check that the CSV exists and is within the API's 200 MB campaign-file limit, before reading it."""
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise QikberryValidationError(
            f"{field}: cannot read {path!r} ({exc.strerror or exc}).", field=field
        ) from None
    if size > MAX_CSV_BYTES:
        raise QikberryValidationError(
            f"{field}: {path!r} is {size:,} bytes; campaign files may be at most {MAX_CSV_BYTES:,} (200 MB). "
            "Split it into several campaigns.",
            field=field,
        )


def csv_rows(path: str, *, delimiter: str = ",", field: str = "csv_path") -> Iterator[Mapping[str, Any]]:
    """Stream the rows of a CSV file with a header line (UTF-8, a BOM is ignored)."""
    check_csv_file(path, field=field)
    with open(path, newline="", encoding="utf-8-sig") as handle:
        yield from read_csv(handle, path, delimiter=delimiter, field=field)


def read_csv(
    handle: IO[str], name: str, *, delimiter: str = ",", field: str = "csv_path"
) -> Iterator[Mapping[str, Any]]:
    """
    Yield the rows of an open CSV text stream with a header line; ``name`` (a path or URL) for errors.

    Each row is what ``csv.DictReader`` gives (blank lines skipped, a short row's missing columns None, a
    long row's extra values as a list under the key None), built without its per-row Python method: the
    rows of a campaign file are read before the first send. tests/test_csv_rows.py compares both.
    """
    reader = csv.reader(handle, delimiter=delimiter)
    try:
        names = next(reader, None)
        if not names:
            raise QikberryValidationError(f"{field}: {name!r} is empty; it needs a header line.", field=field)
        width = len(names)
        for values in reader:
            if len(values) == width:
                yield dict(zip(names, values, strict=True))
            elif values:
                row: dict[Any, Any] = dict(zip(names, values, strict=False))
                if len(values) > width:
                    row[None] = values[width:]
                else:
                    row.update(dict.fromkeys(names[len(values) :]))
                yield row
    except (csv.Error, UnicodeDecodeError) as exc:
        raise QikberryValidationError(
            f"{field}: {name!r} is not a readable UTF-8 CSV file at line {reader.line_num} ({exc}).",
            field=field,
        ) from None


def sql_rows(
    db_hook: Any, sql: str, parameters: Any = None, *, fetch_size: int = SQL_FETCH_SIZE
) -> Iterator[Mapping[str, Any]]:
    """
    Stream a query's rows as dicts (column names from ``cursor.description``), ``fetch_size`` at a time.

    ``db_hook`` is any hook with ``get_conn()`` returning a DB-API connection (every common.sql
    ``DbApiHook``).
    """
    get_conn = getattr(db_hook, "get_conn", None)
    if not callable(get_conn):
        raise QikberryValidationError(
            f"sql_conn_id: its hook ({type(db_hook).__name__}) has no get_conn(); use a connection of a "
            "database type (a common.sql DbApiHook).",
            field="sql_conn_id",
        )
    conn = get_conn()
    try:
        cursor = conn.cursor()
        try:
            if parameters is None:
                cursor.execute(sql)
            else:
                cursor.execute(sql, parameters)
            if not cursor.description:
                raise QikberryValidationError(
                    "sql: the statement returned no result set; write a SELECT.", field="sql"
                )
            names = [str(col[0]) for col in cursor.description]
            while batch := cursor.fetchmany(fetch_size):
                for values in batch:
                    yield dict(zip(names, values, strict=False))
        finally:
            cursor.close()
    finally:
        conn.close()


def phone_key(keys: Iterable[str], phone_column: str | None) -> str:
    """Return the column that holds the number: ``phone_column`` (exact, else case-insensitive) or a guess."""
    columns = [str(k) for k in keys]
    lowered = {c.lower(): c for c in reversed(columns)}
    if phone_column:
        found = phone_column if phone_column in columns else lowered.get(phone_column.lower())
        if found is None:
            raise QikberryValidationError(
                f"phone_column: {phone_column!r} is not a column of the rows (columns: {columns!r}).",
                field="phone_column",
            )
        return found
    for name in PHONE_COLUMNS:
        if name in lowered:
            return lowered[name]
    for column in columns:
        if "mobile" in column.lower() or "phone" in column.lower():
            return column
    raise QikberryValidationError(
        f"phone_column: none of the columns {columns!r} looks like a phone number column; name it with "
        f"phone_column (guessed names: {', '.join(PHONE_COLUMNS)}).",
        field="phone_column",
    )
