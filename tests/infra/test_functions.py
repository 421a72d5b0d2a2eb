"""The pipeline's Lambda functions: handlers, environment, Powertools layer, logs and grants."""

from __future__ import annotations

from pathlib import Path

import botocore.session
import pytest

from churn.config import PipelineSettings
from churn.schema import Feature, FeatureGroupSpec, FeatureSpec
from stacks.lambda_kit import (
    BUNDLED_MODEL,
    LAYER_ROOT,
    MODELS_FOLDER,
    POWERTOOLS_LAYER_PARAMETER,
    EnvironmentTooLarge,
    check_environment,
)
from stacks.pipeline_functions import DERIVE_SOURCES_FUNCTION, FUNCTIONS

HANDLERS = {f.handler for f in FUNCTIONS}


def pipeline_functions(synthesized) -> dict[str, dict]:
    return {
        f["Properties"]["Handler"]: f
        for f in synthesized.resources("AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") in HANDLERS
    }


def test_the_table_names_every_pipeline_handler_and_the_stack_builds_what_the_spec_needs(main, cdnow):
    assert HANDLERS == {
        "churn.handlers.derive_sources.handler",
        "churn.handlers.validate_input.handler",
        "churn.handlers.ingest_batch.handler",
        "churn.handlers.summarise_ingest.handler",
        "churn.handlers.evaluate_model.handler",
        "churn.handlers.rank_scores.handler",
    }
    # Derive sources only for a spec that derives its groups' files from one input
    assert set(pipeline_functions(main)) == HANDLERS - {DERIVE_SOURCES_FUNCTION.handler}
    assert set(pipeline_functions(cdnow)) == HANDLERS
    for declared in FUNCTIONS:
        function = pipeline_functions(cdnow)[declared.handler]["Properties"]
        assert (function["Timeout"], function["MemorySize"]) == (declared.timeout_seconds, declared.memory_mb)


