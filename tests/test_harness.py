"""The harness itself: throwaway Airflow home, connection fixtures, ``run_dag`` and the import-cost parser."""

from __future__ import annotations

import ast
import functools
import importlib.util
import itertools
import json
import os
import sys
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import AIRFLOW_HOME, DAGS_FOLDER
from tests.helpers import (
    DEFAULT_EXTRA,
    DROP,
    PROVIDER_DIR,
    TEST_TOKEN,
    conn_env_var,
    dag_bag,
    qikberry_conn_json,
    recording_warnings,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def _load_script(relative_path: str) -> ModuleType:
    # bench/ and scripts/ hold scripts, not packages: load the file that make runs. Registered in sys.modules
    # first because dataclasses look their module up while the class body executes.
    path = REPO_ROOT / relative_path
    spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _load_bench_module() -> ModuleType:
    return _load_script("bench/import_cost.py")


# ---------------------------------------------------------------------------------------------- environment


def test_airflow_uses_the_throwaway_home() -> None:
    from airflow.configuration import conf

    assert Path(os.environ["AIRFLOW_HOME"]) == AIRFLOW_HOME
    assert AIRFLOW_HOME.is_dir()
    assert Path.home() / "airflow" != AIRFLOW_HOME
    assert Path(conf.get("core", "dags_folder")) == DAGS_FOLDER
    assert conf.getboolean("core", "load_examples") is False
    assert conf.get("database", "sql_alchemy_conn") == f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}"


def test_conn_json_overrides_and_drops_extras() -> None:
    conn = json.loads(qikberry_conn_json("http://h/api/v2/", sender="OTHER", service=DROP, timeout=None))
    assert conn["conn_type"] == "qikberry"
    assert conn["password"] == TEST_TOKEN
    assert conn["extra"] == {"sender": "OTHER", "default_region": "IN", "timeout": None}
    assert "password" not in json.loads(qikberry_conn_json("http://h/api/v2/", None))


# ------------------------------------------------------------------------------------------------- warnings


def _warn_from(module: str, filename: str, category: type[Warning]) -> None:
    """``warnings.warn("probe", category)`` from a frame of module ``module`` in file ``filename``."""
    code = compile(f"warnings.warn('probe', {category.__name__})", filename, "exec")
    exec(code, {"__name__": module, "warnings": warnings, category.__name__: category})


def test_a_warning_raised_in_the_provider_fails_the_test() -> None:
    # Importing Airflow adds `default` filters for the module regex "airflow", which also matches
    # airflow_qikberry: first imported inside a test, they would sit above the suite's filters there. A no-op
    # here, as conftest imported it first. Break: remove that import from conftest and run this test alone
    # -> no error is raised, fails.
    import airflow.configuration  # noqa: F401

    for category in (DeprecationWarning, UserWarning, RuntimeWarning):
        with pytest.raises(category, match="probe"):
            _warn_from("airflow_qikberry.campaign.engine", PROVIDER_DIR + "campaign/engine.py", category)


def test_only_airflows_own_deprecations_are_filtered() -> None:
    # Break: restore "ignore::DeprecationWarning:airflow.*" (it matched airflow_qikberry too) -> fails.
    with warnings.catch_warnings(record=True) as shown:  # the suite's filters; records what they show
        _warn_from("airflow", "/site-packages/airflow/__init__.py", DeprecationWarning)
        _warn_from("airflow.models.dag", "/site-packages/airflow/models/dag.py", DeprecationWarning)
        assert shown == []
        _warn_from("airflowish.models", "/site-packages/airflowish/models.py", DeprecationWarning)
        assert [str(w.message) for w in shown] == ["probe"]  # a module that only starts with "airflow"


def test_recording_warnings_keeps_each_warnings_stack_and_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    def library_call() -> None:
        # stacklevel=1: attributed to this file, though called from a provider file
        warnings.warn("library probe", UserWarning, stacklevel=1)

    via_provider = compile("library_call()", PROVIDER_DIR + "probe.py", "exec")
    with recording_warnings() as caught:
        exec(via_provider, {"__name__": "airflow_qikberry.probe", "library_call": library_call})
        warnings.warn("elsewhere probe", UserWarning, stacklevel=1)
    first, second = caught
    assert (first.message, first.filename, first.category) == ("library probe", __file__, "UserWarning")
    assert first.passes_through(PROVIDER_DIR)
    assert second.message == "elsewhere probe"
    assert not second.passes_through(PROVIDER_DIR)
    assert "library probe" in caplog.text
    assert "elsewhere probe" in caplog.text


