"""SMS unit accounting by the GSM 03.38 / UCS-2 tables (reference sections 3.9 and 7)."""

from __future__ import annotations

import math
from dataclasses import dataclass

# GSM 03.38 basic character set (the escape character 0x1B is not a printable member).
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: each of these costs two septets (escape + code).
GSM_EXTENSION = frozenset("^{}\\[~]|€\f")
GSM_ALL = GSM_BASIC | GSM_EXTENSION
_EXTENSION_CHARS = tuple(GSM_EXTENSION)

GSM_SINGLE, GSM_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


@dataclass(frozen=True)
class Encoded:
    """The text as it will be sent plus its accounting."""

    text: str
    encoding: str  # "GSM" or "UCS2"
    units: int
    length: int


def is_gsm(text: str) -> bool:
    return set(text) <= GSM_ALL


def gsm_septets(text: str) -> int:
    return len(text) + sum(text.count(ch) for ch in _EXTENSION_CHARS)


def ucs2_code_units(text: str) -> int:
    # Characters outside the BMP take a surrogate pair, i.e. two 16-bit units.
    # surrogatepass: a lone surrogate counts as the one unit it is instead of failing the request with a 500.
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def to_gsm(text: str) -> str:
    """Replace every character outside the GSM alphabet by ``?`` (what "normal" type does)."""
    if is_gsm(text):
        return text
    return "".join(ch if ch in GSM_ALL else "?" for ch in text)


def parts(count: int, single: int, per_part: int) -> int:
    if count <= single:
        return 1
    return math.ceil(count / per_part)


def encode(text: str, sms_type: str | None = None) -> Encoded:
    """Account for ``text`` under the API's ``type``: N forces GSM, U forces UCS-2, A/absent auto-detects."""
    kind = (sms_type or "A").upper()
    if kind == "N" or (kind == "A" and is_gsm(text)):
        gsm_text = to_gsm(text)
        return Encoded(gsm_text, "GSM", parts(gsm_septets(gsm_text), GSM_SINGLE, GSM_PART), len(gsm_text))
    return Encoded(text, "UCS2", parts(ucs2_code_units(text), UCS2_SINGLE, UCS2_PART), len(text))
