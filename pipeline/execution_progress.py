"""Following a Step Functions execution: its history read page by page, each event turned into the same
step lines a local run prints (state names and their details from `churn.steps`), until it ends."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from churn import contract, steps
from pipeline.backends import ABORTED, FAILED, SUCCEEDED, TERMINAL_STATUSES, TIMED_OUT, Reporter
from pipeline.errors import error_text, parse_json

_END_EVENTS = {"ExecutionSucceeded": SUCCEEDED, "ExecutionFailed": FAILED, "ExecutionTimedOut": TIMED_OUT,
               "ExecutionAborted": ABORTED}
POLL_SECONDS = 3.0  # between reads of a followed execution's history (the CLI's hidden --poll-seconds)


@dataclass
class Execution:
    """What describe_execution tells about one run."""

    name: str
    arn: str
    status: str
    started: datetime | None = None
    stopped: datetime | None = None
    input: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    cause: str = ""  # as the execution reports it (a Lambda's or a job's JSON included)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def auc(self) -> float | None:
        value = self.output.get(contract.VALIDATION_AUC)
        try:
            return float(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    @property
    def duration_seconds(self) -> float | None:
        if not self.started:
            return None
        end = self.stopped or datetime.now(self.started.tzinfo or UTC)
        return max(0.0, (end - self.started).total_seconds())


def execution_arn(state_machine_arn: str, name_or_arn: str) -> str:
    """An execution ARN from its name (executions live under their state machine's ARN)."""
    if name_or_arn.startswith("arn:"):
        return name_or_arn
    prefix, _, machine = state_machine_arn.rpartition(":stateMachine:")
    return f"{prefix}:execution:{machine}:{name_or_arn}"


def describe_execution(sfn: Any, arn: str) -> Execution:
    d = sfn.describe_execution(executionArn=arn)
    return Execution(name=d.get("name", ""), arn=d["executionArn"], status=d.get("status", ""),
                     started=d.get("startDate"), stopped=d.get("stopDate"), input=parse_json(d.get("input")),
                     output=parse_json(d.get("output")), error=d.get("error") or "", cause=d.get("cause") or "")


def recent_executions(sfn: Any, state_machine_arn: str, limit: int = 10) -> list[Execution]:
    """The newest `limit` executions; finished ones are described for their AUC or error."""
    pages = sfn.get_paginator("list_executions").paginate(
        stateMachineArn=state_machine_arn, PaginationConfig={"MaxItems": limit, "PageSize": min(limit, 1000)})
    found = [Execution(name=item["name"], arn=item["executionArn"], status=item["status"],
                       started=item.get("startDate"), stopped=item.get("stopDate"))
             for page in pages for item in page.get("executions", [])]
    return [describe_execution(sfn, e.arn) if e.finished else e for e in found]


class HistoryReader:
    """New history events since the last call, oldest first, each exactly once.

    Reads newest-first (reverseOrder) and stops at the first event already seen, so a poll costs one
    page however long the history grows; a burst of more than a page is paged through.
    """

    def __init__(self, sfn: Any, arn: str, page_size: int = 100):
        self.sfn = sfn
        self.arn = arn
        self.page_size = page_size
        self.last_id = 0

    def new_events(self) -> list[dict[str, Any]]:
        pages = self.sfn.get_paginator("get_execution_history").paginate(
            executionArn=self.arn, reverseOrder=True, PaginationConfig={"PageSize": self.page_size})
        fresh: list[dict[str, Any]] = []
        for page in pages:
            events = page.get("events", [])
            fresh += [event for event in events if event["id"] > self.last_id]
            if any(event["id"] <= self.last_id for event in events):
                break
        fresh.sort(key=lambda event: event["id"])
        if fresh:
            self.last_id = fresh[-1]["id"]
        return fresh


@dataclass
class ExecutionFacts:
    """What the summary needs from the states' outputs (best effort: outputs may be withheld)."""

    ingested: dict[str, int] = field(default_factory=dict)  # group -> records written ("Summarise ingest")
    training_job_name: str = ""
    evaluation: dict[str, Any] = field(default_factory=dict)  # "Evaluate model"'s output

    @property
    def records_ingested(self) -> int | None:
        return sum(self.ingested.values()) if self.ingested else None

    def note(self, step: str, group: str, output: dict[str, Any]) -> None:
        """Keep what a finished state's output tells the summary."""
        if step == steps.SUMMARISE_INGEST and (count := _dig(output, contract.INGEST, contract.RECORDS)) is not None:
            self.ingested[group] = count
        elif step == steps.TRAIN_MODEL:
            self.training_job_name = str(_dig(output, contract.TRAINING, contract.TRAINING_JOB_NAME) or "")
        elif step == steps.EVALUATE_MODEL:
            evaluation = output.get(contract.EVALUATION)
            self.evaluation = evaluation if isinstance(evaluation, dict) else {}


def _dig(data: Any, *path: str) -> Any:
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _offline_count(output: dict[str, Any]) -> str:
    visible = _dig(output, contract.OFFLINE_COUNT, contract.RECORDS)
    expected = _dig(output, contract.VALIDATION, contract.RECORDS)
    if visible is None:
        return ""
    return f"{visible} of {'?' if expected is None else expected} records in the offline store"


def _field(*path: str, template: str = "{}") -> Callable[[dict[str, Any]], str]:
    def detail(output: dict[str, Any]) -> str:
        value = _dig(output, *path)
        return "" if value is None else template.format(value)

    return detail


# What a person wants to see after each step, by the step a state stands for: a function of the state's output.
DETAILS: dict[str, Callable[[dict[str, Any]], str]] = {
    steps.DERIVE_SOURCES: lambda output: (
        f"{len(sources)} files" if isinstance(sources := output.get(contract.SOURCES), dict) else ""),
    steps.VALIDATE_INPUT: _field(contract.VALIDATION, contract.RECORDS, template="{} rows"),
    steps.SUMMARISE_INGEST: _field(contract.INGEST, contract.RECORDS, template="{} records"),
    steps.READ_OFFLINE_COUNT: _offline_count,
    steps.BUILD_TRAINING_SET: _field(contract.TRAINING_SET, contract.OUTPUT_URI),
    steps.TRAIN_MODEL: _field(contract.TRAINING, contract.TRAINING_JOB_NAME, template="training job {}"),
    steps.EVALUATE_MODEL: _field(contract.EVALUATION, contract.REASON),
    steps.REGISTER_MODEL: _field(contract.REGISTRATION, contract.MODEL_PACKAGE_ARN),
    steps.BUILD_SCORING_SET: _field(contract.SCORING_SET, contract.OUTPUT_URI),
    steps.SCORE_CUSTOMERS: _field(contract.SCORING, contract.TRANSFORM_JOB_NAME, template="transform job {}"),
    steps.RANK_SCORES: _field(contract.SCORES, contract.CUSTOMERS, template="{} customers ranked"),
}


_CONTAINERS = ("Parallel", "Map")  # states that run states of their own: branches, iterations


@dataclass(eq=False)
class _OpenState:
    name: str
    label: str
    kind: str
    entered: datetime
    parent: _OpenState | None = None  # the Parallel or Map state it runs in
    announced: bool = False
    failure: tuple[str, str] | None = None

    def lineage(self) -> Iterator[_OpenState]:
        yield self
        if self.parent:
            yield from self.parent.lineage()


class ProgressTracker:
    """Turns history events into step lines: entered, exited (with its time), failed.

    A state that is entered and exited within one batch of events gets one line (its exit); one
    still running at the end of a batch is announced as started. With several feature groups the
    groups' states run side by side (a Parallel state's branches), their events interleaved: each
    event belongs to the state its chain of previousEventIds leads back to.
    """

    def __init__(self, reporter: Reporter):
        self.reporter = reporter
        self.started: datetime | None = None
        self.open: list[_OpenState] = []
        self.owner: dict[int, _OpenState | None] = {}  # event id -> the state it belongs to (None: no state)
        self.visits: Counter[str] = Counter()
        self.status: str | None = None
        self.facts = ExecutionFacts()
        self._choice: tuple[str, float] | None = None  # a Choice's line waits to name the branch taken

    def feed(self, events: Iterable[dict[str, Any]]) -> None:
        for event in events:
            self._event(event)
        for state in self.open:
            if not state.announced:
                state.announced = True
                since = (state.entered - self.started).total_seconds() if self.started else None
                self.reporter.step_started(state.label, since)

    def _event(self, event: dict[str, Any]) -> None:
        kind = event.get("type", "")
        at: datetime = event.get("timestamp") or datetime.now(UTC)
        details = next((v for k, v in event.items() if k.endswith("EventDetails") and isinstance(v, dict)), {})
        previous = event.get("previousEventId")
        state = self.owner[previous] if previous in self.owner else (self.open[-1] if self.open else None)
        if kind == "ExecutionStarted":
            self.started = at
        elif kind.endswith("StateEntered"):
            state = self._enter(details.get("name", "?"), kind.removesuffix("StateEntered"), at, state)
        elif kind.endswith("StateExited"):
            state = self._exit(details.get("name", "?"), at, parse_json(details.get("output")), state)
        elif kind in _END_EVENTS:
            self._end(_END_EVENTS[kind], details, at)
        elif kind.endswith(("Failed", "TimedOut")) and state:
            state = self._fail(state, kind, details)
        elif kind.endswith("Succeeded") and state:
            state.failure = None  # a retry after a transient error went through
        # A *StateAborted event (a branch stopped as another failed) fails nothing; its line comes with the Parallel's.
        self.owner[event["id"]] = state

    def _fail(self, source: _OpenState, kind: str, details: dict[str, Any]) -> _OpenState:
        """The state a failure event fails. ParallelStateFailed and MapStateFailed have no details (the TaskFailed or
        MapRunFailed before them has): the error of the state their chain comes from fails the Parallel or Map."""
        target = source
        if kind.endswith("StateFailed"):
            target = next((s for s in source.lineage() if s.kind == kind.removesuffix("StateFailed")), source)
        if details.get("error"):
            target.failure = (details["error"], details.get("cause") or "")
        elif target.failure is None:
            target.failure = source.failure or (kind, "")
        return target

    def _enter(self, name: str, kind: str, at: datetime, source: _OpenState | None) -> _OpenState:
        self._flush_choice(f"→ {name}")
        self.visits[name] += 1
        label = name if self.visits[name] == 1 else f"{name} (#{self.visits[name]})"
        state = _OpenState(name, label, kind, at, self._container(source, at))
        self.open.append(state)
        return state

    def _container(self, source: _OpenState | None, at: datetime) -> _OpenState | None:
        """The state a newly entered one runs in: the nearest Parallel or Map state on its chain that has
        not failed. A failed state on the way was left for a Catch handler without an exit event."""
        for state in source.lineage() if source else ():
            if state.failure and state in self.open:
                self._close(state, at, "")
            elif not state.failure and state.kind in _CONTAINERS:
                return state
        return None

    def _close(self, state: _OpenState, at: datetime, error: str | None) -> None:
        """The line of a state ended without an exit event; `error` if it has no failure of its own (None: done)."""
        inner = f"stopped: {state.label} failed" if state.failure else error
        for child in [s for s in self.open if s.parent is state]:  # a failed branch stops the others
            self._close(child, at, inner)
        self.open.remove(state)
        seconds = (at - state.entered).total_seconds()
        if state.failure or error is not None:
            self.reporter.step_failed(state.label, seconds, error_text(*state.failure) if state.failure else error)
        else:
            self.reporter.step_finished(state.label, seconds, "")

    def _end(self, status: str, details: dict[str, Any], at: datetime) -> None:
        self.status = status
        error = None if status == SUCCEEDED else error_text(details.get("error") or status, details.get("cause") or "")
        self._flush_choice("")
        for state in [s for s in reversed(self.open) if s.parent not in self.open]:
            self._close(state, at, error)

    def _flush_choice(self, detail: str) -> None:
        if self._choice:
            label, seconds = self._choice
            self._choice = None
            self.reporter.step_finished(label, seconds, detail)

    def _exit(self, name: str, at: datetime, output: dict[str, Any], source: _OpenState | None) -> _OpenState | None:
        """Close the state; return the state the events after its exit belong to (the one it runs in)."""
        state = next((s for s in reversed(self.open) if s.name == name), None)
        if state is None:
            return source
        if state.failure:
            self._close(state, at, "")
            return state.parent
        self.open.remove(state)
        seconds = (at - state.entered).total_seconds()
        if state.kind == "Choice":
            self._choice = (state.label, seconds)
        else:
            step = steps.base_step(name)
            self.facts.note(step, steps.group_of(name) or "", output)
            detail = DETAILS.get(step)
            self.reporter.step_finished(state.label, seconds, detail(output) if detail else "")
        return state.parent


def follow(sfn: Any, arn: str, tracker: ProgressTracker, *, reader: HistoryReader | None = None,
           poll_seconds: float = POLL_SECONDS, sleep: Callable[[float], None] = time.sleep) -> Execution:
    """Poll the execution's history until it ends; return its description. Between polls the reporter
    hears which state is running and for how long."""
    reader = reader or HistoryReader(sfn, arn)
    polls = 0
    while True:
        tracker.feed(reader.new_events())
        polls += 1
        # History is the source of progress; describe is the safety net that it ended.
        if tracker.status is not None or (polls % 10 == 0 and describe_execution(sfn, arn).finished):
            tracker.feed(reader.new_events())
            execution = describe_execution(sfn, arn)
            if execution.finished:  # the history can show the end a moment before the description does
                return execution
        if tracker.open:
            current = tracker.open[-1]
            tracker.reporter.still_running(current.label, (datetime.now(UTC) - current.entered).total_seconds())
        sleep(poll_seconds)
