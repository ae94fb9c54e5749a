"""``sms/send`` over GET, form and JSON: documented shapes, unit accounting, validation and credits."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

from airflow_qikberry.emulator.encoding import encode

if TYPE_CHECKING:
    from airflow_qikberry.emulator import Emulator
    from tests.emulator.conftest import Client

ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}:(\d+)$")
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
FIELDS = {"to": "919876543210", "message": "Welcome", "sender": "QIKBRY", "service": "T"}


def check_row(row: dict[str, Any], mobile: str, n: int, units: int = 1, length: int = 7) -> None:
    assert list(row) == [
        "id",
        "mobile",
        "status",
        "units",
        "length",
        "charges",
        "customid",
        "iso_code",
        "submitted_at",
    ]
    m = ID_RE.match(row["id"])
    assert m
    assert int(m.group(1)) == n
    assert row["mobile"] == mobile
    assert row["status"] == "AWAITING-DLR"
    assert row["units"] == units
    assert type(row["units"]) is int
    assert row["length"] == length
    assert type(row["length"]) is int
    assert row["charges"] == units
    assert type(row["charges"]) is int
    assert isinstance(row["customid"], str)
    assert TS_RE.match(row["submitted_at"])


@pytest.mark.parametrize("how", ["get", "form", "json", "query-on-post"])
def test_send_success_shape_for_every_encoding(client: Client, emu: Emulator, how: str) -> None:
    if how == "get":
        r = client.get("sms/send", params=FIELDS)
    elif how == "form":
        r = client.post("sms/send", data=FIELDS)
    elif how == "json":
        r = client.post("sms/send", json=FIELDS)
    else:
        r = client.post("sms/send", params=FIELDS)
    assert r.status_code == 200
    body = r.json()
    assert list(body) == ["status", "message", "data"]
    assert body["status"] == 200
    assert body["message"] == "1 numbers accepted for delivery."
    check_row(body["data"][0], "919876543210", 1)
    assert body["data"][0]["customid"] == ""
    assert body["data"][0]["iso_code"] == "IN"
    [msg] = emu.messages()
    assert msg["id"] == body["data"][0]["id"]
    assert (msg["message"], msg["sender"], msg["service"], msg["status"]) == (
        "Welcome",
        "QIKBRY",
        "T",
        "AWAITING-DLR",
    )


def test_many_numbers_share_one_uuid_and_keep_duplicates(client: Client, emu: Emulator) -> None:
    r = client.send(to="919876543210, 14155550101,447700900123,919876543210", custom="ref-1")
    data = r.json()["data"]
    assert r.json()["message"] == "4 numbers accepted for delivery."
    for n, (row, mobile) in enumerate(
        zip(data, ["919876543210", "14155550101", "447700900123", "919876543210"], strict=True), 1
    ):
        check_row(row, mobile, n, length=5)
        assert row["customid"] == "ref-1"
    assert {row["id"].split(":")[0] for row in data} == {data[0]["id"].split(":")[0]}
    assert [row["iso_code"] for row in data] == ["IN", "US", "GB", "IN"]
    assert client.send(to="61412345678").json()["data"][0]["iso_code"] is None
    messages = emu.messages()
    assert len(messages) == 5
    assert messages[0]["group_id"] == data[0]["id"].split(":")[0]


def test_to_as_json_array_and_php_array(client: Client, emu: Emulator) -> None:
    assert (
        client.send(to=["919876543210", "919876543211"]).json()["message"]
        == "2 numbers accepted for delivery."
    )
    r = client.post("sms/send", data={**FIELDS, "to[]": ["919876543212", "919876543213"]})
    assert r.json()["message"] == "2 numbers accepted for delivery."


@pytest.mark.parametrize(
    ("text", "sms_type", "units", "length"),
    [
        ("a" * 160, None, 1, 160),
        ("a" * 161, None, 2, 161),
        ("a" * 306, None, 2, 306),
        ("a" * 307, None, 3, 307),
        ("a" * 459, None, 3, 459),
        ("€" * 80, None, 1, 80),  # extension characters count two septets each
        ("€" * 81, None, 2, 81),
        ("[" + "a" * 158, None, 1, 159),
        ("[" + "a" * 159, None, 2, 160),
        ("ह" * 70, None, 1, 70),
        ("ह" * 71, None, 2, 71),
        ("ह" * 134, None, 2, 134),
        ("ह" * 135, None, 3, 135),
        ("a" * 70, "U", 1, 70),
        ("a" * 71, "U", 2, 71),
        ("😀" * 35, "U", 1, 35),  # surrogate pairs take two UCS-2 units
        ("😀" * 36, "U", 2, 36),
        ("ह" * 160, "N", 1, 160),  # forced GSM: replaced by "?"
    ],
)
def test_units_and_length(client: Client, text: str, sms_type: str | None, units: int, length: int) -> None:
    row = client.send(message=text, type=sms_type).json()["data"][0]
    assert (row["units"], row["length"], row["charges"]) == (units, length, units)


def test_gsm_basic_set_stays_gsm() -> None:
    assert encode("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ!\"#¤%&'()*+,-./:;<=>?¡ÄÖÑÜ§¿äöñüà").encoding == "GSM"
    assert encode("a\fb").units == 1
    assert encode("\f" * 81).units == 2


def test_type_n_replaces_non_gsm_characters(client: Client, emu: Emulator) -> None:
    client.send(message="Price ₹100 ok", type="N")
    assert emu.messages()[0]["message"] == "Price ?100 ok"
    assert emu.messages()[0]["encoding"] == "GSM"


def test_charges_follow_the_unit_charge(client: Client, emu: Emulator) -> None:
    emu.configure(unit_charges={"T": 0.25})
    row = client.send(message="a" * 200).json()["data"][0]
    assert row["charges"] == 0.5
    emu.configure(unit_charges={"T": 2})
    assert client.send().json()["data"][0]["charges"] == 2


@pytest.mark.parametrize("missing", ["to", "message", "sender", "service"])
def test_each_required_field_gives_laravel_422(client: Client, missing: str) -> None:
    r = client.post("sms/send", json={k: v for k, v in FIELDS.items() if k != missing})
    assert r.status_code == 422
    text = f"The {missing} field is required."
    assert r.json() == {"status": "ERROR", "code": 422, "message": text, "errors": {missing: [text]}}


def test_all_missing_fields_are_listed_first_one_is_the_message(client: Client) -> None:
    r = client.post("sms/send", json={})
    body = r.json()
    assert list(body["errors"]) == ["to", "message", "sender", "service"]
    assert body["message"] == "The to field is required."


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"to": "+919876543210"}, "to"),
        ({"to": "1234567"}, "to"),
        ({"to": "1234567890123456"}, "to"),
        ({"to": "0919876543210"}, "to"),
        ({"to": "919876543210,abc"}, "to"),
        ({"message": "x" * 4097}, "message"),
        ({"service": "Z"}, "service"),
        ({"type": "X"}, "type"),
        ({"flash": "2"}, "flash"),
        ({"port": "abc"}, "port"),
        ({"max_units": "0"}, "max_units"),
        ({"max_units": 1, "message": "a" * 161}, "max_units"),
        ({"webhook_id": "no-such-hook"}, "webhook_id"),
        ({"tags": ["a", "b", "c", "d"]}, "tags"),
        ({"tags": "a,b,c,d"}, "tags"),
        ({"meta": {"tags": ["a", "b", "c", "d"]}}, "meta.tags"),
        ({"time": "tomorrow"}, "time"),
        ({"message": {"nested": 1}}, "message"),
    ],
)
def test_invalid_values_give_422_naming_the_field(client: Client, fields: dict[str, Any], field: str) -> None:
    r = client.post("sms/send", json={**FIELDS, **fields})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["status"] == "ERROR"
    assert body["code"] == 422
    assert list(body["errors"]) == [field]
    assert body["message"] == body["errors"][field][0]


def test_boundaries_that_are_accepted(client: Client, emu: Emulator) -> None:
    ok = {"to": "12345678,123456789012345", "message": "x" * 4096, "tags": ["a", "b", "c"], "max_units": 27}
    r = client.post("sms/send", json={**FIELDS, **ok, "flash": 1, "type": "n", "port": 5000})
    assert r.status_code == 200, r.text
    msg = emu.messages()[0]
    assert msg["tags"] == ["a", "b", "c"]
    assert msg["flash"] == 1
    assert msg["port"] == "5000"
    r = client.post(
        "sms/send", json={**FIELDS, "meta": {"tags": ["promo"]}, "entity_id": "1", "template_id": "2"}
    )
    assert r.status_code == 200
    last = emu.messages()[-1]
    assert (last["tags"], last["entity_id"], last["template_id"]) == (["promo"], "1", "2")


def test_too_many_numbers_in_one_request(client: Client, emu: Emulator) -> None:
    emu.configure(max_numbers_per_request=2)
    r = client.send(to="919876543210,919876543211,919876543212")
    assert r.status_code == 422
    assert list(r.json()["errors"]) == ["to"]


def test_custom_service_list(client: Client, emu: Emulator) -> None:
    emu.configure(services={"T": "Transactional SMS", "MKT": "Promotional SMS"})
    assert client.send(service="MKT").status_code == 200
    assert client.send(service="P").status_code == 422


def test_credits_are_decremented_and_exhaustion_rejects_the_whole_send(client: Client, emu: Emulator) -> None:
    emu.configure(credits={"T": 5})
    assert client.send(to="919876543210,919876543211", message="a" * 200).status_code == 200  # 2 x 2 units
    balance = {row["service"]: row["credits"] for row in client.get("finance/balance").json()["data"]}
    assert balance["T"] == 1
    r = client.send(to="919876543210,919876543211")
    assert r.status_code == 422
    assert r.json() == {"status": "ERROR", "code": 422, "message": "Insufficient balance."}
    assert len(emu.messages()) == 2
    assert client.send().status_code == 200  # exactly the last credit


def test_insufficient_balance_status_is_configurable(client: Client, emu: Emulator) -> None:
    emu.configure(credits={"T": 0}, insufficient_balance_status=402)
    r = client.send()
    assert r.status_code == 402
    assert r.json()["code"] == 402


def test_schedule_window(client: Client, emu: Emulator) -> None:
    now = emu.now()
    fmt = "%Y-%m-%d %H:%M:%S"
    too_soon = (now.replace(microsecond=0) + _td(seconds=200)).strftime(fmt)
    r = client.send(time=too_soon)
    assert r.status_code == 422
    assert r.json()["message"] == "The time must be more than 5 minutes in the future."
    too_late = (now + _td(days=93)).strftime(fmt)
    r = client.send(time=too_late)
    assert r.status_code == 422
    assert r.json()["message"] == "The time must be less than 92 days in the future."
    assert client.send(time=(now + _td(hours=1)).strftime(fmt)).status_code == 200
    ampm = (now + _td(hours=2)).strftime("%Y-%m-%d %I:%M%p")
    assert client.send(time=ampm).status_code == 200, ampm
    scheduled = emu.messages()
    assert scheduled[0]["scheduled_at"] == (now + _td(hours=1)).strftime(fmt)


def test_schedule_window_is_configurable(client: Client, emu: Emulator) -> None:
    emu.configure(schedule_min_seconds=60, schedule_max_seconds=30 * 86400)
    now = emu.now().replace(microsecond=0)
    fmt = "%Y-%m-%d %H:%M:%S"
    assert client.send(time=(now + _td(minutes=2)).strftime(fmt)).status_code == 200  # < 5 min is fine now
    r = client.send(time=(now + _td(seconds=30)).strftime(fmt))
    assert r.status_code == 422
    assert r.json()["message"] == "The time must be more than 1 minutes in the future."
    r = client.send(time=(now + _td(days=31)).strftime(fmt))  # < 3 months, but past the 30-day window
    assert r.status_code == 422
    assert r.json()["message"] == "The time must be less than 30 days in the future."
    r = client.post(
        "sms/send/json",
        json={
            "root": {**FIELDS, "time": (now + _td(days=31)).strftime(fmt)},
            "nodes": [{"to": "919876543210"}],
        },
    )
    assert r.status_code == 422
    assert list(r.json()["errors"]) == ["root.time"]
    assert len(emu.messages()) == 1


def _td(**kwargs: float) -> Any:
    from datetime import timedelta

    return timedelta(**kwargs)
