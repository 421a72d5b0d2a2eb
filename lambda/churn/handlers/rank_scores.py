"""Lambda "Rank scores": read the Batch Transform output, rank every customer, write scores.csv."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from churn import contract
from churn.handlers._runtime import client, feature_spec, logger, metrics, split_s3_uri, tracer
from churn.layout import TRANSFORM_OUTPUT_SUFFIX
from churn.scoring import TOP_CUSTOMERS, ScoringError, model_version_from_arn, rank, read_predictions, scores_csv


def transform_output_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    """Every `*.out` object under the prefix, in key order (one per scoring input file)."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    # A page without Contents (an empty prefix) gives None
    return sorted(key for key in pages.search("Contents[].Key") if key and key.endswith(TRANSFORM_OUTPUT_SUFFIX))


def _predictions(s3: Any, bucket: str, keys: list[str], id_column: str) -> Iterator[tuple[str, float]]:
    for key in keys:
        source = f"s3://{bucket}/{key}"
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ScoringError(f"{source}: not UTF-8 text (byte {exc.start + 1})") from None
        yield from read_predictions(io.StringIO(text, newline=""), id_column, source)


def rank_transform_output(
    s3: Any, *, transform_output: str, scores_uri: str, model_version: str, id_column: str, top: int = TOP_CUSTOMERS
) -> dict[str, Any]:
    bucket, prefix = split_s3_uri(transform_output.rstrip("/") + "/")
    keys = transform_output_keys(s3, bucket, prefix)
    if not keys:
        raise ScoringError(f"no Batch Transform output (*{TRANSFORM_OUTPUT_SUFFIX}) under {transform_output}")
    ranking = rank(_predictions(s3, bucket, keys, id_column))
    out_bucket, out_key = split_s3_uri(scores_uri)
    s3.put_object(Bucket=out_bucket, Key=out_key, Body=scores_csv(ranking, id_column, model_version).encode("utf-8"),
                  ContentType="text/csv")
    return {
        contract.SCORES_URI: scores_uri,
        contract.CUSTOMERS: len(ranking),
        contract.MODEL_VERSION: model_version,
        contract.TOP: ranking.top(top),
    }


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    result = rank_transform_output(
        client("s3"),
        transform_output=event[contract.TRANSFORM_OUTPUT],
        scores_uri=event[contract.SCORES_URI],
        model_version=model_version_from_arn(event[contract.MODEL_PACKAGE_ARN]),
        id_column=feature_spec().record_identifier.name,
    )
    metrics.add_metric(name="CustomersScored", unit=MetricUnit.Count, value=result[contract.CUSTOMERS])
    logger.info("scores ranked", extra={k: v for k, v in result.items() if k != contract.TOP})
    return result
