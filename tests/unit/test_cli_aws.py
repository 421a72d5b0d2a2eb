"""The operator CLI on AWS (`upload`, `run`, `status`, `runs`) against a stack deployed in moto.

The stack is a real CloudFormation stack (bucket, role, state machine, the project's outputs), so
the CLI finds everything through `describe_stacks` as it does against AWS. The state machine
mimics the pipeline's ends: a success output like "Summarise run", or the quality gate's Fail.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.httpsession
import botocore.loaders
import botocore.session
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from moto.stepfunctions.parser.asl.component.common.error_name.error_name import ErrorName
from moto.stepfunctions.parser.asl.component.state.fail import state_fail
from typer.testing import CliRunner

from churn.ingest import FAILED_BATCH_LOG_MESSAGE
from churn.schema import FeatureSpec
from pipeline import aws
from pipeline.cli import app

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "data" / "churn.spec.json"
REGION = "us-east-1"
STACK = "ChurnPipeline"
MACHINE_NAME = "ChurnPipeline-Pipeline"
AUC = 0.8512
WEAK_INPUT = "raw/weak.csv"  # the test machine fails its quality gate for this key
BAD_BATCHES_INPUT = "raw/bad-batches.csv"  # ... and its "Ingest features" for this one
EVENT_TIME = "2026-11-27T00:00:00.000Z"
INGEST_LOG_GROUP = "/aws/lambda/churn-ingest"
GATE_CAUSE = "validation AUC 0.6100 is below the threshold 0.8000"
SHARED_LOADER = botocore.loaders.create_loader()
PACKAGE_ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churnpipeline-churn-models/1"

DEFINITION = {
    "Comment": "The pipeline's states that shape its outcome; the work states are Pass states here",
    "StartAt": "Validate input",
    "States": {
        "Validate input": {"Type": "Pass", "Result": {"records": 300, "event_time": EVENT_TIME},
                           "ResultPath": "$.validation", "Next": "Model good enough?"},
        "Model good enough?": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.input_key", "StringEquals": WEAK_INPUT,
                         "Next": "Model below quality threshold"},
                        {"Variable": "$.input_key", "StringEquals": BAD_BATCHES_INPUT,
                         "Next": "Ingest features"}],
            "Default": "Evaluate model",
        },
        "Model below quality threshold": {"Type": "Fail", "Error": "ModelQualityBelowThreshold",
                                          "Cause": GATE_CAUSE},
        # How the pipeline ends when the "Ingest features" Distributed Map failed: its error is caught
        # into $.failure and "Pipeline failed" fails with it (the Map itself runs in tests/infra).
        "Ingest features": {
            "Type": "Pass",
            "Result": {"Error": "States.ExceededToleratedFailureThreshold",
                       "Cause": "The specified tolerated failure threshold was exceeded"},
            "ResultPath": "$.failure",
            "Next": "Pipeline failed",
        },
        "Pipeline failed": {"Type": "Fail", "ErrorPath": "$.failure.Error", "CausePath": "$.failure.Cause"},
        "Evaluate model": {
            "Type": "Pass",
            "Result": {"passed": True, "validation_auc": AUC, "threshold": 0.8,
                       "reason": f"validation AUC {AUC:.4f} meets the threshold 0.8000"},
            "ResultPath": "$.evaluation",
            "Next": "Summarise run",
        },
        "Summarise run": {
            "Type": "Pass",
            "Parameters": {
                "model_artifact.$": "States.Format('s3://churn-bucket/models/{}/output/model.tar.gz', "
                                    "$$.Execution.Name)",
                "validation_auc.$": "$.evaluation.validation_auc",
                "model_package_arn": PACKAGE_ARN,
                "training_job_name.$": "$$.Execution.Name",
                "execution.$": "$$.Execution.Name",
            },
            "Next": "Pipeline succeeded",
        },
        "Pipeline succeeded": {"Type": "Succeed"},
    },
}


def template(spec: FeatureSpec) -> dict:
    return {
        "Resources": {
            "Bucket": {"Type": "AWS::S3::Bucket"},
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {"AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ]}},
            },
            "Machine": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {"StateMachineName": MACHINE_NAME, "DefinitionString": json.dumps(DEFINITION),
                               "RoleArn": {"Fn::GetAtt": ["Role", "Arn"]}},
            },
        },
        "Outputs": {
            "BucketName": {"Value": {"Ref": "Bucket"}},
            "StateMachineArn": {"Value": {"Ref": "Machine"}},
            "FeatureGroupName": {"Value": f"churnpipeline-churn-{spec.fingerprint()}"},
            "ModelPackageGroupName": {"Value": "churnpipeline-churn-models"},
            "AthenaWorkGroup": {"Value": "churnpipeline-churn"},
            "GlueDatabase": {"Value": "churn_pipeline_feature_store"},
            "GlueTable": {"Value": f"churn_features_{spec.fingerprint()}"},
            "IngestLogGroup": {"Value": INGEST_LOG_GROUP},
        },
    }


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch, tmp_path):
    """Fake credentials and region; nothing from the developer's own AWS setup."""
    empty = tmp_path / "empty-aws-config"
    empty.write_text("")
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # Each CLI call makes a fresh boto3 session, which re-reads botocore's JSON models (most of
    # this file's run time); one shared, caching loader keeps the tests fast.
    monkeypatch.setattr(botocore.session, "create_loader", lambda *args, **kwargs: SHARED_LOADER)


