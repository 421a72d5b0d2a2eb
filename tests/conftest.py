"""Shared fixtures: the bundled data and its feature spec."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from churn.schema import FeatureGroupSpec, FeatureSpec

# No test uses the developer's AWS profile (the fixtures of tests/support/moto.py clear the rest of their
# AWS setup), and a profile ~/.aws/config lacks makes importing moto fail before any fixture runs.
for _name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
    os.environ.pop(_name, None)

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


CDNOW_SPEC = ROOT / "data" / "cdnow.spec.json"


def cdnow_like_purchases(customers: int = 400, seed: int = 7) -> str:
    """A purchase log in CDNOW_master.txt's layout (id, YYYYMMDD, CDs, dollars; whitespace-separated):
    customers who first buy in Q1 1997 and buy every few weeks until they stop, some early, some never
    before the data ends in June 1998, so recency predicts churn as in the real data."""
    import random
    from datetime import date, timedelta

    rng = random.Random(seed)
    lines = []
    end = date(1998, 6, 30)
    for number in range(1, customers + 1):
        day = date(1997, 1, 1) + timedelta(days=rng.randrange(90))
        stop = day + timedelta(days=rng.choice([30, 120, 250, 400, 600]))
        while day <= min(stop, end):
            cds = rng.randint(1, 4)
            lines.append(f" {number:05d} {day:%Y%m%d} {cds:>2} {cds * rng.uniform(9, 16):8.2f}")
            day += timedelta(days=rng.randint(10, 50))
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def cdnow_spec() -> FeatureSpec:
    return FeatureSpec.load(CDNOW_SPEC)


@pytest.fixture(scope="session")
def cdnow_log(tmp_path_factory) -> Path:
    """A small CDNOW-like purchase log (the real one is fetched by `make cdnow`, not bundled)."""
    path = tmp_path_factory.mktemp("cdnow") / "purchases.txt"
    path.write_text(cdnow_like_purchases(), encoding="utf-8")
    return path
