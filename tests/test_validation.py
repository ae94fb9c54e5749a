"""Tests for airflow_qikberry.validation, .phone and .sms_text: pure functions, no emulator, no mocks."""

from __future__ import annotations

import doctest
import inspect
import re
import subprocess
import sys
import unicodedata
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from types import ModuleType
from typing import Any

import pendulum
import phonenumbers
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from airflow_qikberry import phone, phone_input, sms_text, sms_units, validation
from airflow_qikberry.exceptions import QikberryValidationError
from airflow_qikberry.phone import mask_number, normalize_number, normalize_numbers
from airflow_qikberry.sms_text import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    MAX_MESSAGE_CHARS,
    MessageLength,
    detect_encoding,
    is_gsm7,
    measure,
    truncate_to_units,
    validate_message,
)
from airflow_qikberry.validation import (
    MAX_TAGS,
    validate_custom_id,
    validate_dlt_id,
    validate_schedule,
    validate_sender,
    validate_service,
    validate_tags,
)

PROPERTY = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])


def expect_error(
    func: Callable[..., Any], *args: Any, field: str, says: tuple[str, ...] = (), **kwargs: Any
) -> str:
    """Call ``func``, assert it raises QikberryValidationError for ``field`` and return the message."""
    with pytest.raises(QikberryValidationError) as info:
        func(*args, **kwargs)
    err = info.value
    assert err.field == field
    assert err.status_code is None
    assert err.message.startswith(f"{field}: "), err.message
    for fragment in says:
        assert fragment in err.message, f"{fragment!r} not in {err.message!r}"
    return err.message


# ---------------------------------------------------------------------------------------------------------
# module hygiene


def test_import_does_not_load_phonenumbers() -> None:
    code = (
        "import sys\n"
        "import airflow_qikberry.phone as v\n"
        "print('phonenumbers' in sys.modules)\n"
        "v.normalize_number('+919876543210')\n"
        "print('phonenumbers' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=240
    )
    # The second line proves the check can see phonenumbers once it really is imported.
    assert result.stdout.split() == ["False", "True"]


def test_import_adds_no_airflow_module_beyond_the_exceptions() -> None:
    # The typed errors derive from AirflowException; validation itself must pull in nothing more of Airflow.
    code = (
        "import sys\n"
        "import airflow_qikberry.exceptions\n"
        "before = {m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')}\n"
        "import airflow_qikberry.phone, airflow_qikberry.sms_text as v, airflow_qikberry.validation\n"
        "v.validate_message('hello')\n"
        "after = {m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')}\n"
        "print(sorted(after - before))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=240
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("module", "examples"),
    [(validation, 3), (phone, 3), (phone_input, 1), (sms_text, 3), (sms_units, 3)],
    ids=lambda m: getattr(m, "__name__", str(m)),
)
def test_docstring_examples_are_correct(module: ModuleType, examples: int) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= examples
    assert result.failed == 0


@pytest.mark.parametrize(
    "module", [validation, phone, phone_input, sms_text, sms_units], ids=lambda m: m.__name__
)
def test_no_placeholders_left(module: ModuleType) -> None:
    source = inspect.getsource(module)
    for marker in ("TODO", "FIXME", "NotImplementedError"):
        assert marker not in source


# ---------------------------------------------------------------------------------------------------------
# alphabet, encoding and measuring


def test_gsm7_tables() -> None:
    assert len(GSM7_BASIC) == 127  # 128 codes minus the escape
    assert frozenset("\f^{}\\[~]|€") == GSM7_EXTENSION
    assert not GSM7_BASIC & GSM7_EXTENSION
    assert "\x1b" not in GSM7_BASIC
    for char in "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà\n\r":
        assert char in GSM7_BASIC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, World! 123 @£$", True),
        ("Price {10€} [x] ~ | ^ \\", True),
        ("", True),
        ("ç", False),  # only the capital C-cedilla is in the table
        ("it\u2019s", False),
        ("नमस्ते", False),
        ("😀", False),
        ("\t", False),
    ],
)
def test_is_gsm7_and_detect_encoding(text: str, expected: bool) -> None:
    assert is_gsm7(text) is expected
    assert detect_encoding(text) == ("gsm7" if expected else "ucs2")


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("a" * 459, 3),
        ("a" * 460, 4),
        ("€" * 80, 1),  # 160 septets
        ("€" * 80 + "a", 2),
        ("ж" * 70, 1),
        ("ж" * 71, 2),
        ("ж" * 134, 2),
        ("ж" * 135, 3),
        ("ж" * 201, 3),
        ("ж" * 202, 4),
        ("😀" * 35, 1),  # 70 UTF-16 code units
        ("😀" * 36, 2),
        ("", 1),
    ],
)
def test_measure_boundaries(text: str, units: int) -> None:
    assert measure(text).units == units


def test_measure_fields() -> None:
    assert measure("Price: 10€") == MessageLength("gsm7", 10, 11, 1)
    assert measure("hi 😀") == MessageLength("ucs2", 4, 5, 1)
    info = measure("a" * 200)
    with pytest.raises(AttributeError):
        info.units = 1  # type: ignore[misc]


