"""Fixtures for the training-script tests."""

from __future__ import annotations

import importlib
import sys

import pytest
from training_helpers import TRAINING_DIR, to_csv_text, training_set_rows


@pytest.fixture(scope="session")
def telco_training_csv() -> str:
    columns, rows = training_set_rows()
    return to_csv_text(columns, rows)


@pytest.fixture(scope="session")
def train_model():
    """The training script imported as a module (as the serving stack imports it)."""
    sys.path.insert(0, str(TRAINING_DIR))
    try:
        return importlib.import_module("train_model")
    finally:
        sys.path.remove(str(TRAINING_DIR))
