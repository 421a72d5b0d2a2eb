"""The ingest batch code and the ingest Lambda handler, at every boundary they meet.

- against the real LocalFeatureStore (the local mode's client);
- against a boto3 `sagemaker-featurestore-runtime` client with botocore's Stubber (request shape,
  per-record errors);
- over real HTTP against bench/fake_featurestore_endpoint.py on 127.0.0.1 with the Lambda's own
  shared client (adaptive retries really retry a ThrottlingException and succeed; persistent
  failures are reported per record id and make the handler raise IngestError).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import sys
import time
from itertools import islice
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.stub import ANY, Stubber

from churn.csv_input import iter_raw_rows
from churn.features import from_feature_store_record, to_feature_store_record, to_record
from churn.handlers import _runtime
from churn.handlers import ingest as ingest_handler
from churn.ingest import FAILED_BATCH_LOG_MESSAGE, IngestError, ingest_batch
from churn.sql import table_reference, training_set_sql
from pipeline.local import create_feature_group
from pipeline.local_aws.feature_store import LocalFeatureStore
from tests.unit.lambda_support import FakeContext

ROOT = Path(__file__).resolve().parents[2]
GROUP = "test-churn-features"
T1 = "2026-11-26T07:07:54.120Z"
T2 = "2026-11-27T08:00:00.000Z"


def _load_fake_endpoint():
    path = ROOT / "bench" / "fake_featurestore_endpoint.py"
    spec = importlib.util.spec_from_file_location("fake_featurestore_endpoint", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


fake = _load_fake_endpoint()


@pytest.fixture(scope="module")
def raw_rows(data_path, spec) -> list[dict[str, str]]:
    """The first 40 rows of the bundled Telco file, as the CSV reader yields them."""
    with open(data_path, "rb") as stream:
        return [row for _, row in islice(iter_raw_rows(stream, str(data_path), spec), 40)]


@pytest.fixture
def store(tmp_path, spec):
    with LocalFeatureStore(tmp_path / "fs") as local:
        create_feature_group(local, GROUP, spec)
        yield local


@pytest.fixture
def lambda_env(monkeypatch, spec):
    """The ingest Lambda's environment (as the stack sets it) with dummy credentials."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("FEATURE_SPEC", spec.to_json())
    monkeypatch.setenv("FEATURE_GROUP_NAME", GROUP)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    _runtime.client.cache_clear()
    _runtime.feature_spec.cache_clear()
    yield monkeypatch
    _runtime.client.cache_clear()
    _runtime.feature_spec.cache_clear()


def lambda_event(rows: list[dict[str, str]], event_time: str = "2026-11-26T07:07:54.12Z") -> dict:
    """A Distributed Map batch: the CSV item reader's items plus the BatchInput the stack passes."""
    return {"Items": [dict(r) for r in rows], "BatchInput": {"event_time": event_time}}


def training_ids(store: LocalFeatureStore, spec, as_of: str) -> list[str]:
    con = store.connect_duckdb(GROUP, "db", "t")
    rows = con.execute(training_set_sql(spec, table_reference("db", "t")), [as_of]).fetchall()
    return [r[0] for r in rows]


# -- against the local feature store ---------------------------------------------------------
def test_batch_into_the_local_store_writes_every_record_as_converted(store, spec, raw_rows):
    result = ingest_batch(raw_rows, spec=spec, feature_group_name=GROUP, event_time=T1, client=store, max_workers=8)
    assert result.to_dict() == {"ingested": 40, "failed_count": 0, "failed": []}
    for row in (raw_rows[0], raw_rows[-1]):
        stored = store.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString=row["customerID"])
        assert from_feature_store_record(stored["Record"]) == to_record(row, spec, T1)


