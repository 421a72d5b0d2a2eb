"""The state machine of a spec with several feature groups (data/cdnow.spec.json: profile, activity, labels,
derived from one input file): Derive sources, one Parallel state with a branch a group, caught once."""

from __future__ import annotations

import json

import pytest

from churn import steps
from churn.config import PipelineSettings, training_hyperparameters
from churn.schema import FeatureSpec
from churn.sql import offline_count_sql, scoring_set_sql, table_reference, training_set_sql
from tests.infra.asl_resolver import all_states
from tests.infra.conftest import CDNOW_SPEC, synthesize
from tests.infra.test_state_machine import actions, machine_statements, resources

SPEC = FeatureSpec.load(CDNOW_SPEC)
GROUPS = [g.name for g in SPEC.all_groups]
DATABASE = "churn_pipeline_feature_store"
TABLES = {g.name: table_reference(DATABASE, f"{g.name}_features_{g.fingerprint()}") for g in SPEC.all_groups}


@pytest.fixture(scope="module")
def states(cdnow):
    return cdnow.definition["States"]


@pytest.fixture(scope="module")
def parallel(states):
    return states["Ingest feature groups"]


def branch_of(parallel, group: str) -> dict:
    (branch,) = [b for b in parallel["Branches"] if b["StartAt"] == f"Validate input ({group})"]
    return branch["States"]


def test_derive_sources_then_the_groups_side_by_side(cdnow, states, parallel):
    assert GROUPS == ["profile", "activity", "labels"]
    assert cdnow.definition["StartAt"] == "Derive sources"
    derive = states["Derive sources"]
    assert derive["Resource"].endswith(":function:functionsderivesourcesfunctionfe0c3559")
    assert derive["Parameters"] == {"bucket": "storagebucket5cb7c8ea", "key.$": "$.input_key",
                                    "execution.$": "$$.Execution.Name"}
    assert derive["ResultPath"] == "$.sources" and derive["Next"] == "Ingest feature groups"
    assert parallel["Type"] == "Parallel" and parallel["Next"] == "Build training set"
    assert [b["StartAt"] for b in parallel["Branches"]] == [f"Validate input ({g})" for g in GROUPS]


def test_a_branch_is_the_single_group_fragment_named_for_its_group(parallel, states):
    for group in GROUPS:
        branch = branch_of(parallel, group)
        assert set(branch) == {steps.for_group(step, group) for step in steps.GROUP_STEPS} - {
            steps.for_group(steps.INGEST_BATCH, group)}, group
        validate = branch[f"Validate input ({group})"]
        assert validate["Parameters"]["key.$"] == f"$.sources.{group}"
        assert validate["Parameters"]["group"] == group
        assert branch[f"Feature group ready ({group})"] == {"Type": "Succeed"}
        assert branch[f"Offline store complete? ({group})"]["Default"] == f"Feature group ready ({group})"
        # errors leave the branch: the Parallel state catches them once
        assert not any("Catch" in s for s in all_states(branch).values()), group


def test_the_parallel_failure_is_caught_once_and_its_result_is_read_like_one_groups(parallel):
    assert parallel["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure",
                                  "Next": "Record failure"}]
    assert parallel["ResultPath"] == "$.validation"
    assert parallel["ResultSelector"] == {
        "event_time.$": "$[0].validation.event_time",
        "event_time_sql.$": "$[0].validation.event_time_sql",
        "run_started_sql.$": "$[0].validation.run_started_sql",
        "knowledge_cutoff_sql.$": "$[0].validation.knowledge_cutoff_sql",
    }


def test_each_group_ingests_its_staged_csv_into_its_own_feature_group(cdnow, parallel):
    names = {g["Properties"]["FeatureGroupName"] for g in cdnow.resources("AWS::SageMaker::FeatureGroup").values()}
    labels = set()
    for group in SPEC.all_groups:
        ingest = branch_of(parallel, group.name)[f"Ingest features ({group.name})"]
        assert ingest["ItemReader"]["Parameters"]["Key.$"] == f"$.sources.{group.name}"
        assert ingest["ItemBatcher"]["BatchInput"]["group"] == group.name
        assert ingest["ItemBatcher"]["BatchInput"]["feature_group_name"] in names
        assert ingest["ToleratedFailurePercentage"] == 100
        assert ingest["ResultWriter"]["Parameters"]["Prefix.$"] == (
            f"States.Format('ingest/{{}}/{group.name}', $$.Execution.Name)")
        assert ingest["ResultWriter"]["WriterConfig"] == {"OutputType": "JSONL", "Transformation": "NONE"}
        labels.add(ingest["Label"])
        (batch,) = ingest["ItemProcessor"]["States"].values()
        assert batch["Resource"].endswith(":function:functionsingestfunction909f95d1")
    assert len(labels) == len(GROUPS)
    # the item readers read the staged files Derive sources wrote
    reads = [s for s in machine_statements(cdnow) if "s3:GetObjectVersion" in actions(s)]
    assert {json.dumps(r) for s in reads for r in resources(s)} == {
        json.dumps({"Fn::Join": ["", [{"Fn::GetAtt": ["StorageBucket5CB7C8EA", "Arn"]}, "/staging/*"]]})}


