"""Lambda "Evaluate model": read evaluation.json from the model artifact and apply the quality gate."""

from __future__ import annotations

import json
from typing import Any

from churn import contract
from churn.handlers._runtime import client, logger, split_s3_uri, tracer
from churn.model_quality import EVALUATION_FILE, quality_gate, read_evaluation_from_model_tarball


def evaluate_artifact(s3: Any, model_artifact: str, output_prefix: str, threshold: float) -> dict[str, Any]:
    bucket, key = split_s3_uri(model_artifact)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    evaluation = read_evaluation_from_model_tarball(body, model_artifact)
    decision = quality_gate(evaluation, threshold)
    out_bucket, out_prefix = split_s3_uri(output_prefix.rstrip("/") + "/")
    out_key = f"{out_prefix}{EVALUATION_FILE}"
    s3.put_object(Bucket=out_bucket, Key=out_key, Body=json.dumps(evaluation, indent=2).encode(),
                  ContentType="application/json")
    summary_keys = ("validation_auc", "pr_auc", "log_loss", "accuracy", "precision", "recall", "f1")
    return {
        **decision.to_dict(),
        contract.EVALUATION_URI: f"s3://{out_bucket}/{out_key}",
        "metrics": {k: evaluation[k] for k in summary_keys if k in evaluation},
    }


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    result = evaluate_artifact(client("s3"), event[contract.MODEL_ARTIFACT], event[contract.OUTPUT_PREFIX],
                               float(event[contract.THRESHOLD]))
    logger.info("model evaluated", extra=result)
    return result
