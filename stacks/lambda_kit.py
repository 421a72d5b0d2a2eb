"""Python Lambda functions the way this project builds them: own role, own encrypted log group, Powertools,
a layer with the locked botocore's Feature Store model; and the custom resource provider that removes, at
stack deletion, what AWS leaves behind."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import botocore.session
from aws_cdk import CustomResource, Duration, Token
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_ssm as ssm
from aws_cdk import custom_resources as cr
from constructs import Construct

from churn.handlers import environment
from stacks import nag
from stacks.storage import DataStore, stage

RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.X86_64
# Powertools for AWS Lambda (Python) publishes its layer ARN as a public SSM parameter in every
# region it serves: /aws/service/powertools/python/{arch}/{python version}/{latest | x.y.z}.
POWERTOOLS_LAYER_PARAMETER = f"/aws/service/powertools/python/{ARCHITECTURE.name}/{RUNTIME.name}/latest"
RUNTIME_REASON = (
    f"Pinned to {RUNTIME.name} on purpose: the Powertools layer is resolved for {RUNTIME.name} and the code is "
    "tested on it; the runtime is supported, and moves together with the layer parameter"
)
ENVIRONMENT_LIMIT_BYTES = 4096  # Lambda's limit on all environment variables of a function together
# The runtime's own botocore may predate BatchWriteRecord (first in botocore 1.43.37), and the
# runtime's SDK version is not ours to choose: a layer brings the locked botocore's model of the service, which
# botocore reads before its own through AWS_DATA_PATH (its setting for extra model folders, searched first).
BUNDLED_MODEL = "sagemaker-featurestore-runtime"
MODELS_FOLDER = "botocore-models"
LAYER_ROOT = "/opt"  # where Lambda unpacks a layer


class EnvironmentTooLarge(ValueError):
    """The Lambda environment would exceed 4 KB; CloudFormation would reject it at deploy time."""


def check_environment(function_name: str, environment: Mapping[str, str]) -> None:
    """Raises if a value is only known at deploy time (its size cannot be checked) or the bytes Lambda
    counts for the environment exceed its limit."""
    for name, value in environment.items():
        if Token.is_unresolved(value):
            raise ValueError(f"environment variable {name} is a deploy-time token: its size cannot be checked")
    size = sum(len(name.encode()) + len(value.encode()) for name, value in environment.items())
    if size > ENVIRONMENT_LIMIT_BYTES:
        largest = max(environment, key=lambda k: len(environment[k]))
        raise EnvironmentTooLarge(
            f"{function_name}: the Lambda environment is {size} bytes, over the {ENVIRONMENT_LIMIT_BYTES}-byte "
            f"limit ({largest} is {len(environment[largest])} bytes); shorten the feature spec or its names"
        )


def models_folder() -> Path:
    """A build folder holding BUNDLED_MODEL as botocore lays out its data: <service>/<api version>/service-2.json."""
    loader = botocore.session.get_session().get_component("data_loader")
    version = loader.determine_latest_version(BUNDLED_MODEL, "service-2")
    model = loader.load_service_model(BUNDLED_MODEL, "service-2", version)
    return stage(f"{MODELS_FOLDER}/{BUNDLED_MODEL}/{version}/service-2.json", json.dumps(model).encode()).parents[3]


class LambdaKit:
    """What every function of the stack shares: the code asset (the whole lambda/ folder, package `churn`,
    without caches), the AWS-managed Powertools layer of the deployment region (resolved by CloudFormation),
    and the store whose key encrypts the functions' log groups."""

    def __init__(self, scope: Construct, lambda_dir: Path, store: DataStore) -> None:
        self.code = lambda_.Code.from_asset(str(lambda_dir), exclude=["**/__pycache__", "*.pyc", ".pytest_cache"])
        arn = ssm.StringParameter.value_for_string_parameter(scope, POWERTOOLS_LAYER_PARAMETER)
        self.layers = [lambda_.LayerVersion.from_layer_version_arn(scope, "PowertoolsLayer", arn),
                       lambda_.LayerVersion(scope, "BotocoreModels", code=lambda_.Code.from_asset(str(models_folder())),
                                            compatible_runtimes=[RUNTIME],
                                            description=f"The locked botocore's model of {BUNDLED_MODEL}")]
        self.store = store

    def function(
        self,
        scope: Construct,
        construct_id: str,
        *,
        description: str,
        handler: str,
        environment: Mapping[str, str],
        timeout: Duration,
        memory_size: int,
    ) -> lambda_.Function:
        """A function with a role of its own that can only write its own log group (no managed policy)."""
        environment = {**environment, "AWS_DATA_PATH": f"{LAYER_ROOT}/{MODELS_FOLDER}"}
        check_environment(construct_id, environment)
        role, log_group = self.store.lambda_role(scope, construct_id, f"{description} (Lambda execution role)")
        function = lambda_.Function(
            scope,
            construct_id,
            description=description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            code=self.code,
            handler=handler,
            layers=self.layers,
            role=role,
            log_group=log_group,
            environment=environment,
            timeout=timeout,
            memory_size=memory_size,
            tracing=lambda_.Tracing.ACTIVE,
        )
        nag.wildcard_resource(role, "*", nag.XRAY_REASON)  # tracing=ACTIVE grants X-Ray on '*'
        nag.acknowledge(function, nag.L1, RUNTIME_REASON)
        return function


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
