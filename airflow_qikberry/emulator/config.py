"""Every knob of the emulator, as one dataclass, plus the validation used when it is changed at runtime."""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

from airflow_qikberry.emulator.developer import ROUTINGS, VERIFICATIONS
from airflow_qikberry.emulator.registry import check_seed_lists

DEFAULT_TOKEN = "emulator-token"
NUMBER_FORMATS = ("plain", "plus")
DLR_SPREAD_ORDERS = ("submit", "random")
STATUS_ORDERS = ("submit", "newest_first")
DEFAULT_CREDITS = 10000
DEFAULT_UNIT_CHARGE = 1

DEFAULT_SERVICES: dict[str, str] = {
    "T": "Transactional SMS",
    "P": "Promotional SMS",
    "S": "TransScrub SMS",
    "G": "Global SMS",
}

DEFAULT_OUTCOME_RULES: list[dict[str, str]] = [
    {"match": "999$", "status": "UNDELIV"},
    {"match": "998$", "status": "EXPIRED"},
    {"match": "997$", "status": "DNDNUMB"},
]


def _services() -> dict[str, str]:
    return dict(DEFAULT_SERVICES)


def _credits() -> dict[str, float]:
    return {code: DEFAULT_CREDITS for code in DEFAULT_SERVICES}


def _unit_charges() -> dict[str, float]:
    return {code: DEFAULT_UNIT_CHARGE for code in DEFAULT_SERVICES}


def _dlt_services() -> list[str]:
    return ["T", "P", "S"]


def _outcome_rules() -> list[dict[str, str]]:
    return [dict(rule) for rule in DEFAULT_OUTCOME_RULES]


