"""The training script's hyperparameters: each one's default, type and valid values, and how they are
read (SM_HPS and the `--name value` arguments, as sagemaker-containers passes them); and the least
input it trains on. Standard library only: the local CLI checks a run's overrides with it before
anything is written, and `spec infer` warns of a label the script would refuse."""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import re
import sys
from typing import Any

MIN_FIT_ROWS = 1000  # smallest max_fit_rows cap
MIN_ROWS_PER_CLASS = 5  # the least training rows of each label class
MIN_SPLIT_ROWS_PER_CLASS = 2  # the least rows of each class on each side of a split (an AUC needs both)


class InputError(ValueError):
    """The training input (data or hyperparameters) is unusable; the message is shown to the operator."""


class FoldsRefused(InputError):
    """The training set cannot give `cv_folds` folds: the message says why and the most it can give. The local
    CLI finds it in the job's failure by its FORM and reports it as a refused --folds (exit code 2)."""

    FORM = re.compile(r"cv_folds=\d+: .*, so at most (?P<most>\d+) folds?\b")

    def __init__(self, folds: int, reason: str, most: int):
        super().__init__(f"cv_folds={folds}: {reason}, so at most {most} fold{'s' if most != 1 else ''}")


def _whole_number(value: Any) -> int:
    if isinstance(value, bool) or not float(value).is_integer():
        raise ValueError(value)
    return int(float(value))


def _number(value: Any) -> float:
    if not math.isfinite(float(value)):
        raise ValueError(value)
    return float(value)


def _text(value: Any) -> str:
    text = str(value).strip()
    return str(json.loads(text)) if len(text) >= 2 and text[0] == text[-1] == '"' else text  # JSON-encoded


def _column_list(value: Any) -> list[str]:
    # JSON, or str() of the decoded list as sagemaker-containers passes it (['a', 'b']): both Python literals
    names = ast.literal_eval(value) if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ValueError(value)
    return names


# name -> (default, valid, meaning). The model's defaults: repeated stratified CV on Telco's training part;
# max_fit_rows and max_cat_to_onehot (XGBoost's is 4): the 1M-row training time, prediction time and validation
# AUC (bench/README.md). The pipeline passes only the overrides and the spec's columns (churn.config).
HYPERPARAMETERS: dict[str, tuple[Any, Any, str]] = {
    "max_depth": (3, lambda v: v >= 1, "maximum tree depth, at least 1"),
    "eta": (0.03, lambda v: 0 < v <= 1, "learning rate, in (0, 1]"),
    "num_round": (2000, lambda v: v >= 1, "maximum number of boosting rounds, at least 1"),
    "early_stopping_rounds": (100, lambda v: v >= 1, "rounds without improvement on the holdout, at least 1"),
    "min_child_weight": (5.0, lambda v: v >= 0, "minimum hessian sum in a leaf, not negative"),
    "subsample": (0.8, lambda v: 0 < v <= 1, "row subsampling per tree, in (0, 1]"),
    "colsample_bytree": (0.8, lambda v: 0 < v <= 1, "column subsampling per tree, in (0, 1]"),
    "reg_lambda": (5.0, lambda v: v >= 0, "L2 regularisation on leaf weights, not negative"),
    "reg_alpha": (0.0, lambda v: v >= 0, "L1 regularisation on leaf weights, not negative"),
    "gamma": (0.0, lambda v: v >= 0, "minimum loss reduction to split, not negative"),
    "max_cat_to_onehot": (8, lambda v: v >= 1, "one-hot encoding below this many categories, at least 1"),
    "validation_fraction": (0.2, lambda v: 0 < v < 0.9, "random split: share of ids validated on, in (0, 0.9)"),
    "early_stopping_fraction": (0.2, lambda v: 0 < v < 0.9, "share of the training part early-stopped on, in (0, 0.9)"),
    "eval_metric": ("logloss", lambda v: v in ("logloss", "auc"), "early-stopping metric: logloss or auc"),
    "seed": (42, lambda v: True, "random seed for splits and subsampling"),
    "nthread": (0, lambda v: v >= 0, "XGBoost threads; 0 = 1 below 100k rows (more only synchronise), else all"),
    "id_column": ("customer_id", bool, "record identifier: not a feature; its rows stay on one side of a split"),
    "label_column": ("churn", bool, "0/1 label column"),
    "categorical_columns": ([], lambda v: True, "JSON list of the categorical features; the others are numeric"),
    "exclude_columns": ("event_time,write_time,api_invocation_time,is_deleted", lambda v: True,
                        "comma-separated columns that are never features (Feature Store bookkeeping)"),
    "time_column": ("", lambda v: True, "observation-time column (never a feature), for out_of_time validation"),
    "validation_split": ("random", lambda v: v in ("random", "out_of_time"), "random or out_of_time"),
    "validation_periods": (1, lambda v: v >= 1, "out_of_time: how many of the latest distinct times, at least 1"),
    "label_horizon_days": (0, lambda v: v >= 0, "out_of_time: days after its time a label is settled (churn = "
                           "no purchase in the next 90 days: 90); only rows settled by the first validated time "
                           "are trained on"),
    "threshold": (0.5, lambda v: 0 < v < 1, "decision threshold for accuracy/precision/recall/F1, in (0, 1)"),
    "cv_folds": (0, lambda v: v == 0 or v >= 2, "cross-validation folds before the final fit (out_of_time: by time, "
                 "rolling origin over the latest periods), 0 (off) or at least 2"),
    "max_fit_rows": (50_000, lambda v: v == 0 or v >= MIN_FIT_ROWS, "fit and early-stop on a stratified sample of "
                     f"this many training rows when there are more; 0 (no cap) or at least {MIN_FIT_ROWS}"),
}
CONVERTERS = {int: _whole_number, float: _number, str: _text, list: _column_list}


