"""The local mode: the state machine's steps, run on this machine with the same code.

Validate input -> Ingest features (the Lambda's batch code into the local feature store) ->
Wait for offline store (the same count SQL, on DuckDB) -> Build training set (the same
point-in-time SQL, on DuckDB) -> Train model (training/train_model.py under SageMaker's
environment contract) -> Evaluate model (the same quality gate) -> Register model (local registry).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from churn import naming
from churn.config import PipelineSettings
from churn.csv_input import iter_raw_rows, validate_file
from churn.features import now_event_time
from churn.ingest import ingest_batch
from churn.model_quality import quality_gate, read_evaluation_from_model_tarball
from churn.schema import FeatureSpec
from churn.sql import offline_count_sql, table_reference, training_set_sql
from pipeline.feature_store import LocalFeatureStore
from pipeline.registry import APPROVED, REJECTED, LocalModelRegistry, ModelEntry

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRAINING_DIR = PROJECT_ROOT / "training"
TRAINING_PROGRAM = "train_model"
DEFAULT_DATA = PROJECT_ROOT / "data" / "churn.csv"
DEFAULT_SPEC = PROJECT_ROOT / "data" / "churn.spec.json"
DEFAULT_WORKSPACE = PROJECT_ROOT / ".local"
LOCAL_STACK_NAME = "local"

STEPS = (
    "Validate input",
    "Ingest features",
    "Wait for offline store",
    "Build training set",
    "Train model",
    "Evaluate model",
    "Register model",
)


class PipelineFailed(Exception):
    """A step failed; `error` is the same error name the state machine would report."""

    def __init__(self, error: str, cause: str, step: str = ""):
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause
        self.step = step


class Reporter:
    """Progress callbacks; the CLI prints them, tests may record them."""

    def step_started(self, step: str) -> None:  # pragma: no cover - default no-op
        pass

    def step_finished(self, step: str, seconds: float, detail: str) -> None:  # pragma: no cover
        pass

    def step_failed(self, step: str, seconds: float, error: str) -> None:  # pragma: no cover
        pass


@dataclass
class Workspace:
    """Where the local mode keeps state: the feature store outlives runs, like on AWS."""

    root: Path = DEFAULT_WORKSPACE

    @property
    def feature_store(self) -> Path:
        return self.root / "feature-store"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def registry(self) -> LocalModelRegistry:
        return LocalModelRegistry(self.root / "registry.json")


@dataclass
class RunOutcome:
    status: str
    run_id: str
    run_dir: str
    feature_group: str = ""
    records_ingested: int = 0
    training_rows: int = 0
    auc: float | None = None
    threshold: float | None = None
    gate: str = ""
    model_artifact: str = ""
    model_version: int | None = None
    evaluation: str = ""
    report: str = ""
    error: str = ""
    cause: str = ""
    step_seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def hyperparameter_args(hyperparameters: dict[str, Any]) -> list[str]:
    """`--name value` pairs, as the SageMaker training toolkit passes hyperparameters."""
    args: list[str] = []
    for name, value in hyperparameters.items():
        args += [f"--{name}", value if isinstance(value, str) else json.dumps(value)]
    return args


def training_hyperparameters(settings: PipelineSettings, spec: FeatureSpec) -> dict[str, Any]:
    return {
        **settings.hyperparameters,
        "id_column": spec.record_identifier.name,
        "label_column": spec.label.name,
    }


def _batches(rows: Iterator[tuple[int, dict[str, str]]], size: int) -> Iterator[list[dict[str, str]]]:
    while True:
        batch = [row for _, row in islice(rows, size)]
        if not batch:
            return
        yield batch


class LocalPipeline:
    def __init__(
        self,
        *,
        spec: FeatureSpec,
        settings: PipelineSettings,
        workspace: Workspace,
        reporter: Reporter | None = None,
    ):
        self.spec = spec
        self.settings = settings
        self.workspace = workspace
        self.reporter = reporter or Reporter()
        self.group = naming.feature_group_name(LOCAL_STACK_NAME, spec.fingerprint())
        self.database = naming.glue_database_name(LOCAL_STACK_NAME)
        self.table_name = naming.offline_table_name(spec.fingerprint())
        self.table = table_reference(self.database, self.table_name)

    # -- steps ---------------------------------------------------------------------------
    def validate_input(self, data: Path) -> int:
        return validate_file(str(data), self.spec).rows

    def ingest_features(self, store: LocalFeatureStore, data: Path, event_time: str) -> int:
        """Stream the file in the state machine's batch size; batches run concurrently."""
        store.create_feature_group(self.group, self.spec)
        size = self.settings.ingest_batch_size
        concurrency = max(1, min(self.settings.ingest_max_concurrency, os.cpu_count() or 1))
        ingested = 0
        failed: list[dict[str, str]] = []

        def run(batch: list[dict[str, str]]):
            return ingest_batch(
                batch, spec=self.spec, feature_group_name=self.group, event_time=event_time,
                client=store, max_workers=1,
            )

        with open(data, "rb") as stream, ThreadPoolExecutor(max_workers=concurrency) as pool:
            pending: set[Future] = set()
            for batch in _batches(iter_raw_rows(stream, str(data), self.spec), size):
                pending.add(pool.submit(run, batch))
                if len(pending) >= 2 * concurrency:  # bounded: the file is streamed, not loaded
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        ingested += fut.result().ingested
                        failed += fut.result().failed
            for fut in pending:
                ingested += fut.result().ingested
                failed += fut.result().failed
        store.flush()
        if failed:
            shown = ", ".join(f"{f['record_id']} ({f['error']})" for f in failed[:5])
            raise PipelineFailed("IngestError", f"{len(failed)} records failed: {shown}")
        return ingested

    def wait_for_offline_store(self, store: LocalFeatureStore, event_time: str, expected: int) -> int:
        con = store.connect_duckdb(self.group, self.database, self.table_name)
        (count,) = con.execute(offline_count_sql(self.spec, self.table), [event_time]).fetchone()
        if count != expected:
            raise PipelineFailed(
                "OfflineStoreTimeout", f"offline store had {count} of {expected} records after 1 check"
            )
        return count

    def build_training_set(self, store: LocalFeatureStore, as_of: str, destination: Path) -> int:
        """Write the point-in-time training set as Athena would: header, quoted values."""
        destination.parent.mkdir(parents=True, exist_ok=True)
        con = store.connect_duckdb(self.group, self.database, self.table_name)
        sql = training_set_sql(self.spec, self.table)
        target = str(destination).replace("'", "''")
        con.execute(f"COPY ({sql}) TO '{target}' (HEADER, FORCE_QUOTE *)", [as_of])
        (rows,) = con.execute(f"SELECT count(*) FROM ({sql})", [as_of]).fetchone()
        if rows == 0:
            raise PipelineFailed("EmptyTrainingSet", f"the training-set query returned no rows as of {as_of}")
        return rows

    def train_model(self, run_dir: Path, extra_hyperparameters: dict[str, Any] | None = None) -> Path:
        """Run training/train_model.py as the SageMaker container would, then pack model.tar.gz."""
        hyperparameters = {**training_hyperparameters(self.settings, self.spec), **(extra_hyperparameters or {})}
        env = {
            **os.environ,
            "SM_CHANNEL_TRAIN": str(run_dir / "input" / "data" / "train"),
            "SM_MODEL_DIR": str(run_dir / "model"),
            "SM_OUTPUT_DATA_DIR": str(run_dir / "output" / "data"),
            "SM_OUTPUT_DIR": str(run_dir / "output"),
            "SM_CHANNELS": json.dumps(["train"]),
            "SM_HPS": json.dumps(hyperparameters),
            "SM_CURRENT_HOST": "algo-1",
            "SM_HOSTS": json.dumps(["algo-1"]),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        for key in ("SM_MODEL_DIR", "SM_OUTPUT_DATA_DIR"):
            Path(env[key]).mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", TRAINING_PROGRAM, *hyperparameter_args(hyperparameters)]
        log_path = run_dir / "training.log"
        with open(log_path, "w", encoding="utf-8") as log:
            completed = subprocess.run(command, cwd=TRAINING_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       check=False)
        if completed.returncode != 0:
            failure = run_dir / "output" / "failure"
            reason = failure.read_text(encoding="utf-8").strip() if failure.exists() else ""
            if not reason:
                lines = log_path.read_text(encoding="utf-8").strip().splitlines()
                reason = lines[-1] if lines else f"exit code {completed.returncode}"
            raise PipelineFailed("TrainingFailed", f"{reason} (log: {log_path})")
        artifact = run_dir / "model.tar.gz"
        with tarfile.open(artifact, "w:gz") as archive:
            for path in sorted((run_dir / "model").iterdir()):
                archive.add(path, arcname=path.name)
        return artifact

    def cross_validate(self, data: Path, folds: int) -> dict[str, Any]:
        """Stratified K-fold ROC AUC of the same script and settings on the same training set.

        Runs the pipeline's steps up to the training set, then the training script with
        `--cv_folds K`; nothing is registered. Returns the script's cv.json.
        """
        started = datetime.now(UTC)
        run_dir = self.workspace.runs / f"cv-{started:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"
        outcome = RunOutcome(status="RUNNING", run_id=run_dir.name, run_dir=str(run_dir))
        event_time = now_event_time()
        with self._step("Validate input", outcome, lambda: f"{expected} rows"):
            expected = self.validate_input(data)
        run_dir.mkdir(parents=True, exist_ok=True)
        with LocalFeatureStore(self.workspace.feature_store) as store:
            with self._step("Ingest features", outcome, lambda: f"{outcome.records_ingested} records"):
                outcome.records_ingested = self.ingest_features(store, data, event_time)
            with self._step("Wait for offline store", outcome, lambda: f"{expected} records visible"):
                self.wait_for_offline_store(store, event_time, expected)
            training_csv = run_dir / "input" / "data" / "train" / "training-set.csv"
            with self._step("Build training set", outcome, lambda: f"{outcome.training_rows} rows"):
                outcome.training_rows = self.build_training_set(store, event_time, training_csv)
        with self._step(f"Cross-validate ({folds} folds)", outcome):
            self.train_model(run_dir, {"cv_folds": folds})
        result = json.loads((run_dir / "output" / "data" / "cv.json").read_text(encoding="utf-8"))
        result["run_dir"] = str(run_dir)
        return result

    # -- the whole run --------------------------------------------------------------------
    @contextmanager
    def _step(self, name: str, outcome: RunOutcome, detail: Callable[[], str] | None = None):
        self.reporter.step_started(name)
        start = time.perf_counter()
        try:
            yield
        except PipelineFailed as exc:
            exc.step = exc.step or name
            seconds = time.perf_counter() - start
            outcome.step_seconds[name] = round(seconds, 3)
            self.reporter.step_failed(name, seconds, f"{exc.error}: {exc.cause}")
            raise
        except Exception as exc:
            seconds = time.perf_counter() - start
            outcome.step_seconds[name] = round(seconds, 3)
            self.reporter.step_failed(name, seconds, f"{type(exc).__name__}: {exc}")
            raise
        seconds = time.perf_counter() - start
        outcome.step_seconds[name] = round(seconds, 3)
        self.reporter.step_finished(name, seconds, detail() if detail else "")

    def run(self, data: Path, *, run_id: str | None = None) -> RunOutcome:
        """Run every step. Input errors raise InputValidationError before anything is written;
        a failed step raises PipelineFailed with the outcome attached as `exc.outcome`."""
        started = datetime.now(UTC)
        run_id = run_id or f"local-{started:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"
        run_dir = self.workspace.runs / run_id
        outcome = RunOutcome(status="RUNNING", run_id=run_id, run_dir=str(run_dir), feature_group=self.group,
                             threshold=self.settings.quality_threshold)
        event_time = now_event_time()
        try:
            with self._step("Validate input", outcome, lambda: f"{expected} rows"):
                expected = self.validate_input(data)
            run_dir.mkdir(parents=True, exist_ok=True)
            with LocalFeatureStore(self.workspace.feature_store) as store:
                with self._step("Ingest features", outcome, lambda: f"{outcome.records_ingested} records"):
                    outcome.records_ingested = self.ingest_features(store, data, event_time)
                with self._step("Wait for offline store", outcome, lambda: f"{expected} records visible"):
                    self.wait_for_offline_store(store, event_time, expected)
                training_csv = run_dir / "input" / "data" / "train" / "training-set.csv"
                with self._step("Build training set", outcome, lambda: f"{outcome.training_rows} rows"):
                    outcome.training_rows = self.build_training_set(store, event_time, training_csv)
            with self._step("Train model", outcome, lambda: outcome.model_artifact):
                outcome.model_artifact = str(self.train_model(run_dir))
            with self._step("Evaluate model", outcome, lambda: outcome.gate):
                evaluation = read_evaluation_from_model_tarball(Path(outcome.model_artifact).read_bytes(),
                                                                outcome.model_artifact)
                decision = quality_gate(evaluation, self.settings.quality_threshold)
                outcome.auc = decision.validation_auc
                outcome.gate = decision.reason
                outcome.evaluation = str(run_dir / "model" / "evaluation.json")
                report = run_dir / "output" / "data" / "report.png"
                outcome.report = str(report) if report.exists() else ""
                entry = ModelEntry(
                    run_id=run_id, created=started.isoformat(), status=APPROVED if decision.passed else REJECTED,
                    validation_auc=decision.validation_auc, threshold=decision.threshold,
                    model_artifact=outcome.model_artifact, evaluation=outcome.evaluation, report=outcome.report,
                    reason=decision.reason,
                    metrics={k: v for k, v in evaluation.items() if isinstance(v, (int, float))},
                )
                if not decision.passed:
                    self.workspace.registry.add(entry)
                    raise PipelineFailed("ModelQualityBelowThreshold", decision.reason)
            with self._step("Register model", outcome, lambda: f"version {outcome.model_version}"):
                outcome.model_version = self.workspace.registry.add(entry).version
        except PipelineFailed as exc:
            outcome.status, outcome.error, outcome.cause = "FAILED", exc.error, exc.cause
            exc.outcome = outcome  # type: ignore[attr-defined]
            self._write_summary(run_dir, outcome)
            raise
        outcome.status = "SUCCEEDED"
        self._write_summary(run_dir, outcome)
        return outcome

    @staticmethod
    def _write_summary(run_dir: Path, outcome: RunOutcome) -> None:
        if run_dir.exists():
            (run_dir / "run.json").write_text(json.dumps(outcome.to_dict(), indent=2), encoding="utf-8")
