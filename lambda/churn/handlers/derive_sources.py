"""Lambda "Derive sources": turn the run's input file into one CSV per feature group (the spec's derivation)."""

from __future__ import annotations

from typing import Any

from churn import contract
from churn.csv_input import text_lines
from churn.derivations import DERIVATIONS, DerivationError
from churn.handlers._runtime import client, feature_spec, logger, tracer
from churn.layout import STAGED_SOURCE


def derive_sources(s3: Any, *, bucket: str, key: str, execution: str) -> dict[str, str]:
    """{feature group: key of its CSV}, written under staging/<execution>/."""
    spec = feature_spec()
    source = f"s3://{bucket}/{key}"
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except s3.exceptions.NoSuchKey:
        raise DerivationError(f"{source}: object not found") from None
    keys = {}
    for group, csv_text in DERIVATIONS[spec.derive].derive(text_lines(body, source), source).items():
        keys[group] = STAGED_SOURCE.format(execution=execution, group=group)
        s3.put_object(Bucket=bucket, Key=keys[group], Body=csv_text.encode("utf-8"), ContentType="text/csv")
    return keys


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    keys = derive_sources(client("s3"), bucket=event[contract.BUCKET], key=event[contract.OBJECT_KEY],
                          execution=event[contract.EXECUTION])
    logger.info("sources derived", extra={"sources": keys})
    return keys
