"""training/train_model.py under the SageMaker script-mode contract: training outputs, metric lines,
encoding round trip, serving functions, report, CV and bad input."""

from __future__ import annotations

import inspect
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from training_helpers import METRIC_RE, run_training, to_csv_text, training_set_rows

pytestmark = pytest.mark.slow

# The same kind of expression as the SageMaker metric definitions.
METRICS = {
    name: re.compile(rf"^{re.escape(name)}:{METRIC_RE}$", re.MULTILINE)
    for name in ("validation-auc", "validation-aucpr", "validation-logloss", "validation-accuracy",
                 "validation-precision", "validation-recall", "validation-f1", "train-auc", "best-iteration")
}

HYPERPARAMETERS = {"max_depth": 3, "eta": 0.05, "num_round": 1000, "early_stopping_rounds": 50,
                   "min_child_weight": 5, "subsample": 0.8, "colsample_bytree": 0.8, "reg_lambda": 1.0,
                   "validation_fraction": 0.2, "seed": 42, "id_column": "customer_id", "label_column": "churn"}


def _args(hps: dict) -> list[str]:
    return [token for name, value in hps.items() for token in (f"--{name}", str(value))]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, telco_training_csv):
    """One real training run shared by the module: SM_HPS and `--name value` args as the toolkit passes
    them, plus an argument the script does not know, plus 3-fold CV."""
    root = tmp_path_factory.mktemp("opt_ml")
    run = run_training(root, {"1f0c9a5e-query.csv": telco_training_csv},
                       args=[*_args(HYPERPARAMETERS), "--cv_folds", "3", "--some_future_option", "x"],
                       hps={**HYPERPARAMETERS, "cv_folds": 3, "some_future_option": "x"})
    assert run.completed.returncode == 0, run.stdout + run.stderr
    return run


