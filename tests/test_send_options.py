"""SendOptions, the one definition of the send parameters: what each entry point hands it, what each endpoint
takes, and that a dry run reads the same preparation a send posts.

The hook's own behaviour with every option is tests/hooks/test_hook_send_options.py's; these tests pin what
the single definition adds: keyword arguments refused as Python refuses them, options an endpoint does not
take refused rather than dropped, rendered fields read back once for every operator and the notifier.
"""

from __future__ import annotations

import dataclasses
import io
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_qikberry import sends
from airflow_qikberry.connection import ConnectionSettings
from airflow_qikberry.exceptions import QikberryValidationError
from airflow_qikberry.hooks.qikberry import QikberryHook
from airflow_qikberry.send_options import SendOptions
from tests.helpers import SentRequests, api_counts, count

A = "919876543210"
TEMPLATE = "1107160000000012345"
SETTINGS = ConnectionSettings(
    "http://127.0.0.1:9/api/v2/", "t", sender="QIKBRY", service="T", default_region="IN"
)


@pytest.mark.parametrize(
    ("method", "args", "keyword"),
    [
        ("send_sms", (A, "Hi"), "sendr"),  # a typo
        ("send_sms", (A, "Hi"), "name"),  # sms/send takes no campaign name
        ("send_batch", ([{"to": A, "message": "Hi"}],), "custom_id"),  # per node in a batch
        ("upload_bulk", (io.BytesIO(b"919876543210\n"), "Hi"), "tags"),  # sms/bulk takes no tags
        ("upload_bulk", (io.BytesIO(b"919876543210\n"), "Hi"), "name"),
    ],
)
def test_a_keyword_the_method_does_not_take_is_a_type_error(
    qikberry_conn: str, emulator: Any, method: str, args: tuple[Any, ...], keyword: str
) -> None:
    # Break: drop the check in SendOptions.from_keywords -> name/custom_id/tags reach refuse_unless and fail
    # as QikberryValidationError, not as the TypeError the explicit signatures raised.
    hook = QikberryHook(qikberry_conn_id=qikberry_conn)
    with pytest.raises(TypeError, match=rf"{method}\(\) got an unexpected keyword argument '{keyword}'"):
        getattr(hook, method)(*args, **{keyword: "x"})
    assert api_counts(emulator) == {}


@pytest.mark.parametrize(
    ("prepare", "options", "field"),
    [
        (lambda o: sends.prepare_sms(SETTINGS, A, "Hi", o), SendOptions(name="welcome"), "name"),
        (
            lambda o: sends.prepare_batch(SETTINGS, [{"to": A}], o, message="Hi"),
            SendOptions(custom_id="c"),
            "custom_id",
        ),
        (
            lambda o: sends.prepare_upload(SETTINGS, io.BytesIO(b"1\n"), "Hi", o),
            SendOptions(tags="promo"),
            "tags",
        ),
    ],
)
def test_an_option_the_endpoint_does_not_take_is_refused_not_dropped(
    prepare: Any, options: Any, field: str
) -> None:
    # Break: make refuse_unless return at once -> the tags of an upload are silently not sent.
    with pytest.raises(QikberryValidationError) as caught:
        prepare(options)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_options_are_checked_when_built_and_cannot_change() -> None:
    with pytest.raises(QikberryValidationError) as caught:
        SendOptions(tags=["a", "b", "c", "d"])
    assert caught.value.field == "tags"
    with pytest.raises(QikberryValidationError) as caught:
        SendOptions(schedule_at="2030-01-01 09:00")  # no offset: its form needs no connection
    assert caught.value.field == "schedule_at"
    options = SendOptions(tags="promo, otp", flash="yes", schedule_at="2030-01-01T09:00:00Z")
    assert options.tags == ("promo", "otp")
    assert options.flash is True
    assert options.schedule_at == datetime(2030, 1, 1, 9, tzinfo=timezone.utc)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.sender = "OTHERS"  # type: ignore[misc]
    assert options.replace(sender="OTHERS").sender == "OTHERS"
    assert options.sender is None
    with pytest.raises(QikberryValidationError):
        options.replace(max_units=0)  # a copy is checked like a new value


def test_wire_fills_in_and_checks_against_the_connection() -> None:
    assert SendOptions().wire(SETTINGS) == {"sender": "QIKBRY", "service": "T"}
    when = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=1)
    wire = SendOptions(
        sender="OFFERS", service="P", schedule_at=when, flash=True, tags="promo", name="diwali"
    ).wire(SETTINGS)
    assert wire["sender"] == "OFFERS"
    assert wire["service"] == "P"
    assert wire["flash"] == 1
    assert wire["tags"] == ["promo"]
    assert wire["name"] == "diwali"
    assert len(wire["time"]) == 19
    with pytest.raises(QikberryValidationError) as caught:
        SendOptions(sender="qikbry").wire(SETTINGS)  # a DLT header is upper case on route T
    assert caught.value.field == "sender"
    with pytest.raises(QikberryValidationError) as caught:
        SendOptions(schedule_at=datetime.now(timezone.utc) + timedelta(minutes=1)).wire(SETTINGS)
    assert caught.value.field == "schedule_at"