def test_each_group_counts_its_own_offline_store(parallel):
    for group in SPEC.all_groups:
        count = branch_of(parallel, group.name)[f"Count offline records ({group.name})"]
        query = offline_count_sql(group, TABLES[group.name])
        assert count["Parameters"]["QueryString"] == query.text
        # history groups count what was written since the run started
        assert count["Parameters"]["ExecutionParameters.$"] == "States.Array($.validation.run_started_sql)"


def test_the_training_and_scoring_sets_join_every_group_as_of_each_observation(states):
    build = states["Build training set"]
    query = training_set_sql(SPEC, TABLES)
    assert build["Parameters"]["QueryString"] == query.text
    paths = {"as_of": "$.validation.event_time_sql", "knowledge_cutoff": "$.validation.knowledge_cutoff_sql"}
    expected = ", ".join(paths[p] for p in query.parameters)
    assert build["Parameters"]["ExecutionParameters.$"] == f"States.Array({expected})"
    scoring = states["Build scoring set"]
    query = scoring_set_sql(SPEC, TABLES)
    assert scoring["Parameters"]["QueryString"] == query.text
    now = "States.Format('\\'{}\\'', $$.State.EnteredTime)"
    expected = ", ".join([now] * len(query.parameters))
    assert scoring["Parameters"]["ExecutionParameters.$"] == f"States.Array({expected})"


def test_training_gets_the_observation_time_and_the_specs_validation_split(states):
    hyperparameters = states["Train model"]["Parameters"]["HyperParameters"]
    ours = {name: json.loads(value) for name, value in hyperparameters.items() if not name.startswith("sagemaker_")}
    assert ours == training_hyperparameters(PipelineSettings(), SPEC)
    assert ours["time_column"] == "observation_time" and ours["validation_split"] == "out_of_time"


def test_the_registered_model_names_every_groups_fingerprint(states):
    metadata = states["Register model"]["Parameters"]["CustomerMetadataProperties"]
    assert {k: v for k, v in metadata.items() if k.endswith("_fingerprint")} == {
        f"{g.name}_fingerprint": g.fingerprint() for g in SPEC.all_groups}


def test_outputs_name_every_feature_group_for_the_cli(cdnow):
    outputs = cdnow.json["Outputs"]
    groups = json.loads(outputs["FeatureGroups"]["Value"])
    assert groups == {g.name: {"feature_group": f"churnpipeline-{g.name}-{g.fingerprint()}",
                               "table": f"{g.name}_features_{g.fingerprint()}"} for g in SPEC.all_groups}
    # the single-group outputs name the first group: its entities are the ones scored
    assert outputs["FeatureGroupName"]["Value"] == groups["profile"]["feature_group"]
    assert outputs["GlueTable"]["Value"] == groups["profile"]["table"]


def test_without_a_derivation_each_group_reads_the_file_the_execution_input_names(tmp_path):
    spec = json.loads(CDNOW_SPEC.read_text())
    del spec["derive"]
    path = tmp_path / "sources.spec.json"
    path.write_text(json.dumps(spec))
    synthesized = synthesize(tmp_path / "out", {"spec": str(path)})
    definition = synthesized.definition
    assert definition["StartAt"] == "Ingest feature groups"
    handlers = {f["Properties"].get("Handler") for f in synthesized.resources("AWS::Lambda::Function").values()}
    assert "churn.handlers.derive_sources.handler" not in handlers
    for branch in definition["States"]["Ingest feature groups"]["Branches"]:
        group = branch["StartAt"].removeprefix("Validate input (").removesuffix(")")
        assert branch["States"][f"Ingest features ({group})"]["ItemReader"]["Parameters"]["Key.$"] == (
            f"$.sources.{group}")
    reads = [s for s in machine_statements(synthesized) if "s3:GetObjectVersion" in actions(s)]
    assert all("/raw/*" in json.dumps(r) for s in reads for r in resources(s))
