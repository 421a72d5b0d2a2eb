"""bench/fake_featurestore_endpoint.py answers BatchWriteRecord as botocore's service model defines it.

A boto3 client with its client-side parameter validation on (the model's request shapes) talks to
the fake over HTTP on 127.0.0.1 and parses its answers with the model's response shapes; the fault
options drive the two paths a caller must handle (unprocessed entries, rejected entries), here
through churn.ingest.ingest_batch.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from churn.csv_input import iter_raw_rows
from churn.features import to_feature_store_record, to_record
from churn.ingest import Backoff, ingest_batch
from tests.support.specs import fake_featurestore_endpoint

ROOT = Path(__file__).resolve().parents[2]
GROUP = "fake-endpoint-test"
T1 = "2026-11-26T07:07:54.120Z"


fake = fake_featurestore_endpoint()


@pytest.fixture
def server():
    with fake.feature_store_server(spec_path=ROOT / "data" / "churn.spec.json") as running:
        yield running


def client_for(server, *, validate: bool = True):
    """One attempt a call (so a fault reaches the test); `validate`: botocore's request-shape check."""
    config = Config(retries={"mode": "standard", "total_max_attempts": 1}, parameter_validation=validate)
    return boto3.client("sagemaker-featurestore-runtime", endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing", config=config)


@pytest.fixture(scope="module")
def rows(data_path, group) -> list[tuple[int, dict[str, str]]]:
    """(file line, raw row) of the bundled file's first 60 rows."""
    with open(data_path, "rb") as stream:
        return list(islice(iter_raw_rows(stream, str(data_path), group), 60))


def entries(rows, group, stores=None) -> list[dict]:
    made = [{"FeatureGroupName": GROUP, "Record": to_feature_store_record(to_record(row, group, T1))}
            for _, row in rows]
    return [dict(entry, TargetStores=stores) for entry in made] if stores else made


def test_a_full_batch_is_written_and_the_answer_parses(server, rows, group):
    response = client_for(server).batch_write_record(Entries=entries(rows[:25], group),
                                                     TtlDuration={"Unit": "Days", "Value": 30})
    assert response["Errors"] == [] and response["UnprocessedEntries"] == []
    stats = server.stats.to_dict()
    assert stats["batch_requests"] == 1 and stats["entries_per_call"] == {"25": 1}
    assert server.distinct_records(GROUP) == server.record_count(GROUP) == 25


@pytest.mark.parametrize("count", [0, 26])
def test_fewer_than_one_or_more_than_25_entries_is_a_validation_error(server, rows, group, count):
    with pytest.raises(ClientError) as info:
        client_for(server, validate=False).batch_write_record(Entries=entries(rows[:count], group))
    assert info.value.response["Error"]["Code"] == "ValidationError"
    assert "1 to 25 entries" in info.value.response["Error"]["Message"]
    assert server.distinct_records() == 0


def test_offline_only_entries_are_written_but_not_online(server, rows, group):
    client_for(server).batch_write_record(Entries=entries(rows[:3], group, stores=["OfflineStore"]))
    assert server.distinct_records(GROUP) == 3
    assert server.record_count(GROUP) == 0


def test_a_throttled_call_writes_nothing(server, rows, group):
    server.set_faults(fake.Faults(throttle_rate=1.0))
    with pytest.raises(ClientError) as info:
        client_for(server).batch_write_record(Entries=entries(rows[:5], group))
    assert info.value.response["Error"]["Code"] == "ThrottlingException"
    assert server.distinct_records() == 0 and server.stats.throttled == 1


def test_unprocessed_and_rejected_entries_come_back_whole(server, rows, group):
    sent = entries(rows[:10], group)
    rejected = sent[4]["Record"][0]["ValueAsString"]
    server.set_faults(fake.Faults(unprocessed_first=1, fail_ids=frozenset({rejected})))
    response = client_for(server).batch_write_record(Entries=sent)
    assert response["Errors"] == [{"Entry": sent[4], "ErrorCode": "ValidationError",
                                   "ErrorMessage": f"record {rejected!r} is rejected (injected failure)"}]
    assert response["UnprocessedEntries"] == sent[:4] + sent[5:]
    assert server.distinct_records() == 0
    again = client_for(server).batch_write_record(Entries=response["UnprocessedEntries"])
    assert again == {**again, "Errors": [], "UnprocessedEntries": []}
    assert server.distinct_records(GROUP) == 9


def test_ingest_batch_retries_unprocessed_entries_and_reports_rejected_ones_by_line(server, rows, group):
    (bad_line, bad_row) = rows[37]
    server.set_faults(fake.Faults(unprocessed_first=2, fail_ids=frozenset({bad_row["customerID"]})))
    result = ingest_batch(rows, group=group, feature_group_name=GROUP, event_time=T1, client=client_for(server),
                          max_workers=3, backoff=Backoff(sleep=lambda seconds: None))
    assert result.ingested == 59 and result.failed_count == 1
    assert result.failed[0]["line"] == bad_line and result.failed[0]["record_id"] == bad_row["customerID"]
    assert result.calls == 3 * 3  # 60 entries in 3 calls of <= 25, each sent three times
    assert server.distinct_records(GROUP) == 59
