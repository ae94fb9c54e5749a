"""
Waiting for delivery reports: what the delivery sensor and trigger share.

* :mod:`~airflow_qikberry.delivery.inputs` - status sets, message and group ids, ratio and count checks.
* :mod:`~airflow_qikberry.delivery.tracker` - :class:`DeliveryTracker`: what is known, the cheapest next
  sweep, the verdict and the summary (no I/O).
* :mod:`~airflow_qikberry.delivery.sweep` - one sweep's lookups, written once, carried out by a blocking
  driver (sensors) or a concurrent one (triggers).
* :mod:`~airflow_qikberry.delivery.report` - descriptions, failure and timeout messages, trigger events.
"""
