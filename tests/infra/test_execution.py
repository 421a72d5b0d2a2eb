"""The synthesised state machine, executed: moto's Step Functions interpreter runs the real definition,
the Lambda handlers run in-process, and test-side stand-ins run the Athena SQL (DuckDB over the local
feature store), the training script and Batch Transform (see tests/infra/sfn_harness.py)."""

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

from churn import steps
from churn.handlers import ingest_batch as ingest_handler
from churn.handlers import validate_input
from churn.layout import FAILED_RECORDS_FILE
from tests.infra.athena_on_duckdb import ReplicationLag
from tests.infra.conftest import synthesize
from tests.infra.featurestore_runtime import InterruptedRuntime, RejectingRuntime
from tests.infra.sfn_harness import Execution, PipelineHarness
from tests.infra.sync_jobs import JobOutcome
from tests.support.feature_store import offline_store

ROOT = Path(__file__).resolve().parents[2]
ROWS = 300
BATCH = 100
# Short offline-store wait and few checks, small batches (so the Map has several children).
CONTEXT = {"offline_store_wait_seconds": 1, "offline_store_max_checks": 2, "ingest_batch_size": BATCH}
OFFLINE_LOOP = [steps.COUNT_OFFLINE_RECORDS, steps.READ_OFFLINE_COUNT, steps.RECORD_OFFLINE_CHECK,
                steps.OFFLINE_STORE_COMPLETE]
INGEST = [steps.VALIDATE_INPUT, steps.INGEST_FEATURES, steps.SUMMARISE_INGEST, steps.START_OFFLINE_CHECKS]
INGEST_HANDLER = "churn.handlers.ingest_batch.handler"


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


def customer_ids(text: str) -> list[str]:
    return [r["customerID"] for r in csv.DictReader(io.StringIO(text))]


def recorded_failure(execution: Execution) -> dict[str, Any]:
    """What the one failure path ("Record failure") kept in its output."""
    return execution.state_output(steps.RECORD_FAILURE)


def lambda_error(cause: str) -> dict[str, Any]:
    """A Lambda task's cause is the function's error payload."""
    return json.loads(cause)


def offline_rows(harness: PipelineHarness, event_time: str | None = None) -> list[tuple]:
    """(customer_id, event_time) of every offline row of the one feature group."""
    ((database, table), (group, _)), = harness.athena.tables.items()
    con = offline_store(harness.feature_store, group, database, table)
    try:
        where = "WHERE event_time = ?" if event_time else ""
        return con.execute(f'SELECT customer_id, event_time FROM "{database}"."{table}" {where}',
                           [event_time] if event_time else []).fetchall()
    finally:
        con.close()


def result_files(harness: PipelineHarness, execution: Execution) -> tuple[dict[str, Any], dict[str, list]]:
    """The Distributed Map's export: its manifest, and each result file's lines by status."""
    details = execution.state_output(steps.SUMMARISE_INGEST)["ingest_results"]
    manifest = json.loads(harness.read_text(f"s3://{details['ResultWriterDetails']['Bucket']}/"
                                            f"{details['ResultWriterDetails']['Key']}"))
    lines = {status: [json.loads(line) for file in files
                      for line in harness.read_text(f"s3://{manifest['DestinationBucket']}/{file['Key']}").splitlines()]
             for status, files in manifest["ResultFiles"].items()}
    return manifest, lines


