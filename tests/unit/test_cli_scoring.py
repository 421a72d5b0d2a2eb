"""`python -m pipeline scores` and `predict`: locally on a hand-made workspace, and on AWS against a
stack in moto (S3, Step Functions, the SageMaker model registry) with the Feature Store runtime's
GetRecord stubbed (moto does not implement it) and DescribeFeatureGroup answered in the service's shape
(moto's leaves out the online store's configuration)."""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber
from moto import mock_aws

from churn.features import now_event_time
from churn.layout import SAMPLE_SPEC, TRAINING_ENTRY_POINT
from churn.schema import FeatureSpec
from churn.scoring import rank, scores_csv
from pipeline.aws_session import AwsSession
from pipeline.local_aws.batch_transform import serving_module
from pipeline.local_aws.registry import APPROVED, REJECTED, LocalModelRegistry, ModelEntry
from pipeline.prediction import SERVING_MODULE
from pipeline.runner import TRAINING_DIR
from tests.support.moto import without_list_bucket
from tests.training.training_helpers import fit_small_model, training_set_rows
from tests.unit.cli_support import REGION, invoke, last_json, one_error_line, use_fake_aws

ROOT = Path(__file__).resolve().parents[2]

STACK = "ChurnPipeline"
BUCKET = "churn-scores-bucket"
GROUP = "churnpipeline-churn-65cc790c"
PACKAGE_GROUP = "churnpipeline-churn-models"
TOP = [{"record_id": "0107-YHINA", "churn_probability": 0.913402, "rank": 1},
       {"record_id": "5419-JPRRN", "churn_probability": 0.911301, "rank": 2}]
# The end of a successful execution, as "Summarise run" shapes it (the work states are not needed here).
PASSING = {"StartAt": "Summarise run", "States": {"Summarise run": {
    "Type": "Pass",
    "Parameters": {
        "validation_auc": 0.85,
        "model_package_arn": f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{PACKAGE_GROUP}/2",
        "execution.$": "$$.Execution.Name",
        "scores_uri.$": f"States.Format('s3://{BUCKET}/scores/{{}}/scores.csv', $$.Execution.Name)",
        "customers_scored": 7043,
        "model_version": "2",
        "top_customers": TOP,
    },
    "End": True,
}}}


def scores_text(pairs: list[tuple[str, float]], version: str) -> str:
    return scores_csv(rank(pairs), "customer_id", version)


# -- a small real model, packaged as SageMaker packages it ------------------------------------------
@pytest.fixture(scope="module")
def model_artifact(tmp_path_factory) -> dict:
    serving = serving_module(TRAINING_DIR, SERVING_MODULE)
    columns, rows = training_set_rows(limit=300)
    entry_point = serving_module(TRAINING_DIR, TRAINING_ENTRY_POINT)
    model_dir, frame = fit_small_model(entry_point, tmp_path_factory.mktemp("model"), rows=300)
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w:gz") as archive:
        for name in (serving.MODEL_FILE, serving.ENCODING_FILE):
            archive.add(model_dir / name, arcname=name)
    return {"bytes": payload.getvalue(), "model": serving.load_model(model_dir), "serving": serving, "frame": frame,
            "columns": columns, "rows": rows}


def online_record(columns: list[str], row: list[str | None]) -> list[dict[str, str]]:
    """GetRecord's shape: absent (null) features are left out; the label and event time are there too."""
    record = [{"FeatureName": c, "ValueAsString": v} for c, v in zip(columns, row, strict=True) if v is not None]
    return record + [{"FeatureName": "event_time", "ValueAsString": "2026-01-01T00:00:00.000Z"}]


# -- local ------------------------------------------------------------------------------------------
@pytest.fixture
def workspace(tmp_path) -> Path:
    return tmp_path / "workspace"


def add_run(workspace: Path, run_id: str, status: str, scores: str | None) -> None:
    run_dir = workspace / "runs" / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"status": "SUCCEEDED", "run_id": run_id, "run_dir": f"runs/{run_id}",
                                                  "feature_groups": {"churn": "local-churn-x"}}))
    if scores is not None:
        (run_dir / "scores").mkdir()
        (run_dir / "scores" / "scores.csv").write_text(scores)
    LocalModelRegistry(workspace / "registry.json").add(ModelEntry(
        run_id=run_id, created="2026-01-01T00:00:00", status=status, validation_auc=0.85, threshold=0.8,
        model_artifact=str(run_dir / "model.tar.gz"), evaluation="", report="",
    ))


