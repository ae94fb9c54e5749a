"""Options that make the emulator disagree with a client's assumptions (all off by default).

``visibility_delay_seconds``, ``number_format``, ``status_page_size``, ``paginate_lookups`` and
``bulk_keeps_custom``: each is set through the config API, ``Emulator.configure`` or ``EmulatorConfig``
and checked over real HTTP.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import requests

from airflow_qikberry.emulator import Emulator, EmulatorConfig
from airflow_qikberry.emulator.__main__ import build_parser, config_from_args
from tests.emulator.conftest import EMU_TOKEN, Client, Receiver
from tests.emulator.test_emulator_process import me, start_cli, stop_cli

NEW_DEFAULTS = {
    "visibility_delay_seconds": 0.0,
    "number_format": "plain",
    "status_page_size": 100,
    "paginate_lookups": False,
    "bulk_keeps_custom": True,
}


def status(client: Client, **params: Any) -> dict[str, Any]:
    r = client.get("sms/status", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def status_ids(client: Client, **params: Any) -> list[str]:
    return [row["id"] for row in status(client, **params)["data"]]


def bulk(client: Client, numbers: list[str], **fields: Any) -> requests.Response:
    data = {"message": "Bulk hello", "sender": "QIKBRY", "service": "T", **fields}
    content = "\n".join(numbers).encode()
    return client.post("sms/bulk", data=data, files={"file": ("numbers.txt", content, "text/plain")})


# ------------------------------------------------------------------------------------- configuration
def test_defaults_follow_the_reference(emu: Emulator, client: Client) -> None:
    config = emu.config
    assert {name: getattr(config, name) for name in NEW_DEFAULTS} == NEW_DEFAULTS
    served = client.control("GET", "config").json()["config"]
    assert {name: served[name] for name in NEW_DEFAULTS} == NEW_DEFAULTS


def test_config_api_sets_and_validates_the_new_fields(emu: Emulator, client: Client) -> None:
    changes = {
        "visibility_delay_seconds": 2.5,
        "number_format": "plus",
        "status_page_size": 7,
        "paginate_lookups": True,
        "bulk_keeps_custom": False,
    }
    r = client.control("POST", "config", json=changes)
    assert r.status_code == 200, r.text
    assert {name: r.json()["config"][name] for name in changes} == changes
    assert {name: getattr(emu.config, name) for name in changes} == changes
    bad: list[tuple[dict[str, Any], str]] = [
        ({"visibility_delay_seconds": -1}, "visibility_delay_seconds must be >= 0"),
        ({"visibility_delay_seconds": "3"}, "visibility_delay_seconds must be a number"),
        ({"number_format": "e164"}, "number_format must be one of 'plain', 'plus'"),
        ({"number_format": None}, "number_format must be one of"),
        ({"status_page_size": 0}, "status_page_size must be positive"),
        ({"status_page_size": 2.5}, "status_page_size must be an integer"),
        ({"status_page_size": True}, "status_page_size must be an integer"),
        ({"paginate_lookups": "yes"}, "paginate_lookups must be a boolean"),
        ({"paginate_lookups": 1}, "paginate_lookups must be a boolean"),
        ({"bulk_keeps_custom": 0}, "bulk_keeps_custom must be a boolean"),
    ]
    for update, message in bad:
        r = client.control("POST", "config", json=update)
        assert r.status_code == 400, update
        assert message in r.json()["message"], (update, r.json())
        with pytest.raises(ValueError, match=message):
            emu.configure(**update)
    # Nothing was half-applied by the rejected updates.
    assert {name: getattr(emu.config, name) for name in changes} == changes
    emu.reset()
    assert {name: getattr(emu.config, name) for name in NEW_DEFAULTS} == NEW_DEFAULTS


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("visibility_delay_seconds", -0.5),
        ("number_format", "PLUS"),
        ("status_page_size", -3),
        ("paginate_lookups", "true"),
        ("bulk_keeps_custom", None),
    ],
)
def test_emulator_config_rejects_bad_values(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        Emulator(EmulatorConfig(**{field: value}))


# ------------------------------------------------------------------------------------- visibility delay
def test_visibility_delay_hides_new_messages_from_every_lookup(emu: Emulator, client: Client) -> None:
    client.control("POST", "config", json={"visibility_delay_seconds": 30, "manual_clock": True})
    root = {"message": "Seen later", "sender": "QIKBRY", "service": "T", "name": "late", "custom": "vis-ref"}
    r = client.post("sms/send/json", json={"root": root, "nodes": [{"to": "919876543210"}]})
    assert r.status_code == 200
    out = r.json()
    # The send answer carries its rows at once ...
    [row] = out["data"]
    msg_id, group = row["id"], out["group_id"]
    today = emu.now().strftime("%Y-%m-%d")
    lookups: list[dict[str, str]] = [
        {"id": msg_id},
        {"cid": "vis-ref"},
        {"mobile": "919876543210"},
        {"group_id": group},
        {"date": today},
    ]
    # ... sms/status shows nothing yet, although inspection lists the accepted message ...
    for params in lookups:
        assert status_ids(client, **params) == [], params
    assert status(client, group_id=group)["meta"]["total"] == 0
    assert [m["id"] for m in client.control("GET", "messages").json()["messages"]] == [msg_id]
    emu.advance_clock(28)
    for params in lookups:
        assert status_ids(client, **params) == [], params
    # ... until the delay has passed on the emulator clock.
    emu.advance_clock(3)
    for params in lookups:
        assert status_ids(client, **params) == [msg_id], params
    assert status(client, group_id=group)["meta"]["total"] == 1
    # The delay counts from each message's own acceptance.
    second = client.send(custom="vis-ref").json()["data"][0]["id"]
    assert status_ids(client, cid="vis-ref") == [msg_id]
    assert status_ids(client, mobile="919876543210") == [msg_id]
    assert status_ids(client, id=second) == []
    emu.advance_clock(31)
    assert status_ids(client, cid="vis-ref") == [msg_id, second]


def test_visibility_delay_from_emulator_config_and_delivery_meanwhile() -> None:
    config = EmulatorConfig(token=EMU_TOKEN, visibility_delay_seconds=10, dlr_delay_seconds=1)
    with Emulator(config) as emu:
        client = Client(emu)
        try:
            msg_id = client.send().json()["data"][0]["id"]
            emu.advance_clock(5)
            # Final already (the delivery lifecycle does not wait), still invisible to sms/status.
            assert [m["status"] for m in emu.messages()] == ["DELIVRD"]
            assert status_ids(client, id=msg_id) == []
            emu.advance_clock(6)
            assert [r["status"] for r in status(client, id=msg_id)["data"]] == ["DELIVRD"]
        finally:
            client.close()


# ------------------------------------------------------------------------------------- number format
def test_plus_number_format_in_every_mobile_field(emu: Emulator, client: Client, receiver: Receiver) -> None:
    assert client.control("POST", "config", json={"number_format": "plus"}).status_code == 200
    hook = client.post("developer/webhooks", json={"name": "h", "uri": receiver.url}).json()["data"]
    sent = client.send(to="919876543210,14155550101", webhook_id=hook["id"]).json()["data"]
    assert [row["mobile"] for row in sent] == ["+919876543210", "+14155550101"]
    assert [row["iso_code"] for row in sent] == ["IN", "US"]
    body = {"root": {"message": "m", "sender": "QIKBRY", "service": "T"}, "nodes": [{"to": "447700900123"}]}
    nodes = client.post("sms/send/json", json=body).json()["data"]
    assert [row["mobile"] for row in nodes] == ["+447700900123"]
    assert [row["mobile"] for row in status(client, id=sent[0]["id"])["data"]] == ["+919876543210"]
    group = sent[0]["id"].split(":")[0]
    assert [row["mobile"] for row in status(client, group_id=group)["data"]] == [
        "+919876543210",
        "+14155550101",
    ]
    emu.advance_clock(5)
    calls = receiver.wait_for(2)
    assert sorted(call["body"]["mobile"] for call in calls) == ["+14155550101", "+919876543210"]
    # Inspection shows the stored number (digits with country code), whatever the answer format.
    assert [m["mobile"] for m in emu.messages()] == ["919876543210", "14155550101", "447700900123"]


@pytest.mark.parametrize("number_format", ["plain", "plus"])
def test_mobile_filter_accepts_both_forms(emu: Emulator, client: Client, number_format: str) -> None:
    emu.configure(number_format=number_format)
    msg_id = client.send(to="919876543210").json()["data"][0]["id"]
    client.send(to="919876543211")
    expected = "+919876543210" if number_format == "plus" else "919876543210"
    for value in ("919876543210", "+919876543210"):
        rows = status(client, mobile=value)["data"]  # requests encodes "+" as %2B
        assert [(r["id"], r["mobile"]) for r in rows] == [(msg_id, expected)], value
    # An unencoded "+" arrives as a space; it still finds the number.
    raw = client.session.get(emu.base_url + "sms/status?mobile=+919876543210", timeout=10).json()
    assert [r["id"] for r in raw["data"]] == [msg_id]


def test_plain_number_format_is_the_default(client: Client) -> None:
    row = client.send(to="919876543210").json()["data"][0]
    assert row["mobile"] == "919876543210"
    assert status(client, id=row["id"])["data"][0]["mobile"] == "919876543210"


# ------------------------------------------------------------------------------------- page size & lookups
def test_status_page_size_applies_to_group_queries(emu: Emulator, client: Client) -> None:
    emu.configure(status_page_size=7)
    client.send(to=",".join(f"9198765{i:05d}" for i in range(20)))
    group = emu.messages()[0]["group_id"]
    pages = [status(client, group_id=group, page=n) for n in (1, 2, 3)]
    assert [len(p["data"]) for p in pages] == [7, 7, 6]
    assert {(p["meta"]["per_page"], p["meta"]["last_page"], p["meta"]["total"]) for p in pages} == {
        (7, 3, 20)
    }
    assert (pages[1]["meta"]["from"], pages[1]["meta"]["to"]) == (8, 14)
    ids = [row["id"] for p in pages for row in p["data"]]
    assert ids == [f"{group}:{n}" for n in range(1, 21)]


def test_paginated_cid_lookup_walks_every_page(emu: Emulator, client: Client) -> None:
    client.control("POST", "config", json={"paginate_lookups": True, "status_page_size": 5})
    sent = client.send(to=",".join(f"9198765{i:05d}" for i in range(12)), custom="many").json()["data"]
    client.send(to="919876500099", custom="other")
    first = status(client, cid="many")
    assert list(first) == ["status", "code", "message", "data", "links", "meta"]
    assert len(first["data"]) == 5
    assert (first["meta"]["per_page"], first["meta"]["last_page"], first["meta"]["total"]) == (5, 3, 12)
    assert first["links"]["next"].endswith("?cid=many&page=2")
    # Follow `links.next` as a paginating client must.
    ids, url, pages = [], emu.base_url + "sms/status?cid=many", 0
    while url:
        body = client.session.get(url, timeout=10).json()
        ids += [row["id"] for row in body["data"]]
        url, pages = body["links"]["next"], pages + 1
    assert pages == 3
    assert ids == [row["id"] for row in sent]
    # The id and mobile lookups are paginated too.
    by_id = status(client, id=sent[0]["id"])
    assert "meta" in by_id
    assert by_id["meta"]["total"] == 1
    assert by_id["meta"]["per_page"] == 5
    by_mobile = status(client, mobile="919876500099")
    assert "links" in by_mobile
    assert [r["custom"] for r in by_mobile["data"]] == ["other"]


def test_unpaginated_lookups_by_default_return_everything(emu: Emulator, client: Client) -> None:
    emu.configure(status_page_size=5)  # applies to group_id/date pages only
    sent = client.send(to=",".join(f"9198765{i:05d}" for i in range(12)), custom="many").json()["data"]
    body = status(client, cid="many")
    assert list(body) == ["status", "code", "message", "data"]
    assert [row["id"] for row in body["data"]] == [row["id"] for row in sent]
    assert list(status(client, id=sent[0]["id"])) == ["status", "code", "message", "data"]


# ------------------------------------------------------------------------------------- bulk custom
def test_bulk_keeps_custom_by_default(client: Client) -> None:
    assert bulk(client, ["919876543210", "919876543211"], custom="bulk-ref").status_code == 200
    rows = status(client, cid="bulk-ref")["data"]
    assert [(r["mobile"], r["custom"]) for r in rows] == [
        ("919876543210", "bulk-ref"),
        ("919876543211", "bulk-ref"),
    ]


def test_bulk_drops_custom_when_configured(emu: Emulator, client: Client) -> None:
    client.control("POST", "config", json={"bulk_keeps_custom": False})
    r = bulk(client, ["919876543210", "919876543211"], custom="bulk-ref")
    assert r.json() == {"status": 200, "message": "2 numbers accepted for delivery.", "data": []}
    assert status(client, cid="bulk-ref")["data"] == []
    assert [m["custom"] for m in emu.messages()] == ["", ""]
    # The upload is still found by number; other endpoints keep `custom`.
    assert [r["custom"] for r in status(client, mobile="919876543211")["data"]] == [""]
    client.send(custom="send-ref")
    assert len(status(client, cid="send-ref")["data"]) == 1


# ------------------------------------------------------------------------------------- command line
def test_cli_flags_parse_into_the_config() -> None:
    defaults = config_from_args(build_parser().parse_args([]))
    assert {name: getattr(defaults, name) for name in NEW_DEFAULTS} == NEW_DEFAULTS
    args = build_parser().parse_args(
        [
            "--visibility-delay",
            "4.5",
            "--number-format",
            "plus",
            "--status-page-size",
            "25",
            "--paginate-lookups",
            "--bulk-drops-custom",
        ]
    )
    config = config_from_args(args)
    assert {name: getattr(config, name) for name in NEW_DEFAULTS} == {
        "visibility_delay_seconds": 4.5,
        "number_format": "plus",
        "status_page_size": 25,
        "paginate_lookups": True,
        "bulk_keeps_custom": False,
    }
    # The other fields keep their defaults.
    untouched = {k: v for k, v in dataclasses.asdict(config).items() if k not in NEW_DEFAULTS}
    assert untouched == {k: v for k, v in dataclasses.asdict(defaults).items() if k not in NEW_DEFAULTS}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--number-format", "e164"])


def test_cli_process_serves_with_the_flags() -> None:
    proc, port, _ = start_cli(
        "--token",
        "cli-flags",
        "--visibility-delay",
        "60",
        "--number-format",
        "plus",
        "--status-page-size",
        "3",
        "--paginate-lookups",
        "--bulk-drops-custom",
    )
    try:
        assert me(port, "cli-flags").status_code == 200
        config = requests.get(f"http://127.0.0.1:{port}/_emulator/config", timeout=10).json()["config"]
        assert {name: config[name] for name in NEW_DEFAULTS} == {
            "visibility_delay_seconds": 60.0,
            "number_format": "plus",
            "status_page_size": 3,
            "paginate_lookups": True,
            "bulk_keeps_custom": False,
        }
        r = requests.post(
            f"http://127.0.0.1:{port}/api/v2/sms/send",
            headers={"Authorization": "Bearer cli-flags", "Accept": "application/json"},
            json={"to": "919876543210", "message": "Hi", "sender": "QIKBRY", "service": "T"},
            timeout=10,
        )
        assert r.json()["data"][0]["mobile"] == "+919876543210"
    finally:
        stop_cli(proc)


def test_cli_rejects_a_bad_page_size() -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "airflow_qikberry.emulator", "--port", "0", "--status-page-size", "0"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 2
    assert "status_page_size must be positive" in proc.stderr
