"""The thin Lambda handlers against moto (real request handling at the AWS boundary)."""

from __future__ import annotations

import io
import json
import tarfile

import boto3
import pytest

from churn.csv_input import InputValidationError
from churn.handlers import evaluate_model, glue_cleanup, validate_input
from churn.model_quality import EvaluationMissing, read_evaluation_from_model_tarball
from tests.unit.lambda_support import BUCKET, FakeContext


@pytest.fixture
def aws(s3):
    return s3


def test_validate_input_counts_rows_and_canonicalises_event_time(aws, data_path):
    aws.upload_file(str(data_path), BUCKET, "raw/churn.csv")
    result = validate_input.handler(
        {"bucket": BUCKET, "key": "raw/churn.csv", "group": "churn", "event_time": "2026-11-26T07:07:54.12Z",
         "execution_input": {"input_key": "raw/churn.csv"}}, FakeContext()
    )
    assert result == {
        "records": 7043,
        "event_time": "2026-11-26T07:07:54.120Z",
        "event_time_sql": "'2026-11-26T07:07:54.120Z'",
        "run_started_sql": "'2026-11-26 07:07:54.120'",
        "knowledge_cutoff_sql": "'9999-12-31 23:59:59.999'",  # the execution input names none
        "source": f"s3://{BUCKET}/raw/churn.csv",
        "version_id": "null",  # the bucket is not versioned here: its objects have the null version
    }


def test_validate_input_takes_the_knowledge_cutoff_from_the_execution_input(aws, data_path):
    aws.upload_file(str(data_path), BUCKET, "raw/churn.csv")
    event = {"bucket": BUCKET, "key": "raw/churn.csv", "group": "churn", "event_time": "2026-11-26T07:07:54Z",
             "execution_input": {"input_key": "raw/churn.csv", "knowledge_cutoff": "2026-11-01 00:00:00.000"}}
    assert validate_input.handler(event, FakeContext())["knowledge_cutoff_sql"] == "'2026-11-01 00:00:00.000'"
    event["execution_input"]["knowledge_cutoff"] = "2026-11-01"
    with pytest.raises(InputValidationError, match=r"^the execution input: knowledge_cutoff '2026-11-01' is not"):
        validate_input.handler(event, FakeContext())


def test_validate_input_returns_the_version_it_read(aws, data_path):
    """The Distributed Map reads this version: a later upload to the same key is not ingested unvalidated."""
    aws.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    lines = data_path.read_text().splitlines(keepends=True)
    validated = aws.put_object(Bucket=BUCKET, Key="raw/churn.csv", Body="".join(lines[:11]).encode())["VersionId"]
    event = {"bucket": BUCKET, "key": "raw/churn.csv", "group": "churn", "event_time": "2026-11-26T07:07:54Z"}

    result = validate_input.handler(event, FakeContext())
    newer = aws.put_object(Bucket=BUCKET, Key="raw/churn.csv", Body="".join(lines[:6]).encode())["VersionId"]

    assert result["version_id"] == validated != newer and result["records"] == 10
    body = aws.get_object(Bucket=BUCKET, Key="raw/churn.csv", VersionId=result["version_id"])["Body"].read()
    assert body.decode().count("\n") == 11
    assert validate_input.handler(event, FakeContext())["version_id"] == newer


def test_validate_input_names_object_line_and_column(aws, data_path):
    lines = data_path.read_text().splitlines()[:4]
    lines[3] = lines[3].replace(",2,", ",two,", 1)
    aws.put_object(Bucket=BUCKET, Key="raw/bad.csv", Body="\n".join(lines).encode())
    with pytest.raises(InputValidationError) as info:
        validate_input.handler({"bucket": BUCKET, "key": "raw/bad.csv", "group": "churn",
                                "event_time": "2026-11-26T07:07:54Z"}, FakeContext())
    assert str(info.value).startswith(f"s3://{BUCKET}/raw/bad.csv, line 4, column 'tenure'")


def test_validate_input_accepts_several_columns_without_a_name(aws, data_path):
    """A spreadsheet export's trailing `,,`: columns no feature reads, however many."""
    lines = data_path.read_text().splitlines()[:11]
    aws.put_object(Bucket=BUCKET, Key="raw/export.csv", Body="".join(line + ",,\n" for line in lines).encode())
    result = validate_input.handler({"bucket": BUCKET, "key": "raw/export.csv", "group": "churn",
                                     "event_time": "2026-11-26T07:07:54Z"}, FakeContext())
    assert result["records"] == 10


