"""Lambda "Ingest batch": one Distributed Map batch of a feature group's CSV rows -> BatchWriteRecord calls."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from churn import contract
from churn.config import PipelineSettings
from churn.csv_input import map_item_rows
from churn.features import canonical_event_time
from churn.handlers import environment
from churn.handlers._runtime import client, feature_spec, logger, metrics, tracer
from churn.ingest import ingest_batch

WORKERS = int(os.environ.get(environment.INGEST_WORKERS, PipelineSettings.ingest_workers))


def featurestore_client() -> Any:
    """The container's one Feature Store client: a connection per worker, retries with backoff. Records are
    built by churn.ingest (names from the spec, every value a str) and the service validates them
    anyway (a rejected record is reported with its line), so botocore's client-side check is skipped:
    the Lambda spends its CPU building and signing requests."""
    return client("sagemaker-featurestore-runtime", max_pool_connections=WORKERS, parameter_validation=False)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Items are `{ITEM_INDEX: <position in the file>, ITEM_ROW: {column: text}}` (the Map's ItemSelector);
    BatchInput names the feature group and the run's event time. Failed records are returned, not
    raised: "Summarise ingest" reads every batch's result and names them."""
    batch = event["BatchInput"]
    result = ingest_batch(
        map_item_rows(event["Items"]),
        group=feature_spec().group(batch[contract.GROUP]),
        feature_group_name=batch[contract.FEATURE_GROUP_NAME],
        event_time=canonical_event_time(batch[contract.EVENT_TIME]),
        client=featurestore_client(),
        max_workers=WORKERS,
    )
    metrics.add_metric(name="RecordsIngested", unit=MetricUnit.Count, value=result.ingested)
    metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=result.failed_count)
    if result.failed_count:
        logger.error("ingest batch had failed records", extra={"group": batch[contract.GROUP], **result.to_dict()})
    return result.to_dict()
