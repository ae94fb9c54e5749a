"""``sms/status`` lookups (plain and paginated) and the balance endpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest

if TYPE_CHECKING:
    from airflow_qikberry.emulator import Emulator
    from tests.emulator.conftest import Client

ROW_KEYS = [
    "id",
    "mobile",
    "status",
    "units",
    "service",
    "length",
    "charges",
    "custom",
    "custom1",
    "location",
    "provider",
    "submitted_at",
    "delivered_at",
    "sender",
]


def test_lookup_by_id_cid_and_mobile(client: Client, emu: Emulator) -> None:
    first = client.send(to="919876543210,919876543211", custom="ref-a").json()["data"]
    client.send(to="919876543210", custom="ref-b", message="other")
    by_id = client.get("sms/status", params={"id": first[1]["id"]})
    assert by_id.status_code == 200
    body = by_id.json()
    assert list(body) == ["status", "code", "message", "data"]
    assert (body["status"], body["code"], body["message"]) == ("OK", 200, "OK")
    [row] = body["data"]
    assert list(row) == ROW_KEYS
    assert (row["id"], row["mobile"], row["status"], row["delivered_at"]) == (
        first[1]["id"],
        "919876543211",
        "AWAITING-DLR",
        "",
    )
    assert (row["service"], row["sender"], row["custom"], row["custom1"]) == ("T", "QIKBRY", "ref-a", "")
    assert len(client.get("sms/status", params={"cid": "ref-a"}).json()["data"]) == 2
    assert len(client.get("sms/status", params={"mobile": "919876543210"}).json()["data"]) == 2
    both = client.get("sms/status", params={"mobile": "919876543210", "cid": "ref-b"}).json()["data"]
    assert [r["custom"] for r in both] == ["ref-b"]


def test_unknown_lookups_return_empty_data(client: Client) -> None:
    for params in ({"id": "nope:1"}, {"cid": "nope"}, {"mobile": "919999999990"}):
        r = client.get("sms/status", params=params)
        assert r.status_code == 200
        assert r.json()["data"] == []


def test_lookup_without_a_key_is_422(client: Client) -> None:
    r = client.get("sms/status")
    assert r.status_code == 422
    assert list(r.json()["errors"]) == ["id"]


def test_bad_date_is_422(client: Client) -> None:
    for value in ("27-11-2026", "2026-13-01"):
        r = client.get("sms/status", params={"date": value})
        assert r.status_code == 422
        assert list(r.json()["errors"]) == ["date"]


def test_group_pagination_250_messages(client: Client, emu: Emulator) -> None:
    nodes = [{"to": f"9198765{i:05d}", "custom": f"c{i}"} for i in range(250)]
    out = client.post(
        "sms/send/json",
        json={"root": {"message": "m", "sender": "S", "service": "T", "name": "n"}, "nodes": nodes},
    ).json()
    group = out["group_id"]
    path = emu.base_url + "sms/status"
    pages = []
    for page in (1, 2, 3):
        params = {"group_id": group} if page == 1 else {"group_id": group, "page": page}
        body = client.get("sms/status", params=params).json()
        pages.append(body)
        assert list(body) == ["status", "code", "message", "data", "links", "meta"]
    assert [len(p["data"]) for p in pages] == [100, 100, 50]
    assert [r["custom"] for p in pages for r in p["data"]] == [f"c{i}" for i in range(250)]

    def url(n: int) -> str:
        return f"{path}?group_id={group}&page={n}"

    assert pages[0]["links"] == {"first": url(1), "last": url(3), "prev": None, "next": url(2)}
    assert pages[1]["links"] == {"first": url(1), "last": url(3), "prev": url(1), "next": url(3)}
    assert pages[2]["links"] == {"first": url(1), "last": url(3), "prev": url(2), "next": None}
    meta = pages[1]["meta"]
    assert {k: v for k, v in meta.items() if k != "links"} == {
        "current_page": 2,
        "from": 101,
        "last_page": 3,
        "path": path,
        "per_page": 100,
        "to": 200,
        "total": 250,
    }
    assert meta["links"] == [
        {"url": url(1), "label": "&laquo; Previous", "active": False},
        {"url": url(1), "label": "1", "active": False},
        {"url": url(2), "label": "2", "active": True},
        {"url": url(3), "label": "3", "active": False},
        {"url": url(3), "label": "Next &raquo;", "active": False},
    ]
    assert pages[2]["meta"]["from"] == 201
    assert pages[2]["meta"]["to"] == 250
    beyond = client.get("sms/status", params={"group_id": group, "page": 9}).json()
    assert beyond["data"] == []
    assert beyond["meta"]["from"] is None
    assert beyond["meta"]["to"] is None
    # Laravel's paginator: past the end there is still a previous page (page - 1), but no next one.
    assert beyond["links"] == {"first": url(1), "last": url(3), "prev": url(8), "next": None}
    assert beyond["meta"]["links"][0] == {"url": url(8), "label": "&laquo; Previous", "active": False}
    assert not any(link["active"] for link in beyond["meta"]["links"])
    # The link URLs must never carry the token, even when the client sent it in the query.
    leaky = client.get("sms/status", params={"group_id": group, "access_token": "zzz-token"}).text
    assert "access_token" not in leaky
    assert "zzz-token" not in leaky


def test_group_and_date_combine(client: Client, emu: Emulator) -> None:
    client.send(to="919876543210,919876543211")
    client.send(to="919876543212")
    today = emu.now().strftime("%Y-%m-%d")
    by_date = client.get("sms/status", params={"date": today}).json()
    assert by_date["meta"]["total"] == 3
    assert by_date["links"]["first"].endswith(f"?date={today}&page=1")
    group = by_date["data"][0]["id"].split(":")[0]
    both = client.get("sms/status", params={"date": today, "group_id": group}).json()
    assert both["meta"]["total"] == 2
    assert client.get("sms/status", params={"date": "2001-01-01"}).json()["meta"]["total"] == 0
    assert client.get("sms/status", params={"group_id": group, "mobile": "919876543212"}).json()["data"] == []


def test_many_pages_use_laravel_url_window(client: Client, emu: Emulator) -> None:
    client.send(to=",".join(f"9198765{i:05d}" for i in range(2000)))
    group = emu.messages()[0]["group_id"]
    labels = [
        link["label"]
        for link in client.get("sms/status", params={"group_id": group, "page": 10}).json()["meta"]["links"]
    ]
    assert labels == [
        "&laquo; Previous",
        "1",
        "2",
        "...",
        "7",
        "8",
        "9",
        "10",
        "11",
        "12",
        "13",
        "...",
        "19",
        "20",
        "Next &raquo;",
    ]


@pytest.mark.parametrize("path", ["finance/balance", "account/balance"])
def test_balance_paths(client: Client, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200
    assert r.json() == {
        "status": 200,
        "message": "OK",
        "data": [
            {"service": "T", "name": "Transactional SMS", "postpaid": 0, "credits": 10000, "charges": 1},
            {"service": "P", "name": "Promotional SMS", "postpaid": 0, "credits": 10000, "charges": 1},
            {"service": "S", "name": "TransScrub SMS", "postpaid": 0, "credits": 10000, "charges": 1},
            {"service": "G", "name": "Global SMS", "postpaid": 0, "credits": 10000, "charges": 1},
        ],
    }
    only = client.get(path, params={"service": "G"}).json()["data"]
    assert [row["service"] for row in only] == ["G"]


def test_balance_decrements_per_service_and_auth_me_spends_nothing(client: Client, emu: Emulator) -> None:
    client.send(service="P", message="a" * 161)
    client.get("auth/me")
    rows = {row["service"]: row["credits"] for row in client.get("finance/balance").json()["data"]}
    assert rows == {"T": 10000, "P": 9998, "S": 10000, "G": 10000}


def test_pagination_links_use_the_host_the_client_used(client: Client, emu: Emulator) -> None:
    client.send()
    group = emu.messages()[0]["group_id"]
    body = client.session.get(
        emu.base_url + "sms/status",
        params={"group_id": group},
        headers={"Host": "sms.example:8080"},
        timeout=10,
    ).json()
    parts = urlsplit(body["links"]["first"])
    assert (parts.scheme, parts.netloc, parts.path) == ("http", "sms.example:8080", "/api/v2/sms/status")
    assert parse_qs(parts.query) == {"group_id": [group], "page": ["1"]}
