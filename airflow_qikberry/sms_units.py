"""
SMS units: the GSM-7 alphabet, and how the API counts characters, septets and billed parts.

The tables of GSM 03.38, the part sizes, :class:`MessageLength` and the measuring itself (GSM-7 septets or
UTF-16 code units, packed into parts without splitting a two-unit character), with the fast path for
printable ASCII. :mod:`airflow_qikberry.sms_text` builds the checks, truncation and look-alikes on it and
re-exports these names. No I/O and no Airflow import.

Example::

    from airflow_qikberry.sms_units import detect_encoding, measure_printable_ascii

    detect_encoding("Hi 😀")  # 'ucs2'
    measure_printable_ascii("Price: 10 {EUR}").units  # 1
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "MAX_MESSAGE_CHARS",
    "Encoding",
    "EncodingOption",
    "MessageLength",
    "detect_encoding",
    "is_gsm7",
    "measure_printable_ascii",
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

# Part sizes: a single part carries 160 septets / 70 UTF-16 units; concatenated parts lose room to the UDH.
_GSM_SINGLE, _GSM_MULTI = 160, 153
_UCS_SINGLE, _UCS_MULTI = 70, 67

_GSM7_ALL = GSM7_BASIC | GSM7_EXTENSION
_NON_GSM7_RE = re.compile("[^" + "".join(re.escape(c) for c in sorted(_GSM7_ALL)) + "]")
_GSM7_EXT_RE = re.compile("[" + "".join(re.escape(c) for c in sorted(GSM7_EXTENSION)) + "]")
_ASTRAL_RE = re.compile("[\U00010000-\U0010ffff]")


@dataclass(frozen=True, slots=True)
class MessageLength:
    """
    How the API counts a text.

    ``length`` is the character count (code points, as the API's ``length`` field), ``septets`` the GSM-7
    septets (extension characters count 2) or, for UCS-2, the UTF-16 code units (an emoji counts 2), and
    ``units`` the number of SMS parts that are billed.

    Example::

        >>> from airflow_qikberry.sms_text import measure
        >>> measure("Price: 10€")
        MessageLength(encoding='gsm7', length=10, septets=11, units=1)
    """

    encoding: Encoding
    length: int
    septets: int
    units: int


def is_gsm7(text: str) -> bool:
    """
    Return True when every character is in the GSM 03.38 default alphabet or its extension table.

    Example::

        >>> is_gsm7("Hello {name}"), is_gsm7("नमस्ते")
        (True, False)
    """
    return _NON_GSM7_RE.search(text) is None


def detect_encoding(text: str) -> Encoding:
    """
    ``"gsm7"`` when the text fits the GSM-7 alphabet, else ``"ucs2"`` (what the API's auto type does).

    Example::

        >>> detect_encoding("Hi"), detect_encoding("Hi 😀")
        ('gsm7', 'ucs2')
    """
    return "gsm7" if _NON_GSM7_RE.search(text) is None else "ucs2"


def _parts(text: str, cost: int, doubles: int, single: int, multi: int, double_re: re.Pattern[str]) -> int:
    """
    Return the number of parts for ``text`` costing ``cost`` units, of which ``doubles`` characters cost 2.

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


# Printable ASCII (U+0020-U+007E) is all GSM-7 but the backtick; these 8 cost two septets each.
_ASCII_GSM7_EXTENSION = tuple(sorted(c for c in GSM7_EXTENSION if " " <= c <= "~"))
# One scan in C finds whether a printable ASCII text has anything but single-septet characters (most have
# none): an extension character, or the backtick.
_ASCII_NOT_SINGLE_RE = re.compile("[`" + "".join(re.escape(c) for c in _ASCII_GSM7_EXTENSION) + "]")
# The measure of a printable ASCII text whose parts follow from its length and septets alone (one part, or
# no two-septet character to keep whole), by (length, septets): a text's measure is then a dict lookup,
# not a new object (MessageLength is frozen, so one instance serves every text of that shape). At most
# 4,096 lengths by two septet counts for one part, or one count otherwise: bounded by MAX_MESSAGE_CHARS.
_ASCII_GSM7_SHAPES: dict[tuple[int, int], MessageLength] = {}


def measure_printable_ascii(text: str, encoding: EncodingOption = "auto") -> MessageLength | None:
    """
    Return :func:`~airflow_qikberry.sms_text.measure` of a text of printable ASCII only (most templates).

    Counted with one regex scan (and ``str.count`` when an extension character is there), with no
    intermediate string; None for any other text (or encoding) so the caller takes the full path. Such a
    text is always sendable (no control character, no surrogate).

    Example::

        >>> measure_printable_ascii("Price: 10 {EUR}")
        MessageLength(encoding='gsm7', length=15, septets=17, units=1)
    """
    if not (text.isascii() and text.isprintable()):
        return None
    length = len(text)
    if encoding == "ucs2":
        return MessageLength("ucs2", length, length, 1 if length <= _UCS_SINGLE else -(-length // _UCS_MULTI))
    if encoding != "auto" and encoding != "gsm7":
        return None  # the full path refuses it
    doubles = 0
    if _ASCII_NOT_SINGLE_RE.search(text) is not None:
        if "`" in text:
            return None  # auto would pick UCS-2, forced GSM-7 is refused: the full path says so
        for char in _ASCII_GSM7_EXTENSION:
            doubles += text.count(char)
    septets = length + doubles
    if doubles and septets > _GSM_SINGLE:  # where the two-septet characters fall decides the parts
        return MessageLength(
            "gsm7", length, septets, _parts(text, septets, doubles, _GSM_SINGLE, _GSM_MULTI, _GSM7_EXT_RE)
        )
    shape = _ASCII_GSM7_SHAPES.get((length, septets))
    if shape is None:
        units = 1 if septets <= _GSM_SINGLE else -(-septets // _GSM_MULTI)
        shape = _ASCII_GSM7_SHAPES[length, septets] = MessageLength("gsm7", length, septets, units)
    return shape
