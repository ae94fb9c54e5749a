"""A resumed campaign says what it waits for while it confirms, over the reconcile window, that the chunk
after the last one found was not accepted: which chunk, which custom id, how much of the window is left,
and why. The waits are simulated (tests.helpers.Sleeps), so the window's figures are exact.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import pytest

from airflow_qikberry import campaign as c
from airflow_qikberry import idempotency as ido
from airflow_qikberry.exceptions import QikberryError
from airflow_qikberry.hooks.qikberry import QikberryHook
from tests.helpers import Sleeps

TRY_1 = ("campaign_dag", "send", "manual__2026-12-04", "-1", "1")
TRY_2 = (*TRY_1[:4], "2")
WINDOW = 10


def run(hook: QikberryHook, identity: Any) -> dict[str, Any]:
    opts = c.CampaignOptions.checked(name="resume-log", message="Your order shipped", chunk_size=2)
    rows = [f"9198767{i:05d}" for i in range(12)]
    return c.run_campaign(
        opts, source=c.Source("recipients", lambda: c.recipient_rows(rows)), hook=hook, identity=identity
    )


def test_the_reconcile_wait_of_a_resumed_campaign_says_what_it_waits_for(
    make_qikberry_conn: Callable[..., str], emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sleeps = Sleeps(emulator)
    hook = QikberryHook(qikberry_conn_id=make_qikberry_conn(reconcile_window=WINDOW), clock=sleeps)
    # Try 1 gets chunks 1-3 accepted and dies at chunk 4 (refused by an error no retry inside the try fixes).
    emulator.set_faults(
        [{"endpoint": "sms/send/json", "method": "POST", "kind": "error", "status": 501, "after": 3}]
    )
    with pytest.raises(QikberryError):
        run(hook, TRY_1)
    emulator.clear_faults()
    sleeps.clear()
    caplog.clear()

    with caplog.at_level(logging.INFO):
        summary = run(hook, TRY_2)

    assert summary["resumed_from_chunk"] == 3
    key = ido.campaign_key(TRY_2, "resume-log")
    waiting = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Confirming chunk 4 ")]
    # One line before each wait of the window (1, 2, 4, then the 3 s left): nothing silent in between.
    window_waits = sleeps[: len(waiting)]
    assert window_waits == [1, 2, 4, 3], sleeps
    pattern = re.compile(
        r"Confirming chunk 4 was not accepted: looking up custom id (\S+) \(its first row\) again in "
        r"(\d+) s, up to (\d+) s of the 10 s reconcile window left, because chunk 3 was accepted, so the "
        r"earlier try may have posted chunk 4 just before it stopped"
    )
    parsed = [pattern.match(line) for line in waiting]
    assert all(parsed), waiting
    assert {m.group(1) for m in parsed if m} == {ido.campaign_custom_id(key, 3, 0)}
    assert [(int(m.group(2)), int(m.group(3))) for m in parsed if m] == [(1, 10), (2, 9), (4, 7), (3, 3)]
    messages = [r.getMessage() for r in caplog.records]
    done = messages.index(
        "Confirmed chunk 4 was not accepted: still absent when the 10 s reconcile window closed"
    )
    assert any(m.startswith("Campaign 'resume-log': earlier tries settled 3") for m in messages[done:])
