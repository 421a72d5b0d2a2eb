"""The operator CLI on AWS (`upload`, `run`, `status`, `runs`) against a stack deployed in moto.

The stack is a real CloudFormation stack (bucket, role, state machine, the project's outputs), so
the CLI finds everything through `describe_stacks` as it does against AWS. The state machine
mimics the pipeline's ends under the pipeline's state names: a success output like "Summarise run",
the quality gate's Fail, a failed ingest (the cause "Summarise ingest" gives, its failures file in S3)
and a failed training job (the generic reason SageMaker gives; the script's own line in CloudWatch Logs).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.httpsession
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws
from moto.stepfunctions.parser.asl.component.state.fail import state_fail

from churn import steps
from churn.handlers.summarise_ingest import summarise
from churn.ingest import IngestError
from churn.layout import FAILED_RECORDS_FILE, INGEST_RESULTS, TRAINING_ENTRY_POINT
from churn.schema import FeatureSpec
from pipeline import aws_backend, aws_objects
from pipeline.aws_objects import TRAINING_JOB_LOG_GROUP, failed_ingest_records, training_script_error
from pipeline.aws_session import AwsSession, ConsoleLinks, Deployment
from pipeline.backends import RUN_NAME
from pipeline.errors import readable_cause
from pipeline.execution_progress import Execution, HistoryReader, ProgressTracker, follow
from pipeline.local_aws.training_job import run_training
from pipeline.runner import TRAINING_DIR
from tests.support.moto import ReraisedErrorName, without_list_bucket
from tests.unit.cli_support import REGION, invoke, last_json, one_error_line, summary_value, use_fake_aws

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "data" / "churn.spec.json"
STACK = "ChurnPipeline"
GROUPS_STACK = "CdnowPipeline"  # the same machine, deployed for a spec with several groups
MACHINE_NAME = "ChurnPipeline-Pipeline"
BUCKET = "churn-pipeline-bucket"
EVALUATION_KEY = "models/run-ok/evaluation.json"  # where "Evaluate model" copies evaluation.json
AUC = 0.8512
WEAK_INPUT = "raw/weak.csv"  # the test machine fails its quality gate for this key
BAD_RECORDS_INPUT = "raw/bad-records.csv"  # ... its ingest for this one
FAILING_TRAINING_INPUT = "raw/failing-training.csv"  # ... and its training job for this one
BAD_RECORDS_RUN = "run-bad-records"  # the execution whose failures file the bucket holds
FAILING_TRAINING_RUN = "run-bad-training"
EVENT_TIME = "2026-11-27T00:00:00.000Z"
GATE_CAUSE = "validation AUC 0.6100 is below the threshold 0.8000"
PACKAGE_ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churnpipeline-churn-models/1"
# SageMaker's reason when the script exits non-zero: the toolkit's, not the script's own words.
GENERIC_REASON = ('AlgorithmError: ExecuteUserScriptError:\nExitCode 1\nErrorMessage ""\nCommand '
                  '"/miniconda3/bin/python3 -m train_model --validation_fraction 0.95"')


def fail_with(error: str, cause: str) -> dict:
    """How the pipeline ends after a failed step: its error caught into $.failure, re-raised by "Pipeline failed"."""
    return {"Type": "Pass", "Result": {"Error": error, "Cause": cause}, "ResultPath": "$.failure",
            "Next": steps.PIPELINE_FAILED}


def when_input(key: str, then: str) -> dict:
    return {"And": [{"Variable": "$.input_key", "IsPresent": True},
                    {"Variable": "$.input_key", "StringEquals": key}], "Next": then}


def definition(ingest_cause: str) -> dict:
    training_cause = json.dumps({"TrainingJobName": FAILING_TRAINING_RUN, "TrainingJobStatus": "Failed",
                                 "FailureReason": GENERIC_REASON})
    return {
        "Comment": "The pipeline's states that shape its outcome; the work states are Pass states here",
        "StartAt": steps.VALIDATE_INPUT,
        "States": {
            steps.VALIDATE_INPUT: {"Type": "Pass", "Result": {"records": 300, "event_time": EVENT_TIME},
                                   "ResultPath": "$.validation", "Next": steps.SUMMARISE_INGEST},
            steps.SUMMARISE_INGEST: {"Type": "Pass", "Result": {"records": 300, "calls": 12}, "ResultPath": "$.ingest",
                                     "Next": steps.MODEL_GOOD_ENOUGH},
            steps.MODEL_GOOD_ENOUGH: {
                "Type": "Choice",
                "Choices": [when_input(WEAK_INPUT, steps.MODEL_BELOW_THRESHOLD),
                            when_input(BAD_RECORDS_INPUT, steps.RECORD_FAILURE),
                            when_input(FAILING_TRAINING_INPUT, steps.TRAIN_MODEL)],
                "Default": steps.EVALUATE_MODEL,
            },
            steps.MODEL_BELOW_THRESHOLD: {"Type": "Fail", "Error": "ModelQualityBelowThreshold", "Cause": GATE_CAUSE},
            steps.RECORD_FAILURE: fail_with(IngestError.__name__, ingest_cause),
            steps.TRAIN_MODEL: fail_with("States.TaskFailed", training_cause),
            steps.PIPELINE_FAILED: {"Type": "Fail", "ErrorPath": "$.failure.Error", "CausePath": "$.failure.Cause"},
            steps.EVALUATE_MODEL: {
                "Type": "Pass",
                "Result": {"passed": True, "validation_auc": AUC, "threshold": 0.8,
                           "reason": f"validation AUC {AUC:.4f} meets the threshold 0.8000",
                           "evaluation_uri": f"s3://{BUCKET}/{EVALUATION_KEY}"},
                "ResultPath": "$.evaluation",
                "Next": steps.SUMMARISE_RUN,
            },
            steps.SUMMARISE_RUN: {
                "Type": "Pass",
                "Parameters": {
                    "model_artifact.$": "States.Format('s3://churn-bucket/models/{}/output/model.tar.gz', "
                                        "$$.Execution.Name)",
                    "validation_auc.$": "$.evaluation.validation_auc",
                    "model_package_arn": PACKAGE_ARN,
                    "training_job_name.$": "$$.Execution.Name",
                    "execution.$": "$$.Execution.Name",
                },
                "Next": steps.PIPELINE_SUCCEEDED,
            },
            steps.PIPELINE_SUCCEEDED: {"Type": "Succeed"},
        },
    }


def template(bucket: str, machine: str, feature_groups: dict[str, str]) -> dict:
    """The project's stack outputs (an SNS topic stands in for the resources: moto keeps CloudFormation's
    state machines apart from its interpreter, so the machine is created directly)."""
    outputs = {
        "BucketName": bucket,
        "StateMachineArn": machine,
        "FeatureGroupName": next(iter(feature_groups.values())),
        "FeatureGroups": json.dumps({g: {"feature_group": n, "table": f"{g}_features"}
                                     for g, n in feature_groups.items()}),
        "ModelPackageGroupName": "churnpipeline-churn-models",
    }
    return {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {key: {"Value": value} for key, value in outputs.items()}}


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch, tmp_path):
    use_fake_aws(monkeypatch, tmp_path)


@pytest.fixture
def spec() -> FeatureSpec:
    return FeatureSpec.load(SPEC)


class Stack(dict):
    """The stack's outputs, plus moto clients to look behind the CLI's back."""

    s3: Any
    sfn: Any


def failed_ingest(s3: Any, bucket: str) -> str:
    """What "Summarise ingest" does with a Map whose batches reported failed records: it writes the
    failures file and raises IngestError; returns the cause the execution fails with."""
    prefix = INGEST_RESULTS.format(execution=BAD_RECORDS_RUN, group="churn")
    failed = [{"line": 2 + i, "record_id": f"A-{i}", "error_code": "ValidationError",
               "message": f"feature 'tenure' has value 'x{i}'"} for i in range(7)]
    batch = {"ingested": 493, "failed_count": 7, "failed": failed, "calls": 20}
    s3.put_object(Bucket=bucket, Key=f"{prefix}/SUCCEEDED_0.json", Body=json.dumps({"Output": json.dumps(batch)}))
    s3.put_object(Bucket=bucket, Key=f"{prefix}/manifest.json", Body=json.dumps(
        {"ResultFiles": {"SUCCEEDED": [{"Key": f"{prefix}/SUCCEEDED_0.json"}], "FAILED": [], "PENDING": []}}))
    with pytest.raises(IngestError) as raised:
        summarise(s3, f"s3://{bucket}/{prefix}/manifest.json", f"s3://{bucket}/{prefix}/{FAILED_RECORDS_FILE}",
                  "customerID")
    return json.dumps({"errorMessage": str(raised.value), "errorType": "IngestError", "stackTrace": ["..."]})


@pytest.fixture
def stack(spec, monkeypatch):
    """The stack "deployed" in moto, with moto's Step Functions interpreter running executions."""
    monkeypatch.setattr(state_fail, "CustomErrorName", ReraisedErrorName)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        session = boto3.Session(region_name=REGION)
        s3, sfn, cloudformation = session.client("s3"), session.client("stepfunctions"), session.client(
            "cloudformation")
        bucket = BUCKET
        s3.create_bucket(Bucket=bucket)
        machine = sfn.create_state_machine(name=MACHINE_NAME, definition=json.dumps(definition(failed_ingest(
            s3, bucket))), roleArn="arn:aws:iam::123456789012:role/pipeline")["stateMachineArn"]
        for name, groups in ((STACK, {"churn": f"churnpipeline-churn-{spec.groups[0].fingerprint()}"}),
                             (GROUPS_STACK, {g: f"cdnowpipeline-{g}-0000beef" for g in ("profile", "activity",
                                                                                       "labels")})):
            cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(template(bucket, machine, groups)))
        outputs = Stack((o["OutputKey"], o["OutputValue"])
                        for o in cloudformation.describe_stacks(StackName=STACK)["Stacks"][0]["Outputs"])
        outputs.s3, outputs.sfn = s3, sfn
        put_raw(outputs, "raw/churn.csv")  # the stack deploys the sample data there
        yield outputs


