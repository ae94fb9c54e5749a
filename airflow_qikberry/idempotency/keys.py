"""
Custom ids and task identity.

The ids a retry of the same Airflow task derives again (so it can find what an earlier try sent), fingerprints
of a send that do not depend on the order of its recipients, and the per-row ids of a campaign.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "CAMPAIGN_ID_PREFIX",
    "TaskIdentity",
    "batch_identity",
    "campaign_custom_id",
    "campaign_key",
    "canonical_fields",
    "derive_custom_id",
    "fingerprint",
    "is_task_retry",
    "sample_positions",
    "send_fingerprint",
    "task_identity",
]


TaskIdentity = tuple[str, str, str, str, str]


_occurrences: Counter[tuple[str, ...]] = Counter()


_occurrences_lock = threading.Lock()


_get_current_context: Callable[[], Any] | None = None


_LOOK_UP: Any = object()


def task_identity() -> TaskIdentity | None:
    """(dag_id, task_id, run_id, map_index, try_number) of the running task, or None outside a task."""
    global _get_current_context
    if _get_current_context is None:
        # Resolved once: the compat module's lazy lookup costs more than the call itself.
        from airflow.providers.common.compat.sdk import get_current_context

        _get_current_context = get_current_context
    try:
        context = _get_current_context()
    except Exception:
        return None
    ti = context.get("ti") or context.get("task_instance")
    if ti is None:
        return None
    return (
        str(ti.dag_id),
        str(ti.task_id),
        str(ti.run_id),
        str(getattr(ti, "map_index", -1)),
        str(getattr(ti, "try_number", 1)),
    )


def is_task_retry(identity: TaskIdentity | None) -> bool:
    return identity is not None and identity[4].isdigit() and int(identity[4]) > 1


def derive_custom_id(
    fingerprint: str, identity: TaskIdentity | None = _LOOK_UP, *, fresh: bool = False
) -> str:
    """
    Return a custom id that a retry of the same Airflow task reproduces, so the retry can find earlier sends.

    Inside a task: sha256 of (dag_id, task_id, run_id, map_index, n, fingerprint), where ``n`` counts
    the sends with the same fingerprint made so far in this try. The try number is left out, so try 2
    derives exactly the ids try 1 used, in the same order; with ``fresh`` (a deliberate re-send) it is put
    in, so a cleared task sends under new ids. Outside a task nothing is stable: a random id, reused by the
    hook's own retries of that call.
    """
    ident = task_identity() if identity is _LOOK_UP else identity
    if ident is None:  # 96 random bits, as the 24 hex digits of a hash of a random basis would be
        return "af-" + os.urandom(12).hex()
    dag_id, task_id, run_id, map_index, try_number = ident
    key = (dag_id, task_id, run_id, map_index, try_number, fingerprint)
    with _occurrences_lock:
        _occurrences[key] += 1
        nth = _occurrences[key]
    parts = [dag_id, task_id, run_id, map_index, str(nth), fingerprint]
    if fresh:
        parts.append(f"try={try_number}")
    basis = "|".join(parts)
    return "af-" + hashlib.sha256(basis.encode()).hexdigest()[:24]


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def canonical_fields(payload: Mapping[str, Any]) -> str:
    """
    Return a send's parameters in one form whatever order they came in.

    Keys sorted, and the tags (a set of opt-out tags, which a caller may pass as a Python set) sorted too.
    """
    return repr(sorted((key, sorted(val) if key == "tags" else val) for key, val in payload.items()))


def send_fingerprint(numbers: Iterable[str], payload: Mapping[str, Any]) -> str:
    """
    Return the identity of a ``sms/send``.

    Its numbers as a set (their order does not matter: a Python set iterates in another order in every
    process, so in every try of a task) and its parameters.
    """
    return fingerprint("send_sms", sorted(numbers), canonical_fields(payload))


def batch_identity(nodes: Sequence[Mapping[str, Any]], root: Mapping[str, Any]) -> tuple[str, list[int]]:
    """
    Return the identity of a ``sms/send/json`` batch and each node's rank in it.

    A batch is the multiset of its nodes (each node's number, text and overrides) under its root: the same
    nodes in another order are the same batch. The rank of a node is its place when the nodes are sorted by
    content, so a derived node id ``<base>-<rank + 1>`` follows the node, not its position. Identical nodes
    (the same number and text twice) are interchangeable and get consecutive ranks.
    """
    keys = [canonical_fields(node) for node in nodes]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    ranks = [0] * len(keys)
    for rank, index in enumerate(order):
        ranks[index] = rank
    return fingerprint("send_batch", [keys[i] for i in order], canonical_fields(root)), ranks


def sample_positions(size: int) -> list[int]:
    """
    Positions of a batch looked up to find it when its first node may be missing: first, last, middle.

    A node the API refused or left out is absent while the rest of its request is there, so one node
    proves nothing by its absence; all three absent while others were accepted would take three nodes
    refused at exactly these places (docs/guarantees.md).
    """
    return list(dict.fromkeys(p for p in (0, size - 1, size // 2) if 0 <= p < size))


CAMPAIGN_ID_PREFIX = "qc-"


def campaign_key(identity: TaskIdentity | None, name: str, *, resend: bool = False, content: str = "") -> str:
    """
    Return the key in a campaign's custom ids ``qc-<key>-<chunk>-<position>`` (16 hex characters).

    Inside a task: a hash of (dag_id, task_id, run_id, map_index, campaign name) without the try number, so
    a retried task derives the very ids its earlier tries sent and can find how far they got; with
    ``resend`` the try number is put in, so a cleared task sends afresh under new ids. Outside a task there
    is no stable identity but the campaign itself: the name and ``content`` (a digest of its rows).

    Example::

        key = campaign_key(task_identity(), "diwali-2026")
        campaign_custom_id(key, 0, 0)  # 'qc-3f0c...-0-0': chunk 0, first row
    """
    if identity is None:
        parts = ["campaign", name, content]
    else:
        dag_id, task_id, run_id, map_index, try_number = identity
        parts = [dag_id, task_id, run_id, map_index, name]
        if resend:
            parts.append(f"try={try_number}")
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def campaign_custom_id(key: str, chunk: int, position: int) -> str:
    """Return the custom id of the row at ``position`` (0-based) of chunk ``chunk`` of campaign ``key``."""
    return f"{CAMPAIGN_ID_PREFIX}{key}-{chunk}-{position}"
