"""training/train_model.py under the SageMaker script-mode contract: outputs, metric lines, report, CV,
the kind of each column taken from the spec, the random (grouped) and out-of-time splits, max_fit_rows,
hyperparameters and bad input."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import StratifiedKFold, train_test_split

from churn.config import PipelineSettings, training_hyperparameters
from churn.schema import FeatureSpec
from stacks.training import METRIC_DEFINITIONS
from tests.training.training_helpers import TELCO_COLUMNS, default_params, run_training, to_csv_text, training_set_rows

pytestmark = pytest.mark.slow

HYPERPARAMETERS = {"max_depth": 3, "eta": 0.05, "num_round": 1000, "early_stopping_rounds": 50, "seed": 42}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, telco_training_csv):
    """One real training run shared by the module, with 3-fold CV and an argument the script does not know."""
    run = run_training(tmp_path_factory.mktemp("opt_ml"), {"1f0c9a5e-query.csv": telco_training_csv},
                       {**HYPERPARAMETERS, "cv_folds": 3, "some_future_option": "x"})
    assert run.completed.returncode == 0, run.stdout + run.stderr
    return run


@pytest.fixture(scope="module")
def evaluation(trained):
    return json.loads((trained.model_dir / "evaluation.json").read_text(encoding="utf-8"))


def frame_of(train_model, tmp_path, columns, rows, **params):
    """(Data, params): rows written as the training channel and read by the script."""
    params = {**default_params(), **TELCO_COLUMNS, **params}
    channel = tmp_path / "channel"
    channel.mkdir(exist_ok=True)
    (channel / "data.csv").write_text(to_csv_text(columns, rows), encoding="utf-8")
    frame, source = train_model.read_training_data(channel, params)
    return train_model.prepare(frame, params, source), params


# -- outputs ----------------------------------------------------------------------------------------
def test_writes_model_and_output_files(trained):
    for name in ("model.json", "encoding.json", "evaluation.json"):
        assert (trained.model_dir / name).stat().st_size > 0, name
    for name in ("evaluation.json", "report.png", "cv.json"):
        assert (trained.output_data_dir / name).stat().st_size > 0, name
    assert not trained.failure_file.exists()
    evaluation = (trained.model_dir / "evaluation.json").read_bytes()
    assert evaluation == (trained.output_data_dir / "evaluation.json").read_bytes()
    assert "ignoring unknown hyperparameter(s): some_future_option" in trained.stderr


def test_evaluation_has_honest_metrics(evaluation):
    assert evaluation["validation_auc"] > 0.8
    assert evaluation["train_auc"] >= evaluation["validation_auc"] - 0.05
    rows = evaluation["row_counts"]
    assert rows["total"]["rows"] == 7043
    assert rows["train"]["rows"] + rows["early_stopping"]["rows"] + rows["validation"]["rows"] == 7043
    assert rows["validation"]["rows"] == 1409 and rows["early_stopping"]["rows"] > 0
    for part in ("train", "early_stopping", "validation"):  # stratified: ~26.5 % churners in every part
        assert rows[part]["positives"] / rows[part]["rows"] == pytest.approx(1869 / 7043, abs=0.01)
    matrix = evaluation["confusion_matrix"]
    assert matrix["tp"] + matrix["fn"] == rows["validation"]["positives"]
    assert matrix["tn"] + matrix["fp"] + matrix["fn"] + matrix["tp"] == rows["validation"]["rows"]
    gain = evaluation["feature_importance"]["gain"]
    assert set(gain) >= {"contract", "tenure", "monthly_charges"} and not {"customer_id", "churn"} & set(gain)
    assert evaluation["split"] == {"kind": "random", "validation_fraction": 0.2, "ids": 7043,
                                   "id_column": "customer_id"}
    assert evaluation["hyperparameters"]["categorical_columns"] == TELCO_COLUMNS["categorical_columns"]
    assert evaluation["num_trees"] == evaluation["best_iteration"] + 1 <= 1000
    assert evaluation["sampling"]["sampled"] is False and "not_used" not in rows


def test_metric_lines_match_the_training_jobs_metric_definitions(trained, evaluation):
    assert "\t" not in trained.stdout
    found = {name: re.findall(rf"^{regex}$", trained.stdout, re.MULTILINE)
             for name, regex in METRIC_DEFINITIONS.items()}
    assert {name: len(values) for name, values in found.items()} == dict.fromkeys(METRIC_DEFINITIONS, 1)
    assert float(found["validation-auc"][0]) == pytest.approx(evaluation["validation_auc"], abs=1e-6)
    assert float(found["validation-logloss"][0]) == pytest.approx(evaluation["log_loss"], abs=1e-6)
    assert float(found["train-auc"][0]) == pytest.approx(evaluation["train_auc"], abs=1e-6)


def test_cv_writes_cv_json_and_lines(trained, evaluation):
    cv = json.loads((trained.output_data_dir / "cv.json").read_text(encoding="utf-8"))
    assert cv["folds"] == 3 and len(cv["aucs"]) == 3 and cv["auc_mean"] > 0.8
    assert cv["auc_std"] == pytest.approx(np.std(cv["aucs"], ddof=1))
    assert f"cv-auc-mean:{cv['auc_mean']:.6f}\ncv-auc-std:{cv['auc_std']:.6f}\n" in trained.stdout
    assert evaluation["cv_auc_mean"] == pytest.approx(cv["auc_mean"])
    assert cv["folding"] == {"kind": "stratified", "id_column": "customer_id"}
    assert evaluation["cv"]["folding"] == cv["folding"] and evaluation["cv"]["fold_results"] == cv["fold_results"]


def test_report_png_is_a_real_figure(trained):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.image as mpimg

    path = trained.output_data_dir / "report.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = mpimg.imread(path)
    assert image.shape[0] >= 500 and image.shape[1] >= 1500
    assert float(np.std(image[..., :3])) > 0.05  # not a blank canvas


def test_the_model_uses_the_trees_up_to_the_best_iteration(trained, evaluation, serving):
    model = serving.load_model(trained.model_dir)
    assert model.iteration_range == (0, evaluation["best_iteration"] + 1)
    assert model.booster.num_boosted_rounds() > evaluation["num_trees"]  # early stopping's extra rounds are kept


# -- each column's kind comes from the spec -----------------------------------------------------------
@pytest.mark.parametrize("max_cat_to_onehot", [5, 4])
def test_a_string_feature_of_digits_is_a_category(train_model, serving, tmp_path, max_cat_to_onehot):
    """A zip code: "0123", "123" and "00123" are three categories, not the number 123. With fewer than
    max_cat_to_onehot categories it is a 0/1 column per category, else one XGBoost categorical column."""
    columns, rows = training_set_rows(limit=600)
    zips = ["0123", "123", "00123", "9"]
    rows = [[*row[:-1], zips[i % 4], row[-1]] for i, row in enumerate(rows)]
    columns = [*columns[:-1], "zip", columns[-1]]
    run = run_training(tmp_path, {"data.csv": to_csv_text(columns, rows)},
                       {"num_round": 30, "categorical_columns": [*TELCO_COLUMNS["categorical_columns"], "zip"],
                        "max_cat_to_onehot": max_cat_to_onehot})
    assert run.completed.returncode == 0, run.stderr
    model = serving.load_model(run.model_dir)
    zip_feature = next(f for f in model.encoding["features"] if f["name"] == "zip")
    one_hot = max_cat_to_onehot > 4
    assert zip_feature == {"name": "zip", "kind": "categorical", "categories": ["00123", "0123", "123", "9"],
                           "one_hot": one_hot}
    request = to_csv_text(columns, rows[:4])
    frame = serving.read_request(request, model.encoding)
    assert frame["zip"].tolist() == zips
    encoded = serving.encode(frame, model.encoding)
    if one_hot:
        assert encoded[[f"zip#{code}" for code in range(4)]].to_numpy().tolist() == [
            [0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]]
    else:
        assert encoded["zip"].cat.codes.tolist() == [1, 2, 0, 3]
    assert len(serving.contributions(model, frame)[0].columns) == len(model.feature_names)
    importance = json.loads((run.model_dir / "evaluation.json").read_text())["feature_importance"]
    assert all(list(kind) == model.feature_names for kind in importance.values())


def test_numeric_features_are_numbers_and_a_non_number_names_file_row_and_column(tmp_path):
    columns, rows = training_set_rows(limit=100)
    rows[41][columns.index("tenure")] = "ten"
    run = run_training(tmp_path, {"data.csv": to_csv_text(columns, rows)})
    assert run.completed.returncode == 1
    failure = run.failure_file.read_text(encoding="utf-8")
    assert failure == "Training input error: data.csv: column 'tenure', row 42: 'ten' is not a number\n"


def test_bookkeeping_columns_are_not_read(train_model, tmp_path):
    columns, rows = training_set_rows(limit=400)
    columns = [*columns, "event_time", "is_deleted"]
    rows = [[*row, f"2024-01-01T00:00:{i % 60:02d}.000Z", "false"] for i, row in enumerate(rows)]
    data, _ = frame_of(train_model, tmp_path, columns, rows)
    assert "event_time" not in data.frame.columns and "is_deleted" not in data.frame.columns
    assert list(data.features) == [c for c in columns if c not in ("customer_id", "churn", "event_time", "is_deleted")]
    assert {kind for name, kind in data.features.items() if name in TELCO_COLUMNS["categorical_columns"]} == {
        "categorical"}
    assert data.features["tenure"] == data.features["total_charges"] == "numeric"


def test_every_csv_of_the_channel_is_read_and_their_categories_unified(train_model, tmp_path):
    columns, rows = training_set_rows(limit=60)
    params = {**default_params(), **TELCO_COLUMNS}
    by_contract = sorted(rows, key=lambda row: row[columns.index("contract")])  # each file its own categories
    (tmp_path / "b.csv").write_text(to_csv_text(columns, by_contract[30:]), encoding="utf-8")
    (tmp_path / "a.csv").write_bytes(b"\xef\xbb\xbf" + to_csv_text(columns, by_contract[:30]).encode())  # a BOM
    (tmp_path / "a.csv.metadata").write_bytes(b"\x00\xff")
    (tmp_path / "c.csv").write_text("", encoding="utf-8")
    frame, source = train_model.read_training_data(tmp_path, params)
    assert source == f"3 files in {tmp_path}"
    assert frame["customer_id"].tolist() == [row[0] for row in by_contract]
    assert frame["contract"].tolist() == [row[columns.index("contract")] for row in by_contract]
    assert frame["total_charges"].isna().sum() == sum(row[columns.index("total_charges")] is None for row in rows)


def test_a_file_whose_first_lines_are_blank_is_read_from_its_header(train_model, tmp_path):
    """Blank lines before the header (CSV readers, pyarrow's included, skip them) do not make it a file of no rows."""
    columns, rows = training_set_rows(limit=30)
    (tmp_path / "data.csv").write_text("\n\r\n" + to_csv_text(columns, rows), encoding="utf-8")
    frame, _ = train_model.read_training_data(tmp_path, {**default_params(), **TELCO_COLUMNS})
    assert frame["customer_id"].tolist() == [row[0] for row in rows]


def test_files_with_other_columns_are_named_against_the_first_file_read(train_model, tmp_path):
    """The first file has no rows (skipped): the mismatch is with the first file whose rows were read."""
    columns, rows = training_set_rows(limit=10)
    (tmp_path / "a.csv").write_text(to_csv_text(columns, []), encoding="utf-8")
    (tmp_path / "b.csv").write_text(to_csv_text(columns, rows), encoding="utf-8")
    (tmp_path / "c.csv").write_text(to_csv_text([*columns, "extra"], [[*row, "1"] for row in rows]), encoding="utf-8")
    with pytest.raises(train_model.InputError, match=r"^c\.csv: columns \[.*\] differ from b\.csv's$"):
        train_model.read_training_data(tmp_path, {**default_params(), **TELCO_COLUMNS})


# -- splits -----------------------------------------------------------------------------------------
def test_with_one_row_per_id_the_split_is_sklearns_stratified_split(train_model, tmp_path):
    """The split the Telco result was measured with: train_test_split of the rows, stratified."""
    data, params = frame_of(train_model, tmp_path, *training_set_rows())
    train_rows, validation_rows, _ = train_model.validation_split(data, params)
    expected_train, expected_validation = train_test_split(np.arange(7043), test_size=0.2, random_state=42,
                                                           stratify=data.labels)
    assert np.array_equal(train_rows, np.sort(expected_train))
    assert np.array_equal(validation_rows, np.sort(expected_validation))


def test_the_rows_of_one_id_stay_on_one_side_of_every_split(train_model, tmp_path):
    """Several observation rows per customer: validation, early stopping and CV never split a customer."""
    columns, rows = training_set_rows(limit=1500)
    repeated = [row for row in rows for _ in range(3)]
    data, params = frame_of(train_model, tmp_path, columns, repeated, num_round=20, cv_folds=3)
    train_rows, validation_rows, split = train_model.validation_split(data, params)
    assert not set(data.ids[train_rows]) & set(data.ids[validation_rows])
    assert split["ids"] == 1500 and len(validation_rows) == 3 * 300
    result = train_model.fit(data, train_rows, params)
    assert not set(data.ids[result.fit_rows]) & set(data.ids[result.es_rows])
    assert len(result.fit_rows) + len(result.es_rows) == len(train_rows)
    cv = train_model.cross_validate(data, params)
    assert [fold["test_rows"] % 3 for fold in cv["fold_results"]] == [0, 0, 0]


@pytest.mark.parametrize(("feature", "value"), [("contract", "Month-to-month"), ("tenure", 12.0)])  # String, number
def test_a_feature_without_any_value_trains_warns_and_serves(train_model, tmp_path, capsys, feature, value):
    """Every observation before a group's first version leaves its features empty in the training set: the
    model cannot use them (XGBoost refused an empty category list), and the log says so."""
    columns, rows = training_set_rows(limit=600)
    at = columns.index(feature)
    rows = [[*row[:at], None, *row[at + 1:]] for row in rows]
    data, params = frame_of(train_model, tmp_path, columns, rows, num_round=20)
    assert f"feature '{feature}' has no value in any row" in capsys.readouterr().err
    result, evaluation, (labels, probabilities) = train_model.train(data, params)
    assert 0.5 < evaluation["validation_auc"] <= 1 and len(probabilities) == len(labels)
    served = train_model.predict_frame(result.model, data.frame.iloc[:5].assign(**{feature: value}))
    assert served.shape == (5,)


def test_more_folds_than_the_smaller_class_has_rows_is_refused_naming_the_limit(train_model, tmp_path):
    columns, rows = training_set_rows(limit=30)
    data, params = frame_of(train_model, tmp_path, columns, rows, num_round=5, cv_folds=20)
    smaller = int(min(np.bincount(data.labels.astype(int))))
    with pytest.raises(train_model.InputError, match=rf"cv_folds=20: the training set's smaller class has {smaller} "
                                                     rf"rows, so at most {smaller} folds"):
        train_model.cross_validate(data, params)


def fitted_rows(train_model, monkeypatch) -> list[np.ndarray]:
    """The rows each call of the script's fit is given (it still fits them)."""
    given: list[np.ndarray] = []
    real_fit = train_model.fit

    def recording_fit(data, rows, params):
        given.append(rows)
        return real_fit(data, rows, params)

    monkeypatch.setattr(train_model, "fit", recording_fit)
    return given


def test_a_random_split_spec_keeps_stratified_folds(train_model, tmp_path, monkeypatch):
    """The folds the Telco CV figure was measured with: sklearn's stratified K-fold of the rows."""
    data, params = frame_of(train_model, tmp_path, *training_set_rows(limit=600), num_round=20, cv_folds=3)
    given = fitted_rows(train_model, monkeypatch)
    cv = train_model.cross_validate(data, params)
    assert cv["folding"] == {"kind": "stratified", "id_column": "customer_id"}
    expected = list(StratifiedKFold(3, shuffle=True, random_state=42).split(data.frame, data.labels))
    assert len(given) == len(expected) == len(cv["fold_results"])
    for rows, (train_rows, test_rows), fold in zip(given, expected, cv["fold_results"], strict=True):
        assert np.array_equal(rows, train_rows) and fold["test_rows"] == len(test_rows)
        assert "validation_periods" not in fold


MONTHS = [f"2026-{month:02d}-01T00:00:00.000Z" for month in range(1, 9)]


def monthly_observations(train_model, tmp_path, **params):
    """The same 300 customers observed on the first of each month, January to August 2026, labels settled 45
    days after observation: a period's labels are settled by the start of the period after next."""
    columns, rows = training_set_rows(limit=300)
    observed = [[*row, month] for month in MONTHS for row in rows]
    return frame_of(train_model, tmp_path, [*columns, "observed"], observed, time_column="observed",
                    validation_split="out_of_time", label_horizon_days=45, num_round=20, **params)


def test_time_folds_train_only_on_periods_settled_before_the_one_they_validate(train_model, tmp_path, monkeypatch):
    data, params = monthly_observations(train_model, tmp_path, cv_folds=3)
    given = fitted_rows(train_model, monkeypatch)
    cv = train_model.cross_validate(data, params)
    assert cv["folding"] == {"kind": "rolling_origin", "time_column": "observed", "label_horizon_days": 45}
    moments = pd.to_datetime(data.frame["observed"].astype(str), utc=True)
    validated = [fold["validation_periods"] for fold in cv["fold_results"]]
    assert validated == [{"first": month, "last": month, "count": 1} for month in MONTHS[-3:]]
    for rows, fold in zip(given, cv["fold_results"], strict=True):
        start = pd.Timestamp(fold["validation_periods"]["first"])
        assert (moments.iloc[rows] < start - pd.Timedelta(days=45)).all()  # no label reaching into the fold's
        assert len(rows) == 300 * fold["train_periods"]["count"]  # every settled period is trained on
        assert fold["test_rows"] == 300
    assert [(fold["train_periods"]["last"], fold["unsettled_periods"]["first"]) for fold in cv["fold_results"]] == [
        (MONTHS[3], MONTHS[4]), (MONTHS[4], MONTHS[5]), (MONTHS[5], MONTHS[6])]
    assert {fold["train_periods"]["first"] for fold in cv["fold_results"]} == {MONTHS[0]}
    # the latest fold is the out-of-time validation split, fitted as the final model is
    assert cv["aucs"][-1] == train_model.train(data, params)[1]["validation_auc"]


def test_more_time_folds_than_the_periods_give_is_refused_naming_the_limit(train_model, tmp_path):
    data, params = monthly_observations(train_model, tmp_path, cv_folds=7)
    # February is validated by the 7th fold from the end: January's labels settle only in mid-February
    with pytest.raises(train_model.FoldsRefused, match=r"^cv_folds=7: .*no period before 2026-02-01T00:00:00\.000Z "
                                                       r"has its labels settled by then \(label_horizon_days=45\), "
                                                       r"so at most 6 folds$"):
        train_model.cross_validate(data, params)
    data.labels[data.frame["observed"].astype(str) == MONTHS[5]] = 0  # June: one class only
    with pytest.raises(train_model.FoldsRefused, match=r"^cv_folds=3: .*2026-06-01T00:00:00\.000Z has fewer than 2 "
                                                       r"rows of a class, so at most 2 folds$"):
        train_model.cross_validate(data, {**params, "cv_folds": 3})


def test_out_of_time_validates_on_the_latest_periods(tmp_path):
    columns, rows = training_set_rows(limit=1200)
    periods = ["9", "10", "11", "12", "13", "14"]  # ordered as numbers: "9" is the earliest
    rows = [[*row, periods[i * len(periods) // len(rows)]] for i, row in enumerate(rows)]
    run = run_training(tmp_path, {"data.csv": to_csv_text([*columns, "period"], rows)},
                       {"num_round": 30, "time_column": "period", "validation_split": "out_of_time",
                        "validation_periods": 2})
    assert run.completed.returncode == 0, run.stderr
    evaluation = json.loads((run.model_dir / "evaluation.json").read_text(encoding="utf-8"))
    assert evaluation["split"] == {"kind": "out_of_time", "time_column": "period",
                                   "train_periods": {"first": "9", "last": "12", "count": 4},
                                   "validation_periods": {"first": "13", "last": "14", "count": 2}}
    assert evaluation["row_counts"]["validation"]["rows"] == 400
    assert "period" not in json.loads((run.model_dir / "encoding.json").read_text())["feature_names"]


@pytest.mark.parametrize("times", [
    ["1997-04-15T00:00:00.000Z", "1997-06-15T00:00:00.000Z", "1997-08-15T00:00:00.000Z",
     "1997-10-15T00:00:00.000Z", "1997-12-15T00:00:00.000Z", "1998-02-15T00:00:00.000Z"],
    ["860976000", "866332800", "871603200", "876873600", "882144000", "887500800"],  # the same, unix seconds
])
def test_out_of_time_trains_only_on_labels_settled_before_the_validation_starts(train_model, tmp_path, times):
    """A label observed in December with a 90-day horizon covers February 16 to March 15: known only after
    February's observations, whose labels it overlaps. Training keeps the periods whose labels were settled
    by the first validated time; every validation row is still validated."""
    columns, rows = training_set_rows(limit=1200)
    rows = [[*row, times[i * len(times) // len(rows)]] for i, row in enumerate(rows)]
    data, params = frame_of(train_model, tmp_path, [*columns, "observed"], rows, time_column="observed",
                            validation_split="out_of_time", label_horizon_days=90)
    train_rows, validation_rows, split = train_model.validation_split(data, params)
    observed = data.frame["observed"].astype(str)
    assert sorted(set(observed.iloc[train_rows])) == times[:4]
    assert set(observed.iloc[validation_rows]) == {times[5]} and len(validation_rows) == 200
    assert split["label_horizon_days"] == 90
    assert split["unsettled_periods"] == {"first": times[4], "last": times[4], "count": 1}
    params["label_horizon_days"] = 0  # labels known at their observation time: every earlier period is trained on
    assert len(train_model.validation_split(data, params)[0]) == 1000


def test_out_of_time_fails_clearly_when_no_label_is_settled_before_the_validation(train_model, tmp_path):
    columns, rows = training_set_rows(limit=600)
    times = ["2026-01-01", "2026-01-15", "2026-02-01"]
    rows = [[*row, times[i * len(times) // len(rows)]] for i, row in enumerate(rows)]
    data, params = frame_of(train_model, tmp_path, [*columns, "observed"], rows, time_column="observed",
                            validation_split="out_of_time", label_horizon_days=45)
    with pytest.raises(train_model.InputError, match=r"^data\.csv: no 'observed' time before 2026-02-01 has its "
                                                     r"label settled by then \(label_horizon_days=45\)"):
        train_model.validation_split(data, params)
    data.frame["observed"] = data.frame["observed"].replace("2026-01-15", "mid-January")
    with pytest.raises(train_model.InputError, match=r"^data\.csv: 'observed' holds 'mid-January', neither a number "
                                                     r"of seconds nor an ISO 8601 time$"):
        train_model.validation_split(data, params)


@pytest.mark.parametrize(("hyperparameters", "expected"), [
    ({"validation_split": "out_of_time"}, "validation_split=out_of_time needs time_column"),
    ({"validation_split": "out_of_time", "time_column": "period"}, r"column 'period' is missing"),
    ({"validation_split": "out_of_time", "time_column": "contract", "validation_periods": 3},
     r"'contract' has 3 distinct time\(s\); out_of_time validation on the latest 3 needs at least 4"),
    ({"validation_split": "out_of_time", "time_column": "contract", "validation_periods": 3, "cv_folds": 3},
     r"'contract' has 3 distinct time\(s\); out_of_time validation on the latest 3 needs at least 4"),
])
def test_out_of_time_without_enough_periods_fails_clearly(tmp_path, telco_training_csv, hyperparameters, expected):
    run = run_training(tmp_path, {"data.csv": telco_training_csv}, hyperparameters)
    assert run.completed.returncode == 1
    assert re.search(expected, run.failure_file.read_text(encoding="utf-8")), run.stderr
    assert not (run.output_data_dir / "cv.json").exists()  # it fails before cross-validating


def test_max_fit_rows_samples_the_training_part_and_keeps_every_validation_row(train_model, tmp_path):
    data, params = frame_of(train_model, tmp_path, *training_set_rows(), max_fit_rows=2000, num_round=200)
    result, evaluation, (labels, probabilities) = train_model.train(data, params)
    counts = evaluation["row_counts"]
    assert counts["validation"]["rows"] == len(labels) == len(probabilities) == 1409
    used = np.concatenate([result.fit_rows, result.es_rows])
    assert len(np.unique(used)) == counts["train"]["rows"] + counts["early_stopping"]["rows"] == 2000
    assert counts["not_used"]["rows"] == 7043 - 1409 - 2000
    for part in ("train", "early_stopping", "not_used"):  # stratified
        assert counts[part]["positives"] / counts[part]["rows"] == pytest.approx(1869 / 7043, abs=0.005), part
    assert evaluation["sampling"]["sampled"] is True and "stratified sample of 2000" in evaluation["sampling"]["note"]


# -- hyperparameters --------------------------------------------------------------------------------
def test_hyperparameters_from_sm_hps_and_arguments(hyperparameters):
    params, ignored = hyperparameters.parse_hyperparameters(
        ["--max_depth", "4", "--eta", "0.1", "--num_round", "300.0", "--unknown", "1", "--id_column", '"cid"'],
        {"SM_HPS": json.dumps({"max_depth": 2, "seed": 7, "sagemaker_program": "train_model.py"})})
    assert (params["max_depth"], params["eta"], params["num_round"], params["seed"]) == (4, 0.1, 300, 7)
    assert params["id_column"] == "cid" and ignored == ["unknown"]
    assert hyperparameters.parse_hyperparameters(["--max_d", "9"], {})[0]["max_depth"] == 3  # no prefix matching


@pytest.mark.parametrize("value", ['["a", "b c"]', "['a', 'b c']"])
def test_categorical_columns_as_json_or_as_the_toolkit_passes_a_list(hyperparameters, value):
    params, _ = hyperparameters.parse_hyperparameters(["--categorical_columns", value], {})
    assert params["categorical_columns"] == ["a", "b c"]


@pytest.mark.parametrize(("args", "expected"), [
    (["--max_depth", "deep"], "max_depth='deep': not of type int"),
    (["--validation_fraction", "1.5"], "validation_fraction=1.5: .* in \\(0, 0.9\\)"),
    (["--max_fit_rows", "500"], "max_fit_rows=500: .* at least 1000"),
    (["--categorical_columns", "gender"], "categorical_columns='gender': not of type list"),
    (["--validation_split", "sideways"], "validation_split='sideways': random or out_of_time"),
    (["--eta"], "--eta: expected one argument"),
])
def test_bad_hyperparameters_are_input_errors(hyperparameters, args, expected):
    with pytest.raises(hyperparameters.InputError, match=expected):
        hyperparameters.parse_hyperparameters(args, {})


# -- bad input --------------------------------------------------------------------------------------
def _csv(frame: pd.DataFrame) -> str:
    return to_csv_text(list(frame.columns), frame.astype(object).where(frame.notna(), None).values.tolist())


def test_a_bad_label_in_a_channel_of_several_files_names_its_file_and_row(tmp_path):
    columns, rows = training_set_rows(limit=200)
    frame = pd.DataFrame(rows, columns=columns)
    second = frame.iloc[100:].copy()
    second.iloc[2, second.columns.get_loc("churn")] = "2"
    run = run_training(tmp_path, {"a.csv": _csv(frame.iloc[:100]), "b.csv": _csv(second)})
    assert run.completed.returncode == 1
    assert re.search(r"label 'churn' must be 0 or 1; 1 row\(s\) are not \(the first: row 3 of b.csv, '2'\)",
                     run.failure_file.read_text(encoding="utf-8")), run.stderr


@pytest.mark.parametrize(("case", "expected"), [
    ("missing_label", r"data.csv: column 'churn' is missing"),
    ("missing_categorical", r"data.csv: column 'contract' is missing"),
    ("labels_not_binary",
     r"data.csv: label 'churn' must be 0 or 1; 200 row\(s\) are not \(the first: row 1, '(Yes|No)'\)"),
    ("one_class", r"data.csv: label 'churn' has 0 row\(s\) of class 1 \(one class only\)"),
    ("too_few_rows", r"data.csv: only 10 row\(s\)"),
    ("one_hot_column_name", r"data.csv: column 'gender#1' is named as a one-hot column of the categorical "
                            r"feature 'gender' \(<feature>#<n>\)"),
    ("xgboost_reserved_name", r"data.csv: column 'spend\[30d\]' has a character XGBoost refuses in a feature "
                              r"name \(\[ \] <\): rename it"),
    ("no_csv", r"no \*\.csv file in the training channel"),
])
def test_bad_input_fails_with_one_clear_line_and_writes_no_model(tmp_path, case, expected):
    columns, rows = training_set_rows(limit=200)
    frame = pd.DataFrame(rows, columns=columns)
    files = {"data.csv": _csv({
        "missing_label": frame.drop(columns=["churn"]),
        "missing_categorical": frame.drop(columns=["contract"]),
        "labels_not_binary": frame.assign(churn=np.where(frame["churn"] == "1", "Yes", "No")),
        "one_class": frame.assign(churn="0"),
        "too_few_rows": frame.head(10),
        # a numeric column the script would name a column of gender's one-hot encoding: two inputs of one name
        "one_hot_column_name": frame.assign(**{"gender#1": [str(i % 5) for i in range(len(frame))]}),
        "xgboost_reserved_name": frame.assign(**{"spend[30d]": "1.5"}),
    }[case])} if case != "no_csv" else {}
    run = run_training(tmp_path, files)
    assert run.completed.returncode == 1
    assert "Traceback" not in run.stderr
    error_lines = [line for line in run.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(error_lines) == 1 and re.search(expected, error_lines[0]), run.stderr
    failure = run.failure_file.read_text(encoding="utf-8")
    assert re.search(expected, failure) and failure.count("\n") == 1
    assert not (run.model_dir / "model.json").exists()


def test_every_training_set_column_is_read_even_a_feature_called_event_time(train_model):
    """A feature may be called `event_time` when the event time has another name; the script must keep it."""
    spec = FeatureSpec.from_dict({"record_identifier": {"name": "customer_id", "type": "String"},
                                  "event_time": {"name": "ts", "type": "String"},
                                  "label": {"name": "churn", "type": "Integral"},
                                  "features": [{"name": "event_time", "type": "Integral"},
                                               {"name": "plan", "type": "String"}]})
    params = {**default_params(), **training_hyperparameters(PipelineSettings(), spec)}
    header = list(spec.training_columns)
    assert list(train_model.column_kinds(header, params)) == header == ["customer_id", "event_time", "plan", "churn"]


def test_a_model_from_before_one_hot_encoding_still_scores(serving, tmp_path):
    """encoding.json of a model trained before categories were one-hot encoded (format 1, no `one_hot`)
    still scores: every categorical feature is one XGBoost categorical column, as that model was trained
    on. A format this code does not know is refused by name."""
    columns, rows = training_set_rows(limit=600)
    run = run_training(tmp_path, {"data.csv": to_csv_text(columns, rows)}, {"num_round": 30, "max_cat_to_onehot": 1})
    assert run.completed.returncode == 0, run.stderr
    model = serving.load_model(run.model_dir)
    frame = serving.read_request(to_csv_text(columns, rows[:50]), model.encoding)
    expected = serving.predict_frame(model, frame)
    encoding = json.loads((run.model_dir / "encoding.json").read_text())
    assert encoding["format_version"] == 2
    for feature in encoding["features"]:
        assert feature.pop("one_hot", False) is False
    for version, readable in ((1, True), (3, False)):
        (run.model_dir / "encoding.json").write_text(json.dumps({**encoding, "format_version": version}))
        if readable:
            assert np.array_equal(serving.predict_frame(serving.load_model(run.model_dir), frame), expected)
        else:
            with pytest.raises(ValueError, match="unsupported encoding format 3"):
                serving.load_model(run.model_dir)
