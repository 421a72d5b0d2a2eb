"""ChurnFeatureStore: the feature group built from the feature spec, its role, and clean-up on destroy."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from churn.schema import FeatureSpec
from stacks import nag
from stacks.cleanup import CleanupOnDelete
from stacks.storage import OFFLINE_STORE_PREFIX, DataStore

GLUE_CLEANUP_HANDLER = "churn.handlers.glue_cleanup.handler"


class ChurnFeatureStore(Construct):
    """One feature group per schema: its definitions come from the spec, its name from the fingerprint."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: FeatureSpec,
        store: DataStore,
        feature_group_name: str,
        table_name: str,
        lambda_code: lambda_.Code,
        powertools_layer: lambda_.ILayerVersion,
    ) -> None:
        super().__init__(scope, construct_id)
        self.spec = spec
        self.feature_group_name = feature_group_name
        self.database_name = store.database_name
        self.table_name = table_name
        stack = Stack.of(self)
        glue_resources = [
            stack.format_arn(service="glue", resource="catalog"),
            stack.format_arn(service="glue", resource="database", resource_name=store.database_name),
            stack.format_arn(service="glue", resource="table", resource_name=f"{store.database_name}/{table_name}"),
        ]

        # What Feature Store does with this role: write offline-store files, update its Glue table.
        self.offline_store_role = iam.Role(
            self,
            "OfflineStoreRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="Feature Store writes the churn feature group's offline store with this role",
        )
        # The same S3 rights as the AWS managed AmazonSageMakerFeatureStoreAccess policy, limited
        # to this bucket's offline-store/ prefix.
        self.offline_store_role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:PutObjectAcl", "s3:GetObject"],
                resources=[store.bucket.arn_for_objects(f"{OFFLINE_STORE_PREFIX}/*")],
            )
        )
        self.offline_store_role.add_to_policy(
            iam.PolicyStatement(actions=["s3:GetBucketAcl"], resources=[store.bucket.bucket_arn])
        )
        store.key.grant(self.offline_store_role, "kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt")
        self.offline_store_role.add_to_policy(
            iam.PolicyStatement(actions=["glue:GetTable", "glue:UpdateTable"], resources=glue_resources)
        )

        self.feature_group = sagemaker.CfnFeatureGroup(
            self,
            "FeatureGroup",
            feature_group_name=feature_group_name,
            # Every property but the definitions forces a replacement, which CloudFormation cannot do
            # under the same name: so nothing here may change unless the name (fingerprint) does.
            description=f"Churn features, schema {spec.fingerprint()}",
            record_identifier_feature_name=spec.record_identifier.name,
            event_time_feature_name=spec.event_time.name,
            feature_definitions=[
                sagemaker.CfnFeatureGroup.FeatureDefinitionProperty(
                    feature_name=d["FeatureName"], feature_type=d["FeatureType"]
                )
                for d in spec.feature_definitions()
            ],
            # Both configs are untyped JSON in the L1 (CDK passes them through as written), hence
            # CloudFormation's own PascalCase keys.
            online_store_config={
                "EnableOnlineStore": True,
                "SecurityConfig": {"KmsKeyId": store.key.key_arn},
            },
            offline_store_config={
                "S3StorageConfig": {"S3Uri": store.uri(OFFLINE_STORE_PREFIX), "KmsKeyId": store.key.key_arn},
                # Feature Store creates the Glue table under these names, so the Athena SQL can name
                # it at synth time (names must be lower case; the table must not exist yet).
                "DisableGlueTableCreation": False,
                "DataCatalogConfig": {
                    "Catalog": "AwsDataCatalog",
                    "Database": store.database_name,
                    "TableName": table_name,
                },
            },
            role_arn=self.offline_store_role.role_arn,
        )
        # The database must exist, and the role be usable, before Feature Store creates the table.
        self.feature_group.node.add_dependency(store.database)
        self.feature_group.node.add_dependency(self.offline_store_role.node.find_child("DefaultPolicy"))
        self.feature_group_arn = stack.format_arn(
            service="sagemaker", resource="feature-group", resource_name=feature_group_name
        )

        # DeleteFeatureGroup leaves the Glue table behind. The clean-up resource depends on the
        # feature group, so CloudFormation deletes it (dropping the table) first, then the feature
        # group (which never recreates the table), then the database.
        # One clean-up resource per schema: when the fingerprint changes, CloudFormation creates the
        # new one and deletes the old one, which drops the old schema's table. (Otherwise going back
        # to an earlier schema would fail: Feature Store will not create a table that exists.)
        self.table_cleanup = CleanupOnDelete(
            self,
            "TableCleanup",
            description="drop the feature group's Glue table on stack deletion",
            handler=GLUE_CLEANUP_HANDLER,
            resource_type="Custom::GlueTableCleanup",
            resource_id=f"TableCleanup{spec.fingerprint()}",
            properties={"DatabaseName": store.database_name, "TableName": table_name},
            statements=[iam.PolicyStatement(actions=["glue:DeleteTable"], resources=glue_resources)],
            store=store,
            lambda_code=lambda_code,
            powertools_layer=powertools_layer,
            service_name="churn-glue-cleanup",
        )
        self.table_cleanup.resource.node.add_dependency(self.feature_group)

        bucket_arn = nag.ref(store.bucket.node.default_child, "Arn")
        nag.wildcard_resource(
            self.offline_store_role,
            f"{bucket_arn}/{OFFLINE_STORE_PREFIX}/*",
            "Feature Store writes files under keys it generates below offline-store/ (account, region, "
            "feature group, date partitions); the grant is limited to that prefix",
        )
