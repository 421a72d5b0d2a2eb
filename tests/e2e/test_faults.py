"""Faults, on the local pipeline (the same steps and code as the state machine; tests/infra/test_execution.py
runs the AWS counterparts): an ingest cut off half-way converges when re-run, records written twice
count once, a failed training leaves the approved model in place, and an offline-store file damaged during a
run fails the step that reads it."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from churn import steps
from churn.config import PipelineSettings
from churn.features import now_event_time, parse_event_time
from churn.sql import AS_OF, KNOWLEDGE_CUTOFF, NO_CUTOFF, RUN_STARTED, sql_timestamp, table_reference, training_set_sql
from pipeline import runner
from pipeline.local_aws.feature_store import LocalFeatureStore, client_error
from pipeline.local_aws.store_files import StoreDamagedError
from pipeline.local_ingest import ingest_file
from pipeline.runner import LocalPipeline, PipelineFailed, Workspace, create_feature_group
from tests.support.feature_store import offline_store

ROOT = Path(__file__).resolve().parents[2]
ROWS = 300
CALLS_BEFORE_THE_CUT = 4  # BatchWriteRecord calls of 25 records that go through
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


def cut_off_after(calls: int) -> type[LocalFeatureStore]:
    """A local feature store whose BatchWriteRecord fails once `calls` calls have gone through (the
    service becoming unreachable half-way through an ingest)."""
    lock = threading.Lock()
    made = [0]

    class CutOff(LocalFeatureStore):
        def batch_write_record(self, **kwargs):
            with lock:
                made[0] += 1
                call = made[0]
            if call > calls:
                raise client_error("ServiceUnavailable", "Service unavailable", "BatchWriteRecord", 503)
            return super().batch_write_record(**kwargs)

    return CutOff


def offline_customers(workspace: Workspace, pipeline: LocalPipeline) -> int:
    (group,) = pipeline.feature_groups.values()
    with LocalFeatureStore(workspace.feature_store) as store:
        con = offline_store(store, group, "db", "t")
        (count,) = con.execute('SELECT count(DISTINCT customer_id) FROM "db"."t"').fetchone()
        con.close()
    return count


def test_an_ingest_cut_off_half_way_converges_when_run_again(tmp_path, spec, small_csv, monkeypatch):
    workspace = Workspace(tmp_path / "workspace")
    pipeline = LocalPipeline(spec=spec, settings=SETTINGS, workspace=workspace)
    monkeypatch.setattr(runner, "LocalFeatureStore", cut_off_after(CALLS_BEFORE_THE_CUT))

    with pytest.raises(PipelineFailed) as cut:
        pipeline.run(small_csv)

    written = CALLS_BEFORE_THE_CUT * 25
    assert cut.value.error == "IngestError" and cut.value.step == "Ingest features"
    assert cut.value.cause.startswith(f"{ROWS - written} record(s) failed: line {written + 2} ")
    assert "ServiceUnavailable" in cut.value.cause
    monkeypatch.undo()
    assert offline_customers(workspace, pipeline) == written  # what was written stays written
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
    with the same event time again: the training set still sees each customer once."""
    group, name = spec.groups[0], "local-churn-twice"
    event_time = now_event_time()
    values = {AS_OF: event_time, RUN_STARTED: sql_timestamp(parse_event_time(event_time)), KNOWLEDGE_CUTOFF: NO_CUTOFF}
    with LocalFeatureStore(tmp_path / "feature-store") as store:
        create_feature_group(store, name, group)
        for _ in range(2):
            result = ingest_file(store, small_csv, group=group, feature_group_name=name, event_time=event_time,
                                 batch_size=SETTINGS.ingest_batch_size, processes=1)
            assert (result.ingested, result.failed_count) == (ROWS, 0)
        store.flush()
        con = offline_store(store, name, "db", "t")
        (written,) = con.execute('SELECT count(*) FROM "db"."t"').fetchone()
        query = training_set_sql(spec, {group.name: table_reference("db", "t")})
        ids = [row[0] for row in con.execute(query.text, [values[p] for p in query.parameters]).fetchall()]
        con.close()
    assert written == 2 * ROWS  # the offline store is append-only
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


def test_an_offline_store_file_damaged_during_training_fails_build_scoring_set(tmp_path, spec, small_csv, monkeypatch):
    """A data page of the offline store overwritten (its footer intact) after the training set was built."""
    workspace = Workspace(tmp_path / "workspace")
    pipeline = LocalPipeline(spec=spec, settings=SETTINGS, workspace=workspace)
    train = pipeline.train_model

    def train_then_damage(run_dir: Path) -> Path:
        (path,) = workspace.feature_store.rglob("*.parquet")
        offset = pq.ParquetFile(path).metadata.row_group(0).column(0).data_page_offset
        with open(path, "r+b") as file:
            file.seek(offset)
            file.write(b"\xff" * 16)
        return train(run_dir)

    monkeypatch.setattr(pipeline, "train_model", train_then_damage)
    with pytest.raises(StoreDamagedError, match=f"feature group '{pipeline.feature_groups[spec.groups[0].name]}'"):
        pipeline.run(small_csv)
    (recorded,) = workspace.runs.glob("*/run.json")
    outcome = json.loads(recorded.read_text())
    assert (outcome["error"], list(outcome["step_seconds"])[-1]) == ("StoreDamagedError", steps.BUILD_SCORING_SET)