@pytest.fixture(scope="module")
def evaluation(trained):
    return json.loads((trained.model_dir / "evaluation.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def model(trained, train_model):
    return train_model.model_fn(str(trained.model_dir))


@pytest.fixture(scope="module")
def scoring_frame(train_model):
    columns, rows = training_set_rows(limit=300)
    return train_model.read_csv_text(io.StringIO(to_csv_text(columns, rows)))


# -- training outputs -------------------------------------------------------------------------------

def test_writes_model_and_output_files(trained):
    for name in ("model.json", "encoding.json", "evaluation.json"):
        assert (trained.model_dir / name).stat().st_size > 0, name
    for name in ("evaluation.json", "report.png", "cv.json"):
        assert (trained.output_data_dir / name).stat().st_size > 0, name
    assert not trained.failure_file.exists()
    saved = (trained.model_dir / "evaluation.json").read_bytes()
    assert saved == (trained.output_data_dir / "evaluation.json").read_bytes()
    assert "ignoring unknown" in trained.stderr and "some_future_option" in trained.stderr


def test_evaluation_has_honest_metrics(evaluation):
    for key in ("validation_auc", "pr_auc", "log_loss", "accuracy", "precision", "recall", "f1", "train_auc",
                "best_iteration", "confusion_matrix", "feature_importance", "row_counts", "hyperparameters",
                "xgboost_version", "validation", "threshold"):
        assert key in evaluation, key
    assert evaluation["validation_auc"] > 0.8
    assert evaluation["train_auc"] >= evaluation["validation_auc"] - 0.05
    rows = evaluation["row_counts"]
    assert rows["total"]["rows"] == 7043
    assert rows["train"]["rows"] + rows["early_stopping"]["rows"] + rows["validation"]["rows"] == 7043
    assert rows["validation"]["rows"] == pytest.approx(0.2 * 7043, abs=2)
    assert rows["early_stopping"]["rows"] > 0
    for part in ("train", "early_stopping", "validation"):  # stratified: ~26.5 % churners in every part
        assert rows[part]["positives"] / rows[part]["rows"] == pytest.approx(1869 / 7043, abs=0.01)
    matrix = evaluation["confusion_matrix"]
    assert matrix["tn"] + matrix["fp"] + matrix["fn"] + matrix["tp"] == rows["validation"]["rows"]
    assert matrix["tp"] + matrix["fn"] == rows["validation"]["positives"]
    gain = evaluation["feature_importance"]["gain"]
    assert set(gain) >= {"contract", "tenure", "monthly_charges"} and "customer_id" not in gain and "churn" not in gain
    assert evaluation["hyperparameters"]["max_depth"] == 3 and evaluation["hyperparameters"]["eta"] == 0.05
    assert evaluation["xgboost_version"].startswith("3.")
    assert 0 <= evaluation["best_iteration"] < 1000


def test_metric_lines_match_metric_definitions(trained, evaluation):
    assert "\t" not in trained.stdout
    values = {}
    for name, pattern in METRICS.items():
        found = pattern.findall(trained.stdout)
        assert len(found) == 1, f"{name}: {found}"
        values[name] = float(found[0])
    assert values["validation-auc"] == pytest.approx(evaluation["validation_auc"], abs=1e-5)
    assert values["train-auc"] == pytest.approx(evaluation["train_auc"], abs=1e-5)
    assert values["validation-logloss"] == pytest.approx(evaluation["log_loss"], abs=1e-5)


def test_cv_mode_writes_cv_json_and_lines(trained, evaluation):
    cv = json.loads((trained.output_data_dir / "cv.json").read_text(encoding="utf-8"))
    assert cv["folds"] == 3 and len(cv["aucs"]) == 3
    assert cv["auc_mean"] == pytest.approx(np.mean(cv["aucs"]))
    assert cv["auc_std"] == pytest.approx(np.std(cv["aucs"], ddof=1))
    assert cv["auc_mean"] > 0.8
    mean = re.search(rf"^cv-auc-mean:{METRIC_RE}$", trained.stdout, re.MULTILINE)
    std = re.search(rf"^cv-auc-std:{METRIC_RE}$", trained.stdout, re.MULTILINE)
    assert mean and float(mean.group(1)) == pytest.approx(cv["auc_mean"], abs=1e-5)
    assert std and float(std.group(1)) == pytest.approx(cv["auc_std"], abs=1e-5)
    assert evaluation["cv_auc_mean"] == pytest.approx(cv["auc_mean"])


def test_cross_validate_importable(train_model, telco_training_csv):
    columns, rows = training_set_rows(limit=800)
    frame = train_model.read_csv_text(io.StringIO(to_csv_text(columns, rows)))
    result = train_model.cross_validate(frame, {"num_round": 200, "early_stopping_rounds": 20}, 3)
    assert len(result["aucs"]) == 3 and 0.7 < result["auc_mean"] <= 1
    assert [r["fold"] for r in result["fold_results"]] == [1, 2, 3]


def test_report_png_is_a_real_figure(trained):
    path = trained.output_data_dir / "report.png"
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 30_000
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.image as mpimg

    image = mpimg.imread(path)
    assert image.shape[0] >= 600 and image.shape[1] >= 800
    assert float(np.std(image[..., :3])) > 0.05  # not a blank canvas


# -- encoding --------------------------------------------------------------------------------------

def test_encoding_json_describes_features(trained):
    encoding = json.loads((trained.model_dir / "encoding.json").read_text(encoding="utf-8"))
    kinds = {f["name"]: f["kind"] for f in encoding["features"]}
    assert encoding["feature_names"] == [f["name"] for f in encoding["features"]]
    assert "customer_id" not in kinds and "churn" not in kinds
    assert kinds["contract"] == "categorical" and kinds["tenure"] == "numeric"
    assert kinds["total_charges"] == "numeric" and kinds["senior_citizen"] == "numeric"
    contract = next(f for f in encoding["features"] if f["name"] == "contract")
    assert contract["categories"] == ["Month-to-month", "One year", "Two year"]


def test_encoding_round_trip_with_unseen_category_and_shuffled_columns(train_model, model, scoring_frame):
    expected = train_model.predict_frame(model, scoring_frame)
    assert expected.shape == (len(scoring_frame),) and np.all((expected > 0) & (expected < 1))

    shuffled = scoring_frame.sample(frac=1.0, axis=1, random_state=7).copy()
    shuffled["extra_column"] = "ignored"
    shuffled.loc[shuffled.index[:5], "payment_method"] = "Crypto wallet"  # never seen in training
    shuffled.loc[shuffled.index[5:10], "total_charges"] = None
    again = train_model.predict_frame(model, shuffled)
    assert np.allclose(again[10:], expected[10:], atol=1e-7)
    assert np.all(np.isfinite(again)) and np.all((again > 0) & (again < 1))

    encoded = train_model.apply_encoding(shuffled, model.encoding)
    assert list(encoded.columns) == model.encoding["feature_names"]
    assert encoded["payment_method"].iloc[:5].isna().all()  # unknown -> missing
    assert list(encoded["payment_method"].cat.categories) == next(
        f["categories"] for f in model.encoding["features"] if f["name"] == "payment_method")
    # unknown is scored exactly as missing
    as_missing = shuffled.copy()
    as_missing.loc[as_missing.index[:5], "payment_method"] = None
    assert np.allclose(train_model.predict_frame(model, as_missing)[:5], again[:5])


def test_encoding_accepts_typed_frames(train_model, model, scoring_frame):
    typed = scoring_frame.copy()
    for name in ("tenure", "senior_citizen", "monthly_charges", "total_charges"):
        typed[name] = pd.to_numeric(typed[name])
    assert np.allclose(train_model.predict_frame(model, typed), train_model.predict_frame(model, scoring_frame))


def test_missing_feature_column_is_an_error(train_model, model, scoring_frame):
    with pytest.raises(ValueError, match="contract"):
        train_model.predict_frame(model, scoring_frame.drop(columns=["contract"]))


def test_contributions_add_up_to_the_margin(train_model, model, scoring_frame):
    one = scoring_frame.iloc[[3]]
    result = train_model.contributions(model, one)
    assert list(result.features.columns) == model.encoding["feature_names"]
    margin = result.features.sum(axis=1) + result.bias
    probability = train_model.predict_frame(model, one)
    assert float(1 / (1 + np.exp(-margin.iloc[0]))) == pytest.approx(float(probability[0]), abs=1e-5)


# -- serving ---------------------------------------------------------------------------------------

def test_serving_function_signatures(train_model):
    # the inference toolkit calls handlers by parameter count
    for name, count in (("model_fn", 1), ("input_fn", 2), ("predict_fn", 2), ("output_fn", 2)):
        assert len(inspect.signature(getattr(train_model, name)).parameters) == count, name


def _serve(train_model, model, body, content_type="text/csv", accept="text/csv"):
    data = train_model.input_fn(body, content_type)
    prediction = train_model.predict_fn(data, model)
    return train_model.output_fn(prediction, accept)


def test_serving_csv_with_header_and_trailing_newline(train_model, model, scoring_frame):
    columns, rows = training_set_rows(limit=25)
    body = to_csv_text(columns, rows)  # includes the label column and a trailing newline
    out = _serve(train_model, model, body.encode("utf-8"))
    lines = out.strip("\n").split("\n")
    assert lines[0] == "customer_id,churn_probability"
    assert len(lines) == 26
    ids = [line.split(",")[0] for line in lines[1:]]
    assert ids == [row[0] for row in rows]
    served = np.array([float(line.split(",")[1]) for line in lines[1:]])
    assert np.allclose(served, train_model.predict_frame(model, scoring_frame.iloc[:25]), atol=1e-6)

    # str body, CRLF line ends, no label column, columns in another order
    frame = pd.DataFrame(rows, columns=columns).drop(columns=["churn"])
    frame = frame[list(reversed(frame.columns))]
    text = frame.to_csv(index=False, lineterminator="\r\n")
    out2 = _serve(train_model, model, text)
    assert out2.split("\n")[1].split(",")[0] == rows[0][0]
    assert np.allclose([float(x.split(",")[1]) for x in out2.strip().split("\n")[1:]], served, atol=1e-6)


def test_serving_headerless_csv_and_json(train_model, model):
    columns, rows = training_set_rows(limit=4)
    headerless = to_csv_text(columns, rows).split("\n", 1)[1]  # Batch Transform SplitType=Line
    with_header = _serve(train_model, model, to_csv_text(columns, rows))
    assert _serve(train_model, model, headerless) == with_header

    out = json.loads(_serve(train_model, model, to_csv_text(columns, rows), accept="application/json"))
    assert [p["customer_id"] for p in out["predictions"]] == [r[0] for r in rows]
    assert all(0 < p["churn_probability"] < 1 for p in out["predictions"])

    records = [dict(zip(columns, row, strict=True)) for row in rows]
    out_json = json.loads(_serve(train_model, model, json.dumps(records), content_type="application/json",
                                 accept="application/json"))
    assert out_json == out


def test_serving_rejects_unknown_content_type(train_model, model):
    with pytest.raises(ValueError, match="content type"):
        train_model.input_fn(b"\x00", "application/x-parquet")


# -- hyperparameters -------------------------------------------------------------------------------

def test_hyperparameters_from_sm_hps_and_args(train_model):
    params = train_model.parse_hyperparameters(
        ["--max_depth", "4", "--eta", "0.1", "--num_round", "300.0", "--unknown", "1"],
        {"SM_HPS": json.dumps({"max_depth": 2, "seed": 7, "sagemaker_program": "train_model.py"})})
    assert params["max_depth"] == 4 and params["eta"] == 0.1 and params["num_round"] == 300 and params["seed"] == 7
    with pytest.raises(train_model.InputError, match="max_depth"):
        train_model.parse_hyperparameters(["--max_depth", "deep"], {})
    with pytest.raises(train_model.InputError, match="validation_fraction"):
        train_model.parse_hyperparameters(["--validation_fraction", "1.5"], {})
    with pytest.raises(train_model.InputError, match="--eta"):
        train_model.parse_hyperparameters(["--eta"], {})
    # no prefix matching: an unknown option is not taken for a known one
    assert train_model.parse_hyperparameters(["--max_d", "9"], {})["max_depth"] == 3


# -- bad input -------------------------------------------------------------------------------------

def _small_frame(rows: int = 200) -> pd.DataFrame:
    columns, data = training_set_rows(limit=rows)
    return pd.DataFrame(data, columns=columns)


def _csv(frame: pd.DataFrame) -> str:
    return to_csv_text(list(frame.columns), frame.astype(object).where(frame.notna(), None).values.tolist())


@pytest.mark.parametrize(("case", "expected"), [
    ("missing_label", r"label column 'churn' is missing"),
    ("labels_not_binary", r"label 'churn' must be 0 or 1"),
    ("one_class", r"one class only"),
    ("too_few_rows", r"only 10 row\(s\)"),
    ("no_csv", r"no \*\.csv file"),
])
def test_bad_input_fails_with_a_clear_message(tmp_path, case, expected):
    frame = _small_frame()
    if case == "missing_label":
        files = {"data.csv": _csv(frame.drop(columns=["churn"]))}
    elif case == "labels_not_binary":
        frame["churn"] = np.where(frame["churn"] == "1", "Yes", "No")
        files = {"data.csv": _csv(frame)}
    elif case == "one_class":
        frame["churn"] = "0"
        files = {"data.csv": _csv(frame)}
    elif case == "too_few_rows":
        files = {"data.csv": _csv(frame.head(10))}
    else:
        files = {}
    run = run_training(tmp_path, files)
    assert run.completed.returncode != 0
    assert "Traceback" not in run.stderr
    error_lines = [line for line in run.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(error_lines) == 1 and re.search(expected, error_lines[0]), run.stderr
    failure = run.failure_file.read_text(encoding="utf-8")
    assert re.search(expected, failure) and failure.count("\n") == 1
    if case != "no_csv":
        assert "data.csv" in failure  # names the file
    assert not (run.model_dir / "model.json").exists()


# -- input reading ---------------------------------------------------------------------------------

def test_reads_every_csv_of_the_channel_sorted(tmp_path, train_model):
    columns, rows = training_set_rows(limit=60)
    (tmp_path / "b.csv").write_text(to_csv_text(columns, rows[30:]), encoding="utf-8")
    (tmp_path / "a.csv").write_bytes(b"\xef\xbb\xbf" + to_csv_text(columns, rows[:30]).encode())  # with a BOM
    (tmp_path / "a.csv.metadata").write_bytes(b"\x00\xff")
    frame, _ = train_model.read_training_frame(tmp_path)
    assert list(frame.columns) == columns
    assert frame["customer_id"].tolist() == [r[0] for r in rows]
    assert frame["total_charges"].isna().sum() == sum(r[columns.index("total_charges")] is None for r in rows)


def test_bookkeeping_columns_are_not_features(train_model):
    frame = _small_frame(400)
    frame["event_time"] = [f"2024-01-01T00:00:{i % 60:02d}.000Z" for i in range(len(frame))]
    params = {**train_model.default_params(), "num_round": 50, "label_column": "churn"}
    fit, evaluation = train_model.train(frame, params)
    assert "event_time" not in fit.encoding["feature_names"] and "customer_id" not in fit.encoding["feature_names"]
    assert len(fit.encoding["feature_names"]) == 19
    assert evaluation["row_counts"]["total"]["rows"] == 400


def test_json_encoded_string_hyperparameters(train_model):
    params = train_model.parse_hyperparameters(["--id_column", '"customer_id"', "--label_column", "churn"], {})
    assert params["id_column"] == "customer_id" and params["label_column"] == "churn"
