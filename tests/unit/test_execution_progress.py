"""Step lines of failed executions whose history interleaves or repeats a failure: a Parallel state's
branches and a Distributed Map, run on moto's Step Functions interpreter (ported from LocalStack's, which is
snapshot-tested against AWS), so the events' types, ids and previousEventIds are the ones it emits."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.stepfunctions.parser.asl.component.state.fail import state_fail

from churn import steps
from pipeline.backends import Reporter
from pipeline.execution_progress import HistoryReader, ProgressTracker
from tests.support.moto import ReraisedErrorName
from tests.unit.cli_support import REGION, use_fake_aws

BUCKET = "progress-bucket"
MISSING_BUCKET = "no-such-bucket"
PROFILE, ACTIVITY = "profile", "activity"
NO_SUCH_BUCKET = "s3.NoSuchBucketException: The specified bucket does not exist"


class Lines(Reporter):
    """Each step's line as (label, ✓ or ✗, detail or error); times vary from run to run."""

    def __init__(self):
        self.lines: list[tuple[str, str, str]] = []

    def step_finished(self, step: str, seconds: float, detail: str) -> None:
        self.lines.append((step, "✓", detail))

    def step_failed(self, step: str, seconds: float, error: str) -> None:
        self.lines.append((step, "✗", error))


def caught(first: str, state: dict[str, Any]) -> dict[str, Any]:
    """A machine starting with `state` named `first`, whose failure goes to the pipeline's failure states."""
    state = {**state, "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure",
                                 "Next": steps.RECORD_FAILURE}], "End": True}
    return {"StartAt": first, "States": {
        first: state,
        steps.RECORD_FAILURE: {"Type": "Pass", "Next": steps.PIPELINE_FAILED},
        steps.PIPELINE_FAILED: {"Type": "Fail", "ErrorPath": "$.failure.Error", "CausePath": "$.failure.Cause"},
    }}


@pytest.fixture
def sfn(monkeypatch, tmp_path):
    use_fake_aws(monkeypatch, tmp_path)
    monkeypatch.setattr(state_fail, "CustomErrorName", ReraisedErrorName)  # "Pipeline failed" re-raises States.*
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield boto3.client("stepfunctions", region_name=REGION)


def history(sfn: Any, definition: dict[str, Any]) -> list[dict[str, Any]]:
    machine = sfn.create_state_machine(name="progress", definition=json.dumps(definition),
                                       roleArn="arn:aws:iam::123456789012:role/pipeline")["stateMachineArn"]
    arn = sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]
    reader, events = HistoryReader(sfn, arn), []
    for _ in range(300):
        events += reader.new_events()
        if events and events[-1]["type"] == "ExecutionFailed":
            return events
        time.sleep(0.05)
    raise AssertionError(f"the execution did not fail: {[e['type'] for e in events]}")


