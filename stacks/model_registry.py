"""ModelRegistry: the model package group approved models are registered in, emptied on destroy so it can go."""

from __future__ import annotations

from typing import cast

from aws_cdk import CfnResource, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from churn import naming
from stacks import nag
from stacks.lambda_kit import CleanupOnDelete, LambdaKit


class ModelRegistry(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, kit: LambdaKit) -> None:
        super().__init__(scope, construct_id)
        self.name = name = naming.model_package_group_name(Stack.of(self).stack_name)
        self.group = sagemaker.CfnModelPackageGroup(
            self,
            "ModelPackageGroup",
            model_package_group_name=name,
            model_package_group_description="Churn models that passed the pipeline's quality threshold",
        )
        self.packages_arn = Stack.of(self).format_arn(service="sagemaker", resource="model-package",
                                                      resource_name=f"{name}/*")
        # A model package group that still holds packages cannot be deleted: empty it first. The clean-up
        # depends on the group, so CloudFormation runs it before deleting the group.
        cleanup = CleanupOnDelete(
            self,
            "Cleanup",
            description="delete the model packages on stack deletion so their group can go",
            module="registry_cleanup",
            resource_type="Custom::ModelRegistryCleanup",
            statements=[
                iam.PolicyStatement(actions=["sagemaker:ListModelPackages"], resources=["*"]),
                iam.PolicyStatement(actions=["sagemaker:DeleteModelPackage"], resources=[self.packages_arn]),
            ],
            kit=kit,
        )
        nag.wildcard_resource(cleanup.function.role, "*",
                              "sagemaker:ListModelPackages does not support resource-level permissions")
        nag.wildcard_resource(cleanup.function.role, self.packages_arn,
                              "Deletes only the packages of this stack's model package group, whatever their "
                              "version numbers")
        resource = cleanup.add_resource("Resource", {"ModelPackageGroupName": name})
        resource.node.add_dependency(self.group)
        # The logical IDs these had when the stack was one construct (tests/infra/test_stateful_ids.py pins
        # them): under a new ID CloudFormation would replace the group, delete the old clean-up resource
        # (which deletes every registered model package), and refuse the clean-up's new service token (its
        # provider's function).
        self.group.override_logical_id("PipelineModelPackageGroup26A0C73B")
        cast(CfnResource, resource.node.default_child).override_logical_id("RegistryCleanup5741BC87")
        provider_function = cleanup.provider.node.find_child("framework-onEvent").node.default_child
        cast(CfnResource, provider_function).override_logical_id("RegistryCleanupProviderframeworkonEventE624127E")
