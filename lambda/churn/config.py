"""Pipeline settings with their defaults: `app.py` reads them from CDK context for the stacks; the local
mode uses them too."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from churn.schema import RESERVED_NAMES, FeatureSpec


@dataclass(frozen=True)
class PipelineSettings:
    """Everything an operator may tune. CDK context keys are these field names."""

    quality_threshold: float = 0.80  # minimum validation ROC AUC to register a model
    ingest_batch_size: int = 500  # most rows a batch: an ingest Lambda call (bytes capped too) or a local one
    ingest_max_concurrency: int = 10  # Distributed Map child executions at once
    ingest_workers: int = 8  # BatchWriteRecord calls (25 records each) in flight inside one batch
    training_instance_type: str = "ml.m5.large"
    training_instance_count: int = 1
    training_max_runtime_minutes: int = 60
    training_volume_gb: int = 10
    scoring_instance_type: str = "ml.m5.large"  # the Batch Transform that scores every customer
    xgboost_version: str = "3.2-0"
    offline_store_wait_seconds: int = 60  # between offline-store count checks
    offline_store_max_checks: int = 30  # ~30 minutes; replication usually takes < 15
    # Overrides of the training script's hyperparameters by name; the defaults live in the script only
    # (training/hyperparameters.py HYPERPARAMETERS), which uses them for whatever is not passed.
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_context(cls, get: Callable[[str], Any]) -> PipelineSettings:
        """Build from a lookup such as `app.node.try_get_context` (values may be strings)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = get(f.name)
            if raw is None:
                continue
            default = getattr(cls(), f.name)
            try:
                if isinstance(default, dict):
                    values[f.name] = {**default, **(json.loads(raw) if isinstance(raw, str) else dict(raw))}
                else:
                    values[f.name] = type(default)(raw)
            except (TypeError, ValueError):
                kind = "JSON object" if isinstance(default, dict) else type(default).__name__
                raise ValueError(f"setting '{f.name}': {raw!r} is not a valid {kind}") from None
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if not 0.5 <= self.quality_threshold <= 1.0:
            raise ValueError(f"quality_threshold must be between 0.5 and 1.0, got {self.quality_threshold}")
        for name in ("ingest_batch_size", "ingest_max_concurrency", "ingest_workers",
                     "training_instance_count", "offline_store_max_checks"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


_SPLIT_HYPERPARAMETERS = ("time_column", "validation_split", "validation_periods", "label_horizon_days")


def training_hyperparameters(settings: PipelineSettings, spec: FeatureSpec) -> dict[str, Any]:
    """What the training script receives, on AWS and locally (SageMaker's own `sagemaker_*` keys
    aside): the operator's overrides, then the columns the feature spec names and, with several
    groups, the observation time column and how the spec splits off its validation rows."""
    # The training set holds the spec's columns only. The script's default exclusions also name
    # `event_time`, which a feature may be called when the event time has another name: exclude only
    # Feature Store's own columns, which no feature can be called.
    columns: dict[str, Any] = {"id_column": spec.record_identifier.name, "label_column": spec.label.name,
                               "categorical_columns": spec.categorical_columns,
                               "exclude_columns": ",".join(sorted(RESERVED_NAMES))}
    if spec.observation_time is not None:
        columns.update(zip(_SPLIT_HYPERPARAMETERS, (spec.observation_time.name, spec.validation_split,
                                                    spec.validation_periods, spec.label_horizon_days), strict=True))
    # An override of one of these was dropped without a word: a label horizon given here did not guard the split.
    # The split is the spec's with one group too (random): an override made a time split on a feature.
    if taken := sorted(set(settings.hyperparameters) & (set(columns) | set(_SPLIT_HYPERPARAMETERS))):
        raise ValueError(f"hyperparameter {', '.join(taken)}: set by the feature spec {spec.origin} (change it there)")
    return {**settings.hyperparameters, **columns}