def test_local_scores_show_the_latest_approved_runs_top(workspace):
    add_run(workspace, "local-a", APPROVED, scores_text([("A", 0.9), ("B", 0.1)], "1"))
    add_run(workspace, "local-b", APPROVED, scores_text([(f"C{i}", i / 100) for i in range(20)], "2"))
    add_run(workspace, "local-c", REJECTED, None)  # a rejected model scores nothing and is skipped
    result = invoke("scores", "--local", "--workspace", workspace, "--top", "3", "--json")
    assert result.exit_code == 0, result.output
    shown = last_json(result)
    assert shown["run"] == "local-b" and shown["model_version"] == "2"
    assert [c["record_id"] for c in shown["customers"]] == ["C19", "C18", "C17"]
    assert [c["rank"] for c in shown["customers"]] == [1, 2, 3]
    assert "Highest churn risk: run local-b (model version 2)" in result.stderr

    older = invoke("scores", "--local", "--workspace", workspace, "--run", "local-a")
    assert older.exit_code == 0, older.output
    assert "A" in older.stdout and "0.9000" in older.stdout and "model version 1" in older.stdout


def test_local_scores_without_a_model_or_without_scores_is_one_line(workspace):
    result = invoke("scores", "--local", "--workspace", workspace)
    assert result.exit_code == 1
    assert "no approved model" in one_error_line(result) and "run --local" in result.stderr

    add_run(workspace, "local-a", APPROVED, None)
    result = invoke("scores", "--local", "--workspace", workspace)
    assert result.exit_code == 1
    assert "run 'local-a' has no scores" in one_error_line(result)

    result = invoke("scores", "--local", "--workspace", workspace, "--run", "../etc")
    assert result.exit_code == 1
    assert "no local run '../etc'" in one_error_line(result)


def test_local_scores_of_an_approved_model_whose_run_stopped_before_scoring_say_so(workspace):
    """Ctrl-C after Register model leaves an approved model without scores: not 'a run that passed the quality
    gate writes scores' (it passed), but how its run ended, and where to find scores."""
    add_run(workspace, "local-a", APPROVED, None)
    run_file = workspace / "runs" / "local-a" / "run.json"
    run = json.loads(run_file.read_text())
    run.update(status="ABORTED", step_seconds={"Register model": 0.1, "Build scoring set": 0.2})
    run_file.write_text(json.dumps(run))
    result = invoke("scores", "--local", "--workspace", workspace)
    assert result.exit_code == 1
    assert one_error_line(result).startswith(
        f"error: run 'local-a' has no scores: it ended ABORTED at Build scoring set "
        f"({workspace / 'runs' / 'local-a' / 'scores' / 'scores.csv'} does not exist)\n"
        "hint: pass --run with a run that scored; list runs with `python -m pipeline runs --local`")


def test_local_scores_of_a_run_that_does_not_exist_say_there_is_no_such_run_as_status_does(workspace):
    """Not that the run 'has no scores', with a hint about the quality gate."""
    add_run(workspace, "local-a", APPROVED, None)
    scores = invoke("scores", "--local", "--workspace", workspace, "--run", "nonexistent", "--json")
    status = invoke("status", "nonexistent", "--local", "--workspace", workspace, "--json")
    assert scores.exit_code == status.exit_code == 1
    assert one_error_line(scores) == one_error_line(status)
    assert one_error_line(scores).startswith(f"error: no local run 'nonexistent' in {workspace / 'runs'}")
    assert last_json(scores) == last_json(status) and last_json(scores)["error"] == "RunNotFound"


def test_local_predict_without_a_model_is_one_line_with_a_hint(workspace):
    result = invoke("predict", "--local", "--workspace", workspace, "--id", "7590-VHVEG")
    assert result.exit_code == 1
    assert "no approved model" in one_error_line(result) and "hint:" in result.stderr


# -- AWS (moto) -------------------------------------------------------------------------------------
@pytest.fixture
def fake_aws(monkeypatch, tmp_path):
    use_fake_aws(monkeypatch, tmp_path)


class Stack(dict):
    s3: object
    sfn: object
    sagemaker: object
    records: dict
    definitions: list  # the deployed group's FeatureDefinitions


def described_feature_group(name: str, definitions: list[dict[str, str]]) -> dict:
    """DescribeFeatureGroup's answer for an online group, as the service gives it (the parts read here)."""
    return {"FeatureGroupArn": f"arn:aws:sagemaker:{REGION}:123456789012:feature-group/{name}",
            "FeatureGroupName": name, "RecordIdentifierFeatureName": "customer_id",
            "EventTimeFeatureName": "event_time", "CreationTime": "2026-01-01T00:00:00Z",
            "FeatureDefinitions": definitions,
            "OnlineStoreConfig": {"EnableOnlineStore": True}, "FeatureGroupStatus": "Created"}


