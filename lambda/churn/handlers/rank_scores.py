"""Lambda "Rank scores": read the Batch Transform output, rank every customer, write scores.csv."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from churn.handlers._runtime import client, feature_spec, logger, metrics, split_s3_uri, tracer
from churn.scoring import (
    TOP_CUSTOMERS,
    TRANSFORM_OUTPUT_SUFFIX,
    ScoringError,
    model_version_from_arn,
    rank,
    read_predictions,
    scores_csv,
)


def transform_output_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    """Every `*.out` object under the prefix, in key order (one per scoring input file)."""
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", []) if item["Key"].endswith(TRANSFORM_OUTPUT_SUFFIX)]
    return sorted(keys)


def _lines(body: Any) -> Iterator[str]:
    for line in body.iter_lines():
        yield line.decode("utf-8")


def rank_transform_output(
    s3: Any, *, transform_output: str, scores_uri: str, model_version: str, id_column: str, top: int = TOP_CUSTOMERS
) -> dict[str, Any]:
    bucket, prefix = split_s3_uri(transform_output.rstrip("/") + "/")
    keys = transform_output_keys(s3, bucket, prefix)
    if not keys:
        raise ScoringError(f"no Batch Transform output (*{TRANSFORM_OUTPUT_SUFFIX}) under {transform_output}")

    def predictions() -> Iterator[tuple[str, float]]:
        for key in keys:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
            yield from read_predictions(_lines(body), id_column, f"s3://{bucket}/{key}")

    scores = rank(predictions())
    out_bucket, out_key = split_s3_uri(scores_uri)
    s3.put_object(Bucket=out_bucket, Key=out_key, Body=scores_csv(scores, id_column, model_version).encode("utf-8"),
                  ContentType="text/csv")
    return {
        "scores_uri": scores_uri,
        "customers": len(scores),
        "model_version": model_version,
        "top": [score.to_dict() for score in scores[:top]],
    }


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    result = rank_transform_output(
        client("s3"),
        transform_output=event["transform_output"],
        scores_uri=event["scores_uri"],
        model_version=model_version_from_arn(event["model_package_arn"]),
        id_column=feature_spec().record_identifier.name,
    )
    metrics.add_metric(name="CustomersScored", unit=MetricUnit.Count, value=result["customers"])
    logger.info("scores ranked", extra={k: v for k, v in result.items() if k != "top"})
    return result
