"""The synthesised state machine of a spec with several feature groups (data/cdnow.spec.json), executed on
the moto harness: Derive sources, the groups ingested side by side (a Parallel state's branch each), the
point-in-time training set over them, out-of-time validation, scores; and a group whose file is bad."""

from __future__ import annotations

import csv
import io
import json
import tarfile
from datetime import UTC, date, datetime, timedelta

import pytest

from churn import steps
from churn.derivations import derive_cdnow
from churn.schema import FeatureSpec
from churn.sql import AS_OF, KNOWLEDGE_CUTOFF, sql_timestamp, table_reference, training_set_sql
from tests.infra.conftest import CDNOW_SPEC, synthesize
from tests.infra.sfn_harness import PipelineHarness
from tests.infra.test_execution import CONTEXT
from tests.support.feature_store import offline_store

SPEC = FeatureSpec.load(CDNOW_SPEC)
GROUPS = [g.name for g in SPEC.all_groups]  # profile, activity, labels
RUN_VALUES = {"event_time", "event_time_sql", "run_started_sql", "knowledge_cutoff_sql"}
LAST_DAY = date(1998, 6, 30)


def cdnow_purchases() -> str:
    """A small CDNOW-like file (`customer_id YYYYMMDD cds dollars`): 24 customers who keep buying every
    25 days, 24 who bought once, 12 who stopped at some point; the data ends on LAST_DAY."""
    lines = []

    def buy(customer: int, first: date, until: date) -> None:
        day = first
        while day <= until:
            lines.append(f"{customer:05d} {day:%Y%m%d} {1 + customer % 3:>2} {10 + customer % 7 * 1.5:>7.2f}")
            day += timedelta(days=25)

    for n in range(60):
        first = date(1997, 1, 1) + timedelta(days=n * 89 % 88)  # in Q1 1997
        if n % 5 in (0, 1):
            buy(n, first, LAST_DAY - timedelta(days=n % 7))
        elif n % 5 in (2, 3):
            buy(n, first, first)
        else:
            buy(n, first, date(1997, 5, 1) + timedelta(days=n * 23))
    lines.append(f"00000 {LAST_DAY:%Y%m%d}  1   12.00")
    return "\n".join(sorted(lines)) + "\n"


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
def derived_stack(tmp_path_factory):
    data = tmp_path_factory.mktemp("cdnow-data") / "CDNOW_sample.txt"
    data.write_text(cdnow_purchases())
    return synthesize(tmp_path_factory.mktemp("cdnow-run"), {**CONTEXT, "spec": str(CDNOW_SPEC), "data": str(data)})


@pytest.fixture(scope="module")
def sources_spec(tmp_path_factory):
    """The same groups with no derivation: an execution names each group's file."""
    spec = {k: v for k, v in json.loads(CDNOW_SPEC.read_text()).items() if k != "derive"}
    path = tmp_path_factory.mktemp("sources-spec") / "groups.spec.json"
    path.write_text(json.dumps(spec))
    return path


@pytest.fixture(scope="module")
def sources_stack(tmp_path_factory, sources_spec):
    return synthesize(tmp_path_factory.mktemp("sources-run"), {**CONTEXT, "spec": str(sources_spec)})


def offline(harness: PipelineHarness, group: str) -> list[dict[str, object]]:
    ((database, table), (name, _)), = [(k, v) for k, v in harness.athena.tables.items() if f"-{group}-" in v[0]]
    con = offline_store(harness.feature_store, name, database, table)
    try:
        cursor = con.execute(f'SELECT * FROM "{database}"."{table}"')
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    finally:
        con.close()


def feature_group(harness: PipelineHarness, group: str) -> str:
    (name,) = [name for name, _ in harness.athena.tables.values() if f"-{group}-" in name]
    return name


