"""Shared fixtures: the bundled data and its feature spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from churn.schema import FeatureGroupSpec, FeatureSpec

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "churn.csv"
SPEC = ROOT / "data" / "churn.spec.json"


@pytest.fixture(scope="session")
def spec() -> FeatureSpec:
    return FeatureSpec.load(SPEC)


@pytest.fixture(scope="session")
def data_path() -> Path:
    return DATA


@pytest.fixture(scope="session")
def group(spec: FeatureSpec) -> FeatureGroupSpec:
    """The bundled spec's one feature group."""
    return spec.groups[0]
