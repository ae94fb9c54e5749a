"""
The whole campaign: prepare, check, and send (or, in a dry run, only report), with a progress line per chunk.

Returns the summary the operator pushes to XCom.

See :mod:`airflow_qikberry.campaign` and docs/campaign.md.
"""

from __future__ import annotations

import gc
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_qikberry import idempotency as ido
from airflow_qikberry.campaign import dlt
from airflow_qikberry.campaign.chunks import BuiltAhead, ChunkOutcome, ChunkSender, NotSentRows
from airflow_qikberry.campaign.options import CampaignOptions, Chunk, ChunkPlan, batch_times
from airflow_qikberry.campaign.preparation import Prepared, RejectedReport, Spool, check_limits, prepare
from airflow_qikberry.campaign.resume import STORE_PAGE, ProgressRecord, Resume
from airflow_qikberry.exceptions import QikberryInsufficientBalanceError, QikberryRowsNotSentError
from airflow_qikberry.models import estimate_cost
from airflow_qikberry.payloads import root_payload

if TYPE_CHECKING:
    from airflow_qikberry.campaign.sources import Source
    from airflow_qikberry.hooks.qikberry import QikberryHook
    from airflow_qikberry.idempotency import TaskIdentity

__all__ = [
    "Progress",
    "heap_frozen",
    "run_campaign",
]


_CURRENT_TASK: Any = object()  # run_campaign's default identity: the running task's, looked up


