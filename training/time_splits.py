"""Out-of-time splits by observation period: the time column's periods in order, the label-horizon rule
(an earlier period is trained on only when its labels were settled by the validated period's start), and
the two splits that apply it: the validation split and the rolling-origin cross-validation folds."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from hyperparameters import MIN_SPLIT_ROWS_PER_CLASS, FoldsRefused, InputError

Split = tuple[np.ndarray, np.ndarray, dict[str, Any]]  # (trained row mask, validated row mask, its description)


class Periods(NamedTuple):
    """A training set's observation periods: each row's time, the distinct times earliest first and, with a
    label horizon, those as UTC moments."""

    column: str
    horizon: int  # label_horizon_days
    times: pd.Series
    ordered: pd.Series
    moments: pd.Series | None


def observation_periods(frame: pd.DataFrame, params: dict[str, Any], source: str) -> Periods:
    """The distinct times of time_column, earliest first: as numbers when every one is a number, else as text
    (as ISO 8601 dates and times order)."""
    column, horizon = params["time_column"], params["label_horizon_days"]
    times = frame[column]
    if times.isna().any():
        raise InputError(f"{source}: {int(times.isna().sum())} row(s) have no time in '{column}'")
    distinct = pd.Series(times.unique())
    numbers = pd.to_numeric(distinct, errors="coerce")
    ordered = np.argsort((numbers if numbers.notna().all() else distinct).to_numpy(), kind="stable")
    moments = _moments(numbers, distinct, column, source).iloc[ordered].reset_index(drop=True) if horizon else None
    return Periods(column, horizon, times, distinct.iloc[ordered].reset_index(drop=True), moments)


def _moments(numbers: pd.Series, times: pd.Series, column: str, source: str) -> pd.Series:
    """Each time as a UTC moment: a number is unix seconds, a text ISO 8601 (Feature Store's event times)."""
    if numbers.notna().all():
        return pd.to_datetime(numbers, unit="s", utc=True)
    moments = pd.to_datetime(times, utc=True, format="ISO8601", errors="coerce")
    if moments.isna().any():
        raise InputError(f"{source}: '{column}' holds {times[moments.isna()].iloc[0]!r}, neither a number of "
                         "seconds nor an ISO 8601 time")
    return moments


def settled_before(periods: Periods, start: int) -> np.ndarray:
    """Which periods before the `start`-th have their labels settled by its time: `label_horizon_days` after
    their own (0: a label is known when it is observed). The others' labels overlap the later period's."""
    if not periods.horizon:
        return np.ones(start, dtype=bool)
    moments = periods.moments
    return (moments.iloc[:start] + pd.Timedelta(days=periods.horizon) <= moments.iloc[start]).to_numpy()


def period_split(periods: Periods, start: int, stop: int) -> Split:
    """Validate the periods start..stop-1, train on the earlier ones settled by the `start`-th (at least one
    must be), leave out the others."""
    validated, earlier = periods.ordered.iloc[start:stop], periods.ordered.iloc[:start]
    settled = settled_before(periods, start)

    def described(part: pd.Series) -> dict[str, Any]:
        return {"first": str(part.iloc[0]), "last": str(part.iloc[-1]), "count": len(part)}

    split = {"kind": "out_of_time", "time_column": periods.column, "train_periods": described(earlier[settled]),
             "validation_periods": described(validated)}
    if periods.horizon:
        split["label_horizon_days"] = periods.horizon
    if not settled.all():
        split["unsettled_periods"] = described(earlier[~settled])
    return periods.times.isin(earlier[settled]).to_numpy(), periods.times.isin(validated).to_numpy(), split


def out_of_time_split(periods: Periods, count: int, source: str) -> Split:
    """The validation split: the latest `count` periods validated, the earlier ones settled by then trained on."""
    if len(periods.ordered) <= count:
        raise InputError(f"{source}: '{periods.column}' has {len(periods.ordered)} distinct time(s); out_of_time "
                         f"validation on the latest {count} needs at least {count + 1}")
    start = len(periods.ordered) - count
    if not settled_before(periods, start).any():
        raise InputError(f"{source}: no '{periods.column}' time before {periods.ordered.iloc[start]} has its label "
                         f"settled by then (label_horizon_days={periods.horizon}); validate on fewer periods, or "
                         "add earlier ones")
    return period_split(periods, start, len(periods.ordered))


def rolling_origin_folds(periods: Periods, labels: np.ndarray, folds: int) -> list[Split]:
    """Cross-validation folds by time (an expanding window): fold k validates the k-th of the latest `folds`
    periods, one each, earliest first, and trains on the earlier periods settled by its start."""
    count = len(periods.ordered)
    for usable, start in enumerate(range(count - 1, count - folds - 1, -1)):
        problem = _fold_problem(periods, labels, start)
        if problem:
            raise FoldsRefused(folds, f"rolling-origin folds validate the latest {folds} periods of "
                               f"'{periods.column}', one each, and {problem}", usable)
    return [period_split(periods, start, start + 1) for start in range(count - folds, count)]


def _fold_problem(periods: Periods, labels: np.ndarray, start: int) -> str:
    """Why the `start`-th period cannot be a fold's validation (no period to train on, a part without a
    class), or ''. The earliest period has no period before it to train on."""
    period = periods.ordered.iloc[start]
    if not settled_before(periods, start).any():
        return (f"no period before {period} has its labels settled by then (label_horizon_days={periods.horizon})"
                if start else f"{period} is the earliest")
    trained, validated, _ = period_split(periods, start, start + 1)
    for rows, part in ((validated, f"{period} has"), (trained, f"the periods trained on for {period} have")):
        if lacks_a_class(labels[rows]):
            return f"{part} fewer than {MIN_SPLIT_ROWS_PER_CLASS} rows of a class"
    return ""


def lacks_a_class(labels: np.ndarray) -> bool:
    """Whether one side of a split has fewer than MIN_SPLIT_ROWS_PER_CLASS rows of a class (an AUC needs both)."""
    return bool(np.bincount(labels, minlength=2).min() < MIN_SPLIT_ROWS_PER_CLASS)
