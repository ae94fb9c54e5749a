"""
The DLT pre-check.

Before any request: is each text one its registered template lets through?

On India's DLT routes (services ``T``, ``P``, ``S``) a text sent with a DLT ``template_id`` must fit that
template, from that template's sender, or the network accepts it, charges it and then rejects it. For every
text of a send that carries a template id, the pre-check finds the template among the account's
(:class:`~airflow_qikberry.catalog.Catalog`) and checks, in the order the network does (docs/dlt.md):

1. the template is active (else ``DLT-TM-INACTIVE``);
2. the send's sender is the template's sender, without regard to case (else ``DLT-SENDER-NOT-REG-TM``);
3. that sender, when it is one of the account's, is approved (else ``DLT-HEADER-INACTIVE``);
4. the text fits the body: fixed text exact, each variable within 30 characters (else ``DLT-REJECTED`` or
   ``DLT-TM-VAR-EXECEED``; :mod:`airflow_qikberry.dlt`).

A failure is a :class:`~airflow_qikberry.exceptions.QikberryDltMismatchError` that says what differs.
Where the check cannot run (the template id is not among the account's templates, the account may not read
``sms/templates``, a body this provider cannot read), it says so: a warning with ``dlt_check="auto"`` (the
default), a :class:`~airflow_qikberry.exceptions.QikberryDltCheckUnavailableError` with ``"required"``.
``"off"`` skips it.

Example::

    subjects = [Subject("message", "Your OTP is 4711. -Acme", "ACMEIN", "T", "1107000000000000001")]
    run(subjects, hook.dlt_catalog, "auto", hook.log)  # raises QikberryDltMismatchError on a mismatch
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow_qikberry.dlt import MATCH, TOO_LONG, match
from airflow_qikberry.exceptions import (
    QikberryDltCheckUnavailableError,
    QikberryDltMismatchError,
    QikberryError,
)

if TYPE_CHECKING:
    from airflow_qikberry.catalog import Catalog, DltTemplate
    from airflow_qikberry.send_options import DltCheck

__all__ = [
    "DLT_SERVICES",
    "Problem",
    "Subject",
    "check",
    "mismatch_error",
    "run",
    "template_problem",
    "text_problem",
]

#: The routes a DLT network checks (India: transactional, promotional, service).
DLT_SERVICES = frozenset({"T", "P", "S"})


class Subject(NamedTuple):
    """
    One text a send would post.

    Where it is (``message``, ``nodes[3].message``), the text, its sender, route and DLT template id, and
    the template when the send names a stored one (a send by template).
    """

    where: str
    text: str | None
    sender: str
    service: str
    template_id: str | None
    template: DltTemplate | None = None
    #: Why this text cannot be checked (a send by template whose template could not be looked up).
    skip: str | None = None


def _relevant(subject: Subject) -> bool:
    return bool(subject.skip) or (
        subject.service in DLT_SERVICES and bool(subject.template_id or subject.template)
    )


class Problem(NamedTuple):
    """What the network would do to a text: the DLT ``status`` it would get and what differs."""

    status: str
    detail: str


def template_problem(template: DltTemplate, sender: str, catalog: Catalog | None) -> Problem | None:
    """Rules 1-3: the template active, the sender the template's, that sender approved."""
    if not template.active:
        return Problem("DLT-TM-INACTIVE", f"the template {template.describe()} is inactive")
    if template.sender and sender.casefold() != template.sender.casefold():
        return Problem(
            "DLT-SENDER-NOT-REG-TM",
            f"the sender {sender!r} is not the template's sender {template.sender!r}; send it from "
            f"{template.sender!r}",
        )
    known = catalog.sender(sender) if catalog is not None else None
    if known is not None and not known.approved:
        state = {0: "pending approval", 2: "rejected"}.get(known.status or 0, f"status {known.status}")
        return Problem("DLT-HEADER-INACTIVE", f"the sender {sender!r} is not approved ({state})")
    return None


def text_problem(template: DltTemplate, text: str) -> Problem | None:
    """
    Check rule 4: the text fits the template's body.

    ``None`` also when the body cannot be read: see :func:`check`.
    """
    body = template.parsed
    if body is None:
        return None
    verdict = match(body, text)
    if verdict.kind == MATCH:
        return None
    status = "DLT-TM-VAR-EXECEED" if verdict.kind == TOO_LONG else "DLT-REJECTED"
    return Problem(status, verdict.detail)


