"""
The send parameters, defined once: :class:`SendOptions`, one validated, immutable value.

A send takes, besides its recipients and text, a sender, a service (route), DLT template and entity ids, a
schedule, an encoding, a flash flag, a webhook id, a cap on SMS parts, opt-out tags, a campaign name and a
custom id. This module is their one definition: their types, their checks, how a templated value is read
back, and their names on the wire. Every entry point builds one :class:`SendOptions` from its arguments
(the hook's send methods from their keyword arguments, the operators and the notifier from their rendered
fields, the campaign engine from its options); everything below passes the value along.

Checks come in two stages. Building a :class:`SendOptions` checks what needs nothing else: types, yes/no
flags, ids, tags, encoding, max units, the form of the schedule and of the custom id.
:meth:`SendOptions.wire` checks what needs the connection (its defaults, the DLT header rule of the route,
the API's time zone, the schedule's window from now) and returns the parameters as the API names them.
Request bodies are :mod:`airflow_qikberry.payloads`'s.

The ``*Params`` typed dicts are the keyword arguments of the hook's send methods, one per endpoint: what
each endpoint takes (``sms/bulk`` takes no tags and no name, reference section 4.4; ``sms/send/template``
takes a stored template and its variables instead of a text, sender and route, reference section 4.6).
``dlt_check`` is not a wire parameter: it says whether the DLT pre-check (:mod:`airflow_qikberry.precheck`)
runs before the send.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from airflow_qikberry import sms_text, validation
from airflow_qikberry.exceptions import QikberryValidationError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow_qikberry.connection import ConnectionSettings
    from airflow_qikberry.sms_text import EncodingOption

__all__ = [
    "BatchParams",
    "BulkParams",
    "DltCheck",
    "SendOptions",
    "SendParams",
    "SmsParams",
    "TemplateParams",
    "TemplateSendParams",
    "checked_sender",
    "is_given",
    "validate_dlt_check",
]

#: Whether the DLT pre-check runs: ``"auto"`` where a template id is given and the template is known (it
#: says so when it cannot run), ``"required"`` (a send it cannot check fails), ``"off"``. ``True`` is
#: ``"auto"``, ``False`` ``"off"``.
DltCheck = Literal["auto", "required", "off"]


class SendParams(TypedDict, total=False):
    """The send parameters every endpoint takes, as keyword arguments of the hook's send methods."""

    sender: str | None
    service: str | None
    template_id: str | None
    entity_id: str | None
    schedule_at: datetime | str | None
    encoding: EncodingOption
    flash: bool
    webhook_id: str | None
    max_units: int | None
    dlt_check: DltCheck | bool


class SmsParams(SendParams, total=False):
    """``QikberryHook.send_sms``'s send parameters (``sms/send``)."""

    tags: Sequence[str] | str | None
    custom_id: str | None


class BatchParams(SendParams, total=False):
    """``QikberryHook.send_batch``'s send parameters (``sms/send/json``: custom ids are per node)."""

    tags: Sequence[str] | str | None
    name: str | None


class BulkParams(SendParams, total=False):
    """``QikberryHook.upload_bulk``'s send parameters (``sms/bulk``: no tags, no name)."""

    custom_id: str | None


class TemplateParams(TypedDict, total=False):
    """
    ``QikberryHook.send_template``'s keyword arguments (``sms/send/template``).

    Sender and route are the template's, the custom id is sent as ``meta.foreign_id``.
    """

    flash: bool
    webhook_id: str | None
    tags: Sequence[str] | str | None
    custom_id: str | None
    dlt_check: DltCheck | bool


class TemplateSendParams(TemplateParams, total=False):
    """
    Everything ``sms/send/template`` takes.

    :class:`TemplateParams` and the stored template (alias, id or DLT template id) with its variables
    (``template_data``, the API's ``data``).
    """

    template: str | None
    template_data: Mapping[str, Any] | None


# Parameters a template may have rendered from text into an int ("123456" as a sender or an id under
# render_template_as_native_obj): read back as text.
_TEXT_PARAMS = frozenset(
    {"sender", "service", "template_id", "entity_id", "webhook_id", "tags", "name", "custom_id", "template"}
)
# What a field holds when it was not given: refuse_unless refuses anything else.
_NOT_GIVEN: dict[str, Any] = {"encoding": "auto", "flash": False, "tags": (), "dlt_check": "auto"}
_VARIABLE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def validate_dlt_check(value: Any, *, field: str = "dlt_check") -> DltCheck:
    """``"auto"``, ``"required"`` or ``"off"``; a yes/no (``True``, ``"false"``) is ``"auto"`` / ``"off"``."""
    if isinstance(value, str) and value.strip().lower() in ("auto", "required", "off"):
        return value.strip().lower()  # type: ignore[return-value]
    try:
        return "auto" if validation.validate_flag(value, field=field) else "off"
    except QikberryValidationError:
        raise QikberryValidationError(
            f"{field}: {validation.shown(value)} is not 'auto', 'required' or 'off' (or True/False).",
            field=field,
        ) from None


