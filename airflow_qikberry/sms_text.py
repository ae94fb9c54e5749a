"""
SMS text.

The GSM-7 alphabet, how the API counts characters, septets and billed parts, what text can be sent at all,
fitting a text into a number of parts, and the one table of GSM-7 look-alikes. The alphabet and the counting
live in :mod:`airflow_qikberry.sms_units` and are re-exported here.

No I/O and no Airflow import. Checks raise :class:`~airflow_qikberry.exceptions.QikberryValidationError`
naming the field (``message`` by default) and the fix.

Example::

    from airflow_qikberry.sms_text import measure, transliterate, truncate_to_units, validate_message

    validate_message("Your OTP is 123456", max_units=1)  # MessageLength(encoding='gsm7', ...)
    measure("Grüße 👋").units  # 1 (UCS-2: the emoji is two UTF-16 code units)
    transliterate("“Load failed”")  # '"Load failed"' (GSM-7, 160 characters per part)
    truncate_to_units("x" * 400, 1)  # 157 x's + '...' (GSM-7 text keeps a GSM-7 ellipsis)
"""

from __future__ import annotations

import re
import unicodedata

from airflow_qikberry.sms_units import (
    _GSM_SINGLE,
    _NON_GSM7_RE,
    GSM7_BASIC,
    GSM7_EXTENSION,
    MAX_MESSAGE_CHARS,
    Encoding,
    EncodingOption,
    MessageLength,
    _measure_as,
    detect_encoding,
    is_gsm7,
    measure_printable_ascii,
)
from airflow_qikberry.validation import fail, shown

__all__ = [
    "ENCODING_OPTIONS",
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "GSM7_LOOKALIKES",
    "MAX_MESSAGE_CHARS",
    "Encoding",
    "EncodingOption",
    "MessageLength",
    "check_sendable",
    "detect_encoding",
    "is_gsm7",
    "measure",
    "replace_unsendable",
    "transliterate",
    "truncate_to_units",
    "validate_encoding",
    "validate_max_units",
    "validate_message",
]

_ZWJ = "\u200d"

#: Characters that have a GSM-7 form (usually pasted from a word processor, or in an exception's text): one
#: of them is enough to send a text as UCS-2, 70 characters per part instead of 160. Named in the hints of
#: :func:`validate_message`, and replaced by :func:`transliterate` (the notifier's alerts).
GSM7_LOOKALIKES: dict[str, str] = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u00b4": "'",
    "`": "'", "\u2039": "'", "\u203a": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"',
    "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-",
    "\u2212": "-", "\u2022": "-", "\u00b7": "-",
    "\u2026": "...",
    "\u00a0": " ", "\u2002": " ", "\u2003": " ", "\u2004": " ", "\u2005": " ", "\u2006": " ",
    "\u2007": " ", "\u2008": " ", "\u2009": " ", "\u200a": " ", "\u202f": " ", "\u205f": " ",
    "\u3000": " ", "\t": " ",
    "\u200b": "", "\u00ad": "", "\ufeff": "",
    "\u00e7": "\u00c7", "\u20b9": "Rs", "\u00d7": "x", "\u2192": "->", "\u2190": "<-",
}  # fmt: skip
_LOOKALIKE_TABLE = str.maketrans(GSM7_LOOKALIKES)


def _char_name(char: str) -> str:
    return f"{char!r} (U+{ord(char):04X} {unicodedata.name(char, 'unnamed character')})"


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
    """
    Refuse a text holding a character that cannot be sent.

    The typed error names ``field``, the character and its 1-based position. Not sendable: an unpaired UTF-16
    surrogate, NUL or another control character except tab, line feed, form feed and carriage return.
    :func:`validate_message` runs it; :func:`measure` does not (it only counts).

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
        fail(
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
    fail(
        field,
        f"has {name} ({code}) at character {position}, which a phone cannot show{hint}; remove it (tab, line "
        "break and form feed are allowed)",
    )


def replace_unsendable(text: str, replacement: str = "?") -> str:
    r"""
    Return ``text`` with every character that cannot be sent (see :func:`validate_message`) replaced.

    For text built from sources nobody can fix in time, such as an exception message in an alert.

    Example::

        >>> replace_unsendable("disk \ud83d full\x00")
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
            fail(
                field,
                f"encoding='gsm7' was forced but the text contains {', '.join(_char_name(c) for c in bad)}, "
                "which GSM-7 cannot carry (the API would send '?'); replace them or use encoding='auto'",
            )
        return "gsm7"
    validate_encoding(encoding)
    raise AssertionError("unreachable: validate_encoding refused the encoding")


