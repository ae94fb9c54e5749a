"""``send_batch`` takes prebuilt ``protocol.BatchNode`` instances as they are, and still validates mappings.

The campaign engine validates every number and text once, in its prepare pass, and hands the send pass
BatchNodes; these tests pin down both halves of that contract against the emulator: a BatchNode is not
validated again (counted by wrapping the validation functions, the only way to see work that was skipped),
and a mapping, alone or next to BatchNodes, is validated as before, before any request.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from airflow_qikberry import idempotency as ido
from airflow_qikberry import payloads as p
from airflow_qikberry import phone, sms_text, validation
from airflow_qikberry.exceptions import QikberryValidationError
from airflow_qikberry.hooks.qikberry import QikberryHook
from tests.helpers import SentRequests, Sleeps, count

A, B, C = "919876543210", "919876543211", "919876543212"


@pytest.fixture
def hook(qikberry_conn: str, emulator: Any) -> QikberryHook:
    emulator.configure(dlr_delay_seconds=3600)
    hook = QikberryHook(qikberry_conn_id=qikberry_conn, clock=Sleeps())
    return hook


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often the per-node validators run (wrapped, still doing their work)."""
    counted: dict[str, int] = {"numbers": 0, "message": 0, "custom_id": 0}

    def wrap(module: ModuleType, name: str, key: str) -> None:
        real = getattr(module, name)

        def counting(*args: Any, **kwargs: Any) -> Any:
            counted[key] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, counting)

    wrap(phone, "normalize_numbers", "numbers")
    wrap(sms_text, "validate_message", "message")
    wrap(validation, "validate_custom_id", "custom_id")
    return counted


def test_prebuilt_nodes_are_sent_as_they_are(
    hook: QikberryHook, emulator: Any, calls: dict[str, int]
) -> None:
    nodes = [
        p.validated_batch_node(A, "order-1", message="Hi Asha", api_type="N"),
        p.validated_batch_node(B, "order-2", message="नमस्ते", api_type="U"),
    ]
    wire = SentRequests.on(hook.session)
    result = hook.send_batch(nodes, name="prebuilt")
    assert result.accepted == 2
    assert result.group_id
    assert calls == {"numbers": 0, "message": 0, "custom_id": 0}  # validated once, by whoever built them
    assert wire.json_bodies("sms/send/json")[0]["nodes"] == [
        {"to": A, "message": "Hi Asha", "type": "N", "custom": "order-1"},
        {"to": B, "message": "नमस्ते", "type": "U", "custom": "order-2"},
    ]
    stored = {m["mobile"]: m for m in emulator.messages()}
    assert (stored[B]["type"], stored[B]["message"], stored[B]["custom"]) == ("U", "नमस्ते", "order-2")


def test_prebuilt_node_without_text_takes_the_roots(hook: QikberryHook, emulator: Any) -> None:
    hook.send_batch([p.validated_batch_node(A, "c-1"), {"to": B, "custom_id": "c-2"}], message="Sale tonight")
    assert sorted((m["mobile"], m["message"], m["type"]) for m in emulator.messages()) == [
        (A, "Sale tonight", "N"),
        (B, "Sale tonight", "N"),
    ]


def test_mappings_are_still_validated(hook: QikberryHook, emulator: Any, calls: dict[str, int]) -> None:
    good = p.validated_batch_node(A, "c-1", message="Hi", api_type="N")
    with pytest.raises(QikberryValidationError) as bad_number:
        hook.send_batch([good, {"to": "12", "message": "Hi"}])
    assert bad_number.value.field == "nodes[1].to"
    with pytest.raises(QikberryValidationError) as too_long:
        hook.send_batch([good, {"to": B, "message": "x" * 400}], max_units=2)
    assert too_long.value.field == "nodes[1].message"
    with pytest.raises(QikberryValidationError) as bad_id:
        hook.send_batch([good, {"to": B, "message": "Hi", "custom_id": " edge "}])
    assert bad_id.value.field == "nodes[1].custom_id"
    assert calls["numbers"] == 3
    assert calls["message"] == 2
    assert calls["custom_id"] == 1
    assert count(emulator, "POST sms/send/json") == 0


def test_the_batch_is_checked_whatever_its_nodes(hook: QikberryHook, emulator: Any) -> None:
    with pytest.raises(QikberryValidationError, match="duplicate custom ids"):
        hook.send_batch(
            [p.validated_batch_node(A, "same", message="Hi", api_type="N"), {"to": B, "message": "Hi",
             "custom_id": "same"}]
        )  # fmt: skip
    # A node built to take the root's text, sent under a root that has none: refused before the request.
    with pytest.raises(QikberryValidationError) as no_text:
        hook.send_batch(
            [p.validated_batch_node(A, "c-1", message="Hi", api_type="N"), p.validated_batch_node(B, "c-2")]
        )
    assert no_text.value.field == "nodes[1].message"
    assert count(emulator, "POST sms/send/json") == 0


