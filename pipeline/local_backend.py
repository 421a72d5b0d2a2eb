"""The CLI's local backend: runs of the local pipeline in a workspace (`.local/`), read back from their
run.json, their scores, the local model registry, and one customer predicted from the local online store."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from churn.config import PipelineSettings, training_hyperparameters
from churn.csv_input import InputValidationError, text_lines, unreadable
from churn.derivations import DERIVATIONS, DerivationError
from churn.features import now_event_time
from churn.layout import HYPERPARAMETERS_MODULE, SCORES_FILE, SCORES_PREFIX
from churn.schema import FeatureSpec, SpecError
from churn.sql import NO_CUTOFF
from pipeline.backends import (
    ABORTED,
    RUN_NAME,
    RUNNING,
    SUCCEEDED,
    TERMINAL_STATUSES,
    Prediction,
    Reporter,
    RunListing,
    RunRequest,
    RunResult,
    Scores,
)
from pipeline.errors import BadInput, Interrupted, OperatorError
from pipeline.execution_progress import POLL_SECONDS
from pipeline.fast_validate import validate_file_fast
from pipeline.local_aws.batch_transform import serving_module
from pipeline.local_aws.feature_store import LocalFeatureStore
from pipeline.local_aws.registry import ModelEntry, RegistryError, checked, resolved_paths
from pipeline.local_aws.store_files import StoreDamagedError, StoreLayoutError
from pipeline.local_aws.training_job import toolkit_args
from pipeline.prediction import online_features, predict_artifact
from pipeline.runner import (
    CV_PREFIX,
    DEFAULT_DATA,
    DEFAULT_SPEC,
    DEFAULT_WORKSPACE,
    INTERRUPTED,
    KILLED,
    RUN_FILE,
    RUN_PATH_FIELDS,
    TRAINING_DIR,
    LocalPipeline,
    PipelineFailed,
    RunOutcome,
    Workspace,
    group_files,
)

FIX_THE_FILE = "fix the file and run again; nothing was written"
MIN_FOLDS = 2  # evaluate --folds (the training script's cv_folds rule says the same)
HYPERPARAMETERS_HINT = ("e.g. --hyperparameters '{\"max_fit_rows\": 0}' "
                        "(names and defaults: training/hyperparameters.py)")
RUN_LOCALLY = "train one with `python -m pipeline run --local`"


@contextmanager
def _refusals() -> Iterator[None]:
    """Bad input, a feature store in an older layout or damaged, an unreadable registry: as what the user can do."""
    try:
        yield
    except (InputValidationError, DerivationError) as exc:
        raise BadInput(str(exc), FIX_THE_FILE, error=InputValidationError.__name__) from None
    except StoreLayoutError as exc:
        raise OperatorError(str(exc), "then `python -m pipeline run --local`, or pass another --workspace",
                            error=StoreLayoutError.__name__) from None
    except StoreDamagedError as exc:
        raise OperatorError(str(exc), "move the workspace's feature-store folder aside to start a new store (a run "
                            "ingests its input again; runs/ keeps every model), or pass another --workspace",
                            error=StoreDamagedError.__name__) from None
    except RegistryError as exc:
        raise OperatorError(str(exc), "restore it, or move it aside to start a new one (runs/ keeps every model)",
                            error=RegistryError.__name__) from None


def load_spec(path: Path) -> FeatureSpec:
    try:
        return FeatureSpec.load(path)
    except SpecError as exc:
        raise BadInput(str(exc), "create one with `python -m pipeline spec infer PATH --id COLUMN --label COLUMN`",
                       error=SpecError.__name__) from None


def settings_with(spec: FeatureSpec, threshold: float | None, hyperparameters: str | None = None
                  ) -> PipelineSettings:
    """The default settings, with the quality threshold a user gave if it is one the stack would accept, and
    the training hyperparameters' overrides (JSON, as the stack's `-c hyperparameters` takes them) if the
    training script accepts them: checked by its own rules before anything is written, not at Train model."""
    try:
        overrides = json.loads(hyperparameters) if hyperparameters is not None else {}
    except ValueError:
        overrides = None
    if not isinstance(overrides, dict):
        raise BadInput(f"--hyperparameters: {hyperparameters!r} is not a JSON object", HYPERPARAMETERS_HINT)
    settings = PipelineSettings(**({} if threshold is None else {"quality_threshold": threshold}),
                                hyperparameters=overrides)
    try:
        settings.validate()
    except ValueError as exc:
        raise BadInput(f"--threshold: {exc}", "e.g. --threshold 0.8 (the stack's quality_threshold takes the same)",
                       error="InvalidThreshold") from None
    script = serving_module(TRAINING_DIR, HYPERPARAMETERS_MODULE)
    try:
        given = training_hyperparameters(settings, spec)
        script.parse_hyperparameters(toolkit_args(given), {"SM_HPS": json.dumps(given)})
    except ValueError as exc:  # the spec's own columns, or the script's rules (InputError)
        raise BadInput(f"--hyperparameters: {exc}", HYPERPARAMETERS_HINT, error="InvalidHyperparameters") from None
    return settings


def input_path(spec: FeatureSpec, spec_path: Path, data: Path | None) -> Path:
    """The run's input: a CSV (one group), the file a derivation reads, or a folder of `<group>.csv`."""
    several = not spec.is_single_group and not spec.derive
    if data is None:
        if spec_path.resolve() != DEFAULT_SPEC.resolve():
            raise BadInput(f"--data is needed with --spec {spec_path}",
                           "a folder of <group>.csv, one a feature group" if several else
                           "the file the spec's feature groups are read from", error="InputNotFound")
        return DEFAULT_DATA
    names = [path.name for path in group_files(spec, data).values()]
    if several and not data.is_dir():
        raise BadInput(f"--data {data} is not a folder", f"the spec has several feature groups: pass a folder "
                       f"holding {', '.join(names)}", error="InputNotFound")
    missing = [name for name in names if several and not (data / name).is_file()]
    if missing:
        raise BadInput(f"--data {data} has no {', '.join(missing)}", f"each feature group reads <group>.csv "
                       f"from the folder: {', '.join(names)}", error="InputNotFound")
    if not several and not data.is_file():
        raise BadInput(f"--data {data} is not a file", error="InputNotFound")
    return data


