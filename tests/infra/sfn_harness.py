"""Run the synthesised state machine on moto's Step Functions interpreter, with the smallest test-side
extension that lets the real definition run end to end on one machine, as it runs on AWS.

moto (tests/support/moto.py pins the release) interprets Amazon States Language for real and hosts S3,
IAM, Athena's and SageMaker's control planes and CloudWatch Logs. What it cannot do, and what stands in:

- **Lambda** (in_process_lambda): each function's handler runs in this process with the environment
  the template gives it; a raised exception is the runtime's `Unhandled` error.
- **Distributed Map** (distributed_map): ItemReader, then ItemSelector per item, then ItemBatcher, as
  Step Functions orders them; the failure thresholds; the ResultWriter's export to S3 (manifest and
  JSON Lines files of the child executions).
- **`.sync` jobs** (sync_jobs): Athena queries on DuckDB over the local feature store's offline store
  (athena_on_duckdb), SageMaker training and Batch Transform as local subprocesses (sagemaker_jobs).
- **Feature Store**: each feature group of the template is created from its CfnFeatureGroup properties
  (checked against CreateFeatureGroup's request model) in a `LocalFeatureStore`; the handlers'
  `sagemaker-featurestore-runtime` clients are the product's own, answered by that store
  (featurestore_runtime).
- **Its interpreter's deviations** from Step Functions: tests/support/moto.py.

CDK tokens in the definition are resolved with `asl_resolver` (deterministic names); the resources the
definition names (bucket, functions, workgroup, model package group, feature groups) are created in
moto or locally under those names from the template's own properties. The custom resources (clean-ups
at stack deletion, the bucket deployment) are not run: nothing here deletes a stack.
"""

from __future__ import annotations

import contextlib
import csv
import inspect
import io
import json
import os
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
from botocore.validate import validate_parameters
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend

from churn.handlers import _runtime
from churn.schema import FeatureSpec
from pipeline.local_aws.feature_store import LocalFeatureStore
from tests.infra import distributed_map, sync_jobs
from tests.infra.asl_resolver import resolve, resolve_definition
from tests.infra.athena_on_duckdb import AthenaOnDuckDB, split_s3_uri
from tests.infra.featurestore_runtime import FEATURE_STORE_RUNTIME, RoutedFeatureStoreRuntime
from tests.infra.in_process_lambda import REAL_CLIENT, InProcessLambda
from tests.infra.sagemaker_jobs import SageMakerTraining, SageMakerTransform
from tests.infra.sync_jobs import json_safe
from tests.support.moto import ACCOUNT, LAMBDA_RUNTIME_ENVIRONMENT, REGION, fake_credentials, step_functions_patches

MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
STATE_MACHINE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/pipeline-state-machine"
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
# The runtime has CloudWatch metrics; these tests read none (EMF lines would only fill the output).
HARNESS_ENVIRONMENT = {**LAMBDA_RUNTIME_ENVIRONMENT, "POWERTOOLS_METRICS_DISABLED": "true"}


@dataclass
class Execution:
    arn: str
    name: str
    status: str
    output: Any = None
    error: str | None = None
    cause: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def entered(self) -> list[str]:
        """Names of the states entered, in order (a Distributed Map's children have histories of their own)."""
        return [e["stateEnteredEventDetails"]["name"] for e in self.history if "stateEnteredEventDetails" in e]

    def state_output(self, name: str) -> dict[str, Any]:
        """The output of the last exit from state `name`."""
        exits = [e["stateExitedEventDetails"] for e in self.history
                 if e.get("stateExitedEventDetails", {}).get("name") == name]
        return json.loads(exits[-1]["output"])