@dataclass
class EmulatorConfig:
    """
    Configuration of an :class:`~airflow_qikberry.emulator.Emulator`.

    Documented API behaviour is fixed; everything the reference leaves open is a field here.

    Example::

        cfg = EmulatorConfig(token="tok", port=0, seed=7, dlr_delay_seconds=0.5, rate_limit_per_minute=60)
        with Emulator(cfg) as emu:
            print(emu.base_url)
    """

    token: str = DEFAULT_TOKEN
    host: str = "127.0.0.1"
    port: int = 0
    seed: int = 0
    base_path: str = "/api/v2/"
    # Service code -> display name; credits and per-unit charges per service code.
    services: dict[str, str] = field(default_factory=_services)
    credits: dict[str, float] = field(default_factory=_credits)
    unit_charges: dict[str, float] = field(default_factory=_unit_charges)
    # Services billed afterwards: their balance row says postpaid 1 and a send never fails for credits.
    postpaid_services: list[str] = field(default_factory=list)
    # Delivery lifecycle (seconds of emulator time).
    dlr_delay_seconds: float = 2.0
    outcome_rules: list[dict[str, str]] = field(default_factory=_outcome_rules)
    duplicate_window_seconds: float = 600.0
    schedule_min_seconds: float = 300.0
    schedule_max_seconds: float = 92 * 86400.0
    # Throttling of GET requests per token, fixed 60-second window.
    rate_limit_per_minute: int = 1000
    html_login_redirect: bool = True
    insufficient_balance_status: int = 422
    # Status of the answer to a text holding an unpaired UTF-16 surrogate (a JSON "\ud83d" escape with no
    # partner): it has no UTF-8 form, so the API cannot store it (assumed a validation error, 422).
    unpaired_surrogate_status: int = 422
    # Delivery-report pushes.
    webhook_retries: int = 3
    webhook_retry_interval: float = 1800.0
    webhook_timeout_seconds: float = 5.0
    # Verification challenge on webhook creation: "challenge" (a webhook whose endpoint does not answer it
    # is saved inactive), "reject" (it is refused with a 422) or "off".
    webhook_verification: str = "challenge"
    # Where a delivery report goes when the send named a webhook_id and subscriptions exist too
    # (undocumented): "webhook_id_first" (only the send's webhook) or "both" (each webhook once).
    webhook_routing: str = "webhook_id_first"
    # DLT senders and templates the account starts with (see docs/emulator.md for the keys).
    senders: list[dict[str, Any]] = field(default_factory=list)
    templates: list[dict[str, Any]] = field(default_factory=list)
    # DLT mode: sends on these services that carry a template_id (or are sent by template) are checked
    # against the registered templates like a network does; a failure is a final DLT-* status.
    dlt_mode: bool = False
    dlt_services: list[str] = field(default_factory=_dlt_services)
    dlt_variable_max_chars: int = 30
    # An HTTP error status (e.g. 403) that every sms/templates request gets: templates not available.
    templates_unavailable_status: int | None = None
    timezone: str = "Asia/Kolkata"
    # Request limits.
    max_message_chars: int = 4096
    max_tags: int = 3
    max_numbers_per_request: int = 50_000
    max_bulk_numbers: int = 500_000
    max_body_bytes: int = 200 * 1024 * 1024
    # Ways a real API may disagree with a client's assumptions (defaults follow the reference).
    # Seconds of emulator time between accepting a message and showing it to sms/status lookups.
    visibility_delay_seconds: float = 0.0
    # "plain" writes mobile numbers as digits with country code, "plus" as "+<digits>".
    number_format: str = "plain"
    # Rows per page of paginated sms/status answers; also paginate id / cid / mobile lookups.
    status_page_size: int = 100
    paginate_lookups: bool = False
    # Whether rows accepted through sms/bulk keep the request's ``custom`` (undocumented).
    bulk_keeps_custom: bool = True
    # Delivery reports of one request arriving over this many seconds after the DLR delay instead of all at
    # once, in submit order or in a seeded random order.
    dlr_spread_seconds: float = 0.0
    dlr_spread_order: str = "submit"
    # Order of sms/status rows (so of group pages): undocumented; "newest_first" is Laravel's latest().
    status_order: str = "submit"
    # Numbers the API will not text. Suppressed (opted out of everything): left out of a send silently, the
    # 200 answer's rows and count skipping them. Refused (a blocked series): the whole request is refused
    # with a 422 naming the node (``nodes.<i>.to``, or ``to``), or, with ``refusal_names_node`` False, a
    # 422 whose message names neither the node nor the number.
    suppressed_numbers: list[str] = field(default_factory=list)
    refused_numbers: list[str] = field(default_factory=list)
    refusal_names_node: bool = True
    # Inspection: how many individual requests /_emulator/requests keeps (counts are kept for all).
    request_log_limit: int = 10_000
    tick_interval_seconds: float = 0.2
    # Emulator time stands still between ``advance_clock`` calls (DLR delays, visibility, rate-limit windows,
    # duplicate windows): a test that checks "not yet at N - 1 s, then at N + 1 s" needs no margin for the
    # real seconds a loaded machine spends between its requests. Off: real time plus what was advanced.
    manual_clock: bool = False

    def copy(self) -> EmulatorConfig:
        return copy.deepcopy(self)

    def public_dict(self) -> dict[str, Any]:
        """Return the configuration as JSON-ready data, with the token masked."""
        data = dataclasses.asdict(self)
        data["token"] = "*****" if self.token else ""
        return data


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(EmulatorConfig))
_NON_NEGATIVE_FLOATS = (
    "dlr_delay_seconds",
    "duplicate_window_seconds",
    "schedule_min_seconds",
    "schedule_max_seconds",
    "webhook_retry_interval",
    "visibility_delay_seconds",
    "dlr_spread_seconds",
)
_POSITIVE_FLOATS = ("webhook_timeout_seconds", "tick_interval_seconds")
_NON_NEGATIVE_INTS = ("seed", "webhook_retries", "port")
_POSITIVE_INTS = (
    "rate_limit_per_minute",
    "max_message_chars",
    "max_numbers_per_request",
    "max_bulk_numbers",
    "max_body_bytes",
    "request_log_limit",
    "status_page_size",
    "dlt_variable_max_chars",
)
_ERROR_STATUSES = ("insufficient_balance_status", "unpaired_surrogate_status")
_INTS = (*_NON_NEGATIVE_INTS, *_POSITIVE_INTS, *_ERROR_STATUSES, "max_tags")
_BOOLS = (
    "html_login_redirect",
    "paginate_lookups",
    "bulk_keeps_custom",
    "refusal_names_node",
    "dlt_mode",
    "manual_clock",
)
_CHOICES: dict[str, tuple[str, ...]] = {
    "webhook_verification": VERIFICATIONS,
    "webhook_routing": ROUTINGS,
}
_NUMBER_LISTS = ("suppressed_numbers", "refused_numbers")


def validate_outcome_rules(rules: Any) -> list[dict[str, str]]:
    """Check ``[{"match": regex, "status": str}, ...]`` and return a clean copy; raises ``ValueError``."""
    if not isinstance(rules, list):
        raise ValueError("outcome rules must be a list of {'match': regex, 'status': str} objects")
    clean: list[dict[str, str]] = []
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            raise ValueError(f"outcome rule {i} must be an object")
        match, status = rule.get("match"), rule.get("status")
        if not isinstance(match, str) or not isinstance(status, str) or not status:
            raise ValueError(f"outcome rule {i} needs a string 'match' and a non-empty string 'status'")
        try:
            re.compile(match)
        except re.error as exc:
            raise ValueError(f"outcome rule {i} has an invalid regex: {exc}") from None
        clean.append({"match": match, "status": status})
    return clean