def policy_of(synthesized, role_ref: dict) -> list[dict]:
    return [
        statement
        for policy in synthesized.resources("AWS::IAM::Policy").values()
        if role_ref in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def actions(statement: dict) -> list[str]:
    return [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]


def test_one_function_per_handler_with_python_312_and_powertools(main):
    functions = pipeline_functions(main)
    ((parameter_id, parameter),) = [
        (k, v) for k, v in main.json["Parameters"].items() if v["Default"] == POWERTOOLS_LAYER_PARAMETER
    ]
    assert parameter["Type"] == "AWS::SSM::Parameter::Value<String>"
    assert POWERTOOLS_LAYER_PARAMETER == "/aws/service/powertools/python/x86_64/python3.12/latest"
    for handler, function in functions.items():
        props = function["Properties"]
        assert props["Runtime"] == "python3.12", handler
        assert props["Architectures"] == ["x86_64"], handler
        assert sorted(layer["Ref"] for layer in props["Layers"]) == sorted([parameter_id, models_layer_id(main)])
        assert props["TracingConfig"] == {"Mode": "Active"}, handler


def models_layer_id(synthesized) -> str:
    (layer_id,) = [layer_id for layer_id, layer in synthesized.resources("AWS::Lambda::LayerVersion").items()
                   if BUNDLED_MODEL in layer["Properties"].get("Description", "")]
    return layer_id


def test_the_runtime_botocore_reads_the_locked_feature_store_model_first(main, monkeypatch):
    """The runtime's botocore may not know BatchWriteRecord: every function gets the locked botocore's model
    in a layer and AWS_DATA_PATH naming it, and a botocore session so configured loads that model, not its own."""
    layer = main.json["Resources"][models_layer_id(main)]
    key = layer["Properties"]["Content"]["S3Key"]  # <asset hash>.zip
    unpacked = main.outdir / f"asset.{key.removesuffix('.zip')}"  # the folder Lambda unpacks into /opt
    for handler, function in pipeline_functions(main).items():
        data_path = function["Properties"]["Environment"]["Variables"]["AWS_DATA_PATH"]
        assert data_path == f"{LAYER_ROOT}/{MODELS_FOLDER}", handler
    monkeypatch.setenv("AWS_DATA_PATH", str(unpacked / MODELS_FOLDER))
    loader = botocore.session.Session().get_component("data_loader")
    model, path = loader.load_data_with_path(f"{BUNDLED_MODEL}/2020-07-01/service-2")
    assert Path(path).is_relative_to(unpacked)
    assert "BatchWriteRecord" in model["operations"]
    assert model == botocore.session.Session().get_component("data_loader").load_service_model(BUNDLED_MODEL,
                                                                                              "service-2")


def test_environment_carries_the_spec_and_settings(main, spec):
    for handler, function in pipeline_functions(main).items():
        variables = function["Properties"]["Environment"]["Variables"]
        # the feature group a batch writes to comes with the batch (the Map's BatchInput)
        assert "FEATURE_GROUP_NAME" not in variables, handler
        assert variables["FEATURE_SPEC"] == spec.to_json(), handler
        assert FeatureSpec.from_json(variables["FEATURE_SPEC"]) == spec
        assert variables["INGEST_WORKERS"] == str(PipelineSettings().ingest_workers)
        assert variables["POWERTOOLS_SERVICE_NAME"] == "churn-pipeline"


def test_each_function_logs_to_its_own_encrypted_group(main):
    groups = main.resources("AWS::Logs::LogGroup")
    for handler, function in pipeline_functions(main).items():
        target = function["Properties"]["LoggingConfig"]["LogGroup"]
        assert target["Ref"] in groups, handler


def role_of(synthesized, handler: str) -> dict:
    return {"Ref": pipeline_functions(synthesized)[handler]["Properties"]["Role"]["Fn::GetAtt"][0]}


@pytest.mark.parametrize("name", ["main", "cdnow"])
def test_ingest_may_batch_write_into_every_feature_group_and_nothing_else(request, name):
    """BatchWriteRecord is authorised as sagemaker:BatchWriteRecord and sagemaker:PutRecord on the group."""
    synthesized = request.getfixturevalue(name)
    groups = [g["Properties"]["FeatureGroupName"]
              for g in synthesized.resources("AWS::SageMaker::FeatureGroup").values()]
    ingest = policy_of(synthesized, role_of(synthesized, "churn.handlers.ingest_batch.handler"))
    (write,) = [s for s in ingest if any(a.startswith("sagemaker:") for a in actions(s))]
    assert sorted(actions(write)) == ["sagemaker:BatchWriteRecord", "sagemaker:PutRecord"]
    resources = write["Resource"] if isinstance(write["Resource"], list) else [write["Resource"]]
    assert sorted(r["Fn::Join"][1][-1] for r in resources) == sorted(f":feature-group/{g}" for g in groups)
    assert not any(a.startswith("s3:") for s in ingest for a in actions(s))
    assert any("kms:GenerateDataKey" in actions(s) for s in ingest)


@pytest.mark.parametrize(("name", "prefix"), [("main", "/raw/*"), ("cdnow", "/staging/*")])
def test_validate_input_reads_only_where_the_spec_reads_its_csvs(request, name, prefix):
    synthesized = request.getfixturevalue(name)
    role = pipeline_functions(synthesized)["churn.handlers.validate_input.handler"]["Properties"]["Role"]
    validate = policy_of(synthesized, {"Ref": role["Fn::GetAtt"][0]})
    (read,) = [s for s in validate if actions(s) == ["s3:GetObject"] or actions(s) == "s3:GetObject"]
    resources = read["Resource"] if isinstance(read["Resource"], list) else [read["Resource"]]
    assert [r["Fn::Join"][1][-1] for r in resources] == [prefix]
    assert not any("s3:PutObject" in actions(s) for s in validate)


def test_grants_are_scoped(main):
    functions = pipeline_functions(main)

    evaluate = policy_of(
        main, {"Ref": functions["churn.handlers.evaluate_model.handler"]["Properties"]["Role"]["Fn::GetAtt"][0]}
    )
    object_resources = {
        s["Resource"]["Fn::Join"][1][-1]
        for s in evaluate
        if any(a in ("s3:GetObject", "s3:PutObject") for a in actions(s))
    }
    assert object_resources == {"/models/*"}

    summarise = policy_of(main, role_of(main, "churn.handlers.summarise_ingest.handler"))
    assert {s["Resource"]["Fn::Join"][1][-1] for s in summarise
            if any(a in ("s3:GetObject", "s3:PutObject") for a in actions(s))} == {"/ingest/*"}


def test_roles_use_no_managed_policies(main):
    for logical_id, role in main.resources("AWS::IAM::Role").items():
        assert "ManagedPolicyArns" not in role["Properties"] or logical_id.startswith("CustomS3AutoDelete"), logical_id


def test_environment_over_4_kb_fails_synth():
    long_spec = FeatureSpec(groups=(FeatureGroupSpec(
        name="churn",
        record_identifier=Feature("customer_id", "String", "id"),
        event_time=Feature("event_time", "String"),
        label=Feature("churn", "Integral", "Churn"),
        features=tuple(Feature(f"feature_number_{i:03d}_with_a_long_name", "Fractional", f"Col{i}") for i in range(80)),
    ),))
    environment = {"FEATURE_SPEC": long_spec.to_json(), "INGEST_WORKERS": "8"}
    with pytest.raises(EnvironmentTooLarge, match="over the 4096-byte limit"):
        check_environment("IngestFunction", environment)
    check_environment("IngestFunction", {"FEATURE_SPEC": "{}"})
