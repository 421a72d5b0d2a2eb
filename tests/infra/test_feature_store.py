"""FeatureStore: a feature group per spec group; its role and clean-up are least privilege."""

from __future__ import annotations

import json
import re

import pytest

from churn import naming
from churn.schema import FeatureSpec
from tests.infra.conftest import CDNOW_SPEC, synthesize

FEATURE_GROUP_PATTERN = re.compile(r"^[a-zA-Z0-9]([_-]*[a-zA-Z0-9]){0,63}$")
MODEL_PACKAGE_GROUP_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
GLUE_NAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_]*$")


def test_feature_group_is_the_spec(main, group):
    _, resource = main.one("AWS::SageMaker::FeatureGroup")
    props = resource["Properties"]
    assert props["FeatureDefinitions"] == group.feature_definitions()
    assert props["RecordIdentifierFeatureName"] == group.record_identifier.name
    assert props["EventTimeFeatureName"] == group.event_time.name
    assert props["FeatureGroupName"] == f"churnpipeline-churn-{group.fingerprint()}"


def test_several_groups_make_a_feature_group_each_the_labels_offline_only(cdnow):
    spec = FeatureSpec.load(CDNOW_SPEC)
    key_id, _ = cdnow.one("AWS::KMS::Key")
    groups = {g["Properties"]["FeatureGroupName"]: g["Properties"]
              for g in cdnow.resources("AWS::SageMaker::FeatureGroup").values()}
    assert set(groups) == {f"churnpipeline-{g.name}-{g.fingerprint()}" for g in spec.all_groups}
    for group in spec.all_groups:
        props = groups[f"churnpipeline-{group.name}-{group.fingerprint()}"]
        assert props["FeatureDefinitions"] == group.feature_definitions(), group.name
        assert props["EventTimeFeatureName"] == group.event_time.name
        table = props["OfflineStoreConfig"]["DataCatalogConfig"]["TableName"]
        assert table == f"{group.name}_features_{group.fingerprint()}"
        if group.online:
            assert props["OnlineStoreConfig"] == {"EnableOnlineStore": True,
                                                  "SecurityConfig": {"KmsKeyId": {"Fn::GetAtt": [key_id, "Arn"]}}}
        else:
            assert "OnlineStoreConfig" not in props, group.name
    assert [g.name for g in spec.all_groups if not g.online] == ["labels"]
    cleanups = cdnow.resources("Custom::GlueTableCleanup")
    assert sorted(c["Properties"]["TableName"] for c in cleanups.values()) == sorted(
        f"{g.name}_features_{g.fingerprint()}" for g in spec.all_groups)


def test_an_online_ttl_reaches_the_online_store_config(tmp_path):
    spec = json.loads(CDNOW_SPEC.read_text())
    spec["feature_groups"][1]["online_ttl"] = {"value": 30, "unit": "Days"}
    path = tmp_path / "ttl.spec.json"
    path.write_text(json.dumps(spec))
    data = tmp_path / "cdnow.txt"
    data.write_text("00001 19970101  1   11.77\n")
    synthesized = synthesize(tmp_path / "out", {"spec": str(path), "data": str(data)})
    activity = FeatureSpec.load(path).group("activity")
    (props,) = [g["Properties"] for g in synthesized.resources("AWS::SageMaker::FeatureGroup").values()
                if g["Properties"]["FeatureGroupName"].endswith(activity.fingerprint())]
    assert props["OnlineStoreConfig"]["TtlDuration"] == {"Unit": "Days", "Value": 30}


def test_online_and_offline_stores_are_encrypted_and_catalogued(main, group):
    key_id, _ = main.one("AWS::KMS::Key")
    bucket_id, _ = main.one("AWS::S3::Bucket")
    role_id = next(k for k in main.resources("AWS::IAM::Role") if k.startswith("FeatureStoreOfflineStoreRole"))
    _, resource = main.one("AWS::SageMaker::FeatureGroup")
    props = resource["Properties"]
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
            "TableName": f"churn_features_{group.fingerprint()}",
        },
    }
    assert props["RoleArn"] == {"Fn::GetAtt": [role_id, "Arn"]}
    # Feature Store creates the table in our database, with the role's policy in place.
    database_id, _ = main.one("AWS::Glue::Database")
    assert database_id in resource["DependsOn"]
    assert any(d.startswith("FeatureStoreOfflineStoreRoleDefaultPolicy") for d in resource["DependsOn"])


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


def test_glue_table_is_dropped_on_destroy_before_the_feature_group(main, group):
    feature_group_id, _ = main.one("AWS::SageMaker::FeatureGroup")
    ((cleanup_id, cleanup),) = main.resources("Custom::GlueTableCleanup").items()
    assert cleanup["Properties"]["DatabaseName"] == "churn_pipeline_feature_store"
    assert cleanup["Properties"]["TableName"] == f"churn_features_{group.fingerprint()}"
    # Depending on the feature group means: created after it, deleted before it.
    assert cleanup["DependsOn"] == [feature_group_id]
    functions = main.resources("AWS::Lambda::Function")
    handlers = {f["Properties"].get("Handler") for f in functions.values()}
    assert "churn.handlers.glue_cleanup.handler" in handlers


def test_another_spec_makes_another_feature_group(main, variant, variant_spec_path):
    spec = FeatureSpec.load(variant_spec_path).groups[0]
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
    for group_name in ("churn", "a" * 20):
        group = naming.feature_group_name(stack_name, group_name, fingerprint)
        assert FEATURE_GROUP_PATTERN.match(group) and len(group) <= 64
        assert group.endswith(f"-{group_name}-{fingerprint}")
    packages = naming.model_package_group_name(stack_name)
    assert MODEL_PACKAGE_GROUP_PATTERN.match(packages) and len(packages) <= 63
    for glue in (naming.glue_database_name(stack_name), naming.offline_table_name("a" * 20, fingerprint)):
        assert GLUE_NAME_PATTERN.match(glue) and len(glue) <= 252
    assert len(naming.work_group_name(stack_name)) <= 128
