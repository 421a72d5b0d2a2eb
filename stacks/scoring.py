"""The scoring phase: Build scoring set → Stage scoring input → Create scoring model → Score customers →
Delete scoring model → Rank scores; and the sweep of scoring models that interrupted executions left.

Everything of one execution lives under scores/<execution>/: input/ (the scoring set), transform/ (the
Batch Transform output) and scores.csv (the ranking). The SageMaker model the transform needs is deleted
as soon as the transform has ended, succeeded or failed (the registered model package stays)."""

from __future__ import annotations

from aws_cdk import Duration, Size, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from churn import contract, naming, steps
from churn.config import PipelineSettings
from churn.layout import (
    MODELS_PREFIX,
    RUN_SCORES,
    SCORES_FILE,
    SCORES_PREFIX,
    SCORING_INPUT_DIR,
    SCORING_INPUT_FILE,
    TRANSFORM_OUTPUT_DIR,
)
from churn.schema import FeatureSpec
from churn.scoring import TRANSFORM_MAX_PAYLOAD_MB
from churn.sql import scoring_set_sql
from stacks import nag, retries
from stacks import pipeline_functions as lambdas
from stacks.lambda_kit import CleanupOnDelete, LambdaKit
from stacks.model_container import ModelContainer, S3Uri
from stacks.offline_store_queries import NOW, QUERY_EXECUTION_ID, OfflineStoreQueries
from stacks.phase import Phase

# Batch scoring. SplitType Line + BatchStrategy MultiRecord: Batch Transform cuts the scoring set into
# requests of whole lines of at most TRANSFORM_MAX_PAYLOAD_MB (5 MiB, ~30k Telco customers), the header
# only in the first; predict_fn reads the others by position, and AssembleWith Line joins the responses,
# whose repeated headers Rank scores skips. In script mode the model server sets no body limit of its
# own (nginx client_max_body_size 0); 5 MiB keeps each request's parsing and the model server's memory
# bounded, and any number of customers scores in requests of bounded size
# (pipeline/local_aws/batch_transform.py cuts the same way for local runs and the moto harness).
SCORING_INVOCATION_TIMEOUT = Duration.minutes(10)  # a 5 MiB request is served in ~0.3 s here
SCORING_BUDGET_MINUTES = 60  # transform jobs have no stopping condition; the state machine's timeout bounds them
RUN = RUN_SCORES.format(execution="{}")  # scores/<execution>, the execution filled in by States.Format


