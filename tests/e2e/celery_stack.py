"""The Airflow stack with CeleryExecutor and several workers that share no disk with each other.

What a deployment on several machines shares is infrastructure: the metadata database, the Celery broker and
result backend (PostgreSQL and Redis there; SQLite files here, through kombu's SQLAlchemy transport and
Celery's database backend, so nothing beyond the project's dev extras is needed) and the object store.
Every worker here has its own AIRFLOW_HOME, HOME, temporary folder, task-log folder and copy of the DAG files,
and reports its own hostname. Where the machine allows unprivileged user namespaces (``unshare``), each worker
also runs in a mount namespace of its own in which the same path, ``<home>/worker-tmp``, is its TMPDIR but
holds that worker's own folder: as on separate machines, a file one worker wrote to its ``/tmp`` is not at
that path for another. Without them each worker's TMPDIR is a different path, private by convention only
(:attr:`CeleryStack.private_mounts` says which).

Tasks are routed to workers by a cluster policy (``airflow_local_settings.task_policy``) that sets
``task.queue`` by task id, so a test can send two tasks of an unchanged DAG to two different workers.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
import warnings
from pathlib import Path

from tests.e2e.stack import AIRFLOW, AirflowStack

_SUPPORT = {
    # The hostname each task instance records (task_instance.hostname): the worker's name, not the machine's.
    "stack_hostname.py": (
        "import os\n\n\ndef hostname() -> str:\n    return os.environ['STACK_WORKER_NAME']\n"
    ),
    # The queue of each routed task, read by the DAG processor when it parses the DAG (cluster policy).
    "airflow_local_settings.py": (
        "import json\nimport os\n\nROUTES = json.loads(os.environ.get('STACK_TASK_QUEUES', '{}'))\n\n\n"
        "def task_policy(task):\n    if task.task_id in ROUTES:\n        task.queue = ROUTES[task.task_id]\n"
    ),
}


@functools.cache
def user_namespaces_work() -> bool:
    """Whether this user may make a user and mount namespace and bind-mount in it (``unshare -rm``)."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0