@pytest.fixture
def cli():
    return invoke


@pytest.fixture
def small_csv(tmp_path) -> Path:
    lines = (ROOT / "data" / "churn.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    path = tmp_path / "customers.csv"
    path.write_text("".join(lines[:51]), encoding="utf-8")
    return path


def put_raw(outputs: Stack, key: str, body: bytes = b"customerID\n") -> None:
    outputs.s3.put_object(Bucket=outputs["BucketName"], Key=key, Body=body)


def raw_keys(outputs: Stack) -> list[str]:
    listing = outputs.s3.list_objects_v2(Bucket=outputs["BucketName"], Prefix="raw/")
    return [o["Key"] for o in listing.get("Contents", [])]


def executions(outputs: Stack) -> list[dict]:
    return outputs.sfn.list_executions(stateMachineArn=outputs["StateMachineArn"])["executions"]


def deny(monkeypatch, service: str, operation: str, action: str) -> None:
    """The CLI's `service` client answers `operation` with AccessDenied, as for an identity without `action`."""
    original = AwsSession.client

    def client(self, name):
        made = original(self, name)
        if name == service and not hasattr(made, "_stubbed"):
            made._stubbed = Stubber(made)
            denied = f"User: arn:aws:iam::123456789012:user/dev is not authorized to perform: {action}"
            made._stubbed.add_client_error(operation, "AccessDeniedException", denied)
            made._stubbed.activate()
        return made

    monkeypatch.setattr(AwsSession, "client", client)


def wait_finished(outputs: Stack, arn: str) -> dict:
    for _ in range(200):
        described = outputs.sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.01)
    raise AssertionError(f"{arn} did not finish")


# -- the stack's outputs --------------------------------------------------------------------------
def test_deployment_reads_the_stack_outputs(stack, spec):
    deployment = Deployment.load(boto3.Session(region_name=REGION).client("cloudformation"), STACK)
    assert deployment.bucket == stack["BucketName"]
    assert deployment.state_machine_arn == stack["StateMachineArn"]
    assert deployment.model_package_group == "churnpipeline-churn-models"
    assert deployment.region == REGION
    assert deployment.feature_groups == {"churn": stack["FeatureGroupName"]}
    assert deployment.spec_matches(spec) is True
    assert deployment.spec_matches(FeatureSpec.load(ROOT / "data" / "cdnow.spec.json")) is False


# -- upload ---------------------------------------------------------------------------------------
def test_upload_validates_then_puts_the_file_in_raw(stack, cli, small_csv):
    result = cli("upload", "--data", small_csv, "--key", "customers-2024.csv")
    assert result.exit_code == 0, result.output
    body = stack.s3.get_object(Bucket=stack["BucketName"], Key="raw/customers-2024.csv")["Body"].read()
    assert body == small_csv.read_bytes()
    assert f"s3://{stack['BucketName']}/raw/customers-2024.csv" in result.stdout
    assert "validated" in result.stdout and "50 rows" in result.stdout
    assert "next: python -m pipeline run --data-key raw/customers-2024.csv" in result.stdout


def test_upload_shows_a_path_and_key_with_brackets_as_written(stack, cli, small_csv, tmp_path):
    """'[/x]' in a file name is text, not rich markup (it crashed the command after the upload)."""
    data = tmp_path / "d[/b]" / "x[red]y.csv"  # the folder d[ holding the folder b]
    data.parent.mkdir(parents=True)
    data.write_bytes(small_csv.read_bytes())
    result = cli("upload", "--data", data)
    assert result.exit_code == 0, result.output
    assert f"validated {data}: 50 rows" in result.stdout
    assert f"uploaded s3://{stack['BucketName']}/raw/x[red]y.csv" in result.stdout
    assert "next: python -m pipeline run --data-key raw/x[red]y.csv" in result.stdout