def test_bad_rows_are_reported_by_id_and_the_rest_is_written(store, spec, raw_rows):
    rows = [dict(r) for r in raw_rows[:10]]
    rows[3]["tenure"] = "two"
    rows[7]["Churn"] = "maybe"
    rows[8]["customerID"] = " "
    result = ingest_batch(rows, spec=spec, feature_group_name=GROUP, event_time=T1, client=store, max_workers=4)
    assert result.ingested == 7
    failed = {f["record_id"]: f["error"] for f in result.failed}
    assert set(failed) == {rows[3]["customerID"], rows[7]["customerID"], " "}
    assert "tenure" in failed[rows[3]["customerID"]] and "'two'" in failed[rows[3]["customerID"]]
    assert "Churn" in failed[rows[7]["customerID"]]
    missing = store.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString=rows[3]["customerID"])
    assert missing == {}


def test_the_same_batch_twice_is_idempotent(store, spec, raw_rows):
    first = ingest_batch(raw_rows, spec=spec, feature_group_name=GROUP, event_time=T1, client=store)
    before = store.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString=raw_rows[5]["customerID"])
    again = ingest_batch(raw_rows, spec=spec, feature_group_name=GROUP, event_time=T1, client=store)
    assert first.to_dict() == again.to_dict() == {"ingested": 40, "failed_count": 0, "failed": []}
    after = store.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString=raw_rows[5]["customerID"])
    assert after == before
    # the offline store is append-only (two versions per id); the training-set SQL keeps one
    ids = training_ids(store, spec, T1)
    assert sorted(ids) == sorted(r["customerID"] for r in raw_rows)
    assert len(ids) == len(set(ids)) == 40


def test_a_later_run_updates_records_and_the_training_set_stays_one_per_id(store, spec, raw_rows):
    ingest_batch(raw_rows, spec=spec, feature_group_name=GROUP, event_time=T1, client=store)
    changed = [dict(r, tenure="99") for r in raw_rows]
    ingest_batch(changed, spec=spec, feature_group_name=GROUP, event_time=T2, client=store)
    ingest_batch(raw_rows, spec=spec, feature_group_name=GROUP, event_time=T1, client=store)  # a late retry
    online = store.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString=raw_rows[0]["customerID"])
    assert from_feature_store_record(online["Record"])["tenure"] == "99"  # the older retry did not win
    assert len(training_ids(store, spec, T2)) == 40
    assert len(training_ids(store, spec, T1)) == 40  # as of T1: the first version, still once per id


def test_handler_against_the_local_store(lambda_env, store, raw_rows):
    lambda_env.setattr(ingest_handler, "client", lambda *args, **kwargs: store)
    items = [{"\ufeffcustomerID" if k == "customerID" else f" {k} ": v for k, v in r.items()} for r in raw_rows]
    result = ingest_handler.handler(lambda_event(items), FakeContext())
    assert result == {"ingested": 40, "failed_count": 0, "failed": []}
    stored = store.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString=raw_rows[0]["customerID"])
    assert from_feature_store_record(stored["Record"])["event_time"] == T1  # canonical form of BatchInput's time


def test_handler_raises_ingest_error_naming_the_failed_records(lambda_env, store, raw_rows, caplog):
    lambda_env.setattr(ingest_handler, "client", lambda *args, **kwargs: store)
    rows = [dict(r) for r in raw_rows[:12]]
    for i in range(7):
        rows[i]["MonthlyCharges"] = "n/a"
    with pytest.raises(IngestError) as info:
        ingest_handler.handler(lambda_event(rows), FakeContext())
    message = str(info.value)
    assert message.startswith("7 of 12 records failed: ")
    assert rows[0]["customerID"] in message and "and 2 more" in message
    # every failed record is in the function's log, as one structured line the operator CLI reads
    formatter = ingest_handler.logger.registered_formatter  # the JSON line Lambda's log gets
    logged = [json.loads(formatter.format(record)) for record in caplog.records]
    (failure,) = [entry for entry in logged if entry.get("message") == FAILED_BATCH_LOG_MESSAGE]
    assert failure["level"] == "ERROR" and failure["failed_count"] == 7 and failure["batch_items"] == 12
    assert [f["record_id"] for f in failure["failed_records"]] == [r["customerID"] for r in rows[:7]]
    assert all("MonthlyCharges" in f["error"] or "monthly_charges" in f["error"] for f in failure["failed_records"])
    # the good rows of the batch were written all the same
    kept = store.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString=rows[11]["customerID"])
    assert kept["Record"]


