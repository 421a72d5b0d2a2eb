"""The operator CLI's one backend interface: what a command asks of the local run or of AWS, and the
results both return, so each command renders one result type whichever backend produced it."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from churn.scoring import ScoreRow, ScoringError, read_scores
from pipeline.errors import BadInput, OperatorError

if TYPE_CHECKING:
    from collections.abc import Iterable

# A run's status: an execution's, as Step Functions names it; a local run (run.json) is recorded with the same.
RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED = "RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"
TERMINAL_STATUSES = frozenset({SUCCEEDED, FAILED, TIMED_OUT, ABORTED})
# A run's name is also its SageMaker training job's name on AWS (and a local run is named the same way),
# so it must satisfy the stricter of the execution and training job patterns.
RUN_NAME_MAX = 63
RUN_NAME = re.compile(rf"^[a-zA-Z0-9](-*[a-zA-Z0-9]){{0,{RUN_NAME_MAX - 1}}}$")


def check_run_name(name: str) -> None:
    if not RUN_NAME.match(name):
        raise BadInput(f"--name {name!r} is not a valid run name",
                       f"use 1-{RUN_NAME_MAX} letters, digits and hyphens (it also names the SageMaker training job)",
                       error="InvalidName")


class Reporter:
    """Progress callbacks of a local run or a followed AWS execution; the CLI prints them, tests may
    record them. `since_start`: when an AWS state was entered, relative to the execution's start."""

    def step_started(self, step: str, since_start: float | None = None) -> None:  # pragma: no cover
        pass

    def still_running(self, step: str, seconds: float) -> None:  # pragma: no cover - default no-op
        """Called between polls while following an execution: `step` has been running `seconds`."""

    def run_started(self, description: str, groups: tuple[str, ...] = ()) -> None:  # pragma: no cover
        """Before the first step: which run, on what, where; with several `groups`, each names its own states."""

    def step_finished(self, step: str, seconds: float, detail: str) -> None:  # pragma: no cover
        pass

    def step_failed(self, step: str, seconds: float, error: str) -> None:  # pragma: no cover
        pass

    def warning(self, step: str, message: str) -> None:  # pragma: no cover - default no-op
        """Something a step's user should know that did not stop it (e.g. the training script's warnings)."""


@dataclass(frozen=True)
class RunRequest:
    """What `run` was asked for; each backend reads its own part (the CLI rejects the other's options)."""

    name: str | None = None
    knowledge_cutoff: str | None = None  # "YYYY-MM-DD HH:MM:SS.fff" UTC, already checked
    # local
    spec: Path | None = None
    data: Path | None = None
    threshold: float | None = None
    hyperparameters: str | None = None  # JSON object of training hyperparameter overrides, as given
    # AWS
    data_key: str | None = None
    sources: dict[str, str] = field(default_factory=dict)  # group -> key, for several groups without derivation
    wait: bool = True


@dataclass
class RunResult:
    """One run, local or an AWS execution; empty fields are what that backend does not know."""

    status: str
    run_id: str
    input: str = ""
    feature_groups: dict[str, str] = field(default_factory=dict)  # spec group -> feature group name
    knowledge_cutoff: str = ""
    records_ingested: int | None = None
    training_rows: int | None = None
    auc: float | None = None
    gate: str = ""
    split: dict[str, Any] = field(default_factory=dict)  # evaluation.json's: how validation rows were chosen
    model_version: str = ""
    model_artifact: str = ""
    model_package_arn: str = ""
    training_job_name: str = ""
    report: str = ""
    customers_scored: int | None = None
    scores_uri: str = ""
    id_column: str = "customer"
    top_customers: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    cause: str = ""
    failed_records: list[dict[str, Any]] = field(default_factory=list)
    hint: str = ""  # after a failure: where to look, what to do
    started: datetime | None = None
    duration_seconds: float | None = None
    step_seconds: dict[str, float] = field(default_factory=dict)
    step_details: dict[str, str] = field(default_factory=dict)  # local: what each finished step reported
    running_step: str = ""  # local: the step a run in progress is in
    run_dir: str = ""  # local
    execution_arn: str = ""  # AWS, and the console links
    region: str = ""
    console_url: str = ""
    training_job_url: str = ""
    model_package_group_url: str = ""
    next_command: str = ""  # e.g. how to follow a run that is still going

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def to_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result.pop("next_command")
        result["started"] = self.started.isoformat() if self.started else None
        if self.duration_seconds is not None:
            result["duration_seconds"] = round(self.duration_seconds, 1)
        return result


@dataclass
class RunListing:
    title: str
    runs: list[RunResult]
    empty: str  # what to say (and do) when there are none


@dataclass
class Scores:
    run_id: str
    source: str
    id_column: str
    rows: list[ScoreRow]

    @classmethod
    def read(cls, run_id: str, source: str, lines: Iterable[str], top: int) -> Scores:
        """The `top` highest-risk rows of a run's scores.csv, reading no further than needed."""
        try:
            return cls(run_id, source, *read_scores(lines, source, top))
        except ScoringError as exc:
            raise OperatorError(str(exc), error="InvalidScores") from None

    @property
    def model_version(self) -> str:
        return self.rows[0].model_version if self.rows else "-"

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run_id, "scores_uri": self.source, "model_version": self.model_version,
                "id_column": self.id_column, "customers": [row.to_dict() for row in self.rows]}


@dataclass(frozen=True)
class FeatureContribution:
    feature: str
    value: Any
    contribution: float  # log-odds; positive pushes the churn probability up


@dataclass
class Prediction:
    record_id: str
    churn_probability: float
    base: float  # the model's log-odds before any feature (XGBoost's bias term)
    up: list[FeatureContribution]
    down: list[FeatureContribution]
    model_version: str
    model: str  # the model package ARN, or the local artifact
    feature_groups: list[str]  # the online feature groups read


class Backend(Protocol):
    """What the CLI's shared commands need; `--local` picks LocalBackend, else AwsBackend."""

    def run(self, request: RunRequest, reporter: Reporter) -> RunResult: ...

    def status(self, name: str, reporter: Reporter, follow: bool) -> RunResult: ...

    def runs(self, limit: int) -> RunListing: ...

    def scores(self, run_id: str | None, top: int) -> Scores: ...

    def predict(self, record_id: str, features: int) -> Prediction: ...
