"""The ingest batch code (BatchWriteRecord, 25 records a call) and the ingest Lambda handler, at the
boundaries they meet:

- against the real LocalFeatureStore (the local mode's client);
- against a boto3 `sagemaker-featurestore-runtime` client with botocore's Stubber (request shape,
  per-entry errors, unprocessed entries sent again, a failed call);
- the local "Ingest features" (pipeline.local_ingest) on worker processes, files cut into chunks.
"""

from __future__ import annotations

import csv
from itertools import islice
from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber
from lambda_support import FakeContext

from churn.csv_input import FIRST_DATA_LINE, iter_raw_rows
from churn.features import from_feature_store_record, to_feature_store_record, to_record
from churn.handlers import _runtime
from churn.handlers import ingest as ingest_handler
from churn.ingest import (
    BATCH_WRITE_MAX_ENTRIES,
    OFFLINE_ONLY,
    ONLINE_AND_OFFLINE,
    Backoff,
    ingest_batch,
    target_stores,
)
from churn.sql import AS_OF, KNOWLEDGE_CUTOFF, NO_CUTOFF, table_reference, training_set_sql
from pipeline import local_ingest
from pipeline.local_aws.feature_store import LocalFeatureStore
from pipeline.runner import create_feature_group

ROOT = Path(__file__).resolve().parents[2]
GROUP = "test-churn-features"
T1 = "2026-11-26T07:07:54.120Z"
T2 = "2026-11-27T08:00:00.000Z"
NO_WAIT = Backoff(sleep=lambda seconds: None)


@pytest.fixture(scope="module")
def raw_rows(data_path, group) -> list[tuple[int, dict[str, str]]]:
    """The first 40 rows of the bundled Telco file with their file lines, as the CSV reader yields them."""
    with open(data_path, "rb") as stream:
        return list(islice(iter_raw_rows(stream, str(data_path), group), 40))


@pytest.fixture
def store(tmp_path, group):
    with LocalFeatureStore(tmp_path / "fs") as local:
        create_feature_group(local, GROUP, group)
        yield local