def test_upload_keeps_the_file_name_by_default(stack, cli, small_csv):
    result = cli("upload", "--data", small_csv)
    assert result.exit_code == 0, result.output
    assert raw_keys(stack) == ["raw/churn.csv", "raw/customers.csv"]


def test_upload_rejects_a_bad_csv_and_uploads_nothing(stack, cli, small_csv):
    lines = small_csv.read_text().splitlines(keepends=True)
    lines[7] = lines[7].replace(",Yes,", ",maybe,", 1).replace(",0,", ",zero,", 1)
    small_csv.write_text("".join(lines))
    result = cli("upload", "--data", small_csv)
    assert result.exit_code == 2
    message = one_error_line(result)
    assert str(small_csv) in message and "line 8" in message
    assert raw_keys(stack) == ["raw/churn.csv"]


def test_upload_refuses_a_spec_the_stack_was_not_deployed_with(stack, cli, small_csv, tmp_path):
    other = json.loads(SPEC.read_text())
    other["description"] = "the same columns, one feature fewer"
    other["features"] = other["features"][:-1]
    other_spec = tmp_path / "other.spec.json"
    other_spec.write_text(json.dumps(other))
    result = cli("upload", "--data", small_csv, "--spec", other_spec)
    assert result.exit_code == 2
    assert "not the feature spec" in result.stderr and stack["FeatureGroupName"] in result.stderr
    assert raw_keys(stack) == ["raw/churn.csv"]


def test_upload_checks_a_derivations_input_by_deriving_and_a_groups_csv_by_its_group(stack, cli, cdnow_log,
                                                                                        tmp_path):
    cdnow = ROOT / "data" / "cdnow.spec.json"
    derived = cli("upload", "--spec", cdnow, "--data", cdnow_log)  # not a .csv: a derivation reads it
    assert "validated" in derived.stdout and "derives profile, activity, labels" in derived.stdout
    assert derived.exit_code == 2 and "not the feature spec stack 'ChurnPipeline' was deployed with" in derived.stderr
    spec = json.loads(cdnow.read_text())
    del spec["derive"]
    groups_spec = tmp_path / "groups.spec.json"
    groups_spec.write_text(json.dumps(spec))
    which = cli("upload", "--spec", groups_spec, "--data", cdnow_log, "--key", "x.csv")
    assert which.exit_code == 2 and "pass --group NAME, one of profile, activity, labels" in one_error_line(which)
    assert raw_keys(stack) == ["raw/churn.csv"]


@pytest.mark.parametrize("spec_file", ["cdnow.spec.json", "churn.spec.json"])  # derived from, or read as a CSV
def test_upload_of_a_missing_file_names_it(stack, cli, spec_file, tmp_path):
    missing = tmp_path / "CDNOW_master.txt"
    for key in (("--key", "x.csv"), ()):  # without --key a missing .txt was "--key '...' must end in .csv"
        result = cli("upload", "--spec", ROOT / "data" / spec_file, "--data", missing, *key)
        assert result.exit_code == 2 and one_error_line(result).startswith(f"error: {missing}: file not found\n")
    assert raw_keys(stack) == ["raw/churn.csv"]


def test_raw_trigger_is_detected_from_the_bucket_notifications():
    s3 = boto3.Session(region_name=REGION).client("s3")
    with Stubber(s3) as stub:
        stub.add_response("get_bucket_notification_configuration", {"EventBridgeConfiguration": {}},
                          {"Bucket": "data-bucket"})
        stub.add_response("get_bucket_notification_configuration", {}, {"Bucket": "data-bucket"})
        stub.add_client_error("get_bucket_notification_configuration", "AccessDenied", http_status_code=403)
        assert aws_objects.raw_trigger_enabled(s3, "data-bucket") is True
        assert aws_objects.raw_trigger_enabled(s3, "data-bucket") is False
        assert aws_objects.raw_trigger_enabled(s3, "data-bucket") is None


def test_upload_with_the_raw_trigger_says_the_run_starts_by_itself(stack, cli, small_csv, monkeypatch):
    # moto does not echo EventBridgeConfiguration back, so the detection is stubbed above and here.
    monkeypatch.setattr(aws_objects, "raw_trigger_enabled", lambda s3, bucket: True)
    result = cli("upload", "--data", small_csv, "--region", REGION)
    assert result.exit_code == 0, result.output
    assert "starts a run for new raw/*.csv files" in result.stdout
    assert f"python -m pipeline runs --region {REGION}" in result.stdout


def test_upload_rejects_a_key_that_is_not_a_csv_name(stack, cli, small_csv):
    result = cli("upload", "--data", small_csv, "--key", "customers.txt")
    assert result.exit_code == 2
    assert "--key 'customers.txt' must end in .csv" in one_error_line(result)
    named_txt = small_csv.rename(small_csv.with_suffix(".txt"))  # no --key: the file's name is the key
    result = cli("upload", "--data", named_txt)
    assert result.exit_code == 2 and f"error: --data {named_txt}: its name must end in .csv" in one_error_line(result)
    assert "pass --key NAME.csv" in result.stderr
    assert raw_keys(stack) == ["raw/churn.csv"]


# -- run ------------------------------------------------------------------------------------------
def test_run_no_wait_starts_an_execution_and_prints_its_arn(stack, cli):
    result = cli("run", "--no-wait", "--name", "nightly-1")
    assert result.exit_code == 0, result.output
    started = executions(stack)
    assert [e["name"] for e in started] == ["nightly-1"]
    assert started[0]["executionArn"] in result.stdout
    described = wait_finished(stack, started[0]["executionArn"])
    assert json.loads(described["input"]) == {"input_key": "raw/churn.csv"}
    assert "follow it: python -m pipeline status nightly-1 --follow" in result.stdout


def test_run_generates_a_name_that_can_name_a_training_job(stack, cli):
    result = cli("run", "--no-wait", "--json")
    assert result.exit_code == 0, result.output
    summary = last_json(result)
    assert summary["status"] == "RUNNING"
    name = summary["run_id"]
    assert RUN_NAME.match(name) and name.startswith("run-") and len(name) == len("run-20240101-120000-abcd")
    wait_finished(stack, summary["execution_arn"])


