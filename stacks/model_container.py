"""ModelContainer: what every SageMaker job of the pipeline runs (the XGBoost image in script mode with the
training script bundle), and the rights a job role needs to run it. The image is resolved at synth from the
SageMaker SDK's own table."""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import tarfile
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from aws_cdk import ArnFormat, Aws, CfnMapping, Stack, Token
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from churn.layout import HYPERPARAMETERS_MODULE, TRAINING_ENTRY_POINT
from churn.naming import sagemaker_log_group
from stacks import nag
from stacks.storage import stage

FRAMEWORK = "xgboost"


@lru_cache(maxsize=8)
def xgboost_image_uris(version: str) -> dict[str, str]:
    """Region -> training image URI for every region the installed SDK lists for `version`."""
    from sagemaker.core import image_uris  # slow import (~3 s): only when a stack is synthesised

    config = image_uris.config_for_framework(FRAMEWORK)["training"]
    versions = config["versions"]
    version = config.get("version_aliases", {}).get(version, version)
    if version not in versions:
        raise ValueError(f"xgboost_version {version!r} is unknown to the SageMaker SDK; known: {sorted(versions)}")
    return {
        region: image_uris.retrieve(FRAMEWORK, region=region, version=version, image_scope="training")
        for region in sorted(versions[version]["registries"])
    }


def _account(uri: str) -> str:
    return uri.split(".", 1)[0]


class S3Uri(tasks.S3Location):
    """An s3:// URI as is (S3Location.from_bucket renders an https:// URL). Grants are made explicitly."""

    def __init__(self, uri: str) -> None:
        super().__init__()
        self._uri = uri

    def bind(self, task: Any, *, for_reading: bool | None = None, for_writing: bool | None = None):
        return tasks.S3LocationConfig(uri=self._uri)


