"""Provider metadata: schemas Airflow ships, the entry point, importable class paths and the built wheel."""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import importlib.resources
import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from airflow_qikberry.get_provider_info import get_provider_info
from tests.helpers import requires_airflow

DIST_NAME = "airflow-provider-qikberry"
REPO_ROOT = Path(__file__).resolve().parents[1]
STANDARD_FIELDS = frozenset({"description", "host", "port", "login", "password", "schema", "extra"})


def _airflow_schema(name: str) -> dict[str, Any]:
    # Both schemas ship inside the apache-airflow-core wheel next to airflow/__init__.py.
    return json.loads((importlib.resources.files("airflow") / name).read_text(encoding="utf-8"))


def _runtime_errors(info: dict[str, Any]) -> list[str]:
    """What Airflow's own check (``provider_info.schema.json``, run at provider discovery) reports."""
    validator = jsonschema.Draft7Validator(_airflow_schema("provider_info.schema.json"))
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(info)]


def strict_connection_type_errors(connection_types: list[dict[str, Any]]) -> list[str]:
    """Stricter than Airflow's runtime check, which accepts e.g. ``"type": "strin"`` in a conn-field.

    * ``provider.yaml.schema.json#/properties/connection-types`` (the dev-time schema of official providers);
      the fragment is validated inside its own document so any ``$ref`` into ``definitions`` resolves;
    * every conn-field ``schema`` is itself a valid draft-07 schema (catches ``["strin", "null"]``, which the
      fragment lets through) and its ``default`` satisfies it;
    * ``ui-field-behaviour`` names only standard fields or declared conn-fields, and relabels no hidden field.
    """
    document = _airflow_schema("provider.yaml.schema.json")
    # Draft 7 ignores keywords beside "$ref", so this validates against the fragment with the whole
    # document (definitions included) as the resolution scope.
    validator = jsonschema.Draft7Validator({**document, "$ref": "#/properties/connection-types"})
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(connection_types)]
    for entry in connection_types:
        fields: dict[str, Any] = entry.get("conn-fields", {})
        for name, field in fields.items():
            schema = field.get("schema", {})
            try:
                jsonschema.Draft7Validator.check_schema(schema)
            except jsonschema.SchemaError as err:
                errors.append(f"conn-fields.{name}.schema: {err.message}")
                continue
            if "default" in schema:
                errors.extend(
                    f"conn-fields.{name}.default: {e.message}"
                    for e in jsonschema.Draft7Validator(schema).iter_errors(schema["default"])
                )
        behaviour: dict[str, Any] = entry.get("ui-field-behaviour", {})
        hidden = set(behaviour.get("hidden-fields", []))
        for section in ("relabeling", "placeholders"):
            for name in behaviour.get(section, {}):
                if name not in STANDARD_FIELDS and name not in fields:
                    errors.append(f"ui-field-behaviour.{section}: unknown field {name!r}")
                elif name in hidden and section == "relabeling":
                    errors.append(f"ui-field-behaviour.relabeling: {name!r} is hidden")
    return errors


def _class_paths(info: dict[str, Any]) -> Iterator[str]:
    for entry in info.get("connection-types", []):
        yield entry["hook-class-name"]
    for key in ("notifications", "extra-links", "task-decorators"):
        for item in info.get(key, []):
            yield item["class-name"] if isinstance(item, dict) else item


def _module_paths(info: dict[str, Any]) -> Iterator[str]:
    for key in ("hooks", "operators", "sensors", "triggers"):
        for entry in info.get(key, []):
            yield from entry.get("python-modules", [])


def _our_entry_point() -> importlib.metadata.EntryPoint:
    ours = [
        ep
        for ep in importlib.metadata.entry_points(group="apache_airflow_provider")
        if ep.dist is not None and ep.dist.name == DIST_NAME
    ]
    assert len(ours) == 1, ours
    return ours[0]


# ---------------------------------------------------------------------------------------------- schemas


def test_provider_info_passes_airflow_runtime_schema() -> None:
    assert _runtime_errors(get_provider_info()) == []


def test_connection_types_pass_the_strict_check() -> None:
    assert strict_connection_type_errors(get_provider_info()["connection-types"]) == []


def _mutate_sender_type(info: dict[str, Any]) -> None:
    info["connection-types"][0]["conn-fields"]["sender"]["schema"]["type"] = "strin"


def _mutate_sender_type_in_list(info: dict[str, Any]) -> None:
    info["connection-types"][0]["conn-fields"]["sender"]["schema"]["type"] = ["strin", "null"]


def _mutate_default(info: dict[str, Any]) -> None:
    info["connection-types"][0]["conn-fields"]["timeout"]["schema"]["default"] = "thirty"


def _mutate_missing_label(info: dict[str, Any]) -> None:
    del info["connection-types"][0]["conn-fields"]["sender"]["label"]


