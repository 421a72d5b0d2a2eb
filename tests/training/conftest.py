"""Fixtures for the training-script tests: its modules imported as the serving container imports them."""

from __future__ import annotations

import importlib
import sys

import pytest

from tests.training.training_helpers import TRAINING_DIR, to_csv_text, training_set_rows


@pytest.fixture(scope="session")
def telco_training_csv() -> str:
    return to_csv_text(*training_set_rows())


@pytest.fixture(scope="session")
def train_model():
    """The entry point (the code directory on sys.path, as in the container)."""
    if str(TRAINING_DIR) not in sys.path:
        sys.path.insert(0, str(TRAINING_DIR))
    return importlib.import_module("train_model")


@pytest.fixture(scope="session")
def hyperparameters(train_model):
    return importlib.import_module("hyperparameters")


@pytest.fixture(scope="session")
def serving(train_model):
    return importlib.import_module("serving")