def test_no_derived_custom_id_when_every_node_has_one(
    hook: QikberryHook, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    derived: list[str] = []
    real = ido.derive_custom_id

    def counting(*args: Any, **kwargs: Any) -> str:
        derived.append(real(*args, **kwargs))
        return derived[-1]

    monkeypatch.setattr(ido, "derive_custom_id", counting)
    hook.send_batch([p.validated_batch_node(A, "c-1", message="Hi", api_type="N")])
    assert derived == []  # every id was given: no fingerprint of the whole batch to hash
    hook.send_batch(
        [p.validated_batch_node(B, "c-2", message="Hi", api_type="N"), {"to": C, "message": "Hi"}]
    )
    assert len(derived) == 1
    stored = {m["mobile"]: m["custom"] for m in emulator.messages()}
    assert stored[B] == "c-2"
    assert stored[C] == f"{derived[0]}-2"


# --- the campaign engine: every row validated once, in its prepare pass


@pytest.mark.parametrize("static", [False, True])
def test_campaign_validates_each_row_once(
    hook: QikberryHook, emulator: Any, monkeypatch: pytest.MonkeyPatch, static: bool
) -> None:
    from airflow_qikberry import campaign as c

    counted = {"number": 0, "numbers": 0, "measure": 0}
    for module, name, key in (
        (phone, "normalize_number", "number"),
        (phone, "normalize_numbers", "numbers"),
        (sms_text, "measure", "measure"),
    ):
        real = getattr(module, name)
        monkeypatch.setattr(
            module,
            name,
            lambda *a, _real=real, _key=key, **k: (
                counted.__setitem__(_key, counted[_key] + 1),
                _real(*a, **k),
            )[1],
        )
    # A printable-ASCII row text is measured by its fast path instead (None: not measured, the full one
    # runs). validate_message uses it too, for the one text of a static campaign: not a row's, not counted.
    fast = sms_text.measure_printable_ascii

    def measure_fast(text: str, *a: Any, **k: Any) -> Any:
        info = fast(text, *a, **k)
        counted["measure"] += info is not None and text.startswith("Hi ")
        return info

    monkeypatch.setattr(sms_text, "measure_printable_ascii", measure_fast)
    # Many numbers are read through a reader made once for their region (normalize_number's rules).
    reader = phone.number_reader

    def counting_reader(*a: Any, **k: Any) -> Any:
        read = reader(*a, **k)

        def counted_read(raw: Any) -> str:
            counted["number"] += 1
            return read(raw)

        return counted_read

    monkeypatch.setattr(phone, "number_reader", counting_reader)
    rows = [{"mobile": f"91987654{i:04d}", "name": "नमस्ते" if i % 3 == 0 else f"C{i}"} for i in range(7)]
    options = {"message": "Sale tonight"} if static else {"has_template": True}
    summary = c.run_campaign(
        c.CampaignOptions.checked(name="once", chunk_size=3, **options),  # type: ignore[arg-type]
        source=c.Source("recipients", lambda: c.recipient_rows(rows)),
        hook=hook,
        render=None if static else (lambda row: f"Hi {row['name']}"),
        identity=None,
    )
    assert summary["accepted"] == 7
    assert summary["chunks"] == 3
    # Each number through phonenumbers once (pass 1), none again when its chunk is sent (pass 2).
    assert counted["number"] == 7
    assert counted["numbers"] == 0
    # Each rendered text measured once, by one path or the other (one text for all is checked per request,
    # not per row).
    assert counted["measure"] == (0 if static else 7)
    stored = {m["mobile"]: m for m in emulator.messages()}
    for i, row in enumerate(rows):
        message = stored[row["mobile"]]
        text = "Sale tonight" if static else f"Hi {row['name']}"
        assert message["message"] == text
        assert message["type"] == ("U" if not static and i % 3 == 0 else "N")
        assert message["custom"].startswith("qc-")
        assert message["custom"].endswith(f"-{i // 3}-{i % 3}")


def test_campaign_pass_2_runs_with_the_heap_frozen_and_builds_no_dlt_subjects(
    hook: QikberryHook, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    from airflow_qikberry import campaign as c
    from airflow_qikberry import sends

    if gc.get_freeze_count():
        pytest.skip("this process froze its heap already")
    seen: list[int] = []
    send_prepared = hook.send_prepared

    def recording(prepared: Any) -> Any:
        seen.append(gc.get_freeze_count())
        return send_prepared(prepared)

    def no_subjects(self: Any) -> Any:
        raise AssertionError("dlt_check is off for a campaign's chunks: nothing to build subjects for")

    monkeypatch.setattr(hook, "send_prepared", recording)
    monkeypatch.setattr(sends.BatchRequest, "dlt_subjects", no_subjects)
    rows = [{"mobile": f"91987654{i:04d}", "name": f"C{i}"} for i in range(5)]
    summary = c.run_campaign(
        c.CampaignOptions.checked(name="frozen", chunk_size=2, has_template=True),
        source=c.Source("recipients", lambda: c.recipient_rows(rows)),
        hook=hook,
        render=lambda row: f"Hi {row['name']}",
        identity=None,
    )
    assert summary["accepted"] == 5
    assert len(seen) == 3
    assert all(count > 0 for count in seen)
    assert gc.get_freeze_count() == 0  # and unfrozen after