# -- the AWS boundary with botocore's Stubber ------------------------------------------------
def stubbed_client():
    return boto3.client("sagemaker-featurestore-runtime", region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def test_put_record_requests_have_the_service_shape(spec, raw_rows):
    client = stubbed_client()
    rows = raw_rows[:3]
    with Stubber(client) as stubber:  # Stubber also validates each request against the service model
        for row in rows:
            stubber.add_response(
                "put_record", {},
                {"FeatureGroupName": GROUP, "Record": to_feature_store_record(to_record(row, spec, T1))},
            )
        result = ingest_batch(rows, spec=spec, feature_group_name=GROUP, event_time=T1, client=client,
                              max_workers=1)
        stubber.assert_no_pending_responses()
    assert result.ingested == 3 and result.failed == []


def test_blank_total_charges_is_left_out_of_the_record(spec, data_path):
    with open(data_path, "rb") as stream:
        blank = next(r for _, r in iter_raw_rows(stream, str(data_path), spec) if r["TotalCharges"].strip() == "")
    expected = to_feature_store_record(to_record(blank, spec, T1))
    names = [item["FeatureName"] for item in expected]
    assert "total_charges" not in names and "tenure" in names  # missing, not zero: Feature Store stores null
    client = stubbed_client()
    with Stubber(client) as stubber:
        stubber.add_response("put_record", {}, {"FeatureGroupName": GROUP, "Record": expected})
        result = ingest_batch([blank], spec=spec, feature_group_name=GROUP, event_time=T1, client=client)
        stubber.assert_no_pending_responses()
    assert result.ingested == 1


def test_service_errors_are_reported_per_record_id(spec, raw_rows):
    client = stubbed_client()
    rows = raw_rows[:5]
    with Stubber(client) as stubber:
        for i, _ in enumerate(rows):
            if i == 1:
                stubber.add_client_error("put_record", "ValidationError", "feature 'x' is not defined", 400)
            elif i == 3:
                stubber.add_client_error("put_record", "AccessForbidden", "not authorized", 403)
            else:
                stubber.add_response("put_record", {}, {"FeatureGroupName": GROUP, "Record": ANY})
        result = ingest_batch(rows, spec=spec, feature_group_name=GROUP, event_time=T1, client=client,
                              max_workers=1)
    assert result.ingested == 3
    assert result.failed == [
        {"record_id": rows[1]["customerID"], "error": "ValidationError: feature 'x' is not defined"},
        {"record_id": rows[3]["customerID"], "error": "AccessForbidden: not authorized"},
    ]


# -- over HTTP: the Lambda's own client against a PutRecord endpoint on 127.0.0.1 -------------
@pytest.fixture
def endpoint(lambda_env, spec):
    """Start a fake endpoint with the given faults and point the Lambda's client at it."""
    servers = []

    def start(**faults):
        server = fake.feature_store_server(spec_path=ROOT / "data" / "churn.spec.json", **faults).start()
        servers.append(server)
        lambda_env.setenv("AWS_ENDPOINT_URL_SAGEMAKER_FEATURESTORE_RUNTIME", server.url)
        _runtime.client.cache_clear()
        return server

    yield start
    for server in servers:
        server.stop()


def test_the_lambda_client_is_shared_pooled_and_retries_adaptively(lambda_env):
    first = ingest_handler.featurestore_client()
    again = ingest_handler.featurestore_client()
    assert first is again
    assert first.meta.service_model.service_name == "sagemaker-featurestore-runtime"
    assert first.meta.config.max_pool_connections == ingest_handler.WORKERS
    from botocore.validate import ParamValidationDecorator  # wraps the serializer when validation is on

    assert not isinstance(first._serializer, ParamValidationDecorator)
    assert first.meta.config.retries["mode"] == "adaptive"
    assert first.meta.config.retries["total_max_attempts"] >= 5


def test_handler_over_http_writes_the_batch_concurrently(endpoint, raw_rows, spec):
    server = endpoint(latency_ms=20)
    started = time.perf_counter()
    result = ingest_handler.handler(lambda_event(raw_rows), FakeContext())
    elapsed = time.perf_counter() - started
    assert result == {"ingested": 40, "failed_count": 0, "failed": []}
    assert server.record_count(GROUP) == 40
    assert server.stats.max_in_flight > 1  # the batch's PutRecords overlap
    assert elapsed < 40 * 0.020  # faster than one request after another
    stored = from_feature_store_record(server.online_record(GROUP, raw_rows[0]["customerID"]))
    assert stored == to_record(raw_rows[0], spec, T1)


def warm_up(rows: list[dict[str, str]], seconds: float = 1.1) -> None:
    """Put rows for a while, as a warm Lambda container has. botocore's adaptive rate limiter
    measures the send rate in 0.5 s buckets and cuts its allowed rate to 0.7x per throttled
    response (floor 0.5 request/s): a client throttled before it has measured a rate, or throttled
    on many requests at once, crawls for seconds (measured in bench/README.md). That is the
    limiter's design; here it would only make the test slow."""
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        ingest_handler.handler(lambda_event(rows, "2026-01-01T00:00:00Z"), FakeContext())


def test_throttled_puts_are_retried_with_backoff_and_succeed(endpoint, raw_rows):
    server = endpoint()
    warm_up(raw_rows[:16])
    server.set_faults(fake.Faults(throttle_first=1))  # from now on each record's first attempt is throttled
    rows = raw_rows[16:24]
    result = ingest_handler.handler(lambda_event(rows), FakeContext())
    assert result == {"ingested": 8, "failed_count": 0, "failed": []}
    assert server.stats.throttled == 8
    assert all(server.stats.attempts[(GROUP, r["customerID"])] == 2 for r in rows)
    assert server.record_count(GROUP) == 24


def test_random_throttling_still_converges(endpoint, raw_rows):
    server = endpoint()
    warm_up(raw_rows[:16])
    server.set_faults(fake.Faults(throttle_rate=0.2, seed=3))
    result = ingest_handler.handler(lambda_event(raw_rows[16:]), FakeContext())
    assert result == {"ingested": 24, "failed_count": 0, "failed": []}
    assert server.stats.throttled > 0
    assert server.record_count(GROUP) == 40


def test_persistent_failures_are_reported_per_record_and_raise(endpoint, raw_rows):
    bad = {raw_rows[2]["customerID"], raw_rows[9]["customerID"]}
    server = endpoint(fail_ids=bad)
    with pytest.raises(IngestError) as info:
        ingest_handler.handler(lambda_event(raw_rows), FakeContext())
    message = str(info.value)
    assert message.startswith("2 of 40 records failed: ")
    for record_id in bad:
        assert f"{record_id} (ValidationError: record '{record_id}' is rejected" in message
        assert server.stats.attempts[(GROUP, record_id)] == 1  # a validation error is not retried
    assert server.record_count(GROUP) == 38


def test_rerunning_a_batch_over_http_is_idempotent(endpoint, raw_rows):
    server = endpoint()
    event = lambda_event(raw_rows)
    ingest_handler.handler(event, FakeContext())
    first = {r["customerID"]: server.online_record(GROUP, r["customerID"]) for r in raw_rows}
    assert ingest_handler.handler(event, FakeContext())["ingested"] == 40
    assert server.record_count(GROUP) == 40
    assert {r["customerID"]: server.online_record(GROUP, r["customerID"]) for r in raw_rows} == first


def test_get_record_round_trips_through_the_fake_endpoint(endpoint, raw_rows, spec):
    """The fake endpoint answers GetRecord like the service, so botocore parses it."""
    server = endpoint()
    client = boto3.client("sagemaker-featurestore-runtime", endpoint_url=server.url, region_name="us-east-1",
                          config=Config(retries={"mode": "standard", "max_attempts": 1}))
    ingest_batch(raw_rows[:1], spec=spec, feature_group_name=GROUP, event_time=T1, client=client)
    got = client.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString=raw_rows[0]["customerID"])
    assert from_feature_store_record(got["Record"]) == to_record(raw_rows[0], spec, T1)
    assert "Record" not in client.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="nobody")


