"""DLT senders, templates, sends by template and the DLT pre-check, through the hook, against the emulator
over real HTTP (issue 20). The emulator's DLT mode is the network that disagrees: what the pre-check lets
through it delivers, and what the pre-check would have stopped it rejects with the DLT status named."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from airflow_qikberry import catalog as catalog_module
from airflow_qikberry.exceptions import (
    QikberryDltCheckUnavailableError,
    QikberryDltMismatchError,
    QikberryPartialSendError,
    QikberryServerError,
    QikberryValidationError,
)
from airflow_qikberry.hooks.qikberry import QikberryHook
from airflow_qikberry.hooks.qikberry_async import QikberryAsyncHook
from tests.helpers import Sleeps, all_log_text, api_counts, count, fake_task_identity

A, B, C = "919876543210", "919876543211", "919876543212"
OTP_ID, SALE_ID, OLD_ID, PENDING_ID = (
    "1107000000000000001",
    "1107000000000000002",
    "1107000000000000003",
    "1107000000000000004",
)
OTP_BODY = "Dear {{name}}, your OTP is {{otp}}. Valid for {{mins}} minutes. -Acme"
GOOD = "Dear Asha, your OTP is 482913. Valid for 10 minutes. -Acme"
SEEDS: dict[str, Any] = {
    "senders": [
        {"name": "ACMEIN", "service": "T", "country_code": "IN", "entity_id": "1101", "entity_name": "Acme"},
        {"name": "ACMEPR", "service": "P", "country_code": "IN", "entity_id": "1101", "entity_name": "Acme"},
        {
            "name": "NEWHDR",
            "service": "T",
            "country_code": "IN",
            "entity_id": "1101",
            "entity_name": "Acme",
            "status": 0,
        },
    ],
    "templates": [
        {"sender": "ACMEIN", "name": "OTP login", "body": OTP_BODY, "template_id": OTP_ID, "type": "T"},
        {
            "sender": "ACMEPR",
            "name": "sale",
            "body": "Sale! {{pct}} off today",
            "template_id": SALE_ID,
            "type": "P",
        },
        {
            "sender": "ACMEIN",
            "name": "old",
            "body": "Old {{x}}",
            "template_id": OLD_ID,
            "type": "T",
            "status": 0,
        },
        {"sender": "NEWHDR", "name": "pending", "body": "New {{x}}", "template_id": PENDING_ID, "type": "T"},
    ],
}
DATA = {"name": "Asha", "otp": "482913", "mins": 10}


@pytest.fixture
def seeded(emulator: Any) -> Any:
    emulator.configure(**SEEDS)
    return emulator


@pytest.fixture
def hook(qikberry_conn: str, seeded: Any) -> QikberryHook:
    return QikberryHook(qikberry_conn_id=qikberry_conn)


def posts(emulator: Any) -> int:
    return sum(n for key, n in api_counts(emulator).items() if key.startswith("POST sms/"))


# ---------------------------------------------------------------------------- reading the account


def test_templates_and_senders_are_read_across_pages(qikberry_conn: str, emulator: Any) -> None:
    templates = [
        {
            "sender": "ACMEIN",
            "name": f"t{i:02d}",
            "body": f"Text {i} {{{{v}}}}",
            "template_id": f"11070000000000{i:05d}",
            "type": "T",
        }
        for i in range(37)  # 3 pages of 15
    ]
    senders = [
        {
            "name": f"HDR{i:03d}",
            "service": "T",
            "country_code": "IN",
            "entity_id": "1101",
            "entity_name": "Acme",
        }
        for i in range(16)
    ]
    emulator.configure(senders=senders, templates=templates)
    hook = QikberryHook(qikberry_conn_id=qikberry_conn)
    found = hook.get_templates()
    assert [t.name for t in found] == [f"t{i:02d}" for i in range(37)]
    assert found[5].template_id == "1107000000000000005"
    assert found[5].body == "Text 5 {{v}}"
    assert found[5].alias == "t05"
    assert found[5].sender == "ACMEIN"
    assert found[5].active
    assert count(emulator, "GET sms/templates") == 3
    names = [s.name for s in hook.get_senders()]
    assert len(names) == 17
    assert "ACMEIN" in names
    assert count(emulator, "GET sms/senders") == 2
    assert [t.name for t in asyncio.run(_async_templates(qikberry_conn))] == [t.name for t in found]


async def _async_templates(conn_id: str) -> list[Any]:
    async with QikberryAsyncHook(qikberry_conn_id=conn_id) as hook:
        assert len(await hook.get_senders()) == 17
        return await hook.get_templates()


def test_the_catalog_is_cached_for_the_connections_time(
    make_qikberry_conn: Callable[..., str], seeded: Any
) -> None:
    hook = QikberryHook(qikberry_conn_id=make_qikberry_conn())
    first = hook.dlt_catalog()
    assert first.by_template_id(OTP_ID) is not None
    assert first.sender("acmein") is not None
    assert (
        QikberryHook(qikberry_conn_id=hook.qikberry_conn_id).dlt_catalog() is first
    )  # shared in the process
    assert count(seeded, "GET sms/templates") == 1
    assert hook.dlt_catalog(refresh=True) is not first
    assert count(seeded, "GET sms/templates") == 2
    never = QikberryHook(qikberry_conn_id=make_qikberry_conn("never", templates_cache_seconds=0))
    never.dlt_catalog()
    never.dlt_catalog()
    assert count(seeded, "GET sms/templates") == 4


def test_the_cached_catalog_is_read_again_once_its_time_is_up(
    make_qikberry_conn: Callable[..., str], seeded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    # The cache's clock only: the HTTP retry policy keeps the real one.
    monkeypatch.setattr(
        catalog_module, "time", type("Clock", (), {"monotonic": staticmethod(lambda: now[0])})
    )
    hook = QikberryHook(qikberry_conn_id=make_qikberry_conn(templates_cache_seconds=60))
    first = hook.dlt_catalog()
    now[0] += 59
    assert hook.dlt_catalog() is first
    assert count(seeded, "GET sms/templates") == 1
    # A template added on the account meanwhile is seen once the time is up, without a refresh.
    seeded.configure(
        templates=[
            *SEEDS["templates"],
            {**SEEDS["templates"][1], "name": "late", "template_id": "1107000000000000009"},
        ]
    )
    now[0] += 2
    later = hook.dlt_catalog()
    assert later is not first
    assert count(seeded, "GET sms/templates") == 2
    assert later.by_template_id("1107000000000000009") is not None


def test_test_connection_shows_the_accounts_senders_and_templates(hook: QikberryHook) -> None:
    ok, text = hook.test_connection()
    assert ok
    assert "3 sender(s), 4 template(s), 3 active: otp-login, sale, old, pending" in text


def test_test_connection_says_when_templates_are_not_available(hook: QikberryHook, seeded: Any) -> None:
    seeded.configure(templates_unavailable_status=403)
    ok, text = hook.test_connection()
    assert ok
    assert "templates not available (HTTP 403: This action is unauthorized.)" in text


# ---------------------------------------------------------------------------- sending by template


def test_send_template_renders_measures_and_sends_by_the_stored_id(hook: QikberryHook, seeded: Any) -> None:
    sent = hook.send_template([A, B], "otp-login", DATA, custom_id="order-17", tags="otp")
    assert [m.mobile for m in sent] == [A, B]
    assert {m.custom_id for m in sent} == {"order-17"}
    assert sent[0].units == 1
    assert sent[0].length == len(GOOD)
    messages = seeded.messages()
    assert [m["message"] for m in messages] == [GOOD, GOOD]
    assert {(m["sender"], m["template_id"], m["custom"]) for m in messages} == {
        ("ACMEIN", OTP_ID, "order-17")
    }
    assert [s.status for s in hook.get_status(custom_id="order-17")] == ["AWAITING-DLR"] * 2


@pytest.mark.parametrize("ref", [OTP_ID, "OTP login", "otp-login"])
def test_a_template_is_named_by_alias_dlt_id_or_name(hook: QikberryHook, seeded: Any, ref: str) -> None:
    hook.send_template(A, ref, DATA)
    assert [m["message"] for m in seeded.messages()] == [GOOD]


def test_send_template_checks_before_any_request(hook: QikberryHook, seeded: Any) -> None:
    with pytest.raises(QikberryValidationError, match="'nope' is not among the account's 4 template") as err:
        hook.send_template(A, "nope", DATA)
    assert err.value.field == "template"
    with pytest.raises(QikberryValidationError, match=r"template_data.mins: missing; .*\{\{name\}\}") as err:
        hook.send_template(A, "otp-login", {"name": "Asha", "otp": "1"})
    with pytest.raises(QikberryValidationError, match=r"template_data\.otp: is blank"):
        hook.send_template(A, "otp-login", {**DATA, "otp": " "})
    with pytest.raises(TypeError, match="unexpected keyword argument 'sender'"):
        hook.send_template(A, "otp-login", DATA, sender="ACMEIN")  # type: ignore[call-arg]
    assert posts(seeded) == 0


@pytest.mark.parametrize("kind", ["drop_after_accept", "slow_response"])
def test_an_unknown_outcome_is_settled_by_the_foreign_id(
    make_qikberry_conn: Callable[..., str], seeded: Any, kind: str
) -> None:
    seeded.configure(visibility_delay_seconds=3)
    rule: dict[str, Any] = {"endpoint": "sms/send/template", "method": "POST", "kind": kind, "times": 1}
    if kind == "slow_response":
        rule["seconds"] = 0.6
    seeded.set_faults([rule])
    hook = QikberryHook(
        qikberry_conn_id=make_qikberry_conn(),
        timeout=0.2 if kind == "slow_response" else None,
        clock=Sleeps(seeded),
    )
    sent = hook.send_template([A, B], "otp-login", DATA)
    assert sorted(m.mobile for m in sent) == [A, B]
    assert len(seeded.messages()) == 2  # found by its foreign id, not sent again
    assert count(seeded, "GET sms/status") >= 1
    assert {m["custom"] for m in seeded.messages()} == {sent[0].custom_id}


def test_a_retried_task_returns_what_the_earlier_try_sent(
    qikberry_conn: str, seeded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity = ["dag", "task", "run", "-1", "1"]
    fake_task_identity(monkeypatch, lambda: tuple(identity))
    first = QikberryHook(qikberry_conn_id=qikberry_conn, clock_skew=3600).send_template(A, "otp-login", DATA)
    identity[4] = "2"
    again = QikberryHook(qikberry_conn_id=qikberry_conn, clock_skew=3600).send_template(A, "otp-login", DATA)
    assert [m.message_id for m in again] == [m.message_id for m in first]
    assert count(seeded, "POST sms/send/template") == 1
    resent = QikberryHook(qikberry_conn_id=qikberry_conn).send_template(A, "otp-login", DATA, resend=True)
    assert resent[0].message_id != first[0].message_id
    assert count(seeded, "POST sms/send/template") == 2


def test_a_number_left_out_of_the_answer_is_a_partial_send(
    make_qikberry_conn: Callable[..., str], seeded: Any
) -> None:
    seeded.configure(suppressed_numbers=[B])
    hook = QikberryHook(qikberry_conn_id=make_qikberry_conn(), reconcile_window=2, clock=Sleeps(seeded))
    with pytest.raises(QikberryPartialSendError) as err:
        hook.send_template([A, B], "otp-login", DATA)
    assert [m.mobile for m in err.value.accepted] == [A]
    assert err.value.numbers == [B]
    assert count(seeded, "POST sms/send/template") == 1


def test_without_the_templates_endpoint_the_api_resolves_the_alias(
    hook: QikberryHook, seeded: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    seeded.configure(templates_unavailable_status=403)
    sent = hook.send_template(A, "otp-login", DATA)
    assert [m["message"] for m in seeded.messages()] == [GOOD]
    assert sent[0].mobile == A
    assert count(seeded, "POST sms/send/template") == 1
    log = all_log_text(caplog, capfd)
    assert (
        "DLT pre-check could not run for 1 text(s): template: the account's templates could not be read"
        in log
    )
    assert "HTTP 403" in log
    with pytest.raises(
        QikberryDltCheckUnavailableError, match="dlt_check: 'required', but the DLT pre-check"
    ):
        hook.send_template(B, "otp-login", DATA, dlt_check="required")
    assert count(seeded, "POST sms/send/template") == 1


def test_a_send_by_template_is_pre_checked(hook: QikberryHook, seeded: Any) -> None:
    with pytest.raises(QikberryDltMismatchError) as err:
        hook.send_template(A, "otp-login", {**DATA, "name": "Asha " * 7})
    assert err.value.status == "DLT-TM-VAR-EXECEED"
    assert "{{name}} would hold 35" in err.value.detail
    with pytest.raises(QikberryDltMismatchError, match="is inactive"):
        hook.send_template(A, "old", {"x": "1"})
    with pytest.raises(QikberryDltMismatchError, match="'NEWHDR' is not approved") as err:
        hook.send_template(A, "pending", {"x": "1"})
    assert err.value.status == "DLT-HEADER-INACTIVE"
    assert posts(seeded) == 0
    seeded.configure(dlt_mode=True)
    sent = hook.send_template(A, "pending", {"x": "1"}, dlt_check=False)
    seeded.flush_dlrs()
    assert [s.status for s in hook.get_status(message_id=sent[0].message_id)] == ["DLT-HEADER-INACTIVE"]


# ---------------------------------------------------------------------------- the pre-check of texts


@pytest.mark.parametrize(
    ("text", "sender", "status", "detail"),
    [
        (
            "Dear Asha, your code is 482913. Valid for 10 minutes. -Acme",
            "ACMEIN",
            "DLT-REJECTED",
            "the fixed text ', your OTP is ' (after {{name}}) is not in the text",
        ),
        (
            GOOD.replace("482913", "4" * 31),
            "ACMEIN",
            "DLT-TM-VAR-EXECEED",
            "{{otp}} would hold 31",
        ),
        (
            GOOD,
            "ACMEPR",
            "DLT-SENDER-NOT-REG-TM",
            "the sender 'ACMEPR' is not the template's sender 'ACMEIN'",
        ),
        (GOOD + " ", "ACMEIN", "DLT-REJECTED", "should end with ' minutes. -Acme' but ends"),
    ],
)
def test_a_text_that_does_not_fit_its_template_is_refused_before_sending(
    hook: QikberryHook, seeded: Any, text: str, sender: str, status: str, detail: str
) -> None:
    with pytest.raises(QikberryDltMismatchError) as err:
        hook.send_sms(A, text, sender=sender, template_id=OTP_ID)
    assert (err.value.status, err.value.field, err.value.template_id) == (status, "message", OTP_ID)
    assert detail in err.value.detail
    assert detail in err.value.message
    assert "Nothing was sent" in err.value.message
    assert "dlt_check='off'" in err.value.message
    assert posts(seeded) == 0
    # The network agrees: sent anyway, the emulator in DLT mode gives the status the check named.
    seeded.configure(dlt_mode=True)
    sent = hook.send_sms(A, text, sender=sender, template_id=OTP_ID, dlt_check="off")
    seeded.flush_dlrs()
    assert [s.status for s in hook.get_status(message_id=sent[0].message_id)] == [status]


def test_a_text_that_fits_is_sent_and_delivered_in_dlt_mode(hook: QikberryHook, seeded: Any) -> None:
    seeded.configure(dlt_mode=True)
    sent = hook.send_sms(A, GOOD.replace("\n", ""), sender="ACMEIN", template_id=OTP_ID)
    seeded.flush_dlrs()
    assert [s.status for s in hook.get_status(message_id=sent[0].message_id)] == ["DELIVRD"]


def test_an_unknown_template_id_is_said_and_sent_unless_required(
    hook: QikberryHook, seeded: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    hook.send_sms(A, "anything", sender="ACMEIN", template_id="1107999999999999999")
    log = all_log_text(caplog, capfd)
    assert "template_id 1107999999999999999 is not among the account's 4 template(s)" in log
    with pytest.raises(QikberryDltCheckUnavailableError, match="is not among the account's 4"):
        hook.send_sms(A, "anything", sender="ACMEIN", template_id="1107999999999999999", dlt_check="required")
    assert count(seeded, "POST sms/send") == 1


def test_no_template_id_or_no_dlt_route_is_not_checked(hook: QikberryHook, seeded: Any) -> None:
    hook.send_sms(A, "no template id", sender="ACMEIN")
    hook.send_sms(A, "global route", sender="ACME", service="G", template_id=OTP_ID)
    assert count(seeded, "POST sms/send") == 2
    assert count(seeded, "GET sms/templates") == 0  # nothing to check: the templates are not even read


def test_every_node_of_a_batch_is_checked(hook: QikberryHook, seeded: Any) -> None:
    nodes = [
        {"to": A, "message": GOOD},
        {"to": B, "message": GOOD.replace("OTP", "otp")},
        {"to": C, "message": GOOD.replace("Asha", "x" * 40)},
    ]
    with pytest.raises(QikberryDltMismatchError) as err:
        hook.send_batch(nodes, sender="ACMEIN", template_id=OTP_ID)
    assert err.value.field == "nodes[1].message"
    assert err.value.count == 2
    assert "2 texts of this send fail the check" in err.value.message
    hook.send_batch(nodes[:1], sender="ACMEIN", template_id=OTP_ID)
    hook.send_batch(
        [{**nodes[1], "template_id": SALE_ID, "sender": "ACMEPR"}],
        message="x",
        service="T",
        sender="ACMEIN",
        dlt_check="off",
    )
    assert count(seeded, "POST sms/send/json") == 2


def test_a_bulk_upload_is_checked(hook: QikberryHook, seeded: Any, tmp_path: Any) -> None:
    path = tmp_path / "numbers.txt"
    path.write_text(f"{A}\n{B}\n")
    with pytest.raises(QikberryDltMismatchError, match="DLT-REJECTED"):
        hook.upload_bulk(
            str(path), "Sale! 50% off tomorrow", sender="ACMEPR", service="P", template_id=SALE_ID
        )
    assert (
        hook.upload_bulk(str(path), "Sale! 50% off today", sender="ACMEPR", service="P", template_id=SALE_ID)
        == 2
    )


def test_the_templates_endpoint_not_available_is_said(
    hook: QikberryHook, seeded: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    seeded.configure(templates_unavailable_status=404)
    hook.send_sms(A, "whatever", sender="ACMEIN", template_id=OTP_ID)
    assert "the account's templates could not be read (HTTP 404: Not Found.)" in all_log_text(caplog, capfd)
    with pytest.raises(QikberryDltCheckUnavailableError, match=r"HTTP 404"):
        hook.send_sms(A, "whatever", sender="ACMEIN", template_id=OTP_ID, dlt_check="required")
    assert count(seeded, "POST sms/send") == 1


def test_dlt_check_is_validated() -> None:
    from airflow_qikberry.send_options import SendOptions

    assert SendOptions(dlt_check=True).dlt_check == "auto"
    assert SendOptions(dlt_check="false").dlt_check == "off"
    assert SendOptions(dlt_check="Required").dlt_check == "required"
    with pytest.raises(
        QikberryValidationError, match="dlt_check: 'strict' is not 'auto', 'required' or 'off'"
    ):
        SendOptions(dlt_check="strict")


@pytest.mark.parametrize("value", ["-1", "soon", True, "inf"])
def test_templates_cache_seconds_is_checked_when_the_connection_is_read(
    make_qikberry_conn: Callable[..., str], value: Any
) -> None:
    hook = QikberryHook(qikberry_conn_id=make_qikberry_conn(templates_cache_seconds=value))
    with pytest.raises(QikberryValidationError, match="templates_cache_seconds must be a number of seconds"):
        hook.dlt_catalog()


def rewrite_get(hook: QikberryHook, path: str, change: Callable[[dict[str, Any]], Any]) -> None:
    """Rewrite the emulator's real answers to ``GET path``: it always answers in the documented shape, so a
    garbled list (what a proxy or an API change gives) can only be produced by changing its body."""

    def rewrite(response: Any, *args: Any, **kwargs: Any) -> None:
        if response.request.method == "GET" and response.url.split("?")[0].endswith("/" + path):
            response._content = json.dumps(change(response.json())).encode()

    hook.session.hooks["response"].append(rewrite)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            lambda b: {**b, "data": "templates"}, "data is not a list of rows", id="data-not-a-list"
        ),
        pytest.param(
            lambda b: {**b, "data": [*b["data"], 7]}, "data is not a list of rows", id="a-row-not-an-object"
        ),
        pytest.param(
            lambda b: {**b, "data": [{k: v for k, v in r.items() if k != "body"} for r in b["data"]]},
            "without an id or a text body",
            id="a-template-without-body",
        ),
        pytest.param(
            lambda b: {**b, "data": [{**r, "body": ["Dear"]} for r in b["data"]]},
            "without an id or a text body",
            id="a-body-not-text",
        ),
    ],
)
def test_a_garbled_templates_answer_is_a_typed_error_and_the_pre_check_says_it_could_not_run(
    hook: QikberryHook,
    seeded: Any,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    change: Callable[[dict[str, Any]], Any],
    message: str,
) -> None:
    rewrite_get(hook, "sms/templates", change)
    with pytest.raises(QikberryServerError, match=message):
        hook.get_templates()
    with pytest.raises(QikberryDltCheckUnavailableError, match=f"could not run: .*{message}"):
        hook.send_sms(A, GOOD, sender="ACMEIN", template_id=OTP_ID, dlt_check="required")
    assert posts(seeded) == 0
    hook.send_sms(A, GOOD, sender="ACMEIN", template_id=OTP_ID)  # auto: said, and sent
    assert "DLT pre-check could not run for 1 text(s)" in all_log_text(caplog, capfd)
    assert count(seeded, "POST sms/send") == 1


def test_a_templates_endpoint_that_keeps_failing_is_said_not_taken_for_no_templates(
    make_qikberry_conn: Callable[..., str],
    seeded: Any,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    seeded.set_faults([{"endpoint": "sms/templates", "method": "GET", "kind": "error", "status": 500}])
    hook = QikberryHook(qikberry_conn_id=make_qikberry_conn(), max_attempts=2, clock=Sleeps(seeded))
    with pytest.raises(QikberryDltCheckUnavailableError, match="could not run"):
        hook.send_sms(A, GOOD, sender="ACMEIN", template_id=OTP_ID, dlt_check="required")
    assert posts(seeded) == 0
    ok, text = hook.test_connection()
    assert ok
    assert "DLT senders and templates not read" in text
    hook.send_sms(A, GOOD, sender="ACMEIN", template_id=OTP_ID)
    assert "DLT pre-check could not run" in all_log_text(caplog, capfd)
    assert count(seeded, "POST sms/send") == 1
    # Not cached as "the account has no templates": once the endpoint answers, the check runs again.
    seeded.set_faults([])
    with pytest.raises(QikberryDltMismatchError):
        hook.send_sms(A, GOOD.replace("OTP", "code"), sender="ACMEIN", template_id=OTP_ID)
