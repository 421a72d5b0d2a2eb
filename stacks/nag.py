"""The synth gates' exceptions, each with its reason: cdk-nag acknowledgements and checkov skips.

cdk-nag (AWS Solutions pack) 3.x reports through CDK's policy validation: `app.synth()` fails on any
finding that is not acknowledged, and writes validation-report.json into the cloud assembly. An
acknowledgement names one finding, e.g. `AwsSolutions-IAM5[Resource::<DataBucket.Arn>/raw/*]`; it covers
the construct it is made on and everything below it.

checkov runs on the synthesised template; a check that does not fit is skipped in the resource's own
metadata (`Metadata: checkov: skip: [{id, comment}]`), with the reason next to it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aws_cdk import Acknowledgment, App, CfnResource, Stack, Validations
from aws_cdk import aws_lambda as lambda_
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

IAM5 = "AwsSolutions-IAM5"
L1 = "AwsSolutions-L1"
XRAY_REASON = (
    "X-Ray tracing: xray:PutTraceSegments and xray:PutTelemetryRecords have no resource-level "
    "permissions, so AWS requires Resource '*'"
)
LAMBDA_SKIPS = {
    "CKV_AWS_116": (
        "No dead-letter queue: every function here is invoked synchronously (by the state machine's "
        "tasks, or by CloudFormation custom resources at deploy time), and a DLQ only receives failed "
        "asynchronous invocations; failures reach the state machine's failure path or the stack events"
    ),
    "CKV_AWS_117": (
        "Not in a VPC: the functions call AWS APIs only (S3, Feature Store, Glue, SageMaker) and reach no "
        "private network resource; a VPC would add NAT or endpoints and no isolation"
    ),
    "CKV_AWS_115": (
        "No reserved concurrency: the Distributed Map's MaxConcurrency bounds the ingest function and the "
        "others run once per execution or deployment; reserving concurrency fails deployment in accounts "
        "whose concurrency limit is still the default minimum"
    ),
}
ENVIRONMENT_SKIP = (
    "CKV_AWS_173",
    "Environment variables hold no secrets (feature group name, feature spec, Powertools settings) and "
    "are encrypted at rest by Lambda with its AWS managed key",
)
BUCKET_ACCESS_LOGS_SKIP = "CKV_AWS_18"


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


def skip(resource: CfnResource, check_id: str, comment: str) -> None:
    """Skip one check on one resource, keeping the skips already there."""
    metadata = resource.get_metadata("checkov") or {"skip": []}
    metadata["skip"].append({"id": check_id, "comment": comment})
    resource.add_metadata("checkov", metadata)


def skip_lambda_checks(scope: IConstruct) -> None:
    """The Lambda checks that do not fit how this stack's functions run, on every function in scope
    (this project's and aws-cdk-lib's custom resource handlers alike)."""
    for node in scope.node.find_all():
        if not isinstance(node, CfnResource) or node.cfn_resource_type != "AWS::Lambda::Function":
            continue
        for check_id, comment in LAMBDA_SKIPS.items():
            skip(node, check_id, comment)
        if isinstance(node, lambda_.CfnFunction) and node.environment is not None:
            skip(node, *ENVIRONMENT_SKIP)
