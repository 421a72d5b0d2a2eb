"""Distributed Map on moto 5.2.5 as Step Functions runs it: ItemSelector per item, then ItemBatcher; each
child execution recorded; the failure thresholds; and the ResultWriter's export to S3.

What moto 5.2.5 does, and what this changes:
- Its grammar has no `ItemBatcher`, no `WriterConfig` and no EXPRESS child executions, and takes a
  ToleratedFailurePercentage only with a decimal point. `runnable_on_moto` takes them out of the
  definition (the percentage written 100.0) and keeps them in a `MapState` per state name. (EXPRESS vs
  STANDARD children, at-least-once vs exactly-once, does not show in one process.)
- Step Functions applies a Distributed Map's options in this order: ItemReader, ItemsPath, ItemSelector
  (once per item, where `$$.Map.Item.Index`/`Value` are the item's), ItemBatcher, ResultWriter
  (input-output-fields-dist-map.html). Where there is a batcher, the definition's ItemSelector is
  replaced by `{"item": <its ItemSelector>, "batch_input": <the batcher's BatchInput>}`, evaluated per
  item before the Map Run starts; the selected items are cut into batches by the batcher's limits and
  each child gets `{"Items": [...], "BatchInput": {...}}`.
- It counts failed children but lets the Map succeed regardless: `MapRunFailure` applies the
  thresholds. A threshold the state does not set does not apply; with none, one failed child fails
  the Map Run (States.ExceededToleratedFailureThreshold). Every child runs before the check (AWS stops
  starting children once a threshold is exceeded), so nothing is ever PENDING here.
- Its ResultWriter writes an empty manifest. `export_results` writes what AWS writes: under
  `<Prefix>/<map run uuid>/`, `SUCCEEDED_0.json` and `FAILED_0.json` (JSON Lines, or a JSON array for
  OutputType JSON), one child execution each, in DescribeExecution's fields (Input and Output as JSON
  text, Error and Cause for a failed child), then `manifest.json` listing them with their sizes. A file
  that would be empty is not written and not listed (AWS's own example manifests list empty arrays).
  A Map Run that exceeds its thresholds exports, then fails with States.ExceedToleratedFailureThreshold
  (ASSUMED that it exports first: AWS's page on the threshold names only the error; its history still
  shows moto's MapRunSucceeded, which moto writes before the ResultWriter runs).
  ASSUMED where AWS shows no example: an EXPRESS child's ARN is `...:express:<machine>/<label>:<map run
  uuid>:<child uuid>`, its Name the child uuid; dates are ISO 8601 UTC with milliseconds; a failed
  child's RedriveStatus is REDRIVABLE_BY_MAP_RUN.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from unittest import mock

from moto.stepfunctions.parser.api import HistoryEventType, MapRunStatus, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.distributed_iteration_component import (
    DistributedIterationComponent,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor.distributed_item_processor_worker import (  # noqa: E501
    DistributedItemProcessorWorker,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval.resource_eval_s3 import (
    ResourceEvalS3,
)
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.eval.program_state import ProgramEnded, ProgramError, ProgramStopped, ProgramTimedOut
from moto.stepfunctions.parser.asl.eval.states import ItemData, MapData

from tests.support.moto import ReraisedErrorName, aws_timestamp

EXCEEDED_TOLERATED_FAILURES = "States.ExceededToleratedFailureThreshold"
MAX_BATCH_BYTES = 256 * 1024  # a child's input, the batch limit when the batcher sets none
RESULT_FILES = ("FAILED", "PENDING", "SUCCEEDED")
_MAP_RUN = "harness.map_run"  # env.heap keys: the Map state's run, and its deferred threshold failure
_THRESHOLD_FAILURE = "harness.threshold_failure"


@dataclass(frozen=True)
class MapState:
    """What the runnable definition lost of one Distributed Map state, and what it sets."""

    batcher: dict[str, Any] | None
    writer_config: dict[str, Any] | None
    has_result_writer: bool
    express: bool
    tolerates_count: bool
    tolerates_percentage: bool


@dataclass
class ChildExecutions:
    """The child executions of every Map Run, by Map Run ARN (while a harness runs)."""

    states: dict[str, MapState] = field(default_factory=dict)
    runs: dict[str, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, map_run_arn: str, index: int, child: dict[str, Any]) -> None:
        with self.lock:
            self.runs.setdefault(map_run_arn, []).append((index, child))

    def take(self, map_run_arn: str) -> list[dict[str, Any]]:
        with self.lock:
            return [child for _, child in sorted(self.runs.pop(map_run_arn, []), key=lambda c: c[0])]


CHILDREN = ChildExecutions()  # patched per harness (`patches`)


# -- the definition ------------------------------------------------------------------------------
def runnable_on_moto(states: dict[str, Any], found: dict[str, MapState]) -> None:
    """Rewrite, in place, what moto 5.2.5 cannot parse (see the module docstring); `found` gets each
    Distributed Map state's `MapState`."""
    for name, state in states.items():
        for branch in state.get("Branches", []):
            runnable_on_moto(branch["States"], found)
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if not processor:
            continue
        runnable_on_moto(processor["States"], found)
        config = processor.get("ProcessorConfig", {})
        if config.get("Mode") != "DISTRIBUTED":
            continue
        express = config.get("ExecutionType") == "EXPRESS"
        config["ExecutionType"] = "STANDARD"
        if isinstance(state.get("ToleratedFailurePercentage"), int):
            state["ToleratedFailurePercentage"] = float(state["ToleratedFailurePercentage"])
        writer = state.get("ResultWriter")
        writer_config = writer.pop("WriterConfig", None) if writer else None
        if writer_config and writer_config.get("Transformation", "NONE") != "NONE":
            raise NotImplementedError(f"{name}: ResultWriter Transformation {writer_config['Transformation']}")
        batcher = state.pop("ItemBatcher", None)
        if batcher is not None:
            if "Parameters" in state or any(key.endswith("Path") for key in batcher):
                raise NotImplementedError(f"{name}: Parameters or *Path limits with an ItemBatcher")
            item = {"item": state["ItemSelector"]} if "ItemSelector" in state else {"item.$": "$$.Map.Item.Value"}
            state["ItemSelector"] = {**item, "batch_input": batcher.get("BatchInput", {})}
        found[name] = MapState(
            batcher=batcher, writer_config=writer_config, has_result_writer=writer is not None, express=express,
            tolerates_count=any(key.startswith("ToleratedFailureCount") for key in state),
            tolerates_percentage=any(key.startswith("ToleratedFailurePercentage") for key in state),
        )


