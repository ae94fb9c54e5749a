"""``sms/senders`` and ``sms/templates`` (reference 4.16): shapes, paging, filters, validation, seeds from
``EmulatorConfig`` and the command line, and a templates endpoint the account cannot use."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from airflow_qikberry.emulator import Emulator, EmulatorConfig
from airflow_qikberry.emulator.__main__ import build_parser, config_from_args
from tests.emulator.conftest import Client

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.000000Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SENDER_KEYS = [
    "id",
    "name",
    "service",
    "entity_name",
    "entity_id",
    "header_id",
    "iso",
    "message",
    "document",
    "is_open",
    "purpose",
    "status",
    "created_at",
    "updated_at",
]
TEMPLATE_KEYS = [
    "id",
    "sender_id",
    "template_id",
    "template_type",
    "sender",
    "name",
    "alias",
    "body",
    "content",
    "body_length",
    "match_count",
    "percentage",
    "is_complete",
    "is_english",
    "status",
    "created_at",
    "updated_at",
]
INDIA_SENDER = {
    "name": "QIKBRY",
    "country_code": "IN",
    "service": "T",
    "entity_id": "1101000000001",
    "entity_name": "Acme",
}


def created(r: Any, message: str) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["code"], body["message"]) == ("OK", 200, message)
    return dict(body["data"])


def add_sender(client: Client, **fields: Any) -> dict[str, Any]:
    return created(client.post("sms/senders", json={**INDIA_SENDER, **fields}), "Sender Saved Successfully")


def add_template(client: Client, **fields: Any) -> dict[str, Any]:
    body = {
        "sender": "QIKBRY",
        "name": "temp",
        "body": "This is verification {{var1}} and {{var2}}",
        **fields,
    }
    body.setdefault("template_id", "1107000000000000001")
    body.setdefault("type", "T")
    return created(client.post("sms/templates", json=body), "Template Saved Successfully")


# ---------------------------------------------------------------------------- senders
def test_sender_create_shape(client: Client) -> None:
    sender = add_sender(client)
    assert list(sender) == SENDER_KEYS
    assert UUID.match(sender["id"])
    assert ISO_Z.match(sender["created_at"])
    assert sender["service"] == {"id": 1, "display_name": "Transactional SMS", "name": "T"}
    assert (sender["name"], sender["iso"], sender["entity_id"], sender["entity_name"]) == (
        "QIKBRY",
        "IN",
        "1101000000001",
        "Acme",
    )
    assert sender["status"] == 1
    assert sender["is_open"] == 0
    assert client.get(f"sms/senders/{sender['id']}").json()["data"] == sender


def test_sender_validation(client: Client) -> None:
    r = client.post("sms/senders", json={})
    assert r.status_code == 422
    assert list(r.json()["errors"]) == ["name", "country_code", "service"]
    r = client.post("sms/senders", json={"name": "QIKBRY", "country_code": "IN", "service": "T"})
    assert list(r.json()["errors"]) == ["entity_id", "entity_name"]  # both required for India
    r = client.post(
        "sms/senders", json={"name": "a b", "country_code": "IND", "service": "X", "entity_id": "1x"}
    )
    assert list(r.json()["errors"]) == ["name", "country_code", "service", "entity_id"]
    assert (
        add_sender(client, name="GLOBAL", country_code="us", entity_id=None, entity_name=None)["iso"] == "US"
    )
    add_sender(client)
    r = client.post("sms/senders", json={**INDIA_SENDER, "name": "qikbry"})
    assert r.json()["errors"] == {"name": ["The name has already been taken."]}


def test_sender_update_delete_and_404(client: Client) -> None:
    sender = add_sender(client)
    updated = created(
        client.put(f"sms/senders/{sender['id']}", json={"entity_name": "Acme Ltd", "status": 0}),
        "Sender Updated Successfully",
    )
    assert (updated["entity_name"], updated["status"], updated["name"]) == ("Acme Ltd", 0, "QIKBRY")
    deleted = client.delete(f"sms/senders/{sender['id']}")
    assert deleted.json() == {"status": "OK", "code": 200, "message": "Deleted Successfully", "data": []}
    for method in ("get", "put", "delete"):
        r = getattr(client, method)(f"sms/senders/{sender['id']}", json={"name": "X"})
        assert r.status_code == 404
        assert r.json() == {"status": "ERROR", "code": 404, "message": "Not Found."}


def test_sender_list_pages_and_filters(client: Client, emu: Emulator) -> None:
    for i in range(17):
        add_sender(client, name=f"SEND{i:02d}")
    first = client.get("sms/senders").json()
    assert len(first["data"]) == 15
    assert first["meta"]["total"] == 17
    assert first["meta"]["per_page"] == 15
    assert first["meta"]["path"] == emu.base_url + "sms/senders"
    second = client.get("sms/senders", params={"page": 2}).json()
    assert [s["name"] for s in second["data"]] == ["SEND15", "SEND16"]
    filtered = client.get("sms/senders", params={"filter[name]": "send1"}).json()
    assert [s["name"] for s in filtered["data"]] == [f"SEND1{i}" for i in range(7)]
    assert filtered["links"]["first"] == emu.base_url + "sms/senders?filter%5Bname%5D=send1&page=1"


# ---------------------------------------------------------------------------- templates
def test_template_create_shape(client: Client) -> None:
    sender = add_sender(client)
    template = add_template(client)
    assert list(template) == TEMPLATE_KEYS
    assert template["sender_id"] == sender["id"]
    assert template["sender"] == "QIKBRY"
    assert (template["template_id"], template["template_type"], template["alias"]) == (
        "1107000000000000001",
        "Transactional",
        "temp",
    )
    assert template["body"] == "This is verification {{var1}} and {{var2}}"
    assert (template["content"], template["body_length"], template["is_english"], template["status"]) == (
        None,
        42,
        1,
        1,
    )
    assert client.get(f"sms/templates/{template['id']}").json()["data"] == template


@pytest.mark.parametrize(
    ("kind", "label"), [("P", "Promotional"), ("SI", "Service Implicit"), ("se", "Service Explicit")]
)
def test_template_types(client: Client, kind: str, label: str) -> None:
    add_sender(client)
    assert add_template(client, type=kind)["template_type"] == label


def test_template_alias_is_unique_and_kept_on_rename(client: Client) -> None:
    add_sender(client)
    first = add_template(client, name="OTP Login!", template_id="1")
    second = add_template(client, name="otp login", template_id="2")
    assert (first["alias"], second["alias"]) == ("otp-login", "otp-login-2")
    renamed = created(
        client.put(f"sms/templates/{first['id']}", json={"name": "temp12", "body": "Welcome {{name}}"}),
        "Template Updated Successfully",
    )
    assert (renamed["name"], renamed["alias"], renamed["body"], renamed["body_length"]) == (
        "temp12",
        "otp-login",
        "Welcome {{name}}",
        16,
    )


@pytest.mark.parametrize(
    "body",
    ["Hi {{first_name}}", "Hi {{ name }}", "Hi {{}}", "Hi {{name", "Hi {{na-me}}"],
)
def test_template_body_variables_must_be_alphanumeric(client: Client, body: str) -> None:
    add_sender(client)
    r = client.post(
        "sms/templates", json={"sender": "QIKBRY", "name": "t", "body": body, "template_id": "1", "type": "T"}
    )
    assert r.status_code == 422
    assert list(r.json()["errors"]) == ["body"]
    assert "alphabetic or alphanumeric" in r.json()["message"]


def test_template_validation(client: Client) -> None:
    r = client.post("sms/templates", json={})
    assert list(r.json()["errors"]) == ["sender", "name", "body"]
    r = client.post("sms/templates", json={"sender": "NOSUCH", "name": "t", "body": "b"})
    assert r.json()["errors"] == {"sender": ["The selected sender is invalid."]}
    add_sender(client)
    r = client.post("sms/templates", json={"sender": "QIKBRY", "name": "t", "body": "b"})
    assert list(r.json()["errors"]) == ["template_id", "type"]  # required for India
    r = client.post(
        "sms/templates",
        json={"sender": "QIKBRY", "name": "t", "body": "b", "template_id": "11x", "type": "Q"},
    )
    assert list(r.json()["errors"]) == ["template_id", "type"]
    add_template(client)
    r = client.post(
        "sms/templates",
        json={
            "sender": "QIKBRY",
            "name": "t",
            "body": "b",
            "template_id": "1107000000000000001",
            "type": "T",
        },
    )
    assert r.json()["errors"] == {"template_id": ["The template id has already been taken."]}
    add_sender(client, name="GLOBAL", country_code="GB", entity_id=None, entity_name=None, service="G")
    outside_india = add_template(client, sender="GLOBAL", template_id=None, type=None)
    assert (outside_india["template_id"], outside_india["template_type"]) == (None, None)


def test_template_update_delete_and_404(client: Client) -> None:
    add_sender(client)
    template = add_template(client)
    inactive = client.patch(f"sms/templates/{template['id']}", json={"status": 0, "is_english": 0}).json()[
        "data"
    ]
    assert (inactive["status"], inactive["is_english"]) == (0, 0)
    r = client.put(f"sms/templates/{template['id']}", json={"body": "bad {{a_b}}"})
    assert r.status_code == 422
    assert list(r.json()["errors"]) == ["body"]
    assert client.delete(f"sms/templates/{template['id']}").json()["message"] == "Deleted Successfully"
    for method in ("get", "put", "delete"):
        assert getattr(client, method)(f"sms/templates/{template['id']}", json={}).status_code == 404


def test_template_list_pages_and_filters(client: Client) -> None:
    add_sender(client)
    for i in range(16):
        add_template(client, name=f"promo {i}", template_id=str(1000 + i))
    add_template(client, name="otp", template_id="7")
    first = client.get("sms/templates").json()
    assert len(first["data"]) == 15
    assert first["meta"]["total"] == 17
    assert first["links"]["next"].endswith("page=2")
    assert [t["name"] for t in client.get("sms/templates", params={"page": 2}).json()["data"]] == [
        "promo 15",
        "otp",
    ]
    assert [
        t["name"] for t in client.get("sms/templates", params={"filter[name]": "OTP"}).json()["data"]
    ] == ["otp"]


@pytest.mark.parametrize(("status", "message"), [(403, "This action is unauthorized."), (404, "Not Found.")])
def test_templates_endpoint_unavailable(client: Client, emu: Emulator, status: int, message: str) -> None:
    add_sender(client)
    template = add_template(client)
    emu.configure(templates_unavailable_status=status)
    for method, path in (
        ("get", "sms/templates"),
        ("post", "sms/templates"),
        ("get", f"sms/templates/{template['id']}"),
        ("put", f"sms/templates/{template['id']}"),
        ("delete", f"sms/templates/{template['id']}"),
    ):
        r = getattr(client, method)(path, json={})
        assert r.status_code == status
        assert r.json() == {"status": "ERROR", "code": status, "message": message}
    assert client.get("sms/senders").status_code == 200  # senders stay available
    emu.configure(templates_unavailable_status=None)
    assert client.get("sms/templates").json()["meta"]["total"] == 1


# ---------------------------------------------------------------------------- seeds
SEEDS: dict[str, Any] = {
    "senders": [
        {"name": "QIKBRY", "service": "T", "country_code": "IN", "entity_id": "1101", "entity_name": "Acme"},
        {
            "name": "PENDNG",
            "service": "T",
            "country_code": "IN",
            "entity_id": "1101",
            "entity_name": "Acme",
            "status": 0,
        },
    ],
    "templates": [
        {
            "sender": "QIKBRY",
            "name": "OTP",
            "body": "Your OTP is {{otp}}",
            "template_id": "1107",
            "type": "T",
        },
        {
            "sender": "OFFERS",
            "name": "Sale",
            "body": "Sale {{pct}} off",
            "template_id": "1108",
            "type": "P",
            "alias": "sale",
        },
    ],
}


def test_seeds_are_served_and_survive_a_reset(client: Client, emu: Emulator) -> None:
    emu.configure(**SEEDS)
    senders = client.get("sms/senders").json()["data"]
    # The template's sender OFFERS was not seeded: it is made for it (promotional, India, approved).
    assert [(s["name"], s["service"]["name"], s["status"]) for s in senders] == [
        ("QIKBRY", "T", 1),
        ("PENDNG", "T", 0),
        ("OFFERS", "P", 1),
    ]
    templates = client.get("sms/templates").json()["data"]
    assert [(t["alias"], t["sender"], t["template_id"]) for t in templates] == [
        ("otp", "QIKBRY", "1107"),
        ("sale", "OFFERS", "1108"),
    ]
    # Seeded ids are stable: the same seeds give the same ids again.
    with Emulator(EmulatorConfig(token="x", **SEEDS)) as other:
        again = Client(other, token="x")
        assert [t["id"] for t in again.get("sms/templates").json()["data"]] == [t["id"] for t in templates]
        again.close()


def test_seeds_from_the_constructor_come_back_after_reset() -> None:
    config = EmulatorConfig(token="x", **SEEDS)
    with Emulator(config) as emu:
        client = Client(emu, token="x")
        client.post(
            "sms/templates",
            json={"sender": "QIKBRY", "name": "extra", "body": "b", "template_id": "9", "type": "T"},
        )
        assert client.get("sms/templates").json()["meta"]["total"] == 3
        emu.reset()
        assert client.get("sms/templates").json()["meta"]["total"] == 2
        client.close()


@pytest.mark.parametrize(
    ("seeds", "error"),
    [
        (
            {
                "templates": [
                    {"sender": "QIKBRY", "name": "t", "body": "Hi {{a_b}}", "template_id": "1", "type": "T"}
                ]
            },
            "templates[0].body",
        ),
        (
            {
                "templates": [
                    {
                        "sender": "QIKBRY",
                        "name": "t",
                        "body": "b",
                        "template_id": "1",
                        "type": "T",
                        "colour": 1,
                    }
                ]
            },
            "unknown key",
        ),
        ({"senders": [{"name": "X", "service": "T", "country_code": "IN"}]}, "senders[0].name"),
        ({"senders": "QIKBRY"}, "senders must be a list"),
    ],
)
def test_bad_seeds_are_refused(emu: Emulator, seeds: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        emu.configure(**seeds)
    with pytest.raises(ValueError, match=re.escape(error)):
        Emulator(EmulatorConfig(**seeds))


def test_cli_seeds_dlt_mode_and_unavailable_templates(tmp_path: Path) -> None:
    path = tmp_path / "dlt.json"
    path.write_text(json.dumps(SEEDS), encoding="utf-8")
    args = build_parser().parse_args(
        ["--templates-file", str(path), "--dlt-mode", "--templates-unavailable", "403",
         "--webhook-verification", "off", "--webhook-routing", "both", "--webhook-retries", "1",
         "--webhook-retry-interval", "60"]
    )  # fmt: skip
    config = config_from_args(args)
    assert config.senders == SEEDS["senders"]
    assert config.templates == SEEDS["templates"]
    assert (config.dlt_mode, config.templates_unavailable_status) == (True, 403)
    assert (config.webhook_verification, config.webhook_routing) == ("off", "both")
    assert (config.webhook_retries, config.webhook_retry_interval) == (1, 60.0)
    defaults = config_from_args(build_parser().parse_args([]))
    assert (defaults.dlt_mode, defaults.templates, defaults.webhook_verification) == (False, [], "challenge")
