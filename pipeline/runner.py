"""The local mode: the state machine's steps, run on this machine with the same code.

[Derive sources ->] per feature group: Validate input -> Ingest features (the Lambda's batch code
into the local feature store) -> Wait for offline store (the same count SQL, on DuckDB) -> Build
training set (the same point-in-time SQL, on DuckDB) -> Train model (the training script under
SageMaker's environment contract) -> Evaluate model (the same quality gate) -> Register model (the
local registry) -> Build scoring set -> Score customers (the serving functions, called as Batch
Transform calls them) -> Rank scores (churn.scoring). Step names are the state machine's
(`churn.steps`); a spec with several groups names each group's own steps after it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
from botocore.exceptions import ClientError

from churn import naming, steps
from churn.config import PipelineSettings, training_hyperparameters
from churn.csv_input import InputValidationError, text_lines, unreadable
from churn.derivations import DERIVATIONS
from churn.features import now_event_time, parse_event_time
from churn.ingest import IngestError, describe_failures
from churn.layout import (
    MODEL_ARTIFACT_FILE,
    SAMPLE_DATA,
    SAMPLE_SPEC,
    SCORES_FILE,
    SCORES_PREFIX,
    SCORING_INPUT_DIR,
    SCORING_INPUT_FILE,
    TRAINING_CHANNEL,
    TRAINING_ENTRY_POINT,
    TRAINING_SET_FILE,
    TRANSFORM_OUTPUT_DIR,
)
from churn.model_quality import EVALUATION_FILE, quality_gate, read_evaluation_from_model_tarball
from churn.schema import FeatureGroupSpec, FeatureSpec
from churn.scoring import TOP_CUSTOMERS, TRANSFORM_MAX_PAYLOAD_MB, ScoringError, rank, read_predictions, write_scores
from churn.sql import (
    AS_OF,
    KNOWLEDGE_CUTOFF,
    NO_CUTOFF,
    RUN_STARTED,
    Query,
    offline_count_sql,
    scoring_set_sql,
    sql_timestamp,
    table_reference,
    training_set_sql,
)
from pipeline.backends import ABORTED, FAILED, RUNNING, SUCCEEDED, Reporter
from pipeline.fast_validate import validate_file_fast
from pipeline.local_aws import batch_transform
from pipeline.local_aws.feature_store import LocalFeatureStore
from pipeline.local_aws.registry import APPROVED, REJECTED, LocalModelRegistry, ModelEntry, relative_paths, write_record
from pipeline.local_aws.training_job import JobDirectories, pack_model, run_training
from pipeline.local_ingest import ingest_file

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRAINING_DIR = PROJECT_ROOT / "training"
DEFAULT_DATA = PROJECT_ROOT / SAMPLE_DATA
DEFAULT_SPEC = PROJECT_ROOT / SAMPLE_SPEC
CV_PREFIX = "cv-"  # an evaluate's directory beside the runs': it records no run.json
DEFAULT_WORKSPACE = PROJECT_ROOT / ".local"
LOCAL_STACK_NAME = "local"
SOURCES_DIR = "sources"  # a run's derived CSVs, one a feature group
RUN_FILE = "run.json"  # the run's outcome, in its directory: what `runs --local` and `status --local` read
# The run's own files, which run.json records relative to the workspace (the --data input is not one of them)
RUN_PATH_FIELDS = ("run_dir", "model_artifact", "evaluation", "report", "scores")
# A run stopped by Ctrl-C: recorded as Step Functions records a stopped execution, with this error
INTERRUPTED = ("Interrupted", "stopped by Ctrl-C (SIGINT)")
# A run.json still RUNNING whose process is gone (killed, or its machine stopped): read back as ABORTED with
KILLED = ("Killed", "its process ({pid}) ended without recording how the run ended")


class PipelineFailed(Exception):
    """A step failed; `error` names the failure in run.json and the CLI. Where the state machine fails the
    same way it is the error that reports (an exception's name: InputValidationError, IngestError,
    ScoringError; a Fail state's: churn.steps.OFFLINE_STORE_TIMEOUT, BELOW_THRESHOLD); else it is the local
    run's own name (TrainingFailed, ScoringFailed, EmptyTrainingSet, EmptyScoringSet, InputChanged)."""

    def __init__(self, error: str, cause: str, step: str = ""):
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause
        self.step = step


class Workspace:
    """Where the local mode keeps state: the feature store outlives runs, like on AWS."""

    def __init__(self, root: Path = DEFAULT_WORKSPACE):
        self.root = Path(root).resolve()  # the training script runs in training/
        self.feature_store = self.root / "feature-store"
        self.runs = self.root / "runs"
        self.registry = LocalModelRegistry(self.root / "registry.json")


@dataclass
class RunOutcome:
    status: str
    run_id: str
    run_dir: str
    started: str = ""  # ISO 8601, UTC: what `runs --local` shows and orders by (a copied file's time is the copy's)
    input: str = ""  # the --data path: a file, or a folder of <group>.csv
    feature_groups: dict[str, str] = field(default_factory=dict)  # spec group -> feature group name
    records_ingested: int = 0
    training_rows: int = 0
    knowledge_cutoff: str = NO_CUTOFF
    auc: float | None = None
    threshold: float | None = None
    gate: str = ""
    split: dict[str, Any] = field(default_factory=dict)  # how the validation rows were chosen
    model_artifact: str = ""
    model_version: int | None = None
    evaluation: str = ""
    report: str = ""
    scores: str = ""
    customers_scored: int = 0
    id_column: str = ""  # the record identifier's name, which heads the top customers' ids
    top_customers: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    cause: str = ""
    step_seconds: dict[str, float] = field(default_factory=dict)
    step_details: dict[str, str] = field(default_factory=dict)  # what each finished step reported
    running_step: str = ""  # while it runs: the step it is in
    pid: int = 0  # the process that runs it (none for cross-validation, which records no run.json)


class LocalPipeline:
    def __init__(self, *, spec: FeatureSpec, settings: PipelineSettings, workspace: Workspace,
                 reporter: Reporter | None = None):
        self.spec = spec
        self.settings = settings
        self.workspace = workspace
        self.reporter = reporter or Reporter()
        self.database = naming.glue_database_name(LOCAL_STACK_NAME)
        self.feature_groups = {g.name: naming.feature_group_name(LOCAL_STACK_NAME, g.name, g.fingerprint())
                               for g in spec.all_groups}
        self.tables = {g.name: naming.offline_table_name(g.name, g.fingerprint()) for g in spec.all_groups}

    def step(self, step: str, group: FeatureGroupSpec | None = None) -> str:
        """A state's name as the state machine has it (a group's own, with several groups)."""
        return steps.for_group(step, None if group is None or self.spec.is_single_group else group.name)

    # -- the whole run --------------------------------------------------------------------
    def run(self, data: Path, *, run_id: str | None = None, knowledge_cutoff: str | None = None) -> RunOutcome:
        """Run every step. Bad input (InputValidationError, DerivationError) is raised before anything is
        written; a failed step raises PipelineFailed (any other error is raised as it is), with the outcome
        attached as `exc.outcome` and recorded in the run's run.json as FAILED (ABORTED after Ctrl-C)."""
        started = datetime.now(UTC)
        run_id = run_id or f"local-{started:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"
        run_dir = self.workspace.runs / run_id
        outcome = RunOutcome(status=RUNNING, run_id=run_id, run_dir=str(run_dir), started=started.isoformat(),
                             input=str(data), threshold=self.settings.quality_threshold,
                             feature_groups=dict(self.feature_groups),
                             knowledge_cutoff=knowledge_cutoff or NO_CUTOFF, id_column=self.spec.record_identifier.name,
                             pid=os.getpid())
        try:
            self._prepare_training_set(data, run_dir, outcome, now_event_time(), self.workspace.feature_store)
            self._train_and_register(run_dir, outcome)
            self._score(run_dir, outcome)
        except (Exception, KeyboardInterrupt) as exc:  # on record (a run whose input was refused has written nothing)
            outcome.status = ABORTED if isinstance(exc, KeyboardInterrupt) else FAILED
            outcome.error, outcome.cause = _error_of(exc)
            exc.outcome = outcome  # type: ignore[attr-defined]
            with suppress(OSError):  # a full disk must not hide the error itself
                self._write_summary(outcome)
            raise
        outcome.status = SUCCEEDED
        self._write_summary(outcome)
        return outcome

    def cross_validate(self, data: Path, folds: int) -> dict[str, Any]:
        """K-fold ROC AUC of the same script and settings on the training set a run on `data` alone would build:
        the steps up to the training set, then the script with `--cv_folds K`. Nothing is registered, and the
        workspace's feature store is left alone (what predict and later runs read): the input goes to a store of
        its own, deleted at the end."""
        run_dir = self.workspace.runs / f"{CV_PREFIX}{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"
        outcome = RunOutcome(status=RUNNING, run_id=run_dir.name, run_dir=str(run_dir))
        try:
            self._prepare_training_set(data, run_dir, outcome, now_event_time(), run_dir / "feature-store")
        finally:
            shutil.rmtree(run_dir / "feature-store", ignore_errors=True)
        with self._step(f"Cross-validate ({folds} folds)", outcome):
            self.train_model(run_dir, {"cv_folds": folds})
        cv_file = JobDirectories(run_dir).output_data / self._script().CV_FILE
        return {**json.loads(cv_file.read_text(encoding="utf-8")), "run_dir": str(run_dir)}

    def _prepare_training_set(self, data: Path, run_dir: Path, outcome: RunOutcome, event_time: str,
                              store_root: Path) -> None:
        """[Derive sources ->] Validate input -> Ingest features -> Wait for offline store, for each
        group, into the feature store at `store_root` -> Build training set. Nothing is written until every
        input is known to be good."""
        with tempfile.TemporaryDirectory(prefix="churn-sources-") as scratch:
            sources = self._sources(data, Path(scratch), outcome)
            checked = {name: _version(path) for name, path in sources.items()}  # before Validate input reads them
            expected = {g.name: self._validate(g, sources[g.name], event_time, outcome) for g in self.spec.all_groups}
            # A store in an older layout, or whose online store is damaged, is refused before the run writes.
            store = LocalFeatureStore(store_root)
            run_dir.mkdir(parents=True, exist_ok=True)
            if self.spec.derive:
                shutil.copytree(scratch, run_dir / SOURCES_DIR)
                sources = {name: run_dir / SOURCES_DIR / path.name for name, path in sources.items()}
                checked = {name: _version(path) for name, path in sources.items()}  # the run's own copies
        values = {AS_OF: event_time, RUN_STARTED: sql_timestamp(parse_event_time(event_time)),
                  KNOWLEDGE_CUTOFF: outcome.knowledge_cutoff}
        with store:
            for group in self.spec.all_groups:
                self._ingest(store, group, sources[group.name], event_time, outcome, checked[group.name])
                self._wait_for_offline_store(store, group, expected[group.name], values, outcome)
            destination = JobDirectories(run_dir).channel(TRAINING_CHANNEL) / TRAINING_SET_FILE
            with self._step(steps.BUILD_TRAINING_SET, outcome, lambda: f"{outcome.training_rows} rows"):
                outcome.training_rows = self._query_to_csv(store, training_set_sql(self.spec, self._tables()),
                                                           values, destination)
                if outcome.training_rows == 0:
                    cutoff = outcome.knowledge_cutoff
                    limits = f"as of {event_time}" + ("" if cutoff == NO_CUTOFF else f" and knowledge cutoff {cutoff}")
                    raise PipelineFailed("EmptyTrainingSet", f"the training-set query gave no rows {limits}")

    def _sources(self, data: Path, scratch: Path, outcome: RunOutcome) -> dict[str, Path]:
        """Each group's CSV: the input file itself (one group), one the spec's derivation writes from it,
        or `<group>.csv` in the input folder (several groups, no derivation)."""
        if self.spec.is_single_group:
            return {self.spec.groups[0].name: data}
        if not self.spec.derive:
            return group_files(self.spec, data)
        with self._step(steps.DERIVE_SOURCES, outcome, lambda: f"{len(derived)} files"):
            try:
                with open(data, "rb") as stream:  # decoded line by line: a bad byte is reported with its line
                    derived = DERIVATIONS[self.spec.derive].derive(text_lines(stream, str(data)), str(data))
            except OSError as exc:
                raise unreadable(str(data), exc) from None
            for name, text in derived.items():
                (scratch / f"{name}.csv").write_text(text, encoding="utf-8")
        return {name: scratch / f"{name}.csv" for name in derived}

    def _validate(self, group: FeatureGroupSpec, path: Path, event_time: str, outcome: RunOutcome) -> int:
        with self._step(self.step(steps.VALIDATE_INPUT, group), outcome, lambda: f"{rows} rows"):
            rows = validate_file_fast(str(path), group, not_after=event_time).rows
        return rows

    def _ingest(self, store: LocalFeatureStore, group: FeatureGroupSpec, path: Path, event_time: str,
                outcome: RunOutcome, checked: tuple[int, int]) -> None:
        name = self.feature_groups[group.name]
        with self._step(self.step(steps.INGEST_FEATURES, group), outcome, lambda: f"{result.ingested} records"):
            create_feature_group(store, name, group)
            processes = max(1, min(self.settings.ingest_max_concurrency, os.cpu_count() or 1))
            try:
                result = ingest_file(store, path, group=group, feature_group_name=name, event_time=event_time,
                                     batch_size=self.settings.ingest_batch_size, processes=processes)
            except InputValidationError as exc:  # the file changed after Validate input passed it
                raise PipelineFailed(InputValidationError.__name__, str(exc)) from None
            if _version(path) != checked:  # AWS ingests the object version Validate input checked
                raise PipelineFailed("InputChanged", f"{path} changed after Validate input checked it (another "
                                     "program wrote it during the run); run again once it is complete")
            store.flush()
            if result.failed_count:
                raise PipelineFailed(IngestError.__name__, describe_failures(result.failed, result.failed_count))
        outcome.records_ingested += result.ingested

    def _wait_for_offline_store(self, store: LocalFeatureStore, group: FeatureGroupSpec, expected: int,
                                values: dict[str, str], outcome: RunOutcome) -> None:
        """The state machine's check, once: the local offline store holds a run's records at once."""
        with self._step(self.step(steps.WAIT_FOR_OFFLINE_STORE, group), outcome, lambda: f"{count} records visible"):
            query = offline_count_sql(group, table_reference(self.database, self.tables[group.name]))
            with self._duckdb(store, only=group.name) as con:
                (count,) = con.execute(query.text, [values[name] for name in query.parameters]).fetchone()
            if count < expected:
                raise PipelineFailed(steps.OFFLINE_STORE_TIMEOUT,
                                     f"offline store had {count} of {expected} records after 1 check")

    def _tables(self) -> dict[str, str]:
        return {name: table_reference(self.database, table) for name, table in self.tables.items()}

    @contextmanager
    def _duckdb(self, store: LocalFeatureStore, only: str | None = None) -> Iterator[Any]:
        """A DuckDB connection where each group's offline store (or `only` that one's) is
        `"database"."table"`, as in Athena."""
        attached = {group: name for group, name in self.feature_groups.items() if only in (None, group)}
        with duckdb.connect(":memory:") as con, store.offline_reads(attached.values()):
            for group, name in attached.items():
                store.attach_duckdb(con, name, self.database, self.tables[group])
            yield con

    def _query_to_csv(self, store: LocalFeatureStore, query: Query, values: dict[str, str], destination: Path) -> int:
        """The query's rows as Athena writes a result: header, every value quoted, NULL as nothing."""
        destination.parent.mkdir(parents=True, exist_ok=True)
        target = str(destination).replace("'", "''")
        with self._duckdb(store) as con:
            (rows,) = con.execute(f"COPY ({query.text}) TO '{target}' (HEADER, FORCE_QUOTE *)",
                                  [values[name] for name in query.parameters]).fetchone()
        return rows

    # -- training, the gate, the registry -----------------------------------------------------
    def train_model(self, run_dir: Path, extra_hyperparameters: dict[str, Any] | None = None) -> Path:
        """Run the training script as the SageMaker container would, then pack model.tar.gz."""
        hyperparameters = {**training_hyperparameters(self.settings, self.spec), **(extra_hyperparameters or {})}
        # Score customers imports the serving code (xgboost, scikit-learn, SciPy: ~2 s); do it while the
        # training process runs, which boosts on one CPU below 100k fit rows.
        preload = threading.Thread(target=self._script, name="preload-serving", daemon=True)
        preload.start()
        run = run_training(TRAINING_DIR, TRAINING_ENTRY_POINT, run_dir, hyperparameters)
        preload.join()
        if not run.succeeded:
            raise PipelineFailed("TrainingFailed", f"{run.script_failure()} (log: {run.log})")
        for warning in run.warnings():
            self.reporter.warning(steps.TRAIN_MODEL, warning)
        return pack_model(run_dir, run_dir / MODEL_ARTIFACT_FILE)

    def _train_and_register(self, run_dir: Path, outcome: RunOutcome) -> None:
        with self._step(steps.TRAIN_MODEL, outcome, lambda: outcome.model_artifact):
            outcome.model_artifact = str(self.train_model(run_dir))
        with self._step(steps.EVALUATE_MODEL, outcome, lambda: outcome.gate):
            evaluation = read_evaluation_from_model_tarball(Path(outcome.model_artifact).read_bytes(),
                                                            outcome.model_artifact)
            decision = quality_gate(evaluation, self.settings.quality_threshold)
            outcome.auc, outcome.gate = decision.validation_auc, decision.reason
            outcome.split = evaluation.get("split", {})
            job = JobDirectories(run_dir)
            outcome.evaluation = str(job.model / EVALUATION_FILE)
            report = job.output_data / self._script().REPORT_FILE
            outcome.report = str(report) if report.exists() else ""
            entry = ModelEntry(
                run_id=outcome.run_id, created=outcome.started, status=APPROVED if decision.passed else REJECTED,
                validation_auc=decision.validation_auc, threshold=decision.threshold,
                model_artifact=outcome.model_artifact, evaluation=outcome.evaluation, report=outcome.report,
                reason=decision.reason, metrics={k: v for k, v in evaluation.items() if isinstance(v, (int, float))},
            )
            if not decision.passed:
                self.workspace.registry.add(entry)
                raise PipelineFailed(steps.BELOW_THRESHOLD, decision.reason)
        with self._step(steps.REGISTER_MODEL, outcome, lambda: f"version {outcome.model_version}"):
            outcome.model_version = self.workspace.registry.add(entry).version

    # -- scoring ------------------------------------------------------------------------------
    def _script(self) -> Any:
        """The training script's module, imported as the serving container imports it: its serving functions
        score customers, its constants name the files it writes (loaded by then: train_model preloads it)."""
        return batch_transform.serving_module(TRAINING_DIR, TRAINING_ENTRY_POINT)

    def _score(self, run_dir: Path, outcome: RunOutcome) -> None:
        """Build scoring set -> Score customers -> Rank scores, into <run>/scores/ (S3's scores/<execution>/)."""
        scores_dir = run_dir / SCORES_PREFIX
        scoring_input = scores_dir / SCORING_INPUT_DIR / SCORING_INPUT_FILE
        as_of = now_event_time()
        with LocalFeatureStore(self.workspace.feature_store) as store, \
                self._step(steps.BUILD_SCORING_SET, outcome, lambda: f"{customers} customers as of {as_of}"):
            customers = self._query_to_csv(store, scoring_set_sql(self.spec, self._tables()), {AS_OF: as_of},
                                           scoring_input)
            if customers == 0:
                raise PipelineFailed("EmptyScoringSet", f"the scoring-set query returned no rows as of {as_of}")
        with self._step(steps.SCORE_CUSTOMERS, outcome, lambda: str(output)):
            output = self.score_customers(Path(outcome.model_artifact), scoring_input,
                                          scores_dir / TRANSFORM_OUTPUT_DIR)

        def ranked() -> str:
            first = outcome.top_customers[0]
            return (f"{outcome.customers_scored} customers; highest risk {first['record_id']} "
                    f"({first['churn_probability']:.3f})")

        with self._step(steps.RANK_SCORES, outcome, ranked):
            outcome.scores = str(scores_dir / SCORES_FILE)
            ranking = self.rank_scores(output, Path(outcome.scores), str(outcome.model_version))
            outcome.customers_scored = len(ranking)
            outcome.top_customers = ranking.top(TOP_CUSTOMERS)

    def score_customers(self, model_artifact: Path, scoring_input: Path, transform_dir: Path,
                        max_payload_mb: int = TRANSFORM_MAX_PAYLOAD_MB) -> Path:
        """What the "Score customers" Batch Transform does, with the model artifact as its model."""
        try:
            with batch_transform.extracted_model(model_artifact) as model_dir:
                return batch_transform.transform(self._script(), model_dir, scoring_input, transform_dir,
                                                 max_payload_mb * 2**20)
        except ValueError as exc:  # a request failed, or a line would not fit in one
            raise PipelineFailed("ScoringFailed", str(exc)) from None

    def rank_scores(self, transform_output: Path, destination: Path, model_version: str) -> Any:
        """What the Rank scores Lambda does with the transform output: rank, write scores.csv."""
        id_column = self.spec.record_identifier.name
        try:
            with open(transform_output, encoding="utf-8", newline="") as lines:
                ranking = rank(read_predictions(lines, id_column, str(transform_output)))
        except ScoringError as exc:
            raise PipelineFailed(ScoringError.__name__, str(exc)) from None
        with open(destination, "w", encoding="utf-8", newline="") as stream:
            write_scores(ranking, stream, id_column, model_version)
        return ranking

    # -- steps ------------------------------------------------------------------------------
    @contextmanager
    def _step(self, name: str, outcome: RunOutcome, detail: Callable[[], str] | None = None) -> Iterator[None]:
        start = time.perf_counter()
        try:  # from its announcement on: a Ctrl-C after "▶ <step>" is recorded against that step
            outcome.running_step = name
            self._write_summary(outcome)  # before "▶ <step>": `runs --local` and `status --local` show the step
            self.reporter.step_started(name)
            yield
        except (Exception, KeyboardInterrupt) as exc:
            outcome.running_step = ""
            seconds = time.perf_counter() - start
            outcome.step_seconds[name] = round(seconds, 3)
            if isinstance(exc, PipelineFailed):
                exc.step = exc.step or name
            self.reporter.step_failed(name, seconds, ": ".join(_error_of(exc)))
            raise
        seconds = time.perf_counter() - start
        outcome.running_step = ""
        outcome.step_seconds[name] = round(seconds, 3)
        outcome.step_details[name] = detail() if detail else ""
        self._write_summary(outcome)
        self.reporter.step_finished(name, seconds, outcome.step_details[name])

    def _write_summary(self, outcome: RunOutcome) -> None:
        """run.json, once the run has its directory (nothing is written before its input is known good);
        cross-validation (no pid) records none."""
        run_dir = Path(outcome.run_dir)
        if outcome.pid and run_dir.exists():
            write_record(run_dir / RUN_FILE, relative_paths(asdict(outcome), RUN_PATH_FIELDS, self.workspace.root))


def _error_of(exc: BaseException) -> tuple[str, str]:
    """(error, cause) of what ended a step or a run, as the step display and run.json name it."""
    if isinstance(exc, PipelineFailed):
        return exc.error, exc.cause
    return INTERRUPTED if isinstance(exc, KeyboardInterrupt) else (type(exc).__name__, str(exc))


def group_files(spec: FeatureSpec, folder: Path) -> dict[str, Path]:
    """Each group's `<group>.csv` in the input folder of a spec with several groups and no derivation."""
    return {g.name: folder / f"{g.name}.csv" for g in spec.all_groups}


def _version(path: Path) -> tuple[int, int]:
    """A file's size and modification time: what tells a rewritten input from the one validated."""
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def create_feature_group(store: LocalFeatureStore, name: str, group: FeatureGroupSpec) -> None:
    """The group's feature group (its stores as the stack creates them), unless it exists: its name
    carries the group's fingerprint, so an existing one has these very definitions."""
    online = group.online_store_config()
    try:
        store.create_feature_group(FeatureGroupName=name, **group.feature_group_definition(),
                                   **({"OnlineStoreConfig": online} if online else {}),
                                   OfflineStoreConfig={"DisableGlueTableCreation": False})
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceInUse":
            raise
        store.describe_feature_group(FeatureGroupName=name)  # it loads (or is StoreDamagedError once, not per record)
