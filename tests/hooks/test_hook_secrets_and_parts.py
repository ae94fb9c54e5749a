"""Secret hygiene in both auth modes, connection parsing, custom ids, rate limiting, the connection form."""

from __future__ import annotations

import logging
import socket
import sys
import types
from typing import Any

import pytest

from airflow_qikberry import _ratelimit
from airflow_qikberry._ratelimit import TokenBucket, bucket_for
from airflow_qikberry.exceptions import QikberryError, QikberryValidationError
from airflow_qikberry.get_provider_info import CONN_FIELDS
from airflow_qikberry.hooks import qikberry as hook_module
from airflow_qikberry.hooks.qikberry import ConnectionSettings, QikberryHook, derive_custom_id, redact
from tests.helpers import TEST_TOKEN


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def all_log_text(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> str:
    # Airflow 3 routes hook loggers through structlog to the console, other libraries through logging.
    out, err = capfd.readouterr()
    return "\n".join([caplog.text, *(r.getMessage() for r in caplog.records), out, err])


@pytest.mark.parametrize("auth_in", ["header", "query"])
def test_token_never_in_logs_or_errors(
    auth_in: str,
    make_qikberry_conn: Any,
    emulator: Any,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3 logs request URLs, query string included, at DEBUG
    conn_id = make_qikberry_conn("secrets", auth_in=auth_in)
    hook = QikberryHook(qikberry_conn_id=conn_id, reconcile_delay=0, max_attempts=2)
    hook._sleep = lambda s: None
    hook.send_sms("919876543210", "hello")
    hook.get_status(custom_id="x")
    hook.get_balance()
    emulator.set_faults([{"endpoint": "sms/send", "kind": "drop_after_accept", "times": 1}])
    hook.send_sms("919876543211", "dropped")
    errors: list[str] = []
    # A closed port: requests raises ConnectionError whose text carries the full URL (and a query token).
    dead = QikberryHook(
        qikberry_conn_id=make_qikberry_conn(
            "dead", host=f"http://127.0.0.1:{free_port()}/api/v2/", auth_in=auth_in
        ),
        max_attempts=2,
    )
    dead._sleep = lambda s: None
    for call in (lambda: dead.get_balance(), lambda: dead.send_sms("919876543210", "x")):
        with pytest.raises(QikberryError) as info:
            call()
        errors.append(str(info.value))
        errors.append(repr(info.value.__cause__) + repr(info.value.__context__))
    errors.append(dead.test_connection()[1])
    errors.append(repr(hook.settings))
    assert "ConnectionError" in errors[0] or "Connection" in errors[0]
    if auth_in == "query":
        assert any("access_token" in r.getMessage() for r in caplog.records), "test must see query URLs"
    logged = all_log_text(caplog, capfd)
    assert "Outcome of POST sms/send unknown" in logged  # the ambiguous path really logged
    for text in [*errors, logged]:
        assert TEST_TOKEN not in text


def test_phone_numbers_are_masked_in_info_logs(
    qikberry_conn: str, emulator: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO)
    QikberryHook(qikberry_conn_id=qikberry_conn).send_sms("919876543210", "hi")
    logged = all_log_text(caplog, capfd)
    assert "Sending SMS to 1 number(s) [9198XXXXX210]" in logged
    assert "919876543210" not in logged


def test_redact() -> None:
    url = "http://h/api/v2/sms/status?cid=1&access_token=abc123&page=2"
    assert redact(url) == "http://h/api/v2/sms/status?cid=1&access_token=***&page=2"
    assert redact("token s3cr3t here", "s3cr3t") == "token *** here"


def test_tls_verification_on_unless_turned_off(
    make_qikberry_conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    assert QikberryHook(qikberry_conn_id=make_qikberry_conn("a")).session.verify is True
    assert QikberryHook(qikberry_conn_id=make_qikberry_conn("b", verify_ssl=False)).session.verify is False
    # A CA bundle from the environment still verifies (as requests would), it just names the trust store.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    assert QikberryHook(qikberry_conn_id=make_qikberry_conn("c")).session.verify == (
        "/etc/ssl/certs/ca-certificates.crt"
    )
    assert QikberryHook(qikberry_conn_id=make_qikberry_conn("d", verify_ssl=False)).session.verify is False


def test_proxy_environment_is_honoured_except_for_no_proxy(
    make_qikberry_conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    remote = QikberryHook(
        qikberry_conn_id=make_qikberry_conn("r", host="https://alerts.qikberry.com/api/v2/")
    )
    assert remote.session.proxies.get("https") == "http://proxy.invalid:3128"
    local = QikberryHook(qikberry_conn_id=make_qikberry_conn("l"))
    assert not local.session.proxies


def test_connection_settings_parsing(make_qikberry_conn: Any) -> None:
    hook = QikberryHook(qikberry_conn_id=make_qikberry_conn("c", timeout=12, rate_limit_per_minute=300))
    s = hook.settings
    assert s.timeout == 12 and s.rate_limit_per_minute == 300 and s.default_region == "IN"
    assert hook._timeouts == (10.0, 12.0)
    assert TEST_TOKEN not in repr(s)
    with pytest.raises(QikberryValidationError) as info:
        _ = QikberryHook(qikberry_conn_id=make_qikberry_conn("d", auth_in="cookie")).settings
    assert info.value.field == "auth_in"
    with pytest.raises(QikberryValidationError) as info:
        _ = QikberryHook(qikberry_conn_id=make_qikberry_conn("e", password=None)).settings
    assert info.value.field == "password"


def test_base_url_from_uri_style_connection() -> None:
    conn = types.SimpleNamespace(
        conn_id="x", host="alerts.example.com", port=8443, schema="", password="t", extra_dejson={}
    )
    assert ConnectionSettings.from_connection(conn).base_url == "https://alerts.example.com:8443/api/v2/"
    conn.host = ""
    assert ConnectionSettings.from_connection(conn).base_url == "https://alerts.qikberry.com/api/v2/"


# -- custom ids


def test_custom_id_outside_a_task_is_unique_per_call() -> None:
    assert derive_custom_id("fp") != derive_custom_id("fp")


def test_custom_id_inside_a_task_repeats_on_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    identity = ["dag", "task", "run-1", "-1", "1"]
    monkeypatch.setattr(hook_module, "_task_identity", lambda: tuple(identity))
    first_try = [derive_custom_id("fp-a"), derive_custom_id("fp-a"), derive_custom_id("fp-b")]
    identity[4] = "2"
    second_try = [derive_custom_id("fp-a"), derive_custom_id("fp-a"), derive_custom_id("fp-b")]
    assert first_try == second_try
    assert len(set(first_try)) == 3  # the same text sent twice in one try gets two ids
    identity[2] = "run-2"
    assert derive_custom_id("fp-a") not in first_try


def test_retry_of_task_does_not_resend(
    qikberry_conn: str, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity = ["dag", "task", "run-1", "-1", "1"]
    monkeypatch.setattr(hook_module, "_task_identity", lambda: tuple(identity))
    hook = QikberryHook(qikberry_conn_id=qikberry_conn)
    first = hook.send_sms("919876543210", "once per run")
    identity[4] = "2"  # the task failed after sending and Airflow retries it
    second = QikberryHook(qikberry_conn_id=qikberry_conn).send_sms("919876543210", "once per run")
    assert [s.message_id for s in second] == [s.message_id for s in first]
    assert len(emulator.messages()) == 1


# -- rate limiting


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_token_bucket_waits_instead_of_failing() -> None:
    clock = FakeClock()
    bucket = TokenBucket(600, burst=5, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        assert bucket.acquire() == 0
    assert bucket.acquire() == pytest.approx(0.1)
    assert bucket.acquire() == pytest.approx(0.1)
    clock.now += 10
    assert bucket.acquire() == 0


def test_token_bucket_holds_rate_over_a_minute() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, clock=clock, sleep=clock.sleep)
    for _ in range(3000):
        bucket.acquire()
    # 3000 calls at 1000/min with a burst of 100: (3000 - 100) / 1000 minutes of waiting.
    assert clock.now == pytest.approx(174.0, rel=1e-6)


def test_token_bucket_is_thread_safe() -> None:
    import threading

    clock = FakeClock()
    bucket = TokenBucket(60, burst=100, clock=clock, sleep=lambda s: None)
    delays: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            d = bucket.reserve()
            with lock:
                delays.append(d)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 200 reservations, 100 free: the other 100 queue at 1 s each, every slot handed out exactly once.
    assert sorted(round(d) for d in delays if d > 0) == list(range(1, 101))


def test_hooks_on_one_token_share_a_bucket(make_qikberry_conn: Any) -> None:
    a = QikberryHook(qikberry_conn_id=make_qikberry_conn("a1"))
    b = QikberryHook(qikberry_conn_id=make_qikberry_conn("b1"))
    other = QikberryHook(qikberry_conn_id=make_qikberry_conn("c1", password="another-token"))
    assert a._bucket is b._bucket
    assert a._bucket is not other._bucket
    assert all(TEST_TOKEN not in "".join(key) for key in _ratelimit._buckets)
    assert bucket_for("u", "t", 10).rate_per_minute == 10


def test_hook_gets_are_rate_limited(make_qikberry_conn: Any, emulator: Any) -> None:
    hook = QikberryHook(qikberry_conn_id=make_qikberry_conn("slowrate", rate_limit_per_minute=60))
    clock = FakeClock()
    hook._bucket._clock = clock
    hook._bucket._sleep = clock.sleep
    hook._bucket._updated = 0.0
    for _ in range(12):
        hook.test_connection()
    assert clock.slept == pytest.approx([1.0] * 6)  # a burst of 6 (a tenth of 60/min), then one per second


# -- connection form for Airflow < 3.2


def test_connection_form_widgets_match_conn_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wtforms")
    # Flask-AppBuilder only exists next to Airflow 2.x's UI and cannot be installed beside Airflow 3.3:
    # stand-ins for its two imported names let the real WTForms fields be built and checked.
    fab = types.ModuleType("flask_appbuilder.fieldwidgets")
    fab.BS3TextFieldWidget = type("BS3TextFieldWidget", (), {})  # type: ignore[attr-defined]
    babel = types.ModuleType("flask_babel")
    babel.lazy_gettext = lambda text: text  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "flask_appbuilder", types.ModuleType("flask_appbuilder"))
    monkeypatch.setitem(sys.modules, "flask_appbuilder.fieldwidgets", fab)
    monkeypatch.setitem(sys.modules, "flask_babel", babel)
    widgets = QikberryHook.get_connection_form_widgets()
    assert set(widgets) == set(CONN_FIELDS)
    assert type(widgets["verify_ssl"]).__name__ == "UnboundField"
    behaviour = QikberryHook.get_ui_field_behaviour()
    assert behaviour["relabeling"]["password"] == "Access token"
    assert "login" in behaviour["hidden_fields"]


def test_reading_the_connection_registers_the_token_with_the_masker(make_qikberry_conn: Any) -> None:
    from airflow.providers.common.compat.sdk import redact as airflow_redact

    token = "fresh-token-never-seen-9f3a"
    hook = QikberryHook(qikberry_conn_id=make_qikberry_conn("masked", password=token))
    assert token in str(airflow_redact(f"value {token}"))  # not known to the masker before the read
    _ = hook.settings
    assert token not in str(airflow_redact(f"value {token}"))