def batch_items(items: list[Any], batcher: dict[str, Any], batch_input: Any) -> list[list[Any]]:
    """Step Functions' ItemBatcher: consecutive items, at most MaxItemsPerBatch of them and at most
    MaxInputBytesPerBatch of JSON, the BatchInput counted in."""
    max_items = batcher.get("MaxItemsPerBatch") or len(items) or 1
    max_bytes = batcher.get("MaxInputBytesPerBatch") or MAX_BATCH_BYTES
    base = len(json.dumps({"BatchInput": batch_input, "Items": []}))
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


# -- the Map Run ---------------------------------------------------------------------------------
_original_map_run = DistributedIterationComponent._map_run
_original_eval_job = DistributedItemProcessorWorker._eval_job


def _select(env: Any, selector: Any, index: int, value: Any) -> Any:
    """The ItemSelector evaluated for one item, as a child would see it ($ = the Map state's input)."""
    frame = env.open_inner_frame()
    try:
        frame.states.context_object.context_object_data["Map"] = MapData(Item=ItemData(Index=index, Value=value))
        state_input = env.states.get_input()
        frame.states.reset(input_value=state_input)
        frame.stack.append(state_input)
        selector.eval(frame)
        return frame.stack.pop()
    finally:
        env.delete_frame(frame)