def test_extension_pair_is_not_split_across_parts() -> None:
    # 306 septets would be 2 parts by ceil(306/153), but the escape pair at 152/153 moves to part 2.
    text = "a" * 152 + "€" + "a" * 152
    info = measure(text)
    assert info.septets == 306
    assert info.units == 3
    assert measure("a" * 151 + "€" + "a" * 153).units == 2  # pair ends exactly at the boundary


def test_surrogate_pair_is_not_split_across_parts() -> None:
    text = "ж" * 66 + "😀" + "ж" * 66
    info = measure(text)
    assert (info.length, info.septets, info.units) == (133, 134, 3)
    assert measure("ж" * 65 + "😀" + "ж" * 67).units == 2


def test_measure_forced_encodings() -> None:
    assert measure("a" * 71, "ucs2") == MessageLength("ucs2", 71, 71, 2)
    assert measure("{}", "gsm7").septets == 4
    expect_error(measure, "it\u2019s", "gsm7", field="message", says=("U+2019", "'?'", "encoding='auto'"))
    expect_error(measure, "abc", "utf8", field="encoding", says=("'utf8'", "'gsm7'"))


def _brute_force_units(text: str, encoding: str) -> int:
    """Encode for real and cut the stream into parts; a split escape/surrogate pair moves to the next part."""
    if encoding == "gsm7":
        stream: list[object] = []
        for char in text:
            stream.extend(["\x1b", char] if char in GSM7_EXTENSION else [char])
        single, multi = 160, 153

        def is_lead(item: object) -> bool:
            return item == "\x1b"
    else:
        data = text.encode("utf-16-be")
        stream = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
        single, multi = 70, 67

        def is_lead(item: object) -> bool:
            return isinstance(item, int) and 0xD800 <= item <= 0xDBFF

    if len(stream) <= single:
        return 1
    parts = start = 0
    while start < len(stream):
        end = min(start + multi, len(stream))
        if end < len(stream) and is_lead(stream[end - 1]):
            end -= 1
        parts += 1
        start = end
    return parts


_MIXED = st.sampled_from(
    sorted(GSM7_BASIC)[:20]
    + sorted(GSM7_EXTENSION)
    + ["a", "a", "a", "ж", "\u2019", "न", "्", "😀", "🇮", "\u0301"]
)
_MOSTLY_GSM = st.sampled_from(sorted(GSM7_BASIC) + sorted(GSM7_EXTENSION) * 4)


@PROPERTY
@given(
    text=st.one_of(st.text(_MIXED, max_size=700), st.text(_MOSTLY_GSM, max_size=700), st.text(max_size=300))
)
def test_measure_agrees_with_brute_force_segmentation(text: str) -> None:
    info = measure(text)
    assert info.encoding == ("gsm7" if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text) else "ucs2")
    assert info.units == _brute_force_units(text, info.encoding)
    assert info.length == len(text)
    if info.encoding == "ucs2":
        assert info.septets == len(text.encode("utf-16-le")) // 2
    else:
        assert info.septets == len(text) + sum(c in GSM7_EXTENSION for c in text)
    assert measure(text, "ucs2").units == _brute_force_units(text, "ucs2")


# ---------------------------------------------------------------------------------------------------------
# validate_message


def test_validate_message_returns_measurement() -> None:
    assert validate_message("Your OTP is 123456", max_units=1) == MessageLength("gsm7", 18, 18, 1)
    assert validate_message("  padded  ").length == 10  # text is sent as given, only emptiness uses strip


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_validate_message_rejects_empty(text: str) -> None:
    expect_error(validate_message, text, field="message", says=("empty",))


def test_validate_message_field_name_is_configurable() -> None:
    with pytest.raises(QikberryValidationError) as info:
        validate_message(" ", field="text")
    assert info.value.field == "text"
    assert info.value.message.startswith("text: ")


def test_validate_message_rejects_non_string() -> None:
    expect_error(validate_message, 42, field="message", says=("string", "int"))


def test_validate_message_length_limit() -> None:
    assert validate_message("a" * MAX_MESSAGE_CHARS).length == 4096
    expect_error(validate_message, "a" * 4097, field="message", says=("4097", "4096", "cut 1 character"))


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2"])
def test_validate_message_rejects_bad_max_units(bad: object) -> None:
    expect_error(validate_message, "hello", max_units=bad, field="max_units")


def test_validate_message_over_max_units_says_what_to_cut() -> None:
    message = expect_error(
        validate_message,
        "a" * 400,
        max_units=2,
        field="message",
        says=("needs 3 SMS parts", "cut at least 94"),
    )
    assert "UCS-2" not in message
    validate_message("a" * (400 - 94), max_units=2)  # the advice is exact


