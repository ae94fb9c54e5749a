"""The delivery-report receiver (API-server plugin): Bearer secret, verification challenge, 200 once recorded.

Driven over HTTP with Starlette's test client against the real app and the real metadata database; the
connection comes from ``AIRFLOW_CONN_*`` as in a deployment.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_qikberry.delivery.inbox import INBOX_PREFIX, MetadataDbVariables, inbox_prefix
from tests.helpers import requires_airflow

pytestmark = requires_airflow((3, 0), "the receiver is an Airflow 3 API-server (FastAPI) plugin")

SECRET = "s3cr3t-push-key-0123456789"
TOKEN = "validation-key-42"
GROUP = "b34e35ad-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
VARIABLES = MetadataDbVariables()


@pytest.fixture
def client(airflow_db: Path, make_qikberry_conn: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from airflow_qikberry.plugins import delivery_reports

    make_qikberry_conn(webhook_secret=SECRET, webhook_token=TOKEN)
    make_qikberry_conn("qikberry_nopush")
    delivery_reports._cache.clear()
    for key in asyncio.run(VARIABLES.keys(INBOX_PREFIX)):
        asyncio.run(VARIABLES.delete(key))
    with TestClient(delivery_reports.create_app()) as test_client:
        yield test_client
    delivery_reports._cache.clear()


def _report(**fields: Any) -> dict[str, Any]:
    return {"id": f"{GROUP}:1", "status": "UNDELIV", "mobile": "919812345999", "units": 1, **fields}


def _post(
    client: Any, body: Any, *, secret: str | None = SECRET, conn: str = "qikberry_default", **kw: Any
) -> Any:
    headers = {} if secret is None else {"Authorization": f"Bearer {secret}"}
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(f"/dlr/{conn}", content=data, headers=headers, **kw)


def _inbox() -> dict[str, dict[str, Any]]:
    keys = asyncio.run(VARIABLES.keys(inbox_prefix("qikberry_default")))
    return {key: json.loads(asyncio.run(VARIABLES.get(key)) or "{}") for key in keys}


def test_a_report_is_answered_200_once_it_is_recorded_with_the_number_masked(client: Any) -> None:
    answer = _post(client, _report())
    assert answer.status_code == 200, answer.text
    (stored,) = _inbox().values()
    assert stored["key"] == f"{GROUP}:1|UNDELIV"
    assert stored["source"] == "push"
    assert "919812345999" not in json.dumps(stored)


@pytest.mark.parametrize("secret", [None, "wrong", SECRET + "x", ""])
def test_a_push_without_the_right_bearer_secret_is_refused_and_not_recorded(client: Any, secret: Any) -> None:
    assert _post(client, _report(), secret=secret).status_code == 401
    assert _inbox() == {}


def test_a_connection_without_a_webhook_secret_takes_no_pushes(client: Any) -> None:
    # Unknown or push not enabled: the same answer, so probing learns nothing.
    assert _post(client, _report(), conn="qikberry_nopush").status_code == 404
    assert _post(client, _report(), conn="no_such_connection").status_code == 404


@pytest.mark.parametrize(
    "body",
    ["{not json", "[1, 2]", json.dumps({"status": "DELIVRD"}), json.dumps(_report(id={"x": 1})),
     json.dumps(_report(id="has.a.dot"))],
)  # fmt: skip
def test_a_garbled_report_is_an_error_so_the_api_pushes_again(client: Any, body: str) -> None:
    answer = _post(client, body)
    assert 400 <= answer.status_code < 500
    assert answer.json()["status"] == "ERROR"
    assert _inbox() == {}


def test_a_report_that_cannot_be_recorded_is_a_503(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The metadata database failing cannot be produced by a real server here: the write is made to fail.
    def broken(*args: Any, **kwargs: Any) -> bool:
        raise ConnectionError("database is gone")

    monkeypatch.setattr(MetadataDbVariables, "put", broken)
    assert _post(client, _report()).status_code == 503


def test_the_verification_challenge_is_answered_only_with_the_key_and_secret(client: Any) -> None:
    challenge = {"validation_key": TOKEN, "challenge": "abc123"}
    ok = _post(client, challenge, params={"token": TOKEN})
    assert ok.status_code == 200
    assert ok.json() == {"challenge": "abc123"}
    assert _post(client, {**challenge, "validation_key": "nope"}, params={"token": TOKEN}).status_code == 403
    assert _post(client, challenge, params={"token": "nope"}).status_code == 403
    assert _post(client, challenge, secret="wrong", params={"token": TOKEN}).status_code == 401
    assert _inbox() == {}


def test_the_secret_never_reaches_a_log(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _post(client, _report(), secret="wrong-" + SECRET)
    _post(client, _report())
    _post(client, {"validation_key": "x", "challenge": "c"}, params={"token": "bad"})
    assert SECRET not in caplog.text
    assert TOKEN not in caplog.text


def test_a_pending_status_is_acknowledged_and_not_recorded(client: Any) -> None:
    assert _post(client, _report(status="AWAITING-DLR")).status_code == 200
    assert _inbox() == {}
