"""A number is never rewritten into another number: a corpus of the forms phone numbers really arrive in.

Each entry is what a pandas or Excel export, a SQL driver, a web page or a hand-typed template hands over,
with the digits it must become (country code + national number, the API's format) or ``REFUSED``. The rule
is asserted on every entry through every path a number takes to the API:

* ``phone.normalize_number`` / ``normalize_numbers`` (typed error naming the field when refused);
* the campaign's prepare pass, from a real CSV file read by the campaign's CSV source, from SQL rows read
  through the real ``SqliteHook``, and from Python rows (rejected rows carry reason ``invalid_number``);
* ``QikberryHook.send_sms`` over real HTTP: the emulator's log shows exactly the expected digits, or 0
  requests.

Plus a property: whatever separators, spaces, invisible characters and digit scripts are put around a
digit string, the output is those digits (after a country code, a trunk prefix or an international prefix
is replaced by the country code), or the input is refused: never another digit string.
"""

from __future__ import annotations

import csv
import io
import json
import numbers
from collections.abc import Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_qikberry import campaign as c
from airflow_qikberry import phone
from airflow_qikberry.exceptions import QikberryValidationError
from tests.helpers import DROP

REFUSED = None
AS_TEXT = "read the column as text"  # the fix every float-looking refusal must name


class Entry(NamedTuple):
    id: str
    value: Any
    region: str | None
    expected: str | None  # the digits sent, or REFUSED
    says: str = ""  # a phrase the refusal must contain


class Int64:
    """A numpy-like integer scalar: numpy registers its integer types with ``numbers.Integral`` exactly like
    this (numpy itself is not a dependency)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __int__(self) -> int:
        return self.value

    def __index__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"int64({self.value})"


class Float32:
    """A numpy-like 32-bit float, registered with ``numbers.Real`` as numpy's floating types are: 919876543210
    is 919876534272.0 in float32, so no such value can be trusted."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __float__(self) -> float:
        return self.value

    def __repr__(self) -> str:
        return f"float32({self.value})"


numbers.Integral.register(Int64)
numbers.Real.register(Float32)


IN, US = "IN", "US"
N = "919876543210"

