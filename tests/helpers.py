"""Small helpers shared by the test suite (importable as ``tests.helpers``).

Nothing here imports Airflow at import time, so test modules can use it before the harness has configured
Airflow (the installed version is read from package metadata).
"""

from __future__ import annotations

import gc
import importlib.metadata
import importlib.util
import json
import logging
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest

from airflow_qikberry.clock import Clock


def _installed_airflow_version() -> tuple[int, int]:
    # Package metadata, not ``airflow.__version__``: importing airflow here would read its configuration
    # before tests/conftest.py has pointed it at the throwaway home.
    for dist in ("apache-airflow-core", "apache-airflow"):  # 3.x splits the core out of the meta package
        try:
            major, minor = importlib.metadata.version(dist).split(".")[:2]
        except importlib.metadata.PackageNotFoundError:
            continue
        return int(major), int(minor)
    raise RuntimeError("Airflow is not installed")


#: (major, minor) of the Airflow the suite runs on: ``make test`` runs it on 3.3 and on 2.11.
AIRFLOW_VERSION: Final = _installed_airflow_version()
AIRFLOW_V_3_0_PLUS: Final = AIRFLOW_VERSION >= (3, 0)


def requires_airflow(minimum: tuple[int, int], why: str) -> pytest.MarkDecorator:
    """Skip a test (or a ``pytest.param``) on an Airflow older than ``minimum``, saying what is missing.

    Only for features that do not exist on the older Airflow; never to hide a failure. Example::

        @requires_airflow((3, 1), "Deadline Alerts are new in Airflow 3.1")
        def test_deadline_alert(...): ...
    """
    running = ".".join(map(str, AIRFLOW_VERSION))
    return pytest.mark.skipif(
        minimum > AIRFLOW_VERSION,
        reason=f"needs Airflow {minimum[0]}.{minimum[1]}+ (running {running}): {why}",
    )


def only_before_airflow(version: tuple[int, int], why: str) -> pytest.MarkDecorator:
    """Skip a test on Airflow ``version`` and newer, where the part it tests was removed (e.g. the Flask
    connection form of Airflow 2). Example::

        pytestmark = only_before_airflow((3, 0), "Airflow 3 has no Flask UI")
    """
    running = ".".join(map(str, AIRFLOW_VERSION))
    return pytest.mark.skipif(
        version <= AIRFLOW_VERSION,
        reason=f"only before Airflow {version[0]}.{version[1]} (running {running}): {why}",
    )


def dag_bag(folder: str | Path) -> Any:
    """A ``DagBag`` of the DAG files in ``folder`` (the class moved in Airflow 3)."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2.x
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    return DagBag(dag_folder=str(folder))


# The token the session emulator accepts. Tests that check for leaks search logs and errors for this string.
TEST_TOKEN: Final = "qb-test-token-5f2c9a1e7d3b"

DEFAULT_CONN_ID: Final = "qikberry_default"

# The extras of the default test connection (conn-fields of the `qikberry` connection type).
DEFAULT_EXTRA: Final[Mapping[str, Any]] = {"sender": "QIKBRY", "service": "T", "default_region": "IN"}


class _Drop:
    """Marker: remove an extra from the default connection instead of setting it (``None`` sets JSON null)."""

    def __repr__(self) -> str:
        return "DROP"


DROP: Final = _Drop()


def conn_env_var(conn_id: str) -> str:
    """Name of the environment variable Airflow reads connection ``conn_id`` from."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def qikberry_conn_json(
    host: str,
    password: str | None = TEST_TOKEN,
    *,
    conn_type: str = "qikberry",
    **extra_overrides: Any,
) -> str:
    """JSON form of a `qikberry` connection, as Airflow accepts it in an ``AIRFLOW_CONN_*`` variable.

    Extras start from :data:`DEFAULT_EXTRA`; each keyword overrides one, and :data:`DROP` removes one.
    ``password=None`` leaves the token out entirely.
    """
    extra = {**DEFAULT_EXTRA, **extra_overrides}
    conn: dict[str, Any] = {
        "conn_type": conn_type,
        "host": host,
        "extra": {key: value for key, value in extra.items() if value is not DROP},
    }
    if password is not None:
        conn["password"] = password
    return json.dumps(conn)


