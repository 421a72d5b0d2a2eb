"""Training inputs: the container image per region, the script bundle, the role, the model registry."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest
from sagemaker.core import image_uris

from stacks.churn_stack import PROJECT_ROOT
from stacks.model_container import training_tarball_bytes, xgboost_image_uris
from stacks.regions import POWERTOOLS_PARAMETER_REGIONS
from stacks.storage import stage

EU_WEST_1 = "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:3.2-0"


def test_concrete_region_gets_the_image_uri_as_a_string(variant):
    train = variant.definition["States"]["Train model"]
    assert train["Parameters"]["AlgorithmSpecification"]["TrainingImage"] == EU_WEST_1
    assert "Mappings" not in variant.json


def test_region_agnostic_stack_maps_every_supported_region_the_sdk_lists(main):
    """The regions with an image that also have the Powertools layer parameter (stacks/regions.py)."""
    regions = image_uris.config_for_framework("xgboost")["training"]["versions"]["3.2-0"]["registries"]
    mapping = main.json["Mappings"]["XGBoostImage"]
    assert set(mapping) == set(regions) & POWERTOOLS_PARAMETER_REGIONS
    assert {"cn-north-1", "us-gov-west-1", "me-central-1"} & set(regions)  # listed by the SDK, not mapped
    for region, row in mapping.items():
        assert row["uri"].startswith(f"{row['account']}.dkr.ecr.{region}."), region
        assert row["uri"].endswith("/sagemaker-xgboost:3.2-0"), region
        assert row["uri"] == image_uris.retrieve("xgboost", region=region, version="3.2-0"), region
    assert mapping["eu-west-1"]["uri"] == EU_WEST_1


def test_unknown_xgboost_version_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown to the SageMaker SDK"):
        xgboost_image_uris("0.0-0")


def _members(payload: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def test_training_bundle_is_deterministic_and_has_the_entry_point(tmp_path):
    first = training_tarball_bytes(PROJECT_ROOT / "training")
    second = training_tarball_bytes(PROJECT_ROOT / "training")
    assert first == second
    assert gzip.decompress(first)  # a real gzip stream
    members = _members(first)
    assert "train_model.py" in members
    for member in members.values():
        assert "/" not in member.name and member.mtime == 0 and member.uid == member.gid == 0
    path = stage("training-code.tar.gz", first)
    assert path.read_bytes() == first and stage("training-code.tar.gz", first) == path


def test_bundle_holds_only_top_level_python_files_in_order(tmp_path):
    (tmp_path / "train_model.py").write_text("print('train')\n")
    (tmp_path / "a_helper.py").write_text("X = 1\n")
    (tmp_path / "notes.md").write_text("not code\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"\0")
    payload = training_tarball_bytes(tmp_path)
    assert list(_members(payload)) == ["a_helper.py", "train_model.py"]
    (tmp_path / "a_helper.py").touch()  # a new mtime changes nothing
    assert training_tarball_bytes(tmp_path) == payload


def test_bundle_ignores_mode_and_links(tmp_path):
    plain, noisy = tmp_path / "plain", tmp_path / "noisy"
    for folder in (plain, noisy):
        folder.mkdir()
        (folder / "train_model.py").write_text("print('train')\n")
    (plain / "helper.py").write_text("X = 1\n")
    (plain / "linked.py").write_text("print('train')\n")
    (noisy / "helper.py").write_text("X = 1\n")
    (noisy / "helper.py").chmod(0o755)
    (noisy / "linked.py").symlink_to(noisy / "train_model.py")
    (noisy / "zz_hard.py").hardlink_to(noisy / "train_model.py")
    (plain / "zz_hard.py").write_text("print('train')\n")
    payload = training_tarball_bytes(noisy)
    assert payload == training_tarball_bytes(plain)
    assert {m.name: (m.isreg(), m.mode) for m in _members(payload).values()} == {
        name: (True, 0o644) for name in ("helper.py", "linked.py", "train_model.py", "zz_hard.py")}


def test_bundle_without_entry_point_fails(tmp_path):
    (tmp_path / "other.py").write_text("")
    with pytest.raises(FileNotFoundError, match="train_model.py"):
        training_tarball_bytes(tmp_path)


def test_training_role_reads_queries_writes_models_and_nothing_else(main):
    role_id = next(k for k in main.resources("AWS::IAM::Role") if k.startswith("TrainingTrainingRole"))
    role = main.json["Resources"][role_id]
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "sagemaker.amazonaws.com"
    }
    statements = [
        s
        for p in main.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    s3_objects = {
        (a, str(r))
        for s in statements
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        if a in ("s3:GetObject", "s3:PutObject")
        for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    }
    gets = {r for a, r in s3_objects if a == "s3:GetObject"}
    puts = {r for a, r in s3_objects if a == "s3:PutObject"}
    assert any("/query/*" in r for r in gets) and any(".gz" in r for r in gets)
    assert len(gets) == 2 and "*" not in gets
    assert len(puts) == 1 and "/models/*" in next(iter(puts))
    assert "ManagedPolicyArns" not in role["Properties"]


def test_model_package_group_is_created_by_the_stack(main):
    main.template.has_resource_properties(
        "AWS::SageMaker::ModelPackageGroup", {"ModelPackageGroupName": "churnpipeline-churn-models"}
    )
