"""Campaign files on object storage: a CSV source read from, and a rejected report written to, a real S3
protocol server through Airflow's ObjectStoragePath and an Airflow ``aws`` connection.

The server is moto's S3 server (a real HTTP server on 127.0.0.1, reached by s3fs through the Amazon
provider's filesystem, as a deployment's workers reach S3); fsspec's memory filesystem would prove nothing
between processes. The campaign itself goes to the emulator over HTTP, as everywhere else.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("s3fs", reason="the object-storage tests need the dev extras (s3fs, moto, amazon)")
pytest.importorskip("moto.server", reason="the object-storage tests need the dev extras (moto, flask)")
pytest.importorskip("airflow.providers.amazon", reason="the object-storage tests need the Amazon provider")

from airflow_qikberry import campaign as c
from airflow_qikberry.exceptions import (
    QikberryError,
    QikberrySourceChangedError,
    QikberryValidationError,
)
from airflow_qikberry.hooks.qikberry import QikberryHook
from tests.helpers import Sleeps, count

CONN_ID = "campaign_s3"
TRY_1 = ("campaign_dag", "send", "manual__2026-12-04", "-1", "1")
TRY_2 = (*TRY_1[:4], "2")
ROWS, CHUNK = 40, 4


# One server per test process for the session: Airflow keeps each connection's store (and its filesystem,
# endpoint included) for the life of the process, as a worker would. With a server per module, a module
# whose tests an xdist worker ran apart was given a second server on another port, which the kept store did
# not know (7 tests failed, "Could not connect to the endpoint URL" of the first server).
@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


class Bucket:
    """A fresh bucket on the S3 server, written and read with boto3 (not through the code under test)."""

    def __init__(self, endpoint: str) -> None:
        import boto3

        self.name = f"campaigns-{uuid.uuid4().hex[:12]}"
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="test-key",
            aws_secret_access_key="test-secret-key",
            region_name="us-east-1",
        )
        self.client.create_bucket(Bucket=self.name)

    def url(self, key: str) -> str:
        return f"s3://{self.name}/{key}"

    def put(self, key: str, body: bytes) -> str:
        self.client.put_object(Bucket=self.name, Key=key, Body=body)
        return self.url(key)

    def get(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.name, Key=key)["Body"].read())


@pytest.fixture
def bucket(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    # An Airflow connection as a deployment has one: the credentials and the endpoint in the connection,
    # none in the DAG or the URL.
    conn = {
        "conn_type": "aws",
        "login": "test-key",
        "password": "test-secret-key",
        "extra": {"endpoint_url": s3_server, "region_name": "us-east-1"},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    return Bucket(s3_server)


def numbers(n: int = ROWS) -> list[str]:
    return [f"9198766{i:05d}" for i in range(n)]


def csv_bytes(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["mobile", "name"])
    writer.writerows(rows)
    return out.getvalue().encode()


def customers(n: int = ROWS, *, bad: bool = True) -> bytes:
    rows = [[num, f"C{i}"] for i, num in enumerate(numbers(n))]
    if bad:
        rows.append(["12345", "Nobody"])  # not a phone number: a rejected row
    return csv_bytes(rows)


@pytest.fixture
def sleeps(emulator: Any) -> Sleeps:
    return Sleeps(emulator)


@pytest.fixture
def hook(make_qikberry_conn: Callable[..., str], sleeps: Sleeps) -> QikberryHook:
    return QikberryHook(qikberry_conn_id=make_qikberry_conn(reconcile_window=4), clock=sleeps)


class DictStore:
    """Stands in for Airflow's ``task_state_store`` accessor (as in test_campaign_resume.py)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        self.data[key] = json.loads(json.dumps(value))  # what a real store keeps: JSON


def object_source(url: str, field: str = "csv_path") -> c.Source:
    """The source the operator builds for a csv_path on object storage."""
    source = c.ObjectSource(c.object_path(url, CONN_ID, field=field), field=field)
    source.check()
    return c.Source(field, lambda: c.object_csv_rows(source), source.identity)


def run(
    hook: QikberryHook, identity: Any, url: str, *, store: Any = None, rejected: str | None = None
) -> dict[str, Any]:
    opts = c.CampaignOptions.checked(name="objstore", has_template=True, chunk_size=CHUNK)
    return c.run_campaign(
        opts,
        source=object_source(url),
        hook=hook,
        render=lambda row: f"Hi {row['name']}, your order shipped",
        rejected_path=rejected,
        storage_conn_id=CONN_ID,
        store=store,
        identity=identity,
    )


def kill_at(emulator: Any, chunk: int) -> None:
    emulator.set_faults(
        [{"endpoint": "sms/send/json", "method": "POST", "kind": "error", "status": 501, "after": chunk}]
    )


