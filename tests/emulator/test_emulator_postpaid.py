"""The ``postpaid_services`` option: balance rows say postpaid and sends are never refused for credits."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from airflow_qikberry.emulator import Emulator
    from tests.emulator.conftest import Client


def _rows(client: Client) -> dict[str, dict[str, object]]:
    return {row["service"]: row for row in client.get("finance/balance").json()["data"]}


def test_postpaid_service_is_marked_and_never_runs_out(client: Client, emu: Emulator) -> None:
    emu.configure(credits={"T": 1, "P": 1}, postpaid_services=["T"])
    rows = _rows(client)
    assert (rows["T"]["postpaid"], rows["P"]["postpaid"]) == (1, 0)
    assert client.send(to="919876543210,919876543211", service="T").status_code == 200
    assert _rows(client)["T"]["credits"] == -1  # usage counts on, below zero
    # A prepaid service is still refused.
    refused = client.send(to="919876543210,919876543211", service="P")
    assert (refused.status_code, refused.json()["message"]) == (422, "Insufficient balance.")


def test_postpaid_services_is_validated_and_reset(client: Client, emu: Emulator) -> None:
    with pytest.raises(ValueError, match="postpaid_services"):
        emu.configure(postpaid_services="T")
    r = client.control("POST", "config", json={"postpaid_services": ["P"]})
    assert r.status_code == 200
    assert _rows(client)["P"]["postpaid"] == 1
    emu.reset()
    assert _rows(client)["P"]["postpaid"] == 0
