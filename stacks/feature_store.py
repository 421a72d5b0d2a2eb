"""FeatureStore: one feature group per group of the spec (labels included), their offline-store role, and
the clean-up of their Glue tables on destroy."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from churn import naming
from churn.layout import OFFLINE_STORE_PREFIX
from churn.schema import FeatureGroupSpec, FeatureSpec
from stacks.lambda_kit import CleanupOnDelete, LambdaKit
from stacks.storage import DataStore


@dataclass(frozen=True)
class FeatureGroup:
    """One deployed feature group: its spec, its physical name and ARN, its offline store's Glue table."""

    spec: FeatureGroupSpec
    name: str
    arn: str
    table: str


class FeatureStore(Construct):
    """Feature groups named by the stack and their schema fingerprint: a changed schema is a new group."""

    def __init__(self, scope: Construct, construct_id: str, *, spec: FeatureSpec, store: DataStore,
                 kit: LambdaKit) -> None:
        super().__init__(scope, construct_id)
        self.spec = spec
        self.store = store
        stack = Stack.of(self)
        tables = {g.name: naming.offline_table_name(g.name, g.fingerprint()) for g in spec.all_groups}
        # The Glue catalog, database and tables: Feature Store updates them, Athena reads them.
        self.glue_arns = [
            stack.format_arn(service="glue", resource="catalog"),
            stack.format_arn(service="glue", resource="database", resource_name=store.database_name),
            *(stack.format_arn(service="glue", resource="table", resource_name=f"{store.database_name}/{table}")
              for table in tables.values()),
        ]
        # What Feature Store does with this role: write offline-store files, update its Glue tables.
        self.offline_store_role = role = iam.Role(
            self,
            "OfflineStoreRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="Feature Store writes the churn feature group's offline store with this role",
        )
        # The same S3 rights as the AWS managed AmazonSageMakerFeatureStoreAccess policy, limited to this
        # bucket's offline-store/ prefix.
        role.add_to_policy(iam.PolicyStatement(actions=["s3:PutObject", "s3:PutObjectAcl", "s3:GetObject"],
                                               resources=[store.bucket.arn_for_objects(f"{OFFLINE_STORE_PREFIX}/*")]))
        store.acknowledge_prefix(
            role, OFFLINE_STORE_PREFIX,
            "Feature Store writes files under keys it generates below offline-store/ (account, region, "
            "feature group, date partitions)",
        )
        role.add_to_policy(iam.PolicyStatement(actions=["s3:GetBucketAcl"], resources=[store.bucket.bucket_arn]))
        store.key.grant(role, "kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt")
        role.add_to_policy(iam.PolicyStatement(actions=["glue:GetTable", "glue:UpdateTable"], resources=self.glue_arns))

        # DeleteFeatureGroup leaves the Glue table behind. A table's clean-up resource depends on its
        # feature group, so CloudFormation deletes it (dropping the table) first, then the feature group
        # (which never recreates the table), then the database.
        # One clean-up resource per schema: when a fingerprint changes, CloudFormation creates the new one
        # and deletes the old one, which drops the old schema's table. (Otherwise going back to an earlier
        # schema would fail: Feature Store will not create a table that exists.)
        self.table_cleanup = CleanupOnDelete(
            self,
            "TableCleanup",
            description="drop the feature groups' Glue tables on stack deletion",
            module="glue_cleanup",
            resource_type="Custom::GlueTableCleanup",
            statements=[iam.PolicyStatement(actions=["glue:DeleteTable"], resources=self.glue_arns)],
            kit=kit,
        )
        self.groups = {g.name: self._feature_group(g, tables[g.name]) for g in spec.all_groups}

    @property
    def first(self) -> FeatureGroup:
        """The first feature group: its entities are the ones scored."""
        return self.groups[self.spec.groups[0].name]

    def _feature_group(self, group: FeatureGroupSpec, table: str) -> FeatureGroup:
        store, single = self.store, self.spec.is_single_group
        name = naming.feature_group_name(Stack.of(self).stack_name, group.name, group.fingerprint())
        online = group.online_store_config()
        if online is not None:
            online = {**online, "SecurityConfig": {"KmsKeyId": store.key.key_arn}}
        resource = sagemaker.CfnFeatureGroup(
            self,
            "FeatureGroup" if single else f"{group.name.capitalize()}FeatureGroup",
            feature_group_name=name,
            # Every property but the definitions forces a replacement, which CloudFormation cannot do under
            # the same name: so nothing here may change unless the name (fingerprint) does.
            description=(f"Churn features, schema {group.fingerprint()}" if single
                         else f"Churn feature group '{group.name}', schema {group.fingerprint()}"),
            record_identifier_feature_name=group.record_identifier.name,
            event_time_feature_name=group.event_time.name,
            feature_definitions=[
                sagemaker.CfnFeatureGroup.FeatureDefinitionProperty(
                    feature_name=d["FeatureName"], feature_type=d["FeatureType"]
                )
                for d in group.feature_definitions()
            ],
            # Both configs are untyped JSON in the L1 (CDK passes them through as written), hence
            # CloudFormation's own PascalCase keys. No online store for an offline-only group (the labels).
            online_store_config=online,
            offline_store_config={
                "S3StorageConfig": {"S3Uri": store.uri(OFFLINE_STORE_PREFIX), "KmsKeyId": store.key.key_arn},
                # Feature Store creates the Glue table under these names, so the Athena SQL can name it at
                # synth time (names must be lower case; the table must not exist yet).
                "DisableGlueTableCreation": False,
                "DataCatalogConfig": {"Catalog": "AwsDataCatalog", "Database": store.database_name, "TableName": table},
            },
            role_arn=self.offline_store_role.role_arn,
        )
        # The database must exist, and the role be usable, before Feature Store creates the table.
        resource.node.add_dependency(store.database)
        resource.node.add_dependency(self.offline_store_role.node.find_child("DefaultPolicy"))
        # `cdk destroy`: Feature Store writes the offline store until its group is gone, so the group is
        # deleted before the bucket is emptied. Depending on the emptying custom resource means: created
        # after it, deleted before it.
        resource.node.add_dependency(store.emptied_on_delete)
        cleanup = self.table_cleanup.add_resource(
            f"TableCleanup{group.fingerprint()}", {"DatabaseName": store.database_name, "TableName": table}
        )
        cleanup.node.add_dependency(resource)
        arn = Stack.of(self).format_arn(service="sagemaker", resource="feature-group", resource_name=name)
        return FeatureGroup(spec=group, name=name, arn=arn, table=table)
