"""Sends per second through QikberryHook vs a raw keep-alive ``requests.Session`` loop, same emulator.

The emulator runs in its own process so it does not share this process's GIL. A paired design: one hook and
one raw session, built and warmed once; each round sends ``--sends`` through each, interleaved in blocks of
``--block`` sends that alternate which client goes first, and yields one hook/raw ratio; a burst of load
on the shared machine lands on both clients of a round alike, and many rounds make the median steady. The
finer the interleave the more alike their conditions: one send each (the default) spread less than blocks of
ten on the busy 2-core machine. Prints the median rates, the median ratio against the 0.95 target and its
spread (interquartile range, and the lowest and highest round). Also the client process's CPU time per send
of each (user + system, the emulator's not in it): far less sensitive to other load than wall time, and the
hook's own cost per send (the difference) is CPU. The raw session keeps requests' defaults (it reads proxy
settings from the environment at every request; the hook reads them once), so that difference can be
small. Never fails on a slow figure: it is a measurement, not a test.

    python bench/hook_throughput.py [--sends 200] [--rounds 41] [--block 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import urllib.request
from collections.abc import Callable
from typing import NamedTuple

from _emulator import free_port, start_emulator

TOKEN = "bench-token-7d1e"
TARGET = 0.95


def control(url: str, path: str, body: dict[str, object]) -> None:
    req = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(req, timeout=10).read()


def raw_sender(base_url: str) -> Callable[[int], None]:
    """One send over a raw keep-alive session (built once, as the hook's is)."""
    import requests

    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"})

    def send(i: int) -> None:
        payload = {
            "to": f"91987{i % 100000:07d}",
            "message": f"bench message {i}",
            "sender": "QIKBRY",
            "service": "T",
            "type": "N",
            "custom": f"raw-{i}",
        }
        response = session.post(base_url + "sms/send", json=payload, timeout=(10, 30))
        response.raise_for_status()
        response.json()

    return send


def hook_sender() -> Callable[[int], None]:
    """One send through a hook (built once, its connection read before the clock, as a task's first call
    would)."""
    from airflow_qikberry.hooks.qikberry import QikberryHook

    hook = QikberryHook(qikberry_conn_id="qikberry_bench")
    hook.settings  # noqa: B018

    def send(i: int) -> None:
        hook.send_sms(f"91987{i % 100000:07d}", f"bench message {i}")

    return send


class Round(NamedTuple):
    """One paired round: each client's sends/s and client CPU microseconds per send."""

    raw_rate: float
    hook_rate: float
    raw_cpu_us: float
    hook_cpu_us: float


def paired_round(
    raw: Callable[[int], None], hook: Callable[[int], None], sends: int, block: int, first: int
) -> Round:
    """Both clients' sends/s and CPU per send over one round: ``sends`` each, in interleaved blocks of
    ``block`` sends that alternate which client goes first, so a burst of load on the shared machine lands
    on both."""
    spent = {"raw": 0.0, "hook": 0.0}
    cpu = {"raw": 0.0, "hook": 0.0}
    order = [("raw", raw), ("hook", hook)]
    i = first
    for n in range(0, sends, block):
        size = min(block, sends - n)
        for name, send in order if (n // block) % 2 == 0 else order[::-1]:
            began, cpu_began = time.perf_counter(), time.process_time()
            for k in range(size):
                send(i + k)
            spent[name] += time.perf_counter() - began
            cpu[name] += time.process_time() - cpu_began
        i += size
    return Round(
        sends / spent["raw"], sends / spent["hook"], 1e6 * cpu["raw"] / sends, 1e6 * cpu["hook"] / sends
    )


def spread(values: list[float], fmt: str = ".3f") -> str:
    """The interquartile range, lowest and highest of ``values``."""
    q1, _, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0],) * 3
    return (
        f"interquartile range {q1:{fmt}}-{q3:{fmt}} ({q3 - q1:{fmt}}), "
        f"lowest {min(values):{fmt}}, highest {max(values):{fmt}}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--block", type=int, default=1, help="sends per client between switches")
    args = parser.parse_args()

    port = free_port()
    proc = start_emulator(port, TOKEN)
    url = f"http://127.0.0.1:{port}"
    base_url = url + "/api/v2/"
    os.environ["AIRFLOW_CONN_QIKBERRY_BENCH"] = json.dumps(
        {"conn_type": "qikberry", "host": base_url, "password": TOKEN, "extra": {"sender": "QIKBRY"}}
    )
    # Log as a running task does (JSON lines to its supervisor, INFO and up), keeping that cost in the
    # measurement, but into /dev/null instead of a socket.
    from airflow.sdk.log import configure_logging

    configure_logging(json_output=True, output=open(os.devnull, "wb"), sending_to_supervisor=True)  # noqa: SIM115
    try:
        big = 10 * args.sends * (args.rounds + 1)
        control(url, "/_emulator/config", {"credits": {"T": big, "P": big, "S": big, "G": big}})
        raw, hook = raw_sender(base_url), hook_sender()
        paired_round(raw, hook, 50, 10, 0)  # warm both paths (imports, connection pools)
        rounds = [
            paired_round(raw, hook, args.sends, args.block, (round_no + 1) * args.sends)
            for round_no in range(args.rounds)
        ]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    ratios = [r.hook_rate / r.raw_rate for r in rounds]
    cpu_ratios = [r.raw_cpu_us / r.hook_cpu_us for r in rounds]
    overheads = [r.hook_cpu_us - r.raw_cpu_us for r in rounds]
    ratio = statistics.median(ratios)
    median = statistics.median
    where = f"(median of {args.rounds} rounds of {args.sends} sends each)"
    print(f"raw requests.Session loop : {median(r.raw_rate for r in rounds):8.1f} sends/s {where}")
    print(f"QikberryHook.send_sms     : {median(r.hook_rate for r in rounds):8.1f} sends/s {where}")
    print(f"per-round ratios          : {' '.join(f'{r:.2f}' for r in ratios)}")
    verdict = "meets" if ratio >= TARGET else "BELOW"
    print(f"ratio hook/raw            : {ratio:8.3f} ({verdict} the {TARGET} target)")
    print(f"spread of the rounds      : {spread(ratios)}")
    print(
        f"client CPU per send       : raw {median(r.raw_cpu_us for r in rounds):.0f} us, "
        f"hook {median(r.hook_cpu_us for r in rounds):.0f} us (user + system of this process)"
    )
    print(f"CPU ratio raw/hook        : {median(cpu_ratios):8.3f}; {spread(cpu_ratios)}")
    print(f"hook's own CPU per send   : {median(overheads):8.1f} us; {spread(overheads, '.1f')}")


if __name__ == "__main__":
    main()
