"""Client-side checks for everything the provider sends, run before any HTTP request.

Pure functions: no I/O, no Airflow import, and ``phonenumbers`` is imported lazily because DAG files import
this module at every parse. Every failure raises :class:`~airflow_qikberry.exceptions.QikberryValidationError`
with ``field`` set and a message that names the field, the bad value (phone numbers masked) and the fix.
See ``docs/validation.md`` for the rules and the assumptions behind them.

Example::

    from airflow_qikberry.validation import measure, normalize_numbers, truncate_to_units, validate_message

    numbers = normalize_numbers("+91 98765 43210, 0044 7700 900123")  # ['919876543210', '447700900123']
    info = validate_message("Your OTP is 123456", max_units=1)  # MessageLength(encoding='gsm7', ...)
    measure("Grüße 👋").units  # 1 (UCS-2: the emoji is two UTF-16 code units)
    truncate_to_units("x" * 400, 1)  # 157 x's + '...' (GSM-7 text keeps a GSM-7 ellipsis)
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from datetime import timezone as dt_timezone
from types import ModuleType
from typing import Any, Literal, NoReturn

from airflow_qikberry.exceptions import QikberryValidationError

__all__ = [
    "API_MAX_DIGITS",
    "API_MIN_DIGITS",
    "ENCODING_OPTIONS",
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "MAX_MESSAGE_CHARS",
    "MAX_TAGS",
    "Encoding",
    "EncodingOption",
    "MessageLength",
    "check_sendable",
    "detect_encoding",
    "is_gsm7",
    "mask_number",
    "measure",
    "normalize_number",
    "normalize_numbers",
    "rendered_literal",
    "replace_unsendable",
    "split_recipients",
    "truncate_to_units",
    "validate_custom_id",
    "validate_dlt_id",
    "validate_encoding",
    "validate_flag",
    "validate_max_units",
    "validate_message",
    "validate_region",
    "validate_schedule",
    "validate_sender",
    "validate_service",
    "validate_tags",
    "validate_text_id",
]

Encoding = Literal["gsm7", "ucs2"]
EncodingOption = Literal["auto", "gsm7", "ucs2"]

#: GSM 03.38 default alphabet (127 characters; 0x1B is the escape to the extension table, not a character).
#: 0x09 is mapped to capital "Ç" as in the Unicode consortium's GSM0338 table.
GSM7_BASIC: frozenset[str] = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
#: GSM 03.38 extension table: each character costs two septets (escape + code).
GSM7_EXTENSION: frozenset[str] = frozenset("\f^{}\\[~]|€")

MAX_MESSAGE_CHARS = 4096
MAX_TAGS = 3

# Part sizes: a single part carries 160 septets / 70 UTF-16 units; concatenated parts lose room to the UDH.
_GSM_SINGLE, _GSM_MULTI = 160, 153
_UCS_SINGLE, _UCS_MULTI = 70, 67

_GSM7_ALL = GSM7_BASIC | GSM7_EXTENSION
_NON_GSM7_RE = re.compile("[^" + "".join(re.escape(c) for c in sorted(_GSM7_ALL)) + "]")
_GSM7_EXT_RE = re.compile("[" + "".join(re.escape(c) for c in sorted(GSM7_EXTENSION)) + "]")
_ASTRAL_RE = re.compile("[\U00010000-\U0010ffff]")

# Look-alikes that silently force UCS-2 (usually pasted from a word processor); named in error hints.
_GSM7_HINTS = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u201c": '"', "\u201d": '"',
    "\u201e": '"', "\u2013": "-", "\u2014": "-", "\u2026": "...", "\u00a0": " ", "\u2022": "-",
    "\u00e7": "Ç", "\u20b9": "Rs", "\u00b4": "'", "`": "'",
}  # fmt: skip

_ZWJ = "\u200d"

# Numbers: what a human may type around the digits. Letters (vanity numbers) and extensions are refused.
# Applied after _ascii_number_text has mapped every digit to ASCII, so these patterns are ASCII-only.
_NUMBER_CHARS_RE = re.compile(r"\+?[0-9\s\-.()/]+", re.ASCII)
_NUMBER_SEPARATORS_RE = re.compile(r"[\s\-.()/]", re.ASCII)
_NOT_ASCII_DIGIT_RE = re.compile(r"[^0-9]")
# Text a float column leaves behind: "919876543210.0", "9.19876543210E+11", "9,19876E+11", "98765432.10".
_FLOAT_TAIL_RE = re.compile(r"\+?[0-9]+[.,]0+")
_SCIENTIFIC_RE = re.compile(r"[+-]?[0-9]+(?:[.,][0-9]*)?[eE][+-]?[0-9]+")
_DECIMAL_RE = re.compile(r"\+?[0-9]{5,}[.,][0-9]{1,2}")
_DECIMAL_COMMA_IN_LIST_RE = re.compile(r"[0-9]+,[0-9]+[eE][+-]?[0-9]|[0-9]{5,},0{1,2}(?![0-9])")
_TEL_PREFIX_RE = re.compile(r"tel:\s*", re.IGNORECASE)
# Characters that stand for a separator or a sign in numbers pasted from documents and web pages.
_NUMBER_LOOKALIKES = {
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d", "-"),
    "\uff0b": "+", "\uff08": "(", "\uff09": ")", "\uff0e": ".", "\uff0f": "/",
}  # fmt: skip
_FLOAT_FIX = (
    "read the column as text: pandas dtype=str (or dtype={'mobile': str}), Excel: format the column as Text, "
    "SQL: CAST(mobile AS VARCHAR)"
)
#: The API's own limits on a number in ``to``: country code included (docs/api-assumptions.md).
API_MIN_DIGITS, API_MAX_DIGITS = 8, 15
_LIST_HARD_SPLIT_RE = re.compile(r"[,;\n\r\t]+")
_LIST_PLUS_SPLIT_RE = re.compile(r"\s+(?=\+)")
_MASK_MIN_DIGITS = 10  # below this, keeping 4 + 3 digits would reveal (almost) the whole number

_SERVICE_RE = re.compile(r"[A-Za-z0-9_-]{1,16}")
_DLT_ALPHA_RE = re.compile(r"[A-Z]{6}")
_DLT_NUMERIC_RE = re.compile(r"[0-9]{6}")
_SENDER_NUMERIC_RE = re.compile(r"[0-9]{3,15}")
_SENDER_ALNUM_RE = re.compile(r"[A-Za-z0-9]{3,11}")
_DLT_SERVICES = frozenset({"T", "P", "S"})
MAX_CUSTOM_ID_CHARS = 255  # assumed: a Laravel string column (docs/validation.md)
_DLT_ID_RE = re.compile(r"[0-9]{10,30}")


@dataclass(frozen=True, slots=True)
class MessageLength:
    """How the API counts a text.

    ``length`` is the character count (code points, as the API's ``length`` field), ``septets`` the GSM-7
    septets (extension characters count 2) or, for UCS-2, the UTF-16 code units (an emoji counts 2), and
    ``units`` the number of SMS parts that are billed.

    Example::

        >>> measure("Price: 10€")
        MessageLength(encoding='gsm7', length=10, septets=11, units=1)
    """

    encoding: Encoding
    length: int
    septets: int
    units: int


# ----------------------------------------------------------------------------------------------------
# small shared helpers


def _fail(field: str, message: str) -> NoReturn:
    raise QikberryValidationError(f"{field}: {message}", field=field)


def _show(value: object, limit: int = 40) -> str:
    """A short repr for error messages; long values are cut so one bad row cannot flood a log."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _char_name(char: str) -> str:
    return f"{char!r} (U+{ord(char):04X} {unicodedata.name(char, 'unnamed character')})"


@functools.cache
def _phonenumbers() -> ModuleType:
    # Imported on first use only: it loads ~1 MB of metadata, too slow for every DAG-file parse.
    import phonenumbers

    return phonenumbers


# ----------------------------------------------------------------------------------------------------
# message length and encoding


def is_gsm7(text: str) -> bool:
    """True when every character is in the GSM 03.38 default alphabet or its extension table.

    Example::

        >>> is_gsm7("Hello {name}"), is_gsm7("नमस्ते")
        (True, False)
    """
    return _NON_GSM7_RE.search(text) is None


def detect_encoding(text: str) -> Encoding:
    """``"gsm7"`` when the text fits the GSM-7 alphabet, else ``"ucs2"`` (what the API's auto type does).

    Example::

        >>> detect_encoding("Hi"), detect_encoding("Hi 😀")
        ('gsm7', 'ucs2')
    """
    return "gsm7" if _NON_GSM7_RE.search(text) is None else "ucs2"


def _parts(text: str, cost: int, doubles: int, single: int, multi: int, double_re: re.Pattern[str]) -> int:
    """Number of parts for ``text`` costing ``cost`` units, of which ``doubles`` characters cost 2.

    A two-unit character (GSM escape pair, UTF-16 surrogate pair) is never split across parts, so when such
    characters exist the plain ``ceil(cost / multi)`` can be one short; the parts are then packed run by run
    (Python work per two-unit character, not per character).
    """
    if cost <= single:
        return 1
    if not doubles:
        return -(-cost // multi)
    parts, used, pos = 1, 0, 0
    for match in double_re.finditer(text):
        total = used + match.start() - pos
        if total > multi:
            parts += (total - 1) // multi
            total = (total - 1) % multi + 1
        if total + 2 > multi:
            parts += 1
            used = 2
        else:
            used = total + 2
        pos = match.end()
    total = used + len(text) - pos
    if total > multi:
        parts += (total - 1) // multi
    return parts


def _measure_as(text: str, encoding: Encoding) -> MessageLength:
    if encoding == "gsm7":
        doubles = len(_GSM7_EXT_RE.findall(text))
        septets = len(text) + doubles
        units = _parts(text, septets, doubles, _GSM_SINGLE, _GSM_MULTI, _GSM7_EXT_RE)
        return MessageLength("gsm7", len(text), septets, units)
    # max() runs in C and almost always proves there is no astral character without a regex scan.
    doubles = len(_ASTRAL_RE.findall(text)) if text and max(text) > "\uffff" else 0
    code_units = len(text) + doubles
    units = _parts(text, code_units, doubles, _UCS_SINGLE, _UCS_MULTI, _ASTRAL_RE)
    return MessageLength("ucs2", len(text), code_units, units)


def _non_gsm7_chars(text: str, limit: int = 3) -> list[str]:
    found: list[str] = []
    for match in _NON_GSM7_RE.finditer(text):
        if match.group() not in found:
            found.append(match.group())
            if len(found) == limit:
                break
    return found


# Text that cannot go on the wire or that a phone cannot show: an unpaired UTF-16 surrogate (half of an emoji
# cut in two upstream) has no UTF-8 form at all; NUL and the other control characters except tab, line feed,
# form feed and carriage return are invisible on a handset (C1 controls U+0080-U+009F are the trace of
# Windows-1252 text decoded as Latin-1). See docs/validation.md, "Text that cannot be sent".
_UNSENDABLE_RE = re.compile("[\ud800-\udfff\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
_CONTROL_NAMES = {"\x00": "NUL", "\x1b": "ESC", "\x7f": "DEL"}


def check_sendable(text: str, *, field: str = "message") -> None:
    """Refuse a text holding a character that cannot be sent (typed error naming ``field``, the character and
    its 1-based position): an unpaired UTF-16 surrogate, NUL or another control character except tab, line
    feed, form feed and carriage return. :func:`validate_message` runs it; :func:`measure` does not (it only
    counts).

    Example::

        >>> check_sendable("Order shipped ✅")  # nothing to say
    """
    match = _UNSENDABLE_RE.search(text)
    if match is None:
        return
    char, position = match.group(), match.start() + 1
    code = f"U+{ord(char):04X}"
    if "\ud800" <= char <= "\udfff":
        half = "first" if char < "\udc00" else "second"
        _fail(
            field,
            f"has an unpaired UTF-16 surrogate {code} at character {position} (the {half} half of an emoji "
            "or other character that was cut in two upstream): it has no UTF-8 form and cannot be sent; "
            "remove it or restore the whole character where the text is made",
        )
    name = _CONTROL_NAMES.get(char, "a control character")
    hint = (
        " (text decoded with the wrong character set? e.g. Windows-1252 read as Latin-1)"
        if char >= "\x80"
        else ""
    )
    _fail(
        field,
        f"has {name} ({code}) at character {position}, which a phone cannot show{hint}; remove it (tab, line "
        "break and form feed are allowed)",
    )


def replace_unsendable(text: str, replacement: str = "?") -> str:
    """``text`` with every character that cannot be sent (see :func:`validate_message`) replaced, for text
    built from sources nobody can fix in time, such as an exception message in an alert.

    Example::

        >>> replace_unsendable("disk \\ud83d full\\x00")
        'disk ? full?'
    """
    return _UNSENDABLE_RE.sub(replacement, text)


def _resolve_encoding(text: str, encoding: str, field: str) -> Encoding:
    if encoding == "auto":
        return detect_encoding(text)
    if encoding == "ucs2":
        return "ucs2"
    if encoding == "gsm7":
        bad = _non_gsm7_chars(text)
        if bad:
            _fail(
                field,
                f"encoding='gsm7' was forced but the text contains {', '.join(_char_name(c) for c in bad)}, "
                "which GSM-7 cannot carry (the API would send '?'); replace them or use encoding='auto'",
            )
        return "gsm7"
    validate_encoding(encoding)
    raise AssertionError("unreachable: validate_encoding refused the encoding")


def measure(text: str, encoding: EncodingOption = "auto") -> MessageLength:
    """Count characters, septets/code units and SMS parts the way the API bills them.

    GSM-7: up to 160 septets is one part, longer texts use 153-septet parts. UCS-2: up to 70 UTF-16 code
    units is one part, longer texts use 67-unit parts. A two-unit character is never split between parts.
    Forcing ``"gsm7"`` on text with non-GSM characters raises (field ``message``).

    Example::

        >>> measure("a" * 161)
        MessageLength(encoding='gsm7', length=161, septets=161, units=2)
        >>> measure("😀" * 36).units  # 72 UTF-16 code units
        2
    """
    return _measure_as(text, _resolve_encoding(text, encoding, "message"))


def _check_units(units: object, field: str) -> int:
    if isinstance(units, bool) or not isinstance(units, int):
        _fail(field, f"must be a whole number of SMS parts, got {_show(units)}")
    if units < 1:
        _fail(field, f"must be at least 1, got {units}")
    return units


ENCODING_OPTIONS: tuple[EncodingOption, ...] = ("auto", "gsm7", "ucs2")


def validate_encoding(encoding: object, *, field: str = "encoding") -> EncodingOption:
    """``"auto"``, ``"gsm7"`` or ``"ucs2"``; anything else is a typed error naming ``field``.

    Example::

        >>> validate_encoding("gsm7")
        'gsm7'
    """
    if encoding not in ENCODING_OPTIONS:
        _fail(field, f"unknown encoding {_show(encoding)}; use 'auto', 'gsm7' or 'ucs2'")
    return encoding  # type: ignore[return-value]


def validate_max_units(units: object, *, field: str = "max_units") -> int | None:
    """None (no cap) or a whole number of SMS parts, at least 1.

    Example::

        >>> validate_max_units(2), validate_max_units(None)
        (2, None)
    """
    return None if units is None else _check_units(units, field)


def _longest_prefix(text: str, fits: _Fits, upper: int) -> int:
    """Largest k <= upper with fits(text[:k]); parts grow monotonically with the prefix, so bisect."""
    low, high = 0, upper
    while low < high:
        mid = (low + high + 1) // 2
        if fits(text[:mid]):
            low = mid
        else:
            high = mid - 1
    return low


class _Fits:
    """Callable "does this candidate fit in N parts" (a class rather than a closure to keep mypy precise)."""

    __slots__ = ("encoding", "suffix", "units")

    def __init__(self, units: int, encoding: EncodingOption, suffix: str = "") -> None:
        self.units = units
        self.encoding = encoding
        self.suffix = suffix

    def __call__(self, prefix: str) -> bool:
        candidate = prefix + self.suffix
        if len(candidate) > MAX_MESSAGE_CHARS:
            return False
        encoding = detect_encoding(candidate) if self.encoding == "auto" else self.encoding
        return _measure_as(candidate, encoding).units <= self.units


def validate_message(
    text: str,
    *,
    encoding: EncodingOption = "auto",
    max_units: int | None = None,
    field: str = "message",
) -> MessageLength:
    """Check a message text and return how it will be billed.

    The text must be non-empty after stripping, at most 4096 characters, and (when ``max_units`` is given) fit
    in ``max_units`` parts. The error for a too-long text says how many parts it needs and how many characters
    to cut, and names the character that forced UCS-2 when switching to GSM-7 would help.

    Example::

        >>> validate_message("Your OTP is 123456", max_units=1)
        MessageLength(encoding='gsm7', length=18, septets=18, units=1)
    """
    if not isinstance(text, str):
        _fail(field, f"must be a string, got {type(text).__name__}")
    if not text.strip():
        _fail(field, f"is empty (got {_show(text)}); pass the text to send")
    check_sendable(text, field=field)
    if len(text) > MAX_MESSAGE_CHARS:
        _fail(
            field,
            f"is {len(text)} characters; the API accepts at most {MAX_MESSAGE_CHARS}: "
            f"cut {len(text) - MAX_MESSAGE_CHARS} character(s)",
        )
    if max_units is not None:
        _check_units(max_units, "max_units")
    resolved = _resolve_encoding(text, encoding, field)
    info = _measure_as(text, resolved)
    if max_units is not None and info.units > max_units:
        # Measured like the API would (auto re-detects): cutting a lone non-GSM character can switch to GSM-7.
        keep = _longest_prefix(text, _Fits(max_units, encoding), min(len(text), max_units * _GSM_SINGLE))
        unit_word = "septets, GSM-7" if resolved == "gsm7" else "UTF-16 code units, UCS-2"
        message = (
            f"needs {info.units} SMS parts ({info.length} characters, {info.septets} {unit_word}) but "
            f"max_units is {max_units}: cut at least {len(text) - keep} character(s) or raise max_units"
        )
        if encoding == "auto" and resolved == "ucs2":
            bad = _non_gsm7_chars(text)
            replaced, count = _NON_GSM7_RE.subn("?", text)
            as_gsm = _measure_as(replaced, "gsm7").units
            # Only worth suggesting when a few stray characters (smart quotes, a rupee sign) forced UCS-2,
            # not for text written in a non-Latin script.
            if as_gsm < info.units and count <= max(3, len(text) // 20):
                hints = ", ".join(
                    _char_name(c) + (f" -> {_GSM7_HINTS[c]!r}" if c in _GSM7_HINTS else "") for c in bad
                )
                message += (
                    f"; it is sent as UCS-2 (70 characters per part instead of 160) because of {hints}: "
                    f"with only GSM-7 characters it would need {as_gsm} part(s)"
                )
        _fail(field, message)
    return info


def _attaches_to_previous(text: str, cut: int) -> bool:
    """True when cutting before ``text[cut]`` would split a visible character (grapheme cluster)."""
    nxt, prev = text[cut], text[cut - 1]
    if unicodedata.category(nxt) in ("Mn", "Mc", "Me") or nxt == _ZWJ:
        return True  # combining marks, Indic vowel signs, emoji modifiers' joiner
    if (
        "\ufe00" <= nxt <= "\ufe0f"
        or "\U0001f3fb" <= nxt <= "\U0001f3ff"
        or "\U000e0020" <= nxt <= "\U000e007f"
    ):
        return True  # variation selectors, skin tones, emoji tag sequences
    if prev == _ZWJ or unicodedata.combining(prev) == 9:
        return True  # ZWJ emoji sequences; a virama binds the next consonant into a conjunct
    if "\U0001f1e6" <= prev <= "\U0001f1ff" and "\U0001f1e6" <= nxt <= "\U0001f1ff":
        run = 0  # flags are pairs of regional indicators: an odd run before the cut means mid-flag
        while run < cut and "\U0001f1e6" <= text[cut - 1 - run] <= "\U0001f1ff":
            run += 1
        return run % 2 == 1
    return False


def truncate_to_units(
    text: str, units: int, *, encoding: EncodingOption = "auto", ellipsis: str = "…"
) -> str:
    """Cut ``text`` to the longest prefix that, with ``ellipsis`` appended, fits in ``units`` SMS parts.

    Text that already fits (and is at most 4096 characters) is returned unchanged. Cuts fall between whole
    characters (never inside a GSM escape pair, a surrogate pair, or a combining sequence / emoji cluster)
    and trailing whitespace before the ellipsis is dropped. If the text is GSM-7 and the ellipsis is not,
    ``"..."`` is used instead, so a notifier's 1-part alert does not silently become a 3-part UCS-2 message.

    Example::

        >>> truncate_to_units("Task failed: " + "x" * 300, 1)[-5:]
        'xx...'
        >>> len(truncate_to_units("ü" * 200, 2, encoding="ucs2"))
        134
    """
    _check_units(units, "units")
    resolved = _resolve_encoding(text, encoding, "message")
    if len(text) <= MAX_MESSAGE_CHARS and _measure_as(text, resolved).units <= units:
        return text
    if resolved == "gsm7" and not is_gsm7(ellipsis):
        ellipsis = "..."
    upper = min(len(text), units * _GSM_SINGLE, MAX_MESSAGE_CHARS)
    fits = _Fits(units, encoding, ellipsis)
    if not fits(""):
        ellipsis = ""  # an ellipsis that alone overflows the budget is dropped rather than failing
        fits = _Fits(units, encoding)
    cut = _longest_prefix(text, fits, upper)
    # Back off a little to avoid splitting a visible character; bounded so pathological input still cuts.
    backoff = 0
    while 0 < cut < len(text) and backoff < 32 and _attaches_to_previous(text, cut):
        cut -= 1
        backoff += 1
    return text[:cut].rstrip() + ellipsis


# ----------------------------------------------------------------------------------------------------
# phone numbers


def mask_number(number: str) -> str:
    """Hide the middle digits of a phone number for logs and errors: keep the first 4 and last 3 digits.

    Other characters (``+``, spaces) are kept in place. Numbers with fewer than 10 digits are fully masked.

    Example::

        >>> mask_number("919876543123"), mask_number("+91 98765 43123"), mask_number("12345")
        ('9198XXXXX123', '+91 98XXX XX123', 'XXXXX')
    """
    text = str(number)
    total = sum(c.isdigit() for c in text)
    keep_head, keep_tail = (4, 3) if total >= _MASK_MIN_DIGITS else (0, 0)
    out: list[str] = []
    seen = 0
    for char in text:
        if char.isdigit():
            seen += 1
            out.append(char if seen <= keep_head or seen > total - keep_tail else "X")
        else:
            out.append(char)
    return "".join(out)


class _BadNumber(Exception):
    """Internal: why one number was refused (turned into a QikberryValidationError by the caller)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


@functools.lru_cache(maxsize=512)
def _region(default_region: str) -> str | None:
    """The upper-cased region code, or None when phonenumbers does not know it (cached: called per row)."""
    region = default_region.strip().upper()
    return region if region in _phonenumbers().SUPPORTED_REGIONS else None


def validate_region(default_region: str | None) -> str | None:
    """An ISO 3166 alpha-2 region phonenumbers knows, upper-cased (``"in"`` -> ``"IN"``); None stays None.

    Example::

        >>> validate_region("in")
        'IN'
    """
    return _checked_region(default_region)


def _checked_region(default_region: str | None) -> str | None:
    if default_region is None or default_region == "":
        return None
    region = _region(default_region) if isinstance(default_region, str) else None
    if region is None:
        _fail(
            "default_region",
            f"unknown region {_show(default_region)}; use an ISO 3166 alpha-2 code such as 'IN' or 'US'",
        )
    return region


@functools.lru_cache(maxsize=512)
def _country_prefix(region: str) -> str:
    return str(_phonenumbers().country_code_for_region(region))


@functools.lru_cache(maxsize=1024)
def _country_label(country_code: int) -> str:
    region = _phonenumbers().region_code_for_country_code(country_code)
    return f"country code {country_code}" + (f" ({region})" if region and region != "ZZ" else "")


# phonenumbers.ValidationResult values -> wording. 4 (IS_POSSIBLE_LOCAL_ONLY) is refused: SMS needs the
# full number.
_REASONS = {
    1: "has an unknown country code",
    2: "is too short",
    3: "is too long",
    4: "is only a local number (the area code is missing)",
    5: "has a length that no number in that country has",
}


def _parse(pn: ModuleType, text: str, region: str | None) -> Any:
    try:
        return pn.parse(text, region)
    except pn.NumberParseException as err:
        # Keep the reason for the error message; the only one worth naming is an unknown country code.
        return _UNKNOWN_COUNTRY if err.error_type == pn.NumberParseException.INVALID_COUNTRY_CODE else None


_UNKNOWN_COUNTRY = object()


def _ascii_number_text(text: str) -> str:
    """``text`` with every digit in ASCII and invisible characters removed; nothing else is changed.

    A decimal digit of any script (full-width, Arabic-Indic, Devanagari, ...) becomes the ASCII digit of
    the same value (``unicodedata.decimal``: one exact value per digit, never a guess); a Unicode
    space (no-break, narrow no-break, thin, figure...) becomes a space; dashes and full-width ``+()./``
    become their ASCII forms; format characters (zero-width space and joiners, bidi marks, BOM, soft hyphen)
    are dropped: they are invisible and never a digit. Anything else is left for the character check to
    refuse.
    """
    if text.isascii():
        return text
    out: list[str] = []
    for char in text:
        if char.isascii():
            out.append(char)
            continue
        category = unicodedata.category(char)
        if category == "Nd":
            out.append(str(unicodedata.decimal(char)))
        elif category == "Cf":
            continue
        elif char.isspace():
            out.append(" ")
        else:
            out.append(_NUMBER_LOOKALIKES.get(char, char))
    return "".join(out)


def _number_from_value(raw: object) -> str:
    """The digits of a number that arrived as a number value (SQL drivers, pandas, JSON), or _BadNumber.

    Integers (``int``, ``bool`` excluded, and every ``numbers.Integral`` such as numpy's) are exact. A float
    is refused: it may already have lost digits before it got here (Excel shows 919876543210 as 9.19877E+11,
    and pandas reads that back as 919877000000.0), and no test on the value can tell. A ``Decimal`` is exact
    when it is a whole number written without an exponent (what a SQL NUMERIC column gives).
    """
    import numbers

    if isinstance(raw, bool):
        raise _BadNumber(f"is a boolean ({raw}), not a phone number; check the column that feeds it")
    if isinstance(raw, numbers.Integral):
        value = int(raw)
        if value < 0:
            raise _BadNumber(f"is a negative number ({_show(mask_number(str(value)))}), not a phone number")
        return str(value)
    if isinstance(raw, float):
        shown = _show(mask_number(repr(raw)))
        raise _BadNumber(
            f"is a float ({shown}): the column was read as a number, and a float may already have lost "
            f"digits (Excel's 9.19877E+11 comes back as 919877000000.0); {_FLOAT_FIX}"
        )
    from decimal import Decimal

    if isinstance(raw, Decimal):
        shown = _show(mask_number(str(raw)))
        if not raw.is_finite() or raw != raw.to_integral_value() or raw < 0:
            raise _BadNumber(f"is the decimal number {shown}, not a phone number")
        exponent = raw.as_tuple().exponent
        if isinstance(exponent, int) and exponent > 0:
            raise _BadNumber(
                f"is the decimal number {shown} in scientific notation: digits may already be lost; "
                f"{_FLOAT_FIX}"
            )
        return str(int(raw))
    raise _BadNumber(
        f"must be a string of digits, got {type(raw).__name__}"
        + (
            f" (a number type that cannot hold every digit exactly); {_FLOAT_FIX}"
            if isinstance(raw, numbers.Number)
            else ""
        )
    )


def _is_number_value(value: object) -> bool:
    import numbers

    return isinstance(value, numbers.Number)


def _number_text(raw: object) -> tuple[str, bool]:
    """``(text, from_value)``: the number as ASCII text, and whether it came from a number value (which cannot
    hold a leading 0). Refuses, with _BadNumber, every form whose digits are not exactly the user's."""
    if not isinstance(raw, str):
        return _number_from_value(raw), True
    text = _ascii_number_text(raw).strip()
    if text.startswith("'"):
        text = text[
            1:
        ].strip()  # Excel's "store as text" marker, kept by some exports: never part of the number
    elif text.startswith('="') and text.endswith('"'):
        text = text[2:-1].strip()  # the ="0919..." idiom that keeps a CSV column as text in Excel
    tel = _TEL_PREFIX_RE.match(text)
    if tel:
        text = text[tel.end() :]  # RFC 3966 tel: URI ("tel:+91-98765-43210")
    if not text:
        raise _BadNumber("is empty; write the number with its country code, e.g. '919876543210'")
    for token in text.split():
        if _SCIENTIFIC_RE.fullmatch(token):
            raise _BadNumber(
                f"{_show(mask_number(text))} is in scientific notation: the column was read as a number, and "
                f"digits may already be lost (Excel writes 919876543210 as 9.19877E+11); {_FLOAT_FIX}"
            )
        if _FLOAT_TAIL_RE.fullmatch(token):
            raise _BadNumber(
                f"{_show(mask_number(text))} ends in '.0': the column was read as a number and written "
                f"back as text, and the '.0' cannot be told from a last digit; {_FLOAT_FIX}"
            )
        if _DECIMAL_RE.fullmatch(token):
            raise _BadNumber(
                f"{_show(mask_number(text))} looks like a decimal number, not a phone number: if the column "
                f"was read as a number, {_FLOAT_FIX}"
            )
    if text.startswith("-"):
        raise _BadNumber(
            f"{_show(mask_number(text))} starts with '-', like a negative number; remove the sign"
        )
    return text, False


def _normalize(raw: object, region: str | None) -> str:
    """Normalise one number; ``region`` must already be checked. Raises _BadNumber."""
    text, from_value = _number_text(raw)
    if _NUMBER_CHARS_RE.fullmatch(text) is None:
        raise _BadNumber(
            f"{_show(mask_number(text))} contains characters other than digits, a leading '+' and separators "
            "(letters, extensions and lists are not accepted: pass one number per entry)"
        )
    written = _NOT_ASCII_DIGIT_RE.sub("", text)  # every digit the user wrote, in order
    if len(written) > API_MAX_DIGITS + 4:  # room for "00" or another exit code and a "(0)"
        raise _BadNumber(
            f"{_show(mask_number(text))} has {len(written)} digits; the API accepts {API_MIN_DIGITS} to "
            f"{API_MAX_DIGITS}, country code included: pass one number per entry"
        )
    number = _read(text, region)
    pn = _phonenumbers()
    country_code, significant = number.country_code, pn.national_significant_number(number)
    out = f"{country_code}{significant}"
    # Never a different digit string: the national significant number must be exactly the last digits written,
    # and what precedes them a form of the country code or a trunk prefix. phonenumbers rewrites a few
    # national forms (Argentina's 15 -> 9, carrier codes in Brazil): those are refused, not sent elsewhere.
    prefix = written[: len(written) - len(significant)]
    if not (significant and written.endswith(significant)) or prefix not in _prefix_forms(
        country_code, region
    ):
        raise _BadNumber(
            f"{_show(mask_number(text))} would be sent as {_show(mask_number(out))}, not the digits written "
            "(its national form changes digits, e.g. a carrier code or a mobile prefix); write it in "
            "international format: '+', the country code and the number, e.g. '+54 9 11 2345 6789'"
        )
    if from_value and region:
        _check_lost_zero(text, region, out)
    if not API_MIN_DIGITS <= len(out) <= API_MAX_DIGITS:
        raise _BadNumber(
            f"{_show(mask_number(text))} has {len(out)} digits with its country code "
            f"({_country_label(country_code)}); the API accepts {API_MIN_DIGITS} to {API_MAX_DIGITS} digits, "
            "country code included: check for a missing or extra digit"
        )
    return out


def _check_lost_zero(text: str, region: str, out: str) -> None:
    """A number value cannot hold a leading 0: refuse it when, with the 0, it is another valid number of the
    region (an Italian landline 06..., read from an integer column as 6...)."""
    pn = _phonenumbers()
    with_zero = _parse(pn, "0" + text, region)
    if with_zero is None or with_zero is _UNKNOWN_COUNTRY or not pn.is_valid_number(with_zero):
        return
    if f"{with_zero.country_code}{pn.national_significant_number(with_zero)}" != out:
        raise _BadNumber(
            f"{_show(mask_number(text))} is a number value, which cannot hold a leading 0, and in region "
            f"{region} the same digits after a 0 are another valid number; {_FLOAT_FIX}"
        )


@functools.lru_cache(maxsize=512)
def _prefix_forms(country_code: int, region: str | None) -> frozenset[str]:
    """What may precede the national significant number in what the user wrote: nothing or a trunk prefix
    (national forms), or the country code after an optional international prefix, optionally followed by a
    trunk prefix (the "+44 (0)20 ..." form)."""
    pn = _phonenumbers()
    trunks = {""}
    for code in pn.region_codes_for_country_code(country_code):
        metadata = pn.PhoneMetadata.metadata_for_region(code)
        if metadata is not None and metadata.national_prefix:
            trunks.add(metadata.national_prefix)
    exits = {"", "00"}
    metadata = pn.PhoneMetadata.metadata_for_region(region) if region else None
    if metadata is not None:
        exits.update(
            p
            for p in (metadata.international_prefix, metadata.preferred_international_prefix)
            if p and p.isdigit()
        )
    code = str(country_code)
    return frozenset(trunks | {exit_ + code + trunk for exit_ in exits for trunk in trunks})


def _read(text: str, region: str | None) -> Any:
    """The phonenumbers reading of ``text`` (checked ASCII); raises _BadNumber naming why there is none."""
    pn = _phonenumbers()
    international = text.startswith("+")
    if not international and text.startswith("00"):
        text = "+" + text[2:]  # 00 is the international prefix in most of the world; phonenumbers needs "+"
        international = True
    if international:
        number = _parse(pn, text, None)
        if number is _UNKNOWN_COUNTRY:
            raise _BadNumber(
                f"{_show(mask_number(text))} has an unknown country code; check the digits after +"
            )
        candidates = [number]
    else:
        # Which reading wins (see docs/validation.md, "Numbers without +"):
        # 1. valid in the configured region, unless the digits start with that region's own country code and
        #    the international reading is valid too: that is the API's own format, and our output fed back in
        #    (in Germany half of all "49..." numbers are also valid national numbers with a 049x area code);
        # 2. otherwise possible as an international number (digits that start with a country code);
        # 3. otherwise possible as a national number of the region.
        # Validity only chooses; acceptance needs "possible" so that test ranges work.
        digits = _NUMBER_SEPARATORS_RE.sub("", text)
        as_national = _parse(pn, text, region) if region else None
        if as_national is _UNKNOWN_COUNTRY:
            as_national = None
        valid_national = False
        if region and as_national is not None and pn.is_valid_number(as_national):
            valid_national = True
            national = f"{as_national.country_code}{pn.national_significant_number(as_national)}"
            # Fast path: not in API format, or phonenumbers already read the leading country code as such.
            if not digits.startswith(_country_prefix(region)) or national == digits:
                return as_national
        # "(...)" marks a national number (an area code), which never gets the international reading.
        as_international = _parse(pn, "+" + digits, None) if "(" not in text else None
        if as_international is _UNKNOWN_COUNTRY:
            as_international = None
        if valid_national and not (as_international is not None and pn.is_valid_number(as_international)):
            return as_national
        candidates = [as_international, as_national]
    reasons: list[tuple[int, int]] = []
    for number in candidates:
        if number is None:
            continue
        reason = pn.is_possible_number_with_reason(number)
        if reason == 0:
            return number
        reasons.append((reason, number.country_code))
    shown = _show(mask_number(text))
    guessed = not international and region is None
    if not reasons:
        problem = f"{shown} " + ("has no country code" if guessed else "is not a phone number")
        if region:
            problem += f" in region {region}"
    else:
        # With a region the national reading (last) explains a failure best: the user meant a local number.
        reason, country_code = reasons[-1]
        why, label = _REASONS.get(reason, "is not possible"), _country_label(country_code)
        if guessed:
            problem = f"{shown} has no usable country code (read with {label}, it {why})"
        else:
            problem = f"{shown} {why} for {label}"
    if guessed:
        problem += (
            "; write it with its country code (e.g. '919876543210' or '+1 415 555 0101') "
            "or set default_region on the connection"
        )
    raise _BadNumber(problem)


def normalize_number(raw: str, *, default_region: str | None = None, field: str = "to") -> str:
    """Return a phone number as country code + national digits without ``+`` (the API's format).

    Accepts ``"+91 98765 43210"``, ``"0091 98765 43210"``, ``"919876543210"`` and, with ``default_region``,
    national forms such as ``"(415) 555-0101"`` (region ``"US"``). The number must be *possible* (a length
    its country uses); validity against the numbering plan is not required so that test ranges work. Without
    a region the output is idempotent: feeding it back returns it unchanged.

    Example::

        >>> normalize_number("+91 98765 43210"), normalize_number("(415) 555-0101", default_region="US")
        ('919876543210', '14155550101')
    """
    region = _checked_region(default_region)
    try:
        return _normalize(raw, region)
    except _BadNumber as err:
        _fail(field, err.problem)


_LITERAL_BRACKETS = (("[", "]"), ("(", ")"), ("{", "}"))


def rendered_literal(value: Any, field: str) -> Any:
    """A list, tuple or dict that a template rendered to its text form, read back; other values as they are.

    Without ``render_template_as_native_obj`` a template such as ``{{ ti.xcom_pull('numbers') }}`` renders a
    list to its repr, ``"['919876543210', '919876543211']"``. Text that starts and ends with matching
    brackets is read as a literal (``ast.literal_eval``, then JSON); nothing is ever evaluated. A tuple comes
    back as a list. Text that looks like a literal but is not one is a typed error naming ``field``; callers
    check the shape they need.

    Example::

        >>> rendered_literal("['919876543210', '919876543211']", "to")
        ['919876543210', '919876543211']
        >>> rendered_literal("919876543210, 919876543211", "to")
        '919876543210, 919876543211'
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    # No phone number, id or name starts with "[" or "{": such text is a literal or a mistake. "(" can open
    # a number ("(022) 2345 6789"), so a tuple must also end with ")".
    if not (text[:1] in "[{" and text[:1]) and (text[:1], text[-1:]) not in _LITERAL_BRACKETS:
        return value
    import ast
    import json

    parsed: Any
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        try:
            parsed = json.loads(text)
        except ValueError:
            _fail(
                field,
                f"the rendered value starts and ends like a list but is not a list literal ({len(text)} "
                "characters); render it with render_template_as_native_obj=True, or pass the items as a "
                "comma-separated string",
            )
    return list(parsed) if isinstance(parsed, tuple) else parsed


def split_recipients(to: str) -> list[str]:
    """The entries of a recipient string: split at commas, semicolons, line breaks and tabs, and before a
    ``+`` that follows a space (each entry is then normalised on its own)."""
    entries: list[str] = []
    for chunk in _LIST_HARD_SPLIT_RE.split(to):
        entries.extend(piece for piece in _LIST_PLUS_SPLIT_RE.split(chunk.strip()) if piece)
    return entries


def normalize_numbers(
    to: str | Iterable[str], *, default_region: str | None = None, field: str = "to"
) -> list[str]:
    """Normalise one or many recipients, keeping order and dropping exact duplicates.

    ``to`` is one number, a string of numbers separated by commas, semicolons, new lines or spaces, or an
    iterable with one number per item. A space-separated entry is first read as one number (``"+91 98765
    43210"``) and only split at the spaces when that fails. Duplicates (after normalisation) are removed
    because the API sends, and bills, one message per listed number. The error for a bad entry gives its
    1-based position.

    Example::

        >>> normalize_numbers("919876543210; +1 415 555 0101, 919876543210")
        ['919876543210', '14155550101']
    """
    if to is None:
        _fail(field, "is required; pass a phone number with its country code, or a list of them")
    region = _checked_region(default_region)
    from_string = isinstance(to, str)
    entries: Iterable[object]
    if isinstance(to, str):
        if _DECIMAL_COMMA_IN_LIST_RE.search(to):
            # Split at the comma, "919876543210,0" would be a number and a "0": say what it really is.
            _fail(
                field,
                "has a number written with a decimal comma ('919876543210,0' or '9,19876E+11'): the column "
                f"was read as a number; {_FLOAT_FIX}",
            )
        entries = split_recipients(to)
    elif _is_number_value(to):
        entries = [to]  # one number value: _normalize says whether its type can be trusted
    elif isinstance(to, (bytes, Mapping)) or not isinstance(to, Iterable):
        _fail(field, f"must be a string or a list of strings, got {type(to).__name__}")
    else:
        entries = to
    result: dict[str, None] = {}
    position = 0
    for entry in entries:
        position += 1
        try:
            result[_normalize(entry, region)] = None
            continue
        except _BadNumber as err:
            problem = err.problem
        # "9876543210 9876543211": one entry of a string that is really several space-separated numbers.
        tokens = entry.split() if from_string and isinstance(entry, str) else []
        if len(tokens) > 1:
            try:
                normalized = [_normalize(token, region) for token in tokens]
            except _BadNumber:
                pass
            else:
                result.update(dict.fromkeys(normalized))
                continue
        _fail(field, f"entry {position}: {problem}")
    if not result:
        _fail(field, "has no phone numbers; pass at least one number with its country code")
    return list(result)


# ----------------------------------------------------------------------------------------------------
# sender, service and ids


def validate_service(service: str | None, *, field: str = "service") -> str:
    """Check a service (route) code: 1-16 letters, digits, ``_`` or ``-``, e.g. ``T``, ``P``, ``MKT``.

    The API documents product codes only by example (``T``, ``P``, ``S``, ``G``; ``MKT``, ``A2P`` on other
    tenants), so anything code-shaped passes and the API decides; only blanks and punctuation are refused.

    Example::

        >>> validate_service("T"), validate_service("A2P")
        ('T', 'A2P')
    """
    if service is None or (isinstance(service, str) and not service.strip()):
        _fail(field, "is required; set the route code, e.g. 'T' (transactional) or 'P' (promotional)")
    if not isinstance(service, str):
        _fail(field, f"must be a string, got {type(service).__name__}")
    value = service.strip()
    if _SERVICE_RE.fullmatch(value):
        return value
    _fail(
        field, f"{_show(value)} is not a service code; use 1-16 letters, digits, '_' or '-', e.g. 'T' or 'G'"
    )


def validate_sender(
    sender: str | None, *, service: str | None = None, dlt: bool | None = None, field: str = "sender"
) -> str:
    """Check a sender id.

    Outside India's DLT routes: 3-11 letters/digits (alphanumeric sender id) or 3-15 digits (numeric
    sender). On DLT routes (``dlt=True``, or ``dlt=None`` and service ``T``/``P``/``S``): a registered
    6-letter upper-case header; promotional (``P``, or ``dlt=True`` without a service) also allows a 6-digit
    numeric header.

    Example::

        >>> validate_sender("TXTSMS", service="T"), validate_sender("MyShop", service="G")
        ('TXTSMS', 'MyShop')
    """
    if sender is None or (isinstance(sender, str) and not sender.strip()):
        _fail(field, "is required; set sender to your approved sender id (DLT header), e.g. 'TXTSMS'")
    if not isinstance(sender, str):
        _fail(field, f"must be a string, got {type(sender).__name__}")
    value = sender.strip()
    route = service.strip().upper() if isinstance(service, str) else None
    if dlt is None:
        dlt = route in _DLT_SERVICES
    if dlt:
        numeric_ok = route not in ("T", "S")
        if _DLT_ALPHA_RE.fullmatch(value) or (numeric_ok and _DLT_NUMERIC_RE.fullmatch(value)):
            return value
        if _DLT_ALPHA_RE.fullmatch(value.upper()):
            _fail(
                field,
                f"{_show(value)} must be upper case on Indian DLT routes: use {value.upper()!r} "
                "(or pass dlt=False for a non-Indian route)",
            )
        allowed = "6 letters A-Z or 6 digits" if numeric_ok else "exactly 6 letters A-Z"
        _fail(
            field,
            f"{_show(value)} is not a DLT header: Indian {route or 'DLT'} routes need {allowed} "
            "(the header registered on the DLT portal); pass dlt=False for a non-Indian route",
        )
    if value.isascii() and value.isdigit():
        if _SENDER_NUMERIC_RE.fullmatch(value):
            return value
        _fail(field, f"{_show(value)} has {len(value)} digits; a numeric sender id has 3-15 digits")
    if _SENDER_ALNUM_RE.fullmatch(value):
        return value
    if value.isascii() and value.isalnum():
        _fail(field, f"{_show(value)} is {len(value)} characters; an alphanumeric sender id has 3-11")
    _fail(field, f"{_show(value)} may contain only letters A-Z, a-z and digits (no spaces or punctuation)")


def validate_custom_id(custom_id: str | None, *, field: str = "custom_id") -> str | None:
    """Check your own reference id: 1-255 characters, no control characters, no edge spaces.

    ``None`` and ``""`` mean "no custom id". The API documents ``custom`` only as a string; the length cap
    assumes a database string column, and edge spaces are refused because the server trims them, which
    would make a later lookup by custom id miss (docs/validation.md).

    Example::

        >>> validate_custom_id("order-1234"), validate_custom_id(None)
        ('order-1234', None)
    """
    if custom_id is None or custom_id == "":
        return None
    if not isinstance(custom_id, str):
        _fail(field, f"must be a string, got {type(custom_id).__name__}")
    if len(custom_id) > MAX_CUSTOM_ID_CHARS:
        _fail(field, f"{_show(custom_id)} is {len(custom_id)} characters; use at most {MAX_CUSTOM_ID_CHARS}")
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in custom_id):
        _fail(
            field,
            f"{_show(custom_id)} contains a control character (tab, line break, ...) or half of a UTF-16 "
            "surrogate pair; remove it",
        )
    if custom_id != custom_id.strip():
        _fail(
            field,
            f"{_show(custom_id)} has edge spaces, which the server strips (lookups would miss); remove them",
        )
    return custom_id


def validate_dlt_id(value: str | None, *, field: str) -> str | None:
    """Check an Indian DLT id (``entity_id`` or ``template_id``): 10-30 digits. ``None``/``""`` -> ``None``.

    Example::

        >>> validate_dlt_id("1101456780000012345", field="entity_id")
        '1101456780000012345'
    """
    if value is None or value == "":
        return None
    if isinstance(value, float):
        _fail(field, f"got the float {value!r}, which has lost digits; pass the id as a string of digits")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        _fail(field, f"must be a string of digits, got {type(value).__name__}")
    text = value.strip()
    if _DLT_ID_RE.fullmatch(text):
        return text
    if text.isascii() and text.isdigit():
        _fail(field, f"{_show(text)} has {len(text)} digits; DLT ids have 10-30 digits (usually 19)")
    _fail(field, f"{_show(text)} must contain only digits (the id from the DLT portal, usually 19 digits)")


def validate_tags(tags: str | Sequence[str] | None, *, field: str = "tags") -> list[str]:
    """Check opt-out tags: at most 3 non-empty strings. A string is read as a comma-separated list.

    Exact duplicates are dropped before counting.

    Example::

        >>> validate_tags("promo, diwali"), validate_tags(None)
        (['promo', 'diwali'], [])
    """
    if tags is None:
        return []
    items: list[object]
    if isinstance(tags, str):
        items = [part for part in (piece.strip() for piece in tags.split(",")) if part]
    elif isinstance(tags, (bytes, Mapping)) or not isinstance(tags, Iterable):
        _fail(field, f"must be a list of strings or a comma-separated string, got {type(tags).__name__}")
    else:
        items = list(tags)
    result: dict[str, None] = {}
    for position, item in enumerate(items, start=1):
        if not isinstance(item, str):
            _fail(field, f"tag {position} must be a string, got {type(item).__name__}")
        tag = item.strip()
        if not tag:
            _fail(field, f"tag {position} is empty; remove it")
        if "," in tag:
            _fail(field, f"tag {position} {_show(tag)} contains ','; pass tags as separate list items")
        if any(unicodedata.category(char) in ("Cc", "Cs") for char in tag):
            _fail(
                field,
                f"tag {position} {_show(tag)} contains a control character or half of a UTF-16 surrogate "
                "pair; remove it",
            )
        result[tag] = None
    if len(result) > MAX_TAGS:
        _fail(field, f"has {len(result)} tags {list(result)!r}; the API allows at most {MAX_TAGS} per send")
    return list(result)


_TRUE_WORDS = frozenset({"true", "t", "yes", "y", "on", "1"})
_FALSE_WORDS = frozenset({"false", "f", "no", "n", "off", "0"})


def validate_flag(value: object, *, field: str) -> bool:
    """A yes/no parameter as Python, a template, a connection or JSON give it: a bool, 0 or 1, or one of the
    words Airflow's ``to_boolean`` reads (``true/t/yes/y/on/1``, ``false/f/no/n/off/0``, any case, spaces
    around ignored). Anything else is a typed error naming ``field``: ``"false"`` is never true because it
    is a non-empty string, and ``"maybe"`` is never quietly false.

    Example::

        >>> validate_flag("false", field="flash"), validate_flag("On", field="flash")
        (False, True)
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    _fail(
        field,
        f"must be true or false, got {_show(value)}; pass True/False, or as text 'true'/'false' "
        "('yes'/'no', 'on'/'off', '1'/'0')",
    )


def validate_text_id(value: object, *, field: str, allow_int: bool = False) -> str | None:
    """An optional id or name sent as text (``webhook_id``, a campaign ``name``, a status lookup's id):
    ``None`` or ``""`` -> ``None``; otherwise a non-blank string (an ``int`` too when ``allow_int``, as native
    template rendering makes one of "12345") without control characters or unpaired surrogates. A dict, a
    list or any other type is a typed error naming ``field``: it would otherwise be sent as its repr.

    Example::

        >>> validate_text_id("5f2b8e1c-webhook", field="webhook_id"), validate_text_id(None, field="name")
        ('5f2b8e1c-webhook', None)
    """
    if value is None or value == "":
        return None
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        kind = "a string" + (" or a whole number" if allow_int else "")
        _fail(field, f"must be {kind}, got {type(value).__name__} {_show(value)}")
    if not value.strip():
        _fail(field, f"is blank ({_show(value)}); pass a value or leave it out")
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in value):
        _fail(
            field,
            f"{_show(value)} contains a control character (tab, line break, ...) or half of a UTF-16 "
            "surrogate pair; remove it",
        )
    return value


# ----------------------------------------------------------------------------------------------------
# scheduling


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> tzinfo | None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return None


def _describe(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if abs(seconds) < 120:
        return f"{seconds} seconds"
    if abs(seconds) < 7200:
        return f"{seconds // 60} minutes"
    if abs(seconds) < 172800:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86400:.1f} days"


def validate_schedule(
    when: datetime | str | None,
    *,
    now: datetime | None = None,
    min_ahead: timedelta = timedelta(minutes=5),
    max_ahead: timedelta = timedelta(days=92),
    timezone: str = "Asia/Kolkata",
    field: str = "schedule_at",
) -> str | None:
    """Check a send time and return it in the API's wire format, ``YYYY-mm-dd HH:MM:SS`` in ``timezone``.

    ``None`` means send now. Naive datetimes and offset-less strings are refused (which zone would they be
    in?). The time must be more than ``min_ahead`` and less than ``max_ahead`` from ``now``; the defaults
    follow the documented "more than 5 minutes and less than 3 months" (the help page says 30 days: pass
    ``max_ahead=timedelta(days=30)`` to be strict). Seconds are kept, fractions dropped.

    Example::

        >>> validate_schedule("2030-01-01T09:00:00+05:30", now=datetime(2029, 12, 1, tzinfo=dt_timezone.utc))
        '2030-01-01 09:00:00'
    """
    if when is None:
        return None
    if isinstance(when, str):
        text = when.strip()
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"  # fromisoformat only learnt "Z" in Python 3.11
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            _fail(field, f"{_show(when)} is not an ISO-8601 date-time; use e.g. '2030-01-01T09:00:00+05:30'")
        if parsed.tzinfo is None:
            _fail(field, f"{_show(when)} has no UTC offset; add one, e.g. '{text}+05:30' for India time")
        when = parsed
    elif not isinstance(when, datetime):
        _fail(field, f"must be a timezone-aware datetime or ISO-8601 string, got {type(when).__name__}")
    if when.tzinfo is None or when.utcoffset() is None:
        _fail(
            field,
            f"{when.isoformat()} is a naive datetime (no timezone), which is ambiguous; pass an aware "
            "datetime, e.g. pendulum.datetime(..., tz='Asia/Kolkata') or datetime(..., tzinfo=timezone.utc)",
        )
    if now is None:
        now = datetime.now(dt_timezone.utc)
    elif now.tzinfo is None or now.utcoffset() is None:
        _fail("now", f"{now.isoformat()} is naive; pass an aware datetime")
    zone = _zone(timezone)
    if zone is None:
        _fail("timezone", f"unknown time zone {_show(timezone)}; use an IANA name such as 'Asia/Kolkata'")
    # Check what the API will receive: the wire format has whole seconds.
    wire = when.replace(microsecond=0)
    ahead = wire - now
    if ahead <= min_ahead:
        if ahead < timedelta(0):
            position = f"in the past ({_describe(-ahead)} ago)"
        else:
            position = f"only {_describe(ahead)} ahead"
        _fail(
            field,
            f"{wire.isoformat()} is {position}; it must be more than {_describe(min_ahead)} ahead: "
            "schedule it later, or pass None to send now",
        )
    if ahead >= max_ahead:
        _fail(
            field,
            f"{wire.isoformat()} is {_describe(ahead)} ahead; it must be less than {_describe(max_ahead)} "
            "ahead: schedule it closer, or send it from a later DAG run",
        )
    return wire.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
