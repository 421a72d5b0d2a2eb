"""training/serving.py as the serving container calls it (model_fn, input_fn with a str body, predict_fn,
output_fn's (body, content type)), Batch Transform's headerless requests, the encoding and contributions."""

from __future__ import annotations

import inspect
import io

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from tests.training.training_helpers import fit_small_model, to_csv_text, training_set_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(train_model, tmp_path_factory):
    """(model as model_fn loads it, the training frame)."""
    model_dir, frame = fit_small_model(train_model, tmp_path_factory.mktemp("small"), rows=800, eta=0.3,
                                       num_round=200)
    return train_model.model_fn(str(model_dir)), frame


def serve(train_model, model, body: str, content_type: str = "text/csv") -> tuple[str, str]:
    return train_model.output_fn(train_model.predict_fn(train_model.input_fn(body, content_type), model), "text/csv")


def scored(body: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(body), dtype={"customer_id": str})


def test_the_entry_point_has_the_serving_functions_with_the_toolkits_parameter_counts(train_model):
    for name, count in (("model_fn", 1), ("input_fn", 2), ("predict_fn", 2), ("output_fn", 2)):
        assert len(inspect.signature(getattr(train_model, name)).parameters) == count, name


def test_output_fn_answers_a_csv_body_and_its_content_type(train_model, served):
    model, frame = served
    columns, rows = training_set_rows(limit=25)
    body, content_type = serve(train_model, model, to_csv_text(columns, rows))  # with the label and a trailing newline
    assert content_type == "text/csv"
    assert body.startswith("customer_id,churn_probability\n") and body.endswith("\n")
    out = scored(body)
    assert out["customer_id"].tolist() == [row[0] for row in rows]
    expected = train_model.predict_frame(model, frame.iloc[:25])
    assert np.allclose(out["churn_probability"], expected, atol=5e-7)


def test_headerless_requests_are_read_by_the_models_column_order(train_model, served):
    """Batch Transform, SplitType Line: the header only in the first request."""
    model, _ = served
    columns, rows = training_set_rows(limit=90)
    scoring = [[value for name, value in zip(columns, row, strict=True) if name != "churn"] for row in rows]
    names = [name for name in columns if name != "churn"]
    whole, _ = serve(train_model, model, to_csv_text(names, scoring))
    first = to_csv_text(names, scoring[:30])
    rest = [to_csv_text(names, scoring[start:start + 30]).split("\n", 1)[1] for start in (30, 60)]
    parts = [scored(serve(train_model, model, request)[0]) for request in (first, *rest)]
    assert pd.concat(parts, ignore_index=True).equals(scored(whole))
    # without the id, and with the label after the features
    features_only = to_csv_text(names, [row[1:] for row in scoring]).split("\n", 1)[1]
    assert scored(serve(train_model, model, features_only)[0])["churn_probability"].equals(
        scored(whole)["churn_probability"])
    with_label = to_csv_text(columns, rows).split("\n", 1)[1]
    assert scored(serve(train_model, model, with_label)[0]).equals(scored(whole))
    with pytest.raises(ValueError, match="no header row and 3 columns"):
        serve(train_model, model, "a,b,c\n")


def test_a_request_with_its_columns_in_another_order_crlf_and_a_bom(train_model, served):
    model, _ = served
    columns, rows = training_set_rows(limit=20)
    frame = pd.DataFrame(rows, columns=columns).drop(columns=["churn"])
    reordered = "\ufeff" + frame[list(reversed(frame.columns))].to_csv(index=False, lineterminator="\r\n")
    assert scored(serve(train_model, model, reordered)[0]).equals(scored(serve(train_model, model, frame.to_csv(
        index=False))[0]))


@pytest.mark.parametrize("body", ["", "\n\n", "\ufeff", b"\r\n"])
def test_a_blank_request_is_answered_with_the_header_only(train_model, served, body):
    model, _ = served
    assert serve(train_model, model, body) == ("customer_id,churn_probability\n", "text/csv")


@pytest.mark.parametrize(("body", "expected"), [
    ("customer_id,gender\n1,Male\n", r"missing feature column\(s\): \['senior_citizen'"),
    (None, r"column 'tenure', row 2: 'long' is not a number"),
])
def test_unreadable_requests_are_clear_errors(train_model, served, body, expected):
    model, _ = served
    if body is None:
        columns, rows = training_set_rows(limit=3)
        rows[1][columns.index("tenure")] = "long"
        body = to_csv_text(columns, rows)
    with pytest.raises(ValueError, match="could not parse the text/csv request: " + expected):
        serve(train_model, model, body)
    with pytest.raises(ValueError, match="unsupported content type 'application/json'"):
        train_model.input_fn("{}", "application/json")


def test_unseen_categories_are_missing_and_columns_match_by_name(train_model, serving, served):
    model, frame = served
    expected = serving.predict_frame(model, frame)
    shuffled = frame.sample(frac=1.0, axis=1, random_state=7).astype(object)  # as GetRecord gives values: text
    shuffled["extra"] = "ignored"
    shuffled.loc[shuffled.index[:5], "payment_method"] = "Crypto wallet"  # never seen in training
    again = serving.predict_frame(model, shuffled)
    assert np.array_equal(again[5:], expected[5:])
    encoded = serving.encode(shuffled, model.encoding)
    assert list(encoded.columns) == [column for column, _ in serving.model_columns(model.encoding)]
    payment = [f"payment_method#{code}" for code in range(4)]  # one-hot: 4 categories, fewer than max_cat_to_onehot
    assert encoded[payment].iloc[:5].isna().all(axis=None) and (encoded[payment].iloc[5:].sum(axis=1) == 1).all()
    as_missing = shuffled.copy()
    as_missing.loc[as_missing.index[:5], "payment_method"] = None
    assert np.array_equal(serving.predict_frame(model, as_missing)[:5], again[:5])
    with pytest.raises(ValueError, match="contract"):
        serving.predict_frame(model, frame.drop(columns=["contract"]))


def test_predictions_are_the_boosters_up_to_the_best_iteration(serving, served):
    model, frame = served
    matrix = xgb.DMatrix(serving.encode(frame, model.encoding), enable_categorical=True)
    best = model.iteration_range[1]
    assert 0 < best < model.booster.num_boosted_rounds()
    assert np.allclose(serving.predict_frame(model, frame), model.booster[:best].predict(matrix), atol=1e-7)
    assert not np.allclose(serving.predict_frame(model, frame), model.booster.predict(matrix), atol=1e-4)


def test_contributions_add_up_to_the_margin(serving, served):
    model, frame = served
    one = frame.iloc[[3]]
    features, bias = serving.contributions(model, one)
    assert list(features.columns) == model.feature_names
    margin = float(features.sum(axis=1).iloc[0] + bias.iloc[0])
    assert 1 / (1 + np.exp(-margin)) == pytest.approx(float(serving.predict_frame(model, one)[0]), abs=1e-6)
