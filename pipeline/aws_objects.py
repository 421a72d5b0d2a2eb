"""What the CLI reads and writes in a deployed stack besides executions: raw inputs in the bucket,
scores files, the model registry's latest approved package and its artifact; and what explains a failed
execution: the training script's error line from the job's log (the container's toolkit replaces it with
a generic `ExecuteUserScriptError`), the records a failed ingest names
(`ingest/<execution>/<group>/failed-records.json`, written by "Summarise ingest")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from churn.layout import FAILED_RECORDS_FILE, INGEST_RESULTS, RAW_PREFIX, SAMPLE_DATA_NAME
from churn.model_quality import APPROVED
from churn.naming import TRAINING_JOBS, sagemaker_log_group
from pipeline.backends import Scores
from pipeline.errors import ACCESS_DENIED, NOT_FOUND, BadInput, OperatorError, explain, parse_json

DEFAULT_DATA_KEY = f"{RAW_PREFIX}/{SAMPLE_DATA_NAME}"  # the stack deploys the sample data there
# SageMaker's own log group for every training job of the account; a job's streams are <job>/algo-<n>-<epoch>.
TRAINING_JOB_LOG_GROUP = sagemaker_log_group(TRAINING_JOBS)
# training/train_model.py main() prints its failure as one stderr line with this prefix (tested together).
SCRIPT_ERROR_PREFIX = "ERROR: "


def raw_key(path: Path, name: str | None = None, *, csv_only: bool = True) -> str:
    """`raw/<name>`: the file's own name by default; a leading `raw/` in `name` is accepted. The pipeline
    reads raw/*.csv, except the one input file of a spec with a derivation."""
    name_given = name is not None
    name = (name or path.name).strip().lstrip("/").removeprefix(f"{RAW_PREFIX}/")
    if not name or name.endswith("/"):
        raise BadInput(f"--key {name!r} is not a file name", "e.g. --key customers-2024.csv", error="InvalidKey")
    if csv_only and not name.lower().endswith(".csv"):
        given = f"--key {name!r}" if name_given else f"--data {path}: its name"
        raise BadInput(f"{given} must end in .csv", "the pipeline reads raw/*.csv" + ("" if name_given else
                       "; pass --key NAME.csv to upload it under another name"), error="InvalidKey")
    return f"{RAW_PREFIX}/{name}"


def data_key(value: str, bucket: str, option: str = "--data-key") -> str:
    """Accept `raw/x.csv` or `s3://<the stack's bucket>/raw/x.csv`."""
    if value.startswith("s3://"):
        other, _, key = value[len("s3://"):].partition("/")
        if other != bucket:
            raise BadInput(f"{value} is not in the stack's bucket {bucket}",
                           "upload it first with `python -m pipeline upload --data PATH`", error="InvalidKey")
        value = key
    value = value.lstrip("/")
    if not value:
        raise BadInput(f"{option} is empty", f"e.g. {option} {DEFAULT_DATA_KEY}", error="InvalidKey")
    return value


def object_exists(s3: Any, bucket: str, key: str) -> bool | None:
    """True/False, or None when we may not look (HeadObject denied)."""
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code"))
        if code in NOT_FOUND:
            return False
        if code in ACCESS_DENIED:
            return None
        raise
    return True


def raw_trigger_enabled(s3: Any, bucket: str) -> bool | None:
    """Whether the bucket sends events to EventBridge (the stack's opt-in "new raw CSV" trigger)."""
    try:
        config = s3.get_bucket_notification_configuration(Bucket=bucket)
    except (ClientError, BotoCoreError):
        return None
    return "EventBridgeConfiguration" in config


def read_scores_object(s3: Any, bucket: str, key: str, run_id: str, top: int) -> Scores:
    uri = f"s3://{bucket}/{key}"
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code"))
        if code in NOT_FOUND | ACCESS_DENIED:  # S3 answers a missing key with 403 to a caller without s3:ListBucket
            unsure = " (or no permission to read them: access denied)" if code in ACCESS_DENIED else ""
            raise OperatorError(f"no scores at {uri}{unsure}", "scores are written by a run that passed the quality "
                                "gate; list runs with `python -m pipeline runs`", error="ScoresNotFound") from None
        raise
    with body:
        return Scores.read(run_id, uri, (line.decode("utf-8") for line in body.iter_lines()), top)


def read_object(s3: Any, uri: str) -> bytes:
    if not uri.startswith("s3://") or "/" not in uri[len("s3://"):]:
        raise OperatorError(f"not an s3:// object URI: {uri}", error="InvalidUri")
    bucket, _, key = uri[len("s3://"):].partition("/")
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def latest_approved_model(sagemaker: Any, group: str) -> tuple[str, int, str] | None:
    """The highest-versioned Approved package of the group: its ARN, version and model artifact."""
    summaries = [summary
                 for page in sagemaker.get_paginator("list_model_packages").paginate(
                     ModelPackageGroupName=group, ModelApprovalStatus=APPROVED)
                 for summary in page.get("ModelPackageSummaryList", [])]
    if not summaries:
        return None
    newest = max(summaries, key=lambda summary: summary.get("ModelPackageVersion", 0))
    described = sagemaker.describe_model_package(ModelPackageName=newest["ModelPackageArn"])
    containers = described.get("InferenceSpecification", {}).get("Containers", [])
    if not containers or not containers[0].get("ModelDataUrl"):
        raise OperatorError(f"model package {newest['ModelPackageArn']} names no model artifact", error="NoModelData")
    return newest["ModelPackageArn"], int(newest.get("ModelPackageVersion", 0)), containers[0]["ModelDataUrl"]


def training_script_error(logs: Any, job_name: str) -> tuple[str, str]:
    """The last `ERROR: ...` line the training script wrote to the job's log streams ("" when not found),
    and where to look for it (with why it was not found)."""
    where = f"CloudWatch log group {TRAINING_JOB_LOG_GROUP}, log stream {job_name}/algo-1-…"
    try:
        streams = [s["logStreamName"] for s in logs.describe_log_streams(
            logGroupName=TRAINING_JOB_LOG_GROUP, logStreamNamePrefix=f"{job_name}/").get("logStreams", [])]
        pages = logs.get_paginator("filter_log_events").paginate(
            logGroupName=TRAINING_JOB_LOG_GROUP, logStreamNames=streams[:100],
            filterPattern=f'"{SCRIPT_ERROR_PREFIX.strip()}"') if streams else []
        lines = [message.removeprefix(SCRIPT_ERROR_PREFIX) for page in pages for event in page.get("events", [])
                 if (message := str(event.get("message", "")).strip()).startswith(SCRIPT_ERROR_PREFIX)]
        problem = "no error line in the log" if streams else "the job wrote no log stream"
    except (ClientError, BotoCoreError) as exc:
        lines, problem = [], explain(exc).message
    if lines:
        return lines[-1], f"the job's log: {where}"
    return "", (f"the training script's own error is the last '{SCRIPT_ERROR_PREFIX.strip()}' line in {where} "
                f"({problem})")


def failed_ingest_records(s3: Any, bucket: str, execution: str, groups: list[str]) -> list[dict[str, Any]]:
    """Every failed record "Summarise ingest" wrote for this execution, each with its group: one file a
    group (the groups that did not fail have none)."""
    records: list[dict[str, Any]] = []
    for group in groups:
        key = f"{INGEST_RESULTS.format(execution=execution, group=group)}/{FAILED_RECORDS_FILE}"
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:  # S3 answers a missing key with 403 to a caller without s3:ListBucket
            if str(exc.response.get("Error", {}).get("Code")) in NOT_FOUND | ACCESS_DENIED:
                continue  # the cause names the first failed records and where all of them are anyway
            raise
        records += [{"group": group, **record} for record in parse_json(body.decode("utf-8")).get("failed", [])]
    return records
