"""ChurnFeatureStore: the feature group comes from the spec; its role and clean-up are least privilege."""

from __future__ import annotations

import json
import re

import pytest

from churn import naming
from churn.schema import FeatureSpec

FEATURE_GROUP_PATTERN = re.compile(r"^[a-zA-Z0-9]([_-]*[a-zA-Z0-9]){0,63}$")
MODEL_PACKAGE_GROUP_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
GLUE_NAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_]*$")


def test_feature_group_is_the_spec(main, spec):
    _, group = main.one("AWS::SageMaker::FeatureGroup")
    props = group["Properties"]
    assert props["FeatureDefinitions"] == spec.feature_definitions()
    assert props["RecordIdentifierFeatureName"] == spec.record_identifier.name
    assert props["EventTimeFeatureName"] == spec.event_time.name
    assert props["FeatureGroupName"] == f"churnpipeline-churn-{spec.fingerprint()}"


def test_online_and_offline_stores_are_encrypted_and_catalogued(main, spec):
    key_id, _ = main.one("AWS::KMS::Key")
    bucket_id, _ = main.one("AWS::S3::Bucket")
    role_id = next(k for k in main.resources("AWS::IAM::Role") if k.startswith("FeatureStoreOfflineStoreRole"))
    _, group = main.one("AWS::SageMaker::FeatureGroup")
    props = group["Properties"]
    key = {"Fn::GetAtt": [key_id, "Arn"]}
    assert props["OnlineStoreConfig"] == {"EnableOnlineStore": True, "SecurityConfig": {"KmsKeyId": key}}
    assert props["OfflineStoreConfig"] == {
        "S3StorageConfig": {
            "S3Uri": {"Fn::Join": ["", ["s3://", {"Ref": bucket_id}, "/offline-store"]]},
            "KmsKeyId": key,
        },
        "DisableGlueTableCreation": False,
        "DataCatalogConfig": {
            "Catalog": "AwsDataCatalog",
            "Database": "churn_pipeline_feature_store",
            "TableName": f"churn_features_{spec.fingerprint()}",
        },
    }
    assert props["RoleArn"] == {"Fn::GetAtt": [role_id, "Arn"]}
    # Feature Store creates the table in our database, with the role's policy in place.
    database_id, _ = main.one("AWS::Glue::Database")
    assert database_id in group["DependsOn"]
    assert any(d.startswith("FeatureStoreOfflineStoreRoleDefaultPolicy") for d in group["DependsOn"])


def test_offline_store_role_is_least_privilege(main):
    roles = {k: v for k, v in main.resources("AWS::IAM::Role").items() if k.startswith("FeatureStoreOfflineStoreRole")}
    ((role_id, role),) = roles.items()
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "sagemaker.amazonaws.com"
    }
    assert "ManagedPolicyArns" not in role["Properties"]
    text = json.dumps(main.json)
    assert "AmazonSageMakerFeatureStoreAccess" not in text
    (policy,) = [
        p for p in main.resources("AWS::IAM::Policy").values() if p["Properties"]["Roles"] == [{"Ref": role_id}]
    ]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    actions = sorted(a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))
    assert actions == sorted(
        [
            "s3:PutObject",
            "s3:PutObjectAcl",
            "s3:GetObject",
            "s3:GetBucketAcl",
            "kms:GenerateDataKey",
            "kms:Encrypt",
            "kms:Decrypt",
            "glue:GetTable",
            "glue:UpdateTable",
        ]
    )
    s3_objects = next(s for s in statements if "s3:PutObject" in s["Action"])
    assert s3_objects["Resource"]["Fn::Join"][1][-1] == "/offline-store/*"


def test_glue_table_is_dropped_on_destroy_before_the_feature_group(main, spec):
    feature_group_id, _ = main.one("AWS::SageMaker::FeatureGroup")
    ((cleanup_id, cleanup),) = main.resources("Custom::GlueTableCleanup").items()
    assert cleanup["Properties"]["DatabaseName"] == "churn_pipeline_feature_store"
    assert cleanup["Properties"]["TableName"] == f"churn_features_{spec.fingerprint()}"
    # Depending on the feature group means: created after it, deleted before it.
    assert cleanup["DependsOn"] == [feature_group_id]
    functions = main.resources("AWS::Lambda::Function")
    handlers = {f["Properties"].get("Handler") for f in functions.values()}
    assert "churn.handlers.glue_cleanup.handler" in handlers


def test_another_spec_makes_another_feature_group(main, variant, variant_spec_path):
    spec = FeatureSpec.load(variant_spec_path)
    _, group = variant.one("AWS::SageMaker::FeatureGroup")
    _, main_group = main.one("AWS::SageMaker::FeatureGroup")
    assert group["Properties"]["FeatureDefinitions"] == spec.feature_definitions()
    assert group["Properties"]["FeatureGroupName"] == f"churn-dev-churn-{spec.fingerprint()}"
    assert group["Properties"]["FeatureGroupName"] != main_group["Properties"]["FeatureGroupName"]
    assert group["Properties"]["RecordIdentifierFeatureName"] == "account_id"
    table = group["Properties"]["OfflineStoreConfig"]["DataCatalogConfig"]["TableName"]
    assert table == f"churn_features_{spec.fingerprint()}"


@pytest.mark.parametrize("stack_name", ["ChurnPipeline", "Churn-Dev", "A" + "b" * 127, "x--y"])
def test_derived_names_are_valid(stack_name):
    fingerprint = "0123abcd"
    group = naming.feature_group_name(stack_name, fingerprint)
    assert FEATURE_GROUP_PATTERN.match(group) and len(group) <= 64 and group.endswith(fingerprint)
    packages = naming.model_package_group_name(stack_name)
    assert MODEL_PACKAGE_GROUP_PATTERN.match(packages) and len(packages) <= 63
    for glue in (naming.glue_database_name(stack_name), naming.offline_table_name(fingerprint)):
        assert GLUE_NAME_PATTERN.match(glue) and len(glue) <= 252
    assert len(naming.work_group_name(stack_name)) <= 128
