"""
What a delivery wait tells people: one-line descriptions, failure and timeout messages, trigger events.

Example::

    describe(tracker.summary())  # "238 of 250 delivered (95.2%), 12 failed (UNDELIV: 10, EXPIRED: 2), ..."
    event_payload("timeout", tracker.summary())  # {"status": "timeout", "summary": {...}, "message": "..."}
    reports_payload(reports, connection="qikberry_default", selection={...})  # a delivery-event batch
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from airflow_qikberry.delivery.dlr import DeliveryReport

__all__ = [
    "SUMMARY_XCOM_KEY",
    "describe",
    "describe_reports",
    "event_payload",
    "failure_message",
    "reports_payload",
    "reports_summary",
    "timeout_message",
]

#: The XCom key under which the sensor pushes its summary, on success and before raising.
SUMMARY_XCOM_KEY = "delivery_summary"


def _pct(ratio: float) -> str:
    return f"{ratio * 100:.1f}%".replace(".0%", "%")


def describe(summary: Mapping[str, Any]) -> str:
    """``238 of 250 delivered (95.2%), 12 failed (UNDELIV: 10, EXPIRED: 2), 0 pending``."""
    text = (
        f"{summary['delivered']} of {summary['total']} delivered ({_pct(summary['delivered_ratio'])}), "
        f"{summary['failed']} failed"
    )
    by_status = summary.get("failed_by_status") or {}
    if by_status:
        text += " (" + ", ".join(f"{status}: {n}" for status, n in by_status.items()) + ")"
    text += f", {summary['pending']} pending"
    if summary.get("not_visible"):
        text += f" ({summary['not_visible']} not visible yet)"
    return text


def failure_message(summary: Mapping[str, Any]) -> str:
    return (
        f"Delivery can no longer reach the required {_pct(summary['success_ratio'])}: {describe(summary)}. "
        f"Failed ids are in XCom '{SUMMARY_XCOM_KEY}'."
    )


def timeout_message(summary: Mapping[str, Any]) -> str:
    return (
        f"Timed out waiting for {_pct(summary['success_ratio'])} delivery: {describe(summary)}. "
        f"Pending ids are in XCom '{SUMMARY_XCOM_KEY}'."
    )


def event_payload(
    status: Literal["success", "failure", "timeout", "error"], summary: Mapping[str, Any], message: str = ""
) -> dict[str, Any]:
    """Return the payload of every delivery trigger event (and of any future push-driven trigger)."""
    if not message:
        if status == "failure":
            message = failure_message(summary)
        elif status == "timeout":
            message = timeout_message(summary)
        else:
            message = describe(summary)
    return {"status": status, "summary": dict(summary), "message": message}


def _by_count(counts: Mapping[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def reports_summary(reports: Sequence[DeliveryReport]) -> dict[str, Any]:
    """
    Return the counts of a batch of delivery reports, in the delivery summary's vocabulary.

    That is ``total``, ``delivered``, ``failed``, ``by_status``, ``failed_by_status`` and ``failed_ids``.
    """
    by_status: dict[str, int] = {}
    failed_by_status: dict[str, int] = {}
    failed: list[str] = []
    delivered = 0
    for report in reports:
        by_status[report.status] = by_status.get(report.status, 0) + 1
        if report.outcome == "delivered":
            delivered += 1
        elif report.outcome == "failed":
            failed.append(report.message_id)
            failed_by_status[report.status] = failed_by_status.get(report.status, 0) + 1
    from airflow_qikberry.delivery.tracker import MAX_LISTED_IDS

    return {
        "total": len(reports),
        "delivered": delivered,
        "failed": len(failed),
        "by_status": _by_count(by_status),
        "failed_by_status": _by_count(failed_by_status),
        "failed_ids": failed[:MAX_LISTED_IDS],
        "failed_ids_total": len(failed),
    }


def describe_reports(summary: Mapping[str, Any]) -> str:
    """``12 report(s): 2 delivered, 10 failed (UNDELIV: 8, EXPIRED: 2)``."""
    text = f"{summary['total']} report(s): {summary['delivered']} delivered, {summary['failed']} failed"
    by_status = summary.get("failed_by_status") or {}
    if by_status:
        text += " (" + ", ".join(f"{status}: {n}" for status, n in by_status.items()) + ")"
    return text


def reports_payload(
    reports: Sequence[DeliveryReport],
    *,
    connection: str,
    selection: Mapping[str, Any],
    part: int = 1,
    parts: int = 1,
) -> dict[str, Any]:
    """
    Return the payload of a delivery event (an asset event's ``extra["payload"]``).

    The reports (numbers masked; deduplicate by each report's ``key``), their summary, a one-line
    message, the connection and the selection of the watcher that emitted it, and ``part`` of ``parts``
    when one sweep's reports took several events.
    """
    summary = reports_summary(reports)
    return {
        "reports": [report.to_dict() for report in reports],
        "summary": summary,
        "message": describe_reports(summary),
        "connection": connection,
        "selection": dict(selection),
        "part": part,
        "parts": parts,
    }
