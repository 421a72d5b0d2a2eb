"""What the training script receives: the operator's overrides, then the spec's columns and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from churn.config import PipelineSettings, training_hyperparameters
from churn.schema import FeatureSpec

CDNOW = Path(__file__).resolve().parents[2] / "data" / "cdnow.spec.json"


def test_a_single_group_spec_names_its_id_label_and_categorical_columns(spec):
    settings = PipelineSettings(hyperparameters={"max_depth": 4})
    assert training_hyperparameters(settings, spec) == {
        "max_depth": 4, "id_column": "customer_id", "label_column": "churn",
        # the String features of data/churn.spec.json
        "categorical_columns": ["gender", "partner", "dependents", "phone_service", "multiple_lines",
                                "internet_service", "online_security", "online_backup", "device_protection",
                                "tech_support", "streaming_tv", "streaming_movies", "contract", "paperless_billing",
                                "payment_method"],
        "exclude_columns": "api_invocation_time,is_deleted,write_time"}


def test_several_groups_add_the_observation_time_and_the_specs_validation_split():
    assert training_hyperparameters(PipelineSettings(), FeatureSpec.load(CDNOW)) == {
        "id_column": "customer_id", "label_column": "churned", "categorical_columns": ["first_purchase_month"],
        "exclude_columns": "api_invocation_time,is_deleted,write_time",
        "time_column": "observation_time", "validation_split": "out_of_time", "validation_periods": 1,
        "label_horizon_days": 90}


def test_an_override_of_a_column_the_spec_sets_is_refused():
    """It was dropped without a word: a label horizon given as an override did not guard the split."""
    settings = PipelineSettings(hyperparameters={"label_horizon_days": 45, "validation_periods": 2, "max_depth": 3})
    with pytest.raises(ValueError, match=r"hyperparameter label_horizon_days, validation_periods: set by the "
                                         r"feature spec .*cdnow.spec.json \(change it there\)"):
        training_hyperparameters(settings, FeatureSpec.load(CDNOW))
