"""The reliability suite prints its figures: each test records what it measured with the ``figure`` fixture,
and the figures are printed together at the end of the run (and written to ``.reliability/figures.json``,
which ``docs/reliability.md`` quotes with the command that reproduces each one)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

_FIGURES: dict[str, dict[str, Any]] = {}
_OUT = Path(__file__).resolve().parents[2] / ".reliability" / "figures.json"


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``figure(name, **values)``: record one measured figure of this test (printed at the end of the run)."""

    def record(name: str, **values: Any) -> None:
        _FIGURES[name] = {"test": request.node.nodeid, **values}

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("reliability figures")
    for name, values in sorted(_FIGURES.items()):
        shown = ", ".join(f"{k}={v}" for k, v in values.items() if k != "test")
        terminalreporter.write_line(f"{name}: {shown}")
    _OUT.parent.mkdir(exist_ok=True)
    merged = json.loads(_OUT.read_text()) if _OUT.exists() else {}
    merged.update(_FIGURES)
    _OUT.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
