"""Run the synthesised state machine on moto's Step Functions interpreter, with the smallest test-side
extension that lets the real definition run end to end on one machine.

moto (pinned: MOTO_VERSION; the interpreter internals patched here are those of that release)
interprets Amazon States Language for real. What it cannot do, and what stands in for it here:

- **Lambda**: without Docker, moto's `LambdaSimpleBackend.invoke` only echoes the payload. It is
  patched to run the function in-process: the handler string and environment the function was
  created with (taken from the template), the code from the function's asset (checked to be the very
  files imported). A raised exception becomes an `Unhandled` function error with `errorType` = the
  exception's class name, as the Lambda runtime reports it.
- **`.sync` for Athena and SageMaker**: moto relays these services' calls to its own backends but
  accepts only `.waitForTaskToken`. `SyncJobService` also accepts `.sync` and polls the job until it
  ends; it is swapped in through `state_task_factory.state_task_service_for`. A job that ends in a
  failed state fails the task with `States.TaskFailed` and the describe output as the cause, as Step
  Functions does. What the job *does* is a fake registered per API action:
  - `AthenaOnDuckDB`: runs the query text (with its ExecutionParameters substituted as SQL literals,
    as Athena does) on DuckDB over the local feature store's offline Parquet, writes the CSV (and a
    `.csv.metadata` file) to the workgroup's result location in moto S3, and serves the rows to
    GetQueryResults.
  - `SageMakerTraining`: runs the training code bundle from the cloud assembly (the
    `sagemaker_submit_directory` asset) under SageMaker's environment contract on the channel data
    fetched from moto S3, and uploads `<output>/<job>/output/model.tar.gz`.
  - `SageMakerTransform`: Batch Transform with the model's own serving functions
    (`model_fn`/`input_fn`/`predict_fn`/`output_fn`) in a subprocess, writing `<input name>.out`.
- **Feature Store runtime**: moto has none; PutRecord from the in-process handlers goes to a real
  `pipeline.local_aws.feature_store.LocalFeatureStore` (or a test's wrapper of it).
- **ItemBatcher**: moto rejects it at parse time. It is taken out of the definition, the items
  are cut into batches by its own limits before the Map Run starts, and an ItemSelector
  `{"Items.$": "$$.Map.Item.Value", "BatchInput": <the batcher's BatchInput>}` gives each child the
  `{"Items": [...], "BatchInput": {...}}` input Step Functions gives it.

CDK tokens in the definition are resolved with `asl_resolver` (deterministic names); the resources the
definition names (bucket, functions, workgroup, model package group, feature group) are created in
moto/locally under those names from the template's own properties.
"""

from __future__ import annotations