def measure(text: str, encoding: EncodingOption = "auto") -> MessageLength:
    """
    Count characters, septets/code units and SMS parts the way the API bills them.

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
        fail(field, f"must be a whole number of SMS parts, got {shown(units)}")
    if units < 1:
        fail(field, f"must be at least 1, got {units}")
    return units


ENCODING_OPTIONS: tuple[EncodingOption, ...] = ("auto", "gsm7", "ucs2")


def validate_encoding(encoding: object, *, field: str = "encoding") -> EncodingOption:
    """
    ``"auto"``, ``"gsm7"`` or ``"ucs2"``; anything else is a typed error naming ``field``.

    Example::

        >>> validate_encoding("gsm7")
        'gsm7'
    """
    if encoding not in ENCODING_OPTIONS:
        fail(field, f"unknown encoding {shown(encoding)}; use 'auto', 'gsm7' or 'ucs2'")
    return encoding  # type: ignore[return-value]


def validate_max_units(units: object, *, field: str = "max_units") -> int | None:
    """
    None (no cap) or a whole number of SMS parts, at least 1.

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
    """
    Check a message text and return how it will be billed.

    The text must be non-empty after stripping, at most 4096 characters, and (when ``max_units`` is given) fit
    in ``max_units`` parts. The error for a too-long text says how many parts it needs and how many characters
    to cut, and names the character that forced UCS-2 when switching to GSM-7 would help.

    Example::

        >>> validate_message("Your OTP is 123456", max_units=1)
        MessageLength(encoding='gsm7', length=18, septets=18, units=1)
    """
    if not isinstance(text, str):
        fail(field, f"must be a string, got {type(text).__name__}")
    if not text.strip():
        fail(field, f"is empty (got {shown(text)}); pass the text to send")
    fast = measure_printable_ascii(text, encoding)  # sendable by nature, and measured without a scan
    if fast is None:
        check_sendable(text, field=field)
    if len(text) > MAX_MESSAGE_CHARS:
        fail(
            field,
            f"is {len(text)} characters; the API accepts at most {MAX_MESSAGE_CHARS}: "
            f"cut {len(text) - MAX_MESSAGE_CHARS} character(s)",
        )
    if max_units is not None:
        _check_units(max_units, "max_units")
    if fast is not None:
        resolved, info = fast.encoding, fast
    else:
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
                    _char_name(c) + (f" -> {GSM7_LOOKALIKES[c]!r}" if c in GSM7_LOOKALIKES else "")
                    for c in bad
                )
                message += (
                    f"; it is sent as UCS-2 (70 characters per part instead of 160) because of {hints}: "
                    f"with only GSM-7 characters it would need {as_gsm} part(s)"
                )
        fail(field, message)
    return info


def _attaches_to_previous(text: str, cut: int) -> bool:
    """Return True when cutting before ``text[cut]`` would split a visible character (grapheme cluster)."""
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
    """
    Cut ``text`` to the longest prefix that, with ``ellipsis`` appended, fits in ``units`` SMS parts.

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


def transliterate(text: str) -> str:
    """
    Replace what has a GSM-7 form.

    The look-alikes of :data:`GSM7_LOOKALIKES`, and accented Latin letters outside GSM-7 (á, ô, ł...) by their
    base letter when that is GSM-7. Text that still needs UCS-2 (emoji, Devanagari) keeps those characters.

    Example::

        >>> transliterate("Café “Zoë” — ¼")
        'Café "Zoe" - ¼'
    """
    text = text.translate(_LOOKALIKE_TABLE)
    if is_gsm7(text):
        return text
    folded = []
    for char in text:
        if not is_gsm7(char):
            base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
            if base and is_gsm7(base):
                char = base
        folded.append(char)
    return "".join(folded)
