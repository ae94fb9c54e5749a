"""
Status, balance and DLT catalog lookups, written once for the sync and the async hook, without I/O.

Each lookup here is a sans-IO core (:mod:`airflow_qikberry.sansio`): it yields :class:`Request` values (a
GET's path and query) and receives the parsed :class:`~airflow_qikberry.protocol.ApiResponse`. The sync
hook carries it out over ``requests``, the async hook over ``httpx``; the inputs are checked when the core
starts, before its first request. :class:`StatusQuery` walks an ``sms/status`` query page by page, for the
hooks' lazy row iterators. :func:`listing` reads every page of a list endpoint (``sms/senders``,
``sms/templates``: 15 rows a page in the API-resource envelope).

Example::

    rows = drive(status_rows(group_query(group_id)), lambda request: transport.get(*request))
    balances = await adrive(balance("T"), lambda request: async_transport.get(*request))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from airflow_qikberry.exceptions import QikberryError, QikberryServerError, QikberryValidationError
from airflow_qikberry.models import Balance, MessageStatus, StatusPage
from airflow_qikberry.protocol import (
    ApiResponse,
    Paths,
    next_page,
    rows_of,
    status_page,
    status_params,
    status_total,
)
from airflow_qikberry.sansio import Core
from airflow_qikberry.validation import validate_service, validate_text_id

if TYPE_CHECKING:
    from airflow_qikberry.catalog import Catalog, DltSender, DltTemplate

__all__ = [
    "Lookup",
    "Request",
    "StatusQuery",
    "balance",
    "dlt_catalog",
    "group_query",
    "listing",
    "message_query",
    "page_of",
    "senders",
    "status_rows",
    "templates",
]

T = TypeVar("T")


class Request(NamedTuple):
    """A GET to make: ``transport.get(*request)``."""

    path: str
    params: Mapping[str, Any] | None = None


#: A lookup core: yields :class:`Request` values, receives their answers, returns a ``T``.
Lookup = Core[Request, ApiResponse, T]


def group_query(group_id: object) -> dict[str, str]:
    """
    Return the ``sms/status`` query of a group (request or campaign), its id checked before any request.

    A blank value or a list (which would be sent as its repr) is a :class:`QikberryValidationError`.
    """
    # Imported here: validation costs about 6 ms to import, which the async hook (and so every trigger
    # module import) would pay up front; the check itself runs before any request either way.

    if group_id is None or (isinstance(group_id, str) and not group_id.strip()):
        raise QikberryValidationError("group_id must not be empty.", field="group_id")
    checked = validate_text_id(group_id, field="group_id")
    assert checked is not None  # None and "" were refused above
    return {"group_id": checked}


def message_query(message_id: str) -> dict[str, str]:
    """Return the ``sms/status`` query of one message, as delivery polls ask for it."""
    return status_params(message_id=message_id, custom_id=None, mobile=None, default_region=None)


class StatusQuery:
    """
    One ``sms/status`` query, page after page.

    ``request`` is the next GET to make (None once the last page was read); :meth:`read` turns that GET's
    answer into a :class:`~airflow_qikberry.models.StatusPage` and moves on to the page it names as the next.

    Example::

        query = StatusQuery({"cid": custom_id})
        while query.request is not None:
            yield from query.read(transport.get(*query.request)).rows
    """

    def __init__(self, params: Mapping[str, Any], page: int = 1) -> None:
        self.params = params
        self.page: int | None = page
        self.request: Request | None = self._request(page)

    def _request(self, page: int | None) -> Request | None:
        if page is None:
            return None
        # Page 1 is asked for without a page parameter, as the API's own first page is.
        return Request(Paths.STATUS, {**self.params, "page": page if page > 1 else None})

    def read(self, response: ApiResponse) -> StatusPage[MessageStatus]:
        """Return the rows of the page asked for, the next page's number and the query's total (if any)."""
        if self.page is None:
            raise ValueError("read() after the last page")
        rows, following = status_page(response, self.page)
        self.page, self.request = following, self._request(following)
        return StatusPage([MessageStatus.from_api(row) for row in rows], following, status_total(response))


def page_of(params: Mapping[str, Any], page: int = 1) -> Lookup[StatusPage[MessageStatus]]:
    """One page of a status query: a group's page as a delivery poll or a campaign's resume reads it."""
    query = StatusQuery(params, page)
    assert query.request is not None  # a new query always has its first request
    return query.read((yield query.request))


def status_rows(params: Mapping[str, Any]) -> Lookup[list[MessageStatus]]:
    """Every row of a status query, following its pages (any query may be paged)."""
    query = StatusQuery(params)
    rows: list[MessageStatus] = []
    while query.request is not None:
        rows.extend(query.read((yield query.request)).rows)
    return rows


def balance(service: str | None = None) -> Lookup[list[Balance]]:
    """
    Credits per service (``finance/balance``), only ``service``'s when given.

    An API that answers 404 there is asked at the legacy ``account/balance`` instead.
    """
    wanted = validate_service(service) if service is not None else None
    params = {"service": wanted} if wanted else None
    try:
        response = yield Request(Paths.BALANCE, params)
    except QikberryValidationError as exc:
        if exc.status_code != 404:
            raise
        response = yield Request(Paths.BALANCE_LEGACY, params)
    return Balance.list_from(rows_of(response, what="finance/balance"), wanted)


MAX_LIST_PAGES = 1_000  # 15,000 senders or templates: far more than an account registers


def listing(path: str, parse: Callable[[Any], T]) -> Lookup[list[T]]:
    """
    Read every row of a paged list endpoint, each with ``parse``.

    Pages are followed by ``meta`` / ``links`` (or a flat paginator), and an endpoint that keeps
    answering "next" is an error.
    """
    out: list[T] = []
    page = 1
    while True:
        response = yield Request(path, {"page": page if page > 1 else None})
        rows = rows_of(response, what=path)
        out.extend(parse(row) for row in rows)
        following = next_page(response.body, page, len(rows))
        if following is None:
            return out
        if following > MAX_LIST_PAGES:
            raise QikberryServerError(f"{path} kept answering 'next page' past page {MAX_LIST_PAGES}.")
        page = following


def templates() -> Lookup[list[DltTemplate]]:
    """Every template of the account (``sms/templates``)."""
    from airflow_qikberry.catalog import DltTemplate

    return (yield from listing(Paths.TEMPLATES, DltTemplate.from_api))


def senders() -> Lookup[list[DltSender]]:
    """Every sender of the account (``sms/senders``)."""
    from airflow_qikberry.catalog import DltSender

    return (yield from listing(Paths.SENDERS, DltSender.from_api))


def _unless_forbidden(core: Lookup[list[T]]) -> Lookup[tuple[list[T], str | None]]:
    """Return a list, or (``[]``, why) when the account may not read it: a 403 or a 404 there."""
    try:
        return (yield from core), None
    except QikberryError as exc:
        if exc.status_code not in (403, 404):
            raise
        return [], f"HTTP {exc.status_code}: {exc.message}"


def dlt_catalog() -> Lookup[Catalog]:
    """
    Read the account's senders and templates.

    A list the account may not read is recorded as unavailable in the
    :class:`~airflow_qikberry.catalog.Catalog`, not raised.
    """
    from airflow_qikberry.catalog import Catalog

    found_senders, no_senders = yield from _unless_forbidden(senders())
    found_templates, no_templates = yield from _unless_forbidden(templates())
    return Catalog(tuple(found_templates), tuple(found_senders), no_templates, no_senders)