def _template_data(value: Any) -> tuple[tuple[str, str], ...]:
    """
    Return the variables of a send by template as (name, text) pairs.

    A dict rendered as text is read back.
    """
    value = validation.rendered_literal(value, "template_data")
    if not isinstance(value, Mapping):
        raise QikberryValidationError(
            f"template_data: must be a mapping of variable names to values, e.g. {{'otp': '4711'}}, got "
            f"{type(value).__name__} {validation.shown(value)}.",
            field="template_data",
        )
    pairs = []
    for key, raw in value.items():
        if not isinstance(key, str) or not key or not set(key) <= _VARIABLE:
            raise QikberryValidationError(
                f"template_data: {validation.shown(key)} is not a variable name (letters and digits, as in "
                "{{otp}}).",
                field="template_data",
            )
        where = f"template_data.{key}"
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float, Decimal)):
            raise QikberryValidationError(
                f"{where}: must be text or a number, got {type(raw).__name__} {validation.shown(raw)}.",
                field=where,
            )
        if not isinstance(raw, str) and not _finite(raw):
            # A NaN is how pandas hands over an empty cell: "nan" would go out as the variable's text.
            raise QikberryValidationError(
                f"{where}: is {raw!r}, not a value (an empty cell read by pandas is NaN); give the text.",
                field=where,
            )
        text = raw if isinstance(raw, str) else str(raw)
        if not text.strip():
            raise QikberryValidationError(f"{where}: is blank; the API needs a value.", field=where)
        pairs.append((key, text))
    return tuple(pairs)


def _finite(number: float | Decimal) -> bool:
    return number.is_finite() if isinstance(number, Decimal) else math.isfinite(number)


def is_given(value: Any) -> bool:
    """
    Whether a caller gave a parameter.

    ``None`` and ``""`` mean "use the default"; anything else, even an empty dict or list, is given and gets
    checked (and refused) rather than quietly replaced.
    """
    return value is not None and not (isinstance(value, str) and value == "")


def _name(name: Any) -> str | None:
    if name is None:
        return None
    if isinstance(name, str) and not name.strip():
        raise QikberryValidationError("name must not be blank.", field="name")
    return validation.validate_text_id(name, field="name", allow_int=True)


def checked_sender(value: Any, settings: ConnectionSettings, *, service: str, field: str = "sender") -> str:
    """
    Return a sender checked for ``service``.

    A DLT header on Indian DLT routes unless the connection turns the check off (``check_dlt_sender``).
    """
    return validation.validate_sender(
        value, service=service, dlt=None if settings.check_dlt_sender else False, field=field
    )


