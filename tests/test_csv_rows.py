"""The campaign's CSV reader gives exactly the rows ``csv.DictReader`` gives, and typed errors.

``sources.read_csv`` builds each row without DictReader's per-row method (a campaign file is read before the
first send, so it is on the clock). What a row is must not change with it: blank lines skipped, a short
row's missing columns None, a long row's extra values as a list under the key None, duplicate column names
resolved the same way. Compared on a generated corpus of the files users export (pandas, Excel: quoted
fields with commas, quotes and line breaks, CRLF, ragged rows, blank lines, spaces-only lines).
"""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

import pytest

from airflow_qikberry.campaign.sources import csv_rows, read_csv
from airflow_qikberry.exceptions import QikberryValidationError

CELLS = ["919876543210", "", " ", "Asha", "a,b", 'say "hi"', "two\nlines", "₹ 1,200.50", "None", "x" * 30]


def _file(rng: random.Random) -> str:
    width = rng.randint(1, 5)
    header = [rng.choice(["mobile", "name", "amount", "mobile", "", "due"]) for _ in range(width)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=rng.choice(["\n", "\r\n"]), delimiter=",")
    writer.writerow(header)
    for _ in range(rng.randint(0, 12)):
        shape = rng.random()
        if shape < 0.1:
            out.write(rng.choice(["\n", "\r\n", "   \n", ",,\n"]))  # blank, spaces only, empty cells
            continue
        size = width if shape < 0.7 else rng.randint(0, width + 3)  # mostly full rows, some ragged
        writer.writerow([rng.choice(CELLS) for _ in range(size)])
    return out.getvalue()


def test_rows_are_exactly_what_dictreader_gives_on_a_generated_corpus() -> None:
    rng = random.Random(19)
    ragged = blank = 0
    for _ in range(3000):
        text = _file(rng)
        expected = list(csv.DictReader(io.StringIO(text, newline="")))
        got = list(read_csv(io.StringIO(text, newline=""), "customers.csv"))
        assert got == expected, text
        assert [list(row) for row in got] == [list(row) for row in expected], text  # key order too
        ragged += sum(None in row or None in row.values() for row in got)
        blank += text.count("\n\n")
    # The corpus does hold short and long rows, and blank lines.
    assert ragged > 500
    assert blank > 100


def test_a_file_without_a_header_line_is_a_typed_error(tmp_path: Path) -> None:
    for text in ("", "\n919876543210\n"):
        path = tmp_path / "customers.csv"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(QikberryValidationError, match=r"csv_path: .* is empty; it needs a header line"):
            list(csv_rows(str(path)))


def test_unreadable_bytes_and_csv_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "customers.csv"
    path.write_bytes(b"mobile,name\n919876543210,Asha\n919876543211,\xff\xfe\n")
    with pytest.raises(QikberryValidationError, match=r"not a readable UTF-8 CSV file at line \d") as info:
        list(csv_rows(str(path)))
    assert info.value.field == "csv_path"
    limit = csv.field_size_limit()
    try:
        csv.field_size_limit(50)
        path.write_text("mobile,name\n919876543210,Asha\n919876543211," + "x" * 60 + "\n", encoding="utf-8")
        with pytest.raises(QikberryValidationError, match="not a readable UTF-8 CSV file at line 3"):
            list(csv_rows(str(path)))
    finally:
        csv.field_size_limit(limit)