@pytest.fixture
def lambda_env(monkeypatch, spec):
    """The ingest Lambda's environment (as the stack sets it) with dummy credentials."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("FEATURE_SPEC", spec.to_json())
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    _runtime.client.cache_clear()
    _runtime.feature_spec.cache_clear()
    yield monkeypatch
    _runtime.client.cache_clear()
    _runtime.feature_spec.cache_clear()


def lambda_event(rows: list[tuple[int, dict[str, str]]], event_time: str = "2026-11-26T07:07:54.12Z") -> dict:
    """A Distributed Map batch: items as the ItemSelector gives them (index in the file, the CSV reader's
    row) plus the BatchInput the stack passes."""
    return {"Items": [{"index": line - FIRST_DATA_LINE, "row": dict(row)} for line, row in rows],
            "BatchInput": {"event_time": event_time, "group": "churn", "feature_group_name": GROUP}}


def training_ids(store: LocalFeatureStore, spec, as_of: str) -> list[str]:
    store.flush()
    con = store.connect_duckdb(GROUP, "db", "t")
    query = training_set_sql(spec, {spec.groups[0].name: table_reference("db", "t")})
    values = {AS_OF: as_of, KNOWLEDGE_CUTOFF: NO_CUTOFF}
    return [r[0] for r in con.execute(query.text, [values[p] for p in query.parameters]).fetchall()]


# -- against the local feature store ---------------------------------------------------------
def test_batch_into_the_local_store_writes_every_record_as_converted(store, group, raw_rows):
    result = ingest_batch(raw_rows, group=group, feature_group_name=GROUP, event_time=T1, client=store)
    assert result.to_dict() == {"ingested": 40, "failed_count": 0, "failed": [], "calls": 2}
    for _, row in (raw_rows[0], raw_rows[-1]):
        stored = store.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString=row["customerID"])
        assert from_feature_store_record(stored["Record"]) == to_record(row, group, T1)


def test_bad_rows_are_reported_by_line_and_id_and_the_rest_is_written(store, group, raw_rows):
    rows = [(line, dict(row)) for line, row in raw_rows[:10]]
    rows[3][1]["tenure"] = "two"
    rows[7][1]["Churn"] = "maybe"
    rows[8][1]["customerID"] = " "
    result = ingest_batch(rows, group=group, feature_group_name=GROUP, event_time=T1, client=store)
    assert result.ingested == 7
    failed = {f["line"]: f for f in result.failed}
    assert set(failed) == {rows[3][0], rows[7][0], rows[8][0]}
    assert failed[rows[3][0]]["record_id"] == rows[3][1]["customerID"]
    assert "tenure" in failed[rows[3][0]]["message"] and "'two'" in failed[rows[3][0]]["message"]
    assert "Churn" in failed[rows[7][0]]["message"] and failed[rows[8][0]]["record_id"] == " "
    assert {f["error_code"] for f in result.failed} == {"InvalidValue"}
    missing = store.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString=rows[3][1]["customerID"])
    assert missing == {}


def test_the_same_batch_twice_is_idempotent(store, spec, group, raw_rows):
    first = ingest_batch(raw_rows, group=group, feature_group_name=GROUP, event_time=T1, client=store)
    before = store.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString=raw_rows[5][1]["customerID"])
    again = ingest_batch(raw_rows, group=group, feature_group_name=GROUP, event_time=T1, client=store)
    assert first.to_dict() == again.to_dict()
    after = store.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString=raw_rows[5][1]["customerID"])
    assert after == before
    # the offline store is append-only (two versions per id); the training-set SQL keeps one
    ids = training_ids(store, spec, T1)
    assert sorted(ids) == sorted(row["customerID"] for _, row in raw_rows)
    assert len(ids) == len(set(ids)) == 40


def test_a_later_run_updates_records_and_a_late_retry_does_not_win(store, spec, group, raw_rows):
    ingest_batch(raw_rows, group=group, feature_group_name=GROUP, event_time=T1, client=store)
    changed = [(line, dict(row, tenure="99")) for line, row in raw_rows]
    ingest_batch(changed, group=group, feature_group_name=GROUP, event_time=T2, client=store)
    ingest_batch(raw_rows, group=group, feature_group_name=GROUP, event_time=T1, client=store)  # a late retry
    online = store.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString=raw_rows[0][1]["customerID"])
    assert from_feature_store_record(online["Record"])["tenure"] == "99"
    assert len(training_ids(store, spec, T2)) == 40
    assert len(training_ids(store, spec, T1)) == 40  # as of T1: the first version, still once per id


def test_the_handler_writes_the_batch_and_returns_its_failed_records(lambda_env, store, raw_rows):
    """Failed records are returned with their file lines ("Summarise ingest" reads them), not raised."""
    lambda_env.setattr(ingest_handler, "featurestore_client", lambda: store)
    rows = [(line, dict(row)) for line, row in raw_rows[:12]]
    rows[2][1]["MonthlyCharges"] = "n/a"
    items = lambda_event(rows)
    items["Items"][0]["row"] = {"\ufeffcustomerID" if k == "customerID" else f" {k} ": v
                                for k, v in items["Items"][0]["row"].items()}  # a BOM, spaces: the reader's keys
    result = ingest_handler.handler(items, FakeContext())
    assert result["ingested"] == 11 and result["failed_count"] == 1
    (failure,) = result["failed"]
    assert (failure["line"], failure["record_id"]) == (rows[2][0], rows[2][1]["customerID"])
    assert "MonthlyCharges" in failure["message"]
    stored = store.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString=rows[0][1]["customerID"])
    assert from_feature_store_record(stored["Record"])["event_time"] == T1  # the canonical form of BatchInput's


# -- the AWS boundary with botocore's Stubber ------------------------------------------------
def stubbed_client():
    return boto3.client("sagemaker-featurestore-runtime", region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def entries(rows, group, event_time=T1, stores=ONLINE_AND_OFFLINE) -> list[dict]:
    return [{"FeatureGroupName": GROUP, "Record": to_feature_store_record(to_record(row, group, event_time)),
             "TargetStores": stores} for _, row in rows]


def test_batch_write_requests_have_the_service_shape(group, raw_rows):
    client = stubbed_client()
    with Stubber(client) as stubber:  # Stubber also validates each request against the service model
        for start in range(0, 40, BATCH_WRITE_MAX_ENTRIES):
            stubber.add_response("batch_write_record", {"Errors": [], "UnprocessedEntries": []},
                                 {"Entries": entries(raw_rows[start:start + BATCH_WRITE_MAX_ENTRIES], group)})
        result = ingest_batch(raw_rows, group=group, feature_group_name=GROUP, event_time=T1, client=client,
                              max_workers=1)
        stubber.assert_no_pending_responses()
    assert (result.ingested, result.calls, result.failed) == (40, 2, [])


def test_a_blank_total_charges_is_left_out_of_the_record(group, data_path):
    with open(data_path, "rb") as stream:
        blank = next((line, row) for line, row in iter_raw_rows(stream, str(data_path), group)
                     if row["TotalCharges"].strip() == "")
    expected = entries([blank], group)
    names = [item["FeatureName"] for item in expected[0]["Record"]]
    assert "total_charges" not in names and "tenure" in names  # missing, not zero: Feature Store stores null
    client = stubbed_client()
    with Stubber(client) as stubber:
        stubber.add_response("batch_write_record", {"Errors": [], "UnprocessedEntries": []}, {"Entries": expected})
        assert ingest_batch([blank], group=group, feature_group_name=GROUP, event_time=T1, client=client).ingested == 1


def test_rejected_entries_are_reported_by_line_and_unprocessed_ones_sent_again(group, raw_rows):
    client = stubbed_client()
    rows = raw_rows[:5]
    sent = entries(rows, group)
    rejected = {"Entry": sent[1], "ErrorCode": "ValidationError", "ErrorMessage": "feature 'x' is not defined"}
    with Stubber(client) as stubber:
        stubber.add_response("batch_write_record", {"Errors": [rejected], "UnprocessedEntries": sent[3:]},
                             {"Entries": sent})
        stubber.add_response("batch_write_record", {"Errors": [], "UnprocessedEntries": []}, {"Entries": sent[3:]})
        result = ingest_batch(rows, group=group, feature_group_name=GROUP, event_time=T1, client=client,
                              backoff=NO_WAIT)
        stubber.assert_no_pending_responses()
    assert result.ingested == 4 and result.calls == 2
    assert result.failed == [{"line": rows[1][0], "record_id": rows[1][1]["customerID"],
                              "error_code": "ValidationError", "message": "feature 'x' is not defined"}]


def test_a_failed_call_fails_each_of_its_records(group, raw_rows):
    client = stubbed_client()
    rows = raw_rows[:3]
    with Stubber(client) as stubber:
        stubber.add_client_error("batch_write_record", "AccessForbidden", "not authorized", 403,
                                 expected_params={"Entries": ANY})
        result = ingest_batch(rows, group=group, feature_group_name=GROUP, event_time=T1, client=client)
    assert result.ingested == 0
    assert [(f["line"], f["error_code"], f["message"]) for f in result.failed] == [
        (line, "AccessForbidden", "not authorized") for line, _ in rows]


def test_only_each_entitys_latest_version_in_a_batch_goes_online(cdnow_spec):
    activity = cdnow_spec.group("activity")
    records = [{"customer_id": "A", "event_time": t} for t in ("2026-02-01", "2026-03-01", "2026-01-01")]
    records.append({"customer_id": "B", "event_time": "2026-01-01"})
    assert target_stores(records, activity) == [OFFLINE_ONLY, ONLINE_AND_OFFLINE, OFFLINE_ONLY, ONLINE_AND_OFFLINE]
    assert target_stores(records, cdnow_spec.labels) == [OFFLINE_ONLY] * 4  # the labels group is offline only


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


def test_event_items_match_the_distributed_map_reader(group, data_path):
    """The Distributed Map's CSV reader gives every field as text keyed by the header: after the
    handler's clean-up, the same rows the local reader yields, so both paths convert identically."""
    text = data_path.read_text(encoding="utf-8").splitlines()[:3]
    header = text[0].split(",")
    items = [dict(zip(header, line.split(","), strict=True)) for line in text[1:]]
    with open(data_path, "rb") as stream:
        local = [row for _, row in islice(iter_raw_rows(stream, str(data_path), group), 2)]
    assert [ingest_handler.clean_item(i) for i in items] == local


