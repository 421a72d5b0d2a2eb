"""The local mode: the state machine's steps, run on this machine with the same code.

Validate input -> Ingest features (the Lambda's batch code into the local feature store) ->
Wait for offline store (the same count SQL, on DuckDB) -> Build training set (the same
point-in-time SQL, on DuckDB) -> Train model (training/train_model.py under SageMaker's
environment contract) -> Evaluate model (the same quality gate) -> Register model (local registry)
-> Build scoring set (the same SQL without the label, as of now) -> Score customers (the training
script's serving functions, called as Batch Transform calls them) -> Rank scores (churn.scoring).
"""

from __future__ import annotations

import importlib
import io
import json
import os
import secrets
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from churn import naming
from churn.config import PipelineSettings, training_hyperparameters
from churn.csv_input import iter_raw_rows
from churn.features import now_event_time
from churn.ingest import ingest_batch
from churn.layout import TRAINING_ENTRY_POINT
from churn.model_quality import quality_gate, read_evaluation_from_model_tarball
from churn.schema import FeatureSpec
from churn.scoring import (
    SCORES_FILE,
    TOP_CUSTOMERS,
    TRANSFORM_MAX_PAYLOAD_MB,
    TRANSFORM_OUTPUT_SUFFIX,
    Score,
    ScoringError,
    rank_outputs,
    write_scores,
)
from churn.sql import offline_count_sql, table_reference, training_set_sql
from pipeline.fast_validate import validate_file_fast
from pipeline.ingest_workers import batches, ingest_in_processes
from pipeline.local_aws.batch_transform import PayloadTooLarge, assemble_lines, mini_batches
from pipeline.local_aws.feature_store import LocalFeatureStore, StoreLayoutError
from pipeline.local_aws.registry import APPROVED, REJECTED, LocalModelRegistry, ModelEntry
from pipeline.local_aws.training_job import pack_model, run_training

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRAINING_DIR = PROJECT_ROOT / "training"
TRAINING_PROGRAM = Path(TRAINING_ENTRY_POINT).stem
DEFAULT_DATA = PROJECT_ROOT / "data" / "churn.csv"
DEFAULT_SPEC = PROJECT_ROOT / "data" / "churn.spec.json"
DEFAULT_WORKSPACE = PROJECT_ROOT / ".local"
LOCAL_STACK_NAME = "local"

# Files at least this big are ingested by worker processes (~36k Telco rows). Below it, starting a
# spawned process and importing its modules (~0.5 s) costs more than a second core saves. Measured
# (ingest_features alone, threads vs processes, two runs each, 27 Nov): 20k rows / 2.8 MB 1.9 vs
# 2.3-2.6 s, 30k / 4.1 MB 2.1-2.2 vs 2.4-2.8 s, 40k / 5.5 MB 3.0-3.2 vs 2.7-2.9 s, 55k / 7.6 MB
# 3.9-4.2 vs 2.9-3.1 s.
PARALLEL_INGEST_MIN_BYTES = 5 * 2**20

