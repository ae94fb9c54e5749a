"""Typed errors from real emulator responses, retries that never double-send, Retry-After, reconciliation."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from airflow_qikberry.exceptions import (
    QikberryAuthError,
    QikberryDeliveryUnknownError,
    QikberryError,
    QikberryInsufficientBalanceError,
    QikberryRateLimitError,
    QikberryServerError,
    QikberryValidationError,
)
from airflow_qikberry.hooks.qikberry import QikberryHook


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def hook(qikberry_conn: str, sleeps: Sleeps) -> QikberryHook:
    hook = QikberryHook(qikberry_conn_id=qikberry_conn, reconcile_delay=0)
    hook._sleep = sleeps  # retries are recorded, not waited: the assertions are on what the hook decided
    return hook


def sends(emulator: Any) -> int:
    return int(emulator.request_log()["counts"].get("POST sms/send", 0))


# -- errors


def test_bad_token_is_auth_error(make_qikberry_conn: Any) -> None:
    hook = QikberryHook(qikberry_conn_id=make_qikberry_conn("bad", password="not-the-token"))
    with pytest.raises(QikberryAuthError) as info:
        hook.get_balance()
    assert info.value.status_code == 401 and "Token not found" in info.value.message


def test_html_login_page_is_auth_error(make_qikberry_conn: Any) -> None:
    hook = QikberryHook(qikberry_conn_id=make_qikberry_conn("bad", password="not-the-token"))
    del hook.session.headers["Accept"]  # without a JSON Accept header the API redirects to its login page
    with pytest.raises(QikberryAuthError, match="login page"):
        hook.get_balance()


def test_server_side_validation_names_the_field(hook: QikberryHook) -> None:
    with pytest.raises(QikberryValidationError) as info:
        hook.send_sms("919876543210", "hi", webhook_id="no-such-webhook")
    assert info.value.status_code == 422
    assert info.value.field == "webhook_id" and "webhook_id" in info.value.errors


def test_insufficient_balance(hook: QikberryHook, emulator: Any) -> None:
    emulator.configure(credits={"T": 1, "P": 10, "S": 10, "G": 10})
    with pytest.raises(QikberryInsufficientBalanceError) as info:
        hook.send_sms("919876543210", "x" * 200)
    assert info.value.status_code is not None
    assert emulator.messages() == []
    assert sends(emulator) == 1  # a definite rejection is not retried


def test_rate_limit_error_carries_retry_after(hook: QikberryHook, emulator: Any) -> None:
    hook.max_attempts = 1
    emulator.configure(rate_limit_per_minute=2)
    hook.get_balance()
    hook.get_balance()
    with pytest.raises(QikberryRateLimitError) as info:
        hook.get_balance()
    assert info.value.retry_after is not None and info.value.retry_after >= 1


def test_server_error_after_retries(hook: QikberryHook, emulator: Any, sleeps: Sleeps) -> None:
    hook.max_attempts = 3
    emulator.set_faults([{"endpoint": "auth/me", "kind": "error", "status": 500, "times": 10}])
    with pytest.raises(QikberryServerError) as info:
        hook._get("auth/me")
    assert info.value.status_code == 500
    assert emulator.request_log()["counts"]["GET auth/me"] == 3
    assert len(sleeps) == 2


def test_all_errors_share_the_base_class() -> None:
    for cls in (
        QikberryAuthError,
        QikberryValidationError,
        QikberryInsufficientBalanceError,
        QikberryRateLimitError,
        QikberryServerError,
        QikberryDeliveryUnknownError,
    ):
        assert issubclass(cls, QikberryError)


# -- GET retries


def test_get_retries_5xx_then_succeeds(hook: QikberryHook, emulator: Any) -> None:
    emulator.set_faults([{"endpoint": "finance/balance", "kind": "error", "status": 503, "times": 2}])
    assert hook.get_balance()
    assert emulator.request_log()["counts"]["GET finance/balance"] == 3


def test_get_retries_dropped_connections(hook: QikberryHook, emulator: Any) -> None:
    emulator.set_faults([{"endpoint": "auth/me", "kind": "drop_before", "times": 2}])
    ok, _ = hook.test_connection()
    assert ok


def test_retry_after_is_honoured(hook: QikberryHook, emulator: Any, sleeps: Sleeps) -> None:
    emulator.set_faults([{"endpoint": "auth/me", "kind": "rate_limit", "seconds": 7, "times": 1}])
    assert hook.test_connection()[0]
    assert sleeps == [7.0]


def test_retry_after_is_capped(hook: QikberryHook, emulator: Any, sleeps: Sleeps) -> None:
    hook.max_retry_after = 5
    emulator.set_faults([{"endpoint": "auth/me", "kind": "rate_limit", "seconds": 600, "times": 1}])
    assert hook.test_connection()[0]
    assert sleeps == [5.0]


# -- POST sends: never twice


@pytest.mark.parametrize("kind", ["rate_limit", "error_503"])
def test_send_retried_when_provably_not_processed(hook: QikberryHook, emulator: Any, kind: str) -> None:
    fault = {"endpoint": "sms/send", "kind": "rate_limit", "seconds": 1, "times": 2}
    if kind == "error_503":
        fault = {"endpoint": "sms/send", "kind": "error", "status": 503, "times": 2}
    emulator.set_faults([fault])
    sent = hook.send_sms("919876543210", "retry me")
    assert len(sent) == 1
    assert len(emulator.messages()) == 1
    assert sends(emulator) == 3
    assert "GET sms/status" not in emulator.request_log()["counts"]  # no lookup needed: nothing was processed


def test_drop_after_accept_is_reconciled_not_resent(hook: QikberryHook, emulator: Any) -> None:
    emulator.set_faults([{"endpoint": "sms/send", "kind": "drop_after_accept", "times": 1}])
    sent = hook.send_sms(["919876543210", "919876543211"], "exactly once")
    assert sorted(s.mobile for s in sent) == ["919876543210", "919876543211"]
    assert len(emulator.messages()) == 2
    assert sends(emulator) == 1
    assert emulator.request_log()["counts"]["GET sms/status"] == 1


def test_slow_response_past_timeout_is_reconciled(qikberry_conn: str, emulator: Any) -> None:
    hook = QikberryHook(qikberry_conn_id=qikberry_conn, timeout=0.3, reconcile_delay=0)
    hook._sleep = lambda s: None
    emulator.set_faults([{"endpoint": "sms/send", "kind": "slow_response", "seconds": 1.0, "times": 1}])
    sent = hook.send_sms("919876543210", "slow")
    assert len(sent) == 1
    assert len(emulator.messages()) == 1  # (the slow request is logged only once its late answer is written)
    assert emulator.request_log()["counts"]["GET sms/status"] == 1


@pytest.mark.parametrize(
    "fault",
    [
        {"endpoint": "sms/send", "kind": "drop_before", "times": 1},
        {"endpoint": "sms/send", "kind": "error", "status": 500, "times": 1},
    ],
)
def test_ambiguous_failure_without_record_is_resent_once(
    hook: QikberryHook, emulator: Any, fault: dict[str, Any]
) -> None:
    emulator.set_faults([fault])
    sent = hook.send_sms("919876543210", "resend me")
    assert len(sent) == 1
    assert len(emulator.messages()) == 1
    assert sends(emulator) == 2
    assert emulator.request_log()["counts"]["GET sms/status"] == 1


def test_unknown_outcome_when_lookup_fails(hook: QikberryHook, emulator: Any) -> None:
    hook.max_attempts = 2
    emulator.set_faults(
        [
            {"endpoint": "sms/send", "kind": "drop_after_accept", "times": 1},
            {"endpoint": "sms/status", "kind": "error", "status": 500, "times": 10},
        ]
    )
    with pytest.raises(QikberryDeliveryUnknownError) as info:
        hook.send_sms(["919876543210", "919876543211"], "who knows", custom_id="maybe-1")
    assert info.value.numbers == ["919876543210", "919876543211"]
    assert info.value.custom_id == "maybe-1"
    assert sends(emulator) == 1  # never resent blindly


def test_batch_drop_after_accept_is_reconciled(hook: QikberryHook, emulator: Any) -> None:
    emulator.set_faults([{"endpoint": "sms/send/json", "kind": "drop_after_accept", "times": 1}])
    nodes = [{"to": f"91987654{i:04d}", "message": f"hello {i}"} for i in range(120)]
    result = hook.send_batch(nodes, name="reconciled")
    assert result.accepted == 120 and result.group_id
    assert len(emulator.messages()) == 120
    assert emulator.request_log()["counts"]["POST sms/send/json"] == 1


def test_bulk_drop_before_is_resent_from_the_start(hook: QikberryHook, emulator: Any, tmp_path: Any) -> None:
    path = tmp_path / "numbers.txt"
    path.write_text("\n".join(f"91987654{i:04d}" for i in range(50)) + "\n")
    emulator.set_faults([{"endpoint": "sms/bulk", "kind": "drop_before", "times": 1}])
    assert hook.upload_bulk(path, "bulk hello") == 50
    assert len(emulator.messages()) == 50


def test_bulk_drop_after_accept_is_reconciled(hook: QikberryHook, emulator: Any, tmp_path: Any) -> None:
    path = tmp_path / "numbers.txt"
    path.write_text("\n".join(f"91987654{i:04d}" for i in range(30)) + "\n")
    emulator.set_faults([{"endpoint": "sms/bulk", "kind": "drop_after_accept", "times": 1}])
    assert hook.upload_bulk(path, "bulk once") == 30
    assert len(emulator.messages()) == 30
    assert emulator.request_log()["counts"]["POST sms/bulk"] == 1


def test_random_faults_never_duplicate_or_lose(qikberry_conn: str, emulator: Any) -> None:
    hook = QikberryHook(qikberry_conn_id=qikberry_conn, reconcile_delay=0, max_attempts=8)
    hook._sleep = lambda s: None
    emulator.set_faults(
        [
            {"endpoint": "sms/send", "kind": "drop_after_accept", "probability": 0.08},
            {"endpoint": "sms/send", "kind": "drop_before", "probability": 0.05},
            {"endpoint": "sms/send", "kind": "error", "status": 503, "probability": 0.05},
            {"endpoint": "sms/send", "kind": "error", "status": 500, "probability": 0.05},
            {"endpoint": "sms/send", "kind": "rate_limit", "seconds": 1, "probability": 0.05},
        ]
    )
    results = [hook.send_sms(f"91987650{i:04d}", f"message {i}") for i in range(150)]
    assert all(len(r) == 1 for r in results)
    per_number = Counter(m["mobile"] for m in emulator.messages())
    assert len(per_number) == 150 and set(per_number.values()) == {1}
    counts = emulator.request_log()["counts"]
    assert counts["POST sms/send"] > 150  # faults really happened


def test_reused_custom_id_matching_part_of_a_send_is_unknown(hook: QikberryHook, emulator: Any) -> None:
    hook.send_sms("919876543210", "first", custom_id="reused")
    emulator.set_faults([{"endpoint": "sms/send", "kind": "drop_before", "times": 1}])
    with pytest.raises(QikberryDeliveryUnknownError, match="only some of the numbers") as info:
        hook.send_sms(["919876543210", "919876543211"], "second", custom_id="reused")
    assert info.value.numbers == ["919876543211"]
    assert len(emulator.messages()) == 1  # nothing guessed, nothing resent