def default_params() -> dict[str, Any]:
    return {name: default for name, (default, _, _) in HYPERPARAMETERS.items()}


def parse_hyperparameters(argv: list[str] | None = None, environ: dict[str, str] | None = None
                          ) -> tuple[dict[str, Any], list[str]]:
    """Defaults <- SM_HPS (JSON) <- `--name value` arguments: the hyperparameters, and the unknown names
    given (ignored; SageMaker's own `sagemaker_*` aside)."""
    parser = argparse.ArgumentParser(prog="train_model", allow_abbrev=False, exit_on_error=False)
    for name, (default, _, meaning) in HYPERPARAMETERS.items():
        parser.add_argument(f"--{name}", help=f"{meaning} (default {default})")
    try:
        given = dict(json.loads((os.environ if environ is None else environ).get("SM_HPS") or "{}"))
        known, unknown = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    except (TypeError, ValueError, argparse.ArgumentError) as exc:
        raise InputError(f"hyperparameters: {exc}") from None
    named = {*given, *(arg[2:] for arg in unknown if arg.startswith("--"))}
    ignored = sorted(name for name in named if name not in HYPERPARAMETERS and not name.startswith("sagemaker_"))
    given.update({name: value for name, value in vars(known).items() if value is not None})
    params = default_params()
    for name in HYPERPARAMETERS.keys() & given.keys():
        default, valid, meaning = HYPERPARAMETERS[name]
        try:
            params[name] = CONVERTERS[type(default)](given[name])
        except (TypeError, ValueError, SyntaxError):
            raise InputError(f"hyperparameter {name}={given[name]!r}: not of type {type(default).__name__}") from None
        if not valid(params[name]):
            raise InputError(f"hyperparameter {name}={params[name]!r}: {meaning}")
    if params["validation_split"] == "out_of_time" and not params["time_column"]:
        raise InputError("hyperparameter validation_split=out_of_time needs time_column")
    return params, ignored
