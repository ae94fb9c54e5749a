"""The reliability suite prints its figures: each test records what it measured with the ``figure`` fixture,
and the figures are printed together at the end of the run (and written to ``.reliability/figures.json``,
which ``docs/reliability.md`` quotes with the command that reproduces each one).

A figure travels on the test's report (``user_properties``), so it reaches the process that prints the
summary also when pytest-xdist runs the tests in worker processes; ``tests/conftest.py`` collects and prints
them. Each module here ends with a test that publishes figures gathered by the module's other tests in
module-level state, so under xdist one worker runs all of a module's tests, in file order (the scheduler in
``tests/conftest.py`` makes each module here one unit of work).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

FIGURE_PROPERTY = "reliability_figure"


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``figure(name, **values)``: record one measured figure of this test (printed at the end of the run)."""

    def record(name: str, **values: Any) -> None:
        figure = {name: {"test": request.node.nodeid, **values}}
        request.node.user_properties.append((FIGURE_PROPERTY, figure))

    return record
