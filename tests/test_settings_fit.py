"""Settings that must fit together are checked together (issue 16, item 5).

A send whose outcome is unknown is looked up over the reconcile window and then sent again, all inside the
call's retry deadline. A deadline shorter than timeout + window + 10 s ends every such send as unknown and
makes a campaign retry unable to resume, so the deadline is derived from the window and timeout when it is
not set, and an explicit one that is too short is refused when the connection is read, before any request.
Likewise ``reconcile_delay`` must fit the window and ``poll_budget_per_minute`` the GET budget.

Waits are recorded by :class:`tests.helpers.Sleeps` (which moves the emulator clock and the hook's deadline
clock), so 150-second windows run in milliseconds.
"""

from __future__ import annotations

import asyncio
import types
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from airflow_qikberry.connection import ConnectionSettings, fitted_retry_deadline, settle_time
from airflow_qikberry.exceptions import QikberryError, QikberryValidationError
from airflow_qikberry.hooks.qikberry import QikberryHook
from airflow_qikberry.hooks.qikberry_async import QikberryAsyncHook
from tests.helpers import Sleeps, count

A = "919876543210"


def settings(**extra: Any) -> ConnectionSettings:
    conn = types.SimpleNamespace(
        conn_id="c", host=None, port=None, schema=None, password="tok-1", extra_dejson=extra
    )
    return ConnectionSettings.from_connection(conn)


def refused(call: Callable[[], Any], field: str, *names: str) -> str:
    with pytest.raises(QikberryValidationError) as info:
        call()
    assert info.value.field == field
    for name in names:
        assert name in info.value.message, info.value.message
    return info.value.message


# -- the rule


def test_the_deadline_is_derived_from_window_and_timeout_or_refused_when_too_short() -> None:
    assert settle_time(30, 30) == 70
    assert fitted_retry_deadline(None, window=30, timeout=30) == 120  # the defaults fit: unchanged
    assert fitted_retry_deadline(None, window=150, timeout=30) == 190  # derived
    assert fitted_retry_deadline(None, window=30, timeout=100) == 140
    assert fitted_retry_deadline(190, window=150, timeout=30) == 190
    message = refused(
        lambda: fitted_retry_deadline(189, window=150, timeout=30), "retry_deadline", "reconcile_window"
    )
    assert "at least 190" in message
    assert "leave it unset" in message


# -- the connection


def test_connection_extras_are_checked_together() -> None:
    assert settings().retry_deadline is None  # unset: derived where it is used
    s = settings(retry_deadline="200", reconcile_window="150")
    assert (s.retry_deadline, s.reconcile_window) == (200.0, 150.0)
    refused(
        lambda: settings(retry_deadline=120, reconcile_window=150),
        "retry_deadline",
        "the connection's retry_deadline extra (120 s)",
        "the connection's reconcile_window extra (150 s)",
        "at least 190",
    )
    refused(
        lambda: settings(retry_deadline=120, timeout=100),
        "retry_deadline",
        "the connection's timeout extra (100 s)",
        "at least 140",
    )
    for bad in (0, -5, "soon"):
        refused(lambda bad=bad: settings(retry_deadline=bad), "retry_deadline")
    assert settings(retry_deadline="").retry_deadline is None  # an empty form field


def test_poll_budget_is_half_the_get_budget_unless_set_and_never_above_it() -> None:
    assert settings().poll_budget_per_minute == 500
    assert settings(rate_limit_per_minute=200).poll_budget_per_minute == 100  # a process's share, halved
    assert settings(rate_limit_per_minute=1).poll_budget_per_minute == 1
    assert settings(rate_limit_per_minute=200, poll_budget_per_minute=200).poll_budget_per_minute == 200
    refused(
        lambda: settings(rate_limit_per_minute=200, poll_budget_per_minute=500),
        "poll_budget_per_minute",
        "rate_limit_per_minute (200)",
        "at most 200",
    )