def test_run_follows_the_execution_to_success(stack, cli):
    put_raw(stack, "raw/customers.csv")
    split = {"kind": "out_of_time", "time_column": "observation_time",
             "train_periods": {"first": "1997-04-15", "last": "1997-12-15", "count": 5},
             "validation_periods": {"first": "1998-02-15", "last": "1998-02-15", "count": 1}}
    stack.s3.put_object(Bucket=BUCKET, Key=EVALUATION_KEY, Body=json.dumps({"validation_auc": AUC, "split": split}))
    result = cli("run", "--data-key", "raw/customers.csv", "--name", "run-ok", "--poll-seconds", "0.01")
    assert result.exit_code == 0, result.output
    out = result.stdout
    lines = out.splitlines()
    for state in (steps.VALIDATE_INPUT, steps.MODEL_GOOD_ENOUGH, steps.EVALUATE_MODEL, steps.SUMMARISE_RUN,
                  steps.PIPELINE_SUCCEEDED):
        # A state still running at a poll is announced (▶) once; every state ends with one ✓ line.
        assert sum(line.startswith(f"✓ {state}") for line in lines) == 1, (state, out)
        assert sum(line.startswith(f"▶ {state}") for line in lines) <= 1, (state, out)
    assert "300 rows" in out and "→ Evaluate model" in out
    assert summary_value(out, "validation ROC AUC") == "0.8512"
    assert summary_value(out, "status") == "SUCCEEDED"
    assert summary_value(out, "records ingested") == "300"  # what "Summarise ingest" counted
    assert summary_value(out, "input") == f"s3://{stack['BucketName']}/raw/customers.csv"
    assert summary_value(out, "validation split") == ("out of time on observation_time: trained on 1997-04-15 … "
                                                      "1997-12-15 (5 periods), validated on 1998-02-15 (1 period)")
    assert f"validation AUC {AUC:.4f} meets the threshold" in out
    assert "s3://churn-bucket/models/run-ok/output/model.tar.gz" in out
    assert PACKAGE_ARN in out
    arn = f"arn:aws:states:{REGION}:123456789012:execution:{MACHINE_NAME}:run-ok"
    assert f"https://{REGION}.console.aws.amazon.com/states/home?region={REGION}#/v2/executions/details/{arn}" in out
    assert f"https://{REGION}.console.aws.amazon.com/sagemaker/home?region={REGION}#/jobs/run-ok" in out
    assert "#/model-registry/churnpipeline-churn-models" in out


def test_run_json_ends_with_one_summary_line(stack, cli):
    result = cli("run", "--name", "run-json", "--json", "--poll-seconds", "0.01")
    assert result.exit_code == 0, result.output
    summary = last_json(result)
    assert summary["status"] == "SUCCEEDED"
    assert summary["auc"] == pytest.approx(AUC)
    assert summary["model_artifact"] == "s3://churn-bucket/models/run-json/output/model.tar.gz"
    assert summary["model_package_arn"] == PACKAGE_ARN
    assert summary["execution_arn"].endswith(":run-json") and summary["run_id"] == "run-json"
    assert summary["error"] == "" and summary["cause"] == ""
    assert summary["records_ingested"] == 300
    assert summary["feature_groups"] == {"churn": stack["FeatureGroupName"]}
    assert "Validate input" in result.stderr  # progress goes to stderr with --json


def test_ctrl_c_while_following_exits_130_and_the_json_line_says_the_execution_is_still_running(stack, cli,
                                                                                                monkeypatch):
    def interrupted(reader):
        raise KeyboardInterrupt

    monkeypatch.setattr(HistoryReader, "new_events", interrupted)
    result = cli("run", "--name", "run-stopped", "--json", "--poll-seconds", "0.01")
    assert result.exit_code == 130, result.output
    assert last_json(result) == {"status": "RUNNING", "error": "Interrupted",
                                 "cause": "stopped following; the execution keeps running on AWS"}


def test_run_that_fails_the_quality_gate_exits_1_with_error_and_cause(stack, cli):
    put_raw(stack, WEAK_INPUT)
    result = cli("run", "--data-key", WEAK_INPUT, "--name", "run-weak", "--poll-seconds", "0.01")
    assert result.exit_code == 1
    assert "ModelQualityBelowThreshold" in result.stderr and GATE_CAUSE in result.stderr
    assert f"✗ {steps.MODEL_BELOW_THRESHOLD}" in result.stdout


def test_run_json_reports_the_failure(stack, cli):
    put_raw(stack, WEAK_INPUT)
    result = cli("run", "--data-key", f"s3://{stack['BucketName']}/{WEAK_INPUT}", "--name", "run-weak-json",
                 "--json", "--poll-seconds", "0.01")
    assert result.exit_code == 1
    summary = last_json(result)
    assert summary["status"] == "FAILED"
    assert summary["error"] == "ModelQualityBelowThreshold" and summary["cause"] == GATE_CAUSE
    assert summary["auc"] is None


def test_run_that_fails_at_ingest_names_the_failed_records_and_where_all_of_them_are(stack, cli):
    put_raw(stack, BAD_RECORDS_INPUT)
    result = cli("run", "--data-key", BAD_RECORDS_INPUT, "--name", BAD_RECORDS_RUN, "--poll-seconds", "0.01")
    assert result.exit_code == 1
    error = result.stderr
    failures = f"s3://{stack['BucketName']}/ingest/{BAD_RECORDS_RUN}/churn/{FAILED_RECORDS_FILE}"
    assert error.startswith("error: IngestError: 7 record(s) failed: line 2 A-0 (ValidationError: feature 'tenure' "
                            "has value 'x0'), line 3 A-1 (")
    assert "and 2 more" in error and failures in error and "errorMessage" not in error
    assert "hint: fix those rows and run again" in error

    as_json = cli("status", BAD_RECORDS_RUN, "--json")
    assert as_json.exit_code == 1
    records = last_json(as_json)["failed_records"]
    assert [r["record_id"] for r in records] == [f"A-{i}" for i in range(7)]  # all of them, from the file
    assert records[6] == {"group": "churn", "line": 8, "record_id": "A-6", "error_code": "ValidationError",
                          "message": "feature 'tenure' has value 'x6'"}


def test_the_failed_records_of_some_groups_are_read_by_a_caller_without_list_bucket(stack):
    """Summarise ingest writes a failures file for a group that failed only: S3 answers such a caller 403 for the
    others' (not 404), which is no reason to lose the ones that exist."""
    s3 = boto3.client("s3", region_name=REGION)
    failed = {"line": 4, "record_id": "P-2", "error_code": "ValidationError", "message": "bad"}
    key = f"{INGEST_RESULTS.format(execution='run-groups', group='activity')}/{FAILED_RECORDS_FILE}"
    s3.put_object(Bucket=stack["BucketName"], Key=key, Body=json.dumps({"failed": [failed]}).encode())
    records = failed_ingest_records(without_list_bucket(s3), stack["BucketName"], "run-groups", ["profile", "activity"])
    assert records == [{"group": "activity", **failed}]