def test_validate_message_names_the_character_that_forced_ucs2() -> None:
    text = "It\u2019s done: " + "x" * 100
    message = expect_error(
        validate_message, text, max_units=1, field="message", says=("U+2019", "GSM-7", "1 part")
    )
    assert "needs 2 SMS parts" in message
    # cutting the suggested number of characters from the end really fits
    cut = int(re.search(r"cut at least (\d+)", message).group(1))  # type: ignore[union-attr]
    assert validate_message(text[: len(text) - cut], max_units=1).units == 1


def test_validate_message_does_not_suggest_gsm7_for_non_latin_script() -> None:
    message = expect_error(validate_message, "नमस्ते " * 30, max_units=1, field="message", says=("needs 4",))
    assert "GSM-7 characters" not in message


def test_validate_message_forced_gsm7_rejects_non_gsm_text() -> None:
    expect_error(validate_message, "₹100", encoding="gsm7", field="message", says=("U+20B9",))
    with pytest.raises(QikberryValidationError) as info:
        validate_message("₹100", encoding="gsm7", field="body")
    assert info.value.field == "body"


def test_validate_message_error_does_not_echo_long_text() -> None:
    secret = "OTP 918273 " + "x" * 400
    message = expect_error(validate_message, secret, max_units=1, field="message")
    assert "918273" not in message


# ---------------------------------------------------------------------------------------------------------
# truncate_to_units


def test_truncate_returns_fitting_text_unchanged() -> None:
    text = "short alert"
    assert truncate_to_units(text, 1) is text


def test_truncate_gsm_text_uses_gsm_ellipsis() -> None:
    result = truncate_to_units("Task failed: " + "x" * 300, 1)
    assert result.endswith("x...")
    assert measure(result) == MessageLength("gsm7", 160, 160, 1)


def test_truncate_ucs2_text_keeps_unicode_ellipsis() -> None:
    result = truncate_to_units("ж" * 200, 2)
    assert result == "ж" * 133 + "…"
    assert measure(result).units == 2


def test_truncate_with_forced_ucs2_keeps_ellipsis() -> None:
    assert truncate_to_units("a" * 200, 2, encoding="ucs2") == "a" * 133 + "…"


def test_truncate_never_splits_extension_pair() -> None:
    # 156 'a' + '...' = 159 septets; a '€' (2 septets) no longer fits.
    assert truncate_to_units("a" * 156 + "€" * 10, 1) == "a" * 156 + "..."
    assert truncate_to_units("a" * 155 + "€" * 10, 1) == "a" * 155 + "€..."


def test_truncate_never_splits_surrogate_pair() -> None:
    result = truncate_to_units("ж" * 68 + "😀" * 5, 1)
    assert result == "ж" * 68 + "…"
    result.encode("utf-16-le")  # strict: would raise on a lone surrogate


def test_truncate_keeps_combining_sequences_whole() -> None:
    text = "e\u0301" * 100  # e + combining acute, UCS-2
    result = truncate_to_units(text, 1)
    prefix = result[:-1]
    assert len(prefix) % 2 == 0
    assert unicodedata.category(text[len(prefix)]) != "Mn"


def test_truncate_keeps_flags_whole() -> None:
    flags = "🇮🇳" * 40
    prefix = truncate_to_units(flags, 1)[:-1]
    assert len(prefix) % 2 == 0
    assert flags.startswith(prefix)


def test_truncate_keeps_indic_conjuncts_whole() -> None:
    text = "क्ष" * 40  # ka + virama + ssa: the virama binds the next consonant
    prefix = truncate_to_units(text, 1)[:-1]
    assert prefix[-1] != "्"
    assert len(prefix) % 3 == 0


def test_truncate_keeps_zwj_sequences_whole() -> None:
    family = "👩\u200d👩\u200d👧"
    text = family * 20
    prefix = truncate_to_units(text, 1)[:-1]
    assert not prefix.endswith("\u200d")
    assert text[len(prefix)] != "\u200d"


def test_truncate_drops_trailing_whitespace_before_ellipsis() -> None:
    assert truncate_to_units("a" * 156 + " " + "b" * 10, 1) == "a" * 156 + "..."
    assert truncate_to_units("a" * 150 + " \n" * 10 + "b", 1) == "a" * 150 + "..."


def test_truncate_custom_and_oversized_ellipsis() -> None:
    assert truncate_to_units("x" * 500, 1, ellipsis="") == "x" * 160
    assert truncate_to_units("x" * 500, 1, ellipsis=" (more)") == "x" * 153 + " (more)"
    assert truncate_to_units("x" * 500, 1, ellipsis=" [more]") == "x" * 151 + " [more]"  # [ ] cost 2 each
    assert truncate_to_units("x" * 500, 1, ellipsis="." * 200) == "x" * 160  # ellipsis alone overflows


def test_truncate_respects_api_character_limit() -> None:
    result = truncate_to_units("x" * 10_000, 40)
    assert len(result) <= MAX_MESSAGE_CHARS
    assert result.endswith("...")


@pytest.mark.parametrize("bad", [0, -3, True, 2.0])
def test_truncate_rejects_bad_units(bad: object) -> None:
    expect_error(truncate_to_units, "text", bad, field="units")