@pytest.fixture
def spec() -> FeatureSpec:
    return FeatureSpec.load(SPEC)


class Stack(dict):
    """The stack's outputs, plus moto clients to look behind the CLI's back."""

    s3: Any
    sfn: Any


class _ReraisedErrorName(ErrorName):
    """A Fail state may re-raise a caught `States.*` error (the pipeline's "Pipeline failed" does, by
    ErrorPath); moto 5.2.5 refuses such names (tests/infra/sfn_harness.py patches the same)."""


@pytest.fixture
def stack(spec, monkeypatch):
    """The stack "deployed" in moto, with moto's Step Functions interpreter running executions."""
    monkeypatch.setattr(state_fail, "CustomErrorName", _ReraisedErrorName)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        session = boto3.Session(region_name=REGION)
        cloudformation = session.client("cloudformation")
        cloudformation.create_stack(StackName=STACK, TemplateBody=json.dumps(template(spec)),
                                    Capabilities=["CAPABILITY_IAM"])
        outputs = Stack((o["OutputKey"], o["OutputValue"])
                        for o in cloudformation.describe_stacks(StackName=STACK)["Stacks"][0]["Outputs"])
        outputs.s3, outputs.sfn = session.client("s3"), session.client("stepfunctions")
        # moto keeps CloudFormation's state machines apart from its interpreter; registering the
        # same definition under the same name gives the interpreter the ARN the outputs name.
        created = outputs.sfn.create_state_machine(name=MACHINE_NAME, definition=json.dumps(DEFINITION),
                                                   roleArn="arn:aws:iam::123456789012:role/pipeline")
        assert created["stateMachineArn"] == outputs["StateMachineArn"]
        put_raw(outputs, "raw/churn.csv")  # the stack deploys the sample data there
        yield outputs


@pytest.fixture
def cli():
    runner = CliRunner(env={"COLUMNS": "250"})

    def invoke(*args: str):
        result = runner.invoke(app, [str(a) for a in args])
        assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), (
            f"uncaught {result.exception!r}\n{result.output}"
        )
        assert "Traceback" not in result.output
        return result

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
    listing = outputs.s3.list_objects_v2(Bucket=outputs["BucketName"])
    return [o["Key"] for o in listing.get("Contents", [])]


def executions(outputs: Stack) -> list[dict]:
    return outputs.sfn.list_executions(stateMachineArn=outputs["StateMachineArn"])["executions"]


def wait_finished(outputs: Stack, arn: str) -> dict:
    for _ in range(200):
        described = outputs.sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.01)
    raise AssertionError(f"{arn} did not finish")