def test_an_aws_error_while_following_stops_the_following_and_says_the_execution_goes_on(stack, cli, monkeypatch):
    """Credentials that expire during a long run (or a lost network) end the following, not the run: the JSON
    says RUNNING and the hint how to follow again, not to run again (a second execution)."""
    client = AwsSession.client

    def expiring(self, name):
        made = client(self, name)
        if name == "stepfunctions":
            def expired(**params):
                raise ClientError({"Error": {"Code": "ExpiredTokenException",
                                             "Message": "The security token included in the request is expired"}},
                                  "GetExecutionHistory")
            made.get_execution_history = expired
        return made

    monkeypatch.setattr(AwsSession, "client", expiring)
    result = cli("run", "--name", "run-expiring", "--json", "--poll-seconds", "0.01")
    assert result.exit_code == 1
    assert last_json(result) == {"status": "RUNNING", "error": "ExpiredCredentials", "cause": "stopped following: "
                                 "your AWS credentials have expired; the execution is not affected"}
    assert result.stderr.splitlines()[-1] == ("hint: follow it again with `python -m pipeline status run-expiring "
                                              "--follow`; first: refresh them (e.g. `aws sso login`) and try again")


@pytest.fixture(scope="module")
def training_log(tmp_path_factory) -> list[str]:
    """The lines a training job's container writes when the script rejects its input: the script itself,
    run under SageMaker's contract with a hyperparameter it refuses."""
    run = run_training(TRAINING_DIR, TRAINING_ENTRY_POINT, tmp_path_factory.mktemp("job"),
                       {"validation_fraction": 0.95})
    assert not run.succeeded
    return run.log.read_text(encoding="utf-8").splitlines()


def put_training_log(lines: list[str]) -> None:
    """SageMaker ships each line of the container's output as one event of the job's stream."""
    logs = boto3.client("logs", region_name=REGION)
    logs.create_log_group(logGroupName=TRAINING_JOB_LOG_GROUP)
    stream = f"{FAILING_TRAINING_RUN}/algo-1-1764201600"
    logs.create_log_stream(logGroupName=TRAINING_JOB_LOG_GROUP, logStreamName=stream)
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName=TRAINING_JOB_LOG_GROUP, logStreamName=stream,
                        logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(lines)])
    other = "run-other/algo-1-1764201600"  # another job's stream in the same log group
    logs.create_log_stream(logGroupName=TRAINING_JOB_LOG_GROUP, logStreamName=other)
    logs.put_log_events(logGroupName=TRAINING_JOB_LOG_GROUP, logStreamName=other,
                        logEvents=[{"timestamp": now, "message": "ERROR: Training failed: another job"}])


def test_a_failed_training_job_shows_the_scripts_own_error_from_its_log(stack, cli, training_log):
    put_raw(stack, FAILING_TRAINING_INPUT)
    put_training_log(training_log)
    result = cli("run", "--data-key", FAILING_TRAINING_INPUT, "--name", FAILING_TRAINING_RUN, "--poll-seconds", "0.01")
    assert result.exit_code == 1
    error = one_error_line(result)
    assert error.startswith(f"error: States.TaskFailed: training job {FAILING_TRAINING_RUN} failed: Training input "
                            "error: hyperparameter validation_fraction=0.95")
    assert "ExecuteUserScriptError" not in error and "another job" not in error
    assert f"log group {TRAINING_JOB_LOG_GROUP}, log stream {FAILING_TRAINING_RUN}/algo-1-" in error
    # the step line keeps what Step Functions said
    failed = next(line for line in result.stdout.splitlines() if line.startswith(f"✗ {steps.PIPELINE_FAILED}"))
    assert "ExecuteUserScriptError" in failed


def test_a_failed_training_job_whose_log_cannot_be_read_says_where_to_look(stack, cli, monkeypatch):
    put_raw(stack, FAILING_TRAINING_INPUT)
    deny(monkeypatch, "logs", "describe_log_streams", "logs:DescribeLogStreams")
    result = cli("run", "--data-key", FAILING_TRAINING_INPUT, "--name", FAILING_TRAINING_RUN, "--poll-seconds", "0.01")
    assert result.exit_code == 1
    error = one_error_line(result)
    assert f"training job {FAILING_TRAINING_RUN} failed: AlgorithmError: ExecuteUserScriptError: ExitCode 1" in error
    assert ("the training script's own error is the last 'ERROR:' line in CloudWatch log group "
            f"{TRAINING_JOB_LOG_GROUP}, log stream {FAILING_TRAINING_RUN}/algo-1-… (access denied calling "
            "DescribeLogStreams") in error


def test_training_script_error_of_a_job_that_wrote_no_log(stack):
    logs = boto3.client("logs", region_name=REGION)
    line, where = training_script_error(logs, "never-started")
    assert line == "" and "ResourceNotFoundException" in where  # no log group yet
    logs.create_log_group(logGroupName=TRAINING_JOB_LOG_GROUP)
    line, where = training_script_error(logs, "never-started")
    assert line == "" and where.endswith("(the job wrote no log stream)")


def test_run_on_a_missing_key_says_to_upload_first(stack, cli):
    result = cli("run", "--data-key", "raw/nothing.csv")
    assert result.exit_code == 2
    assert "does not exist" in one_error_line(result) and "python -m pipeline upload" in result.stderr
    assert executions(stack) == []


def test_run_with_sources_and_a_knowledge_cutoff_sends_them_as_the_execution_input(stack, cli):
    for group in ("profile", "activity", "labels"):
        put_raw(stack, f"raw/{group}.csv")
    result = cli("run", "--stack-name", GROUPS_STACK, "--source", "profile=raw/profile.csv", "--source",
                 f"activity=s3://{stack['BucketName']}/raw/activity.csv", "--source", "labels=raw/labels.csv",
                 "--knowledge-cutoff", "2026-01-31 23:59:59.999", "--name", "run-groups", "--no-wait")
    assert result.exit_code == 0, result.output
    described = wait_finished(stack, executions(stack)[0]["executionArn"])
    assert json.loads(described["input"]) == {
        "sources": {"profile": "raw/profile.csv", "activity": "raw/activity.csv", "labels": "raw/labels.csv"},
        "knowledge_cutoff": "2026-01-31 23:59:59.999"}
    assert "python -m pipeline status run-groups --follow --stack-name CdnowPipeline" in result.stdout
    shown = cli("status", "run-groups", "--stack-name", GROUPS_STACK)
    groups = summary_value(shown.stdout, "feature groups")
    assert groups == "cdnowpipeline-profile-0000beef, cdnowpipeline-activity-0000beef, cdnowpipeline-labels-0000beef"
    assert summary_value(shown.stdout, "knowledge cutoff") == "2026-01-31 23:59:59.999"


def test_run_sources_must_name_every_group_of_the_stack(stack, cli):
    result = cli("run", "--stack-name", GROUPS_STACK, "--source", "profile=raw/profile.csv", "--source",
                 "extra=raw/x.csv")
    assert result.exit_code == 2
    assert "missing activity, labels; unknown extra" in one_error_line(result)
    assert cli("run", "--source", "profile").exit_code == 2  # not GROUP=KEY
    assert cli("run", "--source", "a=b", "--data-key", "raw/x.csv").exit_code == 2
    assert executions(stack) == []