def _duration(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


@contextmanager
def heap_frozen() -> Iterator[None]:
    """
    Leave the objects that exist now out of the garbage collector's full collections until the block ends.

    Each chunk of pass 2 keeps thousands of objects alive (its rows, nodes, answer) until it is settled, and
    they trigger a full collection every few chunks; in a task process each one walks all of Airflow's
    objects, which cost about a third of pass 2's own time (bench/campaign_500k.py, docs/development.md).
    Frozen, those collections walk only what the campaign made since. Nothing is lost: reference counting
    frees as before, and whatever cyclic garbage the frozen objects hold is collected after the block
    (``gc.unfreeze``). When something else froze the heap already (a process forked from a frozen parent),
    it is left as it is: unfreezing would undo that freeze too, and the heap it froze is skipped already.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class Progress:
    """One INFO line per accepted chunk: messages accepted of the total, percent, rate and ETA."""

    def __init__(self, log: Any, name: str, total: int, chunks: int, done: int = 0) -> None:
        self.log, self.name, self.total, self.chunks = log, name, total, chunks
        self.done = done
        self.start_done = done
        self.started = time.monotonic()

    def chunk_accepted(self, chunk: Chunk, accepted: int) -> None:
        self.done += accepted
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = (self.done - self.start_done) / elapsed
        left = self.total - self.done
        eta = _duration(left / rate) if rate > 0 else "unknown"
        self.log.info(
            "Campaign %r: chunk %d/%d accepted; %d/%d messages sent (%.1f%%), %.0f msg/s, ETA %s",
            self.name,
            chunk.index + 1,
            self.chunks,
            self.done,
            self.total,
            100.0 * self.done / self.total if self.total else 100.0,
            rate,
            eta,
        )


def run_campaign(
    options: CampaignOptions,
    *,
    source: Source,
    hook: QikberryHook,
    render: Callable[[Mapping[str, Any]], str] | None = None,
    phone_column: str | None = None,
    rejected_path: Any = None,
    storage_conn_id: str | None = None,
    store: Any = None,
    identity: Any = _CURRENT_TASK,
    log: Any = None,
) -> dict[str, Any]:
    """
    Prepare, check, and send (or, with ``dry_run``, only report) a campaign; returns its summary.

    ``store`` is Airflow's ``task_state_store`` (3.3+) or None; ``identity`` defaults to the running task's.
    ``rejected_path`` is a local path, or a URL / ``ObjectStoragePath`` on object storage (credentials from
    ``storage_conn_id`` unless the path carries its own); it is uploaded whole each time it is written.
    The summary is JSON-safe and holds no phone number: ``campaign, group_ids, accepted,
    accepted_earlier_tries, rejected, rejected_total, duplicates_removed, estimated_units, estimated_credits,
    chunks, resumed_from_chunk, dry_run`` (plus ``sample`` and ``rejected_path`` in a dry run).
    """
    import logging
    import tempfile

    log = log if log is not None else logging.getLogger(__name__)
    ident: TaskIdentity | None = ido.task_identity() if identity is _CURRENT_TASK else identity
    settings = hook.settings  # reads the connection; no request
    # A DLT template: by template, its sender and DLT id are the campaign's and it renders each row; either
    # way, each row's text is checked against it in pass 1 (reads the account's templates, cached).
    with_dlt = dlt.plan(options, hook, settings, log)
    options = replace(options, send=with_dlt.send)
    render = with_dlt.render or render
    # Every send parameter is checked now, with the connection's defaults, not at the first chunk; the
    # schedule of each batch still to be sent is checked by batch_times, which names the batch.
    root, _ = root_payload(
        options.send.replace(schedule_at=None), settings, options.message, require_message=False
    )
    service = str(root["service"])
    plan = ChunkPlan(options.chunk_size, options.batch_size)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="qikberry-campaign-") as tmp:
        spool_path = os.path.join(tmp, "rows.jsonl")
        rejected = _Rejected(rejected_path, storage_conn_id, tmp)
        with open(spool_path, "wb") as writer, rejected.report() as report:
            prepared = prepare(
                source.rows(),
                writer,
                report,
                plan=plan,
                message=options.message,
                render=render,
                phone_column=phone_column,
                default_region=settings.default_region,
                encoding=options.send.encoding,
                max_units=options.send.max_units,
                field_name=source.field,
                check=with_dlt.check,
            )
        source_identity = source.identity() if source.identity is not None else None
        if source_identity is not None:
            log.info(
                "Campaign %r: read %s (%s bytes%s, sha256 %s), recorded so that a retry reads the same bytes",
                options.name,
                source_identity["url"],
                f"{source_identity['size']:,}",
                "".join(
                    f", {k} {source_identity[k]}"
                    for k in ("etag", "version_id", "modified")
                    if k in source_identity
                ),
                source_identity["sha256"][:16],
            )
        check_limits(prepared, report, max_invalid_ratio=options.max_invalid_ratio, field=source.field)
        chunks = plan.chunks(prepared.accepted)
        summary: dict[str, Any] = {
            "campaign": options.name,
            "group_ids": [],
            "accepted": 0,
            "accepted_earlier_tries": 0,
            "rejected": dict(report.counts.most_common()),
            "rejected_total": report.total,
            "duplicates_removed": prepared.duplicates,
            "estimated_units": prepared.units,
            "estimated_credits": None,
            "chunks": len(chunks),
            "resumed_from_chunk": None,
            "not_sent": 0,
            "not_sent_by_reason": {},
            "not_sent_rows": [],
            "dry_run": options.dry_run,
        }
        log.info(
            "Campaign %r: %d row(s) read, %d to send in %d chunk(s) (%d SMS units), %d rejected%s, "
            "%d duplicate(s) removed (checked in %s)",
            options.name,
            prepared.rows_read,
            prepared.accepted,
            len(chunks),
            prepared.units,
            report.total,
            f" {dict(report.counts.most_common())}" if report.total else "",
            prepared.duplicates,
            _duration(time.monotonic() - began),
        )
        if options.dry_run:
            batch_times(options, chunks, 0, settings.api_timezone)
            return _dry_run(options, prepared, hook, service, summary, rejected.shown, log)

        key = ido.campaign_key(ident, options.name, resend=options.resend, content=prepared.digest)
        record = ProgressRecord(
            store,
            key,
            digest=prepared.digest,
            set_digest=prepared.set_digest,
            chunks=len(chunks),
            plan=plan,
            log=log,
            source=source_identity,
            field=source.field,
        )
        outcomes: list[ChunkOutcome | None] = [None] * len(chunks)
        start, pending, scan = 0, None, None
        with open(spool_path, "rb") as handle:
            spool = Spool(handle, prepared.chunk_offsets, chunks)
            if ido.is_task_retry(ident) and not options.resend:
                hint = 0
                recorded = record.read()
                if recorded is not None:
                    hint = min(recorded[0], len(chunks))
                    for index, entry in enumerate(recorded[1][:hint]):
                        outcomes[index] = ChunkOutcome.from_stored(entry, chunks[index].size)
                resume = Resume(hook, key, chunks, spool, outcomes, field=source.field, log=log)
                log.info(
                    "Retry of a campaign task: finding what earlier tries sent (%d chunk(s); %s)",
                    len(chunks),
                    f"the task state says the first {hint} were settled"
                    if hint
                    else "no task state to start from",
                )
                start, pending = resume.find(hint)
                unknown = [i for i in range(start) if outcomes[i] is None]  # task state pages lost
                if unknown:
                    log.info("Looking up %d chunk(s) settled by an earlier try", len(unknown))
                for index in unknown:
                    resume.settle(index, None, last=False)
                # Without task state an earlier try may have gone on past a chunk that left no trace.
                scan = resume if not record.usable else None
                summary["resumed_from_chunk"] = start
                summary["accepted_earlier_tries"] = sum(o.accepted for o in outcomes if o is not None)
                log.info(
                    "Campaign %r: earlier tries settled %d of %d chunk(s) (%d messages accepted); sending "
                    "from chunk %d%s",
                    options.name,
                    start,
                    len(chunks),
                    summary["accepted_earlier_tries"],
                    start + 1,
                    f" ({len(pending)} of its rows)" if pending is not None else "",
                )
            times = batch_times(options, chunks, start, settings.api_timezone)
            if options.check_balance and start < len(chunks):
                balances = hook.get_balance(service)
                summary["estimated_credits"] = float(
                    estimate_cost(prepared.units, balances, service).credits_needed
                )
                left = estimate_cost(sum(prepared.chunk_units[start:]), balances, service)
                if not left.covered:
                    raise QikberryInsufficientBalanceError(
                        f"Balance guard: {left.shortfall_message()}. Nothing was sent"
                        + (" in this try." if start else ".")
                    )
            with heap_frozen(), BuiltAhead(spool_path, prepared.chunk_offsets, chunks) as ahead:
                sent = _send(
                    options, hook, chunks, start, pending, spool, key, times, outcomes, record, scan, log,
                    summary, ahead,
                )  # fmt: skip
            settled = [o for o in outcomes if o is not None]
            if len(settled) != len(chunks):  # every chunk is sent or found sent by now
                raise AssertionError(
                    f"{len(chunks) - len(settled)} chunk(s) of the campaign were not settled"
                )
            summary["group_ids"] = [g for o in settled for g in o.groups]
            summary["accepted"] = sum(o.accepted for o in settled)
            summary["accepted_earlier_tries"] = summary["accepted"] - sent
            reasons, listed = _not_sent(outcomes, chunks, spool, prepared, rejected)
        return _finish(options, prepared, report, summary, reasons, listed, rejected.shown, log)


class _Rejected:
    """
    Where the rejected report goes.

    A local path, or (object storage) a local file in the campaign's temporary folder uploaded to the object
    whenever the report is closed.
    """

    def __init__(self, path: Any, conn_id: str | None, tmp: str) -> None:
        from airflow_qikberry.campaign import storage

        self.target: Any = None
        self.local: str | None = None if path in (None, "") else str(path)
        if storage.is_object_storage(path):
            self.target = storage.ObjectTarget(storage.object_path(path, conn_id, field="rejected_path"))
            self.local = os.path.join(tmp, "rejected.csv")
        self.shown = self.target.url if self.target is not None else self.local

    def report(self, *, append: bool = False) -> RejectedReport:
        return RejectedReport(self.local, append=append, target=self.target)


def _dry_run(
    options: CampaignOptions,
    prepared: Prepared,
    hook: QikberryHook,
    service: str,
    summary: dict[str, Any],
    rejected_path: str | None,
    log: Any,
) -> dict[str, Any]:
    if options.check_balance:
        estimate = estimate_cost(prepared.units, hook.get_balance(service), service)
        summary["estimated_credits"] = float(estimate.credits_needed)
        summary["balance_covers"] = estimate.covered
        summary["credits_available"] = float(estimate.credits_available)
    summary["sample"] = prepared.sample
    summary["rejected_path"] = rejected_path
    for row in prepared.sample:
        log.info("Dry run sample, row %d to %s (%d unit(s), %s): %s", row["row"], row["mobile"], row["units"],
                 row["encoding"], row["message"])  # fmt: skip
    log.info(
        "Dry run of campaign %r: would send %d message(s) in %d chunk(s), %d SMS units%s; nothing was sent",
        options.name,
        prepared.accepted,
        summary["chunks"],
        prepared.units,
        f", about {summary['estimated_credits']:g} credits"
        if summary["estimated_credits"] is not None
        else "",
    )
    return summary


def _send(
    options: CampaignOptions,
    hook: QikberryHook,
    chunks: Sequence[Chunk],
    start: int,
    pending: list[int] | None,
    spool: Spool,
    key: str,
    times: Sequence[datetime | None],
    outcomes: list[ChunkOutcome | None],
    record: ProgressRecord,
    scan: Resume | None,
    log: Any,
    summary: dict[str, Any],
    ahead: BuiltAhead,
) -> int:
    """
    Pass 2: send chunks ``start..`` in order; return how many messages this try got accepted.

    While a chunk's request is in flight, ``ahead`` builds the next chunk's (reading its rows from the spool,
    encoding the body): when the answer comes, the next request is ready to post. Nothing is posted ahead:
    the next chunk is posted only once this one is settled and recorded, as without it.

    Of chunk ``start`` only the ``pending`` rows are sent, when an earlier try sent the rest.

    ``scan`` (a retry without task state): when a chunk this try sent comes out with no row accepted, an
    earlier try may have sent it the same way and gone on, leaving no trace to search by; so the next chunk
    is looked up (first, last and middle row) before it is posted, and found sent, the search goes on from
    there. The API refuses or leaves out the same rows in every try, so a chunk it accepts rows of now was
    never sent before: the scan costs nothing then.
    """
    if start >= len(chunks):
        log.info("Campaign %r: every chunk was already settled; nothing left to send", options.name)
        return 0
    total = sum(c.size for c in chunks)
    progress = Progress(log, options.name, total, len(chunks), done=summary["accepted_earlier_tries"])
    sender = ChunkSender(options, hook, key, times, log)
    sent = 0
    index, look = start, False
    while index < len(chunks):
        chunk = chunks[index]
        if scan is not None and look:
            look = False
            if scan.probe(index, ido.sample_positions(chunk.size)) is not None:
                log.info(
                    "Campaign %r: chunk %d was sent by an earlier try; finding where it stopped",
                    options.name,
                    index + 1,
                )
                index, pending = scan.find(index)
                continue
        # All its rows: built ahead, or here (before the next one is begun); some of them: built when sent.
        rows, built = (
            (ahead.take(index) or sender.build_all(chunk, spool.rows(index)))
            if pending is None
            else (spool.rows(index), None)
        )
        if index + 1 < len(chunks):
            ahead.build(index + 1, sender)
        outcome = sender.send(chunk, rows, pending, built)
        look = outcome.accepted == 0 and pending is None
        pending = None
        sent += outcome.accepted
        progress.chunk_accepted(chunk, outcome.accepted)
        earlier = outcomes[index]
        if earlier is not None:  # the part an earlier try sent
            outcome = ChunkOutcome(
                earlier.groups + outcome.groups, earlier.accepted + outcome.accepted, outcome.not_sent
            )
        outcomes[index] = outcome
        if record.store is not None:
            first = index // STORE_PAGE * STORE_PAGE
            record.write(index + 1, [_stored(outcomes[i], chunks[i]) for i in range(first, index + 1)])
        index += 1
    return sent


def _stored(outcome: ChunkOutcome | None, chunk: Chunk) -> Any:
    return outcome.stored(chunk.size) if outcome is not None else None


def _not_sent(
    outcomes: Sequence[ChunkOutcome | None],
    chunks: Sequence[Chunk],
    spool: Spool,
    prepared: Prepared,
    rejected: _Rejected,
) -> tuple[Counter[str], list[dict[str, Any]]]:
    """Every row the API did not take, added to the rejected report; counts by reason and the first rows."""
    with rejected.report(append=True) as report:
        rows = NotSentRows(report, prepared.source_rows)
        for outcome, chunk in zip(outcomes, chunks, strict=True):
            if outcome is None or not outcome.not_sent:
                continue
            numbers = spool.rows(chunk.index)
            for position, reason, detail in outcome.not_sent:
                rows.add(chunk, position, str(numbers[position][0]), reason, detail)
        return report.counts, rows.listed


def _finish(
    options: CampaignOptions,
    prepared: Prepared,
    report: RejectedReport,
    summary: dict[str, Any],
    reasons: Counter[str],
    listed: list[dict[str, Any]],
    rejected_path: str | None,
    log: Any,
) -> dict[str, Any]:
    """
    Return the summary with the rows the API did not take.

    A typed error when, with the rows rejected before sending, they are more than ``max_invalid_ratio`` allows
    (everything else was sent by then).
    """
    not_sent = sum(reasons.values())
    summary["not_sent"] = not_sent
    summary["not_sent_by_reason"] = dict(reasons.most_common())
    summary["not_sent_rows"] = listed
    where = f" (every one is listed in {rejected_path})" if rejected_path else ""
    by_reason = ", ".join(f"{reason} {count:,}" for reason, count in reasons.most_common())
    if not_sent:
        log.warning(
            "Campaign %r: %d row(s) were not sent, the API refused or left them out (%s), e.g. row %s: %s%s",
            options.name,
            not_sent,
            by_reason,
            listed[0]["row"],
            listed[0]["detail"],
            where,
        )
    unsent = report.total + not_sent
    if unsent / prepared.rows_read > options.max_invalid_ratio:
        raise QikberryRowsNotSentError(
            f"max_invalid_ratio: {unsent:,} of {prepared.rows_read:,} rows "
            f"({unsent / prepared.rows_read:.1%}) were not sent, more than the "
            f"{options.max_invalid_ratio:.1%} allowed: {report.total:,} rejected before sending and "
            f"{not_sent:,} refused or left out by the API ({by_reason or 'none'}). Everything else was sent "
            f"({summary['accepted']:,} messages accepted){where}; a retry of the task does not send any of "
            "them again. Fix the rows (or the account's opt-outs and blocks), or raise max_invalid_ratio.",
            summary=summary,
        )
    return summary
