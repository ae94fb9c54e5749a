"""Response parsing and error mapping (pure functions: both envelopes, non-JSON bodies, every error class)."""

from __future__ import annotations

import json
import pickle

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
from airflow_qikberry.models import Balance, MessageStatus, SentMessage
from airflow_qikberry.protocol import canonical_number, classify, error_for, is_final, parse_response


def test_classic_envelope() -> None:
    body = {"status": 200, "message": "1 numbers accepted for delivery.", "data": [{"id": "u:1"}]}
    parsed = parse_response(200, json.dumps(body), {})
    assert parsed.data == [{"id": "u:1"}]
    assert parsed.message.startswith("1 numbers")


def test_ok_envelope() -> None:
    parsed = parse_response(200, json.dumps({"status": "OK", "code": 200, "message": "OK", "data": []}), {})
    assert parsed.data == []


@pytest.mark.parametrize(
    ("status", "body", "headers", "cls"),
    [
        (401, {"status": "ERROR", "code": 401, "message": "Token not found"}, {}, QikberryAuthError),
        (403, {"status": "ERROR", "code": 403, "message": "Token is not allowed from this ip:1.2.3.4"}, {},
         QikberryAuthError),
        (422, {"status": "ERROR", "code": 422, "message": "The to field is required.",
               "errors": {"to": ["The to field is required."]}}, {}, QikberryValidationError),
        (400, {"status": "ERROR", "message": "Malformed"}, {}, QikberryValidationError),
        (422, {"status": "ERROR", "code": 422, "message": "Insufficient balance."}, {},
         QikberryInsufficientBalanceError),
        (402, {"status": "ERROR", "message": "Payment required"}, {}, QikberryInsufficientBalanceError),
        (429, {"status": "ERROR", "code": 429, "message": "Too Many Attempts."}, {"retry-after": "12"},
         QikberryRateLimitError),
        (500, {"status": "ERROR", "code": 500, "message": "Server Error"}, {}, QikberryServerError),
        (503, None, {}, QikberryServerError),
        # HTTP 200 carrying an error envelope: the body's code decides.
        (200, {"status": "ERROR", "code": 422, "message": "The sender field is required."}, {},
         QikberryValidationError),
        (200, {"status": 401, "message": "Unauthenticated"}, {}, QikberryAuthError),
    ],
)  # fmt: skip
def test_error_mapping(status: int, body: object, headers: dict[str, str], cls: type[QikberryError]) -> None:
    text = json.dumps(body) if body is not None else "<html>Service Unavailable</html>"
    with pytest.raises(cls) as info:
        parse_response(status, text, headers)
    assert isinstance(info.value, QikberryError)
    if body and isinstance(body, dict):
        assert info.value.message == body["message"]


def test_validation_error_carries_field_and_errors() -> None:
    body = {"status": "ERROR", "code": 422, "message": "The to field is required.", "errors": {"to": ["req"]}}
    with pytest.raises(QikberryValidationError) as info:
        parse_response(422, json.dumps(body), {})
    assert info.value.field == "to"
    assert info.value.errors == {"to": ["req"]}
    assert info.value.status_code == 422


def test_rate_limit_retry_after_header() -> None:
    with pytest.raises(QikberryRateLimitError) as info:
        parse_response(429, "{}", {"Retry-After": "7"})
    assert info.value.retry_after == 7.0


def test_login_page_is_auth_error() -> None:
    page = (
        '<html><body><form action="https://portal.mobtexting.com/login" method="post">password</form></html>'
    )
    with pytest.raises(QikberryAuthError, match="login page"):
        parse_response(200, page, {})


def test_non_json_success_is_server_error() -> None:
    with pytest.raises(QikberryServerError, match="Expected a JSON body"):
        parse_response(200, "OK", {})


def test_errors_pickle_round_trip() -> None:
    err = QikberryDeliveryUnknownError("unknown", numbers=["919876543210"], custom_id="c1", status_code=None)
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is QikberryDeliveryUnknownError
    assert again.numbers == ["919876543210"]
    assert again.custom_id == "c1"
    assert str(again) == str(err)
    rl = pickle.loads(pickle.dumps(QikberryRateLimitError("slow down", retry_after=3)))
    assert rl.retry_after == 3
    assert rl.status_code == 429


def test_status_vocabulary() -> None:
    assert not is_final("AWAITING-DLR")
    assert is_final("DELIVRD")
    assert is_final("UNDELIV")
    assert is_final("SOMETHING-NEW")


