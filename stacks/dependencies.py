"""Drop the DependsOn that CDK adds on a role a resource already references (cfn-lint W3005).

CDK makes a Lambda function or state machine depend on its whole role construct, so that the
role's policies exist before the resource is created. The dependency on the policies is real;
the one on the role itself is already implied by `Fn::GetAtt Role.Arn`, and cfn-lint warns about
it. Only that redundant entry is removed; every other dependency is kept as CDK computed it.
"""

from __future__ import annotations

import jsii
from aws_cdk import CfnResource, IStableListProducer, Lazy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn


@jsii.implements(IStableListProducer)
class _DependenciesWithout:
    """The resource's dependencies at synth time (after CDK has resolved them), minus one."""

    def __init__(self, resource: CfnResource, redundant: CfnResource) -> None:
        self._resource = resource
        self._redundant_path = redundant.node.path

    def produce(self, context=None) -> list[str] | None:  # noqa: ARG002 - jsii passes the resolve context
        stack = Stack.of(self._resource)
        kept = [
            stack.resolve(target.logical_id)
            for target in self._resource.obtain_dependencies()
            if isinstance(target, CfnResource) and target.node.path != self._redundant_path
        ]
        return sorted(kept) or None


def _drop(resource: CfnResource, redundant: CfnResource) -> None:
    resource.add_override("DependsOn", Lazy.list(_DependenciesWithout(resource, redundant)))


def drop_redundant_role_dependencies(stack: Stack) -> None:
    for construct in stack.node.find_all():
        if isinstance(construct, (lambda_.Function, sfn.StateMachine)):
            role = construct.role
            resource = construct.node.default_child
            if isinstance(role, iam.Role) and isinstance(resource, CfnResource):
                _drop(resource, role.node.default_child)
        elif isinstance(construct, CfnResource) and construct.cfn_resource_type == "AWS::Lambda::Function":
            # Lambda functions of aws-cdk-lib's own providers (S3 auto-delete, bucket notifications)
            # reference a sibling "Role" (an L1 or an L2).
            role = construct.node.scope.node.try_find_child("Role")
            if isinstance(role, iam.Role):
                role = role.node.default_child
            if isinstance(role, CfnResource) and role.cfn_resource_type == "AWS::IAM::Role":
                _drop(construct, role)
