"""QikberryHook: the public sync hook. Thin: it validates through :mod:`airflow_qikberry.protocol`, speaks
HTTP through :mod:`airflow_qikberry.transport` and sends exactly once through
:mod:`airflow_qikberry.idempotency`.

DAG files import this module at every parse, so it imports only what defining the class needs; the modules
that do the work are imported on first use.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from airflow.providers.common.compat.sdk import BaseHook

from airflow_qikberry.exceptions import QikberryValidationError
from airflow_qikberry.get_provider_info import CONN_TYPE

if TYPE_CHECKING:
    import requests

    from airflow_qikberry.connection import ConnectionSettings
    from airflow_qikberry.idempotency import ExactlyOnce, Finding, ReuseCheck
    from airflow_qikberry.lookups import Lookup
    from airflow_qikberry.models import Balance, BatchResult, MessageStatus, SentMessage, StatusPage
    from airflow_qikberry.protocol import ApiResponse, BatchNode, EncodingChoice
    from airflow_qikberry.ratelimit import Budget
    from airflow_qikberry.transport.sync import RequestsTransport

__all__ = ["QikberryHook"]

T = TypeVar("T")

_REEXPORTED = {
    "ConnectionSettings": "airflow_qikberry.connection",
    "derive_custom_id": "airflow_qikberry.idempotency",
    "redact": "airflow_qikberry.protocol",
}


def __getattr__(name: str) -> Any:
    # Names this module has always offered, now at home elsewhere; resolved lazily to keep the import cheap.
    if name in _REEXPORTED:
        import importlib

        return getattr(importlib.import_module(_REEXPORTED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class QikberryHook(BaseHook):
    """Talk to the Qikberry SMS API (MOBtexting v2): send, look up delivery status, check balance.

    The connection (conn type ``qikberry``) holds the access token in its password, the base URL in its
    host and defaults (sender, service, DLT entity id, default region, ...) in its extras. It is read
    lazily, on the first call, so DAG files parse without it.

    Sends never duplicate a message: every send carries a custom id (yours, or one derived from the task),
    is repeated only when it provably was not processed, and an unknown outcome is settled by looking the
    custom id up for the connection's ``reconcile_window`` (see docs/hook.md). A retried task returns what
    an earlier try sent instead of sending again; pass ``resend=True`` to send again on purpose.

    Example::

        from airflow_qikberry.hooks.qikberry import QikberryHook

        hook = QikberryHook(qikberry_conn_id="qikberry_default")
        sent = hook.send_sms(["919876543210", "+44 7700 900123"], "Nightly load finished", sender="QIKBRY")
        for status in hook.get_status(message_id=sent[0].message_id):
            print(status.status, status.is_final)
        print(hook.get_balance(service="T")[0].credits)

    :param qikberry_conn_id: the Airflow connection to use.
    :param timeout: read timeout in seconds for every call (overrides the connection's ``timeout`` extra).
    :param max_attempts: attempts per call, first try included.
    :param retry_deadline: seconds that bound a whole call: attempts, waits and lookups included (default:
        the connection's ``retry_deadline`` extra, else derived: 120, or timeout + reconcile window + 10 when
        that is more). A value too short to settle an unknown outcome and send again is refused when the
        connection is read (see docs/hook.md, "Settings that must fit together").
    :param max_retry_after: cap, in seconds, on how long a server's ``Retry-After`` may make us wait.
    :param reconcile_delay: seconds before the first lookup of an unknown outcome (then 2, 4, 8, 8... s;
        default 1, or the window if that is shorter). Given explicitly, at most the reconcile window.
    :param reconcile_window: seconds an unknown outcome is looked for (default: the connection's
        ``reconcile_window`` extra, else 30).
    :param clock_skew: seconds of clock difference allowed when deciding that rows found for a custom id
        were submitted before this call began (a reused custom id).
    """

    conn_name_attr = "qikberry_conn_id"
    default_conn_name = "qikberry_default"
    conn_type = CONN_TYPE
    hook_name = "Qikberry"

    def __init__(
        self,
        qikberry_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        max_attempts: int = 5,
        retry_deadline: float | None = None,
        max_retry_after: float = 60.0,
        reconcile_delay: float | None = None,
        reconcile_window: float | None = None,
        clock_skew: float = 120.0,
        **kwargs: Any,
    ) -> None:
        from airflow_qikberry.connection import DEFAULT_RETRY_DEADLINE
        from airflow_qikberry.transport.retry import RetryPolicy

        super().__init__(**kwargs)
        self.qikberry_conn_id = qikberry_conn_id
        self.timeout_override = timeout
        if reconcile_delay is not None and not reconcile_delay >= 0:
            raise QikberryValidationError(
                f"reconcile_delay must be 0 or more seconds, got {reconcile_delay!r}.",
                field="reconcile_delay",
            )
        # Only a delay the caller chose must fit the window; the default one is cut to it (one lookup when
        # a very short window closes).
        self._reconcile_delay_given = reconcile_delay is not None
        self.reconcile_delay = 1.0 if reconcile_delay is None else reconcile_delay
        if reconcile_window is not None and reconcile_window <= 0:
            # No lookup at all would turn every unknown outcome into a resend: the guarantee would be gone.
            raise QikberryValidationError(
                f"reconcile_window must be a positive number of seconds, got {reconcile_window!r}.",
                field="reconcile_window",
            )
        self.reconcile_window_override = reconcile_window
        self.retry_deadline_override = _positive_or_none(retry_deadline, "retry_deadline")
        self.clock_skew = clock_skew
        self._extras_set: frozenset[str] = frozenset()
        # The deadline is fitted to the connection's window and timeout when the connection is read.
        self.policy = RetryPolicy(
            max_attempts=max_attempts,
            deadline=retry_deadline or DEFAULT_RETRY_DEADLINE,
            max_retry_after=max_retry_after,
            log=self.log,
        )

    @property
    def max_attempts(self) -> int:
        return self.policy.max_attempts

    @max_attempts.setter
    def max_attempts(self, value: int) -> None:
        self.policy.max_attempts = max(1, value)

    @property
    def retry_deadline(self) -> float:
        """The deadline of each call, fitted to the connection (reading it, like :attr:`reconcile_window`)."""
        _ = self.settings
        return self.policy.deadline

    @retry_deadline.setter
    def retry_deadline(self, value: float) -> None:
        self.retry_deadline_override = _positive_or_none(value, "retry_deadline")
        if "settings" in self.__dict__:
            self._fit_to(self.settings)
        else:
            self.policy.deadline = value

    @property
    def max_retry_after(self) -> float:
        return self.policy.max_retry_after

    @max_retry_after.setter
    def max_retry_after(self, value: float) -> None:
        self.policy.max_retry_after = value

    @property
    def _sleep(self) -> Callable[[float], None]:
        """How the hook waits (retries, lookups); tests replace it to record waits instead."""
        return self.policy.sleep

    @_sleep.setter
    def _sleep(self, sleep: Callable[[float], None]) -> None:
        self.policy.sleep = sleep

    # -- connection and transport

    @cached_property
    def settings(self) -> ConnectionSettings:
        """The parsed connection; reading it also registers the token with Airflow's secrets masker."""
        from airflow.providers.common.compat.sdk import mask_secret

        from airflow_qikberry.connection import ConnectionSettings

        conn = self.get_connection(self.qikberry_conn_id)
        if conn.password:
            mask_secret(conn.password)
        settings = ConnectionSettings.from_connection(conn)
        extra = conn.extra_dejson or {}
        # Which extras the connection sets (for error messages that say where a value came from).
        self._extras_set = frozenset(
            name
            for name in ("reconcile_window", "retry_deadline", "timeout")
            if extra.get(name, extra.get(f"extra__{CONN_TYPE}__{name}")) not in (None, "")
        )
        self._fit_to(settings)
        return settings

    def _fit_to(self, s: ConnectionSettings) -> None:
        """Check this hook's arguments together with the connection's extras, and set the retry deadline.

        A send must be able to settle an unknown outcome within its deadline: refused here, before any
        request, when an explicit ``retry_deadline`` is too short for the reconcile window and timeout in
        force; derived from them when none is given.
        """
        from airflow_qikberry.connection import fitted_retry_deadline

        def source(argument: object, name: str) -> str:
            if argument is not None:
                return f"the hook's {name} argument"
            return f"the connection's {name} extra" if name in self._extras_set else f"the default {name}"

        window = self.reconcile_window_override or s.reconcile_window
        window_from = source(self.reconcile_window_override, "reconcile_window")
        if self._reconcile_delay_given and self.reconcile_delay > window:
            raise QikberryValidationError(
                f"reconcile_delay ({self.reconcile_delay:g} s) is longer than {window_from} ({window:g} s): "
                "the first lookup of an unknown outcome would come after the window has closed. Use a "
                "reconcile_delay of at most the window.",
                field="reconcile_delay",
            )
        deadline = self.retry_deadline_override
        self.policy.deadline = fitted_retry_deadline(
            deadline if deadline is not None else s.retry_deadline,
            window=window,
            timeout=self.timeout_override or s.timeout,
            deadline_from=source(deadline, "retry_deadline"),
            window_from=window_from,
            timeout_from=source(self.timeout_override, "timeout"),
        )

    @cached_property
    def transport(self) -> RequestsTransport:
        """Every call's transport, within the token's process-wide GET budget."""
        from airflow_qikberry.transport.sync import RequestsTransport

        return RequestsTransport(self.settings, policy=self.policy, timeout=self.timeout_override)

    @cached_property
    def _polls(self) -> RequestsTransport:
        """The transport of delivery polls (:meth:`poll_page`, :meth:`poll_message`): this one's session and
        retry policy, within the poll budget as well; a 429 holds the poll budget of the whole process."""
        return self.transport.for_polls()

    @property
    def _bucket(self) -> Budget:
        """The process-wide GET budget of this connection's (base URL, token)."""
        return self.transport.bucket

    @property
    def _timeouts(self) -> tuple[float, float]:
        return self.transport.timeouts

    @property
    def session(self) -> requests.Session:
        """The pooled keep-alive session (one per hook)."""
        return self.transport.session

    def get_conn(self) -> requests.Session:
        return self.session

    def close(self) -> None:
        self.__dict__.pop("_polls", None)  # it shares the transport's session, closed here
        if "transport" in self.__dict__:
            self.transport.close()

    def __enter__(self) -> QikberryHook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def reconcile_window(self) -> float:
        if self.reconcile_window_override is not None:
            return self.reconcile_window_override
        return self.settings.reconcile_window

    def _exactly_once(self) -> ExactlyOnce:
        from airflow_qikberry.idempotency import ExactlyOnce

        return ExactlyOnce(
            self.policy, window=self.reconcile_window, log=self.log, first_delay=self.reconcile_delay
        )

    def _reuse_check(self, check: bool) -> ReuseCheck | None:
        from airflow_qikberry.idempotency import ReuseCheck

        return ReuseCheck.starting_now(self.clock_skew, self.settings.api_timezone) if check else None

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> ApiResponse:
        return self.transport.get(path, params)

    def _run(self, lookup: Lookup[T], transport: RequestsTransport | None = None) -> T:
        """Carry out a lookup of :mod:`airflow_qikberry.lookups` over ``transport`` (default: the hook's)."""
        from airflow_qikberry.sansio import drive

        via = transport or self.transport
        return drive(lookup, lambda request: via.get(*request))

    def _status_rows(self, params: Mapping[str, str]) -> Iterator[MessageStatus]:
        """Every row of a status query, following the API's pages lazily (any query may be paged)."""
        from airflow_qikberry.lookups import StatusQuery

        query = StatusQuery(params)
        while query.request is not None:
            yield from query.read(self._get(*query.request)).rows

    # -- sending

    def send_sms(
        self,
        to: str | Iterable[str],
        message: str,
        *,
        sender: str | None = None,
        service: str | None = None,
        template_id: str | None = None,
        entity_id: str | None = None,
        schedule_at: datetime | str | None = None,
        encoding: EncodingChoice = "auto",
        flash: bool = False,
        custom_id: str | None = None,
        webhook_id: str | None = None,
        max_units: int | None = None,
        tags: Sequence[str] | str | None = None,
        resend: bool = False,
    ) -> list[SentMessage]:
        """Send one text to one or more numbers (``sms/send``); returns one :class:`SentMessage` per number.

        Every argument is validated before any request. Numbers may be written in any common format; numbers
        without a country code need ``default_region`` on the connection. ``custom_id`` is an idempotency
        key: one id, one send (a reused id is reported, not returned as this send's result). ``resend=True``
        sends again on a retried task instead of returning what an earlier try sent.
        """
        from airflow_qikberry import idempotency as ido
        from airflow_qikberry import phone
        from airflow_qikberry import protocol as p
        from airflow_qikberry import validation as v
        from airflow_qikberry.exceptions import QikberryDeliveryUnknownError
        from airflow_qikberry.models import SentMessage

        s = self.settings
        resend = v.validate_flag(resend, field="resend")
        numbers = phone.normalize_numbers(to, default_region=s.default_region)
        p.check_request_size(len(numbers), "to")
        payload = p.build_common(
            s.send_defaults,
            message=message,
            sender=sender,
            service=service,
            template_id=template_id,
            entity_id=entity_id,
            schedule_at=schedule_at,
            encoding=encoding,
            flash=flash,
            webhook_id=webhook_id,
            max_units=max_units,
            tags=tags,
        )
        identity = ido.task_identity()
        # The identity of the send is its set of numbers: a set given as `to` iterates in another order in
        # every process, so in every try of a task (docs/guarantees.md).
        cid = v.validate_custom_id(custom_id) or ido.derive_custom_id(
            ido.send_fingerprint(numbers, payload), identity, fresh=resend
        )
        payload["to"] = ",".join(numbers)
        payload["custom"] = cid
        self.log.info(
            "Sending SMS to %d number(s) [%s] via service %s, custom id %s",
            len(numbers),
            ", ".join(phone.mask_number(n) for n in numbers[:5]) + (", ..." if len(numbers) > 5 else ""),
            payload["service"],
            cid,
        )

        def parse(response: ApiResponse) -> list[SentMessage]:
            sent = [SentMessage.from_api(row) for row in p.rows_of(response, what="sms/send")]
            ido.accounted_for(sent, numbers, "request")
            return sent

        def lookup(check_reuse: bool) -> Finding[list[SentMessage]]:
            rows = list(self._status_rows({"cid": cid}))
            return ido.match_send_rows(rows, cid, numbers, self._reuse_check(check_reuse))

        send = ido.Send(
            what=f"POST {p.Paths.SEND}",
            post=lambda: self.transport.request("POST", p.Paths.SEND, json=payload),
            parse=parse,
            lookup=lookup,
            unknown=lambda msg: QikberryDeliveryUnknownError(msg, numbers=numbers, custom_id=cid),
        )
        return self._exactly_once().run(send, task_retry=ido.is_task_retry(identity) and not resend)

    def send_batch(
        self,
        nodes: Sequence[Mapping[str, Any] | BatchNode],
        *,
        name: str | None = None,
        message: str | None = None,
        sender: str | None = None,
        service: str | None = None,
        template_id: str | None = None,
        entity_id: str | None = None,
        schedule_at: datetime | str | None = None,
        encoding: EncodingChoice = "auto",
        flash: bool = False,
        webhook_id: str | None = None,
        max_units: int | None = None,
        tags: Sequence[str] | str | None = None,
        resend: bool = False,
        check_first: bool | None = None,
    ) -> BatchResult:
        """Send per-recipient texts in one request (``sms/send/json``).

        Each node is a mapping with ``to`` (one number) and optionally any send parameter the API lets a
        node override: ``message``, ``sender``, ``template_id``, ``entity_id``, ``encoding``, ``flash``,
        ``max_units``, ``tags`` and ``custom_id``. The keyword arguments are the defaults for every node
        (``root``); ``service``, ``schedule_at`` and ``webhook_id`` apply to the whole batch only. Each node
        carries its own encoding: a Hindi node under an English root goes out as unicode. With ``name`` the
        API groups the batch as a campaign and returns its ``group_id``.

        A node may also be a :class:`~airflow_qikberry.protocol.BatchNode`, the validated form that
        ``protocol`` builds (``protocol.validated_batch_node``): it is sent as it is, not validated again, for
        callers that validated their nodes once already (the campaign engine). Mappings are always validated.

        ``check_first`` decides whether the batch is looked up (by its first, last or middle node's custom id,
        then its group) before it is posted: ``None`` (default) on a task retry only; ``False`` never, for a
        caller that has already established that the batch was not sent (a resumed campaign); ``True`` always.

        Without ``custom_id`` a node gets ``<id>-<n>``, ``<id>`` derived from the batch's nodes as a multiset
        and ``n`` the node's rank among them by content: the same nodes in another order are the same batch.
        An answer that leaves nodes out (numbers that opted out) raises ``QikberryPartialSendError`` once the
        missing ones are still absent at the end of the reconcile window, with the accepted rows.

        Example::

            result = hook.send_batch(
                [{"to": "919876543210", "message": "Hi Asha"}, {"to": "919876543211", "message": "नमस्ते"}],
                name="welcome-2026-11",
                sender="QIKBRY",
            )
            result.group_id, result.accepted
        """
        from airflow_qikberry import idempotency as ido
        from airflow_qikberry import protocol as p
        from airflow_qikberry import validation as v
        from airflow_qikberry.exceptions import QikberryDeliveryUnknownError
        from airflow_qikberry.models import BatchResult, SentMessage

        s = self.settings
        resend = v.validate_flag(resend, field="resend")
        if check_first is not None:
            check_first = v.validate_flag(check_first, field="check_first")
        if not nodes:
            raise QikberryValidationError("nodes is empty: give at least one recipient.", field="nodes")
        p.check_request_size(len(nodes), "nodes")
        root = p.build_common(
            s.send_defaults,
            message=message,
            sender=sender,
            service=service,
            template_id=template_id,
            entity_id=entity_id,
            schedule_at=schedule_at,
            encoding=encoding,
            flash=flash,
            webhook_id=webhook_id,
            max_units=max_units,
            tags=tags,
            require_message=False,
        )
        if name is not None:
            if isinstance(name, str) and not name.strip():
                raise QikberryValidationError("name must not be blank.", field="name")
            root["name"] = v.validate_text_id(name, field="name", allow_int=True)
        built = p.build_batch_nodes(nodes, root, s.send_defaults, encoding=encoding, max_units=max_units)
        numbers = [b.number for b in built]
        identity = ido.task_identity()
        if all(b.given_custom_id for b in built):
            cids = [str(b.given_custom_id) for b in built]
        else:  # derived ids only where the caller gave none; they follow the node, not its position
            batch, ranks = ido.batch_identity([b.payload for b in built], root)
            base = ido.derive_custom_id(batch, identity, fresh=resend)
            cids = [b.given_custom_id or f"{base}-{rank + 1}" for b, rank in zip(built, ranks, strict=True)]
        api_nodes = [{**b.payload, "custom": cid} for b, cid in zip(built, cids, strict=True)]
        self.log.info(
            "Sending a batch of %d message(s) via service %s%s",
            len(api_nodes),
            root["service"],
            f" as campaign {name!r}" if name else "",
        )

        # What a 2xx answer that left nodes out did say: its group and the rows it gave, by node index.
        answered: dict[int, SentMessage] = {}
        answered_group: list[str] = []

        def parse(response: ApiResponse) -> BatchResult:
            sent = tuple(SentMessage.from_api(row) for row in p.rows_of(response, what="sms/send/json"))
            group = response.body.get("group_id") or (sent[0].group_id if sent else None)
            try:
                ido.accounted_for(sent, numbers, "batch")
            except ido.Unaccounted:
                rows = _answer_rows(sent, cids, numbers)
                if rows is not None and group:
                    answered.update(rows)
                    answered_group.append(str(group))
                raise
            return BatchResult(group_id=str(group) if group else None, messages=sent)

        def rows_of_node(index: int) -> list[MessageStatus]:
            return [r for r in self._status_rows({"cid": cids[index]}) if r.custom_id == cids[index]]

        def lookup_missing(check_reuse: bool) -> Finding[BatchResult]:
            # The answer's own rows are accepted messages; only the nodes it left out are looked up.
            found: dict[int, SentMessage] = dict(answered)
            missing = [i for i in range(len(cids)) if i not in found]
            if len(missing) > len(cids) // 100 + 1:
                # Many left out: the group's pages (100 rows each) cost fewer lookups than one per node.
                index_of = {cids[i]: i for i in missing}
                in_group: dict[int, list[MessageStatus]] = {}
                for row in self._status_rows({"group_id": answered_group[0]}):
                    if row.custom_id in index_of:
                        in_group.setdefault(index_of[row.custom_id], []).append(row)
                looked = [(i, in_group.get(i, [])) for i in missing]
            else:
                looked = [(i, rows_of_node(i)) for i in missing]
            seen: list[MessageStatus] = []
            for index, rows in looked:
                if len(rows) > 1 or any(p.canonical_number(r.mobile) != numbers[index] for r in rows):
                    return ido.Finding(
                        "unknown", reason=f"the rows of custom id {cids[index]!r} do not match the node sent"
                    )
                if rows:
                    seen.append(rows[0])
                    found[index] = SentMessage.from_status(rows[0])
            if (reused := ido.reused(seen, self._reuse_check(check_reuse))) is not None:
                return reused
            result = BatchResult(answered_group[0], tuple(found[i] for i in sorted(found)))
            if len(found) == len(cids):
                return ido.Finding("found", result)
            missing = [i for i in range(len(cids)) if i not in found]
            return ido.Finding(
                "partial",
                result,
                reason=f"the batch's answer and lookups show {len(found)} of {len(cids)} nodes",
                numbers=tuple(numbers[i] for i in missing),
                keys=tuple(cids[i] for i in missing),
            )

        def lookup(check_reuse: bool) -> Finding[BatchResult]:
            if answered_group:
                return lookup_missing(check_reuse)
            # Find the batch's group by a node that is there: the first node may be one the API refused or
            # left out, so its absence alone does not prove the batch absent.
            anchor = next(
                (rows[0] for rows in map(rows_of_node, ido.sample_positions(len(cids))) if rows), None
            )
            if anchor is None:
                return ido.ABSENT
            group = anchor.group_id
            if group is None:
                return ido.Finding(
                    "unknown",
                    reason=f"rows for custom id {anchor.custom_id!r} exist but carry no group id to find the "
                    "batch by",
                )
            rows = list(self._status_rows({"group_id": group}))
            verdict = ido.match_batch_rows(rows, cids, numbers, self._reuse_check(check_reuse))
            found = BatchResult(group_id=group, messages=tuple(verdict.result or ()))
            if verdict.kind == "found":
                return ido.Finding("found", found)
            return ido.Finding(
                verdict.kind,
                found if verdict.kind == "partial" else None,
                reason=verdict.reason,
                numbers=verdict.numbers,
                keys=verdict.keys,
            )

        send = ido.Send(
            what=f"POST {p.Paths.SEND_JSON}",
            post=lambda: self.transport.request(
                "POST", p.Paths.SEND_JSON, json={"root": root, "nodes": api_nodes}
            ),
            parse=parse,
            lookup=lookup,
            unknown=lambda msg: QikberryDeliveryUnknownError(msg, numbers=numbers, custom_id=cids[0]),
        )
        look_first = (ido.is_task_retry(identity) and not resend) if check_first is None else check_first
        return self._exactly_once().run(send, task_retry=look_first)

    def upload_bulk(
        self,
        file: str | os.PathLike[str] | IO[bytes],
        message: str,
        *,
        column: str | None = None,
        sender: str | None = None,
        service: str | None = None,
        template_id: str | None = None,
        entity_id: str | None = None,
        schedule_at: datetime | str | None = None,
        encoding: EncodingChoice = "auto",
        flash: bool = False,
        custom_id: str | None = None,
        webhook_id: str | None = None,
        max_units: int | None = None,
        filename: str | None = None,
        resend: bool = False,
    ) -> int:
        """Send one text to every number in a TXT/CSV file (``sms/bulk``); returns the accepted count.

        The file (a path, or a seekable binary file object) is streamed in blocks with a
        ``Content-Length``, never read into memory whole. ``column`` names the CSV column holding the
        numbers. Numbers inside the file are checked by the API, not here. An upload whose outcome is
        unknown (a timeout while the server may still be processing it) is never uploaded again
        automatically: unless a lookup of its custom id proves it was accepted,
        :class:`QikberryDeliveryUnknownError` says what is known and how to check.

        Example::

            accepted = hook.upload_bulk("/data/customers.csv", "Sale ends tonight", column="mobile")
        """

        from airflow_qikberry import idempotency as ido
        from airflow_qikberry import protocol as p
        from airflow_qikberry import validation as v
        from airflow_qikberry.exceptions import QikberryDeliveryUnknownError

        s = self.settings
        resend = v.validate_flag(resend, field="resend")
        payload = p.build_common(
            s.send_defaults,
            message=message,
            sender=sender,
            service=service,
            template_id=template_id,
            entity_id=entity_id,
            schedule_at=schedule_at,
            encoding=encoding,
            flash=flash,
            webhook_id=webhook_id,
            max_units=max_units,
            tags=None,
        )
        if column is not None:
            if isinstance(column, str) and not column.strip():
                raise QikberryValidationError("column must not be blank.", field="column")
            column = v.validate_text_id(column, field="column", allow_int=True)
            payload["column"] = column
        source = _BulkSource.of(file, v.validate_text_id(filename, field="filename"))
        if source.size > p.MAX_BULK_BYTES:
            raise QikberryValidationError(
                f"file is {source.size} bytes; the API accepts at most {p.MAX_BULK_BYTES} (200 MB). "
                "Split it.",
                field="file",
            )
        if column is not None and source.name.lower().endswith(".csv"):
            source.check_csv_column(str(column))
        identity = ido.task_identity()
        cid = v.validate_custom_id(custom_id) or ido.derive_custom_id(
            ido.fingerprint("upload_bulk", source.name, source.size, sorted(payload.items())),
            identity,
            fresh=resend,
        )
        payload["custom"] = cid
        fields = p.multipart_fields(payload)
        content_type = "text/csv" if source.name.lower().endswith(".csv") else "text/plain"
        self.log.info("Uploading %s (%s bytes) for a bulk send, custom id %s", source.name, source.size, cid)

        def post() -> Any:
            with source.open() as handle:
                return self.transport.post_multipart(
                    p.Paths.BULK, fields, file_field="file", filename=source.name, fileobj=handle,
                    content_type=content_type,
                )  # fmt: skip

        def parse(response: ApiResponse) -> int:
            count = p.accepted_count(response.message)
            if count is None:
                raise ido.Unaccounted(
                    f"the API accepted the upload without saying how many: {response.message!r}"
                )
            return count

        def lookup(check_reuse: bool) -> Finding[int]:
            verdict = ido.match_upload_rows(
                list(self._status_rows({"cid": cid})), cid, self._reuse_check(check_reuse)
            )
            if verdict.kind == "found":
                self.log.warning(
                    "The upload was accepted: %d message(s) with its custom id are visible so far; the API "
                    "may still be processing the rest of the file",
                    verdict.result,
                )
            return verdict

        def unknown(msg: str) -> QikberryDeliveryUnknownError:
            return QikberryDeliveryUnknownError(
                f"Bulk upload of {source.name!r} (custom id {cid}): {msg} Before uploading it again, check "
                f"whether it was accepted: hook.get_status(custom_id={cid!r}) (if the API keeps the custom "
                "id per bulk row), the sms/status report for today's date, or the Qikberry panel.",
                custom_id=cid,
            )

        send = ido.Send(
            what=f"POST {p.Paths.BULK} ({source.name})",
            post=post,
            parse=parse,
            lookup=lookup,
            unknown=unknown,
            resend_after_ambiguity=False,
        )
        return self._exactly_once().run(send, task_retry=ido.is_task_retry(identity) and not resend)

    # -- lookups

    def get_status(
        self,
        *,
        message_id: str | None = None,
        custom_id: str | None = None,
        mobile: str | None = None,
    ) -> list[MessageStatus]:
        """Delivery status by message id, custom id and/or number (``sms/status``); combined keys AND.

        Follows the API's pages, so a custom id naming many messages returns all of them.
        """
        from airflow_qikberry.protocol import status_params

        params = status_params(
            message_id=message_id,
            custom_id=custom_id,
            mobile=mobile,
            default_region=self.settings.default_region,
        )
        return list(self._status_rows(params))

    def iter_group_status(self, group_id: str) -> Iterator[MessageStatus]:
        """Every message of a request or campaign, walking the API's 100-row pages lazily."""
        from airflow_qikberry.lookups import group_query

        return self._status_rows(group_query(group_id))

    def group_page(self, group_id: str, page: int = 1) -> tuple[list[MessageStatus], int | None, int | None]:
        """One 100-row page of a group's statuses: its rows, the next page's number (None: it was the last)
        and the group's row count in all when the API gives it (``meta.total``), else None.

        Example::

            rows, following, total = hook.group_page(result.group_id)
        """
        from airflow_qikberry.lookups import group_query, page_of

        found = self._run(page_of(group_query(group_id), page))
        return list(found.rows), found.next_page, found.total

    # -- delivery polling (QikberryDeliverySensor)

    def poll_page(self, group_id: str, page: int = 1) -> StatusPage[MessageStatus]:
        """One 100-row page of a group's statuses, as a delivery sensor polls it (within the poll budget)."""
        from airflow_qikberry.lookups import group_query, page_of

        return self._run(page_of(group_query(group_id), page), self._polls)

    def poll_message(self, message_id: str) -> list[MessageStatus]:
        """The status of one message, as a delivery sensor polls it (within the poll budget)."""
        from airflow_qikberry.lookups import message_query, status_rows

        return self._run(status_rows(message_query(message_id)), self._polls)

    def get_balance(self, service: str | None = None) -> list[Balance]:
        """Credits per service (``finance/balance``; falls back to the legacy ``account/balance``)."""
        from airflow_qikberry.lookups import balance

        return self._run(balance(service))

    def test_connection(self) -> tuple[bool, str]:
        """Check the token with ``auth/me``: never sends, never spends."""
        from airflow_qikberry.exceptions import QikberryError
        from airflow_qikberry.protocol import Paths, redact

        try:
            response = self._get(Paths.AUTH_ME)
        except Exception as exc:
            # Not self.settings: reading the connection may be what failed (settings that do not fit).
            settings = self.__dict__.get("settings")
            text = str(exc) if isinstance(exc, QikberryError) else f"{type(exc).__name__}: {exc}"
            return False, redact(text, settings.token if settings else "")
        data = response.data if isinstance(response.data, Mapping) else {}
        who = data.get("username") or data.get("name") or data.get("email")
        return True, f"Connected to {self.settings.base_url}" + (f" as {who}" if who else "")

    # -- connection form (Airflow < 3.2; newer versions read conn-fields from provider info)

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        from airflow_qikberry.connection import connection_form_widgets

        return connection_form_widgets()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        from airflow_qikberry.connection import ui_field_behaviour

        return ui_field_behaviour()


def _answer_rows(
    sent: Sequence[SentMessage], cids: Sequence[str], numbers: Sequence[str]
) -> dict[int, SentMessage] | None:
    """The rows of a batch's answer by node index (by custom id, else by number), or None when a row names
    a node that was not sent (an answer that cannot be trusted row by row)."""
    by_cid = {cid: i for i, cid in enumerate(cids)}
    by_number: dict[str, list[int]] = {}
    for i, n in enumerate(numbers):
        by_number.setdefault(n, []).append(i)
    out: dict[int, SentMessage] = {}
    for row in sent:
        index = by_cid.get(row.custom_id or "")
        if index is None:
            free = [i for i in by_number.get(row.mobile, []) if i not in out]
            index = free[0] if free else None
        if index is None or index in out or numbers[index] != row.mobile:
            return None
        out[index] = row
    return out


def _positive_or_none(value: float | None, name: str) -> float | None:
    if value is not None and not value > 0:
        raise QikberryValidationError(
            f"{name} must be a positive number of seconds, got {value!r}.", field=name
        )
    return value


class _BulkSource:
    """The file of a bulk upload: a path (reopened per attempt) or a seekable file object (rewound)."""

    def __init__(self, name: str, size: int, opener: Callable[[], Any]) -> None:
        self.name, self.size, self.open = name, size, opener

    @classmethod
    def of(cls, file: str | os.PathLike[str] | IO[bytes], filename: str | None) -> _BulkSource:
        import contextlib

        if isinstance(file, (str, os.PathLike)):
            path = Path(file)
            if not path.is_file():
                raise QikberryValidationError(
                    f"file {str(path)!r} does not exist or is not a file.", field="file"
                )
            return cls(filename or path.name, path.stat().st_size, lambda: path.open("rb"))
        if not hasattr(file, "read"):
            raise QikberryValidationError("file must be a path or a binary file object.", field="file")
        if isinstance(file, io.TextIOBase) or isinstance(file.read(0), str):
            # Text mode would fail mid-upload (the multipart writer needs bytes) after the POST has begun.
            raise QikberryValidationError(
                "file is open in text mode; open it in binary mode, open(path, 'rb'), or pass the path.",
                field="file",
            )
        seekable = getattr(file, "seekable", None)
        if not (callable(seekable) and seekable()):
            raise QikberryValidationError(
                "file is a stream that cannot be rewound (not seekable): its length is unknown and a retry "
                "could not read it again. Pass a path, or a seekable binary file such as open(path, 'rb').",
                field="file",
            )
        start = file.tell()
        end = file.seek(0, os.SEEK_END)
        file.seek(start)

        @contextlib.contextmanager
        def rewound() -> Iterator[IO[bytes]]:
            file.seek(start)
            yield file  # the caller's object: rewound, never closed

        name = filename or Path(str(getattr(file, "name", "numbers.txt"))).name
        return cls(name, end - start, rewound)

    def check_csv_column(self, column: str) -> None:
        import csv

        with self.open() as handle:
            header_line = handle.readline(65536).decode("utf-8-sig", errors="replace")
        header = [h.strip() for h in next(csv.reader([header_line]), [])]
        if column not in header:
            raise QikberryValidationError(
                f"column {column!r} is not in the CSV header {header!r}.", field="column"
            )