def _mutate_placeholder(info: dict[str, Any]) -> None:
    info["connection-types"][0]["ui-field-behaviour"]["placeholders"]["sendr"] = "QIKBRY"


def _mutate_hidden_field(info: dict[str, Any]) -> None:
    info["connection-types"][0]["ui-field-behaviour"]["hidden-fields"].append("passwd")


# These two rules come from provider.yaml.schema.json itself, which describes conn-fields and
# ui-field-behaviour only from Airflow 3.2 (2.11 never reads conn-fields: it shows the legacy widgets,
# tested in tests/test_connection_form_af2.py). The 3.3 run checks them.
_NEEDS_CONN_FIELDS_SCHEMA = requires_airflow(
    (3, 2), "Airflow's provider.yaml.schema.json describes conn-fields and ui-field-behaviour from 3.2"
)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_mutate_sender_type, "is not valid under any of the given schemas"),
        (_mutate_sender_type_in_list, "conn-fields.sender.schema"),
        (_mutate_default, "conn-fields.timeout.default"),
        pytest.param(
            _mutate_missing_label, "'label' is a required property", marks=_NEEDS_CONN_FIELDS_SCHEMA
        ),
        (_mutate_placeholder, "unknown field 'sendr'"),
        pytest.param(_mutate_hidden_field, "'passwd' is not one of", marks=_NEEDS_CONN_FIELDS_SCHEMA),
    ],
    ids=["typo-type", "typo-in-type-list", "bad-default", "no-label", "unknown-placeholder", "bad-hidden"],
)
def test_strict_check_rejects_broken_connection_metadata(mutate: Any, expected: str) -> None:
    info = copy.deepcopy(get_provider_info())
    mutate(info)
    errors = strict_connection_type_errors(info["connection-types"])
    assert any(expected in error for error in errors), errors


def test_runtime_schema_is_not_enough_on_its_own() -> None:
    # Why the strict check exists: Airflow's runtime schema lets a typo'd conn-field type through.
    info = copy.deepcopy(get_provider_info())
    _mutate_sender_type(info)
    assert _runtime_errors(info) == []
    assert strict_connection_type_errors(info["connection-types"]) != []


# ---------------------------------------------------------------------------------------------- packaging


def test_entry_point_resolves_to_get_provider_info() -> None:
    entry_point = _our_entry_point()
    assert entry_point.value == "airflow_qikberry.get_provider_info:get_provider_info"
    assert entry_point.load()() == get_provider_info()


def test_package_name_is_the_distribution_name() -> None:
    # Airflow raises at discovery when these differ.
    assert get_provider_info()["package-name"] == importlib.metadata.metadata(DIST_NAME)["Name"] == DIST_NAME
    assert get_provider_info()["versions"][0] == importlib.metadata.version(DIST_NAME)


def test_every_listed_class_and_module_imports() -> None:
    info = get_provider_info()
    modules = list(_module_paths(info))
    classes = list(_class_paths(info))
    assert modules
    assert classes
    for module in modules:
        importlib.import_module(module)
    for path in classes:
        module_name, _, class_name = path.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module_name), class_name), type), path


def test_hook_attributes_match_the_connection_type() -> None:
    # ProvidersManager warns when the hook's conn_type differs from the declared connection-type.
    for entry in get_provider_info()["connection-types"]:
        module_name, _, class_name = entry["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module_name), class_name)
        assert hook.conn_type == entry["connection-type"]
        assert hook.hook_name == entry["hook-name"]
        assert hook.default_conn_name == f"{entry['connection-type']}_default"


def _airflow_cli(*args: str) -> Any:
    result = subprocess.run(
        [sys.executable, "-m", "airflow", *args, "--output", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_airflow_cli_lists_the_provider_and_its_connection_type() -> None:
    providers = {row["package_name"]: row for row in _airflow_cli("providers", "list")}
    assert DIST_NAME in providers
    assert providers[DIST_NAME]["version"] == importlib.metadata.version(DIST_NAME)

    hooks = {row["connection_type"]: row for row in _airflow_cli("providers", "hooks")}
    assert hooks["qikberry"]["class"] == "airflow_qikberry.hooks.qikberry.QikberryHook"
    assert hooks["qikberry"]["package_name"] == DIST_NAME


@pytest.mark.slow
def test_built_wheel_ships_py_typed_and_the_entry_point(tmp_path: Path) -> None:
    # An editable install proves nothing about the wheel, so build one (pip fetches the build backend).
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(tmp_path)]
    subprocess.run([*command, str(REPO_ROOT)], check=True, timeout=240)
    (wheel,) = tmp_path.glob("airflow_provider_qikberry-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points_text = archive.read(entry_points).decode()
    assert "airflow_qikberry/py.typed" in names
    assert "airflow_qikberry/get_provider_info.py" in names
    assert not any(name.startswith("tests/") for name in names)
    assert "[apache_airflow_provider]" in entry_points_text
    assert "provider_info = airflow_qikberry.get_provider_info:get_provider_info" in entry_points_text
