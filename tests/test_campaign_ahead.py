"""Pass 2 builds the next chunk's request while the current one is in flight, and posts nothing ahead.

Against the emulator over HTTP. Whether a build really overlaps a request is shown without timing: the post
of chunk 1 waits (a few seconds at most) for chunk 2's build to have started on the other thread, which
only happens when that build runs while chunk 1 is still being sent; built serially it never does.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from airflow_qikberry import campaign as c
from airflow_qikberry.campaign import chunks as campaign_chunks
from airflow_qikberry.hooks.qikberry import QikberryHook
from tests.helpers import Sleeps

ROWS = [{"mobile": f"91987654{i:04d}", "name": f"C{i}"} for i in range(7)]  # chunks of 3: 3, 3 and 1


@pytest.fixture
def hook(qikberry_conn: str, emulator: Any) -> QikberryHook:
    emulator.configure(dlr_delay_seconds=3600)
    return QikberryHook(qikberry_conn_id=qikberry_conn, clock=Sleeps())


def _run(hook: QikberryHook) -> dict[str, Any]:
    return c.run_campaign(
        c.CampaignOptions.checked(name="ahead", chunk_size=3, has_template=True),
        source=c.Source("recipients", lambda: c.recipient_rows(ROWS)),
        hook=hook,
        render=lambda row: f"Hi {row['name']}",
        identity=None,
    )


def _chunk_of(prepared: Any) -> int:
    return int(str(prepared.nodes[0].given_custom_id).split("-")[-2])  # qc-<key>-<chunk>-<position>


def _ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("qikberry-campaign-ahead")]


def test_the_next_chunk_is_built_while_the_current_one_is_sent_and_posted_only_after_it(
    hook: QikberryHook, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[tuple[int, str]] = []  # chunk, thread
    started = {i: threading.Event() for i in range(3)}
    in_flight: list[int] = []
    posts: list[int] = []
    build = campaign_chunks.ChunkSender.build
    send_prepared = hook.send_prepared

    def recording_build(self: Any, chunk: Any, rows: Any, batch: Any) -> Any:
        builds.append((chunk.index, threading.current_thread().name))
        started[chunk.index].set()
        return build(self, chunk, rows, batch)

    def recording_post(prepared: Any) -> Any:
        index = _chunk_of(prepared)
        assert not in_flight, "a chunk was posted while another one's request was in flight"
        in_flight.append(index)
        try:
            if index + 1 < 3:  # hold this request until the next chunk's build has begun: built ahead, it
                # begins while this chunk is sent; built after this chunk is settled, it never would
                assert started[index + 1].wait(timeout=5), f"chunk {index + 2} was not built ahead"
            posts.append(index)
            return send_prepared(prepared)
        finally:
            in_flight.remove(index)

    monkeypatch.setattr(campaign_chunks.ChunkSender, "build", recording_build)
    monkeypatch.setattr(hook, "send_prepared", recording_post)
    summary = _run(hook)

    assert summary["accepted"] == 7
    assert posts == [0, 1, 2]
    # Chunk 1 is built where it is sent, first; chunks 2 and 3 on the other thread.
    assert builds[0] == (0, threading.current_thread().name)
    ahead = [(i, name.startswith("qikberry-campaign-ahead")) for i, name in builds[1:]]
    assert ahead == [(1, True), (2, True)]
    assert sorted(m["custom"].split("-", 2)[2] for m in emulator.messages()) == sorted(
        f"{i // 3}-{i % 3}" for i in range(7)
    )
    assert not _ahead_threads()  # the thread is gone, with its spool handle


def test_an_error_building_a_chunk_ahead_is_raised_where_that_chunk_would_be_sent(
    hook: QikberryHook, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = campaign_chunks.ChunkSender.build

    def failing_build(self: Any, chunk: Any, rows: Any, batch: Any) -> Any:
        if chunk.index == 2:
            raise RuntimeError("cannot build chunk 3")
        return build(self, chunk, rows, batch)

    monkeypatch.setattr(campaign_chunks.ChunkSender, "build", failing_build)
    with pytest.raises(RuntimeError, match="cannot build chunk 3"):
        _run(hook)
    # Chunks 1 and 2 were sent (the error waited for its chunk's turn), nothing of chunk 3.
    assert sorted(m["mobile"] for m in emulator.messages()) == [r["mobile"] for r in ROWS[:6]]
    assert not _ahead_threads()


def test_a_chunk_other_than_the_one_built_ahead_is_built_where_it_is_sent(tmp_path: Any) -> None:
    plan = c.ChunkPlan(2)
    chunks = plan.chunks(6)
    spool = tmp_path / "rows.jsonl"
    lines = [f'["9198765400{i:02d}"]\n'.encode() for i in range(6)]
    spool.write_bytes(b"".join(lines))
    offsets = [sum(map(len, lines[: ch.start])) for ch in chunks]

    class Sender:
        def build_all(self, chunk: Any, rows: Any) -> Any:
            return rows, (chunk.index, [r[0] for r in rows])

    with campaign_chunks.BuiltAhead(str(spool), offsets, chunks) as ahead:
        assert ahead.take(1) is None  # nothing built yet
        ahead.build(1, Sender())  # type: ignore[arg-type]
        assert ahead.take(2) is None  # a retry's search moved on: built where it is sent
        assert ahead.take(1) is None  # and what was built ahead is dropped
        ahead.build(2, Sender())  # type: ignore[arg-type]
        rows, built = ahead.take(2)  # type: ignore[misc]
    assert rows == [["919876540004"], ["919876540005"]]
    assert built == (2, ["919876540004", "919876540005"])
    assert not _ahead_threads()
