"""Reading an answer's rows: the fast readers give exactly what the plain dataclass constructor gives.

``SentMessage.from_api`` and ``MessageStatus.from_api`` run once per row of every answer (5,000 per campaign
chunk), so they take values already of their field's type as they are and fill the frozen dataclass without
its ``__init__`` (``models._made``). Here both are compared with the reference reading (the converters on
every value, ``cls(**fields)``) on a generated corpus of rows of every shape the API and the emulator write:
keys missing, ``None``, empty, numbers as text, floats, booleans, numbers written ``+91`` or ``0091``, the
custom id under each of its spellings and not a string, the ``sms/send/template`` spelling.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
import random
from collections.abc import Mapping
from typing import Any

import pytest

from airflow_qikberry import models
from airflow_qikberry.models import MessageStatus, SentMessage, _decimal, _int, _opt_str
from airflow_qikberry.protocol import canonical_number


class _Text(str):
    """A str subclass, as some JSON decoders and ORMs hand out."""


def _reference_fields(row: Mapping[str, Any], *custom_keys: str) -> dict[str, Any]:
    # The reading before the fast path, converter by converter.
    custom = next((row[key] for key in custom_keys if key in row), None)
    return {
        "message_id": str(row.get("id", "")),
        "mobile": canonical_number(row.get("mobile")),
        "status": str(row.get("status", "")),
        "units": _int(row.get("units")),
        "length": _int(row.get("length")),
        "charges": _decimal(row.get("charges")),
        "custom_id": _opt_str(custom),
    }


def _reference_sent(row: Mapping[str, Any]) -> SentMessage:
    fields = _reference_fields(row, "customid", "custom", "foreign_id")
    if "mobile" not in row:
        fields["mobile"] = canonical_number(row.get("to"))
    if "charges" not in row:
        fields["charges"] = _decimal(row.get("credits"))
    return SentMessage(**fields, submitted_at=_opt_str(row.get("submitted_at", row.get("created_at"))))


def _reference_status(row: Mapping[str, Any]) -> MessageStatus:
    return MessageStatus(
        **_reference_fields(row, "custom", "customid"),
        service=_opt_str(row.get("service")),
        sender=_opt_str(row.get("sender")),
        submitted_at=_opt_str(row.get("submitted_at")),
        delivered_at=_opt_str(row.get("delivered_at")),
    )


_VALUES: dict[str, list[Any]] = {
    "id": ["b34e35ad-1234-5678-9abc-def012345678:1", "", 17, None, _Text("g:2")],
    "mobile": [
        "919812345678",
        "+919812345678",
        "00919812345678",
        "0091",
        "+91 98123 45678",
        919812345678,
        "",
        None,
        "٩١٩٨١٢٣٤٥٦٧٨",
        _Text("919812345678"),
    ],
    "to": ["919812345678", "+44 7700 900123", None],
    "status": ["queued", "DELIVRD", "", None, 3],
    "units": [1, 2, "1", "2.0", "", None, 1.0, True, False, "x", -1],
    "length": [60, "60", None, "", 7.9, True],
    "charges": ["1.0000", 1, "2", 0.5, "", None, "n/a", True, "1e3"],
    "credits": ["1.0000", 2, None],
    "customid": ["abc-3-17", "", None, 17, 0, _Text("t-1"), "  "],
    "custom": ["c-1", "", None, 5],
    "foreign_id": ["f-1", "", None],
    "submitted_at": ["2026-12-05 01:00:00", "", None, 0],
    "created_at": ["2026-12-05T01:00:00Z", None],
    "delivered_at": ["2026-12-05 01:00:09", "", None],
    "service": ["T", "", None],
    "sender": ["QIKBRY", "", None, 7],
}


def _rows(count: int = 4_000) -> list[dict[str, Any]]:
    rng = random.Random(19)
    rows: list[dict[str, Any]] = [{}]
    for _ in range(count):
        keep = rng.choice((0.3, 0.7, 0.95, 1.0))
        rows.append({key: rng.choice(values) for key, values in _VALUES.items() if rng.random() < keep})
    return rows


ROWS = _rows()


@pytest.mark.parametrize(
    ("read", "reference"),
    [(SentMessage.from_api, _reference_sent), (MessageStatus.from_api, _reference_status)],
    ids=["SentMessage", "MessageStatus"],
)
def test_fast_row_reading_agrees_with_the_reference(read: Any, reference: Any) -> None:
    for row in ROWS:
        fast, full = read(row), reference(row)
        assert fast == full, row
        # Same values of the same types (Decimal('1.0000') == Decimal('1') but reads differently).
        assert repr(fast) == repr(full), row
        assert {k: type(v) for k, v in vars(fast).items()} == {k: type(v) for k, v in vars(full).items()}


@pytest.mark.parametrize("cls", [SentMessage, MessageStatus])
def test_a_row_made_fast_is_the_dataclass_it_stands_for(cls: Any) -> None:
    # What models._made relies on: no defaults, no __post_init__, no slots (else it must use __init__).
    assert not hasattr(cls, "__post_init__")
    assert "__slots__" not in vars(cls)
    assert all(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
               for f in dataclasses.fields(cls))  # fmt: skip
    row = {"id": "g:1", "mobile": "919812345678", "status": "queued", "units": 1, "length": 60,
           "charges": "1.0000", "customid": "abc", "custom": "abc", "submitted_at": "t"}  # fmt: skip
    made = cls.from_api(row)
    assert set(vars(made)) == {f.name for f in dataclasses.fields(cls)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.status = "x"
    assert hash(made) == hash(copy.copy(made))
    assert pickle.loads(pickle.dumps(made)) == made
    assert dataclasses.replace(made, status="DELIVRD").status == "DELIVRD"
    assert dataclasses.asdict(made) == dataclasses.asdict(cls(**vars(made)))


def test_made_is_what_the_models_use(monkeypatch: pytest.MonkeyPatch) -> None:
    # The comparison above is only worth something while from_api builds through _made.
    calls: list[type] = []
    made = models._made

    def spy(cls: Any, fields: dict[str, Any]) -> Any:
        calls.append(cls)
        return made(cls, fields)

    monkeypatch.setattr(models, "_made", spy)
    SentMessage.from_api({"mobile": "919812345678"})
    MessageStatus.from_api({"mobile": "919812345678"})
    assert calls == [SentMessage, MessageStatus]


def test_accounted_for_is_the_multiset_rule() -> None:
    # The rule: the answer's numbers are the numbers sent, each as many times (in any order, in any of the
    # API's spellings); one-number sends take a shortcut, which must say the same.
    from collections import Counter

    from airflow_qikberry.idempotency import Unaccounted, accounted_for

    rng = random.Random(19)
    spellings = ["919812345678", "+919812345678", "00919812345678", "447700900123", "0091", "", "91 98"]
    for _ in range(3_000):
        numbers = [rng.choice(spellings) for _ in range(rng.choice((0, 1, 1, 1, 2, 3)))]
        answered = [rng.choice(spellings) for _ in range(rng.choice((0, 1, 1, 1, 2, 3)))]
        if rng.random() < 0.5:  # often the answer of exactly these numbers, reordered
            answered = rng.sample(numbers, len(numbers))
        sent = [SentMessage.from_api({"mobile": n}) for n in answered]
        rule = Counter(m.mobile for m in sent) == Counter(canonical_number(n) for n in numbers)
        try:
            accounted_for(sent, numbers, "batch")
        except Unaccounted:
            assert not rule, (answered, numbers)
        else:
            assert rule, (answered, numbers)


def _reference_decimal(value: Any) -> Any:
    # models._decimal before it kept the values it read: a new Decimal every call.
    from decimal import Decimal, InvalidOperation

    if value is None or value == "":
        return Decimal(0)
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return Decimal(0)


def test_money_values_read_once_are_the_values_read_each_time() -> None:
    """
    ``_decimal`` keeps each value it read (an answer repeats a few charges in every row): what it returns
    must be what a fresh reading gives, written the same way too (``1`` and ``1.0`` are one dict key but
    ``Decimal("1")`` and ``Decimal("1.0")`` print differently), in whatever order the values come.
    """
    values: list[Any] = [1, 1.0, True, False, 0, 0.0, "1", "1.0", "1.0000", "2.5", 2.5, "", None, " ",
                         "x", float("nan"), float("inf"), "NaN", 10**30, -0.0, "-0", [1], {"a": 1},
                         (1,)]  # fmt: skip
    rng = random.Random(19)
    for _ in range(20):
        rng.shuffle(values)
        for value in values:
            got, want = _decimal(value), _reference_decimal(value)
            assert str(got) == str(want), value
            assert got.as_tuple() == want.as_tuple(), value


def test_non_finite_numbers_in_count_fields_read_as_zero() -> None:
    """JSON's Infinity and NaN (decoded as floats) in a count field read as 0, not an OverflowError."""
    import json

    [row] = json.loads('[{"id": "g:1", "mobile": "919876543210", "units": Infinity, "length": -Infinity}]')
    sent = SentMessage.from_api(row)
    assert (sent.units, sent.length) == (0, 0)
    assert MessageStatus.from_api({**row, "units": float("nan")}).units == 0