def test_event_csv_items_match_the_distributed_map_reader(spec, data_path):
    """The Distributed Map's CSV reader gives every field as text keyed by the header: the same
    rows our local batching yields, so both paths convert identically."""
    text = data_path.read_text(encoding="utf-8").splitlines()[:3]
    with io.BytesIO(("\n".join(text) + "\n").encode()) as stream:
        local = [row for _, row in iter_raw_rows(stream, "x.csv", spec)]
    header = text[0].split(",")
    items = [dict(zip(header, line.split(","), strict=True)) for line in text[1:]]
    assert [ingest_handler.clean_item(i) for i in items] == local


# -- the local mode's "Ingest features" on worker processes -----------------------------------
def test_local_ingest_on_worker_processes_writes_everything_and_reports_bad_rows(tmp_path, spec, data_path,
                                                                                  monkeypatch):
    """Large files go to spawned worker processes, each with its own store on the shared root; the
    parent's store then sees every record, online and offline, and bad rows are reported by id."""
    from churn.config import PipelineSettings
    from pipeline import local
    from pipeline.local import LocalPipeline, PipelineFailed, Workspace

    lines = data_path.read_text(encoding="utf-8").splitlines()[:1201]
    bad_id = lines[700].split(",")[0]
    lines[700] = lines[700].rsplit(",", 1)[0] + ",perhaps"  # a label that is neither Yes nor No
    csv_path = tmp_path / "rows.csv"
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setattr(local, "PARALLEL_INGEST_MIN_BYTES", 0)
    settings = PipelineSettings(ingest_batch_size=100, ingest_max_concurrency=2)
    pipeline = LocalPipeline(spec=spec, settings=settings, workspace=Workspace(tmp_path / "ws"))
    monkeypatch.setattr(local.os, "cpu_count", lambda: 2)
    with LocalFeatureStore(tmp_path / "ws" / "feature-store") as store:
        with pytest.raises(PipelineFailed) as info:
            pipeline.ingest_features(store, csv_path, T1)
        assert info.value.error == "IngestError"
        assert info.value.cause.startswith(f"1 records failed: {bad_id} (column 'Churn'")
        con = store.connect_duckdb(pipeline.group, "db", "t")
        count, distinct = con.execute('SELECT count(*), count(DISTINCT customer_id) FROM "db"."t"').fetchone()
        assert count == distinct == 1199
        first_id = lines[1].split(",")[0]
        online = store.get_record(FeatureGroupName=pipeline.group, RecordIdentifierValueAsString=first_id)
        assert from_feature_store_record(online["Record"])["customer_id"] == first_id
        assert store.get_record(FeatureGroupName=pipeline.group, RecordIdentifierValueAsString=bad_id) == {}