CORPUS = [
    # pandas / Excel: a number column written back as text
    Entry("pandas float column as text", "919876543210.0", None, REFUSED, AS_TEXT),
    Entry("pandas float column as text, US region", "4155550101.0", US, REFUSED, AS_TEXT),
    Entry("two decimals", "919876543210.00", None, REFUSED, AS_TEXT),
    Entry("decimal comma", "919876543210,0", None, REFUSED, AS_TEXT),
    Entry("scientific, all digits", "9.19876543210E+11", None, REFUSED, AS_TEXT),
    Entry("scientific as Excel shows it", "9.19877E+11", None, REFUSED, AS_TEXT),
    Entry("scientific with decimal comma", "9,19876E+11", None, REFUSED, AS_TEXT),
    Entry("scientific lower case", "9.19876543210e11", None, REFUSED, AS_TEXT),
    Entry("a decimal number", "98765432.10", IN, REFUSED, AS_TEXT),
    # number values: SQL drivers, pandas records, JSON
    Entry("int from a SQL driver", 919876543210, None, N),
    Entry("int, national, region IN", 9876543210, IN, N),
    Entry("int, national, region US", 4155550101, US, "14155550101"),
    Entry("int that lost an Italian leading 0", 612345678, "IT", REFUSED, AS_TEXT),
    Entry("numpy-like int64", Int64(919876543210), None, N),
    Entry("float value", 919876543210.0, None, REFUSED, AS_TEXT),
    Entry("float value, US region", 4155550101.0, US, REFUSED, AS_TEXT),
    Entry("float value that lost digits", 919877000000.0, None, REFUSED, AS_TEXT),
    Entry("numpy-like float32", Float32(919876534272.0), None, REFUSED, AS_TEXT),
    Entry("Decimal from SQL NUMERIC", Decimal("919876543210"), None, N),
    Entry("Decimal with a scale", Decimal("919876543210.00"), None, N),
    Entry("Decimal in scientific notation", Decimal("9.19877E+11"), None, REFUSED, AS_TEXT),
    Entry("Decimal with a fraction", Decimal("919876543210.5"), None, REFUSED, "decimal number"),
    Entry("boolean", True, None, REFUSED, "boolean"),
    Entry("negative int", -919876543210, None, REFUSED, "negative"),
    Entry("negative as text", "-919876543210", None, REFUSED, "negative"),
    Entry("very large int", 10**20, None, REFUSED, "digits"),
    # Unicode spaces and invisible characters (copied from web pages, spreadsheets, chat apps)
    Entry("no-break spaces", "+91\u00a098765\u00a043210", None, N),
    Entry("narrow no-break spaces", "+91\u202f98765\u202f43210", None, N),
    Entry("thin spaces", "+91\u200998765\u200943210", None, N),
    Entry("figure spaces", "+91\u200798765\u200743210", None, N),
    Entry("ideographic space", "+91\u300098765 43210", None, N),
    Entry("byte order mark", "\ufeff919876543210", None, N),
    Entry("zero-width spaces", "91\u200b98765\u200b43210", None, N),
    Entry("bidi marks", "\u200e+91 98765 43210\u200f", None, N),
    Entry("bidi isolates", "\u2066+44 7700 900123\u2069", None, "447700900123"),
    Entry("soft hyphen", "9198765\u00ad43210", None, N),
    # digits of other scripts: mapped to the ASCII digit of the same value, never guessed
    Entry(
        "full-width digits",
        "\uff0b\uff19\uff11 \uff19\uff18\uff17\uff16\uff15 \uff14\uff13\uff12\uff11\uff10",
        None,
        N,
    ),
    Entry("Arabic-Indic digits", "٩١٩٨٧٦٥٤٣٢١٠", None, N),
    Entry("Persian digits", "۹۱۹۸۷۶۵۴۳۲۱۰", None, N),
    Entry("Devanagari digits", "९१९८७६५४३२१०", None, N),
    Entry("Bengali digits", "৯১৯৮৭৬৫৪৩২১০", None, N),
    Entry("superscript digits are not digits", "⁹¹⁹⁸⁷⁶⁵⁴³²¹⁰", None, REFUSED, "characters other than digits"),
    Entry("circled digits are not digits", "⑨①⑨⑧⑦⑥⑤④③②①⓪", None, REFUSED, "characters other than digits"),
    Entry("en dash separator", "98765\u201343210", IN, N),
    Entry("minus sign separator", "98765\u221243210", IN, N),
    Entry("full-width hyphen", "98765\uff0d43210", IN, N),
    # markers that keep a number as text, and URIs
    Entry("Excel apostrophe", "'919876543210", None, N),
    Entry("Excel apostrophe before +", "'+91 98765 43210", None, N),
    Entry('Excel ="..." text idiom', '="919876543210"', None, N),
    Entry('Excel ="0..." national', '="09876543210"', IN, N),
    Entry("tel: URI", "tel:+91-98765-43210", None, N),
    Entry("TEL: URI, US", "TEL:+1-415-555-0101", None, "14155550101"),
    Entry("tel: local with region", "tel:9876543210", IN, N),
    Entry("tel: with parameters", "tel:+91-98765-43210;ext=12", None, REFUSED, "characters other"),
    # separators, dots included
    Entry("dashes", "98765-43210", IN, N),
    Entry("dot as group separator", "98765.43210", IN, N),
    Entry("German dots", "030.1234.5678", "DE", "493012345678"),
    Entry("US dots", "415.555.0101", US, "14155550101"),
    Entry("US parentheses", "(415) 555-0101", US, "14155550101"),
    Entry("French dots", "06.12.34.56.78", "FR", "33612345678"),
    Entry("(0) after the country code", "+44 (0)20 7946 0958", None, "442079460958"),
    Entry("00 international prefix", "0091 98765 43210", None, N),
    Entry("US 011 international prefix", "011 44 7700 900123", US, "447700900123"),
    Entry("trunk prefix", "09876543210", IN, N),
    Entry("API format", "919876543210", None, N),
    # national forms phonenumbers would change digits in: refused, not sent elsewhere
    Entry("Argentine 15 mobile form", "011 15 2345-6789", "AR", REFUSED, "international format"),
    Entry("Argentine international form", "+54 9 11 2345 6789", None, "5491123456789"),
    Entry("Brazilian carrier code", "0 21 11 98765 4321", "BR", REFUSED, "international format"),
    # the API's own limits: 8-15 digits with the country code (item 2)
    Entry("16 digits", "+49 30 123456789012", None, REFUSED, "16 digits"),
    Entry("16-digit int", 4912345678901234, None, REFUSED, "16 digits"),
    Entry("7 digits (Saint Helena)", "+290 1234", None, REFUSED, "7 digits"),
    Entry("7 digits (Niue)", "+683 4002", None, REFUSED, "7 digits"),
    Entry("8 digits (Falklands)", "+500 12345", None, "50012345"),
    Entry("15 digits (Austria)", "+43 664 1234567890", None, "436641234567890"),
]

