"""End to end: batch scoring after a local run on the bundled data, and the consistency of the three
ways a customer gets a churn probability (batch scores, the online `predict`, the training-time model)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from churn.config import PipelineSettings
from churn.layout import SCORES_PREFIX
from pipeline.local_aws.batch_transform import serving_module
from pipeline.prediction import SERVING_MODULE
from pipeline.runner import TRAINING_DIR, LocalPipeline, Workspace
from tests.unit.cli_support import invoke

TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory, spec, data_path):
    """One full local run (about 20 s), shared by every test here."""
    workspace = tmp_path_factory.mktemp("workspace")
    outcome = LocalPipeline(spec=spec, settings=PipelineSettings(), workspace=Workspace(workspace)).run(data_path)
    assert outcome.status == "SUCCEEDED"
    return workspace, outcome


@pytest.fixture(scope="module")
def scores(scored_run) -> list[dict[str, str]]:
    _, outcome = scored_run
    with open(outcome.scores, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_scores_rank_every_customer_once_by_probability(scored_run, scores, spec):
    _, outcome = scored_run
    assert Path(outcome.scores) == Path(outcome.run_dir) / SCORES_PREFIX / "scores.csv"
    assert list(scores[0]) == [spec.record_identifier.name, "churn_probability", "rank", "model_version"]
    ids = [row["customer_id"] for row in scores]
    assert len(ids) == len(set(ids)) == outcome.customers_scored == 7043
    assert [int(row["rank"]) for row in scores] == list(range(1, 7044))
    probabilities = [float(row["churn_probability"]) for row in scores]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0.0 < p < 1.0 for p in probabilities)
    assert {row["model_version"] for row in scores} == {str(outcome.model_version)}
    assert [t["record_id"] for t in outcome.top_customers] == ids[:5]
    assert list(outcome.step_seconds)[-3:] == ["Build scoring set", "Score customers", "Rank scores"]


def test_scoring_set_is_the_training_set_without_the_label(scored_run, spec):
    _, outcome = scored_run
    run_dir = Path(outcome.run_dir)
    scoring = (run_dir / SCORES_PREFIX / "input" / "scoring-set.csv").read_text().splitlines()
    training = (run_dir / "input" / "data" / "train" / "training-set.csv").read_text().splitlines()
    assert scoring[0] == ",".join(f'"{c}"' for c in spec.scoring_columns)
    assert [line.split(",")[0] for line in scoring][1:] == [line.split(",")[0] for line in training][1:]
    output = (run_dir / SCORES_PREFIX / "transform" / "scoring-set.csv.out").read_text()
    assert output.startswith("customer_id,churn_probability\n") and output.count("customer_id") == 1


def test_scores_command_shows_the_same_top(scored_run):
    workspace, outcome = scored_run
    result = invoke("scores", "--local", "--workspace", workspace, "--top", "5", "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout.strip().splitlines()[-1])
    assert shown["run"] == outcome.run_id
    assert [c["record_id"] for c in shown["customers"]] == [t["record_id"] for t in outcome.top_customers]
    assert shown["model_version"] == str(outcome.model_version)


def test_batch_online_and_training_time_predictions_agree(scored_run, scores):
    """Same encoding, same model: the batch score (Batch Transform's path), the online prediction
    (GetRecord + the registry's latest approved model) and the training-time model on the
    training-set row agree to 1e-6 (the batch CSV keeps 6 decimals, so at most 5e-7 apart)."""
    workspace, outcome = scored_run
    run_dir = Path(outcome.run_dir)
    batch = {row["customer_id"]: float(row["churn_probability"]) for row in scores}

    serving = serving_module(TRAINING_DIR, SERVING_MODULE)
    model = serving.load_model(run_dir / "model")  # what the training job wrote, before packaging
    training_set = (run_dir / "input" / "data" / "train" / "training-set.csv").read_text(encoding="utf-8")
    frame = serving.read_request(training_set, model.encoding).set_index("customer_id", drop=False)
    blank_total = frame.index[frame["total_charges"].isna()][0]  # a missing value must stay missing
    chosen = [scores[0]["customer_id"], scores[3521]["customer_id"], scores[-1]["customer_id"], blank_total,
              "7590-VHVEG"]
    at_training = serving.predict_frame(model, frame.loc[chosen])

    for customer, trained in zip(chosen, at_training, strict=True):
        result = invoke("predict", "--local", "--workspace", workspace, "--id", customer, "--json")
        assert result.exit_code == 0, result.output
        online = json.loads(result.stdout.strip().splitlines()[-1])
        assert online["model_version"] == str(outcome.model_version)
        assert online["churn_probability"] == pytest.approx(float(trained), abs=1e-9), customer
        assert batch[customer] == pytest.approx(online["churn_probability"], abs=TOLERANCE), customer
        assert batch[customer] == pytest.approx(float(trained), abs=TOLERANCE), customer


def test_predict_explains_with_contributions_that_add_up(scored_run):
    import math

    workspace, _ = scored_run
    customer = "7590-VHVEG"
    result = invoke("predict", "--local", "--workspace", workspace, "--id", customer, "--features", "50", "--json")
    assert result.exit_code == 0, result.output
    online = json.loads(result.stdout.strip().splitlines()[-1])
    margin = online["base"] + sum(c["contribution"] for c in online["up"] + online["down"])
    assert 1 / (1 + math.exp(-margin)) == pytest.approx(online["churn_probability"], abs=1e-5)
    ups = [c["contribution"] for c in online["up"]]
    assert ups == sorted(ups, reverse=True) and all(c > 0 for c in ups)
    assert all(c["contribution"] < 0 for c in online["down"])
    assert "What moves this customer's churn risk" in result.stderr
    shown = invoke("predict", "--local", "--workspace", workspace, "--id", customer)
    assert "▲ up" in shown.stdout and "churn probability" in shown.stdout


def test_unknown_customer_is_one_line(scored_run):
    workspace, _ = scored_run
    result = invoke("predict", "--local", "--workspace", workspace, "--id", "0000-NOBODY")
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error: customer '0000-NOBODY' is not in the online store")
    assert len(lines) <= 2 and "Traceback" not in result.output


def test_scores_csv_parses_with_pandas_like_any_csv(scored_run):
    import pandas as pd

    _, outcome = scored_run
    frame = pd.read_csv(io.StringIO(Path(outcome.scores).read_text()))
    assert frame["rank"].is_monotonic_increasing and frame["churn_probability"].is_monotonic_decreasing
