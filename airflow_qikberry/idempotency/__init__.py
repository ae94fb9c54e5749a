"""
Exactly-once sends: custom ids, task identity, and the state machine that settles an unknown outcome.

Every send carries a custom id (``custom``). A send is repeated only when it provably was not processed
(connection refused, 429, 503). When its outcome is unknown (read timeout, connection dropped after
sending, 408/500/502/504/52x, a 200 whose rows do not account for every number) the custom id is looked up,
page by page, for a bounded *reconcile window* with backoff, because the API shows accepted messages in
``sms/status`` only after a while. What the lookup finds decides:

* rows for exactly the numbers sent: the send was accepted; they are returned, nothing is sent again;
* nothing, when the window closes: the send was not accepted and is repeated (never for bulk uploads,
  whose processing can outlast any window; those raise :class:`QikberryDeliveryUnknownError`);
* rows in another shape (other numbers, no group id, only some numbers), or rows submitted before this
  call began (the custom id was reused): unknown, reported, never resent.

Inside an Airflow task the derived custom id is stable across tries, so a retried task finds what an
earlier try sent and returns it instead of sending again; ``resend=True`` derives fresh ids on purpose.

The package, module by module: :mod:`.keys` (custom ids and task identity), :mod:`.findings` (what a
lookup found), :mod:`.exactly_once` (the state machine) and :mod:`.resume` (how far an earlier try of a
campaign got). This module is the package's face.
"""

from airflow_qikberry.idempotency.exactly_once import ExactlyOnce, Send, Unaccounted, accounted_for
from airflow_qikberry.idempotency.findings import (
    ABSENT,
    Finding,
    FindingKind,
    ReuseCheck,
    match_batch_rows,
    match_send_rows,
    match_upload_rows,
    reused,
    submitted_before,
)
from airflow_qikberry.idempotency.keys import (
    CAMPAIGN_ID_PREFIX,
    TaskIdentity,
    batch_identity,
    campaign_custom_id,
    campaign_key,
    canonical_fields,
    derive_custom_id,
    fingerprint,
    is_task_retry,
    sample_positions,
    send_fingerprint,
    task_identity,
)
from airflow_qikberry.idempotency.resume import accepted_prefix, confirm_absent, resume_point

__all__ = [
    "ABSENT",
    "CAMPAIGN_ID_PREFIX",
    "ExactlyOnce",
    "Finding",
    "FindingKind",
    "ReuseCheck",
    "Send",
    "TaskIdentity",
    "Unaccounted",
    "accepted_prefix",
    "accounted_for",
    "batch_identity",
    "campaign_custom_id",
    "campaign_key",
    "canonical_fields",
    "confirm_absent",
    "derive_custom_id",
    "fingerprint",
    "is_task_retry",
    "match_batch_rows",
    "match_send_rows",
    "match_upload_rows",
    "resume_point",
    "reused",
    "sample_positions",
    "send_fingerprint",
    "submitted_before",
    "task_identity",
]
