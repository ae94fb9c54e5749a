"""Status lookups per second through QikberryAsyncHook vs a raw ``httpx.AsyncClient``, same emulator.

Both clients look messages up by id (``GET sms/status?id=...``) with the same headers, ``--concurrency``
lookups in flight at once (one asyncio task per worker). The emulator runs in its own process so it does not
share this process's GIL, and throttles nothing (``--rate-limit`` 10**9); the connection's
``rate_limit_per_minute`` is as high, so the client's token bucket never waits either: what is measured is
the hook's own cost (bucket, retry policy, parsing) over the raw client's.

One hook and one raw client are built and warmed first (a trigger keeps its hook for as long as it polls);
then each round runs both back to back (alternating which goes first) and yields one hook/raw ratio. Rounds
are short and many, so a moment of load elsewhere on the machine hurts a round, not the result: the median of
the rounds is the figure. Prints each round's rates, this process's CPU time per lookup and ratio, then the
median ratio against the 0.9 target. Never fails on a slow figure: it is a measurement, not a test.

    python bench/async_status_throughput.py [--lookups 300] [--concurrency 8] [--rounds 25]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable

from _emulator import free_port, start_emulator

TOKEN = "bench-token-3a9c"
TARGET = 0.9
UNTHROTTLED = 10**9
MESSAGES = 200


def send_messages(base_url: str, count: int) -> list[str]:
    """Message ids of ``count`` messages accepted in one ``sms/send`` (the lookups' targets)."""
    body = {
        "to": ",".join(f"91987{i:07d}" for i in range(count)),
        "message": "bench status lookup",
        "sender": "QIKBRY",
        "service": "T",
        "type": "N",
    }
    req = urllib.request.Request(
        base_url + "sms/send",
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "Accept": "application/json",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as response:
        rows = json.loads(response.read())["data"]
    ids = [str(row["id"]) for row in rows]
    if len(ids) != count:
        raise SystemExit(f"expected {count} accepted messages, got {len(ids)}")
    return ids


Rate = tuple[float, float]  # lookups per second, client CPU microseconds per lookup
Lookup = Callable[[str], Awaitable[object]]


async def timed(lookup: Lookup, ids: list[str], lookups: int, workers: int) -> Rate:
    """Rate of ``lookups`` calls spread over ``workers`` concurrent tasks."""

    async def worker(first: int) -> None:
        for i in range(first, lookups, workers):
            await lookup(ids[i % len(ids)])

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(w) for w in range(workers)))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return lookups / elapsed, cpu / lookups * 1e6


@contextlib.asynccontextmanager
async def raw_lookup(base_url: str) -> AsyncIterator[Lookup]:
    """A lookup through a bare ``httpx.AsyncClient``: the same GET, headers and pool as the hook's."""
    import httpx

    from airflow_qikberry.transport.base import USER_AGENT

    headers = {"Accept": "application/json", "User-Agent": USER_AGENT, "Authorization": f"Bearer {TOKEN}"}
    # The pool the hook's transport builds (16 connections, all kept alive): only the code on top differs.
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    timeout = httpx.Timeout(30.0, connect=10.0)
    async with httpx.AsyncClient(headers=headers, timeout=timeout, limits=limits) as client:

        async def lookup(message_id: str) -> object:
            response = await client.get(base_url + "sms/status", params={"id": message_id})
            response.raise_for_status()
            rows = response.json()["data"]
            if len(rows) != 1:
                raise SystemExit(f"raw lookup of {message_id} returned {len(rows)} rows")
            return rows

        yield lookup


@contextlib.asynccontextmanager
async def hook_lookup() -> AsyncIterator[Lookup]:
    """A lookup through ``QikberryAsyncHook.get_status`` (typed rows, bucket, retry policy included)."""
    from airflow_qikberry.hooks.qikberry_async import QikberryAsyncHook

    async with QikberryAsyncHook(qikberry_conn_id="qikberry_bench_async") as hook:

        async def lookup(message_id: str) -> object:
            rows = await hook.get_status(message_id=message_id)
            if len(rows) != 1:
                raise SystemExit(f"hook lookup of {message_id} returned {len(rows)} rows")
            return rows

        yield lookup


async def measure(
    base_url: str, ids: list[str], lookups: int, workers: int, rounds: int
) -> tuple[list[Rate], list[Rate], list[float]]:
    raw_rates: list[Rate] = []
    hook_rates: list[Rate] = []
    ratios: list[float] = []
    async with raw_lookup(base_url) as raw_call, hook_lookup() as hook_call:
        # Warm both (imports, connection read, SSL context, every pooled connection opened) before any round:
        # a trigger pays that once, then polls with the same hook for as long as it waits.
        await timed(raw_call, ids, 200, workers)
        await timed(hook_call, ids, 200, workers)
        for round_no in range(rounds):
            if round_no % 2:
                hook = await timed(hook_call, ids, lookups, workers)
                raw = await timed(raw_call, ids, lookups, workers)
            else:
                raw = await timed(raw_call, ids, lookups, workers)
                hook = await timed(hook_call, ids, lookups, workers)
            raw_rates.append(raw)
            hook_rates.append(hook)
            ratios.append(hook[0] / raw[0])
            print(
                f"round {round_no + 1:2d}: raw {raw[0]:7.1f}/s ({raw[1]:5.0f} us CPU each)  "
                f"hook {hook[0]:7.1f}/s ({hook[1]:5.0f} us CPU each)  ratio {ratios[-1]:.3f}"
            )
    return raw_rates, hook_rates, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lookups", type=int, default=300, help="timed lookups per client per round")
    parser.add_argument("--concurrency", type=int, default=8, help="lookups in flight at once")
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args()

    port = free_port()
    proc = start_emulator(port, TOKEN, "--rate-limit", str(UNTHROTTLED))
    base_url = f"http://127.0.0.1:{port}/api/v2/"
    os.environ["AIRFLOW_CONN_QIKBERRY_BENCH_ASYNC"] = json.dumps(
        {
            "conn_type": "qikberry",
            "host": base_url,
            "password": TOKEN,
            "extra": {"sender": "QIKBRY", "rate_limit_per_minute": UNTHROTTLED},
        }
    )
    # Log as a running triggerer does (JSON lines, INFO and up), keeping that cost in the measurement, but
    # into /dev/null instead of a socket.
    from airflow.sdk.log import configure_logging

    configure_logging(json_output=True, output=open(os.devnull, "wb"), sending_to_supervisor=True)  # noqa: SIM115
    try:
        ids = send_messages(base_url, MESSAGES)
        raw_rates, hook_rates, ratios = asyncio.run(
            measure(base_url, ids, args.lookups, args.concurrency, args.rounds)
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    ratio = statistics.median(ratios)
    rounds = f"(median of {args.rounds} rounds, {args.concurrency} concurrent)"
    for label, rates in (("raw httpx.AsyncClient", raw_rates), ("QikberryAsyncHook.get_status", hook_rates)):
        rate, cpu = statistics.median(r[0] for r in rates), statistics.median(r[1] for r in rates)
        print(f"{label:<28} : {rate:8.1f} lookups/s, {cpu:6.0f} us client CPU per lookup {rounds}")
    print(f"{'per-round ratios':<28} : {' '.join(f'{r:.2f}' for r in ratios)}")
    verdict = "meets" if ratio >= TARGET else "BELOW"
    print(f"{'ratio hook/raw':<28} : {ratio:8.3f} ({verdict} the {TARGET} target)")


if __name__ == "__main__":
    main()