class DagRunResult(dict[str, str]):
    """What the ``run_dag`` fixture returns: ``{task_id: state}`` plus the run's identity and final state.

    Example::

        result = run_dag(SOURCE, "my_dag")
        assert result == {"send": "success", "poll": "success"}
        assert result.state == "success"
        ids = result.xcom("send")
    """

    def __init__(self, states: Mapping[str, str], *, dag_id: str, run_id: str, state: str) -> None:
        super().__init__(states)
        self.dag_id = dag_id
        self.run_id = run_id
        self.state = state

    def xcom(self, task_id: str, key: str = "return_value", *, map_index: int = -1) -> Any:
        """The value task ``task_id`` pushed under ``key`` in this run (``None`` when it pushed nothing)."""
        try:
            from airflow.models.xcom import XComModel
        except ImportError:  # Airflow 2.x: the ORM model is XCom itself, get_one deserializes
            from airflow.models.xcom import XCom

            return XCom.get_one(
                run_id=self.run_id, dag_id=self.dag_id, task_id=task_id, key=key, map_index=map_index
            )
        from airflow.utils.session import create_session

        with create_session() as session:
            query = XComModel.get_many(
                run_id=self.run_id, dag_ids=self.dag_id, task_ids=task_id, key=key, map_indexes=map_index
            )
            row = session.scalars(query).first()
            return None if row is None else XComModel.deserialize_value(row)


class Sleeps(list[float], Clock):
    """A clock for tests: records every wait (retries, reconcile lookups, budgets) instead of sleeping.

    Each recorded wait also moves :meth:`monotonic` (so ``retry_deadline`` is spent by simulated waits)
    and, when an emulator is given, the emulator's clock, so messages accepted with
    ``visibility_delay_seconds`` become visible while the hook "waits". Passed where the provider takes
    its :class:`~airflow_qikberry.clock.Clock` (the documented seam). Time passes for the emulator too:
    before the clock moves, the requests it is still handling finish (a send the client gave up on after
    its read timeout is then accepted before the lookups that follow, as it would be within a real wait;
    without this, a busy machine could run a whole simulated reconcile window before the emulator has
    processed the request it is about).

    Example::

        sleeps = Sleeps(emulator)
        hook = QikberryHook(qikberry_conn_id=conn_id, clock=sleeps)
    """

    def __init__(self, emulator: Any = None) -> None:
        super().__init__()
        self.emulator = emulator
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.append(seconds)
        self.now += seconds
        if self.emulator is not None and seconds > 0:
            self.emulator.wait_requests_done()
            self.emulator.advance_clock(seconds)

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


class NoWaits(Clock):
    """The real clock, except that waits return at once (a test whose point is not the waiting)."""

    def sleep(self, seconds: float) -> None:
        pass

    async def asleep(self, seconds: float) -> None:
        pass


def api_counts(emulator: Any) -> dict[str, int]:
    """Requests the emulator answered (or dropped) per ``"METHOD path"``, control API excluded."""
    counts = emulator.request_log()["counts"]
    return {k: int(v) for k, v in counts.items() if not k.split()[1].startswith("_")}


def count(emulator: Any, key: str) -> int:
    """How many ``key`` requests (e.g. ``"POST sms/send"``) reached the emulator."""
    return api_counts(emulator).get(key, 0)


def all_log_text(caplog: Any, capfd: Any) -> str:
    """Everything logged during a test so far: Airflow 3 routes hook loggers through structlog to the
    console (captured by ``capfd``), other libraries through ``logging`` (``caplog``); on Airflow 2.11 hook
    loggers are plain ``logging`` loggers (``caplog``), and ``dag.test()`` echoes task logs to the console."""
    out, err = capfd.readouterr()
    return "\n".join([caplog.text, *(r.getMessage() for r in caplog.records), out, err])


class SentRequests(list[Any]):
    """The ``requests.PreparedRequest`` of every answered request a session sent, as it went on the wire.

    Example::

        sent = SentRequests.on(hook.session)
        hook.get_balance()
        sent[0].headers["Accept"]
    """

    @classmethod
    def on(cls, session: Any) -> SentRequests:
        sent = cls()

        def record(response: Any, *args: Any, **kwargs: Any) -> None:
            sent.append(response.request)

        session.hooks["response"].append(record)
        return sent

    def json_bodies(self, path: str) -> list[Any]:
        """The JSON bodies of the requests whose URL path ends with ``path``."""
        from urllib.parse import urlsplit

        return [
            json.loads(r.body)
            for r in self
            if urlsplit(r.url).path.endswith("/" + path) and r.body and not hasattr(r.body, "read")
        ]