def test_truncate_forced_gsm7_on_non_gsm_text_raises() -> None:
    expect_error(truncate_to_units, "it\u2019s " * 100, 1, encoding="gsm7", field="message", says=("U+2019",))


@PROPERTY
@given(
    text=st.one_of(st.text(_MIXED, max_size=900), st.text(_MOSTLY_GSM, max_size=900), st.text(max_size=400)),
    units=st.integers(min_value=1, max_value=5),
    ellipsis=st.sampled_from(["…", "...", "", " [more]", "😀"]),
    encoding=st.sampled_from(["auto", "ucs2"]),
)
def test_truncate_always_fits_and_is_a_prefix(text: str, units: int, ellipsis: str, encoding: str) -> None:
    result = truncate_to_units(text, units, encoding=encoding, ellipsis=ellipsis)  # type: ignore[arg-type]
    assert measure(result, encoding).units <= units  # type: ignore[arg-type]
    assert len(result) <= MAX_MESSAGE_CHARS
    if result == text:
        return
    for tail in (ellipsis, "...", ""):
        if result.endswith(tail) and text.startswith(result[: len(result) - len(tail)]):
            break
    else:
        pytest.fail(f"{result!r} is not a prefix of the text plus an ellipsis")
    if is_gsm7(text) and encoding == "auto":
        assert is_gsm7(result)  # no surprise switch to UCS-2


# ---------------------------------------------------------------------------------------------------------
# phone numbers


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        # India
        ("+91 98765 43210", None, "919876543210"),
        ("0091 98765 43210", None, "919876543210"),
        ("919876543210", None, "919876543210"),
        ("9876543210", "IN", "919876543210"),
        ("09876543210", "IN", "919876543210"),
        ("919876543210", "IN", "919876543210"),
        ("98765-43210", "in", "919876543210"),
        # United States
        ("(415) 555-0101", "US", "14155550101"),
        ("415.555.0101", "US", "14155550101"),
        ("+1 415-555-0101", None, "14155550101"),
        ("14155550101", None, "14155550101"),
        ("14155550101", "US", "14155550101"),
        ("011 91 98765 43210", "US", "919876543210"),  # US international dialling prefix
        # United Kingdom (Ofcom drama range: possible, not valid)
        ("+44 7700 900123", None, "447700900123"),
        ("07700 900123", "GB", "447700900123"),
        ("447700900123", None, "447700900123"),
        # Singapore
        ("+65 8123 4567", None, "6581234567"),
        ("8123 4567", "SG", "6581234567"),
        # United Arab Emirates
        ("+971 50 123 4567", None, "971501234567"),
        ("050 123 4567", "AE", "971501234567"),
        ("00971501234567", "AE", "971501234567"),
        # a number with "+" ignores the region
        ("+91 98765 43210", "US", "919876543210"),
    ],
)
def test_normalize_number_formats(raw: str, region: str | None, expected: str) -> None:
    assert normalize_number(raw, default_region=region) == expected


def test_normalize_number_accepts_integers() -> None:
    assert normalize_number(919876543210) == "919876543210"  # type: ignore[arg-type]


def test_normalize_number_prefers_valid_national_reading() -> None:
    # As +81 23456789 this would be a (possible) Japanese number; with region IN it is a valid Indian mobile.
    assert normalize_number("8123456789", default_region="IN") == "918123456789"


def test_normalize_number_prefers_international_over_merely_possible_national() -> None:
    # Also a possible 12-digit Indian number, but it starts with a country code: keep it as the UK number.
    assert normalize_number("447700900123", default_region="IN") == "447700900123"


def test_normalize_number_national_without_region_needs_region() -> None:
    message = expect_error(
        normalize_number, "9988776655", field="to", says=("default_region", "country code", "9988XXX655")
    )
    assert "9988776655" not in message
    expect_error(normalize_number, "(415) 555-0101", field="to", says=("no country code", "default_region"))
    expect_error(normalize_number, "07700 900123", field="to", says=("default_region",))


@pytest.mark.parametrize(
    ("raw", "region", "says"),
    [
        ("+91 12345", None, "too short for country code 91 (IN)"),
        ("+91 98765 43210 12345", None, "too long"),
        ("+999 1234567890", None, "unknown country code"),
        ("+49 123", None, "only a local number"),
        ("12", "IN", "too short for country code 91 (IN)"),
        ("1-800-FLOWERS", "US", "characters other than digits"),
        ("+91 98765 43210 ext 5", None, "extensions"),
        ("919876543210,919876543211", None, "one number per entry"),
        ("+91 98+765", None, "characters other than digits"),
        ("", None, "empty"),
        ("   ", None, "empty"),
        ("+", None, "characters other than digits"),
    ],
)
def test_normalize_number_rejects(raw: str, region: str | None, says: str) -> None:
    expect_error(normalize_number, raw, default_region=region, field="to", says=(says,))


def test_normalize_number_rejects_non_string() -> None:
    expect_error(normalize_number, None, field="to", says=("string", "NoneType"))
    expect_error(normalize_number, 9.1e11, field="to", says=("float",))


