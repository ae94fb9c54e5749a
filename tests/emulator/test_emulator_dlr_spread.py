"""Spread delivery reports (``dlr_spread_seconds``, ``dlr_spread_order``) and request-log timestamps."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

from airflow_qikberry.emulator.__main__ import build_parser, config_from_args

if TYPE_CHECKING:
    from airflow_qikberry.emulator import Emulator
    from tests.emulator.conftest import Client

NUMBERS = ",".join(f"9198765432{i:02d}" for i in range(10))


def final_positions(emu: Emulator) -> list[int]:
    """1-based positions (``<uuid>:<n>``) of the final messages, in position order."""
    return sorted(int(m["id"].rpartition(":")[2]) for m in emu.messages() if m["status"] != "AWAITING-DLR")


def test_reports_of_one_request_arrive_over_the_spread_in_submit_order(client: Client, emu: Emulator) -> None:
    emu.configure(
        dlr_delay_seconds=2.0, dlr_spread_seconds=9.0, manual_clock=True
    )  # message n final at 2 + (n - 1) s
    client.send(to=NUMBERS)
    emu.advance_clock(1.9)
    assert final_positions(emu) == []
    emu.advance_clock(0.2)
    assert final_positions(emu) == [1]
    emu.advance_clock(4.0)
    assert final_positions(emu) == [1, 2, 3, 4, 5]
    rows = client.get("sms/status", params={"id": emu.messages()[5]["id"]}).json()["data"]
    assert rows[0]["status"] == "AWAITING-DLR"
    emu.advance_clock(5.0)
    assert final_positions(emu) == list(range(1, 11))


def test_random_order_is_seeded_and_covers_the_same_window(client: Client, emu: Emulator) -> None:
    emu.configure(dlr_delay_seconds=0.0, dlr_spread_seconds=9.0, dlr_spread_order="random", manual_clock=True)
    client.send(to=NUMBERS)
    emu.advance_clock(4.5)
    first = final_positions(emu)
    assert len(first) == 5
    assert first != [1, 2, 3, 4, 5]
    emu.advance_clock(5.0)
    assert len(final_positions(emu)) == 10
    emu.reset()  # the same seed and requests give the same order
    emu.configure(dlr_delay_seconds=0.0, dlr_spread_seconds=9.0, dlr_spread_order="random", manual_clock=True)
    client.send(to=NUMBERS)
    emu.advance_clock(4.5)
    assert final_positions(emu) == first


def test_no_spread_and_single_messages_are_unchanged(client: Client, emu: Emulator) -> None:
    emu.configure(dlr_delay_seconds=2.0)
    client.send(to=NUMBERS)
    emu.advance_clock(2.01)
    assert len(final_positions(emu)) == 10
    emu.configure(dlr_spread_seconds=100.0)
    client.send(to="919876543299", message="alone")
    emu.advance_clock(2.01)
    assert len(final_positions(emu)) == 11  # one message: nothing to spread


@pytest.mark.parametrize(
    ("updates", "message"),
    [
        ({"dlr_spread_seconds": -1}, "dlr_spread_seconds must be >= 0"),
        ({"dlr_spread_order": "reverse"}, "dlr_spread_order must be one of"),
    ],
)
def test_bad_spread_settings_are_refused(emu: Emulator, updates: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        emu.configure(**updates)


def test_cli_flags() -> None:
    config = config_from_args(
        build_parser().parse_args(["--dlr-spread", "30", "--dlr-spread-order", "random"])
    )
    assert (config.dlr_spread_seconds, config.dlr_spread_order) == (30.0, "random")
    defaults = config_from_args(build_parser().parse_args([]))
    assert (defaults.dlr_spread_seconds, defaults.dlr_spread_order) == (0.0, "submit")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--dlr-spread-order", "reverse"])


def test_request_log_has_emulator_timestamps(client: Client, emu: Emulator) -> None:
    before = time.time()
    client.get("auth/me")
    emu.advance_clock(100)
    client.get("auth/me")
    first, second = emu.request_log()["requests"]
    assert before <= first["timestamp"] <= time.time()
    assert second["timestamp"] - first["timestamp"] >= 100
    assert client.control("GET", "requests").json()["requests"][0]["timestamp"] == first["timestamp"]


def test_status_order_newest_first_reverses_group_pages(emulator: Any) -> None:
    import json
    import urllib.request

    from tests.helpers import TEST_TOKEN
    from tests.triggers.support import send_group

    emulator.configure(status_order="newest_first")
    group, ids = send_group(emulator, 3)
    request = urllib.request.Request(
        emulator.base_url + f"sms/status?group_id={group}", headers={"Authorization": f"Bearer {TEST_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        rows = json.loads(response.read())["data"]
    assert [row["id"] for row in rows] == ids[::-1]
    with pytest.raises(ValueError, match="status_order"):
        emulator.configure(status_order="sideways")