def test_the_form_leaves_derived_fields_empty() -> None:
    # A default in the form would be saved as if the user had typed it: the derived value would be lost,
    # and a lowered rate_limit_per_minute would meet a saved poll budget of 500 and be refused.
    from airflow_qikberry.get_provider_info import CONN_FIELDS

    for name in ("retry_deadline", "poll_budget_per_minute"):
        assert "default" not in CONN_FIELDS[name]["schema"]
        assert CONN_FIELDS[name]["schema"]["minimum"] == 1
    assert "number" in CONN_FIELDS["retry_deadline"]["schema"]["type"]


# -- the hook


def test_the_hook_derives_its_deadline_from_what_is_in_force(make_qikberry_conn: Callable[..., str]) -> None:
    assert QikberryHook(qikberry_conn_id=make_qikberry_conn("plain")).retry_deadline == 120
    wide = make_qikberry_conn("wide", reconcile_window=150)
    assert QikberryHook(qikberry_conn_id=wide).retry_deadline == 190
    assert QikberryHook(qikberry_conn_id=wide, timeout=60).retry_deadline == 220
    assert QikberryHook(qikberry_conn_id=wide, reconcile_window=20).retry_deadline == 120
    assert QikberryHook(qikberry_conn_id=wide, retry_deadline=300).retry_deadline == 300
    set_on_conn = make_qikberry_conn("set", reconcile_window=150, retry_deadline=250)
    assert QikberryHook(qikberry_conn_id=set_on_conn).retry_deadline == 250


@pytest.mark.parametrize(
    ("extra", "kwargs", "names"),
    [
        (
            {"reconcile_window": 150},
            {"retry_deadline": 120},
            ["the hook's retry_deadline argument (120 s)", "the connection's reconcile_window extra"],
        ),
        (
            {"retry_deadline": 120},
            {"reconcile_window": 150},
            ["the connection's retry_deadline extra", "the hook's reconcile_window argument"],
        ),
        (
            {},
            {"retry_deadline": 60},
            ["the hook's retry_deadline argument", "the default reconcile_window (30 s)"],
        ),
        ({}, {"retry_deadline": 120, "timeout": 100}, ["the hook's timeout argument (100 s)"]),
    ],
    ids=["argument-deadline", "extra-deadline", "default-window", "argument-timeout"],
)
def test_the_hook_refuses_a_deadline_too_short_before_any_request(
    make_qikberry_conn: Callable[..., str],
    emulator: Any,
    extra: dict[str, Any],
    kwargs: dict[str, Any],
    names: list[str],
) -> None:
    hook = QikberryHook(qikberry_conn_id=make_qikberry_conn(**extra), **kwargs)
    refused(lambda: hook.send_sms(A, "never sent"), "retry_deadline", *names)
    assert emulator.request_log()["counts"] == {} or count(emulator, "POST sms/send") == 0
    assert emulator.messages() == []
    ok, message = hook.test_connection()  # the UI's Test button says why
    assert not ok
    assert "retry_deadline" in message


def test_reconcile_delay_must_fit_the_window(make_qikberry_conn: Callable[..., str]) -> None:
    refused(lambda: QikberryHook(reconcile_delay=-1), "reconcile_delay")
    refused(lambda: QikberryHook(retry_deadline=0), "retry_deadline")
    hook = QikberryHook(qikberry_conn_id=make_qikberry_conn(reconcile_window=5), reconcile_delay=8)
    refused(lambda: hook.settings, "reconcile_delay", "the connection's reconcile_window extra (5 s)")
    assert QikberryHook(qikberry_conn_id=make_qikberry_conn(reconcile_window=5), reconcile_delay=5).settings
    # The default delay (1 s) is not the caller's choice: a shorter window just cuts it.
    assert QikberryHook(qikberry_conn_id=make_qikberry_conn(reconcile_window=0.5)).settings