def test_validate_input_missing_object(aws):
    with pytest.raises(InputValidationError, match="object not found"):
        validate_input.handler({"bucket": BUCKET, "key": "raw/none.csv", "group": "churn",
                                "event_time": "2026-11-26T07:07:54Z"}, FakeContext())


def model_tarball(evaluation: dict | None, name: str = "evaluation.json") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        files = {"model.json": b"{}"}
        if evaluation is not None:
            files[name] = json.dumps(evaluation).encode()
        for name, payload in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


@pytest.mark.parametrize(("auc", "passed"), [(0.85, True), (0.80, True), (0.7999, False)])
def test_evaluate_applies_the_gate_and_publishes_the_evaluation(aws, auc, passed):
    aws.put_object(Bucket=BUCKET, Key="models/job/output/model.tar.gz",
                   Body=model_tarball({"validation_auc": auc, "accuracy": 0.8, "f1": 0.6}))
    result = evaluate_model.handler(
        {"model_artifact": f"s3://{BUCKET}/models/job/output/model.tar.gz",
         "output_prefix": f"s3://{BUCKET}/models/exec-1", "threshold": 0.8},
        FakeContext(),
    )
    assert result["passed"] is passed
    assert result["validation_auc"] == auc
    assert result["evaluation_uri"] == f"s3://{BUCKET}/models/exec-1/evaluation.json"
    assert result["metrics"] == {"validation_auc": auc, "accuracy": 0.8, "f1": 0.6}
    stored = json.loads(aws.get_object(Bucket=BUCKET, Key="models/exec-1/evaluation.json")["Body"].read())
    assert stored["validation_auc"] == auc


def test_evaluate_without_evaluation_file_fails_clearly(aws):
    aws.put_object(Bucket=BUCKET, Key="models/job/output/model.tar.gz", Body=model_tarball(None))
    with pytest.raises(EvaluationMissing, match="has no evaluation.json"):
        evaluate_model.handler({"model_artifact": f"s3://{BUCKET}/models/job/output/model.tar.gz",
                          "output_prefix": f"s3://{BUCKET}/models/x", "threshold": 0.8}, FakeContext())


@pytest.mark.parametrize(("name", "found"), [("evaluation.json", True), ("./evaluation.json", True),
                                             ("..evaluation.json", False), ("/evaluation.json", False)])
def test_the_evaluation_is_the_artifacts_top_level_evaluation_json(name, found):
    artifact = model_tarball({"validation_auc": 0.9}, name)
    if found:
        assert read_evaluation_from_model_tarball(artifact) == {"validation_auc": 0.9}
    else:
        with pytest.raises(EvaluationMissing):
            read_evaluation_from_model_tarball(artifact)


def test_glue_cleanup_deletes_the_offline_store_table_on_delete_only(aws):
    glue = boto3.client("glue")
    glue.create_database(DatabaseInput={"Name": "fs_db"})
    glue.create_table(DatabaseName="fs_db", TableInput={"Name": "churn_table"})
    event = {"ResourceProperties": {"DatabaseName": "fs_db", "TableName": "churn_table"}}
    assert glue_cleanup.handler({**event, "RequestType": "Create"}, FakeContext()) == {
        "PhysicalResourceId": "fs_db.churn_table"}
    assert [t["Name"] for t in glue.get_tables(DatabaseName="fs_db")["TableList"]] == ["churn_table"]
    glue_cleanup.handler({**event, "RequestType": "Delete", "PhysicalResourceId": "fs_db.churn_table"},
                         FakeContext())
    assert glue.get_tables(DatabaseName="fs_db")["TableList"] == []
    # a second delete (table already gone, e.g. a retried stack deletion) succeeds
    glue_cleanup.handler({**event, "RequestType": "Delete", "PhysicalResourceId": "fs_db.churn_table"},
                         FakeContext())



