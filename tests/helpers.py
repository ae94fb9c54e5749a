"""Small helpers shared by the test suite (importable as ``tests.helpers``).

Nothing here imports Airflow, so test modules can use it before the harness has configured Airflow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

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
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            query = XComModel.get_many(
                run_id=self.run_id, dag_ids=self.dag_id, task_ids=task_id, key=key, map_indexes=map_index
            )
            row = session.scalars(query).first()
            return None if row is None else XComModel.deserialize_value(row)


class Sleeps(list[float]):
    """Stands in for ``hook._sleep``: records every wait (retries, reconcile lookups) instead of sleeping.

    Each recorded wait also moves :meth:`clock` (give it to ``hook.policy.clock`` so ``retry_deadline`` is
    spent by simulated waits) and, when an emulator is given, the emulator's clock, so messages accepted
    with ``visibility_delay_seconds`` become visible while the hook "waits".

    Example::

        sleeps = Sleeps(emulator)
        hook._sleep = sleeps
        hook.policy.clock = sleeps.clock
    """

    def __init__(self, emulator: Any = None) -> None:
        super().__init__()
        self.emulator = emulator
        self.now = 0.0

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        self.now += seconds
        if self.emulator is not None and seconds > 0:
            self.emulator.advance_clock(seconds)

    def clock(self) -> float:
        return self.now


def api_counts(emulator: Any) -> dict[str, int]:
    """Requests the emulator answered (or dropped) per ``"METHOD path"``, control API excluded."""
    counts = emulator.request_log()["counts"]
    return {k: int(v) for k, v in counts.items() if not k.split()[1].startswith("_")}


def count(emulator: Any, key: str) -> int:
    """How many ``key`` requests (e.g. ``"POST sms/send"``) reached the emulator."""
    return api_counts(emulator).get(key, 0)


def all_log_text(caplog: Any, capfd: Any) -> str:
    """Everything logged during a test so far: Airflow 3 routes hook loggers through structlog to the
    console (captured by ``capfd``), other libraries through ``logging`` (``caplog``)."""
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
