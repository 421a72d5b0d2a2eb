"""The operator CLI's local commands (`run --local`, `runs --local`, `status --local`, `models`,
`spec infer`) on a small slice of the bundled data, in a temporary workspace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.cli_support import invoke, last_json

ROOT = Path(__file__).resolve().parents[2]
ROWS = 300
# Column names a user's own export might have: spaces, capitals, other words.
RENAMED = {"customerID": "Customer Ref", "tenure": "Tenure Months", "MonthlyCharges": "Monthly Charges",
           "TotalCharges": "Total Charges", "Churn": "Churned"}


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory) -> Path:
    lines = (ROOT / "data" / "churn.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    path = tmp_path_factory.mktemp("data") / "churn-small.csv"
    path.write_text("".join(lines[: ROWS + 1]), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("workspace")


@pytest.fixture(scope="module")
def first_run(small_csv, workspace) -> dict:
    """`run --local --json` as a user types it (a tiny CSV needs a lower quality bar)."""
    result = invoke("run", "--local", "--json", "--data", small_csv, "--workspace", workspace, "--threshold", "0.5")
    assert result.exit_code == 0, result.output
    return last_json(result)


def test_run_local_json_summary(first_run, workspace):
    assert first_run["status"] == "SUCCEEDED"
    assert first_run["records_ingested"] == ROWS
    assert first_run["training_rows"] == ROWS
    assert first_run["auc"] > 0.5
    assert Path(first_run["model_artifact"]).is_file()
    assert Path(first_run["run_dir"]).is_dir()
    assert Path(first_run["run_dir"]).parent == workspace / "runs"


def test_models_lists_the_run(first_run, workspace):
    result = invoke("models", "--workspace", workspace)
    assert result.exit_code == 0, result.output
    assert first_run["run_id"] in result.stdout and "Approved" in result.stdout


def test_runs_local_and_status_local(first_run, workspace):
    listed = invoke("runs", "--local", "--workspace", workspace)
    assert listed.exit_code == 0, listed.output
    line = next(line for line in listed.stdout.splitlines() if first_run["run_id"] in line)
    assert "SUCCEEDED" in line and f"{first_run['auc']:.4f}" in line

    shown = invoke("status", first_run["run_id"], "--local", "--workspace", workspace)
    assert shown.exit_code == 0, shown.output
    for step in ("Validate input", "Ingest features", "Train model", "Register model"):
        assert f"✓ {step}" in shown.stdout
    assert first_run["model_artifact"] in shown.stdout

    as_json = invoke("status", first_run["run_id"], "--local", "--workspace", workspace, "--json")
    assert last_json(as_json)["auc"] == pytest.approx(first_run["auc"])


def test_status_local_of_an_unknown_run(workspace):
    result = invoke("status", "local-nope", "--local", "--workspace", workspace)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no local run 'local-nope'")
    assert "runs --local" in result.stderr


def test_a_bad_csv_exits_2_naming_file_and_line_and_writes_nothing(small_csv, tmp_path):
    lines = small_csv.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[7] = lines[7].replace(",No,", ",Nope,", 1).replace(",0,", ",zero,", 1)
    bad = tmp_path / "bad.csv"
    bad.write_text("".join(lines), encoding="utf-8")
    workspace = tmp_path / "workspace"

    result = invoke("run", "--local", "--data", bad, "--workspace", workspace)
    assert result.exit_code == 2
    assert f"error: {bad}, line 8, column" in result.stderr
    assert not (workspace / "feature-store").exists() or not any(
        p.is_file() for p in (workspace / "feature-store").rglob("*"))
    assert not (workspace / "runs").exists()

    as_json = invoke("run", "--local", "--json", "--data", bad, "--workspace", workspace)
    assert as_json.exit_code == 2
    summary = last_json(as_json)
    assert summary["status"] == "FAILED" and summary["error"] == "InputValidationError"
    assert "line 8" in summary["cause"]


def test_runs_local_in_an_empty_workspace(tmp_path):
    result = invoke("runs", "--local", "--workspace", tmp_path)
    assert result.exit_code == 1
    assert "no local runs" in result.stderr and "run --local" in result.stderr


def test_spec_infer_then_train_on_other_column_names(small_csv, workspace, first_run, tmp_path):
    header, *rows = small_csv.read_text(encoding="utf-8").splitlines(keepends=True)
    renamed = tmp_path / "customers.csv"
    columns = [RENAMED.get(c, c) for c in header.strip().split(",")]
    renamed.write_text(",".join(columns) + "\n" + "".join(rows), encoding="utf-8")
    spec = tmp_path / "customers.spec.json"

    inferred = invoke("spec", "infer", renamed, "--id", "Customer Ref", "--label", "Churned", "--out", spec)
    assert inferred.exit_code == 0, inferred.output
    written = json.loads(spec.read_text())
    assert written["record_identifier"]["source"] == "Customer Ref"
    assert written["label"]["source"] == "Churned"
    assert f"run --local --data {renamed} --spec {spec}" in inferred.stdout

    args = ("run", "--local", "--data", renamed, "--spec", spec, "--workspace", workspace, "--threshold", "0.5",
            "--name", "renamed-columns")
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    summary = last_json(result)
    assert summary["status"] == "SUCCEEDED" and summary["training_rows"] == ROWS
    assert summary["run_id"] == "renamed-columns"
    again = invoke(*args)  # a run's name is never reused: its directory holds a registered model
    assert again.exit_code == 2 and "already exists" in again.stderr
    assert summary["feature_group"] != first_run["feature_group"]  # another schema, another group

    models = invoke("models", "--workspace", workspace)
    assert first_run["run_id"] in models.stdout and summary["run_id"] in models.stdout


def test_local_run_rejects_aws_only_options(small_csv, tmp_path):
    result = invoke("run", "--local", "--data-key", "raw/churn.csv", "--workspace", tmp_path)
    assert result.exit_code == 2
    assert "--data-key is only used on AWS" in result.stderr


def test_evaluate_cross_validates_with_the_same_script(small_csv, workspace):
    result = invoke("evaluate", "--folds", "3", "--json", "--data", small_csv, "--workspace", workspace)
    assert result.exit_code == 0, result.output
    cv = last_json(result)
    assert len(cv["aucs"]) == 3
    assert cv["auc_mean"] == pytest.approx(sum(cv["aucs"]) / 3)
    assert 0.5 < cv["auc_mean"] <= 1.0 and cv["auc_std"] >= 0
    assert "over 3 folds" in result.stderr
    # cross-validation registers nothing
    registry = json.loads((workspace / "registry.json").read_text()) if (workspace / "registry.json").exists() else {}
    assert not any(m["run_id"] == Path(cv["run_dir"]).name for m in registry.get("models", []))