def check_input_file(spec: FeatureSpec, path: Path, group: str | None) -> str:
    """Validate one input file here, as the run would: the spec's one group's CSV, the file its derivation
    reads, or (several groups) the CSV of `group`. Returns what was checked."""
    try:
        if spec.derive:
            with open(path, "rb") as stream:
                derived = DERIVATIONS[spec.derive].derive(text_lines(stream, str(path)), str(path))
            return f"derives {', '.join(derived)}"
        if group is None and not spec.is_single_group:
            raise BadInput(f"{spec.origin} has several feature groups: which one is {path} for?",
                           "pass --group NAME, one of " + ", ".join(g.name for g in spec.all_groups),
                           error="InvalidGroup")
        checked = spec.group(group) if group else spec.groups[0]
        return f"{validate_file_fast(str(path), checked, not_after=now_event_time()).rows} rows"
    except (ValueError, OSError) as exc:  # InputValidationError, DerivationError, undecodable bytes, unreadable
        refused = unreadable(str(path), exc) if isinstance(exc, OSError) else exc
        raise BadInput(str(refused), "fix the file and try again; nothing was uploaded",
                       error=InputValidationError.__name__) from None
    except KeyError as exc:
        raise BadInput(str(exc.args[0]), error="InvalidGroup") from None


def _report_steps(run: RunResult, reporter: Reporter, shown: int, announced: str) -> int:
    """The steps after the first `shown` that the run has recorded, and the step it is in unless `announced`;
    how many are shown now. The step that ended a failed run is its last timed one, unless its process was
    killed in a step (still its running step, shown as started: when it ended is not known)."""
    steps = list(run.step_seconds.items())
    failed = steps[-1][0] if steps and run.finished and run.status != SUCCEEDED else None
    for step, seconds in steps[shown:]:
        if step == failed and not run.running_step:
            reporter.step_failed(step, seconds, f"{run.error}: {run.cause}")
        else:
            reporter.step_finished(step, seconds, run.step_details.get(step, ""))
    if run.running_step and run.running_step != announced:
        reporter.step_started(run.running_step)
    return len(steps)


