"""Stateful resources keep their logical IDs: a new logical ID makes CloudFormation replace the resource
(a new bucket, key, feature group, registry), so a refactoring of stacks/ must not move them.

The IDs are those of the Telco stack as deployed before the phases became fragments (read from the
synthesized template of commit 5e4d187)."""

from __future__ import annotations

STATEFUL_IDS = {
    "AWS::KMS::Key": "StorageKeyBAA9457B",
    "AWS::S3::Bucket": "StorageBucket5CB7C8EA",
    "AWS::Glue::Database": "StorageDatabase89DBCE01",
    "AWS::Athena::WorkGroup": "StorageWorkGroupD451C10E",
    "AWS::SageMaker::FeatureGroup": "FeatureStoreFeatureGroupCE1132D9",
    "AWS::SageMaker::ModelPackageGroup": "PipelineModelPackageGroup26A0C73B",
}


def test_stateful_resources_keep_their_logical_ids(main):
    for resource_type, logical_id in STATEFUL_IDS.items():
        assert list(main.resources(resource_type)) == [logical_id], resource_type


def test_the_model_registry_keeps_its_logical_id_with_several_groups(cdnow):
    """The registry outlives a change of spec; the feature groups, named by their schema, do not."""
    for resource_type in ("AWS::KMS::Key", "AWS::S3::Bucket", "AWS::SageMaker::ModelPackageGroup"):
        assert list(cdnow.resources(resource_type)) == [STATEFUL_IDS[resource_type]], resource_type