TEXT = [e for e in CORPUS if isinstance(e.value, str)]
BY_ID = {e.id: e for e in CORPUS}


def test_the_corpus_is_big_and_covers_both_outcomes() -> None:
    assert len(CORPUS) == len(BY_ID) >= 70
    assert sum(e.expected is None for e in CORPUS) >= 25
    assert sum(e.expected is not None for e in CORPUS) >= 40


# ----------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("entry", CORPUS, ids=lambda e: e.id)
def test_normalize_number(entry: Entry) -> None:
    for call in (
        lambda: phone.normalize_number(entry.value, default_region=entry.region, field="mobile"),
        lambda: phone.normalize_numbers([entry.value], default_region=entry.region, field="mobile")[0],
    ):
        if entry.expected is not None:
            assert call() == entry.expected
            continue
        with pytest.raises(QikberryValidationError) as info:
            call()
        assert info.value.field == "mobile"
        assert entry.says in info.value.message, info.value.message


# ----------------------------------------------------------------------------------------- campaign
def _prepare(rows: Iterable[dict[str, Any]], region: str | None) -> tuple[dict[str, str], dict[str, int]]:
    """Run the prepare pass; returns ({row id: digits spooled}, {rejection reason: count})."""
    spool, report = io.BytesIO(), c.RejectedReport()
    rows = list(rows)
    with report:
        c.prepare(
            rows,
            spool,
            report,
            plan=c.ChunkPlan(1000),
            render=lambda row: f"Hi {row['id']}",  # one text per row: no row is a duplicate of another
            phone_column="mobile",
            default_region=region,
        )
    sent = {}
    for line in spool.getvalue().decode().splitlines():
        number, text, _ = json.loads(line)
        sent[text.removeprefix("Hi ")] = number
    assert len(sent) + report.total == len(rows)
    return sent, dict(report.counts)


def _check_campaign(entries: list[Entry], sent: dict[str, str], rejected: dict[str, int]) -> None:
    for entry in entries:
        if entry.expected is None:
            assert entry.id not in sent, entry
        else:
            assert sent.get(entry.id) == entry.expected, entry
    refused = sum(e.expected is None for e in entries)
    assert rejected == ({c.INVALID_NUMBER: refused} if refused else {})


def _regions(entries: list[Entry]) -> dict[str | None, list[Entry]]:
    out: dict[str | None, list[Entry]] = {}
    for entry in entries:
        out.setdefault(entry.region, []).append(entry)
    return out


def test_campaign_from_a_csv_file_as_pandas_and_excel_write_it(tmp_path: Path) -> None:
    # Every text entry is a cell of a real file, read back by the campaign's own CSV source: what a number
    # column written by pandas (919876543210.0), Excel (9.19877E+11) or a person looks like on disk.
    for region, entries in _regions(TEXT).items():
        path = tmp_path / f"customers-{region}.csv"
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "mobile"])
            writer.writerows([entry.id, entry.value] for entry in entries)
        sent, report = _prepare(c.csv_rows(str(path)), region)
        _check_campaign(entries, sent, report)


def test_campaign_from_a_pandas_float_column_with_a_missing_value(tmp_path: Path) -> None:
    # df.to_csv() of a column holding one empty cell: pandas makes the column float, writes every number with
    # ".0" and the empty cell as nothing. No row may go to 9198765432100; the empty one is a missing number.
    path = tmp_path / "export.csv"
    path.write_text("id,mobile\na,919876543210.0\nb,\nc,919876543211.0\n", encoding="utf-8")
    spool, report = io.BytesIO(), c.RejectedReport(str(tmp_path / "rejected.csv"))
    with report:
        prepared = c.prepare(
            c.csv_rows(str(path)), spool, report, plan=c.ChunkPlan(10), message="Hi", default_region=IN
        )
    assert prepared.accepted == 0
    assert spool.getvalue() == b""
    assert dict(report.counts) == {c.INVALID_NUMBER: 2, c.MISSING_NUMBER: 1}
    rejected = list(csv.DictReader((tmp_path / "rejected.csv").open(encoding="utf-8")))
    assert [r["value"] for r in rejected] == ["919876543210.0", "", "919876543211.0"]
    assert AS_TEXT in rejected[0]["detail"]


