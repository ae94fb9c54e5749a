"""Test harness: a throwaway Airflow home, the Qikberry emulator over real HTTP, connections and DAG runs.

Airflow reads its configuration when it is first imported, so the environment is set at the top of this
module, before any test module (or fixture) can import ``airflow``.

Fixtures:

* ``emulator_server`` (session) - one emulator on 127.0.0.1, token :data:`tests.helpers.TEST_TOKEN`.
* ``emulator`` - the same server, reset to a clean state for the test.
* ``qikberry_conn`` - ``AIRFLOW_CONN_QIKBERRY_DEFAULT`` -> the emulator; returns ``"qikberry_default"``.
* ``make_qikberry_conn(conn_id="qikberry_default", *, host=None, password=TEST_TOKEN, **extra)`` - same for
  any conn id, host, token or extras (``DROP`` removes a default extra); returns the conn id.
* ``airflow_db`` (session) - ``airflow db migrate`` into the throwaway home, once, when first needed.
* ``run_dag(source, dag_id, *, conf=None)`` - runs a DAG file with ``dag.test()``; returns a
  :class:`tests.helpers.DagRunResult` (a ``{task_id: state}`` dict that can also read XComs).
"""

from __future__ import annotations

import atexit
import base64
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.helpers import (
    DEFAULT_CONN_ID,
    TEST_TOKEN,
    DagRunResult,
    conn_env_var,
    dag_bag,
    qikberry_conn_json,
)

if TYPE_CHECKING:
    from airflow_qikberry.emulator import Emulator


def _configure_airflow_home() -> Path:
    if "airflow" in sys.modules:
        # Too late: Airflow has read its configuration already and would use the developer's real home.
        raise pytest.UsageError("airflow was imported before tests/conftest.py could configure AIRFLOW_HOME")
    home = Path(tempfile.mkdtemp(prefix="qikberry-airflow-home-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    (home / "dags").mkdir()
    (home / "plugins").mkdir()
    # A developer's own AIRFLOW_CONN_* must never reach a test: it could point at a live account.
    for name in [name for name in os.environ if name.startswith("AIRFLOW_CONN_")]:
        del os.environ[name]
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            # Fixed per session so Airflow neither warns about a missing key nor writes one into airflow.cfg.
            "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "AIRFLOW__API_AUTH__JWT_SECRET": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
        }
    )
    # The emulator listens on loopback; a corporate HTTP(S)_PROXY must not swallow those requests.
    loopback = "127.0.0.1,localhost"
    for name in ("NO_PROXY", "no_proxy"):
        current = os.environ.get(name, "")
        os.environ[name] = f"{current},{loopback}" if current else loopback
    return home


AIRFLOW_HOME = _configure_airflow_home()
DAGS_FOLDER = AIRFLOW_HOME / "dags"

# Importing Airflow installs `default` warning filters for the module regex "airflow", which also matches
# "airflow_qikberry". pytest applies the suite's filters (pyproject.toml) at the start of each test, on top of
# the filters that exist then: imported inside a test, Airflow's filters would land on top of ours for that
# test and show a provider's warning instead of failing on it. Imported here, once, they land underneath.
import airflow.configuration  # noqa: E402, F401


def pytest_configure(config: pytest.Config) -> None:
    # Also declared in pyproject.toml; repeated so the marker exists under any other pytest config.
    config.addinivalue_line("markers", "slow: end-to-end tests that run real Airflow DAGs (CI runs them all)")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistScheduling(), "qikberry-xdist-scheduling")
    # Raised inside Airflow's in-process execution API on every dag.test(); nothing this project can act on.
    config.addinivalue_line("filterwarnings", "ignore:Using `httpx` with `starlette.testclient`")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """
    Start the longest tests first: the Airflow service stacks of tests/e2e, then the other ``slow`` tests.

    With pytest-xdist, a test that starts last sets the end of the run: a 100 s service stack handed out
    near the end of the queue kept one worker busy for its 100 s while the others had nothing left to do.
    xdist hands tests out in collection order (after the multi-test units of WHOLE_MODULE_FOLDERS), and the
    sort is stable, so every other test keeps its order.
    """
    del config

    def start_order(item: pytest.Item) -> int:
        if item.nodeid.startswith("tests/e2e/"):
            return 0
        return 1 if item.get_closest_marker("slow") else 2

    items.sort(key=start_order)