import contextlib
import csv
import inspect
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import traceback
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from importlib import import_module
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import duckdb
import moto
from asl_resolver import ACCOUNT, REGION, resolve, resolve_definition
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.athena.models import QueryResults, athena_backends
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.error_name import ErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
from moto.stepfunctions.parser.asl.component.common.string.string_expression import StringIntrinsicFunction
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.distributed_iteration_component import (
    DistributedIterationComponent,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_factory
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import ResourceCondition
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_unsupported import (
    StateTaskServiceUnsupported,
)
from moto.stepfunctions.parser.asl.component.state.fail import state_fail
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.eval.states import StateData
from moto.stepfunctions.parser.asl.parse.intrinsic.intrinsic_parser import IntrinsicParser
from moto.stepfunctions.parser.asl.parse.intrinsic.preprocessor import Preprocessor as IntrinsicPreprocessor
from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor
from moto.stepfunctions.parser.asl.utils import json_path
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

from churn.handlers import _runtime
from churn.schema import FeatureSpec
from pipeline.local_aws.batch_transform import PayloadTooLarge, assemble_lines, mini_batches
from pipeline.local_aws.feature_store import LocalFeatureStore
from pipeline.local_aws.training_job import toolkit_args, training_env

CREATE_FEATURE_GROUP_ARGS = ("FeatureGroupName", "RecordIdentifierFeatureName", "EventTimeFeatureName",
                             "FeatureDefinitions", "OnlineStoreConfig", "OfflineStoreConfig", "Description")
MOTO_VERSION = "5.2.5"  # requirements-dev.txt pins it; the patched internals are this release's
if moto.__version__ != MOTO_VERSION:  # pragma: no cover - fails loudly instead of misbehaving
    raise ImportError(f"sfn_harness patches moto {MOTO_VERSION} internals; moto {moto.__version__} is installed")

MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
STATE_MACHINE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/pipeline-state-machine"
FEATURE_STORE_RUNTIME = "sagemaker-featurestore-runtime"
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
REAL_CLIENT = _runtime.client  # what the handlers' `client` is outside a harness


# -- the definition ----------------------------------------------------------------------------
def runnable_on_moto(states: dict[str, Any], batchers: dict[str, dict[str, Any]]) -> None:
    """Rewrite, in place, what moto 5.2.5 cannot parse, keeping what it means:

    - ItemBatcher: removed, and collected into `batchers` by state name; `_map_run` then cuts the
      items into batches as Step Functions does, and an ItemSelector `{"Items.$": "$$.Map.Item.Value",
      "BatchInput": <the batcher's>}` gives each child the `{"Items": [...], "BatchInput": {...}}` input.
    - a Distributed Map's EXPRESS child executions: its grammar knows STANDARD only (the difference,
      at-least-once vs exactly-once children, does not show in one process).
    """
    for name, state in states.items():
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            runnable_on_moto(processor["States"], batchers)
            config = processor.get("ProcessorConfig", {})
            if config.get("ExecutionType") == "EXPRESS":
                config["ExecutionType"] = "STANDARD"
        for branch in state.get("Branches", []):
            runnable_on_moto(branch["States"], batchers)
        batcher = state.pop("ItemBatcher", None)
        if batcher is None:
            continue
        if "ItemSelector" in state or "Parameters" in state:
            raise NotImplementedError("an ItemBatcher together with an ItemSelector is not emulated")
        if any(k.endswith("Path") for k in batcher):
            raise NotImplementedError(f"ItemBatcher {sorted(batcher)}: only literal limits are emulated")
        batchers[name] = batcher
        selector: dict[str, Any] = {"Items.$": "$$.Map.Item.Value"}
        if "BatchInput" in batcher:
            selector["BatchInput"] = batcher["BatchInput"]
        state["ItemSelector"] = selector


def batch_items(items: list[Any], batcher: dict[str, Any]) -> list[list[Any]]:
    """Step Functions' ItemBatcher: consecutive items, at most MaxItemsPerBatch of them and at most
    MaxInputBytesPerBatch of JSON (the BatchInput counted in too, approximately)."""
    max_items = batcher.get("MaxItemsPerBatch") or len(items) or 1
    max_bytes = batcher.get("MaxInputBytesPerBatch") or 256 * 1024
    base = len(json.dumps({"BatchInput": batcher.get("BatchInput", {}), "Items": []}))
    batches: list[list[Any]] = []
    current: list[Any] = []
    size = base
    for item in items:
        item_size = len(json.dumps(item)) + 1
        if current and (len(current) >= max_items or size + item_size > max_bytes):
            batches.append(current)
            current, size = [], base
        current.append(item)
        size += item_size
    if current:
        batches.append(current)
    return batches


def json_safe(value: Any) -> Any:
    """Step Functions hands timestamps on as epoch milliseconds; boto3 returns datetimes."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, date):
        return value.isoformat()
    return value


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


# -- jobs: what a .sync integration runs ---------------------------------------------------------
@dataclass
class JobOutcome:
    """How a job ended: the describe output's status fields to overlay, or a failure."""

    succeeded: bool
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SyncApi:
    """How Step Functions waits for one job kind: the describe call and its status field."""

    describe: str  # boto3 method
    id_param: str  # the describe call's parameter, also the start request's name field (or the start output's)
    status_key: str  # top-level key of the status (dotted for nested)
    succeeded: tuple[str, ...]
    failed: tuple[str, ...]


SYNC_APIS: dict[tuple[str, str], SyncApi] = {
    ("athena", "startQueryExecution"): SyncApi(
        "get_query_execution", "QueryExecutionId", "QueryExecution.Status.State", ("SUCCEEDED",),
        ("FAILED", "CANCELLED")
    ),
    ("sagemaker", "createTrainingJob"): SyncApi(
        "describe_training_job", "TrainingJobName", "TrainingJobStatus", ("Completed",), ("Failed", "Stopped")
    ),
    ("sagemaker", "createTransformJob"): SyncApi(
        "describe_transform_job", "TransformJobName", "TransformJobStatus", ("Completed",), ("Failed", "Stopped")
    ),
    ("sagemaker", "createProcessingJob"): SyncApi(
        "describe_processing_job", "ProcessingJobName", "ProcessingJobStatus", ("Completed",), ("Failed", "Stopped")
    ),
}

# (service, action) -> fn(harness, request parameters, start response) -> JobOutcome
JobRunner = Callable[["PipelineHarness", dict[str, Any], dict[str, Any]], JobOutcome]


def _dig(value: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        value = value.get(part, {}) if isinstance(value, dict) else {}
    return value


def _overlay(target: dict[str, Any], fields: dict[str, Any]) -> None:
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _overlay(target[key], value)
        else:
            target[key] = value


class SyncJobService(StateTaskServiceUnsupported):
    """moto's relay for Athena/SageMaker, plus `.sync`: start the job in moto, run its fake, poll."""

    harness: PipelineHarness  # set on the class by PipelineHarness while it is active

    def __init__(self) -> None:
        super().__init__()
        # A set of its own (the parent's is moto's module-level one). WaitForTaskToken must stay: the
        # interpreter interrupts the task's callback endpoint after any integration pattern, and
        # that endpoint only exists when WaitForTaskToken is supported.
        self._supported_integration_patterns = {ResourceCondition.WaitForTaskToken, ResourceCondition.Sync}

    def _sync_api(self) -> tuple[tuple[str, str], SyncApi]:
        key = (self._get_boto_service_name(), self.resource.api_action)
        if key not in SYNC_APIS or key not in self.harness.jobs:
            raise RuntimeError(f"no test fake for {self.resource.resource_arn}")
        return key, SYNC_APIS[key]

    def _build_sync_resolver(self, env, resource_runtime_part, normalised_parameters, state_credentials):
        started: dict[str, Any] = env.stack.pop()
        key, api = self._sync_api()
        job_id = started.get(api.id_param) or normalised_parameters[api.id_param]
        outcome = self.harness.jobs[key](self.harness, normalised_parameters, started)
        client = self.harness.client(key[0])

        def resolve_job() -> dict[str, Any] | None:
            described = json_safe(getattr(client, api.describe)(**{api.id_param: job_id}))
            _overlay(described, outcome.fields)
            status = _dig(described, api.status_key)
            if status in api.succeeded:
                return described
            if status in api.failed:
                raise FailureEventException(
                    FailureEvent(
                        env=env,
                        error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                        event_type=HistoryEventType.TaskFailed,
                        event_details=EventDetails(
                            taskFailedEventDetails=TaskFailedEventDetails(
                                resource=self._get_sfn_resource(),
                                resourceType=self._get_sfn_resource_type(),
                                error=StatesErrorNameType.StatesTaskFailed.to_name(),
                                cause=to_json_str(described),
                            )
                        ),
                    )
                )
            return None

        return resolve_job


# -- where moto 5.2.5's interpreter differs from Step Functions ------------------------------------
_original_environment = ExecutionWorker._get_evaluation_environment
_original_extract_json = json_path.extract_json
_DEFINITE_PATH = re.compile(r"^\$(\.[A-Za-z_][\w-]*|\['[^'\]]*'\]|\[\d+\])*$")
# The modules of the interpreter that imported extract_json by name.
JSON_PATH_USERS = (
    "moto.stepfunctions.parser.asl.component.common.string.string_expression",
    "moto.stepfunctions.parser.asl.component.intrinsic.argument.argument",
    "moto.stepfunctions.parser.asl.component.state.choice.comparison.operator.implementations.timestamp_operators",
    "moto.stepfunctions.parser.asl.component.state.choice.comparison.operator.implementations.boolean_equals",
    "moto.stepfunctions.parser.asl.component.state.choice.comparison.operator.implementations.numeric",
    "moto.stepfunctions.parser.asl.component.state.choice.comparison.operator.implementations.string_operators",
    "moto.stepfunctions.parser.asl.eval.states",
)


def _extract_json(path: str, data: Any) -> Any:
    """A definite path (names and indexes only) selects one value, as on Step Functions: moto 5.2.5
    returns a list when the step before the last is an index (`$.Rows[1].Data[0].VarCharValue`)."""
    if _DEFINITE_PATH.match(path):
        matches = json_path.parse(path).find(data)
        if len(matches) == 1:
            return matches[0].value
    return _original_extract_json(path, data)


def _visit_intrinsic_function(preprocessor: Preprocessor, ctx) -> StringIntrinsicFunction:
    """An intrinsic function is a JSON string: its escapes (`\\'` for a quote inside a string
    argument, as AWS documents) are decoded before it is parsed; moto 5.2.5 parses the raw text."""
    derivation = json.loads(ctx.STRINGINTRINSICFUNC().getText())
    function, _ = IntrinsicParser.parse(derivation)
    return StringIntrinsicFunction(intrinsic_function_derivation=derivation, function=function)


_original_unescape = IntrinsicPreprocessor._replace_escaped_characters


def _unescape_intrinsic(match: re.Match) -> str:
    """In an intrinsic function's string argument `\\'` is a quote and `\\\\` a backslash (AWS);
    moto 5.2.5 keeps both escaped. (`\\{`/`\\}` stay as moto has them: States.Format splits on {}.)"""
    if match.group(1) in ("'", "\\"):
        return match.group(1)
    return _original_unescape(match)


class _ReraisedErrorName(ErrorName):
    """Step Functions lets a Fail state re-raise any error, `States.*` included (ErrorPath of a
    caught error); moto 5.2.5's CustomErrorName refuses names starting with `States.`."""


def _fail_state_error_name(error_name: str | None) -> ErrorName:
    return _ReraisedErrorName(error_name)


def aws_timestamp(value: Any) -> str:
    """A context-object time as Step Functions writes it, 2019-03-26T20:14:13.192Z; moto writes
    Python's isoformat (microseconds, +00:00)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _aws_start_time(worker: ExecutionWorker):
    """`$$.Execution.StartTime` in Step Functions' format."""
    env = _original_environment(worker)
    execution = env.states.context_object.context_object_data["Execution"]
    execution["StartTime"] = aws_timestamp(execution["StartTime"])
    return env


def _aws_state_data(**fields: Any) -> StateData:
    """`$$.State.EnteredTime` in Step Functions' format."""
    return StateData(**{**fields, "EnteredTime": aws_timestamp(fields["EnteredTime"])})


_original_map_run = DistributedIterationComponent._map_run
ITEM_BATCHERS: dict[str, dict[str, Any]] = {}  # Map state name -> its ItemBatcher (while a harness runs)
EXCEEDED_TOLERATED_FAILURES = "States.ExceededToleratedFailureThreshold"


def _map_run_with_failure_threshold(component: DistributedIterationComponent, env, eval_input) -> None:
    """A Distributed Map Run fails once its failed items exceed the tolerated count and percentage
    (default 0): moto 5.2.5 counts failed child executions but lets the Map succeed regardless.
    (Checked when the run ends; Step Functions stops launching children as soon as it is exceeded.
    With both thresholds set, AWS fails when either is exceeded; this fails when both are.)"""
    batcher = ITEM_BATCHERS.get(eval_input.state_name)
    if batcher is not None:
        env.stack.append(batch_items(env.stack.pop(), batcher))
    _original_map_run(component, env, eval_input)
    counter = eval_input.map_run_record.item_counter
    failed = counter.failed.get() + counter.timed_out.get()
    total = max(1, counter.total.get())
    if failed > eval_input.tolerated_failure_count and 100.0 * failed / total > eval_input.tolerated_failure_percentage:
        raise FailureEventException(
            FailureEvent(
                env=env,
                error_name=_ReraisedErrorName(EXCEEDED_TOLERATED_FAILURES),
                event_type=HistoryEventType.MapRunFailed,
                event_details=EventDetails(
                    taskFailedEventDetails=TaskFailedEventDetails(
                        error=EXCEEDED_TOLERATED_FAILURES,
                        cause=f"The specified tolerated failure threshold was exceeded: {failed} of "
                        f"{counter.total.get()} items failed",
                    )
                ),
            )
        )


def _state_task_service_for(service_name: str):
    if service_name in ("athena", "sagemaker"):
        return SyncJobService()
    return state_task_service_factory.state_task_service_for(service_name)


def interpreter_patches() -> list[Any]:
    """Every change to moto 5.2.5's Step Functions interpreter, each documented where it is defined."""
    state = "moto.stepfunctions.parser.asl.component.state.state"
    return [
        mock.patch.object(state_task_factory, "state_task_service_for", _state_task_service_for),
        mock.patch.object(ExecutionWorker, "_get_evaluation_environment", _aws_start_time),
        mock.patch(f"{state}.StateData", _aws_state_data),
        mock.patch.object(state_fail, "CustomErrorName", _fail_state_error_name),
        mock.patch.object(Preprocessor, "visitString_intrinsic_function", _visit_intrinsic_function),
        mock.patch.object(IntrinsicPreprocessor, "_replace_escaped_characters", staticmethod(_unescape_intrinsic)),
        mock.patch.object(DistributedIterationComponent, "_map_run", _map_run_with_failure_threshold),
        *(mock.patch(f"{module}.extract_json", _extract_json) for module in JSON_PATH_USERS),
    ]


# -- Athena ------------------------------------------------------------------------------------
def substitute_parameters(sql: str, parameters: list[str]) -> str:
    """Athena's ExecutionParameters: each `?` outside quotes becomes the next value, as SQL text."""
    out: list[str] = []
    values = iter(parameters)
    quote: str | None = None
    used = 0
    for char in sql:
        if quote:
            if char == quote:
                quote = None
        elif char in ("'", '"'):
            quote = char
        elif char == "?":
            try:
                out.append(next(values))
            except StopIteration:
                raise ValueError(f"the query has more ? placeholders than the {len(parameters)} parameters") from None
            used += 1
            continue
        out.append(char)
    if used != len(parameters):
        raise ValueError(f"the query has {used} ? placeholders but {len(parameters)} parameters were given")
    return "".join(out)


class AthenaOnDuckDB:
    """Athena StartQueryExecution as a job: the real SQL on DuckDB over the local offline store."""

    def __init__(self) -> None:
        # (database, table) -> feature group name in the local feature store
        self.tables: dict[tuple[str, str], str] = {}
        # checks run before a query; one may return an error message to fail the query with
        self.fault_injectors: list[Callable[[str], str | None]] = []
        self.before_query: list[Callable[[str], None]] = []
        self.queries: list[dict[str, Any]] = []

    def fail_when(self, predicate: Callable[[str], bool], message: str) -> None:
        self.fault_injectors.append(lambda sql: message if predicate(sql) else None)

    def __call__(self, harness: PipelineHarness, request: dict[str, Any], started: dict[str, Any]) -> JobOutcome:
        execution_id = started["QueryExecutionId"]
        athena = harness.client("athena")
        workgroup = athena.get_work_group(WorkGroup=request["WorkGroup"])["WorkGroup"]
        configuration = workgroup["Configuration"]
        location = configuration["ResultConfiguration"]["OutputLocation"]
        output = f"{location.rstrip('/')}/{execution_id}.csv"
        sql = request["QueryString"]
        record = {"id": execution_id, "sql": sql, "parameters": request.get("ExecutionParameters", []),
                  "output": output}
        self.queries.append(record)
        for hook in self.before_query:
            hook(sql)
        backend = athena_backends[ACCOUNT][REGION]
        execution = backend.executions[execution_id]
        execution.config = {"OutputLocation": output, **{
            k: v for k, v in configuration["ResultConfiguration"].items() if k != "OutputLocation"}}
        try:
            for inject in self.fault_injectors:
                message = inject(sql)
                if message:
                    raise RuntimeError(message)
            text = substitute_parameters(sql, list(request.get("ExecutionParameters", [])))
            columns, rows, csv_bytes = self._run(harness, text)
        except Exception as exc:  # noqa: BLE001 - any query error is the query's failure
            message = " ".join(str(exc).split())
            execution.status = "FAILED"
            record["error"] = message
            return JobOutcome(False, {"QueryExecution": {
                "Status": {"State": "FAILED", "StateChangeReason": message,
                           "AthenaError": {"ErrorCategory": 2, "ErrorType": 1006, "Retryable": False,
                                           "ErrorMessage": message}}}})
        bucket, key = split_s3_uri(output)
        s3 = harness.client("s3")
        s3.put_object(Bucket=bucket, Key=key, Body=csv_bytes)
        # Athena writes a binary description of the columns next to every result.
        s3.put_object(Bucket=bucket, Key=f"{key}.metadata", Body=json.dumps(columns).encode())
        header = {"Data": [{"VarCharValue": c} for c in columns]}
        data = [{"Data": [{} if v is None else {"VarCharValue": _athena_text(v)} for v in row]} for row in rows]
        backend.query_results[execution_id] = QueryResults(
            rows=[header, *data], column_info=[{"Name": c, "Label": c, "Type": "varchar"} for c in columns]
        )
        execution.status = "SUCCEEDED"
        record["rows"] = len(rows)
        return JobOutcome(True, {"QueryExecution": {"Status": {"State": "SUCCEEDED"}}})

    def _run(self, harness: PipelineHarness, sql: str) -> tuple[list[str], list[tuple[Any, ...]], bytes]:
        store = harness.feature_store
        con = duckdb.connect(":memory:")
        try:
            for (database, table), group in self.tables.items():
                store.attach_duckdb(con, group, database, table)
            con.execute(f"CREATE TEMP TABLE athena_result AS {sql}")
            columns = [row[0] for row in con.execute("DESCRIBE athena_result").fetchall()]
            rows = con.execute("SELECT * FROM athena_result LIMIT 1000").fetchall()
            with tempfile.TemporaryDirectory() as tmp:
                target = Path(tmp) / "result.csv"
                # Athena's CSV: a header, every value double-quoted, NULL as an empty field.
                con.execute(f"COPY athena_result TO '{target}' (HEADER, FORCE_QUOTE *)")
                return columns, rows, target.read_bytes()
        finally:
            con.close()


def _athena_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- SageMaker ---------------------------------------------------------------------------------
class SageMakerTraining:
    """CreateTrainingJob as a job: the bundled script, run under SageMaker's environment contract."""

    def __init__(self, timeout_seconds: int = 300) -> None:
        self.timeout_seconds = timeout_seconds
        self.jobs: list[dict[str, Any]] = []

    def __call__(self, harness: PipelineHarness, request: dict[str, Any], started: dict[str, Any]) -> JobOutcome:
        name = request["TrainingJobName"]
        root = harness.workdir / "training-jobs" / name
        hyperparameters = {k: json.loads(v) for k, v in request.get("HyperParameters", {}).items()}
        code = harness.code_bundle(hyperparameters["sagemaker_submit_directory"], root / "code")
        program = hyperparameters["sagemaker_program"]
        channels = []
        for channel in request["InputDataConfig"]:
            source = channel["DataSource"]["S3DataSource"]
            harness.download_prefix(source["S3Uri"], root / "input" / "data" / channel["ChannelName"],
                                    exact=source["S3DataType"] == "ManifestFile")
            channels.append(channel["ChannelName"])
        user = {k: v for k, v in hyperparameters.items() if not k.startswith("sagemaker_")}
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SM_"))},
            **training_env(root, user, tuple(channels)),
        }
        limit = min(self.timeout_seconds, request.get("StoppingCondition", {}).get("MaxRuntimeInSeconds", 86400))
        command = [sys.executable, program, *toolkit_args(user)]
        try:
            completed = subprocess.run(command, cwd=code, env=env, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            self.jobs.append({"name": name, "status": "Stopped"})
            return JobOutcome(False, {"TrainingJobStatus": "Stopped", "FailureReason": "MaxRuntimeExceeded"})
        (root / "training.log").write_text(completed.stdout + completed.stderr, encoding="utf-8")
        record = {"name": name, "returncode": completed.returncode, "log": completed.stdout + completed.stderr}
        self.jobs.append(record)
        metric_definitions = request["AlgorithmSpecification"].get("MetricDefinitions", [])
        algorithm = {"AlgorithmSpecification": {"MetricDefinitions": metric_definitions}}
        if completed.returncode != 0:
            failure = root / "output" / "failure"
            reason = failure.read_text(encoding="utf-8").strip() if failure.exists() else ""
            reason = reason or (completed.stderr.strip().splitlines() or [f"exit code {completed.returncode}"])[-1]
            record["status"] = "Failed"
            return JobOutcome(False, {"TrainingJobStatus": "Failed", "SecondaryStatus": "Failed",
                                      "FailureReason": f"AlgorithmError: {reason}", **algorithm})
        artifact = f"{request['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{name}/output/model.tar.gz"
        harness.upload_tarball(root / "model", artifact)
        record["status"] = "Completed"
        record["artifact"] = artifact
        return JobOutcome(True, {
            "TrainingJobStatus": "Completed",
            "SecondaryStatus": "Completed",
            "ModelArtifacts": {"S3ModelArtifacts": artifact},
            "FinalMetricDataList": final_metrics(metric_definitions, completed.stdout + completed.stderr),
            **algorithm,
        })


def final_metrics(definitions: list[dict[str, str]], log: str) -> list[dict[str, Any]]:
    """The last value each metric definition's regex finds in the job's log, as SageMaker reports them."""
    found = []
    for definition in definitions:
        values = re.findall(definition["Regex"], log)
        if values:
            found.append({"MetricName": definition["Name"], "Value": float(values[-1]),
                          "Timestamp": int(time.time() * 1000)})
    return found


SERVING_DRIVER = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
module = __import__(sys.argv[2])
model = module.model_fn(sys.argv[3])
for item in json.loads(Path(sys.argv[4]).read_text()):
    body = Path(item["input"]).read_bytes()
    if item["content_type"] == "text/csv":  # the container decodes a text/csv body for input_fn
        body = body.decode("utf-8")
    prediction = module.predict_fn(module.input_fn(body, item["content_type"]), model)
    result = module.output_fn(prediction, item["accept"])
    # Only a (body, content type) tuple gets a typed response; a bare body is answered as text/html.
    body, _ = result if isinstance(result, tuple) else (result, "text/html")
    Path(item["output"]).write_bytes(body.encode() if isinstance(body, str) else bytes(body))
"""


class SageMakerTransform:
    """CreateTransformJob as a job: the model's serving functions over each input object."""

    def __init__(self, timeout_seconds: int = 300) -> None:
        self.timeout_seconds = timeout_seconds
        self.jobs: list[dict[str, Any]] = []

    def __call__(self, harness: PipelineHarness, request: dict[str, Any], started: dict[str, Any]) -> JobOutcome:
        name = request["TransformJobName"]
        root = harness.workdir / "transform-jobs" / name
        processing = request.get("DataProcessing") or {}
        if any(processing.get(k) not in (None, "$", "None") for k in ("InputFilter", "OutputFilter", "JoinSource")):
            raise NotImplementedError(f"DataProcessing {processing} is not emulated")
        model = harness.client("sagemaker").describe_model(ModelName=request["ModelName"])
        container = model.get("PrimaryContainer") or model["Containers"][0]
        environment = {**container.get("Environment", {}), **request.get("Environment", {})}
        code = harness.code_bundle(environment["SAGEMAKER_SUBMIT_DIRECTORY"], root / "code")
        model_dir = root / "model"
        harness.download_tarball(container["ModelDataUrl"], model_dir)
        source = request["TransformInput"]["DataSource"]["S3DataSource"]
        inputs = harness.download_prefix(source["S3Uri"], root / "input")
        content_type = request["TransformInput"].get("ContentType", "text/csv")
        split = request["TransformInput"].get("SplitType", "None")
        output_config = request["TransformOutput"]
        accept = output_config.get("Accept", content_type)
        work = []
        for relative, path in inputs:
            try:
                chunks = _split_records(path.read_bytes(), split, request.get("MaxPayloadInMB", 6), relative)
            except PayloadTooLarge as exc:
                return JobOutcome(False, {"TransformJobStatus": "Failed", "FailureReason": f"ClientError: {exc}"})
            for index, chunk in enumerate(chunks):
                chunk_in = root / "chunks" / f"{relative}.{index}"
                chunk_in.parent.mkdir(parents=True, exist_ok=True)
                chunk_in.write_bytes(chunk)
                work.append({"input": str(chunk_in), "output": f"{chunk_in}.out", "content_type": content_type,
                             "accept": accept, "relative": relative})
        plan = root / "plan.json"
        plan.write_text(json.dumps(work))
        program = Path(environment["SAGEMAKER_PROGRAM"]).stem
        completed = subprocess.run(
            [sys.executable, "-c", SERVING_DRIVER, str(code), program, str(model_dir), str(plan)],
            capture_output=True, text=True, timeout=self.timeout_seconds,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "SM_MODEL_DIR": str(model_dir)},
        )
        record = {"name": name, "returncode": completed.returncode, "log": completed.stdout + completed.stderr}
        self.jobs.append(record)
        if completed.returncode != 0:
            lines = completed.stderr.strip().splitlines()
            return JobOutcome(False, {"TransformJobStatus": "Failed",
                                      "FailureReason": f"ClientError: {lines[-1] if lines else 'serving failed'}"})
        line_wise = output_config.get("AssembleWith", "None") == "Line"
        outputs: dict[str, list[bytes]] = {}
        for item in work:
            outputs.setdefault(item["relative"], []).append(Path(item["output"]).read_bytes())
        s3 = harness.client("s3")
        bucket, prefix = split_s3_uri(output_config["S3OutputPath"].rstrip("/"))
        written = []
        for relative, parts in outputs.items():
            body = b"".join(assemble_lines(parts) if line_wise else parts)
            key = f"{prefix}/{relative}.out"
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            written.append(f"s3://{bucket}/{key}")
        record["outputs"] = written
        return JobOutcome(True, {"TransformJobStatus": "Completed"})


def _split_records(body: bytes, split: str, max_payload_mb: int, source: str) -> list[bytes]:
    """SplitType=Line cuts the object into mini-batches of whole lines (a header is just a line), as
    the local pipeline does (pipeline.local_aws.batch_transform); SplitType=None sends it whole."""
    if split != "Line":
        return [body]
    return list(mini_batches(io.BytesIO(body), max_payload_mb * 2**20, source))


# -- Feature Store runtime faults --------------------------------------------------------------
class ReplicationLag:
    """PutRecord as Feature Store does it: the online store at once, the offline store later.

    Records reach the offline store once more than `after_queries` Athena queries have started
    (the harness calls `on_query`); records `never_replicated` picks never do.
    """

    def __init__(self, store: LocalFeatureStore, *, after_queries: int = 1,
                 never_replicated: Callable[[list[dict[str, str]]], bool] = lambda record: False) -> None:
        self.store = store
        self.after_queries = after_queries
        self.never_replicated = never_replicated
        self.pending: list[tuple[str, list[dict[str, str]]]] = []
        self.queries = 0
        self._lock = threading.Lock()

    def put_record(self, *, FeatureGroupName: str, Record: list[dict[str, str]], **kwargs: Any) -> dict[str, Any]:
        response = self.store.put_record(FeatureGroupName=FeatureGroupName, Record=Record, TargetStores=["OnlineStore"])
        with self._lock:
            self.pending.append((FeatureGroupName, Record))
        return response

    def on_query(self, sql: str) -> None:
        with self._lock:
            self.queries += 1
            if self.queries <= self.after_queries:
                return
            pending, self.pending = self.pending, []
        for group, record in pending:
            if self.never_replicated(record):
                continue
            self.store.put_record(FeatureGroupName=group, Record=record, TargetStores=["OfflineStore"])


class InterruptedRuntime:
    """The Feature Store runtime failing every PutRecord after the first `after` (an ingest cut off)."""

    def __init__(self, store: LocalFeatureStore, *, after: int) -> None:
        self.store = store
        self.after = after
        self.calls = 0
        self._lock = threading.Lock()

    def put_record(self, **kwargs: Any) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
            call = self.calls
        if call > self.after:
            raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "Service unavailable"},
                               "ResponseMetadata": {"HTTPStatusCode": 503}}, "PutRecord")
        return self.store.put_record(**kwargs)