def test_campaign_from_python_rows_with_number_values() -> None:
    # Rows as pandas' to_dict("records") or an XCom hand them over: every entry, number values included,
    # plus a NaN, which is how pandas writes an empty cell of a number column.
    for region, entries in _regions(CORPUS).items():
        sent, report = _prepare(({"id": e.id, "mobile": e.value} for e in entries), region)
        _check_campaign(entries, sent, report)
    spool, report_ = io.BytesIO(), c.RejectedReport()
    c.prepare([{"mobile": float("nan")}], spool, report_, plan=c.ChunkPlan(1), message="Hi")
    assert dict(report_.counts) == {c.MISSING_NUMBER: 1}


def test_campaign_from_sql_rows_through_the_real_sqlite_hook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook

    db = tmp_path / "crm.db"
    monkeypatch.setenv("AIRFLOW_CONN_CRM_DB", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    hook = SqliteHook(sqlite_conn_id="crm_db")
    # A column without a declared type keeps what was stored: SQLite hands back int, float or text, as a
    # driver of any database does for INTEGER, REAL/DOUBLE and VARCHAR columns.
    stored = [e for e in CORPUS if isinstance(e.value, (str, int, float)) and not isinstance(e.value, bool)]
    stored = [e for e in stored if not isinstance(e.value, int) or e.value < 2**63]  # SQLite's INTEGER range
    conn = hook.get_conn()
    conn.execute("CREATE TABLE customers (id TEXT, region TEXT, mobile)")
    conn.executemany(
        "INSERT INTO customers VALUES (?, ?, ?)", [(e.id, e.region or "", e.value) for e in stored]
    )
    conn.commit()
    conn.close()
    kinds = set()
    for region, entries in _regions(stored).items():
        rows = list(
            c.sql_rows(
                hook, "SELECT id, mobile FROM customers WHERE region = ? ORDER BY rowid", (region or "",)
            )
        )
        kinds.update(type(row["mobile"]).__name__ for row in rows)
        sent, report = _prepare(rows, region)
        _check_campaign(entries, sent, report)
    assert kinds == {"int", "float", "str"}


# ----------------------------------------------------------------------------------------- over HTTP
HTTP_CHECKED: list[str] = []


@pytest.mark.parametrize("entry", CORPUS, ids=lambda e: e.id)
def test_send_sms_over_http(entry: Entry, make_qikberry_conn: Callable[..., str], emulator: Any) -> None:
    from airflow_qikberry.hooks.qikberry import QikberryHook

    make_qikberry_conn(default_region=entry.region or DROP)
    hook = QikberryHook()
    if entry.expected is None:
        with pytest.raises(QikberryValidationError) as info:
            hook.send_sms(entry.value, "Your order has shipped")
        assert info.value.field == "to"
        assert entry.says in info.value.message
        assert emulator.request_log()["counts"] == {}
    else:
        sent = hook.send_sms(entry.value, "Your order has shipped")
        assert [m["mobile"] for m in emulator.messages()] == [entry.expected]
        assert [m.mobile for m in sent] == [entry.expected]
    HTTP_CHECKED.append(entry.id)


# ----------------------------------------------------------------------------------------- property
SEPARATORS = [" ", "-", ".", "/", "\u00a0", "\u202f", "\u2009", "\u2007", "\u200b", "\u2013", "\ufeff", ""]
# ASCII, full-width, Arabic-Indic, Persian and Devanagari digits, by the code point of their zero.
DIGIT_SCRIPTS = ["".join(chr(zero + i) for i in range(10)) for zero in (0x30, 0xFF10, 0x660, 0x6F0, 0x966)]
REGIONS = [None, "IN", "US", "GB", "DE", "FR", "IT", "AR", "BR", "MX", "RU", "AU"]


@settings(deadline=None, max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(
    digits=st.text("0123456789", min_size=4, max_size=17),
    plus=st.booleans(),
    region=st.sampled_from(REGIONS),
    script=st.sampled_from(DIGIT_SCRIPTS),
    data=st.data(),
)
def test_output_is_the_digits_written_or_refused(
    digits: str, plus: bool, region: str | None, script: str, data: st.DataObject
) -> None:
    # The user's digits, in one script, with separators, spaces and invisible characters between them.
    pieces = []
    for digit in digits:
        pieces.append(script[int(digit)])
        pieces.append(data.draw(st.sampled_from(SEPARATORS)))
    written = ("+" if plus else "") + "".join(pieces)
    try:
        out = phone.normalize_number(written, default_region=region)
    except QikberryValidationError:
        return
    assert out.isascii()
    assert out.isdigit()
    assert phone.API_MIN_DIGITS <= len(out) <= phone.API_MAX_DIGITS
    assert _same_number(digits, out, plus, region), (written, region, out)


# What precedes a national number in real life: a trunk prefix, an international prefix, a carrier code
# (Brazil), an area code with the "15" of an Argentine mobile, a Mexican mobile prefix.
PREFIXES = ["", "0", "00", "011", "8", "810", "021", "0 21", "011 15", "0221 15", "044", "045", "1"]


def test_no_national_form_is_rewritten_in_any_region() -> None:
    # A sweep rather than a hypothesis property: the forms phonenumbers rewrites (Argentina, Brazil, ...) are
    # narrow patterns that random search rarely hits. Every prefix, every region, 40 seeded random numbers.
    import random

    rng = random.Random(16)
    sent = refused = 0
    for region in REGIONS:
        for prefix in PREFIXES:
            for _ in range(40):
                body = "".join(rng.choice("0123456789") for _ in range(rng.randint(6, 11)))
                try:
                    out = phone.normalize_number(f"{prefix} {body}", default_region=region)
                except QikberryValidationError:
                    refused += 1
                    continue
                sent += 1
                assert _same_number((prefix + body).replace(" ", ""), out, False, region), (prefix, body, out)
    assert sent > 1000
    assert refused > 1000


def _same_number(digits: str, out: str, plus: bool, region: str | None) -> bool:
    """``out`` is ``digits`` with only a prefix replaced by a country code: the national significant number
    is exactly the tail of what was written."""
    import phonenumbers

    number = phonenumbers.parse("+" + out)
    code = str(number.country_code)
    national = out[len(code) :]
    if not digits.endswith(national):
        return False
    prefix = digits[: len(digits) - len(national)]
    if plus:
        return prefix in (code, code + "0")  # "+44 (0)20": a trunk 0 after the country code
    trunks = {""} | {
        m.national_prefix
        for r in phonenumbers.region_codes_for_country_code(number.country_code)
        if (m := phonenumbers.PhoneMetadata.metadata_for_region(r)) is not None and m.national_prefix
    }
    exits = {"", "00"} | ({"011"} if region == "US" else set()) | ({"810"} if region == "RU" else set())
    return prefix in trunks or any(prefix == e + code + t for e in exits for t in trunks)


# ----------------------------------------------------------------------------------------- figures
def test_number_corpus_figures(figure: Any) -> None:
    mapped = refused = rewritten = 0
    for entry in CORPUS:
        try:
            out = phone.normalize_number(entry.value, default_region=entry.region)
        except QikberryValidationError:
            refused += 1
            rewritten += entry.expected is not None  # refusing a good number is a failure too
            continue
        mapped += 1
        rewritten += out != entry.expected
    assert rewritten == 0
    figure(
        "number_corpus",
        inputs=len(CORPUS),
        mapped=mapped,
        refused=refused,
        rewritten=rewritten,
        checked_over_http=len(HTTP_CHECKED) if len(HTTP_CHECKED) == len(CORPUS) else "not run together",
    )


def test_a_trunk_prefix_after_the_country_code_is_never_dropped() -> None:
    # "+44 (0)20" is a convention; "+7 8 912 ..." is a digit more, which phonenumbers read as Russia's trunk
    # prefix 8 and dropped ("+7 8 000 000 00 00" went out as 7 000 000 00 00; found by the property above).
    # Every country whose trunk prefix is not 0: "+cc trunk national" is refused or sent as written.
    import phonenumbers

    checked = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        trunk = metadata.national_prefix if metadata is not None else None
        example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
        if not trunk or trunk == "0" or example is None:
            continue
        national = phonenumbers.national_significant_number(example)
        written = f"{example.country_code}{trunk}{national}"
        for text in (f"+{example.country_code} {trunk} {national}", f"+{written}"):
            checked += 1
            try:
                out = phone.normalize_number(text, default_region=region)
            except QikberryValidationError:
                continue
            assert out == written, (region, text, out)
    assert checked >= 20
