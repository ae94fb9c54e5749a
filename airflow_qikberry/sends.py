"""
Sends, prepared.

The requests of ``sms/send``, ``sms/send/json``, ``sms/bulk`` and ``sms/send/template`` built and checked, and
how each one's answer is read and its custom id looked up.

``prepare_sms``, ``prepare_batch``, ``prepare_upload`` (and ``prepare_template``, in
:mod:`airflow_qikberry.template_sends`) check every argument against the connection and build the request;
they make no request (an upload's file is opened to read its size and, for a CSV with a ``column``, its
header line; a send by template is given the account's templates, read by the hook). Each prepared send
also lists the texts it would post with a DLT template id (``dlt_subjects``), which the hook's DLT
pre-check (:mod:`airflow_qikberry.precheck`) checks first. What they return is run exactly once by
``QikberryHook.send_prepared``, and read without sending by the send operator's dry run: one preparation
for both, so they cannot drift.

Running a prepared send (:meth:`SmsRequest.to_send`, ...) derives its custom id when the caller gave none,
logs it, and returns the :class:`~airflow_qikberry.idempotency.Send` that
:class:`~airflow_qikberry.idempotency.ExactlyOnce` runs: posting through the hook's transport, reading the
answer, looking the custom id up through the hook's status-row reader, and wording an unknown outcome.

Example::

    prepared = prepare_sms(hook.settings, ["919876543210"], "Nightly load finished", SendOptions())
    prepared.numbers, prepared.length.units  # what a dry run shows
    sent = hook.send_prepared(prepared)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import IO, TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

from airflow_qikberry import idempotency as ido
from airflow_qikberry import phone, validation
from airflow_qikberry.batch_answer import _BatchReader
from airflow_qikberry.exceptions import QikberryDeliveryUnknownError, QikberryValidationError
from airflow_qikberry.models import BatchResult, MessageStatus, SentMessage
from airflow_qikberry.payloads import (
    MAX_BULK_BYTES,
    BatchNode,
    build_batch_nodes,
    check_request_size,
    multipart_fields,
    root_payload,
)
from airflow_qikberry.precheck import Subject
from airflow_qikberry.protocol import ApiResponse, Paths, accepted_count, rows_of
from airflow_qikberry.send_options import (
    BatchParams,
    BulkParams,
    DltCheck,
    SendOptions,
    SmsParams,
)
from airflow_qikberry.transport.upload import UploadSource

if TYPE_CHECKING:
    from airflow_qikberry.connection import ConnectionSettings
    from airflow_qikberry.sms_text import MessageLength
    from airflow_qikberry.transport.sync import RequestsTransport

__all__ = [
    "BatchRequest",
    "BulkUpload",
    "PreparedSend",
    "SendIO",
    "SmsRequest",
    "prepare_batch",
    "prepare_sms",
    "prepare_upload",
]

T = TypeVar("T")


class SendIO(NamedTuple):
    """
    What running a prepared send needs from its hook.

    The transport to post through, a reader of every ``sms/status`` row of a query (all pages), the
    reused-custom-id check of a lookup, and the logger.
    """

    transport: RequestsTransport
    status_rows: Callable[[Mapping[str, str]], Iterable[MessageStatus]]
    reuse_check: Callable[[bool], ido.ReuseCheck | None]
    log: Any


class PreparedSend(Protocol[T]):
    """
    A send checked and built, ready to run.

    :meth:`to_send` gives what ``ExactlyOnce`` runs and whether to look it up before posting it (a task
    retry); ``dlt_check`` and :meth:`dlt_subjects` what the DLT pre-check checks first.
    """

    @property
    def dlt_check(self) -> DltCheck: ...

    def dlt_subjects(self) -> list[Subject]: ...

    def to_send(self, io: SendIO) -> tuple[ido.Send[T], bool]: ...


def _flag(value: object, field: str) -> bool:
    return validation.validate_flag(value, field=field)


def shown_numbers(numbers: list[str]) -> str:
    """Return the first five numbers, masked, for a log line."""
    return ", ".join(phone.mask_number(n) for n in numbers[:5]) + (", ..." if len(numbers) > 5 else "")


def one_text_send(
    io: SendIO,
    path: str,
    body: Mapping[str, Any],
    numbers: list[str],
    cid: str,
    *,
    length: MessageLength | None = None,
) -> ido.Send[list[SentMessage]]:
    """
    Return the exactly-once send of one text to ``numbers`` under the custom id ``cid``.

    It posts ``body`` to ``path`` (``sms/send``, ``sms/send/template``); its answer must account for every
    number, and an unknown outcome is looked up by ``cid``. ``length``: the text's, for answers without units.
    """

    def parse(response: ApiResponse) -> list[SentMessage]:
        sent = [SentMessage.from_api(row) for row in rows_of(response, what=path)]
        ido.accounted_for(sent, numbers, "request")
        if length is not None:  # the answer has no units: they are the rendered text's
            sent = [m if m.units else replace(m, units=length.units, length=length.length) for m in sent]
        return sent

    def lookup(check_reuse: bool) -> ido.Finding[list[SentMessage]]:
        rows = list(io.status_rows({"cid": cid}))
        return ido.match_send_rows(rows, cid, numbers, io.reuse_check(check_reuse))

    return ido.Send(
        what=f"POST {path}",
        post=lambda: io.transport.request("POST", path, json=body),
        parse=parse,
        lookup=lookup,
        unknown=lambda msg: QikberryDeliveryUnknownError(msg, numbers=numbers, custom_id=cid),
    )


# --- sms/send


class SmsRequest(NamedTuple):
    """
    A checked ``sms/send``.

    Its numbers, its parameters in wire form (text and type included; the numbers and the custom id are added
    when it runs) and how its text is billed.
    """

    numbers: list[str]
    payload: dict[str, Any]
    length: MessageLength
    custom_id: str | None
    resend: bool
    dlt_check: DltCheck = "auto"

    def dlt_subjects(self) -> list[Subject]:
        return [_subject("message", self.payload, self.payload)]

    def to_send(self, io: SendIO) -> tuple[ido.Send[list[SentMessage]], bool]:
        numbers = self.numbers
        identity = ido.task_identity()
        # The identity of the send is its set of numbers: a set given as `to` iterates in another order in
        # every process, so in every try of a task (docs/guarantees.md).
        # Outside a task the derived id is random and the fingerprint unused: not computed then.
        cid = self.custom_id or ido.derive_custom_id(
            ido.send_fingerprint(numbers, self.payload) if identity is not None else "",
            identity,
            fresh=self.resend,
        )
        payload = {**self.payload, "to": ",".join(numbers), "custom": cid}
        io.log.info(
            "Sending SMS to %d number(s) [%s] via service %s, custom id %s",
            len(numbers),
            shown_numbers(numbers),
            payload["service"],
            cid,
        )
        send = one_text_send(io, Paths.SEND, payload, numbers, cid)
        return send, ido.is_task_retry(identity) and not self.resend


def prepare_sms(
    settings: ConnectionSettings, to: Any, message: str, options: SendOptions, *, resend: bool = False
) -> SmsRequest:
    """Check and build a send of one text to one or more numbers (``sms/send``)."""
    resend = _flag(resend, "resend")
    options.refuse_unless(SmsParams, Paths.SEND)
    numbers = phone.normalize_numbers(to, default_region=settings.default_region)
    check_request_size(len(numbers), "to")
    payload, length = root_payload(options, settings, message)
    assert length is not None  # a text is required
    return SmsRequest(numbers, payload, length, options.custom_id, resend, options.dlt_check)


def _subject(where: str, fields: Mapping[str, Any], root: Mapping[str, Any]) -> Subject:
    """Return the DLT pre-check's view of a text: a node's own fields, else its root's."""

    def get(key: str) -> Any:
        return fields.get(key, root.get(key))

    template_id = get("template_id")
    return Subject(where, get("message"), str(get("sender")), str(root["service"]), template_id or None)


