"""QikberryHook against the emulator over real HTTP: every public method, its results and validation."""

from __future__ import annotations

import io
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from airflow_qikberry.exceptions import QikberryValidationError
from airflow_qikberry.hooks.qikberry import QikberryHook
from airflow_qikberry.models import BatchResult, MessageStatus, SentMessage
from tests.helpers import NoWaits, SentRequests


def api_calls(emulator: Any) -> dict[str, int]:
    return {k: v for k, v in emulator.request_log()["counts"].items() if not k.split()[1].startswith("_")}


@pytest.fixture
def hook(qikberry_conn: str) -> QikberryHook:
    hook = QikberryHook(qikberry_conn_id=qikberry_conn, reconcile_delay=0, clock=NoWaits())
    return hook


def test_hook_reads_connection_lazily() -> None:
    hook = QikberryHook(qikberry_conn_id="does_not_exist")  # must not raise: DAG files parse without it
    with pytest.raises(Exception, match="does_not_exist"):
        _ = hook.settings


def test_send_sms_returns_one_row_per_number(hook: QikberryHook, emulator: Any) -> None:
    sent = hook.send_sms(["+91 98765 43210", "447700900123"], "Build finished")
    assert [type(s) for s in sent] == [SentMessage, SentMessage]
    assert [s.mobile for s in sent] == ["919876543210", "447700900123"]
    assert all(s.status == "AWAITING-DLR" and s.units == 1 for s in sent)
    assert sent[0].message_id.endswith(":1")
    assert sent[1].message_id.endswith(":2")
    assert sent[0].group_id == sent[1].group_id
    assert sent[0].custom_id
    assert sent[0].custom_id.startswith("af-")
    stored = emulator.messages()
    assert len(stored) == 2
    assert {m["custom"] for m in stored} == {sent[0].custom_id}
    assert all(m["sender"] == "QIKBRY" and m["service"] == "T" for m in stored)


def test_send_sms_uses_region_for_national_numbers(hook: QikberryHook, emulator: Any) -> None:
    sent = hook.send_sms("98765 43210", "hi")
    assert sent[0].mobile == "919876543210"


def test_send_sms_passes_options(hook: QikberryHook, emulator: Any) -> None:
    sent = hook.send_sms(
        "919876543210",
        "Your OTP is 123456",
        sender="ALERTS",
        service="P",
        custom_id="order-42",
        template_id="1107160000000012345",
        entity_id="1101160000000012345",
        flash=True,
        max_units=1,
        tags=["promo", "otp"],
    )
    assert sent[0].custom_id == "order-42"
    (stored,) = emulator.messages()
    assert stored["sender"] == "ALERTS"
    assert stored["service"] == "P"
    assert stored["custom"] == "order-42"