@pytest.fixture(autouse=True)
def _fresh_alert_claims(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The notifier remembers the alerts it sent, in the process and in lock files on the machine: each test
    starts with none, so one test's alert never silences another's (nor a later session's)."""
    import uuid

    from airflow_qikberry.notifications import _dedupe

    claims = tmp_path_factory.getbasetemp() / "alert-claims" / uuid.uuid4().hex  # created when first used
    monkeypatch.setattr(_dedupe, "default_lock_dir", lambda: claims)
    monkeypatch.setattr(_dedupe, "_sent_here", {})
    monkeypatch.setattr(_dedupe, "_locks", {})


@pytest.fixture(autouse=True)
def _fresh_dlt_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hook keeps the account's DLT senders and templates for a while in the process: each test starts
    without them, so one test's emulator seeds never answer for another's."""
    from airflow_qikberry import catalog

    monkeypatch.setattr(catalog, "_cache", {})


# Modules under these folders keep state across their tests (the reliability figures): one worker runs each
# such module whole, in file order. Every other test is its own unit of work.
WHOLE_MODULE_FOLDERS = ("tests/reliability/",)


class _XdistScheduling:
    """pytest-xdist's scheduler for this suite (``-n N``; ``make test`` passes it): tests one by one to
    whichever worker is free, except that a module under :data:`WHOLE_MODULE_FOLDERS` goes to one worker.

    xdist's own ``--dist loadgroup`` would do this with ``xdist_group`` marks, but it renames node ids through
    an attribute pytest 9.2 no longer reads, so its groups are silently ignored; grouping by path here needs
    nothing from pytest's internals. Units of several tests are sent first (xdist's ``loadscope`` order).
    """

    @pytest.hookimpl
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        if config.getoption("dist") not in ("load", "loadgroup"):
            return None  # the user asked for another distribution mode: theirs
        from xdist.scheduler import LoadScopeScheduling

        class Scheduling(LoadScopeScheduling):  # type: ignore[misc]
            def _split_scope(self, nodeid: str) -> str:
                module = nodeid.split("::", 1)[0]
                return module if module.startswith(WHOLE_MODULE_FOLDERS) else nodeid

        return Scheduling(config, log)


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[Emulator]:
    """One emulator for the whole session (real HTTP on 127.0.0.1, a free port). Prefer ``emulator``."""
    from airflow_qikberry.emulator import Emulator, EmulatorConfig

    server = Emulator(EmulatorConfig(token=TEST_TOKEN, host="127.0.0.1", port=0, seed=1234)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def emulator(emulator_server: Emulator) -> Iterator[Emulator]:
    """The session emulator with messages, request log, faults, webhooks, clock and config reset.

    After the test, fails it if the emulator recorded internal errors meanwhile (exceptions inside the
    emulator that a client only saw as a 500): a client must never "handle" an emulator bug. A test that
    provokes one on purpose clears them with ``emulator.clear_internal_errors()``.
    """
    emulator_server.reset()
    yield emulator_server
    errors = emulator_server.internal_errors()
    if errors:
        listed = "\n".join(f"  {e['method']} {e['path']}: {e['type']}: {e['message']}" for e in errors)
        pytest.fail(
            f"the Qikberry emulator had {len(errors)} internal error(s) during this test "
            f"(tracebacks: emulator.internal_errors() or GET /_emulator/errors):\n{listed}",
            pytrace=False,
        )


@pytest.fixture
def make_qikberry_conn(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Factory: ``make_qikberry_conn(conn_id="qikberry_default", *, host=None, password=TEST_TOKEN, **extra)``

    Exports ``AIRFLOW_CONN_<CONN_ID>`` for the duration of the test and returns the conn id. ``host``
    defaults to the emulator's base URL; extras start from ``tests.helpers.DEFAULT_EXTRA`` (``DROP`` removes
    one, ``None`` stores JSON null as the UI does for an empty field).
    """

    def make(
        conn_id: str = DEFAULT_CONN_ID,
        *,
        host: str | None = None,
        password: str | None = TEST_TOKEN,
        **extra_overrides: Any,
    ) -> str:
        value = qikberry_conn_json(host or emulator.base_url, password, **extra_overrides)
        monkeypatch.setenv(conn_env_var(conn_id), value)
        return conn_id

    return make


@pytest.fixture
def qikberry_conn(make_qikberry_conn: Callable[..., str]) -> str:
    """``qikberry_default`` -> the emulator with token TEST_TOKEN, sender QIKBRY, service T, region IN."""
    return make_qikberry_conn()


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Migrate the throwaway metadata database once per session; returns the Airflow home."""
    # A subprocess rather than airflow.utils.db.initdb(): the CLI is the supported path on every Airflow
    # version, and a failure surfaces as readable output instead of half-initialised ORM state in-process.
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"airflow db migrate failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return AIRFLOW_HOME


def _load_dag(path: Path, dag_id: str) -> Any:
    bag = dag_bag(path)
    if bag.import_errors:
        errors = "\n".join(bag.import_errors.values())
        raise AssertionError(f"DAG file {path.name} failed to import:\n{errors}")
    if dag_id not in bag.dags:
        raise AssertionError(f"{path.name} defines DAGs {sorted(bag.dags)}, not {dag_id!r}")
    return bag.dags[dag_id]


@pytest.fixture
def run_dag(airflow_db: Path) -> Callable[..., DagRunResult]:
    """``run_dag(source, dag_id, *, conf=None) -> DagRunResult`` (``{task_id: state}``).

    Writes ``source`` (dedented) to ``<dags folder>/<dag_id>.py`` - on Airflow 3 ``dag.test()`` only runs DAGs
    that live in the configured DAGs folder (2.11 runs the object it is given; the same steps serve both) -
    loads it, runs it in this process with ``dag.test(run_conf=conf)`` and
    removes the file again, so each run parses only its own file. Tasks run in this process and therefore
    see every ``AIRFLOW_CONN_*`` variable the test exported. Mapped task instances are keyed ``"task_id[i]"``.
    """

    def run(source: str, dag_id: str, *, conf: dict[str, Any] | None = None) -> DagRunResult:
        path = DAGS_FOLDER / f"{dag_id}.py"
        path.write_text(textwrap.dedent(source), encoding="utf-8")
        # Airflow 2.11's dag.test() adds a StreamHandler on sys.stdout to the "airflow.task" logger, once per
        # process: bound to this test's capture stream (capfd, capsys), it would outlive the test and fail
        # on every later task log line ("--- Logging error ---" and a traceback quoting test source).
        task_logger = logging.getLogger("airflow.task")
        handlers = list(task_logger.handlers)
        try:
            dag = _load_dag(path, dag_id)
            dag_run = dag.test(run_conf=conf)
            states: dict[str, str] = {}
            for ti in dag_run.get_task_instances():
                key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
                states[key] = str(getattr(ti.state, "value", ti.state))
            return DagRunResult(
                states,
                dag_id=dag_id,
                run_id=dag_run.run_id,
                state=str(getattr(dag_run.state, "value", dag_run.state)),
            )
        finally:
            path.unlink(missing_ok=True)
            for handler in set(task_logger.handlers) - set(handlers):
                task_logger.removeHandler(handler)

    return run


# ------------------------------------------------------------------------------------- reliability figures
# tests/reliability's ``figure`` fixture puts each figure on its test's report. Reports reach this process
# from pytest-xdist's workers too (a conftest below tests/ is not even loaded in xdist's main process), so
# the figures are gathered, printed and written here, once, by the process that prints the summary.
_FIGURES: dict[str, dict[str, Any]] = {}
_FIGURES_FILE = Path(__file__).resolve().parents[1] / ".reliability" / "figures.json"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, value in report.user_properties:
        if name == "reliability_figure" and report.when == "call":
            _FIGURES.update(value)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if not _FIGURES or hasattr(config, "workerinput"):  # an xdist worker: its main process reports
        return
    import json

    terminalreporter.section("reliability figures")
    for name, values in sorted(_FIGURES.items()):
        shown = ", ".join(f"{k}={v}" for k, v in values.items() if k != "test")
        terminalreporter.write_line(f"{name}: {shown}")
    _FIGURES_FILE.parent.mkdir(exist_ok=True)
    merged = json.loads(_FIGURES_FILE.read_text()) if _FIGURES_FILE.exists() else {}
    merged.update(_FIGURES)
    _FIGURES_FILE.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
