"""The training phase: Build training set → Train model → Evaluate model → Model good enough? → Register
model (or Model below quality threshold); and the model registry it registers into."""

from __future__ import annotations

from typing import cast

from aws_cdk import CfnResource, Duration, Size, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from churn import contract, naming, steps
from churn.config import PipelineSettings, training_hyperparameters
from churn.layout import MODELS_PREFIX, QUERY_PREFIX, TRAINING_CHANNEL
from churn.model_quality import APPROVED
from churn.schema import FeatureSpec
from churn.sql import training_set_sql
from stacks import nag, retries
from stacks import pipeline_functions as lambdas
from stacks.lambda_kit import CleanupOnDelete, LambdaKit
from stacks.model_container import ModelContainer, S3Uri
from stacks.offline_store_queries import OfflineStoreQueries
from stacks.phase import Phase

_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
# The training job's metrics, from the "<metric>:<value>" lines the training script prints (training/report.py)
METRIC_DEFINITIONS = {name: rf"{name}:{_NUMBER}" for name in ("validation-auc", "validation-logloss", "train-auc")}


class ModelRegistry(Construct):
    """The model package group approved models are registered in, emptied on destroy so it can go."""

    def __init__(self, scope: Construct, construct_id: str, *, kit: LambdaKit) -> None:
        super().__init__(scope, construct_id)
        self.name = name = naming.model_package_group_name(Stack.of(self).stack_name)
        group = sagemaker.CfnModelPackageGroup(
            self,
            "ModelPackageGroup",
            model_package_group_name=name,
            model_package_group_description="Churn models that passed the pipeline's quality threshold",
        )
        self.packages_arn = Stack.of(self).format_arn(service="sagemaker", resource="model-package",
                                                      resource_name=f"{name}/*")
        # A model package group that still holds packages cannot be deleted: empty it first. The clean-up
        # depends on the group, so CloudFormation runs it before deleting the group.
        cleanup = CleanupOnDelete(
            self,
            "Cleanup",
            description="delete the model packages on stack deletion so their group can go",
            module="registry_cleanup",
            resource_type="Custom::ModelRegistryCleanup",
            statements=[
                iam.PolicyStatement(actions=["sagemaker:ListModelPackages"], resources=["*"]),
                iam.PolicyStatement(actions=["sagemaker:DeleteModelPackage"], resources=[self.packages_arn]),
            ],
            kit=kit,
        )
        nag.wildcard_resource(cleanup.function.role, "*",
                              "sagemaker:ListModelPackages does not support resource-level permissions")
        nag.wildcard_resource(cleanup.function.role, self.packages_arn,
                              "Deletes only the packages of this stack's model package group, whatever their "
                              "version numbers")
        resource = cleanup.add_resource("Resource", {"ModelPackageGroupName": name})
        resource.node.add_dependency(group)
        # The logical IDs these had when the stack was one construct (tests/infra/test_stateful_ids.py pins
        # them): under a new ID CloudFormation would replace the group, delete the old clean-up resource
        # (which deletes every registered model package), and refuse the clean-up's new service token (its
        # provider's function).
        group.override_logical_id("PipelineModelPackageGroup26A0C73B")
        cast(CfnResource, resource.node.default_child).override_logical_id("RegistryCleanup5741BC87")
        provider_function = cleanup.provider.node.find_child("framework-onEvent").node.default_child
        cast(CfnResource, provider_function).override_logical_id("RegistryCleanupProviderframeworkonEventE624127E")


