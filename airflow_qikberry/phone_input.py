"""
Phone numbers as the user gave them: the value read as ASCII number text, or refused.

The first step of :func:`airflow_qikberry.phone.normalize_number`: a string has every digit mapped to ASCII
(any script's decimal digits, Unicode spaces and dashes, invisible characters dropped), the wrappers that
spreadsheets and ``tel:`` URIs add removed, and the forms a number column leaves behind (floats, scientific
notation, ``.0`` tails) refused; a number value (int, ``Decimal``) is taken only when its digits are exact.
Also :func:`mask_number` and ``_BadNumber``, the refusal :mod:`airflow_qikberry.phone` turns into a typed
error. No I/O, no Airflow import, no ``phonenumbers``.

Example::

    from airflow_qikberry.phone_input import mask_number

    mask_number("919876543123")  # '9198XXXXX123'
"""

from __future__ import annotations

import re
import unicodedata

from airflow_qikberry.validation import shown

__all__ = ["mask_number"]

# Text a float column leaves behind: "919876543210.0", "9.19876543210E+11", "9,19876E+11", "98765432.10".
_FLOAT_TAIL_RE = re.compile(r"\+?[0-9]+[.,]0+")
_SCIENTIFIC_RE = re.compile(r"[+-]?[0-9]+(?:[.,][0-9]*)?[eE][+-]?[0-9]+")
_DECIMAL_RE = re.compile(r"\+?[0-9]{5,}[.,][0-9]{1,2}")
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
_MASK_MIN_DIGITS = 10  # below this, keeping 4 + 3 digits would reveal (almost) the whole number


def mask_number(number: str) -> str:
    """
    Hide the middle digits of a phone number for logs and errors: keep the first 4 and last 3 digits.

    Other characters (``+``, spaces) are kept in place. Numbers with fewer than 10 digits are fully masked.

    Example::

        >>> mask_number("919876543123"), mask_number("+91 98765 43123"), mask_number("12345")
        ('9198XXXXX123', '+91 98XXX XX123', 'XXXXX')
    """
    if type(number) is str and number.isascii() and number.isdigit():
        # Digits only (every number the hook has read): the loop below keeps the same head and tail.
        size = len(number)
        return number[:4] + "X" * (size - 7) + number[-3:] if size >= _MASK_MIN_DIGITS else "X" * size
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


def _ascii_number_text(text: str) -> str:
    """
    ``text`` with every digit in ASCII and invisible characters removed; nothing else is changed.

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
    """
    Return the digits of a number that arrived as a number value (SQL drivers, pandas, JSON), or _BadNumber.

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
            raise _BadNumber(f"is a negative number ({shown(mask_number(str(value)))}), not a phone number")
        return str(value)
    if isinstance(raw, float):
        masked = shown(mask_number(repr(raw)))
        raise _BadNumber(
            f"is a float ({masked}): the column was read as a number, and a float may already have lost "
            f"digits (Excel's 9.19877E+11 comes back as 919877000000.0); {_FLOAT_FIX}"
        )
    from decimal import Decimal

    if isinstance(raw, Decimal):
        masked = shown(mask_number(str(raw)))
        if not raw.is_finite() or raw != raw.to_integral_value() or raw < 0:
            raise _BadNumber(f"is the decimal number {masked}, not a phone number")
        exponent = raw.as_tuple().exponent
        if isinstance(exponent, int) and exponent > 0:
            raise _BadNumber(
                f"is the decimal number {masked} in scientific notation: digits may already be lost; "
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
    """
    Return the number as ASCII text, and whether it came from a number value (which cannot hold a leading 0).

    Refuses, with _BadNumber, every form whose digits are not exactly the user's.
    """
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
                f"{shown(mask_number(text))} is in scientific notation: the column was read as a number, and "
                f"digits may already be lost (Excel writes 919876543210 as 9.19877E+11); {_FLOAT_FIX}"
            )
        if _FLOAT_TAIL_RE.fullmatch(token):
            raise _BadNumber(
                f"{shown(mask_number(text))} ends in '.0': the column was read as a number and written "
                f"back as text, and the '.0' cannot be told from a last digit; {_FLOAT_FIX}"
            )
        if _DECIMAL_RE.fullmatch(token):
            raise _BadNumber(
                f"{shown(mask_number(text))} looks like a decimal number, not a phone number: if the column "
                f"was read as a number, {_FLOAT_FIX}"
            )
    if text.startswith("-"):
        raise _BadNumber(
            f"{shown(mask_number(text))} starts with '-', like a negative number; remove the sign"
        )
    return text, False
