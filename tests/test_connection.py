"""The `qikberry` connection: extras parsed and checked before any request (pure: no server needed)."""

from __future__ import annotations

import types
from typing import Any

import pytest

from airflow_qikberry.connection import ConnectionSettings
from airflow_qikberry.exceptions import QikberryValidationError


def settings(host: str | None = "http://127.0.0.1:8055/api/v2/", **extra: Any) -> ConnectionSettings:
    conn = types.SimpleNamespace(
        conn_id="c", host=host, port=None, schema=None, password="tok-123456", extra_dejson=extra
    )
    return ConnectionSettings.from_connection(conn)


def test_defaults() -> None:
    s = settings()
    assert (s.check_dlt_sender, s.reconcile_window, s.api_timezone, s.verify_ssl) == (
        True,
        30.0,
        "Asia/Kolkata",
        True,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("false", False),
        ("0", False),
        ("no", False),
        ("True", True),
        ("1", True),
    ],
)
def test_boolean_extras(value: object, expected: bool) -> None:
    assert settings(check_dlt_sender=value).check_dlt_sender is expected
    assert settings(verify_ssl=value).verify_ssl is expected


def test_a_boolean_extra_that_is_not_a_boolean_is_refused() -> None:
    # "flase" would otherwise quietly mean True (or False): neither is what the user meant.
    with pytest.raises(QikberryValidationError) as info:
        settings(verify_ssl="flase")
    assert info.value.field == "verify_ssl"


def test_reconcile_window_and_timezone() -> None:
    s = settings(reconcile_window="45", api_timezone="UTC")
    assert (s.reconcile_window, s.api_timezone) == (45.0, "UTC")
    with pytest.raises(QikberryValidationError) as info:
        settings(reconcile_window=0)
    assert info.value.field == "reconcile_window"
    with pytest.raises(QikberryValidationError) as info:
        settings(api_timezone="Mars/Olympus")
    assert info.value.field == "api_timezone"


@pytest.mark.parametrize("host", ["ftp://alerts.example.com/api/v2/", "file:///etc/passwd"])
def test_non_http_base_url_is_refused_up_front(host: str) -> None:
    with pytest.raises(QikberryValidationError) as info:
        settings(host=host)
    assert info.value.field == "host"


@pytest.mark.parametrize(
    "name", ["timeout", "reconcile_window", "rate_limit_per_minute", "templates_cache_seconds"]
)
@pytest.mark.parametrize("value", ["nan", "inf", float("nan"), True, "-1", "ten", [30]])
def test_a_numeric_extra_that_is_not_a_finite_number_is_refused(name: str, value: object) -> None:
    # NaN passed "not <= 0" as a positive timeout, and JSON true read as 1 s; infinity waited forever.
    with pytest.raises(QikberryValidationError) as info:
        settings(**{name: value})
    assert info.value.field == name
