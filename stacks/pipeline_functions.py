"""The pipeline's Lambda functions declared as data (handler, description, timeout, memory, the grants each
needs), and the one way the state machine invokes them (retry of Lambda's transient errors, one catch)."""

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
from churn.layout import INGEST_PREFIX, MODELS_PREFIX, RAW_PREFIX, SCORES_PREFIX, STAGING_PREFIX, input_prefix
from churn.schema import FeatureSpec
from stacks import nag, retries
from stacks.feature_store import FeatureStore
from stacks.functions import LambdaKit

SERVICE_NAME = "churn-pipeline"
METRICS_NAMESPACE = "ChurnPipeline"


@dataclass(frozen=True)
class Access:
    """Objects under a prefix of the data bucket, and why the function needs them."""

    prefix: str
    why: str


@dataclass(frozen=True)
class PipelineFunction:
    construct_id: str
    handler: str
    description: str
    timeout_seconds: int
    memory_mb: int
    reads: tuple[Access, ...] = ()
    writes: tuple[Access, ...] = ()
    reads_input: str = ""  # why it reads the run's CSVs (granted on the one prefix the spec reads them from)
    writes_features: bool = False  # BatchWriteRecord into every feature group of the spec


DERIVE_SOURCES = PipelineFunction(
    "DeriveSourcesFunction", "churn.handlers.derive_sources.handler",
    "Derive sources: turn the run's input file into one CSV per feature group", 600, 1769,
    reads=(Access(RAW_PREFIX, "Derive sources reads the input file an execution names"),),
    writes=(Access(STAGING_PREFIX, "Derive sources writes each group's CSV under staging/<execution>/"),),
)
VALIDATE_INPUT = PipelineFunction(
    "ValidateInputFunction", "churn.handlers.validate_input.handler",
    "Validate input: check a feature group's CSV against the feature spec before ingesting", 300, 1024,
    reads_input="Validate input reads the CSVs of the run's feature groups",
)
# An EXPRESS child runs at most 5 minutes, retries included: keep each attempt short. 1,769 MB is one
# full vCPU for the batch's concurrent BatchWriteRecord calls (building and signing them is CPU work).
INGEST_BATCH = PipelineFunction(
    "IngestFunction", "churn.handlers.ingest.handler",
    "Ingest features: BatchWriteRecord one batch of rows into its feature group", 90, 1769,
    writes_features=True,
)
SUMMARISE_INGEST = PipelineFunction(
    "SummariseIngestFunction", "churn.handlers.summarise_ingest.handler",
    "Summarise ingest: read the Distributed Map's results and name every failed record", 300, 1024,
    reads=(Access(INGEST_PREFIX, "Summarise ingest reads the Distributed Map's results"),),
    writes=(Access(INGEST_PREFIX, "Summarise ingest writes the run's failed records next to them"),),
)
EVALUATE_MODEL = PipelineFunction(
    "EvaluateModelFunction", "churn.handlers.evaluate.handler",
    "Evaluate model: read the model's evaluation and apply the quality threshold", 120, 1024,
    reads=(Access(MODELS_PREFIX, "Evaluate model reads the run's model artifact"),),
    writes=(Access(MODELS_PREFIX, "Evaluate model writes the evaluation next to the model"),),
)
RANK_SCORES = PipelineFunction(
    "RankScoresFunction", "churn.handlers.rank_scores.handler",
    "Rank scores: rank the Batch Transform's churn probabilities into scores.csv", 300, 1024,
    reads=(Access(SCORES_PREFIX, "Rank scores reads the run's Batch Transform output"),),
    writes=(Access(SCORES_PREFIX, "Rank scores writes scores/<execution>/scores.csv"),),
)
FUNCTIONS = (DERIVE_SOURCES, VALIDATE_INPUT, INGEST_BATCH, SUMMARISE_INGEST, EVALUATE_MODEL, RANK_SCORES)


class PipelineFunctions(Construct):
    """The functions the spec needs (Derive sources only for a spec that derives its sources)."""

    def __init__(self, scope: Construct, construct_id: str, *, spec: FeatureSpec, settings: PipelineSettings,
                 kit: LambdaKit, feature_store: FeatureStore, invoker: iam.IRole) -> None:
        super().__init__(scope, construct_id)
        self._invoker = invoker
        environment = {
            "FEATURE_SPEC": spec.to_json(),
            "INGEST_WORKERS": str(settings.ingest_workers),
            "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
        }
        self.functions: dict[PipelineFunction, lambda_.Function] = {}
        for declared in FUNCTIONS:
            if declared is DERIVE_SOURCES and not spec.derive:
                continue
            function = kit.function(
                self, declared.construct_id, description=declared.description, handler=declared.handler,
                environment=environment, timeout=Duration.seconds(declared.timeout_seconds),
                memory_size=declared.memory_mb,
            )
            for access in declared.reads:
                kit.store.grant_read(function.role, access.prefix, access.why)
            if declared.reads_input:
                kit.store.grant_read(function.role, input_prefix(bool(spec.derive)), declared.reads_input)
            for access in declared.writes:
                kit.store.grant_write(function.role, access.prefix, access.why)
            if declared.writes_features:
                _grant_feature_writes(function, feature_store)
            self.functions[declared] = function

    def __getitem__(self, declared: PipelineFunction) -> lambda_.Function:
        return self.functions[declared]

    def invoke(self, scope: Construct, state_name: str, declared: PipelineFunction, payload: Mapping[str, Any], *,
               result_path: str, failure: sfn.IChainable | None) -> tasks.LambdaInvoke:
        """A state that calls the function with `payload` and puts its result at `result_path`."""
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


def _grant_feature_writes(function: lambda_.Function, feature_store: FeatureStore) -> None:
    """BatchWriteRecord is authorised as sagemaker:BatchWriteRecord *and* sagemaker:PutRecord on each
    entry's feature group (the Feature Store security guide); the online stores use the stack's key."""
    function.add_to_role_policy(iam.PolicyStatement(
        actions=["sagemaker:BatchWriteRecord", "sagemaker:PutRecord"],
        resources=[group.arn for group in feature_store.groups.values()],
    ))
    feature_store.store.key.grant(function, "kms:Decrypt", "kms:GenerateDataKey")