def test_registry_cleanup_deletes_every_model_package_on_delete_only(monkeypatch):
    """moto has no DeleteModelPackage: botocore's Stubber checks the exact calls, in order."""
    from botocore.stub import Stubber

    from churn.handlers import registry_cleanup

    sagemaker = boto3.client("sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    arns = [f"arn:aws:sagemaker:us-east-1:123456789012:model-package/churn-models/{n}" for n in (1, 2, 3)]

    def summary(arn):
        return {"ModelPackageArn": arn, "ModelPackageStatus": "Completed",
                "CreationTime": "2026-01-01T00:00:00Z", "ModelPackageGroupName": "churn-models"}

    stubber = Stubber(sagemaker)
    group = {"ModelPackageGroupName": "churn-models"}
    # every page is listed before anything is deleted (deleting while paginating can skip packages) ...
    stubber.add_response("list_model_packages", {"ModelPackageSummaryList": [summary(a) for a in arns[:2]],
                                                 "NextToken": "page-2"}, group)
    stubber.add_response("list_model_packages", {"ModelPackageSummaryList": [summary(arns[2])]},
                         {**group, "NextToken": "page-2"})
    for arn in arns:
        stubber.add_response("delete_model_package", {}, {"ModelPackageName": arn})
    # ... then the group is listed again until it is empty
    stubber.add_response("list_model_packages", {"ModelPackageSummaryList": []}, group)
    monkeypatch.setattr(registry_cleanup, "client", lambda service: sagemaker)
    event = {"ResourceProperties": {"ModelPackageGroupName": "churn-models"}}
    with stubber:
        # Create and Update do nothing: any call would be unexpected by the stubber
        registry_cleanup.handler({**event, "RequestType": "Create"}, FakeContext())
        result = registry_cleanup.handler({**event, "RequestType": "Delete", "PhysicalResourceId": "p"},
                                          FakeContext())
        stubber.assert_no_pending_responses()
    assert result == {"PhysicalResourceId": "p"}


def test_registry_cleanup_of_a_missing_group_is_clean():
    from botocore.stub import Stubber

    from churn.handlers.registry_cleanup import delete_model_packages

    sagemaker = boto3.client("sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(sagemaker)
    stubber.add_client_error("list_model_packages", "ResourceNotFound", "group not found")
    with stubber:
        assert delete_model_packages(sagemaker, "gone") == 0


def test_scoring_model_cleanup_deletes_the_models_interrupted_executions_left(aws):
    """A stopped execution runs no catcher: its model (named after it) is deleted on stack deletion only;
    a running execution's model and unrelated models stay."""
    from churn.handlers import scoring_model_cleanup

    sfn, sagemaker = boto3.client("stepfunctions"), boto3.client("sagemaker")
    wait = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 600, "End": True}}}
    machine = sfn.create_state_machine(name="pipeline", definition=json.dumps(wait),
                                       roleArn="arn:aws:iam::123456789012:role/pipeline")["stateMachineArn"]
    stopped = sfn.start_execution(stateMachineArn=machine, name="run-stopped")["executionArn"]
    sfn.start_execution(stateMachineArn=machine, name="run-running")
    sfn.start_execution(stateMachineArn=machine, name="run-stopped-without-model")
    sfn.stop_execution(executionArn=stopped)
    sfn.stop_execution(executionArn=machine.replace(":stateMachine:", ":execution:") + ":run-stopped-without-model")
    for name in ("run-stopped", "run-running", "someone-elses"):
        sagemaker.create_model(ModelName=name, ExecutionRoleArn="arn:aws:iam::123456789012:role/scoring",
                               PrimaryContainer={"Image": "xgboost:3.2-0"})
    event = {"ResourceProperties": {"StateMachineArn": machine}}

    scoring_model_cleanup.handler({**event, "RequestType": "Create"}, FakeContext())
    assert len(sagemaker.list_models()["Models"]) == 3
    scoring_model_cleanup.handler({**event, "RequestType": "Delete", "PhysicalResourceId": "p"}, FakeContext())
    assert sorted(m["ModelName"] for m in sagemaker.list_models()["Models"]) == ["run-running", "someone-elses"]


def _results_file(aws, key: str, entries: list[dict]) -> dict:
    body = "".join(json.dumps(entry) + "\n" for entry in entries).encode()
    aws.put_object(Bucket=BUCKET, Key=key, Body=body)
    return {"Key": key, "Size": len(body)}


def _batch_output(ingested: int, failed: list[dict]) -> dict:
    return {"Status": "SUCCEEDED", "Output": json.dumps({"ingested": ingested, "failed_count": len(failed),
                                                         "failed": failed, "calls": 1})}


def _manifest(aws, files: dict) -> dict:
    key = "ingest/run-1/churn/abcd/manifest.json"
    aws.put_object(Bucket=BUCKET, Key=key, Body=json.dumps({"DestinationBucket": BUCKET, "MapRunArn": "arn",
                                                             "ResultFiles": files}).encode())
    return {"Bucket": BUCKET, "Key": key}