def test_normalize_number_custom_field_and_bad_region() -> None:
    with pytest.raises(QikberryValidationError) as info:
        normalize_number("12", field="mobile")
    assert info.value.field == "mobile"
    expect_error(normalize_number, "9876543210", default_region="XX", field="default_region", says=("'XX'",))
    expect_error(normalize_number, "9876543210", default_region="India", field="default_region")


def test_normalize_number_error_masks_the_number() -> None:
    message = expect_error(normalize_number, "+91 98765 43210 99999", field="to", says=("+91 98XXX", "99'"))
    assert "98765" not in message


_REGIONS = ["IN", "US", "GB", "SG", "AE", "DE", "FR", "BR", "JP", "AU", "IT", "ZA", "CN", "RU"]
_TYPES = [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]


def _example(region: str, kind: int) -> phonenumbers.PhoneNumber:
    number = phonenumbers.example_number_for_type(region, kind)
    assert number is not None
    return number


@pytest.mark.parametrize("region", _REGIONS)
@pytest.mark.parametrize("kind", _TYPES)
def test_normalize_number_all_formats_of_example_numbers(region: str, kind: int) -> None:
    number = _example(region, kind)
    expected = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]
    fmt = phonenumbers.PhoneNumberFormat
    assert normalize_number(phonenumbers.format_number(number, fmt.E164)) == expected
    assert normalize_number(phonenumbers.format_number(number, fmt.INTERNATIONAL)) == expected
    assert normalize_number(expected) == expected
    assert (
        normalize_number(phonenumbers.format_number(number, fmt.NATIONAL), default_region=region) == expected
    )


@st.composite
def _phone_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """(text, region): an example number with random trailing digits, in a random human format."""
    region = draw(st.sampled_from(_REGIONS))
    example = _example(region, draw(st.sampled_from(_TYPES)))
    national = str(example.national_number)
    keep = draw(st.integers(min_value=1, max_value=len(national)))
    tail = draw(st.text("0123456789", min_size=len(national) - keep, max_size=len(national) - keep))
    number = phonenumbers.PhoneNumber(
        country_code=example.country_code,
        national_number=int(national[:keep] + tail),
        italian_leading_zero=example.italian_leading_zero,
    )
    fmt = draw(
        st.sampled_from(
            [
                phonenumbers.PhoneNumberFormat.E164,
                phonenumbers.PhoneNumberFormat.INTERNATIONAL,
                phonenumbers.PhoneNumberFormat.NATIONAL,
            ]
        )
    )
    return phonenumbers.format_number(number, fmt), region


@PROPERTY
@given(sample=_phone_numbers(), other_region=st.sampled_from(_REGIONS))
def test_normalize_number_is_idempotent(sample: tuple[str, str], other_region: str) -> None:
    raw, region = sample
    try:
        out = normalize_number(raw, default_region=region)
    except QikberryValidationError:
        assume(False)
        return
    assert out.isascii()
    assert out.isdigit()
    assert normalize_number(out) == out
    assert normalize_number("+" + out, default_region=other_region) == out
    # With a region, digits without "+" may also be a national number there; for a valid number of that
    # region the international reading must win, or a second normalisation would change the number.
    if phonenumbers.is_valid_number(phonenumbers.parse("+" + out)) and out.startswith(
        str(phonenumbers.country_code_for_region(region))
    ):
        assert normalize_number(out, default_region=region) == out


def test_normalize_number_keeps_country_code_that_is_also_a_national_prefix() -> None:
    # "4915123456789" is also a valid German national number (area code 04915); it is the API's format
    # for +49 1512 3456789, so normalising the output again with region DE must not prepend another 49.
    assert normalize_number("+49 1512 3456789", default_region="DE") == "4915123456789"
    assert normalize_number("4915123456789", default_region="DE") == "4915123456789"
    # the same digits with the national trunk prefix are the Leer (0491...) number
    assert normalize_number("04915123456789", default_region="DE") == "494915123456789"


@PROPERTY
@given(text=st.text(max_size=40), region=st.sampled_from([None, *_REGIONS]))
def test_normalize_number_never_raises_anything_else(text: str, region: str | None) -> None:
    try:
        out = normalize_number(text, default_region=region)
    except QikberryValidationError as err:
        assert err.field == "to"  # noqa: PT017  (a property over any text: pytest.raises cannot say "or returns")
    else:
        assert out.isascii()
        assert out.isdigit()


# ---------------------------------------------------------------------------------------------------------
# normalize_numbers


def test_normalize_numbers_string_separators_order_and_duplicates() -> None:
    raw = "919876543210 919876543211;+1 415 555 0101 +44 7700 900123\n+91 98765 43210, 14155550101,"
    assert normalize_numbers(raw) == ["919876543210", "919876543211", "14155550101", "447700900123"]


def test_normalize_numbers_single_number_with_spaces_is_one_number() -> None:
    assert normalize_numbers("+91 98765 43210") == ["919876543210"]
    assert normalize_numbers("98765 43210", default_region="IN") == ["919876543210"]


