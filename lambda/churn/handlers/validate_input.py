"""Lambda "Validate input": read a feature group's raw CSV from S3 once, whole, before anything is written."""

from __future__ import annotations

from typing import Any

from churn import contract
from churn.csv_input import InputValidationError, validate_stream
from churn.features import canonical_event_time, parse_event_time
from churn.handlers._runtime import client, feature_spec, logger, tracer
from churn.sql import athena_parameter, knowledge_cutoff, sql_timestamp


def validate_object(s3: Any, bucket: str, key: str, group: str, event_time: str,
                    execution_input: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate the object's current version for `group`; `version_id` names that version, which the
    Distributed Map then reads ("null" for an object written while the bucket was unversioned).

    Also returns the run's values the SQL takes, as Athena parameter literals: its event time (the
    training set's as-of), when it started (what the offline-store count of history starts from) and
    the knowledge cutoff the execution input may name (checked before the file is read).
    """
    try:
        cutoff = knowledge_cutoff((execution_input or {}).get(contract.KNOWLEDGE_CUTOFF))
    except ValueError as exc:
        raise InputValidationError("the execution input", str(exc)) from None
    source = f"s3://{bucket}/{key}"
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
    except s3.exceptions.NoSuchKey:
        raise InputValidationError(source, "object not found") from None
    version_id = response.get("VersionId") or "null"
    canonical = canonical_event_time(event_time)
    summary = validate_stream(response["Body"], source, feature_spec().group(group), not_after=canonical)
    return {
        contract.RECORDS: summary.rows,
        contract.EVENT_TIME: canonical,
        contract.EVENT_TIME_SQL: athena_parameter(canonical),
        contract.RUN_STARTED_SQL: athena_parameter(sql_timestamp(parse_event_time(canonical))),
        contract.KNOWLEDGE_CUTOFF_SQL: athena_parameter(cutoff),
        "source": source,
        contract.VERSION_ID: version_id,
    }


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    result = validate_object(client("s3"), event[contract.BUCKET], event[contract.OBJECT_KEY], event[contract.GROUP],
                             event[contract.EVENT_TIME], event.get(contract.EXECUTION_INPUT))
    logger.info("input validated", extra=result)
    return result
