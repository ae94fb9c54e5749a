"""Secret hygiene in both auth modes, connection parsing, custom ids, rate limiting, the connection form."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
import types
from typing import Any

import pytest

from airflow_qikberry.connection import ConnectionSettings
from airflow_qikberry.exceptions import QikberryError, QikberryValidationError
from airflow_qikberry.get_provider_info import CONN_FIELDS
from airflow_qikberry.hooks.qikberry import QikberryHook
from airflow_qikberry.idempotency import derive_custom_id
from airflow_qikberry.protocol import redact
from tests.helpers import TEST_TOKEN, NoWaits, all_log_text, count, fake_task_identity


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    hook = QikberryHook(qikberry_conn_id=conn_id, reconcile_delay=0, max_attempts=2, clock=NoWaits())
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
        clock=NoWaits(),
    )
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


def test_query_tokens_are_redacted_in_urllib3_debug_logs(
    make_qikberry_conn: Any, emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="urllib3.connectionpool")
    hook = QikberryHook(qikberry_conn_id=make_qikberry_conn("query_mode", auth_in="query"))
    hook.get_status(custom_id="cid-1")
    hook.get_balance()
    logged = [r.getMessage() for r in caplog.records if r.name == "urllib3.connectionpool"]
    request_lines = [line for line in logged if "GET /api/v2/" in line]
    assert len(request_lines) == 2, logged  # urllib3 did log both request URLs, query string included
    assert all("access_token=***" in line for line in request_lines)
    assert not any(TEST_TOKEN in line for line in logged)
    # The token itself still went out in the query: the emulator authenticated both requests.
    assert count(emulator, "GET sms/status") == 1
    assert count(emulator, "GET finance/balance") == 1


LOG_FILTER_PROBE = """
import json, logging
from airflow_qikberry.hooks.qikberry import QikberryHook

pool = logging.getLogger("urllib3.connectionpool")

def ours():
    return [f for f in pool.filters if type(f).__module__.startswith("airflow_qikberry.")]

after_import = len(ours())
ok, _ = QikberryHook(qikberry_conn_id="qikberry_default").test_connection()
print(json.dumps({"after_import": after_import, "after_request": len(ours()), "ok": ok}))
"""


def test_urllib3_log_filter_is_installed_by_a_transport_not_at_import(
    qikberry_conn: str, emulator: Any
) -> None:
    # A fresh interpreter: in this one an earlier test's hook has installed the filter already.
    result = subprocess.run(
        [sys.executable, "-c", LOG_FILTER_PROBE],
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ),  # the Airflow home and AIRFLOW_CONN_QIKBERRY_DEFAULT of this test
        check=False,
    )
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe == {"after_import": 0, "after_request": 1, "ok": True}
    assert count(emulator, "GET auth/me") == 1


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
    assert s.timeout == 12
    assert s.rate_limit_per_minute == 300
    assert s.default_region == "IN"
    assert hook.transport.timeouts == (10.0, 12.0)
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
    import re

    ids = {derive_custom_id("fp") for _ in range(1000)}
    assert len(ids) == 1000
    # The form of a derived id inside a task too: "af-" and 24 hex digits (96 random bits outside one).
    assert all(re.fullmatch(r"af-[0-9a-f]{24}", cid) for cid in ids)


def test_custom_id_inside_a_task_repeats_on_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    identity = ["dag", "task", "run-1", "-1", "1"]
    fake_task_identity(monkeypatch, lambda: tuple(identity))
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
    fake_task_identity(monkeypatch, lambda: tuple(identity))
    hook = QikberryHook(qikberry_conn_id=qikberry_conn)
    first = hook.send_sms("919876543210", "once per run")
    identity[4] = "2"  # the task failed after sending and Airflow retries it
    second = QikberryHook(qikberry_conn_id=qikberry_conn).send_sms("919876543210", "once per run")
    assert [s.message_id for s in second] == [s.message_id for s in first]
    assert len(emulator.messages()) == 1


# -- connection form for Airflow < 3.2


def test_connection_form_widgets_match_conn_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wtforms")
    if importlib.util.find_spec("flask_appbuilder") is None:
        # Flask-AppBuilder only exists next to Airflow 2.x's UI and cannot be installed beside Airflow 3.3:
        # stand-ins for its two imported names let the real WTForms fields be built and checked. (The 2.11
        # run uses the real ones, and tests/test_connection_form_af2.py drives Airflow 2's own form.)
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