def assert_each_once(emulator: Any, expected: list[str]) -> None:
    sent = Counter(m["mobile"] for m in emulator.messages())
    assert sorted(sent) == sorted(expected)
    assert set(sent.values()) == {1}


# --- through the operator, in a real DAG run


DAG = """
import pendulum
from datetime import timedelta
from airflow.providers.common.compat.sdk import dag
from airflow_qikberry.operators.campaign import QikberryBulkCampaignOperator

@dag(dag_id="campaign_s3", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
def campaign_s3():
    QikberryBulkCampaignOperator(
        task_id="send",
        name="s3-{{ run_id }}",
        csv_path="{{ dag_run.conf['csv'] }}",
        rejected_path="{{ dag_run.conf['rejected'] }}",
        storage_conn_id="campaign_s3",
        message_template="Hi {{ row.name }}, your order shipped",
        chunk_size=4,
        retries=1,
        retry_delay=timedelta(seconds=0),
    )

campaign_s3()
"""


@pytest.mark.slow
@pytest.mark.parametrize("dies_at", [None, 3])
def test_operator_reads_s3_through_a_connection_writes_the_report_there_and_resumes(
    dies_at: int | None, run_dag: Any, make_qikberry_conn: Any, emulator: Any, bucket: Bucket
) -> None:
    make_qikberry_conn(reconcile_window=1)
    src = bucket.put("in/customers.csv", customers())
    conf = {"csv": src, "rejected": bucket.url("out/rejected.csv")}
    if dies_at is not None:  # the first try dies at this chunk; Airflow retries the task
        post = {"endpoint": "sms/send/json", "method": "POST", "after": dies_at, "times": 1}
        emulator.set_faults([{**post, "kind": "error", "status": 501}])

    result = run_dag(DAG, "campaign_s3", conf=conf)

    assert result == {"send": "success"}
    assert_each_once(emulator, numbers())
    summary = result.xcom("send")
    assert summary["accepted"] == ROWS
    assert summary["rejected_total"] == 1
    assert summary["resumed_from_chunk"] == dies_at
    report = list(csv.reader(io.StringIO(bucket.get("out/rejected.csv").decode())))
    assert report[0] == ["row", "reason", "value", "detail"]
    assert [(r[0], r[1], r[2]) for r in report[1:]] == [(str(ROWS + 1), "invalid_number", "12345")]


# --- the engine, two tries of one task (as in test_campaign_resume.py)


def test_a_retry_reads_the_same_bytes_and_resumes(
    hook: QikberryHook, emulator: Any, bucket: Bucket, caplog: Any
) -> None:
    url = bucket.put("customers.csv", customers())
    store = DictStore()
    kill_at(emulator, 5)
    with pytest.raises(QikberryError):
        run(hook, TRY_1, url, store=store)
    emulator.clear_faults()
    recorded = store.get(next(k for k in store.data if ":" not in k))["source"]
    assert recorded["url"] == f"s3://{CONN_ID}@{bucket.name}/customers.csv"  # the connection, no secret
    assert recorded["size"] == len(customers())
    assert recorded["etag"]
    assert recorded["sha256"]

    summary = run(hook, TRY_2, url, store=store)

    assert summary["resumed_from_chunk"] == 5
    assert summary["accepted"] == ROWS
    assert_each_once(emulator, numbers())


@pytest.mark.parametrize(
    "change",
    ["other rows", "same size, other bytes", "rows appended"],
)
def test_a_retry_refuses_an_object_that_changed(
    hook: QikberryHook, emulator: Any, bucket: Bucket, change: str
) -> None:
    url = bucket.put("customers.csv", customers())
    store = DictStore()
    kill_at(emulator, 3)
    with pytest.raises(QikberryError):
        run(hook, TRY_1, url, store=store)
    emulator.clear_faults()
    sent = len(emulator.messages())
    if change == "other rows":
        body = csv_bytes([[n, f"D{i}"] for i, n in enumerate(numbers())])
    elif change == "same size, other bytes":
        body = customers().replace(b",C1\r", b",X1\r", 1)
        assert len(body) == len(customers())
        assert body != customers()
    else:
        body = customers() + b"919876699999,Late\n"
    bucket.put("customers.csv", body)

    with pytest.raises(QikberrySourceChangedError) as err:
        run(hook, TRY_2, url, store=store)

    assert err.value.field == "csv_path"
    assert "sha256" in err.value.changes
    assert "etag" in err.value.changes
    if change == "rows appended":
        assert err.value.changes["size"] == (len(customers()), len(body))
    message = err.value.message
    assert f"{bucket.name}/customers.csv" in message
    assert "nothing was sent in this try" in message
    assert "resend=True" in message
    assert len(emulator.messages()) == sent  # not one more message


