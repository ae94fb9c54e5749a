"""Per-row cost of a campaign's row template with the whole task context in scope, vs Jinja's own render.

A campaign renders its ``message_template`` once per row, with ``row`` and the task context (``ds``,
``params``... about 40 names) in scope. ``compile_row_template`` takes the context once as a plain dict
without reading a deprecated key (Airflow 2.11's context warns on each one read; they become lazy values
that warn only if the template uses them), then builds each row's Jinja context from that dict.

This script builds a task context with every key Airflow knows (on 2.11 a real
``airflow.utils.context.Context``, its 13 deprecated keys included; on 3.x a dict) and times, over the same
rows, in rounds of alternating order:

* **provider**: ``compile_row_template(env, TEMPLATE, context)`` and its render per row;
* **jinja**: ``Template.render(row=row)`` of the same template whose globals are a flat dict of the same
  names (Jinja's plain path over the cheapest globals it can have: the floor).

It prints microseconds per row of each, the median ratio provider/jinja against the 1.0 target (taking the
context must not make a row dearer than Jinja's own render), and how many warnings building and running the
provider's render raised (target 0). Never fails on a figure. Run it in either venv:

    .venv/bin/python bench/row_render.py          # Airflow 3.x
    .venv-af2/bin/python bench/row_render.py      # Airflow 2.11
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

TEMPLATE = "Hi {{ row.name }}, your bill of Rs {{ row.amount }} is due on {{ row.due }} ({{ ds }})"
TARGET = 1.0


def task_context() -> Any:
    """Every context key this Airflow knows, ``ds`` a real date; on Airflow 2 its warning ``Context``."""
    try:
        from airflow.sdk.definitions.context import KNOWN_CONTEXT_KEYS
    except ImportError:  # Airflow 2.x
        from airflow.utils.context import KNOWN_CONTEXT_KEYS, Context  # type: ignore[attr-defined,no-redef]

        return Context({key: f"<{key}>" for key in sorted(KNOWN_CONTEXT_KEYS)} | {"ds": "2026-12-01"})
    return {key: f"<{key}>" for key in sorted(KNOWN_CONTEXT_KEYS)} | {"ds": "2026-12-01"}


def per_row_us(render: Callable[[dict[str, str]], str], rows: list[dict[str, str]]) -> float:
    started = time.perf_counter()
    for row in rows:
        render(row)
    return (time.perf_counter() - started) / len(rows) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()

    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="qikberry-bench-render-"))
    import jinja2.sandbox

    from airflow_qikberry.campaign import compile_row_template

    env = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined)
    context = task_context()
    rows = [{"name": f"Customer {i}", "amount": f"{i % 5000}.00", "due": "5 Dec"} for i in range(args.rows)]

    with warnings.catch_warnings(record=True) as raised:
        warnings.simplefilter("always")
        provider = compile_row_template(env, TEMPLATE, context)
        provider(rows[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a flat copy reads every key: Airflow 2.11 warns on 13 of them
        flat = {key: context[key] for key in context}
    template = env.from_string(TEMPLATE)
    template.globals = {**env.globals, **flat}

    def jinja(row: dict[str, str]) -> str:
        return template.render(row=row)

    assert provider(rows[1]) == jinja(rows[1])
    ratios = []
    for round_ in range(args.rounds):
        pair = [("provider", provider), ("jinja", jinja)]
        timed = dict((name, per_row_us(fn, rows)) for name, fn in (pair if round_ % 2 else pair[::-1]))
        ratios.append(timed["provider"] / timed["jinja"])
        provider_us, jinja_us = timed["provider"], timed["jinja"]
        print(f"round {round_ + 1}: provider {provider_us:6.2f} us/row, jinja {jinja_us:6.2f} us/row")
    ratio = statistics.median(ratios)
    print(f"context: {len(context)} keys ({type(context).__module__}.{type(context).__name__})")
    print(f"warnings raised building and rendering: {len(raised)} (target 0)")
    verdict = "meets" if ratio <= TARGET else "ABOVE"
    print(f"median ratio provider/jinja: {ratio:.2f} ({verdict} the {TARGET} target)")


if __name__ == "__main__":
    main()
