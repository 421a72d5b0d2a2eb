"""Lambda "Validate input": read the raw CSV from S3 once, whole, before anything is written."""

from __future__ import annotations

from typing import Any

from churn.csv_input import InputValidationError, validate_stream
from churn.features import canonical_event_time
from churn.handlers._runtime import client, feature_spec, logger, tracer
from churn.sql import athena_parameter


def validate_object(s3: Any, bucket: str, key: str, event_time: str) -> dict[str, Any]:
    source = f"s3://{bucket}/{key}"
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except s3.exceptions.NoSuchKey:
        raise InputValidationError(source, "object not found") from None
    summary = validate_stream(body, source, feature_spec())
    canonical = canonical_event_time(event_time)
    return {
        "records": summary.rows,
        "event_time": canonical,
        "event_time_sql": athena_parameter(canonical),
        "source": source,
    }


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    result = validate_object(client("s3"), event["bucket"], event["key"], event["event_time"])
    logger.info("input validated", extra=result)
    return result