def _alive(pid: Any) -> bool:
    """Whether process `pid` exists (signal 0 checks without sending one)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:  # another user's
        return True
    except (OSError, OverflowError):
        return False
    return True


def _recorded_start(run: dict[str, Any]) -> datetime | None:
    """When the run started, as the runner recorded it (a run.json of an earlier version does not say)."""
    with suppress(KeyError, TypeError, ValueError):
        return datetime.fromisoformat(run["started"]).astimezone(UTC)  # naive (edited by hand): local time
    return None


# What run.json records under the name RunResult gives it, as it is recorded
_AS_RECORDED = sorted({f.name for f in fields(RunResult)} & {f.name for f in fields(RunOutcome)}
                      - {"knowledge_cutoff", "model_version", "customers_scored", "id_column", "started"})


def _run_result(run: dict[str, Any]) -> RunResult:
    """A local run as the CLI shows it, from the runner's outcome (its run.json, read with every field)."""
    failed = run["status"] in TERMINAL_STATUSES - {SUCCEEDED}
    return RunResult(
        **{name: run[name] for name in _AS_RECORDED},
        knowledge_cutoff="" if run["knowledge_cutoff"] == NO_CUTOFF else run["knowledge_cutoff"],
        model_version=str(run["model_version"] or ""), customers_scored=run["customers_scored"] or None,
        scores_uri=run["scores"], id_column=run["id_column"] or RunResult.id_column,
        hint=f"run directory: {run['run_dir']}" if failed else "", started=_recorded_start(run),
        duration_seconds=sum(run["step_seconds"].values()),
    )


def _announce(reporter: Reporter, what: str, data: Path, pipeline: LocalPipeline) -> None:
    groups = pipeline.feature_groups
    reporter.run_started(f"{what} on {data} (feature group{'s' if len(groups) > 1 else ''} "
                         f"{', '.join(groups.values())})", tuple(groups))


def _interrupted(exc: KeyboardInterrupt) -> Interrupted:
    """Ctrl-C, saying where the run that stopped is recorded (cross-validation records none)."""
    stopped = getattr(exc, "outcome", None)
    summary = Path(stopped.run_dir) / RUN_FILE if stopped else None
    where = f"the run is recorded as ABORTED in {summary}" if summary and summary.is_file() else "no run was recorded"
    return Interrupted(f"{': '.join(INTERRUPTED)}; {where}", status=ABORTED)


def _check_workspace(workspace: Workspace, given: Path) -> None:
    """A --workspace that is a file, is under one, or has one where its feature store goes is the option that is
    wrong (not an OS error a command meets later, nor an empty workspace)."""
    # The nearest of the path and its parents that exists (the last, "/" or ".", does): a path under a file does not.
    made = next(path for path in (given, *given.parents) if path.exists())
    if not made.is_dir():
        where = "" if made == given else f" cannot be made: {made}"
        raise BadInput(f"--workspace {given}{where} is not a folder", "pass a folder (made if missing)",
                       error="InvalidWorkspace")
    if workspace.feature_store.exists() and not workspace.feature_store.is_dir():
        raise BadInput(f"--workspace {given}: {workspace.feature_store} is not a folder",
                       "the workspace keeps its feature store there: move that file aside, or pass another --workspace",
                       error="InvalidWorkspace")