# -- Lambda ------------------------------------------------------------------------------------
@dataclass
class LambdaContext:
    """The attributes Powertools and handlers read from a Lambda context."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/test"
    log_stream_name: str = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@dataclass
class Invocation:
    function: str
    handler: str
    event: Any
    error: str | None = None


class InProcessLambda:
    """`LambdaSimpleBackend.invoke`, replaced: run the created function's handler in this process."""

    def __init__(self, harness: PipelineHarness) -> None:
        self.harness = harness
        self.invocations: list[Invocation] = []
        # function name -> queue of exceptions to raise as the Lambda *service* would (throttles...)
        self.service_faults: dict[str, list[ClientError]] = {}
        self._lock = threading.Lock()  # one handler at a time: each runs with its own os.environ
        self._patched_modules: dict[str, Any] = {}

    def invoke(self, backend: LambdaSimpleBackend, function_name, qualifier, body, headers, response_headers):
        function = backend.get_function(function_name, qualifier)
        name = function.function_name
        faults = self.service_faults.get(name)
        if faults:
            raise faults.pop(0)
        event = json.loads(body) if body else {}
        invocation = Invocation(name, function.handler, event)
        self.invocations.append(invocation)
        with self._lock, self.harness.function_environment(function.environment_vars):
            _runtime.feature_spec.cache_clear()
            handler = self._handler(function.handler)
            context = LambdaContext(function_name=name, invoked_function_arn=function.function_arn)
            try:
                result = handler(event, context)
            except Exception as exc:  # noqa: BLE001 - the Lambda runtime reports any exception
                invocation.error = type(exc).__name__
                response_headers["x-amz-function-error"] = "Unhandled"
                return json.dumps({
                    "errorMessage": str(exc),
                    "errorType": type(exc).__name__,
                    "requestId": context.aws_request_id,
                    "stackTrace": traceback.format_tb(exc.__traceback__),
                }).encode()
        return json.dumps(result).encode()

    def _handler(self, handler: str) -> Callable[[Any, Any], Any]:
        module_name, _, attribute = handler.rpartition(".")
        module = import_module(module_name)
        self.harness.check_deployed_code(module_name, module)
        # Handlers bind `client` from _runtime at import (the real one, or a harness's router if
        # imported while one ran): route their clients through this harness.
        bound = getattr(module, "client", None)
        if bound is REAL_CLIENT or getattr(bound, "__self__", None).__class__ is PipelineHarness:
            self._patched_modules[module_name] = module
            module.client = self.harness.route_client
        return getattr(module, attribute)

    def restore(self) -> None:
        for module in self._patched_modules.values():
            module.client = REAL_CLIENT
        self._patched_modules.clear()


