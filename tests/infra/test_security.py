"""Security properties that span constructs (the per-construct ones are tested with each construct)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("name", ["main", "variant", "cdnow"])
def test_every_function_logs_to_an_encrypted_expiring_group_of_the_stack(request, name):
    """aws-cdk-lib's own handlers included: none may fall back to an implicit /aws/lambda group
    (unencrypted, kept forever, left behind by `cdk destroy`)."""
    synthesized = request.getfixturevalue(name)
    key_id, _ = synthesized.one("AWS::KMS::Key")
    groups = synthesized.resources("AWS::Logs::LogGroup")
    functions = synthesized.resources("AWS::Lambda::Function")
    assert len(functions) >= 6
    for logical_id, function in functions.items():
        target = function["Properties"].get("LoggingConfig", {}).get("LogGroup")
        assert isinstance(target, dict) and set(target) == {"Ref"}, (logical_id, target)
        group = groups[target["Ref"]]
        assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}, logical_id
        assert group["Properties"]["RetentionInDays"] > 0 and group["DeletionPolicy"] == "Delete", logical_id
