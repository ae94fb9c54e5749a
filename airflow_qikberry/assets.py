"""
Delivery reports as Airflow assets: "SMS failed" and "SMS delivered" for a connection (Airflow 3).

Declare the asset in the DAG file of the DAG that reacts to it; the asset's watcher
(:class:`~airflow_qikberry.triggers.delivery_events.QikberryDeliveryEventTrigger`) runs in the triggerer and
adds an asset event for each batch of new reports, which starts a run of every DAG scheduled on the asset.
The run reads the reports with :func:`airflow_qikberry.delivery.events.reports_in`. See
docs/delivery-events.md for how reports get there (pushes, recorded sends) and what is guaranteed.

Airflow 2.11 has no asset watchers: there :func:`delivery_asset` raises, and :data:`DELIVERY_EVENTS_SUPPORTED`
is False, so a DAG file that must also parse on 2.11 guards the declaration.

Example::

    from airflow_qikberry.assets import DELIVERY_EVENTS_SUPPORTED, sms_failed

    @dag(schedule=[sms_failed("qikberry_default")] if DELIVERY_EVENTS_SUPPORTED else None, ...)
    def resend_failed(): ...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from airflow_qikberry.version_compat import AIRFLOW_V_3_0_PLUS

__all__ = ["DELIVERY_EVENTS_SUPPORTED", "delivery_asset", "sms_delivered", "sms_failed"]

#: Whether this Airflow runs asset watchers (3.0+). The asset state store that keeps a watcher from
#: emitting reports again after a restart is 3.3+.
DELIVERY_EVENTS_SUPPORTED: bool = AIRFLOW_V_3_0_PLUS

Outcome = Literal["failed", "delivered", "final"]


def _default_name(conn_id: str, outcome: str, campaign: str | None, sender: str | None) -> str:
    name = f"qikberry/{conn_id}/sms_{outcome}"
    if campaign is not None:
        name += f"/campaign/{campaign}"
    if sender is not None:
        name += f"/sender/{sender}"
    return name


def delivery_asset(
    outcome: Outcome = "failed",
    *,
    qikberry_conn_id: str = "qikberry_default",
    campaign: str | None = None,
    sender: str | None = None,
    statuses: Sequence[str] | None = None,
    name: str | None = None,
    **trigger_kwargs: Any,
) -> Any:
    """
    Return an asset that gets an event for each batch of new final delivery reports of a connection.

    :param outcome: ``"failed"``, ``"delivered"`` or ``"final"`` (both).
    :param qikberry_conn_id: the connection the messages were sent with.
    :param campaign: only this campaign's messages (its name, or a glob such as ``"bill-reminder-*"``).
    :param sender: only messages from this sender id.
    :param statuses: exactly these statuses instead of an outcome (e.g. ``["UNDELIV", "EXPIRED"]``).
    :param name: the asset's name; default ``qikberry/<conn>/sms_<outcome>[/campaign/<c>][/sender/<s>]``.
    :param trigger_kwargs: more arguments of
        :class:`~airflow_qikberry.triggers.delivery_events.QikberryDeliveryEventTrigger`
        (``poll_interval``, ``catch_up_interval``, ``lookback_hours``, ``max_batch``, status sets).

    Raises :class:`~airflow_qikberry.exceptions.QikberryError` on Airflow 2 (no asset watchers).
    """
    from airflow_qikberry.exceptions import QikberryError, QikberryValidationError

    if not DELIVERY_EVENTS_SUPPORTED:
        raise QikberryError(
            "Delivery-event assets need Airflow 3 (asset watchers); this is Airflow 2. Guard the "
            "declaration with airflow_qikberry.assets.DELIVERY_EVENTS_SUPPORTED, or wait for delivery with "
            "QikberryDeliverySensor (see docs/delivery-events.md)."
        )
    if outcome not in ("failed", "delivered", "final"):
        raise QikberryValidationError(
            f"outcome must be 'failed', 'delivered' or 'final', got {outcome!r}.", field="outcome"
        )
    if AIRFLOW_V_3_0_PLUS:  # always here (checked above); the guard keeps 2.11 from importing airflow.sdk
        from airflow.sdk import Asset, AssetWatcher

    from airflow_qikberry.triggers.delivery_events import QikberryDeliveryEventTrigger

    trigger = QikberryDeliveryEventTrigger(
        qikberry_conn_id=qikberry_conn_id,
        outcomes=["delivered", "failed"] if outcome == "final" else [outcome],
        statuses=statuses,
        campaign=campaign,
        sender=sender,
        **trigger_kwargs,
    )
    asset_name = name or _default_name(qikberry_conn_id, outcome, campaign, sender)
    return Asset(name=asset_name, watchers=[AssetWatcher(name=f"qikberry_sms_{outcome}", trigger=trigger)])


def sms_failed(qikberry_conn_id: str = "qikberry_default", **kwargs: Any) -> Any:
    """Return the "SMS failed" asset of a connection (see :func:`delivery_asset`)."""
    return delivery_asset("failed", qikberry_conn_id=qikberry_conn_id, **kwargs)


def sms_delivered(qikberry_conn_id: str = "qikberry_default", **kwargs: Any) -> Any:
    """Return the "SMS delivered" asset of a connection (see :func:`delivery_asset`)."""
    return delivery_asset("delivered", qikberry_conn_id=qikberry_conn_id, **kwargs)