def test_normalize_numbers_splits_space_separated_national_numbers() -> None:
    assert normalize_numbers("9876543210 9876543211", default_region="IN") == ["919876543210", "919876543211"]


@pytest.mark.parametrize(
    "to",
    [
        ["+91 98765 43210", "14155550101", "919876543210"],
        ("+91 98765 43210", "14155550101"),
        (n for n in ["+91 98765 43210", "14155550101"]),
        {"+91 98765 43210": 1, "14155550101": 2}.keys(),
    ],
)
def test_normalize_numbers_iterables(to: Any) -> None:
    assert normalize_numbers(to) == ["919876543210", "14155550101"]


def test_normalize_numbers_single_integer() -> None:
    assert normalize_numbers(919876543210) == ["919876543210"]  # type: ignore[arg-type]


def test_normalize_numbers_list_items_are_not_split() -> None:
    expect_error(normalize_numbers, ["919876543210 919876543211"], field="to", says=("entry 1",))


@pytest.mark.parametrize("to", ["", " , ;\n", [], ()])
def test_normalize_numbers_empty(to: Any) -> None:
    expect_error(normalize_numbers, to, field="to", says=("no phone numbers",))


def test_normalize_numbers_required_and_types() -> None:
    expect_error(normalize_numbers, None, field="to", says=("required",))
    expect_error(normalize_numbers, b"919876543210", field="to", says=("bytes",))
    expect_error(normalize_numbers, {"to": "919876543210"}, field="to", says=("dict",))
    expect_error(normalize_numbers, 3.5, field="to", says=("float",))


def test_normalize_numbers_reports_position_of_first_bad_entry() -> None:
    message = expect_error(
        normalize_numbers, "919876543210, 12345, abc", field="to", says=("entry 2", "too short")
    )
    assert "entry 3" not in message
    expect_error(normalize_numbers, ["919876543210", None], field="to", says=("entry 2", "NoneType"))
    with pytest.raises(QikberryValidationError) as info:
        normalize_numbers(["1"], field="recipients")
    assert info.value.field == "recipients"


def test_normalize_numbers_bad_region() -> None:
    expect_error(normalize_numbers, ["919876543210"], default_region="ZZZ", field="default_region")


@PROPERTY
@given(samples=st.lists(_phone_numbers(), min_size=1, max_size=8), data=st.data())
def test_normalize_numbers_matches_one_by_one(samples: list[tuple[str, str]], data: st.DataObject) -> None:
    region = samples[0][1]
    singles: list[str] = []
    for raw, _ in samples:
        try:
            singles.append(normalize_number(raw, default_region=region))
        except QikberryValidationError:
            assume(False)
    entries = [raw for raw, _ in samples]
    entries += data.draw(st.lists(st.sampled_from(entries), max_size=4))  # duplicates, maybe reformatted
    assert normalize_numbers(entries, default_region=region) == list(dict.fromkeys(singles))
    assert normalize_numbers(", ".join(entries), default_region=region) == list(dict.fromkeys(singles))


# ---------------------------------------------------------------------------------------------------------
# masking


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("919876543123", "9198XXXXX123"),
        ("+91 98765 43123", "+91 98XXX XX123"),
        ("14155550101", "1415XXXX101"),
        ("9876543210", "9876XXX210"),
        ("987654321", "XXXXXXXXX"),
        ("12345", "XXXXX"),
        ("", ""),
    ],
)
def test_mask_number(raw: str, masked: str) -> None:
    assert mask_number(raw) == masked


@PROPERTY
@given(st.text("0123456789 +-", max_size=30))
def test_mask_number_reveals_at_most_seven_digits(raw: str) -> None:
    masked = mask_number(raw)
    assert len(masked) == len(raw)
    assert sum(c.isdigit() for c in masked) <= 7
    assert sum(c.isdigit() for c in raw) < 10 or sum(c.isdigit() for c in masked) == 7


# ---------------------------------------------------------------------------------------------------------
# sender and service


@pytest.mark.parametrize(
    ("sender", "kwargs", "expected"),
    [
        ("TXTSMS", {"service": "T"}, "TXTSMS"),
        ("TXTSMS", {"service": "S"}, "TXTSMS"),
        ("TXTSMS", {"service": "P"}, "TXTSMS"),
        ("567890", {"service": "P"}, "567890"),
        ("567890", {"dlt": True}, "567890"),
        (" TXTSMS ", {"service": "t"}, "TXTSMS"),
        ("MyShop", {"service": "G"}, "MyShop"),
        ("MyShop", {}, "MyShop"),
        ("MyShop", {"service": "T", "dlt": False}, "MyShop"),
        ("ABC", {}, "ABC"),
        ("ABCDEFGHIJK", {}, "ABCDEFGHIJK"),
        ("123", {}, "123"),
        ("123456789012345", {}, "123456789012345"),
    ],
)
def test_validate_sender_accepts(sender: str, kwargs: dict[str, Any], expected: str) -> None:
    assert validate_sender(sender, **kwargs) == expected