def test_qikberry_conn_is_read_by_airflow(qikberry_conn: str, emulator: Any) -> None:
    from airflow.providers.common.compat.sdk import BaseHook

    conn = BaseHook.get_connection(qikberry_conn)
    assert qikberry_conn == "qikberry_default"
    assert conn.conn_type == "qikberry"
    assert conn.host == emulator.base_url
    assert conn.password == TEST_TOKEN
    assert conn.extra_dejson == DEFAULT_EXTRA


def test_make_qikberry_conn_other_id_and_extras(make_qikberry_conn: Callable[..., str]) -> None:
    from airflow.providers.common.compat.sdk import BaseHook

    conn_id = make_qikberry_conn(
        "qikberry_alt", host="http://example.invalid/api/v2/", sender=DROP, auth_in="query"
    )
    assert conn_id == "qikberry_alt"
    assert conn_env_var(conn_id) in os.environ
    conn = BaseHook.get_connection(conn_id)
    assert conn.host == "http://example.invalid/api/v2/"
    assert conn.extra_dejson == {"service": "T", "default_region": "IN", "auth_in": "query"}


def test_emulator_fixture_serves_real_http(emulator: Any) -> None:
    import requests

    assert emulator.base_url.startswith("http://127.0.0.1:")
    assert emulator.base_url.endswith("/api/v2/")
    ok = requests.get(
        emulator.base_url + "auth/me",
        headers={"Authorization": f"Bearer {TEST_TOKEN}", "Accept": "application/json"},
        timeout=10,
    )
    assert ok.status_code == 200
    denied = requests.get(
        emulator.base_url + "auth/me",
        headers={"Authorization": "Bearer not-the-token", "Accept": "application/json"},
        timeout=10,
    )
    assert denied.status_code == 401


# ---------------------------------------------------------------------------------------------- run_dag

CONNECTION_DAG = """
    import pendulum
    from airflow.providers.common.compat.sdk import dag, get_current_context, task


    @dag(dag_id="harness_conn", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
    def harness_conn():
        @task
        def whoami():
            import requests
            from airflow.providers.common.compat.sdk import BaseHook

            conn = BaseHook.get_connection("qikberry_default")
            response = requests.get(
                conn.host + "auth/me",
                headers={"Authorization": f"Bearer {conn.password}", "Accept": "application/json"},
                timeout=10,
            )
            response.raise_for_status()
            tag = (get_current_context()["dag_run"].conf or {}).get("tag")
            return {"http": response.status_code, "sender": conn.extra_dejson["sender"], "tag": tag}

        whoami()


    harness_conn()
"""

FAILING_DAG = """
    import pendulum
    from airflow.providers.common.compat.sdk import dag, task


    @dag(dag_id="harness_fail", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
    def harness_fail():
        @task
        def boom():
            raise ValueError("this task fails on purpose")

        @task
        def after(value):
            return value

        @task
        def independent():
            return 42

        after(boom())
        independent()


    harness_fail()
"""


@pytest.mark.slow
def test_run_dag_task_reaches_emulator_through_the_connection(
    run_dag: Callable[..., Any], qikberry_conn: str, emulator: Any
) -> None:
    result = run_dag(CONNECTION_DAG, "harness_conn", conf={"tag": "from-conf"})

    assert result == {"whoami": "success"}
    assert result.state == "success"
    assert result.xcom("whoami") == {"http": 200, "sender": "QIKBRY", "tag": "from-conf"}
    paths = [entry["path"] for entry in emulator.request_log()["requests"]]
    assert paths == ["auth/me"]
    assert not list(DAGS_FOLDER.glob("*.py")), "run_dag must remove the DAG file after the run"


@pytest.mark.slow
def test_run_dag_reports_a_failing_task(run_dag: Callable[..., Any]) -> None:
    result = run_dag(FAILING_DAG, "harness_fail")

    assert result == {"boom": "failed", "after": "upstream_failed", "independent": "success"}
    assert result.state == "failed"
    assert result.xcom("independent") == 42


@pytest.mark.slow
def test_run_dag_rejects_a_broken_dag_file(run_dag: Callable[..., Any]) -> None:
    with pytest.raises(AssertionError, match="failed to import"):
        run_dag("import airflow\nraise RuntimeError('broken dag file')\n", "harness_broken")
    with pytest.raises(AssertionError, match="not 'harness_missing'"):
        run_dag("import airflow  # no dag here\n", "harness_missing")