# -- the local "Ingest features" on worker processes ---------------------------------------------
def test_local_ingest_on_worker_processes_writes_everything_and_reports_bad_rows_by_line(tmp_path, group,
                                                                                         data_path, monkeypatch):
    """A large file is cut into chunks of whole lines for spawned worker processes, each with its own
    store on the shared root; the parent's store then sees every record, and a bad row is reported with
    its line in the file, whichever chunk held it."""
    lines = data_path.read_text(encoding="utf-8").splitlines()[:1201]
    bad_id = lines[700].split(",")[0]
    lines[700] = lines[700].rsplit(",", 1)[0] + ",perhaps"  # a label that is neither Yes nor No
    csv_path = tmp_path / "rows.csv"
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setattr(local_ingest, "PARALLEL_INGEST_MIN_BYTES", 0)
    monkeypatch.setattr(local_ingest, "CHUNK_BYTES", 16_384)  # ~100 rows a chunk: many chunk boundaries
    with LocalFeatureStore(tmp_path / "fs") as store:
        create_feature_group(store, GROUP, group)
        result = local_ingest.ingest_file(store, csv_path, group=group, feature_group_name=GROUP, event_time=T1,
                                          batch_size=100, processes=2)
        assert result.ingested == 1199 and result.failed_count == 1
        assert (result.failed[0]["line"], result.failed[0]["record_id"]) == (701, bad_id)
        con = store.connect_duckdb(GROUP, "db", "t")
        count, distinct = con.execute('SELECT count(*), count(DISTINCT customer_id) FROM "db"."t"').fetchone()
        assert count == distinct == 1199
        with open(csv_path, newline="", encoding="utf-8") as handle:
            last = list(csv.DictReader(handle))[-1]["customerID"]
        assert store.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString=last)["Record"]
        assert store.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString=bad_id) == {}