def test_a_knowledge_cutoff_of_another_form_is_refused_before_anything_runs(cli):
    result = cli("run", "--knowledge-cutoff", "2026-01-31")
    assert result.exit_code == 2
    assert "--knowledge-cutoff" in one_error_line(result) and "YYYY-MM-DD HH:MM:SS.fff" in result.stderr


def test_run_rejects_a_name_sagemaker_would_refuse(stack, cli):
    result = cli("run", "--name", "my_run!")
    assert result.exit_code == 2
    assert "not a valid run name" in one_error_line(result)


def test_run_options_of_the_other_mode_are_errors(cli, tmp_path):
    assert "--data is only used with --local" in cli("run", "--data", tmp_path / "x.csv").stderr
    assert cli("run", "--local", "--no-wait").exit_code == 2
    assert cli("run", "--local", "--source", "a=b").exit_code == 2
    assert cli("run", "--threshold", "0.7").exit_code == 2


@pytest.mark.parametrize("command", [["status", "run-1"], ["runs"], ["scores"], ["predict", "--id", "C1"]])
def test_a_workspace_given_to_an_aws_command_says_to_add_local(cli, tmp_path, command):
    """(It was read as an AWS command and failed on the region or the stack: the workspace went unused.)"""
    result = cli(*command, "--workspace", tmp_path)
    assert result.exit_code == 2 and one_error_line(result) == (
        "error: --workspace is only used with --local\nhint: add --local to use the runs and models in it\n")


# -- status and runs ------------------------------------------------------------------------------
def test_status_by_name_shows_steps_result_and_links(stack, cli):
    assert cli("run", "--name", "run-a", "--poll-seconds", "0.01").exit_code == 0
    result = cli("status", "run-a")
    assert result.exit_code == 0, result.output
    assert "✓ Evaluate model" in result.stdout and "SUCCEEDED" in result.stdout
    assert "0.8512" in result.stdout and PACKAGE_ARN in result.stdout
    followed = cli("status", "run-a", "--follow", "--poll-seconds", "0.01")
    assert followed.exit_code == 0 and summary_value(followed.stdout, "status") == "SUCCEEDED"
    by_arn = cli("status", f"arn:aws:states:{REGION}:123456789012:execution:{MACHINE_NAME}:run-a", "--json")
    assert by_arn.exit_code == 0 and last_json(by_arn)["auc"] == pytest.approx(AUC)


def test_status_of_a_failed_execution_exits_1(stack, cli):
    put_raw(stack, WEAK_INPUT)
    cli("run", "--data-key", WEAK_INPUT, "--name", "run-b", "--no-wait")
    wait_finished(stack, executions(stack)[0]["executionArn"])
    result = cli("status", "run-b")
    assert result.exit_code == 1
    assert GATE_CAUSE in result.stderr


def test_status_of_an_unknown_execution(stack, cli):
    result = cli("status", "no-such-run")
    assert result.exit_code == 1
    message = one_error_line(result)
    assert "execution not found" in message and "no-such-run" in message
    assert "90 days after it ends" in message and "python -m pipeline runs" in message


def test_runs_lists_recent_executions_with_auc(stack, cli):
    put_raw(stack, WEAK_INPUT)
    assert cli("run", "--name", "run-good", "--poll-seconds", "0.01").exit_code == 0
    assert cli("run", "--name", "run-bad", "--data-key", WEAK_INPUT, "--poll-seconds", "0.01").exit_code == 1
    result = cli("runs")
    assert result.exit_code == 0, result.output
    good = next(line for line in result.stdout.splitlines() if "run-good" in line)
    bad = next(line for line in result.stdout.splitlines() if "run-bad" in line)
    assert "SUCCEEDED" in good and "0.8512" in good
    assert "FAILED" in bad
    assert "run-bad: ModelQualityBelowThreshold" in result.stdout  # errors follow the table
    as_json = cli("runs", "--max", "1", "--json")
    assert len(last_json(as_json)["runs"]) == 1
    assert as_json.stdout.count("\n") == 1 and "run-bad" in as_json.stderr  # the table went to stderr


def test_runs_are_listed_by_their_start(stack, cli, monkeypatch):
    """ListExecutions orders closed executions by their stop date (its reference): one started earlier that
    stopped later comes first there, and is listed second."""
    assert cli("run", "--name", "run-first", "--poll-seconds", "0.01").exit_code == 0
    assert cli("run", "--name", "run-second", "--poll-seconds", "0.01").exit_code == 0
    client = AwsSession.client

    def stopped_in_reverse(self, name):
        made = client(self, name)
        if name == "stepfunctions":
            list_executions = made.list_executions

            def by_stop(**params):
                page = list_executions(**params)
                return {**page, "executions": sorted(page["executions"], key=lambda e: e["name"] != "run-first")}
            made.list_executions = by_stop
        return made

    monkeypatch.setattr(AwsSession, "client", stopped_in_reverse)
    listed = last_json(cli("runs", "--json"))["runs"]
    assert [run["run_id"] for run in listed] == ["run-second", "run-first"]


def test_runs_before_any_execution(stack, cli):
    result = cli("runs")
    assert result.exit_code == 0
    assert "no executions yet" in result.stdout


def test_console_links_follow_the_partition():
    china = ConsoleLinks.for_arn("arn:aws-cn:states:cn-north-1:123456789012:stateMachine:m")
    assert china.training_job("j") == "https://cn-north-1.console.amazonaws.cn/sagemaker/home?region=cn-north-1#/jobs/j"


# -- errors a user can meet -----------------------------------------------------------------------
def test_stack_not_deployed(cli):
    with mock_aws():
        result = cli("runs", "--stack-name", "NotDeployed")
    assert result.exit_code == 1
    message = one_error_line(result)
    assert "stack 'NotDeployed' not found in region us-east-1" in message
    assert "make deploy" in message and "--region" in message


def test_wrong_region_names_the_region_and_the_fix(stack, cli, monkeypatch):
    result = cli("run", "--no-wait", "--region", "eu-west-1")
    assert result.exit_code == 1
    assert "not found in region eu-west-1" in one_error_line(result) and "AWS_REGION" in result.stderr
    monkeypatch.setenv("AWS_REGION", "eu-west-1")  # read like the AWS CLI does; boto3 alone ignores it
    assert "region eu-west-1" in cli("runs").stderr
    assert executions(stack) == []


