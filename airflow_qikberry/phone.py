"""
Phone numbers: how a number the user wrote becomes the digits the API gets, or a typed error.

The rule (docs/validation.md, "Phone numbers"): an input maps to exactly the digits written (plus a country
code from the region), or it is refused naming the problem and the fix; a number the API would refuse
(outside 8-15 digits with the country code) is refused here, before any request. Also: masking numbers for
logs, and splitting a string of several numbers. No I/O, no Airflow import; ``phonenumbers`` is imported on
first use because DAG files import this module at every parse.

Example::

    from airflow_qikberry.phone import mask_number, normalize_number, normalize_numbers

    normalize_numbers("+91 98765 43210, 0044 7700 900123")  # ['919876543210', '447700900123']
    normalize_number("(415) 555-0101", default_region="US")  # '14155550101'
    mask_number("919876543123")  # '9198XXXXX123'
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import Any

from airflow_qikberry.phone_fast import API_MAX_DIGITS, API_MIN_DIGITS, fast_reader
from airflow_qikberry.phone_fast import phonenumbers_module as _phonenumbers
from airflow_qikberry.phone_input import _FLOAT_FIX, _BadNumber, _is_number_value, _number_text, mask_number
from airflow_qikberry.validation import fail, shown

__all__ = [
    "API_MAX_DIGITS",
    "API_MIN_DIGITS",
    "mask_number",
    "normalize_number",
    "normalize_numbers",
    "number_reader",
    "split_recipients",
    "validate_region",
]

# Numbers: what a human may type around the digits. Letters (vanity numbers) and extensions are refused.
# Applied after phone_input._ascii_number_text has mapped every digit to ASCII: these patterns are ASCII-only.
_NUMBER_CHARS_RE = re.compile(r"\+?[0-9\s\-.()/]+", re.ASCII)
_NUMBER_SEPARATORS_RE = re.compile(r"[\s\-.()/]", re.ASCII)
_NOT_ASCII_DIGIT_RE = re.compile(r"[^0-9]")
_DECIMAL_COMMA_IN_LIST_RE = re.compile(r"[0-9]+,[0-9]+[eE][+-]?[0-9]|[0-9]{5,},0{1,2}(?![0-9])")
_LIST_HARD_SPLIT_RE = re.compile(r"[,;\n\r\t]+")
_LIST_PLUS_SPLIT_RE = re.compile(r"\s+(?=\+)")


@functools.lru_cache(maxsize=512)
def _region(default_region: str) -> str | None:
    """Return the upper-cased region code, or None when phonenumbers does not know it (cached)."""
    region = default_region.strip().upper()
    return region if region in _phonenumbers().SUPPORTED_REGIONS else None


def validate_region(default_region: str | None) -> str | None:
    """
    Return an ISO 3166 alpha-2 region phonenumbers knows, upper-cased (``"in"`` -> ``"IN"``); None stays None.

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
        fail(
            "default_region",
            f"unknown region {shown(default_region)}; use an ISO 3166 alpha-2 code such as 'IN' or 'US'",
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


def _normalize(raw: object, region: str | None, fast: Callable[[str], str | None] | None = None) -> str:
    """
    Normalise one number; ``region`` must already be checked. Raises _BadNumber.

    ``fast`` is ``fast_reader(region)``, when the caller looked it up once for many numbers.
    """
    if type(raw) is str and raw:
        out = (fast or fast_reader(region))(raw)
        if out is not None:
            return out
    return _normalize_full(raw, region)


def _normalize_full(raw: object, region: str | None) -> str:
    """:func:`_normalize` by the full rules (phonenumbers), for every input."""
    text, from_value = _number_text(raw)
    if _NUMBER_CHARS_RE.fullmatch(text) is None:
        raise _BadNumber(
            f"{shown(mask_number(text))} contains characters other than digits, a leading '+' and separators "
            "(letters, extensions and lists are not accepted: pass one number per entry)"
        )
    written = _NOT_ASCII_DIGIT_RE.sub("", text)  # every digit the user wrote, in order
    if len(written) > API_MAX_DIGITS + 4:  # room for "00" or another exit code and a "(0)"
        raise _BadNumber(
            f"{shown(mask_number(text))} has {len(written)} digits; the API accepts {API_MIN_DIGITS} to "
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
            f"{shown(mask_number(text))} would be sent as {shown(mask_number(out))}, not the digits written "
            "(its national form changes digits, e.g. a carrier code or a mobile prefix, or a trunk prefix "
            "after the country code); write it in "
            "international format: '+', the country code and the number, e.g. '+54 9 11 2345 6789'"
        )
    if from_value and region:
        _check_lost_zero(text, region, out)
    if not API_MIN_DIGITS <= len(out) <= API_MAX_DIGITS:
        raise _BadNumber(
            f"{shown(mask_number(text))} has {len(out)} digits with its country code "
            f"({_country_label(country_code)}); the API accepts {API_MIN_DIGITS} to {API_MAX_DIGITS} digits, "
            "country code included: check for a missing or extra digit"
        )
    return out


def _check_lost_zero(text: str, region: str, out: str) -> None:
    """
    Refuse a number value that lost a leading 0 it needs.

    A number value cannot hold a leading 0. Refuse it when, with the 0, it is another valid number of the
    region (an Italian landline 06..., read from an integer column as 6...).
    """
    pn = _phonenumbers()
    with_zero = _parse(pn, "0" + text, region)
    if with_zero is None or with_zero is _UNKNOWN_COUNTRY or not pn.is_valid_number(with_zero):
        return
    if f"{with_zero.country_code}{pn.national_significant_number(with_zero)}" != out:
        raise _BadNumber(
            f"{shown(mask_number(text))} is a number value, which cannot hold a leading 0, and in region "
            f"{region} the same digits after a 0 are another valid number; {_FLOAT_FIX}"
        )


@functools.lru_cache(maxsize=512)
def _prefix_forms(country_code: int, region: str | None) -> frozenset[str]:
    """
    Return what may precede the national significant number in what the user wrote.

    Nothing or a trunk prefix (national forms), or the country code after an optional international prefix,
    optionally followed by a trunk prefix (the "+44 (0)20 ..." form).
    """
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
    # After the country code only the "(0)" convention: "+7 8 912..." is not a convention but a digit more,
    # which phonenumbers drops as Russia's trunk prefix ("+7 8 000 000 00 00" went out as 7 000 000 00 00).
    after_code = {"", "0"} & trunks
    return frozenset(trunks | {exit_ + code + trunk for exit_ in exits for trunk in after_code})


def _read(text: str, region: str | None) -> Any:
    """Return the phonenumbers reading of ``text`` (checked ASCII); _BadNumber says why there is none."""
    pn = _phonenumbers()
    international = text.startswith("+")
    if not international and text.startswith("00"):
        text = "+" + text[2:]  # 00 is the international prefix in most of the world; phonenumbers needs "+"
        international = True
    if international:
        number = _parse(pn, text, None)
        if number is _UNKNOWN_COUNTRY:
            raise _BadNumber(
                f"{shown(mask_number(text))} has an unknown country code; check the digits after +"
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
    masked = shown(mask_number(text))
    guessed = not international and region is None
    if not reasons:
        problem = f"{masked} " + ("has no country code" if guessed else "is not a phone number")
        if region:
            problem += f" in region {region}"
    else:
        # With a region the national reading (last) explains a failure best: the user meant a local number.
        reason, country_code = reasons[-1]
        why, label = _REASONS.get(reason, "is not possible"), _country_label(country_code)
        if guessed:
            problem = f"{masked} has no usable country code (read with {label}, it {why})"
        else:
            problem = f"{masked} {why} for {label}"
    if guessed:
        problem += (
            "; write it with its country code (e.g. '919876543210' or '+1 415 555 0101') "
            "or set default_region on the connection"
        )
    raise _BadNumber(problem)


def normalize_number(raw: str, *, default_region: str | None = None, field: str = "to") -> str:
    """
    Return a phone number as country code + national digits without ``+`` (the API's format).

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
        fail(field, err.problem)


def number_reader(default_region: str | None = None, *, field: str = "to") -> Callable[[object], str]:
    """
    Return :func:`normalize_number` for one region and field, checked and looked up once: for many numbers.

    Example::

        read = number_reader("IN", field="mobile")
        [read(n) for n in ("98765 43210", "+91 98765 43211")]  # ['919876543210', '919876543211']
    """
    region = _checked_region(default_region)
    fast = fast_reader(region)

    def read(raw: object) -> str:
        try:
            return _normalize(raw, region, fast)
        except _BadNumber as err:
            fail(field, err.problem)

    return read


def split_recipients(to: str) -> list[str]:
    """
    Return the entries of a recipient string.

    Split at commas, semicolons, line breaks and tabs, and before a ``+`` that follows a space (each entry is
    then normalised on its own).
    """
    entries: list[str] = []
    for chunk in _LIST_HARD_SPLIT_RE.split(to):
        entries.extend(piece for piece in _LIST_PLUS_SPLIT_RE.split(chunk.strip()) if piece)
    return entries


def normalize_numbers(
    to: str | Iterable[str], *, default_region: str | None = None, field: str = "to"
) -> list[str]:
    """
    Normalise one or many recipients, keeping order and dropping exact duplicates.

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
        fail(field, "is required; pass a phone number with its country code, or a list of them")
    region = _checked_region(default_region)
    if type(to) is str and to and to.isascii() and to.isdigit():
        # One plain digit string (a send to one number): no separator to split at, no decimal comma to find.
        try:
            return [_normalize(to, region)]
        except _BadNumber as err:
            fail(field, f"entry 1: {err.problem}")
    from_string = isinstance(to, str)
    entries: Iterable[object]
    if isinstance(to, str):
        if _DECIMAL_COMMA_IN_LIST_RE.search(to):
            # Split at the comma, "919876543210,0" would be a number and a "0": say what it really is.
            fail(
                field,
                "has a number written with a decimal comma ('919876543210,0' or '9,19876E+11'): the column "
                f"was read as a number; {_FLOAT_FIX}",
            )
        entries = split_recipients(to)
    elif _is_number_value(to):
        entries = [to]  # one number value: _normalize says whether its type can be trusted
    elif isinstance(to, (bytes, Mapping)) or not isinstance(to, Iterable):
        fail(field, f"must be a string or a list of strings, got {type(to).__name__}")
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
        fail(field, f"entry {position}: {problem}")
    if not result:
        fail(field, "has no phone numbers; pass at least one number with its country code")
    return list(result)
