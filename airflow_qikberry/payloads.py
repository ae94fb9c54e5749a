"""
Request bodies of the send endpoints, built from :class:`~airflow_qikberry.send_options.SendOptions`.

The root of ``sms/send`` and ``sms/send/json`` (the options in wire form plus the text and its ``type``),
the validated nodes of a batch (:class:`BatchNode`), the form fields of a ``sms/bulk`` upload, the body of
``sms/send/template`` (:func:`template_payload`), and the API's per-request limits. No I/O; the wire
format itself (paths, envelopes, errors) is :mod:`airflow_qikberry.protocol`'s.

Example::

    root, length = root_payload(SendOptions(tags="otp"), settings, "Your OTP is 4711")
    nodes = build_batch_nodes([{"to": "919876543210"}], root, settings, encoding="auto", max_units=None)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow_qikberry import phone, sms_text, validation
from airflow_qikberry.exceptions import QikberryValidationError
from airflow_qikberry.send_options import checked_sender, is_given

if TYPE_CHECKING:
    from airflow_qikberry.catalog import DltTemplate
    from airflow_qikberry.connection import ConnectionSettings
    from airflow_qikberry.send_options import SendOptions
    from airflow_qikberry.sms_text import EncodingOption, MessageLength

__all__ = [
    "API_TYPE",
    "MAX_BULK_BYTES",
    "MAX_NUMBERS_PER_REQUEST",
    "NODE_KEYS",
    "BatchNode",
    "build_batch_node",
    "build_batch_nodes",
    "check_request_size",
    "multipart_fields",
    "root_payload",
    "template_payload",
    "validated_batch_node",
]

API_TYPE: dict[str, str] = {"gsm7": "N", "ucs2": "U"}
MAX_NUMBERS_PER_REQUEST = 50_000  # the quick-campaign limit (reference section 3.9)
MAX_BULK_BYTES = 200 * 1024 * 1024  # campaign file limit (reference section 3.9)

# Per-node keys of sms/send/json: every send parameter except webhook_id, service and time (reference 4.2).
NODE_KEYS = frozenset(
    {
        "to",
        "message",
        "sender",
        "template_id",
        "entity_id",
        "encoding",
        "flash",
        "max_units",
        "tags",
        "custom_id",
    }
)
_ROOT_ONLY = {
    "service": "service",
    "webhook_id": "webhook_id",
    "schedule_at": "schedule_at",
    "time": "schedule_at",
}


def _message_fields(
    text: str, encoding: EncodingOption, max_units: int | None, field: str
) -> tuple[dict[str, Any], MessageLength]:
    length = sms_text.validate_message(text, encoding=encoding, max_units=max_units, field=field)
    return {"message": text, "type": API_TYPE[length.encoding]}, length


def root_payload(
    options: SendOptions, settings: ConnectionSettings, message: str | None, *, require_message: bool = True
) -> tuple[dict[str, Any], MessageLength | None]:
    """
    Return the parameters of a send in wire form and how its text is billed.

    The wire form is that of ``sms/send``, the ``root`` of a batch or the fields of an upload; the billing is
    None for a batch root without a text.

    ``options`` are checked with the connection (:meth:`SendOptions.wire`), then the text with the options'
    encoding and ``max_units``. A batch root may leave the text to its nodes (``require_message=False``);
    a forced encoding then still gives the root its ``type``.
    """
    payload = options.wire(settings)
    length = None
    if message is not None or require_message:
        fields, length = _message_fields(message or "", options.encoding, options.max_units, "message")
        payload.update(fields)
    elif options.encoding != "auto":
        payload["type"] = API_TYPE[options.encoding]
    return payload, length


def check_request_size(count: int, field: str) -> None:
    """Refuse more numbers than the API takes in one request."""
    if count > MAX_NUMBERS_PER_REQUEST:
        raise QikberryValidationError(
            f"{field}: {count} numbers; the API accepts at most {MAX_NUMBERS_PER_REQUEST} per request. "
            "Split the list (or use upload_bulk for one text to many numbers).",
            field=field,
        )


class BatchNode(NamedTuple):
    """
    One validated node of a batch: its wire form, its number and the custom id the caller gave.

    A BatchNode is validated by definition: only this module's builders make one (:func:`build_batch_node`
    from a caller's mapping, :func:`validated_batch_node` from parts validated elsewhere), and
    ``QikberryHook.send_batch`` sends it as it is, without checking it again. Build it for the root it is
    sent with: its ``type`` is relative to that root's.
    """

    payload: dict[str, Any]
    number: str
    given_custom_id: str | None


def validated_batch_node(
    number: str, custom_id: str | None, *, message: str | None = None, api_type: str | None = None
) -> BatchNode:
    """
    Return a :class:`BatchNode` from parts the caller has already validated; nothing is checked again.

    For a caller that validates a large batch once, in an earlier pass, and must not pay for it twice (the
    campaign engine, whose prepare pass spools exactly these parts). The caller vouches that ``number`` is
    the output of ``phone.normalize_number``, that ``message`` (None: the root's text) was measured with
    the batch's ``encoding`` and ``max_units`` and ``api_type`` is ``API_TYPE`` of its encoding, and that
    ``custom_id`` passes ``validation.validate_custom_id``. A node with its own text always carries its
    ``type``, as :func:`build_batch_node` makes it; without a text it inherits the root's text and type.

    Example::

        node = validated_batch_node("919876543210", "order-1", message="Hi Asha", api_type="N")
        hook.send_batch([node], name="welcome")
    """
    payload: dict[str, Any] = {"to": number}
    if message is not None:
        payload["message"] = message
        payload["type"] = api_type
    return BatchNode(payload, number, custom_id)


def build_batch_node(
    node: Mapping[str, Any],
    index: int,
    root: Mapping[str, Any],
    settings: ConnectionSettings,
    *,
    encoding: EncodingOption,
    max_units: int | None,
) -> BatchNode:
    """
    Validate one ``sms/send/json`` node and give it every parameter it overrides, its encoding included.

    A node whose text differs from the root's carries its own ``type``: a Hindi node under a GSM-7 root
    goes out as ``U``, not as question marks.
    """
    prefix = f"nodes[{index}]"
    if not isinstance(node, Mapping):
        raise QikberryValidationError(f"{prefix} must be a mapping with a 'to' number.", field=prefix)
    node = dict(node)
    if "custom" in node and "custom_id" not in node:
        node["custom_id"] = node.pop("custom")
    for key in node:
        if key in _ROOT_ONLY:
            raise QikberryValidationError(
                f"{prefix}.{key}: the API applies {key} to the whole batch only; pass it as the "
                f"{_ROOT_ONLY[key]} argument instead.",
                field=f"{prefix}.{key}",
            )
        if key not in NODE_KEYS:
            raise QikberryValidationError(
                f"{prefix}.{key} is not a node parameter; use one of {', '.join(sorted(NODE_KEYS))}.",
                field=f"{prefix}.{key}",
            )
    if "to" not in node:
        raise QikberryValidationError(f"{prefix} needs a 'to' number.", field=f"{prefix}.to")
    found = phone.normalize_numbers(node["to"], default_region=settings.default_region, field=f"{prefix}.to")
    if len(found) != 1:
        raise QikberryValidationError(
            f"{prefix}.to must be exactly one number; use one node per recipient.", field=f"{prefix}.to"
        )
    out: dict[str, Any] = {"to": found[0]}
    node_encoding: EncodingOption = sms_text.validate_encoding(
        node.get("encoding", encoding), field=f"{prefix}.encoding"
    )
    node_units = node.get("max_units", max_units)
    text = node.get("message", root.get("message"))
    if text is None:
        raise QikberryValidationError(
            f"{prefix} has no message and no default message was given.", field=f"{prefix}.message"
        )
    fields, _ = _message_fields(text, node_encoding, node_units, f"{prefix}.message")
    if "message" in node:
        out["message"] = text
    if "message" in node or fields["type"] != root.get("type"):
        out["type"] = fields["type"]
    if "max_units" in node:
        out["max_units"] = node_units
    if is_given(node.get("sender")):
        out["sender"] = checked_sender(
            node["sender"], settings, service=str(root["service"]), field=f"{prefix}.sender"
        )
    for key in ("template_id", "entity_id"):
        if is_given(node.get(key)):
            out[key] = validation.validate_dlt_id(node[key], field=f"{prefix}.{key}")
    if "flash" in node:
        out["flash"] = 1 if validation.validate_flag(node["flash"], field=f"{prefix}.flash") else 0
    if is_given(node.get("tags")):
        tags = validation.validate_tags(node["tags"], field=f"{prefix}.tags")
        if tags:
            out["tags"] = tags
    given = node.get("custom_id")
    given_id = validation.validate_custom_id(given, field=f"{prefix}.custom_id") if is_given(given) else None
    return BatchNode(payload=out, number=found[0], given_custom_id=given_id)


def build_batch_nodes(
    nodes: Iterable[Mapping[str, Any] | BatchNode],
    root: Mapping[str, Any],
    settings: ConnectionSettings,
    *,
    encoding: EncodingOption,
    max_units: int | None,
) -> list[BatchNode]:
    """
    Validate every mapping of ``nodes`` with :func:`build_batch_node`.

    A :class:`BatchNode` is already validated and is taken as it is. The batch itself is checked whatever its
    nodes: not empty, within the per-request limit, no custom id twice, and a text for every node.
    """
    built = [
        node
        if isinstance(node, BatchNode)
        else build_batch_node(node, i, root, settings, encoding=encoding, max_units=max_units)
        for i, node in enumerate(nodes)
    ]
    if not built:
        raise QikberryValidationError("nodes is empty: give at least one recipient.", field="nodes")
    check_request_size(len(built), "nodes")
    if "message" not in root:
        # A mapping without a text failed above; a prebuilt node made for a root with a text fails here,
        # before the request, not as the API's 422 after it.
        for i, b in enumerate(built):
            if "message" not in b.payload:
                raise QikberryValidationError(
                    f"nodes[{i}] has no message and no default message was given.",
                    field=f"nodes[{i}].message",
                )
    explicit = [b.given_custom_id for b in built if b.given_custom_id]
    if len(set(explicit)) != len(explicit):
        raise QikberryValidationError("nodes carry duplicate custom ids; each must be unique.", field="nodes")
    return built


def multipart_fields(payload: Mapping[str, Any]) -> dict[str, str]:
    """Form fields of a multipart upload: lists become comma-separated values."""
    return {k: (",".join(map(str, val)) if isinstance(val, list) else str(val)) for k, val in payload.items()}


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def template_payload(options: SendOptions, template: DltTemplate | None) -> dict[str, Any]:
    """
    Build the body of ``sms/send/template`` (reference 4.6) less its recipients and ``meta.foreign_id``.

    The send adds those when it runs. The body has the stored template by ``id`` (its uuid, when the
    account's templates were read and it was found there, or when ``options.template`` is uuid-shaped)
    or else by ``alias``, the variables as ``data``, and ``meta`` (``webhook_id``, ``tags``, ``flash``).
    """
    ref = str(options.template)
    body: dict[str, Any] = (
        {"id": template.id}
        if template is not None
        else ({"id": ref} if _UUID.fullmatch(ref) else {"alias": ref})
    )
    body["data"] = dict(options.template_data or ())
    meta: dict[str, Any] = {}
    if options.webhook_id:
        meta["webhook_id"] = options.webhook_id
    if options.tags:
        meta["tags"] = list(options.tags)
    if options.flash:
        meta["flash"] = 1
    body["meta"] = meta
    return body