class PipelineHarness:
    """The synthesised pipeline "deployed" in moto plus local stand-ins; use as a context manager."""

    def __init__(self, template: dict[str, Any], outdir: Path, workdir: Path, *, spec: FeatureSpec) -> None:
        self.template = template
        self.outdir = Path(outdir)
        self.workdir = Path(workdir)
        self.spec = spec
        self.assets = _asset_sources(self.outdir)
        self.athena = AthenaOnDuckDB()
        self.training = SageMakerTraining()
        self.transform = SageMakerTransform()
        self.jobs: dict[tuple[str, str], Any] = {
            ("athena", "startQueryExecution"): self.athena,
            ("sagemaker", "createTrainingJob"): self.training,
            ("sagemaker", "createTransformJob"): self.transform,
        }
        self.lambdas = InProcessLambda(self)
        self.feature_store = LocalFeatureStore(self.workdir / "feature-store", account=ACCOUNT, region=REGION)
        # What answers the handlers' Feature Store runtime clients: the store itself, or a test's wrapper.
        self.feature_store_runtime: Any = self.feature_store
        self.runtime = RoutedFeatureStoreRuntime(REAL_CLIENT.__wrapped__, lambda: self.feature_store_runtime)
        self._stack = contextlib.ExitStack()
        self._clients: dict[Any, Any] = {}
        self._checked_modules: set[str] = set()
        self._shared_environment: dict[str, str] = {}
        self.definition: dict[str, Any] = {}
        self.state_machine_arn = ""

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> PipelineHarness:
        stack = self._stack
        empty = self.workdir / "empty-aws-config"
        empty.write_text("")
        stack.enter_context(mock.patch.dict(os.environ, {**fake_credentials(empty), **HARNESS_ENVIRONMENT}))
        stack.enter_context(mock_aws(config=MOTO_CONFIG))
        lambdas = self.lambdas
        stack.enter_context(mock.patch.object(LambdaSimpleBackend, "invoke",
                                              lambda backend, *args: lambdas.invoke(backend, *args)))
        for patcher in [*step_functions_patches(), *sync_jobs.patches(self)]:
            stack.enter_context(patcher)
        real, routed = inspect.signature(REAL_CLIENT), inspect.signature(self.route_client)
        if list(real.parameters) != list(routed.parameters):
            raise TypeError(f"route_client{routed} must take the parameters of _runtime.client{real}")
        stack.enter_context(mock.patch.object(_runtime, "client", self.route_client))
        stack.callback(lambdas.restore)
        stack.callback(self.feature_store.close)
        try:
            self._deploy()
        except BaseException:
            stack.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    # -- Lambda environments -----------------------------------------------------------------
    def _set_shared_environment(self, environments: list[dict[str, str]]) -> None:
        """Variables are set once for the whole harness where the invoked functions agree on them
        (a function without one merely sees it too): map iterations create boto3 clients on other
        threads, which iterate os.environ, so it must not change while an execution runs. Only a
        variable two functions set differently is set around each invocation."""
        values: dict[str, set[str]] = {}
        for environment in environments:
            for name, value in environment.items():
                values.setdefault(name, set()).add(value)
        self._shared_environment = {name: found.pop() for name, found in values.items() if len(found) == 1}
        self._stack.enter_context(mock.patch.dict(os.environ, self._shared_environment))

    @contextlib.contextmanager
    def function_environment(self, variables: dict[str, str]) -> Iterator[None]:
        """Set (and afterwards restore) only the variables this function has beyond the shared ones."""
        own = {k: v for k, v in variables.items() if self._shared_environment.get(k) != v}
        saved = {k: os.environ.get(k) for k in own}
        os.environ.update(own)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    # -- clients -----------------------------------------------------------------------------
    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = boto3.client(service, region_name=REGION)
        return self._clients[service]

    def route_client(self, service: str, max_pool_connections: int = 10, parameter_validation: bool = True) -> Any:
        """What `churn.handlers._runtime.client` returns in the harness (same parameters: checked when
        the harness starts); the Feature Store runtime's is the product's client, locally answered."""
        if service != FEATURE_STORE_RUNTIME:
            return self.client(service)
        key = (service, max_pool_connections, parameter_validation)
        if key not in self._clients:
            self._clients[key] = self.runtime.client(max_pool_connections, parameter_validation)
        return self._clients[key]

    # -- deployment --------------------------------------------------------------------------
    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == resource_type}

    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1 and next(iter(value)).startswith(("Ref", "Fn::")):
            return resolve(self.template, value)
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value

    def name_of(self, logical_id: str) -> str:
        return resolve(self.template, {"Ref": logical_id})

    def _deploy(self) -> None:
        ((machine_id, machine),) = self.resources("AWS::StepFunctions::StateMachine").items()
        self.definition = resolve_definition(self.template, machine["Properties"]["DefinitionString"])
        s3 = self.client("s3")
        for logical_id, bucket in self.resources("AWS::S3::Bucket").items():
            s3.create_bucket(Bucket=self.name_of(logical_id))
            versioning = bucket.get("Properties", {}).get("VersioningConfiguration", {}).get("Status")
            if versioning:
                s3.put_bucket_versioning(Bucket=self.name_of(logical_id),
                                         VersioningConfiguration={"Status": versioning})
        self._deploy_functions()
        athena = self.client("athena")
        for resource in self.resources("AWS::Athena::WorkGroup").values():
            props = self.resolve(resource["Properties"])
            athena.create_work_group(Name=props["Name"], Configuration=props["WorkGroupConfiguration"])
        for resource in self.resources("AWS::SageMaker::ModelPackageGroup").values():
            self.client("sagemaker").create_model_package_group(
                ModelPackageGroupName=resource["Properties"]["ModelPackageGroupName"])
        for resource in self.resources("AWS::SageMaker::FeatureGroup").values():
            self._create_feature_group(self.resolve(resource["Properties"]))
        runnable = json.loads(json.dumps(self.definition))
        map_states: dict[str, distributed_map.MapState] = {}
        distributed_map.runnable_on_moto(runnable["States"], map_states)
        for patcher in distributed_map.patches(map_states):
            self._stack.enter_context(patcher)
        self.state_machine_arn = self.client("stepfunctions").create_state_machine(
            name=self.name_of(machine_id).rsplit(":", 1)[1], definition=json.dumps(runnable),
            roleArn=STATE_MACHINE_ROLE,
        )["stateMachineArn"]

    def _create_feature_group(self, props: dict[str, Any]) -> None:
        """CloudFormation's CfnFeatureGroup properties are CreateFeatureGroup's request: checked against
        its model (as the service checks it), then created in the local store."""
        model = self.client("sagemaker").meta.service_model.operation_model("CreateFeatureGroup")
        validate_parameters(props, model.input_shape)
        definitions = {(d["FeatureName"], d["FeatureType"]) for d in props["FeatureDefinitions"]}
        if not any(definitions == {(d["FeatureName"], d["FeatureType"]) for d in g.feature_definitions()}
                   for g in self.spec.all_groups):
            raise AssertionError(f"{props['FeatureGroupName']} is no feature group of the spec given to the harness")
        self.feature_store.create_feature_group(**props)
        catalog = props["OfflineStoreConfig"]["DataCatalogConfig"]
        self.athena.tables[(catalog["Database"], catalog["TableName"])] = (
            props["FeatureGroupName"], props["RecordIdentifierFeatureName"])

    def _deploy_functions(self) -> None:
        role = self.client("iam").create_role(RoleName="lambda-role", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                           "Action": "sts:AssumeRole"}],
        }))["Role"]["Arn"]
        environments = []
        definition_text = json.dumps(self.definition)
        for logical_id, resource in self.resources("AWS::Lambda::Function").items():
            props = resource["Properties"]
            if not props.get("Handler", "").startswith("churn."):
                continue  # CDK's own deploy-time handlers (bucket deployment, custom resource providers)
            arn = resolve(self.template, {"Fn::GetAtt": [logical_id, "Arn"]})
            environment = self.resolve(props.get("Environment", {}).get("Variables", {}))
            if arn in definition_text:  # invoked by the state machine
                environments.append(environment)
            self.client("lambda").create_function(
                FunctionName=arn.rsplit(":", 1)[1], Runtime=props["Runtime"], Role=role, Handler=props["Handler"],
                Code={"ZipFile": self._code_zip(props["Code"]["S3Key"])}, Environment={"Variables": environment},
                Timeout=props.get("Timeout", 3), MemorySize=props.get("MemorySize", 128),
            )
        self._set_shared_environment(environments)

    def _code_zip(self, object_key: str) -> bytes:
        source = self.assets[object_key]
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for path in sorted(source.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(source).as_posix())
        return buffer.getvalue()

    def check_deployed_code(self, module_name: str, module: Any) -> None:
        """The handler's module, and every module of its package imported in-process (what the handler
        runs), must be byte-for-byte the one in the function's asset: a venv whose editable install
        points at another checkout would otherwise test that checkout's library code."""
        package = module_name.partition(".")[0]
        loaded = [(name, m) for name, m in list(sys.modules.items()) if name.partition(".")[0] == package]
        for name, imported in [(module_name, module), *loaded]:
            if name in self._checked_modules or not getattr(imported, "__file__", None):
                continue
            path = Path(imported.__file__)
            relative = Path(*name.split("."), *(["__init__.py"] if path.name == "__init__.py" else []))
            relative = relative if relative.suffix == ".py" else relative.with_suffix(".py")
            candidates = [p / relative for p in self.assets.values() if p.is_dir() and (p / relative).is_file()]
            if not candidates:
                raise AssertionError(f"{relative} is not in any Lambda asset of the cloud assembly")
            if not any(c.read_bytes() == path.read_bytes() for c in candidates):
                raise AssertionError(f"{path} differs from {relative} in the Lambda asset")
            self._checked_modules.add(name)

    # -- S3 and code bundles -----------------------------------------------------------------
    def code_bundle(self, uri: str, target: Path) -> Path:
        """Extract a SageMaker `sagemaker_submit_directory` bundle, taken from the cloud assembly."""
        _, key = split_s3_uri(uri)
        if key not in self.assets:
            raise AssertionError(f"{uri} is not an asset of the cloud assembly")
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(self.assets[key], "r:gz") as archive:
            archive.extractall(target, filter="data")
        return target

    def keys(self, prefix: str, bucket: str | None = None) -> list[str]:
        paginator = self.client("s3").get_paginator("list_objects_v2")
        return [o["Key"] for page in paginator.paginate(Bucket=bucket or self.bucket, Prefix=prefix)
                for o in page.get("Contents", [])]

    def download_prefix(self, uri: str, target: Path, exact: bool = False) -> list[tuple[str, Path]]:
        """Every object under an S3Prefix URI (as SageMaker reads a channel), keys relative to it."""
        bucket, prefix = split_s3_uri(uri)
        base = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
        found = []
        for key in [prefix] if exact else self.keys(prefix, bucket):
            relative = key[len(base):]
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(self.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
            found.append((relative, path))
        return found

    def download_tarball(self, uri: str, target: Path) -> None:
        bucket, key = split_s3_uri(uri)
        body = self.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
            archive.extractall(target, filter="data")

    def read_text(self, uri: str) -> str:
        bucket, key = split_s3_uri(uri)
        return self.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")

    def read_csv(self, uri: str) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(self.read_text(uri))))

    @property
    def bucket(self) -> str:
        (logical_id,) = self.resources("AWS::S3::Bucket")
        return self.name_of(logical_id)

    def put_raw(self, key: str, text: str) -> None:
        self.client("s3").put_object(Bucket=self.bucket, Key=key, Body=text.encode("utf-8"))

    # -- executions --------------------------------------------------------------------------
    def run(self, execution_input: dict[str, Any], name: str, timeout: float = 120.0) -> Execution:
        """Start an execution (always named: moto leaves $$.Execution.Name null otherwise), wait for it."""
        sfn = self.client("stepfunctions")
        arn = sfn.start_execution(stateMachineArn=self.state_machine_arn, name=name,
                                  input=json.dumps(execution_input))["executionArn"]
        deadline = time.monotonic() + timeout
        while True:
            described = sfn.describe_execution(executionArn=arn)
            if described["status"] in TERMINAL:
                break
            if time.monotonic() > deadline:
                sfn.stop_execution(executionArn=arn)
                raise TimeoutError(f"execution {name} still {described['status']} after {timeout}s")
            time.sleep(0.05)
        history = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        return Execution(
            arn=arn, name=name, status=described["status"],
            output=json.loads(described["output"]) if described.get("output") else None,
            error=described.get("error"), cause=described.get("cause"), history=json_safe(history),
        )

    @property
    def model_package_group(self) -> str:
        (group,) = self.resources("AWS::SageMaker::ModelPackageGroup").values()
        return group["Properties"]["ModelPackageGroupName"]

    def model_packages(self) -> list[dict[str, Any]]:
        return self.client("sagemaker").list_model_packages(
            ModelPackageGroupName=self.model_package_group)["ModelPackageSummaryList"]


def _asset_sources(outdir: Path) -> dict[str, Path]:
    """Object key in the asset bucket -> the file or folder of the cloud assembly it is built from."""
    found: dict[str, Path] = {}
    for manifest in outdir.glob("*.assets.json"):
        for asset in json.loads(manifest.read_text())["files"].values():
            for destination in asset["destinations"].values():
                found[destination["objectKey"]] = outdir / asset["source"]["path"]
    return found
