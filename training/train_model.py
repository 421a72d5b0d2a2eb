"""Train the churn model: the SageMaker script-mode entry point (XGBoost 3.2-0 container). Training runs
`python -m train_model --max_depth 3 ...`; serving imports this module for the model_fn, input_fn,
predict_fn and output_fn it re-exports from serving.py.

- input: every *.csv under SM_CHANNEL_TRAIN, with a header row; an empty field is missing. A feature is
  categorical when `categorical_columns` names it (the spec's String features), else numeric: its kind
  never comes from the data, so a zip code "0123" stays the text "0123". Below `max_cat_to_onehot`
  categories it is one-hot encoded (serving.encode), else an XGBoost categorical column.
- honest evaluation: the validation rows (a stratified share of the ids, or the latest periods) are
  never fitted or early-stopped on; early stopping has its own holdout in the training part. Cross-validation
  (cv_folds) folds as the validation splits: stratified by id, or by time (time_splits.py).
- outputs: SM_MODEL_DIR/{model.json, encoding.json, evaluation.json}, SM_OUTPUT_DATA_DIR/{evaluation.json,
  report.png[, cv.json]}, metric lines on stdout; on bad input a one-line error, <SM_OUTPUT_DIR>/failure
  and exit code 1.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import report
import xgboost as xgb
from hyperparameters import (
    MIN_ROWS_PER_CLASS,
    FoldsRefused,
    InputError,
    parse_hyperparameters,
)
from serving import (
    CATEGORICAL,
    NUMERIC,
    TEXT,
    ChurnModel,
    encode,
    first_row,
    input_fn,  # noqa: F401 - the serving container looks for the serving functions in this module
    make_encoding,
    model_columns,
    model_fn,  # noqa: F401
    one_hot_clashes,
    output_fn,  # noqa: F401
    predict_fn,  # noqa: F401
    predict_frame,
    read_csv,
    save_model,
)
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split
from time_splits import lacks_a_class, observation_periods, out_of_time_split, rolling_origin_folds

EVALUATION_FILE = "evaluation.json"
CV_FILE = "cv.json"
REPORT_FILE = "report.png"
MIN_ROWS = 20


def log(message: str, stream: Any = None) -> None:
    # sys.stdout as it is when called: a process that imported this module (the local run preloads it
    # for scoring) may have replaced it since
    print(f"[train_model] {message}", file=stream or sys.stdout, flush=True)


def warn(message: str) -> None:
    log(f"WARNING: {message}", sys.stderr)


def resolve_threads(params: dict[str, Any], rows: int) -> dict[str, Any]:
    """`nthread` 0 -> 1 below 100k rows (OpenMP threads on fewer rows mostly wait for each other, and are
    very slow when the CPUs are shared), else every CPU. `rows`: the rows fitted (or predicted)."""
    if params["nthread"] > 0:
        return params
    return {**params, "nthread": 1 if rows < 100_000 else (os.cpu_count() or 1)}


def fit_settings(params: dict[str, Any], train_rows: int) -> dict[str, Any]:
    """The settings a fit on `train_rows` rows runs with: threads for the rows it fits (max_fit_rows at most)."""
    return resolve_threads(params, min(train_rows, params["max_fit_rows"] or train_rows))


def xgb_params(params: dict[str, Any]) -> dict[str, Any]:
    # eval_metric: only the early-stopping metric, on the holdout only (more metrics each round only cost time)
    names = ("eval_metric", "max_depth", "eta", "min_child_weight", "subsample", "colsample_bytree", "reg_lambda",
             "reg_alpha", "gamma", "max_cat_to_onehot", "seed", "nthread")
    return {"objective": "binary:logistic", "tree_method": "hist", "verbosity": 1,
            **{name.removeprefix("reg_"): params[name] for name in names}}


# -- input -------------------------------------------------------------------------------------------
def column_kinds(header: list[str], params: dict[str, Any]) -> dict[str, str]:
    """How to read each column of a training file (excluded columns are not read)."""
    kept = {params["id_column"], params["label_column"], params["time_column"]}
    excluded = {name.strip() for name in params["exclude_columns"].split(",")} - kept
    for name in (params["label_column"], *params["categorical_columns"], params["time_column"]):
        if name and name not in header:
            raise InputError(f"column '{name}' is missing (columns: {header})")
    return {name: TEXT if name in kept else CATEGORICAL if name in params["categorical_columns"] else NUMERIC
            for name in header if name not in excluded}


def read_training_data(channel: Path, params: dict[str, Any]) -> tuple[pd.DataFrame, str]:
    """Every *.csv of the channel, concatenated, and a name for it in messages."""
    files = sorted(path for path in Path(channel).rglob("*.csv") if path.is_file())
    if not files:
        raise InputError(f"no *.csv file in the training channel {channel}")
    parts: list[tuple[str, pa.Table]] = []  # (file name, its table)
    for path in files:
        with open(path, "rb") as stream:  # the header is the first line that is not empty, as pyarrow reads it
            header = first_row(next((line for line in stream if line.strip(b"\r\n")), b""))
        try:
            table = read_csv(path, column_kinds(header, params)) if header else None
        except ValueError as exc:
            raise InputError(f"{path.name}: {exc}") from None
        if table is None or not table.num_rows:
            warn(f"{path.name}: no rows, skipped")
        elif parts and set(table.column_names) != set(parts[0][1].column_names):
            raise InputError(f"{path.name}: columns {table.column_names} differ from {parts[0][0]}'s")
        else:
            parts.append((path.name, table.select((parts[0][1] if parts else table).column_names)))
    source = files[0].name if len(files) == 1 else f"{len(files)} files in {channel}"
    if not parts:
        raise InputError(f"{source}: no data")
    frame = pa.concat_tables(table for _, table in parts).to_pandas()  # the categories of every file, unified
    if len(parts) > 1:  # for a message that names a row: its file
        frame.attrs["files"] = [(name, table.num_rows) for name, table in parts]
    log(f"read {len(frame)} rows x {frame.shape[1]} columns from {', '.join(path.name for path in files)}")
    return frame, source


class Data(NamedTuple):
    """The training set: raw frame, 0/1 labels, each row's id as an integer code (its row number without
    an id column)."""

    frame: pd.DataFrame
    labels: np.ndarray
    ids: np.ndarray
    features: dict[str, str]  # name -> kind, in column order
    source: str


def prepare(frame: pd.DataFrame, params: dict[str, Any], source: str) -> Data:
    name = params["label_column"]
    numbers = pd.to_numeric(frame[name], errors="coerce")
    bad = np.flatnonzero(~numbers.isin([0, 1]))
    if len(bad):
        raise InputError(f"{source}: label '{name}' must be 0 or 1; {len(bad)} row(s) are not "
                         f"(the first: {_row(frame, bad[0])}, {frame[name].iloc[bad[0]]!r})")
    counts = np.bincount(numbers.to_numpy(dtype=int), minlength=2)
    if len(frame) < MIN_ROWS:
        raise InputError(f"{source}: only {len(frame)} row(s); at least {MIN_ROWS} are needed")
    if counts.min() < MIN_ROWS_PER_CLASS:
        only = " (one class only)" if not counts.min() else ""
        raise InputError(f"{source}: label '{name}' has {counts.min()} row(s) of class {np.argmin(counts)}{only}; "
                         f"at least {MIN_ROWS_PER_CLASS} per class are needed")
    not_features = {params["id_column"], name, params["time_column"]}
    features = {column: CATEGORICAL if isinstance(frame[column].dtype, pd.CategoricalDtype) else NUMERIC
                for column in frame.columns if column not in not_features}
    if not features:
        raise InputError(f"{source}: no feature columns (columns: {list(frame.columns)})")
    for column, feature in one_hot_clashes(features).items():
        raise InputError(f"{source}: column '{column}' is named as a one-hot column of the categorical feature "
                         f"'{feature}' (<feature>#<n>): rename it")
    for column in (c for c in features if set(c) & set("[]<")):  # XGBoost's feature-name rule
        raise InputError(f"{source}: column '{column}' has a character XGBoost refuses in a feature name ([ ] <): "
                         "rename it")
    for column in (c for c in features if frame[c].isna().all()):
        warn(f"feature '{column}' has no value in any row (e.g. every observation precedes its group's first "
             "version): the model cannot use it")
    # Splits only compare ids: hashed once here, as integer codes (each split hashed the id texts again).
    ids = pd.factorize(frame[params["id_column"]])[0] if params["id_column"] in frame.columns else np.arange(len(frame))
    if len(pd.unique(ids)) < len(ids):
        log(f"ids repeat in '{params['id_column']}': each id's rows stay on one side of every split")
    return Data(frame, numbers.to_numpy(dtype=int), ids, features, source)


def _row(frame: pd.DataFrame, index: int) -> str:
    """'row N' of the data (1: the first after the header), and its file when the frame joins several."""
    for name, rows in frame.attrs.get("files", ()):
        if index < rows:
            return f"row {index + 1} of {name}"
        index -= rows
    return f"row {index + 1}"


# -- splits ------------------------------------------------------------------------------------------
def split_rows(data: Data, rows: np.ndarray, size: float | int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out): `size` of the ids of `rows` (a fraction or a count) held out, stratified by label
    (an id's largest), every row of an id on one side. With one row per id this is sklearn's stratified
    train_test_split of the rows."""
    entity, _ = pd.factorize(data.ids[rows])
    entity_labels = np.zeros(entity.max() + 1, dtype=int)
    np.maximum.at(entity_labels, entity, data.labels[rows])
    _, held = train_test_split(np.arange(len(entity_labels)), test_size=size, random_state=seed,
                               stratify=entity_labels)
    out = np.isin(entity, held)
    return rows[~out], rows[out]


