"""Linters as tests: cfn-lint on the templates and on the resolved ASL, cdk-nag on the whole app."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from aws_cdk import App, RemovalPolicy, Stack
from aws_cdk import aws_s3 as s3
from cfnlint.api import ManualArgs, lint

from stacks.nag import add_security_checks
from tests.infra.conftest import CDNOW_SPEC, VARIANT_ENV, synthesize

ROOT = Path(__file__).resolve().parents[2]
LINT_REGIONS = ["us-east-1", "eu-west-1"]
IGNORED = yaml.safe_load((ROOT / ".cfnlintrc").read_text(encoding="utf-8"))["ignore_checks"]  # as `make lint`


def cfn_lint(template: dict, regions: list[str] = LINT_REGIONS) -> list[str]:
    matches = lint(json.dumps(template), config=ManualArgs(regions=regions, ignore_checks=IGNORED))
    return [f"{m.rule.id} {m.message} ({'/'.join(map(str, m.path))})" for m in matches]


def violations(outdir) -> list[str]:
    report = json.loads((outdir / "validation-report.json").read_text())
    return [
        f"{violation['ruleName']} at {construct['constructPath']}"
        for plugin in report["pluginReports"]
        for violation in plugin["violations"]
        for construct in violation["violatingConstructs"]
    ]


def state_machine_template(definition: dict) -> dict:
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "StateMachine": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {"RoleArn": "arn:aws:iam::123456789012:role/pipeline", "Definition": definition},
            }
        },
    }


def test_templates_pass_cfn_lint_without_errors_or_warnings(main, variant, cdnow):
    assert cfn_lint(main.json) == []
    assert cfn_lint(variant.json, [VARIANT_ENV.region]) == []
    assert cfn_lint(cdnow.json) == []


def test_resolved_state_machine_definition_passes_cfn_lint(main, variant, cdnow):
    assert cfn_lint(state_machine_template(main.definition)) == []
    assert cfn_lint(state_machine_template(variant.definition), [VARIANT_ENV.region]) == []
    assert cfn_lint(state_machine_template(cdnow.definition)) == []


def test_cfn_lint_does_check_the_definition(main):
    """Guard for the test above: a broken definition is reported, so a clean result means something."""
    broken = copy.deepcopy(main.definition)
    broken["States"]["Validate input"]["Type"] = "Teleport"
    assert any(m.startswith("E3601 'Teleport'") for m in cfn_lint(state_machine_template(broken)))


@pytest.mark.parametrize("name", ["default", "variant", "cdnow"])
def test_cdk_nag_has_no_unacknowledged_findings(tmp_path, name, variant_context):
    """Separate apps with the checks registered: `cdk synth` as shipped, with every option on, and with
    several feature groups."""
    if name == "default":
        synthesized = synthesize(tmp_path, security_checks=True)
    elif name == "variant":
        synthesized = synthesize(tmp_path, variant_context, env=VARIANT_ENV, security_checks=True)
    else:
        synthesized = synthesize(tmp_path, {"spec": str(CDNOW_SPEC)}, security_checks=True)
    assert synthesized.template_path.exists()
    assert violations(tmp_path) == []


def test_cdk_nag_fails_synth_on_an_unacknowledged_finding(tmp_path):
    app = App(outdir=str(tmp_path))
    stack = Stack(app, "Careless")
    s3.Bucket(stack, "Open", removal_policy=RemovalPolicy.DESTROY)  # no SSL rule, no access logs
    add_security_checks(app)
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    found = violations(tmp_path)
    assert any(v.startswith("AwsSolutions-S10 ") for v in found)
    assert any(v.startswith("AwsSolutions-S1 ") for v in found)
