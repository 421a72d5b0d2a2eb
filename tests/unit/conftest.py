"""What the Lambda handler tests share: a Powertools-ready context and moto S3 with one bucket."""

from __future__ import annotations

import boto3
import pytest
from lambda_support import BUCKET
from moto import mock_aws

from churn.handlers import _runtime


@pytest.fixture
def lambda_env(monkeypatch, spec):
    """The environment the stack gives the functions, fake credentials, no cached clients."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("FEATURE_SPEC", spec.to_json())
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    _runtime.client.cache_clear()
    _runtime.feature_spec.cache_clear()
    yield
    _runtime.client.cache_clear()


@pytest.fixture
def s3(lambda_env):
    """moto S3 with the test bucket created."""
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client
