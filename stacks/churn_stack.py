"""ChurnPipelineStack: the one deployment unit. It wires storage, the feature store and the functions, and
chains the phases (ingest, training, scoring) with the one failure path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

from aws_cdk import CfnOutput, CfnResource, Duration, Environment, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from churn import contract, steps
from churn.config import PipelineSettings
from churn.schema import FeatureSpec
from stacks import nag, regions, retries
from stacks.feature_store import FeatureStore
from stacks.ingest import IngestPhase
from stacks.lambda_kit import LambdaKit
from stacks.model_container import ModelContainer, xgboost_image_uris
from stacks.offline_store_queries import OfflineStoreQueries
from stacks.operations import FailureAlarm, RawDataTrigger
from stacks.pipeline_functions import INGEST_BATCH_FUNCTION, PipelineFunctions
from stacks.scoring import SCORING_BUDGET_MINUTES, ScoringModelSweep, ScoringPhase
from stacks.storage import DataStore
from stacks.training import ModelRegistry, TrainingPhase

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
        env: Environment | None = None,
    ) -> None:
        super().__init__(scope, construct_id, env=env,
                         description="Churn prediction training pipeline on SageMaker Feature Store")
        if enable_s3_trigger and not (spec.is_single_group or spec.derive):
            raise ValueError("enable_s3_trigger starts a run from one uploaded file: the spec needs one feature "
                             "group or a derivation ('derive'), not several groups with a file each")
        supported = regions.supported_regions(xgboost_image_uris(settings.xgboost_version))
        regions.require_supported_region(self, supported)

        store = DataStore(self, "Storage", data_file=data_file, event_bridge_enabled=enable_s3_trigger)
        kit = LambdaKit(self, PROJECT_ROOT / "lambda", store)
        self.feature_store = feature_store = FeatureStore(self, "FeatureStore", spec=spec, store=store, kit=kit)
        registry = ModelRegistry(self, "ModelRegistry", kit=kit)
        # The state machine's role exists first, so that each phase grants it what its states need.
        machine_role = iam.Role(self, "StateMachineRole", assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
                                description="The churn pipeline's state machine")
        functions = PipelineFunctions(self, "Functions", spec=spec, settings=settings, kit=kit,
                                      feature_store=feature_store, invoker=machine_role)
        queries = OfflineStoreQueries(feature_store=feature_store, role=machine_role)
        container = ModelContainer(self, "ModelContainer", xgboost_version=settings.xgboost_version, regions=supported,
                                   training_dir=PROJECT_ROOT / "training")

        # The one failure path: every phase catches its errors into it, keeping the error and cause.
        record_failure = sfn.Pass(
            self,
            steps.RECORD_FAILURE,
            comment="Keeps the error and cause of whichever step failed",
            parameters={contract.EXECUTION: sfn.JsonPath.execution_name,
                        "failure": sfn.JsonPath.object_at(retries.FAILURE_PATH)},
        )
        record_failure.next(sfn.Fail(self, steps.PIPELINE_FAILED, error_path=f"{retries.FAILURE_PATH}.Error",
                                     cause_path=f"{retries.FAILURE_PATH}.Cause"))
        ingest = IngestPhase(self, "Ingest", feature_store=feature_store, functions=functions, queries=queries,
                             settings=settings, role=machine_role, failure=record_failure)
        training = TrainingPhase(self, "Training", spec=spec, settings=settings, container=container,
                                 queries=queries, functions=functions, registry=registry, role=machine_role,
                                 failure=record_failure)
        scoring = ScoringPhase(self, "Scoring", spec=spec, settings=settings, container=container, queries=queries,
                               functions=functions, role=machine_role, failure=record_failure)
        summary = sfn.Pass(self, steps.SUMMARISE_RUN, parameters={
            contract.MODEL_ARTIFACT: sfn.JsonPath.string_at(contract.MODEL_ARTIFACT_PATH),
            contract.VALIDATION_AUC: sfn.JsonPath.number_at(contract.VALIDATION_AUC_PATH),
            contract.MODEL_PACKAGE_ARN: sfn.JsonPath.string_at(contract.MODEL_PACKAGE_ARN_PATH),
            contract.TRAINING_JOB_NAME: sfn.JsonPath.string_at(contract.TRAINING_JOB_NAME_PATH),
            contract.EXECUTION: sfn.JsonPath.execution_name,
            contract.SCORES_URI: sfn.JsonPath.string_at(contract.path(contract.SCORES, contract.SCORES_URI)),
            contract.CUSTOMERS_SCORED: sfn.JsonPath.number_at(contract.path(contract.SCORES, contract.CUSTOMERS)),
            contract.MODEL_VERSION: sfn.JsonPath.string_at(contract.path(contract.SCORES, contract.MODEL_VERSION)),
            contract.TOP_CUSTOMERS: sfn.JsonPath.list_at(contract.path(contract.SCORES, contract.TOP)),
        })
        definition = (sfn.Chain.start(ingest).next(training).next(scoring)
                      .next(summary).next(sfn.Succeed(self, steps.PIPELINE_SUCCEEDED)))

        # Step Functions adds the group to the account's CloudWatch Logs resource policy, which holds 5,120
        # characters; AWS's advice is the /aws/vendedlogs/ prefix, which CloudWatch Logs then allows as a whole
        # (docs.aws.amazon.com/step-functions/latest/dg/bp-cwl.html).
        log_group = store.log_group("StateMachineLogs", self, f"/aws/vendedlogs/states/{self.stack_name}")
        state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            role=machine_role,
            state_machine_type=sfn.StateMachineType.STANDARD,
            comment="Churn training: ingest the feature groups, train, evaluate, register, score",
            timeout=Duration.minutes(
                60
                + settings.offline_store_wait_seconds * settings.offline_store_max_checks // 60
                + settings.training_max_runtime_minutes
                + SCORING_BUDGET_MINUTES
            ),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
        )
        # Execution history belongs to the state machine: keep the logical IDs the Telco stack was first
        # deployed with, so an upgrade updates the machine and its log group instead of replacing them.
        cast(CfnResource, state_machine.node.default_child).override_logical_id("PipelineStateMachine1814BD05")
        cast(CfnResource, log_group.node.default_child).override_logical_id("PipelineStateMachineLogsC1114D0C")
        nag.wildcard_resource(machine_role, "*", "X-Ray tracing and CloudWatch Logs delivery (logs:CreateLogDelivery "
                              "and related) have no resource-level permissions")
        ingest.acknowledge_map_policy(state_machine)
        ScoringModelSweep(self, "ScoringModelCleanup", state_machine=state_machine, kit=kit)
        alarm = FailureAlarm(self, "FailureAlarm", state_machine=state_machine, key=store.key, email=alarm_email)
        if enable_s3_trigger:
            RawDataTrigger(self, "RawDataTrigger", bucket=store.bucket, state_machine=state_machine)

        first = feature_store.first
        outputs = {
            contract.BUCKET_OUTPUT: store.bucket.bucket_name,
            contract.STATE_MACHINE_OUTPUT: state_machine.state_machine_arn,
            contract.FEATURE_GROUP_OUTPUT: first.name,
            contract.FEATURE_GROUPS_OUTPUT: json.dumps(
                {name: {contract.FEATURE_GROUP_KEY: g.name, contract.TABLE_KEY: g.table}
                 for name, g in feature_store.groups.items()}, separators=(",", ":")),
            contract.MODEL_PACKAGE_GROUP_OUTPUT: registry.name,
            "AthenaWorkGroup": store.work_group_name,
            "GlueDatabase": store.database_name,
            "GlueTable": first.table,
            "LogGroup": log_group.log_group_name,
            # where a failed batch's Lambda logs its failed records
            "IngestLogGroup": functions[INGEST_BATCH_FUNCTION].log_group.log_group_name,
            "AlarmTopicArn": alarm.topic.topic_arn,
        }
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)
        nag.skip_lambda_checks(self)
