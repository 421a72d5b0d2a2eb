"""Why an AWS execution failed, in words (a raw Step Functions cause is JSON or a generic error): a
Lambda's error message instead of its JSON, a SageMaker job's own reason, the training script's error
line from the job's log (the container's toolkit replaces it with a generic `ExecuteUserScriptError`),
and the records a failed ingest names (`ingest/<execution>/<group>/failed-records.json`, written by
"Summarise ingest")."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from churn.layout import FAILED_RECORDS_FILE, INGEST_RESULTS
from churn.naming import TRAINING_JOBS, sagemaker_log_group
from pipeline.errors import ACCESS_DENIED, NOT_FOUND, explain

# SageMaker's own log group for every training job of the account; a job's streams are <job>/algo-<n>-<epoch>.
TRAINING_JOB_LOG_GROUP = sagemaker_log_group(TRAINING_JOBS)
# training/train_model.py main() prints its failure as one stderr line with this prefix (tested together).
SCRIPT_ERROR_PREFIX = "ERROR: "


def parse_json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def readable_cause(cause: str) -> str:
    """A Lambda's error arrives as JSON (errorMessage, errorType, stackTrace): keep the message. A failed
    SageMaker job's arrives as its whole description: keep its name and FailureReason."""
    parsed = parse_json(cause)
    if parsed.get("errorMessage"):
        return str(parsed["errorMessage"])
    for kind, key in (("training job", "TrainingJobName"), ("transform job", "TransformJobName")):
        if parsed.get(key):
            return f"{kind} {parsed[key]} failed: {' '.join(str(parsed.get('FailureReason') or '-').split())}"
    return cause


def error_text(error: str, cause: str) -> str:
    cause = readable_cause(cause)
    return f"{error}: {cause}" if cause else (error or "failed")


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
