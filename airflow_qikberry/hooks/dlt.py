"""
What :class:`~airflow_qikberry.hooks.qikberry.QikberryHook` does with DLT senders and templates.

It reads them (:meth:`DltHookMixin.get_templates`, :meth:`~DltHookMixin.get_senders`, the cached
:meth:`~DltHookMixin.dlt_catalog`), send a stored template (:meth:`~DltHookMixin.send_template`) and run the
DLT pre-check of a prepared send (:meth:`~DltHookMixin.check_dlt`). Kept apart so the hook module stays a
thin face; the work is :mod:`airflow_qikberry.lookups`, :mod:`airflow_qikberry.sends` and
:mod:`airflow_qikberry.precheck`'s. Like the hook module, it imports those on first use. See docs/dlt.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from airflow_qikberry.catalog import Catalog, DltSender, DltTemplate
    from airflow_qikberry.connection import ConnectionSettings
    from airflow_qikberry.lookups import Lookup
    from airflow_qikberry.models import SentMessage
    from airflow_qikberry.send_options import TemplateParams
    from airflow_qikberry.sends import PreparedSend

__all__ = ["DltHookMixin"]

T = TypeVar("T")


class DltHookMixin:
    """
    DLT senders and templates, sends by template and the DLT pre-check, for ``QikberryHook``.

    Example::

        hook = QikberryHook()
        [(t.alias, t.template_id, t.body) for t in hook.get_templates()]
        hook.send_template("919876543210", "otp-login", {"otp": "4711"})
    """

    if TYPE_CHECKING:
        log: Any

        @property
        def settings(self) -> ConnectionSettings: ...

        def _run(self, lookup: Lookup[T]) -> T: ...

        def send_prepared(self, prepared: PreparedSend[T]) -> T: ...

    def get_templates(self) -> list[DltTemplate]:
        """Every DLT template of the account (``sms/templates``, all pages)."""
        from airflow_qikberry.lookups import templates

        return self._run(templates())

    def get_senders(self) -> list[DltSender]:
        """Every sender (DLT header) of the account (``sms/senders``, all pages)."""
        from airflow_qikberry.lookups import senders

        return self._run(senders())

    def dlt_catalog(self, *, refresh: bool = False) -> Catalog:
        """
        Return the account's senders and templates.

        They are reused in this process for the connection's ``templates_cache_seconds`` (``refresh`` reads
        them again); a list the account may not read is marked unavailable in the catalog, not raised.
        """
        from airflow_qikberry.catalog import cached_catalog
        from airflow_qikberry.lookups import dlt_catalog
        from airflow_qikberry.ratelimit import token_key

        s = self.settings
        return cached_catalog(
            token_key(s.base_url, s.token),
            s.templates_cache_seconds,
            lambda: self._run(dlt_catalog()),
            refresh=refresh,
        )

    def send_template(
        self,
        to: str | Iterable[str],
        template: str,
        data: Mapping[str, Any] | None = None,
        *,
        resend: bool = False,
        **params: Unpack[TemplateParams],
    ) -> list[SentMessage]:
        """
        Send a stored template (``sms/send/template``) with its variables ``data``.

        It goes from the template's sender on its route; returns one :class:`SentMessage` per number.

        ``template`` is the template's alias, stored id, DLT template id or name. It is looked up among the
        account's (:meth:`dlt_catalog`), its variables checked, its text rendered, measured and DLT
        pre-checked before any request. Keywords: ``flash``, ``webhook_id``, ``tags``, ``custom_id`` and
        ``dlt_check``. As for every send, ``custom_id`` (or one derived from the task) is the idempotency key:
        it goes out as ``meta.foreign_id`` and an unknown outcome is settled by looking it up.

        Example::

            sent = hook.send_template(["919876543210"], "otp-login", {"otp": "4711"}, custom_id="login-17")
        """
        from airflow_qikberry import template_sends
        from airflow_qikberry.send_options import SendOptions, TemplateParams

        SendOptions.from_keywords("send_template", params, TemplateParams)  # refuses a foreign keyword
        options = SendOptions(**params, template=template, template_data=data)
        prepared = template_sends.prepare_template(
            self.settings, to, options, self.dlt_catalog(), resend=resend
        )
        return self.send_prepared(prepared)

    def check_dlt(self, prepared: PreparedSend[Any]) -> None:
        """
        Run the DLT pre-check of a prepared send (:mod:`airflow_qikberry.precheck`).

        It is what ``send_prepared`` runs before posting, and what a dry run runs on its own.
        """
        if prepared.dlt_check == "off":  # checks nothing: its subjects (one per node of a batch) not built
            return
        from airflow_qikberry import precheck

        precheck.run(prepared.dlt_subjects(), self.dlt_catalog, prepared.dlt_check, self.log)

    def dlt_summary(self) -> str:
        """One line on the account's senders and templates, for ``test_connection`` (read afresh)."""
        from airflow_qikberry.exceptions import QikberryError

        try:
            catalog = self.dlt_catalog(refresh=True)
        except QikberryError as exc:
            return f"DLT senders and templates not read ({exc.message})"
        names = ", ".join(t.alias or t.name for t in catalog.templates[:5])
        more = ", ..." if len(catalog.templates) > 5 else ""
        return (
            catalog.summary() + (f": {names}{more}" if names else "") + " (hook.get_templates() lists them)"
        )
