"""The synthesised state machine, executed: moto's Step Functions interpreter runs the real definition,
the Lambda handlers run in-process, and test-side fakes run the Athena SQL (DuckDB over the local
feature store), the training script and Batch Transform (see sfn_harness)."""

from __future__ import annotations

import csv
import io
import json
import random
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest
from conftest import synthesize
from sfn_harness import InterruptedRuntime, JobOutcome, PipelineHarness, ReplicationLag

from churn.handlers import validate_input

ROOT = Path(__file__).resolve().parents[2]
ROWS = 300
BATCH = 100
# Short offline-store wait and few checks, small batches (so the Map has several children).
CONTEXT = {"offline_store_wait_seconds": 1, "offline_store_max_checks": 2, "ingest_batch_size": BATCH}
OFFLINE_LOOP = ["Count offline records", "Read offline count", "Record offline check", "Offline store complete?"]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("execution"), CONTEXT)


@pytest.fixture
def harness(deployed, spec, tmp_path):
    with PipelineHarness(deployed.json, deployed.outdir, tmp_path, spec=spec) as running:
        yield running


def customers(rows: int = ROWS, churn=None) -> str:
    """The first `rows` customers of the bundled data; `churn(rows)` may rewrite the Churn column."""
    with open(ROOT / "data" / "churn.csv", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        records = [row for _, row in zip(range(rows), reader, strict=False)]
        header = reader.fieldnames
    if churn is not None:
        for row, label in zip(records, churn(records), strict=True):
            row["Churn"] = label
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue()


def shuffled_labels(records: list[dict[str, str]]) -> list[str]:
    labels = [r["Churn"] for r in records]
    random.Random(7).shuffle(labels)
    return labels


def lambda_error(cause: str) -> dict[str, Any]:
    """A Lambda task's cause is the function's error payload."""
    return json.loads(cause)


def success_path(definition: dict[str, Any]) -> list[str]:
    """The states after registration up to the end, following Next (scoring, when it is there)."""
    states, name, path = definition["States"], "Register model", []
    while True:
        name = states[name].get("Next")
        if name is None:
            return path
        path.append(name)


def recorded_failure(execution) -> dict[str, Any]:
    """What the one failure path ("Record failure") kept in its output."""
    (exited,) = [e["stateExitedEventDetails"] for e in execution.history
                 if e.get("stateExitedEventDetails", {}).get("name") == "Record failure"]
    return json.loads(exited["output"])


def state_output(execution, name: str) -> dict[str, Any]:
    exits = [e["stateExitedEventDetails"] for e in execution.history
             if e.get("stateExitedEventDetails", {}).get("name") == name]
    return json.loads(exits[-1]["output"])


def offline_records(harness: PipelineHarness, event_time: str) -> int:
    (group,) = harness.athena.tables.values()
    ((database, table),) = harness.athena.tables
    con = harness.feature_store.connect_duckdb(group, database, table)
    try:
        (count,) = con.execute(
            f'SELECT count(DISTINCT customer_id) FROM "{database}"."{table}" WHERE event_time = ?', [event_time]
        ).fetchone()
    finally:
        con.close()
    return count


def customer_id(record: list[dict[str, str]]) -> str:
    return next(f["ValueAsString"] for f in record if f["FeatureName"] == "customer_id")


def ingest_invocations(harness: PipelineHarness) -> list:
    return [i for i in harness.lambdas.invocations if i.handler == "churn.handlers.ingest.handler"]


# -- the success path ---------------------------------------------------------------------------
def test_success_path_trains_on_what_was_ingested(harness, spec):
    # Feature Store replicates to the offline store minutes after PutRecord: here, after the first count.
    lag = ReplicationLag(harness.feature_store, after_queries=1)
    harness.feature_store_runtime = lag
    harness.athena.before_query.append(lag.on_query)
    text = customers()
    harness.put_raw("raw/churn.csv", text)

    execution = harness.run({"input_key": "raw/churn.csv"}, name="run-ok")

    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert execution.entered() == [
        "Validate input", "Ingest features", "Start offline store checks", *OFFLINE_LOOP,
        "Wait for offline store", *OFFLINE_LOOP,
        "Build training set", "Train model", "Evaluate model", "Model good enough?", "Register model",
        *success_path(harness.definition),
    ]
    validation = state_output(execution, "Validate input")["validation"]
    assert validation["records"] == ROWS

    # Ingest: the Map cut the CSV into batches of the configured size, each with the run's event time.
    batches = ingest_invocations(harness)
    assert sorted(len(b.event["Items"]) for b in batches) == [BATCH] * (ROWS // BATCH)
    assert {b.event["BatchInput"]["event_time"] for b in batches} == {validation["event_time"]}
    assert offline_records(harness, validation["event_time"]) == ROWS

    # The count and training-set queries ran with the run's event time as their parameter.
    count_query, recount, training_query, *_ = harness.athena.queries
    assert {q["parameters"][0] for q in (count_query, recount, training_query)} == {validation["event_time_sql"]}
    assert state_output(execution, "Build training set")["training_set"]["output_uri"] == training_query["output"]

    # The training set is the ingested data, one row per customer, in Athena's CSV shape.
    training_csv = harness.read_text(training_query["output"])
    assert training_csv.splitlines()[0] == ",".join(f'"{c}"' for c in spec.model_columns)
    rows = list(csv.DictReader(io.StringIO(training_csv)))
    source = {r["customerID"]: r for r in csv.DictReader(io.StringIO(text))}
    assert [r["customer_id"] for r in rows] == sorted(source)
    assert all(r["churn"] == ("1" if source[r["customer_id"]]["Churn"] == "Yes" else "0") for r in rows)

    # Training read that CSV (not Athena's .csv.metadata next to it) and produced the registered model.
    (job,) = harness.training.jobs
    assert job["status"] == "Completed" and f"read {ROWS} rows" in job["log"]
    output = execution.output
    assert output["model_artifact"] == job["artifact"]
    body = harness.client("s3").get_object(Bucket=harness.bucket, Key=job["artifact"].split("/", 3)[3])["Body"]
    with tarfile.open(fileobj=io.BytesIO(body.read())) as archive:
        evaluation = json.load(archive.extractfile("evaluation.json"))
    assert output["validation_auc"] == pytest.approx(evaluation["validation_auc"]) and output["validation_auc"] >= 0.8
    (package,) = harness.model_packages()
    assert package["ModelPackageArn"] == output["model_package_arn"]
    assert package["ModelApprovalStatus"] == "Approved"
    described = harness.client("sagemaker").describe_model_package(ModelPackageName=package["ModelPackageArn"])
    assert described["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == job["artifact"]
    assert float(described["CustomerMetadataProperties"]["validation_auc"]) == pytest.approx(output["validation_auc"])

    if "scores_uri" in output:  # the scoring stage: every customer scored with the registered model
        (transform,) = harness.transform.jobs
        assert transform["returncode"] == 0
        # Batch Transform read the staged scoring set alone (no Athena .csv.metadata beside it).
        assert [uri.rsplit("/", 1)[1] for uri in transform["outputs"]] == ["scoring-set.csv.out"]
        scores = harness.read_csv(output["scores_uri"])
        assert len(scores) == output["customers_scored"] == ROWS
        assert sorted(s["customer_id"] for s in scores) == sorted(source)
        assert [int(s["rank"]) for s in scores] == list(range(1, ROWS + 1))
        probabilities = [float(s["churn_probability"]) for s in scores]
        assert probabilities == sorted(probabilities, reverse=True) and 0 <= probabilities[-1] <= probabilities[0] <= 1
        assert {s["model_version"] for s in scores} == {output["model_version"]} == {"1"}
        assert [t["record_id"] for t in output["top_customers"]] == [s["customer_id"] for s in scores[:5]]
        # The transform's model (created for it, named after the execution) is gone; the package stays.
        assert harness.client("sagemaker").list_models()["Models"] == []


# -- failures, each ending in the expected state with the expected error and cause -------------
def test_a_bad_csv_fails_at_validate_input_and_nothing_is_written(harness):
    rows = list(csv.DictReader(io.StringIO(customers())))
    rows[6]["tenure"] = "twelve"  # line 8 of the file
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    harness.put_raw("raw/bad.csv", out.getvalue())
    writes = InterruptedRuntime(harness.feature_store, after=10**9)
    harness.feature_store_runtime = writes

    execution = harness.run({"input_key": "raw/bad.csv"}, name="run-bad-csv")

    assert execution.status == "FAILED"
    assert execution.entered() == ["Validate input", "Record failure", "Pipeline failed"]
    assert execution.error == "InputValidationError"
    message = lambda_error(execution.cause)["errorMessage"]
    assert message.startswith(f"s3://{harness.bucket}/raw/bad.csv, line 8, column 'tenure': "), message
    assert recorded_failure(execution)["failure"]["Error"] == "InputValidationError"
    assert recorded_failure(execution)["execution"] == "run-bad-csv"
    assert ingest_invocations(harness) == [] and writes.calls == 0  # no PutRecord at all
    offline = harness.feature_store.connect_duckdb(next(iter(harness.athena.tables.values())), "db", "features")
    assert offline.execute('SELECT count(*) FROM "db"."features"').fetchone() == (0,)


def test_the_map_ingests_the_version_that_validate_input_read(harness, monkeypatch):
    """A new upload to the same key while the run is past validation (an operator re-uploading) is not
    ingested unvalidated: the item reader reads the version Validate input read (the bucket is versioned)."""
    harness.put_raw("raw/churn.csv", customers())
    validate_object = validate_input.validate_object

    def validated_then_replaced(*args: Any, **kwargs: Any) -> dict[str, Any]:
        result = validate_object(*args, **kwargs)
        harness.put_raw("raw/churn.csv", customers(ROWS // 3))  # a newer version, a third of the rows
        return result

    monkeypatch.setattr(validate_input, "validate_object", validated_then_replaced)

    execution = harness.run({"input_key": "raw/churn.csv"}, name="run-replaced")

    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    validation = state_output(execution, "Validate input")["validation"]
    assert validation["records"] == ROWS and validation["version_id"] != "null"
    assert offline_records(harness, validation["event_time"]) == ROWS
    training_set = state_output(execution, "Build training set")["training_set"]["output_uri"]
    assert len({r["customer_id"] for r in harness.read_csv(training_set)}) == ROWS
    latest = harness.client("s3").get_object(Bucket=harness.bucket, Key="raw/churn.csv")["Body"].read()
    assert latest.decode() == customers(ROWS // 3)  # the key itself holds the newer upload


def test_an_interrupted_ingest_fails_the_map_and_a_rerun_converges(harness, spec):
    harness.put_raw("raw/churn.csv", customers())
    harness.feature_store_runtime = InterruptedRuntime(harness.feature_store, after=ROWS // 2)

    first = harness.run({"input_key": "raw/churn.csv"}, name="run-interrupted")

    assert first.status == "FAILED"
    assert first.entered() == ["Validate input", "Ingest features", "Record failure", "Pipeline failed"]
    # The child batches raised IngestError; a Distributed Map reports its failure threshold.
    assert first.error == "States.ExceededToleratedFailureThreshold"
    assert "tolerated failure threshold was exceeded" in first.cause
    failed = [b for b in ingest_invocations(harness) if b.error]
    assert failed and {b.error for b in failed} == {"IngestError"}
    event_time = state_output(first, "Validate input")["validation"]["event_time"]
    assert offline_records(harness, event_time) == ROWS // 2  # half written, nothing else

    harness.feature_store_runtime = harness.feature_store
    second = harness.run({"input_key": "raw/churn.csv"}, name="run-again")

    assert second.status == "SUCCEEDED", (second.error, second.cause)
    training_set = state_output(second, "Build training set")["training_set"]["output_uri"]
    ids = [r["customer_id"] for r in harness.read_csv(training_set)]
    assert len(ids) == len(set(ids)) == ROWS  # each customer exactly once


@pytest.mark.parametrize(
    ("state", "marker"),
    [("Count offline records", "count(DISTINCT"), ("Build training set", "row_number()")],
)
def test_an_athena_failure_fails_the_run_with_the_query_state(harness, state, marker):
    reason = "HIVE_CURSOR_ERROR: Failed to read Parquet file"
    harness.athena.fail_when(lambda sql: marker in sql, reason)
    harness.put_raw("raw/churn.csv", customers())

    execution = harness.run({"input_key": "raw/churn.csv"}, name="run-athena")

    assert execution.status == "FAILED"
    entered = execution.entered()
    assert entered[-3:] == [state, "Record failure", "Pipeline failed"]
    assert execution.error == "States.TaskFailed"  # a .sync job that ends FAILED
    query = json.loads(execution.cause)["QueryExecution"]
    assert query["Status"]["State"] == "FAILED" and query["Status"]["StateChangeReason"] == reason
    assert recorded_failure(execution)["failure"]["Error"] == "States.TaskFailed"
    assert harness.training.jobs == []


def test_a_failed_training_fails_the_run_and_keeps_the_approved_model(harness):
    previous = harness.client("sagemaker").create_model_package(
        ModelPackageGroupName=harness.model_package_group, ModelApprovalStatus="Approved",
        ModelPackageDescription="the previous run's model",
    )["ModelPackageArn"]
    # Nobody churned: the training script refuses a single-class training set.
    harness.put_raw("raw/churn.csv", customers(churn=lambda records: ["No"] * len(records)))

    execution = harness.run({"input_key": "raw/churn.csv"}, name="run-training-fails")

    assert execution.status == "FAILED"
    assert execution.entered()[-3:] == ["Train model", "Record failure", "Pipeline failed"]
    assert execution.error == "States.TaskFailed"
    job = json.loads(execution.cause)
    assert job["TrainingJobName"] == "run-training-fails" and job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith("AlgorithmError: Training input error:")
    assert "Evaluate model" not in execution.entered()
    (package,) = harness.model_packages()
    assert package["ModelPackageArn"] == previous and package["ModelApprovalStatus"] == "Approved"


def test_a_failed_transform_deletes_its_model_and_fails_with_the_transforms_error(harness):
    harness.put_raw("raw/churn.csv", customers())

    def failed_transform(harness: PipelineHarness, request: dict[str, Any], started: dict[str, Any]) -> JobOutcome:
        assert harness.client("sagemaker").describe_model(ModelName=request["ModelName"])  # it was created
        return JobOutcome(False, {"TransformJobStatus": "Failed", "FailureReason": "ClientError: out of memory"})

    harness.jobs[("sagemaker", "createTransformJob")] = failed_transform

    execution = harness.run({"input_key": "raw/churn.csv"}, name="run-transform-fails")

    assert execution.status == "FAILED"
    assert execution.entered()[-4:] == [
        "Score customers", "Delete scoring model after failure", "Record failure", "Pipeline failed"]
    assert execution.error == "States.TaskFailed"
    assert json.loads(execution.cause)["FailureReason"] == "ClientError: out of memory"
    assert "cleanup_failure" not in recorded_failure(execution)
    assert harness.client("sagemaker").list_models()["Models"] == []
    assert len(harness.model_packages()) == 1  # the registered model stays


def test_a_model_below_the_threshold_is_not_registered(harness):
    harness.put_raw("raw/churn.csv", customers(churn=shuffled_labels))  # labels unrelated to features

    execution = harness.run({"input_key": "raw/churn.csv"}, name="run-weak-model")

    assert execution.status == "FAILED"
    assert execution.entered()[-3:] == ["Evaluate model", "Model good enough?", "Model below quality threshold"]
    assert execution.error == "ModelQualityBelowThreshold"
    match = re.fullmatch(r"validation AUC ([0-9.]+) is below the threshold 0\.8", execution.cause)
    assert match and float(match.group(1)) < 0.8, execution.cause
    assert harness.model_packages() == []
    evaluation = state_output(execution, "Evaluate model")["evaluation"]
    assert evaluation["passed"] is False
    assert json.loads(harness.read_text(evaluation["evaluation_uri"]))["validation_auc"] == pytest.approx(
        float(match.group(1)))


def test_the_offline_store_wait_times_out(harness):
    # One record in ten never reaches the offline store.
    lag = ReplicationLag(harness.feature_store, after_queries=0,
                         never_replicated=lambda record: customer_id(record).startswith("0"))
    harness.feature_store_runtime = lag
    harness.athena.before_query.append(lag.on_query)
    text = customers()
    missing = sum(1 for r in csv.DictReader(io.StringIO(text)) if r["customerID"].startswith("0"))
    assert 0 < missing < ROWS
    harness.put_raw("raw/churn.csv", text)

    execution = harness.run({"input_key": "raw/churn.csv"}, name="run-offline-late")

    assert execution.status == "FAILED"
    assert execution.entered() == [
        "Validate input", "Ingest features", "Start offline store checks", *OFFLINE_LOOP,
        "Wait for offline store", *OFFLINE_LOOP, "Offline store timed out",
    ]
    assert execution.error == "OfflineStoreTimeout"
    assert execution.cause == f"offline store had {ROWS - missing} of {ROWS} records after 2 checks"
    assert harness.training.jobs == []
