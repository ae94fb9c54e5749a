"""
Where delivery events find their reports besides ``sms/status``: the push inbox and the sends registry.

Both live in Airflow Variables, that is in the metadata database, the one store every API server, worker
and triggerer of a deployment shares:

* **Push inbox** - the delivery-report receiver (:mod:`airflow_qikberry.plugins.delivery_reports`, in an
  API server) records each pushed report as ``qikberry_dlr.<conn>.<received ms>.<message id>.<status>``
  before it answers 200; watchers list the keys of the time buckets they have not read (a bucket is the
  first 7 of the 13 digits of the received time: about 17 minutes) and read each new report once.
  Entries older than :data:`INBOX_RETENTION` are deleted by the watchers; a report pruned before a watcher
  read it is still found in ``sms/status`` when its group is known.
* **Sends registry** - operators record each accepted send (a request's, or a campaign chunk's, group id)
  as ``qikberry_sent.<conn>.<sent unix seconds>.<group id>`` when the connection has ``delivery_events``
  on; watchers read ``sms/status`` for these groups only (catch-up), so they never read what this provider
  did not send. Entries older than :data:`REGISTRY_RETENTION` are deleted by the watchers.

Keys carry the times, so listing and pruning never read a value; a watcher reads a value only for a report
or a group it has not processed. ``<conn>`` is the connection id when it is made of letters, digits, ``_``
and ``-`` (at most 64), else a digest of it.

Example::

    key = inbox_key("qikberry_default", 1732700000123, "b34e35ad-...:1", "UNDELIV")
    parse_inbox_key("qikberry_default", key)  # InboxKey(received_ms=1732700000123, message_id=..., ...)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

__all__ = [
    "INBOX_PREFIX",
    "INBOX_RETENTION",
    "REGISTRY_PREFIX",
    "REGISTRY_RETENTION",
    "InboxKey",
    "MetadataDbVariables",
    "SdkVariables",
    "SentEntry",
    "SentKey",
    "VariableStore",
    "bucket_of",
    "conn_key",
    "inbox_key",
    "inbox_prefix",
    "parse_inbox_key",
    "parse_sent_key",
    "record_sent",
    "registry_prefix",
    "sent_key",
    "variable_store",
]

INBOX_PREFIX = "qikberry_dlr"
REGISTRY_PREFIX = "qikberry_sent"
#: Pushed reports are deleted from the inbox this long after they were received (seconds).
INBOX_RETENTION = 24 * 3600.0
#: Recorded sends are deleted from the registry this long after they were sent (seconds); a watcher's
#: lookback cannot be longer.
REGISTRY_RETENTION = 30 * 24 * 3600.0
#: Inbox buckets hold 10**6 ms of received time.
BUCKET_MS = 10**6

_PLAIN_CONN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# What a message id or a status may hold to be part of a key (no dots: they separate the key's parts).
_ID_PART = re.compile(r"^[A-Za-z0-9:_-]{1,100}$")
_STATUS_PART = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


def conn_key(conn_id: str) -> str:
    """Return the connection's part of a key: its id when plain, else ``h`` and a digest of it."""
    if _PLAIN_CONN.match(conn_id):
        return conn_id
    return "h" + hashlib.sha256(conn_id.encode()).hexdigest()[:20]


def inbox_prefix(conn_id: str) -> str:
    return f"{INBOX_PREFIX}.{conn_key(conn_id)}."


def registry_prefix(conn_id: str) -> str:
    return f"{REGISTRY_PREFIX}.{conn_key(conn_id)}."


def bucket_of(received_ms: int) -> int:
    return received_ms // BUCKET_MS


def bucket_prefix(conn_id: str, bucket: int) -> str:
    return f"{inbox_prefix(conn_id)}{bucket:07d}"


def keyable(message_id: str, status: str) -> bool:
    """Whether a report's id and status can be part of an inbox key (the receiver refuses others)."""
    return bool(_ID_PART.match(message_id)) and bool(_STATUS_PART.match(status))


def inbox_key(conn_id: str, received_ms: int, message_id: str, status: str) -> str:
    if not keyable(message_id, status):
        raise ValueError(f"a report of id {message_id!r} and status {status!r} cannot be keyed")
    return f"{inbox_prefix(conn_id)}{received_ms:013d}.{message_id}.{status}"