class ScoringPhase(Phase):
    """Every customer's latest features as of now, scored by the registered model's container in a Batch
    Transform, ranked into scores/<execution>/scores.csv."""

    def __init__(self, scope: Construct, construct_id: str, *, spec: FeatureSpec, settings: PipelineSettings,
                 container: ModelContainer, queries: OfflineStoreQueries, functions: lambdas.PipelineFunctions,
                 role: iam.IRole, failure: sfn.IChainable) -> None:
        super().__init__(scope, construct_id)
        self.settings, self.container, self.store = settings, container, queries.store
        store = self.store
        self.scoring_role = self._scoring_role()
        build = queries.query(self, steps.BUILD_SCORING_SET, scoring_set_sql(spec, queries.tables),
                              result_path=contract.path(contract.SCORING_SET), values=NOW, failure=failure)
        stage = retries.guard(self._stage_task(), retries.S3_SDK, failure)
        store.key.grant(role, "kms:GenerateDataKey")  # the copy is encrypted with the bucket's key
        store.acknowledge_prefix(role, SCORES_PREFIX, "Stage scoring input copies the run's scoring set to "
                                 "scores/<execution>/input/")
        create_model = retries.guard(self._create_model_task(), retries.SAGEMAKER_JOB, failure)
        transform = retries.guard(self._transform_task(), retries.SAGEMAKER_JOB, None)
        for resource, what in (("model", "Scoring models"), ("transform-job", "Scoring transform jobs")):
            arn = Stack.of(self).format_arn(service="sagemaker", resource=resource, resource_name="*")
            nag.wildcard_resource(
                role, arn, f"{what} are named after the execution at run time (SageMakerCreateModel / "
                "SageMakerCreateTransformJob in aws-cdk-lib scope the grant to the resource type)")
        delete = retries.guard(self._delete_model_task(steps.DELETE_SCORING_MODEL), retries.SAGEMAKER_SDK, failure)
        # A failed transform deletes the model too, then takes the failure path with the transform's error
        # (a failed clean-up keeps its own error apart, under $.cleanup_failure).
        delete_after_failure = retries.guard(self._delete_model_task(steps.DELETE_SCORING_MODEL_AFTER_FAILURE),
                                             retries.SAGEMAKER_SDK, None)
        delete_after_failure.add_catch(failure, errors=[sfn.Errors.ALL], result_path="$.cleanup_failure")
        delete_after_failure.next(failure)
        transform.add_catch(delete_after_failure, errors=[sfn.Errors.ALL], result_path=retries.FAILURE_PATH)
        rank = functions.invoke(self, steps.RANK_SCORES, lambdas.RANK_SCORES_FUNCTION, {
            contract.TRANSFORM_OUTPUT: self._run_uri(f"{TRANSFORM_OUTPUT_DIR}/"),
            contract.SCORES_URI: self._run_uri(SCORES_FILE),
            contract.MODEL_PACKAGE_ARN: sfn.JsonPath.string_at(contract.MODEL_PACKAGE_ARN_PATH),
        }, result_path=contract.path(contract.SCORES), failure=failure)
        build.next(stage).next(create_model).next(transform).next(delete).next(rank)
        self._bounds(build, [rank])

    def _run_uri(self, path: str) -> str:
        """s3://bucket/scores/<this execution>/<path>"""
        return sfn.JsonPath.format(f"{self.store.uri(RUN)}/{path}", sfn.JsonPath.execution_name)

    def _scoring_role(self) -> iam.Role:
        """The scoring model's execution role: Batch Transform reads the model, the code and the scoring
        set, and writes the predictions, with it."""
        store = self.store
        role = self.container.job_role(
            self, "ScoringRole", jobs=naming.TRANSFORM_JOBS,
            description="SageMaker models and batch transform jobs that score the churn pipeline's customers",
        )
        store.grant_read(role, MODELS_PREFIX, "The scoring model loads the run's model artifact "
                         "(models/<training job>/output/model.tar.gz)")
        store.grant_read(role, SCORES_PREFIX, "Batch Transform reads scores/<execution>/input/")
        store.grant_write(role, SCORES_PREFIX, "Batch Transform writes scores/<execution>/transform/")
        # The transform's ML storage volume is encrypted with the key (as the training task grants it).
        role.add_to_policy(iam.PolicyStatement(
            actions=["kms:CreateGrant"],
            resources=[store.key.key_arn],
            conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
        ))
        return role

    def _stage_task(self) -> tasks.CallAwsService:
        """Batch Transform reads every object under its input prefix, and Athena writes a binary
        <id>.csv.metadata next to <id>.csv: the result is copied alone to the run's input/."""
        bucket = self.store.bucket
        query_id = sfn.JsonPath.string_at(contract.path(contract.SCORING_SET, QUERY_EXECUTION_ID))
        return tasks.CallAwsService(
            self,
            steps.STAGE_SCORING_INPUT,
            service="s3",
            action="copyObject",
            iam_action="s3:PutObject",
            iam_resources=[bucket.arn_for_objects(f"{SCORES_PREFIX}/*")],
            parameters={
                "Bucket": bucket.bucket_name,
                "CopySource": sfn.JsonPath.format(f"{self.store.query_results_uri.removeprefix('s3://')}{{}}.csv",
                                                  query_id),
                "Key": sfn.JsonPath.format(f"{RUN}/{SCORING_INPUT_DIR}/{SCORING_INPUT_FILE}",
                                           sfn.JsonPath.execution_name),
            },
            result_path=sfn.JsonPath.DISCARD,
        )

    def _create_model_task(self) -> tasks.SageMakerCreateModel:
        return tasks.SageMakerCreateModel(
            self,
            steps.CREATE_SCORING_MODEL,
            model_name=sfn.JsonPath.execution_name,
            primary_container=tasks.ContainerDefinition(
                image=tasks.DockerImage.from_registry(self.container.image_uri),
                mode=tasks.Mode.SINGLE_MODEL,
                # The role may read models/ (from_json_expression would grant s3 reads on '*').
                model_s3_location=S3Uri(sfn.JsonPath.string_at(contract.MODEL_ARTIFACT_PATH)),
                environment_variables=sfn.TaskInput.from_object(self.container.serving_environment()),
            ),
            role=self.scoring_role,
            enable_network_isolation=False,  # script mode fetches and pip-installs the bundle (ModelContainer)
            result_selector={"model_arn": sfn.JsonPath.string_at("$.ModelArn")},
            result_path="$.scoring_model",
        )

    def _transform_task(self) -> tasks.SageMakerCreateTransformJob:
        key = self.store.key
        return tasks.SageMakerCreateTransformJob(
            self,
            steps.SCORE_CUSTOMERS,
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            transform_job_name=sfn.JsonPath.execution_name,
            model_name=sfn.JsonPath.execution_name,
            role=self.scoring_role,
            transform_input=tasks.TransformInput(
                transform_data_source=tasks.TransformDataSource(s3_data_source=tasks.TransformS3DataSource(
                    s3_uri=self._run_uri(f"{SCORING_INPUT_DIR}/"), s3_data_type=tasks.S3DataType.S3_PREFIX,
                )),
                content_type="text/csv",
                split_type=tasks.SplitType.LINE,  # requests of whole lines; the header only in the first
            ),
            transform_output=tasks.TransformOutput(
                s3_output_path=self._run_uri(f"{TRANSFORM_OUTPUT_DIR}/"),
                accept="text/csv",
                assemble_with=tasks.AssembleWith.LINE,  # the responses one after another, a line each
                encryption_key=key,
            ),
            transform_resources=tasks.TransformResources(
                instance_count=1,
                instance_type=ec2.InstanceType(self.settings.scoring_instance_type.removeprefix("ml.")),
                volume_encryption_key=key,
            ),
            batch_strategy=tasks.BatchStrategy.MULTI_RECORD,  # as many lines as fit in max_payload
            max_payload=Size.mebibytes(TRANSFORM_MAX_PAYLOAD_MB),
            max_concurrent_transforms=1,
            model_client_options=tasks.ModelClientOptions(
                invocations_max_retries=1, invocations_timeout=SCORING_INVOCATION_TIMEOUT
            ),
            # The model server's own timeout matches the invocation timeout.
            environment={"SAGEMAKER_MODEL_SERVER_TIMEOUT": str(int(SCORING_INVOCATION_TIMEOUT.to_seconds()))},
            result_selector={contract.TRANSFORM_JOB_NAME: sfn.JsonPath.string_at("$.TransformJobName")},
            result_path=contract.path(contract.SCORING),
        )

    def _delete_model_task(self, state_name: str) -> tasks.CallAwsService:
        return tasks.CallAwsService(
            self,
            state_name,
            service="sagemaker",
            action="deleteModel",
            iam_action="sagemaker:DeleteModel",
            iam_resources=[Stack.of(self).format_arn(service="sagemaker", resource="model", resource_name="*")],
            parameters={"ModelName": sfn.JsonPath.execution_name},
            result_path=sfn.JsonPath.DISCARD,
        )


