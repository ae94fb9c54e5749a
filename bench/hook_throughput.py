"""Sends per second through QikberryHook vs a raw keep-alive ``requests.Session`` loop, same emulator.

The emulator runs in its own process so it does not share this process's GIL. A paired design: one hook and
one raw session, built and warmed once; each round sends ``--sends`` through each, interleaved in blocks of
``--block`` sends that alternate which client goes first, and yields one hook/raw ratio; a burst of load
on the shared machine lands on both clients of a round alike, and many rounds make the median steady. Prints
the median rates, the median ratio against the 0.95 target and its spread (interquartile range, and the
lowest and highest round). Never fails on a slow figure: it is a measurement, not a test.

    python bench/hook_throughput.py [--sends 200] [--rounds 41] [--block 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import urllib.request
from collections.abc import Callable

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


def paired_round(
    raw: Callable[[int], None], hook: Callable[[int], None], sends: int, block: int, first: int
) -> tuple[float, float]:
    """Both clients' sends/s over one round: ``sends`` each, in interleaved blocks of ``block`` sends that
    alternate which client goes first, so a burst of load on the shared machine lands on both."""
    spent = {"raw": 0.0, "hook": 0.0}
    order = [("raw", raw), ("hook", hook)]
    i = first
    for n in range(0, sends, block):
        size = min(block, sends - n)
        for name, send in order if (n // block) % 2 == 0 else order[::-1]:
            began = time.perf_counter()
            for k in range(size):
                send(i + k)
            spent[name] += time.perf_counter() - began
        i += size
    return sends / spent["raw"], sends / spent["hook"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--block", type=int, default=10, help="sends per client between switches")
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
        big = 10 * args.sends * args.rounds
        control(url, "/_emulator/config", {"credits": {"T": big, "P": big, "S": big, "G": big}})
        raw_rates: list[float] = []
        hook_rates: list[float] = []
        ratios: list[float] = []
        raw, hook = raw_sender(base_url), hook_sender()
        paired_round(raw, hook, 50, 10, 0)  # warm both paths (imports, connection pools)
        for round_no in range(args.rounds):
            raw_rate, hook_rate = paired_round(raw, hook, args.sends, args.block, round_no * args.sends)
            raw_rates.append(raw_rate)
            hook_rates.append(hook_rate)
            ratios.append(hook_rate / raw_rate)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    ratio = statistics.median(ratios)
    q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratio, ratio, ratio)
    rounds = f"(median of {args.rounds} rounds of {args.sends} sends each)"
    print(f"raw requests.Session loop : {statistics.median(raw_rates):8.1f} sends/s {rounds}")
    print(f"QikberryHook.send_sms     : {statistics.median(hook_rates):8.1f} sends/s {rounds}")
    print(f"per-round ratios          : {' '.join(f'{r:.2f}' for r in ratios)}")
    verdict = "meets" if ratio >= TARGET else "BELOW"
    print(f"ratio hook/raw            : {ratio:8.3f} ({verdict} the {TARGET} target)")
    print(
        f"spread of the rounds      : interquartile range {q1:.3f}-{q3:.3f} ({q3 - q1:.3f}), "
        f"lowest {min(ratios):.3f}, highest {max(ratios):.3f}"
    )


if __name__ == "__main__":
    main()
