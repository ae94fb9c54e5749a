"""
QikberryHook: the public sync hook.

It reads the connection, owns the HTTP transport and the retry policy, and hands the work to the modules that
do it: a send's keyword arguments become one :class:`~airflow_qikberry.send_options.SendOptions`,
:mod:`airflow_qikberry.sends` checks and builds the request, and :mod:`airflow_qikberry.idempotency` runs it
exactly once through the transport (:mod:`airflow_qikberry.transport`). Status and balance lookups are the
sans-IO cores of :mod:`airflow_qikberry.lookups`, carried out with blocking calls.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import cached_property
from typing import IO, TYPE_CHECKING, Any, TypeVar

from airflow_qikberry.exceptions import QikberryError, QikberryValidationError
from airflow_qikberry.get_provider_info import CONN_TYPE
from airflow_qikberry.hooks.base import HookArgs, QikberryBaseHook
from airflow_qikberry.hooks.dlt import DltHookMixin
from airflow_qikberry.transport.retry import DEFAULT_RETRY_DEADLINE

if TYPE_CHECKING:
    import requests
    from typing_extensions import Unpack

    from airflow_qikberry.connection import ConnectionSettings
    from airflow_qikberry.idempotency import ExactlyOnce, ReuseCheck
    from airflow_qikberry.lookups import Lookup
    from airflow_qikberry.models import Balance, BatchResult, MessageStatus, SentMessage, StatusPage
    from airflow_qikberry.payloads import BatchNode
    from airflow_qikberry.protocol import ApiResponse
    from airflow_qikberry.send_options import BatchParams, BulkParams, SmsParams
    from airflow_qikberry.sends import PreparedSend
    from airflow_qikberry.transport.sync import RequestsTransport

# DAG files import this module at every parse, within the 15 ms budget of bench/import_cost.py. The modules
# that do the work (connection, sends, idempotency, lookups, the requests transport: about 15-30 ms with what
# they import) are imported by the methods that use them, on the first call.

T = TypeVar("T")

__all__ = ["QikberryHook"]


class QikberryHook(DltHookMixin, QikberryBaseHook):
    """
    Talk to the Qikberry SMS API (MOBtexting v2): send, look up delivery status, check balance.

    DLT senders, templates and sends by template come from :class:`~airflow_qikberry.hooks.dlt.DltHookMixin`.

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
        the connection's ``retry_deadline`` extra, else derived: ``least_derived_deadline`` (120), or timeout
        + reconcile window + 10 when that is more). A value too short to settle an unknown outcome and send
        again is refused when the connection is read (see docs/hook.md, "Settings that must fit together").
    :param max_retry_after: cap, in seconds, on how long a server's ``Retry-After`` may make us wait.
    :param reconcile_delay: seconds before the first lookup of an unknown outcome (then 2, 4, 8, 8... s;
        default 1, or the window if that is shorter). Given explicitly, at most the reconcile window.
    :param reconcile_window: seconds an unknown outcome is looked for (default: the connection's
        ``reconcile_window`` extra, else 30).
    :param clock_skew: seconds of clock difference allowed when deciding that rows found for a custom id
        were submitted before this call began (a reused custom id).
    :param least_derived_deadline: the least a derived retry deadline is (the notifier passes 0: an alert
        waits no longer than one unknown outcome needs).
    :param clock: how the hook reads time and waits (default: the real clock; see
        :mod:`airflow_qikberry.clock`).
    """

    hook_name = "Qikberry"

    def __init__(
        self,
        qikberry_conn_id: str = QikberryBaseHook.default_conn_name,
        *,
        reconcile_delay: float | None = None,
        reconcile_window: float | None = None,
        clock_skew: float = 120.0,
        least_derived_deadline: float = DEFAULT_RETRY_DEADLINE,
        **kwargs: Unpack[HookArgs],
    ) -> None:
        super().__init__(qikberry_conn_id, **kwargs)
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
        self.clock_skew = clock_skew
        self.least_derived_deadline = least_derived_deadline
        self._extras_set: frozenset[str] = frozenset()

    @property
    def retry_deadline(self) -> float:
        """Return the deadline of each call, fitted to the connection (which it reads)."""
        _ = self.settings
        return self.policy.deadline

    @property
    def reconcile_window(self) -> float:
        """Return the seconds an unknown outcome is looked for: the argument, else the connection's."""
        if self.reconcile_window_override is not None:
            return self.reconcile_window_override
        return self.settings.reconcile_window

    # -- connection and transport

    @cached_property
    def settings(self) -> ConnectionSettings:
        """Return the parsed connection, its settings fitted together; its token is masked from then on."""
        conn = self.get_connection(self.qikberry_conn_id)
        settings = self.settings_from(conn)
        extra = conn.extra_dejson or {}
        # Which extras the connection sets (for error messages that say where a value came from).
        self._extras_set = frozenset(
            name
            for name in ("reconcile_window", "retry_deadline", "timeout")
            if extra.get(name, extra.get(f"extra__{CONN_TYPE}__{name}")) not in (None, "")
        )
        self.policy.deadline = self._fitted_deadline(settings)
        return settings

    def _fitted_deadline(self, s: ConnectionSettings) -> float:
        """
        Check this hook's arguments together with the connection's extras; return the retry deadline.

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
        return fitted_retry_deadline(
            deadline if deadline is not None else s.retry_deadline,
            window=window,
            timeout=self.timeout_override or s.timeout,
            deadline_from=source(deadline, "retry_deadline"),
            window_from=window_from,
            timeout_from=source(self.timeout_override, "timeout"),
            least=self.least_derived_deadline,
        )

    @cached_property
    def transport(self) -> RequestsTransport:
        """Return every call's transport, within the token's process-wide GET budget."""
        from airflow_qikberry.transport.sync import RequestsTransport

        return RequestsTransport(self.settings, policy=self.policy, timeout=self.timeout_override)

    @cached_property
    def _polls(self) -> RequestsTransport:
        """
        Return the transport of delivery polls (:meth:`poll_page`, :meth:`poll_message`).

        This one's session and retry policy, within the poll budget as well; a 429 holds the poll budget of
        the whole process.
        """
        return self.transport.for_polls()

    @property
    def session(self) -> requests.Session:
        """Return the pooled keep-alive session (one per hook)."""
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
        """Return every row of a status query, following the API's pages lazily (any query may be paged)."""
        from airflow_qikberry.lookups import StatusQuery

        query = StatusQuery(params)
        while query.request is not None:
            yield from query.read(self._get(*query.request)).rows

    # -- sending: each method checks its arguments into one SendOptions and runs the send sends.py prepares

    def send_sms(
        self, to: str | Iterable[str], message: str, *, resend: bool = False, **params: Unpack[SmsParams]
    ) -> list[SentMessage]:
        """
        Send one text to one or more numbers (``sms/send``); returns one :class:`SentMessage` per number.

        The keyword arguments are the send parameters of ``sms/send``
        (:class:`~airflow_qikberry.send_options.SmsParams`): ``sender``, ``service``, ``template_id``,
        ``entity_id``, ``schedule_at``, ``encoding``, ``flash``, ``webhook_id``, ``max_units``, ``tags`` and
        ``custom_id``; left out, sender, service and entity id are the connection's.

        Every argument is validated before any request. Numbers may be written in any common format; numbers
        without a country code need ``default_region`` on the connection. ``custom_id`` is an idempotency
        key: one id, one send (a reused id is reported, not returned as this send's result). ``resend=True``
        sends again on a retried task instead of returning what an earlier try sent.
        """
        from airflow_qikberry import sends
        from airflow_qikberry.send_options import SendOptions, SmsParams

        settings = self.settings
        options = SendOptions.from_keywords("send_sms", params, SmsParams)
        return self.send_prepared(sends.prepare_sms(settings, to, message, options, resend=resend))

    def send_batch(
        self,
        nodes: Sequence[Mapping[str, Any] | BatchNode],
        *,
        message: str | None = None,
        resend: bool = False,
        check_first: bool | None = None,
        **params: Unpack[BatchParams],
    ) -> BatchResult:
        """
        Send per-recipient texts in one request (``sms/send/json``).

        Each node is a mapping with ``to`` (one number) and optionally any send parameter the API lets a
        node override: ``message``, ``sender``, ``template_id``, ``entity_id``, ``encoding``, ``flash``,
        ``max_units``, ``tags`` and ``custom_id``. ``message`` and the keyword arguments (the send parameters
        of :class:`~airflow_qikberry.send_options.BatchParams`) are the defaults for every node (``root``);
        ``service``, ``schedule_at`` and ``webhook_id`` apply to the whole batch only. Each node carries its
        own encoding: a Hindi node under an English root goes out as unicode. With ``name`` the API groups
        the batch as a campaign and returns its ``group_id``.

        A node may also be a :class:`~airflow_qikberry.payloads.BatchNode`, the validated form that
        ``payloads`` builds (``payloads.validated_batch_node``): it is sent as it is, not validated again, for
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
        from airflow_qikberry import sends
        from airflow_qikberry.send_options import BatchParams, SendOptions

        settings = self.settings
        options = SendOptions.from_keywords("send_batch", params, BatchParams)
        return self.send_prepared(
            sends.prepare_batch(
                settings, nodes, options, message=message, resend=resend, check_first=check_first
            )
        )

    def upload_bulk(
        self,
        file: str | os.PathLike[str] | IO[bytes],
        message: str,
        *,
        column: str | None = None,
        filename: str | None = None,
        resend: bool = False,
        **params: Unpack[BulkParams],
    ) -> int:
        """
        Send one text to every number in a TXT/CSV file (``sms/bulk``); returns the accepted count.

        The keyword arguments are the send parameters of ``sms/bulk``
        (:class:`~airflow_qikberry.send_options.BulkParams`: no ``tags``, no ``name``). The file (a path, or a
        seekable binary file object) is streamed in blocks with a ``Content-Length``, never read into memory
        whole. ``column`` names the CSV column holding the numbers. Numbers inside the file are checked by
        the API, not here. An upload whose outcome is unknown (a timeout while the server may still be
        processing it) is never uploaded again automatically: unless a lookup of its custom id proves it was
        accepted, :class:`QikberryDeliveryUnknownError` says what is known and how to check.

        Example::

            accepted = hook.upload_bulk("/data/customers.csv", "Sale ends tonight", column="mobile")
        """
        from airflow_qikberry import sends
        from airflow_qikberry.send_options import BulkParams, SendOptions

        settings = self.settings
        options = SendOptions.from_keywords("upload_bulk", params, BulkParams)
        return self.send_prepared(
            sends.prepare_upload(
                settings, file, message, options, column=column, filename=filename, resend=resend
            )
        )

    def send_prepared(self, prepared: PreparedSend[T]) -> T:
        """
        Run a send that :mod:`airflow_qikberry.sends` prepared, exactly once.

        The send comes from ``prepare_sms``, ``prepare_batch`` or ``prepare_upload``. This is what the send
        methods above do after checking their arguments, and what the send operator runs (the very value its
        dry run would show), the notifier and the campaign too.

        Example::

            from airflow_qikberry import sends
            from airflow_qikberry.send_options import SendOptions

            prepared = sends.prepare_sms(hook.settings, "919876543210", "Hi", SendOptions(sender="QIKBRY"))
            sent = hook.send_prepared(prepared)
        """
        from airflow_qikberry.sends import SendIO

        self.check_dlt(prepared)  # the DLT pre-check, before any request
        io = SendIO(self.transport, self._status_rows, self._reuse_check, self.log)
        send, look_first = prepared.to_send(io)
        return self._exactly_once().run(send, task_retry=look_first)

    # -- lookups

    def get_status(
        self,
        *,
        message_id: str | None = None,
        custom_id: str | None = None,
        mobile: str | None = None,
    ) -> list[MessageStatus]:
        """
        Delivery status by message id, custom id and/or number (``sms/status``); combined keys AND.

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
        """
        One 100-row page of a group's statuses.

        Its rows, the next page's number (None: it was the last) and the group's row count in all when the API
        gives it (``meta.total``), else None.

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
        """Return the status of one message, as a delivery sensor polls it (within the poll budget)."""
        from airflow_qikberry.lookups import message_query, status_rows

        return self._run(status_rows(message_query(message_id)), self._polls)

    def get_balance(self, service: str | None = None) -> list[Balance]:
        """Credits per service (``finance/balance``; falls back to the legacy ``account/balance``)."""
        from airflow_qikberry.lookups import balance

        return self._run(balance(service))

    def test_connection(self) -> tuple[bool, str]:
        """Check the token with ``auth/me`` and list the account's DLT senders and templates: never sends."""
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
        return True, f"Connected to {self.settings.base_url}" + (f" as {who}" if who else "") + (
            f"; {self.dlt_summary()}"
        )

    # -- connection form (Airflow < 3.2; newer versions read conn-fields from provider info)

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        from airflow_qikberry.connection import connection_form_widgets

        return connection_form_widgets()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        from airflow_qikberry.connection import ui_field_behaviour

        return ui_field_behaviour()