def validation_split(data: Data, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    rows = np.arange(len(data.labels))
    if params["validation_split"] == "out_of_time":
        periods = observation_periods(data.frame, params, data.source)
        trained, validated, split = out_of_time_split(periods, params["validation_periods"], data.source)
        train_rows, validation_rows = rows[trained], rows[validated]
    else:
        train_rows, validation_rows = split_rows(data, rows, params["validation_fraction"], params["seed"])
        split = {"kind": "random", "validation_fraction": params["validation_fraction"],
                 "ids": len(pd.unique(data.ids)), "id_column": params["id_column"]}
    for part, rows in (("validation", validation_rows), ("training", train_rows)):
        if lacks_a_class(data.labels[rows]):
            raise InputError(f"{data.source}: the {part} part of the split has too few rows of a class")
    return train_rows, validation_rows, split


# -- fitting -----------------------------------------------------------------------------------------
class Fit(NamedTuple):
    model: ChurnModel
    fit_rows: np.ndarray
    es_rows: np.ndarray
    fit_probabilities: np.ndarray
    es_probabilities: np.ndarray


def fit(data: Data, rows: np.ndarray, params: dict[str, Any]) -> Fit:
    """Fit on `rows` (a stratified sample of max_fit_rows of them when there are more): the encoding from
    the fit rows, early stopping on a holdout carved out of `rows`."""
    used = rows
    if params["max_fit_rows"] and len(rows) > params["max_fit_rows"]:
        ids = len(pd.unique(data.ids[rows]))
        used, _ = split_rows(data, rows, ids - ids * params["max_fit_rows"] // len(rows), params["seed"])
    fit_rows, es_rows = split_rows(data, used, params["early_stopping_fraction"], params["seed"])
    encoding = make_encoding(data.frame.iloc[fit_rows], data.features, params["id_column"], params["label_column"],
                             params["max_cat_to_onehot"])

    def matrix(part: np.ndarray) -> xgb.DMatrix:
        return xgb.DMatrix(encode(data.frame.iloc[part], encoding), label=data.labels[part],
                           enable_categorical=True, nthread=params["nthread"])

    dfit, des = matrix(fit_rows), matrix(es_rows)
    booster = xgb.train(xgb_params(params), dfit, num_boost_round=params["num_round"], evals=[(des, "es_holdout")],
                        early_stopping_rounds=params["early_stopping_rounds"], verbose_eval=False)
    model = ChurnModel(booster, encoding)
    fit_probabilities, es_probabilities = (booster.predict(part, iteration_range=model.iteration_range)
                                           for part in (dfit, des))
    return Fit(model, fit_rows, es_rows, fit_probabilities, es_probabilities)


def predict_rows(model: ChurnModel, data: Data, rows: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    model.booster.set_param({"nthread": resolve_threads(params, len(rows))["nthread"]})  # not saved in model.json
    return predict_frame(model, data.frame.iloc[rows])


def cv_folds(data: Data, params: dict[str, Any]) -> tuple[list[tuple[np.ndarray, np.ndarray, dict]], dict]:
    """The folds as (trained rows, validated rows, the periods a time fold validates and trains on), and how
    they were made: as the validation split, by time (rolling origin by observation period) for out_of_time,
    else stratified by label, every row of an id in one fold."""
    folds, rows = params["cv_folds"], np.arange(len(data.labels))
    if params["validation_split"] == "out_of_time":
        periods = observation_periods(data.frame, params, data.source)
        folding = {"kind": "rolling_origin", "time_column": periods.column, "label_horizon_days": periods.horizon}
        return [(rows[trained], rows[validated], {key: part for key, part in split.items() if key.endswith("_periods")})
                for trained, validated, split in rolling_origin_folds(periods, data.labels, folds)], folding
    smaller = int(np.bincount(data.labels, minlength=2).min())
    if folds > smaller:  # stratified: every fold needs a row of each class
        raise FoldsRefused(folds, f"the training set's smaller class has {smaller} rows", smaller)
    grouped = len(pd.unique(data.ids)) < len(rows)
    splitter = (StratifiedGroupKFold if grouped else StratifiedKFold)(folds, shuffle=True, random_state=params["seed"])
    folding = {"kind": "stratified", "id_column": params["id_column"]}
    groups = data.ids if grouped else None  # StratifiedKFold warns that it ignores groups
    return [(train, test, {}) for train, test in splitter.split(data.frame, data.labels, groups)], folding


def cross_validate(data: Data, params: dict[str, Any]) -> dict[str, Any]:
    """K-fold CV of the whole fitting procedure (each fold fits its own encoding and early-stops on its own
    holdout, as the final fit does): per-fold AUCs and best iterations, mean and std."""
    folds, folding = cv_folds(data, params)
    results = []
    for number, (train_rows, test_rows, periods) in enumerate(folds, start=1):
        result = fit(data, train_rows, fit_settings(params, len(train_rows)))
        probabilities = predict_rows(result.model, data, test_rows, params)
        results.append({"fold": number, "auc": report.auc(data.labels[test_rows], probabilities),
                        "best_iteration": result.model.iteration_range[1] - 1, "test_rows": len(test_rows),
                        "fit_and_early_stopping_rows": len(result.fit_rows) + len(result.es_rows), **periods})
    aucs = np.array([r["auc"] for r in results])
    return {"folds": params["cv_folds"], "folding": folding, "seed": params["seed"], "auc_mean": float(aucs.mean()),
            "auc_std": float(aucs.std(ddof=1)), "aucs": aucs.tolist(), "fold_results": results}


def train(data: Data, params: dict[str, Any], split: tuple[np.ndarray, np.ndarray, dict[str, Any]] | None = None
          ) -> tuple[Fit, dict[str, Any], tuple[np.ndarray, np.ndarray]]:
    """Split (unless given the validation split), fit, evaluate: the fit, evaluation.json's content, the
    validation labels and probabilities."""
    started = time.perf_counter()
    train_rows, validation_rows, split_description = split or validation_split(data, params)
    settings = fit_settings(params, len(train_rows))
    result = fit(data, train_rows, settings)
    probabilities = predict_rows(result.model, data, validation_rows, params)
    labels, booster, trees = data.labels, result.model.booster, result.model.iteration_range[1]
    validation = report.classification_metrics(labels[validation_rows], probabilities, settings["threshold"])
    used = np.concatenate([result.fit_rows, result.es_rows])
    parts = {"total": np.arange(len(labels)), "train": result.fit_rows, "early_stopping": result.es_rows,
             "validation": validation_rows}
    sampling = {"max_fit_rows": settings["max_fit_rows"], "sampled": len(used) < len(train_rows),
                "training_part_rows": len(train_rows), "fit_and_early_stopping_rows": len(used)}
    if sampling["sampled"]:
        parts["not_used"] = np.setdiff1d(train_rows, used)
        sampling["note"] = (f"the training part ({len(train_rows)} rows) is larger than max_fit_rows: fitting and "
                            f"early stopping used a stratified sample of {len(used)} of its rows, the other "
                            f"{len(parts['not_used'])} were not used; the validation metrics use every held-out row")
        log(f"max_fit_rows={settings['max_fit_rows']}: {sampling['note']}")
    evaluation = {
        "validation_auc": validation["auc"], **{key: validation[key] for key in report.SUMMARY},
        "train_auc": report.auc(labels[result.fit_rows], result.fit_probabilities),
        "early_stopping_auc": report.auc(labels[result.es_rows], result.es_probabilities),
        "best_iteration": trees - 1, "num_trees": trees, "threshold": settings["threshold"],
        "validation": validation, "confusion_matrix": validation["confusion_matrix"],
        # of the trees the model uses (sliced for this only: a slice drops the categories XGBoost stores)
        "feature_importance": report.feature_importance(booster[:trees], model_columns(result.model.encoding)),
        "row_counts": {name: {"rows": len(rows), "positives": int(labels[rows].sum())} for name, rows in parts.items()},
        "sampling": sampling, "features": result.model.encoding["features"], "hyperparameters": settings,
        "xgboost_params": xgb_params(settings), "xgboost_version": xgb.__version__, "source": data.source,
        "roc_curve": report.roc_points(labels[validation_rows], probabilities), "split": split_description,
        "training_seconds": round(time.perf_counter() - started, 3),
    }
    return result, evaluation, (labels[validation_rows], probabilities)


# -- the entry point ---------------------------------------------------------------------------------
def sagemaker_dirs(environ: Any) -> dict[str, Path]:
    output_data = Path(environ.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"))
    return {"train": Path(environ.get("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train")),
            "model": Path(environ.get("SM_MODEL_DIR", "/opt/ml/model")), "output_data": output_data,
            "output": Path(environ.get("SM_OUTPUT_DIR") or output_data.parent)}


def write_json(path: Path, content: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2, default=lambda value: value.item()) + "\n", encoding="utf-8")


def run(argv: list[str] | None = None) -> dict[str, Any]:
    params, ignored = parse_hyperparameters(argv)
    if ignored:
        warn(f"ignoring unknown hyperparameter(s): {', '.join(ignored)}")
    dirs = sagemaker_dirs(os.environ)
    log(f"xgboost {xgb.__version__}, pandas {pd.__version__}; hyperparameters {json.dumps(params, sort_keys=True)}")
    frame, source = read_training_data(dirs["train"], params)
    data = prepare(frame, params, source)
    split = validation_split(data, params)  # a split the data cannot give fails before any fold is fitted
    cv = cross_validate(data, params) if params["cv_folds"] else None
    if cv:
        write_json(dirs["output_data"] / CV_FILE, cv)
        log(f"{cv['folds']}-fold CV ({cv['folding']['kind']}) AUCs: {', '.join(f'{auc:.4f}' for auc in cv['aucs'])}")
        print(f"cv-auc-mean:{cv['auc_mean']:.6f}\ncv-auc-std:{cv['auc_std']:.6f}", flush=True)
    result, evaluation, validation = train(data, params, split)
    if cv:
        evaluation.update(cv={key: value for key, value in cv.items() if key != "seed"},  # the seed: in hyperparameters
                          cv_auc_mean=cv["auc_mean"], cv_auc_std=cv["auc_std"])
    dirs["model"].mkdir(parents=True, exist_ok=True)
    save_model(dirs["model"], result.model)
    for folder in ("model", "output_data"):
        write_json(dirs[folder] / EVALUATION_FILE, evaluation)
    try:
        report.write_report(dirs["output_data"] / REPORT_FILE, *validation, evaluation)
    except Exception as exc:  # noqa: BLE001 - the report is a convenience; the model is already saved
        warn(f"could not write {REPORT_FILE}: {exc}")
    rows = ", ".join(f"{name} {part['rows']}" for name, part in evaluation["row_counts"].items())
    log(f"rows: {rows}; best iteration {evaluation['best_iteration']}; {evaluation['training_seconds']} s")
    print("\n".join(report.metric_lines(evaluation)), flush=True)
    return evaluation


def main(argv: list[str] | None = None) -> int:
    try:
        run(argv)
        return 0
    except InputError as exc:
        message = f"Training input error: {' '.join(str(exc).split())}"
    except Exception as exc:  # noqa: BLE001 - report any failure to SageMaker, then exit non-zero
        traceback.print_exc()
        message = f"Training failed: {type(exc).__name__}: {' '.join(str(exc).split())}"
    print(f"ERROR: {message}", file=sys.stderr, flush=True)
    output = sagemaker_dirs(os.environ)["output"]
    try:
        output.mkdir(parents=True, exist_ok=True)
        (output / "failure").write_text(message + "\n", encoding="utf-8")
    except OSError as exc:
        warn(f"could not write the failure file in {output}: {exc}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
