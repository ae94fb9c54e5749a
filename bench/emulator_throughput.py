"""Throughput of the emulator: one keep-alive ``requests.Session`` sending ``POST sms/send`` in a loop.

The emulator runs in its own process (``python -m airflow_qikberry.emulator``), as it does for the demo,
so client and server do not share a GIL. Prints sends/s and the ratio to the 500/s target; the ratio must
stay >= 1 for the emulator never to be the bottleneck of the provider's benchmarks.

    .venv/bin/python bench/emulator_throughput.py [--count 2000]
"""

from __future__ import annotations

import argparse
import sys
import time

import requests
from _emulator import free_port, start_emulator

TARGET_PER_SECOND = 500.0
TOKEN = "bench-token"


def run(base_url: str, count: int, warmup: int) -> float:
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"})
    url = base_url + "sms/send"

    def send(i: int) -> None:
        body = {"to": f"9198{i:08d}", "message": "Your OTP is 123456", "sender": "QIKBRY", "service": "T"}
        response = session.post(url, json=body, timeout=10)
        if response.status_code != 200:
            raise SystemExit(f"send {i} failed: HTTP {response.status_code} {response.text[:200]}")

    for i in range(warmup):
        send(i)
    started = time.perf_counter()
    for i in range(warmup, warmup + count):
        send(i)
    elapsed = time.perf_counter() - started
    session.close()
    return count / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=2000, help="timed sends (default 2000)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed sends first (default 50)")
    args = parser.parse_args()
    port = free_port()
    proc = start_emulator(port, TOKEN, "--credits", str((args.count + args.warmup) * 10 + 1000))
    try:
        rate = run(f"http://127.0.0.1:{port}/api/v2/", args.count, args.warmup)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"emulator throughput: {rate:.0f} sends/s over {args.count} sends (one keep-alive client thread)")
    print(f"ratio to the {TARGET_PER_SECOND:.0f}/s target: {rate / TARGET_PER_SECOND:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