class ScoringModelSweep(Construct):
    """On `cdk destroy`, delete the scoring models that stopped, timed-out (and failed) executions left:
    their catchers never ran "Delete scoring model"."""

    def __init__(self, scope: Construct, construct_id: str, *, state_machine: sfn.StateMachine,
                 kit: LambdaKit) -> None:
        super().__init__(scope, construct_id)
        models = Stack.of(self).format_arn(service="sagemaker", resource="model", resource_name="*")
        cleanup = CleanupOnDelete(
            self,
            "Cleanup",
            description="delete the scoring models interrupted executions left, on stack deletion",
            module="scoring_model_cleanup",
            resource_type="Custom::ScoringModelCleanup",
            statements=[
                iam.PolicyStatement(actions=["states:ListExecutions"], resources=[state_machine.state_machine_arn]),
                iam.PolicyStatement(actions=["sagemaker:DeleteModel"], resources=[models]),
            ],
            kit=kit,
        )
        nag.wildcard_resource(cleanup.function.role, models,
                              "Scoring models are named after the executions; the handler deletes only those of "
                              "this state machine's stopped, timed-out and failed executions")
        # Referencing the state machine makes CloudFormation delete this (running the sweep) before it.
        cleanup.add_resource("Resource", {"StateMachineArn": state_machine.state_machine_arn})