def lines_of(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    lines = Lines()
    ProgressTracker(lines).feed(events)
    return lines.lines


def test_a_failed_parallel_branch_is_shown_on_its_own_state_and_on_the_parallel_state(sfn):
    """The profile branch's task fails, is retried 2 s later and fails again, while the activity branch
    has moved on to its next state: the retry's TaskFailed comes after that state's entry, then
    ParallelStateFailed, which has no details."""
    validate = {g: steps.for_group(steps.VALIDATE_INPUT, g) for g in (PROFILE, ACTIVITY)}
    wait = steps.for_group(steps.WAIT_FOR_OFFLINE_STORE, ACTIVITY)
    events = history(sfn, caught(steps.INGEST_GROUPS, {"Type": "Parallel", "Branches": [
        {"StartAt": validate[PROFILE], "States": {validate[PROFILE]: {
            "Type": "Task", "Resource": "arn:aws:states:::aws-sdk:s3:getObject",
            "Parameters": {"Bucket": MISSING_BUCKET, "Key": "raw/profile.csv"},
            "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 2, "MaxAttempts": 1}], "End": True}}},
        {"StartAt": validate[ACTIVITY], "States": {  # Wait states stand in for the activity group's work
            validate[ACTIVITY]: {"Type": "Wait", "Seconds": 1, "Next": wait},
            wait: {"Type": "Wait", "Seconds": 4, "End": True}}}]}))
    types = [e["type"] for e in events]
    entered = [e["id"] for e in events if e.get("stateEnteredEventDetails", {}).get("name") == wait]
    task_failed = [e["id"] for e in events if e["type"] == "TaskFailed"]
    # The interleaving this test is about (moto runs the branches in threads, the Wait states in real time).
    assert len(task_failed) == 2 and task_failed[0] < entered[0] < task_failed[1], types
    assert types[types.index("TaskFailed", task_failed[1] - 1) + 1] == "ParallelStateFailed"

    # S3's error message ends with a request id of its own
    assert [(label, mark, text.split(" (Service: s3")[0]) for label, mark, text in lines_of(events)] == [
        (validate[ACTIVITY], "✓", ""),
        (validate[PROFILE], "✗", NO_SUCH_BUCKET),
        (wait, "✗", f"stopped: {steps.INGEST_GROUPS} failed"),
        (steps.INGEST_GROUPS, "✗", NO_SUCH_BUCKET),
        (steps.RECORD_FAILURE, "✓", ""),
        (steps.PIPELINE_FAILED, "✗", NO_SUCH_BUCKET),
    ]


def test_a_distributed_map_whose_item_reader_failed_shows_the_reader_error(sfn):
    """MapRunFailed has the error; the MapStateFailed after it has none."""
    boto3.client("s3", region_name=REGION).put_object(Bucket=BUCKET, Key="raw/churn.csv",
                                                      Body=b"customerID,customerID\nA-1,A-1\n")
    events = history(sfn, caught(steps.INGEST_FEATURES, {
        "Type": "Map",
        "ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
                       "ReaderConfig": {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"},
                       "Parameters": {"Bucket": BUCKET, "Key": "raw/churn.csv"}},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                          "StartAt": steps.INGEST_BATCH, "States": {steps.INGEST_BATCH: {"Type": "Pass", "End": True}}},
    }))
    assert [e["type"] for e in events][4:6] == ["MapRunFailed", "MapStateFailed"]

    reader_failed = "States.ItemReaderFailed: CSV headers cannot contain duplicates."
    assert lines_of(events) == [
        (steps.INGEST_FEATURES, "✗", reader_failed),
        (steps.RECORD_FAILURE, "✓", ""),
        (steps.PIPELINE_FAILED, "✗", reader_failed),
    ]


T0 = datetime(2026, 12, 7, tzinfo=UTC)


def event(id_: int, previous: int, kind: str, seconds: float, key: str = "", **details: Any) -> dict[str, Any]:
    found = {"id": id_, "previousEventId": previous, "type": kind, "timestamp": T0 + timedelta(seconds=seconds)}
    return {**found, key: details} if key else found


def test_a_caught_parallel_failure_without_an_exit_event_and_an_aborted_sibling():
    """Event types and detail members as botocore's Step Functions model has them (ParallelStateFailed and
    TaskStateAborted have no details). Assumed, not seen on AWS: the other branch's running task gets a
    TaskStateAborted chained to its own events, and a caught Parallel state has no ParallelStateExited
    (moto writes one) before its Catch handler's state is entered."""
    entered, cause = "stateEnteredEventDetails", json.dumps({
        "errorMessage": "s3://b/raw/profile.csv, line 8, column 'age': not an integer",
        "errorType": "InputValidationError"})
    validate = {g: steps.for_group(steps.VALIDATE_INPUT, g) for g in (PROFILE, ACTIVITY)}
    lines = lines_of([
        event(1, 0, "ExecutionStarted", 0),
        event(2, 1, "ParallelStateEntered", 0, entered, name=steps.INGEST_GROUPS),
        event(3, 2, "ParallelStateStarted", 0),
        event(4, 3, "TaskStateEntered", 0, entered, name=validate[PROFILE]),
        event(5, 3, "TaskStateEntered", 0, entered, name=validate[ACTIVITY]),
        event(6, 4, "TaskScheduled", 0), event(7, 5, "TaskScheduled", 0),
        event(8, 6, "TaskStarted", 0), event(9, 7, "TaskStarted", 0),
        event(10, 8, "TaskFailed", 5, "taskFailedEventDetails", error="InputValidationError", cause=cause),
        event(11, 9, "TaskStateAborted", 5),
        event(12, 10, "ParallelStateFailed", 5),
        event(13, 12, "PassStateEntered", 5, entered, name=steps.RECORD_FAILURE),
    ])
    error = "InputValidationError: s3://b/raw/profile.csv, line 8, column 'age': not an integer"
    assert lines == [
        (validate[PROFILE], "✗", error),
        (validate[ACTIVITY], "✗", f"stopped: {steps.INGEST_GROUPS} failed"),
        (steps.INGEST_GROUPS, "✗", error),
    ]
