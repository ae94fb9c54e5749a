"""
How far an earlier try of a campaign got.

The accepted prefix of chunks sent in order, found with a logarithmic number of lookups, and the boundary
chunk confirmed absent over the reconcile window.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from airflow_qikberry.exceptions import (
    QikberryDeliveryUnknownError,
    QikberryError,
)
from airflow_qikberry.idempotency.findings import ABSENT, Finding
from airflow_qikberry.transport.retry import bounded_by

if TYPE_CHECKING:
    from airflow_qikberry.idempotency.exactly_once import ExactlyOnce

__all__ = [
    "accepted_prefix",
    "confirm_absent",
    "resume_point",
]


def accepted_prefix(total: int, accepted: Callable[[int], bool], *, start: int = 0) -> int:
    """
    How many of ``total`` chunks sent strictly in order were accepted (the first ``p``; none after them).

    ``accepted(k)`` looks chunk ``k`` up; chunks below ``start`` are already known to be accepted. The search
    steps exponentially from ``start`` (start, +1, +3, +7, ...) until a chunk is missing, then bisects between
    the last chunk found and the first one missing: about ``2 * log2(p - start + 1)`` lookups, not ``p``.

    Example::

        accepted_prefix(100, lambda k: k < 37)  # 37, after 12 lookups
    """
    if start >= total:
        return total
    if not accepted(start):
        return start
    found, step = start, 1
    while True:
        candidate = found + step
        if candidate >= total:
            if found == total - 1 or accepted(total - 1):
                return total
            missing = total - 1
            break
        if not accepted(candidate):
            missing = candidate
            break
        found, step = candidate, step * 2
    while missing - found > 1:
        middle = (found + missing) // 2
        if accepted(middle):
            found = middle
        else:
            missing = middle
    return missing


def resume_point(
    total: int, accepted: Callable[[int], bool], confirm_absent: Callable[[int], bool], *, start: int = 0
) -> int:
    """
    Return the first chunk a retried campaign must send.

    :func:`accepted_prefix` sees what the API shows now, but a chunk accepted moments before the earlier try
    died may become visible only later. So the boundary chunk counts as unsent only once ``confirm_absent``
    has kept missing it across the reconcile window; if it shows up, the search goes on after it.
    """
    while True:
        boundary = accepted_prefix(total, accepted, start=start)
        if boundary >= total or confirm_absent(boundary):
            return boundary
        start = boundary + 1


def confirm_absent(
    runner: ExactlyOnce,
    lookup: Callable[[], bool],
    *,
    what: str,
    unknown: Callable[[str], QikberryDeliveryUnknownError],
    looking_for: str = "",
    why: str = "",
) -> bool:
    """
    Return True when ``lookup`` keeps finding nothing for the runner's whole reconcile window.

    ``lookup`` is a custom-id lookup (is it there?), made with the same backoff as an ambiguous send; False
    comes as soon as it finds it.

    The runner's log says, before each wait, what it waits for (``what``, looked up by ``looking_for``),
    how much of the window is left and ``why``; then how it ended. A window cut short by the call's retry
    deadline proves nothing: ``unknown`` is raised then.
    """
    log = runner.log
    looking = looking_for or "its custom id"
    reason = why or "it may have been accepted just before the earlier try ended"

    def on_wait(wait: float, left: float) -> None:
        log.info(
            "Confirming %s was not accepted: looking up %s again in %.0f s, up to %.0f s of the %.0f s "
            "reconcile window left, because %s",
            what,
            looking,
            wait,
            left,
            runner.window,
            reason,
        )

    because = f"{what} may have been accepted just before the earlier try ended"

    def look() -> Finding[bool]:
        try:
            return Finding("found", True) if lookup() else ABSENT
        except QikberryError as exc:
            raise unknown(
                f"{because}, and looking its custom id up failed ({exc.message}). "
                "Look it up before sending again."
            ) from None

    deadline = runner.policy.start()
    with bounded_by(deadline):
        result = runner.look_until_settled(look, deadline, on_wait=on_wait)
    if result.kind == "found":
        log.info("Found %s: an earlier try had it accepted; it is not sent again", what)
        return False
    if result.kind == "absent":
        log.info(
            "Confirmed %s was not accepted: still absent when the %.0f s reconcile window closed",
            what,
            runner.window,
        )
        return True
    raise unknown(result.reason)
