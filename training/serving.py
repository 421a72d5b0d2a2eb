"""Score customers with a trained churn model: the feature encoding training and serving share, and the
SageMaker serving functions (model_fn, input_fn, predict_fn, output_fn) the entry point re-exports.

Standard library, numpy, pandas, pyarrow and xgboost only: this runs inside the SageMaker XGBoost
container, which has nothing of this project.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import xgboost as xgb

MODEL_FILE = "model.json"
ENCODING_FILE = "encoding.json"
# 2: a categorical feature may be one-hot encoded (`one_hot`). Format 1 (every categorical feature an XGBoost
# categorical column) is still read; older serving code refuses format 2 by name instead of failing in XGBoost.
ENCODING_FORMAT_VERSION = 2
READABLE_ENCODING_FORMATS = (1, 2)
PROBABILITY_COLUMN = "churn_probability"
CSV = "text/csv"

# Column kinds: how read_csv reads a column and encode prepares it for the model.
NUMERIC = "numeric"  # float; an empty field is missing
CATEGORICAL = "categorical"  # text, compared as text ("0123" is not 123); an empty field is missing
TEXT = "text"  # kept as text, not a feature (the id)
_ARROW_TYPES = {NUMERIC: pa.float64(), CATEGORICAL: pa.dictionary(pa.int32(), pa.string()), TEXT: pa.string()}


# -- reading CSV -------------------------------------------------------------------------------------
def read_csv(source: bytes | Path, kinds: dict[str, str], names: list[str] | None = None) -> pa.Table:
    """The columns named in `kinds` of a CSV with a header row (or, without one, the column `names`).

    Every column's type comes from its kind, never from the data: pyarrow would otherwise infer a
    zip code as a number, or a type from the first block that a later block contradicts. ValueError
    (naming the column, the row and the value) when a numeric column holds something else.
    """
    def read(types: dict[str, str]) -> pa.Table:
        stream = io.BytesIO(source) if isinstance(source, bytes) else source
        return pa_csv.read_csv(
            stream, read_options=pa_csv.ReadOptions(column_names=names),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: _ARROW_TYPES[kind] for name, kind in types.items()}, include_columns=list(types),
                null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=True))

    try:
        return read(kinds)
    except pa.ArrowInvalid as exc:
        # pyarrow names neither the row nor the column of a bad number: read them as text to find it.
        numeric = [name for name, kind in kinds.items() if kind == NUMERIC]
        located = _first_non_number(read(dict.fromkeys(numeric, TEXT))) if "conversion error" in str(exc) else None
        raise ValueError(located or " ".join(str(exc).split())) from None


def _first_non_number(table: pa.Table) -> str | None:
    for name in table.column_names:
        values = table.column(name).to_pandas()
        bad = np.flatnonzero(pd.to_numeric(values, errors="coerce").isna() & values.notna())
        if len(bad):
            return f"column '{name}', row {bad[0] + 1}: {values[bad[0]]!r} is not a number"
    return None


def first_row(data: bytes) -> list[str]:
    """The fields of the first non-blank line (a header, or the first row of a headerless CSV)."""
    line = data.lstrip(b"\r\n").split(b"\n", 1)[0]
    return next(csv.reader([line.decode("utf-8-sig").rstrip("\r")]), [])


# -- the encoding ------------------------------------------------------------------------------------
def make_encoding(frame: pd.DataFrame, features: dict[str, str], id_column: str, label_column: str,
                  max_cat_to_onehot: int) -> dict[str, Any]:
    """encoding.json: the features in order, their kinds, and each categorical feature's categories (the
    values present in `frame`, sorted: a category's code is its position, stored with the model) and
    whether it is one-hot encoded: with fewer than `max_cat_to_onehot` categories, as XGBoost's own
    parameter decides between a one-hot split and a partition of the categories."""
    described = []
    for name, kind in features.items():
        feature: dict[str, Any] = {"name": name, "kind": kind}
        if kind == CATEGORICAL:
            feature["categories"] = sorted(frame[name].dropna().unique().tolist())
            feature["one_hot"] = 0 < len(feature["categories"]) < max_cat_to_onehot
        described.append(feature)
    return {"format_version": ENCODING_FORMAT_VERSION, "id_column": id_column, "label_column": label_column,
            "feature_names": list(features), "features": described}


def model_columns(encoding: dict[str, Any]) -> list[tuple[str, str]]:
    """(column of the model's input, the feature it encodes), in the model's order: a one-hot feature is a
    0/1 column per category, `<feature>#<category position>` (no feature has such a name: one_hot_clashes)."""
    columns = []
    for feature in encoding["features"]:
        name = feature["name"]
        ones = range(len(feature["categories"])) if feature.get("one_hot") else ()
        columns += [(f"{name}#{code}", name) for code in ones] or [(name, name)]
    return columns


def one_hot_clashes(features: dict[str, str]) -> dict[str, str]:
    """{feature: the categorical feature}: the features named as that one's one-hot columns would be
    (`model_columns`), two inputs of one name. The spec's names have no "#"; a training CSV's header may."""
    categorical = {name for name, kind in features.items() if kind == CATEGORICAL}
    named = {name: name.rpartition("#") for name in features}
    return {name: base for name, (base, _, code) in named.items() if base in categorical and code.isdigit()}


def encode(frame: pd.DataFrame, encoding: dict[str, Any]) -> pd.DataFrame:
    """The model's input (`model_columns`), from the features in any order (other columns ignored):
    numbers as float; a one-hot feature as a 0/1 column per training category, every one of them missing
    where the value is missing or a category training never saw; any other categorical feature as a
    pandas Categorical of exactly the training categories (an unseen one is missing). XGBoost predicts
    its numeric splits several times faster than its categorical ones (bench/README.md)."""
    absent = [name for name in encoding["feature_names"] if name not in frame.columns]
    if absent:
        raise ValueError(f"missing feature column(s): {absent}")
    names = [column for column, _ in model_columns(encoding)]
    # One float block, filled column by column: a frame built from separate columns copies them all once more.
    values = np.empty((len(frame), len(names)), dtype=np.float32, order="F")
    partitioned, at = {}, 0
    for feature in encoding["features"]:
        name, column = feature["name"], frame[feature["name"]]
        width = len(feature["categories"]) if feature.get("one_hot") else 1
        if feature["kind"] != CATEGORICAL:
            try:
                values[:, at] = pd.to_numeric(column)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"feature '{name}': {exc}") from None
        elif not feature["categories"]:  # no value in the training rows: always missing (XGBoost takes no
            values[:, at] = np.nan  # categorical feature without categories)
        elif feature.get("one_hot"):
            codes = _categorical(column, feature["categories"]).cat.codes.to_numpy()
            values[:, at:at + width] = codes[:, np.newaxis] == np.arange(width)
            values[np.flatnonzero(codes < 0), at:at + width] = np.nan
        else:
            partitioned[name] = _categorical(column, feature["categories"])
        at += width
    encoded = pd.DataFrame(values, index=frame.index, columns=names, copy=False)
    for name, categorical in partitioned.items():
        encoded[name] = categorical
    return encoded


def _categorical(column: pd.Series, categories: list[str]) -> pd.Series:
    if isinstance(column.dtype, pd.CategoricalDtype):  # as read_csv reads it: recode the few categories only
        return column.cat.set_categories(categories)
    text = column.where(column.isna(), column.astype(str))  # e.g. JSON numbers: compared as text
    return pd.Series(pd.Categorical(text, categories=categories), index=column.index)


# -- the model ---------------------------------------------------------------------------------------
class ChurnModel(NamedTuple):
    """What model_fn returns: the booster (every tree early stopping built) and the encoding."""

    booster: xgb.Booster
    encoding: dict[str, Any]

    @property
    def feature_names(self) -> list[str]:
        return list(self.encoding["feature_names"])

    @property
    def iteration_range(self) -> tuple[int, int]:
        """The trees up to early stopping's best iteration (kept in model.json); (0, 0) = all."""
        best = self.booster.attr("best_iteration")
        return (0, int(best) + 1) if best is not None else (0, 0)


def save_model(model_dir: Path, model: ChurnModel) -> None:
    model.booster.save_model(str(Path(model_dir) / MODEL_FILE))
    (Path(model_dir) / ENCODING_FILE).write_text(json.dumps(model.encoding, indent=2) + "\n", encoding="utf-8")


def load_model(model_dir: str | Path) -> ChurnModel:
    booster = xgb.Booster()
    booster.load_model(str(Path(model_dir) / MODEL_FILE))
    encoding = json.loads((Path(model_dir) / ENCODING_FILE).read_text(encoding="utf-8"))
    if encoding.get("format_version") not in READABLE_ENCODING_FORMATS:
        raise ValueError(f"{model_dir}: unsupported encoding format {encoding.get('format_version')!r}")
    return ChurnModel(booster, encoding)


def predict_frame(model: ChurnModel, frame: pd.DataFrame) -> np.ndarray:
    """Churn probabilities for a frame of features by name (any order; other columns ignored)."""
    if len(frame) == 0:
        return np.zeros(0)
    features = encode(frame, model.encoding)
    return model.booster.inplace_predict(features, iteration_range=model.iteration_range).astype(float)


def contributions(model: ChurnModel, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """(per-feature contributions to each row's log-odds, the bias): `features.sum(axis=1) + bias` is the
    margin. A one-hot feature's contribution is its columns' sum."""
    matrix = xgb.DMatrix(encode(frame, model.encoding), enable_categorical=True)
    values = model.booster.predict(matrix, pred_contribs=True, iteration_range=model.iteration_range)
    columns = pd.DataFrame(values[:, :-1].T, index=[feature for _, feature in model_columns(model.encoding)])
    features = columns.groupby(level=0, sort=False).sum().T.set_axis(frame.index)
    return features[model.feature_names], pd.Series(values[:, -1], index=frame.index, name="bias")


# -- the SageMaker serving functions (the toolkit calls them by their parameter counts) -----------------
model_fn = load_model


def input_fn(request_body, request_content_type):
    """A text/csv body, kept as it is: predict_fn reads it, as it needs the model's column order for a
    request without a header row (Batch Transform's SplitType Line sends the header in the first only)."""
    if (request_content_type or CSV).split(";")[0].strip().lower() != CSV:
        raise ValueError(f"unsupported content type {request_content_type!r}: use text/csv")
    return request_body


def predict_fn(input_data, model):
    """`<id column>,churn_probability` for every row of the request, in order (no id column: empty ids)."""
    try:
        frame = read_request(input_data, model.encoding)
    except (ValueError, csv.Error) as exc:
        raise ValueError(f"could not parse the text/csv request: {' '.join(str(exc).split())}") from None
    id_column = model.encoding["id_column"]
    ids = frame[id_column].to_numpy() if id_column in frame.columns else None
    return pd.DataFrame({id_column: ids, PROBABILITY_COLUMN: predict_frame(model, frame)})


def output_fn(prediction, accept):
    """(body, content type): the container sends a typed response only for this tuple (a bare str is
    answered as text/html)."""
    # str.format per value: to_csv's float_format goes through several layers of pandas for each one.
    probabilities = prediction[PROBABILITY_COLUMN].map("{:.6f}".format)
    return prediction.assign(**{PROBABILITY_COLUMN: probabilities}).to_csv(index=False, lineterminator="\n"), CSV


def read_request(body: str | bytes, encoding: dict[str, Any]) -> pd.DataFrame:
    """The rows of a CSV request: with a header row (columns by name, any order, others ignored), or
    without one (by position, in the training set's shape: [id,] features[, label])."""
    data = (body.encode("utf-8") if isinstance(body, str) else bytes(body)).removeprefix(codecs.BOM_UTF8)
    id_column, label_column, features = encoding["id_column"], encoding["label_column"], encoding["feature_names"]
    kinds = {id_column: TEXT, **{feature["name"]: feature["kind"] for feature in encoding["features"]}}
    if not data.strip():
        return pd.DataFrame(columns=list(kinds))
    first = first_row(data)
    names = None
    if not set(first) & {*kinds, label_column}:
        layouts = {len(layout): layout for layout in (features, [id_column, *features],
                                                      [id_column, *features, label_column])}
        if len(first) not in layouts:
            raise ValueError(f"no header row and {len(first)} columns; expected a header, or the "
                             f"{len(features)} features, optionally after the id and before the label")
        first = names = layouts[len(first)]
    absent = [name for name in features if name not in first]
    if absent:
        raise ValueError(f"missing feature column(s): {absent}")
    return read_csv(data, {name: kind for name, kind in kinds.items() if name in first}, names).to_pandas()