def test_example_dags_parse_without_connections_or_errors() -> None:
    # No AIRFLOW_CONN_* exists in this test, so a DAG file that looked a connection up while being parsed
    # (instead of inside a task) would show up here as an import error.
    assert not any(name.startswith("AIRFLOW_CONN_") for name in os.environ)
    bag = dag_bag(REPO_ROOT / "example_dags")
    assert bag.import_errors == {}
    assert "qikberry_campaign_pipeline" in bag.dags


# ---------------------------------------------------------------------------------------------- bench parser

IMPORTTIME_SAMPLE = """\
import time: self [us] | cumulative | imported package
import time:       182 |        182 |   _io
import time:       900 |       1200 |     airflow_qikberry.exceptions
import time:        40 |    1834065 | airflow.sdk
import time:       150 |        150 | airflow_qikberry
import time:       120 |        120 |   airflow_qikberry.exceptions
import time:       300 |        300 |     json.decoder
import time:      1000 |       1420 |   airflow_qikberry.protocol
import time:        80 |       1500 | airflow_qikberry.hooks
import time:        20 |         20 |   typing_extensions
import time:      2000 |       2020 | airflow_qikberry.hooks.qikberry
import time:        71 |         71 | gc
"""


def test_parse_importtime_reads_depth_and_figures() -> None:
    bench = _load_bench_module()
    lines = bench.parse_importtime(IMPORTTIME_SAMPLE + "Traceback: not an importtime line\n")

    assert len(lines) == 11  # header and the stray line are skipped
    assert lines[0] == bench.ImportLine("_io", 182, 182, 1)
    assert lines[1].depth == 2
    assert lines[2] == bench.ImportLine("airflow.sdk", 40, 1834065, 0)


def test_own_import_cost_sums_the_module_and_its_new_parents_only() -> None:
    bench = _load_bench_module()

    # airflow_qikberry (150) + airflow_qikberry.hooks (1500) + the module (2020); nested lines are already
    # inside those cumulative figures, gc is unrelated, and lines before airflow.sdk are the baseline.
    assert bench.own_import_us(IMPORTTIME_SAMPLE, "airflow_qikberry.hooks.qikberry") == 150 + 1500 + 2020
    assert bench.own_import_us(IMPORTTIME_SAMPLE, "airflow_qikberry") == 150
    # Imported only as a nested dependency: no top-level line of its own after the baseline.
    assert bench.own_import_us(IMPORTTIME_SAMPLE, "airflow_qikberry.protocol") is None
    assert bench.own_import_us("import time:  1 |  1 | other\n", "airflow_qikberry") is None
    assert bench.own_import_us(IMPORTTIME_SAMPLE, "_io", after=None) is None  # nested, not top-level


def test_render_prints_ratio_against_target() -> None:
    bench = _load_bench_module()
    table = bench.render(
        [bench.Measurement("a.mod", 7.5, "ok"), bench.Measurement("b.mod", None, "ModuleNotFoundError: b")],
        target_ms=15.0,
    )
    assert "0.50" in table.splitlines()[1]
    assert "ModuleNotFoundError: b" in table.splitlines()[2]


# ---------------------------------------------------------------------------------------------- make demo


def test_demo_report_counts_statuses_and_credits() -> None:
    demo = _load_script("scripts/demo.py")
    messages = [
        {"status": "DELIVRD", "charges": 1},
        {"status": "DELIVRD", "charges": 2},
        {"status": "UNDELIV", "charges": 1},
    ]
    report = demo.render_report(messages, {"campaign": "c1", "rejected_total": 1, "duplicates_removed": 2})
    lines = [line.split() for line in report.splitlines()]
    assert ["recipients", "in", "the", "table", "6"] in lines
    assert ["delivered", "2"] in lines
    assert ["failed:", "UNDELIV", "1"] in lines
    assert ["credits", "spent", "4"] in lines


def test_demo_table_masks_numbers_and_redactor_hides_the_token() -> None:
    demo = _load_script("scripts/demo.py")
    assert demo.Redactor("s3cret")("token=s3cret&x=s3cret") == "token=***&x=***"
    table = demo.render_messages(
        [{"id": "g:1", "mobile": "919876543210", "status": "DELIVRD", "units": 1, "message": "hi"}]
    )
    assert table.splitlines()[2].split() == ["g:1", "9198XXXXX210", "DELIVRD", "1", "hi"]


