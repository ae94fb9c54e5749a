"""A real Airflow deployment in miniature: api-server, scheduler, dag-processor and triggerer as processes.

``dag.test()`` runs everything in one process and runs triggers inline, so it cannot show that a deferred
sensor really left its worker slot. :class:`AirflowStack` starts the four Airflow services as separate
processes (LocalExecutor on SQLite, which Airflow 3 allows) in a throwaway ``AIRFLOW_HOME``, triggers a DAG
through the CLI and reads task-instance states, their history and the services' logs.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AirflowStack:
    """Airflow services as separate processes; a context manager that stops them all on exit."""

    SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")

    def __init__(self, home: Path, *, extra_env: dict[str, str] | None = None) -> None:
        self.home = home
        self.dags = home / "dags"
        self.dags.mkdir(parents=True, exist_ok=True)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                # New DAGs start unpaused: trigger() needs no `airflow dags unpause` (a CLI process, ~4 s).
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
                "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
                "AIRFLOW__API_AUTH__JWT_SECRET": base64.urlsafe_b64encode(os.urandom(32)).decode(),
                "AIRFLOW__API__PORT": str(port),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
                "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost",
            }
        )
        env.update(extra_env or {})
        self.env = env
        self.port = port
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        # task_id -> every state the wait_for_* methods saw it in (polled), in order of first sight.
        self.seen: dict[str, list[str]] = {}

    # -- lifecycle

    def cli(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return done.stdout

    def start(self) -> AirflowStack:
        self.migrate()
        for service in self.SERVICES:
            args = [service, "--port", str(self.port)] if service == "api-server" else [service]
            self.spawn(service, [AIRFLOW, *args], self.env)
        return self

    def migrate(self) -> None:
        """The metadata database: a copy of one this test process migrated already, or ``airflow db migrate``.

        A migrated database holds no stack's settings (tables, the default pool, the log templates), and a
        copy takes milliseconds where the migration takes seconds (3 s of CPU) for every stack.
        """
        # The test session's own Airflow home (tests/conftest.py gives each pytest process one).
        template = Path(os.environ.get("AIRFLOW_HOME", self.home)) / "stack-migrated.db"
        target = self.home / "airflow.db"
        if template.exists():
            shutil.copy(template, target)
            return
        self.cli("db", "migrate", timeout=300)
        shutil.copy(target, template)

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start one service process, its output in ``<home>/<name>.log``; stop() ends it."""
        log = (self.home / f"{name}.log").open("wb")
        # Own session per service, so stop() can kill the worker processes each one forks.
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def homes(self) -> set[str]:
        """Every AIRFLOW_HOME this stack's processes run with (stop() kills strays by it)."""
        return {str(self.home)}

    def log_folders(self) -> list[Path]:
        """Where task logs are written: the one base log folder here; each worker's own in a CeleryStack."""
        return [self.home / "logs"]

    def add_dag(self, path: Path) -> None:
        """Put a DAG file where the stack's processes read DAGs from."""
        shutil.copy(path, self.dags)

    def stop(self) -> None:
        import psutil

        # Every process the services started, listed before any ends (an orphan is no longer anyone's child).
        # Some leave their parent's process group (a task process makes its own), so killpg misses them.
        descendants = self.descendants(*(proc.pid for proc in self.procs.values()))
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        # Some children (the api-server's uvicorn workers) leave their process group and outlive their parent.
        for stray in [*descendants, *self.strays()]:
            with contextlib.suppress(psutil.NoSuchProcess):
                stray.kill()

    @staticmethod
    def descendants(*pids: int) -> list[Any]:
        """The processes ``pids`` started, their children and so on (psutil.Process objects)."""
        import psutil

        found = []
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                found += psutil.Process(pid).children(recursive=True)
        return found

    def strays(self, homes: set[str] | None = None) -> list[Any]:
        """Live processes whose AIRFLOW_HOME is one of ``homes`` (default: every home of this stack).

        Found by environment, whoever their parent is now; a process that rewrote its environment block
        (setproctitle does) is not found: :meth:`descendants`, taken while its parent lives, finds those.
        """
        import psutil

        homes = self.homes() if homes is None else homes
        found = []
        for process in psutil.process_iter():
            try:
                if process.environ().get("AIRFLOW_HOME") in homes:
                    found.append(process)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found

    def __enter__(self) -> AirflowStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def service_log(self, service: str) -> str:
        return (self.home / f"{service}.log").read_text(errors="replace")

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"airflow {name} exited with {proc.returncode}:\n{self.service_log(name)[-3000:]}"
                )

    # -- DAG runs

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if self.query("SELECT 1 FROM serialized_dag WHERE dag_id = ?", dag_id):
                return
            time.sleep(1)
        raise TimeoutError(f"the dag-processor did not parse {dag_id} within {timeout:g}s")

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        run_id = f"stack__{int(time.time() * 1000)}"
        args = ["dags", "trigger", dag_id, "--run-id", run_id]
        if conf:
            args += ["--conf", json.dumps(conf)]
        self.cli(*args)
        return run_id

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            self._note_states(dag_id, run_id)
            rows = self.query("SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", dag_id, run_id)
            if rows and rows[0][0] in ("success", "failed"):
                return str(rows[0][0])
            time.sleep(1)
        raise TimeoutError(f"{dag_id} run {run_id} did not finish within {timeout:g}s")

    def wait_for_task_state(
        self, dag_id: str, run_id: str, task_id: str, state: str, timeout: float = 300
    ) -> None:
        """Until ``task_id`` of the run is in ``state`` (a TimeoutError, naming what it was in, if never)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if self._note_states(dag_id, run_id).get(task_id) == state:
                return
            time.sleep(0.5)
        raise TimeoutError(
            f"{dag_id}.{task_id} was never {state} within {timeout:g}s: {self.seen.get(task_id, [])}"
        )

    def _note_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        states = self.task_states(dag_id, run_id)
        for task, state in states.items():
            if state not in self.seen.setdefault(task, []):
                self.seen[task].append(state)
        return states

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        rows = self.query(
            "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?", dag_id, run_id
        )
        return {str(task): str(state) for task, state in rows}

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        import sqlite3

        with sqlite3.connect(self.home / "airflow.db") as db:
            return list(db.execute(sql, params))

    def task_log(self, dag_id: str, run_id: str, task_id: str) -> str:
        """Every try's log of the task, in try order, wherever the process that ran each try wrote it."""
        found = [
            path
            for logs in self.log_folders()
            for path in (logs / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}").glob(
                "attempt=*.log"
            )
        ]
        found.sort(key=lambda p: int(p.stem.split("=")[1].split(".")[0]))
        return "\n".join(p.read_text(errors="replace") for p in found)
