"""The stack goes only where both the Powertools layer parameter and the XGBoost image exist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aws_cdk import Environment

from stacks.model_container import xgboost_image_uris
from stacks.regions import POWERTOOLS_PARAMETER_REGIONS, UnsupportedRegion, supported_regions
from tests.infra.conftest import synthesize

ROOT = Path(__file__).resolve().parents[2]
SUPPORTED = supported_regions(xgboost_image_uris("3.2-0"))


def test_the_supported_regions_have_the_layer_parameter_and_the_image():
    assert "us-east-1" in SUPPORTED and "eu-west-1" in SUPPORTED
    assert set(SUPPORTED) <= POWERTOOLS_PARAMETER_REGIONS & set(xgboost_image_uris("3.2-0"))
    # the image exists there, the layer parameter does not (China, GovCloud; me-* have layers only)
    for region in ("cn-north-1", "us-gov-west-1", "me-central-1"):
        assert region in xgboost_image_uris("3.2-0") and region not in SUPPORTED, region


@pytest.mark.parametrize("region", ["cn-north-1", "me-central-1", "us-gov-west-1"])
def test_synthesis_for_an_unsupported_region_fails_naming_the_supported_ones(tmp_path, region):
    with pytest.raises(UnsupportedRegion) as info:
        synthesize(tmp_path, env=Environment(account="123456789012", region=region))
    message = str(info.value)
    assert message.startswith(f"region {region} is not supported: the stack needs the Powertools layer's SSM "
                              "parameter and the SageMaker XGBoost image, found together in: ")
    assert message.endswith(", ".join(SUPPORTED))


def test_a_region_agnostic_template_refuses_other_regions_before_creating_anything(main):
    """A CloudFormation Rule: evaluated when the stack is created or updated, before any resource."""
    rule = main.json["Rules"]["SupportedRegion"]
    (assertion,) = rule["Assertions"]
    assert assertion["Assert"] == {"Fn::Contains": [SUPPORTED, {"Ref": "AWS::Region"}]}
    assert assertion["AssertDescription"].startswith("This region is not supported")
    assert assertion["AssertDescription"].endswith(", ".join(SUPPORTED))
    assert sorted(main.json["Mappings"]["XGBoostImage"]) == SUPPORTED


def test_a_concrete_region_needs_no_rule(variant):
    assert "SupportedRegion" not in variant.json.get("Rules", {})


@pytest.mark.parametrize(("context", "region", "message"), [
    ({}, "me-central-1", "error: region me-central-1 is not supported: the stack needs"),
    ({"hyperparameters": "{bad"}, "us-east-1", "error: setting 'hyperparameters': '{bad' is not a valid JSON object"),
    ({"data": "CDNOW_master.txt"}, "us-east-1",  # make cdnow fetches it to .local/data/, not to the project root
     f"error: -c data=CDNOW_master.txt: {ROOT / 'CDNOW_master.txt'} is not a file"),
    ({"hyperparameters": '{"eta": 5}'}, "us-east-1",  # refused by training/hyperparameters.py, not at Train model
     "error: setting 'hyperparameters': hyperparameter eta=5.0: learning rate, in (0, 1]"),
    ({"hyperparameters": '{"id_column": "customerID"}'}, "us-east-1",  # the spec's: it was dropped silently
     "error: hyperparameter id_column: set by the feature spec"),
])
def test_cdk_synth_of_a_bad_setting_says_so_in_one_line(tmp_path, context, region, message):
    """What `npx cdk synth` runs (cdk.json's app), for an unsupported region or a malformed -c value."""
    env = {**os.environ, "CDK_DEFAULT_REGION": region, "CDK_DEFAULT_ACCOUNT": "123456789012",
           "CDK_OUTDIR": str(tmp_path), "CDK_CONTEXT_JSON": json.dumps(context)}
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:") or "Traceback" in line]
    assert len(errors) == 1 and errors[0].startswith(message), result.stderr


def test_the_readme_lists_the_supported_regions():
    """The README's "Today: …" list (written `ap-northeast-1/2/3`) names exactly the supported regions."""
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    listed = readme.split("XGBoost 3.2-0 image. Today: ", 1)[1].split(". Not the China", 1)[0]
    regions = []
    for item in listed.split(", "):
        first, *more = item.split("/")
        prefix = first.rsplit("-", 1)[0]
        regions += [first, *(f"{prefix}-{number}" for number in more)]
    assert sorted(regions) == SUPPORTED
