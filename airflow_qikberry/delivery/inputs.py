"""
What a delivery wait is given, checked: status sets, message and group ids, ratio and expected count.

The sensor's templated inputs may arrive as Python values or as the text a non-native template rendering
made of them (a list rendered from XCom); each is read here once and refused with a typed error naming the
field, before any request. :func:`pack_ids` stores many ids of one campaign compactly in trigger kwargs.

Example::

    parse_message_ids("['b34e35ad-...:1', 'b34e35ad-...:2']")  # an XCom list, rendered as text
    StatusSets.of(pending=["AWAITING-DLR", "TIMEOUT-DLR"]).outcome("TIMEOUT-DLR")  # "pending"
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from airflow_qikberry.exceptions import QikberryValidationError
from airflow_qikberry.protocol import DELIVERED, PENDING_STATUSES
from airflow_qikberry.validation import rendered_literal

__all__ = [
    "Outcome",
    "StatusSets",
    "check_expected_count",
    "check_ratio",
    "pack_ids",
    "parse_group_ids",
    "parse_message_ids",
    "split_id",
    "unpack_ids",
]

#: What a status means for a wait.
Outcome = Literal["pending", "delivered", "failed"]


# -- status vocabulary


def _status_set(value: Iterable[str] | None, name: str) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    out: set[str] = set()
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise QikberryValidationError(
                f"{name} must be a list of status strings such as 'DELIVRD', got {item!r}.", field=name
            )
        out.add(item.strip())
    return frozenset(out)


@dataclass(frozen=True)
class StatusSets:
    """
    Which delivery statuses mean pending, delivered and failed.

    Defaults follow the API (reference 6.1): ``AWAITING-DLR`` pending, ``DELIVRD`` delivered, every other
    status a final failure (``failed=None``). With an explicit ``failed`` set, a status in none of the three
    sets counts as still pending. A row without a status counts as pending.

    Example::

        StatusSets.of(pending=["AWAITING-DLR", "TIMEOUT-DLR"])  # operators that send late reports
    """

    pending: frozenset[str] = PENDING_STATUSES
    delivered: frozenset[str] = frozenset({DELIVERED})
    failed: frozenset[str] | None = None

    @classmethod
    def of(
        cls,
        pending: Iterable[str] | None = None,
        delivered: Iterable[str] | None = None,
        failed: Iterable[str] | None = None,
    ) -> StatusSets:
        """Set from user input (None: the default), checked: delivered non-empty, no status in two sets."""
        p = _status_set(pending, "pending_statuses")
        d = _status_set(delivered, "delivered_statuses")
        f = _status_set(failed, "failed_statuses")
        sets = cls(
            pending=PENDING_STATUSES if p is None else p,
            delivered=frozenset({DELIVERED}) if d is None else d,
            failed=f,
        )
        if not sets.delivered:
            raise QikberryValidationError(
                "delivered_statuses must name at least one status (the API's is 'DELIVRD').",
                field="delivered_statuses",
            )
        named = {
            "pending_statuses": sets.pending,
            "delivered_statuses": sets.delivered,
            "failed_statuses": sets.failed or frozenset(),
        }
        names = list(named)
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                both = named[first] & named[second]
                if both:
                    raise QikberryValidationError(
                        f"{first} and {second} both contain {sorted(both)}: "
                        "a status can mean one thing only.",
                        field=second,
                    )
        return sets

    def outcome(self, status: str) -> Outcome:
        if not status or status in self.pending:
            return "pending"
        if status in self.delivered:
            return "delivered"
        if self.failed is None or status in self.failed:
            return "failed"
        return "pending"

    def to_kwargs(self) -> dict[str, list[str] | None]:
        """Return the sets as JSON-ready keyword arguments (sorted lists), for a trigger's ``serialize()``."""
        return {
            "pending_statuses": sorted(self.pending),
            "delivered_statuses": sorted(self.delivered),
            "failed_statuses": None if self.failed is None else sorted(self.failed),
        }


# -- message ids


def split_id(message_id: str) -> tuple[str | None, int | None]:
    """``("<uuid>", n)`` for a ``<uuid>:<n>`` id; ``(None, None)`` for an id of another shape."""
    group, sep, tail = message_id.rpartition(":")
    if not sep or not group:
        return None, None
    if tail.isascii() and tail.isdigit() and tail == str(int(tail)) and int(tail) > 0:
        return group, int(tail)
    return group, None