@pytest.fixture
def stack(fake_aws, monkeypatch):
    """Outputs of a deployed stack, a state machine whose executions succeed, and GetRecord stubbed."""
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        session = boto3.Session(region_name=REGION)
        s3, sfn = session.client("s3"), session.client("stepfunctions")
        s3.create_bucket(Bucket=BUCKET)
        machine = sfn.create_state_machine(name="ChurnPipeline-Pipeline", definition=json.dumps(PASSING),
                                           roleArn="arn:aws:iam::123456789012:role/pipeline")["stateMachineArn"]
        outputs = {"BucketName": BUCKET, "StateMachineArn": machine, "FeatureGroupName": GROUP,
                   "FeatureGroups": json.dumps({"churn": {"feature_group": GROUP, "table": "churn_features_x"}}),
                   "ModelPackageGroupName": PACKAGE_GROUP}
        template = {
            "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {key: {"Value": value} for key, value in outputs.items()},
        }
        session.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))
        deployed = Stack(outputs)
        deployed.s3, deployed.sfn, deployed.sagemaker = s3, sfn, session.client("sagemaker")
        deployed.records = {}
        deployed.definitions = FeatureSpec.load(ROOT / SAMPLE_SPEC).groups[0].feature_definitions()  # the sample's

        original = AwsSession.client

        def client(self, service):
            made = original(self, service)
            if service == "sagemaker-featurestore-runtime" and not hasattr(made, "_stubbed"):
                stubber = Stubber(made)
                for record_id, record in deployed.records.items():
                    response = {"Record": record} if record else {}
                    stubber.add_response("get_record", response,
                                         {"FeatureGroupName": GROUP, "RecordIdentifierValueAsString": record_id})
                stubber.activate()
                made._stubbed = stubber
            if service == "sagemaker":
                made.meta.events.register(  # answered before the request is sent (a botocore before-call hook)
                    "before-call.sagemaker.DescribeFeatureGroup",
                    lambda params, **kwargs: (AWSResponse("", 200, {}, None),
                                              described_feature_group(json.loads(params["body"])["FeatureGroupName"],
                                                                      deployed.definitions)))
            return made

        monkeypatch.setattr(AwsSession, "client", client)
        yield deployed


def succeeded_execution(stack: Stack, name: str) -> None:
    arn = stack.sfn.start_execution(stateMachineArn=stack["StateMachineArn"], name=name, input="{}")["executionArn"]
    for _ in range(200):
        if stack.sfn.describe_execution(executionArn=arn)["status"] != "RUNNING":
            return
        time.sleep(0.01)
    raise AssertionError(f"{name} did not finish")


