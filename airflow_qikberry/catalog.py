"""
The account's DLT senders and templates, and a short-lived process-wide cache of them.

Read from the API's rows (``sms/senders``, ``sms/templates``, reference 4.16).

:class:`Catalog` is what the DLT pre-check (:mod:`airflow_qikberry.precheck`), sends by template and the
campaign consult: every template and sender of the account, found by DLT template id, alias, stored id or
name. When the account may not read ``sms/templates`` (a 403 or 404 there) the catalog says so
(``templates_unavailable``) instead of failing: the pre-check then reports that it could not run.
The lookups that fill it are :func:`airflow_qikberry.lookups.dlt_catalog`'s, for both hooks.

Example::

    catalog = hook.dlt_catalog()
    template = catalog.find("otp-login")          # alias, stored id, DLT template id or name
    template.template_id, template.sender, template.body
    [s.name for s in catalog.senders if s.approved]
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from airflow_qikberry.dlt import TemplateBody, TemplateBodyError
from airflow_qikberry.exceptions import QikberryServerError

__all__ = [
    "Catalog",
    "DltSender",
    "DltTemplate",
    "cached_catalog",
    "clear_cache",
]


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text or None


def _status(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _row(row: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(row, Mapping):
        raise QikberryServerError(f"The API answered {what} with a row that is not an object: {row!r:.100}")
    return row


@dataclass(frozen=True)
class DltTemplate:
    """
    One stored template.

    ``id`` (the API's uuid, what ``sms/send/template`` takes as ``id``), ``alias``,
    ``name``, ``template_id`` (the DLT id, None when it has none), ``sender`` (its sender's name), ``body``
    (``{{name}}`` placeholders), ``status`` (1 active, 0 inactive) and ``template_type``.
    """

    id: str
    name: str
    body: str
    alias: str | None = None
    template_id: str | None = None
    sender: str | None = None
    status: int | None = None
    template_type: str | None = None

    @classmethod
    def from_api(cls, row: Any) -> DltTemplate:
        row = _row(row, "sms/templates")
        body = row.get("body")
        if not isinstance(body, str) or _text(row.get("id")) is None:
            raise QikberryServerError(
                "The API answered sms/templates with a template without an id or a text body: "
                f"{dict(row)!r:.200}"
            )
        return cls(
            id=str(_text(row.get("id"))),
            name=_text(row.get("name")) or "",
            body=body,
            alias=_text(row.get("alias")),
            template_id=_text(row.get("template_id")),
            sender=_text(row.get("sender")),
            status=_status(row.get("status")),
            template_type=_text(row.get("template_type")),
        )

    @property
    def active(self) -> bool:
        """Active unless the API says ``status`` 0 (a template without a status is taken as active)."""
        return self.status != 0

    @cached_property
    def parsed(self) -> TemplateBody | None:
        """
        Return the body parsed for matching and rendering.

        None when the API stored a body this provider cannot read (a ``{{`` that opens no ``{{name}}``).
        """
        try:
            return TemplateBody.parse(self.body)
        except TemplateBodyError:
            return None

    def describe(self) -> str:
        """``'otp-login' (DLT 1107..., sender ACMEIN)`` for messages."""
        label = self.alias or self.name or self.id
        dlt = f"DLT {self.template_id}" if self.template_id else "no DLT id"
        return f"{label!r} ({dlt}, sender {self.sender or '?'}{', inactive' if not self.active else ''})"


@dataclass(frozen=True)
class DltSender:
    """
    One sender (DLT header).

    ``name``, ``service`` (route code), ``entity_id``, ``iso`` (country) and ``status`` (0 pending,
    1 approved, 2 rejected).
    """

    id: str
    name: str
    service: str | None = None
    entity_id: str | None = None
    iso: str | None = None
    status: int | None = None

    @classmethod
    def from_api(cls, row: Any) -> DltSender:
        row = _row(row, "sms/senders")
        name = _text(row.get("name"))
        if name is None:
            raise QikberryServerError(
                f"The API answered sms/senders with a sender without a name: {dict(row)!r:.200}"
            )
        service = row.get("service")
        code = _text(service.get("name")) if isinstance(service, Mapping) else _text(service)
        return cls(
            id=_text(row.get("id")) or name,
            name=name,
            service=code,
            entity_id=_text(row.get("entity_id")),
            iso=_text(row.get("iso")),
            status=_status(row.get("status")),
        )

    @property
    def approved(self) -> bool:
        """Approved unless the API says otherwise (a sender without a status is taken as approved)."""
        return self.status in (1, None)


@dataclass(frozen=True)
class Catalog:
    """
    The account's templates and senders.

    ``templates_unavailable`` / ``senders_unavailable`` say why a list could not be read (the account may
    not read that endpoint); the list is then empty.
    """

    templates: tuple[DltTemplate, ...] = ()
    senders: tuple[DltSender, ...] = ()
    templates_unavailable: str | None = None
    senders_unavailable: str | None = None
    _by: dict[str, dict[str, DltTemplate]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for key in ("id", "alias", "template_id", "name"):
            index: dict[str, DltTemplate] = {}
            for template in self.templates:
                value = getattr(template, key)
                if not value:
                    continue
                value = value.casefold() if key == "name" else value
                # An active template wins over an inactive one that shares a DLT id or a name.
                if value not in index or (template.active and not index[value].active):
                    index[value] = template
            self._by[key] = index

    def by_template_id(self, template_id: str) -> DltTemplate | None:
        """Return the template registered under this DLT template id."""
        return self._by["template_id"].get(template_id)

    def find(self, ref: str) -> DltTemplate | None:
        """
        Return the template named by ``ref``.

        Looked up by its stored id, its alias, its DLT template id, or its name (without regard to case), in
        that order.
        """
        ref = ref.strip()
        by = self._by
        return (
            by["id"].get(ref)
            or by["alias"].get(ref)
            or by["template_id"].get(ref)
            or by["name"].get(ref.casefold())
        )

    def service_of(self, template: DltTemplate) -> str | None:
        """
        Return the route a send by this template takes.

        Its sender's service, else the one its DLT type implies (transactional ``T``, promotional ``P``,
        service ``S``).
        """
        sender = self.sender(template.sender) if template.sender else None
        if sender is not None and sender.service:
            return sender.service
        kind = (template.template_type or "").casefold()
        return {"transactional": "T", "promotional": "P"}.get(
            kind, "S" if kind.startswith("service") else None
        )

    def sender(self, name: str) -> DltSender | None:
        """Return the account's sender of this name, compared without regard to case."""
        wanted = name.casefold()
        return next((s for s in self.senders if s.name.casefold() == wanted), None)

    def summary(self) -> str:
        """One line for ``test_connection`` and logs: how many senders and templates, and what is missing."""
        senders = f"{len(self.senders)} sender(s)"
        if self.senders_unavailable:
            senders = f"senders not available ({self.senders_unavailable})"
        if self.templates_unavailable:
            templates = f"templates not available ({self.templates_unavailable})"
        else:
            active = sum(t.active for t in self.templates)
            templates = f"{len(self.templates)} template(s), {active} active"
        return f"{senders}, {templates}"


# --- a short-lived, process-wide cache: many sends of one task (or of a worker) read the catalog once

_cache: dict[tuple[str, str], tuple[float, Catalog]] = {}
_lock = threading.Lock()


def cached_catalog(
    key: tuple[str, str], seconds: float, fetch: Callable[[], Catalog], *, refresh: bool = False
) -> Catalog:
    """
    Return the catalog of ``key`` (base URL, token key), cached or fetched.

    The one read less than ``seconds`` ago, else ``fetch()``-ed now.

    ``seconds`` 0 or ``refresh`` always fetch. Two threads that miss together may both fetch; the later
    answer is kept (both are the account's).
    """
    now = time.monotonic()
    if seconds > 0 and not refresh:
        with _lock:
            hit = _cache.get(key)
        if hit is not None and now - hit[0] < seconds:
            return hit[1]
    catalog = fetch()
    if seconds > 0:
        with _lock:
            _cache[key] = (time.monotonic(), catalog)
    return catalog


def clear_cache() -> None:
    """Forget every cached catalog (after editing templates, or between tests)."""
    with _lock:
        _cache.clear()