def _runs(positions: list[int]) -> str:
    parts: list[str] = []
    start = prev = positions[0]
    for pos in positions[1:]:
        if pos == prev + 1:
            prev = pos
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = pos
    parts.append(str(start) if start == prev else f"{start}-{prev}")
    return ",".join(parts)


def pack_ids(message_ids: Iterable[str]) -> dict[str, Any]:
    """
    Return a compact, JSON-ready form of a set of ids: ``<uuid>:1`` .. ``<uuid>:10000`` become ``"1-10000"``.

    Trigger kwargs are stored in the metadata database; 10,000 ids of one campaign take a few dozen bytes
    instead of 400 KB. Ids of another shape are kept as they are. :func:`unpack_ids` reverses it.
    """
    ranges: dict[str, list[int]] = {}
    others: dict[str, None] = {}
    for mid in message_ids:
        group, pos = split_id(mid)
        if group is not None and pos is not None:
            ranges.setdefault(group, []).append(pos)
        else:
            others[mid] = None
    return {
        "ranges": {group: _runs(sorted(set(pos))) for group, pos in ranges.items()},
        "ids": list(others),
    }


def unpack_ids(packed: Mapping[str, Any]) -> list[str]:
    """Return the ids of :func:`pack_ids` output (grouped, in position order)."""
    out: list[str] = []
    for group, runs in dict(packed.get("ranges") or {}).items():
        for part in str(runs).split(","):
            first, _, last = part.partition("-")
            for pos in range(int(first), int(last or first) + 1):
                out.append(f"{group}:{pos}")
    out.extend(str(mid) for mid in packed.get("ids") or ())
    return out


# -- user input (templated fields, possibly rendered from XCom as text)

_ID_FORBIDDEN = set(" \t\r\n,'\"[](){}")


def _items(value: Any, name: str) -> list[Any]:
    """Return a list from a list-like value, or from the text a non-native template rendering made of one."""
    if isinstance(value, str):
        text = value.strip()
        parsed = rendered_literal(text, name)
        if parsed is not text:
            value = parsed
        elif text and not (_ID_FORBIDDEN & set(text)):
            return [text]
        else:
            raise QikberryValidationError(
                f"{name} must be a list (or one id), got the text {text[:80]!r}.", field=name
            )
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise QikberryValidationError(f"{name} must be a list, got {type(value).__name__}.", field=name)
    return list(value)


def _clean_id(item: Any, name: str, keys: tuple[str, ...]) -> str:
    if isinstance(item, Mapping):
        item = next((item[key] for key in keys if item.get(key)), None)
    if not isinstance(item, str) or not item.strip() or _ID_FORBIDDEN & set(item.strip()):
        raise QikberryValidationError(f"{name} holds {item!r}, which is not an id.", field=name)
    return item.strip()


def parse_message_ids(value: Any) -> list[str]:
    """
    Return the message ids a sensor watches.

    A list (ids, or send results with an ``id``), a list literal rendered as text, or one id. Duplicates are
    watched once. Raises :class:`QikberryValidationError`.
    """
    ids = [_clean_id(item, "message_ids", ("id", "message_id")) for item in _items(value, "message_ids")]
    if not ids:
        raise QikberryValidationError(
            "message_ids is empty: there is nothing to wait for.", field="message_ids"
        )
    return list(dict.fromkeys(ids))


def parse_group_ids(value: Any) -> list[str]:
    """
    Return the group ids a sensor watches.

    One id, a list of them, a campaign result holding ``group_ids``, or any of those rendered as text. Raises
    :class:`QikberryValidationError`.
    """
    if isinstance(value, str) and value.strip()[:1] == "{":
        value = rendered_literal(value.strip(), "group_id")
    if isinstance(value, Mapping):
        value = value.get("group_ids", value.get("group_id"))
        if value is None:
            raise QikberryValidationError(
                "group_id got a mapping without 'group_ids' or 'group_id'.", field="group_id"
            )
    ids = [_clean_id(item, "group_id", ("group_id",)) for item in _items(value, "group_id")]
    if not ids:
        raise QikberryValidationError("group_id is empty: there is nothing to wait for.", field="group_id")
    return list(dict.fromkeys(ids))


def check_ratio(value: Any) -> float:
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        ratio = math.nan
    if not 0 < ratio <= 1:
        raise QikberryValidationError(
            f"success_ratio must be a number above 0 and at most 1 (e.g. 0.95), got {value!r}.",
            field="success_ratio",
        )
    return ratio


def check_expected_count(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if number < 1:
        raise QikberryValidationError(
            f"expected_count must be a whole number of at least 1, got {value!r}.", field="expected_count"
        )
    return number