def _batched(env: Any, eval_input: Any, items: list[Any], batcher: dict[str, Any]) -> list[dict[str, Any]]:
    selected = [_select(env, eval_input.item_selector, index, item) for index, item in enumerate(items)]
    batch_input = selected[0]["batch_input"] if selected else {}
    extra = {"BatchInput": batch_input} if "BatchInput" in batcher else {}
    return [{"Items": batch, **extra}
            for batch in batch_items([s["item"] for s in selected], batcher, batch_input)]


def _map_run(component: DistributedIterationComponent, env: Any, eval_input: Any) -> None:
    state = CHILDREN.states.get(eval_input.state_name)
    if state is not None and state.batcher is not None:
        env.stack.append(_batched(env, eval_input, env.stack.pop(), state.batcher))
        eval_input.item_selector = None  # applied above, per item
    env.heap[_MAP_RUN] = eval_input.map_run_record
    _original_map_run(component, env, eval_input)
    failure = threshold_failure(env, eval_input, state)
    if failure is None:
        return
    if state is not None and state.has_result_writer:
        env.heap[_THRESHOLD_FAILURE] = failure  # raised once the results are exported
        return
    raise failure


def threshold_failure(env: Any, eval_input: Any, state: MapState | None) -> FailureEventException | None:
    """States.ExceededToleratedFailureThreshold if the failed (and timed-out) children exceed a
    threshold the state sets, or, where it sets none, if any child failed."""
    counter = eval_input.map_run_record.item_counter
    failed = counter.failed.get() + counter.timed_out.get()
    total = counter.total.get()
    count_set = state is not None and state.tolerates_count
    percentage_set = state is not None and state.tolerates_percentage
    exceeded = (
        (count_set and failed > eval_input.tolerated_failure_count)
        or (percentage_set and 100.0 * failed / max(1, total) > eval_input.tolerated_failure_percentage)
        or (not count_set and not percentage_set and failed > 0)
    )
    if not exceeded:
        return None
    return FailureEventException(FailureEvent(
        env=env,
        error_name=ReraisedErrorName(EXCEEDED_TOLERATED_FAILURES),
        event_type=HistoryEventType.MapRunFailed,
        event_details=EventDetails(taskFailedEventDetails=TaskFailedEventDetails(
            error=EXCEEDED_TOLERATED_FAILURES,
            cause=f"The specified tolerated failure threshold was exceeded: {failed} of {total} items failed",
        )),
    ))


def _recorded_eval_job(worker: DistributedItemProcessorWorker, env: Any, job: Any) -> None:
    """moto's child execution, and its DescribeExecution-like record for the ResultWriter."""
    started = datetime.now(UTC)
    _original_eval_job(worker, env, job)
    record = worker._map_run_record
    state = CHILDREN.states.get(worker._work_name)
    CHILDREN.record(record.map_run_arn, job.job_index,
                    child_execution(record, job, env.program_state(), started, datetime.now(UTC),
                                    express=state is None or state.express))


def child_execution(record: Any, job: Any, ended: Any, started: datetime, stopped: datetime, *,
                    express: bool) -> dict[str, Any]:
    """One line of a ResultWriter file (Transformation NONE): the child as DescribeExecution shows it."""
    child = str(uuid.uuid4())
    machine = record.map_state_machine_arn
    run_uuid = record.map_run_arn.rsplit(":", 1)[1]
    if express:
        arn = machine.replace(":stateMachine:", ":express:") + f":{run_uuid}:{child}"
    else:
        arn = machine.replace(":stateMachine:", ":execution:") + f":{child}"
    fields: dict[str, Any] = {
        "ExecutionArn": arn,
        "Input": json.dumps(job.job_input, separators=(",", ":")),
        "InputDetails": {"Included": True},
        "Name": child,
        "RedriveCount": 0,
        "StartDate": aws_timestamp(started),
        "StateMachineArn": machine,
        "StopDate": aws_timestamp(stopped),
    }
    if isinstance(ended, ProgramEnded):
        return {**fields, "Output": json.dumps(job.job_output, separators=(",", ":")),
                "OutputDetails": {"Included": True}, "RedriveStatus": "NOT_REDRIVABLE",
                "RedriveStatusReason": "Execution is SUCCEEDED and cannot be redriven", "Status": "SUCCEEDED"}
    if isinstance(ended, ProgramError):
        error = ended.error or {}
        status, error_name, cause = "FAILED", error.get("error"), error.get("cause")
    elif isinstance(ended, ProgramTimedOut):
        status, error_name, cause = "TIMED_OUT", "States.Timeout", None
    elif isinstance(ended, ProgramStopped):
        status, error_name, cause = "ABORTED", ended.error, ended.cause
    else:  # moto caught an exception outside the child's program
        status, error_name, cause = "FAILED", "States.Runtime", None
    failed = {**fields, "RedriveStatus": "REDRIVABLE_BY_MAP_RUN", "Status": status}
    failed.update({k: v for k, v in (("Error", error_name), ("Cause", cause)) if v is not None})
    return failed


