"""Faults, on the local pipeline (the same steps and code as the state machine; tests/infra/test_execution.py
runs the AWS counterparts): an ingest cut off half-way converges when re-run, records written twice
count once, and a failed training leaves the approved model in place."""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import pytest

from churn.config import PipelineSettings
from churn.features import now_event_time
from pipeline import local
from pipeline.local import LocalPipeline, PipelineFailed, Workspace
from pipeline.local_aws.feature_store import LocalFeatureStore, client_error

ROOT = Path(__file__).resolve().parents[2]
ROWS = 300
CUT_OFF_AFTER = 120
# A small file needs a lower bar than the full data's 0.80; small batches so the cut lands mid-file.
SETTINGS = PipelineSettings(quality_threshold=0.5, ingest_batch_size=50)


@pytest.fixture
def small_csv(tmp_path) -> Path:
    lines = (ROOT / "data" / "churn.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    path = tmp_path / "customers.csv"
    path.write_text("".join(lines[: ROWS + 1]), encoding="utf-8")
    return path


def customer_ids(path: Path, column: str) -> list[str]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [row[column] for row in csv.DictReader(handle)]


def cut_off_after(puts: int) -> type[LocalFeatureStore]:
    """A local feature store whose PutRecord fails once `puts` calls have succeeded (the service
    becoming unreachable half-way through an ingest)."""
    lock = threading.Lock()
    calls = [0]

    class CutOff(LocalFeatureStore):
        def put_record(self, **kwargs):
            with lock:
                calls[0] += 1
                call = calls[0]
            if call > puts:
                raise client_error("ServiceUnavailable", "Service unavailable", "PutRecord", 503)
            return super().put_record(**kwargs)

    return CutOff


def offline_customers(workspace: Workspace, pipeline: LocalPipeline) -> int:
    with LocalFeatureStore(workspace.feature_store) as store:
        con = store.connect_duckdb(pipeline.group, pipeline.database, pipeline.table_name)
        (count,) = con.execute(f"SELECT count(DISTINCT customer_id) FROM {pipeline.table}").fetchone()
        con.close()
    return count


def test_an_ingest_cut_off_half_way_converges_when_run_again(tmp_path, spec, small_csv, monkeypatch):
    workspace = Workspace(tmp_path / "workspace")
    pipeline = LocalPipeline(spec=spec, settings=SETTINGS, workspace=workspace)
    monkeypatch.setattr(local, "LocalFeatureStore", cut_off_after(CUT_OFF_AFTER))

    with pytest.raises(PipelineFailed) as cut:
        pipeline.run(small_csv)

    assert cut.value.error == "IngestError" and cut.value.step == "Ingest features"
    assert f"{ROWS - CUT_OFF_AFTER} records failed" in cut.value.cause and "ServiceUnavailable" in cut.value.cause
    monkeypatch.undo()
    assert offline_customers(workspace, pipeline) == CUT_OFF_AFTER  # what was written stays written
    assert workspace.registry.entries() == []

    outcome = pipeline.run(small_csv)

    assert outcome.status == "SUCCEEDED"
    assert outcome.records_ingested == outcome.training_rows == ROWS
    training_set = Path(outcome.run_dir) / "input" / "data" / "train" / "training-set.csv"
    ids = customer_ids(training_set, spec.record_identifier.name)
    assert len(ids) == len(set(ids)) == ROWS  # each customer exactly once
    assert set(ids) == set(customer_ids(small_csv, spec.record_identifier.source_column))
    assert [e.version for e in workspace.registry.entries()] == [1]


def test_records_written_twice_with_the_same_event_time_count_once(tmp_path, spec, small_csv):
    """A retried batch (Step Functions retries, or an EXPRESS child run twice) writes the same records
    with the same event time again: the count check and the training set still see each customer once."""
    workspace = Workspace(tmp_path / "workspace")
    pipeline = LocalPipeline(spec=spec, settings=SETTINGS, workspace=workspace)
    event_time = now_event_time()
    with LocalFeatureStore(workspace.feature_store) as store:
        assert pipeline.ingest_features(store, small_csv, event_time) == ROWS
        assert pipeline.ingest_features(store, small_csv, event_time) == ROWS
        assert pipeline.wait_for_offline_store(store, event_time, ROWS) == ROWS
        destination = tmp_path / "training-set.csv"
        assert pipeline.build_training_set(store, event_time, destination) == ROWS
    ids = customer_ids(destination, spec.record_identifier.name)
    assert len(ids) == len(set(ids)) == ROWS


def test_a_failed_training_keeps_the_approved_model(tmp_path, spec, small_csv):
    workspace = Workspace(tmp_path / "workspace")
    first = LocalPipeline(spec=spec, settings=SETTINGS, workspace=workspace).run(small_csv)
    approved = workspace.registry.latest_approved()
    assert approved is not None and approved.run_id == first.run_id
    entries = workspace.registry.entries()
    # A hyperparameter the training script rejects: the job fails after the training set is built.
    broken = PipelineSettings(
        quality_threshold=SETTINGS.quality_threshold,
        ingest_batch_size=SETTINGS.ingest_batch_size,
        hyperparameters={"validation_fraction": 0.95},
    )

    with pytest.raises(PipelineFailed) as failed:
        LocalPipeline(spec=spec, settings=broken, workspace=workspace).run(small_csv)

    assert failed.value.error == "TrainingFailed" and failed.value.step == "Train model"
    assert "validation_fraction" in failed.value.cause
    assert workspace.registry.entries() == entries  # nothing added, nothing changed
    assert workspace.registry.latest_approved() == approved
    assert Path(approved.model_artifact).is_file()