class CeleryStack(AirflowStack):
    """:class:`AirflowStack` with CeleryExecutor and one ``airflow celery worker`` per entry of ``workers``.

    ``workers`` maps a worker's name to the queues it serves; ``routes`` maps task ids to the queue they go to
    (every other task goes to ``default``)::

        with CeleryStack(tmp_path / "home", workers={"a": "default,a", "b": "default,b"},
                         routes={"export_customers": "a", "campaign": "b"}) as stack:
            stack.add_dag(REPO_ROOT / "example_dags" / "qikberry_campaign_pipeline.py")
            ...
            stack.task_hosts(dag_id, run_id)  # {"export_customers": "a", "campaign": "b", ...}
    """

    def __init__(
        self,
        home: Path,
        *,
        workers: dict[str, str],
        routes: dict[str, str] | None = None,
        extra_env: dict[str, str] | None = None,
        private_mounts: bool | None = None,
    ) -> None:
        super().__init__(home, extra_env=extra_env)
        support = home / "support"
        support.mkdir(parents=True, exist_ok=True)
        for name, text in _SUPPORT.items():
            (support / name).write_text(text)
        self.private_mounts = user_namespaces_work() if private_mounts is None else private_mounts
        self.shared_tmp = home / "worker-tmp"  # every worker's TMPDIR when private_mounts
        self.shared_tmp.mkdir(exist_ok=True)
        self.workers = dict(workers)
        self.routes = dict(routes or {})
        pythonpath = os.pathsep.join(p for p in (str(support), self.env.get("PYTHONPATH", "")) if p)
        self.env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CELERY__BROKER_URL": f"sqla+sqlite:///{home / 'broker.db'}",
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+sqlite:///{home / 'results.db'}",
                # Sending a task to the broker waits this long at most; SQLite shared by three processes can
                # take longer than the default second to get its write lock.
                "AIRFLOW__CELERY__OPERATION_TIMEOUT": "30",
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "stack_hostname.hostname",
                "STACK_WORKER_NAME": "services",
                "STACK_TASK_QUEUES": json.dumps(self.routes),
                "PYTHONPATH": pythonpath,
            }
        )

    # -- each worker's own folders

    def worker_dir(self, name: str) -> Path:
        return self.home / "workers" / name

    def worker_tmp(self, name: str) -> Path:
        """The folder on disk that is ``name``'s TMPDIR (it sees it at ``shared_tmp`` with private mounts)."""
        return self.worker_dir(name) / "tmp"

    def worker_env(self, name: str) -> dict[str, str]:
        own = self.worker_dir(name)
        env = dict(self.env)
        env.update(
            {
                "AIRFLOW_HOME": str(own),
                "HOME": str(own / "home"),
                "TMPDIR": str(self.shared_tmp if self.private_mounts else self.worker_tmp(name)),
                "AIRFLOW__CORE__DAGS_FOLDER": str(own / "dags"),
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(own / "logs"),
                # Not the shared metadata database: Airflow 3 workers reach it only through the API server's
                # execution API. An empty database of its own makes any direct use fail loudly.
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{own / 'airflow.db'}",
                "STACK_WORKER_NAME": name,
            }
        )
        return env

    def homes(self) -> set[str]:
        return {str(self.home), *(str(self.worker_dir(name)) for name in self.workers)}

    def log_folders(self) -> list[Path]:
        return [self.home / "logs", *(self.worker_dir(name) / "logs" for name in self.workers)]

    def add_dag(self, path: Path) -> None:
        super().add_dag(path)
        for name in self.workers:
            shutil.copy(path, self.worker_dir(name) / "dags")

    # -- lifecycle

    def __enter__(self) -> CeleryStack:
        return self.start()

    def start(self) -> CeleryStack:
        self._declare_queues()
        super().start()
        for name, queues in self.workers.items():
            self.start_worker(name, queues)
        return self

    def _declare_queues(self) -> None:
        """Create the broker's tables and every queue before any process uses them.

        kombu's SQLAlchemy transport creates both on first use, guarded by a lock of its process only: two
        workers starting together both insert queue ``default`` and one dies of the UNIQUE constraint.
        """
        from kombu import Connection, Exchange, Queue

        names = {"default", *self.routes.values()}
        names.update(q for queues in self.workers.values() for q in queues.split(","))
        # kombu's models use a loader strategy SQLAlchemy 2.1 deprecates: its warning, not this suite's.
        with warnings.catch_warnings(), Connection(self.env["AIRFLOW__CELERY__BROKER_URL"]) as broker:
            warnings.simplefilter("ignore", DeprecationWarning)
            for queue in sorted(names):
                Queue(queue, Exchange(queue, "direct"), routing_key=queue)(broker.default_channel).declare()

    def start_worker(self, name: str, queues: str) -> None:
        own = self.worker_dir(name)
        for sub in ("home", "tmp", "dags", "logs"):
            (own / sub).mkdir(parents=True, exist_ok=True)
        for dag_file in self.dags.glob("*.py"):
            shutil.copy(dag_file, own / "dags")
        worker = [
            AIRFLOW, "celery", "worker",
            "--queues", queues,
            "--concurrency", "1",
            "--celery-hostname", f"{name}@stack",
            # The log server listens on a fixed port (8793): two workers on one machine would clash. The
            # tests read each worker's log folder instead.
            "--skip-serve-logs",
            "--without-gossip", "--without-mingle",
        ]  # fmt: skip
        if self.private_mounts:
            # Root only inside a user namespace of its own (the files it writes are this user's): bind its own
            # folder over the path every worker has as TMPDIR, then run the worker.
            worker = [
                "unshare", "--user", "--map-root-user", "--mount", "--",
                "sh", "-c", 'mount --bind "$1" "$2" && shift 2 && exec "$@"',
                "sh", str(self.worker_tmp(name)), str(self.shared_tmp), *worker,
            ]  # fmt: skip
        self.spawn(f"worker-{name}", worker, self.worker_env(name))

    def kill_worker(self, name: str) -> None:
        """``kill -9`` every process of worker ``name``, as when its machine dies: the Celery worker, its pool
        and the task processes they started; nothing is told, the scheduler must notice the task stopped."""
        import psutil

        proc = self.procs.pop(f"worker-{name}")  # a killed worker is not a crashed service for the stack
        # Listed before any is killed: a task process has a process group of its own, and once its parent is
        # dead it is nobody's child.
        victims = [psutil.Process(proc.pid), *self.descendants(proc.pid)]
        victims += self.strays({str(self.worker_dir(name))})
        for victim in victims:
            with contextlib.suppress(psutil.NoSuchProcess):
                victim.kill()
        _, alive = psutil.wait_procs(victims, timeout=10)
        if alive:
            raise RuntimeError(f"worker {name}: processes {[p.pid for p in alive]} survived SIGKILL")
        proc.wait(timeout=10)

    # -- what ran where

    def tries(self, dag_id: str, run_id: str, task_id: str) -> list[tuple[int, str, str]]:
        """(try_number, hostname, state) of every try of a task, earlier tries from task_instance_history."""
        sql = (
            "SELECT try_number, hostname, state FROM {} WHERE dag_id = ? AND run_id = ? AND task_id = ? "
            "ORDER BY try_number"
        )
        earlier = self.query(sql.format("task_instance_history"), dag_id, run_id, task_id)
        latest = self.query(sql.format("task_instance"), dag_id, run_id, task_id)
        return [(int(n), str(host), str(state)) for n, host, state in [*earlier, *latest]]

    def task_hosts(self, dag_id: str, run_id: str) -> dict[str, tuple[str, str]]:
        """task_id -> (hostname, queue) of its latest try, as the metadata database recorded them."""
        rows = self.query(
            "SELECT task_id, hostname, queue FROM task_instance WHERE dag_id = ? AND run_id = ?",
            dag_id,
            run_id,
        )
        return {str(task): (str(host), str(queue)) for task, host, queue in rows}