@pytest.mark.parametrize(
    ("sender", "kwargs", "says"),
    [
        ("txtsms", {"service": "T"}, "use 'TXTSMS'"),
        ("TxtSms", {"dlt": True}, "use 'TXTSMS'"),
        ("123456", {"service": "T"}, "exactly 6 letters"),
        ("TXTSMSX", {"service": "T"}, "exactly 6 letters"),
        ("TXT", {"service": "S"}, "exactly 6 letters"),
        ("1234567", {"service": "P"}, "6 letters A-Z or 6 digits"),
        ("MyShop", {"service": "T"}, "dlt=False"),
        ("AB", {}, "3-11"),
        ("ABCDEFGHIJKL", {}, "3-11"),
        ("12", {}, "3-15 digits"),
        ("1234567890123456", {}, "3-15 digits"),
        ("My Shop", {}, "letters A-Z, a-z and digits"),
        ("Shop!", {}, "letters A-Z, a-z and digits"),
        ("Café12", {}, "letters A-Z, a-z and digits"),
        (None, {}, "required"),
        ("  ", {"service": "T"}, "required"),
    ],
)
def test_validate_sender_rejects(sender: str | None, kwargs: dict[str, Any], says: str) -> None:
    expect_error(validate_sender, sender, field="sender", says=(says,), **kwargs)


def test_validate_sender_type_and_field() -> None:
    expect_error(validate_sender, 123456, field="sender", says=("string", "int"))
    with pytest.raises(QikberryValidationError) as info:
        validate_sender("x", field="from")
    assert info.value.field == "from"


@pytest.mark.parametrize(
    "service", ["T", "P", "S", "G", "MKT", "A2P", "ABCDEFGH", "t", "mkt", "SMS_T1", "X" * 16]
)
def test_validate_service_accepts(service: str) -> None:
    assert validate_service(service) == service
    assert validate_service(f" {service} ") == service


@pytest.mark.parametrize(
    ("service", "says"),
    [
        ("X" * 17, "1-16 letters"),
        ("T 1", "1-16 letters"),
        ("T,P", "1-16 letters"),
        ("", "required"),
        (None, "required"),
        (5, "string"),
    ],
)
def test_validate_service_rejects(service: Any, says: str) -> None:
    expect_error(validate_service, service, field="service", says=(says,))
    with pytest.raises(QikberryValidationError) as info:
        validate_service(service, field="route")
    assert info.value.field == "route"


# ---------------------------------------------------------------------------------------------------------
# schedule

NOW = datetime(2030, 1, 1, 0, 0, tzinfo=timezone.utc)  # 05:30 in India


def test_schedule_none_means_now() -> None:
    assert validate_schedule(None) is None


def test_schedule_lower_edge() -> None:
    expect_error(
        validate_schedule, NOW + timedelta(minutes=5), now=NOW, field="schedule_at", says=("5 minutes",)
    )
    assert validate_schedule(NOW + timedelta(minutes=5, seconds=1), now=NOW) == "2030-01-01 05:35:01"


def test_schedule_upper_edge() -> None:
    expect_error(
        validate_schedule, NOW + timedelta(days=92), now=NOW, field="schedule_at", says=("92.0 days",)
    )
    assert validate_schedule(NOW + timedelta(days=92, seconds=-1), now=NOW) == "2030-04-03 05:29:59"


def test_schedule_in_the_past() -> None:
    expect_error(
        validate_schedule,
        NOW - timedelta(hours=5),
        now=NOW,
        field="schedule_at",
        says=("in the past", "5.0 hours"),
    )


def test_schedule_custom_window_and_timezone() -> None:
    when = NOW + timedelta(days=45)
    assert validate_schedule(when, now=NOW) == "2030-02-15 05:30:00"
    expect_error(validate_schedule, when, now=NOW, max_ahead=timedelta(days=30), field="schedule_at")
    assert validate_schedule(
        NOW + timedelta(minutes=2), now=NOW, min_ahead=timedelta(minutes=1), timezone="UTC"
    ) == ("2030-01-01 00:02:00")


def test_schedule_drops_fractional_seconds_before_checking() -> None:
    # 5 min + 0.5 s is on the wire 5 min exactly, which is not "more than 5 minutes".
    expect_error(
        validate_schedule, NOW + timedelta(minutes=5, microseconds=500_000), now=NOW, field="schedule_at"
    )
    assert (
        validate_schedule(NOW + timedelta(minutes=6, microseconds=999_999), now=NOW) == "2030-01-01 05:36:00"
    )


def test_schedule_accepts_pendulum_and_other_offsets() -> None:
    when = pendulum.datetime(2030, 1, 2, 9, 0, tz="America/New_York")
    assert validate_schedule(when, now=NOW) == "2030-01-02 19:30:00"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2030-01-02T10:00:00+05:30", "2030-01-02 10:00:00"),
        ("2030-01-02 10:00:00+05:30", "2030-01-02 10:00:00"),
        ("2030-01-02T10:00:00Z", "2030-01-02 15:30:00"),
        ("2030-01-02T10:00:00.250+00:00", "2030-01-02 15:30:00"),
    ],
)
def test_schedule_iso_strings(text: str, expected: str) -> None:
    assert validate_schedule(text, now=NOW) == expected


