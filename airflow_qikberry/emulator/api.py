"""
The Qikberry v2 endpoints: validation, state changes and the documented response shapes.

Transport-free: the HTTP layer hands over an :class:`ApiRequest` and writes back the :class:`ApiResult`.

:class:`Api` is assembled in layers: ``api_validation`` (what the sends share), ``api_send`` (the send
endpoints) and, here, ``sms/status``, balance, ``auth/me``, the text check and routing; the developer and
DLT endpoints come from ``api_developer`` and ``api_dlt``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_qikberry.emulator.api_developer import DeveloperApi
from airflow_qikberry.emulator.api_dlt import DltApi
from airflow_qikberry.emulator.api_send import SendApi
from airflow_qikberry.emulator.envelope import (
    ApiError,
    ApiRequest,
    ApiResult,
    Errors,
    ok,
    page_number,
    paginate,
    scalar,
    validation_error,
)

if TYPE_CHECKING:
    from airflow_qikberry.emulator.state import EmulatorState

DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class Api(SendApi):
    """Endpoint implementations over one :class:`EmulatorState`."""

    def __init__(self, state: EmulatorState) -> None:
        super().__init__(state)
        self._routes: dict[str, dict[str, Callable[[ApiRequest], ApiResult]]] = {
            "sms/send": {"GET": self.send, "POST": self.send},
            "sms/send/json": {"POST": self.send_json},
            "sms/bulk": {"POST": self.bulk},
            "sms/status": {"GET": self.status},
            "finance/balance": {"GET": self.balance},
            "account/balance": {"GET": self.balance},
            "auth/me": {"GET": self.me},
            "sms/send/template": {"POST": self.send_template},
        }
        developer = DeveloperApi(state)
        dlt = DltApi(state)
        self._routes.update(developer.routes())
        self._routes.update(dlt.routes())
        self._item_routes = {**developer.item_routes(), **dlt.item_routes()}

    # ------------------------------------------------------------------ sms/status
    def status(self, req: ApiRequest) -> ApiResult:
        errors = Errors()
        filters: dict[str, str] = {}
        for key in ("id", "mobile", "cid", "group_id", "date"):
            value = scalar(req.params, key, key, errors)
            if value is not None:
                filters[key] = value
        errors.raise_if_any()
        if not filters:
            raise validation_error(
                "id", "The id field is required when none of mobile / cid / group id / date are present."
            )
        if "date" in filters and not _valid_date(filters["date"]):
            raise validation_error("date", "The date does not match the format Y-m-d.")
        state = self.state
        with state.lock:
            cfg = state.config
            paginated = "group_id" in filters or "date" in filters or cfg.paginate_lookups
            found = state.lookup(filters)
            if not paginated:
                rows = [state.status_row(m) for m in found]
                return ok({"status": "OK", "code": 200, "message": "OK", "data": rows})
            per_page = cfg.status_page_size
            page = page_number(req.params)
            start = (page - 1) * per_page
            rows = [state.status_row(m) for m in found[start : start + per_page]]
            total = len(found)
        links, meta = paginate(
            total, page, per_page, len(rows), req.base_url + "sms/status", list(filters.items())
        )
        return ok({"status": "OK", "code": 200, "message": "OK", "data": rows, "links": links, "meta": meta})

    # ------------------------------------------------------------------ balance, auth/me
    def balance(self, req: ApiRequest) -> ApiResult:
        errors = Errors()
        service = scalar(req.params, "service", "service", errors)
        errors.raise_if_any()
        return ok({"status": 200, "message": "OK", "data": self.state.balance_rows(service)})

    def me(self, req: ApiRequest) -> ApiResult:
        return ok(
            {
                "status": "OK",
                "code": 200,
                "message": "OK",
                "data": {
                    "id": 1,
                    "username": "emulator",
                    "name": "Qikberry Emulator",
                    "email": "emulator@example.invalid",
                },
            }
        )

    # ------------------------------------------------------------------ text the API cannot store
    def check_text(self, req: ApiRequest) -> None:
        r"""
        Refuse a request whose parameters hold an unpaired UTF-16 surrogate.

        JSON can carry ``"\ud83d"`` and Python's json reads it into a str; it has no UTF-8 form, so the API
        cannot store it.

        Assumed answer: a validation error (``unpaired_surrogate_status``, 422) naming the parameter, before
        anything is accepted; see docs/emulator.md.
        """
        path = unpaired_surrogate(req.params)
        if path is not None:
            text = f"The {path} must be a valid UTF-8 string."
            raise ApiError(self.state.config.unpaired_surrogate_status, text, {path: [text]})

    # ------------------------------------------------------------------ routing
    def route(self, path: str) -> tuple[dict[str, Callable[[ApiRequest], ApiResult]], tuple[str, ...]] | None:
        handlers = self._routes.get(path)
        if handlers is not None:
            return handlers, ()
        head, _, tail = path.rpartition("/")
        item = self._item_routes.get(head)
        if item is not None and tail:
            return item, (tail,)
        return None


# ---------------------------------------------------------------------------- helpers
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def unpaired_surrogate(value: Any, path: str = "") -> str | None:
    r"""
    Return the dotted path (``nodes.3.message``) of the first key or string holding a surrogate, or None.

    Python's json joins an escaped pair (``"\ud83d\ude00"``) into one character, so any surrogate left in a
    parsed str is an unpaired one.
    """
    if isinstance(value, str):
        return (path or "body") if _SURROGATE_RE.search(value) else None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        here = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and _SURROGATE_RE.search(key):
            return here
        found = unpaired_surrogate(item, here)
        if found is not None:
            return found
    return None


def _valid_date(value: str) -> bool:
    if not DATE_RE.match(value):
        return False
    try:
        datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        return False
    return True