class ModelContainer(Construct):
    """The image and the script bundle (an asset in the CDK bootstrap bucket).

    Script mode (sagemaker-containers' run_module/import_module): at start the container itself
    downloads the bundle from `sagemaker_submit_directory` (training) or SAGEMAKER_SUBMIT_DIRECTORY
    (serving) and runs `pip install .` on it, which may fetch pip's build backend from PyPI. So the
    jobs run without network isolation and need egress (S3 and PyPI); in a VPC without it they fail at
    start (README)."""

    def __init__(self, scope: Construct, construct_id: str, *, xgboost_version: str, regions: Iterable[str],
                 training_dir: Path) -> None:
        super().__init__(scope, construct_id)
        # The image: a plain string when the stack's region is known, else a lookup keyed on AWS::Region that
        # maps `regions` (those the stack supports: stacks.regions); its repository is in an AWS-owned account.
        stack, wanted = Stack.of(self), set(regions)
        uris = {r: uri for r, uri in xgboost_image_uris(xgboost_version).items() if r in wanted}
        repositories = {u.split("/", 1)[1].split(":", 1)[0] for u in uris.values()}  # <registry>/<repository>:<tag>
        if len(repositories) != 1:
            raise ValueError(f"expected one repository for xgboost {xgboost_version}, got {sorted(repositories)}")
        if not Token.is_unresolved(stack.region):  # one of `regions`: the stack required it (stacks.regions)
            self.image_uri, account = uris[stack.region], _account(uris[stack.region])
        else:
            mapping = CfnMapping(stack, "XGBoostImage",
                                 mapping={r: {"uri": u, "account": _account(u)} for r, u in uris.items()})
            self.image_uri, account = mapping.find_in_map(Aws.REGION, "uri"), mapping.find_in_map(Aws.REGION, "account")
        self.repository_arn = f"arn:{Aws.PARTITION}:ecr:{Aws.REGION}:{account}:repository/{repositories.pop()}"
        self.training_dir = training_dir
        bundle = stage("training-code.tar.gz", training_tarball_bytes(training_dir))
        self.asset = s3_assets.Asset(self, "TrainingCode", path=str(bundle))
        self.code_uri = self.asset.s3_object_url

    def script_hyperparameters(self, hyperparameters: dict[str, Any]) -> dict[str, str]:
        """Script-mode hyperparameters: SageMaker's own keys, then ours; every value JSON-encoded, as
        the SageMaker SDK sends them. Ours are checked by the script's own rules first: a value it refuses
        stops the synth (ValueError) instead of failing Train model after ingest."""
        location = self.training_dir / HYPERPARAMETERS_MODULE
        rules = importlib.util.spec_from_file_location(location.stem, location)
        script = importlib.util.module_from_spec(rules)
        rules.loader.exec_module(script)
        try:
            script.parse_hyperparameters([], {"SM_HPS": json.dumps(hyperparameters)})
        except script.InputError as exc:
            raise ValueError(f"setting 'hyperparameters': {exc}") from None
        values = {
            "sagemaker_program": TRAINING_ENTRY_POINT,
            "sagemaker_submit_directory": self.code_uri,
            "sagemaker_region": Aws.REGION,
            "sagemaker_container_log_level": 20,
            **hyperparameters,
        }
        return {name: json.dumps(value) for name, value in values.items()}

    def serving_environment(self) -> dict[str, str]:
        """Script-mode serving: the container runs the training script's model_fn/input_fn/... only
        when SAGEMAKER_PROGRAM is set, with the code from SAGEMAKER_SUBMIT_DIRECTORY."""
        return {
            "SAGEMAKER_PROGRAM": TRAINING_ENTRY_POINT,
            "SAGEMAKER_SUBMIT_DIRECTORY": self.code_uri,
            "SAGEMAKER_REGION": Aws.REGION,
        }

    def job_role(self, scope: Construct, construct_id: str, *, description: str, jobs: str) -> iam.Role:
        """A role for one kind of SageMaker job (churn.naming.TRAINING_JOBS, TRANSFORM_JOBS): its logs and
        metrics, the image, the script bundle."""
        role = iam.Role(scope, construct_id, assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                        description=description)
        log_group_name = sagemaker_log_group(jobs)
        log_group = Stack.of(self).format_arn(service="logs", resource="log-group", resource_name=log_group_name,
                                              arn_format=ArnFormat.COLON_RESOURCE_NAME)
        role.add_to_policy(iam.PolicyStatement(actions=["logs:CreateLogGroup"], resources=[log_group]))
        role.add_to_policy(iam.PolicyStatement(
            actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[f"{log_group}:*"],
        ))
        nag.wildcard_resource(role, f"{log_group}:*",
                              f"SageMaker writes one log stream per job (instance) into {log_group_name}")
        role.add_to_policy(iam.PolicyStatement(
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],  # PutMetricData has no resource type; the namespace condition scopes it
            conditions={"StringEquals": {"cloudwatch:namespace": log_group_name}},
        ))
        # The XGBoost image lives in an AWS-owned registry. Pulling it needs an ECR token (which has no
        # resource type) and read access to that one repository.
        role.add_to_policy(iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]))
        nag.wildcard_resource(
            role, "*",
            "ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no resource-level permissions "
            f"(PutMetricData is limited to the /aws/sagemaker/{jobs} namespace by condition)",
        )
        role.add_to_policy(iam.PolicyStatement(
            actions=["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
            resources=[self.repository_arn],
        ))
        # Exactly the code bundle (asset.grant_read would open the whole bootstrap bucket). A bootstrap
        # bucket encrypted with a customer-managed key would need kms:Decrypt on that key as well (README).
        role.add_to_policy(iam.PolicyStatement(
            actions=["s3:GetObject"],
            resources=[f"arn:{Aws.PARTITION}:s3:::{self.asset.s3_bucket_name}/{self.asset.s3_object_key}"],
        ))
        return role


def training_tarball_bytes(source_dir: Path) -> bytes:
    """Every top-level *.py of `source_dir`, sorted, with no time, owner or mode noise.

    SageMaker's script mode downloads `sagemaker_submit_directory` and untars it, so the bundle
    must be a gzip tarball; making it deterministic keeps the asset hash (and so the stack) stable
    between synths of the same code.
    """
    files = sorted(p for p in Path(source_dir).glob("*.py") if p.is_file())
    if not any(p.name == TRAINING_ENTRY_POINT for p in files):
        raise FileNotFoundError(f"{source_dir}/{TRAINING_ENTRY_POINT} not found: the training job has no entry point")
    compressed = io.BytesIO()
    # filename="" and mtime=0 keep the gzip header free of the build's name and time. A bare TarInfo has
    # mtime 0, mode 0o644, owner 0 and no owner names; reading the file follows a (sym or hard) link.
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=9) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in files:
                data = path.read_bytes()
                info = tarfile.TarInfo(path.name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return compressed.getvalue()
