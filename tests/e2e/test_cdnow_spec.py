"""End to end on several feature groups: the CDNOW spec (a derivation into profile, activity and labels)
run locally on a small CDNOW-like purchase log, and the point-in-time promise checked from the outside:
every training row's features are the versions its customer had at the row's observation time, never
a later one, although later versions are in the store."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from churn.config import PipelineSettings
from pipeline.runner import SOURCES_DIR, LocalPipeline, Workspace

SETTINGS = PipelineSettings(quality_threshold=0.5)  # a small log needs a lower bar than 0.80


@pytest.fixture(scope="module")
def groups_run(tmp_path_factory, cdnow_spec, cdnow_log):
    workspace = Workspace(tmp_path_factory.mktemp("workspace"))
    outcome = LocalPipeline(spec=cdnow_spec, settings=SETTINGS, workspace=workspace).run(cdnow_log)
    assert outcome.status == "SUCCEEDED", outcome.cause
    return workspace, outcome


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_a_derived_run_ingests_every_group_and_validates_out_of_time(groups_run, cdnow_spec):
    _, outcome = groups_run
    sources = Path(outcome.run_dir) / SOURCES_DIR
    written = {group.name: len(rows(sources / f"{group.name}.csv")) for group in cdnow_spec.all_groups}
    assert set(outcome.feature_groups) == set(written)
    assert outcome.records_ingested == sum(written.values())
    assert outcome.training_rows == written["labels"]  # one training row per labels row
    for group in cdnow_spec.all_groups:
        assert f"Ingest features ({group.name})" in outcome.step_seconds
    assert outcome.split["kind"] == "out_of_time"
    assert outcome.split["train_periods"]["last"] < outcome.split["validation_periods"]["first"]
    assert outcome.customers_scored == written["profile"]


def versions(path: Path, time_column: str) -> dict[str, list[dict[str, str]]]:
    """Each customer's versions of a group, oldest first (the derived source the run ingested)."""
    by_customer: dict[str, list[dict[str, str]]] = {}
    for row in sorted(rows(path), key=lambda r: r[time_column]):
        by_customer.setdefault(row["customer_id"], []).append(row)
    return by_customer


def as_of(history: list[dict[str, str]], time_column: str, moment: str) -> dict[str, str] | None:
    known = [row for row in history if row[time_column] <= moment]
    return known[-1] if known else None


def same(expected: str | None, found: str) -> bool:
    if expected in (None, ""):
        return found == ""
    try:
        return float(expected) == float(found)
    except ValueError:
        return expected == found


def test_no_training_row_holds_a_value_from_after_its_observation_time(groups_run, cdnow_spec):
    _, outcome = groups_run
    sources = Path(outcome.run_dir) / SOURCES_DIR
    observed = cdnow_spec.observation_time.name
    training = rows(Path(outcome.run_dir) / "input" / "data" / "train" / "training-set.csv")
    later_versions = 0
    for group in cdnow_spec.groups:
        time_column = group.event_time.source
        history = versions(sources / f"{group.name}.csv", time_column)
        for row in training:
            customer = history.get(row["customer_id"], [])
            expected = as_of(customer, time_column, row[observed])
            later_versions += sum(version[time_column] > row[observed] for version in customer)
            for feature in group.features:
                value = None if expected is None else expected[feature.source_column]
                assert same(value, row[feature.name]), (group.name, feature.name, row["customer_id"], row[observed])
    assert later_versions > len(training)  # the store held later versions for most rows; none leaked
