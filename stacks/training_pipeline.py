"""TrainingPipeline: the Lambdas, the training and scoring job settings and the state machine that drives one run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk import ArnFormat, Aws, Duration, Size, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from churn.config import PipelineSettings, training_hyperparameters
from churn.schema import FeatureSpec
from churn.scoring import TRANSFORM_MAX_PAYLOAD_MB
from churn.sql import offline_count_sql, table_reference, training_set_sql
from stacks import nag
from stacks.feature_store import ChurnFeatureStore
from stacks.functions import RUNTIME_REASON, python_function
from stacks.storage import MODELS_PREFIX, OFFLINE_STORE_PREFIX, QUERY_PREFIX, RAW_PREFIX, SCORES_PREFIX, DataStore
from stacks.training_code import ENTRY_POINT
from stacks.xgboost_image import ContainerImage

VALIDATE_HANDLER = "churn.handlers.validate_input.handler"
INGEST_HANDLER = "churn.handlers.ingest.handler"
EVALUATE_HANDLER = "churn.handlers.evaluate.handler"
RANK_SCORES_HANDLER = "churn.handlers.rank_scores.handler"
SERVICE_NAME = "churn-pipeline"
METRICS_NAMESPACE = "ChurnPipeline"
TRAINING_CHANNEL = "train"
INGEST_MAP_LABEL = "IngestFeatures"
# Distributed Map hands each child at most 256 KiB; stay below it whatever the batch size says.
MAX_BATCH_BYTES = 200_000
# Batch scoring. SplitType Line + BatchStrategy MultiRecord: Batch Transform cuts the scoring set into
# requests of whole lines of at most TRANSFORM_MAX_PAYLOAD_MB (5 MiB, ~30k Telco customers; the XGBoost
# container's model server refuses bodies above 6 MiB by default), the header only in the first;
# input_fn reads the others by position, and AssembleWith Line joins the responses, whose repeated
# headers Rank scores skips. Any number of customers then scores in requests of bounded size
# (pipeline/local_aws/batch_transform.py does the same cutting for local runs and the moto harness).
SCORING_INPUT_FILE = "scoring-set.csv"
SCORING_INVOCATION_TIMEOUT = Duration.minutes(10)  # a 5 MiB request is served in ~0.3 s here
SCORING_BUDGET_MINUTES = 60  # transform jobs have no stopping condition; the state machine's timeout bounds them
_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
METRIC_DEFINITIONS = {
    "validation-auc": rf"validation-auc:{_NUMBER}",
    "validation-logloss": rf"validation-logloss:{_NUMBER}",
    "train-auc": rf"train-auc:{_NUMBER}",
}
# The as-of time of the scoring set: when that state starts, as an Athena string literal.
AS_OF_NOW_PARAMETER = "States.Array(States.Format('\\'{}\\'', $$.State.EnteredTime))"
RUN_EVENT_TIME_PARAMETER = "States.Array($.validation.event_time_sql)"

# Transient errors only: a task's real failures (bad input, failed job) go straight to the catch.
LAMBDA_TRANSIENT_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]
ATHENA_TRANSIENT_ERRORS = ["Athena.TooManyRequestsException", "Athena.InternalServerException"]
SAGEMAKER_TRANSIENT_ERRORS = ["SageMaker.AmazonSageMakerException", "SageMaker.ThrottlingException"]
# SDK-integration errors are "S3." + the S3 error code + "Exception".
S3_TRANSIENT_ERRORS = ["S3.InternalErrorException", "S3.SlowDownException", "S3.ServiceUnavailableException"]


def _states_arn(integration: str) -> str:
    return f"arn:{Aws.PARTITION}:states:::{integration}"


class ValidatedCsvItemReader(sfn.S3CsvItemReader):
    """The Distributed Map's CSV item reader (header row), reading the object *version* that
    "Validate input" read: an upload to the same key in between (the bucket is versioned) cannot
    slip rows past validation. Its read grant is the object versions under `prefix`/ only, where
    Validate input may read."""

    def __init__(self, *, bucket: Any, key: str, version_id_path: str, prefix: str):
        super().__init__(bucket=bucket, key=key, csv_headers=sfn.CsvHeaders.use_first_row())
        self._version_id_path = version_id_path
        self._objects = bucket.arn_for_objects(f"{prefix}/*")

    def render(self, query_language: sfn.QueryLanguage | None = None) -> Any:
        rendered = super().render(query_language)
        if "Parameters" not in rendered:
            raise ValueError("ValidatedCsvItemReader renders JSONPath states only (its version id is a JSONPath)")
        rendered["Parameters"]["VersionId.$"] = self._version_id_path
        return rendered

    def provide_policy_statements(self) -> list[iam.PolicyStatement]:
        return [iam.PolicyStatement(actions=["s3:GetObject", "s3:GetObjectVersion"], resources=[self._objects])]


def _retry(state: Any, errors: list[str], *, interval: Duration, attempts: int) -> Any:
    """Retry transient errors with exponential backoff and full jitter."""
    state.add_retry(
        errors=errors, interval=interval, max_attempts=attempts, backoff_rate=2, jitter_strategy=sfn.JitterType.FULL
    )
    return state


class _S3Uri(tasks.S3Location):
    """An s3:// URI as is (S3Location.from_bucket renders an https:// URL). Grants are made explicitly."""

    def __init__(self, uri: str) -> None:
        super().__init__()
        self._uri = uri

    def bind(self, task: Any, *, for_reading: bool | None = None, for_writing: bool | None = None):
        return tasks.S3LocationConfig(uri=self._uri)


