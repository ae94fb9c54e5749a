"""Authentication placements, 401 shapes, the HTML login redirect, ``_method``, 404 and 405."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import requests

from tests.emulator.conftest import EMU_TOKEN, TIMEOUT, Client

if TYPE_CHECKING:
    import pytest

    from airflow_qikberry.emulator import Emulator

JSON = {"Accept": "application/json"}


def me(emu: Emulator, **kwargs: Any) -> requests.Response:
    return requests.get(emu.base_url + "auth/me", timeout=TIMEOUT, **kwargs)


def test_bearer_header_is_accepted_case_insensitively(emu: Emulator) -> None:
    for scheme in ("Bearer", "bearer", "BEARER"):
        r = me(emu, headers={**JSON, "Authorization": f"{scheme} {EMU_TOKEN}"})
        assert r.status_code == 200, scheme
        assert r.json() == {
            "status": "OK",
            "code": 200,
            "message": "OK",
            "data": {
                "id": 1,
                "username": "emulator",
                "name": "Qikberry Emulator",
                "email": "emulator@example.invalid",
            },
        }


def test_raw_authorization_header_is_accepted(emu: Emulator) -> None:
    assert me(emu, headers={**JSON, "Authorization": EMU_TOKEN}).status_code == 200


def test_query_access_token_and_api_token_are_accepted(emu: Emulator) -> None:
    assert me(emu, headers=JSON, params={"access_token": EMU_TOKEN}).status_code == 200
    assert me(emu, headers=JSON, params={"api_token": EMU_TOKEN}).status_code == 200


def test_body_access_token_form_and_json(client: Client, emu: Emulator) -> None:
    fields = {"to": "919876543210", "message": "Hi", "sender": "QIKBRY", "service": "T"}
    url = emu.base_url + "sms/send"
    form = requests.post(url, data={**fields, "access_token": EMU_TOKEN}, headers=JSON, timeout=TIMEOUT)
    as_json = requests.post(url, json={**fields, "access_token": EMU_TOKEN}, headers=JSON, timeout=TIMEOUT)
    assert form.status_code == 200
    assert as_json.status_code == 200
    assert len(emu.messages()) == 2


def test_header_takes_precedence_over_query(emu: Emulator) -> None:
    # A wrong header token is not rescued by a right query token: resolution stops at the first placement.
    r = me(emu, headers={**JSON, "Authorization": "Bearer wrong"}, params={"access_token": EMU_TOKEN})
    assert r.status_code == 401
    assert r.json()["message"] == "Token not found"


def test_missing_token_json_401(emu: Emulator) -> None:
    r = me(emu, headers=JSON)
    assert r.status_code == 401
    assert r.json() == {"status": "ERROR", "code": 401, "message": "Missing Authorization"}


def test_wrong_token_json_401(emu: Emulator) -> None:
    r = me(emu, headers={**JSON, "Authorization": "Bearer nope"})
    assert r.status_code == 401
    assert r.json() == {"status": "ERROR", "code": 401, "message": "Token not found"}


def test_format_json_or_ajax_gets_json_401_without_accept(emu: Emulator) -> None:
    r = me(emu, params={"format": "json"}, allow_redirects=False)
    assert r.status_code == 401
    assert r.json()["code"] == 401
    r = me(emu, headers={"X-Requested-With": "XMLHttpRequest"}, allow_redirects=False)
    assert r.status_code == 401
    r = requests.post(
        emu.base_url + "sms/send", data={"format": "json"}, allow_redirects=False, timeout=TIMEOUT
    )
    assert r.status_code == 401


def test_non_json_client_is_redirected_to_login_page(emu: Emulator) -> None:
    r = me(emu, allow_redirects=False, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 302
    assert r.headers["Location"] == emu.url + "/login"
    followed = me(emu, headers={"Authorization": "Bearer nope"})
    assert followed.status_code == 200
    assert followed.url == emu.url + "/login"
    page = followed.text
    assert "<html" in page
    assert '<form action="/login" method="post">' in page
    assert "password" in page


def test_redirect_can_be_disabled(emu: Emulator) -> None:
    emu.configure(html_login_redirect=False)
    r = me(emu, allow_redirects=False)
    assert r.status_code == 401
    assert r.json()["message"] == "Missing Authorization"


def test_token_is_never_echoed_in_errors(emu: Emulator) -> None:
    r = me(emu, headers={**JSON, "Authorization": "Bearer secret-wrong-token"})
    assert "secret-wrong-token" not in r.text


def test_method_override_on_post(client: Client, emu: Emulator) -> None:
    hook = client.post("developer/webhooks", json={"name": "a", "uri": "http://127.0.0.1:9/x"}).json()["data"]
    r = client.post(f"developer/webhooks/{hook['id']}", params={"_method": "DELETE"})
    assert r.status_code == 200
    assert r.json()["message"] == "Deleted successfully"
    r = client.post(
        f"developer/webhooks/{hook['id']}", data={"_method": "PUT", "name": "b", "uri": "http://x.y/z"}
    )
    assert r.json()["message"] == "Updated successfully"
    assert r.json()["data"]["name"] == "b"
    counts = emu.request_log()["counts"]
    assert counts[f"DELETE developer/webhooks/{hook['id']}"] == 1
    assert counts[f"PUT developer/webhooks/{hook['id']}"] == 1


def test_method_override_is_ignored_on_get(client: Client) -> None:
    # Laravel honours _method only on a real POST; a GET stays a GET (here: a status lookup).
    r = client.get("sms/status", params={"_method": "DELETE", "id": "x"})
    assert r.status_code == 200
    assert r.json()["data"] == []


def test_unknown_path_is_404(client: Client, emu: Emulator) -> None:
    for url in (emu.base_url + "sms/nope", emu.url + "/elsewhere", emu.base_url):
        r = client.session.get(url, timeout=TIMEOUT)
        assert r.status_code == 404
        assert r.json() == {"status": "ERROR", "code": 404, "message": "Not Found."}


def test_trailing_slash_is_tolerated(client: Client) -> None:
    assert client.get("auth/me/").status_code == 200
    r = client.post("sms/send/", json={"to": "919876543210", "message": "x", "sender": "S", "service": "T"})
    assert r.status_code == 200


def test_wrong_method_is_405(client: Client) -> None:
    r = client.post("sms/status", json={"id": "x"})
    assert r.status_code == 405
    assert r.json()["code"] == 405
    assert r.headers["Allow"] == "GET"


def test_malformed_json_body_is_400(client: Client) -> None:
    r = client.post("sms/send", data=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json() == {"status": "ERROR", "code": 400, "message": "Malformed JSON body."}


def test_unexpected_handler_failure_is_a_500_envelope(
    client: Client, emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No real request makes a handler crash, so one is swapped in to check the catch-all envelope.
    def boom(request: object) -> None:
        raise RuntimeError("internal detail")

    monkeypatch.setitem(emu.api._routes["auth/me"], "GET", boom)
    r = client.get("auth/me")
    assert r.status_code == 500
    assert r.json() == {"status": "ERROR", "code": 500, "message": "Server Error"}
    assert client.get("finance/balance").status_code == 200  # the connection and server carry on
    # The 500 is not silent: it is recorded (the detail stays out of the answer).
    assert [(e["path"], e["type"], e["message"]) for e in emu.internal_errors()] == [
        ("/api/v2/auth/me", "RuntimeError", "internal detail")
    ]
    emu.clear_internal_errors()  # provoked on purpose: the fixture must not fail this test