class Outcome(NamedTuple):
    """
    What :func:`check` found.

    The failures (where, template, problem), why some texts could not be checked, and how many were checked.
    """

    failures: list[tuple[Subject, DltTemplate, Problem]]
    skipped: list[str]
    checked: int


def check(subjects: Sequence[Subject], catalog: Catalog | None, unavailable: str | None = None) -> Outcome:
    """
    Check every subject on a DLT route that names a template.

    ``catalog`` None: it could not be read (``unavailable`` says why).
    """
    failures: list[tuple[Subject, DltTemplate, Problem]] = []
    skipped: list[str] = []
    checked = 0
    for subject in subjects:
        if not _relevant(subject):
            continue
        if subject.skip:
            skipped.append(f"{subject.where}: {subject.skip}")
            continue
        template = subject.template
        if template is None and catalog is not None and not catalog.templates_unavailable:
            template = catalog.by_template_id(str(subject.template_id))
            if template is None:
                skipped.append(
                    f"{subject.where}: template_id {subject.template_id} is not among the account's "
                    f"{len(catalog.templates)} template(s)"
                )
                continue
        if template is None:
            reason = unavailable or (catalog.templates_unavailable if catalog is not None else None)
            skipped.append(f"{subject.where}: the account's templates could not be read ({reason})")
            continue
        problem = template_problem(template, subject.sender, catalog)
        if problem is None and subject.text is not None:
            if template.parsed is None:
                skipped.append(f"{subject.where}: the body of template {template.describe()} cannot be read")
                continue
            problem = text_problem(template, subject.text)
        checked += 1
        if problem is not None:
            failures.append((subject, template, problem))
    return Outcome(failures, skipped, checked)


def mismatch_error(
    failures: Sequence[tuple[Subject, DltTemplate, Problem]], what: str = "this text"
) -> QikberryDltMismatchError:
    """
    Return the typed error of a send with texts that fail the check.

    It gives the first one in full, and how many.
    """
    subject, template, problem = failures[0]
    more = (
        f" ({len(failures)} texts of this send fail the check; this is the first)"
        if len(failures) > 1
        else ""
    )
    return QikberryDltMismatchError(
        f"{subject.where}: DLT pre-check: the network would reject {what} as {problem.status} after "
        f"accepting and charging it: {problem.detail}. Template {template.describe()}{more}. Nothing was "
        "sent. Fix the text (or the template on the DLT portal and in your account), or pass "
        "dlt_check='off' to send it anyway.",
        field=subject.where,
        template_id=template.template_id,
        status=problem.status,
        detail=problem.detail,
        count=len(failures),
    )


def run(subjects: Sequence[Subject], catalog: Callable[[], Catalog], mode: DltCheck, log: Any) -> None:
    """
    Run the pre-check of one send.

    Raise on a failure; with nothing checkable, warn (``"auto"``) or raise (``"required"``); ``"off"`` does
    nothing. The catalog is read only when a text names a template.
    """
    if mode == "off":
        return
    relevant = [s for s in subjects if _relevant(s)]
    if not relevant:
        if mode == "required":
            raise QikberryDltCheckUnavailableError(
                "dlt_check: 'required', but no text of this send carries a DLT template_id on a DLT route "
                "(T, P, S): there is nothing to check it against. Nothing was sent.",
                field="dlt_check",
            )
        return
    found: Catalog | None = None
    unavailable = None
    if not all(s.skip for s in relevant):
        try:
            found = catalog()
        except QikberryError as exc:
            unavailable = exc.message
    outcome = check(relevant, found, unavailable)
    if outcome.failures:
        raise mismatch_error(outcome.failures)
    if outcome.skipped:
        more = f" (and {len(outcome.skipped) - 1} more)" if len(outcome.skipped) > 1 else ""
        if mode == "required":
            raise QikberryDltCheckUnavailableError(
                f"dlt_check: 'required', but the DLT pre-check could not run: {outcome.skipped[0]}{more}. "
                "Nothing was sent.",
                field="dlt_check",
            )
        log.warning(
            "DLT pre-check could not run for %d text(s): %s%s; sending without it (dlt_check='required' "
            "refuses to)",
            len(outcome.skipped),
            outcome.skipped[0],
            more,
        )
    if outcome.checked:
        log.info("DLT pre-check: %d text(s) fit their registered template(s)", outcome.checked)
