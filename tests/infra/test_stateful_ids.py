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
    # The state machine holds the execution history, its log group the execution logs.
    "AWS::StepFunctions::StateMachine": "PipelineStateMachine1814BD05",
    # Custom resources whose Delete removes data: under a new logical ID CloudFormation would delete the
    # old one, emptying the bucket, dropping the live Glue table or deleting the registered models.
    "Custom::S3AutoDeleteObjects": "StorageBucketAutoDeleteObjectsCustomResource778EAED0",
    "Custom::GlueTableCleanup": "FeatureStoreTableCleanupTableCleanup65cc790c581B4E9D",
    "Custom::ModelRegistryCleanup": "RegistryCleanup5741BC87",
    "Custom::CDKBucketDeployment": "StorageRawDataCustomResource256MiBA876DAB9",
}
# Their providers' functions: CloudFormation refuses to change a custom resource's service token.
SERVICE_TOKENS = {
    "Custom::S3AutoDeleteObjects": "CustomS3AutoDeleteObjectsCustomResourceProviderHandler9D90184F",
    "Custom::GlueTableCleanup": "FeatureStoreTableCleanupProviderframeworkonEvent6676DEE5",
    "Custom::ModelRegistryCleanup": "RegistryCleanupProviderframeworkonEventE624127E",
    "Custom::CDKBucketDeployment": "CustomCDKBucketDeployment8693BB64968944B69AAFB0CC9EB8756C256MiB5F7BD223",
}
# What the feature group cannot change in place (an update would replace it, which fails under its name).
TELCO_FEATURE_GROUP = {
    "Description": "Churn features, schema 65cc790c",
    "RoleArn": {"Fn::GetAtt": ["FeatureStoreOfflineStoreRoleCBF88EFB", "Arn"]},
    "FeatureGroupName": "churnpipeline-churn-65cc790c",
}


def test_stateful_resources_keep_their_logical_ids(main):
    for resource_type, logical_id in STATEFUL_IDS.items():
        assert list(main.resources(resource_type)) == [logical_id], resource_type


def test_the_state_machine_log_group_keeps_its_logical_id(main):
    (machine,) = main.resources("AWS::StepFunctions::StateMachine").values()
    destination = machine["Properties"]["LoggingConfiguration"]["Destinations"][0]
    assert destination["CloudWatchLogsLogGroup"]["LogGroupArn"] == {
        "Fn::GetAtt": ["PipelineStateMachineLogsC1114D0C", "Arn"]}


def test_custom_resources_keep_their_providers(main):
    for resource_type, function_id in SERVICE_TOKENS.items():
        (resource,) = main.resources(resource_type).values()
        assert resource["Properties"]["ServiceToken"] == {"Fn::GetAtt": [function_id, "Arn"]}, resource_type


def test_the_telco_feature_group_is_not_replaced(main):
    _, group = main.one("AWS::SageMaker::FeatureGroup")
    assert {name: group["Properties"][name] for name in TELCO_FEATURE_GROUP} == TELCO_FEATURE_GROUP


def test_the_model_registry_keeps_its_logical_id_with_several_groups(cdnow):
    """The registry outlives a change of spec; the feature groups, named by their schema, do not."""
    for resource_type in ("AWS::KMS::Key", "AWS::S3::Bucket", "AWS::SageMaker::ModelPackageGroup",
                          "Custom::ModelRegistryCleanup", "Custom::S3AutoDeleteObjects"):
        assert list(cdnow.resources(resource_type)) == [STATEFUL_IDS[resource_type]], resource_type
