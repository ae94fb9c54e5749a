"""
The bulk-campaign engine behind :class:`~airflow_qikberry.operators.campaign.QikberryBulkCampaignOperator`.

A campaign is two passes over its rows, neither of which holds the rows in memory:

1. **Prepare**: read the source once (a list, a CSV file, a SQL query or an XCom), validate each row's number,
   render and measure its text, drop exact duplicates (same number and text), count SMS units, and write the
   accepted rows to a spool file in a temporary directory and the rejected ones to the rejected report.
   Every limit is then checked before anything is sent: at most 500,000 messages, the ``max_invalid_ratio``
   of rejected rows, the split-schedule window, and the balance.
2. **Send**: stream the spool in chunks of ``chunk_size`` rows, strictly in order, each through
   ``QikberryHook.send_batch`` (``sms/send/json`` with the campaign ``name``, so each request gets a group
   id). A row the API refuses (a 422 naming it) or leaves out of its answer is reported not sent and the
   rest of its chunk still goes out. Every row carries a deterministic custom id
   ``qc-<key>-<chunk>-<position>``, so a retried task finds the prefix of chunks its earlier tries reached
   with a few status lookups, settles them row by row, and sends only the rest.

The package, module by module: :mod:`.options` (what to send, the chunk plan), :mod:`.sources` (where the rows
come from), :mod:`.storage` (files on object storage), :mod:`.preparation` (pass 1 and the rejected report),
:mod:`.chunks` (sending one chunk and what became of its rows), :mod:`.resume` (finding how far an earlier try
got) and :mod:`.engine` (the whole campaign). Only the engine, the chunk sender and the resume search talk to
the API, through the hook they are given. This module is the package's face: the names a caller needs. See
docs/campaign.md.

Example::

    from airflow_qikberry.campaign import CampaignOptions, Source, recipient_rows, run_campaign

    summary = run_campaign(
        CampaignOptions.checked(name="welcome", message="Welcome to Qikberry!"),
        source=Source("recipients", lambda: recipient_rows(["919876543210", "919876543211"])),
        hook=QikberryHook(),
    )
"""

from airflow_qikberry.campaign.engine import run_campaign
from airflow_qikberry.campaign.options import CampaignOptions, ChunkPlan, batch_times
from airflow_qikberry.campaign.preparation import (
    INVALID_NUMBER,
    MISSING_NUMBER,
    Prepared,
    RejectedReport,
    check_limits,
    compile_row_template,
    context_globals,
    prepare,
    scrub,
)
from airflow_qikberry.campaign.sources import (
    MAX_CSV_BYTES,
    Source,
    check_csv_file,
    choose_source,
    csv_rows,
    phone_key,
    recipient_rows,
    sql_rows,
)
from airflow_qikberry.campaign.storage import ObjectSource, is_object_storage, object_csv_rows, object_path

__all__ = [
    "INVALID_NUMBER",
    "MAX_CSV_BYTES",
    "MISSING_NUMBER",
    "CampaignOptions",
    "ChunkPlan",
    "ObjectSource",
    "Prepared",
    "RejectedReport",
    "Source",
    "batch_times",
    "check_csv_file",
    "check_limits",
    "choose_source",
    "compile_row_template",
    "context_globals",
    "csv_rows",
    "is_object_storage",
    "object_csv_rows",
    "object_path",
    "phone_key",
    "prepare",
    "recipient_rows",
    "run_campaign",
    "scrub",
    "sql_rows",
]
