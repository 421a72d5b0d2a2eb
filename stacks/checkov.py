"""checkov runs on the synthesised template; a check that does not fit is skipped in the resource's
own metadata (`Metadata: checkov: skip: [{id, comment}]`), with the reason next to it."""

from __future__ import annotations

from aws_cdk import CfnResource
from aws_cdk import aws_lambda as lambda_
from constructs import IConstruct

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
