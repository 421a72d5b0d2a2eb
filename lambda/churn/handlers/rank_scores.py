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
    rank_outputs,
    scores_csv,
)


def transform_output_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    """Every `*.out` object under the prefix, in key order (one per scoring input file)."""
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", []) if item["Key"].endswith(TRANSFORM_OUTPUT_SUFFIX)]
    return sorted(keys)


_TEXT_CHUNK = 1 << 20  # characters split into lines at a time


def _lines(body: Any) -> Iterator[str]:
    """The object's lines as `body.iter_lines()` gives them (split at \\n, \\r and \\r\\n, without the
    line break), decoded as UTF-8. The object is read and decoded at once and split a megabyte at a
    time, many times faster than line by line; undecodable bytes go line by line, so that the error
    is raised at the line it was raised at before.
    """
    data = body.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        for line in data.splitlines():
            yield line.decode("utf-8")
        return
    del data
    start = 0
    while start < len(text):
        end = text.find("\n", start + _TEXT_CHUNK) + 1 or len(text)  # a cut after \n splits no \r\n
        lines = text[start:end].replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if not lines[-1]:  # nothing after the last line break (bytes.splitlines gives no empty line)
            lines.pop()
        yield from lines
        start = end


def rank_transform_output(
    s3: Any, *, transform_output: str, scores_uri: str, model_version: str, id_column: str, top: int = TOP_CUSTOMERS
) -> dict[str, Any]:
    bucket, prefix = split_s3_uri(transform_output.rstrip("/") + "/")
    keys = transform_output_keys(s3, bucket, prefix)
    if not keys:
        raise ScoringError(f"no Batch Transform output (*{TRANSFORM_OUTPUT_SUFFIX}) under {transform_output}")

    def outputs() -> Iterator[tuple[Iterator[str], str]]:
        for key in keys:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
            yield _lines(body), f"s3://{bucket}/{key}"

    scores = rank_outputs(outputs(), id_column)
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