# --- sms/send/json


class BatchRequest(NamedTuple):
    """A checked ``sms/send/json``: its root and its validated nodes (custom ids derived when it runs)."""

    root: dict[str, Any]
    nodes: list[BatchNode]
    resend: bool
    check_first: bool | None
    dlt_check: DltCheck = "auto"
    # The JSON body, encoded when the request is prepared if every node has its custom id (nothing about it
    # waits for the run then: a campaign builds its next chunk's request while the current one is in flight).
    body: bytes | None = None

    def dlt_subjects(self) -> list[Subject]:
        return [_subject(f"nodes[{i}].message", b.payload, self.root) for i, b in enumerate(self.nodes)]

    def to_send(self, io: SendIO) -> tuple[ido.Send[BatchResult], bool]:
        root, built = self.root, self.nodes
        numbers = [b.number for b in built]
        identity = ido.task_identity()
        if all(b.given_custom_id for b in built):
            cids = [str(b.given_custom_id) for b in built]
        else:  # derived ids only where the caller gave none; they follow the node, not its position
            batch, ranks = ido.batch_identity([b.payload for b in built], root)
            base = ido.derive_custom_id(batch, identity, fresh=self.resend)
            cids = [b.given_custom_id or f"{base}-{rank + 1}" for b, rank in zip(built, ranks, strict=True)]
        body = self.body if self.body is not None else _batch_body(root, built, cids)
        name = root.get("name")
        io.log.info(
            "Sending a batch of %d message(s) via service %s%s",
            len(built),
            root["service"],
            f" as campaign {name!r}" if name else "",
        )
        reader = _BatchReader(io, cids, numbers)
        send = ido.Send(
            what=f"POST {Paths.SEND_JSON}",
            post=lambda: io.transport.request("POST", Paths.SEND_JSON, data=body, headers=_JSON_HEADERS),
            parse=reader.parse,
            lookup=reader.lookup,
            unknown=lambda msg: QikberryDeliveryUnknownError(msg, numbers=numbers, custom_id=cids[0]),
        )
        if self.check_first is not None:
            return send, self.check_first
        return send, ido.is_task_retry(identity) and not self.resend


