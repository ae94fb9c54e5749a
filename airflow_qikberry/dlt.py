r"""
DLT template matching: does a text fit its registered template? Pure, no I/O, no Airflow.

A DLT template body is fixed text with placeholders ``{{name}}`` (``[A-Za-z0-9]+``). A text *matches* it
when some choice of variable values, each at most 30 characters (:data:`MAX_VARIABLE_CHARS`) and without a
line break, makes the body equal to the text: fixed text compared exactly (case, spaces, punctuation), after
``\\r\\n`` and ``\\r`` became ``\\n``. A text that fits only with a longer value is :data:`TOO_LONG` (the
network's ``DLT-TM-VAR-EXECEED``), one that cannot fit at all :data:`MISMATCH` (``DLT-REJECTED``). The rules
are written out in docs/api-assumptions.md ("DLT template matching"); this is the provider's own reading of
them, independent of the emulator's matcher, so that the two can disagree.

Time is linear in the text for a given template, whatever the text: no backtracking. A variable holds no
line break, so the i-th line of the text must fit the i-th line of the body. Within a line the fixed parts
are found left to right (leftmost occurrence, which is optimal when values may be of any length); only when
that leaves a value over the limit are the positions a bounded value can reach followed as a bit set, one
scan of each fixed part's window.

Example::

    body = TemplateBody.parse("Your OTP is {{otp}}. -Acme")
    match(body, "Your OTP is 4711. -Acme").kind     # "match"
    match(body, "Your code is 4711. -Acme").detail  # "the text should begin with 'Your OTP is ' ..."
    body.render({"otp": "4711"})                    # "Your OTP is 4711. -Acme"
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Final, Literal, NamedTuple

__all__ = [
    "MATCH",
    "MAX_VARIABLE_CHARS",
    "MISMATCH",
    "TOO_LONG",
    "TemplateBody",
    "TemplateBodyError",
    "Verdict",
    "match",
    "normalise",
]

#: The most characters (Unicode code points) one DLT variable may hold.
MAX_VARIABLE_CHARS = 30

VerdictKind = Literal["match", "too_long", "mismatch"]
MATCH: Final = "match"
TOO_LONG: Final = "too_long"
MISMATCH: Final = "mismatch"

_PLACEHOLDER = re.compile(r"\{\{([A-Za-z0-9]+)\}\}")
_SNIPPET = 40


class TemplateBodyError(ValueError):
    """A template body whose ``{{`` does not open a placeholder ``{{name}}`` (letters and digits only)."""


def normalise(text: str) -> str:
    r"""``\\r\\n`` and a lone ``\\r`` become ``\\n``; nothing else changes."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


class _Line(NamedTuple):
    """
    One line of a body.

    Fixed parts around its placeholders (``len(parts) == len(names) + 1``) and the position of its first
    placeholder among the body's.
    """

    parts: tuple[str, ...]
    names: tuple[str, ...]
    first: int


@dataclass(frozen=True)
class TemplateBody:
    """
    A parsed template body.

    ``parts`` (fixed text, one more than ``names``) around the placeholders ``names``, in order (a name may
    come twice). Build it with :meth:`parse`.
    """

    source: str
    parts: tuple[str, ...]
    names: tuple[str, ...]

    @classmethod
    def parse(cls, source: str) -> TemplateBody:
        """
        Read ``source`` left to right.

        Each ``{{`` must open a placeholder ``{{name}}``; a lone ``{``, ``}`` or ``}}`` is fixed text. Raises
        :class:`TemplateBodyError`.
        """
        if not isinstance(source, str):
            raise TemplateBodyError(f"a template body is text, not {type(source).__name__}")
        text = normalise(source)
        parts: list[str] = []
        names: list[str] = []
        pos = 0
        while (start := text.find("{{", pos)) >= 0:
            found = _PLACEHOLDER.match(text, start)
            if found is None:
                raise TemplateBodyError(
                    f"{text[start : start + 20]!r} at character {start + 1} is not a placeholder "
                    "{{name}} (letters and digits only)"
                )
            parts.append(text[pos:start])
            names.append(found.group(1))
            pos = found.end()
        parts.append(text[pos:])
        return cls(source, tuple(parts), tuple(names))

    @property
    def variables(self) -> tuple[str, ...]:
        """The placeholder names, each once, in order of first use."""
        return tuple(dict.fromkeys(self.names))

    def render(self, values: Mapping[str, str]) -> str:
        """Return the body with every placeholder replaced by its value; ``KeyError`` for a missing one."""
        out = [self.parts[0]]
        for name, part in zip(self.names, self.parts[1:], strict=True):
            out.append(values[name])
            out.append(part)
        return "".join(out)

    @cached_property
    def lines(self) -> tuple[_Line, ...]:
        """The body cut at its line breaks (a placeholder never spans one); made once per body."""
        lines: list[_Line] = []
        parts, names, first = [""], list[str](), 0
        for i, fixed in enumerate(self.parts):
            pieces = fixed.split("\n")
            parts[-1] += pieces[0]
            for piece in pieces[1:]:
                lines.append(_Line(tuple(parts), tuple(names), first))
                parts, names, first = [piece], [], first + len(names)
            if i < len(self.names):
                names.append(self.names[i])
                parts.append("")
        lines.append(_Line(tuple(parts), tuple(names), first))
        return tuple(lines)


class Verdict(NamedTuple):
    """
    How a text fits a body.

    ``kind`` (:data:`MATCH`, :data:`TOO_LONG`, :data:`MISMATCH`), what differs (``detail``, empty on a
    match) and, on a match, a value for each placeholder (``values``).
    """

    kind: VerdictKind
    detail: str = ""
    values: tuple[str, ...] = ()

    @property
    def matches(self) -> bool:
        return self.kind == MATCH


def _snip(text: str) -> str:
    return repr(text if len(text) <= _SNIPPET else text[: _SNIPPET - 3] + "...")


def match(body: TemplateBody, text: str, *, max_chars: int = MAX_VARIABLE_CHARS) -> Verdict:
    """Whether ``text`` fits ``body`` with every value at most ``max_chars`` characters (see the module)."""
    text_lines = normalise(text).split("\n")
    body_lines = body.lines
    values: list[str] = []
    too_long: Verdict | None = None
    for number, (line, got) in enumerate(zip(body_lines, text_lines, strict=False), start=1):
        verdict = _match_line(line, got, max_chars)
        if verdict.kind == MISMATCH:
            where = f"line {number}: " if len(body_lines) > 1 or len(text_lines) > 1 else ""
            return Verdict(MISMATCH, where + verdict.detail + _line_count_note(body_lines, text_lines))
        if verdict.kind == TOO_LONG and too_long is None:
            too_long = verdict
        values.extend(verdict.values)
    if len(text_lines) != len(body_lines):
        return Verdict(
            MISMATCH,
            f"the text has {len(text_lines)} line(s), the template {len(body_lines)}: a line break is fixed "
            "text, and a variable cannot hold one",
        )
    return too_long or Verdict(MATCH, values=tuple(values))


def _line_count_note(body_lines: tuple[_Line, ...], text_lines: list[str]) -> str:
    if len(text_lines) == len(body_lines):
        return ""
    return (
        f" (the text has {len(text_lines)} lines, the template {len(body_lines)}: a variable cannot hold a "
        "line break)"
    )


def _match_line(line: _Line, text: str, max_chars: int) -> Verdict:
    parts, names = line.parts, line.names
    head = parts[0]
    if not names:
        if text == head:
            return Verdict(MATCH)
        at = next(
            (i for i, (a, b) in enumerate(zip(head, text, strict=False)) if a != b), min(len(head), len(text))
        )
        return Verdict(
            MISMATCH,
            f"the text differs from the template's fixed text at character {at + 1}: "
            f"{_snip(text[at:])} where the template has {_snip(head[at:])}",
        )
    tail = parts[-1]
    if not text.startswith(head):
        return Verdict(
            MISMATCH, f"the text should begin with {_snip(head)} but begins {_snip(text[: len(head)])}"
        )
    end = len(text) - len(tail)
    if end < len(head) or not text.endswith(tail):
        return Verdict(
            MISMATCH,
            f"the text should end with {_snip(tail)} but ends {_snip(text[max(len(text) - len(tail), 0) :])}",
        )
    # Any length: the leftmost occurrence of each fixed part leaves the most room for the rest.
    values, pos = [], len(head)
    for i, fixed in enumerate(parts[1:-1], start=1):
        found = text.find(fixed, pos, end)
        if found < 0:
            return Verdict(
                MISMATCH,
                f"the fixed text {_snip(fixed)} (after {{{{{names[i - 1]}}}}}) is not in the text where the "
                "template has it",
            )
        values.append(text[pos:found])
        pos = found + len(fixed)
    values.append(text[pos:end])
    if all(len(value) <= max_chars for value in values) or _fits_bounded(parts, text, end, max_chars):
        if any(len(value) > max_chars for value in values):
            values = []  # another choice of values fits; the leftmost one does not
        return Verdict(MATCH, values=tuple(values))
    index, value = next((i, v) for i, v in enumerate(values) if len(v) > max_chars)
    return Verdict(
        TOO_LONG,
        f"no choice of values keeps every variable within {max_chars} characters; e.g. "
        f"{{{{{names[index]}}}}} would hold {len(value)}: {_snip(value)}",
    )


def _spread(reach: int, width: int) -> int:
    """Every position ``r + d`` for ``r`` in the bit set ``reach`` and ``0 <= d <= width``."""
    covered = 1
    while covered <= width:
        step = min(covered, width + 1 - covered)
        reach |= reach << step
        covered += step
    return reach


def _fits_bounded(parts: tuple[str, ...], text: str, end: int, max_chars: int) -> bool:
    """
    Check whether the middle of a line (``text[len(parts[0]):end]``) fits ``parts[1:-1]``.

    Every value must be at most ``max_chars``. The positions where a value may end are followed as a bit set,
    part by part.
    """
    limit = (1 << (end + 1)) - 1  # positions 0..end
    reach = 1 << len(parts[0])  # where the next value may start
    for fixed in parts[1:-1]:
        starts = _spread(reach, max_chars) & limit
        if not fixed:  # adjacent placeholders: one longer value
            reach = starts
            continue
        if not starts:
            return False
        low = (starts & -starts).bit_length() - 1
        stop = min(end, starts.bit_length() - 1 + len(fixed))
        reach = 0
        found = text.find(fixed, low, stop)
        while found >= 0:
            if starts >> found & 1:
                reach |= 1 << (found + len(fixed))
            found = text.find(fixed, found + 1, stop)
        if not reach:
            return False
    return bool(_spread(reach, max_chars) >> end & 1)
