"""DataStore: key, bucket, raw data deployment, Athena workgroup and Glue database."""

from __future__ import annotations

import json
import re

import pytest
from aws_cdk.assertions import Match

from churn import naming
from churn.layout import SAMPLE_DATA_NAME
from stacks.storage import stage


def test_key_rotates_and_is_deleted_with_the_stack(main):
    main.template.has_resource(
        "AWS::KMS::Key",
        {
            "Properties": {"EnableKeyRotation": True, "PendingWindowInDays": 7},
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
        },
    )


def test_key_policy_lets_cloudwatch_logs_of_this_account_use_it(main):
    _, key = main.one("AWS::KMS::Key")
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    logs = [s for s in statements if s.get("Sid") == "AllowCloudWatchLogsOfThisAccount"]
    assert len(logs) == 1
    principal = logs[0]["Principal"]["Service"]
    assert principal == {"Fn::Join": ["", ["logs.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}
    assert "kms:EncryptionContext:aws:logs:arn" in logs[0]["Condition"]["ArnLike"]
    alarms = [s for s in statements if s.get("Sid") == "AllowCloudWatchAlarmsToPublishToEncryptedTopic"]
    assert alarms and alarms[0]["Principal"] == {"Service": "cloudwatch.amazonaws.com"}


def test_bucket_is_private_ssl_only_and_kms_encrypted(main):
    key_id, _ = main.one("AWS::KMS::Key")
    ((bucket_id, bucket),) = main.resources("AWS::S3::Bucket").items()
    props = bucket["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": {"Fn::GetAtt": [key_id, "Arn"]},
    }
    assert bucket["DeletionPolicy"] == "Delete"
    main.template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": {"Ref": bucket_id},
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            },
        },
    )
    ((cleanup_id, cleanup),) = main.resources("Custom::S3AutoDeleteObjects").items()
    assert cleanup["Properties"]["BucketName"] == {"Ref": bucket_id}


def _depends_on(synthesized, logical_id: str) -> set[str]:
    """Every resource `logical_id` depends on, directly or through others (DependsOn, Ref, GetAtt)."""
    resources = synthesized.json["Resources"]

    def direct(rid: str) -> set[str]:
        text = json.dumps({k: v for k, v in resources[rid].items() if k != "DependsOn"})
        named = {m for m in re.findall(r'"(?:Ref|Fn::GetAtt)": \[?"([A-Za-z0-9]+)"', text) if m in resources}
        return named | set(resources[rid].get("DependsOn", []))

    seen, todo = set(), [logical_id]
    while todo:
        for found in direct(todo.pop()) - seen:
            seen.add(found)
            todo.append(found)
    return seen


@pytest.mark.parametrize("name", ["main", "cdnow"])
def test_destroy_deletes_the_feature_groups_then_empties_the_bucket(request, name):
    """CloudFormation deletes a resource before what it depends on. Feature Store writes the offline store
    until its group is gone, so every feature group depends on the custom resource that empties the bucket:
    the groups go first, then the bucket is emptied, then deleted."""
    synthesized = request.getfixturevalue(name)
    (empty_id,) = synthesized.resources("Custom::S3AutoDeleteObjects")
    bucket_id, _ = synthesized.one("AWS::S3::Bucket")
    groups = synthesized.resources("AWS::SageMaker::FeatureGroup")
    assert len(groups) == (1 if name == "main" else 3)
    for group_id in groups:
        assert empty_id in synthesized.json["Resources"][group_id]["DependsOn"], group_id
        assert group_id not in _depends_on(synthesized, empty_id), group_id
    assert bucket_id in _depends_on(synthesized, empty_id)


def test_nothing_is_retained_on_destroy(main, variant):
    for synthesized in (main, variant):
        for logical_id, resource in synthesized.json["Resources"].items():
            assert resource.get("DeletionPolicy", "Delete") == "Delete", logical_id
            assert resource.get("UpdateReplacePolicy", "Delete") == "Delete", logical_id


def test_sample_csv_is_deployed_into_raw(main):
    main.template.has_resource_properties(
        "Custom::CDKBucketDeployment",
        {"DestinationBucketKeyPrefix": "raw/", "Prune": False},
    )


def test_staged_data_keeps_the_name_churn_csv(tmp_path):
    source = tmp_path / "customers-2026.csv"
    source.write_text("customerID,Churn\nA,No\n")
    folder = stage(SAMPLE_DATA_NAME, source.read_bytes()).parent
    assert [p.name for p in folder.iterdir()] == ["churn.csv"]
    assert (folder / "churn.csv").read_text() == source.read_text()


def test_athena_workgroup_enforces_encrypted_results_under_query(main):
    key_id, _ = main.one("AWS::KMS::Key")
    bucket_id, _ = main.one("AWS::S3::Bucket")
    main.template.has_resource_properties(
        "AWS::Athena::WorkGroup",
        {
            "Name": naming.work_group_name("ChurnPipeline"),
            "RecursiveDeleteOption": True,
            "State": "ENABLED",
            "WorkGroupConfiguration": {
                "EnforceWorkGroupConfiguration": True,
                "ResultConfiguration": {
                    "OutputLocation": {"Fn::Join": ["", ["s3://", {"Ref": bucket_id}, "/query/"]]},
                    "EncryptionConfiguration": {
                        "EncryptionOption": "SSE_KMS",
                        "KmsKey": {"Fn::GetAtt": [key_id, "Arn"]},
                    },
                },
            },
        },
    )


def test_glue_database_for_the_offline_store(main):
    main.template.has_resource_properties(
        "AWS::Glue::Database",
        {"CatalogId": {"Ref": "AWS::AccountId"}, "DatabaseInput": {"Name": "churn_pipeline_feature_store"}},
    )


def test_log_groups_are_encrypted_and_expire(main):
    key_id, _ = main.one("AWS::KMS::Key")
    groups = main.resources("AWS::Logs::LogGroup")
    assert len(groups) >= 6
    for logical_id, group in groups.items():
        assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}, logical_id
        assert group["Properties"]["RetentionInDays"] == 30, logical_id
        assert group["DeletionPolicy"] == "Delete", logical_id
