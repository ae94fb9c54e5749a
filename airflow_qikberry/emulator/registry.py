"""
The account's DLT senders and templates (``sms/senders``, ``sms/templates``): storage, checks and views.

Transport-free and lock-free: :class:`EmulatorState` owns one :class:`Registry` and calls it under its lock.
The same field checks serve the API (their messages become a Laravel 422) and the seeds given in
``EmulatorConfig.senders`` / ``templates`` (they become a ``ValueError``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_qikberry.emulator.dlt import (
    MATCH,
    VARIABLE_TOO_LONG,
    TemplateBody,
    TemplateBodyError,
    match,
    parse_body,
)

TEMPLATE_TYPES: dict[str, str] = {
    "T": "Transactional",
    "P": "Promotional",
    "SI": "Service Implicit",
    "SE": "Service Explicit",
}
# Service of the sender created for a seeded template whose sender was not seeded.
SEED_SERVICE_OF_TYPE = {"T": "T", "P": "P", "SI": "S", "SE": "S"}
SENDER_STATUSES = (0, 1, 2)  # pending, approved, rejected
SENDER_NAME_RE = re.compile(r"^[A-Za-z0-9]{3,15}$")
COUNTRY_RE = re.compile(r"^[A-Za-z]{2}$")
DIGITS_RE = re.compile(r"^[0-9]{1,30}$")
# Seeded objects get stable ids (the same seed gives the same ids on every run and reset).
_SEED_NAMESPACE = uuid.UUID("6f1d9a3e-5b0c-4c8e-9a57-1d2e3f405162")

SENDER_KEYS = ("name", "country_code", "service", "entity_id", "entity_name", "header_id", "status", "id")
TEMPLATE_KEYS = ("sender", "name", "body", "template_id", "type", "alias", "is_english", "status", "id")

Problems = dict[str, str]


@dataclass
class Sender:
    """A registered sender (header) of ``sms/senders``."""

    id: str
    name: str
    service: str
    iso: str
    entity_id: str
    entity_name: str
    header_id: str
    status: int
    created_at: str
    updated_at: str


@dataclass
class Template:
    """A registered template of ``sms/templates``."""

    id: str
    sender_id: str
    sender: str
    service: str
    template_id: str
    type: str
    name: str
    alias: str
    body: TemplateBody
    is_english: int
    status: int
    created_at: str
    updated_at: str


def text(value: Any) -> str | None:
    """Return a string field as the API reads it (numbers stringified, blank is absent); None when absent."""
    if value is None or isinstance(value, bool):
        return None if value is None else ("1" if value else "0")
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        stripped = value.strip()
        return stripped or None
    return None


def _flag(raw: Mapping[str, Any], key: str, allowed: tuple[int, ...], problems: Problems) -> int | None:
    if key not in raw or raw[key] is None:
        return None
    value = text(raw[key])
    if value is None or not value.isdigit() or int(value) not in allowed:
        problems[key] = f"The selected {key.replace('_', ' ')} is invalid."
        return None
    return int(value)


def _bad_type(raw: Mapping[str, Any], key: str, problems: Problems) -> bool:
    value = raw.get(key)
    if value is not None and not isinstance(value, (str, int, float, bool)):
        problems[key] = f"The {key.replace('_', ' ')} must be a string."
        return True
    return False


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "template"


@dataclass
class Registry:
    """Senders and templates of the account, in creation order."""

    services: dict[str, str]
    senders: dict[str, Sender] = field(default_factory=dict)
    templates: dict[str, Template] = field(default_factory=dict)

    # ------------------------------------------------------------------ lookups
    def sender_named(self, name: str) -> Sender | None:
        wanted = name.casefold()
        return next((s for s in self.senders.values() if s.name.casefold() == wanted), None)

    def template_by_alias(self, alias: str) -> Template | None:
        return next((t for t in self.templates.values() if t.alias == alias), None)

    def template_by_dlt_id(self, template_id: str) -> Template | None:
        return next((t for t in self.templates.values() if t.template_id == template_id), None)

    def list_senders(self, name_filter: str | None) -> list[Sender]:
        return [s for s in self.senders.values() if _contains(s.name, name_filter)]

    def list_templates(self, name_filter: str | None) -> list[Template]:
        return [t for t in self.templates.values() if _contains(t.name, name_filter)]

    # ------------------------------------------------------------------ senders
    def check_sender(self, raw: Mapping[str, Any], current: Sender | None) -> tuple[dict[str, Any], Problems]:
        """Clean sender fields and problems (field -> Laravel message); ``current`` is None on create."""
        problems: Problems = {}
        clean: dict[str, Any] = {}
        creating = current is None
        for key in ("name", "country_code", "service", "entity_id", "entity_name", "header_id"):
            if _bad_type(raw, key, problems):
                continue
            value = text(raw.get(key))
            if value is None:
                if creating and key in ("name", "country_code", "service"):
                    problems[key] = f"The {key.replace('_', ' ')} field is required."
                continue
            clean[key] = value
        name = clean.get("name")
        if name is not None:
            if not SENDER_NAME_RE.match(name):
                problems["name"] = "The name must be 3 to 15 letters or digits."
            else:
                other = self.sender_named(name)
                if other is not None and other is not current:
                    problems["name"] = "The name has already been taken."
        country = clean.get("country_code")
        if country is not None:
            if not COUNTRY_RE.match(country):
                problems["country_code"] = "The country code must be a two-letter ISO code."
            else:
                clean["country_code"] = country.upper()
        service = clean.get("service")
        if service is not None and service not in self.services:
            problems["service"] = "The selected service is invalid."
        entity_id = clean.get("entity_id")
        if entity_id is not None and not DIGITS_RE.match(entity_id):
            problems["entity_id"] = "The entity id must be a number."
        iso = clean.get("country_code", current.iso if current else None)
        if iso == "IN":
            for key in ("entity_id", "entity_name"):
                has = clean.get(key) or (getattr(current, key) if current else "")
                if not has and key not in problems:
                    problems[key] = f"The {key.replace('_', ' ')} field is required when country code is IN."
        status = _flag(raw, "status", SENDER_STATUSES, problems)
        if status is not None:
            clean["status"] = status
        return clean, problems

    def add_sender(self, clean: Mapping[str, Any], stamp: str, sender_id: str | None = None) -> Sender:
        sender = Sender(
            id=sender_id or str(uuid.uuid4()),
            name=clean["name"],
            service=clean["service"],
            iso=clean["country_code"],
            entity_id=clean.get("entity_id", ""),
            entity_name=clean.get("entity_name", ""),
            header_id=clean.get("header_id", ""),
            # The emulator has no approval desk: a sender is approved unless told otherwise.
            status=clean.get("status", 1),
            created_at=stamp,
            updated_at=stamp,
        )
        self.senders[sender.id] = sender
        return sender

    def update_sender(self, sender: Sender, clean: Mapping[str, Any], stamp: str) -> Sender:
        renamed = "name" in clean and clean["name"] != sender.name
        for key, value in clean.items():
            setattr(sender, "iso" if key == "country_code" else key, value)
        sender.updated_at = stamp
        if renamed or "service" in clean:
            for template in self.templates.values():
                if template.sender_id == sender.id:
                    template.sender, template.service = sender.name, sender.service
        return sender

    def sender_view(self, sender: Sender) -> dict[str, Any]:
        codes = list(self.services)
        service_id = codes.index(sender.service) + 1 if sender.service in codes else None
        return {
            "id": sender.id,
            "name": sender.name,
            "service": {
                "id": service_id,
                "display_name": self.services.get(sender.service, sender.service),
                "name": sender.service,
            },
            "entity_name": sender.entity_name or None,
            "entity_id": sender.entity_id or None,
            "header_id": sender.header_id or None,
            "iso": sender.iso,
            "message": None,
            "document": None,
            "is_open": 0,
            "purpose": None,
            "status": sender.status,
            "created_at": sender.created_at,
            "updated_at": sender.updated_at,
        }

    # ------------------------------------------------------------------ templates
    def check_template(
        self, raw: Mapping[str, Any], current: Template | None
    ) -> tuple[dict[str, Any], Problems]:
        """Clean template fields and problems; ``current`` is None on create."""
        problems: Problems = {}
        clean: dict[str, Any] = {}
        creating = current is None
        for key in ("sender", "name", "template_id", "type", "alias"):
            if _bad_type(raw, key, problems):
                continue
            value = text(raw.get(key))
            if value is None:
                if creating and key in ("sender", "name"):
                    problems[key] = f"The {key} field is required."
                continue
            clean[key] = value
        body_raw = raw.get("body")
        if body_raw is None or (isinstance(body_raw, str) and not body_raw.strip()):
            if creating:
                problems["body"] = "The body field is required."
        elif not isinstance(body_raw, str):
            problems["body"] = "The body must be a string."
        else:
            try:
                clean["body"] = parse_body(body_raw)
            except TemplateBodyError as exc:
                problems["body"] = f"The body is invalid: {exc}."
        sender: Sender | None = None
        if "sender" in clean:
            sender = self.sender_named(clean["sender"])
            if sender is None:
                problems["sender"] = "The selected sender is invalid."
        elif current is not None:
            sender = self.senders.get(current.sender_id)
        template_id = clean.get("template_id")
        if template_id is not None:
            if not DIGITS_RE.match(template_id):
                problems["template_id"] = "The template id must be a number."
            else:
                other = self.template_by_dlt_id(template_id)
                if other is not None and other is not current:
                    problems["template_id"] = "The template id has already been taken."
        kind = clean.get("type")
        if kind is not None:
            kind = kind.upper()
            if kind not in TEMPLATE_TYPES:
                problems["type"] = "The selected type is invalid."
            clean["type"] = kind
        if sender is not None and sender.iso == "IN":
            # DLT ids and types are required for India (reference 4.16).
            for key in ("template_id", "type"):
                has = clean.get(key) or (getattr(current, key) if current else "")
                if not has and key not in problems:
                    problems[key] = f"The {key.replace('_', ' ')} field is required for India."
        alias = clean.get("alias")
        if alias is not None:
            other = self.template_by_alias(alias)
            if other is not None and other is not current:
                problems["alias"] = "The alias has already been taken."
        for key in ("is_english", "status"):
            flag = _flag(raw, key, (0, 1), problems)
            if flag is not None:
                clean[key] = flag
        if sender is not None:
            clean["_sender"] = sender
        return clean, problems

    def add_template(self, clean: Mapping[str, Any], stamp: str, template_id: str | None = None) -> Template:
        sender: Sender = clean["_sender"]
        body: TemplateBody = clean["body"]
        template = Template(
            id=template_id or str(uuid.uuid4()),
            sender_id=sender.id,
            sender=sender.name,
            service=sender.service,
            template_id=clean.get("template_id", ""),
            type=clean.get("type", ""),
            name=clean["name"],
            alias=clean.get("alias") or self._free_alias(slug(clean["name"])),
            body=body,
            is_english=clean.get("is_english", 1 if body.source.isascii() else 0),
            status=clean.get("status", 1),
            created_at=stamp,
            updated_at=stamp,
        )
        self.templates[template.id] = template
        return template

    def update_template(self, template: Template, clean: Mapping[str, Any], stamp: str) -> Template:
        # As documented (reference 4.16, edit example): a new name keeps the alias given at creation.
        for key, value in clean.items():
            if key == "_sender":
                template.sender_id, template.sender, template.service = value.id, value.name, value.service
            elif key != "sender":
                setattr(template, key, value)
        template.updated_at = stamp
        return template

    def _free_alias(self, base: str) -> str:
        alias, n = base, 1
        while self.template_by_alias(alias) is not None:
            n += 1
            alias = f"{base}-{n}"
        return alias

    def template_view(self, template: Template) -> dict[str, Any]:
        return {
            "id": template.id,
            "sender_id": template.sender_id,
            "template_id": template.template_id or None,
            "template_type": TEMPLATE_TYPES.get(template.type),
            "sender": template.sender,
            "name": template.name,
            "alias": template.alias,
            "body": template.body.source,
            "content": None,
            "body_length": len(template.body.source),
            "match_count": 0,
            "percentage": 0,
            "is_complete": 0,
            "is_english": template.is_english,
            "status": template.status,
            "created_at": template.created_at,
            "updated_at": template.updated_at,
        }

    # ------------------------------------------------------------------ seeds
    def seed(self, senders: list[dict[str, Any]], templates: list[dict[str, Any]], stamp: str) -> None:
        """
        Add seeded senders, then templates; ``ValueError`` naming the seed and field on bad input.

        A template whose sender was not seeded gets one: approved, country IN, service by template type.
        """
        for i, raw in enumerate(senders):
            clean, problems = self.check_sender(raw, None)
            _raise_seed_problems(f"senders[{i}]", problems)
            self.add_sender(clean, stamp, _seed_id(raw, f"sender:{clean['name'].casefold()}"))
        for i, raw in enumerate(templates):
            name = text(raw.get("sender"))
            if name is not None and self.sender_named(name) is None and SENDER_NAME_RE.match(name):
                kind = (text(raw.get("type")) or "T").upper()
                self.add_sender(
                    {
                        "name": name,
                        "service": SEED_SERVICE_OF_TYPE.get(kind, "T"),
                        "country_code": "IN",
                        "entity_id": "1101000000000000000",
                        "entity_name": "Emulator Entity",
                    },
                    stamp,
                    str(uuid.uuid5(_SEED_NAMESPACE, f"sender:{name.casefold()}")),
                )
            clean, problems = self.check_template(raw, None)
            _raise_seed_problems(f"templates[{i}]", problems)
            self.add_template(clean, stamp, _seed_id(raw, f"template:{i}:{clean['name']}"))


def _seed_id(raw: Mapping[str, Any], key: str) -> str:
    given = text(raw.get("id"))
    return given or str(uuid.uuid5(_SEED_NAMESPACE, key))


def _raise_seed_problems(where: str, problems: Problems) -> None:
    if problems:
        first_key, first = next(iter(problems.items()))
        raise ValueError(f"{where}.{first_key}: {first}")


def _contains(value: str, needle: str | None) -> bool:
    return not needle or needle.lower() in value.lower()


def check_seed_lists(senders: Any, templates: Any, services: dict[str, str]) -> None:
    """Validate ``EmulatorConfig.senders`` / ``templates`` by seeding a scratch registry (``ValueError``)."""
    for name, value, keys in (("senders", senders, SENDER_KEYS), ("templates", templates, TEMPLATE_KEYS)):
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise ValueError(f"{name} must be a list of objects")
        for i, item in enumerate(value):
            unknown = sorted(set(item) - set(keys))
            if unknown:
                raise ValueError(f"{name}[{i}] has unknown key(s): {', '.join(unknown)}")
    Registry(dict(services)).seed(senders, templates, "")


# ---------------------------------------------------------------------------- the network's DLT check
DLT_INVALID_TEMPLATE = "DLT-INV-TM-ID"
DLT_TEMPLATE_INACTIVE = "DLT-TM-INACTIVE"
DLT_SENDER_NOT_REGISTERED = "DLT-SENDER-NOT-REG-TM"
DLT_HEADER_INACTIVE = "DLT-HEADER-INACTIVE"
DLT_VARIABLE_TOO_LONG = "DLT-TM-VAR-EXECEED"  # sic: the API's spelling
DLT_REJECTED = "DLT-REJECTED"


def dlt_check(
    registry: Registry, template_id: str, sender: str, text: str, max_chars: int
) -> tuple[str, str]:
    """
    Return the final DLT status a network gives a message, and why; ``("", "")`` when it passes.

    Checked in this order, the first failure wins: the template id is registered (``DLT-INV-TM-ID``), the
    template is active (``DLT-TM-INACTIVE``), the sender is the template's sender, compared without regard to
    case (``DLT-SENDER-NOT-REG-TM``), that sender, when registered, is approved (``DLT-HEADER-INACTIVE``),
    the text matches the body (``DLT-TM-VAR-EXECEED`` when it does only with a variable over ``max_chars``,
    else ``DLT-REJECTED``; rules in :mod:`airflow_qikberry.emulator.dlt`).
    """
    template = registry.template_by_dlt_id(template_id) if template_id else None
    if template is None:
        shown = repr(template_id) if template_id else "none given"
        return DLT_INVALID_TEMPLATE, f"template id {shown} is not registered"
    if template.status != 1:
        return DLT_TEMPLATE_INACTIVE, f"template {template_id} is inactive"
    if sender.casefold() != template.sender.casefold():
        return (
            DLT_SENDER_NOT_REGISTERED,
            f"sender {sender!r} is not the template's sender {template.sender!r}",
        )
    header = registry.sender_named(sender)
    if header is not None and header.status != 1:
        return DLT_HEADER_INACTIVE, f"sender {header.name!r} is not approved (status {header.status})"
    result = match(template.body, text, max_chars)
    if result.verdict == MATCH:
        return "", ""
    if result.verdict == VARIABLE_TOO_LONG:
        return DLT_VARIABLE_TOO_LONG, result.reason
    return DLT_REJECTED, result.reason
