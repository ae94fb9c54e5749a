"""A 500,000-row campaign through the campaign engine vs a raw ``requests`` loop posting the same chunks.

Generates a CSV (mobile, name, amount, due) with a per-row text, starts the emulator in its own process
(bench/_emulator.py), then runs, each in a fresh interpreter so their memory figures do not mix:

* **raw**: ``csv.DictReader`` + ``str.format`` + ``requests.Session`` posting chunks of ``--chunk-size``
  nodes to ``sms/send/json``; no validation, no duplicate check, no resumability: the floor.
* **campaign**: ``airflow_qikberry.campaign.run_campaign`` (what the operator's ``execute`` runs) with a
  Jinja row template: both passes (validate, render, de-duplicate, spool; then send through
  ``QikberryHook.send_batch``), the balance guard and the rejected-report bookkeeping.

Each of ``--rounds`` rounds runs both, in alternating order (a burst of load on a shared machine lands on
either), and prints the raw loop, the campaign's two passes (pass 1: read, validate, render, de-duplicate,
spool; pass 2: send) and the ratios pass 2 / raw and campaign / raw, in wall time and in the client
process's CPU time (user + system of the worker; the emulator's is not in it). CPU time is far less
sensitive to other processes on the machine than wall time, and what the campaign does more than the raw
loop is CPU. Then the median of each ratio over the rounds with its lowest and highest, against the goals
(time <= 1.25x raw, RSS growth <= 100 MB). Never fails on a figure.

    python bench/campaign_500k.py [--rows 500000] [--chunk-size 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from _emulator import free_port, start_emulator

TOKEN = "bench-token-c5e1"
TEMPLATE = "Hi {{ row.name }}, your bill of Rs {{ row.amount }} is due on {{ row.due }}"
RAW_TEXT = "Hi {name}, your bill of Rs {amount} is due on {due}"
TIME_GOAL = 1.25
RSS_GOAL_MB = 100.0


def generate(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["mobile", "name", "amount", "due"])
        for i in range(rows):
            writer.writerow([f"9198{i:08d}", f"Customer {i}", f"{(i * 37) % 5000}.00", "2026-12-01"])


def control(url: str, path: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request, timeout=60).read()


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _result(start: float, cpu_start: float, rss_before: float, accepted: int) -> dict[str, Any]:
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    return {
        "seconds": seconds,
        "cpu": cpu,
        "rss_before": rss_before,
        "rss_peak": peak_rss_mb(),
        "accepted": accepted,
    }


def run_raw(csv_path: str, base_url: str, chunk_size: int) -> dict[str, Any]:
    import requests

    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"})
    before = rss_mb()
    start, cpu_start = time.perf_counter(), time.process_time()
    accepted = 0

    def post(nodes: list[dict[str, str]]) -> int:
        body = {"root": {"sender": "QIKBRY", "service": "T", "name": "raw"}, "nodes": nodes}
        response = session.post(base_url + "sms/send/json", json=body, timeout=(10, 300))
        response.raise_for_status()
        return len(response.json()["data"])

    with open(csv_path, newline="", encoding="utf-8") as handle:
        nodes: list[dict[str, str]] = []
        for i, row in enumerate(csv.DictReader(handle)):
            nodes.append({"to": row["mobile"], "message": RAW_TEXT.format(**row), "custom": f"raw-{i}"})
            if len(nodes) == chunk_size:
                accepted += post(nodes)
                nodes = []
        if nodes:
            accepted += post(nodes)
    return _result(start, cpu_start, before, accepted)


def run_campaign(csv_path: str, chunk_size: int) -> dict[str, Any]:
    import jinja2.sandbox
    from airflow.sdk.log import configure_logging

    from airflow_qikberry import campaign as c
    from airflow_qikberry.campaign import engine
    from airflow_qikberry.hooks.qikberry import QikberryHook

    # Log as a running task does (JSON lines, INFO and up), into /dev/null: the cost stays measured.
    configure_logging(json_output=True, output=open(os.devnull, "wb"), sending_to_supervisor=True)  # noqa: SIM115
    env = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined, cache_size=0)
    hook = QikberryHook(qikberry_conn_id="qikberry_bench")
    hook.settings  # noqa: B018 - read the connection before the clock starts, as a task's first call would
    prepare, prepare_seconds, prepare_cpu = engine.prepare, [0.0], [0.0]

    def timed_prepare(*args: Any, **kwargs: Any) -> Any:
        began, cpu_began = time.perf_counter(), time.process_time()
        try:
            return prepare(*args, **kwargs)
        finally:
            prepare_seconds[0] = time.perf_counter() - began
            prepare_cpu[0] = time.process_time() - cpu_began

    # The engine calls its own import of prepare: patched there, to split the time between the two passes.
    engine.prepare = timed_prepare  # type: ignore[assignment]
    before = rss_mb()
    start, cpu_start = time.perf_counter(), time.process_time()
    summary = c.run_campaign(
        c.CampaignOptions.checked(name="bench", has_template=True, chunk_size=chunk_size),
        source=c.Source("csv_path", lambda: c.csv_rows(csv_path)),
        hook=hook,
        render=c.compile_row_template(env, TEMPLATE),
        identity=None,
    )
    result = _result(start, cpu_start, before, summary["accepted"])
    return {**result, "prepare_seconds": prepare_seconds[0], "prepare_cpu": prepare_cpu[0]}


def worker(mode: str, csv_path: str, base_url: str, chunk_size: int) -> None:
    result = run_raw(csv_path, base_url, chunk_size) if mode == "raw" else run_campaign(csv_path, chunk_size)
    print(json.dumps(result))


def measure(mode: str, csv_path: str, url: str, chunk_size: int, home: str) -> dict[str, Any]:
    control(url, "/_emulator/reset", {"timeout": 60})
    big = 10_000_000
    control(url, "/_emulator/config", {"credits": {"T": big, "P": big, "S": big, "G": big}})
    base_url = url + "/api/v2/"
    env = {
        **os.environ,
        "AIRFLOW_HOME": home,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_QIKBERRY_BENCH": json.dumps(
            {
                "conn_type": "qikberry",
                "host": base_url,
                "password": TOKEN,
                "extra": {"sender": "QIKBRY", "service": "T", "default_region": "IN"},
            }
        ),
    }
    args = [sys.executable, __file__, "--worker", mode, "--csv", csv_path, "--base-url", base_url]
    args += ["--chunk-size", str(chunk_size)]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} worker failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):5.2f} (lowest {min(values):.2f}, highest {max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--chunk-size", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3, help="raw + campaign, alternating order")
    parser.add_argument("--worker", choices=["raw", "campaign"])
    parser.add_argument("--csv")
    parser.add_argument("--base-url")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.csv, args.base_url, args.chunk_size)
        return

    chunks = -(-args.rows // args.chunk_size)
    rounds: list[tuple[dict[str, Any], dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="qikberry-bench-campaign-") as tmp:
        csv_path = Path(tmp) / "customers.csv"
        started = time.perf_counter()
        generate(csv_path, args.rows)
        size_mb = csv_path.stat().st_size / 1e6
        print(f"generated {args.rows:,} rows ({size_mb:.1f} MB) in {time.perf_counter() - started:.1f} s")
        print(
            f"{args.rows:,} rows in {chunks} chunks of {args.chunk_size:,}, emulator in its own process; "
            "seconds wall (client CPU)"
        )
        port = free_port()
        proc = start_emulator(port, TOKEN, "--credits", "10000000")
        url = f"http://127.0.0.1:{port}"
        try:
            for round_no in range(args.rounds):
                order = ["raw", "campaign"] if round_no % 2 == 0 else ["campaign", "raw"]
                got = {mode: measure(mode, str(csv_path), url, args.chunk_size, tmp) for mode in order}
                raw, campaign = got["raw"], got["campaign"]
                rounds.append((raw, campaign))
                first, first_cpu = campaign["prepare_seconds"], campaign["prepare_cpu"]
                second, second_cpu = campaign["seconds"] - first, campaign["cpu"] - first_cpu
                print(
                    f"round {round_no + 1} ({order[0]} first): raw {raw['seconds']:.1f} ({raw['cpu']:.1f}); "
                    f"pass 1 {first:.1f} ({first_cpu:.1f}), pass 2 {second:.1f} ({second_cpu:.1f}), "
                    f"campaign {campaign['seconds']:.1f} ({campaign['cpu']:.1f}); "
                    f"pass 2/raw {second / raw['seconds']:.2f} (CPU {second_cpu / raw['cpu']:.2f}), "
                    f"campaign/raw {campaign['seconds'] / raw['seconds']:.2f} "
                    f"(CPU {campaign['cpu'] / raw['cpu']:.2f})",
                    flush=True,
                )
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    def line(name: str, runs: list[dict[str, Any]]) -> str:
        seconds = statistics.median(r["seconds"] for r in runs)
        rate = runs[0]["accepted"] / seconds if seconds else 0.0
        growth = max(r["rss_peak"] - r["rss_before"] for r in runs)
        return (
            f"{name:<34} {seconds:8.1f} s  {rate:9.0f} msg/s  RSS growth {growth:7.1f} MB  "
            f"(accepted {runs[0]['accepted']:,})"
        )

    raws, campaigns = [r for r, _ in rounds], [c for _, c in rounds]
    print(f"medians of {len(rounds)} round(s):")
    print(line("raw requests loop (floor)", raws))
    print(line("campaign engine (operator execute)", campaigns))
    first = statistics.median(c["prepare_seconds"] for c in campaigns)
    second = statistics.median(c["seconds"] - c["prepare_seconds"] for c in campaigns)
    print(
        f"  of which pass 1 (read, validate, render, dedupe, spool) {first:.1f} s, "
        f"pass 2 (send through the hook) {second:.1f} s"
    )
    total = [c["seconds"] / r["seconds"] for r, c in rounds]
    ratio = statistics.median(total)
    time_verdict = "meets" if ratio <= TIME_GOAL else "ABOVE"
    print(f"campaign / raw            : {_spread(total)} ({time_verdict} the {TIME_GOAL}x goal)")
    print(f"pass 1 / raw              : {_spread([c['prepare_seconds'] / r['seconds'] for r, c in rounds])}")
    print(
        f"pass 2 / raw              : "
        f"{_spread([(c['seconds'] - c['prepare_seconds']) / r['seconds'] for r, c in rounds])}"
    )
    print(f"CPU campaign / raw        : {_spread([c['cpu'] / r['cpu'] for r, c in rounds])}")
    print(
        f"CPU pass 2 / raw          : "
        f"{_spread([(c['cpu'] - c['prepare_cpu']) / r['cpu'] for r, c in rounds])}"
    )
    growth = max(c["rss_peak"] - c["rss_before"] for c in campaigns)
    rss_verdict = "meets" if growth <= RSS_GOAL_MB else "ABOVE"
    print(
        f"campaign RSS growth       : {growth:6.1f} MB (highest round), ratio {growth / RSS_GOAL_MB:.2f} "
        f"({rss_verdict} the {RSS_GOAL_MB:.0f} MB goal)"
    )


if __name__ == "__main__":
    main()
