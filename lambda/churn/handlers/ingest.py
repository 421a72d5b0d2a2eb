"""Lambda "Ingest features": one Distributed Map batch of CSV rows -> PutRecord calls."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from churn.features import canonical_event_time
from churn.handlers._runtime import client, feature_spec, logger, metrics, tracer
from churn.ingest import FAILED_BATCH_LOG_MESSAGE, IngestError, ingest_batch

WORKERS = int(os.environ.get("INGEST_WORKERS", "8"))


def clean_item(item: dict[str, Any]) -> dict[str, str | None]:
    """The CSV item reader keys rows by the header as written: drop a BOM and stray spaces."""
    return {str(k).lstrip("\ufeff").strip(): (None if v is None else str(v)) for k, v in item.items()}


def featurestore_client() -> Any:
    """The container's one PutRecord client: a connection per worker, adaptive retries. Records are
    built by to_feature_store_record (names from the spec, every value a str) and the service
    validates them anyway (a rejected record is reported by id), so botocore's client-side check
    is skipped: the Lambda is CPU-bound on PutRecord calls."""
    return client("sagemaker-featurestore-runtime", max_pool_connections=WORKERS, parameter_validation=False)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    items = [clean_item(item) for item in event["Items"]]
    event_time = canonical_event_time(event["BatchInput"]["event_time"])
    result = ingest_batch(
        items,
        spec=feature_spec(),
        feature_group_name=os.environ["FEATURE_GROUP_NAME"],
        event_time=event_time,
        client=featurestore_client(),
        max_workers=WORKERS,
    )
    metrics.add_metric(name="RecordsIngested", unit=MetricUnit.Count, value=result.ingested)
    metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=len(result.failed))
    if result.failed:
        # The Map's error names no record (it reports its failure threshold): the log keeps them all.
        logger.error(FAILED_BATCH_LOG_MESSAGE, extra={"failed_count": len(result.failed), "batch_items": len(items),
                                                      "event_time": event_time, "failed_records": result.failed})
        shown = ", ".join(f"{f['record_id']} ({f['error']})" for f in result.failed[:5])
        more = f" and {len(result.failed) - 5} more" if len(result.failed) > 5 else ""
        raise IngestError(f"{len(result.failed)} of {len(items)} records failed: {shown}{more}")
    return result.to_dict()
