"""Typed errors from real emulator responses, retries that never double-send, Retry-After, reconciliation."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_qikberry.exceptions import (
    QikberryAuthError,
    QikberryConnectionError,
    QikberryDeliveryUnknownError,
    QikberryError,
    QikberryInsufficientBalanceError,
    QikberryRateLimitError,
    QikberryServerError,
    QikberryValidationError,
)
from airflow_qikberry.hooks.qikberry import QikberryHook
from airflow_qikberry.protocol import parse_response
from airflow_qikberry.transport.base import RawResponse
from tests.helpers import NoWaits, Sleeps, api_counts, count


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def hook(qikberry_conn: str, sleeps: Sleeps) -> QikberryHook:
    # Retries are recorded, not waited: the assertions are on what the hook decided.
    hook = QikberryHook(qikberry_conn_id=qikberry_conn, reconcile_delay=0, clock=sleeps)
    return hook


def sends(emulator: Any) -> int:
    return int(emulator.request_log()["counts"].get("POST sms/send", 0))


# -- errors


def test_bad_token_is_auth_error(make_qikberry_conn: Any) -> None:
    hook = QikberryHook(qikberry_conn_id=make_qikberry_conn("bad", password="not-the-token"))
    with pytest.raises(QikberryAuthError) as info:
        hook.get_balance()
    assert info.value.status_code == 401
    assert "Token not found" in info.value.message


def test_html_login_page_is_auth_error(make_qikberry_conn: Any) -> None:
    hook = QikberryHook(qikberry_conn_id=make_qikberry_conn("bad", password="not-the-token"))
    del hook.session.headers["Accept"]  # without a JSON Accept header the API redirects to its login page
    with pytest.raises(QikberryAuthError, match="login page"):
        hook.get_balance()


def test_server_side_validation_names_the_field(hook: QikberryHook) -> None:
    with pytest.raises(QikberryValidationError) as info:
        hook.send_sms("919876543210", "hi", webhook_id="no-such-webhook")
    assert info.value.status_code == 422
    assert info.value.field == "webhook_id"
    assert "webhook_id" in info.value.errors


def test_insufficient_balance(hook: QikberryHook, emulator: Any) -> None:
    emulator.configure(credits={"T": 1, "P": 10, "S": 10, "G": 10})
    with pytest.raises(QikberryInsufficientBalanceError) as info:
        hook.send_sms("919876543210", "x" * 200)
    assert info.value.status_code is not None
    assert emulator.messages() == []
    assert sends(emulator) == 1  # a definite rejection is not retried


def test_rate_limit_error_carries_retry_after(hook: QikberryHook, emulator: Any) -> None:
    hook.policy.max_attempts = 1
    emulator.configure(rate_limit_per_minute=2)
    hook.get_balance()
    hook.get_balance()
    with pytest.raises(QikberryRateLimitError) as info:
        hook.get_balance()
    assert info.value.retry_after is not None
    assert info.value.retry_after >= 1


def test_server_error_after_retries(hook: QikberryHook, emulator: Any, sleeps: Sleeps) -> None:
    hook.policy.max_attempts = 3
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
    hook.policy.max_retry_after = 5
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
    hook = QikberryHook(qikberry_conn_id=qikberry_conn, timeout=0.3, reconcile_delay=0, clock=NoWaits())
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
    hook: QikberryHook, emulator: Any, sleeps: Sleeps, fault: dict[str, Any]
) -> None:
    emulator.set_faults([fault])
    sent = hook.send_sms("919876543210", "resend me")
    assert len(sent) == 1
    assert [m["custom"] for m in emulator.messages()] == [sent[0].custom_id]
    assert sends(emulator) == 2
    # Resent only after looking for the whole 30 s window (first lookup at once: reconcile_delay=0).
    assert emulator.request_log()["counts"]["GET sms/status"] == 7
    assert sum(sleeps[:6]) == pytest.approx(30 - 0.25)


def test_unknown_outcome_when_lookup_fails(hook: QikberryHook, emulator: Any) -> None:
    hook.policy.max_attempts = 2
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
    assert result.accepted == 120
    assert result.group_id
    assert len(emulator.messages()) == 120
    assert emulator.request_log()["counts"]["POST sms/send/json"] == 1


def test_bulk_drop_after_accept_is_reconciled(hook: QikberryHook, emulator: Any, tmp_path: Any) -> None:
    path = tmp_path / "numbers.txt"
    path.write_text("\n".join(f"91987654{i:04d}" for i in range(30)) + "\n")
    emulator.set_faults([{"endpoint": "sms/bulk", "kind": "drop_after_accept", "times": 1}])
    assert hook.upload_bulk(path, "bulk once") == 30
    assert len(emulator.messages()) == 30
    assert emulator.request_log()["counts"]["POST sms/bulk"] == 1


def test_random_faults_never_duplicate_or_lose(qikberry_conn: str, emulator: Any) -> None:
    hook = QikberryHook(qikberry_conn_id=qikberry_conn, reconcile_delay=0, max_attempts=8, clock=NoWaits())
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
    assert len(per_number) == 150
    assert set(per_number.values()) == {1}
    counts = emulator.request_log()["counts"]
    assert counts["POST sms/send"] > 150  # faults really happened


def test_reused_custom_id_matching_part_of_a_send_is_unknown(hook: QikberryHook, emulator: Any) -> None:
    hook.send_sms("919876543210", "first", custom_id="reused")
    emulator.set_faults([{"endpoint": "sms/send", "kind": "drop_before", "times": 1}])
    with pytest.raises(QikberryDeliveryUnknownError, match="shows 1 of the 2 messages sent") as info:
        hook.send_sms(["919876543210", "919876543211"], "second", custom_id="reused")
    assert info.value.custom_id == "reused"
    assert len(emulator.messages()) == 1  # nothing guessed, nothing resent
    assert sends(emulator) == 2


def test_partial_match_names_only_the_numbers_not_found(hook: QikberryHook, emulator: Any) -> None:
    # The error's numbers are those without a row: rows found for the others read as accepted (here the
    # row is an earlier send's, which the hook cannot tell apart within clock_skew).
    hook.send_sms("919876543210", "first", custom_id="reused")
    emulator.set_faults([{"endpoint": "sms/send", "kind": "drop_before", "times": 1}])
    with pytest.raises(QikberryDeliveryUnknownError) as info:
        hook.send_sms(["919876543210", "919876543211"], "second", custom_id="reused")
    assert info.value.numbers == ["919876543211"]


# -- retries are bounded and aimed


@pytest.fixture
def timed_hook(qikberry_conn: str, emulator: Any) -> Callable[..., tuple[QikberryHook, Sleeps]]:
    """A hook whose waits are recorded and spend its deadline (``retry_deadline`` runs on them)."""

    def make(conn_id: str = qikberry_conn, **kwargs: Any) -> tuple[QikberryHook, Sleeps]:
        sleeps = Sleeps(emulator)
        hook = QikberryHook(qikberry_conn_id=conn_id, clock=sleeps, **kwargs)
        return hook, sleeps

    return make


@pytest.mark.parametrize(("call", "endpoint"), [("get", "finance/balance"), ("send", "sms/send")])
def test_retry_deadline_bounds_retry_after_waits(
    timed_hook: Callable[..., tuple[QikberryHook, Sleeps]], emulator: Any, call: str, endpoint: str
) -> None:
    hook, sleeps = timed_hook(retry_deadline=70)  # the least a 30 s window and 30 s timeout allow
    emulator.set_faults([{"endpoint": endpoint, "kind": "rate_limit", "seconds": 50, "times": 5}])
    with pytest.raises(QikberryRateLimitError) as info:
        hook.get_balance() if call == "get" else hook.send_sms("919876543210", "later")
    # One 50 s wait fits in the 70 s deadline, a second would not: give up instead of starting it.
    assert sleeps == [50.0]
    assert info.value.retry_after == 50
    assert count(emulator, ("GET " if call == "get" else "POST ") + endpoint) == 2
    assert emulator.messages() == []


@pytest.mark.parametrize("status", [408, 520, 521, 522, 523, 524])
def test_timeouts_and_proxy_errors_are_retried_on_gets(
    timed_hook: Callable[..., tuple[QikberryHook, Sleeps]], emulator: Any, status: int
) -> None:
    hook, sleeps = timed_hook()
    emulator.set_faults([{"endpoint": "finance/balance", "kind": "error", "status": status, "times": 2}])
    assert hook.get_balance(service="T")[0].service == "T"
    assert count(emulator, "GET finance/balance") == 3
    assert len(sleeps) == 2


@pytest.mark.parametrize("status", [408, 520, 521, 522, 523, 524])
def test_timeouts_and_proxy_errors_on_a_send_are_reconciled(
    timed_hook: Callable[..., tuple[QikberryHook, Sleeps]], emulator: Any, status: int
) -> None:
    # 408 and the 52x proxy family may come after the API accepted the send: look before resending. (The
    # emulator's "error" fault answers before processing, so here the window closes with nothing found.)
    hook, sleeps = timed_hook(reconcile_window=3)
    emulator.set_faults([{"endpoint": "sms/send", "kind": "error", "status": status, "times": 1}])
    sent = hook.send_sms("919876543210", "maybe")
    assert sleeps[:2] == [1.0, 2.0]
    assert count(emulator, "GET sms/status") == 2
    assert count(emulator, "POST sms/send") == 2
    assert [m["custom"] for m in emulator.messages()] == [sent[0].custom_id]


@pytest.mark.parametrize("status", [501, 505])
def test_requests_that_can_never_work_fail_at_once(
    timed_hook: Callable[..., tuple[QikberryHook, Sleeps]], emulator: Any, status: int
) -> None:
    hook, sleeps = timed_hook()
    emulator.set_faults(
        [
            {"endpoint": "finance/balance", "kind": "error", "status": status, "times": 5},
            {"endpoint": "sms/send", "kind": "error", "status": status, "times": 5},
        ]
    )
    with pytest.raises(QikberryServerError) as info:
        hook.get_balance()
    assert info.value.status_code == status
    with pytest.raises(QikberryServerError):
        hook.send_sms("919876543210", "never")
    assert sleeps == []
    assert count(emulator, "GET finance/balance") == 1
    assert count(emulator, "POST sms/send") == 1
    assert count(emulator, "GET sms/status") == 0


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[SimpleNamespace]:
    """A TLS server on 127.0.0.1 with a self-signed certificate, counting the connections it accepts."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    connections: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connections.append("accepted")
            conn.settimeout(5)
            try:
                with context.wrap_socket(conn, server_side=True) as tls:  # the client refuses the cert
                    tls.recv(1)
            except OSError:
                pass
            finally:
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    try:
        yield SimpleNamespace(url=f"https://127.0.0.1:{port}/api/v2/", connections=connections)
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@pytest.mark.parametrize("call", ["get", "send"])
def test_tls_verification_failure_fails_at_once(
    timed_hook: Callable[..., tuple[QikberryHook, Sleeps]],
    make_qikberry_conn: Callable[..., str],
    tls_server: SimpleNamespace,
    monkeypatch: pytest.MonkeyPatch,
    call: str,
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    hook, sleeps = timed_hook(make_qikberry_conn("self_signed", host=tls_server.url))
    with pytest.raises(QikberryConnectionError) as info:
        hook.get_balance() if call == "get" else hook.send_sms("919876543210", "never over bad TLS")
    assert not info.value.retryable
    assert "TLS verification failed" in info.value.message
    assert "REQUESTS_CA_BUNDLE" in info.value.message
    assert sleeps == []  # no retry wait, and for a send no reconcile lookup
    assert tls_server.connections == ["accepted"]  # one attempt


@pytest.mark.parametrize(
    "host", ["http://exa mple.com/api/v2/", "http://127.0.0.1:99999/api/v2/", "http:///api/v2/"]
)
@pytest.mark.parametrize("call", ["get", "send"])
def test_invalid_url_fails_at_once(
    timed_hook: Callable[..., tuple[QikberryHook, Sleeps]],
    make_qikberry_conn: Callable[..., str],
    emulator: Any,
    host: str,
    call: str,
) -> None:
    hook, sleeps = timed_hook(make_qikberry_conn("invalid_url", host=host))
    with pytest.raises((QikberryConnectionError, QikberryValidationError)) as info:
        hook.get_balance() if call == "get" else hook.send_sms("919876543210", "nowhere")
    # Either refused when the connection is read (a validation error on "host") or by the HTTP library,
    # but never retried: no wait, and for a send no reconcile lookup.
    error = info.value
    if isinstance(error, QikberryValidationError):
        assert error.field == "host"
    else:
        assert isinstance(error, QikberryConnectionError)
        assert not error.retryable
        assert "fix the connection's host" in error.message
    assert sleeps == []
    assert api_counts(emulator) == {}


def test_non_http_scheme_is_refused_before_any_request(
    timed_hook: Callable[..., tuple[QikberryHook, Sleeps]], make_qikberry_conn: Callable[..., str]
) -> None:
    hook, sleeps = timed_hook(make_qikberry_conn("ftp", host="ftp://alerts.qikberry.com/api/v2/"))
    with pytest.raises(QikberryValidationError) as info:
        hook.send_sms("919876543210", "never")
    assert info.value.field == "host"
    assert "'ftp'" in info.value.message
    assert sleeps == []


def test_unsplittable_url_is_a_typed_error(
    timed_hook: Callable[..., tuple[QikberryHook, Sleeps]], make_qikberry_conn: Callable[..., str]
) -> None:
    # An unclosed IPv6 bracket: urllib cannot even split it (once escaped as a bare ValueError).
    hook, sleeps = timed_hook(make_qikberry_conn("bad_ipv6", host="http://[::1/api/v2/"))
    with pytest.raises(QikberryValidationError) as info:
        hook.get_balance()
    assert info.value.field == "host"
    assert sleeps == []


def test_5xx_html_page_with_a_login_link_is_a_server_error() -> None:
    # The emulator's error faults always answer JSON, so it cannot serve a proxy's HTML error page: the
    # mapping every transport uses is tested directly.
    page = (
        "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1>"
        '<p>Try again, or <a href="https://portal.mobtexting.com/login">log in</a>.</p>'
        '<form action="/login"><input type="password" name="password"></form></body></html>'
    )
    headers = {"Content-Type": "text/html"}
    for status in (500, 502, 503, 504, 522):
        with pytest.raises(QikberryServerError) as info:
            parse_response(status, page, headers)
        assert not isinstance(info.value, QikberryAuthError)
        assert info.value.status_code == status
        error = RawResponse(status, page, headers).error()  # what a send's classification raises
        assert type(error) is QikberryServerError
        assert error.status_code == status
    # The same page answered with 200 (a followed redirect to the portal) is the bad-token signal.
    with pytest.raises(QikberryAuthError):
        parse_response(200, page, headers)


def test_https_to_a_plain_http_server_fails_at_once(
    timed_hook: Callable[..., tuple[QikberryHook, Sleeps]],
    make_qikberry_conn: Callable[..., str],
    emulator: Any,
) -> None:
    # A TLS handshake with a server that answers plain HTTP can never succeed: no retries, no waits.
    host = emulator.base_url.replace("http://", "https://")
    hook, sleeps = timed_hook(make_qikberry_conn("tls_to_plain", host=host))
    with pytest.raises(QikberryConnectionError, match="does not speak TLS") as info:
        hook.get_balance()
    assert info.value.retryable is False
    assert sleeps == []


def test_reconcile_window_must_be_positive(qikberry_conn: str) -> None:
    with pytest.raises(QikberryValidationError) as info:
        QikberryHook(qikberry_conn_id=qikberry_conn, reconcile_window=0)
    assert info.value.field == "reconcile_window"