def test_the_async_hook_takes_the_connections_retry_deadline(make_qikberry_conn: Callable[..., str]) -> None:
    conn_id = make_qikberry_conn("async_deadline", retry_deadline=300)

    async def deadlines() -> tuple[float, float]:
        from_conn, argument = QikberryAsyncHook(conn_id), QikberryAsyncHook(conn_id, retry_deadline=45)
        await from_conn.get_settings()
        await argument.get_settings()
        return from_conn.policy.deadline, argument.policy.deadline

    assert asyncio.run(deadlines()) == (300, 45)
    refused(lambda: QikberryAsyncHook(retry_deadline=-1), "retry_deadline")


# -- what the rule is for: a window raised above the old fixed 120 s deadline


@pytest.fixture
def sleeps(emulator: Any) -> Sleeps:
    return Sleeps(emulator)


@pytest.mark.parametrize("where", ["extra", "argument"])
@pytest.mark.parametrize(
    ("fault", "visibility"),
    [("drop_before", 0.0), ("drop_after_accept", 140.0)],
    ids=["not-accepted", "accepted-seen-late"],
)
def test_a_150s_window_settles_an_unknown_send(
    make_qikberry_conn: Callable[..., str],
    emulator: Any,
    sleeps: Sleeps,
    where: str,
    fault: str,
    visibility: float,
) -> None:
    """The docs advise raising reconcile_window for an account whose messages show up slowly. With the
    window at 150 s, an unknown outcome is looked up for the whole window and then sent again (not
    accepted) or found (accepted, visible after 140 s): one message either way. Seen failing with the old
    fixed 120 s deadline: QikberryDeliveryUnknownError ("the call's retry deadline ended the lookups")."""
    emulator.configure(visibility_delay_seconds=visibility)
    emulator.set_faults([{"endpoint": "sms/send", "method": "POST", "kind": fault, "times": 1}])
    if where == "extra":
        hook = QikberryHook(qikberry_conn_id=make_qikberry_conn(reconcile_window=150), clock=sleeps)
    else:
        hook = QikberryHook(qikberry_conn_id=make_qikberry_conn(), reconcile_window=150, clock=sleeps)
    sent = hook.send_sms(A, "slow account")
    assert [m.mobile for m in sent] == [A]
    assert [m["mobile"] for m in emulator.messages()] == [A]
    assert sum(sleeps) >= (150 if fault == "drop_before" else 140)


# -- a campaign retry (the resume search confirms the boundary chunk absent over the whole window)


def test_a_campaign_retry_with_a_150s_window_resumes(
    make_qikberry_conn: Callable[..., str], emulator: Any, sleeps: Sleeps
) -> None:
    """Seen failing with the old fixed 120 s deadline: the retry raised QikberryDeliveryUnknownError
    ("Resuming the campaign: the call's retry deadline ended the lookups ...") and never resumed."""
    from airflow_qikberry import campaign as c

    try_1 = ("campaign_dag", "send", "manual__2026-11-28", "-1", "1")
    try_2 = (*try_1[:4], "2")
    numbers = [f"9198765{i:05d}" for i in range(20)]
    hook = QikberryHook(qikberry_conn_id=make_qikberry_conn(reconcile_window=150), clock=sleeps)

    def run(identity: Any) -> dict[str, Any]:
        options = c.CampaignOptions.checked(name="slow-account", has_template=True, chunk_size=2)
        recipients = [{"mobile": n, "name": f"C{i}"} for i, n in enumerate(numbers)]
        return c.run_campaign(
            options,
            source=c.Source("recipients", lambda: c.recipient_rows(recipients)),
            hook=hook,
            render=lambda row: f"Hi {row['name']}, 20% off today",
            identity=identity,
        )

    # Try 1 dies at chunk 4 (refused, nothing accepted from there on).
    emulator.set_faults(
        [{"endpoint": "sms/send/json", "method": "POST", "kind": "error", "status": 501, "after": 4}]
    )
    with pytest.raises(QikberryError):
        run(try_1)
    emulator.clear_faults()
    summary = run(try_2)
    assert (summary["resumed_from_chunk"], summary["accepted"]) == (4, 20)
    sent = Counter(m["mobile"] for m in emulator.messages())
    assert sorted(sent) == sorted(numbers)
    assert set(sent.values()) == {1}
