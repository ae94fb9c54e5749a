"""
What every endpoint shares.

The request and result types, the error envelope, Laravel-style validation messages, parameter readers and the
API-resource pagination (``data`` + ``links`` + ``meta``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

if TYPE_CHECKING:
    from airflow_qikberry.emulator.forms import UploadedFile


@dataclass
class ApiRequest:
    """One API request as the handlers see it: parameters from the query and the body merged."""

    method: str
    path: str
    params: dict[str, Any]
    query: dict[str, Any]
    base_url: str
    files: dict[str, UploadedFile] = field(default_factory=dict)
    args: tuple[str, ...] = ()


@dataclass
class ApiResult:
    """A handler's answer: status, JSON body and extra headers."""

    status: int
    body: Any
    headers: list[tuple[str, str]] = field(default_factory=list)


class ApiError(Exception):
    """An error answer in the ``{"status":"ERROR","code":...,"message":...}`` envelope."""

    def __init__(self, status: int, message: str, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "ERROR", "code": self.status, "message": self.message}
        if self.errors:
            out["errors"] = self.errors
        return out


class Errors:
    """Laravel-style validation errors: first error's text becomes the message."""

    def __init__(self) -> None:
        self.items: dict[str, list[str]] = {}

    def add(self, field_name: str, text: str) -> None:
        self.items.setdefault(field_name, []).append(text)

    def has(self, field_name: str) -> bool:
        return field_name in self.items

    def raise_if_any(self) -> None:
        if self.items:
            first = next(iter(self.items.values()))[0]
            raise ApiError(422, first, self.items)


def attr(field_name: str) -> str:
    return field_name.replace("_", " ")


def validation_error(field_name: str, text: str) -> ApiError:
    return ApiError(422, text, {field_name: [text]})


def ok(body: dict[str, Any], headers: list[tuple[str, str]] | None = None) -> ApiResult:
    return ApiResult(200, body, headers or [])


# ---------------------------------------------------------------------------- value helpers
def scalar(params: dict[str, Any], key: str, field_name: str, errors: Errors) -> str | None:
    """Return a string parameter (JSON numbers/bools accepted and stringified); None when absent or empty."""
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        value = value.strip()
        return value or None
    errors.add(field_name, f"The {attr(field_name)} must be a string.")
    return None


def required(params: dict[str, Any], key: str, field_name: str, errors: Errors) -> str | None:
    value = scalar(params, key, field_name, errors)
    if value is None and not errors.has(field_name):
        errors.add(field_name, f"The {attr(field_name)} field is required.")
    return value


def split_list(value: Any) -> list[str] | None:
    """Return a list given as JSON array, PHP array or comma-separated string."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    if isinstance(value, dict):
        return [str(v).strip() for v in value.values() if str(v).strip()]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [str(value)]
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return None


def page_number(params: dict[str, Any]) -> int:
    raw = params.get("page")
    try:
        page = int(str(raw))
    except (TypeError, ValueError):
        return 1
    return page if page >= 1 else 1


def paginate(
    total: int, page: int, per_page: int, count: int, path: str, query: list[tuple[str, str]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Laravel API-resource ``links`` and ``meta`` for one page."""
    last_page = max(1, math.ceil(total / per_page))

    def url(n: int) -> str:
        return f"{path}?{urlencode([*query, ('page', str(n))])}"

    # As Laravel's paginator: a previous page exists for every page after the first, even past the end.
    prev_url = url(page - 1) if page > 1 else None
    next_url = url(page + 1) if page < last_page else None
    links = {"first": url(1), "last": url(last_page), "prev": prev_url, "next": next_url}
    meta_links: list[dict[str, Any]] = [{"url": prev_url, "label": "&laquo; Previous", "active": False}]
    for item in _window(page, last_page):
        if item is None:
            meta_links.append({"url": None, "label": "...", "active": False})
        else:
            meta_links.append({"url": url(item), "label": str(item), "active": item == page})
    meta_links.append({"url": next_url, "label": "Next &raquo;", "active": False})
    start = (page - 1) * per_page
    meta = {
        "current_page": page,
        "from": start + 1 if count else None,
        "last_page": last_page,
        "links": meta_links,
        "path": path,
        "per_page": per_page,
        "to": start + count if count else None,
        "total": total,
    }
    return links, meta


def _window(page: int, last_page: int, on_each_side: int = 3) -> list[int | None]:
    """Laravel's UrlWindow: every page when few, else a slider with ``...`` gaps (None)."""
    window = on_each_side * 2
    if last_page < window + 8:
        return list(range(1, last_page + 1))
    if page <= window:
        return [*range(1, window + 3), None, last_page - 1, last_page]
    if page > last_page - window:
        return [1, 2, None, *range(last_page - (window + 2) + 1, last_page + 1)]
    return [1, 2, None, *range(page - on_each_side, page + on_each_side + 1), None, last_page - 1, last_page]


def paged(
    req: ApiRequest, rows: list[Any], per_page: int, path: str, extra: list[tuple[str, str]]
) -> ApiResult:
    """Return one page of a CRUD list in the API-resource envelope (status, data, links, meta...)."""
    page = page_number(req.params)
    start = (page - 1) * per_page
    chunk = rows[start : start + per_page]
    links, meta = paginate(len(rows), page, per_page, len(chunk), req.base_url + path, extra)
    return ok({"status": "OK", "code": 200, "message": "OK", "data": chunk, "links": links, "meta": meta})


def name_filter(params: dict[str, Any]) -> str | None:
    """``filter[name]`` (a PHP-style nested key) when given as text."""
    flt = params.get("filter")
    if isinstance(flt, dict) and isinstance(flt.get("name"), str):
        return flt["name"] or None
    return None
