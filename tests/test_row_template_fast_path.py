"""
The row-template fast path (``campaign.row_template``) gives Jinja's answer for every template and row.

Each template is rendered twice for each row: through ``compile_row_template`` (which takes the fast path
where it can) and through ``Template.render(row=row)`` of the same environment. The two must agree: the same
text, or the same error type and message. Templates and rows are generated from the shapes campaign data
has: CSV rows of strings, rows from SQL or pandas with ``None`` and numbers, missing columns, columns named
like ``dict`` methods, literals with braces, percent signs, newlines and non-Latin text.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import jinja2
import jinja2.nativetypes
import jinja2.sandbox
import pytest

from airflow_qikberry.campaign.preparation import compile_row_template
from airflow_qikberry.campaign.row_template import plain_row_render

COLUMNS = ["name", "city", "order_id", "items", "keys", "get", "_private", "first name", "Name", "ünï"]
LITERALS = [
    "Hi ",
    ", ",
    " your order ",
    "%s %d %%",
    "[{ x } }}]",
    "\n",
    "\n\n",
    "नमस्ते ",
    "",
    "  ",
    "€5",
    "\t",
]


def airflow_env() -> Any:
    """The environment a campaign task renders with: its DAG's, sandboxed."""
    try:
        from airflow.sdk import DAG
    except ImportError:  # Airflow 2
        from airflow import DAG  # type: ignore[no-redef,attr-defined]
    import pendulum

    dag = DAG(dag_id="row_template_env", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
    try:
        return dag.get_template_env(force_sandboxed=True)
    except TypeError:
        return dag.get_template_env()


ENVIRONMENTS = {
    "airflow": airflow_env,
    "sandboxed": jinja2.sandbox.SandboxedEnvironment,
    "strict": lambda: jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined),
    "plain": jinja2.Environment,
    "keep-newline": lambda: jinja2.sandbox.SandboxedEnvironment(keep_trailing_newline=True),
    # Refused by the fast path (values are not plain text there): rendered by Jinja, still the same answers.
    "autoescape": lambda: jinja2.sandbox.SandboxedEnvironment(autoescape=True),
    "finalize": lambda: jinja2.sandbox.SandboxedEnvironment(finalize=lambda v: "" if v is None else v),
    "native": jinja2.nativetypes.NativeEnvironment,
}


def reference(env: Any, source: str, row: Any) -> tuple[str, str]:
    try:
        return ("text", str(env.from_string(source).render(row=row)))
    except Exception as exc:
        return ("error", f"{type(exc).__name__}: {exc}")


def fast(render: Any, row: Any) -> tuple[str, str]:
    try:
        return ("text", render(row))
    except Exception as exc:
        return ("error", f"{type(exc).__name__}: {exc}")


def random_template(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(0, 4)):
        parts.append(rng.choice(LITERALS))
        column = rng.choice(COLUMNS)
        if " " in column or rng.random() < 0.3:
            parts.append(f"{{{{ row[{column!r}] }}}}")
        elif column.isidentifier():
            parts.append(rng.choice(["{{ row.%s }}", "{{row.%s}}", "{{- row.%s -}}"]) % column)
    parts.append(rng.choice(LITERALS))
    # Now and then something the fast path must leave to Jinja.
    if rng.random() < 0.15:
        parts.append(
            rng.choice(
                [
                    "{{ row.name | upper }}",
                    "{% if row.city %}in {{ row.city }}{% endif %}",
                    "{{ ds }}",
                    "{{ 'x' }}",
                    "{{ row.name.title() }}",
                    "{# a comment #}",
                    "{% raw %}{{ row.name }}{% endraw %}",
                ]
            )
        )
    source = "".join(parts)
    return source if source.strip() else "Hello"


class StrSubclass(str):
    def __str__(self) -> str:
        return "subclassed"


def random_row(rng: random.Random) -> Any:
    row: dict[str, Any] = {}
    for column in COLUMNS:
        pick = rng.random()
        if pick < 0.7:
            row[column] = rng.choice(["Asha", "", " O'Brien ", "%d", "{{ row.name }}", "Zoë", "1", "\n"])
        elif pick < 0.8:
            # What SQL drivers and pandas hand over besides text: NULL, numbers, NaN, Decimal, dates, bytes.
            row[column] = rng.choice(
                [
                    None,
                    42,
                    3.5,
                    float("nan"),
                    919876543210.0,
                    Decimal("12.50"),
                    date(2026, 12, 5),
                    datetime(2026, 12, 5, 9, 30),
                    b"raw",
                    ["a"],
                    StrSubclass("s"),
                ]
            )
        # else: the column is missing from this row
    if rng.random() < 0.1:
        return OrderedDict(row)
    return row


@pytest.mark.parametrize("env_name", sorted(ENVIRONMENTS))
def test_the_fast_path_agrees_with_jinja_on_generated_templates_and_rows(env_name: str) -> None:
    rng = random.Random(f"row-templates-{env_name}")
    env = ENVIRONMENTS[env_name]()
    for _ in range(150):
        source = random_template(rng)
        render = compile_row_template(env, source)
        for _ in range(12):
            row = random_row(rng)
            assert fast(render, row) == reference(env, source, row), (source, row)


def test_the_fast_path_is_taken_for_plain_templates_and_only_for_them() -> None:
    env = airflow_env()

    def jinja(row: Any) -> str:
        raise AssertionError("the fast path handed a plain row to Jinja")

    render = plain_row_render(env, "Hi {{ row.name }}, order {{ row['order id'] }} ships", jinja)
    assert render is not None
    assert render({"name": "Asha", "order id": "A-1"}) == "Hi Asha, order A-1 ships"
    for source in (
        "{{ row.name | upper }}",
        "{% if row.name %}x{% endif %}",
        "{{ row.items }}",  # the dict's method in Jinja, not a column
        "{{ other.name }}",
        "{{ row[0] }}",
        "{{ 'text' }}",
    ):
        assert plain_row_render(env, source, jinja) is None, source
    for unsure in (
        jinja2.sandbox.SandboxedEnvironment(autoescape=True),
        jinja2.nativetypes.NativeEnvironment(),
    ):
        assert plain_row_render(unsure, "Hi {{ row.name }}", jinja) is None


def test_rows_the_fast_path_cannot_vouch_for_go_to_jinja() -> None:
    env = airflow_env()
    handed: list[Any] = []

    def jinja(row: Any) -> str:
        handed.append(row)
        return "from jinja"

    render = plain_row_render(env, "Hi {{ row.name }}", jinja)
    assert render is not None
    for row in ({}, {"name": None}, {"name": 7}, {"name": StrSubclass("x")}, OrderedDict(name="Asha")):
        assert render(row) == "from jinja"
    assert len(handed) == 5