@pytest.mark.parametrize(
    ("when", "says"),
    [
        ("2030-01-02 10:00:00", "no UTC offset"),
        ("tomorrow", "ISO-8601"),
        ("", "ISO-8601"),
        (datetime(2030, 1, 2, 10, 0), "naive"),
        (date(2030, 1, 2), "date"),
        (1893456000, "int"),
    ],
)
def test_schedule_rejects(when: Any, says: str) -> None:
    expect_error(validate_schedule, when, now=NOW, field="schedule_at", says=(says,))
    with pytest.raises(QikberryValidationError) as info:
        validate_schedule(when, now=NOW, field="time")
    assert info.value.field == "time"


def test_schedule_rejects_naive_now_and_unknown_timezone() -> None:
    expect_error(validate_schedule, NOW + timedelta(days=1), now=datetime(2030, 1, 1), field="now")
    expect_error(validate_schedule, NOW + timedelta(days=1), now=NOW, timezone="Mars/Base", field="timezone")


def test_schedule_defaults_to_the_real_clock() -> None:
    when = datetime.now(timezone.utc) + timedelta(days=1)
    expected = when.astimezone(pendulum.timezone("Asia/Kolkata")).strftime("%Y-%m-%d %H:%M:%S")
    assert validate_schedule(when) == expected
    expect_error(validate_schedule, datetime.now(timezone.utc) - timedelta(days=1), field="schedule_at")


# ---------------------------------------------------------------------------------------------------------
# tags, custom id, DLT ids


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (None, []),
        ("", []),
        ("promo", ["promo"]),
        ("promo, diwali,", ["promo", "diwali"]),
        (["a", "b", "c"], ["a", "b", "c"]),
        (("a", " b "), ["a", "b"]),
        (["a", "a", "b", "c"], ["a", "b", "c"]),  # duplicates are dropped before counting
    ],
)
def test_validate_tags_accepts(tags: Any, expected: list[str]) -> None:
    assert validate_tags(tags) == expected


@pytest.mark.parametrize(
    ("tags", "says"),
    [
        (["a", "b", "c", "d"], f"at most {MAX_TAGS}"),
        ("a,b,c,d", "has 4 tags"),
        (["a", ""], "tag 2 is empty"),
        (["a", "  "], "tag 2 is empty"),
        (["a", 5], "tag 2 must be a string"),
        (["a,b"], "contains ','"),
        (b"promo", "bytes"),
        (7, "int"),
    ],
)
def test_validate_tags_rejects(tags: Any, says: str) -> None:
    expect_error(validate_tags, tags, field="tags", says=(says,))
    with pytest.raises(QikberryValidationError) as info:
        validate_tags(tags, field="meta.tags")
    assert info.value.field == "meta.tags"


@pytest.mark.parametrize(
    ("custom_id", "expected"),
    [
        (None, None),
        ("", None),
        ("order-1234", "order-1234"),
        ("a b:c/d", "a b:c/d"),
        ("x" * 255, "x" * 255),
        ("a,b", "a,b"),
        ("café", "café"),
    ],
)
def test_validate_custom_id_accepts(custom_id: str | None, expected: str | None) -> None:
    assert validate_custom_id(custom_id) == expected


@pytest.mark.parametrize(
    ("custom_id", "says"),
    [
        ("x" * 256, "256 characters"),
        ("a\tb", "control character"),
        ("a\nb", "control character"),
        (" a", "edge spaces"),
        ("a ", "edge spaces"),
        (1234, "string"),
    ],
)
def test_validate_custom_id_rejects(custom_id: Any, says: str) -> None:
    expect_error(validate_custom_id, custom_id, field="custom_id", says=(says,))
    with pytest.raises(QikberryValidationError) as info:
        validate_custom_id(custom_id, field="custom")
    assert info.value.field == "custom"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("1101456780000012345", "1101456780000012345"),
        (" 1101456780000012345 ", "1101456780000012345"),
        ("1" * 10, "1" * 10),
        ("1" * 30, "1" * 30),
        (1101456780000012345, "1101456780000012345"),
    ],
)
def test_validate_dlt_id_accepts(value: Any, expected: str | None) -> None:
    assert validate_dlt_id(value, field="entity_id") == expected


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("1" * 9, "9 digits"),
        ("1" * 31, "31 digits"),
        ("11014567800000abcde", "only digits"),
        ("1101-4567-8000", "only digits"),
        (1.101456780000012e18, "float"),
        (True, "bool"),
        (["1101456780000012345"], "list"),
    ],
)
def test_validate_dlt_id_rejects(value: Any, says: str) -> None:
    for field in ("template_id", "entity_id"):
        with pytest.raises(QikberryValidationError) as info:
            validate_dlt_id(value, field=field)
        assert info.value.field == field
        assert info.value.message.startswith(f"{field}: ")
        assert says in info.value.message
