"""The fast reading of plain digit strings (``phone_fast._FastRegion``) never disagrees with the full rules.

The fast path answers the common campaign case (a string of digits, with or without the region's country
code) from regexes compiled once per region; everything else falls back to ``phonenumbers``. Its
correctness is shown here the only way that matters: on a large generated corpus of every region
phonenumbers knows (example numbers of every type, with and without country code, trunk and international
prefixes, digits changed, dropped and added, random digit strings of 6 to 17 digits, numbers at the 8/15
digit limits) and on every tricky input of tests/reliability/test_number_corpus.py (floats, scientific
notation, Unicode spaces, apostrophes, ``tel:``, separators), the fast answer is either "not mine" (None)
or exactly the full rules' answer; an input the full rules refuse is never taken by the fast path.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import phonenumbers as pn
import pytest

from airflow_qikberry import phone, phone_fast
from tests.reliability.test_number_corpus import CORPUS

TYPES = (
    pn.PhoneNumberType.MOBILE,
    pn.PhoneNumberType.FIXED_LINE,
    pn.PhoneNumberType.TOLL_FREE,
    pn.PhoneNumberType.PREMIUM_RATE,
    pn.PhoneNumberType.VOIP,
    pn.PhoneNumberType.PERSONAL_NUMBER,
    pn.PhoneNumberType.UAN,
)
REGIONS = sorted(pn.SUPPORTED_REGIONS)


def _full(text: str, region: str | None) -> str | None:
    try:
        return phone._normalize_full(text, region)
    except phone._BadNumber:
        return None


def _fast(text: object, region: str | None) -> str | None:
    """What ``_normalize`` answers without the full rules (None: it falls back to them)."""
    if type(text) is not str or not text:
        return None
    return phone_fast.fast_read(text, region)


def _mutations(rng: random.Random, digits: str) -> Iterator[str]:
    yield digits
    for _ in range(6):  # one or two digits changed: mostly other valid numbers of the same plan
        chars = list(digits)
        for _ in range(rng.randint(1, 2)):
            chars[rng.randrange(len(chars))] = rng.choice("0123456789")
        yield "".join(chars)
    cut = rng.randrange(len(digits))
    yield digits[:cut] + digits[cut + 1 :]  # a digit dropped
    yield digits[:cut] + rng.choice("0123456789") + digits[cut:]  # a digit added


def corpus(rng: random.Random, per_region: int = 1200) -> Iterator[tuple[str, str]]:
    for region in REGIONS:
        cc = str(pn.country_code_for_region(region))
        metadata = pn.PhoneMetadata.metadata_for_region(region)
        prefixes = ["", cc, "0", "00" + cc, "0" + cc, cc + "0", cc + cc]
        if metadata is not None and metadata.international_prefix and metadata.international_prefix.isdigit():
            prefixes.append(metadata.international_prefix + cc)
        seeds = []
        for kind in TYPES:
            example = pn.example_number_for_type(region, kind)
            if example is not None:
                seeds.append(pn.national_significant_number(example))
        mobile = pn.example_number_for_type(region, pn.PhoneNumberType.MOBILE)
        made = 0
        while made < per_region:
            draw = rng.random()
            if mobile is not None and draw < 0.5:  # the shape the fast path exists for, and its neighbours
                base = pn.national_significant_number(mobile)
                for variant in _mutations(rng, base):
                    yield rng.choice(("", cc, cc, "", "0", "00" + cc)) + variant, region
                    made += 1
            elif seeds and draw < 0.85:
                base = rng.choice(seeds)
                for variant in _mutations(rng, base):
                    yield rng.choice(prefixes) + variant, region
                    made += 1
            else:  # random digits around the API limits (8-15 with the country code) and beyond
                length = rng.randint(6, 17)
                lead = cc if rng.random() < 0.5 else ""
                yield lead + "".join(rng.choice("0123456789") for _ in range(length - len(lead))), region
                made += 1


def test_fast_path_agrees_with_the_full_rules_on_a_generated_corpus() -> None:
    rng = random.Random(19)
    inputs = hits = regions_hit = 0
    hit_regions: set[str] = set()
    international = 0
    for text, region in corpus(rng):
        inputs += 1
        fast = _fast(text, region)
        if fast is not None:
            hits += 1
            hit_regions.add(region)
            full = _full(text, region)
            assert fast == full, f"{text!r} in {region}: fast path {fast!r}, full rules {full!r}"
            # And through the public function, which must take the fast path for it.
            assert phone.normalize_number(text, default_region=region) == full
        fast = _fast(text, None)  # the same digits without a region: the international reading
        if fast is not None:
            international += 1
            full = _full(text, None)
            assert fast == full, f"{text!r} without a region: fast path {fast!r}, full rules {full!r}"
    regions_hit = len(hit_regions)
    assert international >= 30_000, international
    # Not vacuous: the corpus is large and the fast path answers a large share of it in most regions.
    assert inputs >= 250_000
    assert hits >= 50_000, hits
    assert regions_hit >= 150, regions_hit


@pytest.mark.parametrize("region", [None, "IN", "US", "GB", "DE", "IT", "AR", "BR", "FR", "AT"])
def test_fast_path_leaves_every_tricky_input_to_the_full_rules_or_agrees(region: str | None) -> None:
    """Floats written as text, scientific notation, NBSP and other Unicode spaces, apostrophes, tel: URIs,
    separators and numbers at the 8/15-digit limits: never read differently by the fast path."""
    for entry in CORPUS:
        for where in {region, entry.region}:
            fast = _fast(entry.value, where)
            if fast is None:
                continue
            assert fast == _full(entry.value, where), (entry.id, where)


def test_fast_path_takes_the_common_campaign_shapes() -> None:
    """The shapes it exists for: the API's own format and a national mobile number (so the speed-up is real),
    and a number value or a text with anything but digits is left to the full rules."""
    assert _fast("919876543210", "IN") == "919876543210"
    assert _fast("9876543210", "IN") == "919876543210"
    assert _fast("33612345678", "FR") == "33612345678"
    for text in ("09876543210", "+919876543210", " 919876543210", "919876543210.0", "9.19876543210E+11",
                 "98765 43210", "'919876543210", "tel:919876543210", "0091 9876543210"):  # fmt: skip
        assert _fast(text, "IN") is None, text
    assert _fast("14155550101", "US") is None  # country code 1 is shared by 25 regions: full rules
    assert _fast(919876543210, "IN") is None
    # Without a region: the API's own format, any country code of a geographic region.
    assert _fast("919876543210", None) == "919876543210"
    assert _fast("14155550101", None) == "14155550101"
    for text in ("9876543210", "0919876543210", "+919876543210", "8001234567", "9198765432101234"):
        assert _fast(text, None) is None, text


def test_one_digit_string_given_to_normalize_numbers_answers_as_a_list_of_it() -> None:
    """normalize_numbers reads a lone digit string without splitting it: same numbers, same refusals, as the
    general path (a list of that one entry) gives."""
    from airflow_qikberry.exceptions import QikberryValidationError

    def outcome(value: object, region: str | None) -> object:
        try:
            return phone.normalize_numbers(value, default_region=region)  # type: ignore[arg-type]
        except QikberryValidationError as exc:
            return (exc.field, exc.message)

    rng = random.Random(7)
    taken = 0
    for n, (text, region) in enumerate(corpus(rng, per_region=40)):
        where = None if n % 3 == 0 else region
        got = outcome(text, where)
        assert got == outcome([text], where), (text, where)
        taken += isinstance(got, list)
    assert taken >= 1_000
