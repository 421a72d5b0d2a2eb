"""The AWS side's starting point: a boto3 session with its region, and the deployed stack as its
outputs describe it (bucket, state machine, feature groups, model package group) with console links."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, NoRegionError

from churn import contract, naming
from churn.schema import SINGLE_GROUP_NAME, FeatureSpec
from pipeline.errors import DEPLOY_HINT, REGION_HINT, OperatorError

_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10, read_timeout=60,
                        user_agent_extra="churn-pipeline-cli")


class AwsSession:
    """A boto3 session with one client per service; its region is --region, else AWS_REGION (as the AWS CLI
    reads it; boto3 alone does not), else the profile's."""

    def __init__(self, region: str | None = None):
        self.session = boto3.Session(region_name=region or os.environ.get("AWS_REGION") or None)
        if not self.session.region_name:
            raise NoRegionError()
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service, config=_CLIENT_CONFIG)
        return self._clients[service]


@dataclass(frozen=True)
class ConsoleLinks:
    region: str
    base: str  # the console of the ARN's partition

    @classmethod
    def for_arn(cls, arn: str) -> ConsoleLinks:
        parts = arn.split(":")
        partition, region = (parts[1], parts[3]) if len(parts) > 4 else ("aws", "us-east-1")
        domain = {"aws-cn": f"{region}.console.amazonaws.cn", "aws-us-gov": "console.amazonaws-us-gov.com"}
        return cls(region, f"https://{domain.get(partition, f'{region}.console.aws.amazon.com')}")

    def execution(self, execution_arn: str) -> str:
        return f"{self.base}/states/home?region={self.region}#/v2/executions/details/{execution_arn}"

    def training_job(self, name: str) -> str:
        return f"{self.base}/sagemaker/home?region={self.region}#/jobs/{name}"

    def model_package_group(self, name: str) -> str:
        return f"{self.base}/sagemaker/home?region={self.region}#/model-registry/{name}"


@dataclass(frozen=True)
class Deployment:
    stack_name: str
    region: str
    outputs: dict[str, str]

    @classmethod
    def load(cls, cloudformation: Any, stack_name: str) -> Deployment:
        region = cloudformation.meta.region_name
        try:  # by name, DescribeStacks answers one stack or a ValidationError
            stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") == "ValidationError" and "does not exist" in str(error.get("Message", "")):
                raise OperatorError(f"stack '{stack_name}' not found in region {region}",
                                    f"{DEPLOY_HINT}; if it is in another region, {REGION_HINT} (--stack-name if you "
                                    "deployed it under another name)", error="StackNotFound") from None
            raise
        status = stack.get("StackStatus", "")
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", []) if "OutputValue" in o}
        missing = [key for key in (contract.BUCKET_OUTPUT, contract.STATE_MACHINE_OUTPUT) if key not in outputs]
        if missing and status.endswith("_IN_PROGRESS"):
            raise OperatorError(f"stack '{stack_name}' is {status}", "wait for the deployment to finish",
                                error="StackNotReady")
        if missing:
            raise OperatorError(f"stack '{stack_name}' ({status}) has no output {', '.join(missing)}",
                                "is it this project's stack? pass --stack-name, or redeploy with `make deploy`",
                                error="StackNotReady")
        return cls(stack_name=stack_name, region=region, outputs=outputs)

    @property
    def bucket(self) -> str:
        return self.outputs[contract.BUCKET_OUTPUT]

    @property
    def state_machine_arn(self) -> str:
        return self.outputs[contract.STATE_MACHINE_OUTPUT]

    @property
    def feature_groups(self) -> dict[str, str]:
        """Spec group -> feature group name, labels included (the `FeatureGroups` output; a stack deployed
        before it had one group, `FeatureGroupName`)."""
        if contract.FEATURE_GROUPS_OUTPUT in self.outputs:
            described = json.loads(self.outputs[contract.FEATURE_GROUPS_OUTPUT])
            return {group: str(value[contract.FEATURE_GROUP_KEY]) for group, value in described.items()}
        first = self.outputs.get(contract.FEATURE_GROUP_OUTPUT)
        return {SINGLE_GROUP_NAME: first} if first else {}

    @property
    def model_package_group(self) -> str | None:
        return self.outputs.get(contract.MODEL_PACKAGE_GROUP_OUTPUT)

    @property
    def console(self) -> ConsoleLinks:
        return ConsoleLinks.for_arn(self.state_machine_arn)

    def spec_matches(self, spec: FeatureSpec) -> bool:
        """Was the stack deployed with this feature spec? Each group's name carries its schema's fingerprint."""
        expected = {g.name: naming.feature_group_name(self.stack_name, g.name, g.fingerprint())
                    for g in spec.all_groups}
        return self.feature_groups == expected
