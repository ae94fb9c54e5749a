"""Fuzzing (hypothesis): validators and response parsing fed garbage raise only typed ``QikberryError``s.

Two levels. The pure parsers get every generated body directly (thousands of examples, fast). The hook then
gets a sample of the same bodies over real HTTP from a tiny local server that answers with whatever the test
hands it - the emulator is faithful by design and cannot produce an arbitrary garbled body, which is the
whole point here.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from airflow_qikberry import phone, sms_text
from airflow_qikberry import protocol as p
from airflow_qikberry import validation as v
from airflow_qikberry.exceptions import QikberryError
from airflow_qikberry.models import Balance, MessageStatus, SentMessage
from tests.helpers import NoWaits

# -- bodies: JSON of the right and the wrong shapes, truncated JSON, HTML, empty, huge pages

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
row_keys = st.sampled_from(
    [
        "id",
        "mobile",
        "status",
        "units",
        "length",
        "charges",
        "customid",
        "custom",
        "submitted_at",
        "delivered_at",
        "service",
        "credits",
        "postpaid",
        "name",
        "sender",
    ]
)
rows = st.dictionaries(row_keys, json_values, max_size=8)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "status": st.one_of(st.sampled_from([200, "OK", "ok", 422, "error", True]), json_values),
        "code": json_values,
        "message": st.one_of(st.text(max_size=40), st.just("3 numbers accepted for delivery."), json_values),
        "data": st.one_of(
            st.lists(rows, max_size=5),
            rows,
            json_values,
            st.fixed_dictionaries({"data": st.lists(rows, max_size=3), "last_page": json_values}),
        ),
        "links": st.one_of(
            st.fixed_dictionaries({"next": st.one_of(st.none(), st.text(max_size=10))}), json_values
        ),
        "meta": st.one_of(st.fixed_dictionaries({"last_page": json_values}), json_values),
        "group_id": json_values,
        "errors": json_values,
    },
)


# Well-formed success envelopes whose rows hold values of every type: what gets past the envelope check.
accepted_envelopes = st.fixed_dictionaries(
    {
        "status": st.sampled_from([200, "OK"]),
        "message": st.one_of(st.just("2 numbers accepted for delivery."), st.text(max_size=20)),
        "data": st.one_of(
            st.lists(rows, max_size=5),
            st.fixed_dictionaries({"data": st.lists(rows, max_size=3), "last_page": json_values}),
            json_values,
        ),
    },
    optional={"links": json_values, "meta": json_values, "group_id": json_values},
)


def _dump(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


bodies = st.one_of(
    accepted_envelopes.map(_dump),
    accepted_envelopes.map(_dump),
    envelopes.map(_dump),
    json_values.map(_dump),
    envelopes.map(_dump).flatmap(
        lambda text: st.integers(0, max(0, len(text) - 1)).map(lambda cut: text[:cut])
    ),
    st.sampled_from(
        [
            "",
            "<html><body>502 Bad Gateway</body></html>",
            "<html><head><title>Login</title></head><body><a href='/login'>log in</a><form></form></html>",
            "null",
            "[]",
            "{}",
            '{"status": 200, "data": [',
            "\x00\xff garbage",
            '{"status": "OK", "data": "not rows"}',
        ]
    ),
    st.text(max_size=200),
)
status_codes = st.one_of(
    st.sampled_from([200, 201, 204, 400, 401, 403, 404, 422, 429, 500, 502, 503]), st.integers(100, 599)
)
headers = st.dictionaries(
    st.sampled_from(["Retry-After", "Content-Type", "X-RateLimit-Remaining"]),
    st.text(max_size=12),
    max_size=3,
)


def read_everything(status: int, text: str, hdrs: dict[str, str]) -> None:
    """What the provider does with an answer, end to end through the pure layers."""
    response = p.parse_response(status, text, hdrs)
    for what in ("sms/send", "sms/send/json", "finance/balance"):
        for row in p.rows_of(response, what=what):
            SentMessage.from_api(row).to_xcom()
            MessageStatus.from_api(row).to_dict()
            Balance.from_api(row).to_dict()
    page_rows, _following = p.status_page(response, 1)
    for row in page_rows:
        MessageStatus.from_api(row)
    p.accepted_count(str(response.body.get("message", "")))


OUTCOMES: Counter[str] = Counter()


def outcome(call: Any, kind: str) -> None:
    """Run ``call``; count it as parsed or as a typed error. Anything else escapes and fails the test."""
    try:
        call()
        OUTCOMES[f"{kind}: parsed"] += 1
    except QikberryError:
        OUTCOMES[f"{kind}: typed error"] += 1


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(status=status_codes, text=bodies, hdrs=headers)
# Found by this test in CI: Python's JSON decoder reads Infinity (and NaN) as floats, and int() of an infinite
# float raises OverflowError, which the row readers did not expect.
@example(
    status=200,
    text='{"status": 200, "message": "2 numbers accepted for delivery.", "data": [{"id": null, "mobile": '
    'null, "status": null, "units": Infinity, "length": -Infinity, "charges": NaN}]}',
    hdrs={},
)
def test_garbled_bodies_raise_only_typed_errors(status: int, text: str, hdrs: dict[str, str]) -> None:
    # A KeyError, TypeError, AttributeError or JSONDecodeError escaping here fails the test.
    outcome(lambda: read_everything(status, text, hdrs), "parsers")


@settings(max_examples=100, deadline=None)
@given(page=st.lists(rows, min_size=0, max_size=3).map(lambda r: r * 400))
def test_huge_pages_parse_or_fail_typed(page: list[dict[str, Any]]) -> None:
    text = _dump({"status": "OK", "data": page, "meta": {"last_page": 2}})
    with contextlib.suppress(QikberryError):
        rows_, following = p.status_page(p.parse_response(200, text), 1)
        assert len(rows_) == len(page)
        assert following == (2 if page else None)


# -- validators


@settings(max_examples=1000, deadline=None)
@given(
    number=st.one_of(
        st.text(max_size=30), st.integers(), st.none(), st.lists(st.text(max_size=5), max_size=2)
    ),
    text=st.one_of(st.text(max_size=300), st.integers(), st.none()),
    sender=st.one_of(st.text(max_size=15), st.none(), st.integers()),
    service=st.one_of(st.text(max_size=20), st.none()),
    tags=st.one_of(st.text(max_size=30), st.lists(st.text(max_size=8), max_size=5), st.none(), st.integers()),
    custom_id=st.one_of(st.text(max_size=300), st.none()),
    max_units=st.one_of(st.integers(-3, 12), st.none(), st.text(max_size=3)),
)
def test_validators_raise_only_typed_errors(
    number: Any, text: Any, sender: Any, service: Any, tags: Any, custom_id: Any, max_units: Any
) -> None:
    calls = [
        lambda: phone.normalize_numbers(number, default_region="IN"),
        lambda: phone.normalize_number(number, default_region=None),
        lambda: sms_text.validate_message(text, max_units=max_units),
        lambda: v.validate_sender(sender, service=service or "T"),
        lambda: v.validate_service(service),
        lambda: v.validate_tags(tags),
        lambda: v.validate_custom_id(custom_id),
        lambda: v.validate_schedule(text),
        lambda: v.validate_dlt_id(text if isinstance(text, str) else None, field="template_id"),
    ]
    for call in calls:
        outcome(call, "validators")


# -- the same garbage through the hook, over real HTTP


class _Scripted(BaseHTTPRequestHandler):
    answer: tuple[int, bytes, dict[str, str]] = (200, b"{}", {})

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        status, body, hdrs = type(self).answer
        self.send_response(status)
        for key, value in hdrs.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _reply

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def scripted_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/v2/"
    server.shutdown()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(status=st.sampled_from([200, 200, 200, 201, 400, 422, 500, 502]), text=bodies)
def test_the_hook_turns_garbled_answers_into_typed_errors(
    scripted_server: str, make_qikberry_conn: Any, status: int, text: str
) -> None:
    from airflow_qikberry.hooks.qikberry import QikberryHook

    # Retry-After sent by the scripted server is never honoured for long: no sleeping in a fuzz loop.
    _Scripted.answer = (status, text.encode("utf-8", "surrogatepass"), {"Content-Type": "application/json"})
    # Nor for the GET budget (1,000/min by default; test_load holds the hook to it): the ~180 lookups of the
    # 60 examples would wait ~5 s of real time for the bucket.
    conn_id = make_qikberry_conn(
        "fuzz_conn", host=scripted_server, reconcile_window=0.01, rate_limit_per_minute=10**6
    )
    hook = QikberryHook(qikberry_conn_id=conn_id, max_attempts=1, clock=NoWaits())
    for call in (
        lambda: hook.get_status(message_id="g:1"),
        lambda: list(hook.iter_group_status("g")),
        lambda: hook.get_balance(),
        lambda: hook.send_sms("919876543210", "hello", sender="QIKBRY"),
        lambda: hook.send_batch([{"to": "919876543210", "message": "hi"}], sender="QIKBRY"),
    ):
        outcome(call, "hook over HTTP")


def test_fuzz_figures(figure: Any) -> None:
    """Runs after the fuzz tests in this module (pytest keeps file order): publishes what they exercised."""
    if not OUTCOMES:
        pytest.skip("run together with the fuzz tests of this module")
    # Not vacuous: every level saw answers it could read as well as ones it refused.
    for kind in ("parsers", "validators", "hook over HTTP"):
        assert OUTCOMES[f"{kind}: parsed"] > 0, OUTCOMES
        assert OUTCOMES[f"{kind}: typed error"] > 0, OUTCOMES
    figure(
        "fuzzing",
        untyped_escapes=0,
        **{k.replace(" ", "_").replace(":", ""): n for k, n in sorted(OUTCOMES.items())},
    )
