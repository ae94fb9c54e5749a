"""
Render the row templates most campaigns use (text, ``{{ row.column }}``, ``{{ row['column'] }}``) fast.

Pass 1 renders every row before the first send; Jinja spends about 3.5 µs a row on a template like
``Hi {{ row.name }}, your order shipped`` (a new context, a generator, an attribute lookup that fails before
the item lookup). Such a template is only literals and row values, so it is rendered here by joining them.
The fast path takes a row only when its answer is certain to be Jinja's: a plain ``dict`` row whose values for
the template's columns are plain ``str``. Anything else (a missing column, a ``None`` or a number, a column
named like a ``dict`` method, which Jinja's ``row.items`` reads as the method) goes to Jinja, whose answer or
error stands. ``tests/test_row_template_fast_path.py`` compares both on generated templates and rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

_MISSING: Any = object()


def plain_row_render(
    env: Any, source: str, full: Callable[[Mapping[str, Any]], str]
) -> Callable[[Mapping[str, Any]], str] | None:
    """
    Return a renderer of ``source`` that joins literals and row values, or None when it would not be Jinja's.

    ``full`` renders a row through Jinja: the fast renderer hands it every row it cannot vouch for.
    """
    parts = _plain_parts(env, source)
    if parts is None:
        return None
    first, rest = parts[0], tuple(zip(parts[1::2], parts[2::2], strict=True))

    def render(row: Mapping[str, Any]) -> str:
        if type(row) is not dict:
            return full(row)
        out = [first]
        for key, literal in rest:
            value = row.get(key, _MISSING)
            if type(value) is not str:
                return full(row)
            out.append(value)
            out.append(literal)
        return "".join(out)

    return render


def _plain_parts(env: Any, source: str) -> list[str] | None:
    """Return ``[literal, key, ..., literal]`` of a template of literals and row values; else None."""
    import jinja2
    from jinja2 import nodes
    from jinja2.sandbox import SandboxedEnvironment

    # An environment that changes how values become text (finalize, autoescape, native types, async) or how
    # attributes are looked up is left to Jinja.
    if env.is_async or env.finalize is not None or env.autoescape is not False or env.concat != "".join:
        return None
    env_class = type(env)
    if env_class.getattr not in (jinja2.Environment.getattr, SandboxedEnvironment.getattr):
        return None
    if env_class.getitem not in (jinja2.Environment.getitem, SandboxedEnvironment.getitem):
        return None
    try:
        tree = env.parse(source)
    except jinja2.TemplateSyntaxError:
        return None
    parts: list[str] = []
    literal: list[str] = []
    for node in tree.body:
        if not isinstance(node, nodes.Output):
            return None  # a tag: {% if %}, {% for %}, {% set %}...
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                literal.append(child.data)
                continue
            key = _row_key(child)
            if key is None:
                return None
            parts.append("".join(literal))
            parts.append(key)
            literal = []
    parts.append("".join(literal))
    return parts


def _row_key(node: Any) -> str | None:
    """Return the column of ``row.column`` or ``row['column']``; else None (filters, calls...)."""
    from jinja2 import nodes

    if isinstance(node, nodes.Getattr):
        target, key = node.node, node.attr
        if hasattr(dict, key):  # Jinja reads row.items, row.keys... as the dict's methods, not the columns
            return None
    elif (
        isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and type(node.arg.value) is str
    ):
        target, key = node.node, node.arg.value
    else:
        return None
    if isinstance(target, nodes.Name) and target.name == "row" and target.ctx == "load":
        return str(key)
    return None