class TrainingPhase(Phase):
    """The training set as of the run (point in time, SQL shared with the local mode), a training job in
    the XGBoost container's script mode, the quality gate and the registration of a model that passes."""

    def __init__(self, scope: Construct, construct_id: str, *, spec: FeatureSpec, settings: PipelineSettings,
                 container: ModelContainer, queries: OfflineStoreQueries, functions: lambdas.PipelineFunctions,
                 registry: ModelRegistry, role: iam.IRole, failure: sfn.IChainable) -> None:
        super().__init__(scope, construct_id)
        self.spec, self.settings, self.container, self.registry = spec, settings, container, registry
        store = queries.store
        self.training_role = container.job_role(self, "TrainingRole", jobs=naming.TRAINING_JOBS,
                                                description="SageMaker training jobs of the churn pipeline")
        store.grant_read(self.training_role, QUERY_PREFIX, "The training channel is the run's Athena result")
        store.grant_write(self.training_role, MODELS_PREFIX, "SageMaker writes <job name>/output/model.tar.gz")

        build = queries.query(self, steps.BUILD_TRAINING_SET, training_set_sql(spec, queries.tables),
                              result_path=contract.path(contract.TRAINING_SET), failure=failure)
        train = retries.guard(self._train_task(store.uri(MODELS_PREFIX), store.key), retries.SAGEMAKER_JOB, failure)
        jobs = Stack.of(self).format_arn(service="sagemaker", resource="training-job", resource_name="*")
        nag.wildcard_resource(role, jobs, "Training job names come from the execution name at run time")
        nag.wildcard_resource(role, "*", "sagemaker:ListTags is granted on '*' by the CDK training task")
        for action in ("kms:GenerateDataKey*", "kms:ReEncrypt*"):
            nag.wildcard_action(self.training_role, action, "SageMakerCreateTrainingJob (aws-cdk-lib) grants the "
                                "training role encrypt on the output key; the key is this stack's only")
        evaluate = functions.invoke(self, steps.EVALUATE_MODEL, lambdas.EVALUATE_MODEL_FUNCTION, {
            contract.MODEL_ARTIFACT: sfn.JsonPath.string_at(contract.MODEL_ARTIFACT_PATH),
            contract.OUTPUT_PREFIX: sfn.JsonPath.format(f"{store.uri(MODELS_PREFIX)}/{{}}",
                                                 sfn.JsonPath.string_at(contract.TRAINING_JOB_NAME_PATH)),
            contract.THRESHOLD: settings.quality_threshold,
        }, result_path=contract.path(contract.EVALUATION), failure=failure)
        below_threshold = sfn.Fail(
            self, steps.MODEL_BELOW_THRESHOLD, error=steps.BELOW_THRESHOLD,
            cause_path=sfn.JsonPath.format(f"validation AUC {{}} is below the threshold {settings.quality_threshold}",
                                           sfn.JsonPath.string_at(contract.VALIDATION_AUC_PATH)),
        )
        register = retries.guard(self._register_task(), retries.SAGEMAKER_SDK, failure)
        nag.wildcard_resource(role, registry.packages_arn,
                              "Model package versions are numbered by SageMaker; the grant is limited to this "
                              "stack's group")
        gate = (sfn.Choice(self, steps.MODEL_GOOD_ENOUGH)
                .when(sfn.Condition.boolean_equals(contract.path(contract.EVALUATION, contract.PASSED), True), register)
                .otherwise(below_threshold))
        build.next(train).next(evaluate).next(gate)
        self._bounds(build, [register])

    def _train_task(self, output_uri: str, key) -> tasks.SageMakerCreateTrainingJob:
        settings = self.settings
        return tasks.SageMakerCreateTrainingJob(
            self,
            steps.TRAIN_MODEL,
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            # Execution names are unique per state machine; default (UUID) names are valid job names.
            training_job_name=sfn.JsonPath.execution_name,
            role=self.training_role,
            algorithm_specification=tasks.AlgorithmSpecification(
                training_image=tasks.DockerImage.from_registry(self.container.image_uri),
                training_input_mode=tasks.InputMode.FILE,
                metric_definitions=[tasks.MetricDefinition(name=n, regex=r) for n, r in METRIC_DEFINITIONS.items()],
            ),
            hyperparameters=self.container.script_hyperparameters(training_hyperparameters(settings, self.spec)),
            input_data_config=[tasks.Channel(
                channel_name=TRAINING_CHANNEL,
                content_type="text/csv",
                data_source=tasks.DataSource(s3_data_source=tasks.S3DataSource(
                    # from_json_expression would grant s3 reads on '*'; query/ is granted to the role.
                    s3_location=S3Uri(sfn.JsonPath.string_at(
                        contract.path(contract.TRAINING_SET, contract.OUTPUT_URI))),
                    s3_data_type=tasks.S3DataType.S3_PREFIX,
                    s3_data_distribution_type=tasks.S3DataDistributionType.FULLY_REPLICATED,
                )),
            )],
            output_data_config=tasks.OutputDataConfig(s3_output_location=S3Uri(output_uri), encryption_key=key),
            resource_config=tasks.ResourceConfig(
                instance_count=settings.training_instance_count,
                instance_type=ec2.InstanceType(settings.training_instance_type.removeprefix("ml.")),
                volume_size=Size.gibibytes(settings.training_volume_gb),
                volume_encryption_key=key,
            ),
            stopping_condition=tasks.StoppingCondition(
                max_runtime=Duration.minutes(settings.training_max_runtime_minutes)
            ),
            enable_network_isolation=False,  # script mode fetches and pip-installs the bundle (ModelContainer)
            result_selector={
                contract.MODEL_ARTIFACT: sfn.JsonPath.string_at("$.ModelArtifacts.S3ModelArtifacts"),
                contract.TRAINING_JOB_NAME: sfn.JsonPath.string_at("$.TrainingJobName"),
            },
            result_path=contract.path(contract.TRAINING),
        )

    def _register_task(self) -> tasks.CallAwsService:
        group = self.registry.name
        fingerprints = {f"{g.name}_fingerprint": g.fingerprint() for g in self.spec.all_groups}
        return tasks.CallAwsService(
            self,
            steps.REGISTER_MODEL,
            service="sagemaker",
            action="createModelPackage",
            iam_action="sagemaker:CreateModelPackage",
            iam_resources=[
                self.registry.packages_arn,
                Stack.of(self).format_arn(service="sagemaker", resource="model-package-group", resource_name=group),
            ],
            parameters={
                "ModelPackageGroupName": group,
                "ModelPackageDescription": sfn.JsonPath.format(
                    "Churn model trained by execution {}", sfn.JsonPath.execution_name
                ),
                "ModelApprovalStatus": APPROVED,
                "InferenceSpecification": {
                    "Containers": [{
                        "Image": self.container.image_uri,
                        "ModelDataUrl": sfn.JsonPath.string_at(contract.MODEL_ARTIFACT_PATH),
                        "Environment": self.container.serving_environment(),
                    }],
                    "SupportedContentTypes": ["text/csv"],
                    "SupportedResponseMIMETypes": ["text/csv"],
                },
                "ModelMetrics": {"ModelQuality": {"Statistics": {
                    "ContentType": "application/json",
                    "S3Uri": sfn.JsonPath.string_at(contract.path(contract.EVALUATION, contract.EVALUATION_URI)),
                }}},
                # Which feature groups (schemas) the model was trained on: one fingerprint each.
                "CustomerMetadataProperties": {
                    "validation_auc": sfn.JsonPath.format("{}", sfn.JsonPath.string_at(contract.VALIDATION_AUC_PATH)),
                    "training_job_name": sfn.JsonPath.string_at(contract.TRAINING_JOB_NAME_PATH),
                    **fingerprints,
                },
            },
            result_selector={contract.MODEL_PACKAGE_ARN: sfn.JsonPath.string_at("$.ModelPackageArn")},
            result_path=contract.path(contract.REGISTRATION),
        )