# -- cutting a CSV into chunks of whole records for the worker processes -------------------------
@pytest.mark.parametrize("chunk_bytes", [1, 7, 64, 4096])
def test_split_csv_cuts_only_between_records(chunk_bytes):
    """Whatever the block size, header + each chunk parses to whole records, and all chunks together
    give exactly the rows of the file: quoted commas, quoted newlines, doubled quotes, CRLF, a BOM,
    multi-byte characters and a last line without a newline included."""
    from pipeline.ingest_workers import split_csv

    text = ('\ufeffid,name,note\r\n1,"Smith, Jo","line one\nline two"\r\n2,Zoë,plain\r\n'
            '3,"say ""hi""",x\n\n4,"",\n5,"multi\n\nline",end')
    header, chunks = split_csv(io.BytesIO(text.encode()), chunk_bytes)
    chunks = list(chunks)
    assert header.decode("utf-8-sig") == "id,name,note\r\n"
    assert b"".join([header, *chunks]) == text.encode()
    rows = []
    for chunk in chunks:
        rows += list(csv.reader(io.StringIO((header + chunk).decode("utf-8-sig"), newline=""), strict=True))[1:]
    assert rows == list(csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""), strict=True))[1:]


def test_split_csv_of_a_header_only_file_has_no_chunks():
    from pipeline.ingest_workers import split_csv

    header, chunks = split_csv(io.BytesIO(b"a,b,c"), 2)
    assert header == b"a,b,c"
    assert list(chunks) == []
