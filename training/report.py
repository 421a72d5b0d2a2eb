"""What a training run reports: validation metrics, feature importances, the metric lines SageMaker
reads from the log, and report.png (ROC curve, importances, confusion matrix)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb
from sklearn import metrics as skm

SUMMARY = ("pr_auc", "log_loss", "accuracy", "precision", "recall", "f1")  # also top-level in evaluation.json


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, Any]:
    predicted = (probabilities >= threshold).astype(int)
    tn, fp, fn, tp = (int(v) for v in skm.confusion_matrix(labels, predicted, labels=[0, 1]).ravel())
    return {
        "auc": float(skm.roc_auc_score(labels, probabilities)),
        "pr_auc": float(skm.average_precision_score(labels, probabilities)),
        "log_loss": float(skm.log_loss(labels, probabilities, labels=[0, 1])),
        "brier": float(skm.brier_score_loss(labels, probabilities)),
        "accuracy": float(skm.accuracy_score(labels, predicted)),
        "precision": float(skm.precision_score(labels, predicted, zero_division=0)),
        "recall": float(skm.recall_score(labels, predicted, zero_division=0)),
        "f1": float(skm.f1_score(labels, predicted, zero_division=0)),
        "threshold": threshold,
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp, "matrix": [[tn, fp], [fn, tp]],
                             "rows": "actual (0, 1)", "columns": "predicted (0, 1)"},
    }


def auc(labels: np.ndarray, probabilities: np.ndarray) -> float:
    return float(skm.roc_auc_score(labels, probabilities))


def roc_points(labels: np.ndarray, probabilities: np.ndarray, points: int = 101) -> dict[str, list[float]]:
    """The ROC curve thinned to about `points` points (evaluation.json's `roc_curve`)."""
    fpr, tpr, _ = skm.roc_curve(labels, probabilities)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(points, len(fpr))).round().astype(int))
    return {"fpr": [round(float(v), 5) for v in fpr[keep]], "tpr": [round(float(v), 5) for v in tpr[keep]]}


def feature_importance(booster: xgb.Booster, columns: list[tuple[str, str]]) -> dict[str, dict[str, float]]:
    """Per feature: splits (weight), their total gain and average gain; a one-hot feature's over its
    columns. `columns`: (model input column, feature) pairs."""
    totals: dict[str, dict[str, float]] = {"total_gain": {}, "weight": {}}
    for kind, total in totals.items():
        score = booster.get_score(importance_type=kind)
        for column, feature in columns:
            total[feature] = total.get(feature, 0.0) + float(score.get(column, 0.0))
    gain = {name: total / weight if weight else 0.0
            for (name, total), weight in zip(totals["total_gain"].items(), totals["weight"].values(), strict=True)}
    return {"gain": gain, **totals}


def metric_lines(evaluation: dict[str, Any]) -> list[str]:
    """`name:value` lines for the training job's metric definitions (one per line, no tabs)."""
    validation = evaluation["validation"]
    names = {"auc": "auc", "aucpr": "pr_auc", "logloss": "log_loss", **{key: key for key in SUMMARY[2:]}}
    return [*(f"validation-{name}:{validation[key]:.6f}" for name, key in names.items()),
            f"train-auc:{evaluation['train_auc']:.6f}",
            f"early-stopping-auc:{evaluation['early_stopping_auc']:.6f}",
            f"best-iteration:{evaluation['best_iteration']}"]


def write_report(path: Path, labels: np.ndarray, probabilities: np.ndarray, evaluation: dict[str, Any]) -> None:
    """report.png: the validation ROC curve, the top-15 features by gain, the confusion matrix."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    validation = evaluation["validation"]
    fig, (roc, importance, confusion) = plt.subplots(1, 3, figsize=(19, 6), dpi=100)
    fig.suptitle(f"Churn model - validation set ({len(labels)} rows, best iteration "
                 f"{evaluation['best_iteration']}, xgboost {evaluation['xgboost_version']})")
    fpr, tpr, _ = skm.roc_curve(labels, probabilities)
    roc.plot(fpr, tpr, lw=2, label=f"model (AUC = {validation['auc']:.3f})")
    roc.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="chance (AUC = 0.500)")
    roc.set(title="ROC curve", xlabel="False positive rate", ylabel="True positive rate")
    roc.legend(loc="lower right")
    roc.grid(alpha=0.3)

    gains = sorted(evaluation["feature_importance"]["gain"].items(), key=lambda item: item[1])[-15:]
    importance.barh([name for name, _ in gains], [value for _, value in gains], color="tab:green")
    importance.set(title=f"Top {len(gains)} features by gain", xlabel="Average gain per split")
    importance.grid(axis="x", alpha=0.3)

    matrix = np.array(validation["confusion_matrix"]["matrix"])
    confusion.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        confusion.text(j, i, f"{count}\n({count / max(matrix.sum(), 1):.1%})", ha="center", va="center",
                       fontsize=13, color="white" if count > matrix.max() / 2 else "black")
    classes = ["no churn (0)", "churn (1)"]
    confusion.set_xticks([0, 1], labels=classes)
    confusion.set_yticks([0, 1], labels=classes)
    confusion.set(title=f"Confusion matrix at threshold {validation['threshold']:g}\nprecision "
                        f"{validation['precision']:.3f}, recall {validation['recall']:.3f}, F1 {validation['f1']:.3f}",
                  xlabel="Predicted", ylabel="Actual")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