def test_models_tolerate_mixed_number_types() -> None:
    sent = SentMessage.from_api({"id": "g:1", "mobile": "91", "status": "AWAITING-DLR", "units": "2",
                                 "length": 7, "charges": "2.0000", "customid": ""})  # fmt: skip
    assert sent.units == 2
    assert str(sent.charges) == "2.0000"
    assert sent.custom_id is None
    assert sent.group_id == "g"
    status = MessageStatus.from_api({"id": "g:2", "status": "DELIVRD", "delivered_at": "", "custom": "c"})
    assert status.is_delivered
    assert status.delivered_at is None
    assert status.custom_id == "c"
    assert Balance.from_api({"service": "T", "credits": "109", "charges": 1, "postpaid": 0}).credits == 109


# -- what an outcome means for retrying (issue 6, item 6)


@pytest.mark.parametrize(
    ("method", "status", "expected"),
    [
        ("GET", 200, "ok"),
        ("GET", 408, "retry"),
        ("GET", 429, "retry"),
        ("GET", 500, "retry"),
        ("GET", 503, "retry"),
        ("GET", 520, "retry"),
        ("GET", 524, "retry"),
        ("GET", 422, "fail"),
        ("GET", 501, "fail"),
        ("POST", 202, "ok"),
        ("POST", 429, "retry"),
        ("POST", 503, "retry"),
        ("POST", 408, "ambiguous"),
        ("POST", 500, "ambiguous"),
        ("POST", 502, "ambiguous"),
        ("POST", 504, "ambiguous"),
        ("POST", 520, "ambiguous"),
        ("POST", 522, "ambiguous"),
        ("POST", 524, "ambiguous"),
        ("POST", 505, "fail"),
        ("POST", 401, "fail"),
        ("POST", 422, "fail"),
    ],
)
def test_classify(method: str, status: int, expected: str) -> None:
    assert classify(method, status) == expected


def test_5xx_html_with_a_login_link_is_a_server_error() -> None:
    page = '<html><body>502 Bad Gateway. <a href="https://portal.example/login">Log in</a></body></html>'
    with pytest.raises(QikberryServerError):
        parse_response(502, page, {})
    assert isinstance(error_for(503, None, {}, text=page), QikberryServerError)
    # The same page with a 200 (what a redirect to the portal ends in) still means a bad token.
    assert isinstance(error_for(200, None, {}, text=page), QikberryAuthError)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [("919876543210", "919876543210"), ("+919876543210", "919876543210"), ("00919876543210", "919876543210"),
     ("+91 98765-43210", "919876543210"), (None, "")],
)  # fmt: skip
def test_canonical_number(raw: object, canonical: str) -> None:
    assert canonical_number(raw) == canonical


def _page(body: dict[str, object]) -> tuple[int, object]:
    from airflow_qikberry.protocol import ApiResponse, status_page

    rows, following = status_page(ApiResponse(200, body), 1)
    return len(rows), following


def test_status_page_reads_every_envelope() -> None:
    rows = [{"id": f"g:{i}"} for i in range(3)]
    assert _page({"status": "OK", "data": rows}) == (3, None)  # unpaginated id lookup
    assert _page({"data": rows, "meta": {"last_page": 2}, "links": {"next": "u?page=2"}}) == (3, 2)
    assert _page({"data": rows, "meta": {"last_page": 1}, "links": {"next": None}}) == (3, None)
    assert _page({"data": rows, "links": {"next": "u?page=2"}}) == (3, 2)
    flat = {"status": 200, "data": {"data": rows, "last_page": 3, "next_page_url": "u?page=2"}}
    assert _page(flat) == (3, 2)  # the pre-2024 flat paginator
    assert _page({"data": [], "meta": {"last_page": 9}}) == (0, None)  # an empty page ends the walk


@pytest.mark.parametrize("data", ["oops", [1, 2], {"id": "x"}, [{"id": "a"}, "b"]])
def test_garbled_rows_are_a_typed_error(data: object) -> None:
    from airflow_qikberry.protocol import ApiResponse, status_page

    with pytest.raises(QikberryServerError, match="not a list of rows"):
        status_page(ApiResponse(200, {"status": "OK", "data": data}), 1)


def test_endless_paging_is_an_error() -> None:
    from airflow_qikberry.protocol import MAX_STATUS_PAGES, ApiResponse, status_page

    body = {"data": [{"id": "g:1"}], "links": {"next": "u?page=next"}}
    with pytest.raises(QikberryServerError, match="next page"):
        status_page(ApiResponse(200, body), MAX_STATUS_PAGES)