def prepare_batch(
    settings: ConnectionSettings,
    nodes: Sequence[Mapping[str, Any] | BatchNode],
    options: SendOptions,
    *,
    message: str | None = None,
    resend: bool = False,
    check_first: bool | None = None,
) -> BatchRequest:
    """
    Check and build a batch of per-recipient texts (``sms/send/json``).

    ``message`` is the nodes' default text. See ``QikberryHook.send_batch``.
    """
    resend = _flag(resend, "resend")
    if check_first is not None:
        check_first = _flag(check_first, "check_first")
    options.refuse_unless(BatchParams, Paths.SEND_JSON)
    if not nodes:
        raise QikberryValidationError("nodes is empty: give at least one recipient.", field="nodes")
    check_request_size(len(nodes), "nodes")
    root, _ = root_payload(options, settings, message, require_message=False)
    built = build_batch_nodes(nodes, root, settings, encoding=options.encoding, max_units=options.max_units)
    cids = [b.given_custom_id for b in built]
    body = _batch_body(root, built, cids) if all(cids) else None  # type: ignore[arg-type]
    return BatchRequest(root, built, resend, check_first, options.dlt_check, body)


#: The headers of a body encoded here (what ``requests`` sets for ``json=``).
_JSON_HEADERS = {"Content-Type": "application/json"}


def _batch_body(root: Mapping[str, Any], built: Sequence[BatchNode], cids: Sequence[str]) -> bytes:
    """Return the ``sms/send/json`` body, encoded as ``requests`` encodes ``json=`` (no NaN)."""
    api_nodes = [{**b.payload, "custom": cid} for b, cid in zip(built, cids, strict=True)]
    return json.dumps({"root": root, "nodes": api_nodes}, allow_nan=False).encode("utf-8")


# --- sms/bulk


class BulkUpload(NamedTuple):
    """A checked ``sms/bulk`` upload: its form fields (the custom id is added when it runs) and its file."""

    payload: dict[str, Any]
    source: UploadSource
    custom_id: str | None
    resend: bool
    dlt_check: DltCheck = "auto"

    def dlt_subjects(self) -> list[Subject]:
        return [_subject("message", self.payload, self.payload)]

    def to_send(self, io: SendIO) -> tuple[ido.Send[int], bool]:
        source = self.source
        identity = ido.task_identity()
        cid = self.custom_id or ido.derive_custom_id(
            ido.fingerprint("upload_bulk", source.name, source.size, sorted(self.payload.items())),
            identity,
            fresh=self.resend,
        )
        fields = multipart_fields({**self.payload, "custom": cid})
        io.log.info("Uploading %s (%s bytes) for a bulk send, custom id %s", source.name, source.size, cid)

        def post() -> Any:
            with source.open() as handle:
                return io.transport.post_multipart(
                    Paths.BULK, fields, file_field="file", filename=source.name, fileobj=handle,
                    content_type=source.content_type,
                )  # fmt: skip

        def parse(response: ApiResponse) -> int:
            count = accepted_count(response.message)
            if count is None:
                raise ido.Unaccounted(
                    f"the API accepted the upload without saying how many: {response.message!r}"
                )
            return count

        def lookup(check_reuse: bool) -> ido.Finding[int]:
            rows = list(io.status_rows({"cid": cid}))
            verdict = ido.match_upload_rows(rows, cid, io.reuse_check(check_reuse))
            if verdict.kind == "found":
                io.log.warning(
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
            what=f"POST {Paths.BULK} ({source.name})",
            post=post,
            parse=parse,
            lookup=lookup,
            unknown=unknown,
            resend_after_ambiguity=False,
        )
        return send, ido.is_task_retry(identity) and not self.resend


def prepare_upload(
    settings: ConnectionSettings,
    file: str | os.PathLike[str] | IO[bytes],
    message: str,
    options: SendOptions,
    *,
    column: str | None = None,
    filename: str | None = None,
    resend: bool = False,
) -> BulkUpload:
    """
    Check and build a bulk upload of one text to every number in a TXT/CSV file (``sms/bulk``).

    See ``QikberryHook.upload_bulk``.
    """
    resend = _flag(resend, "resend")
    options.refuse_unless(BulkParams, Paths.BULK)
    payload, _ = root_payload(options, settings, message)
    if column is not None:
        if isinstance(column, str) and not column.strip():
            raise QikberryValidationError("column must not be blank.", field="column")
        column = validation.validate_text_id(column, field="column", allow_int=True)
        payload["column"] = column
    source = UploadSource.of(file, validation.validate_text_id(filename, field="filename"))
    if source.size > MAX_BULK_BYTES:
        raise QikberryValidationError(
            f"file is {source.size} bytes; the API accepts at most {MAX_BULK_BYTES} (200 MB). Split it.",
            field="file",
        )
    if column is not None and source.name.lower().endswith(".csv"):
        source.check_csv_column(str(column))
    return BulkUpload(payload, source, options.custom_id, resend, options.dlt_check)
