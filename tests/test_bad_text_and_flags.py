"""Issue 16, items 2 and 8: the API's number limits and the inputs it cannot take are client-side rules.

* A number outside 8-15 digits (country code included) is refused before any request; in a campaign it is a
  rejected row (``invalid_number``) and the rest of its chunk is sent, where the emulator, like the API,
  would fail the whole chunk with a 422.
* A text holding half of a surrogate pair or a control character is refused before any request; in a
  campaign it is a rejected row (``invalid_message``), never an abort of the campaign.
* Yes/no parameters given as text are read as Airflow reads booleans: ``flash="false"`` sends no flash SMS.
* Ids and names of the wrong type are typed errors, never their repr sent to the API.

The table of bad inputs with 0 requests is ``tests/reliability/test_bad_inputs.py``; these tests cover what
happens to the good inputs next to the bad ones, over real HTTP.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_qikberry import phone, sms_text
from airflow_qikberry import validation as v
from airflow_qikberry.exceptions import QikberryValidationError
from tests.helpers import all_log_text, count, fake_task_identity

NUMBER = "919876543210"
CUT = "\ud83d"  # the first half of 😀 (U+1F600), its second half lost upstream


# ----------------------------------------------------------------------------------------- booleans
TRUE_WORDS = ["true", "True", "TRUE", "t", "yes", "Y", "on", "1", " true "]
FALSE_WORDS = ["false", "False", "f", "no", "N", "off", "0", " off "]


@pytest.mark.parametrize("word", TRUE_WORDS + FALSE_WORDS)
def test_validate_flag_reads_words_as_airflow_does(word: str) -> None:
    from airflow.utils.strings import to_boolean

    # Spaces around are ignored, as the connection always did (Airflow 2.11's to_boolean does not strip).
    assert v.validate_flag(word, field="flash") is to_boolean(word.strip()) is (word in TRUE_WORDS)


@pytest.mark.parametrize("value", [True, False, 1, 0])
def test_validate_flag_takes_booleans_and_0_1(value: Any) -> None:
    assert v.validate_flag(value, field="flash") is bool(value)


@pytest.mark.parametrize("value", ["maybe", "", "2", 2, -1, 1.0, None, [], {"on": True}, b"true"])
def test_validate_flag_refuses_anything_else(value: Any) -> None:
    # Airflow's to_boolean would read "maybe" as False and Python's bool() "false" as True: neither here.
    with pytest.raises(QikberryValidationError) as info:
        v.validate_flag(value, field="flash")
    assert info.value.field == "flash"
    assert "true or false" in info.value.message


@pytest.mark.parametrize(("given", "sent"), [("false", 0), ("0", 0), ("off", 0), ("true", 1), ("yes", 1)])
def test_flash_given_as_text_is_read_as_a_boolean_over_http(
    qikberry_conn: str, emulator: Any, given: str, sent: int
) -> None:
    # Before: bool("false") is True, so the operator sent a flash SMS for flash="false".
    from airflow_qikberry.operators.sms import QikberrySendSmsOperator

    QikberrySendSmsOperator(task_id="send", to=NUMBER, message="Hi", flash=given).execute({})
    assert [m["flash"] for m in emulator.messages()] == [sent]


def test_flash_as_text_reaches_the_api_right_from_every_send(qikberry_conn: str, emulator: Any) -> None:
    from airflow_qikberry.hooks.qikberry import QikberryHook

    hook = QikberryHook()
    hook.send_sms(NUMBER, "one", flash="false")
    hook.send_batch([{"to": "919876543211", "message": "two", "flash": "no"}], flash="true")
    hook.send_batch([{"to": "919876543212", "message": "three"}], flash="off")
    assert [(m["mobile"], m["flash"]) for m in emulator.messages()] == [
        (NUMBER, 0),
        ("919876543211", 0),
        ("919876543212", 0),
    ]


def test_resend_false_as_text_does_not_send_again_on_a_task_retry(
    qikberry_conn: str, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: bool("false") is True, so resend="false" on a retried task sent everything again.
    from airflow_qikberry.hooks.qikberry import QikberryHook

    identity = ["dag", "task", "run-1", "-1", "1"]
    fake_task_identity(monkeypatch, lambda: tuple(identity))
    first = QikberryHook().send_sms(NUMBER, "Your order has shipped", resend="false")
    identity[4] = "2"  # the task's next try
    again = QikberryHook().send_sms(NUMBER, "Your order has shipped", resend="false")
    assert [m.message_id for m in again] == [m.message_id for m in first]
    assert count(emulator, "POST sms/send") == 1


def test_connection_extras_use_the_same_reader(make_qikberry_conn: Any, emulator: Any) -> None:
    from airflow_qikberry.hooks.qikberry import QikberryHook

    make_qikberry_conn(verify_ssl="off", check_dlt_sender="No")
    settings = QikberryHook().settings
    assert settings.verify_ssl is False
    assert settings.check_dlt_sender is False
    make_qikberry_conn(verify_ssl="maybe")
    with pytest.raises(QikberryValidationError) as info:
        _ = QikberryHook().settings
    assert info.value.field == "verify_ssl"


# ----------------------------------------------------------------------------------------- text
@pytest.mark.parametrize(
    ("text", "says"),
    [
        (f"Hi {CUT}", ("unpaired UTF-16 surrogate U+D83D at character 4", "first half")),
        ("\ude00 lost its first half", ("U+DE00 at character 1", "second half")),
        ("Disk\x00full", ("NUL (U+0000) at character 5",)),
        ("Bell\x07", ("U+0007",)),
        ("it\x92s late", ("U+0092", "Windows-1252")),
        ("del\x7f", ("DEL (U+007F)",)),
    ],
)
def test_validate_message_refuses_text_that_cannot_be_sent(text: str, says: tuple[str, ...]) -> None:
    with pytest.raises(QikberryValidationError) as info:
        sms_text.validate_message(text, field="nodes[2].message")
    assert info.value.field == "nodes[2].message"
    for phrase in says:
        assert phrase in info.value.message, info.value.message


@pytest.mark.parametrize("text", ["Hi 😀", "Tab\tand\nlines\r\n", "Form\ffeed", "नमस्ते 🇮🇳"])
def test_validate_message_takes_whole_characters_and_layout_controls(text: str) -> None:
    sms_text.validate_message(text)
    assert sms_text.replace_unsendable(text) == text


def test_replace_unsendable_keeps_an_alert_sendable() -> None:
    assert sms_text.replace_unsendable(f"disk {CUT} full\x00") == "disk ? full?"
    sms_text.validate_message(sms_text.replace_unsendable(f"disk {CUT} full\x00"))


def test_a_campaign_row_with_half_an_emoji_is_rejected_and_the_others_are_sent(
    qikberry_conn: str, emulator: Any, tmp_path: Any
) -> None:
    # Before: the row's text was spooled with str.encode() and the whole campaign aborted with an untyped
    # UnicodeEncodeError before sending anything.
    from airflow_qikberry.operators.campaign import QikberryBulkCampaignOperator

    rows = [
        {"mobile": "919876543210", "name": "Asha"},
        {"mobile": "919876543211", "name": f"Ravi {CUT}"},
        {"mobile": "919876543212", "name": "Meera\x00"},
        {"mobile": "919876543213", "name": "Kiran"},
    ]
    rejected = tmp_path / "rejected.csv"
    summary = QikberryBulkCampaignOperator(
        task_id="campaign",
        name="welcome",
        recipients=rows,
        message_template="Hi {{ row.name }}, welcome!",
        max_invalid_ratio=0.5,
        rejected_path=str(rejected),
    ).execute({})
    assert summary["accepted"] == 2
    assert summary["rejected"] == {"invalid_message": 2}
    assert sorted(m["mobile"] for m in emulator.messages()) == ["919876543210", "919876543213"]
    report = rejected.read_text(encoding="utf-8")
    assert "unpaired UTF-16 surrogate U+D83D" in report
    assert "NUL (U+0000)" in report


# ----------------------------------------------------------------------------------------- API limits
@pytest.mark.parametrize(
    ("number", "digits"), [("+49 30 123456789012", 16), ("+290 1234", 7), ("4912345678901234", 16)]
)
def test_numbers_outside_8_to_15_digits_are_refused_naming_the_count(number: str, digits: int) -> None:
    with pytest.raises(QikberryValidationError) as info:
        phone.normalize_number(number, field="nodes[3].to")
    assert info.value.field == "nodes[3].to"
    assert f"has {digits} digits" in info.value.message
    assert "8 to 15" in info.value.message


def test_a_campaign_row_the_api_would_refuse_is_rejected_up_front_and_its_chunk_is_sent(
    qikberry_conn: str, emulator: Any
) -> None:
    # Before: the 16-digit number was "possible" for phonenumbers, went out in the chunk, and the emulator
    # (like the API) refused the whole chunk with a 422: none of the five rows was sent.
    from airflow_qikberry.operators.campaign import QikberryBulkCampaignOperator

    good = [f"91987654321{i}" for i in range(4)]
    summary = QikberryBulkCampaignOperator(
        task_id="campaign",
        name="offer",
        recipients=[*good[:3], "+49 30 123456789012", good[3]],
        message="Sale starts today",
        max_invalid_ratio=0.25,
    ).execute({})
    assert summary["accepted"] == 4
    assert summary["rejected"] == {"invalid_number": 1}
    assert sorted(m["mobile"] for m in emulator.messages()) == good
    assert count(emulator, "POST sms/send/json") == 1


# ----------------------------------------------------------------------------------------- ids and types
def test_status_lookups_send_checked_ids(qikberry_conn: str, emulator: Any) -> None:
    from airflow_qikberry.hooks.qikberry import QikberryHook

    hook = QikberryHook()
    sent = hook.send_sms(NUMBER, "Hi", custom_id="12345")
    # A custom id rendered natively as an int is looked up as its digits, never as a repr.
    assert [s.message_id for s in hook.get_status(custom_id=12345)] == [sent[0].message_id]
    assert [s.message_id for s in hook.get_status(mobile="+91 98765 43210")] == [sent[0].message_id]
    with pytest.raises(QikberryValidationError) as info:
        hook.get_status(message_id=[sent[0].message_id])
    assert info.value.field == "message_id"


def test_the_notifier_reads_number_values_by_the_same_rule_and_never_loses_an_alert_to_its_text(
    qikberry_conn: str, emulator: Any, caplog: Any, capfd: Any
) -> None:
    import logging

    from airflow_qikberry.notifications.qikberry import QikberryNotifier

    caplog.set_level(logging.ERROR)
    # Before: str(919876543211.0) made "919876543211.0", texted to 9198765432110.
    QikberryNotifier(to=[919876543210, 919876543211.0], message=f"disk {CUT} full").notify({})
    assert [(m["mobile"], m["text"]) for m in emulator.messages()] == [(NUMBER, "disk ? full")]
    logged = all_log_text(caplog, capfd)
    assert "recipient 2 skipped" in logged
    assert "is a float" in logged
