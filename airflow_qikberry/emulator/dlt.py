r"""
The emulator's own DLT template matcher.

Does a message text fit its registered template body?

Standard library only, and deliberately not shared with the provider: the emulator plays the network, and
the provider's pre-check is written separately from the documented rules (docs/api-assumptions.md, "DLT
template matching"), so the two can disagree and a test can see it.

The rules, all of them:

* A template body is fixed text with placeholders ``{{name}}``; a name is ASCII letters and digits only.
  Any other ``{{`` in a body (``{{ name }}``, ``{{first_name}}``, ``{{}}``, a ``{{`` never closed) makes the
  body invalid. A lone ``{``, ``}`` or ``}}`` is fixed text.
* Line endings are normalised first, in the body and in the text: ``\r\n`` and a lone ``\r`` become
  ``\n``. Nothing else is normalised: fixed text is compared exactly, character by character, case-sensitive,
  every space, tab and line break counting.
* Each placeholder stands for any run of characters without a line break, empty included; placeholders are
  independent of each other (two ``{{otp}}`` may hold different text) and their names play no part.
* A text *fits the shape* of a template when some choice of placeholder values (any length) makes the body
  equal to the text. It *matches* when some choice with every value at most ``max_chars`` (30) characters
  (Unicode code points) does. The choice is existential: no greedy or lazy reading, the answer does not
  depend on how a regex engine would try the values.

:func:`match` answers ``MATCH``, ``VARIABLE_TOO_LONG`` (fits the shape, but only with a value over the
limit) or ``MISMATCH`` (does not fit the shape), in time linear in the text for every template.

Example::

    body = parse_body("Your OTP is {{otp}}. Do not share it.")
    match(body, "Your OTP is 123456. Do not share it.").verdict  # "match"
    match(body, "Your code is 123456. Do not share it.").verdict  # "mismatch"
    render(body, {"otp": "123456"})  # "Your OTP is 123456. Do not share it."
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

MAX_VARIABLE_CHARS = 30
MATCH = "match"
VARIABLE_TOO_LONG = "variable_too_long"
MISMATCH = "mismatch"

_PLACEHOLDER = re.compile(r"\{\{([A-Za-z0-9]+)\}\}")


class TemplateBodyError(ValueError):
    """A template body with a ``{{`` that does not open a valid ``{{name}}`` placeholder."""


@dataclass(frozen=True)
class TemplateBody:
    """A parsed body: ``parts`` alternates fixed text (str) and placeholder names (``Placeholder``)."""

    source: str
    parts: tuple[str | Placeholder, ...]

    @property
    def variables(self) -> tuple[str, ...]:
        """Placeholder names in order of first appearance, each once."""
        seen: dict[str, None] = {}
        for part in self.parts:
            if isinstance(part, Placeholder):
                seen.setdefault(part.name, None)
        return tuple(seen)


@dataclass(frozen=True)
class Placeholder:
    """A ``{{name}}`` of a template body."""

    name: str


@dataclass(frozen=True)
class MatchResult:
    """What :func:`match` found, and why when it is not a match."""

    verdict: str  # MATCH, VARIABLE_TOO_LONG or MISMATCH
    reason: str = ""

    @property
    def matched(self) -> bool:
        return self.verdict == MATCH


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse_body(body: str) -> TemplateBody:
    """Split a template body into fixed text and placeholders; ``TemplateBodyError`` when invalid."""
    text = normalize_newlines(body)
    parts: list[str | Placeholder] = []
    pos = 0
    while True:
        start = text.find("{{", pos)
        if start < 0:
            parts.append(text[pos:])
            break
        found = _PLACEHOLDER.match(text, start)
        if found is None:
            shown = text[start : start + 20]
            raise TemplateBodyError(
                f"the body has an invalid variable at character {start + 1} ({shown!r}): variables are "
                "{{name}} with an alphabetic or alphanumeric name"
            )
        parts.append(text[pos:start])
        parts.append(Placeholder(found.group(1)))
        pos = found.end()
    return TemplateBody(body, tuple(p for p in parts if p != ""))


def render(body: TemplateBody, values: Mapping[str, str]) -> str:
    """Return the body with every placeholder replaced by its value (``KeyError``: the first missing one)."""
    out: list[str] = []
    for part in body.parts:
        out.append(values[part.name] if isinstance(part, Placeholder) else part)
    return "".join(out)


def _tokens(body: TemplateBody) -> list[str | int]:
    """
    Return the fixed strings and, for each run of adjacent placeholders, their count.

    k adjacent placeholders of at most L characters each hold exactly the texts of at most k*L characters: one
    span does.
    """
    tokens: list[str | int] = []
    for part in body.parts:
        if isinstance(part, Placeholder):
            if tokens and isinstance(tokens[-1], int):
                tokens[-1] += 1
            else:
                tokens.append(1)
        else:
            tokens.append(part)
    return tokens


Intervals = list[tuple[int, int]]


def _after_fixed(text: str, reach: Intervals, fixed: str) -> Intervals:
    out: Intervals = []
    size = len(fixed)
    for lo, hi in reach:
        at = text.find(fixed, lo, hi + size)
        while at >= 0:
            end = at + size
            out.append((end, end))
            at = text.find(fixed, at + 1, hi + size)
    return out


def _after_span(text: str, reach: Intervals, limit: int | None) -> Intervals:
    """
    Positions reachable by a span of at most ``limit`` characters (None: any) without a line break.

    From an interval of start positions [lo, hi] every position in it stays reachable (the empty span) and
    the span can only extend past ``hi`` inside the line that holds ``hi``.
    """
    out: Intervals = []
    n = len(text)
    for lo, hi in reach:
        newline = text.find("\n", hi)
        line_end = n if newline < 0 else newline
        top = line_end if limit is None else min(hi + limit, line_end)
        top = max(top, hi)
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], top))
        else:
            out.append((lo, top))
    return out


def _run(tokens: list[str | int], text: str, max_chars: int | None) -> tuple[bool, str]:
    reach: Intervals = [(0, 0)]
    for index, token in enumerate(tokens):
        if isinstance(token, int):
            reach = _after_span(text, reach, None if max_chars is None else token * max_chars)
        else:
            reach = _merge(_after_fixed(text, reach, token))
            if not reach:
                where = "at the start" if index == 0 else "where the template has it"
                return False, f"the fixed text {token!r} is not found {where}"
    n = len(text)
    if any(lo <= n <= hi for lo, hi in reach):
        return True, ""
    if tokens and isinstance(tokens[-1], str):
        return False, f"the text goes on after the template's last fixed text {tokens[-1]!r}"
    return False, "a variable cannot hold a line break"


def _merge(intervals: Intervals) -> Intervals:
    if not intervals:
        return intervals
    intervals.sort()
    out = [intervals[0]]
    for lo, hi in intervals[1:]:
        last_lo, last_hi = out[-1]
        if lo <= last_hi + 1:
            out[-1] = (last_lo, max(last_hi, hi))
        else:
            out.append((lo, hi))
    return out


def match(body: TemplateBody, text: str, max_chars: int = MAX_VARIABLE_CHARS) -> MatchResult:
    """Whether ``text`` matches ``body`` under the module's rules (see the module docstring)."""
    tokens = _tokens(body)
    subject = normalize_newlines(text)
    fits, _ = _run(tokens, subject, max_chars)
    if fits:
        return MatchResult(MATCH)
    shaped, reason = _run(tokens, subject, None)
    if shaped:
        return MatchResult(
            VARIABLE_TOO_LONG, f"the text fits the template only with a variable over {max_chars} characters"
        )
    return MatchResult(MISMATCH, reason)
