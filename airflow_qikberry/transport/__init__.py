"""
The only modules of the provider that speak HTTP: a requests transport and an httpx transport.

Both turn one request into a :class:`RawResponse` or a :class:`TransportFailure` that says whether the
request can have reached the server, share the retry policy of :mod:`airflow_qikberry.transport.retry`, and
leave every meaning (envelopes, errors, what is safe to repeat) to :mod:`airflow_qikberry.protocol`.
The heavy libraries are imported when a transport is first used, not when this package is imported.
"""

from __future__ import annotations

from airflow_qikberry.transport.base import FailureKind, RawResponse, TransportFailure

__all__ = ["FailureKind", "RawResponse", "TransportFailure"]