class InboxKey(NamedTuple):
    """An inbox key of a connection, read into its parts."""

    key: str
    received_ms: int
    message_id: str
    status: str

    @property
    def bucket(self) -> int:
        return bucket_of(self.received_ms)


def parse_inbox_key(conn_id: str, key: str) -> InboxKey | None:
    """
    Return the parts of an inbox key of this connection.

    None for any other key (a listing by prefix may return keys of another connection whose id starts
    the same, or keys a person added).
    """
    prefix = inbox_prefix(conn_id)
    if not key.startswith(prefix):
        return None
    stamp, _, rest = key[len(prefix) :].partition(".")
    message_id, _, status = rest.rpartition(".")
    if len(stamp) != 13 or not stamp.isdigit() or not keyable(message_id, status):
        return None
    return InboxKey(key, int(stamp), message_id, status)


def sent_key(conn_id: str, sent_at: float, group_id: str) -> str:
    if not _ID_PART.match(group_id):
        raise ValueError(f"group id {group_id!r} cannot be keyed")
    return f"{registry_prefix(conn_id)}{int(sent_at):010d}.{group_id}"


class SentKey(NamedTuple):
    """A registry key of a group the provider sent, read into its parts."""

    key: str
    sent_at: int
    group_id: str


def parse_sent_key(conn_id: str, key: str) -> SentKey | None:
    prefix = registry_prefix(conn_id)
    if not key.startswith(prefix):
        return None
    stamp, _, group_id = key[len(prefix) :].partition(".")
    if len(stamp) != 10 or not stamp.isdigit() or not _ID_PART.match(group_id):
        return None
    return SentKey(key, int(stamp), group_id)


@dataclass(frozen=True)
class SentEntry:
    """
    What the registry says of a group the provider sent.

    The positions accepted (``"1-250"``; None when not known, e.g. a campaign chunk), the campaign name,
    sender and service, and the task that sent it.
    """

    positions: str | None = None
    campaign: str | None = None
    sender: str | None = None
    service: str | None = None
    task: str | None = None

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in self.__dict__.items() if v is not None}, sort_keys=True)

    @classmethod
    def from_json(cls, text: Any) -> SentEntry:
        try:
            data = json.loads(text) if isinstance(text, (str, bytes)) else dict(text or {})
        except (TypeError, ValueError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        return cls(**{k: (None if data.get(k) is None else str(data[k])) for k in cls.__dataclass_fields__})


# -- Variables, as each part of a deployment reaches them


class VariableStore(Protocol):
    """The few Variable operations the inbox and the registry need, awaited (a triggerer's event loop)."""

    async def keys(self, prefix: str) -> list[str]: ...

    async def get(self, key: str) -> str | None: ...

    async def delete(self, key: str) -> None: ...


class SdkVariables:
    """
    Variables through the Task SDK, as a triggerer (Airflow 3) reaches the metadata database.

    That is, through the Execution API. Values are read from the metadata database only, never from a
    secrets backend (a report is never there, and asking one for each report would cost a call to it
    each time).
    """

    async def keys(self, prefix: str) -> list[str]:
        from airflow.providers.common.compat.sdk import Variable

        return await asyncio.to_thread(lambda: [str(k) for k in Variable.keys(prefix=prefix)])

    async def get(self, key: str) -> str | None:
        from airflow_qikberry.version_compat import AIRFLOW_V_3_0_PLUS

        if not AIRFLOW_V_3_0_PLUS:  # no Execution API: variable_store() never picks this store there
            raise RuntimeError("SdkVariables needs an Airflow 3 triggerer or task")
        if AIRFLOW_V_3_0_PLUS:
            from airflow.sdk.execution_time.secrets.execution_api import ExecutionAPISecretsBackend

        return await ExecutionAPISecretsBackend().aget_variable(key)

    async def delete(self, key: str) -> None:
        from airflow.providers.common.compat.sdk import Variable

        def delete() -> None:
            try:
                Variable.delete(key)
            except Exception as exc:
                if "not found" not in str(exc).lower() and "404" not in str(exc):
                    raise

        await asyncio.to_thread(delete)


class MetadataDbVariables:
    """
    Variables read and written in the metadata database directly.

    For where the code runs with database access (an API server, Airflow 2's triggerer, an in-process
    ``dag.test()``).
    """

    async def keys(self, prefix: str) -> list[str]:
        return await asyncio.to_thread(self._keys, prefix)

    @staticmethod
    def _keys(prefix: str) -> list[str]:
        from airflow.models.variable import Variable
        from airflow.utils.session import create_session

        with create_session() as session:
            rows = session.query(Variable.key).filter(Variable.key.startswith(prefix, autoescape=True))
            return sorted(str(row[0]) for row in rows)

    async def get(self, key: str) -> str | None:
        return await asyncio.to_thread(self._get, key)

    @staticmethod
    def _get(key: str) -> str | None:
        from airflow.models.variable import Variable
        from airflow.utils.session import create_session

        with create_session() as session:
            row = session.query(Variable).filter(Variable.key == key).one_or_none()
            return None if row is None else row.val

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete, key)

    @staticmethod
    def _delete(key: str) -> None:
        from airflow.models.variable import Variable
        from airflow.utils.session import create_session

        with create_session() as session:
            session.query(Variable).filter(Variable.key == key).delete()

    def put(self, key: str, value: str, description: str) -> bool:
        """Insert a Variable (blocking); False when the key exists already (an identical report)."""
        from airflow.models.variable import Variable
        from airflow.utils.session import create_session
        from sqlalchemy.exc import IntegrityError

        try:
            with create_session() as session:
                session.add(Variable(key=key, val=value, description=description))
        except IntegrityError:
            return False
        return True