# -- the success path ---------------------------------------------------------------------------
def test_success_path_ingests_trains_registers_and_scores(harness, spec):
    # Feature Store replicates to the offline store minutes after the write: here, after the first count.
    harness.athena.replication = ReplicationLag(queries=1)
    text = customers()
    harness.put_raw("raw/churn.csv", text)

    execution = harness.run({"input_key": "raw/churn.csv"}, name="run-ok")

    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    after_registration = execution.entered()[execution.entered().index(steps.REGISTER_MODEL) + 1:]
    assert execution.entered() == [
        *INGEST, *OFFLINE_LOOP, steps.WAIT_FOR_OFFLINE_STORE, *OFFLINE_LOOP,
        steps.BUILD_TRAINING_SET, steps.TRAIN_MODEL, steps.EVALUATE_MODEL, steps.MODEL_GOOD_ENOUGH,
        steps.REGISTER_MODEL, *after_registration,
    ]
    assert after_registration == [steps.BUILD_SCORING_SET, steps.STAGE_SCORING_INPUT, steps.CREATE_SCORING_MODEL,
                                  steps.SCORE_CUSTOMERS, steps.DELETE_SCORING_MODEL, steps.RANK_SCORES,
                                  steps.SUMMARISE_RUN, steps.PIPELINE_SUCCEEDED]
    validation = execution.state_output(steps.VALIDATE_INPUT)["validation"]
    assert validation["records"] == ROWS

    # Ingest: each batch is the ItemSelector's {index, row} items, cut by the ItemBatcher, and the BatchInput.
    batches = harness.lambdas.of(INGEST_HANDLER)
    assert sorted(len(b.event["Items"]) for b in batches) == [BATCH] * (ROWS // BATCH)
    assert sorted(item["index"] for b in batches for item in b.event["Items"]) == list(range(ROWS))
    first = min(batches, key=lambda b: b.event["Items"][0]["index"]).event["Items"][0]
    assert first["row"]["customerID"] == customer_ids(text)[0]
    (group,) = spec.groups
    assert {json.dumps(b.event["BatchInput"], sort_keys=True) for b in batches} == {json.dumps(
        {"event_time": validation["event_time"], "feature_group_name": harness.feature_store.describe_feature_group(
            FeatureGroupName=next(iter(harness.athena.tables.values()))[0])["FeatureGroupName"],
         "group": group.name}, sort_keys=True)}
    assert sorted(r[0] for r in offline_rows(harness, validation["event_time"])) == sorted(customer_ids(text))
    assert execution.state_output(steps.SUMMARISE_INGEST)["ingest"] == {"records": ROWS, "calls": ROWS // 25}

    # The ResultWriter's export: the manifest names one JSON Lines file of the three succeeded children.
    manifest, lines = result_files(harness, execution)
    ingest_results = execution.state_output(steps.SUMMARISE_INGEST)["ingest_results"]
    run_uuid = ingest_results["MapRunArn"].rsplit(":", 1)[1]
    assert ":mapRun:" in ingest_results["MapRunArn"] and "/IngestFeatures:" in ingest_results["MapRunArn"]
    assert ingest_results["ResultWriterDetails"] == {
        "Bucket": harness.bucket, "Key": f"ingest/run-ok/churn/{run_uuid}/manifest.json"}
    assert manifest["DestinationBucket"] == harness.bucket and manifest["MapRunArn"] == ingest_results["MapRunArn"]
    (succeeded,) = manifest["ResultFiles"]["SUCCEEDED"]
    assert succeeded["Key"] == f"ingest/run-ok/churn/{run_uuid}/SUCCEEDED_0.json"
    assert succeeded["Size"] == len(harness.read_text(f"s3://{harness.bucket}/{succeeded['Key']}").encode())
    assert manifest["ResultFiles"]["FAILED"] == manifest["ResultFiles"]["PENDING"] == []
    assert sorted(harness.keys("ingest/run-ok/")) == sorted([succeeded["Key"], ingest_results["ResultWriterDetails"][
        "Key"]])  # no failed-records file, no empty result file
    assert len(lines["SUCCEEDED"]) == 3 and {c["Status"] for c in lines["SUCCEEDED"]} == {"SUCCEEDED"}
    for child in lines["SUCCEEDED"]:
        assert isinstance(child["Input"], str) and isinstance(child["Output"], str)
        assert json.loads(child["Output"]) == {"ingested": BATCH, "failed_count": 0, "failed": [], "calls": 4}
        assert json.loads(child["Input"])["BatchInput"]["event_time"] == validation["event_time"]
        assert child["StateMachineArn"] == f"{harness.state_machine_arn}/IngestFeatures"
        assert child["ExecutionArn"].startswith(child["StateMachineArn"].replace(":stateMachine:", ":express:"))
        assert child["StartDate"] <= child["StopDate"] and child["StopDate"].endswith("Z")

    # The count and training-set queries ran with the run's values as their parameters.
    count_query, recount, training_query, *_ = harness.athena.queries
    assert count_query["parameters"] == recount["parameters"] == [validation["event_time_sql"]]
    assert training_query["parameters"] == [validation["event_time_sql"], validation["knowledge_cutoff_sql"]]
    assert execution.state_output(steps.BUILD_TRAINING_SET)["training_set"]["output_uri"] == training_query["output"]

    # The training set is the ingested data, one row per customer, in Athena's CSV shape.
    training_csv = harness.read_text(training_query["output"])
    assert training_csv.splitlines()[0] == ",".join(f'"{c}"' for c in spec.training_columns)
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

    # Scoring: every customer's features as of the moment "Build scoring set" started, scored, ranked.
    scoring_query = harness.athena.queries[-1]
    assert re.fullmatch(r"'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z'", scoring_query["parameters"][0])
    assert scoring_query["output"].rsplit("/", 1)[1] == execution.state_output(steps.BUILD_SCORING_SET)[
        "scoring_set"]["output_uri"].rsplit("/", 1)[1]
    (transform,) = harness.transform.jobs
    assert transform["returncode"] == 0
    # Batch Transform read the staged scoring set alone (no Athena .csv.metadata beside it).
    assert [uri.rsplit("/", 1)[1] for uri in transform["outputs"]] == ["scoring-set.csv.out"]
    scores = harness.read_csv(output["scores_uri"])
    assert output["scores_uri"] == f"s3://{harness.bucket}/scores/run-ok/scores.csv"
    assert len(scores) == output["customers_scored"] == ROWS
    assert sorted(s["customer_id"] for s in scores) == sorted(source)
    assert [int(s["rank"]) for s in scores] == list(range(1, ROWS + 1))
    probabilities = [float(s["churn_probability"]) for s in scores]
    assert probabilities == sorted(probabilities, reverse=True) and 0 <= probabilities[-1] <= probabilities[0] <= 1
    assert {s["model_version"] for s in scores} == {output["model_version"]} == {"1"}
    assert [t["record_id"] for t in output["top_customers"]] == [s["customer_id"] for s in scores[:5]]
    # The transform's model (created for it, named after the execution) is gone; the package stays.
    assert harness.client("sagemaker").list_models()["Models"] == []


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
    validation = execution.state_output(steps.VALIDATE_INPUT)["validation"]
    assert validation["records"] == ROWS and validation["version_id"] != "null"
    assert len(offline_rows(harness, validation["event_time"])) == ROWS
    training_set = execution.state_output(steps.BUILD_TRAINING_SET)["training_set"]["output_uri"]
    assert len({r["customer_id"] for r in harness.read_csv(training_set)}) == ROWS
    latest = harness.client("s3").get_object(Bucket=harness.bucket, Key="raw/churn.csv")["Body"].read()
    assert latest.decode() == customers(ROWS // 3)  # the key itself holds the newer upload


def test_blank_lines_ending_the_file_are_not_records(harness):
    """Validate input accepts blank lines at the end of a file (as run --local does); the Map's CSV reader
    makes an item of each, every value an empty string, which is no record to ingest or to fail."""
    harness.put_raw("raw/blank-end.csv", customers() + "\n   \n")

    execution = harness.run({"input_key": "raw/blank-end.csv"}, name="run-blank-end")

    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert execution.state_output(steps.SUMMARISE_INGEST)["ingest"]["records"] == ROWS


# -- failures, each ending in the expected state with the expected error and cause -------------
def test_a_bad_csv_fails_at_validate_input_and_nothing_is_written(harness):
    rows = list(csv.DictReader(io.StringIO(customers())))
    rows[6]["tenure"] = "twelve"  # line 8 of the file
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    harness.put_raw("raw/bad.csv", out.getvalue())

    execution = harness.run({"input_key": "raw/bad.csv"}, name="run-bad-csv")

    assert execution.status == "FAILED"
    assert execution.entered() == [steps.VALIDATE_INPUT, steps.RECORD_FAILURE, steps.PIPELINE_FAILED]
    assert execution.error == "InputValidationError"
    message = lambda_error(execution.cause)["errorMessage"]
    assert message.startswith(f"s3://{harness.bucket}/raw/bad.csv, line 8, column 'tenure': "), message
    assert recorded_failure(execution)["failure"]["Error"] == "InputValidationError"
    assert recorded_failure(execution)["execution"] == "run-bad-csv"
    assert harness.lambdas.of(INGEST_HANDLER) == [] and harness.runtime.calls == 0  # no BatchWriteRecord at all
    assert offline_rows(harness) == [] and harness.keys("ingest/") == []


def test_a_record_the_feature_store_rejects_fails_the_run_at_summarise_ingest(harness):
    text = customers()
    rejected = customer_ids(text)[141]  # line 143, in the second batch
    harness.feature_store_runtime = RejectingRuntime(
        harness.feature_store, {rejected}, "ValidationError", "Record rejected by the feature group")
    harness.put_raw("raw/churn.csv", text)

    execution = harness.run({"input_key": "raw/churn.csv"}, name="run-rejected")

    assert execution.status == "FAILED"
    assert execution.entered() == [steps.VALIDATE_INPUT, steps.INGEST_FEATURES, steps.SUMMARISE_INGEST,
                                   steps.RECORD_FAILURE, steps.PIPELINE_FAILED]
    assert execution.error == "IngestError"
    failures_uri = f"s3://{harness.bucket}/ingest/run-rejected/churn/{FAILED_RECORDS_FILE}"
    assert lambda_error(execution.cause)["errorMessage"] == (
        f"1 record(s) failed: line 143 {rejected} (ValidationError: Record rejected by the feature group); "
        f"all of them in {failures_uri}")
    assert json.loads(harness.read_text(failures_uri)) == {
        "ingested": ROWS - 1, "failed_count": 1, "calls": ROWS // 25,
        "failed": [{"line": 143, "record_id": rejected, "error_code": "ValidationError",
                    "message": "Record rejected by the feature group"}]}
    # Every batch succeeded (a batch returns its failed records): the export has no FAILED file.
    manifest, lines = result_files(harness, execution)
    assert manifest["ResultFiles"]["FAILED"] == [] and len(lines["SUCCEEDED"]) == 3
    reported = [json.loads(child["Output"])["failed"] for child in lines["SUCCEEDED"]]
    assert sorted(reported, key=len)[-1] == [{"line": 143, "record_id": rejected, "error_code": "ValidationError",
                                              "message": "Record rejected by the feature group"}]
    assert len(offline_rows(harness)) == ROWS - 1


def test_a_batch_that_fails_whole_names_each_of_its_records(harness, monkeypatch):
    """A child execution that fails (here its handler raises for the batch of lines 102-201) is in the
    export's FAILED file with its input; Summarise ingest names every record of that batch."""
    text = customers()
    original = ingest_handler.ingest_batch

    def crashes_on_the_second_batch(rows, **kwargs):
        rows = list(rows)
        if rows[0][0] == 102:
            raise RuntimeError("the batch handler crashed")
        return original(rows, **kwargs)

    monkeypatch.setattr(ingest_handler, "ingest_batch", crashes_on_the_second_batch)
    harness.put_raw("raw/churn.csv", text)

    execution = harness.run({"input_key": "raw/churn.csv"}, name="run-batch-fails")

    assert execution.status == "FAILED"
    assert execution.entered()[-3:] == [steps.SUMMARISE_INGEST, steps.RECORD_FAILURE, steps.PIPELINE_FAILED]
    assert execution.error == "IngestError"
    manifest, lines = result_files(harness, execution)
    (failed_file,) = manifest["ResultFiles"]["FAILED"]
    assert failed_file["Key"].endswith("/FAILED_0.json") and len(lines["SUCCEEDED"]) == 2
    (child,) = lines["FAILED"]
    assert child["Status"] == "FAILED" and child["Error"] == "RuntimeError" and "Output" not in child
    assert lambda_error(child["Cause"])["errorMessage"] == "the batch handler crashed"
    assert [item["index"] for item in json.loads(child["Input"])["Items"]] == list(range(100, 200))
    ids = customer_ids(text)
    message = lambda_error(execution.cause)["errorMessage"]
    assert message.startswith(f"100 record(s) failed: line 102 {ids[100]} (RuntimeError: "), message
    failures = json.loads(harness.read_text(f"s3://{harness.bucket}/ingest/run-batch-fails/churn/{FAILED_RECORDS_FILE}"))
    assert failures["failed_count"] == 100 and failures["ingested"] == 2 * BATCH
    assert [(f["line"], f["record_id"], f["error_code"]) for f in failures["failed"]] == [
        (line, ids[line - 2], "RuntimeError") for line in range(102, 202)]
    assert sorted(r[0] for r in offline_rows(harness)) == sorted(ids[:100] + ids[200:])


def test_an_interrupted_ingest_fails_at_summarise_ingest_and_a_rerun_converges(harness):
    harness.put_raw("raw/churn.csv", customers())
    interrupted = InterruptedRuntime(harness.feature_store, after=ROWS // 2)
    harness.feature_store_runtime = interrupted

    first = harness.run({"input_key": "raw/churn.csv"}, name="run-interrupted")

    assert first.status == "FAILED"
    assert first.entered() == [steps.VALIDATE_INPUT, steps.INGEST_FEATURES, steps.SUMMARISE_INGEST,
                               steps.RECORD_FAILURE, steps.PIPELINE_FAILED]
    assert first.error == "IngestError"
    message = lambda_error(first.cause)["errorMessage"]
    assert message.startswith(f"{ROWS // 2} record(s) failed: line ") and "(AccessForbidden: " in message
    assert message.endswith(f"and {ROWS // 2 - 5} more; all of them in s3://{harness.bucket}/ingest/"
                            f"run-interrupted/churn/{FAILED_RECORDS_FILE}")
    event_time = first.state_output(steps.VALIDATE_INPUT)["validation"]["event_time"]
    assert len(offline_rows(harness, event_time)) == ROWS // 2 == interrupted.written == interrupted.refused

    harness.feature_store_runtime = harness.feature_store
    second = harness.run({"input_key": "raw/churn.csv"}, name="run-again")

    assert second.status == "SUCCEEDED", (second.error, second.cause)
    training_set = second.state_output(steps.BUILD_TRAINING_SET)["training_set"]["output_uri"]
    ids = [r["customer_id"] for r in harness.read_csv(training_set)]
    assert len(ids) == len(set(ids)) == ROWS  # each customer exactly once


def test_the_failures_file_lists_every_failed_record(harness):
    harness.put_raw("raw/churn.csv", customers())
    harness.feature_store_runtime = InterruptedRuntime(harness.feature_store, after=ROWS // 2)

    execution = harness.run({"input_key": "raw/churn.csv"}, name="run-many-failures")

    assert execution.error == "IngestError"
    failures = json.loads(harness.read_text(
        f"s3://{harness.bucket}/ingest/run-many-failures/churn/{FAILED_RECORDS_FILE}"))
    assert failures["failed_count"] == ROWS // 2
    assert len({f["line"] for f in failures["failed"]}) == ROWS // 2


@pytest.mark.parametrize(
    ("state", "marker"),
    [(steps.COUNT_OFFLINE_RECORDS, "count(DISTINCT"), (steps.BUILD_TRAINING_SET, "row_number()")],
)
def test_an_athena_failure_fails_the_run_with_the_query_state(harness, state, marker):
    reason = "HIVE_CURSOR_ERROR: Failed to read Parquet file"
    harness.athena.fail_when(lambda sql: marker in sql, reason)
    harness.put_raw("raw/churn.csv", customers())

    execution = harness.run({"input_key": "raw/churn.csv"}, name="run-athena")

    assert execution.status == "FAILED"
    assert execution.entered()[-3:] == [state, steps.RECORD_FAILURE, steps.PIPELINE_FAILED]
    assert execution.error == "States.TaskFailed"  # a .sync job that ends FAILED
    query = json.loads(execution.cause)["QueryExecution"]
    assert query["Status"]["State"] == "FAILED" and query["Status"]["StateChangeReason"] == reason
    assert recorded_failure(execution)["failure"]["Error"] == "States.TaskFailed"
    assert harness.training.jobs == []


def test_a_failed_training_says_why_in_its_log_and_keeps_the_approved_model(harness):
    previous = harness.client("sagemaker").create_model_package(
        ModelPackageGroupName=harness.model_package_group, ModelApprovalStatus="Approved",
        ModelPackageDescription="the previous run's model",
    )["ModelPackageArn"]
    # Nobody churned: the training script refuses a single-class training set.
    harness.put_raw("raw/churn.csv", customers(churn=lambda records: ["No"] * len(records)))

    execution = harness.run({"input_key": "raw/churn.csv"}, name="run-training-fails")

    assert execution.status == "FAILED"
    assert execution.entered()[-3:] == [steps.TRAIN_MODEL, steps.RECORD_FAILURE, steps.PIPELINE_FAILED]
    assert execution.error == "States.TaskFailed"
    job = json.loads(execution.cause)
    assert job["TrainingJobName"] == "run-training-fails" and job["TrainingJobStatus"] == "Failed"
    # The toolkit's failure file, not the script's: FailureReason names the command, never the reason.
    (run,) = harness.training.jobs
    command = re.fullmatch(r'AlgorithmError: ExecuteUserScriptError:\nCommand "(.+)"', job["FailureReason"])
    assert command and command.group(1).split()[1:4] == ["-m", "train_model", "--categorical_columns"], job
    assert "one class only" not in job["FailureReason"] and len(job["FailureReason"]) <= 1024
    # The script's own line is in the job's log stream, where SageMaker writes the container's output.
    logs = harness.client("logs")
    (stream,) = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs",
                                          logStreamNamePrefix="run-training-fails/")["logStreams"]
    assert re.fullmatch(r"run-training-fails/algo-1-\d{10}", stream["logStreamName"])
    events = [e["message"] for e in logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs",
                                                        logStreamName=stream["logStreamName"])["events"]]
    (script_error,) = [e for e in events if e.startswith("ERROR: Training input error: ")]
    assert "label 'churn' has 0 row(s) of class 1 (one class only)" in script_error
    assert events[-2:] == [events[-2], f'Command "{command.group(1)}"']
    assert events[-2].endswith("sagemaker-containers ERROR    ExecuteUserScriptError:")
    assert steps.EVALUATE_MODEL not in execution.entered()
    (package,) = harness.model_packages()
    assert package["ModelPackageArn"] == previous and package["ModelApprovalStatus"] == "Approved"


def test_a_failed_transform_deletes_its_model_and_fails_with_the_transforms_error(harness):
    harness.put_raw("raw/churn.csv", customers())

    def failed_transform(host: PipelineHarness, request: dict[str, Any], started: dict[str, Any]) -> JobOutcome:
        assert host.client("sagemaker").describe_model(ModelName=request["ModelName"])  # it was created
        return JobOutcome(False, {"TransformJobStatus": "Failed", "FailureReason": "ClientError: out of memory"})

    harness.jobs[("sagemaker", "createTransformJob")] = failed_transform

    execution = harness.run({"input_key": "raw/churn.csv"}, name="run-transform-fails")

    assert execution.status == "FAILED"
    assert execution.entered()[-4:] == [steps.SCORE_CUSTOMERS, steps.DELETE_SCORING_MODEL_AFTER_FAILURE,
                                        steps.RECORD_FAILURE, steps.PIPELINE_FAILED]
    assert execution.error == "States.TaskFailed"
    assert json.loads(execution.cause)["FailureReason"] == "ClientError: out of memory"
    assert "cleanup_failure" not in recorded_failure(execution)
    assert harness.client("sagemaker").list_models()["Models"] == []
    assert len(harness.model_packages()) == 1  # the registered model stays


def shuffled_labels(records: list[dict[str, str]]) -> list[str]:
    labels = [r["Churn"] for r in records]
    random.Random(7).shuffle(labels)
    return labels


def test_a_model_below_the_threshold_is_not_registered(harness):
    harness.put_raw("raw/churn.csv", customers(churn=shuffled_labels))  # labels unrelated to features

    execution = harness.run({"input_key": "raw/churn.csv"}, name="run-weak-model")

    assert execution.status == "FAILED"
    assert execution.entered()[-3:] == [steps.EVALUATE_MODEL, steps.MODEL_GOOD_ENOUGH, steps.MODEL_BELOW_THRESHOLD]
    assert execution.error == "ModelQualityBelowThreshold"
    match = re.fullmatch(r"validation AUC ([0-9.]+) is below the threshold 0\.8", execution.cause)
    assert match and float(match.group(1)) < 0.8, execution.cause
    assert harness.model_packages() == []
    evaluation = execution.state_output(steps.EVALUATE_MODEL)["evaluation"]
    assert evaluation["passed"] is False
    assert json.loads(harness.read_text(evaluation["evaluation_uri"]))["validation_auc"] == pytest.approx(
        float(match.group(1)))


def test_the_offline_store_wait_times_out(harness):
    text = customers()
    late = {i for i in customer_ids(text) if i.startswith("0")}  # about one in ten never replicates
    assert 0 < len(late) < ROWS
    harness.athena.replication = ReplicationLag(queries=0, never_replicated=late)
    harness.put_raw("raw/churn.csv", text)

    execution = harness.run({"input_key": "raw/churn.csv"}, name="run-offline-late")

    assert execution.status == "FAILED"
    assert execution.entered() == [*INGEST, *OFFLINE_LOOP, steps.WAIT_FOR_OFFLINE_STORE, *OFFLINE_LOOP,
                                   steps.OFFLINE_STORE_TIMED_OUT]
    assert execution.error == "OfflineStoreTimeout"
    assert execution.cause == f"offline store had {ROWS - len(late)} of {ROWS} records after 2 checks"
    assert harness.training.jobs == []