@pytest.mark.slow
def test_demo_runs_end_to_end_without_showing_token_or_number(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    demo = _load_script("scripts/demo.py")
    token = "demo-test-token-7d1e0c9b"

    assert demo.main(token=token, demo_dir=tmp_path) == 0

    out, err = capfd.readouterr()
    assert "Demo finished" in out
    report = out.split("What the campaign did:", 1)[1]
    assert "accepted by the API      60" in report
    assert "failed: UNDELIV          3" in report
    assert "rejected before sending  1" in report
    assert token not in out + err
    assert "919876500000" not in out + err
    assert "+91 98765 00000" not in out + err


# ---------------------------------------------------------------------------------------------- xdist safety
# `make test` runs each suite in several pytest-xdist workers at once (docs/development.md, "Parallel tests"):
# a test that listens on a fixed port collides with the same test, or another one, in a second worker.

_LISTENERS = {"Emulator", "EmulatorConfig", "bind", "create_server", "HTTPServer", "ThreadingHTTPServer"}


def _fixed_port(node: ast.expr) -> bool:
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, str))
        and not isinstance(node.value, bool)
    ):
        return str(node.value).isdigit() and int(node.value) != 0
    return False


def fixed_ports(source: str) -> list[int]:
    """Line numbers where ``source`` listens on (or starts a server on) a port written as a literal, not 0."""
    found: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in _LISTENERS:
                if any(kw.arg == "port" and _fixed_port(kw.value) for kw in node.keywords):
                    found.add(node.lineno)
                first = node.args[0] if node.args else None
                if isinstance(first, ast.Tuple) and len(first.elts) == 2 and _fixed_port(first.elts[1]):
                    found.add(node.lineno)
        elif isinstance(node, (ast.List, ast.Tuple)):  # a command line: [..., "--port", "8055", ...]
            for flag, value in itertools.pairwise(node.elts):
                if isinstance(flag, ast.Constant) and flag.value == "--port" and _fixed_port(value):
                    found.add(node.lineno)
    return sorted(found)


def test_the_port_guard_finds_fixed_ports_and_passes_free_ones() -> None:
    fixed = """
        Emulator(EmulatorConfig(token="t", port=8055))
        sock.bind(("127.0.0.1", 8080))
        ThreadingHTTPServer(("127.0.0.1", 9000), Handler)
        subprocess.run([sys.executable, "-m", "airflow_qikberry.emulator", "--port", "8055"])
    """
    free = """
        Emulator(EmulatorConfig(token="t", port=0))
        sock.bind(("127.0.0.1", 0))
        ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        subprocess.run([sys.executable, "-m", "airflow_qikberry.emulator", "--port", str(free_port())])
        Connection(conn_id="x", host="alerts.example.com", port=8443)  # names a server, listens on none
    """
    assert fixed_ports(textwrap.dedent(fixed)) == [2, 3, 4, 5]
    assert fixed_ports(textwrap.dedent(free)) == []


def test_no_test_listens_on_a_fixed_port() -> None:
    offenders = {
        str(path.relative_to(REPO_ROOT)): lines
        for path in sorted((REPO_ROOT / "tests").rglob("*.py"))
        if (lines := fixed_ports(path.read_text(encoding="utf-8")))
    }
    assert not offenders, (
        f"listen on port 0 (or a free_port()) instead, so xdist workers never collide: {offenders}"
    )


def test_every_module_of_the_package_is_in_the_layout_of_docs_development() -> None:
    """docs/development.md lists every module and what it is for: a module without a line fails here."""
    root = Path(__file__).resolve().parents[1]
    text = (root / "docs" / "development.md").read_text(encoding="utf-8")
    tree = text[text.index("airflow_qikberry/   ") : text.index("example_dags/  ")]
    listed: set[str] = set()
    folder = ""
    for line in tree.splitlines()[1:]:
        name = line.split()[0] if line.strip() else ""
        indent = len(line) - len(line.lstrip(" "))
        if indent == 2:  # "  phone.py", "  delivery/dlr.py" or a folder heading "  campaign/"
            folder = name if name.endswith("/") else ""
            listed.add(name)
        elif indent == 4 and folder:  # "    engine.py" under "  campaign/"
            listed.add(folder + name)
    package = root / "airflow_qikberry"
    missing = [
        module.relative_to(package).as_posix()
        for module in sorted(package.rglob("*.py"))
        if module.relative_to(package).as_posix() not in listed
        and not (module.name == "__init__.py" and module.parent != package)
    ]
    assert not missing, f"modules without a line in docs/development.md's Layout: {missing}"