def last_json(result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


def summary_value(out: str, label: str) -> str:
    """The value on a summary line ` <label>   <value>`."""
    line = next(line for line in out.splitlines() if line.startswith(f" {label} "))
    return line[len(label) + 1:].strip()


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert lines and lines[0].startswith("error:"), result.output
    assert len(lines) <= 2 and all(line.startswith(("error:", "hint:")) for line in lines), result.output
    return result.stderr


# -- the stack's outputs --------------------------------------------------------------------------
def test_deployment_reads_the_stack_outputs(stack):
    deployment = aws.Deployment.load(boto3.Session(region_name=REGION).client("cloudformation"), STACK)
    assert deployment.bucket == stack["BucketName"]
    assert deployment.state_machine_arn == stack["StateMachineArn"]
    assert deployment.model_package_group == "churnpipeline-churn-models"
    assert deployment.region == REGION
    assert deployment.spec_matches(FeatureSpec.load(SPEC).fingerprint()) is True
    assert deployment.spec_matches("0000beef") is False


# -- upload ---------------------------------------------------------------------------------------
def test_upload_validates_then_puts_the_file_in_raw(stack, cli, small_csv):
    result = cli("upload", "--data", small_csv, "--key", "customers-2024.csv")
    assert result.exit_code == 0, result.output
    body = stack.s3.get_object(Bucket=stack["BucketName"], Key="raw/customers-2024.csv")["Body"].read()
    assert body == small_csv.read_bytes()
    assert f"s3://{stack['BucketName']}/raw/customers-2024.csv" in result.stdout
    assert "validated" in result.stdout and "50 rows" in result.stdout
    assert "next: python -m pipeline run --data-key raw/customers-2024.csv" in result.stdout


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


def test_upload_refuses_a_spec_the_stack_was_not_deployed_with(stack, cli, small_csv, tmp_path, spec):
    other = json.loads(SPEC.read_text())
    other["description"] = "the same columns, one feature fewer"
    other["features"] = other["features"][:-1]
    other_spec = tmp_path / "other.spec.json"
    other_spec.write_text(json.dumps(other))
    result = cli("upload", "--data", small_csv, "--spec", other_spec)
    assert result.exit_code == 2
    assert "not the feature spec" in one_error_line(result)
    assert raw_keys(stack) == ["raw/churn.csv"]


def test_raw_trigger_is_detected_from_the_bucket_notifications():
    s3 = boto3.Session(region_name=REGION).client("s3")
    with Stubber(s3) as stub:
        stub.add_response("get_bucket_notification_configuration", {"EventBridgeConfiguration": {}},
                          {"Bucket": "data-bucket"})
        stub.add_response("get_bucket_notification_configuration", {}, {"Bucket": "data-bucket"})
        stub.add_client_error("get_bucket_notification_configuration", "AccessDenied", http_status_code=403)
        assert aws.raw_trigger_enabled(s3, "data-bucket") is True
        assert aws.raw_trigger_enabled(s3, "data-bucket") is False
        assert aws.raw_trigger_enabled(s3, "data-bucket") is None


def test_upload_with_the_raw_trigger_says_the_run_starts_by_itself(stack, cli, small_csv, monkeypatch):
    # moto does not echo EventBridgeConfiguration back, so the detection is stubbed above and here.
    monkeypatch.setattr(aws, "raw_trigger_enabled", lambda s3, bucket: True)
    result = cli("upload", "--data", small_csv, "--region", REGION)
    assert result.exit_code == 0, result.output
    assert "starts a run for new raw/*.csv files" in result.stdout
    assert f"python -m pipeline runs --region {REGION}" in result.stdout


def test_upload_rejects_a_key_that_is_not_a_csv_name(stack, cli, small_csv):
    result = cli("upload", "--data", small_csv, "--key", "customers.txt")
    assert result.exit_code == 2
    assert "must end in .csv" in one_error_line(result)
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
    assert "python -m pipeline status nightly-1 --follow" in result.stdout


def test_run_generates_a_name_that_can_name_a_training_job(stack, cli):
    result = cli("run", "--no-wait", "--json")
    assert result.exit_code == 0, result.output
    summary = last_json(result)
    assert summary["status"] == "RUNNING"
    name = summary["execution_name"]
    assert aws.EXECUTION_NAME.match(name) and name.startswith("run-") and len(name) == len("run-20240101-120000-abcd")
    wait_finished(stack, summary["execution_arn"])


def test_run_follows_the_execution_to_success(stack, cli):
    put_raw(stack, "raw/customers.csv")
    result = cli("run", "--data-key", "raw/customers.csv", "--name", "run-ok", "--poll-seconds", "0.01")
    assert result.exit_code == 0, result.output
    out = result.stdout
    lines = out.splitlines()
    for state in ("Validate input", "Model good enough?", "Evaluate model", "Summarise run", "Pipeline succeeded"):
        # A state still running at a poll is announced (▶) once; every state ends with one ✓ line.
        assert sum(line.startswith(f"✓ {state}") for line in lines) == 1, (state, out)
        assert sum(line.startswith(f"▶ {state}") for line in lines) <= 1, (state, out)
    assert "300 rows" in out and "→ Evaluate model" in out
    assert summary_value(out, "validation ROC AUC") == "0.8512"
    assert summary_value(out, "status") == "SUCCEEDED"
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
    assert summary["execution_arn"].endswith(":run-json")
    assert summary["error"] == "" and summary["cause"] == ""
    assert summary["records_ingested"] == 300
    assert "Validate input" in result.stderr  # progress goes to stderr with --json


def test_run_that_fails_the_quality_gate_exits_1_with_error_and_cause(stack, cli):
    put_raw(stack, WEAK_INPUT)
    result = cli("run", "--data-key", WEAK_INPUT, "--name", "run-weak", "--poll-seconds", "0.01")
    assert result.exit_code == 1
    assert "ModelQualityBelowThreshold" in result.stderr and GATE_CAUSE in result.stderr
    assert "✗ Model below quality threshold" in result.stdout
    assert "Traceback" not in result.output


def test_run_json_reports_the_failure(stack, cli):
    put_raw(stack, WEAK_INPUT)
    result = cli("run", "--data-key", f"s3://{stack['BucketName']}/{WEAK_INPUT}", "--name", "run-weak-json",
                 "--json", "--poll-seconds", "0.01")
    assert result.exit_code == 1
    summary = last_json(result)
    assert summary["status"] == "FAILED"
    assert summary["error"] == "ModelQualityBelowThreshold" and summary["cause"] == GATE_CAUSE
    assert summary["auc"] is None


def log_failed_batches(batches: list[tuple[str, list[str]]]) -> None:
    """Log lines as the ingest Lambda writes them for failed batches: (event time, failed record ids)."""
    logs = boto3.client("logs", region_name=REGION)
    logs.create_log_group(logGroupName=INGEST_LOG_GROUP)
    logs.create_log_stream(logGroupName=INGEST_LOG_GROUP, logStreamName="2026/11/27/[$LATEST]abc")
    now = int(time.time() * 1000)
    events = [{"timestamp": now, "message": "START RequestId: 1 Version: $LATEST"}]
    for event_time, ids in batches:
        failed = [{"record_id": i, "error": "ValidationException: feature 'tenure' has value 'x'"} for i in ids]
        events.append({"timestamp": now, "message": json.dumps({
            "level": "ERROR", "message": FAILED_BATCH_LOG_MESSAGE, "service": "churn-pipeline",
            "failed_count": len(ids), "batch_items": 500, "event_time": event_time, "failed_records": failed})})
    logs.put_log_events(logGroupName=INGEST_LOG_GROUP, logStreamName="2026/11/27/[$LATEST]abc", logEvents=events)


def test_run_that_fails_at_ingest_names_the_failed_records_from_the_lambdas_log(stack, cli):
    put_raw(stack, BAD_BATCHES_INPUT)
    log_failed_batches([(EVENT_TIME, ["A-1", "A-2", "A-3", "A-4"]), (EVENT_TIME, ["B-1", "B-2", "B-3"]),
                        ("2026-01-01T00:00:00.000Z", ["OTHER-RUN"])])  # another run's batch
    result = cli("run", "--data-key", BAD_BATCHES_INPUT, "--name", "run-bad-batches", "--poll-seconds", "0.01")
    assert result.exit_code == 1
    error = one_error_line(result)
    assert "States.ExceededToleratedFailureThreshold" in error
    assert ("7 records failed: A-1 (ValidationException: feature 'tenure' has value 'x'); A-2 (" in error
            and "A-4 (" in error and "B-1 (" in error and "B-2" not in error and "and 2 more" in error)
    assert "OTHER-RUN" not in error and f"CloudWatch log group {INGEST_LOG_GROUP}" in error

    as_json = cli("status", "run-bad-batches", "--json")
    assert as_json.exit_code == 1
    assert [r["record_id"] for r in last_json(as_json)["failed_records"]] == ["A-1", "A-2", "A-3", "A-4", "B-1"]


def test_run_that_fails_at_ingest_without_log_lines_says_where_they_will_be(stack, cli):
    put_raw(stack, BAD_BATCHES_INPUT)
    boto3.client("logs", region_name=REGION).create_log_group(logGroupName=INGEST_LOG_GROUP)
    result = cli("run", "--data-key", BAD_BATCHES_INPUT, "--name", "run-no-logs", "--poll-seconds", "0.01")
    assert result.exit_code == 1
    error = one_error_line(result)
    assert "none found for this run: logs can lag a minute, and a batch that timed out or crashed logs none" in error
    assert INGEST_LOG_GROUP in error


def test_ingest_failure_hint_when_the_log_cannot_be_read():
    logs = boto3.client("logs", region_name=REGION)
    execution = aws.Execution(name="run", arn="arn", status="FAILED", error=aws.MAP_FAILURE_ERROR)
    with Stubber(logs) as stub:
        stub.add_client_error("filter_log_events", "AccessDeniedException", "not authorized to logs:FilterLogEvents")
        hint, records = aws.ingest_failure_hint(logs, INGEST_LOG_GROUP, execution, EVENT_TIME)
    assert records == [] and f"logged in CloudWatch log group {INGEST_LOG_GROUP}" in hint
    assert "could not read it" in hint and "logs:FilterLogEvents" in hint


def test_run_on_a_missing_key_says_to_upload_first(stack, cli):
    result = cli("run", "--data-key", "raw/nothing.csv")
    assert result.exit_code == 2
    assert "does not exist" in one_error_line(result) and "python -m pipeline upload" in result.stderr
    assert executions(stack) == []


def test_run_rejects_a_name_sagemaker_would_refuse(stack, cli):
    result = cli("run", "--name", "my_run!")
    assert result.exit_code == 2
    assert "not a valid run name" in one_error_line(result)


def test_run_options_of_the_other_mode_are_errors(cli, tmp_path):
    assert cli("run", "--data", tmp_path / "x.csv").exit_code == 2
    assert cli("run", "--local", "--no-wait").exit_code == 2
    assert cli("run", "--threshold", "0.7").exit_code == 2


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
    assert "python -m pipeline runs" in message


def test_runs_lists_recent_executions_with_auc(stack, cli):
    put_raw(stack, WEAK_INPUT)
    assert cli("run", "--name", "run-good", "--poll-seconds", "0.01").exit_code == 0
    assert cli("run", "--name", "run-bad", "--data-key", WEAK_INPUT, "--poll-seconds", "0.01").exit_code == 1
    result = cli("runs")
    assert result.exit_code == 0, result.output
    good = next(line for line in result.stdout.splitlines() if "run-good" in line)
    bad = next(line for line in result.stdout.splitlines() if "run-bad" in line)
    assert "SUCCEEDED" in good and "0.8512" in good
    assert "FAILED" in bad and "ModelQualityBelowThreshold" in bad
    listed = last_json(cli("runs", "--max", "1", "--json"))["runs"]
    assert len(listed) == 1


def test_runs_before_any_execution(stack, cli):
    result = cli("runs")
    assert result.exit_code == 0
    assert "no executions yet" in result.stdout


def test_console_links_follow_the_partition():
    china = aws.ConsoleLinks.for_arn("arn:aws-cn:states:cn-north-1:123456789012:stateMachine:m")
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


def test_no_credentials_is_one_line(cli, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)

    def no_network(*args, **kwargs):
        raise AssertionError("the CLI tried to reach the network")

    monkeypatch.setattr(botocore.httpsession.URLLib3Session, "send", no_network)
    for args in (("run", "--no-wait"), ("runs",), ("status", "run-1")):
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
    from botocore.exceptions import ClientError

    def denied(self, **kwargs):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "User: arn:aws:iam::123456789012:"
                           "user/dev is not authorized to perform: states:StartExecution"}}, "StartExecution")

    monkeypatch.setattr(aws, "start_execution", lambda sfn, *a: denied(sfn))
    result = cli("run", "--name", "denied")
    assert result.exit_code == 1
    message = one_error_line(result)
    assert "access denied calling StartExecution" in message and "states:StartExecution" in message