def test_several_groups_are_derived_ingested_trained_on_as_of_each_observation_and_scored(derived_stack, tmp_path):
    purchases = cdnow_purchases()
    derived = derive_cdnow(io.StringIO(purchases), "the test's input")
    with PipelineHarness(derived_stack.json, derived_stack.outdir, tmp_path, spec=SPEC) as harness:
        harness.put_raw("raw/cdnow.txt", purchases)
        cutoff = sql_timestamp(datetime.now(UTC) + timedelta(days=1))  # the execution input may name one

        execution = harness.run({"input_key": "raw/cdnow.txt", "knowledge_cutoff": cutoff}, name="run-cdnow",
                                timeout=240)

        assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
        entered = execution.entered()
        assert entered[:2] == [steps.DERIVE_SOURCES, steps.INGEST_GROUPS]
        for group in GROUPS:
            assert [s for s in entered if s.endswith(f"({group})")][:4] == [
                steps.for_group(s, group) for s in (steps.VALIDATE_INPUT, steps.INGEST_FEATURES,
                                                    steps.SUMMARISE_INGEST, steps.START_OFFLINE_CHECKS)]
            assert steps.for_group(steps.FEATURE_GROUP_READY, group) in entered
        assert entered[entered.index(steps.BUILD_TRAINING_SET):] == [
            steps.BUILD_TRAINING_SET, steps.TRAIN_MODEL, steps.EVALUATE_MODEL, steps.MODEL_GOOD_ENOUGH,
            steps.REGISTER_MODEL, steps.BUILD_SCORING_SET, steps.STAGE_SCORING_INPUT, steps.CREATE_SCORING_MODEL,
            steps.SCORE_CUSTOMERS, steps.DELETE_SCORING_MODEL, steps.RANK_SCORES, steps.SUMMARISE_RUN,
            steps.PIPELINE_SUCCEEDED]

        # Derive sources wrote each group's CSV under staging/<execution>/; each branch ingested its own.
        sources = execution.state_output(steps.DERIVE_SOURCES)["sources"]
        assert sources == {g: f"staging/run-cdnow/{g}.csv" for g in GROUPS}
        for group in GROUPS:
            assert harness.read_text(f"s3://{harness.bucket}/{sources[group]}") == derived[group]
            ingested = execution.state_output(steps.for_group(steps.SUMMARISE_INGEST, group))["ingest"]
            assert ingested["records"] == len(rows(derived[group])), group
            manifest_key = execution.state_output(steps.for_group(steps.SUMMARISE_INGEST, group))[
                "ingest_results"]["ResultWriterDetails"]["Key"]
            assert manifest_key.startswith(f"ingest/run-cdnow/{group}/") and manifest_key.endswith("/manifest.json")
            assert f"/IngestFeatures-{group}:" in json.loads(harness.read_text(
                f"s3://{harness.bucket}/{manifest_key}"))["MapRunArn"]
        # The Parallel state's result: the run's values where a single group's Validate input puts them.
        validation = execution.state_output(steps.INGEST_GROUPS)["validation"]
        assert set(validation) == RUN_VALUES and validation["knowledge_cutoff_sql"] == f"'{cutoff}'"
        # Each query got the run's values in its SQL's parameter order: the counts, when the run started.
        counts = [q for q in harness.athena.queries if '"api_invocation_time" >= CAST(?' in q["sql"]]
        assert len(counts) >= len(GROUPS)
        assert {tuple(q["parameters"]) for q in counts} == {(validation["run_started_sql"],)}

        # History to the offline store, each customer's latest version online; labels are offline only.
        activity = rows(derived["activity"])
        snapshots = {(r["customer_id"], r["snapshot_time"]) for r in activity}
        assert {(r["customer_id"], r["event_time"]) for r in offline(harness, "activity")} == snapshots
        latest = {}
        for customer, moment in sorted(snapshots):
            latest[customer] = moment
        for customer, moment in latest.items():
            record = harness.feature_store.get_record(FeatureGroupName=feature_group(harness, "activity"),
                                                      RecordIdentifierValueAsString=customer)["Record"]
            assert {f["FeatureName"]: f["ValueAsString"] for f in record}["event_time"] == moment
        assert len(offline(harness, "labels")) == len(rows(derived["labels"]))
        labels_group = harness.feature_store.describe_feature_group(FeatureGroupName=feature_group(harness, "labels"))
        assert "OnlineStoreConfig" not in labels_group

        # The training set: every observation with each group's features as known at its time.
        training_set = execution.state_output(steps.BUILD_TRAINING_SET)["training_set"]
        (training_query,) = [q for q in harness.athena.queries if q["id"] == training_set["query_execution_id"]]
        tables = {table.split("_features_")[0]: table_reference(database, table)
                  for database, table in harness.athena.tables}
        expected = training_set_sql(SPEC, tables)
        values = {AS_OF: validation["event_time_sql"], KNOWLEDGE_CUTOFF: validation["knowledge_cutoff_sql"]}
        assert training_query["sql"] == expected.text
        assert training_query["parameters"] == [values[name] for name in expected.parameters]
        training = harness.read_csv(training_set["output_uri"])
        assert len(training) == len(rows(derived["labels"]))
        by_snapshot = {(r["customer_id"], r["snapshot_time"]): r for r in activity}
        for row in training[::7]:
            known = max(m for c, m in snapshots if c == row["customer_id"] and m <= row["observation_time"])
            assert row["recency_days"] == by_snapshot[(row["customer_id"], known)]["recency_days"], row

        # Trained with out-of-time validation on the latest observation period; every customer scored.
        (job,) = harness.training.jobs
        body = harness.client("s3").get_object(Bucket=harness.bucket, Key=job["artifact"].split("/", 3)[3])["Body"]
        with tarfile.open(fileobj=io.BytesIO(body.read())) as archive:
            evaluation = json.load(archive.extractfile("evaluation.json"))
        assert evaluation["split"]["kind"] == "out_of_time"
        assert evaluation["split"]["validation_periods"]["last"] == "1998-02-15T00:00:00.000Z"
        # the stack passes the derivation's label horizon: December's labels, settled in March, are left out
        assert evaluation["split"]["unsettled_periods"]["last"] == "1997-12-15T00:00:00.000Z"
        assert execution.output["validation_auc"] >= 0.8
        scores = harness.read_csv(execution.output["scores_uri"])
        assert sorted(s["customer_id"] for s in scores) == sorted(r["customer_id"] for r in rows(derived["profile"]))


