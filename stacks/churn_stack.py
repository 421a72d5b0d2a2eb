"""ChurnPipelineStack: the one deployment unit, wiring storage, the feature store and the pipeline."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnOutput, Environment, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from churn import naming
from churn.config import PipelineSettings
from churn.schema import FeatureSpec
from stacks import checkov, nag
from stacks.cleanup import CleanupOnDelete
from stacks.dependencies import drop_redundant_role_dependencies
from stacks.feature_store import ChurnFeatureStore
from stacks.functions import lambda_asset, powertools_layer
from stacks.operations import FailureAlarm, RawDataTrigger
from stacks.storage import DataStore
from stacks.training_code import build_training_tarball
from stacks.training_pipeline import TrainingPipeline
from stacks.xgboost_image import xgboost_image

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ChurnPipelineStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: FeatureSpec,
        settings: PipelineSettings,
        data_file: Path,
        enable_s3_trigger: bool = False,
        alarm_email: str | None = None,
        lambda_dir: Path = PROJECT_ROOT / "lambda",
        training_dir: Path = PROJECT_ROOT / "training",
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        env: Environment | None = None,
        description: str | None = None,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            env=env,
            description=description or "Churn prediction training pipeline on SageMaker Feature Store",
        )
        stack_name = self.stack_name
        fingerprint = spec.fingerprint()

        store = DataStore(
            self,
            "Storage",
            data_file=data_file,
            work_group_name=naming.work_group_name(stack_name),
            database_name=naming.glue_database_name(stack_name),
            log_retention=log_retention,
            event_bridge_enabled=enable_s3_trigger,
        )
        code = lambda_asset(lambda_dir)
        layer = powertools_layer(self)
        feature_store = ChurnFeatureStore(
            self,
            "FeatureStore",
            spec=spec,
            store=store,
            feature_group_name=naming.feature_group_name(stack_name, fingerprint),
            table_name=naming.offline_table_name(fingerprint),
            lambda_code=code,
            powertools_layer=layer,
        )
        pipeline = TrainingPipeline(
            self,
            "Pipeline",
            spec=spec,
            settings=settings,
            store=store,
            feature_store=feature_store,
            lambda_code=code,
            powertools_layer=layer,
            training_code=build_training_tarball(training_dir),
            image=xgboost_image(self, version=settings.xgboost_version, region=self.region),
            model_package_group_name=naming.model_package_group_name(stack_name),
        )
        # Empty the bucket only once the feature group is gone: Feature Store keeps writing the
        # offline store for minutes after the last PutRecord.
        auto_delete = store.bucket.node.try_find_child("AutoDeleteObjectsCustomResource")
        if auto_delete is not None:
            auto_delete.node.add_dependency(feature_store.feature_group)
        # A model package group that still holds packages cannot be deleted: empty it first. The
        # clean-up depends on the group, so CloudFormation runs it before deleting the group.
        model_packages = self.format_arn(
            service="sagemaker", resource="model-package", resource_name=f"{pipeline.model_package_group_name}/*"
        )
        registry_cleanup = CleanupOnDelete(
            self,
            "RegistryCleanup",
            description="delete the model packages on stack deletion so their group can go",
            handler="churn.handlers.registry_cleanup.handler",
            resource_type="Custom::ModelRegistryCleanup",
            properties={"ModelPackageGroupName": pipeline.model_package_group_name},
            statements=[
                iam.PolicyStatement(actions=["sagemaker:ListModelPackages"], resources=["*"]),
                iam.PolicyStatement(actions=["sagemaker:DeleteModelPackage"], resources=[model_packages]),
            ],
            store=store,
            lambda_code=code,
            powertools_layer=layer,
            service_name="churn-registry-cleanup",
        )
        registry_cleanup.resource.node.add_dependency(pipeline.model_package_group)
        nag.wildcard_resource(
            registry_cleanup.function.role, "*",
            "sagemaker:ListModelPackages does not support resource-level permissions",
        )
        nag.wildcard_resource(
            registry_cleanup.function.role,
            nag.as_finding(self, model_packages),
            "Deletes only the packages of this stack's model package group, whatever their version numbers",
        )
        alarm = FailureAlarm(
            self, "FailureAlarm", state_machine=pipeline.state_machine, key=store.key, email=alarm_email
        )
        if enable_s3_trigger:
            RawDataTrigger(self, "RawDataTrigger", bucket=store.bucket, state_machine=pipeline.state_machine)

        self.store, self.feature_store, self.pipeline, self.alarm = store, feature_store, pipeline, alarm
        outputs = {
            "BucketName": store.bucket.bucket_name,
            "StateMachineArn": pipeline.state_machine.state_machine_arn,
            "FeatureGroupName": feature_store.feature_group_name,
            "ModelPackageGroupName": pipeline.model_package_group_name,
            "AthenaWorkGroup": store.work_group_name,
            "GlueDatabase": feature_store.database_name,
            "GlueTable": feature_store.table_name,
            "LogGroup": pipeline.log_group.log_group_name,
            # where a failed "Ingest features" logs its failed records (the CLI reads them from there)
            "IngestLogGroup": pipeline.function_log_groups["IngestFunction"].log_group_name,
            "AlarmTopicArn": alarm.topic.topic_arn,
        }
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)
        drop_redundant_role_dependencies(self)
        checkov.skip_lambda_checks(self)