def _provider_dir() -> str:
    spec = importlib.util.find_spec("airflow_qikberry")  # where it is installed; importing it is not needed
    assert spec is not None
    assert spec.origin is not None
    return str(Path(spec.origin).resolve().parent) + "/"


#: The provider package's directory (ends with "/"): a warning raised in a file under it, or on a call stack
#: that passes through one, is the provider's.
PROVIDER_DIR: Final = _provider_dir()


@dataclass(frozen=True)
class RecordedWarning:
    """One warning as it was raised: where Python attributes it (``filename``, ``lineno``) and every frame of
    the call stack that raised it (``stack``, ``"file:line"``, outermost first)."""

    category: str
    message: str
    filename: str
    lineno: int
    stack: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.filename}:{self.lineno}: {self.category}: {self.message}"

    def passes_through(self, *paths: str) -> bool:
        """Whether the warning names a file under one of ``paths`` or was raised on a stack that does."""
        return any(place.startswith(paths) for place in (self.filename, *self.stack))


def warning_lines(log_text: str, *paths: str) -> list[str]:
    """The lines of a log that report a warning raised in a file under one of ``paths``, or an Airflow
    context-key deprecation (``AirflowContextDeprecationWarning``) whoever raised it. Reads plain lines
    (``/path/file.py:12: DeprecationWarning: ...``, Airflow 2.11) and JSON ones (``"category": ...,
    "filename": ...``, the ``py.warnings`` events of Airflow 3)."""
    return [
        line
        for line in log_text.splitlines()
        if "Warning" in line and ("AirflowContextDeprecationWarning" in line or any(p in line for p in paths))
    ]


@contextmanager
def recording_warnings() -> Iterator[list[RecordedWarning]]:
    """Record every warning raised in the block, each with the stack that raised it.

    Every warning is shown (filter ``always``: not the suite's filters, which turn the provider's into errors
    and hide Airflow's own) and logged on the ``py.warnings`` logger, as a task process routes warnings into
    its task log (Airflow 2.11 through its redirected stderr, 3.x through structlog). The stack is taken in
    ``warnings._showwarnmsg``, the one function every shown warning passes through, whoever replaced
    ``warnings.showwarning``. Example::

        with recording_warnings() as caught:
            result = run_dag(source, "my_dag")
        assert not [w for w in caught if w.passes_through(PROVIDER_DIR)]
    """
    # Garbage earlier tests left is collected first, under the suite's filters. A finalizer raises its
    # ResourceWarning wherever the collector happens to run: a socket another test leaked would otherwise be
    # "raised" in this block, on the stack of whatever ran then (the provider), and which test ran before
    # this one depends on how pytest-xdist shared the tests out.
    gc.collect()
    caught: list[RecordedWarning] = []
    show = warnings._showwarnmsg  # type: ignore[attr-defined]

    def record(message: Any) -> None:
        stack = tuple(f"{frame.filename}:{frame.lineno}" for frame in traceback.extract_stack()[:-1])
        caught.append(
            RecordedWarning(
                category=message.category.__name__,
                message=str(message.message),
                filename=str(message.filename),
                lineno=int(message.lineno or 0),
                stack=stack,
            )
        )
        show(message)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        logging.captureWarnings(True)
        warnings._showwarnmsg = record  # type: ignore[attr-defined]
        try:
            yield caught
        finally:
            warnings._showwarnmsg = show  # type: ignore[attr-defined]
            logging.captureWarnings(False)


def fake_task_identity(monkeypatch: pytest.MonkeyPatch, identity: Callable[[], Any]) -> None:
    """Make the provider see ``identity()`` as the running task's (dag, task, run, map index, try).

    ``task_identity`` is read in two places: through the package face (``idempotency.task_identity``, as the
    hook calls it) and inside :mod:`airflow_qikberry.idempotency.keys` (``derive_custom_id``'s default), so
    both are replaced.
    """
    from airflow_qikberry import idempotency
    from airflow_qikberry.idempotency import keys

    monkeypatch.setattr(idempotency, "task_identity", identity)
    monkeypatch.setattr(keys, "task_identity", identity)