def test_no_credentials_is_one_line(cli, monkeypatch, small_csv):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)

    def no_network(*args, **kwargs):
        raise AssertionError("the CLI tried to reach the network")

    monkeypatch.setattr(botocore.httpsession.URLLib3Session, "send", no_network)
    for args in (("run", "--no-wait"), ("runs",), ("status", "run-1"), ("scores",), ("predict", "--id", "c1"),
                 ("upload", "--data", str(small_csv))):
        result = cli(*args)
        assert result.exit_code == 1, result.output
        assert "no AWS credentials found" in one_error_line(result)
        assert "aws configure" in result.stderr and "--local" in result.stderr
    assert last_json(cli("run", "--json")) == {
        "status": "FAILED", "error": "NoCredentials", "cause": "no AWS credentials found"}


def test_no_region_is_one_line(cli, monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    result = cli("runs")
    assert result.exit_code == 2
    assert "no AWS region set" in one_error_line(result) and "--region" in result.stderr


def test_access_denied_is_one_line(stack, cli, monkeypatch):
    deny(monkeypatch, "stepfunctions", "start_execution", "states:StartExecution")
    result = cli("run", "--name", "denied")
    assert result.exit_code == 1
    message = one_error_line(result)
    assert "access denied calling StartExecution" in message and "states:StartExecution" in message


def test_explain_covers_what_users_meet():
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        SSOTokenLoadError,
        TokenRetrievalError,
        UnauthorizedSSOTokenError,
    )

    from pipeline.errors import explain

    def client_error(code: str, message: str = "") -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": message}}, "DescribeStacks")

    assert explain(NoCredentialsError()).error == "NoCredentials"
    for expired in (SSOTokenLoadError(error_msg="x"), UnauthorizedSSOTokenError(), TokenRetrievalError(
            provider="sso", error_msg="x")):
        assert explain(expired).message == "the AWS SSO session is missing or has expired"
    try:
        raise S3UploadFailedError("upload failed") from client_error("AccessDenied", "nope")
    except S3UploadFailedError as upload:
        assert explain(upload).message == "access denied calling DescribeStacks: nope"
    assert explain(client_error("ExpiredToken")).message == "your AWS credentials have expired"
    assert explain(client_error("AccessDenied", "nope")).error == "AccessDenied"
    assert explain(client_error("ThrottlingException")).error == "Throttled"
    assert "could not reach AWS" in explain(EndpointConnectionError(endpoint_url="https://x")).message
    assert explain(client_error("Weird", "odd")).message == "DescribeStacks failed: Weird: odd"


# -- following history: pagination and no duplicate lines -----------------------------------------
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def event(id_: int, kind: str, seconds: float, **details) -> dict:
    key = {"StateEntered": "stateEnteredEventDetails", "StateExited": "stateExitedEventDetails"}.get(
        next((k for k in ("StateEntered", "StateExited") if kind.endswith(k)), ""), "taskFailedEventDetails")
    if kind.startswith("Execution"):
        key = {"ExecutionStarted": "executionStartedEventDetails", "ExecutionFailed": "executionFailedEventDetails",
               "ExecutionSucceeded": "executionSucceededEventDetails"}[kind]
    return {"id": id_, "type": kind, "timestamp": T0 + timedelta(seconds=seconds), "previousEventId": id_ - 1,
            key: details}


class Recorder:
    def __init__(self):
        self.lines: list[str] = []

    def step_started(self, step, since_start=None):
        self.lines.append(f"start {step}")

    def step_finished(self, step, seconds, detail):
        self.lines.append(f"done {step} {seconds:.0f} {detail}".rstrip())

    def step_failed(self, step, seconds, error):
        self.lines.append(f"fail {step} {seconds:.0f} {error}")

    def still_running(self, step, seconds):
        self.lines.append(f"running {step}")


def test_history_reader_pages_backwards_and_returns_each_event_once():
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = f"arn:aws:states:{REGION}:123456789012:execution:m:run-1"
    history = [event(i, "PassStateEntered", i, name=f"s{i}") for i in range(1, 8)]
    reader = HistoryReader(sfn, arn, page_size=3)
    with Stubber(sfn) as stub:
        first = {"executionArn": arn, "reverseOrder": True, "maxResults": 3}
        stub.add_response("get_execution_history", {"events": history[4::-1][:3], "nextToken": "t1"}, first)
        stub.add_response("get_execution_history", {"events": history[1::-1]}, {**first, "nextToken": "t1"})
        assert [e["id"] for e in reader.new_events()] == [1, 2, 3, 4, 5]
        # Two new events: one page reaches an event already seen, so no second page is read.
        stub.add_response("get_execution_history", {"events": history[6:3:-1], "nextToken": "t2"}, first)
        assert [e["id"] for e in reader.new_events()] == [6, 7]
        stub.add_response("get_execution_history", {"events": history[6:3:-1], "nextToken": "t3"}, first)
        assert reader.new_events() == []
        stub.assert_no_pending_responses()


def test_tracker_prints_each_state_once_with_its_time():
    recorder = Recorder()
    tracker = ProgressTracker(recorder)
    tracker.feed([
        event(1, "ExecutionStarted", 0),
        event(2, "TaskStateEntered", 0, name=steps.VALIDATE_INPUT),
        event(3, "TaskStateExited", 4, name=steps.VALIDATE_INPUT, output=json.dumps({"validation": {"records": 7043}})),
        event(4, "TaskStateEntered", 4, name=steps.TRAIN_MODEL),
    ])
    tracker.feed([])  # a poll with nothing new prints nothing
    tracker.feed([
        event(5, "TaskStateExited", 304, name=steps.TRAIN_MODEL,
              output=json.dumps({"training": {"training_job_name": "run-1"}})),
        event(6, "WaitStateEntered", 304, name=steps.WAIT_FOR_OFFLINE_STORE),
        event(7, "WaitStateExited", 364, name=steps.WAIT_FOR_OFFLINE_STORE),
        event(8, "WaitStateEntered", 364, name=steps.WAIT_FOR_OFFLINE_STORE),
    ])
    assert recorder.lines == [
        "done Validate input 4 7043 rows",
        "start Train model",
        "done Train model 300 training job run-1",
        "done Wait for offline store 60",
        "start Wait for offline store (#2)",
    ]


