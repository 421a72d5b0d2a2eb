"""The ingest batch code and the ingest Lambda handler, against the stores they write to.

- the real LocalFeatureStore (the local mode's client): records as converted, where history goes
  (offline only, the latest version per entity online too), rejected entries by file line,
  idempotent re-runs, unprocessed entries sent again together;
- the handler over real HTTP against bench/fake_featurestore_endpoint.py on 127.0.0.1 with the
  Lambda's own shared client: throttled calls are retried by the client and get through.
(tests/unit/test_fake_featurestore_endpoint.py checks the endpoint against botocore's model.)
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Any

import pytest

from churn.csv_input import FIRST_DATA_LINE, iter_raw_rows
from churn.features import to_record
from churn.handlers import _runtime
from churn.handlers import ingest_batch as ingest_handler
from churn.ingest import BATCH_WRITE_MAX_ENTRIES, Backoff, ingest_batch, target_stores
from pipeline.local_aws.feature_store import LocalFeatureStore
from pipeline.local_ingest import ingest_file
from pipeline.runner import create_feature_group
from tests.support.specs import HISTORY, HISTORY_SPEC, fake_featurestore_endpoint
from tests.unit.lambda_support import FakeContext

ROOT = Path(__file__).resolve().parents[2]
GROUP = "test-churn-features"
T1 = "2026-11-26T07:07:54.120Z"
NO_WAIT = Backoff(sleep=lambda seconds: None)


fake = fake_featurestore_endpoint()


@pytest.fixture(scope="module")
def rows(data_path, group) -> list[tuple[int, dict[str, str]]]:
    """(file line, raw row) of the bundled file's first 60 rows, as the CSV reader yields them."""
    with open(data_path, "rb") as stream:
        return list(islice(iter_raw_rows(stream, str(data_path), group), 60))


@pytest.fixture
def store(tmp_path, group):
    with LocalFeatureStore(tmp_path / "fs") as local:
        create_feature_group(local, GROUP, group)
        yield local


def online(store: LocalFeatureStore, group: str, record_id: str) -> dict[str, str]:
    found = store.get_record(FeatureGroupName=group, RecordIdentifierValueAsString=record_id)
    return {item["FeatureName"]: item["ValueAsString"] for item in found.get("Record", [])}


def offline_rows(store: LocalFeatureStore, group: str) -> list[tuple]:
    import duckdb

    store.flush()
    con = duckdb.connect(":memory:")
    store.attach_duckdb(con, group, "db", "t")
    return con.execute('SELECT * FROM "db"."t" ORDER BY 1, 2').fetchall()


class Counting:
    """The local store, counting the calls and leaving the first `unprocessed` calls' entries unprocessed."""

    def __init__(self, store: LocalFeatureStore, unprocessed: int = 0):
        self.store, self.unprocessed, self.calls = store, unprocessed, []

    def batch_write_record(self, *, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 - boto3's name
        self.calls.append(len(Entries))
        if len(self.calls) <= self.unprocessed:
            return {"Errors": [], "UnprocessedEntries": Entries}
        return self.store.batch_write_record(Entries=Entries)


# -- against the local feature store ---------------------------------------------------------
def test_every_record_is_written_as_converted_in_calls_of_25(store, group, rows):
    client = Counting(store)
    result = ingest_batch(rows, group=group, feature_group_name=GROUP, event_time=T1, client=client, max_workers=4)
    assert result.to_dict() == {"ingested": 60, "failed_count": 0, "failed": [], "calls": 3}
    assert sorted(client.calls) == [10, 25, 25]
    first = online(store, GROUP, rows[0][1]["customerID"])
    assert first["customer_id"] == "7590-VHVEG" and first["event_time"] == T1 and first["churn"] == "0"
    assert len(offline_rows(store, GROUP)) == 60


def test_a_file_with_several_columns_without_a_name_is_ingested_without_them(store, group, data_path, tmp_path):
    """The local ingest of a spreadsheet export's trailing `,,`: each row's record as the row makes it alone."""
    lines = data_path.read_text().splitlines()[:11]
    path = tmp_path / "export.csv"
    path.write_text("".join(line + ",,\n" for line in lines), encoding="utf-8")
    result = ingest_file(store, path, group=group, feature_group_name=GROUP, event_time=T1, batch_size=4, processes=1)
    assert (result.ingested, result.failed_count) == (10, 0)
    header = lines[0].split(",")
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=True))
        assert online(store, GROUP, row["customerID"]) == to_record(row, group, T1)