def test_a_bad_row_in_one_groups_file_fails_the_parallel_once_naming_file_and_line(sources_stack, sources_spec,
                                                                                    tmp_path):
    derived = derive_cdnow(io.StringIO(cdnow_purchases()), "the test's input")
    lines = derived["activity"].splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    bad = lines[4].rstrip("\n").split(",")
    bad[header.index("recency_days")] = "soon"
    lines[4] = ",".join(bad) + "\n"  # line 5 of the file
    with PipelineHarness(sources_stack.json, sources_stack.outdir, tmp_path,
                         spec=FeatureSpec.load(sources_spec)) as harness:
        for group in GROUPS:
            harness.put_raw(f"raw/{group}.csv", "".join(lines) if group == "activity" else derived[group])

        execution = harness.run({"sources": {g: f"raw/{g}.csv" for g in GROUPS}}, name="run-bad-group")

        assert execution.status == "FAILED"
        entered = execution.entered()
        assert entered[0] == steps.INGEST_GROUPS and steps.DERIVE_SOURCES not in entered
        assert steps.for_group(steps.VALIDATE_INPUT, "activity") in entered
        assert steps.for_group(steps.INGEST_FEATURES, "activity") not in entered
        assert entered[-2:] == [steps.RECORD_FAILURE, steps.PIPELINE_FAILED]
        assert entered.count(steps.RECORD_FAILURE) == 1 and steps.BUILD_TRAINING_SET not in entered
        assert execution.error == "InputValidationError"
        message = json.loads(execution.cause)["errorMessage"]
        assert message.startswith(f"s3://{harness.bucket}/raw/activity.csv, line 5, column 'recency_days': "), message
        assert execution.state_output(steps.RECORD_FAILURE)["failure"]["Error"] == "InputValidationError"
        assert harness.training.jobs == []
