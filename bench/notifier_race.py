"""Alerts fired together: copies of one QikberryNotifier alert the API accepts, and copies it delivers.

Several processes fire the same alert at the same instant, or two of them 1.5 s apart.

Each process holds a notifier whose connection is already read, and fires when the driver writes a line to
its stdin (all within a millisecond or so), so they race on the custom-id lookup and the send, not on
imports. "One machine": the processes share the notifier's lock directory (``lock_dir``), as the task
processes of one worker do. "N machines": each has its own, as processes on different machines do; nothing
is then shared but the API. The emulator shows an accepted message to status lookups after
``visibility_delay_seconds`` (0, then 3 s), and finalises identical content from the same sender to the same
number within its anti-loop window as DUPLICATE (the API's documented anti-loop, reference section 3.9):
"delivered" counts the copies that are not DUPLICATE. Before the claim (issue 16) a notifier behaved like
"N machines" everywhere.

Prints figures; never fails on them.

    python bench/notifier_race.py --processes 6 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from _emulator import free_port, start_emulator

TOKEN = "bench-token-alerts-4c2"
NUMBER = "919876543210"

CHILD = """
import sys
from airflow_qikberry.notifications.qikberry import QikberryNotifier

QikberryNotifier(to=sys.argv[1], message="warm-up", qikberry_conn_id="alerts").hook.settings
print("ready", flush=True)
for line in sys.stdin:
    text, lock_dir = line.rstrip("\\n").split("\\t")
    notifier = QikberryNotifier(to=sys.argv[1], message=text, qikberry_conn_id="alerts", lock_dir=lock_dir)
    notifier.hook.settings
    notifier({"run_id": "bench"})
    print("done", flush=True)
"""


def control(root: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{root}/_emulator/{path}",
        data=data,
        headers={"Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


class Children:
    """``count`` alerting processes, started once and fired round after round through their stdin."""

    def __init__(self, count: int, env: dict[str, str], logs: Path) -> None:
        self.logs = [logs / f"child-{i}.log" for i in range(count)]
        self.outputs = [log.open("w") for log in self.logs]
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-c", CHILD, NUMBER],
                env=env,
                stdin=subprocess.PIPE,
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for output in self.outputs
        ]
        self.done = [0] * count
        self._wait([0] * count, "ready")

    def _wait(self, _: list[int], word: str, *, which: list[int] | None = None) -> None:
        deadline = time.monotonic() + 300
        for i in which if which is not None else range(len(self.procs)):
            want = self.done[i] + 1 if word == "done" else 1
            while self.logs[i].read_text().split("\n").count(word) < want:
                if self.procs[i].poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"child {i} failed:\n{self.logs[i].read_text()[-3000:]}")
                time.sleep(0.02)
            if word == "done":
                self.done[i] += 1

    def fire(self, which: list[int], text: str, lock_dirs: list[str], gap: float) -> None:
        for i, lock_dir in zip(which, lock_dirs, strict=True):
            stdin = self.procs[i].stdin
            assert stdin is not None
            stdin.write(f"{text}\t{lock_dir}\n")
            stdin.flush()
            if gap:
                time.sleep(gap)
        self._wait([], "done", which=which)

    def close(self) -> None:
        for proc, output in zip(self.procs, self.outputs, strict=True):
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            output.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--processes", type=int, default=6, help="processes firing together (default 6)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per scenario (default 5)")
    args = parser.parse_args()
    print(__doc__.splitlines()[0] if __doc__ else "")
    port = free_port()
    emulator = start_emulator(port, TOKEN, "--credits", str(10**9))
    root = f"http://127.0.0.1:{port}"
    work = Path(tempfile.mkdtemp(prefix="qikberry-bench-alerts-"))
    conn = {
        "conn_type": "qikberry",
        "host": f"{root}/api/v2/",
        "password": TOKEN,
        "extra": {"sender": "QIKBRY", "service": "T", "default_region": "IN"},
    }
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(work / "home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_ALERTS": json.dumps(conn),
    }
    (work / "logs").mkdir()
    children = Children(args.processes, env, work / "logs")
    n = args.processes
    scenarios = [
        (f"{n} together, one machine", list(range(n)), "one", 0.0),
        (f"{n} together, {n} machines", list(range(n)), "many", 0.0),
        ("2, 1.5 s apart, one machine", [0, 1], "one", 1.5),
        ("2, 1.5 s apart, two machines", [0, 1], "many", 1.5),
    ]
    print(
        f"\n{'scenario':<32} {'visible after':>13} {'fired':>6} {'accepted (per round)':>22} "
        f"{'delivered (per round)':>22} {'rounds with 1 accepted':>23}"
    )
    try:
        for visibility in (0.0, 3.0):
            for title, which, machines, gap in scenarios:
                accepted: list[int] = []
                delivered: list[int] = []
                for round_number in range(args.rounds):
                    control(root, "reset", {})
                    control(root, "config", {"visibility_delay_seconds": visibility})
                    tag = f"{title} {visibility} {round_number}".replace(" ", "-")
                    text = f"[Airflow] bench alert {tag}"
                    base = work / "locks" / tag
                    lock_dirs = [str(base / (f"m{i}" if machines == "many" else "shared")) for i in which]
                    children.fire(which, text, lock_dirs, gap)
                    control(root, "dlr/flush", {})
                    copies = [m for m in control(root, "messages")["messages"] if m["message"] == text]
                    accepted.append(len(copies))
                    delivered.append(sum(1 for m in copies if m["status"] != "DUPLICATE"))
                exact = sum(1 for a in accepted if a == 1)
                print(
                    f"{title:<32} {visibility:>11.0f} s {len(which) * args.rounds:>6} "
                    f"{_spread(accepted):>22} {_spread(delivered):>22} {exact:>17} of {args.rounds}"
                )
    finally:
        children.close()
        emulator.terminate()
        emulator.wait(timeout=10)
    print(
        "\nOne machine: the claim (a lock per custom id in the process, a lock file in the shared directory) "
        "lets one process look up and send while the others wait, then skip: exactly one copy, whatever the "
        "visibility delay. Several machines: the lookup right before the send is all they share; copies the "
        "API accepts beyond the first are blocked by its anti-loop (DUPLICATE) where that holds."
    )
    return 0


def _spread(values: list[int]) -> str:
    return f"min {min(values)}, mean {sum(values) / len(values):.1f}, max {max(values)}"


if __name__ == "__main__":
    sys.exit(main())
