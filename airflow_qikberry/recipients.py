"""
Recipients as users hand them over, read into a shape a send takes.

One reader for the send operator and the notifier (a campaign reads rows: :mod:`airflow_qikberry.campaign`).

A template renders a list to its text, an XCom may hold records instead of numbers, a SQL driver gives
number values: :func:`recipient_list` reads ``to`` back and refuses what cannot be numbers with a hint about
fixing the template, :func:`recipient_entry` checks one entry. The numbers themselves are
:mod:`airflow_qikberry.phone`'s. No I/O, no Airflow import.

Example::

    from airflow_qikberry.recipients import recipient_entries

    recipient_entries("['919876543210', 919876543211]")  # ['919876543210', 919876543211]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from numbers import Number
from typing import Any

from airflow_qikberry.validation import fail, rendered_list

__all__ = ["recipient_entries", "recipient_entry", "recipient_list"]


def recipient_list(to: Any, *, field: str = "to") -> str | list[Any]:
    """
    Recipients as a template or an XCom hands them over, in a shape a send takes.

    A string of numbers, or a list of entries. A list rendered as text is read back; what cannot be numbers is
    refused with a hint about fixing the template: nothing, an empty list, a mapping (a record instead of its
    number), bytes, another type. Each entry is :func:`recipient_entry`'s; every number, the API's 8-15 digits
    and duplicates are :func:`~airflow_qikberry.phone.normalize_numbers`'s.

    Example::

        >>> recipient_list("['919876543210', 919876543211]")
        ['919876543210', 919876543211]
    """
    to = rendered_list(to, field)
    if to is None or (isinstance(to, str) and not to.strip()):
        fail(
            field,
            "is empty; pass a phone number with its country code, a comma-separated string of numbers or a "
            "list of them (check the template or the upstream XCom that renders it)",
        )
    if isinstance(to, str):
        return to
    if isinstance(to, Number) and not isinstance(to, bool):
        return [to]
    if isinstance(to, Mapping):
        fail(
            field,
            f"got a {type(to).__name__} (keys {', '.join(map(repr, list(to)[:3]))}), not numbers; pass the "
            "numbers themselves, e.g. to=\"{{ ti.xcom_pull('task')['mobiles'] }}\"",
        )
    if isinstance(to, (bytes, bytearray)) or not isinstance(to, Iterable):
        fail(
            field, f"must be a number, a comma-separated string or a list of numbers, got {type(to).__name__}"
        )
    entries = list(to)
    if not entries:
        fail(
            field, "is an empty list; pass at least one phone number (did the upstream task return no rows?)"
        )
    return entries


def recipient_entry(entry: Any, position: int, *, field: str = "to") -> Any:
    """
    One entry of a list of recipients, if it can be a number.

    A string, or a number value (passed on as it is, so that the rule of
    :func:`~airflow_qikberry.phone.normalize_numbers` applies: an int is exact, a float is refused, it may
    have lost digits). Anything else is refused naming its ``position`` (1-based), with a hint for a record.
    """
    if isinstance(entry, str) or (isinstance(entry, Number) and not isinstance(entry, bool)):
        return entry
    hint = (
        "; pick the number out of each record, e.g. to=\"{{ ti.xcom_pull('task') | map(attribute='mobile') "
        '| list }}"'
        if isinstance(entry, Mapping)
        else ""
    )
    fail(
        field,
        f"entry {position} is a {type(entry).__name__}, not a phone number (a string or an integer){hint}",
    )


def recipient_entries(to: Any, *, field: str = "to") -> str | list[Any]:
    """:func:`recipient_list` with every entry checked by :func:`recipient_entry`: the first bad one fails."""
    to = recipient_list(to, field=field)
    if isinstance(to, str):
        return to
    return [recipient_entry(entry, position, field=field) for position, entry in enumerate(to, start=1)]
