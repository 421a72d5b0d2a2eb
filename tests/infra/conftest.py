"""Synthesised stacks shared by the infrastructure tests: each app is synthesised once per session."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# jsii prints a banner on every start under Node 20 (end of life); it is noise in test output.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import Environment  # noqa: E402 - after the variable above, which jsii reads at start
from aws_cdk.assertions import Template  # noqa: E402

from app import build_app  # noqa: E402
from tests.infra.asl_resolver import resolve_definition  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

VARIANT_SPEC = {
    "description": "A smaller schema: a new fingerprint, so a new feature group",
    "record_identifier": {"name": "account_id", "source": "AccountId", "type": "Integral"},
    "event_time": {"name": "event_time", "type": "String"},
    "label": {"name": "churned", "source": "Churned", "type": "Integral"},
    "features": [
        {"name": "plan", "source": "Plan", "type": "String"},
        {"name": "monthly_spend", "source": "MonthlySpend", "type": "Fractional"},
    ],
}
CDNOW_SPEC = ROOT / "data" / "cdnow.spec.json"
VARIANT_ENV = Environment(account="123456789012", region="eu-west-1")
AGNOSTIC = Environment()  # no account, no region: what `cdk synth` gives without AWS configuration


@dataclass
class Synthesized:
    """One synthesised stack: the CDK objects, the template as written, and its state machine."""

    stack: Any
    outdir: Path
    template_path: Path
    json: dict[str, Any]

    @property
    def template(self) -> Template:
        return Template.from_json(self.json)

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.json["Resources"].items() if v["Type"] == resource_type}

    def one(self, resource_type: str) -> tuple[str, dict[str, Any]]:
        found = self.resources(resource_type)
        assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
        return next(iter(found.items()))

    @property
    def definition(self) -> dict[str, Any]:
        _, machine = self.one("AWS::StepFunctions::StateMachine")
        return resolve_definition(self.json, machine["Properties"]["DefinitionString"])


def synthesize(
    outdir: Path, context: dict[str, Any] | None = None, env: Environment = AGNOSTIC, security_checks: bool = False
) -> Synthesized:
    """Synthesise into `outdir`: environment-agnostic unless `env` says otherwise (CDK_DEFAULT_* ignored)."""
    app, stack = build_app(context, outdir=str(outdir), env=env, security_checks=security_checks)
    app.synth()
    path = outdir / f"{stack.stack_name}.template.json"
    return Synthesized(stack=stack, outdir=outdir, template_path=path, json=json.loads(path.read_text()))


@pytest.fixture(scope="session")
def main(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The app with no account or region (region-agnostic: `cdk synth` always has one), no trigger, no e-mail."""
    return synthesize(tmp_path_factory.mktemp("main"))


@pytest.fixture(scope="session")
def variant_spec_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "variant.spec.json"
    path.write_text(json.dumps(VARIANT_SPEC))
    return path


@pytest.fixture(scope="session")
def variant_context(variant_spec_path: Path) -> dict[str, Any]:
    return {
        "spec": str(variant_spec_path),
        "stack_name": "Churn-Dev",
        "enable_s3_trigger": "true",
        "alarm_email": "ops@example.com",
        "ingest_batch_size": "250",
        "xgboost_version": "3.2-0",
    }


@pytest.fixture(scope="session")
def cdnow(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """Several feature groups (profile, activity, labels) derived from one input file, region-agnostic."""
    data = tmp_path_factory.mktemp("cdnow-data") / "CDNOW_sample.txt"
    data.write_text("00001 19970101  1   11.77\n00002 19970112  1   12.00\n")
    return synthesize(tmp_path_factory.mktemp("cdnow"), {"spec": str(CDNOW_SPEC), "data": str(data)})


@pytest.fixture(scope="session")
def variant(tmp_path_factory: pytest.TempPathFactory, variant_context: dict[str, Any]) -> Synthesized:
    """Every option switched: another spec and stack name, a concrete region, trigger and e-mail."""
    return synthesize(tmp_path_factory.mktemp("variant"), variant_context, env=VARIANT_ENV)
