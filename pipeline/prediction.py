"""One customer scored now, from the online store, with the features that moved the probability most.

The same model files and encoding as the batch scores (the training script's serving module), read
from a model artifact the caller unpacked; the features are each online feature group's latest record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.local_aws.batch_transform import serving_module
from pipeline.runner import TRAINING_DIR

SERVING_MODULE = "serving"  # training/serving.py: load_model, predict_frame, contributions


@dataclass(frozen=True)
class FeatureContribution:
    feature: str
    value: Any
    contribution: float  # log-odds; positive pushes the churn probability up


@dataclass
class Prediction:
    record_id: str
    churn_probability: float
    base: float  # the model's log-odds before any feature (XGBoost's bias term)
    up: list[FeatureContribution]
    down: list[FeatureContribution]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def record_values(record: list[dict[str, str]]) -> dict[str, str]:
    """GetRecord's `Record` ([{FeatureName, ValueAsString}]) as a dict; absent features are missing."""
    return {item["FeatureName"]: item["ValueAsString"] for item in record}


def predict_record(model_dir: Path, record_id: str, values: dict[str, Any], top: int = 5) -> Prediction:
    """Score one customer's features with the model in `model_dir`, with per-feature contributions
    (XGBoost `pred_contribs`, in log-odds)."""
    import pandas as pd

    serving = serving_module(TRAINING_DIR, SERVING_MODULE)
    model = serving.load_model(model_dir)
    frame = pd.DataFrame([{name: values.get(name) for name in model.feature_names}], dtype=object)
    probability = float(serving.predict_frame(model, frame)[0])
    explained = serving.contributions(model, frame)
    row = explained.features.iloc[0]
    ranked = sorted(((name, float(row[name])) for name in model.feature_names), key=lambda item: item[1])
    up = [FeatureContribution(n, values.get(n), c) for n, c in reversed(ranked) if c > 0][:top]
    down = [FeatureContribution(n, values.get(n), c) for n, c in ranked if c < 0][:top]
    return Prediction(record_id=record_id, churn_probability=probability, base=float(explained.bias.iloc[0]),
                      up=up, down=down)
