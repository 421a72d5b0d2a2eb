"""The moto harness's own stand-ins where the pipeline's executions do not show them whole: the Feature
Store runtime's request validation (what AWS rejects is rejected, whatever the client checks), the
ItemBatcher's limits, a Distributed Map that exceeds its tolerated failures, and where Athena takes a `?`."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack

import boto3
import pytest
from botocore.exceptions import ClientError, ParamValidationError
from moto import mock_aws

from churn.features import to_feature_store_record
from pipeline.local_aws.feature_store import LocalFeatureStore
from tests.infra import distributed_map
from tests.infra.distributed_map import batch_items
from tests.infra.featurestore_runtime import RoutedFeatureStoreRuntime
from tests.infra.in_process_lambda import REAL_CLIENT
from tests.support.athena_parameters import outside_where
from tests.support.moto import ACCOUNT, fake_aws, step_functions_patches  # noqa: F401 - fake_aws: a fixture

GROUP = "customers"


@pytest.fixture
def store(tmp_path):
    with LocalFeatureStore(tmp_path / "store") as local:
        local.create_feature_group(
            FeatureGroupName=GROUP, RecordIdentifierFeatureName="id", EventTimeFeatureName="event_time",
            FeatureDefinitions=[{"FeatureName": "id", "FeatureType": "String"},
                                {"FeatureName": "event_time", "FeatureType": "String"},
                                {"FeatureName": "spend", "FeatureType": "Fractional"}],
            OnlineStoreConfig={"EnableOnlineStore": True}, OfflineStoreConfig={})
        yield local


def entry(n: int) -> dict:
    record = {"id": f"c-{n}", "event_time": "2026-01-01T00:00:00.000Z", "spend": "1.5"}
    return {"FeatureGroupName": GROUP, "Record": to_feature_store_record(record)}


def test_the_routed_runtime_is_the_products_client_answered_by_the_local_store(fake_aws, store):  # noqa: F811
    client = RoutedFeatureStoreRuntime(REAL_CLIENT.__wrapped__, lambda: store).client(4, False)
    assert client.meta.config.retries["mode"] == "standard"  # the product's own client configuration

    response = client.batch_write_record(Entries=[entry(n) for n in range(3)])
    assert (response["Errors"], response["UnprocessedEntries"]) == ([], [])
    assert {f["FeatureName"]: f["ValueAsString"] for f in client.get_record(
        FeatureGroupName=GROUP, RecordIdentifierValueAsString="c-2")["Record"]}["spend"] == "1.5"
    # An entry the service refuses comes back in Errors; an operation it refuses is the client's error.
    refused = client.batch_write_record(Entries=[{**entry(4), "FeatureGroupName": "nope"}, entry(5)])["Errors"]
    assert [(e["ErrorCode"], e["Entry"]["FeatureGroupName"]) for e in refused] == [("ResourceNotFound", "nope")]
    with pytest.raises(client.exceptions.ResourceNotFound) as missing:
        client.get_record(FeatureGroupName="nope", RecordIdentifierValueAsString="c-1")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404

def test_a_request_the_service_model_rejects_is_rejected_with_or_without_client_validation(fake_aws, store):  # noqa: F811
    too_many = [entry(n) for n in range(26)]  # BatchWriteRecord takes 1 to 25 entries
    routed = RoutedFeatureStoreRuntime(REAL_CLIENT.__wrapped__, lambda: store)
    with pytest.raises(ClientError) as by_the_service:
        routed.client(4, False).batch_write_record(Entries=too_many)
    assert by_the_service.value.response["Error"]["Code"] == "ValidationError"
    assert by_the_service.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "Invalid length for parameter Entries, value: 26, valid max length: 25" in str(by_the_service.value)
    # botocore's own check (min lengths, types, required members) stops a request before it is sent.
    with pytest.raises(ParamValidationError):
        routed.client(4, True).batch_write_record(Entries=[])
    assert routed.calls == 1
    with pytest.raises(ClientError) as unvalidated:
        routed.client(4, False).batch_write_record(Entries=[])
    assert unvalidated.value.response["Error"]["Code"] == "ValidationError" and routed.calls == 2
    assert store.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="c-0") == {}


def test_the_item_batcher_cuts_by_count_and_by_bytes_the_batch_input_counted_in():
    items = [{"index": n, "row": {"x": "y" * 10}} for n in range(7)]
    assert [len(b) for b in batch_items(items, {"MaxItemsPerBatch": 3}, {})] == [3, 3, 1]
    size = len('{"BatchInput": {"a": "b"}, "Items": []}') + 2 * (len('{"index": 0, "row": {"x": "yyyyyyyyyy"}}') + 1)
    assert [len(b) for b in batch_items(items, {"MaxInputBytesPerBatch": size}, {"a": "b"})] == [2, 2, 2, 1]


FAILING_MAP = {
    "StartAt": "Each item",
    "States": {"Each item": {
        "Type": "Map", "ItemsPath": "$.items", "End": True, "Label": "Items",
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
            "StartAt": "Good?",
            "States": {
                "Good?": {"Type": "Choice", "Choices": [{"Variable": "$", "StringEquals": "bad", "Next": "Refuse"}],
                          "Default": "Accept"},
                "Refuse": {"Type": "Fail", "Error": "BadItem", "Cause": "the item is bad"},
                "Accept": {"Type": "Pass", "End": True},
            },
        },
        "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
                         "Parameters": {"Bucket": "results", "Prefix": "out"},
                         "WriterConfig": {"OutputType": "JSONL", "Transformation": "NONE"}},
    }},
}


def test_a_map_run_over_its_tolerated_failures_exports_its_results_then_fails(fake_aws):  # noqa: F811
    """No threshold set: one failed child fails the Map Run, after the ResultWriter wrote every child."""
    runnable = json.loads(json.dumps(FAILING_MAP))
    states: dict[str, distributed_map.MapState] = {}
    distributed_map.runnable_on_moto(runnable["States"], states)
    with ExitStack() as stack:
        stack.enter_context(mock_aws(config={"stepfunctions": {"execute_state_machine": True}}))
        for patcher in [*step_functions_patches(), *distributed_map.patches(states)]:
            stack.enter_context(patcher)
        s3, sfn = boto3.client("s3"), boto3.client("stepfunctions")
        s3.create_bucket(Bucket="results")
        machine = sfn.create_state_machine(name="items", definition=json.dumps(runnable),
                                           roleArn=f"arn:aws:iam::{ACCOUNT}:role/items")["stateMachineArn"]
        arn = sfn.start_execution(stateMachineArn=machine, name="run-1",
                                  input=json.dumps({"items": ["a", "bad", "c"]}))["executionArn"]
        while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
            time.sleep(0.05)

        assert described["status"] == "FAILED"
        assert described["error"] == "States.ExceededToleratedFailureThreshold"
        (manifest_key,) = [o["Key"] for o in s3.list_objects_v2(Bucket="results", Prefix="out/")["Contents"]
                           if o["Key"].endswith("/manifest.json")]
        manifest = json.loads(s3.get_object(Bucket="results", Key=manifest_key)["Body"].read())
        files = {status: [json.loads(line) for f in listed for line in
                          s3.get_object(Bucket="results", Key=f["Key"])["Body"].read().decode().splitlines()]
                 for status, listed in manifest["ResultFiles"].items()}
        assert [json.loads(c["Input"]) for c in files["SUCCEEDED"]] == ["a", "c"]
        (failed,) = files["FAILED"]
        assert (failed["Status"], failed["Error"], failed["Cause"], failed["Input"]) == (
            "FAILED", "BadItem", "the item is bad", '"bad"')
        assert files["PENDING"] == [] and manifest["ResultFiles"]["PENDING"] == []


def test_a_record_the_runtime_refuses_is_its_models_validation_error(fake_aws, store):  # noqa: F811
    client = RoutedFeatureStoreRuntime(REAL_CLIENT.__wrapped__, lambda: store).client(4, True)
    bad = [*entry(0)["Record"][:2], {"FeatureName": "spend", "ValueAsString": "a lot"}]
    with pytest.raises(client.exceptions.ValidationError):
        client.put_record(FeatureGroupName=GROUP, Record=bad)


@pytest.mark.parametrize(("sql", "refused"), [
    ("SELECT a FROM t WHERE b = ? AND c = '?'", []),
    ("SELECT a FROM t JOIN (SELECT * FROM u WHERE b <= ?) AS v USING (a)", []),  # a subquery's WHERE
    ("WITH x AS (SELECT a FROM t WHERE b = ?) SELECT a FROM x WHERE a IN (SELECT a FROM u WHERE c > ?)", []),
    ("SELECT ? FROM t", ["? number 1 (line 1, column 8) is in the SELECT list"]),
    ("SELECT a FROM t WHERE b = ?\nAND b IN (SELECT ? FROM u)",
     ["? number 2 (line 2, column 18) is in the SELECT list"]),
    ("SELECT a FROM t JOIN u\n    ON u.a = t.a AND u.b <= ?",
     ["? number 1 (line 2, column 29) is in the JOIN ... ON condition"]),
    ("SELECT a FROM t GROUP BY a HAVING count(*) > ?", ["? number 1 (line 1, column 46) is in the HAVING clause"]),
    ("SELECT a FROM t ORDER BY a LIMIT ?", ["? number 1 (line 1, column 34) is in the ORDER BY or LIMIT clause"]),
    ("SELECT a FROM (VALUES (?)) AS v(a)", ["? number 1 (line 1, column 24) is in the FROM clause"]),
])
def test_the_harness_athena_takes_a_parameter_only_in_a_where_clause(sql, refused):
    """Athena: "Currently, ? parameters can be placed only in the WHERE clause. Syntax like SELECT ? FROM
    table is not supported." The harness fails a query that places one elsewhere."""
    assert [str(p) for p in outside_where(sql)] == refused