def test_explain_covers_what_users_meet():
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    def client_error(code: str, message: str = "") -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": message}}, "DescribeStacks")

    assert aws.explain(NoCredentialsError()).error == "NoCredentials"
    assert aws.explain(client_error("ExpiredToken")).message == "your AWS credentials have expired"
    assert aws.explain(client_error("AccessDenied", "nope")).error == "AccessDenied"
    assert aws.explain(client_error("ThrottlingException")).error == "Throttled"
    assert "could not reach AWS" in aws.explain(EndpointConnectionError(endpoint_url="https://x")).message
    assert aws.explain(client_error("Weird", "odd")).message == "DescribeStacks failed: Weird: odd"


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


def test_history_reader_pages_backwards_and_returns_each_event_once():
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = f"arn:aws:states:{REGION}:123456789012:execution:m:run-1"
    history = [event(i, "PassStateEntered", i, name=f"s{i}") for i in range(1, 8)]
    reader = aws.HistoryReader(sfn, arn, page_size=3)
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
    tracker = aws.ProgressTracker(recorder)
    tracker.feed([
        event(1, "ExecutionStarted", 0),
        event(2, "TaskStateEntered", 0, name="Validate input"),
        event(3, "TaskStateExited", 4, name="Validate input", output=json.dumps({"validation": {"records": 7043}})),
        event(4, "TaskStateEntered", 4, name="Train model"),
    ])
    tracker.feed([])  # a poll with nothing new prints nothing
    tracker.feed([
        event(5, "TaskStateExited", 304, name="Train model",
              output=json.dumps({"training": {"training_job_name": "run-1"}})),
        event(6, "WaitStateEntered", 304, name="Wait for offline store"),
        event(7, "WaitStateExited", 364, name="Wait for offline store"),
        event(8, "WaitStateEntered", 364, name="Wait for offline store"),
    ])
    assert recorder.lines == [
        "done Validate input 4 7043 rows",
        "start Train model",
        "done Train model 300 training job run-1",
        "done Wait for offline store 60",
        "start Wait for offline store (#2)",
    ]


