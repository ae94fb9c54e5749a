"""The emulator's own DLT template matcher (``airflow_qikberry.emulator.dlt``): its rules, properties
(a rendered template always matches, a changed fixed word never does) and a brute-force oracle."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_qikberry.emulator.dlt import (
    MATCH,
    MISMATCH,
    VARIABLE_TOO_LONG,
    Placeholder,
    TemplateBody,
    TemplateBodyError,
    match,
    parse_body,
    render,
)

PROPERTY = settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])


def verdict(body: str, text: str, max_chars: int = 30) -> str:
    return match(parse_body(body), text, max_chars).verdict


# ---------------------------------------------------------------------------- parsing and rendering
def test_parse_splits_fixed_text_and_placeholders() -> None:
    body = parse_body("Hi {{name}}, code {{otp}}{{otp}} }} { x")
    assert body.parts == (
        "Hi ",
        Placeholder("name"),
        ", code ",
        Placeholder("otp"),
        Placeholder("otp"),
        " }} { x",
    )
    assert body.variables == ("name", "otp")
    assert render(body, {"name": "Asha", "otp": "12"}) == "Hi Asha, code 1212 }} { x"
    with pytest.raises(KeyError):
        render(body, {"name": "Asha"})


@pytest.mark.parametrize(
    "body", ["{{first_name}}", "{{ name }}", "{{}}", "a {{name", "{{{name}}}", "{{na me}}"]
)
def test_invalid_placeholders(body: str) -> None:
    with pytest.raises(TemplateBodyError, match="alphabetic or alphanumeric"):
        parse_body(body)


# ---------------------------------------------------------------------------- the rules
@pytest.mark.parametrize(
    ("body", "text", "expected"),
    [
        ("Your OTP is {{otp}}.", "Your OTP is 123456.", MATCH),
        ("Your OTP is {{otp}}.", "Your OTP is .", MATCH),  # a variable may be empty
        ("Your OTP is {{otp}}.", "Your otp is 1.", MISMATCH),  # case-sensitive
        ("Your OTP is {{otp}}.", "Your OTP  is 1.", MISMATCH),  # every space counts
        ("Your OTP is {{otp}}.", " Your OTP is 1.", MISMATCH),
        ("Your OTP is {{otp}}.", "Your OTP is 1. ", MISMATCH),
        ("Your OTP is {{otp}}.", "Your OTP is 1\n2.", MISMATCH),  # no line break in a variable
        ("Line one\nline {{n}}", "Line one\r\nline 2", MATCH),  # CRLF and CR are LF
        ("Line one\r\nline {{n}}", "Line one\rline 2", MATCH),
        ("Your OTP is {{otp}}.", "Your OTP is " + "1" * 30 + ".", MATCH),
        ("Your OTP is {{otp}}.", "Your OTP is " + "1" * 31 + ".", VARIABLE_TOO_LONG),
        ("{{a}}{{b}}", "x" * 60, MATCH),  # adjacent variables share the span: 30 + 30
        ("{{a}}{{b}}", "x" * 61, VARIABLE_TOO_LONG),
        ("{{a}} and {{b}}", "x" * 31 + " and y", VARIABLE_TOO_LONG),
        # Existential, neither greedy nor lazy: only the lazy split fits the first text, only the greedy
        # split the second.
        ("{{a}} and {{b}}", "x" * 29 + " and y and " + "z" * 20, MATCH),
        ("{{a}} and {{b}}", "x" * 20 + " and y and " + "z" * 29, MATCH),
        ("Hi {{a}}", "Hi {{a}}", MATCH),  # a value may look like a placeholder
        ("Fixed only", "Fixed only", MATCH),
        ("Fixed only", "Fixed only!", MISMATCH),
        ("{{a}}", "", MATCH),
    ],
)
def test_rules(body: str, text: str, expected: str) -> None:
    assert verdict(body, text) == expected


def test_mismatch_reasons_name_the_fixed_text() -> None:
    body = parse_body("Dear {{n}}, your OTP is {{o}}.")
    assert match(body, "Hi Asha, your OTP is 1.").reason == "the fixed text 'Dear ' is not found at the start"
    assert "', your OTP is '" in match(body, "Dear Asha, your PIN is 1.").reason
    assert "goes on after" in match(body, "Dear A, your OTP is 1.!").reason
    assert "30 characters" in match(body, "Dear " + "A" * 40 + ", your OTP is 1.").reason


def test_limit_is_a_parameter() -> None:
    assert verdict("x{{a}}", "x1234", max_chars=4) == MATCH
    assert verdict("x{{a}}", "x12345", max_chars=4) == VARIABLE_TOO_LONG


def test_many_variables_over_a_long_text_stay_fast() -> None:
    # A backtracking regex takes exponential time here; the matcher is linear per template part.
    body = parse_body("{{a}}x{{b}}x{{c}}x{{d}}x{{e}}x{{f}}x{{g}}x{{h}}y")
    assert match(body, "x" * 4000 + "z").verdict == MISMATCH
    assert match(body, "x" * 7 + "y").verdict == MATCH


# ---------------------------------------------------------------------------- properties
VALUE = st.text(alphabet=st.characters(blacklist_characters="\r\n"), max_size=30)
FIXED = st.text(alphabet=st.characters(blacklist_characters="{\r"), max_size=12)


@st.composite
def template_and_values(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    names = draw(st.lists(st.sampled_from(["a", "b", "name", "otp", "v1", "X9"]), max_size=6))
    fixed = draw(st.lists(FIXED, min_size=len(names) + 1, max_size=len(names) + 1))
    body = fixed[0] + "".join(f"{{{{{name}}}}}{text}" for name, text in zip(names, fixed[1:], strict=True))
    values = {name: draw(VALUE) for name in set(names)}
    return body, values


@PROPERTY
@given(template_and_values())
def test_a_rendered_template_always_matches(case: tuple[str, dict[str, str]]) -> None:
    body, values = case
    parsed = parse_body(body)
    assert match(parsed, render(parsed, values)).verdict == MATCH


WORD = st.text(alphabet="abcdefgh", min_size=4, max_size=4)
DIGITS = st.text(alphabet="0123456789", min_size=1, max_size=30)


@st.composite
def template_with_a_changed_word(draw: st.DrawFn) -> tuple[TemplateBody, str]:
    """A template of 4-letter words and placeholders, rendered with digit values, one fixed word changed.

    Words are separated from each other and from values by a space, and values are digits, so the changed
    word's original occurs once less in the text than the template needs: no choice of values can match.
    """
    count = draw(st.integers(min_value=0, max_value=5))
    segments = draw(st.lists(st.lists(WORD, max_size=4), min_size=count + 1, max_size=count + 1))
    if not any(segments):
        segments[0] = [draw(WORD)]
    where = draw(st.sampled_from([(i, j) for i, seg in enumerate(segments) for j in range(len(seg))]))
    replacement = draw(WORD.filter(lambda w: w != segments[where[0]][where[1]]))

    def fixed(i: int, words: list[str]) -> str:
        if not words:
            return ""
        return (" " if i > 0 else "") + " ".join(words) + (" " if i < count else "")

    body = fixed(0, segments[0]) + "".join(
        f"{{{{v{i}}}}}" + fixed(i, segments[i]) for i in range(1, count + 1)
    )
    changed = [list(seg) for seg in segments]
    changed[where[0]][where[1]] = replacement
    values = [draw(DIGITS) for _ in range(count)]
    text = fixed(0, changed[0]) + "".join(values[i - 1] + fixed(i, changed[i]) for i in range(1, count + 1))
    return parse_body(body), text


@PROPERTY
@given(template_with_a_changed_word())
def test_a_changed_fixed_word_never_matches(case: tuple[TemplateBody, str]) -> None:
    body, text = case
    assert match(body, text).verdict == MISMATCH


def oracle(body: TemplateBody, text: str, limit: int | None) -> bool:
    """An independent answer: a backtracking regex tries every split (fine on tiny inputs)."""
    span = "[^\\n]*" if limit is None else f"[^\\n]{{0,{limit}}}"
    pattern = "".join(span if isinstance(p, Placeholder) else re.escape(p) for p in body.parts)
    return re.fullmatch(pattern, text.replace("\r\n", "\n").replace("\r", "\n"), re.DOTALL) is not None


SMALL = st.text(alphabet="ab \n", max_size=4)


@st.composite
def small_cases(draw: st.DrawFn) -> tuple[TemplateBody, str]:
    count = draw(st.integers(min_value=0, max_value=4))
    fixed = draw(st.lists(SMALL, min_size=count + 1, max_size=count + 1))
    body = fixed[0] + "".join(f"{{{{v}}}}{f}" for f in fixed[1:])
    return parse_body(body), draw(st.text(alphabet="ab \n\r", max_size=14))


@PROPERTY
@given(small_cases())
def test_agrees_with_a_brute_force_oracle(case: tuple[TemplateBody, str]) -> None:
    body, text = case
    expected = MATCH if oracle(body, text, 3) else VARIABLE_TOO_LONG if oracle(body, text, None) else MISMATCH
    assert match(body, text, max_chars=3).verdict == expected
