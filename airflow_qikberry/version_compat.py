"""
Which Airflow this process runs, for the few places that must differ between Airflow 2.11 and 3.x.

Today one flag, read where the task context differs (:mod:`airflow_qikberry.campaign.preparation`); add the
next one (``AIRFLOW_V_3_1_PLUS``...) when code needs it, not before.

As in the official providers: prefer ``airflow.providers.common.compat`` imports (they pick the right path
on every version); branch on these flags only where behaviour, not an import path, differs.

Example::

    from airflow_qikberry.version_compat import AIRFLOW_V_3_0_PLUS

    if AIRFLOW_V_3_0_PLUS:
        ...
"""

from __future__ import annotations

__all__ = ["AIRFLOW_V_3_0_PLUS", "get_base_airflow_version_tuple"]


def get_base_airflow_version_tuple() -> tuple[int, int, int]:
    """Return (major, minor, micro) of the running Airflow, pre-release and local parts dropped."""
    from airflow import __version__
    from packaging.version import Version

    version = Version(__version__)
    return version.major, version.minor, version.micro


AIRFLOW_V_3_0_PLUS: bool = get_base_airflow_version_tuple() >= (3, 0, 0)
