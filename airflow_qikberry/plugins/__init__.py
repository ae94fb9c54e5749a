"""Airflow plugins of the provider (the delivery-report receiver)."""