# -- the ResultWriter ----------------------------------------------------------------------------
def _result_file(children: list[dict[str, Any]], output_type: str) -> bytes:
    if output_type == "JSONL":
        return "".join(json.dumps(child) + "\n" for child in children).encode()
    return json.dumps(children).encode()


def export_results(env: Any, resource_runtime_part: Any, state_credentials: Any) -> None:
    """ResultWriter `arn:aws:states:::s3:putObject`: the Map Run's child executions under
    <Prefix>/<map run uuid>/, then manifest.json; the state's result names the manifest."""
    parameters = env.stack.pop()
    env.stack.pop()  # the children's outputs: the files hold them
    record = env.heap.pop(_MAP_RUN)
    state_name = env.states.context_object.context_object_data["State"]["Name"]
    state = CHILDREN.states.get(state_name)
    output_type = ((state.writer_config if state else None) or {}).get("OutputType", "JSON")
    bucket, prefix = parameters["Bucket"], parameters.get("Prefix", "")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    base = f"{prefix}{record.map_run_arn.rsplit(':', 1)[1]}/"
    s3 = ResourceEvalS3._get_s3_client(resource_runtime_part=resource_runtime_part,
                                       state_credentials=state_credentials)
    children = CHILDREN.take(record.map_run_arn)
    by_file = {"SUCCEEDED": [c for c in children if c["Status"] == "SUCCEEDED"],
               "FAILED": [c for c in children if c["Status"] != "SUCCEEDED"], "PENDING": []}
    files: dict[str, list[dict[str, Any]]] = {name: [] for name in RESULT_FILES}
    for name, listed in by_file.items():
        if listed:
            body = _result_file(listed, output_type)
            s3.put_object(Bucket=bucket, Key=f"{base}{name}_0.json", Body=body)
            files[name].append({"Key": f"{base}{name}_0.json", "Size": len(body)})
    manifest = {"DestinationBucket": bucket, "MapRunArn": record.map_run_arn, "ResultFiles": files}
    s3.put_object(Bucket=bucket, Key=f"{base}manifest.json", Body=json.dumps(manifest).encode())
    env.stack.append({"MapRunArn": record.map_run_arn,
                      "ResultWriterDetails": {"Bucket": bucket, "Key": f"{base}manifest.json"}})
    failure = env.heap.pop(_THRESHOLD_FAILURE, None)
    if failure is not None:
        record.set_stop(status=MapRunStatus.FAILED)
        raise failure


def patches(states: dict[str, MapState]) -> list[Any]:
    """The Distributed Map as above, for the Map states of one runnable definition."""
    return [
        mock.patch.object(DistributedIterationComponent, "_map_run", _map_run),
        mock.patch.object(DistributedItemProcessorWorker, "_eval_job", _recorded_eval_job),
        mock.patch.object(ResourceEvalS3, "_handle_put_object", staticmethod(export_results)),
        mock.patch.object(CHILDREN, "states", states),
        mock.patch.object(CHILDREN, "runs", {}),
    ]