def in_triggerer() -> bool:
    """Whether this process talks to Airflow through the Execution API (an Airflow 3 triggerer or task)."""
    try:
        from airflow.sdk.execution_time import task_runner
    except ImportError:
        return False
    return getattr(task_runner, "SUPERVISOR_COMMS", None) is not None


def variable_store() -> VariableStore:
    """
    Return the Variables of this process.

    The Execution API in an Airflow 3 triggerer, else the database.
    """
    return SdkVariables() if in_triggerer() else MetadataDbVariables()


# -- recording sends (workers)


def record_sent(
    conn_id: str,
    groups: Mapping[str, Sequence[int] | None],
    *,
    campaign: str | None = None,
    sender: str | None = None,
    service: str | None = None,
    task: str | None = None,
    sent_at: float | None = None,
    log: Any = None,
) -> int:
    """
    Record accepted sends in the registry, so delivery-event watchers read back their reports.

    ``groups`` maps each group id to the positions accepted in it (None when unknown). Called by the send
    and campaign operators when the connection has ``delivery_events`` on; call it after your own
    ``QikberryHook`` sends to have their reports found without a push. Never fails the send: a registry
    that cannot be written is logged (the reports then come by push only). Returns how many were recorded.

    Example::

        sent = hook.send_sms(numbers, text)
        record_sent("qikberry_default", positions_by_group([m.message_id for m in sent]))
    """
    from airflow.providers.common.compat.sdk import Variable

    from airflow_qikberry.delivery.memory import PositionSet

    now = time.time() if sent_at is None else sent_at
    recorded = 0
    for group_id, positions in groups.items():
        entry = SentEntry(
            positions=None if positions is None else str(PositionSet.of(positions)) or None,
            campaign=campaign,
            sender=sender,
            service=service,
            task=task,
        )
        try:
            Variable.set(
                sent_key(conn_id, now, group_id),
                entry.to_json(),
                description="Qikberry: a send recorded for delivery-event assets (docs/delivery-events.md); "
                "deleted after 30 days.",
            )
        except Exception as exc:
            if log is not None:
                log.warning(
                    "Could not record group %s for delivery events (its reports will come by push only): %s",
                    group_id,
                    exc,
                )
            continue
        recorded += 1
    return recorded


def positions_by_group(message_ids: Sequence[str]) -> dict[str, list[int] | None]:
    """
    Return the accepted positions of each group of ``<group>:<n>`` message ids.

    Ids of another shape have no group to record and are left out.
    """
    from airflow_qikberry.delivery.inputs import split_id

    out: dict[str, list[int] | None] = {}
    for message_id in message_ids:
        group_id, pos = split_id(message_id)
        if group_id is None or pos is None:
            continue
        positions = out.setdefault(group_id, [])
        if positions is not None:
            positions.append(pos)
    return out


def task_label(context: Mapping[str, Any] | None) -> str | None:
    """``<dag_id>.<task_id>`` of the running task, for the registry (None outside a task)."""
    ti = None if context is None else (context.get("ti") or context.get("task_instance"))
    return None if ti is None else f"{ti.dag_id}.{ti.task_id}"
