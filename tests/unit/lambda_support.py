"""Lambda test scaffolding shared by the handler tests (the fixtures are in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass

BUCKET = "churn-test-bucket"


@dataclass
class FakeContext:
    """The attributes Powertools reads from a Lambda context."""

    function_name: str = "test"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test"
    aws_request_id: str = "req-1"
