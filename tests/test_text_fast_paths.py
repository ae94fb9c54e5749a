"""The campaign's per-row fast paths for texts give exactly the full answers, on a generated corpus.

* ``sms_text.measure_printable_ascii``: either None (the caller takes the full path) or exactly what
  ``check_sendable`` + ``measure`` give (same encoding, length, septets, parts), for every encoding option;
* ``preparation.spool_line``: byte for byte what ``json.dumps(..., ensure_ascii=False)`` writes (the spool
  and the campaign digest, which a retried task compares, are made of these bytes).
"""

from __future__ import annotations

import json
import random

import pytest

from airflow_qikberry import sms_text
from airflow_qikberry.campaign.preparation import measure_text, spool_line
from airflow_qikberry.exceptions import QikberryValidationError

PRINTABLE = "".join(chr(i) for i in range(0x20, 0x7F))
# Weighted towards what changes a count: extension characters, the backtick (not GSM-7), controls that
# cannot be sent or are not printable, quotes and backslashes (JSON escapes), non-ASCII of every width.
SPECIAL = "^{}\\[~]|\f`\t\n\r\x00\x1b\x7f\"'é€ü\u2019\u00a0नम😀\ud83d"


def _texts(count: int = 20_000) -> list[str]:
    rng = random.Random(19)
    out = ["", " ", "a", "`", "x" * 160, "x" * 161, "{" * 80, "{" * 81, "x" * 152 + "{", "x" * 153 + "{"]
    for _ in range(count):
        length = rng.choice((rng.randint(1, 40), rng.randint(140, 170), rng.randint(300, 700)))
        special = rng.choice((0.0, 0.0, 0.01, 0.05, 0.3))
        out.append(
            "".join(
                rng.choice(SPECIAL) if rng.random() < special else rng.choice(PRINTABLE)
                for _ in range(length)
            )
        )
    return out


TEXTS = _texts()


def _full(text: str, encoding: str) -> sms_text.MessageLength | None:
    try:
        sms_text.check_sendable(text)
        return sms_text.measure(text, encoding)  # type: ignore[arg-type]
    except QikberryValidationError:
        return None


@pytest.mark.parametrize("encoding", ["auto", "gsm7", "ucs2"])
def test_printable_ascii_measure_agrees_with_the_full_measure(encoding: str) -> None:
    taken = 0
    for text in TEXTS:
        fast = sms_text.measure_printable_ascii(text, encoding)  # type: ignore[arg-type]
        if fast is None:
            continue
        taken += 1
        assert fast == _full(text, encoding), (text, encoding)
    assert taken >= len(TEXTS) // 5  # the fast path is really used, on texts of every length


def _boundary_texts() -> list[str]:
    """
    Printable ASCII texts with extension characters at every position around each part boundary.

    Where a two-septet character falls decides the parts (it is never split), so texts of one length and
    one septet count can need different numbers of parts: "{" + 304 x is 2 parts, 152 x + "{" + 152 x is 3.
    A random corpus almost never puts one exactly there.
    """
    out = []
    for length in (*range(150, 163), *range(300, 310), *range(452, 462)):
        for position in range(length):
            out.append("x" * position + "{" + "x" * (length - position - 1))
        for position in range(0, length - 1, 7):  # two: the second one moves with the first
            out.append("x" * position + "~]" + "x" * (length - position - 2))
    return out


@pytest.mark.parametrize("encoding", ["auto", "gsm7"])
def test_printable_ascii_measure_agrees_where_extension_characters_meet_a_part_boundary(
    encoding: str,
) -> None:
    texts = _boundary_texts()
    # Both orders: what is measured first must not decide the answer for a text of the same shape after it.
    for text in texts + texts[::-1]:
        assert sms_text.measure_printable_ascii(text, encoding) == _full(text, encoding), (text, encoding)  # type: ignore[arg-type]
    parts = {_full(t, encoding).units for t in texts if len(t) == 305}  # type: ignore[union-attr]
    assert parts == {2, 3}  # the corpus does hold texts of one shape and different parts


def test_printable_ascii_measure_leaves_everything_else_to_the_full_path() -> None:
    assert sms_text.measure_printable_ascii("a`b") is None  # the backtick forces UCS-2 under auto
    assert sms_text.measure_printable_ascii("a`b", "gsm7") is None  # and is refused when GSM-7 is forced
    assert sms_text.measure_printable_ascii("tab\there") is None
    assert sms_text.measure_printable_ascii("Grüße") is None
    assert sms_text.measure_printable_ascii("x", "latin1") is None  # type: ignore[arg-type]  # full path refuses


@pytest.mark.parametrize("encoding", ["auto", "gsm7", "ucs2"])
def test_measure_text_answers_as_before(encoding: str) -> None:
    """The campaign's measure_text, which now tries the fast path first, against the full path."""
    for text in TEXTS[:5000]:
        got = measure_text(text, encoding, 3)
        if not text.strip() or len(text) > sms_text.MAX_MESSAGE_CHARS:
            assert isinstance(got, tuple)
            continue
        full = _full(text, encoding)
        if full is None:
            assert isinstance(got, tuple)
            assert got[0] == "invalid_message"
        elif full.units > 3:
            assert isinstance(got, tuple)
            assert got[0] == "message_too_long"
        else:
            assert got == full


@pytest.mark.parametrize("encoding", ["auto", "gsm7", "ucs2"])
def test_validate_message_answers_as_the_full_path(encoding: str) -> None:
    """validate_message takes the fast path for printable ASCII: same length, or the same refusal."""
    for text in TEXTS[:5000]:
        full = _full(text, encoding) if text.strip() and len(text) <= sms_text.MAX_MESSAGE_CHARS else None
        try:
            got = sms_text.validate_message(text, encoding=encoding)  # type: ignore[arg-type]
        except QikberryValidationError:
            got = None
        assert got == full, (text, encoding)


def test_spool_line_is_byte_for_byte_json_dumps() -> None:
    for i, text in enumerate(TEXTS):
        number = f"9198{i:08d}"
        assert spool_line(number) == json.dumps([number], ensure_ascii=False)
        for api_type in ("N", "U"):
            parts = [number, text, api_type]
            assert spool_line(*parts) == json.dumps(parts, ensure_ascii=False), text


def _mask_reference(number: str) -> str:
    # phone_input.mask_number's loop, which every input took before its digits-only fast path.
    text = str(number)
    total = sum(c.isdigit() for c in text)
    keep_head, keep_tail = (4, 3) if total >= 10 else (0, 0)
    out, seen = [], 0
    for char in text:
        if char.isdigit():
            seen += 1
            out.append(char if seen <= keep_head or seen > total - keep_tail else "X")
        else:
            out.append(char)
    return "".join(out)


def test_masking_a_digit_string_agrees_with_the_full_mask() -> None:
    from airflow_qikberry.phone import mask_number

    rng = random.Random(19)
    digits = "0123456789"
    numbers = ["".join(rng.choice(digits) for _ in range(size)) for size in range(25) for _ in range(40)]
    # Not digit strings: the full path (signs, spaces, other scripts' digits, a str subclass).
    numbers += ["+91 98765 43123", "٩١٩٨٧٦٥٤٣١٢٣", "(0)20 7946 0958", "", "919876543123\n"]
    numbers += [type("Text", (str,), {})("919876543123")]
    for number in numbers:
        assert mask_number(number) == _mask_reference(number), number
