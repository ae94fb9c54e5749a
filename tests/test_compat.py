"""Airflow 2.11 and 3.x from one code base: version flags, and no import that exists on one Airflow only.

``make test`` runs the whole suite on both Airflows; these tests make the rule itself visible on either run:
every module of the package imports on the running Airflow, and no provider or example DAG module imports
``airflow.sdk`` (3.x only) except behind a version check or ``TYPE_CHECKING``: Airflow base classes come
from ``airflow.providers.common.compat``.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import airflow_qikberry
from tests.helpers import AIRFLOW_V_3_0_PLUS, AIRFLOW_VERSION

REPO_ROOT = Path(__file__).resolve().parents[1]
CHECKED = [REPO_ROOT / "airflow_qikberry", REPO_ROOT / "example_dags"]
ONLY_ON_AIRFLOW_3 = ("airflow.sdk",)


def test_version_flag_matches_the_installed_airflow() -> None:
    from airflow_qikberry import version_compat

    assert version_compat.get_base_airflow_version_tuple()[:2] == AIRFLOW_VERSION
    assert version_compat.AIRFLOW_V_3_0_PLUS is AIRFLOW_V_3_0_PLUS


def _modules() -> list[str]:
    found = pkgutil.walk_packages(airflow_qikberry.__path__, prefix="airflow_qikberry.")
    return sorted(m.name for m in found if not m.name.endswith(".__main__"))


@pytest.mark.parametrize("module", _modules())
def test_every_module_imports_on_this_airflow(module: str) -> None:
    # Break: a module-level `from airflow.sdk import BaseOperator` -> ModuleNotFoundError on the 2.11 run.
    importlib.import_module(module)


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """True when an import sits under ``if TYPE_CHECKING``/``if AIRFLOW_V_3...`` or a ``try`` that catches
    ImportError (the import is then allowed to be missing)."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and any(
            isinstance(n, ast.Name) and (n.id == "TYPE_CHECKING" or n.id.startswith("AIRFLOW_V_3"))
            for n in ast.walk(node.test)
        ):
            return True
        if isinstance(node, ast.Try) and any(
            h.type is not None
            and any(
                isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError")
                for n in ast.walk(h.type)
            )
            for h in node.handlers
        ):
            return True
    return False


def unguarded_airflow3_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every ``airflow.sdk`` import that would raise on Airflow 2.11."""
    tree = ast.parse(source)
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            if name.startswith(ONLY_ON_AIRFLOW_3) and not _guarded(node, parents):
                found.append((node.lineno, name))
    return found


def test_no_unguarded_airflow_sdk_import_in_the_package_or_example_dags() -> None:
    offenders = [
        f"{path.relative_to(REPO_ROOT)}:{line}: import of {name}"
        for root in CHECKED
        for path in sorted(root.rglob("*.py"))
        for line, name in unguarded_airflow3_imports(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], "import these through airflow.providers.common.compat.sdk instead:\n" + "\n".join(
        offenders
    )


def test_the_import_check_sees_what_it_must() -> None:
    source = """
from typing import TYPE_CHECKING
import airflow.sdk
from airflow.sdk.bases.operator import BaseOperator

def run():
    from airflow.sdk import get_current_context

if TYPE_CHECKING:
    from airflow.sdk import Context
if AIRFLOW_V_3_0_PLUS:
    from airflow.sdk import DAG
try:
    from airflow.sdk.definitions.deadline import DeadlineAlert
except ImportError:
    DeadlineAlert = None
from airflow.providers.common.compat.sdk import BaseHook
"""
    assert unguarded_airflow3_imports(source) == [
        (3, "airflow.sdk"),
        (4, "airflow.sdk.bases.operator"),
        (7, "airflow.sdk"),
    ]
