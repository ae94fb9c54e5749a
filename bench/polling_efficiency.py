"""Status calls per sweep: 10,000 messages watched by 20 delivery sensors, against one-call-per-id polling.

The anchor is how a generic HTTP sensor polls (Airflow's HttpSensor makes one call per poke per sensor, no
batching): one ``sms/status?id=`` call per message still pending, per sweep. Against it, the delivery
tracker of QikberryDeliverySensor / QikberryDeliveryTrigger in id mode (``message_ids``) and group mode
(``group_id``), each sensor with its own async hook, all in one event loop as in a triggerer.

Two layouts of the same 10,000 messages:

* A - 20 campaigns of 500 messages, one sensor each;
* B - one campaign of 10,000 messages watched by 20 sensors (e.g. 20 downstream DAGs): identical lookups of
  one triggerer are made once.

Delivery reports arrive over 100 s of emulator time, in submit order (the pending messages are a tail of
each campaign) and then in random order (pending messages on every page: the worst case for paging). The
emulator runs in its own process (bench/_emulator.py) with no rate limit, and the connection's budgets are
lifted too: this counts calls, it does not time them. "minutes at 500/min" is what a sweep takes under the
default poll budget. One-call-per-id is one call per pending id per sensor; it is measured for real once
(layout A), to show that is what it costs.

Prints figures and ratios; never fails on a figure.

    python bench/polling_efficiency.py
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
import urllib.request
from typing import Any

from _emulator import free_port, start_emulator

TOKEN = "bench-token-polling-7e1"
MESSAGES = 10_000
SENSORS = 20
DLR_DELAY = 10.0
SPREAD = 100.0
SWEEP_TIMES = (0.0, 40.0, 70.0, 100.0, 115.0)  # emulator seconds after sending
DEFAULT_BUDGET = 500  # poll_budget_per_minute default


def call(url: str, *, body: Any = None, method: str = "GET", auth: bool = True) -> Any:
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = f"Bearer {TOKEN}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


class Emulator:
    def __init__(self, port: int) -> None:
        self.root = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.root}/api/v2/"

    def control(self, path: str, body: Any = None) -> Any:
        return call(
            f"{self.root}/_emulator/{path}", body=body, method="GET" if body is None else "POST", auth=False
        )

    def reset(self, **config: Any) -> None:
        self.control("reset", {})
        self.control("config", config)

    def status_calls(self) -> int:
        return int(self.control("requests")["counts"].get("GET sms/status", 0))

    def advance_to(self, seconds: float, start: float) -> None:
        now = float(self.control("clock")["timestamp"])
        if start + seconds > now:
            self.control("clock/advance", {"seconds": start + seconds - now})

    def clock(self) -> float:
        return float(self.control("clock")["timestamp"])

    def send(self, count: int, tag: str) -> tuple[str, list[str]]:
        nodes = [{"to": f"91{7000000000 + i}"} for i in range(count)]
        root = {"sender": "QIKBRY", "service": "T", "message": f"bench {tag}", "name": tag}
        answer = call(self.base_url + "sms/send/json", body={"root": root, "nodes": nodes}, method="POST")
        return str(answer["group_id"]), [str(row["id"]) for row in answer["data"]]


async def naive_sweep(emulator: Emulator, ids: list[str]) -> float:
    """One GET per id (16 in flight), as one-call-per-id polling does; returns the seconds it took."""
    import httpx

    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
    gate = asyncio.Semaphore(16)
    async with httpx.AsyncClient(headers=headers, timeout=60) as client:

        async def one(message_id: str) -> None:
            async with gate:
                (
                    await client.get(emulator.base_url + "sms/status", params={"id": message_id})
                ).raise_for_status()

        await asyncio.gather(*(one(i) for i in ids))
    return time.perf_counter() - started


Row = tuple[int, float, int, int, int, int]  # sweep, t, pending, per-id, id mode, group mode


async def run_layout(
    emulator: Emulator, layout: str, order: str, measure_naive: bool
) -> tuple[list[Row], str]:
    from airflow_qikberry.delivery.sweep import arun_sweep
    from airflow_qikberry.delivery.tracker import DeliveryTracker
    from airflow_qikberry.hooks.qikberry_async import QikberryAsyncHook

    emulator.reset(
        rate_limit_per_minute=10**9,
        dlr_delay_seconds=DLR_DELAY,
        dlr_spread_seconds=SPREAD,
        dlr_spread_order=order,
        credits=10**9,
    )
    if layout == "A":
        sent = [emulator.send(MESSAGES // SENSORS, f"A{i}") for i in range(SENSORS)]
    else:
        one = emulator.send(MESSAGES, "B")
        sent = [one] * SENSORS
    start = emulator.clock()
    by_id = [DeliveryTracker(message_ids=ids) for _, ids in sent]
    by_group = [DeliveryTracker(group_ids=[group]) for group, _ in sent]
    hooks = [QikberryAsyncHook(qikberry_conn_id="qikberry_bench") for _ in range(SENSORS)]

    async def sweep(trackers: list[DeliveryTracker]) -> int:
        before = emulator.status_calls()
        await asyncio.gather(
            *(
                arun_sweep(t, h.poll_page, h.poll_message, concurrency=16)
                for t, h in zip(trackers, hooks, strict=True)
            )
        )
        return emulator.status_calls() - before

    rows: list[Row] = []
    note = ""
    try:
        for n, at in enumerate(SWEEP_TIMES, start=1):
            emulator.advance_to(at, start)
            pending = sum(
                t.summary()["pending"] if t.checks else len(ids)
                for t, (_, ids) in zip(by_id, sent, strict=True)
            )
            rows.append((n, at, pending, pending, await sweep(by_id), await sweep(by_group)))
        if measure_naive:
            # After the sweeps: the emulator's clock runs in real time, and this takes a while.
            ids = [i for _, batch in sent for i in batch]
            before = emulator.status_calls()
            seconds = await naive_sweep(emulator, ids)
            calls = emulator.status_calls() - before
            note = (
                f"one-call-per-id, measured: {calls} calls to look {len(ids)} ids up once ({seconds:.1f} s)\n"
            )
    finally:
        for hook in hooks:
            await hook.close()
    return rows, note


def render(title: str, rows: list[Row]) -> str:
    lines = [
        title,
        f"{'sweep':>5} {'t (s)':>6} {'pending':>8} {'one-call-per-id':>16} {'id mode':>8} {'group mode':>10}"
        f" {'per-id/group':>13} {'min at 500/min':>15}",
    ]
    for n, at, pending, naive, ids, groups in rows:
        ratio = f"{naive / groups:.0f}x" if groups else ("-" if not naive else "inf")
        minutes = f"{max(ids, groups) / DEFAULT_BUDGET:.2f}"
        lines.append(
            f"{n:>5} {at:>6.0f} {pending:>8} {naive:>16} {ids:>8} {groups:>10} {ratio:>13} {minutes:>15}"
        )
    total = [sum(r[i] for r in rows) for i in (3, 4, 5)]
    lines.append(
        f"{'all':>5} {'':>6} {'':>8} {total[0]:>16} {total[1]:>8} {total[2]:>10}"
        f" {total[0] / max(1, total[2]):>12.0f}x"
    )
    return "\n".join(lines)


def main() -> int:
    print(__doc__.splitlines()[0] if __doc__ else "")
    print(
        f"{MESSAGES:,} messages, {SENSORS} sensors; reports over {SPREAD:.0f} s after a {DLR_DELAY:.0f} s "
        "delay; 'pending' = what the sensors know before the sweep (all, before the first).\n"
    )
    port = free_port()
    proc = start_emulator(port, TOKEN, "--rate-limit", str(10**9), "--credits", str(10**9))
    home = tempfile.mkdtemp(prefix="qikberry-bench-")
    os.environ.update(
        {
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_CONN_QIKBERRY_BENCH": json.dumps(
                {
                    "conn_type": "qikberry",
                    "host": f"http://127.0.0.1:{port}/api/v2/",
                    "password": TOKEN,
                    "extra": {"rate_limit_per_minute": 10**9, "poll_budget_per_minute": 10**9},
                }
            ),
        }
    )
    emulator = Emulator(port)
    try:
        layouts: list[tuple[str, str, str, bool]] = [
            ("A", "submit", "A. 20 campaigns of 500, one sensor each; reports in submit order", True),
            ("A", "random", "A. 20 campaigns of 500, one sensor each; reports in random order", False),
            (
                "B",
                "submit",
                "B. 20 sensors on one campaign of 10,000 (coalesced); reports in submit order",
                False,
            ),
            (
                "B",
                "random",
                "B. 20 sensors on one campaign of 10,000 (coalesced); reports in random order",
                False,
            ),
        ]
        for layout, order, title, measure in layouts:
            rows, note = asyncio.run(run_layout(emulator, layout, order, measure))
            print(render(title, rows))
            print(note)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(
        "id mode reads the 100-row pages that hold pending messages (positions tell where an id sits); group "
        "mode walks each campaign once, then reads only pages with pending messages. Per sweep: at most "
        "ceil(pending/100) calls per campaign when reports come in submit order (one more when the pending "
        "tail straddles a short last page), never more than the campaign's page count, never more than one "
        "call per pending message."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