class RefusingOne:
    """The local store, but the service refuses one record in BatchWriteRecord's Errors (to_record already
    refuses what the store's own checks would, so the refusal is made here, at the service boundary)."""

    def __init__(self, store: LocalFeatureStore, record_id: str):
        self.store, self.record_id = store, record_id

    def batch_write_record(self, *, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 - boto3's name
        refused = [e for e in Entries if {"FeatureName": "customer_id", "ValueAsString": self.record_id} in e["Record"]]
        response = self.store.batch_write_record(Entries=[e for e in Entries if e not in refused])
        return {**response, "Errors": [{"Entry": e, "ErrorCode": "ValidationError",
                                        "ErrorMessage": "feature 'tenure' is not valid"} for e in refused]}


def test_a_rejected_entry_is_reported_by_file_line_and_the_rest_is_written(store, group, rows):
    """An entry the service refuses comes back in BatchWriteRecord's Errors; its record is named with its
    line, the other records are written."""
    line, row = rows[7]
    client = RefusingOne(store, row["customerID"])
    result = ingest_batch(rows, group=group, feature_group_name=GROUP, event_time=T1, client=client)
    assert result.ingested == 59 and result.failed_count == 1
    (failure,) = result.failed
    assert (failure["line"], failure["record_id"], failure["error_code"]) == (line, row["customerID"],
                                                                             "ValidationError")
    assert "tenure" in failure["message"]
    assert online(store, GROUP, row["customerID"]) == {}


def test_an_integral_beyond_64_bits_is_refused_before_it_is_sent(store, group, rows):
    line, row = rows[7]
    bad = [(n, dict(r, tenure="99999999999999999999") if n == line else r) for n, r in rows]
    client = Counting(store)
    result = ingest_batch(bad, group=group, feature_group_name=GROUP, event_time=T1, client=client)
    assert [(f["line"], f["error_code"]) for f in result.failed] == [(line, "InvalidValue")]
    assert "fits in 64 bits" in result.failed[0]["message"] and sum(client.calls) == 59


def test_a_row_that_cannot_become_a_record_is_reported_and_not_sent(store, group, rows):
    line, row = rows[3]
    bad = [(n, dict(r, MonthlyCharges="lots") if n == line else r) for n, r in rows]
    client = Counting(store)
    result = ingest_batch(bad, group=group, feature_group_name=GROUP, event_time=T1, client=client)
    assert result.failed == [{"line": line, "record_id": row["customerID"], "error_code": "InvalidValue",
                              "message": "column 'MonthlyCharges': expected a number (value 'lots')"}]
    assert sum(client.calls) == 59


def test_unprocessed_entries_are_sent_again_together(store, group, rows):
    client = Counting(store, unprocessed=3)  # the first round's three calls leave everything unprocessed
    result = ingest_batch(rows, group=group, feature_group_name=GROUP, event_time=T1, client=client,
                          backoff=NO_WAIT)
    assert result.ingested == 60 and result.failed_count == 0
    assert sorted(client.calls[:3]) == [10, 25, 25] and sorted(client.calls[3:]) == [10, 25, 25]
    assert result.calls == 6


def test_entries_still_unprocessed_after_every_attempt_fail_by_line(store, group, rows):
    client = Counting(store, unprocessed=100)
    result = ingest_batch(rows[:5], group=group, feature_group_name=GROUP, event_time=T1, client=client,
                          backoff=Backoff(attempts=3, sleep=lambda seconds: None))
    assert result.ingested == 0 and len(client.calls) == 3
    assert [f["line"] for f in result.failed] == [line for line, _ in rows[:5]]
    assert {f["error_code"] for f in result.failed} == {"Unprocessed"}


def test_the_same_batch_twice_is_idempotent(store, group, rows):
    for _ in range(2):
        ingest_batch(rows, group=group, feature_group_name=GROUP, event_time=T1, client=store)
    assert online(store, GROUP, rows[5][1]["customerID"])["event_time"] == T1
    versions = {(r[0], r[1]) for r in offline_rows(store, GROUP)}
    assert len(versions) == 60  # the same 60 versions, each written twice


def test_history_goes_offline_and_each_entity_latest_version_online_too(tmp_path):
    group = HISTORY
    snapshots = [("a", "2026-01-01", 1), ("a", "2026-03-01", 3), ("b", "2026-02-01", 7), ("a", "2026-02-01", 2)]
    rows = [(FIRST_DATA_LINE + i, {"customer_id": c, "snapshot": t, "visits": str(v)})
            for i, (c, t, v) in enumerate(snapshots)]
    with LocalFeatureStore(tmp_path / "fs") as store:
        create_feature_group(store, "activity", group)
        ingest_batch(rows, group=group, feature_group_name="activity", event_time=T1, client=store)
        assert online(store, "activity", "a")["visits"] == "3" and online(store, "activity", "b")["visits"] == "7"
        assert len(offline_rows(store, "activity")) == 4
    records = [{"customer_id": c, "event_time": t} for c, t, _ in snapshots]
    assert target_stores(records, group) == [["OfflineStore"], ["OnlineStore", "OfflineStore"],
                                             ["OnlineStore", "OfflineStore"], ["OfflineStore"]]


def test_an_offline_only_group_never_writes_online():
    labels = HISTORY_SPEC.labels
    assert target_stores([{"customer_id": "a", "observed": "t"}], labels) == [["OfflineStore"]]


# -- the Lambda handler over HTTP ------------------------------------------------------------
@pytest.fixture
def lambda_env(monkeypatch, spec):
    """The ingest Lambda's environment (as the stack sets it) with dummy credentials."""
    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "FEATURE_SPEC": spec.to_json(),
                        "POWERTOOLS_TRACE_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    _runtime.client.cache_clear()
    _runtime.feature_spec.cache_clear()
    yield monkeypatch
    _runtime.client.cache_clear()
    _runtime.feature_spec.cache_clear()


@pytest.fixture
def endpoint(lambda_env):
    with fake.feature_store_server(spec_path=ROOT / "data" / "churn.spec.json") as server:
        lambda_env.setenv("AWS_ENDPOINT_URL_SAGEMAKER_FEATURESTORE_RUNTIME", server.url)
        yield server


def lambda_event(rows: list[tuple[int, dict[str, str]]]) -> dict[str, Any]:
    """A Distributed Map batch: each item as the ItemSelector makes it (position in the file, row)."""
    return {"Items": [{"index": line - FIRST_DATA_LINE, "row": dict(row)} for line, row in rows],
            "BatchInput": {"event_time": "2026-11-26T07:07:54.12Z", "group": "churn", "feature_group_name": GROUP}}


def test_the_lambda_client_is_shared_pooled_and_retries_with_backoff(lambda_env):
    first, second = ingest_handler.featurestore_client(), ingest_handler.featurestore_client()
    assert first is second
    assert first.meta.config.max_pool_connections == ingest_handler.WORKERS
    assert first.meta.config.retries["mode"] == "standard" and first.meta.config.retries["total_max_attempts"] >= 5


def test_the_handler_writes_a_batch_in_calls_of_25_and_returns_its_result(endpoint, rows):
    result = ingest_handler.handler(lambda_event(rows), FakeContext())
    assert result == {"ingested": 60, "failed_count": 0, "failed": [], "calls": 3}
    assert endpoint.distinct_records(GROUP) == 60
    assert endpoint.stats.to_dict()["entries_per_call"] == {"10": 1, str(BATCH_WRITE_MAX_ENTRIES): 2}


def test_throttled_calls_are_retried_by_the_client_and_get_through(endpoint, rows):
    endpoint.set_faults(fake.Faults(throttle_first=4))  # every call's first 4 attempts are throttled
    result = ingest_handler.handler(lambda_event(rows), FakeContext())
    assert result["ingested"] == 60 and result["failed_count"] == 0 and result["calls"] == 3
    assert endpoint.stats.throttled == 3 * 4 and endpoint.distinct_records(GROUP) == 60


def test_rejected_records_come_back_with_their_lines_and_the_handler_does_not_raise(endpoint, rows):
    line, row = rows[41]
    endpoint.set_faults(fake.Faults(fail_ids=frozenset({row["customerID"]})))
    result = ingest_handler.handler(lambda_event(rows), FakeContext())
    assert result["ingested"] == 59 and result["failed_count"] == 1
    assert result["failed"][0]["line"] == line and result["failed"][0]["record_id"] == row["customerID"]
