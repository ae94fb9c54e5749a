"""``sms/send/json`` (root + nodes) and ``sms/bulk`` (multipart file upload)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow_qikberry.emulator import Emulator
    from tests.emulator.conftest import Client, Receiver

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ROOT = {"message": "Root text", "sender": "QIKBRY", "service": "T"}


def test_send_json_rows_follow_nodes(client: Client, emu: Emulator) -> None:
    body = {
        "root": {**ROOT, "custom": "root-custom"},
        "nodes": [
            {"to": "919876543210", "custom": "c-1"},
            {"to": "14155550101", "message": "Node text is longer", "sender": "OTHER"},
        ],
    }
    r = client.post("sms/send/json", json=body)
    assert r.status_code == 200
    out = r.json()
    assert list(out) == ["status", "message", "data"]  # no group_id without root.name
    assert out["message"] == "2 numbers accepted for delivery."
    first, second = out["data"]
    assert first["id"].endswith(":1")
    assert second["id"].endswith(":2")
    assert first["id"].split(":")[0] == second["id"].split(":")[0]
    assert (first["customid"], second["customid"]) == ("c-1", "root-custom")
    assert (first["length"], second["length"]) == (9, 19)
    m1, m2 = emu.messages()
    assert (m1["message"], m1["sender"]) == ("Root text", "QIKBRY")
    assert (m2["message"], m2["sender"]) == ("Node text is longer", "OTHER")


def test_send_json_name_adds_group_id(client: Client, emu: Emulator) -> None:
    body = {"root": {**ROOT, "name": "Campaign"}, "nodes": [{"to": "919876543210"}, {"to": "919876543211"}]}
    out = client.post("sms/send/json", json=body).json()
    assert list(out) == ["status", "message", "group_id", "data"]
    assert UUID_RE.match(out["group_id"])
    assert all(row["id"].startswith(out["group_id"] + ":") for row in out["data"])
    assert {m["group_id"] for m in emu.messages()} == {out["group_id"]}
    assert {m["name"] for m in emu.messages()} == {"Campaign"}


def test_send_json_root_only_keys_cannot_be_overridden(
    client: Client, emu: Emulator, receiver: Receiver
) -> None:
    hook = client.post("developer/webhooks", json={"name": "h", "uri": receiver.url}).json()["data"]
    later = (emu.now().replace(microsecond=0)).strftime("%Y-%m-%d %H:%M:%S")
    body = {
        "root": {**ROOT, "webhook_id": hook["id"]},
        "nodes": [{"to": "919876543210", "service": "P", "webhook_id": "bogus", "time": later}],
    }
    r = client.post("sms/send/json", json=body)
    assert r.status_code == 200, r.text
    [msg] = emu.messages()
    assert (msg["service"], msg["webhook_id"], msg["scheduled_at"]) == ("T", hook["id"], None)


def test_send_json_root_service_is_required(client: Client) -> None:
    body = {"root": {"message": "x", "sender": "S"}, "nodes": [{"to": "919876543210", "service": "T"}]}
    r = client.post("sms/send/json", json=body)
    assert r.status_code == 422
    assert r.json()["errors"] == {"root.service": ["The root.service field is required."]}


@pytest.mark.parametrize("nodes", [None, [], "919876543210"])
def test_send_json_needs_nodes(client: Client, nodes: Any) -> None:
    body: dict[str, Any] = {"root": ROOT}
    if nodes is not None:
        body["nodes"] = nodes
    r = client.post("sms/send/json", json=body)
    assert r.status_code == 422
    assert r.json()["errors"] == {"nodes": ["The nodes field is required."]}


def test_send_json_node_errors_are_indexed(client: Client, emu: Emulator) -> None:
    body = {
        "root": {"sender": "S", "service": "T"},
        "nodes": [
            {"to": "919876543210", "message": "ok"},
            {"to": "919876543210,919876543211", "message": "two"},
            {"to": "+91", "message": "bad"},
            {"to": "919876543212"},
        ],
    }
    r = client.post("sms/send/json", json=body)
    assert r.status_code == 422
    errors = r.json()["errors"]
    assert list(errors) == ["nodes.1.to", "nodes.2.to", "nodes.3.message"]
    assert errors["nodes.3.message"] == ["The nodes.3.message field is required."]
    assert r.json()["message"] == "The nodes.1.to field must contain a single number."
    assert emu.messages() == []


def test_send_json_node_limit(client: Client, emu: Emulator) -> None:
    emu.configure(max_numbers_per_request=2)
    nodes = [{"to": f"91987654321{i}"} for i in range(3)]
    r = client.post("sms/send/json", json={"root": ROOT, "nodes": nodes})
    assert r.status_code == 422
    assert list(r.json()["errors"]) == ["nodes"]


def test_send_json_charges_sum_over_nodes(client: Client, emu: Emulator) -> None:
    emu.configure(credits={"T": 3})
    nodes = [{"to": "919876543210", "message": "a" * 161}, {"to": "919876543211"}]
    assert client.post("sms/send/json", json={"root": ROOT, "nodes": nodes}).status_code == 200
    assert client.post("sms/send/json", json={"root": ROOT, "nodes": nodes}).status_code == 422
    assert [
        row["credits"] for row in client.get("finance/balance", params={"service": "T"}).json()["data"]
    ] == [0]


# ----------------------------------------------------------------------------------------- sms/bulk
def bulk(client: Client, content: bytes, filename: str, **fields: Any) -> Any:
    data = {"message": "Bulk hello", "sender": "QIKBRY", "service": "T", **fields}
    return client.post("sms/bulk", data=data, files={"file": (filename, content, "application/octet-stream")})


def test_bulk_txt_counts_valid_rows_and_skips_invalid(client: Client, emu: Emulator) -> None:
    content = b"919876543210\r\n14155550101\n\nnot-a-number\n+919876543211\n447700900123\n"
    r = bulk(client, content, "numbers.txt", custom="bulk-ref")
    assert r.status_code == 200
    assert r.json() == {"status": 200, "message": "3 numbers accepted for delivery.", "data": []}
    messages = emu.messages()
    assert [m["mobile"] for m in messages] == ["919876543210", "14155550101", "447700900123"]
    assert len({m["group_id"] for m in messages}) == 1
    assert {m["custom"] for m in messages} == {"bulk-ref"}
    assert {m["endpoint"] for m in messages} == {"sms/bulk"}


def test_bulk_csv_picks_the_mobile_column_by_header(client: Client, emu: Emulator) -> None:
    content = b"name,Mobile Number,city\nA,919876543210,X\nB,bad,Y\nC,919876543211,Z\n"
    assert bulk(client, content, "list.csv").json()["message"] == "2 numbers accepted for delivery."
    assert [m["mobile"] for m in emu.messages()] == ["919876543210", "919876543211"]


def test_bulk_csv_column_parameter(client: Client, emu: Emulator) -> None:
    content = b"phone_a,phone_b\n919876543210,14155550101\n919876543211,14155550102\n"
    assert bulk(client, content, "list.csv", column="phone_b").status_code == 200
    assert [m["mobile"] for m in emu.messages()] == ["14155550101", "14155550102"]
    r = bulk(client, content, "list.csv", column="nope")
    assert r.status_code == 422
    assert list(r.json()["errors"]) == ["column"]


def test_bulk_csv_without_header_row(client: Client, emu: Emulator) -> None:
    assert (
        bulk(client, b"919876543210,a\n919876543211,b\n", "x.csv").json()["message"].startswith("2 numbers")
    )


def test_bulk_validation(client: Client) -> None:
    r = client.post(
        "sms/bulk", data={"message": "m", "sender": "s", "service": "T"}, files={"other": ("a", b"1")}
    )
    assert r.status_code == 422
    assert r.json()["errors"] == {"file": ["The file field is required."]}
    r = bulk(client, b"nothing useful\n", "x.txt")
    assert r.status_code == 422
    assert list(r.json()["errors"]) == ["file"]
    r = bulk(client, b"919876543210\n", "x.txt", service="")
    assert r.status_code == 422
    assert list(r.json()["errors"]) == ["service"]


def test_bulk_charges_credits_and_rejects_when_exhausted(client: Client, emu: Emulator) -> None:
    emu.configure(credits={"T": 5})
    numbers = b"919876543210\n919876543211\n"
    assert bulk(client, numbers, "x.txt", message="a" * 161).status_code == 200  # 2 numbers x 2 units
    balance = client.get("finance/balance", params={"service": "T"}).json()["data"]
    assert [row["credits"] for row in balance] == [1]
    r = bulk(client, numbers, "x.txt")
    assert r.status_code == 422
    assert r.json() == {
        "status": "ERROR",
        "code": 422,
        "message": "Insufficient balance.",
    }
    assert len(emu.messages()) == 2


def test_bulk_row_limit(client: Client, emu: Emulator) -> None:
    emu.configure(max_bulk_numbers=2)
    r = bulk(client, b"919876543210\n919876543211\n919876543212\n", "x.txt")
    assert r.status_code == 422
    assert list(r.json()["errors"]) == ["file"]


def test_bulk_streamed_chunked_upload(client: Client, emu: Emulator) -> None:
    # A client streaming a big file sends Transfer-Encoding: chunked; the parser must cope.
    boundary = "XyZ123"
    numbers = b"".join(b"9198%08d\n" % i for i in range(5000))

    def body() -> Iterator[bytes]:
        for name, value in (("message", "Hi"), ("sender", "QIKBRY"), ("service", "T")):
            yield f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        disposition = 'Content-Disposition: form-data; name="file"; filename="n.txt"'
        yield f"--{boundary}\r\n{disposition}\r\n\r\n".encode()
        for i in range(0, len(numbers), 7000):
            yield numbers[i : i + 7000]
        yield f"\r\n--{boundary}--\r\n".encode()

    r = client.post(
        "sms/bulk", data=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["message"] == "5000 numbers accepted for delivery."
    assert len(emu.messages()) == 5000
    assert client.get("auth/me").status_code == 200  # the keep-alive connection is still in sync
