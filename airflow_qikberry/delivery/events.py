"""
Reading delivery events in a consumer DAG: the reports of the asset events that started a run.

A DAG scheduled on a delivery-event asset (:mod:`airflow_qikberry.assets`) gets, in its context's
``triggering_asset_events``, one or more asset events whose ``extra["payload"]`` holds a batch of reports.
:func:`reports_in` flattens them, each report once: delivery is at least once, and the same report may come
in two events (a triggerer that crashed right after emitting it emits it again), so it deduplicates by the
report's ``key`` (``"<message id>|<status>"``). Numbers are masked; look a message up by its ``id`` with
:class:`~airflow_qikberry.hooks.qikberry.QikberryHook` where the full number is needed.

This module imports nothing from Airflow: a DAG file may import it at parse time.

Example::

    @task
    def follow_up(triggering_asset_events=None):
        for report in reports_in(triggering_asset_events):
            print(report["id"], report["status"], report["mobile"])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["reports_in"]


def _events(value: Any, asset: Any) -> Iterable[Any]:
    if value is None:
        return []
    if isinstance(value, Mapping) or (hasattr(value, "values") and hasattr(value, "__getitem__")):
        if asset is not None:
            return list(value[asset])
        return [event for events in value.values() for event in events]
    return list(value)


def _payload(event: Any) -> Mapping[str, Any]:
    extra = event.get("extra") if isinstance(event, Mapping) else getattr(event, "extra", None)
    if not isinstance(extra, Mapping):
        return {}
    payload = extra.get("payload", extra)
    return payload if isinstance(payload, Mapping) else {}


def reports_in(
    triggering_asset_events: Any, asset: Any = None, *, outcome: str | None = None
) -> list[dict[str, Any]]:
    """
    Every delivery report of the triggering asset events, each once, in the order they were emitted.

    :param triggering_asset_events: the context's ``triggering_asset_events`` (a mapping of asset to
        events), or a list of asset events (objects with ``extra``, or dicts with ``"extra"``).
    :param asset: only the events of this asset (when the DAG is scheduled on several).
    :param outcome: only reports of this outcome (``"failed"`` or ``"delivered"``).
    """
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for event in _events(triggering_asset_events, asset):
        for report in _payload(event).get("reports") or ():
            if not isinstance(report, Mapping):
                continue
            key = str(report.get("key") or f"{report.get('id')}|{report.get('status')}")
            if key in seen or (outcome is not None and report.get("outcome") != outcome):
                continue
            seen.add(key)
            out.append(dict(report))
    return out
