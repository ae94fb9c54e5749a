"""
The only modules of the provider that speak HTTP: a requests transport and an httpx transport.

Both turn one request into a :class:`~airflow_qikberry.transport.base.RawResponse` or a
:class:`~airflow_qikberry.transport.base.TransportFailure` that says whether the request can have reached
the server, share the retry policy of :mod:`airflow_qikberry.transport.retry`, and leave every meaning
(envelopes, errors, what is safe to repeat) to :mod:`airflow_qikberry.protocol`. The heavy libraries are
imported when a transport is first used, not when this package is imported.

Nothing is re-exported here: importing :mod:`airflow_qikberry.transport.retry` (every hook does, at DAG parse
time) must not import the transports' common ground and the wire format with it.
"""
