"""Import cost of each public module, measured with ``python -X importtime`` (median of 5 runs).

DAG files import this provider at every parse, so each public module should add little on top of Airflow
itself. Each run is a fresh interpreter doing ``import airflow.sdk; import <module>``: Airflow (and everything
it pulls in) is loaded first, so only what the module adds is counted - the module's own line plus the lines
of parent packages that were not loaded yet, each taken at its cumulative figure.

``import airflow`` already imports ``airflow_qikberry`` and its ``get_provider_info`` (provider discovery)
through ``importlib``, which ``-X importtime`` does not report. So after the baseline every module of this
package is dropped from ``sys.modules`` and the module under test is imported afresh: its dependencies
outside the package stay loaded and uncounted, and its own cost is always visible.

Prints a table with the 15 ms target and the ratio measured/target. Always exits 0: a slow figure is
information, not a build failure.

Usage: ``python bench/import_cost.py [--runs N] [module ...]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

MODULES = (
    "airflow_qikberry",
    "airflow_qikberry.exceptions",
    "airflow_qikberry.protocol",
    "airflow_qikberry.send_options",
    "airflow_qikberry.payloads",
    "airflow_qikberry.sends",
    "airflow_qikberry.recipients",
    "airflow_qikberry.validation",
    "airflow_qikberry.phone",
    "airflow_qikberry.sms_text",
    "airflow_qikberry.models",
    "airflow_qikberry.connection",
    "airflow_qikberry.idempotency",
    "airflow_qikberry.transport",
    "airflow_qikberry.transport.retry",
    "airflow_qikberry.transport.sync",
    "airflow_qikberry.transport.aio",
    "airflow_qikberry.get_provider_info",
    "airflow_qikberry.hooks.qikberry",
    "airflow_qikberry.hooks.qikberry_async",
    "airflow_qikberry.notifications.qikberry",
    "airflow_qikberry.delivery",
    "airflow_qikberry.sensors.delivery",
    "airflow_qikberry.triggers.delivery",
    "airflow_qikberry.transport.coalesce",
    "airflow_qikberry.operators.sms",
    "airflow_qikberry.operators.balance",
    "airflow_qikberry.operators.campaign",
    "airflow_qikberry.emulator",
)
PACKAGE = "airflow_qikberry"
BASELINE = "airflow.sdk"
TARGET_MS = 15.0
RUNS = 5


@dataclass(frozen=True)
class ImportLine:
    """One line of ``-X importtime`` output."""

    name: str
    self_us: int
    cumulative_us: int
    depth: int  # 0 for an import made directly by the running code, +1 per level of nesting


@dataclass(frozen=True)
class Measurement:
    module: str
    median_ms: float | None  # None when the module could not be imported
    note: str  # "ok" or why there is no figure


def parse_importtime(stderr: str) -> list[ImportLine]:
    """Parse ``import time: <self> | <cumulative> | <indent><name>`` lines; everything else is ignored."""
    lines: list[ImportLine] = []
    for raw in stderr.splitlines():
        if not raw.startswith("import time:"):
            continue
        parts = raw[len("import time:") :].split("|", 2)
        if len(parts) != 3:
            continue
        self_part, cumulative_part, name_part = parts
        try:
            self_us, cumulative_us = int(self_part), int(cumulative_part)
        except ValueError:  # the header line: "self [us] | cumulative | imported package"
            continue
        # The name column starts after one separating space; each nesting level adds two more.
        stripped = name_part.lstrip(" ")
        depth = max(0, (len(name_part) - len(stripped) - 1) // 2)
        lines.append(ImportLine(stripped.rstrip(), self_us, cumulative_us, depth))
    return lines


def own_import_us(stderr: str, module: str, *, after: str | None = BASELINE) -> int | None:
    """Microseconds that ``import <module>`` added, or ``None`` if the output shows no import of it.

    Only top-level lines after the last top-level ``after`` line count (``after=None``: from the start). Of
    those, the module's own line and its parent packages' lines are summed: importing ``a.b.c`` imports
    ``a``, ``a.b`` and ``a.b.c`` one after another, each reported at depth 0 with its own cumulative time,
    while anything they import is nested inside those figures and must not be added again.
    """
    lines = parse_importtime(stderr)
    start = 0
    if after is not None:
        marks = [i for i, line in enumerate(lines) if line.depth == 0 and line.name == after]
        if not marks:
            return None
        start = marks[-1] + 1
    parts = module.split(".")
    wanted = {".".join(parts[: i + 1]) for i in range(len(parts))}
    relevant = [line for line in lines[start:] if line.depth == 0 and line.name in wanted]
    if not any(line.name == module for line in relevant):
        return None
    return sum(line.cumulative_us for line in relevant)


def _importtime_stderr(module: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    code = "\n".join(
        (
            f"import {BASELINE}, sys",
            f"for name in [m for m in sys.modules if m == {PACKAGE!r} or m.startswith({PACKAGE + '.'!r})]:",
            "    del sys.modules[name]",
            f"import {module}",
        )
    )
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=False, env=env
    )
    return proc.returncode, proc.stderr


def measure(module: str, runs: int = RUNS, env: dict[str, str] | None = None) -> Measurement:
    samples: list[int] = []
    for _ in range(runs):
        code, stderr = _importtime_stderr(module, env)
        value = own_import_us(stderr, module) if code == 0 else None
        if value is None:
            errors = [line for line in stderr.splitlines() if line and not line.startswith("import time:")]
            return Measurement(module, None, errors[-1] if errors else "no importtime line for the module")
        samples.append(value)
    return Measurement(module, statistics.median(samples) / 1000.0, "ok")


def render(results: list[Measurement], target_ms: float = TARGET_MS) -> str:
    width = max(len("module"), *(len(r.module) for r in results))
    rows = [f"{'module':<{width}}  {'median ms':>9}  {'target ms':>9}  {'ratio':>5}"]
    for r in results:
        if r.median_ms is None:
            rows.append(f"{r.module:<{width}}  {'-':>9}  {target_ms:>9.1f}  {'-':>5}  {r.note}")
        else:
            ratio = r.median_ms / target_ms
            rows.append(f"{r.module:<{width}}  {r.median_ms:>9.2f}  {target_ms:>9.1f}  {ratio:>5.2f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("modules", nargs="*", default=list(MODULES))
    args = parser.parse_args(argv)
    print(f"Import cost per module (median of {args.runs} runs, ratio = median / {TARGET_MS:g} ms target)")
    # Importing Airflow writes airflow.cfg into AIRFLOW_HOME: keep that out of the user's ~/airflow.
    # An installed wheel ships compiled bytecode; with PYTHONDONTWRITEBYTECODE set (as on CI) a source tree
    # never gets any, and every run would time the compiler instead of the import. Compile it explicitly.
    import compileall

    compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "airflow_qikberry"), quiet=1)
    with tempfile.TemporaryDirectory(prefix="qikberry-bench-") as home:
        env = {**os.environ, "AIRFLOW_HOME": home, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
        results = [measure(module, args.runs, env) for module in args.modules]
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