def number_list(name: str, value: Any) -> list[str]:
    """Return a list of phone numbers (digits with country code, an optional ``+``), stored as digits."""
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{name} must be a list of phone numbers")
    out: list[str] = []
    for item in value:
        digits = str(item).strip().lstrip("+") if isinstance(item, (str, int)) else ""
        if isinstance(item, bool) or not digits.isdigit():
            raise ValueError(f"{name} must hold phone numbers as digits with the country code, got {item!r}")
        out.append(digits)
    return out


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number")
    return value


def _coerce_service_map(name: str, value: Any, services: dict[str, str]) -> dict[str, float]:
    # A single number is a convenience meaning "this value for every configured service".
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {code: value for code in services}
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a number or an object keyed by service code")
    return {str(k): _number(f"{name}[{k}]", v) for k, v in value.items()}


def apply_updates(config: EmulatorConfig, updates: dict[str, Any]) -> EmulatorConfig:
    """Return a copy of ``config`` with ``updates`` applied after validation; raises ``ValueError``."""
    unknown = sorted(set(updates) - _FIELD_NAMES)
    if unknown:
        raise ValueError(f"unknown config field(s): {', '.join(unknown)}")
    new = config.copy()
    if "services" in updates:
        services = updates["services"]
        if not isinstance(services, dict) or not services:
            raise ValueError("services must be a non-empty object of code -> name")
        new.services = {str(k): str(v) for k, v in services.items()}
    for name, value in updates.items():
        if name == "services":
            continue
        if name in ("credits", "unit_charges"):
            merged = {**getattr(config, name), **_coerce_service_map(name, value, new.services)}
            setattr(new, name, merged)
        elif name == "outcome_rules":
            new.outcome_rules = validate_outcome_rules(value)
        elif name in _NUMBER_LISTS:
            setattr(new, name, number_list(name, value))
        elif name in ("postpaid_services", "dlt_services"):
            if not isinstance(value, list) or not all(isinstance(code, str) for code in value):
                raise ValueError(f"{name} must be a list of service codes")
            setattr(new, name, list(value))
        elif name in ("senders", "templates"):
            if not isinstance(value, list):
                raise ValueError(f"{name} must be a list of objects")
            setattr(new, name, copy.deepcopy(value))
        elif name in _CHOICES:
            if value not in _CHOICES[name]:
                raise ValueError(f"{name} must be one of {', '.join(map(repr, _CHOICES[name]))}")
            setattr(new, name, value)
        elif name == "templates_unavailable_status":
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not 400 <= value <= 599
            ):
                raise ValueError(
                    "templates_unavailable_status must be null or an HTTP error status (400-599)"
                )
            new.templates_unavailable_status = value
        elif name in _NON_NEGATIVE_FLOATS or name in _POSITIVE_FLOATS:
            number = float(_number(name, value))
            if math.isnan(number):
                raise ValueError(f"{name} must be a number, not NaN")
            if number < 0 or (name in _POSITIVE_FLOATS and number == 0):
                raise ValueError(f"{name} must be {'positive' if name in _POSITIVE_FLOATS else '>= 0'}")
            setattr(new, name, number)
        elif name in _INTS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer")
            if value < 0 or (name in _POSITIVE_INTS and value == 0):
                raise ValueError(f"{name} must be {'positive' if name in _POSITIVE_INTS else '>= 0'}")
            if name in _ERROR_STATUSES and not 400 <= value <= 599:
                raise ValueError(f"{name} must be an HTTP error status (400-599)")
            setattr(new, name, value)
        elif name in _BOOLS:
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be a boolean (true or false)")
            setattr(new, name, value)
        elif name == "number_format":
            if value not in NUMBER_FORMATS:
                raise ValueError(f"number_format must be one of {', '.join(map(repr, NUMBER_FORMATS))}")
            new.number_format = value
        elif name == "status_order":
            if value not in STATUS_ORDERS:
                raise ValueError(f"status_order must be one of {', '.join(map(repr, STATUS_ORDERS))}")
            new.status_order = value
        elif name == "dlr_spread_order":
            if value not in DLR_SPREAD_ORDERS:
                raise ValueError(f"dlr_spread_order must be one of {', '.join(map(repr, DLR_SPREAD_ORDERS))}")
            new.dlr_spread_order = value
        elif name == "timezone":
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(str(value))
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown timezone: {value!r}") from None
            new.timezone = str(value)
        elif name == "base_path":
            path = str(value)
            if not path.startswith("/") or not path.endswith("/"):
                raise ValueError("base_path must start and end with '/'")
            new.base_path = path
        else:  # token, host
            if not isinstance(value, str):
                raise ValueError(f"{name} must be a string")
            setattr(new, name, value)
    if {"senders", "templates", "services"} & set(updates):
        check_seed_lists(new.senders, new.templates, new.services)
    if new.schedule_min_seconds >= new.schedule_max_seconds:
        raise ValueError("schedule_min_seconds must be smaller than schedule_max_seconds")
    return new
