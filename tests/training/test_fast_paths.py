"""The training script's fast paths give the results of the simple ones: the encoding that works once per
distinct value equals the per-value encoding, the one-metric early stopping fits the same booster, the
max_fit_rows cap samples stratified and leaves the validation rows whole, and the serving shortcuts
(bytes CSV parsing, CSV output) give the same frames and text."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from training_helpers import run_training, to_csv_text, training_set_rows

# -- the per-value reference encoding (the script's encoding before it was vectorised) ---------------


def _reference_is_numeric(series: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(series):
        return False
    if pd.api.types.is_numeric_dtype(series):
        return True
    present = series.dropna()
    if present.empty:
        return True
    if not all(isinstance(v, str) for v in present):
        return False
    return bool(pd.to_numeric(present.str.strip(), errors="coerce").notna().all())


def reference_fit_encoding(train_model, frame: pd.DataFrame, id_column: str, label_column: str) -> dict:
    features = []
    for name in frame.columns:
        if name in (id_column, label_column):
            continue
        column = frame[name]
        if _reference_is_numeric(column):
            features.append({"name": str(name), "kind": "numeric"})
        else:
            categories = sorted(set(column.astype(object).map(train_model._category_text).dropna()))
            features.append({"name": str(name), "kind": "categorical", "categories": categories})
    return {"format_version": 1, "id_column": id_column, "label_column": label_column,
            "feature_names": [f["name"] for f in features], "features": features}


def reference_apply_encoding(train_model, frame: pd.DataFrame, encoding: dict) -> pd.DataFrame:
    encoded = {}
    for feature in encoding["features"]:
        column = frame[feature["name"]]
        if feature["kind"] == "numeric":
            if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
                values = column.astype(float)
            else:
                text = column.astype(object).map(lambda v: v.strip() if isinstance(v, str) else v)
                values = pd.to_numeric(text, errors="coerce").astype(float)
            encoded[feature["name"]] = values.to_numpy()
        else:
            texts = column.astype(object).map(train_model._category_text)
            encoded[feature["name"]] = pd.Categorical(texts, categories=feature["categories"])
    return pd.DataFrame(encoded, index=frame.index, columns=encoding["feature_names"])


def _tricky_frame() -> pd.DataFrame:
    """Whitespace, empty strings, numbers and bools as objects, NaN/None/pd.NA, typed columns."""
    n = 12
    return pd.DataFrame({
        "customer_id": [f"C{i}" for i in range(n)],
        # text with padding, blanks and whitespace-only values (canonical text strips; blank is missing)
        "padded": ["Yes", " Yes", "Yes ", "No", "", "   ", None, np.nan, "No", "Maybe ", "\tYes", "No"],
        # numbers, bools and text as objects: 1, 1.0, True and "1" hash alike but are different texts
        "mixed": [1, 1.0, True, "1", " 1 ", 2.5, np.float64(3.0), np.int64(4), None, np.nan, False, "x"],
        "bools": [True, False] * 6,
        "object_bools": [True, False, None, True, False, True, None, False, True, True, False, False],
        "numeric_text": [" 1", "2 ", "3.5", "\t4", None, "1e3", "-0", np.nan, "7", "0.1", "2", "1"],
        "numeric_bad": ["1", "2", "abc", None, "4", "5", "nan", "6", "inf", "7", "8", "9"],
        "numeric_objects": [1, 2.5, None, 4, 5, 6, 7, 8, 9, 10, 11, np.nan],
        "typed_float": [0.5, 1.5, np.nan, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0],
        "typed_int": list(range(n)),
        "string_dtype": pd.array(["a", "b ", None, "a", " c", "b", "a", "b", "", "c", "a", "b"], dtype="string"),
        "categorical": pd.Categorical([" x", "y", None, "x", "y", "z", "x", "y", "x", "y", "x", "y"],
                                      categories=[" x", "x", "y", "z", "never used"]),
        "all_missing": [None] * n,
        "churn": ["0", "1"] * 6,
    })


@pytest.fixture(scope="module")
def tricky():
    return _tricky_frame()


def test_fast_path_is_taken_only_where_exact(train_model, tricky):
    distinct = train_model._distinct_values
    for name in ("padded", "numeric_text", "numeric_bad", "string_dtype", "categorical", "all_missing"):
        assert distinct(tricky[name]) is not None, name
    for name in ("mixed", "object_bools", "numeric_objects"):  # hashing would merge 1, 1.0 and True
        assert distinct(tricky[name]) is None, name
    codes, values = distinct(tricky["padded"])
    assert [values[c] if c >= 0 else None for c in codes] == [
        v if isinstance(v, str) else None for v in tricky["padded"]]


def test_vectorised_encoding_equals_per_value_encoding(train_model, tricky):
    fast = train_model.fit_encoding(tricky, "customer_id", "churn")
    assert fast == reference_fit_encoding(train_model, tricky, "customer_id", "churn")
    kinds = {f["name"]: f["kind"] for f in fast["features"]}
    assert kinds["numeric_text"] == kinds["all_missing"] == kinds["typed_int"] == "numeric"
    assert kinds["padded"] == kinds["mixed"] == kinds["numeric_bad"] == kinds["categorical"] == "categorical"
    padded = next(f for f in fast["features"] if f["name"] == "padded")
    assert padded["categories"] == ["Maybe", "No", "Yes"]
    mixed = next(f for f in fast["features"] if f["name"] == "mixed")
    assert mixed["categories"] == ["1", "2.5", "3", "4", "False", "True", "x"]
    categorical = next(f for f in fast["features"] if f["name"] == "categorical")
    assert categorical["categories"] == ["x", "y", "z"]  # " x" canonicalised, the unused category dropped

    pd.testing.assert_frame_equal(train_model.apply_encoding(tricky, fast),
                                  reference_apply_encoding(train_model, tricky, fast), check_exact=True)
    numeric_text = train_model.apply_encoding(tricky, fast)["numeric_text"].to_numpy()
    assert np.array_equal(numeric_text, [1, 2, 3.5, 4, np.nan, 1000, 0, np.nan, 7, 0.1, 2, 1], equal_nan=True)


def test_vectorised_encoding_of_unseen_and_reordered_values(train_model, tricky):
    encoding = train_model.fit_encoding(tricky, "customer_id", "churn")
    scoring = tricky.iloc[::-1].copy()  # another order and index
    scoring["padded"] = ["Unseen", " No", None, "Yes", "  ", "Maybe", "", "No ", "Other", "Yes", np.nan, "No"]
    scoring["numeric_text"] = ["12", " 3 ", "x1", None, "", "4.25", "1e-3", "-2", " ", "0", "5", "6"]
    scoring["categorical"] = pd.Categorical(["new", "x", " y ", None, "z", "x", "x", "y", "x", "w", "x", "y"])
    scoring["string_dtype"] = scoring["string_dtype"].astype(object)  # typed differently at scoring time
    fast = train_model.apply_encoding(scoring, encoding)
    pd.testing.assert_frame_equal(fast, reference_apply_encoding(train_model, scoring, encoding), check_exact=True)
    assert fast["padded"].isna().tolist() == [True, False, True, False, True, False, True, False, True, False,
                                              True, False]
    assert fast["categorical"].isna().tolist() == [True, False, False, True, False, False, False, False, False,
                                                   True, False, False]
    assert fast["categorical"].iloc[2] == "y" and np.isnan(fast["numeric_text"].iloc[2])  # " y " and "x1"


def test_non_numeric_values_are_counted_once_per_row(train_model, tricky, capsys):
    encoding = train_model.fit_encoding(tricky, "customer_id", "churn")
    scoring = tricky.copy()
    scoring["numeric_text"] = ["abc", "abc", " abc ", "1", None, "", "2", "x", "3", "4", "5", "6"]
    train_model.apply_encoding(scoring, encoding)
    assert "column 'numeric_text': 4 non-numeric value(s) treated as missing" in capsys.readouterr().err


def test_factorised_training_frame_encodes_like_the_text_frame(train_model):
    columns, rows = training_set_rows(limit=1500)
    frame = train_model.read_csv_text(io.StringIO(to_csv_text(columns, rows)))
    params = {**train_model.default_params()}
    factorised = train_model._factorised(frame, params)
    assert isinstance(factorised["contract"].dtype, pd.CategoricalDtype)
    assert factorised["customer_id"].dtype == object and factorised["churn"].dtype == object  # not features
    assert frame["contract"].dtype == object  # the caller's frame is left alone
    pd.testing.assert_frame_equal(factorised.astype(object), frame.astype(object))  # same values, same gaps
    subset = np.arange(0, 1500, 3)  # a row subset: the categorical keeps categories its rows do not use
    encoding = train_model.fit_encoding(factorised.iloc[subset], "customer_id", "churn")
    assert encoding == reference_fit_encoding(train_model, frame.iloc[subset], "customer_id", "churn")
    pd.testing.assert_frame_equal(train_model.apply_encoding(factorised, encoding),
                                  reference_apply_encoding(train_model, frame, encoding), check_exact=True)


# -- one early-stopping metric on the holdout only fits the same booster -----------------------------


def test_one_metric_on_the_holdout_fits_the_same_booster(train_model):
    columns, rows = training_set_rows(limit=3000)
    frame = train_model.read_csv_text(io.StringIO(to_csv_text(columns, rows)))
    params = train_model.resolve_threads({**train_model.default_params(), "num_round": 400,
                                          "early_stopping_rounds": 30}, len(frame))
    labels = train_model.prepare_labels(frame, "churn")
    fit = train_model.fit_booster(frame, labels, np.arange(len(frame)), params)
    # the former procedure: fit set and holdout evaluated every round, with both metrics
    encoded = train_model.apply_encoding(frame, fit.encoding)
    dfit = xgb.DMatrix(encoded.iloc[fit.fit_rows], label=labels[fit.fit_rows], enable_categorical=True)
    des = xgb.DMatrix(encoded.iloc[fit.es_rows], label=labels[fit.es_rows], enable_categorical=True)
    old_params = {**train_model.xgb_params(params), "eval_metric": ["auc", "logloss"]}
    old = xgb.train(old_params, dfit, num_boost_round=400, evals=[(dfit, "fit"), (des, "es_holdout")],
                    early_stopping_rounds=30, verbose_eval=False)
    assert fit.best_iteration == old.best_iteration
    assert fit.booster.num_boosted_rounds() == old.best_iteration + 1
    old_model = old[: old.best_iteration + 1]
    assert fit.booster.save_raw("json") == old_model.save_raw("json")
    # predictions on the kept fit matrix equal those on freshly encoded rows
    assert np.array_equal(fit.booster.predict(fit.fit_matrix),
                          train_model.predict_frame(train_model.ChurnModel(fit.booster, fit.encoding),
                                                    frame.iloc[fit.fit_rows]).astype(np.float32))


# -- max_fit_rows ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def telco_frame(train_model):
    columns, rows = training_set_rows()
    return train_model.read_csv_text(io.StringIO(to_csv_text(columns, rows)))


def test_max_fit_rows_samples_stratified_and_keeps_every_validation_row(train_model, telco_frame):
    params = {**train_model.default_params(), "max_fit_rows": 2000}
    fit, evaluation = train_model.train(telco_frame, params)
    labels = train_model.prepare_labels(telco_frame, "churn")
    _, validation_rows = train_model._split(np.arange(len(labels)), labels, 0.2, 42)
    counts = evaluation["row_counts"]
    assert counts["validation"]["rows"] == len(validation_rows) == 1409  # every held-out row
    assert counts["validation"]["positives"] == int(labels[validation_rows].sum())
    assert len(fit.validation_labels) == len(fit.validation_probabilities) == 1409
    assert np.array_equal(fit.validation_labels, labels[validation_rows])
    used = np.concatenate([fit.fit_rows, fit.es_rows])
    assert len(used) == len(np.unique(used)) == 2000
    assert counts["train"]["rows"] + counts["early_stopping"]["rows"] == 2000
    assert not np.intersect1d(used, validation_rows).size  # the sample comes from the training part only
    assert counts["not_used"]["rows"] == 7043 - 1409 - 2000
    assert sum(counts[p]["rows"] for p in ("train", "early_stopping", "validation", "not_used")) == 7043
    assert sum(counts[p]["positives"] for p in ("train", "early_stopping", "validation", "not_used")) == 1869
    rate = 1869 / 7043  # stratified: every part keeps the churn rate
    for part in ("train", "early_stopping", "not_used"):
        assert counts[part]["positives"] / counts[part]["rows"] == pytest.approx(rate, abs=0.005), part
    sampling = evaluation["sampling"]
    assert sampling["sampled"] is True and sampling["max_fit_rows"] == 2000
    assert sampling["training_part_rows"] == 5634 and sampling["fit_and_early_stopping_rows"] == 2000
    assert "stratified sample of 2000" in sampling["note"]
    assert fit.fit_matrix is None and fit.es_matrix is None  # released after the predictions
    assert evaluation["validation_auc"] > 0.8


def test_max_fit_rows_above_the_training_part_changes_nothing(train_model, telco_frame):
    base = {**train_model.default_params(), "num_round": 300, "early_stopping_rounds": 30}
    _, uncapped = train_model.train(telco_frame, {**base, "max_fit_rows": 0})
    _, capped = train_model.train(telco_frame, {**base, "max_fit_rows": 5634})
    assert capped["sampling"]["sampled"] is False and "not_used" not in capped["row_counts"]
    for key in ("validation_auc", "train_auc", "early_stopping_auc", "best_iteration", "row_counts"):
        assert capped[key] == uncapped[key], key


def test_max_fit_rows_is_validated(train_model):
    assert train_model.parse_hyperparameters(["--max_fit_rows", "0"], {})["max_fit_rows"] == 0
    assert train_model.parse_hyperparameters([], {"SM_HPS": json.dumps({"max_fit_rows": 250000})})[
        "max_fit_rows"] == 250000
    for bad in ("500", "-1", "lots", "1.5"):
        with pytest.raises(train_model.InputError, match="max_fit_rows"):
            train_model.parse_hyperparameters(["--max_fit_rows", bad], {})


def test_max_fit_rows_under_the_sagemaker_contract(tmp_path, telco_training_csv):
    run = run_training(tmp_path, {"query.csv": telco_training_csv},
                       args=["--max_fit_rows", "3000", "--id_column", "customer_id"])
    assert run.completed.returncode == 0, run.stdout + run.stderr
    assert "max_fit_rows=3000: fitting and early stopping on a stratified sample of 3000 of the 5634" in run.stdout
    evaluation = json.loads((run.model_dir / "evaluation.json").read_text(encoding="utf-8"))
    assert evaluation["sampling"]["sampled"] is True and evaluation["hyperparameters"]["max_fit_rows"] == 3000
    assert evaluation["row_counts"]["validation"]["rows"] == 1409


# -- serving shortcuts ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model(train_model, telco_frame):
    fit, _ = train_model.train(telco_frame.iloc[:1500], {**train_model.default_params(), "num_round": 60,
                                                         "early_stopping_rounds": 10})
    train_model._SERVING_STATE["encoding"] = fit.encoding  # what model_fn leaves for input_fn
    return train_model.ChurnModel(booster=fit.booster, encoding=fit.encoding)


def _csv_rows(limit: int = 30) -> tuple[list[str], list[list[str | None]]]:
    columns, rows = training_set_rows(limit=limit)
    return columns, rows


@pytest.mark.parametrize("shape", ["plain", "bom", "crlf", "leading_blank_lines", "trailing_blank_lines",
                                   "padded_header", "headerless", "headerless_with_label", "non_ascii_value"])
def test_csv_bytes_are_parsed_like_the_decoded_text(train_model, small_model, shape):
    columns, rows = _csv_rows()
    text = to_csv_text(columns, rows)
    if shape == "bom":
        text = "\ufeff" + text
    elif shape == "crlf":
        text = text.replace("\n", "\r\n")
    elif shape == "leading_blank_lines":
        text = "\r\n\n" + text
    elif shape == "trailing_blank_lines":
        text = text + "\n\r\n\n"
    elif shape == "padded_header":
        text = text.replace('"customer_id","gender"', '" customer_id","gender "', 1)
    elif shape == "headerless":
        text = text.split("\n", 1)[1]
    elif shape == "headerless_with_label":
        text = to_csv_text([c for c in columns if c != "churn"], [r[:-1] for r in rows]).split("\n", 1)[1]
    elif shape == "non_ascii_value":
        text = text.replace("Electronic check", "Électronique ✓")
    body = text.encode("utf-8")
    assert isinstance(train_model._csv_body(body), bytes)
    from_bytes = train_model.input_fn(body, "text/csv")
    from_text = train_model._parse_csv(text.lstrip("\ufeff"), small_model.encoding)  # the former, str path
    expected_ids = [r[0] for r in rows]
    assert from_bytes.ids == expected_ids
    frame = from_bytes.frame
    reference = from_text.drop(columns=[c for c in ("customer_id", "churn") if c in from_text.columns])
    reference.columns = [str(c).strip() for c in reference.columns]
    pd.testing.assert_frame_equal(frame.reset_index(drop=True), reference.reset_index(drop=True))
    # the same request as str, bytearray and file object gives the same input
    for variant in (text, bytearray(body), io.BytesIO(body)):
        again = train_model.input_fn(variant, "text/csv")
        assert again.ids == expected_ids
        pd.testing.assert_frame_equal(again.frame, frame)


@pytest.mark.parametrize("body", [b"", b"\r\n\r\n", b" \t\r\n  \n", "\u00a0\n ".encode(), "\ufeff".encode()])
def test_blank_csv_request_is_an_empty_frame(train_model, small_model, body):
    data = train_model.input_fn(body, "text/csv")
    assert len(data.frame) == 0
    assert train_model.output_fn(train_model.predict_fn(data, small_model), "text/csv") == (
        "customer_id,churn_probability\n")


def test_undecodable_csv_request_is_a_clear_error(train_model, small_model):
    columns, rows = _csv_rows(5)
    body = to_csv_text(columns, rows).encode("utf-8").replace(b"Female", b"F\xffmale", 1)
    with pytest.raises(ValueError, match="could not parse the text/csv request"):
        train_model.input_fn(body, "text/csv")


@pytest.mark.parametrize("ids", [
    ["a", "b", "c", "d"],
    ["with,comma", 'with "quote"', "multi\nline", " padded "],
    [None, "x", np.nan, ""],
    [None, None, None, None],
    [1, 2, 3, 4],  # not text: the pandas writer
])
def test_csv_output_is_what_pandas_writes(train_model, ids):
    probabilities = np.array([0.1234565, 1e-9, 0.999999951, 0.5], dtype=np.float32).astype(float)
    prediction = pd.DataFrame({"customer_id": pd.Series(ids, dtype=object), "churn_probability": probabilities})
    expected = prediction.to_csv(index=False, float_format="%.6f", lineterminator="\n")
    assert train_model.output_fn(prediction, "text/csv") == expected


def test_csv_output_of_a_large_prediction(train_model):
    rng = np.random.default_rng(3)
    probabilities = rng.random(20_000).astype(np.float32).astype(float)
    probabilities[:4] = [0.0, 1.0, 0.0000005, 0.9999995]
    ids = [f"{i:04d}-{rng.integers(1e6):06d}" for i in range(20_000)]
    prediction = pd.DataFrame({"customer_id": ids, "churn_probability": probabilities})
    assert train_model.output_fn(prediction, "text/csv") == prediction.to_csv(index=False, float_format="%.6f",
                                                                              lineterminator="\n")


# -- indicator trees ------------------------------------------------------------------------------


def _random_raw_frame(encoding: dict, rows: int, seed: int) -> pd.DataFrame:
    """Raw text rows: every category, unseen ones, blanks and missing; numbers, non-numbers and missing."""
    rng = np.random.default_rng(seed)
    columns = {}
    for feature in encoding["features"]:
        if feature["kind"] == "numeric":
            values = np.where(rng.random(rows) < 0.5, np.round(rng.uniform(0, 120, rows)), rng.uniform(-10, 9000, rows))
            text = pd.Series(values).map(repr).to_numpy(dtype=object)
            text[rng.random(rows) < 0.05] = np.nan
            text[rng.random(rows) < 0.02] = "not a number"
            columns[feature["name"]] = text
        else:
            pool = np.array([*feature["categories"], "unseen", " ", np.nan], dtype=object)
            columns[feature["name"]] = pool[rng.integers(0, len(pool), rows)]
    return pd.DataFrame(columns)


@pytest.mark.parametrize("max_cat_to_onehot", [1, 4, 64])
def test_indicator_trees_predict_exactly_like_the_booster(train_model, telco_frame, monkeypatch, max_cat_to_onehot):
    fit, _ = train_model.train(telco_frame.iloc[:3000], {**train_model.default_params(), "num_round": 80,
                                                         "early_stopping_rounds": 80, "max_depth": 4,
                                                         "max_cat_to_onehot": max_cat_to_onehot})
    model = train_model.ChurnModel(booster=fit.booster, encoding=fit.encoding)
    trees = train_model._IndicatorTrees.build(model.booster, model.encoding)
    assert trees is not None
    assert trees.indicators  # the model has categorical splits, rewritten
    for frame in (telco_frame, _random_raw_frame(model.encoding, 20_000, seed=max_cat_to_onehot)):
        encoded = train_model.apply_encoding(frame, model.encoding)
        expected = train_model._predict(model.booster, encoded)  # the reference: DMatrix + predict
        assert np.array_equal(trees.predict(encoded), expected)
    monkeypatch.setattr(train_model, "INDICATOR_MIN_ROWS", 1)
    served = train_model.predict_frame(model, telco_frame)
    assert model.indicator_trees
    assert np.array_equal(served, train_model._predict(model.booster, train_model.apply_encoding(
        telco_frame, model.encoding)).astype(float))


def test_indicator_trees_fall_back_to_the_booster(train_model, small_model, telco_frame, monkeypatch):
    monkeypatch.setattr(train_model, "INDICATOR_MIN_ROWS", 1)
    expected = train_model._predict(small_model.booster,
                                     train_model.apply_encoding(telco_frame, small_model.encoding)).astype(float)
    # a rewrite that does not predict like the booster is not used
    monkeypatch.setattr(train_model._IndicatorTrees, "_predicts_like", lambda self, booster, encoding: False)
    model = train_model.ChurnModel(booster=small_model.booster, encoding=small_model.encoding)
    assert np.array_equal(train_model.predict_frame(model, telco_frame), expected)
    assert model.indicator_trees is False
    # nor one that fails
    monkeypatch.setattr(train_model._IndicatorTrees, "_rewrite", classmethod(lambda cls, b, e: 1 / 0))
    model = train_model.ChurnModel(booster=small_model.booster, encoding=small_model.encoding)
    assert np.array_equal(train_model.predict_frame(model, telco_frame), expected)
    assert model.indicator_trees is False
    # a wrong table is caught by the check
    monkeypatch.undo()
    trees = train_model._IndicatorTrees._rewrite(small_model.booster, small_model.encoding)
    column, name, table = trees.indicators[0]
    trees.indicators[0] = (column, name, np.where(np.isnan(table), np.nan, 1 - table).astype(np.float32))
    assert not trees._predicts_like(small_model.booster, small_model.encoding)