def register(stack: Stack, artifact_key: str, status: str = "Approved") -> str:
    return stack.sagemaker.create_model_package(
        ModelPackageGroupName=PACKAGE_GROUP,
        ModelApprovalStatus=status,
        InferenceSpecification={
            "Containers": [{"Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.2-0",
                            "ModelDataUrl": f"s3://{BUCKET}/{artifact_key}"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
    )["ModelPackageArn"]


def test_aws_scores_read_the_latest_succeeded_executions_scores_csv(stack):
    succeeded_execution(stack, "run-old")
    time.sleep(0.01)
    succeeded_execution(stack, "run-new")
    stack.s3.put_object(Bucket=BUCKET, Key="scores/run-old/scores.csv",
                        Body=scores_text([("OLD", 0.5)], "1").encode())
    stack.s3.put_object(Bucket=BUCKET, Key="scores/run-new/scores.csv",
                        Body=scores_text([(f"N{i}", i / 10) for i in range(10)], "2").encode())

    result = invoke("scores", "--top", "2", "--json")
    assert result.exit_code == 0, result.output
    shown = last_json(result)
    assert shown["run"] == "run-new" and shown["scores_uri"] == f"s3://{BUCKET}/scores/run-new/scores.csv"
    assert [c["record_id"] for c in shown["customers"]] == ["N9", "N8"] and shown["model_version"] == "2"

    older = invoke("scores", "--run", "run-old")
    assert older.exit_code == 0, older.output
    assert "OLD" in older.stdout and "0.5000" in older.stdout


def test_aws_scores_of_a_run_step_functions_has_forgotten_are_read_from_the_bucket(stack):
    """Step Functions forgets an execution 90 days after it ends; status's hint sends users here for its scores."""
    stack.s3.put_object(Bucket=BUCKET, Key="scores/run-last-year/scores.csv",
                        Body=scores_text([("OLD", 0.5)], "1").encode())
    assert "execution not found" in one_error_line(invoke("status", "run-last-year"))
    result = invoke("scores", "--run", "run-last-year")
    assert result.exit_code == 0, result.output
    assert "OLD" in result.stdout and "0.5000" in result.stdout


def test_aws_scores_of_an_execution_without_scores_is_one_line(stack):
    result = invoke("scores")
    assert result.exit_code == 1
    assert "no succeeded execution yet" in one_error_line(result)
    succeeded_execution(stack, "run-before-scoring")
    result = invoke("scores")
    assert result.exit_code == 1
    assert f"no scores at s3://{BUCKET}/scores/run-before-scoring/scores.csv" in one_error_line(result)


def test_aws_scores_of_a_run_without_scores_say_so_to_a_caller_without_list_bucket(stack, monkeypatch):
    """S3 answers such a caller 403, not 404, for the missing scores.csv: still 'no scores', not 'access denied'."""
    client = AwsSession.client
    monkeypatch.setattr(AwsSession, "client", lambda self, name: (without_list_bucket(client(self, name))
                                                                   if name == "s3" else client(self, name)))
    result = invoke("scores", "--run", "run-never")
    assert result.exit_code == 1
    assert one_error_line(result).startswith(f"error: no scores at s3://{BUCKET}/scores/run-never/scores.csv (or no "
                                             "permission to read them: access denied)\nhint: scores are written by")


def test_aws_scores_find_the_newest_succeeded_execution_past_an_empty_page(stack, monkeypatch):
    """ListExecutions may answer fewer executions than asked for, none even, with a next token (its model's
    maxResults: 'only an upper limit')."""
    succeeded_execution(stack, "run-later-page")
    stack.s3.put_object(Bucket=BUCKET, Key="scores/run-later-page/scores.csv",
                        Body=scores_text([("LATE", 0.5)], "1").encode())
    client = AwsSession.client

    def first_page_empty(self, name):
        made = client(self, name)
        if name == "stepfunctions":
            list_executions = made.list_executions
            made.list_executions = lambda nextToken=None, **params: (  # noqa: N803 - the API's parameter name
                list_executions(**params) if nextToken else {"executions": [], "nextToken": "more"})
        return made

    monkeypatch.setattr(AwsSession, "client", first_page_empty)
    result = invoke("scores", "--json")
    assert result.exit_code == 0, result.output
    assert last_json(result)["run"] == "run-later-page"


def test_aws_predict_names_the_model_artifact_it_cannot_read(stack, model_artifact):
    stack.sagemaker.create_model_package_group(ModelPackageGroupName=PACKAGE_GROUP)
    package = register(stack, "models/job-gone/output/model.tar.gz")  # registered, then deleted from the bucket
    customer = model_artifact["rows"][0]
    stack.records[customer[0]] = online_record(model_artifact["columns"], customer)
    result = invoke("predict", "--id", customer[0])
    assert result.exit_code == 1
    assert one_error_line(result).startswith(f"error: model package {package}'s artifact s3://{BUCKET}/models/"
                                             "job-gone/output/model.tar.gz cannot be read: ")


def test_aws_predict_uses_get_record_and_the_latest_approved_package(stack, model_artifact):
    columns, rows = model_artifact["columns"], model_artifact["rows"]
    customer = rows[17]
    stack.s3.put_object(Bucket=BUCKET, Key="models/job-2/output/model.tar.gz", Body=model_artifact["bytes"])
    stack.s3.put_object(Bucket=BUCKET, Key="models/job-1/output/model.tar.gz", Body=b"not a model")
    stack.sagemaker.create_model_package_group(ModelPackageGroupName=PACKAGE_GROUP)
    register(stack, "models/job-1/output/model.tar.gz")
    approved = register(stack, "models/job-2/output/model.tar.gz")
    register(stack, "models/job-3/output/model.tar.gz", status="PendingManualApproval")  # not approved: skipped
    stack.records[customer[0]] = online_record(columns, customer)

    result = invoke("predict", "--id", customer[0], "--json")
    assert result.exit_code == 0, result.output
    shown = last_json(result)
    expected = model_artifact["serving"].predict_frame(model_artifact["model"], model_artifact["frame"].iloc[[17]])
    assert shown["churn_probability"] == pytest.approx(float(expected[0]), abs=1e-9)
    assert shown["model"] == approved and shown["model_version"] == "2"
    assert shown["feature_groups"] == [GROUP] and shown["record_id"] == customer[0]
    assert shown["up"] or shown["down"]


def test_aws_predict_with_a_model_of_another_spec_names_the_features_the_groups_lack(stack, model_artifact):
    """After a deploy that changed the spec, the latest approved model may need features the deployed groups
    no longer define: it is refused, not fed them as missing values."""
    stack.s3.put_object(Bucket=BUCKET, Key="models/job-1/output/model.tar.gz", Body=model_artifact["bytes"])
    stack.sagemaker.create_model_package_group(ModelPackageGroupName=PACKAGE_GROUP)
    register(stack, "models/job-1/output/model.tar.gz")
    stack.definitions = [d for d in stack.definitions if d["FeatureName"] not in ("tenure", "contract")]
    defined = {d["FeatureName"] for d in stack.definitions}
    customer = model_artifact["rows"][0]
    stack.records[customer[0]] = [item for item in online_record(model_artifact["columns"], customer)
                                  if item["FeatureName"] in defined]
    result = invoke("predict", "--id", customer[0])
    assert result.exit_code == 1
    assert "was trained on features that no online feature group read defines: tenure, contract" in \
        one_error_line(result)


def test_aws_predict_unknown_customer_or_no_model_is_one_line(stack, model_artifact):
    stack.records["0000-NOBODY"] = None
    result = invoke("predict", "--id", "0000-NOBODY")
    assert result.exit_code == 1
    assert "no approved model in model package group" in one_error_line(result)

    stack.s3.put_object(Bucket=BUCKET, Key="models/job-1/output/model.tar.gz", Body=model_artifact["bytes"])
    stack.sagemaker.create_model_package_group(ModelPackageGroupName=PACKAGE_GROUP)
    register(stack, "models/job-1/output/model.tar.gz")
    result = invoke("predict", "--id", "0000-NOBODY")
    assert result.exit_code == 1
    assert f"customer '0000-NOBODY' is not in the online store of feature group {GROUP}" in one_error_line(result)


def test_aws_run_summary_shows_the_scores_and_the_top_customers(stack):
    succeeded_execution(stack, "run-scored")
    result = invoke("status", "run-scored", "--json")
    assert result.exit_code == 0, result.output
    summary = last_json(result)
    assert summary["scores_uri"] == f"s3://{BUCKET}/scores/run-scored/scores.csv"
    assert summary["customers_scored"] == 7043 and summary["top_customers"] == TOP
    assert f"s3://{BUCKET}/scores/run-scored/scores.csv" in result.stderr
    assert "Highest churn risk (model version 2)" in result.stderr
    assert "0107-YHINA" in result.stderr and "0.9134" in result.stderr


def test_local_predict_says_when_the_customers_record_has_expired(workspace, model_artifact, group):
    """A group whose online store keeps records a day (TtlDuration): GetRecord answers nothing for a record
    past it, as for an unknown id; the CLI says which group and that the record expired or is unknown."""
    from dataclasses import replace

    from churn.schema import OnlineTtl
    from pipeline.local_aws.feature_store import LocalFeatureStore
    from pipeline.runner import create_feature_group

    name = "local-churn-ttl"
    add_run(workspace, "local-a", APPROVED, None)
    run_dir = workspace / "runs" / "local-a"
    (run_dir / "run.json").write_text(json.dumps({"status": "SUCCEEDED", "run_id": "local-a", "run_dir": "runs/local-a",
                                                  "feature_groups": {"churn": name}}))
    (run_dir / "model.tar.gz").write_bytes(model_artifact["bytes"])
    columns, rows = model_artifact["columns"], model_artifact["rows"]
    with LocalFeatureStore(workspace / "feature-store") as store:
        create_feature_group(store, name, replace(group, online_ttl=OnlineTtl(1, "Days")))
        for row, event_time in ((rows[0], "2020-01-01T00:00:00.000Z"), (rows[1], now_event_time())):
            record = online_record(columns, row)
            record[-1]["ValueAsString"] = event_time
            store.put_record(FeatureGroupName=name, Record=record)

    fresh = invoke("predict", "--local", "--workspace", workspace, "--id", rows[1][0], "--json")
    assert fresh.exit_code == 0, fresh.output
    assert last_json(fresh)["feature_groups"] == [name]
    expired = invoke("predict", "--local", "--workspace", workspace, "--id", rows[0][0])
    assert expired.exit_code == 1
    assert (f"error: customer '{rows[0][0]}' is not in the online store of feature group {name}: the customer is "
            "unknown, or the record expired (the group keeps a record 1 day after its event time)") in \
        one_error_line(expired)
    assert "ingesting the customer's data again" in expired.stderr