def test_an_object_rewritten_with_the_same_bytes_resumes(
    hook: QikberryHook, emulator: Any, bucket: Bucket
) -> None:
    url = bucket.put("customers.csv", customers())
    store = DictStore()
    kill_at(emulator, 2)
    with pytest.raises(QikberryError):
        run(hook, TRY_1, url, store=store)
    emulator.clear_faults()
    bucket.put("customers.csv", customers())  # uploaded again by the export: a new modified time

    assert run(hook, TRY_2, url, store=store)["accepted"] == ROWS
    assert_each_once(emulator, numbers())


def test_size_limit_is_checked_with_the_store_before_reading(
    hook: QikberryHook, emulator: Any, bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = bucket.put("big.csv", customers())
    monkeypatch.setattr(c.sources, "MAX_CSV_BYTES", len(customers()) - 1)
    with pytest.raises(
        QikberryValidationError, match=r"csv_path: .*big\.csv.* campaign files may be at most"
    ):
        object_source(url)
    assert count(emulator, "POST sms/send/json") == 0


def test_size_limit_holds_while_streaming_an_object_that_grew(
    hook: QikberryHook, emulator: Any, bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = bucket.put("grows.csv", customers())
    monkeypatch.setattr(c.sources, "MAX_CSV_BYTES", len(customers()) + 10)
    source = object_source(url)  # within the limit when checked...
    bucket.put("grows.csv", customers() + b"919876699999,Late\n" * 50)  # ...then replaced by a bigger one
    opts = c.CampaignOptions.checked(name="grows", message="Hello", chunk_size=CHUNK)
    with pytest.raises(QikberryValidationError, match=r"csv_path: .*grows\.csv.* is over [\d,]+ bytes"):
        c.run_campaign(opts, source=source, hook=hook, identity=TRY_1)
    assert count(emulator, "POST sms/send/json") == 0


def test_a_missing_object_or_bucket_is_a_typed_error_naming_the_field(bucket: Bucket) -> None:
    with pytest.raises(QikberryValidationError, match=r"csv_path: 's3://.*/nope\.csv' does not exist"):
        object_source(bucket.url("nope.csv"))
    with pytest.raises(QikberryValidationError, match=r"csv_path: "):
        object_source("s3://no-such-bucket-here/customers.csv")


def test_file_url_source_and_report(hook: QikberryHook, emulator: Any, tmp_path: Path) -> None:
    src = tmp_path / "customers.csv"
    src.write_bytes(customers())
    summary = run(hook, None, f"file://{src}", rejected=f"file://{tmp_path / 'rejected.csv'}")
    assert summary["accepted"] == ROWS
    assert "invalid_number" in (tmp_path / "rejected.csv").read_text()


def test_a_password_in_a_url_is_never_shown() -> None:
    assert c.storage.shown("s3://AKIAKEY:s3cr3t-value@bucket/key.csv") == "s3://AKIAKEY@bucket/key.csv"
    assert "s3cr3t" not in c.storage.shown("ftp://user:s3cr3t@host/file.csv")


# --- the flagship, its files on S3 (its default, file://, runs in tests/example_dags and tests/e2e)


@pytest.mark.slow
def test_flagship_keeps_its_files_on_s3_when_told_so(
    run_dag: Any, qikberry_conn: str, emulator: Any, bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_QIKBERRY_CAMPAIGN_STORAGE", f"s3://{bucket.name}/campaigns")
    monkeypatch.setenv("AIRFLOW_VAR_QIKBERRY_CAMPAIGN_STORAGE_CONN_ID", CONN_ID)
    flagship = Path(__file__).resolve().parents[2] / "example_dags" / "qikberry_campaign_pipeline.py"

    result = run_dag(flagship.read_text(encoding="utf-8"), "qikberry_campaign_pipeline")

    assert result.state == "success", result
    keys = sorted(o["Key"] for o in bucket.client.list_objects_v2(Bucket=bucket.name)["Contents"])
    assert len(keys) == 2
    assert keys[0].endswith("/customers.csv")
    assert keys[1].endswith("/rejected.csv")
    assert result.xcom("export_customers", "csv") == f"s3://{CONN_ID}@{bucket.name}/{keys[0]}"
    assert result.xcom("campaign")["accepted"] == 60
    assert len(emulator.messages()) == 60
    assert b"invalid_number" in bucket.get(keys[1])


def test_a_report_that_cannot_be_written_stops_the_campaign_before_sending(
    hook: QikberryHook, emulator: Any, bucket: Bucket
) -> None:
    url = bucket.put("customers.csv", customers())
    with pytest.raises(
        QikberryValidationError, match=r"rejected_path: cannot write 's3://.*no-such-bucket-x"
    ):
        run(hook, None, url, rejected="s3://no-such-bucket-x/rejected.csv")
    assert count(emulator, "POST sms/send/json") == 0
