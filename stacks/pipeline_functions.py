"""The pipeline's Lambda functions declared as data (handler, description, timeout, memory, the grants each
needs), and the one way the state machine invokes them (retry of Lambda's transient errors, the caller's catch)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from churn.config import PipelineSettings
from churn.handlers import environment
from churn.layout import INGEST_PREFIX, MODELS_PREFIX, RAW_PREFIX, SCORES_PREFIX, STAGING_PREFIX, input_prefix
from churn.schema import FeatureSpec
from stacks import nag, retries
from stacks.feature_store import FeatureStore
from stacks.lambda_kit import LambdaKit


@dataclass(frozen=True)
class PipelineFunction:
    """A function, its handler (churn.handlers.<module>.handler), and the data bucket prefixes it reads and
    writes (its description says why)."""

    construct_id: str
    module: str
    description: str
    reads: str = ""
    writes: str = ""
    reads_input: bool = False  # the run's CSVs (granted on the one prefix the spec reads them from)
    writes_features: bool = False  # BatchWriteRecord into every feature group of the spec
    timeout_seconds: int = 300
    memory_mb: int = 1024

    @property
    def handler(self) -> str:
        return environment.handler(self.module)


DERIVE_SOURCES_FUNCTION = PipelineFunction(
    "DeriveSourcesFunction", "derive_sources", reads=RAW_PREFIX, writes=STAGING_PREFIX,
    description="Derive sources: turn the run's input file into one CSV per feature group",
    timeout_seconds=600, memory_mb=1769,
)
VALIDATE_INPUT_FUNCTION = PipelineFunction(
    "ValidateInputFunction", "validate_input", reads_input=True,
    description="Validate input: check a feature group's CSV against the feature spec before ingesting",
)
# An EXPRESS child runs at most 5 minutes, retries included: keep each attempt short. 1,769 MB is one
# full vCPU for the batch's concurrent BatchWriteRecord calls (building and signing them is CPU work).
INGEST_BATCH_FUNCTION = PipelineFunction(
    "IngestFunction", "ingest_batch", writes_features=True,
    description="Ingest batch: BatchWriteRecord one batch of rows into its feature group",
    timeout_seconds=90, memory_mb=1769,
)
SUMMARISE_INGEST_FUNCTION = PipelineFunction(
    "SummariseIngestFunction", "summarise_ingest", reads=INGEST_PREFIX, writes=INGEST_PREFIX,
    description="Summarise ingest: read the Distributed Map's results and name every failed record",
)
EVALUATE_MODEL_FUNCTION = PipelineFunction(
    "EvaluateModelFunction", "evaluate_model", reads=MODELS_PREFIX, writes=MODELS_PREFIX, timeout_seconds=120,
    description="Evaluate model: read the model's evaluation and apply the quality threshold",
)
RANK_SCORES_FUNCTION = PipelineFunction(
    "RankScoresFunction", "rank_scores", reads=SCORES_PREFIX, writes=SCORES_PREFIX,
    description="Rank scores: rank the Batch Transform's churn probabilities into scores.csv",
)
FUNCTIONS = (DERIVE_SOURCES_FUNCTION, VALIDATE_INPUT_FUNCTION, INGEST_BATCH_FUNCTION, SUMMARISE_INGEST_FUNCTION,
             EVALUATE_MODEL_FUNCTION, RANK_SCORES_FUNCTION)


class PipelineFunctions(Construct):
    """The functions the spec needs (Derive sources only for a spec that derives its sources)."""

    def __init__(self, scope: Construct, construct_id: str, *, spec: FeatureSpec, settings: PipelineSettings,
                 kit: LambdaKit, feature_store: FeatureStore, invoker: iam.IRole) -> None:
        super().__init__(scope, construct_id)
        self._invoker = invoker
        variables = {
            environment.FEATURE_SPEC: spec.to_json(),
            environment.INGEST_WORKERS: str(settings.ingest_workers),
            environment.SERVICE_NAME_VARIABLE: environment.SERVICE_NAME,
            environment.METRICS_NAMESPACE_VARIABLE: environment.METRICS_NAMESPACE,
        }
        self.functions: dict[PipelineFunction, lambda_.Function] = {}
        for declared in FUNCTIONS:
            if declared is DERIVE_SOURCES_FUNCTION and not spec.derive:
                continue
            function = kit.function(
                self, declared.construct_id, description=declared.description, handler=declared.handler,
                environment=variables, timeout=Duration.seconds(declared.timeout_seconds),
                memory_size=declared.memory_mb,
            )
            reads = input_prefix(bool(spec.derive)) if declared.reads_input else declared.reads
            if reads:
                kit.store.grant_read(function.role, reads, declared.description)
            if declared.writes:
                kit.store.grant_write(function.role, declared.writes, declared.description)
            if declared.writes_features:
                # BatchWriteRecord is authorised as sagemaker:BatchWriteRecord *and* sagemaker:PutRecord on each
                # entry's feature group (the Feature Store security guide); the online stores use the stack's key.
                function.add_to_role_policy(iam.PolicyStatement(
                    actions=["sagemaker:BatchWriteRecord", "sagemaker:PutRecord"],
                    resources=[group.arn for group in feature_store.groups.values()],
                ))
                kit.store.key.grant(function, "kms:Decrypt", "kms:GenerateDataKey")
            self.functions[declared] = function

    def __getitem__(self, declared: PipelineFunction) -> lambda_.Function:
        return self.functions[declared]

    def invoke(self, scope: Construct, state_name: str, declared: PipelineFunction, payload: Mapping[str, Any], *,
               result_path: str, failure: sfn.IChainable | None) -> tasks.LambdaInvoke:
        function = self[declared]
        task = tasks.LambdaInvoke(
            scope,
            state_name,
            lambda_function=function,
            payload=sfn.TaskInput.from_object(dict(payload)),
            payload_response_only=True,
            retry_on_service_exceptions=False,  # replaced by retries.LAMBDA
            result_path=result_path,
        )
        nag.wildcard_resource(
            self._invoker,
            f"{function.function_arn}:*",
            "LambdaInvoke (aws-cdk-lib) grants invoke on the function and its versions",
        )
        return retries.guard(task, retries.LAMBDA, failure)