# -- the harness -------------------------------------------------------------------------------
@dataclass
class Execution:
    arn: str
    name: str
    status: str
    output: Any = None
    error: str | None = None
    cause: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def entered(self) -> list[str]:
        """Names of the states entered, in order (a Distributed Map's children have histories of their own)."""
        return [e["stateEnteredEventDetails"]["name"] for e in self.history if "stateEnteredEventDetails" in e]


class PipelineHarness:
    """The synthesised pipeline "deployed" in moto plus local fakes; use as a context manager."""

    def __init__(self, template: dict[str, Any], outdir: Path, workdir: Path, *, spec: FeatureSpec) -> None:
        self.template = template
        self.outdir = Path(outdir)
        self.workdir = Path(workdir)
        self.spec = spec
        self.assets = _asset_sources(self.outdir)
        self.athena = AthenaOnDuckDB()
        self.training = SageMakerTraining()
        self.transform = SageMakerTransform()
        self.jobs: dict[tuple[str, str], JobRunner] = {
            ("athena", "startQueryExecution"): self.athena,
            ("sagemaker", "createTrainingJob"): self.training,
            ("sagemaker", "createTransformJob"): self.transform,
        }
        self.lambdas = InProcessLambda(self)
        self.feature_store = LocalFeatureStore(self.workdir / "feature-store", account=ACCOUNT, region=REGION)
        # What the handlers' Feature Store runtime client is: the store itself, or a test's wrapper.
        self.feature_store_runtime: Any = self.feature_store
        self._stack = contextlib.ExitStack()
        self._clients: dict[str, Any] = {}
        self._checked_modules: set[str] = set()
        self._shared_environment: dict[str, str] = {}
        self.definition: dict[str, Any] = {}
        self.state_machine_arn = ""

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> PipelineHarness:
        stack = self._stack
        for name, value in (("AWS_DEFAULT_REGION", REGION), ("AWS_ACCESS_KEY_ID", "testing"),
                            ("AWS_SECRET_ACCESS_KEY", "testing"), ("POWERTOOLS_TRACE_DISABLED", "true"),
                            ("POWERTOOLS_METRICS_DISABLED", "true")):
            stack.enter_context(mock.patch.dict(os.environ, {name: value}))
        stack.enter_context(mock_aws(config=MOTO_CONFIG))
        lambdas = self.lambdas
        stack.enter_context(mock.patch.object(
            LambdaSimpleBackend, "invoke",
            lambda backend, *args: lambdas.invoke(backend, *args)))
        stack.enter_context(mock.patch.object(SyncJobService, "harness", self, create=True))
        for patcher in interpreter_patches():
            stack.enter_context(patcher)
        real, routed = inspect.signature(REAL_CLIENT), inspect.signature(self.route_client)
        if list(real.parameters) != list(routed.parameters):
            raise TypeError(f"route_client{routed} must take the parameters of _runtime.client{real}")
        stack.enter_context(mock.patch.object(_runtime, "client", self.route_client))
        stack.callback(lambdas.restore)
        stack.callback(self.feature_store.close)
        try:
            self._deploy()
        except BaseException:
            stack.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    # -- Lambda environments -----------------------------------------------------------------
    def _set_shared_environment(self, environments: list[dict[str, str]]) -> None:
        """Variables are set once for the whole harness where the invoked functions agree on them
        (a function without one merely sees it too): map iterations create boto3 clients on other
        threads, which iterate os.environ, so it must not change while an execution runs. Only a
        variable two functions set differently is set around each invocation."""
        values: dict[str, set[str]] = {}
        for environment in environments:
            for name, value in environment.items():
                values.setdefault(name, set()).add(value)
        self._shared_environment = {name: found.pop() for name, found in values.items() if len(found) == 1}
        self._stack.enter_context(mock.patch.dict(os.environ, self._shared_environment))

    @contextlib.contextmanager
    def function_environment(self, variables: dict[str, str]) -> Iterator[None]:
        """Set (and afterwards restore) only the variables this function has beyond the shared ones."""
        own = {k: v for k, v in variables.items() if self._shared_environment.get(k) != v}
        saved = {k: os.environ.get(k) for k in own}
        os.environ.update(own)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    # -- clients -----------------------------------------------------------------------------
    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = boto3.client(service, region_name=REGION)
        return self._clients[service]

    def route_client(self, service: str, max_pool_connections: int = 10, parameter_validation: bool = True) -> Any:
        """What `churn.handlers._runtime.client` returns in the harness (same parameters: checked when
        the harness starts)."""
        if service == FEATURE_STORE_RUNTIME:
            return self.feature_store_runtime
        return self.client(service)

    # -- deployment --------------------------------------------------------------------------
    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == resource_type}

    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1 and next(iter(value)).startswith(("Ref", "Fn::")):
            return resolve(self.template, value)
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value

    def name_of(self, logical_id: str) -> str:
        return resolve(self.template, {"Ref": logical_id})

    def _deploy(self) -> None:
        (machine,) = self.resources("AWS::StepFunctions::StateMachine").values()
        self.definition = resolve_definition(self.template, machine["Properties"]["DefinitionString"])
        s3 = self.client("s3")
        for logical_id, bucket in self.resources("AWS::S3::Bucket").items():
            s3.create_bucket(Bucket=self.name_of(logical_id))
            versioning = bucket.get("Properties", {}).get("VersioningConfiguration", {}).get("Status")
            if versioning:
                s3.put_bucket_versioning(Bucket=self.name_of(logical_id),
                                         VersioningConfiguration={"Status": versioning})
        self._deploy_functions()
        athena = self.client("athena")
        for resource in self.resources("AWS::Athena::WorkGroup").values():
            props = self.resolve(resource["Properties"])
            athena.create_work_group(Name=props["Name"], Configuration=props["WorkGroupConfiguration"])
        sagemaker = self.client("sagemaker")
        for resource in self.resources("AWS::SageMaker::ModelPackageGroup").values():
            sagemaker.create_model_package_group(
                ModelPackageGroupName=resource["Properties"]["ModelPackageGroupName"])
        for resource in self.resources("AWS::SageMaker::FeatureGroup").values():
            props = resource["Properties"]
            definitions = {(d["FeatureName"], d["FeatureType"]) for d in props["FeatureDefinitions"]}
            spec_definitions = {(d["FeatureName"], d["FeatureType"]) for d in self.spec.feature_definitions()}
            if definitions != spec_definitions:
                raise AssertionError("the template's feature group does not match the spec given to the harness")
            # CloudFormation's properties are CreateFeatureGroup's arguments (the store ignores the
            # unresolved KMS key and S3 tokens in the store configs).
            self.feature_store.create_feature_group(**{key: props[key] for key in CREATE_FEATURE_GROUP_ARGS
                                                       if key in props})
            catalog = props["OfflineStoreConfig"]["DataCatalogConfig"]
            self.athena.tables[(catalog["Database"], catalog["TableName"])] = props["FeatureGroupName"]

        runnable = json.loads(json.dumps(self.definition))
        batchers: dict[str, dict[str, Any]] = {}
        runnable_on_moto(runnable["States"], batchers)
        self._stack.enter_context(mock.patch.dict(ITEM_BATCHERS, batchers))
        self.runnable_definition = runnable
        self.state_machine_arn = self.client("stepfunctions").create_state_machine(
            name="churn-pipeline", definition=json.dumps(runnable), roleArn=STATE_MACHINE_ROLE
        )["stateMachineArn"]

    def _deploy_functions(self) -> None:
        iam = self.client("iam")
        role = iam.create_role(RoleName="lambda-role", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                           "Action": "sts:AssumeRole"}],
        }))["Role"]["Arn"]
        functions = self.client("lambda")
        environments = []
        definition_text = json.dumps(self.definition)
        for logical_id, resource in self.resources("AWS::Lambda::Function").items():
            props = resource["Properties"]
            handler = props.get("Handler", "")
            if not handler.startswith("churn."):
                continue  # CDK's own deploy-time handlers (bucket deployment, custom resource providers)
            arn = resolve(self.template, {"Fn::GetAtt": [logical_id, "Arn"]})
            environment = self.resolve(props.get("Environment", {}).get("Variables", {}))
            if arn in definition_text:  # invoked by the state machine
                environments.append(environment)
            functions.create_function(
                FunctionName=arn.rsplit(":", 1)[1],
                Runtime=props["Runtime"],
                Role=role,
                Handler=handler,
                Code={"ZipFile": self._code_zip(props["Code"]["S3Key"])},
                Environment={"Variables": environment},
                Timeout=props.get("Timeout", 3),
                MemorySize=props.get("MemorySize", 128),
            )
        self._set_shared_environment(environments)

    def _code_zip(self, object_key: str) -> bytes:
        source = self.assets[object_key]
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for path in sorted(source.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(source).as_posix())
        return buffer.getvalue()

    def check_deployed_code(self, module_name: str, module: Any) -> None:
        """The module imported in-process must be byte-for-byte the one in the function's asset."""
        if module_name in self._checked_modules:
            return
        relative = Path(*module_name.split(".")).with_suffix(".py")
        candidates = [p / relative for p in self.assets.values() if p.is_dir() and (p / relative).is_file()]
        if not candidates:
            raise AssertionError(f"{relative} is not in any Lambda asset of the cloud assembly")
        imported = Path(module.__file__).read_bytes()
        if not any(c.read_bytes() == imported for c in candidates):
            raise AssertionError(f"{module.__file__} differs from {relative} in the Lambda asset")
        self._checked_modules.add(module_name)

    # -- S3 and code bundles -----------------------------------------------------------------
    def code_bundle(self, uri: str, target: Path) -> Path:
        """Extract a SageMaker `sagemaker_submit_directory` bundle, taken from the cloud assembly."""
        _, key = split_s3_uri(uri)
        if key not in self.assets:
            raise AssertionError(f"{uri} is not an asset of the cloud assembly")
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(self.assets[key], "r:gz") as archive:
            archive.extractall(target, filter="data")
        return target

    def download_prefix(self, uri: str, target: Path, exact: bool = False) -> list[tuple[str, Path]]:
        """Every object under an S3Prefix URI (as SageMaker reads a channel), keys relative to it."""
        bucket, prefix = split_s3_uri(uri)
        s3 = self.client("s3")
        keys = [prefix] if exact else [
            o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])
        ]
        base = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
        found = []
        for key in keys:
            relative = key[len(base):]
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            found.append((relative, path))
        return found

    def upload_tarball(self, directory: Path, uri: str) -> None:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            for path in sorted(directory.iterdir()):
                archive.add(path, arcname=path.name)
        bucket, key = split_s3_uri(uri)
        self.client("s3").put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())

    def download_tarball(self, uri: str, target: Path) -> None:
        bucket, key = split_s3_uri(uri)
        body = self.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
            archive.extractall(target, filter="data")

    def read_text(self, uri: str) -> str:
        bucket, key = split_s3_uri(uri)
        return self.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")

    def read_csv(self, uri: str) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(self.read_text(uri))))

    @property
    def bucket(self) -> str:
        (logical_id,) = self.resources("AWS::S3::Bucket")
        return self.name_of(logical_id)

    def put_raw(self, key: str, text: str) -> None:
        self.client("s3").put_object(Bucket=self.bucket, Key=key, Body=text.encode("utf-8"))

    # -- executions --------------------------------------------------------------------------
    def run(self, execution_input: dict[str, Any], name: str, timeout: float = 120.0) -> Execution:
        """Start an execution (always named: moto leaves $$.Execution.Name null otherwise), wait for it."""
        sfn = self.client("stepfunctions")
        arn = sfn.start_execution(stateMachineArn=self.state_machine_arn, name=name,
                                  input=json.dumps(execution_input))["executionArn"]
        deadline = time.monotonic() + timeout
        while True:
            described = sfn.describe_execution(executionArn=arn)
            if described["status"] in TERMINAL:
                break
            if time.monotonic() > deadline:
                sfn.stop_execution(executionArn=arn)
                raise TimeoutError(f"execution {name} still {described['status']} after {timeout}s")
            time.sleep(0.1)
        history = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        return Execution(
            arn=arn, name=name, status=described["status"],
            output=json.loads(described["output"]) if described.get("output") else None,
            error=described.get("error"), cause=described.get("cause"), history=json_safe(history),
        )

    @property
    def model_package_group(self) -> str:
        (group,) = self.resources("AWS::SageMaker::ModelPackageGroup").values()
        return group["Properties"]["ModelPackageGroupName"]

    def model_packages(self) -> list[dict[str, Any]]:
        return self.client("sagemaker").list_model_packages(
            ModelPackageGroupName=self.model_package_group)["ModelPackageSummaryList"]


def _asset_sources(outdir: Path) -> dict[str, Path]:
    """Object key in the asset bucket -> the file or folder of the cloud assembly it is built from."""
    found: dict[str, Path] = {}
    for manifest in outdir.glob("*.assets.json"):
        for asset in json.loads(manifest.read_text())["files"].values():
            for destination in asset["destinations"].values():
                found[destination["objectKey"]] = outdir / asset["source"]["path"]
    return found