def test_tracker_marks_a_caught_failure_and_the_fail_state():
    recorder = Recorder()
    tracker = aws.ProgressTracker(recorder)
    tracker.feed([
        event(1, "ExecutionStarted", 0),
        event(2, "TaskStateEntered", 0, name="Train model"),
        event(3, "TaskFailed", 50, error="SageMaker.AmazonSageMakerException", cause="capacity"),
        event(4, "PassStateEntered", 50, name="Record failure"),
        event(5, "PassStateExited", 50, name="Record failure"),
        event(6, "FailStateEntered", 50, name="Pipeline failed"),
        event(7, "ExecutionFailed", 51, error="SageMaker.AmazonSageMakerException", cause="capacity"),
    ])
    assert recorder.lines == [
        "fail Train model 50 SageMaker.AmazonSageMakerException: capacity",
        "done Record failure 0",
        "fail Pipeline failed 1 SageMaker.AmazonSageMakerException: capacity",
    ]
    assert tracker.status == "FAILED" and tracker.cause == "capacity"


def test_tracker_names_the_branch_a_choice_took_even_across_polls():
    recorder = Recorder()
    tracker = aws.ProgressTracker(recorder)
    tracker.feed([event(1, "ExecutionStarted", 0), event(2, "ChoiceStateEntered", 0, name="Model good enough?"),
                  event(3, "ChoiceStateExited", 0, name="Model good enough?")])
    assert recorder.lines == []
    tracker.feed([event(4, "TaskStateEntered", 0, name="Register model")])
    assert recorder.lines == ["done Model good enough? 0 → Register model", "start Register model"]


