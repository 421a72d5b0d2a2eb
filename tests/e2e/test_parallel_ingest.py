"""Ingest features in worker processes (what a large file gets locally): the file is cut into shares of
whole lines, each worker numbers its rows from its share's first line, and every record lands once."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from churn import steps
from churn.config import PipelineSettings
from churn.features import now_event_time
from pipeline import local_ingest
from pipeline.backends import Reporter
from pipeline.local_aws.feature_store import LocalFeatureStore
from pipeline.runner import RUN_FILE, LocalPipeline, PipelineFailed, Workspace, create_feature_group
from tests.support.feature_store import offline_store

ROOT = Path(__file__).resolve().parents[2]


def test_worker_processes_write_every_record_once_and_name_bad_rows_by_file_line(tmp_path, monkeypatch, group):
    lines = (ROOT / "data" / "churn.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    charges = next(csv.reader([header])).index("MonthlyCharges")
    bad = {3: None, len(rows) - 2: None}  # file lines (the header is line 1): one in each worker's share
    for line in bad:
        fields = next(csv.reader([rows[line - 2]]))
        bad[line] = fields[0]
        fields[charges] = "abc"
        rows[line - 2] = ",".join(fields) + "\n"
    path = tmp_path / "customers.csv"
    path.write_text(header + "".join(rows), encoding="utf-8")
    shares = local_ingest._shares(path, 2)
    assert len(shares) == 2 and shares[0][2] < 3 < shares[1][2] < len(rows) - 2  # both bad rows, one a share

    monkeypatch.setattr(local_ingest, "PARALLEL_INGEST_MIN_BYTES", 0)  # this small file goes to workers too
    name = "local-churn-parallel"
    with LocalFeatureStore(tmp_path / "feature-store") as store:
        create_feature_group(store, name, group)
        result = local_ingest.ingest_file(store, path, group=group, feature_group_name=name,
                                          event_time=now_event_time(), batch_size=500, processes=2)
        con = offline_store(store, name, "db", "t")
        written, distinct = con.execute('SELECT count(*), count(DISTINCT customer_id) FROM "db"."t"').fetchone()
        con.close()
        online = [store.get_record(FeatureGroupName=name, RecordIdentifierValueAsString=next(csv.reader([row]))[0])
                  for row in (rows[0], rows[len(rows) // 2], rows[-1])]

    assert (result.ingested, result.failed_count) == (len(rows) - 2, 2)
    assert sorted((f["line"], f["record_id"], f["error_code"]) for f in result.failed) == [
        (line, record_id, "InvalidValue") for line, record_id in sorted(bad.items())]
    assert all("MonthlyCharges" in f["message"] and "'abc'" in f["message"] for f in result.failed)
    assert written == distinct == len(rows) - 2
    assert all(record.get("Record") for record in online)  # the workers' online writes, read back by the parent


class _ReplacesTheFileAfterValidation(Reporter):
    """Another program writing the input while the run is under way: after Validate input passed."""

    def __init__(self, path: Path, line: int):
        self.path, self.line = path, line

    def step_finished(self, step: str, seconds: float, detail: str) -> None:
        if step == steps.VALIDATE_INPUT:
            lines = self.path.read_bytes().splitlines(keepends=True)
            lines[self.line - 1] = lines[self.line - 1].replace(b"Female", b"F\xe9male", 1)
            self.path.write_bytes(b"".join(lines))


@pytest.mark.parametrize("workers", [False, True])
def test_a_file_changed_after_validation_fails_at_ingest_naming_its_line(tmp_path, monkeypatch, spec, workers):
    """Ingest reads the file again: a line that no longer reads fails the run at Ingest features with the
    file's line (a worker numbers lines within its share, and its error crosses back to the run intact)."""
    lines = (ROOT / "data" / "churn.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    path = tmp_path / "customers.csv"
    path.write_text("".join(lines), encoding="utf-8")
    line = next(number for number in range(len(lines) - 10, 1, -1) if "Female" in lines[number - 1])
    if workers:
        monkeypatch.setattr(local_ingest, "PARALLEL_INGEST_MIN_BYTES", 0)
    pipeline = LocalPipeline(spec=spec, settings=PipelineSettings(), workspace=Workspace(tmp_path / "workspace"),
                             reporter=_ReplacesTheFileAfterValidation(path, line))
    with pytest.raises(PipelineFailed) as raised:
        pipeline.run(path, run_id="changed")
    assert (raised.value.error, raised.value.step) == ("InputValidationError", steps.INGEST_FEATURES)
    assert f"{path}, line {line}: not UTF-8 text (byte 0xe9" in raised.value.cause
    outcome = json.loads((tmp_path / "workspace" / "runs" / "changed" / RUN_FILE).read_text(encoding="utf-8"))
    assert (outcome["status"], outcome["error"]) == ("FAILED", "InputValidationError")


def test_a_file_changed_after_validation_into_other_valid_rows_fails_at_ingest(tmp_path, spec):
    """AWS ingests the object version Validate input checked; locally the file is read again, so a file
    another program rewrote meanwhile (here: one label written 0 instead of No) fails the run instead of
    feeding unchecked rows on (a file that lost rows would have failed later as an offline-store timeout)."""
    lines = (ROOT / "data" / "churn.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    path = tmp_path / "customers.csv"
    path.write_text("".join(lines[:301]), encoding="utf-8")

    class FlipsALabel(Reporter):
        def step_finished(self, step: str, seconds: float, detail: str) -> None:
            if step == steps.VALIDATE_INPUT:
                path.write_text(path.read_text(encoding="utf-8").replace(",No\n", ",0\n", 1), encoding="utf-8")

    pipeline = LocalPipeline(spec=spec, settings=PipelineSettings(), workspace=Workspace(tmp_path / "workspace"),
                             reporter=FlipsALabel())
    with pytest.raises(PipelineFailed) as raised:
        pipeline.run(path, run_id="changed")
    assert (raised.value.error, raised.value.step) == ("InputChanged", steps.INGEST_FEATURES)
    assert raised.value.cause.startswith(f"{path} changed after Validate input checked it")
