"""CleanupOnDelete: a custom resource whose handler removes, at stack deletion, what AWS leaves behind."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import CustomResource, Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import custom_resources as cr
from constructs import Construct

from stacks import nag
from stacks.functions import RUNTIME_REASON, python_function
from stacks.storage import DataStore


class CleanupOnDelete(Construct):
    """One Lambda-backed custom resource: Create/Update do nothing, Delete runs `handler`.

    The resource should depend on what it cleans up after, so that CloudFormation deletes it (and
    runs the clean-up) before deleting that resource's owner.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        description: str,
        handler: str,
        resource_type: str,
        properties: Mapping[str, str],
        statements: Sequence[iam.PolicyStatement],
        store: DataStore,
        lambda_code: lambda_.Code,
        powertools_layer: lambda_.ILayerVersion,
        service_name: str,
        resource_id: str = "Resource",
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = python_function(
            self,
            "Function",
            description=f"Custom resource: {description}",
            handler=handler,
            code=lambda_code,
            layer=powertools_layer,
            log_group=store.log_group("FunctionLogs", self),
            environment={"POWERTOOLS_SERVICE_NAME": service_name},
            timeout=Duration.minutes(5),
            memory_size=256,
        )
        for statement in statements:
            self.function.add_to_role_policy(statement)
        provider_role = iam.Role(
            self,
            "ProviderRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"CloudFormation custom resource provider: {description}"[:1000],
        )
        provider_logs = store.log_group("ProviderLogs", self)
        provider_logs.grant_write(provider_role)
        provider = cr.Provider(
            self,
            "Provider",
            on_event_handler=self.function,
            framework_on_event_role=provider_role,
            log_group=provider_logs,
        )
        self.resource = CustomResource(
            self,
            resource_id,
            service_token=provider.service_token,
            resource_type=resource_type,
            properties=dict(properties),
        )

        nag.wildcard_resource(self.function.role, "*", nag.XRAY_REASON)
        nag.lambda_runtime(self.function, RUNTIME_REASON)
        nag.wildcard_resource(
            provider_role,
            f"{nag.ref(self.function.node.default_child, 'Arn')}:*",
            "The custom resource Provider (aws-cdk-lib) may invoke the clean-up function and its versions",
        )
