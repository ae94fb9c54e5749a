"""
The fast reading of plain digit strings, proven to agree with the full ``phonenumbers`` rules.

Compiled once per region (or country code) from phonenumbers' own metadata, it takes only the shapes where
every step of ``phonenumbers.parse`` is known to give the same result, and answers None for anything else,
which :mod:`airflow_qikberry.phone` then reads with the full rules. ``tests/test_phone_fast_path.py``
compares both on a generated corpus of about 290,000 inputs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["API_MAX_DIGITS", "API_MIN_DIGITS", "fast_read", "fast_reader", "phonenumbers_module"]

#: The API's own limits on a number in ``to``: country code included (docs/api-assumptions.md).
API_MIN_DIGITS, API_MAX_DIGITS = 8, 15


@functools.cache
def phonenumbers_module() -> ModuleType:
    # Imported on first use only: it loads ~1 MB of metadata, too slow for every DAG-file parse.
    import phonenumbers

    return phonenumbers


class _FastRegion:
    """
    The common shape of a number of one region, read without ``phonenumbers.parse``.

    A string of ASCII digits that is a valid *mobile* national number of the region, alone or after the
    region's country code.

    Compiled once per region from the same metadata phonenumbers reads, and only for shapes where every step
    of the full rules is known to give ``country code + the digits written``; anything else returns None
    and takes the full path (:func:`_read`). Each condition below stands for one step of that path:

    * no IDD (international prefix) and no national prefix at the start: ``parse`` strips neither;
    * after the country code, the rest is a valid national number of the region and the whole string is not
      (``parse`` then takes the leading digits as the country code, and ``_read`` keeps the national reading
      because it gives back the digits written);
    * without it, the string is a valid national number: ``_read`` keeps the national reading at once;
    * "valid" is the general pattern and the mobile pattern, lengths included (what ``is_valid_number``
      checks, narrowed to mobile numbers: the only type a campaign needs fast); never a leading 0 (Italian
      leading zeros); the country code is the region's alone (``region_code_for_number`` has no choice).

    tests/test_phone_fast_path.py compares it with the full rules on a generated corpus of every region.
    """

    __slots__ = (
        "cc",
        "general",
        "general_lengths",
        "idd",
        "mobile_lengths",
        "national_prefix",
        "valid_mobile",
    )

    def __init__(self, metadata: Any) -> None:
        self.cc = str(metadata.country_code)
        self.idd = re.compile(metadata.international_prefix) if metadata.international_prefix else None
        npfp = metadata.national_prefix_for_parsing
        self.national_prefix = re.compile(npfp) if npfp else None
        general = metadata.general_desc.national_number_pattern
        mobile = metadata.mobile.national_number_pattern
        self.general = re.compile(general).fullmatch
        self.general_lengths = frozenset(metadata.general_desc.possible_length)
        # A valid mobile number matches both patterns whole: one regex, the general one as a lookahead
        # (the patterns use no backreference or named group, which the wrapping would disturb).
        self.valid_mobile = re.compile(f"(?=(?:{general})\\Z)(?:{mobile})").fullmatch
        # ... and has a length both allow (an empty list allows any).
        lengths = [frozenset(d.possible_length) for d in (metadata.general_desc, metadata.mobile)]
        lengths = [allowed for allowed in lengths if allowed]
        self.mobile_lengths = frozenset.intersection(*lengths) if lengths else None

    def read(self, text: str) -> str | None:
        """``country code + national number`` when ``text`` has the fast shape, else None."""
        if not (text.isascii() and text.isdigit()) or text[0] == "0":
            return None
        idd = self.idd
        if idd is not None and idd.match(text):
            return None
        cc = self.cc
        if text.startswith(cc):
            national = text[len(cc) :]
            if not national or national[0] == "0":
                return None
            general_lengths = self.general_lengths
            if (not general_lengths or len(text) in general_lengths) and self.general(text) is not None:
                return None  # the whole string is a national number too
            out = text
        else:
            national = text
            out = cc + text
        national_prefix = self.national_prefix
        if national_prefix is not None and national_prefix.match(national):
            return None
        if not API_MIN_DIGITS <= len(out) <= API_MAX_DIGITS:
            return None
        mobile_lengths = self.mobile_lengths
        if mobile_lengths is not None and len(national) not in mobile_lengths:
            return None
        return out if self.valid_mobile(national) is not None else None


@functools.lru_cache(maxsize=512)
def _fast_region(region: str) -> _FastRegion | None:
    """
    Return the fast reading of ``region`` (a checked region code).

    None when its country code is shared with other regions or its metadata lacks a part the fast path
    relies on.
    """
    pn = phonenumbers_module()
    metadata = pn.PhoneMetadata.metadata_for_region(region)
    if metadata is None or metadata.country_code is None:
        return None
    if len(pn.region_codes_for_country_code(metadata.country_code)) != 1:
        return None
    general, mobile = metadata.general_desc, metadata.mobile
    if general is None or mobile is None or not general.national_number_pattern:
        return None
    if not mobile.national_number_pattern:
        return None
    return _FastRegion(metadata)


class _FastCountry:
    """
    Without a region, the common shape is the API's own: a string of ASCII digits, country code first.

    The full rules read it as ``"+" + digits`` and accept it when *possible* (validity is not required
    without a region, so that test ranges work). This is that reading for one country code, compiled once:

    * the country code is the first 1-3 digits that are one (as ``phonenumbers`` extracts it), of a
      geographic region (not the ``001`` non-geographic codes);
    * the rest never starts with 0 and has no national prefix at its start: ``parse`` strips nothing;
    * its length is a possible one of the region's general description and not a local-only one.

    tests/test_phone_fast_path.py compares it with the full rules, like :class:`_FastRegion`.
    """

    __slots__ = ("lengths", "local_only", "national_prefix")

    def __init__(self, metadata: Any) -> None:
        npfp = metadata.national_prefix_for_parsing
        self.national_prefix = re.compile(npfp) if npfp else None
        self.lengths = frozenset(metadata.general_desc.possible_length)
        self.local_only = frozenset(metadata.general_desc.possible_length_local_only or ())

    def possible(self, national: str) -> bool:
        if not national or national[0] == "0":
            return False
        if self.national_prefix is not None and self.national_prefix.match(national):
            return False
        return len(national) in self.lengths and len(national) not in self.local_only


@functools.lru_cache(maxsize=1024)
def _fast_country(country_code: int) -> _FastCountry | None:
    pn = phonenumbers_module()
    region = pn.region_code_for_country_code(country_code)
    if not region or region in ("ZZ", "001"):
        return None
    metadata = pn.PhoneMetadata.metadata_for_region(region)
    if metadata is None or metadata.general_desc is None or not metadata.general_desc.possible_length:
        return None
    if -1 in metadata.general_desc.possible_length:
        return None
    return _FastCountry(metadata)


def _fast_international(text: str) -> str | None:
    """
    Return ``text`` itself when it is a possible number in the API's format, else None.

    Possible by the full rules' own reading (see :class:`_FastCountry`).
    """
    if not (text.isascii() and text.isdigit()) or text[0] == "0":
        return None
    if not API_MIN_DIGITS <= len(text) <= API_MAX_DIGITS:
        return None
    known = phonenumbers_module().COUNTRY_CODE_TO_REGION_CODE
    for size in (1, 2, 3):
        code = int(text[:size])
        if code in known:
            fast = _fast_country(code)
            return text if fast is not None and fast.possible(text[size:]) else None
    return None


def fast_read(text: str, region: str | None) -> str | None:
    """Return the fast reading of a plain digit string, or None for the full rules."""
    return fast_reader(region)(text)


def _none(text: str) -> None:
    return None


def fast_reader(region: str | None) -> Callable[[str], str | None]:
    """
    Return :func:`fast_read` for one (checked) region, looked up once: for a loop over many numbers.

    Example::

        read = fast_reader("IN")
        read("9876543210")  # '919876543210'; None means: read it with the full rules
    """
    if region is None:
        return _fast_international
    fast = _fast_region(region)
    return fast.read if fast is not None else _none
