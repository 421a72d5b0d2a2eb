"""CleanupOnDelete: a custom resource provider whose handler removes, at stack deletion, what AWS leaves behind."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import CustomResource, Duration
from aws_cdk import aws_iam as iam
from aws_cdk import custom_resources as cr
from constructs import Construct

from churn.handlers import environment
from stacks import nag
from stacks.lambda_kit import LambdaKit


class CleanupOnDelete(Construct):
    """One Lambda-backed provider: Create/Update do nothing, Delete runs churn.handlers.<module>.handler for
    each resource.

    A resource should depend on what it cleans up after, so that CloudFormation deletes it (and runs
    the clean-up) before deleting that resource's owner.
    """

    def __init__(self, scope: Construct, construct_id: str, *, module: str, resource_type: str, description: str,
                 statements: Sequence[iam.PolicyStatement], kit: LambdaKit) -> None:
        super().__init__(scope, construct_id)
        self.resource_type = resource_type
        self.function = kit.function(
            self,
            "Function",
            description=f"Custom resource: {description}",
            handler=environment.handler(module),
            environment={environment.SERVICE_NAME_VARIABLE: f"churn-{module.replace('_', '-')}"},
            timeout=Duration.minutes(5),
            memory_size=256,
        )
        for statement in statements:
            self.function.add_to_role_policy(statement)
        provider_role, provider_logs = kit.store.lambda_role(
            self, "Provider", f"CloudFormation custom resource provider: {description}")
        self.provider = cr.Provider(
            self,
            "Provider",
            on_event_handler=self.function,
            framework_on_event_role=provider_role,
            log_group=provider_logs,
        )
        nag.wildcard_resource(
            provider_role,
            f"{self.function.function_arn}:*",
            "The custom resource Provider (aws-cdk-lib) may invoke the clean-up function and its versions",
        )

    def add_resource(self, construct_id: str, properties: Mapping[str, str]) -> CustomResource:
        """One thing to clean up, described by `properties` (what the handler reads)."""
        return CustomResource(
            self,
            construct_id,
            service_token=self.provider.service_token,
            resource_type=self.resource_type,
            properties=dict(properties),
        )