class LocalBackend:
    def __init__(self, workspace: Path, poll_seconds: float = POLL_SECONDS):
        self.workspace = Workspace(workspace)
        self.poll_seconds = poll_seconds  # between reads of a followed run's run.json
        _check_workspace(self.workspace, workspace)
        self.flags = "" if workspace == DEFAULT_WORKSPACE else f" --workspace {workspace}"

    # -- run, status, runs --------------------------------------------------------------------
    def run(self, request: RunRequest, reporter: Reporter) -> RunResult:
        spec = load_spec(request.spec or DEFAULT_SPEC)
        settings = settings_with(spec, request.threshold, request.hyperparameters)
        data = input_path(spec, request.spec or DEFAULT_SPEC, request.data)
        if request.name and (self.workspace.runs / request.name).exists():
            raise BadInput(f"a local run named '{request.name}' already exists in {self.workspace.runs}",
                           "choose another --name, or leave it out to get a generated one", error="RunExists")
        pipeline = LocalPipeline(spec=spec, settings=settings, workspace=self.workspace, reporter=reporter)
        _announce(reporter, "Local run", data, pipeline)
        with _refusals():
            try:
                outcome = pipeline.run(data, run_id=request.name, knowledge_cutoff=request.knowledge_cutoff)
            except PipelineFailed as exc:
                outcome = exc.outcome  # type: ignore[attr-defined]
            except KeyboardInterrupt as exc:
                raise _interrupted(exc) from None
        return _run_result(asdict(outcome))

    def _load(self, path: Path) -> RunResult | None:
        """A run.json, with its start as recorded; a run.json of an earlier version records none: when it was
        written less the time its steps took (a copied workspace's files all have the copy's time). A run still
        RUNNING whose process is gone is ABORTED (KILLED)."""
        try:
            run = checked(RunOutcome, json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:  # not JSON, not a run's record (a hand edit, a half copy)
            raise OperatorError(f"{path}: the run's record is damaged ({exc})", f"restore it, or move the run's "
                                f"folder out of {self.workspace.runs}", error="RunRecordDamaged") from None
        if run.get("status") == RUNNING and not _alive(run.get("pid")):
            run.update(status=ABORTED, error=KILLED[0], cause=KILLED[1].format(pid=run.get("pid")))
        result = _run_result(resolved_paths(run, RUN_PATH_FIELDS, self.workspace.root))
        if result.started is None:
            result.started = datetime.fromtimestamp(path.stat().st_mtime - (result.duration_seconds or 0), tz=UTC)
        if result.status == RUNNING:
            result.duration_seconds = (datetime.now(UTC) - result.started).total_seconds()
            result.next_command = f"python -m pipeline status {result.run_id} --local{self.flags} --follow"
        return result

    def _no_run(self, run_id: str) -> OperatorError:
        return OperatorError(f"no local run {run_id!r} in {self.workspace.runs}",
                             "list them with `python -m pipeline runs --local`", error="RunNotFound")

    def _run_dir(self, run_id: str) -> Path:
        if not RUN_NAME.match(run_id):  # every run is named so: nothing else is a run (nor a path, nor too long)
            raise self._no_run(run_id)
        return self.workspace.runs / run_id

    def status(self, name: str, reporter: Reporter, follow: bool) -> RunResult:
        """The run's steps as recorded; with `follow`, then each step as it ends, until the run does (Ctrl-C
        stops the following, never the run)."""
        path = self._run_dir(name) / RUN_FILE
        result = self._load(path)
        if result is None and path.parent.is_dir() and name.startswith(CV_PREFIX):
            raise BadInput(f"{name!r} is a cross-validation by `evaluate`, not a run: its results are in {path.parent}",
                           "list runs with `python -m pipeline runs --local`", error="NotARun")
        if result is None and path.parent.is_dir():  # run.json is written from the first step after validation
            raise OperatorError(f"local run {name!r} has no readable {path}: it is still validating its input, or "
                                "its process was killed before it could record the run", error="RunNotFinished")
        if result is None:
            raise self._no_run(name)
        groups = result.feature_groups
        reporter.run_started(f"Local run {name} (feature group{'s' if len(groups) > 1 else ''} "
                             f"{', '.join(groups.values()) or '-'})", tuple(groups))
        shown, announced = 0, ""
        try:
            while True:
                shown = _report_steps(result, reporter, shown, announced)
                announced = result.running_step
                if not follow or result.finished:
                    return result
                time.sleep(self.poll_seconds)
                result = self._load(path) or result
        except KeyboardInterrupt:
            raise Interrupted("stopped following; the run goes on", result.next_command, status=RUNNING) from None

    def _listed(self, path: Path) -> RunResult | None:
        """A run as `runs` lists it: one whose run.json is damaged is listed saying so, not left out unseen."""
        try:
            return self._load(path)
        except OperatorError as exc:
            return RunResult(status="?", run_id=path.parent.name, error=exc.message)

    def runs(self, limit: int) -> RunListing:
        found = [run for run in map(self._listed, self.workspace.runs.glob(f"*/{RUN_FILE}")) if run]
        found.sort(key=lambda run: run.started or datetime.min.replace(tzinfo=UTC), reverse=True)
        if not found:
            raise OperatorError(f"no local runs in {self.workspace.runs}",
                                "start one with `python -m pipeline run --local`", error="RunNotFound")
        return RunListing(f"Local runs in {self.workspace.root}", found[:limit], "")

    # -- scores and predictions ------------------------------------------------------------------
    def latest_approved(self) -> ModelEntry:
        with _refusals():
            entry = self.workspace.registry.latest_approved()
        if entry is None:
            raise OperatorError(f"no approved model in {self.workspace.registry.path}", RUN_LOCALLY,
                                error="NoApprovedModel")
        return entry

    def scores(self, run_id: str | None, top: int) -> Scores:
        run_id = self.latest_approved().run_id if run_id is None else run_id
        run_dir = self._run_dir(run_id)
        if not run_dir.is_dir():
            raise self._no_run(run_id)
        path = run_dir / SCORES_PREFIX / SCORES_FILE
        if not path.is_file():
            run = self._load(run_dir / RUN_FILE)
            if run and run.status == RUNNING:
                raise OperatorError(f"run '{run_id}' has no scores yet: it is at {run.running_step or '-'}",
                                    f"follow it to its end: `{run.next_command}`", error="ScoresNotFound")
            if run and run.finished and run.status != SUCCEEDED:  # e.g. stopped after Register model
                last = f" at {list(run.step_seconds)[-1]}" if run.step_seconds else ""
                raise OperatorError(f"run '{run_id}' has no scores: it ended {run.status}{last} ({path} does not "
                                    "exist)", "pass --run with a run that scored; list runs with "
                                    "`python -m pipeline runs --local`", error="ScoresNotFound")
            raise OperatorError(f"run '{run_id}' has no scores ({path} does not exist)",
                                "scores are written by a run that passed the quality gate; list runs with "
                                "`python -m pipeline runs --local`", error="ScoresNotFound")
        with open(path, encoding="utf-8", newline="") as lines:
            return Scores.read(run_id, str(path), lines, top)

    def predict(self, record_id: str, features: int) -> Prediction:
        entry = self.latest_approved()
        path = self._run_dir(entry.run_id) / RUN_FILE
        run = self._load(path)
        if run is None or not run.feature_groups:
            raise OperatorError(f"cannot tell which feature groups the approved model's run used ({path} is "
                                "missing or names none)", "train a new model with `python -m pipeline run --local`",
                                error="RunNotFound")
        if not self.workspace.feature_store.is_dir():
            raise OperatorError(f"no local feature store in {self.workspace.root}", RUN_LOCALLY,
                                error="NoFeatureStore")
        try:
            with _refusals(), LocalFeatureStore(self.workspace.feature_store) as store:
                key, values, read = online_features(store, store, run.feature_groups, record_id,
                                                   "python -m pipeline scores --local")
        except ClientError as exc:
            raise OperatorError(exc.response["Error"].get("Message", str(exc)), RUN_LOCALLY,
                                error=exc.response["Error"].get("Code", "Error")) from None
        return predict_artifact(Path(entry.model_artifact), entry.model_artifact, str(entry.version), read, key,
                                values, features)

    # -- local only ---------------------------------------------------------------------------------
    def cross_validate(self, spec_path: Path, data: Path | None, folds: int, reporter: Reporter,
                       hyperparameters: str | None = None) -> dict[str, Any]:
        spec = load_spec(spec_path)
        settings = settings_with(spec, None, hyperparameters)
        pipeline = LocalPipeline(spec=spec, settings=settings, workspace=self.workspace, reporter=reporter)
        try:
            with _refusals():
                data = input_path(spec, spec_path, data)
                _announce(reporter, "Local cross-validation", data, pipeline)  # its steps' column fits the groups'
                return pipeline.cross_validate(data, folds)
        except PipelineFailed as exc:
            refused = serving_module(TRAINING_DIR, HYPERPARAMETERS_MODULE).FoldsRefused.FORM.search(exc.cause)
            if refused:  # the training set cannot give that many folds: a refused option, as a bad --threshold is
                # with room for fewer than --folds takes, fewer folds is no way out
                hint = "pass fewer --folds" if int(refused["most"]) >= MIN_FOLDS else (
                    f"cross-validation needs {MIN_FOLDS} folds or more: give it more data (more observation periods, "
                    "or more rows of each label)")
                raise BadInput(f"--folds {folds}: {refused.group()}", hint, error="FoldsRefused") from None
            raise OperatorError(f"{exc.error}: {exc.cause}", error=exc.error) from None
        except KeyboardInterrupt as exc:
            raise _interrupted(exc) from None

    def models(self) -> list[ModelEntry]:
        with _refusals():
            entries = self.workspace.registry.entries()
        if not entries:
            raise OperatorError("no models registered yet", RUN_LOCALLY, error="NoModels")
        return entries