class TrainingPipeline(Construct):
    """Validate → ingest → wait for the offline store → training set → train → evaluate → register → score."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: FeatureSpec,
        settings: PipelineSettings,
        store: DataStore,
        feature_store: ChurnFeatureStore,
        lambda_code: lambda_.Code,
        powertools_layer: lambda_.ILayerVersion,
        training_code: Path,
        image: ContainerImage,
        model_package_group_name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.spec = spec
        self.settings = settings

        # -- Lambdas -------------------------------------------------------------------------
        environment = {
            "FEATURE_GROUP_NAME": feature_store.feature_group_name,
            "FEATURE_SPEC": spec.to_json(),
            "INGEST_WORKERS": str(settings.ingest_workers),
            "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
        }

        self.function_log_groups: dict[str, Any] = {}

        def function(construct_id: str, *, description: str, handler: str, timeout: Duration, memory: int):
            log_group = self.function_log_groups[construct_id] = store.log_group(f"{construct_id}Logs", self)
            return python_function(
                self,
                construct_id,
                description=description,
                handler=handler,
                code=lambda_code,
                layer=powertools_layer,
                log_group=log_group,
                environment=environment,
                timeout=timeout,
                memory_size=memory,
            )

        self.validate_function = function(
            "ValidateInputFunction",
            description="Validate input: check the raw CSV against the feature spec before ingesting",
            handler=VALIDATE_HANDLER,
            timeout=Duration.minutes(5),
            memory=1024,
        )
        store.grant_read(self.validate_function, RAW_PREFIX)

        # An EXPRESS child runs at most 5 minutes, retries included: keep each attempt short.
        # 1,769 MB is one full vCPU: each PutRecord costs ~3 ms of botocore CPU (bench/README.md),
        # so with less CPU the batch's 8 concurrent writers would wait on the processor, not the network.
        self.ingest_function = function(
            "IngestFunction",
            description="Ingest features: PutRecord one batch of rows into the feature group",
            handler=INGEST_HANDLER,
            timeout=Duration.seconds(90),
            memory=1769,
        )
        self.ingest_function.add_to_role_policy(
            iam.PolicyStatement(actions=["sagemaker:PutRecord"], resources=[feature_store.feature_group_arn])
        )
        # The online store is encrypted with the key; PutRecord callers need to use it.
        store.key.grant(self.ingest_function, "kms:Decrypt", "kms:GenerateDataKey")

        self.evaluate_function = function(
            "EvaluateModelFunction",
            description="Evaluate model: read the model's evaluation and apply the quality threshold",
            handler=EVALUATE_HANDLER,
            timeout=Duration.minutes(2),
            memory=1024,
        )
        store.grant_read(self.evaluate_function, MODELS_PREFIX)
        store.grant_write(self.evaluate_function, MODELS_PREFIX)

        self.rank_scores_function = function(
            "RankScoresFunction",
            description="Rank scores: rank the Batch Transform's churn probabilities into scores.csv",
            handler=RANK_SCORES_HANDLER,
            timeout=Duration.minutes(5),
            memory=1024,
        )
        store.grant_read(self.rank_scores_function, SCORES_PREFIX)
        store.grant_write(self.rank_scores_function, SCORES_PREFIX)

        # -- Training job inputs -------------------------------------------------------------
        self.training_code_asset = s3_assets.Asset(self, "TrainingCode", path=str(training_code))
        self.training_code_uri = self.training_code_asset.s3_object_url
        self.image = image
        self.training_role = self._training_role(store, image)
        self.scoring_role = self._scoring_role(store, image)

        self.model_package_group_name = model_package_group_name
        self.model_package_group = sagemaker.CfnModelPackageGroup(
            self,
            "ModelPackageGroup",
            model_package_group_name=model_package_group_name,
            model_package_group_description="Churn models that passed the pipeline's quality threshold",
        )

        # -- State machine -------------------------------------------------------------------
        table = table_reference(feature_store.database_name, feature_store.table_name)
        self.training_set_sql = training_set_sql(spec, table)
        self.scoring_set_sql = training_set_sql(spec, table, include_label=False)
        self.offline_count_sql = offline_count_sql(spec, table)
        self.log_group = store.log_group("StateMachineLogs", self)
        definition = self._definition(store, feature_store)
        budget = Duration.minutes(
            60
            + settings.offline_store_wait_seconds * settings.offline_store_max_checks // 60
            + settings.training_max_runtime_minutes
            + SCORING_BUDGET_MINUTES
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            state_machine_type=sfn.StateMachineType.STANDARD,
            comment="Churn training: ingest a raw CSV into the feature store, train, evaluate, register, score",
            timeout=budget,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
        )
        self._grant_state_machine(store, feature_store)
        self._acknowledge(store)

    # ---------------------------------------------------------------------------------------
    def _training_role(self, store: DataStore, image: ContainerImage) -> iam.Role:
        """What a training job needs: its input and output, the key, its logs and metrics, its image."""
        role = iam.Role(
            self,
            "TrainingRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="SageMaker training jobs of the churn pipeline",
        )
        store.grant_read(role, QUERY_PREFIX)
        store.grant_write(role, MODELS_PREFIX)
        # Encrypting the output and the training volume with the key is granted by the CDK task.
        self._grant_job_basics(role, image, "TrainingJobs")
        return role

    def _scoring_role(self, store: DataStore, image: ContainerImage) -> iam.Role:
        """The scoring model's execution role: Batch Transform reads the model, the code and the scoring
        set, and writes the predictions, with it."""
        role = iam.Role(
            self,
            "ScoringRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="SageMaker models and batch transform jobs that score the churn pipeline's customers",
        )
        store.grant_read(role, MODELS_PREFIX)
        store.grant_read(role, SCORES_PREFIX)
        store.grant_write(role, SCORES_PREFIX)
        # The transform's ML storage volume is encrypted with the key (as the training task grants it).
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["kms:CreateGrant"],
                resources=[store.key.key_arn],
                conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
            )
        )
        self._grant_job_basics(role, image, "TransformJobs")
        return role

    def _grant_job_basics(self, role: iam.Role, image: ContainerImage, jobs: str) -> None:
        """Logs and metrics of one kind of SageMaker job, the XGBoost image, the script bundle."""
        stack = Stack.of(self)
        log_group = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"/aws/sagemaker/{jobs}",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        role.add_to_policy(iam.PolicyStatement(actions=["logs:CreateLogGroup"], resources=[log_group]))
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                resources=[f"{log_group}:*"],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],  # PutMetricData has no resource type; the namespace condition scopes it
                conditions={"StringEquals": {"cloudwatch:namespace": f"/aws/sagemaker/{jobs}"}},
            )
        )
        # The XGBoost image lives in an AWS-owned registry. Pulling it needs an ECR token (which has
        # no resource type) and read access to that one repository.
        role.add_to_policy(iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]))
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
                resources=[
                    f"arn:{Aws.PARTITION}:ecr:{Aws.REGION}:{image.registry_account}:repository/{image.repository}"
                ],
            )
        )
        # Exactly the code bundle (asset.grant_read would open the whole bootstrap bucket).
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[
                    f"arn:{Aws.PARTITION}:s3:::{self.training_code_asset.s3_bucket_name}/"
                    f"{self.training_code_asset.s3_object_key}"
                ],
            )
        )

    def serving_environment(self) -> dict[str, str]:
        """Script-mode serving: the container runs the training script's model_fn/input_fn/... only
        when SAGEMAKER_PROGRAM is set, with the code from SAGEMAKER_SUBMIT_DIRECTORY."""
        return {
            "SAGEMAKER_PROGRAM": ENTRY_POINT,
            "SAGEMAKER_SUBMIT_DIRECTORY": self.training_code_uri,
            "SAGEMAKER_REGION": Aws.REGION,
        }

    def hyperparameters(self) -> dict[str, str]:
        """Script-mode hyperparameters: every value JSON-encoded, as the SageMaker SDK sends them."""
        settings, spec = self.settings, self.spec
        values: dict[str, Any] = {
            "sagemaker_program": ENTRY_POINT,
            "sagemaker_submit_directory": self.training_code_uri,
            "sagemaker_region": Aws.REGION,
            "sagemaker_container_log_level": 20,
            **training_hyperparameters(settings, spec),
        }
        return {name: json.dumps(value) for name, value in values.items()}

    def _lambda_task(self, state_name: str, function: lambda_.IFunction, payload: dict[str, Any], result_path: str):
        task = tasks.LambdaInvoke(
            self,
            state_name,
            lambda_function=function,
            payload=sfn.TaskInput.from_object(payload),
            payload_response_only=True,
            retry_on_service_exceptions=False,  # replaced by the explicit retry below
            result_path=result_path,
        )
        return _retry(task, LAMBDA_TRANSIENT_ERRORS, interval=Duration.seconds(2), attempts=4)

    def _athena_query(
        self,
        state_name: str,
        *,
        sql: str,
        store: DataStore,
        feature_store: ChurnFeatureStore,
        result_path: str,
        as_of: str = RUN_EVENT_TIME_PARAMETER,
    ) -> sfn.CustomState:
        """Athena StartQueryExecution (.sync) with one parameter: the run's event time unless `as_of` says.

        Written as ASL rather than AthenaStartQueryExecution because that task grants s3:* reads on
        every bucket and Glue create/delete rights; this state machine's role gets exact grants instead.
        """
        return sfn.CustomState(
            self,
            state_name,
            state_json={
                "Type": "Task",
                "Resource": _states_arn("athena:startQueryExecution.sync"),
                "Parameters": {
                    "QueryString": sql,
                    "QueryExecutionContext": {"Catalog": "AwsDataCatalog", "Database": feature_store.database_name},
                    "WorkGroup": store.work_group_name,
                    # Athena substitutes parameters as SQL literals; validate_input quotes the value.
                    "ExecutionParameters.$": as_of,
                },
                "ResultSelector": {
                    "query_execution_id.$": "$.QueryExecution.QueryExecutionId",
                    # The workgroup enforces its result location: query/<QueryExecutionId>.csv
                    "output_uri.$": (
                        f"States.Format('s3://{store.bucket.bucket_name}/{QUERY_PREFIX}/{{}}.csv', "
                        "$.QueryExecution.QueryExecutionId)"
                    ),
                },
                "ResultPath": result_path,
            },
        )

    def _definition(self, store: DataStore, feature_store: ChurnFeatureStore) -> sfn.IChainable:
        settings = self.settings
        bucket = store.bucket

        failure = sfn.Pass(
            self,
            "Record failure",
            comment="Keeps the error and cause of whichever step failed",
            parameters={
                "execution": sfn.JsonPath.string_at("$$.Execution.Name"),
                "failure": sfn.JsonPath.object_at("$.failure"),
            },
        ).next(
            sfn.Fail(
                self,
                "Pipeline failed",
                error_path="$.failure.Error",
                cause_path="$.failure.Cause",
            )
        )

        def catch(state: Any) -> Any:
            state.add_catch(failure, errors=[sfn.Errors.ALL], result_path="$.failure")
            return state

        # 1. Validate the whole file before anything is written.
        validate = catch(
            self._lambda_task(
                "Validate input",
                self.validate_function,
                {
                    "bucket": bucket.bucket_name,
                    "key": sfn.JsonPath.string_at("$.input_key"),
                    "event_time": sfn.JsonPath.string_at("$$.Execution.StartTime"),
                },
                "$.validation",
            )
        )

        # 2. Ingest: one child execution per batch of CSV rows.
        ingest_batch = self._lambda_task(
            "Ingest batch",
            self.ingest_function,
            {
                "Items": sfn.JsonPath.list_at("$.Items"),
                "BatchInput": sfn.JsonPath.object_at("$.BatchInput"),
            },
            "$",
        )
        ingest = sfn.DistributedMap(
            self,
            "Ingest features",
            item_reader=ValidatedCsvItemReader(
                bucket=bucket,
                key=sfn.JsonPath.string_at("$.input_key"),
                version_id_path="$.validation.version_id",
                prefix=RAW_PREFIX,
            ),
            item_batcher=sfn.ItemBatcher(
                max_items_per_batch=settings.ingest_batch_size,
                max_input_bytes_per_batch=MAX_BATCH_BYTES,
                # BatchInput is passed through as written (no JsonPath rendering), hence the ".$" key.
                batch_input={"event_time.$": "$.validation.event_time"},
            ),
            max_concurrency=settings.ingest_max_concurrency,
            tolerated_failure_count=0,
            map_execution_type=sfn.StateMachineType.EXPRESS,
            label=INGEST_MAP_LABEL,
            result_path=sfn.JsonPath.DISCARD,
        )
        ingest.item_processor(ingest_batch)
        catch(ingest)

        # 3. Wait until the offline store holds every record of this run (replication lags minutes).
        start_checks = sfn.Pass(
            self,
            "Start offline store checks",
            result=sfn.Result.from_object({"checks": 0}),
            result_path="$.offline_store",
        )
        count_query = catch(
            self._athena_query(
                "Count offline records",
                sql=self.offline_count_sql,
                store=store,
                feature_store=feature_store,
                result_path="$.offline_count_query",
            )
        )
        _retry(count_query, ATHENA_TRANSIENT_ERRORS, interval=Duration.seconds(5), attempts=4)
        read_count = catch(
            sfn.CustomState(
                self,
                "Read offline count",
                state_json={
                    "Type": "Task",
                    "Resource": _states_arn("athena:getQueryResults"),
                    "Parameters": {
                        "QueryExecutionId.$": "$.offline_count_query.query_execution_id",
                        "MaxResults": 2,
                    },
                    # Row 0 is the header; the count arrives as a string.
                    "ResultSelector": {"records.$": "States.StringToJson($.ResultSet.Rows[1].Data[0].VarCharValue)"},
                    "ResultPath": "$.offline_count",
                },
            )
        )
        _retry(read_count, ATHENA_TRANSIENT_ERRORS, interval=Duration.seconds(5), attempts=4)
        record_check = sfn.Pass(
            self,
            "Record offline check",
            parameters={"checks": sfn.JsonPath.math_add(sfn.JsonPath.number_at("$.offline_store.checks"), 1)},
            result_path="$.offline_store",
        )
        timed_out = sfn.Fail(
            self,
            "Offline store timed out",
            error="OfflineStoreTimeout",
            cause_path=sfn.JsonPath.format(
                "offline store had {} of {} records after {} checks",
                sfn.JsonPath.string_at("$.offline_count.records"),
                sfn.JsonPath.string_at("$.validation.records"),
                sfn.JsonPath.string_at("$.offline_store.checks"),
            ),
        )
        wait = sfn.Wait(
            self,
            "Wait for offline store",
            time=sfn.WaitTime.duration(Duration.seconds(settings.offline_store_wait_seconds)),
        )

        # 4. Point-in-time training set as of this run's event time.
        build_training_set = catch(
            self._athena_query(
                "Build training set",
                sql=self.training_set_sql,
                store=store,
                feature_store=feature_store,
                result_path="$.training_set",
            )
        )
        _retry(build_training_set, ATHENA_TRANSIENT_ERRORS, interval=Duration.seconds(5), attempts=4)

        offline_complete = (
            sfn.Choice(self, "Offline store complete?")
            .when(
                sfn.Condition.number_greater_than_equals_json_path("$.offline_count.records", "$.validation.records"),
                build_training_set,
            )
            .when(
                sfn.Condition.number_greater_than_equals("$.offline_store.checks", settings.offline_store_max_checks),
                timed_out,
            )
            .otherwise(wait)
        )
        wait.next(count_query)

        # 5. Train with the XGBoost container in script mode.
        train = catch(self._train_task(store))
        _retry(train, SAGEMAKER_TRANSIENT_ERRORS, interval=Duration.seconds(10), attempts=3)

        # 6. Evaluate and gate on quality.
        evaluate = catch(
            self._lambda_task(
                "Evaluate model",
                self.evaluate_function,
                {
                    "model_artifact": sfn.JsonPath.string_at("$.training.model_artifact"),
                    "output_prefix": sfn.JsonPath.format(
                        f"s3://{bucket.bucket_name}/{MODELS_PREFIX}/{{}}",
                        sfn.JsonPath.string_at("$.training.training_job_name"),
                    ),
                    "threshold": settings.quality_threshold,
                },
                "$.evaluation",
            )
        )
        below_threshold = sfn.Fail(
            self,
            "Model below quality threshold",
            error="ModelQualityBelowThreshold",
            cause_path=sfn.JsonPath.format(
                f"validation AUC {{}} is below the threshold {settings.quality_threshold}",
                sfn.JsonPath.string_at("$.evaluation.validation_auc"),
            ),
        )

        # 7. Register the model in the stack's model package group.
        register = catch(self._register_task())
        _retry(register, SAGEMAKER_TRANSIENT_ERRORS, interval=Duration.seconds(5), attempts=3)

        # 8. Score every customer with the approved model (Batch Transform, same container and script).
        scoring = self._scoring_states(store, feature_store, catch, failure)

        summary = sfn.Pass(
            self,
            "Summarise run",
            parameters={
                "model_artifact": sfn.JsonPath.string_at("$.training.model_artifact"),
                "validation_auc": sfn.JsonPath.number_at("$.evaluation.validation_auc"),
                "model_package_arn": sfn.JsonPath.string_at("$.registration.model_package_arn"),
                "training_job_name": sfn.JsonPath.string_at("$.training.training_job_name"),
                "execution": sfn.JsonPath.string_at("$$.Execution.Name"),
                "scores_uri": sfn.JsonPath.string_at("$.scores.scores_uri"),
                "customers_scored": sfn.JsonPath.number_at("$.scores.customers"),
                "model_version": sfn.JsonPath.string_at("$.scores.model_version"),
                "top_customers": sfn.JsonPath.list_at("$.scores.top"),
            },
        )
        succeeded = sfn.Succeed(self, "Pipeline succeeded")

        model_good = (
            sfn.Choice(self, "Model good enough?")
            .when(
                sfn.Condition.boolean_equals("$.evaluation.passed", True),
                register.next(scoring).next(summary).next(succeeded),
            )
            .otherwise(below_threshold)
        )
        build_training_set.next(train).next(evaluate).next(model_good)

        return (
            sfn.Chain.start(validate)
            .next(ingest)
            .next(start_checks)
            .next(count_query)
            .next(read_count)
            .next(record_check)
            .next(offline_complete)
        )

    def _scoring_states(
        self, store: DataStore, feature_store: ChurnFeatureStore, catch: Any, failure: sfn.IChainable
    ) -> sfn.Chain:
        """Build scoring set → Stage scoring input → Create scoring model → Score customers → Delete
        scoring model → Rank scores.

        Everything of one execution lives under scores/<execution>/: input/ (the scoring set),
        transform/ (the Batch Transform output) and scores.csv (the ranking). The SageMaker model the
        transform needs is deleted as soon as the transform has ended, whether it succeeded or failed
        (the registered model package stays): executions leave no models behind for `cdk destroy`.
        """
        settings = self.settings
        bucket = store.bucket
        execution = sfn.JsonPath.string_at("$$.Execution.Name")
        run_scores = f"{SCORES_PREFIX}/{{}}"  # scores/<execution>

        # The latest features of every customer as of now: the training-set SQL without the label.
        build = catch(
            self._athena_query(
                "Build scoring set",
                sql=self.scoring_set_sql,
                store=store,
                feature_store=feature_store,
                result_path="$.scoring_set",
                as_of=AS_OF_NOW_PARAMETER,
            )
        )
        _retry(build, ATHENA_TRANSIENT_ERRORS, interval=Duration.seconds(5), attempts=4)

        # Batch Transform reads every object under its input prefix, and Athena writes a binary
        # <id>.csv.metadata next to <id>.csv: the result is copied alone to the run's input/.
        stage = catch(
            tasks.CallAwsService(
                self,
                "Stage scoring input",
                service="s3",
                action="copyObject",
                iam_action="s3:PutObject",
                iam_resources=[bucket.arn_for_objects(f"{SCORES_PREFIX}/*")],
                parameters={
                    "Bucket": bucket.bucket_name,
                    "CopySource": sfn.JsonPath.format(
                        f"{bucket.bucket_name}/{QUERY_PREFIX}/{{}}.csv",
                        sfn.JsonPath.string_at("$.scoring_set.query_execution_id"),
                    ),
                    "Key": sfn.JsonPath.format(f"{run_scores}/input/{SCORING_INPUT_FILE}", execution),
                },
                result_path=sfn.JsonPath.DISCARD,
            )
        )
        _retry(stage, S3_TRANSIENT_ERRORS, interval=Duration.seconds(2), attempts=4)

        create_model = catch(
            tasks.SageMakerCreateModel(
                self,
                "Create scoring model",
                model_name=execution,
                primary_container=tasks.ContainerDefinition(
                    image=tasks.DockerImage.from_registry(self.image.uri),
                    mode=tasks.Mode.SINGLE_MODEL,
                    # The role may read models/ (from_json_expression would grant s3 reads on '*').
                    model_s3_location=_S3Uri(sfn.JsonPath.string_at("$.training.model_artifact")),
                    environment_variables=sfn.TaskInput.from_object(self.serving_environment()),
                ),
                role=self.scoring_role,
                enable_network_isolation=False,  # the container fetches its code from S3 at start
                result_selector={"model_arn": sfn.JsonPath.string_at("$.ModelArn")},
                result_path="$.scoring_model",
            )
        )
        _retry(create_model, SAGEMAKER_TRANSIENT_ERRORS, interval=Duration.seconds(5), attempts=3)

        instance_type = settings.scoring_instance_type.removeprefix("ml.")
        transform = (
            tasks.SageMakerCreateTransformJob(
                self,
                "Score customers",
                integration_pattern=sfn.IntegrationPattern.RUN_JOB,
                transform_job_name=execution,
                model_name=execution,
                role=self.scoring_role,
                transform_input=tasks.TransformInput(
                    transform_data_source=tasks.TransformDataSource(
                        s3_data_source=tasks.TransformS3DataSource(
                            s3_uri=sfn.JsonPath.format(f"s3://{bucket.bucket_name}/{run_scores}/input/", execution),
                            s3_data_type=tasks.S3DataType.S3_PREFIX,
                        )
                    ),
                    content_type="text/csv",
                    split_type=tasks.SplitType.LINE,  # requests of whole lines; the header only in the first
                ),
                transform_output=tasks.TransformOutput(
                    s3_output_path=sfn.JsonPath.format(f"s3://{bucket.bucket_name}/{run_scores}/transform/", execution),
                    accept="text/csv",
                    assemble_with=tasks.AssembleWith.LINE,  # the responses one after another, a line each
                    encryption_key=store.key,
                ),
                transform_resources=tasks.TransformResources(
                    instance_count=1,
                    instance_type=ec2.InstanceType(instance_type),
                    volume_encryption_key=store.key,
                ),
                batch_strategy=tasks.BatchStrategy.MULTI_RECORD,  # as many lines as fit in max_payload
                max_payload=Size.mebibytes(TRANSFORM_MAX_PAYLOAD_MB),
                max_concurrent_transforms=1,
                model_client_options=tasks.ModelClientOptions(
                    invocations_max_retries=1, invocations_timeout=SCORING_INVOCATION_TIMEOUT
                ),
                # The model server's own timeout matches the invocation timeout.
                environment={"SAGEMAKER_MODEL_SERVER_TIMEOUT": str(int(SCORING_INVOCATION_TIMEOUT.to_seconds()))},
                result_selector={"transform_job_name": sfn.JsonPath.string_at("$.TransformJobName")},
                result_path="$.scoring",
            )
        )
        _retry(transform, SAGEMAKER_TRANSIENT_ERRORS, interval=Duration.seconds(10), attempts=3)

        def delete_model(name: str) -> tasks.CallAwsService:
            state = tasks.CallAwsService(
                self,
                name,
                service="sagemaker",
                action="deleteModel",
                iam_action="sagemaker:DeleteModel",
                iam_resources=[Stack.of(self).format_arn(service="sagemaker", resource="model", resource_name="*")],
                parameters={"ModelName": execution},
                result_path=sfn.JsonPath.DISCARD,
            )
            _retry(state, SAGEMAKER_TRANSIENT_ERRORS, interval=Duration.seconds(5), attempts=3)
            return state

        delete = catch(delete_model("Delete scoring model"))
        # A failed transform deletes the model too, then takes the failure path with the transform's error
        # (a failed clean-up keeps its own error apart, under $.cleanup_failure).
        delete_after_failure = delete_model("Delete scoring model after failure")
        delete_after_failure.add_catch(failure, errors=[sfn.Errors.ALL], result_path="$.cleanup_failure")
        delete_after_failure.next(failure)
        transform.add_catch(delete_after_failure, errors=[sfn.Errors.ALL], result_path="$.failure")

        rank = catch(
            self._lambda_task(
                "Rank scores",
                self.rank_scores_function,
                {
                    "transform_output": sfn.JsonPath.format(
                        f"s3://{bucket.bucket_name}/{run_scores}/transform/", execution
                    ),
                    "scores_uri": sfn.JsonPath.format(f"s3://{bucket.bucket_name}/{run_scores}/scores.csv", execution),
                    "model_package_arn": sfn.JsonPath.string_at("$.registration.model_package_arn"),
                },
                "$.scores",
            )
        )
        return sfn.Chain.start(build).next(stage).next(create_model).next(transform).next(delete).next(rank)

    def _train_task(self, store: DataStore) -> tasks.SageMakerCreateTrainingJob:
        settings = self.settings
        instance_type = settings.training_instance_type.removeprefix("ml.")
        return tasks.SageMakerCreateTrainingJob(
            self,
            "Train model",
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            # Execution names are unique per state machine; default (UUID) names are valid job names.
            training_job_name=sfn.JsonPath.string_at("$$.Execution.Name"),
            role=self.training_role,
            algorithm_specification=tasks.AlgorithmSpecification(
                training_image=tasks.DockerImage.from_registry(self.image.uri),
                training_input_mode=tasks.InputMode.FILE,
                metric_definitions=[tasks.MetricDefinition(name=n, regex=r) for n, r in METRIC_DEFINITIONS.items()],
            ),
            hyperparameters=self.hyperparameters(),
            input_data_config=[
                tasks.Channel(
                    channel_name=TRAINING_CHANNEL,
                    content_type="text/csv",
                    data_source=tasks.DataSource(
                        s3_data_source=tasks.S3DataSource(
                            # from_json_expression would grant s3 reads on '*'; query/ is granted to the role.
                            s3_location=_S3Uri(sfn.JsonPath.string_at("$.training_set.output_uri")),
                            s3_data_type=tasks.S3DataType.S3_PREFIX,
                            s3_data_distribution_type=tasks.S3DataDistributionType.FULLY_REPLICATED,
                        )
                    ),
                )
            ],
            output_data_config=tasks.OutputDataConfig(
                s3_output_location=_S3Uri(store.uri(MODELS_PREFIX)),
                encryption_key=store.key,
            ),
            resource_config=tasks.ResourceConfig(
                instance_count=settings.training_instance_count,
                instance_type=ec2.InstanceType(instance_type),
                volume_size=Size.gibibytes(settings.training_volume_gb),
                volume_encryption_key=store.key,
            ),
            stopping_condition=tasks.StoppingCondition(
                max_runtime=Duration.minutes(settings.training_max_runtime_minutes)
            ),
            enable_network_isolation=False,  # the container pip-installs from PyPI at start
            result_selector={
                "model_artifact": sfn.JsonPath.string_at("$.ModelArtifacts.S3ModelArtifacts"),
                "training_job_name": sfn.JsonPath.string_at("$.TrainingJobName"),
            },
            result_path="$.training",
        )

    def _register_task(self) -> tasks.CallAwsService:
        stack = Stack.of(self)
        group = self.model_package_group_name
        return tasks.CallAwsService(
            self,
            "Register model",
            service="sagemaker",
            action="createModelPackage",
            iam_action="sagemaker:CreateModelPackage",
            iam_resources=[
                stack.format_arn(service="sagemaker", resource="model-package", resource_name=f"{group}/*"),
                stack.format_arn(service="sagemaker", resource="model-package-group", resource_name=group),
            ],
            parameters={
                "ModelPackageGroupName": group,
                "ModelPackageDescription": sfn.JsonPath.format(
                    "Churn model trained by execution {}", sfn.JsonPath.string_at("$$.Execution.Name")
                ),
                "ModelApprovalStatus": "Approved",
                "InferenceSpecification": {
                    "Containers": [
                        {
                            "Image": self.image.uri,
                            "ModelDataUrl": sfn.JsonPath.string_at("$.training.model_artifact"),
                            "Environment": self.serving_environment(),
                        }
                    ],
                    "SupportedContentTypes": ["text/csv"],
                    "SupportedResponseMIMETypes": ["text/csv"],
                },
                "ModelMetrics": {
                    "ModelQuality": {
                        "Statistics": {
                            "ContentType": "application/json",
                            "S3Uri": sfn.JsonPath.string_at("$.evaluation.evaluation_uri"),
                        }
                    }
                },
                "CustomerMetadataProperties": {
                    "validation_auc": sfn.JsonPath.format("{}", sfn.JsonPath.string_at("$.evaluation.validation_auc")),
                    "training_job_name": sfn.JsonPath.string_at("$.training.training_job_name"),
                    "feature_spec_fingerprint": self.spec.fingerprint(),
                },
            },
            result_selector={"model_package_arn": sfn.JsonPath.string_at("$.ModelPackageArn")},
            result_path="$.registration",
        )

    def _grant_state_machine(self, store: DataStore, feature_store: ChurnFeatureStore) -> None:
        """Exact grants for the hand-written Athena states (the CDK tasks grant their own)."""
        stack = Stack.of(self)
        machine = self.state_machine
        machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=[
                    "athena:StartQueryExecution",
                    "athena:GetQueryExecution",
                    "athena:GetQueryResults",
                    "athena:StopQueryExecution",
                ],
                resources=[
                    stack.format_arn(service="athena", resource="workgroup", resource_name=store.work_group_name)
                ],
            )
        )
        machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["athena:GetDataCatalog"],
                resources=[stack.format_arn(service="athena", resource="datacatalog", resource_name="AwsDataCatalog")],
            )
        )
        machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=[
                    "glue:GetDatabase",
                    "glue:GetTable",
                    "glue:GetPartition",
                    "glue:GetPartitions",
                    "glue:BatchGetPartition",
                ],
                resources=[
                    stack.format_arn(service="glue", resource="catalog"),
                    stack.format_arn(service="glue", resource="database", resource_name=feature_store.database_name),
                    stack.format_arn(
                        service="glue",
                        resource="table",
                        resource_name=f"{feature_store.database_name}/{feature_store.table_name}",
                    ),
                ],
            )
        )
        # Athena reads the offline store and writes/reads results as the state machine's role.
        # (kms:Decrypt also serves the Distributed Map's item reader for the raw CSV: the reader
        # grants itself S3 read of raw/ only, see ValidatedCsvItemReader.)
        store.grant_read(machine, OFFLINE_STORE_PREFIX)
        store.grant_read(machine, QUERY_PREFIX)
        store.grant_write(machine, QUERY_PREFIX)
        # Stage scoring input copies an Athena result into scores/ (its PutObject comes with the task).
        store.key.grant(machine, "kms:GenerateDataKey")
        machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
                resources=[store.bucket.bucket_arn],
            )
        )

    def _acknowledge(self, store: DataStore) -> None:
        """The wildcard grants that remain, each scoped as far as the API allows."""
        bucket = nag.ref(store.bucket.node.default_child, "Arn")
        prefix_reason = "object keys are generated at run time; the grant is limited to the {} prefix"
        functions = (self.validate_function, self.ingest_function, self.evaluate_function, self.rank_scores_function)
        for function in functions:
            nag.wildcard_resource(function.role, "*", nag.XRAY_REASON)
            nag.lambda_runtime(function, RUNTIME_REASON)
        nag.wildcard_resource(
            self.validate_function.role,
            f"{bucket}/{RAW_PREFIX}/*",
            "Validate input reads the CSV an execution names; " + prefix_reason.format("raw/"),
        )
        nag.wildcard_resource(
            self.evaluate_function.role,
            f"{bucket}/{MODELS_PREFIX}/*",
            "Evaluate model reads the run's model and writes its evaluation; " + prefix_reason.format("models/"),
        )
        nag.wildcard_resource(
            self.rank_scores_function.role,
            f"{bucket}/{SCORES_PREFIX}/*",
            "Rank scores reads the run's Batch Transform output and writes its scores.csv under "
            "scores/<execution>/; " + prefix_reason.format("scores/"),
        )

        role = self.training_role
        nag.wildcard_resource(
            role,
            "*",
            "ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no resource-level permissions "
            "(PutMetricData is limited to the /aws/sagemaker/TrainingJobs namespace by condition)",
        )
        nag.wildcard_resource(
            role,
            f"{bucket}/{QUERY_PREFIX}/*",
            "the training channel is the run's Athena result; " + prefix_reason.format("query/"),
        )
        nag.wildcard_resource(
            role,
            f"{bucket}/{MODELS_PREFIX}/*",
            "SageMaker writes <job name>/output/model.tar.gz; " + prefix_reason.format("models/"),
        )
        nag.wildcard_resource(
            role,
            nag.as_finding(
                self,
                Stack.of(self).format_arn(
                    service="logs",
                    resource="log-group",
                    resource_name="/aws/sagemaker/TrainingJobs:*",
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                ),
            ),
            "SageMaker writes one log stream per training job into /aws/sagemaker/TrainingJobs",
        )
        scoring_role = self.scoring_role
        nag.wildcard_resource(
            scoring_role,
            "*",
            "ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no resource-level permissions "
            "(PutMetricData is limited to the /aws/sagemaker/TransformJobs namespace by condition)",
        )
        nag.wildcard_resource(
            scoring_role,
            f"{bucket}/{MODELS_PREFIX}/*",
            "the scoring model loads the run's model artifact (models/<training job>/output/model.tar.gz); "
            + prefix_reason.format("models/"),
        )
        nag.wildcard_resource(
            scoring_role,
            f"{bucket}/{SCORES_PREFIX}/*",
            "Batch Transform reads scores/<execution>/input/ and writes scores/<execution>/transform/; "
            + prefix_reason.format("scores/"),
        )
        nag.wildcard_resource(
            scoring_role,
            nag.as_finding(
                self,
                Stack.of(self).format_arn(
                    service="logs",
                    resource="log-group",
                    resource_name="/aws/sagemaker/TransformJobs:*",
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                ),
            ),
            "SageMaker writes one log stream per transform job instance into /aws/sagemaker/TransformJobs",
        )
        for action in ("kms:GenerateDataKey*", "kms:ReEncrypt*"):
            nag.wildcard_action(
                role,
                action,
                "SageMakerCreateTrainingJob (aws-cdk-lib) grants the training "
                "role encrypt on the output key; the key is this stack's only",
            )

        machine_role = self.state_machine.role
        nag.wildcard_resource(
            machine_role,
            "*",
            "X-Ray tracing and CloudWatch Logs delivery (logs:CreateLogDelivery and related) have no "
            "resource-level permissions; sagemaker:ListTags is granted on '*' by the CDK training task",
        )
        for function in functions:
            nag.wildcard_resource(
                machine_role,
                f"{nag.ref(function.node.default_child, 'Arn')}:*",
                "LambdaInvoke (aws-cdk-lib) grants invoke on the function and its versions",
            )
        nag.wildcard_resource(
            machine_role,
            f"{bucket}/{OFFLINE_STORE_PREFIX}/*",
            "Athena reads the feature group's offline-store files; " + prefix_reason.format("offline-store/"),
        )
        nag.wildcard_resource(
            machine_role,
            f"{bucket}/{QUERY_PREFIX}/*",
            "Athena writes and reads query results; " + prefix_reason.format("query/"),
        )
        nag.wildcard_resource(
            machine_role,
            f"{bucket}/{RAW_PREFIX}/*",
            "The Distributed Map's item reader reads the version of the CSV named by the execution input "
            "that Validate input read; " + prefix_reason.format("raw/"),
        )
        nag.wildcard_resource(
            machine_role,
            nag.as_finding(
                self, Stack.of(self).format_arn(service="sagemaker", resource="training-job", resource_name="*")
            ),
            "Training job names come from the execution name at run time",
        )
        nag.wildcard_resource(
            machine_role,
            nag.as_finding(
                self,
                Stack.of(self).format_arn(
                    service="sagemaker", resource="model-package", resource_name=f"{self.model_package_group_name}/*"
                ),
            ),
            "Model package versions are numbered by SageMaker; the grant is limited to this stack's group",
        )
        nag.wildcard_resource(
            machine_role,
            f"{bucket}/{SCORES_PREFIX}/*",
            "Stage scoring input copies the run's scoring set to scores/<execution>/input/; "
            + prefix_reason.format("scores/"),
        )
        for resource, what in (("model", "Scoring models"), ("transform-job", "Scoring transform jobs")):
            nag.wildcard_resource(
                machine_role,
                nag.as_finding(
                    self, Stack.of(self).format_arn(service="sagemaker", resource=resource, resource_name="*")
                ),
                f"{what} are named after the execution at run time (SageMakerCreateModel / "
                "SageMakerCreateTransformJob in aws-cdk-lib scope the grant to the resource type)",
            )
        map_policy = self.state_machine.node.try_find_child("DistributedMapPolicy")
        if map_policy is not None:
            for finding in _distributed_map_findings(self):
                nag.wildcard_resource(
                    map_policy, finding, "The Distributed Map (aws-cdk-lib) manages its own child executions"
                )


def _distributed_map_findings(pipeline: TrainingPipeline) -> list[str]:
    """The child-execution ARNs DistributedMap grants itself, as cdk-nag reports them."""
    stack = Stack.of(pipeline)
    machine_id = stack.resolve(pipeline.state_machine.node.default_child.logical_id)
    # The state machine's name, cut out of its ARN with Fn::Select/Fn::Split.
    name = json.dumps({"Fn::Select": [6, {"Fn::Split": [":", {"Ref": machine_id}]}]}, separators=(",", ":"))
    executions = nag.as_finding(
        pipeline,
        stack.format_arn(
            service="states", resource="execution", resource_name="NAME", arn_format=ArnFormat.COLON_RESOURCE_NAME
        ),
    ).removesuffix("NAME")
    return [f"{executions}{name}:*", f"{executions}{name}/{INGEST_MAP_LABEL}:*"]
