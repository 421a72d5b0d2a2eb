"""Lambda "Summarise ingest": read a Distributed Map's results from S3 and name every failed record.

The Map writes each batch's result with its ResultWriter (JSON Lines, one child execution a line:
Status, Input, Output as JSON text, and Error/Cause for a failed child), listed by a manifest. Batches
report failed records in their output; a batch that failed as a whole (timed out, crashed) or never
started fails all its records. Everything that failed is written to one JSON file and named in the
IngestError, so the execution's failure says what went wrong and where.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from churn import contract
from churn.csv_input import map_item_rows
from churn.handlers._runtime import client, feature_spec, logger, split_s3_uri, tracer
from churn.ingest import BatchResult, IngestError, describe_failures


def _results(s3: Any, bucket: str, files: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for file in files:
        for line in s3.get_object(Bucket=bucket, Key=file["Key"])["Body"].iter_lines():
            if line.strip():
                yield json.loads(line)


def _fail_batch(total: BatchResult, entry: dict[str, Any], id_column: str, error: str, message: str) -> None:
    """Every record of a batch that wrote nothing it could report. A Lambda's failure cause is its error
    payload as JSON: its errorMessage is what says why."""
    try:
        message = str(json.loads(message).get("errorMessage") or message)
    except (ValueError, AttributeError):
        pass
    items = json.loads(entry.get("Input") or "{}").get("Items", [])
    for line, row in map_item_rows(items):
        total.fail(line, row.get(id_column) or "", error, message)


def summarise(s3: Any, manifest_uri: str, failures_uri: str, id_column: str) -> dict[str, Any]:
    bucket, key = split_s3_uri(manifest_uri)
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    files = manifest.get("ResultFiles", {})
    total = BatchResult(listed=None)  # the failures file keeps every failed record
    for entry in _results(s3, bucket, files.get("SUCCEEDED", [])):
        total.add(json.loads(entry["Output"]))
    for entry in _results(s3, bucket, files.get("FAILED", [])):
        _fail_batch(total, entry, id_column, entry.get("Error") or "BatchFailed", entry.get("Cause") or "failed")
    for entry in _results(s3, bucket, files.get("PENDING", [])):
        _fail_batch(total, entry, id_column, "NotStarted", "the batch was not started")
    if total.failed_count:
        out_bucket, out_key = split_s3_uri(failures_uri)
        s3.put_object(Bucket=out_bucket, Key=out_key, ContentType="application/json",
                      Body=json.dumps(total.to_dict(), indent=1).encode())
        raise IngestError(f"{describe_failures(total.failed, total.failed_count)}; all of them in {failures_uri}")
    return {contract.RECORDS: total.ingested, "calls": total.calls}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    details = event[contract.RESULT_WRITER]
    id_column = feature_spec().group(event[contract.GROUP]).record_identifier.source_column
    result = summarise(client("s3"), f"s3://{details['Bucket']}/{details['Key']}", event[contract.FAILURES_URI],
                       id_column)
    logger.info("ingest summarised", extra=result)
    return result
