"""cdk-nag (AWS Solutions pack) as a synth gate, and helpers to acknowledge one exact finding with a reason.

cdk-nag 3.x reports through CDK's policy validation: `app.synth()` fails on any finding that is
not acknowledged, and writes validation-report.json into the cloud assembly. An acknowledgement
names one finding, e.g. `AwsSolutions-IAM5[Resource::<DataBucket.Arn>/raw/*]`; it covers the
construct it is made on and everything below it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aws_cdk import Acknowledgment, App, Stack, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

IAM5 = "AwsSolutions-IAM5"
L1 = "AwsSolutions-L1"
XRAY_REASON = (
    "X-Ray tracing: xray:PutTraceSegments and xray:PutTelemetryRecords have no resource-level "
    "permissions, so AWS requires Resource '*'"
)


def add_security_checks(app: App) -> None:
    """Synthesis fails on any AWS Solutions finding that is not acknowledged."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def acknowledge(construct: IConstruct, finding: str, reason: str) -> None:
    """Acknowledge one finding (rule id, with `[Action::...]`/`[Resource::...]` where it has one)."""
    Validations.of(construct).acknowledge(Acknowledgment(id=finding, reason=reason))


def wildcard_resource(construct: IConstruct, resource: Any, reason: str) -> None:
    """`resource` as the template has it (tokens included), or as cdk-nag writes it in a finding."""
    acknowledge(construct, f"{IAM5}[Resource::{_flatten(Stack.of(construct).resolve(resource))}]", reason)


def wildcard_action(construct: IConstruct, action: str, reason: str) -> None:
    acknowledge(construct, f"{IAM5}[Action::{action}]", reason)


def _flatten(value: Any) -> str:
    """How cdk-nag writes a resolved (possibly tokenised) ARN in a finding: <LogicalId.Arn>, <AWS::Region>..."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((fn, args),) = value.items()
        if fn == "Ref":
            return f"<{args}>"
        if fn == "Fn::GetAtt":
            return f"<{args[0]}.{args[1]}>"
        if fn == "Fn::Sub" and isinstance(args, str):
            return re.sub(r"\$\{([^}]+)\}", r"<\1>", args)
        if fn == "Fn::Join":
            return args[0].join(_flatten(part) for part in args[1])
    return json.dumps(value, separators=(",", ":"))
