"""
Qikberry operators.

One module per operator, imported on its own (DAG files import them at every parse):

* :mod:`airflow_qikberry.operators.sms` - ``QikberrySendSmsOperator``
* :mod:`airflow_qikberry.operators.campaign` - ``QikberryBulkCampaignOperator``
* :mod:`airflow_qikberry.operators.balance` - ``QikberryCheckBalanceOperator``
"""