class _Rendered:
    """An operator's rendered fields, plus a method that happens to share a parameter's name."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def custom_id(self) -> str:  # the notifier has such a method: it is not a parameter
        return "not-a-parameter"


def test_from_operator_reads_rendered_fields_back() -> None:
    # Break: read getattr() instead of the instance's own attributes -> custom_id is the method, refused.
    # Break: drop the int -> str step -> the numeric sender is refused as "must be a string".
    task = _Rendered(
        sender=123456,  # native rendering of "123456"
        service="",
        template_id=int(TEMPLATE),
        schedule_at="",
        tags="['promo', 'otp']",  # a list rendered without native rendering
        webhook_id=None,
        message="not a send option",
    )
    options = SendOptions.from_operator(task)
    assert options == SendOptions(sender="123456", template_id=TEMPLATE, tags=["promo", "otp"])
    assert SendOptions.from_operator(task, custom_id="c-1").custom_id == "c-1"
    assert SendOptions.from_operator(SimpleNamespace(custom_id=4711)).custom_id == "4711"


def test_the_dry_run_shows_what_the_send_posts(qikberry_conn: str, emulator: Any) -> None:
    # Break: let the dry run rebuild the sender or the schedule from the operator's own fields (as it once
    # did by hand) -> "sender" is the connection's default "QIKBRY", not the rendered one; fails.
    from airflow_qikberry.operators.sms import QikberrySendSmsOperator

    when = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    arguments: dict[str, Any] = {
        "to": [A, 447700900123],
        "message": "नमस्ते, your order is on its way",
        "sender": 123456,  # rendered natively from "123456"
        "service": "G",  # not a DLT route: a numeric sender is fine
        "schedule_at": when,
        "tags": "['promo']",
        "custom_id": "order-7",
    }
    summary: Any = QikberrySendSmsOperator(task_id="dry", dry_run=True, **arguments).execute({})
    operator = QikberrySendSmsOperator(task_id="send", **arguments)
    wire = SentRequests.on(operator.hook.session)
    operator.execute({})
    (body,) = wire.json_bodies("sms/send")
    assert count(emulator, "POST sms/send") == 1
    assert summary["messages"] == len(body["to"].split(",")) == 2
    assert (summary["sender"], summary["service"], summary["schedule_at"]) == (
        body["sender"],
        body["service"],
        body["time"],
    )
    assert summary["custom_id"] == body["custom"] == "order-7"
    assert {"U": "ucs2", "N": "gsm7"}[body["type"]] == summary["encoding"]
    assert sum(m["units"] for m in emulator.messages()) == summary["units"]


def test_a_campaign_reads_its_send_parameters_once_into_send_options() -> None:
    from airflow_qikberry import campaign as c

    options = c.CampaignOptions.checked(
        name=" diwali ", message="Hi", sender=123456, service="G", tags="['promo', 'otp']", schedule_at=""
    )
    assert options.send == SendOptions(sender="123456", service="G", tags=["promo", "otp"], name="diwali")
    assert options.name == "diwali"
    operator_like = _Rendered(sender="OFFERS", tags="promo", name="ignored")
    options = c.CampaignOptions.checked(
        send=SendOptions.from_operator(operator_like, name=None), name="camp", message="Hi"
    )
    assert (options.send.sender, options.send.tags, options.name) == ("OFFERS", ("promo",), "camp")


def test_a_campaign_checks_its_schedule_per_batch_saying_which(qikberry_conn: str, emulator: Any) -> None:
    # The campaign's root is checked before any row is read, without its schedule: the time of each batch
    # still to be sent is batch_times', whose error names the batch and says that nothing was sent.
    # Break: check the root with options.send as it is -> the plain schedule error, not "nothing was sent".
    from airflow_qikberry import campaign as c

    soon = datetime.now(timezone.utc) + timedelta(minutes=1)
    options = c.CampaignOptions.checked(name="soon", message="Hi", schedule_at=soon)
    with pytest.raises(QikberryValidationError) as caught:
        c.run_campaign(
            options,
            source=c.Source("recipients", lambda: c.recipient_rows([A])),
            hook=QikberryHook(qikberry_conn_id=qikberry_conn),
            identity=None,
        )
    assert caught.value.field == "schedule_at"
    assert str(caught.value).endswith("(schedule_at); nothing was sent.")
    assert emulator.messages() == []