def test_tracker_shows_each_groups_states_and_their_details_side_by_side():
    """With several groups, the Parallel state's branches interleave their events in one history."""
    recorder = Recorder()
    tracker = ProgressTracker(recorder)
    validate = {g: steps.for_group(steps.VALIDATE_INPUT, g) for g in ("profile", "activity")}
    summarise_ = {g: steps.for_group(steps.SUMMARISE_INGEST, g) for g in ("profile", "activity")}
    read = steps.for_group(steps.READ_OFFLINE_COUNT, "activity")
    tracker.feed([
        event(1, "ExecutionStarted", 0),
        event(2, "ParallelStateEntered", 0, name=steps.INGEST_GROUPS),
        event(3, "TaskStateEntered", 0, name=validate["profile"]),
        event(4, "TaskStateEntered", 0, name=validate["activity"]),
        event(5, "TaskStateExited", 2, name=validate["activity"],
              output=json.dumps({"validation": {"records": 401288}})),
        event(6, "TaskStateExited", 3, name=validate["profile"], output=json.dumps({"validation": {"records": 23570}})),
        event(7, "TaskStateEntered", 3, name=summarise_["profile"]),
        event(8, "TaskStateExited", 4, name=summarise_["profile"], output=json.dumps({"ingest": {"records": 23570}})),
        event(9, "TaskStateEntered", 5, name=summarise_["activity"]),
        event(10, "TaskStateExited", 9, name=summarise_["activity"],
              output=json.dumps({"ingest": {"records": 401288}})),
        event(11, "TaskStateEntered", 9, name=read),
        event(12, "TaskStateExited", 9, name=read, output=json.dumps(
            {"validation": {"records": 401288}, "offline_count": {"records": 400000}})),
        event(13, "ParallelStateExited", 70, name=steps.INGEST_GROUPS),
    ])
    assert recorder.lines == [
        "done Validate input (activity) 2 401288 rows",
        "done Validate input (profile) 3 23570 rows",
        "done Summarise ingest (profile) 1 23570 records",
        "done Summarise ingest (activity) 4 401288 records",
        "done Read offline count (activity) 0 400000 of 401288 records in the offline store",
        "done Ingest feature groups 70",
    ]
    assert tracker.facts.records_ingested == 23570 + 401288


def test_tracker_marks_a_caught_failure_and_the_fail_state():
    recorder = Recorder()
    tracker = ProgressTracker(recorder)
    tracker.feed([
        event(1, "ExecutionStarted", 0),
        event(2, "TaskStateEntered", 0, name=steps.TRAIN_MODEL),
        event(3, "TaskFailed", 50, error="SageMaker.AmazonSageMakerException", cause="capacity"),
        event(4, "PassStateEntered", 50, name=steps.RECORD_FAILURE),
        event(5, "PassStateExited", 50, name=steps.RECORD_FAILURE),
        event(6, "FailStateEntered", 50, name=steps.PIPELINE_FAILED),
        event(7, "ExecutionFailed", 51, error="SageMaker.AmazonSageMakerException", cause="capacity"),
    ])
    assert recorder.lines == [
        "fail Train model 50 SageMaker.AmazonSageMakerException: capacity",
        "done Record failure 0",
        "fail Pipeline failed 1 SageMaker.AmazonSageMakerException: capacity",
    ]
    assert tracker.status == "FAILED"


def test_tracker_names_the_branch_a_choice_took_even_across_polls():
    recorder = Recorder()
    tracker = ProgressTracker(recorder)
    tracker.feed([event(1, "ExecutionStarted", 0), event(2, "ChoiceStateEntered", 0, name=steps.MODEL_GOOD_ENOUGH),
                  event(3, "ChoiceStateExited", 0, name=steps.MODEL_GOOD_ENOUGH)])
    assert recorder.lines == []
    tracker.feed([event(4, "TaskStateEntered", 0, name=steps.REGISTER_MODEL)])
    assert recorder.lines == ["done Model good enough? 0 → Register model", "start Register model"]


def test_causes_read_as_messages_not_json():
    cause = json.dumps({"errorMessage": "s3://b/raw/x.csv, line 8, column 'tenure': not an integer",
                        "errorType": "InputValidationError", "stackTrace": ["  File ..."]})
    assert readable_cause(cause) == "s3://b/raw/x.csv, line 8, column 'tenure': not an integer"
    job = json.dumps({"TrainingJobName": "run-1", "TrainingJobStatus": "Failed",
                      "FailureReason": "CapacityError: Unable to provision requested ML compute capacity."})
    assert readable_cause(job) == ("training job run-1 failed: CapacityError: Unable to provision requested ML "
                                   "compute capacity.")
    assert readable_cause("plain text") == "plain text"


def test_follow_polls_until_the_execution_ends():
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = f"arn:aws:states:{REGION}:123456789012:execution:m:run-1"
    started = [event(1, "ExecutionStarted", 0), event(2, "PassStateEntered", 0, name=steps.TRAIN_MODEL)]
    ended = [*started, event(3, "PassStateExited", 9, name=steps.TRAIN_MODEL), event(4, "ExecutionSucceeded", 9)]
    history = {"executionArn": arn, "reverseOrder": True, "maxResults": 100}
    recorder, sleeps = Recorder(), []
    with Stubber(sfn) as stub:
        for events in (started, started, ended, ended):  # three polls, then the last look once it has ended
            stub.add_response("get_execution_history", {"events": events[::-1]}, history)
        stub.add_response("describe_execution", {
            "executionArn": arn, "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:m",
            "name": "run-1", "status": "SUCCEEDED", "startDate": T0, "stopDate": T0 + timedelta(seconds=9),
            "output": json.dumps({"validation_auc": 0.9})}, {"executionArn": arn})
        execution = follow(sfn, arn, ProgressTracker(recorder), sleep=sleeps.append, poll_seconds=2)
        stub.assert_no_pending_responses()
    assert isinstance(execution, Execution)
    assert execution.status == "SUCCEEDED" and execution.auc == 0.9 and execution.duration_seconds == 9
    assert sleeps == [2, 2]
    assert recorder.lines == ["start Train model", "running Train model", "running Train model", "done Train model 9"]


def test_follow_waits_for_the_description_to_show_the_end_the_history_shows():
    """The history's ExecutionFailed can come before DescribeExecution says FAILED (moto has answered
    RUNNING in between): the run's result is the ended execution's, not a running one's."""
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = f"arn:aws:states:{REGION}:123456789012:execution:m:run-1"
    ended = [event(1, "ExecutionStarted", 0), event(2, "ExecutionFailed", 3, error="E", cause="c")]
    history = {"executionArn": arn, "reverseOrder": True, "maxResults": 100}
    described = {"executionArn": arn, "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:m",
                 "name": "run-1", "startDate": T0}
    sleeps = []
    with Stubber(sfn) as stub:
        stub.add_response("get_execution_history", {"events": ended[::-1]}, history)
        stub.add_response("get_execution_history", {"events": ended[::-1]}, history)
        stub.add_response("describe_execution", {**described, "status": "RUNNING"}, {"executionArn": arn})
        stub.add_response("get_execution_history", {"events": ended[::-1]}, history)
        stub.add_response("get_execution_history", {"events": ended[::-1]}, history)
        stub.add_response("describe_execution", {**described, "status": "FAILED", "stopDate": T0 + timedelta(seconds=3),
                                                 "error": "E", "cause": "c"}, {"executionArn": arn})
        execution = follow(sfn, arn, ProgressTracker(Recorder()), sleep=sleeps.append, poll_seconds=2)
        stub.assert_no_pending_responses()
    assert execution.status == "FAILED" and sleeps == [2]


def test_new_execution_names_fit_a_training_job():
    name = aws_backend.new_execution_name(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert name.startswith("run-20260102-030405-") and RUN_NAME.match(name)
