"""What every handler shares: Powertools, the feature spec from the environment, AWS clients."""

from __future__ import annotations

import os
from functools import cache, lru_cache
from typing import Any
from urllib.parse import urlparse

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from botocore.config import Config

from churn.handlers import environment
from churn.schema import FeatureSpec

SERVICE = os.environ.get(environment.SERVICE_NAME_VARIABLE, environment.SERVICE_NAME)
logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(service=SERVICE, namespace=os.environ.get(environment.METRICS_NAMESPACE_VARIABLE,
                                                            environment.METRICS_NAMESPACE))


@lru_cache(maxsize=1)
def feature_spec() -> FeatureSpec:
    """The spec the stack was deployed with (FEATURE_SPEC holds its compact JSON)."""
    return FeatureSpec.from_json(os.environ[environment.FEATURE_SPEC], origin=environment.FEATURE_SPEC)


@cache
def client(service: str, max_pool_connections: int = 10, parameter_validation: bool = True) -> Any:
    """One shared client per service; throttling and transient errors are retried with exponential
    backoff ("standard" mode: "adaptive" also rate-limits the client itself, which made throttled
    ingest 3.5x slower, bench/README.md).

    `parameter_validation=False` skips botocore's client-side check of the request against the
    service model (the service checks it anyway), a part of the client's CPU per call.
    """
    config = Config(
        retries={"mode": "standard", "max_attempts": 10},
        max_pool_connections=max_pool_connections,
        parameter_validation=parameter_validation,
    )
    return boto3.client(service, config=config)


def split_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")
