"""moto's S3 server for the flagship's files in the service-stack tests (a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest


@contextlib.contextmanager
def s3_server(bucket: str) -> Iterator[tuple[dict[str, str], Any]]:
    """moto's S3 server on 127.0.0.1 with ``bucket``: the flagship's storage Variables and a boto3 client."""
    pytest.importorskip("s3fs", reason="needs the dev extras (s3fs, moto, amazon)")
    pytest.importorskip("airflow.providers.amazon", reason="needs the Amazon provider")
    moto_server = pytest.importorskip("moto.server", reason="needs the dev extras (moto, flask)")
    import boto3

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="test-key",
            aws_secret_access_key="test-secret-key",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket=bucket)
        storage_conn = {
            "conn_type": "aws",
            "login": "test-key",
            "password": "test-secret-key",
            "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
        env = {
            "AIRFLOW_CONN_CAMPAIGN_S3": json.dumps(storage_conn),
            "AIRFLOW_VAR_QIKBERRY_CAMPAIGN_STORAGE": f"s3://{bucket}/exports",
            "AIRFLOW_VAR_QIKBERRY_CAMPAIGN_STORAGE_CONN_ID": "campaign_s3",
        }
        yield env, s3
    finally:
        server.stop()