@dataclass(frozen=True, init=False, slots=True)
class SendOptions:
    """
    The send parameters of one send, checked.

    Sender and service are checked for their route by :meth:`wire`, against the connection (left out, they are
    the connection's).

    ``SendOptions(**kwargs)`` checks every argument that needs no connection and raises
    :class:`~airflow_qikberry.exceptions.QikberryValidationError` naming the field. ``None`` means "not
    given", and so does ``""`` but for ``schedule_at`` (not a time) and ``name`` (blank), which are refused.
    Tags are kept as a tuple, the schedule as an aware datetime.

    Example::

        from airflow_qikberry import sends
        from airflow_qikberry.send_options import SendOptions

        options = SendOptions(sender="QIKBRY", template_id="1107160000000012345", tags="otp")
        hook.send_prepared(sends.prepare_sms(hook.settings, "919876543210", "Your OTP is 4711", options))
    """

    sender: str | None
    service: str | None
    template_id: str | None
    entity_id: str | None
    schedule_at: datetime | None
    encoding: EncodingOption
    flash: bool
    webhook_id: str | None
    max_units: int | None
    tags: tuple[str, ...]
    name: str | None
    custom_id: str | None
    template: str | None
    template_data: tuple[tuple[str, str], ...] | None
    dlt_check: DltCheck

    def __init__(
        self,
        *,
        sender: str | None = None,
        service: str | None = None,
        template_id: str | None = None,
        entity_id: str | None = None,
        schedule_at: datetime | str | None = None,
        encoding: EncodingOption = "auto",
        flash: bool = False,
        webhook_id: str | None = None,
        max_units: int | None = None,
        tags: Sequence[str] | str | None = None,
        name: str | None = None,
        custom_id: str | None = None,
        template: str | None = None,
        template_data: Mapping[str, Any] | str | None = None,
        dlt_check: DltCheck | bool = "auto",
    ) -> None:
        # Sender and service are checked by wire(): the DLT rule depends on the route, and either may come
        # from the connection. A send builds one of these every time: the values left out (None, the
        # defaults) skip their check, and the fields are set one by one rather than through a dict.
        v, setattr_ = validation, object.__setattr__
        setattr_(self, "sender", sender if is_given(sender) else None)
        setattr_(self, "service", service if is_given(service) else None)
        setattr_(self, "encoding", encoding if encoding == "auto" else sms_text.validate_encoding(encoding))
        setattr_(self, "max_units", None if max_units is None else sms_text.validate_max_units(max_units))
        setattr_(
            self,
            "template_id",
            None if template_id is None else v.validate_dlt_id(template_id, field="template_id"),
        )
        setattr_(
            self, "entity_id", None if entity_id is None else v.validate_dlt_id(entity_id, field="entity_id")
        )
        setattr_(self, "schedule_at", None if schedule_at is None else v.parse_schedule(schedule_at))
        setattr_(self, "flash", flash if flash is False else v.validate_flag(flash, field="flash"))
        setattr_(
            self,
            "webhook_id",
            None if webhook_id is None else v.validate_text_id(webhook_id, field="webhook_id"),
        )
        setattr_(self, "tags", () if tags is None else tuple(v.validate_tags(tags)))
        setattr_(self, "name", None if name is None else _name(name))
        # A batch's per-node custom ids are checked once, by their builder: its root has none to check.
        setattr_(self, "custom_id", None if custom_id is None else v.validate_custom_id(custom_id))
        setattr_(
            self,
            "template",
            None if template is None else v.validate_text_id(template, field="template", allow_int=True),
        )
        setattr_(self, "template_data", None if template_data is None else _template_data(template_data))
        setattr_(self, "dlt_check", dlt_check if dlt_check == "auto" else validate_dlt_check(dlt_check))

    @classmethod
    def from_keywords(cls, method: str, params: Mapping[str, Any], allowed: Any) -> SendOptions:
        """
        Return the options of a hook send method's keyword arguments (``allowed``: its ``*Params``).

        A keyword the method does not take is a ``TypeError``, as for any Python function.
        """
        for key in params:
            if key not in allowed.__optional_keys__:
                raise TypeError(f"{method}() got an unexpected keyword argument {key!r}")
        return cls(**params)

    @classmethod
    def rendered(cls, **values: Any) -> SendOptions:
        """
        Return the options of values a template may have rendered.

        What rendering turned into another type is undone first. A number given for a text parameter
        (``"123456"`` rendered natively) is text again, ``""`` is "not given", and tags rendered as a list's
        text are read back as a list.
        """
        return cls(**{key: _unrendered(key, val) for key, val in values.items()})

    @classmethod
    def from_operator(cls, task: object, **overrides: Any) -> SendOptions:
        """
        Return the options of an operator or notifier, :meth:`rendered`.

        Each parameter is read from ``task``'s instance attribute of the same name (its rendered template
        field; a method or class attribute of that name is not a parameter); ``overrides`` win.
        """
        attributes = vars(task)
        given = {key: attributes[key] for key in _NAMES if key in attributes}
        return cls.rendered(**{**given, **overrides})

    def replace(self, **changes: Any) -> SendOptions:
        """Return a copy with ``changes``, checked like a new value."""
        return replace(self, **changes)

    def refuse_unless(self, allowed: Any, path: str) -> None:
        """Refuse a parameter that the endpoint ``path`` does not take (``allowed``), rather than drop it."""
        for key in _not_taken(allowed):
            if getattr(self, key) != _NOT_GIVEN.get(key):
                raise QikberryValidationError(
                    f"{key}: {path} does not take this parameter; leave it out.", field=key
                )

    def wire(self, settings: ConnectionSettings) -> dict[str, Any]:
        """
        Return the parameters as the API names them, the connection's defaults filled in and checked with it.

        Checks the service, the sender for that route (a DLT header on Indian DLT routes), the connection's
        entity id, and the schedule's window (more than 5 minutes, less than 92 days ahead), written in the
        API's time zone. The text and its type are the payload's (:mod:`.payloads`), the custom id the
        send's (:mod:`.sends`).
        """
        service = validation.validate_service(self.service if is_given(self.service) else settings.service)
        sender = self.sender if is_given(self.sender) else settings.sender
        sender = checked_sender(sender, settings, service=service)
        out: dict[str, Any] = {"sender": sender, "service": service}
        if self.max_units is not None:
            out["max_units"] = self.max_units
        if self.template_id:
            out["template_id"] = self.template_id
        entity_id = self.entity_id or validation.validate_dlt_id(settings.entity_id, field="entity_id")
        if entity_id:
            out["entity_id"] = entity_id
        when = validation.validate_schedule(self.schedule_at, timezone=settings.api_timezone)
        if when:
            out["time"] = when
        if self.flash:
            out["flash"] = 1
        if self.webhook_id:
            out["webhook_id"] = self.webhook_id
        if self.tags:
            out["tags"] = list(self.tags)
        if self.name is not None:
            out["name"] = self.name
        return out


_NAMES = frozenset(f.name for f in fields(SendOptions))


@cache
def _not_taken(allowed: Any) -> frozenset[str]:
    """Return the parameters an endpoint's ``*Params`` does not take (``refuse_unless``, every send)."""
    return _NAMES - allowed.__optional_keys__


def _unrendered(key: str, value: Any) -> Any:
    if key in _TEXT_PARAMS and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if key == "tags":
        return validation.rendered_list(value, "tags")
    if (key in _TEXT_PARAMS or key == "schedule_at") and value == "":
        return None
    return value
