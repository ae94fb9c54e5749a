"""Bad inputs: a table of cases across operators, sensor, notifier and connection.

Each must end in a typed ``QikberryError`` that names the offending field and says what to do, and the
emulator's request log must show **0 requests**: nothing reaches the API before the input is known good.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from airflow_qikberry.exceptions import QikberryError
from tests.helpers import all_log_text

NOW = datetime.now(timezone.utc)
HINDI = "नमस्ते, आपका ऑर्डर भेज दिया गया है। "


class Case(NamedTuple):
    id: str
    field: str
    run: Callable[[Path], Any]
    conn: dict[str, Any] = {}


def sms(**kwargs: Any) -> Callable[[Path], Any]:
    def run(_: Path) -> Any:
        from airflow_qikberry.operators.sms import QikberrySendSmsOperator

        args = {"to": "919876543210", "message": "Your order has shipped", **kwargs}
        return QikberrySendSmsOperator(task_id="send", **args).execute({})

    return run


def balance(**kwargs: Any) -> Callable[[Path], Any]:
    def run(_: Path) -> Any:
        from airflow_qikberry.operators.balance import QikberryCheckBalanceOperator

        return QikberryCheckBalanceOperator(task_id="balance", **{"min_credits": 10, **kwargs}).execute({})

    return run


def campaign(**kwargs: Any) -> Callable[[Path], Any]:
    def run(tmp: Path) -> Any:
        from airflow_qikberry.operators.campaign import QikberryBulkCampaignOperator

        args = {"recipients": ["919876543210", "919876543211"], "message": "Sale starts today", **kwargs}
        if args.get("csv_path") == "HUGE":
            huge = tmp / "huge.csv"
            with huge.open("wb") as handle:  # sparse: 250 MB on paper, nothing on disk
                handle.write(b"mobile\n")
                handle.truncate(250 * 1024 * 1024)
            args["csv_path"] = str(huge)
        return QikberryBulkCampaignOperator(task_id="campaign", **args).execute({})

    return run


def sensor(**kwargs: Any) -> Callable[[Path], Any]:
    def run(_: Path) -> Any:
        from airflow_qikberry.sensors.delivery import QikberryDeliverySensor

        return QikberryDeliverySensor(task_id="wait", **kwargs).execute({})

    return run


def hook(method: str, *args: Any, **kwargs: Any) -> Callable[[Path], Any]:
    def run(tmp: Path) -> Any:
        from airflow_qikberry.hooks.qikberry import QikberryHook

        numbers = tmp / "numbers.txt"
        numbers.write_text("919876543210\n", encoding="utf-8")
        call_args = [str(numbers) if a == "NUMBERS_FILE" else a for a in args]
        if "TEXT_MODE_FILE" in call_args:
            with open(numbers, encoding="utf-8") as text_mode:  # open() without "b"
                call_args = [text_mode if a == "TEXT_MODE_FILE" else a for a in call_args]
                return getattr(QikberryHook(), method)(*call_args, **kwargs)
        result = getattr(QikberryHook(), method)(*call_args, **kwargs)
        return list(result) if method == "iter_group_status" else result

    return run


NODE = {"to": "919876543210", "message": "Your order has shipped"}
CUT_EMOJI = "Your order has shipped \ud83d"  # the first half of 😀, the second lost upstream


def hook_call(_: Path) -> Any:
    from airflow_qikberry.hooks.qikberry import QikberryHook

    return QikberryHook().get_balance()


CASES = [
    # send operator
    Case("sms: too short a number", "to", sms(to="12345")),
    Case("sms: letters for a number", "to", sms(to="call-me-maybe")),
    Case("sms: XCom of records instead of numbers", "to", sms(to=[{"mobile": "919876543210"}])),
    Case("sms: a dict rendered as text", "to", sms(to="{'mobile': '919876543210'}")),
    Case("sms: empty text", "message", sms(message="   ")),
    Case("sms: 5,000-character text", "message", sms(message="x" * 5000)),
    Case("sms: unicode over max_units", "message", sms(message=HINDI * 3, max_units=1)),
    Case("sms: sender too short for DLT", "sender", sms(sender="QB")),
    Case("sms: sender too long", "sender", sms(sender="QIKBERRYALERTS")),
    Case("sms: schedule 1 minute ahead", "schedule_at", sms(schedule_at=NOW + timedelta(minutes=1))),
    Case("sms: schedule 4 months ahead", "schedule_at", sms(schedule_at=NOW + timedelta(days=122))),
    Case("sms: 4 tags", "tags", sms(tags=["a", "b", "c", "d"])),
    Case("sms: control character in custom id", "custom_id", sms(custom_id="order\n42")),
    Case("sms: malformed service", "service", sms(service="T!")),
    Case("sms: DLT template id with letters", "template_id", sms(template_id="TPL-1")),
    Case("sms: unknown encoding", "encoding", sms(encoding="utf8")),
    # numbers the API would get wrong or refuse (issue 16, items 1 and 2)
    Case("sms: a float from a pandas column", "to", sms(to=[919876543210.0])),
    Case("sms: a float column written as text", "to", sms(to="919876543210.0")),
    Case("sms: scientific notation from Excel", "to", sms(to="9.19877E+11")),
    Case("sms: 16 digits", "to", sms(to="+49 30 123456789012")),
    Case("sms: 7 digits", "to", sms(to="+290 1234")),
    Case("sms: a boolean for a number", "to", sms(to=[True])),
    # text that cannot be sent (item 8)
    Case("sms: half an emoji in the text", "message", sms(message=CUT_EMOJI)),
    Case("sms: NUL in the text", "message", sms(message="Your order\x00 has shipped")),
    # booleans given as text and values of the wrong type (item 8)
    Case("sms: flash neither true nor false", "flash", sms(flash="maybe")),
    Case("sms: resend neither true nor false", "resend", sms(resend="perhaps")),
    Case("sms: dry_run neither true nor false", "dry_run", sms(dry_run="sure")),
    Case("sms: a dict as webhook id", "webhook_id", sms(webhook_id={"id": "wh-1"})),
    Case("sms: a list as webhook id", "webhook_id", sms(webhook_id=["wh-1"])),
    Case("sms: a dict among the tags", "tags", sms(tags=["promo", {"tag": "diwali"}])),
    Case("sms: a dict of tags", "tags", sms(tags={"promo": 1})),
    Case("sms: a dict as custom id", "custom_id", sms(custom_id={"order": 42})),
    Case("sms: a dict as sender", "sender", sms(sender={"id": "QIKBRY"})),
    Case("sms: a list as service", "service", sms(service=["T"])),
    Case("sms: a dict as template id", "template_id", sms(template_id={"id": "1107161234567890123"})),
    Case("sms: a list as entity id", "entity_id", sms(entity_id=["1101456780000012345"])),
    # the hook, called from Python code
    Case(
        "hook: flash neither true nor false", "flash", hook("send_sms", "919876543210", "Hi", flash="maybe")
    ),
    Case(
        "hook: resend neither true nor false", "resend", hook("send_sms", "919876543210", "Hi", resend="no!")
    ),
    Case("hook: a float number", "to", hook("send_sms", 919876543210.0, "Hi")),
    Case(
        "hook: half an emoji in a batch node",
        "nodes[0].message",
        hook("send_batch", [{**NODE, "message": CUT_EMOJI}]),
    ),
    Case(
        "hook: batch node flash as a word", "nodes[0].flash", hook("send_batch", [{**NODE, "flash": "maybe"}])
    ),
    Case(
        "hook: batch node sender as a dict",
        "nodes[0].sender",
        hook("send_batch", [{**NODE, "sender": {"a": 1}}]),
    ),
    Case(
        "hook: batch node tags as a dict", "nodes[0].tags", hook("send_batch", [{**NODE, "tags": {"a": 1}}])
    ),
    Case(
        "hook: batch node 16 digits", "nodes[0].to", hook("send_batch", [{**NODE, "to": "4912345678901234"}])
    ),
    Case("hook: batch root flash as a word", "flash", hook("send_batch", [NODE], flash="perhaps")),
    Case("hook: batch name as a dict", "name", hook("send_batch", [NODE], name={"campaign": "x"})),
    Case("hook: batch check_first as a word", "check_first", hook("send_batch", [NODE], check_first="?")),
    Case("hook: batch webhook id as a list", "webhook_id", hook("send_batch", [NODE], webhook_id=["w"])),
    Case("hook: bulk file open in text mode", "file", hook("upload_bulk", "TEXT_MODE_FILE", "Hi")),
    Case("hook: bulk column as a list", "column", hook("upload_bulk", "NUMBERS_FILE", "Hi", column=["m"])),
    Case("hook: bulk flash as a word", "flash", hook("upload_bulk", "NUMBERS_FILE", "Hi", flash="x")),
    Case("hook: bulk resend as a word", "resend", hook("upload_bulk", "NUMBERS_FILE", "Hi", resend="x")),
    Case("hook: bulk text with half an emoji", "message", hook("upload_bulk", "NUMBERS_FILE", CUT_EMOJI)),
    Case("hook: status by a dict as message id", "message_id", hook("get_status", message_id={"id": "a:1"})),
    Case("hook: status by a list as custom id", "custom_id", hook("get_status", custom_id=["order-1"])),
    Case("hook: status by a float number", "mobile", hook("get_status", mobile=919876543210.0)),
    Case("hook: status by a dict as number", "mobile", hook("get_status", mobile={"m": "919876543210"})),
    Case("hook: group status of a list", "group_id", hook("iter_group_status", ["g-1"])),
    Case("hook: poll page of a dict", "group_id", hook("poll_page", {"group_id": "g-1"})),
    # balance check
    Case("balance: negative threshold", "min_credits", balance(min_credits=-5)),
    Case("balance: unknown on_low", "on_low", balance(on_low="explode")),
    # bulk campaign
    Case("campaign: two recipient sources", "recipients", campaign(csv_path="/tmp/x.csv")),
    Case("campaign: no recipient source", "recipients", campaign(recipients=None)),
    Case("campaign: 250 MB file", "csv_path", campaign(recipients=None, csv_path="HUGE")),
    Case(
        "campaign: 600,000 rows", "recipients", campaign(recipients=[f"9198{i:08d}" for i in range(600_000)])
    ),
    Case("campaign: chunk over 50,000", "chunk_size", campaign(chunk_size=60_000)),
    Case(
        "campaign: split batch under 1,000",
        "batch_size",
        campaign(batch_size=500, interval=timedelta(minutes=10), schedule_at=NOW + timedelta(hours=1)),
    ),
    Case(
        "campaign: split interval of 1 minute",
        "interval",
        campaign(batch_size=1000, interval=timedelta(minutes=1), schedule_at=NOW + timedelta(hours=1)),
    ),
    Case("campaign: text and per-row template", "message", campaign(message_template="Hi {{ row.name }}")),
    Case("campaign: 4 tags", "tags", campaign(tags=["a", "b", "c", "d"])),
    Case("campaign: every number invalid", "max_invalid_ratio", campaign(recipients=["12", "34", "56"])),
    Case("campaign: XCom of a record without a number", "phone_column", campaign(recipients="{'rows': 3}")),
    Case("campaign: flash neither true nor false", "flash", campaign(flash="maybe")),
    Case("campaign: dry_run neither true nor false", "dry_run", campaign(dry_run="perhaps")),
    Case("campaign: resend neither true nor false", "resend", campaign(resend="2")),
    Case("campaign: a list as webhook id", "webhook_id", campaign(webhook_id=["wh-1"])),
    Case("campaign: a dict as name", "name", campaign(name={"campaign": "diwali"})),
    Case("campaign: half an emoji in the text", "message", campaign(message=CUT_EMOJI)),
    Case(
        "campaign: every number a pandas float", "max_invalid_ratio", campaign(recipients=[9.19876543210e11])
    ),
    # delivery sensor
    Case("sensor: ids and group both", "group_id", sensor(message_ids=["g:1"], group_id="g")),
    Case("sensor: neither ids nor group", "message_ids", sensor()),
    Case("sensor: success ratio above 1", "success_ratio", sensor(group_id="g", success_ratio=1.5)),
    Case("sensor: records without ids rendered as text", "message_ids", sensor(message_ids="[{'rows': 3}]")),
    Case("sensor: a list inside the ids", "message_ids", sensor(message_ids=[["g:1"]])),
    Case("sensor: a dict as group", "group_id", sensor(group_id=[{"id": "g"}])),
    # connection
    Case("connection: missing token", "password", hook_call, {"password": None}),
    Case("connection: ftp base URL", "host", hook_call, {"host": "ftp://alerts.qikberry.com/api/v2/"}),
    Case("connection: verify_ssl neither true nor false", "verify_ssl", hook_call, {"verify_ssl": "maybe"}),
    Case("connection: negative timeout", "timeout", hook_call, {"timeout": -1}),
    Case("connection: token in a cookie", "auth_in", hook_call, {"auth_in": "cookie"}),
    Case("connection: zero poll budget", "poll_budget_per_minute", hook_call, {"poll_budget_per_minute": 0}),
    Case("connection: unknown default region", "default_region", hook_call, {"default_region": "XX"}),
]


# Reading 500,001 rows before refusing the 600,000-row campaign takes tens of seconds: marked slow.
PARAMS = [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if "600,000" in c.id else []) for c in CASES]


@pytest.mark.parametrize("case", PARAMS)
def test_bad_input_is_a_typed_error_naming_the_field_with_zero_requests(
    case: Case, make_qikberry_conn: Any, emulator: Any, tmp_path: Path
) -> None:
    conn = dict(case.conn)
    host = conn.pop("host", None)
    password = conn.pop("password", "unset")
    kwargs: dict[str, Any] = {"host": host} if host else {}
    if password is None:
        kwargs["password"] = None
    make_qikberry_conn(**kwargs, **conn)

    with pytest.raises(QikberryError) as info:
        case.run(tmp_path)

    error = info.value
    assert getattr(error, "field", None) == case.field, f"{type(error).__name__}: {error}"
    text = str(error)
    assert len(text) > 30, text  # a sentence that says what is wrong and what to do, not a bare code
    assert emulator.request_log()["counts"] == {}, emulator.request_log()["counts"]
    RESULTS.append(case.id)


RESULTS: list[str] = []


def test_notifier_bad_recipient_is_logged_naming_the_field_with_zero_requests(
    qikberry_conn: str, emulator: Any, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow_qikberry.notifications.qikberry import QikberryNotifier

    caplog.set_level(logging.ERROR)
    # A callback must never raise (it would hide the task's own failure): the typed error is logged instead.
    QikberryNotifier(to="not-a-number", message="load failed").notify({})
    logged = all_log_text(caplog, capfd)
    assert "recipient 1 skipped: to:" in logged, logged
    assert emulator.request_log()["counts"] == {}


def test_bad_input_figures(figure: Any) -> None:
    if len(RESULTS) != len(CASES):
        pytest.skip("run together with the bad-input table of this module")
    figure("bad_inputs", cases=len(CASES) + 1, typed_errors_naming_the_field=len(CASES) + 1, requests_made=0)