def test_send_sms_unicode_counts_units(hook: QikberryHook) -> None:
    sent = hook.send_sms("919876543210", "नमस्ते " * 20)
    assert sent[0].units == 3  # 140 UCS-2 characters -> 3 parts of 67


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"to": "12", "message": "hi"}, "to"),
        ({"to": "", "message": "hi"}, "to"),
        ({"to": "919876543210", "message": "   "}, "message"),
        ({"to": "919876543210", "message": "x" * 4097}, "message"),
        ({"to": "919876543210", "message": "x" * 200, "max_units": 1}, "message"),
        ({"to": "919876543210", "message": "hi", "sender": "a!"}, "sender"),
        ({"to": "919876543210", "message": "hi", "schedule_at": "2001-01-01T00:00:00+00:00"}, "schedule_at"),
        ({"to": "919876543210", "message": "hi", "tags": ["a", "b", "c", "d"]}, "tags"),
        ({"to": "919876543210", "message": "hi", "custom_id": "a\nb"}, "custom_id"),
        ({"to": "919876543210", "message": "hi", "template_id": "abc"}, "template_id"),
    ],
)
def test_bad_input_is_rejected_before_any_request(
    hook: QikberryHook, emulator: Any, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(QikberryValidationError) as info:
        hook.send_sms(**kwargs)
    assert info.value.field == field
    assert field in str(info.value)  # the message names the field, not just the attribute
    assert api_calls(emulator) == {}


def test_send_batch_groups_nodes(hook: QikberryHook, emulator: Any) -> None:
    result = hook.send_batch(
        [
            {"to": "919876543210", "message": "Hi Asha"},
            {"to": "919876543211", "message": "Hi Ravi", "custom_id": "ravi-1"},
            {"to": "919876543212"},
        ],
        name="welcome",
        message="Hi there",
    )
    assert isinstance(result, BatchResult)
    assert result.accepted == 3
    assert result.group_id
    assert all(m.group_id == result.group_id for m in result.messages)
    assert result.messages[1].custom_id == "ravi-1"
    texts = {m["mobile"]: m["message"] for m in emulator.messages()}
    assert texts == {"919876543210": "Hi Asha", "919876543211": "Hi Ravi", "919876543212": "Hi there"}


def test_send_batch_validates_every_node_first(hook: QikberryHook, emulator: Any) -> None:
    with pytest.raises(QikberryValidationError) as info:
        hook.send_batch([{"to": "919876543210", "message": "ok"}, {"to": "123", "message": "bad"}])
    assert info.value.field == "nodes[1].to"
    with pytest.raises(QikberryValidationError, match="no message"):
        hook.send_batch([{"to": "919876543210"}])
    with pytest.raises(QikberryValidationError, match="duplicate custom ids"):
        hook.send_batch(
            [
                {"to": "919876543210", "message": "a", "custom_id": "x"},
                {"to": "919876543211", "message": "b", "custom_id": "x"},
            ]
        )
    assert api_calls(emulator) == {}


def test_upload_bulk_csv_column(hook: QikberryHook, emulator: Any, tmp_path: Path) -> None:
    csv_file = tmp_path / "customers.csv"
    csv_file.write_text("name,mobile\nasha,919876543210\nravi,919876543211\nmeena,919876543212\n")
    assert hook.upload_bulk(csv_file, "Sale ends tonight", column="mobile") == 3
    assert sorted(m["mobile"] for m in emulator.messages()) == [
        "919876543210",
        "919876543211",
        "919876543212",
    ]


def test_upload_bulk_file_object(hook: QikberryHook, emulator: Any) -> None:
    data = io.BytesIO(b"919876543210\n919876543211\n")
    assert hook.upload_bulk(data, "hello", filename="numbers.txt") == 2


def test_upload_bulk_file_object_is_sent_from_where_it_stands(
    hook: QikberryHook, emulator: Any, tmp_path: Path
) -> None:
    path = tmp_path / "numbers.txt"
    path.write_bytes(b"919876543210\n919876543211\n919876543212\n")
    with path.open("rb") as handle:
        handle.readline()  # the caller already consumed the first line
        assert hook.upload_bulk(handle, "hello") == 2
    assert sorted(m["mobile"] for m in emulator.messages()) == ["919876543211", "919876543212"]


def test_upload_bulk_bytesio_is_sent_from_where_it_stands(hook: QikberryHook, emulator: Any) -> None:
    data = io.BytesIO(b"919876543210\n919876543211\n919876543212\n")
    data.readline()
    assert hook.upload_bulk(data, "hello", filename="numbers.txt") == 2
    assert sorted(m["mobile"] for m in emulator.messages()) == ["919876543211", "919876543212"]


def test_upload_bulk_checks_before_sending(hook: QikberryHook, emulator: Any, tmp_path: Path) -> None:
    csv_file = tmp_path / "c.csv"
    csv_file.write_text("name,phone\nasha,919876543210\n")
    with pytest.raises(QikberryValidationError) as info:
        hook.upload_bulk(csv_file, "hi", column="mobile")
    assert info.value.field == "column"
    with pytest.raises(QikberryValidationError) as info:
        hook.upload_bulk(tmp_path / "missing.csv", "hi")
    assert info.value.field == "file"
    assert api_calls(emulator) == {}


def test_get_status_by_each_key(hook: QikberryHook, emulator: Any) -> None:
    sent = hook.send_sms("919876543210", "status check", custom_id="cid-7")
    by_id = hook.get_status(message_id=sent[0].message_id)
    by_cid = hook.get_status(custom_id="cid-7")
    by_mobile = hook.get_status(mobile="+91 98765 43210")
    for rows in (by_id, by_cid, by_mobile):
        assert [type(r) for r in rows] == [MessageStatus]
        assert rows[0].message_id == sent[0].message_id
        assert rows[0].status == "AWAITING-DLR"
        assert not rows[0].is_final
    emulator.flush_dlrs()
    (final,) = hook.get_status(message_id=sent[0].message_id)
    assert final.is_final
    assert final.is_delivered
    assert final.delivered_at
    assert hook.get_status(message_id="00000000-0000-0000-0000-000000000000:1") == []
    with pytest.raises(QikberryValidationError):
        hook.get_status()


def test_iter_group_status_walks_pages(hook: QikberryHook, emulator: Any) -> None:
    nodes = [{"to": f"9198765{i:05d}", "message": f"m{i}"} for i in range(250)]
    result = hook.send_batch(nodes, name="pages")
    assert result.group_id
    rows = list(hook.iter_group_status(result.group_id))
    assert len(rows) == 250
    assert len({r.message_id for r in rows}) == 250
    assert api_calls(emulator)["GET sms/status"] == 3


def test_get_balance_is_decimal_and_decrements(hook: QikberryHook, emulator: Any) -> None:
    before = {b.service: b for b in hook.get_balance()}
    assert set(before) >= {"T", "P"}
    assert isinstance(before["T"].credits, Decimal)
    hook.send_sms("919876543210", "x" * 170)  # 2 units
    (after,) = hook.get_balance(service="T")
    assert after.credits == before["T"].credits - 2 * before["T"].charges


def test_get_balance_falls_back_to_legacy_path(hook: QikberryHook, emulator: Any) -> None:
    emulator.set_faults([{"endpoint": "finance/balance", "kind": "error", "status": 404, "times": 1}])
    assert hook.get_balance(service="T")[0].service == "T"
    assert api_calls(emulator)["GET account/balance"] == 1


def test_test_connection(hook: QikberryHook, make_qikberry_conn: Any, emulator: Any) -> None:
    ok, message = hook.test_connection()
    assert ok
    assert "emulator" in message
    bad = QikberryHook(qikberry_conn_id=make_qikberry_conn("bad_token", password="wrong-token-123"))
    ok, message = bad.test_connection()
    assert not ok
    assert "401" in message
    assert "wrong-token-123" not in message
    assert not any(k.startswith("POST") for k in api_calls(emulator))


def test_results_serialise_for_xcom(hook: QikberryHook) -> None:
    import json

    sent = hook.send_sms("919876543210", "x")
    json.dumps([s.to_dict() for s in sent])
    json.dumps([b.to_dict() for b in hook.get_balance()])


@pytest.mark.slow
def test_upload_bulk_streams_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 12 MB upload must not be read into memory whole (peak traced allocation stays far below its size)."""
    import json
    import socket
    import subprocess
    import sys
    import tracemalloc

    # The emulator runs in its own process here: in-process, its parsing of the upload would be traced too.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_qikberry.emulator",
            "--port",
            str(port),
            "--token",
            "stream-token",
            "--credits",
            "100000",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "listening" in proc.stdout.readline()
        monkeypatch.setenv(
            "AIRFLOW_CONN_QIKBERRY_STREAM",
            json.dumps(
                {
                    "conn_type": "qikberry",
                    "host": f"http://127.0.0.1:{port}/api/v2/",
                    "password": "stream-token",
                    "extra": {"sender": "QIKBRY"},
                }
            ),
        )
        path = tmp_path / "big.csv"
        padding = "x" * 1000
        with path.open("w") as f:
            f.write("mobile,note\n")
            for i in range(12_000):
                f.write(f"9198{i:08d},{padding}\n")
        size = path.stat().st_size
        hook = QikberryHook(qikberry_conn_id="qikberry_stream")
        hook.settings  # noqa: B018 - connection parsing is not what is measured
        tracemalloc.start()
        try:
            accepted = hook.upload_bulk(path, "big file", column="mobile")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert accepted == 12_000
        assert peak < size / 4, f"peak {peak} bytes for a {size}-byte file: the upload was buffered"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


def test_upload_bulk_filename_cannot_break_the_multipart_header(
    hook: QikberryHook, emulator: Any, tmp_path: Path
) -> None:
    # A file name with a backslash, a quote and CR/LF must stay inside its Content-Disposition parameter.
    # Were it written raw, it would end the part's header and put a number of its own into the file's data.
    name = 'evil\\"\r\nX-Injected: 1\r\n\r\n919876543299\r\n.txt'
    path = tmp_path / name
    numbers = ["919876543210", "919876543211", "919876543212"]
    path.write_text("\n".join(numbers) + "\n")
    assert hook.upload_bulk(path, "hi") == 3
    assert sorted(m["mobile"] for m in emulator.messages()) == numbers  # one file part, nothing smuggled
    assert api_calls(emulator) == {"POST sms/bulk": 1}


def test_upload_bulk_sends_a_content_length(hook: QikberryHook, emulator: Any, tmp_path: Path) -> None:
    # The emulator keeps no request headers, so the request as requests put it on the wire is read.
    wire = SentRequests.on(hook.session)
    path = tmp_path / "numbers.txt"
    path.write_text("919876543210\n919876543211\n")
    assert hook.upload_bulk(path, "hello") == 2
    (upload,) = wire
    assert upload.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert int(upload.headers["Content-Length"]) > path.stat().st_size
    assert "Transfer-Encoding" not in upload.headers  # streamed with a known length, not chunked
    assert len(emulator.messages()) == 2


def test_upload_bulk_refuses_a_stream_that_cannot_be_rewound(hook: QikberryHook, emulator: Any) -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"919876543210\n")
    os.close(write_end)
    with (
        os.fdopen(read_end, "rb") as pipe,
        pytest.raises(QikberryValidationError, match="cannot be rewound") as info,
    ):
        hook.upload_bulk(pipe, "hello", filename="numbers.txt")
    assert info.value.field == "file"
    assert api_calls(emulator) == {}


def test_too_many_numbers_rejected_before_sending(hook: QikberryHook, emulator: Any) -> None:
    numbers = [f"9198{i:08d}" for i in range(50_001)]
    with pytest.raises(QikberryValidationError, match="at most 50000") as info:
        hook.send_sms(numbers, "hi")
    assert info.value.field == "to"
    assert api_calls(emulator) == {}