def test_a_lambda_error_shows_its_message_not_its_json():
    cause = json.dumps({"errorMessage": "s3://b/raw/x.csv, line 8, column 'tenure': not an integer",
                        "errorType": "InputValidationError", "stackTrace": ["  File ..."]})
    execution = aws.Execution.from_description({"executionArn": "arn:x", "status": "FAILED",
                                                "error": "InputValidationError", "cause": cause})
    assert execution.cause == "s3://b/raw/x.csv, line 8, column 'tenure': not an integer"
    assert aws.readable_cause("plain text") == "plain text"


def test_follow_polls_until_the_execution_ends():
    class FakeSfn:
        def __init__(self):
            self.polls = 0

        def get_execution_history(self, **kwargs):
            self.polls += 1
            events = [event(1, "ExecutionStarted", 0), event(2, "PassStateEntered", 0, name="Train model")]
            if self.polls >= 3:
                events += [event(3, "PassStateExited", 9, name="Train model"), event(4, "ExecutionSucceeded", 9)]
            return {"events": events[::-1]}

        def describe_execution(self, executionArn):
            return {"executionArn": executionArn, "name": "run-1", "status": "SUCCEEDED", "startDate": T0,
                    "stopDate": T0 + timedelta(seconds=9), "output": json.dumps({"validation_auc": 0.9})}

    recorder, sleeps = Recorder(), []
    execution = aws.follow(FakeSfn(), "arn:x", aws.ProgressTracker(recorder), sleep=sleeps.append, poll_seconds=2)
    assert execution.status == "SUCCEEDED" and execution.auc == 0.9 and execution.duration_seconds == 9
    assert sleeps == [2, 2]
    assert recorder.lines == ["start Train model", "done Train model 9"]