STEPS = (
    "Validate input",
    "Ingest features",
    "Wait for offline store",
    "Build training set",
    "Train model",
    "Evaluate model",
    "Register model",
    "Build scoring set",
    "Score customers",
    "Rank scores",
)
# A run's scoring files, laid out as on S3 under scores/<execution>/.
SCORES_DIR = "scores"
SCORING_INPUT_FILE = "scoring-set.csv"
SCORING_CONTENT_TYPE = "text/csv"


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

    def __post_init__(self) -> None:
        # Absolute: the training script runs with training/ as its working directory.
        self.root = Path(self.root).resolve()

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
    scores: str = ""
    customers_scored: int = 0
    top_customers: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    cause: str = ""
    step_seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def create_feature_group(store: LocalFeatureStore, name: str, spec: FeatureSpec) -> None:
    """The spec's feature group with an online and an offline store, unless it exists (its name
    carries the spec's fingerprint, so an existing group has these very definitions)."""
    try:
        store.create_feature_group(
            FeatureGroupName=name, **spec.feature_group_definition(),
            OnlineStoreConfig={"EnableOnlineStore": True},
            OfflineStoreConfig={"S3StorageConfig": {"S3Uri": store.offline_prefix.as_uri()}},
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceInUse":
            raise


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

    def open_feature_store(self) -> LocalFeatureStore:
        """The workspace's feature store; one in an older layout fails the run with what to do."""
        try:
            return LocalFeatureStore(self.workspace.feature_store)
        except StoreLayoutError as exc:
            raise PipelineFailed("FeatureStoreLayoutError", str(exc)) from None

    # -- steps ---------------------------------------------------------------------------
    def validate_input(self, data: Path) -> int:
        """A vectorised pre-check; whatever it cannot vouch for gets validate_file's own answer."""
        return validate_file_fast(str(data), self.spec).rows

    def ingest_features(self, store: LocalFeatureStore, data: Path, event_time: str) -> int:
        """Stream the file in the state machine's batch size; batches run concurrently.

        Large files go to worker processes (`pipeline.ingest_workers`: one store per process, like
        one Lambda container per batch on AWS): conversion and validation hold the GIL, so threads
        would use one core. Small files stay on threads, which start instantly.
        """
        create_feature_group(store, self.group, self.spec)
        size = self.settings.ingest_batch_size
        concurrency = max(1, min(self.settings.ingest_max_concurrency, os.cpu_count() or 1))
        ingested = 0
        failed: list[dict[str, str]] = []
        failed_count = 0

        if concurrency > 1 and data.stat().st_size >= PARALLEL_INGEST_MIN_BYTES:
            with open(data, "rb") as stream:
                totals = ingest_in_processes(
                    stream, source=str(data), batch_size=size, store_root=store.root,
                    store_args={"account": store.account, "region": store.region, "flush_rows": store.flush_rows},
                    group=self.group, spec_json=self.spec.to_json(), event_time=event_time, processes=concurrency,
                )
            ingested, failed, failed_count = totals.ingested, totals.failed, totals.failed_count
        else:
            def run(batch: list[dict[str, str]]):
                return ingest_batch(
                    batch, spec=self.spec, feature_group_name=self.group, event_time=event_time,
                    client=store, max_workers=1,
                )

            with open(data, "rb") as stream, ThreadPoolExecutor(max_workers=concurrency) as pool:
                pending: set[Future] = set()
                for batch in batches(iter_raw_rows(stream, str(data), self.spec), size):
                    pending.add(pool.submit(run, batch))
                    if len(pending) >= 2 * concurrency:  # bounded: the file is streamed, not loaded
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for fut in done:
                            ingested += fut.result().ingested
                            failed += fut.result().failed
                for fut in pending:
                    ingested += fut.result().ingested
                    failed += fut.result().failed
            failed_count = len(failed)
        store.flush()
        if failed_count:
            shown = ", ".join(f"{f['record_id']} ({f['error']})" for f in failed[:5])
            raise PipelineFailed("IngestError", f"{failed_count} records failed: {shown}")
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
        rows = self._query_to_csv(store, training_set_sql(self.spec, self.table), as_of, destination)
        if rows == 0:
            raise PipelineFailed("EmptyTrainingSet", f"the training-set query returned no rows as of {as_of}")
        return rows

    def build_scoring_set(self, store: LocalFeatureStore, as_of: str, destination: Path) -> int:
        """The latest features of every customer as of `as_of`: the training-set SQL without the label."""
        sql = training_set_sql(self.spec, self.table, include_label=False)
        rows = self._query_to_csv(store, sql, as_of, destination)
        if rows == 0:
            raise PipelineFailed("EmptyScoringSet", f"the scoring-set query returned no rows as of {as_of}")
        return rows

    def _query_to_csv(self, store: LocalFeatureStore, sql: str, as_of: str, destination: Path) -> int:
        destination.parent.mkdir(parents=True, exist_ok=True)
        con = store.connect_duckdb(self.group, self.database, self.table_name)
        target = str(destination).replace("'", "''")
        (rows,) = con.execute(f"COPY ({sql}) TO '{target}' (HEADER, FORCE_QUOTE *)", [as_of]).fetchone()
        return rows

    def score_customers(self, model_artifact: Path, scoring_input: Path, transform_dir: Path,
                        max_payload_mb: int = TRANSFORM_MAX_PAYLOAD_MB) -> Path:
        """What the "Score customers" Batch Transform does (SplitType Line, MultiRecord, AssembleWith
        Line): the model artifact unpacked as the model directory; the scoring set cut into requests of
        whole lines of at most `max_payload_mb` MiB (the header only in the first), each sent as
        text/csv through the training script's input_fn/predict_fn/output_fn; the responses joined
        line-wise into `<input name>.out`, which appears only once every request has succeeded."""
        serving = load_training_module()
        transform_dir.mkdir(parents=True, exist_ok=True)
        output = transform_dir / f"{scoring_input.name}{TRANSFORM_OUTPUT_SUFFIX}"
        partial = transform_dir / f".{output.name}.{secrets.token_hex(4)}.tmp"
        where = str(scoring_input)
        try:
            with extracted_model(model_artifact) as model_dir, open(scoring_input, "rb") as stream:
                model = serving.model_fn(str(model_dir))

                def responses() -> Iterator[bytes]:
                    nonlocal where
                    first_line = 1
                    for number, request in enumerate(mini_batches(stream, max_payload_mb * 2**20, where), 1):
                        lines = request.count(b"\n") + (not request.endswith(b"\n"))
                        where = f"{scoring_input}, request {number} (lines {first_line}-{first_line + lines - 1})"
                        data = serving.input_fn(request.decode("utf-8"), SCORING_CONTENT_TYPE)  # a str, as the
                        # container hands it; output_fn answers (body, content type)
                        body, _ = serving.output_fn(serving.predict_fn(data, model), SCORING_CONTENT_TYPE)
                        yield body.encode("utf-8")
                        first_line += lines

                with open(partial, "wb") as sink:
                    sink.writelines(assemble_lines(responses()))
            os.replace(partial, output)
        except PayloadTooLarge as exc:
            raise PipelineFailed("ScoringFailed", str(exc)) from None
        except (ValueError, OSError, tarfile.TarError) as exc:
            raise PipelineFailed("ScoringFailed", f"{where}: {' '.join(str(exc).split())}") from None
        finally:
            partial.unlink(missing_ok=True)
        return output

    def rank_scores(self, transform_dir: Path, destination: Path, model_version: str) -> list[Score]:
        """What the Rank scores Lambda does with the transform output: rank, write scores.csv."""
        id_column = self.spec.record_identifier.name
        outputs = sorted(transform_dir.glob(f"*{TRANSFORM_OUTPUT_SUFFIX}"))
        try:
            if not outputs:
                raise ScoringError(f"no transform output (*{TRANSFORM_OUTPUT_SUFFIX}) in {transform_dir}")

            def opened() -> Iterator[tuple[Iterable[str], str]]:
                for path in outputs:
                    with open(path, encoding="utf-8", newline="") as lines:
                        yield lines, str(path)

            scores = rank_outputs(opened(), id_column)
        except ScoringError as exc:
            raise PipelineFailed("ScoringError", str(exc)) from None
        with open(destination, "w", encoding="utf-8", newline="") as stream:
            write_scores(scores, stream, id_column, model_version)
        return scores

    def train_model(self, run_dir: Path, extra_hyperparameters: dict[str, Any] | None = None) -> Path:
        """Run the training script as the SageMaker container would, then pack model.tar.gz."""
        hyperparameters = {**training_hyperparameters(self.settings, self.spec), **(extra_hyperparameters or {})}
        # Score customers imports the training script here (xgboost, scikit-learn, SciPy: ~2 s); do
        # it while the training process runs, which boosts on one CPU below 100k fit rows.
        preload = threading.Thread(target=_preload_training_module, name="preload-train_model", daemon=True)
        preload.start()
        run = run_training(TRAINING_DIR, TRAINING_ENTRY_POINT, run_dir, hyperparameters)
        preload.join()
        if not run.succeeded:
            raise PipelineFailed("TrainingFailed", f"{run.script_failure()} (log: {run.log})")
        return pack_model(run_dir, run_dir / "model.tar.gz")

    def cross_validate(self, data: Path, folds: int) -> dict[str, Any]:
        """Stratified K-fold ROC AUC of the same script and settings on the same training set.

        Runs the pipeline's steps up to the training set, then the training script with
        `--cv_folds K`; nothing is registered. Returns the script's cv.json.
        """
        started = datetime.now(UTC)
        run_dir = self.workspace.runs / f"cv-{started:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"
        outcome = RunOutcome(status="RUNNING", run_id=run_dir.name, run_dir=str(run_dir))
        self._prepare_training_set(data, run_dir, outcome, now_event_time())
        with self._step(f"Cross-validate ({folds} folds)", outcome):
            self.train_model(run_dir, {"cv_folds": folds})
        result = json.loads((run_dir / "output" / "data" / "cv.json").read_text(encoding="utf-8"))
        result["run_dir"] = str(run_dir)
        return result

    def _prepare_training_set(self, data: Path, run_dir: Path, outcome: RunOutcome, event_time: str) -> None:
        """Validate input → Ingest features → Wait for offline store → Build training set."""
        with self._step("Validate input", outcome, lambda: f"{expected} rows"):
            expected = self.validate_input(data)
        run_dir.mkdir(parents=True, exist_ok=True)  # only once the input is known to be good
        with self.open_feature_store() as store:
            with self._step("Ingest features", outcome, lambda: f"{outcome.records_ingested} records"):
                outcome.records_ingested = self.ingest_features(store, data, event_time)
            with self._step("Wait for offline store", outcome, lambda: f"{expected} records visible"):
                self.wait_for_offline_store(store, event_time, expected)
            training_csv = run_dir / "input" / "data" / "train" / "training-set.csv"
            with self._step("Build training set", outcome, lambda: f"{outcome.training_rows} rows"):
                outcome.training_rows = self.build_training_set(store, event_time, training_csv)

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
            self._prepare_training_set(data, run_dir, outcome, event_time)
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
            self._score(run_dir, outcome)
        except PipelineFailed as exc:
            outcome.status, outcome.error, outcome.cause = "FAILED", exc.error, exc.cause
            exc.outcome = outcome  # type: ignore[attr-defined]
            self._write_summary(run_dir, outcome)
            raise
        outcome.status = "SUCCEEDED"
        self._write_summary(run_dir, outcome)
        return outcome

    def _score(self, run_dir: Path, outcome: RunOutcome) -> None:
        """Build scoring set -> Score customers -> Rank scores, into <run>/scores/ (S3's scores/<execution>/)."""
        scores_dir = run_dir / SCORES_DIR
        scoring_input = scores_dir / "input" / SCORING_INPUT_FILE
        as_of = now_event_time()
        with self.open_feature_store() as store:
            with self._step("Build scoring set", outcome, lambda: f"{customers} customers as of {as_of}"):
                customers = self.build_scoring_set(store, as_of, scoring_input)
        with self._step("Score customers", outcome, lambda: str(transform_output)):
            transform_output = self.score_customers(Path(outcome.model_artifact), scoring_input,
                                                    scores_dir / "transform")

        def ranked() -> str:
            first = outcome.top_customers[0]
            return (f"{outcome.customers_scored} customers; highest risk {first['record_id']} "
                    f"({first['churn_probability']:.3f})")

        with self._step("Rank scores", outcome, ranked):
            destination = scores_dir / SCORES_FILE
            scores = self.rank_scores(scores_dir / "transform", destination, str(outcome.model_version))
            outcome.scores = str(destination)
            outcome.customers_scored = len(scores)
            outcome.top_customers = [score.to_dict() for score in scores[:TOP_CUSTOMERS]]

    @staticmethod
    def _write_summary(run_dir: Path, outcome: RunOutcome) -> None:
        if run_dir.exists():
            (run_dir / "run.json").write_text(json.dumps(outcome.to_dict(), indent=2), encoding="utf-8")


# -- the training script as a module (scoring and one-customer predictions) -----------------------
def _preload_training_module() -> None:
    try:
        load_training_module()
    except Exception:  # noqa: BLE001, S110 - score_customers loads it again and reports the error
        pass


def load_training_module(name: str = TRAINING_PROGRAM) -> Any:
    """A module of training/ imported as the SageMaker container imports it: the code directory on
    sys.path (the folder is not a package and must not import the project). By default the entry
    point, whose model_fn/input_fn/predict_fn/output_fn come from its `serving` module."""
    folder = str(TRAINING_DIR.resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(name)


@contextmanager
def extracted_model(artifact: Path | bytes) -> Iterator[Path]:
    """A model.tar.gz (path or bytes) unpacked into a temporary directory, as SageMaker unpacks it
    into /opt/ml/model before calling model_fn."""
    with tempfile.TemporaryDirectory(prefix="churn-model-") as folder:
        source = tarfile.open(fileobj=io.BytesIO(artifact), mode="r:gz") if isinstance(artifact, bytes) \
            else tarfile.open(artifact, mode="r:gz")
        with source as archive:
            archive.extractall(folder, filter="data")
        yield Path(folder)


@dataclass(frozen=True)
class FeatureContribution:
    feature: str
    value: Any
    contribution: float  # log-odds; positive pushes the churn probability up


@dataclass
class Prediction:
    """One customer scored now: the probability and the features that moved it most each way."""

    record_id: str
    churn_probability: float
    base: float  # the model's log-odds before any feature (XGBoost's bias term)
    up: list[FeatureContribution]
    down: list[FeatureContribution]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def record_values(record: list[dict[str, str]]) -> dict[str, str]:
    """GetRecord's `Record` ([{FeatureName, ValueAsString}]) as a dict; absent features are missing."""
    return {item["FeatureName"]: item["ValueAsString"] for item in record}


def predict_record(model_dir: Path, record_id: str, values: dict[str, Any], top: int = 5) -> Prediction:
    """Score one online-store record with the model in `model_dir`, with per-feature contributions
    (XGBoost `pred_contribs`, in log-odds): the same encoding and model as the batch scores."""
    import pandas as pd

    serving = load_training_module("serving")
    model = serving.load_model(model_dir)
    frame = pd.DataFrame([{name: values.get(name) for name in model.feature_names}], dtype=object)
    probability = float(serving.predict_frame(model, frame)[0])
    explained = serving.contributions(model, frame)
    row = explained.features.iloc[0]
    ranked = sorted(((name, float(row[name])) for name in model.feature_names), key=lambda item: item[1])
    up = [FeatureContribution(n, values.get(n), c) for n, c in reversed(ranked) if c > 0][:top]
    down = [FeatureContribution(n, values.get(n), c) for n, c in ranked if c < 0][:top]
    return Prediction(record_id=record_id, churn_probability=probability, base=float(explained.bias.iloc[0]),
                      up=up, down=down)
