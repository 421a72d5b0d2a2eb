"""What the Lambda handler tests share: a Powertools-ready environment and moto S3 with one bucket."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from tests.support.moto import lambda_env  # noqa: F401 - a fixture, shared with tests/infra
from tests.unit.lambda_support import BUCKET


@pytest.fixture
def s3(lambda_env):  # noqa: F811 - the fixture imported above
    """moto S3 with the test bucket created."""
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client