def test_summarise_ingest_adds_up_the_batches(aws):
    from churn.handlers import summarise_ingest

    ok = _results_file(aws, "ingest/run-1/churn/abcd/SUCCEEDED_0.json", [_batch_output(500, []), _batch_output(7, [])])
    details = _manifest(aws, {"SUCCEEDED": [ok], "FAILED": [], "PENDING": []})
    event = {"result_writer": details, "failures_uri": f"s3://{BUCKET}/ingest/run-1/churn/failed-records.json",
             "group": "churn"}
    assert summarise_ingest.handler(event, FakeContext()) == {"records": 507, "calls": 2}


def test_summarise_ingest_names_every_failed_record_and_keeps_them_all(aws):
    """Records a batch reported, a batch that failed whole (timed out) and one never started: each is a
    failed record with its file line and id; the error names the first ones and where all of them are."""
    from churn.handlers import summarise_ingest
    from churn.ingest import IngestError

    rejected = {"line": 12, "record_id": "0001-A", "error_code": "ValidationError", "message": "bad tenure"}
    timed_out = {"Status": "FAILED", "Error": "Lambda.Timeout", "Cause": "Task timed out after 90 s",
                 "Input": json.dumps({"Items": [{"index": 500, "row": {"customerID": "0002-B"}}],
                                      "BatchInput": {}})}
    # the CSV item reader keys a row by the header as written: a BOM and a stray space are still the id column
    never = {"Status": "PENDING",
             "Input": json.dumps({"Items": [{"index": 600, "row": {"\ufeffcustomerID ": "0003-C"}}]})}
    details = _manifest(aws, {
        "SUCCEEDED": [_results_file(aws, "r/SUCCEEDED_0.json", [_batch_output(499, [rejected])])],
        "FAILED": [_results_file(aws, "r/FAILED_0.json", [timed_out])],
        "PENDING": [_results_file(aws, "r/PENDING_0.json", [never])],
    })
    failures = f"s3://{BUCKET}/ingest/run-1/churn/failed-records.json"
    with pytest.raises(IngestError) as info:
        summarise_ingest.handler({"result_writer": details, "failures_uri": failures, "group": "churn"},
                                 FakeContext())
    message = str(info.value)
    assert message.startswith("3 record(s) failed: line 12 0001-A (ValidationError: bad tenure), "
                              "line 502 0002-B (Lambda.Timeout: Task timed out after 90 s), "
                              "line 602 0003-C (NotStarted: the batch was not started)")
    assert message.endswith(f"all of them in {failures}")
    kept = json.loads(aws.get_object(Bucket=BUCKET, Key="ingest/run-1/churn/failed-records.json")["Body"].read())
    assert kept["failed_count"] == 3 and kept["ingested"] == 499 and len(kept["failed"]) == 3


def test_derive_sources_writes_one_csv_per_group(aws, monkeypatch):
    from pathlib import Path

    from churn.handlers import _runtime, derive_sources
    from churn.schema import FeatureSpec

    spec = FeatureSpec.load(Path(__file__).resolve().parents[2] / "data" / "cdnow.spec.json")
    monkeypatch.setenv("FEATURE_SPEC", spec.to_json())
    _runtime.feature_spec.cache_clear()
    purchases = " customer_id  date number_of_cds  dollar_value\r\n 00001 19970101  1   11.77\r\n"
    aws.put_object(Bucket=BUCKET, Key="raw/CDNOW_master.txt", Body=purchases.encode())
    keys = derive_sources.handler({"bucket": BUCKET, "key": "raw/CDNOW_master.txt", "execution": "run-1"},
                                  FakeContext())
    assert keys == {group: f"staging/run-1/{group}.csv" for group in ("profile", "activity", "labels")}
    profile = aws.get_object(Bucket=BUCKET, Key=keys["profile"])["Body"].read().decode()
    assert profile.splitlines()[1].startswith("00001,1997-01-02T00:00:00.000Z,1997-01,1,11.77")

    # a byte that is not UTF-8 is reported with its line, and nothing is staged
    aws.put_object(Bucket=BUCKET, Key="raw/bad.txt", Body=purchases.encode() + b" 00002 19970101  1   1\xff.0\r\n")
    with pytest.raises(ValueError, match=r"s3://[^,]+/raw/bad.txt, line 3: not UTF-8 text \(byte 0xff"):
        derive_sources.handler({"bucket": BUCKET, "key": "raw/bad.txt", "execution": "run-2"}, FakeContext())
    assert "Contents" not in aws.list_objects_v2(Bucket=BUCKET, Prefix="staging/run-2/")
