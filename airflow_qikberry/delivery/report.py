"""What a delivery wait tells people: one-line descriptions, failure and timeout messages, trigger events.

Example::

    describe(tracker.summary())  # "238 of 250 delivered (95.2%), 12 failed (UNDELIV: 10, EXPIRED: 2), ..."
    event_payload("timeout", tracker.summary())  # {"status": "timeout", "summary": {...}, "message": "..."}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

__all__ = ["SUMMARY_XCOM_KEY", "describe", "event_payload", "failure_message", "timeout_message"]

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
    """The payload of every delivery trigger event (and of any future push-driven trigger)."""
    if not message:
        if status == "failure":
            message = failure_message(summary)
        elif status == "timeout":
            message = timeout_message(summary)
        else:
            message = describe(summary)
    return {"status": status, "summary": dict(summary), "message": message}
