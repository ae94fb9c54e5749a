"""The provider's DLT template matcher (``airflow_qikberry.dlt``): the documented rules, the two properties
of the issue (a rendered template always matches, a changed fixed word never does) and a brute-force oracle.
Its time per character is measured by ``bench/dlt_match.py``, never asserted here."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_qikberry import dlt
from airflow_qikberry.dlt import MATCH, MISMATCH, TOO_LONG, TemplateBody, TemplateBodyError, match

PROPERTY = settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])


def kind(body: str, text: str, max_chars: int = 30) -> str:
    return match(TemplateBody.parse(body), text, max_chars=max_chars).kind


def test_parse_and_render() -> None:
    body = TemplateBody.parse("Hi {{name}}, code {{otp}}{{otp}} }} { x")
    assert body.parts == ("Hi ", ", code ", "", " }} { x")
    assert body.names == ("name", "otp", "otp")
    assert body.variables == ("name", "otp")
    assert body.render({"name": "Asha", "otp": "12"}) == "Hi Asha, code 1212 }} { x"
    with pytest.raises(KeyError):
        body.render({"name": "Asha"})


@pytest.mark.parametrize("source", ["{{first_name}}", "{{ name }}", "{{}}", "a {{name", "{{{name}}}"])
def test_a_brace_pair_that_opens_no_placeholder_is_an_invalid_body(source: str) -> None:
    with pytest.raises(TemplateBodyError, match="not a placeholder"):
        TemplateBody.parse(source)


@pytest.mark.parametrize(
    ("body", "text", "expected"),
    [
        ("Your OTP is {{otp}}.", "Your OTP is 123456.", MATCH),
        ("Your OTP is {{otp}}.", "Your OTP is .", MATCH),  # an empty value
        ("Your OTP is {{otp}}.", "your OTP is 1.", MISMATCH),  # case counts
        ("Your OTP is {{otp}}.", "Your OTP  is 1.", MISMATCH),  # every space counts
        ("Your OTP is {{otp}}.", "Your OTP is 1. ", MISMATCH),  # nothing may follow the end
        ("Your OTP is {{otp}}.", " Your OTP is 1.", MISMATCH),  # nor precede the start
        ("Your OTP is {{otp}}.", "Your OTP is " + "9" * 30 + ".", MATCH),
        ("Your OTP is {{otp}}.", "Your OTP is " + "9" * 31 + ".", TOO_LONG),
        ("Your OTP is {{otp}}.", "Your OTP is 12\n34.", MISMATCH),  # a value holds no line break
        ("Hi {{a}}\nBye {{b}}", "Hi x\r\nBye y", MATCH),  # \r\n is \n
        ("Hi {{a}}\r\nBye {{b}}", "Hi x\rBye y", MATCH),
        ("Hi {{a}}\nBye {{b}}", "Hi x Bye y", MISMATCH),
        ("{{a}}{{b}}", "x" * 60, MATCH),  # adjacent placeholders hold 60 together
        ("{{a}}{{b}}", "x" * 61, TOO_LONG),
        ("{{a}} and {{b}}", "x" * 29 + " and y and " + "z" * 20, MATCH),  # neither greedy...
        ("{{a}} and {{b}}", "x" * 20 + " and y and " + "z" * 29, MATCH),  # ...nor lazy
        ("{{a}} and {{b}}", "x" * 31 + " and y and " + "z" * 31, TOO_LONG),
        ("Price ₹{{p}} 🎉", "Price ₹" + "€" * 30 + " 🎉", MATCH),  # code points, not bytes or GSM septets
        ("Price ₹{{p}} 🎉", "Price ₹" + "🙂" * 31 + " 🎉", TOO_LONG),
        ("Same {{x}} and {{x}}", "Same 1 and 2", MATCH),  # names play no part
        ("No variables here", "No variables here", MATCH),
        ("No variables here", "No variables her", MISMATCH),
    ],
)
def test_rules(body: str, text: str, expected: str) -> None:
    assert kind(body, text) == expected


def test_the_limit_is_a_parameter() -> None:
    assert kind("OTP {{otp}}", "OTP 123456", max_chars=5) == TOO_LONG
    assert kind("OTP {{otp}}", "OTP 12345", max_chars=5) == MATCH


def test_a_match_gives_values_and_a_mismatch_says_what_differs() -> None:
    body = TemplateBody.parse("Dear {{name}}, your OTP is {{otp}}. -Acme")
    assert match(body, "Dear Asha, your OTP is 4711. -Acme").values == ("Asha", "4711")
    begin = match(body, "Dear Asha, your code is 4711. -Acme")
    assert begin.kind == MISMATCH
    assert (
        begin.detail
        == "the fixed text ', your OTP is ' (after {{name}}) is not in the text where the template has it"
    )
    assert "should begin with 'Dear '" in match(body, "Hello Asha, your OTP is 4711. -Acme").detail
    assert "should end with '. -Acme'" in match(body, "Dear Asha, your OTP is 4711. - Acme").detail
    long = match(body, "Dear " + "A" * 33 + ", your OTP is 4711. -Acme")
    assert long.kind == TOO_LONG
    assert "{{name}} would hold 33" in long.detail
    fixed = match(TemplateBody.parse("Server down"), "Server up")
    assert (
        fixed.detail
        == "the text differs from the template's fixed text at character 8: 'up' where the template has "
        "'down'"
    )
    lines = match(TemplateBody.parse("Hi {{a}}, bye"), "Hi A\nB, bye")
    assert lines.kind == MISMATCH
    assert "a variable cannot hold a line break" in lines.detail


# ---------------------------------------------------------------------------- properties

FIXED = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ,.-:!?{}", max_size=12)
NAMES = st.text(alphabet="abcxyz019", min_size=1, max_size=4)
# Values may hold anything but a line break: braces, fixed-text look-alikes, emoji, Devanagari.
VALUES = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), max_size=30
)


@st.composite
def bodies(draw: st.DrawFn) -> TemplateBody:
    count = draw(st.integers(0, 4))
    parts = [draw(FIXED) for _ in range(count + 1)]
    names = [draw(NAMES) for _ in range(count)]
    # "{" before a placeholder would make "{{{name}}": not a body the API stores.
    parts = [p.rstrip("{") if i < count else p for i, p in enumerate(parts)]
    source = "".join(
        p + ("{{" + n + "}}" if i < count else "")
        for i, (p, n) in enumerate(zip(parts, [*names, ""], strict=True))
    )
    try:
        return TemplateBody.parse(source)
    except TemplateBodyError:
        return TemplateBody.parse(source.replace("{", "("))


@PROPERTY
@given(data=st.data(), body=bodies())
def test_a_rendered_template_always_matches(data: st.DataObject, body: TemplateBody) -> None:
    values = {name: data.draw(VALUES) for name in body.variables}
    verdict = match(body, body.render(values))
    assert verdict.kind == MATCH, verdict.detail


WORD = st.text(alphabet="abcdefghij", min_size=4, max_size=4)
DIGITS = st.text(alphabet="0123456789", max_size=30)


@PROPERTY
@given(data=st.data(), count=st.integers(0, 4))
def test_a_changed_fixed_word_never_matches(data: st.DataObject, count: int) -> None:
    """Fixed text of 4-letter words (spaces between words and around placeholders), digit values, one word
    changed: the old word then occurs once less in the text than the template's fixed text needs, and no
    choice of values can make up for it."""
    segments = [data.draw(st.lists(WORD, max_size=4)) for _ in range(count + 1)]
    if not any(segments):
        segments[0] = [data.draw(WORD)]
    i, j = data.draw(st.sampled_from([(i, j) for i, seg in enumerate(segments) for j in range(len(seg))]))
    changed = [list(seg) for seg in segments]
    changed[i][j] = data.draw(WORD.filter(lambda w: w != segments[i][j]))

    def fixed(k: int, words: list[str]) -> str:
        return ((" " if k else "") + " ".join(words) + (" " if k < count else "")) if words else ""

    body = TemplateBody.parse(
        fixed(0, segments[0]) + "".join(f"{{{{v{k}}}}}" + fixed(k, segments[k]) for k in range(1, count + 1))
    )
    values = [data.draw(DIGITS) for _ in range(count)]
    text = fixed(0, changed[0]) + "".join(values[k - 1] + fixed(k, changed[k]) for k in range(1, count + 1))
    assert match(body, text).kind == MISMATCH


def oracle(body: TemplateBody, text: str, max_chars: int) -> str:
    """The rule itself, by backtracking regexes: fine for the small inputs hypothesis draws."""

    def pattern(bound: str) -> re.Pattern[str]:
        return re.compile(
            "".join(re.escape(p) + (bound if i < len(body.names) else "") for i, p in enumerate(body.parts)),
            re.DOTALL,
        )

    text = dlt.normalise(text)
    if pattern(f"[^\\n]{{0,{max_chars}}}").fullmatch(text):
        return MATCH
    return TOO_LONG if pattern("[^\\n]*").fullmatch(text) else MISMATCH


TEXT_BITS = st.text(alphabet="ab ,\n", max_size=5)


@PROPERTY
@given(data=st.data(), body=bodies(), max_chars=st.integers(0, 4))
def test_agrees_with_a_brute_force_oracle(data: st.DataObject, body: TemplateBody, max_chars: int) -> None:
    # Texts built from the body's own fixed parts and short runs of a few letters: the near misses.
    pieces = [
        data.draw(st.sampled_from([*body.parts, "a", "ab", " ", "\n"]))
        for _ in range(data.draw(st.integers(0, 7)))
    ]
    text = data.draw(
        st.sampled_from(["".join(pieces), body.render({n: data.draw(TEXT_BITS) for n in body.variables})])
    )
    assert match(body, text, max_chars=max_chars).kind == oracle(body, text, max_chars)
