"""End to end: the whole local pipeline on the bundled Telco data, as `make demo` runs it, with the
figures the README shows."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from churn.config import PipelineSettings
from pipeline.runner import LocalPipeline, PipelineFailed, Workspace

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """`python -m pipeline run --local --json` in a fresh workspace, exactly as a user runs it."""
    workspace = tmp_path_factory.mktemp("workspace")
    completed = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--local", "--json", "--workspace", str(workspace)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    return workspace, summary, completed


def test_demo_trains_a_real_model(demo_run):
    _, summary, _ = demo_run
    assert summary["status"] == "SUCCEEDED"
    assert summary["records_ingested"] == 7043
    assert summary["training_rows"] == 7043  # the 11 blank TotalCharges rows are kept
    assert summary["auc"] >= 0.84  # published honest GBM results: 0.843-0.847
    assert int(summary["model_version"]) >= 1
    for key in ("status", "records_ingested", "training_rows", "auc", "model_artifact", "run_dir"):
        assert key in summary


def test_the_readme_shows_what_make_demo_gives(demo_run):
    """The README's demo figures (validation AUC, the highest-risk customer) are this run's."""
    _, summary, _ = demo_run
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    auc = re.search(r"validation ROC AUC\s+(0\.\d{4})", readme).group(1)
    rank1 = re.search(r"│\s+1 │ (\S+)\s+│\s+(0\.\d{4}) │", readme)
    assert f"{summary['auc']:.4f}" == auc
    top = summary["top_customers"][0]
    assert (top["record_id"], f"{top['churn_probability']:.4f}") == (rank1.group(1), rank1.group(2))


def test_artifacts_follow_the_sagemaker_layout(demo_run):
    _, summary, _ = demo_run
    artifact = Path(summary["model_artifact"])
    with tarfile.open(artifact) as archive:
        names = set(archive.getnames())
    assert {"model.json", "encoding.json", "evaluation.json"} <= names
    run_dir = Path(summary["run_dir"])
    evaluation = json.loads((run_dir / "model" / "evaluation.json").read_text())
    assert evaluation["validation_auc"] == pytest.approx(summary["auc"])
    assert (run_dir / "output" / "data" / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_set_is_athena_shaped_and_point_in_time(demo_run, spec):
    _, summary, _ = demo_run
    training_csv = Path(summary["run_dir"]) / "input" / "data" / "train" / "training-set.csv"
    text = training_csv.read_text()
    header = text.splitlines()[0]
    assert header == ",".join(f'"{c}"' for c in spec.training_columns)
    rows = list(csv.DictReader(text.splitlines()))
    ids = [r["customer_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 7043
    assert ids == sorted(ids)
    blanks = [r for r in rows if r["total_charges"] == ""]
    assert len(blanks) == 11 and all(r["tenure"] == "0" for r in blanks)
    assert {r["churn"] for r in rows} == {"0", "1"}


def test_second_run_reuses_the_feature_group_without_duplicates(demo_run, spec, data_path):
    workspace, first, _ = demo_run
    pipeline = LocalPipeline(spec=spec, settings=PipelineSettings(), workspace=Workspace(workspace))
    outcome = pipeline.run(data_path)
    assert outcome.feature_groups == first["feature_groups"]
    assert outcome.training_rows == 7043  # re-ingested records: one row each in the training set
    assert outcome.model_version == int(first["model_version"]) + 1


def test_quality_gate_failure_is_named_and_keeps_the_approved_model(demo_run, spec, data_path):
    workspace, first, _ = demo_run
    strict = PipelineSettings(quality_threshold=0.99)
    pipeline = LocalPipeline(spec=spec, settings=strict, workspace=Workspace(workspace))
    with pytest.raises(PipelineFailed) as info:
        pipeline.run(data_path)
    assert info.value.error == "ModelQualityBelowThreshold"
    assert "below the threshold 0.9900" in info.value.cause
    registry = Workspace(workspace).registry
    assert registry.entries()[-1].status == "Rejected"
    assert registry.latest_approved().run_id != info.value.outcome.run_id


def test_demo_output_is_readable(demo_run):
    _, _, completed = demo_run
    for step in ("Validate input", "Ingest features", "Wait for offline store", "Build training set",
                 "Train model", "Evaluate model", "Register model"):
        assert step in completed.stderr
    assert "validation ROC AUC" in completed.stderr
