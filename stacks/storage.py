"""DataStore: the KMS key, the data bucket (its folders: churn.layout's prefixes), Athena and Glue."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from aws_cdk import Aws, CfnResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct, IConstruct

from churn import naming
from churn.layout import QUERY_PREFIX, RAW_PREFIX, SAMPLE_DATA_NAME
from stacks import nag

LOG_RETENTION = logs.RetentionDays.ONE_MONTH
NONCURRENT_VERSION_DAYS = 30  # how long an overwritten or deleted object can still be restored


def stage(name: str, data: bytes) -> Path:
    """`data` as the only file, `name`, of a build folder named by the content's hash (an asset's path:
    BucketDeployment deploys folders, SageMaker's script mode a file).

    The folder appears whole (built aside, then renamed), so concurrent synths never see, or deploy, a
    partial copy.
    """
    parent = Path(tempfile.gettempdir()) / "churn-cdk-build"
    folder = parent / hashlib.sha256(name.encode() + b"/" + data).hexdigest()[:16]
    if not folder.exists():
        parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(dir=parent, prefix=".staging-"))
        (building / name).parent.mkdir(parents=True, exist_ok=True)  # `name` may be a relative path
        (building / name).write_bytes(data)
        try:
            building.rename(folder)
        except OSError:  # another synth staged the same content first
            shutil.rmtree(building, ignore_errors=True)
    return folder / name


class DataStore(Construct):
    """Everything the pipeline stores, encrypted with one customer-managed key."""

    def __init__(self, scope: Construct, construct_id: str, *, data_file: Path, event_bridge_enabled: bool) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            description="Churn pipeline: data bucket, feature store, training, Athena results, logs",
            enable_key_rotation=True,
            pending_window=Duration.days(7),
            removal_policy=RemovalPolicy.DESTROY,
        )
        # CloudWatch Logs encrypts with the key itself, so the key policy must name the service;
        # the condition limits it to this account's log groups in this region.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchLogsOfThisAccount",
                principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
                actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": (
                            f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:*"
                        )
                    }
                },
            )
        )

        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            event_bridge_enabled=event_bridge_enabled,  # for the opt-in "new raw CSV" trigger
            # Uploading a CSV again under the same key keeps the version earlier executions read.
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    noncurrent_version_expiration=Duration.days(NONCURRENT_VERSION_DAYS),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                )
            ],
            auto_delete_objects=True,  # deletes every version too
            removal_policy=RemovalPolicy.DESTROY,
        )

        # The custom resource that empties the bucket on `cdk destroy` (auto_delete_objects): what must
        # be gone before the bucket is emptied depends on it, so CloudFormation deletes that first.
        self.emptied_on_delete = self.bucket.node.find_child("AutoDeleteObjectsCustomResource")

        no_access_logs = (
            "No server access logs: they would need a second bucket, and log deliveries arrive late "
            "enough (minutes to hours) to make `cdk destroy` fail on a non-empty log bucket; the bucket "
            "is private, SSL-only and KMS-encrypted, and CloudTrail S3 data events are the audit trail "
            "where an account needs one"
        )
        nag.acknowledge(self.bucket, "AwsSolutions-S1", no_access_logs)
        nag.skip(self.bucket.node.default_child, nag.BUCKET_ACCESS_LOGS_SKIP, no_access_logs)

        # aws-cdk-lib's bucket handlers (emptying it on destroy; turning on EventBridge notifications)
        # would log to implicit /aws/lambda groups: unencrypted, kept forever, left after destroy.
        for child in Stack.of(self).node.children:
            if child.node.id == "Custom::S3AutoDeleteObjectsCustomResourceProvider":
                self.route_logs(child.node.find_child("Handler"), "AutoDeleteObjectsLogs")
            elif child.node.id.startswith("BucketNotificationsHandler"):
                self.route_logs(child.node.find_child("Resource"), "BucketNotificationsLogs")
                nag.acknowledge(child, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                                "AWSLambdaBasicExecutionRole]", "aws-cdk-lib's bucket-notifications handler (turns "
                                "on EventBridge notifications at deploy time) comes with this role and policy; CDK "
                                "offers no way to replace them")

        deployment_role, deployment_logs = self.lambda_role(self, "DataDeployment",
                                                            "Copies the sample CSV into raw/ at deploy time")
        data_deployment = s3deploy.BucketDeployment(
            self,
            "RawData",
            sources=[s3deploy.Source.asset(str(stage(SAMPLE_DATA_NAME, data_file.read_bytes()).parent))],
            destination_bucket=self.bucket,
            destination_key_prefix=f"{RAW_PREFIX}/",
            prune=False,  # never delete CSVs users uploaded to raw/ themselves
            retain_on_delete=False,
            role=deployment_role,
            log_group=deployment_logs,
            memory_limit=256,
        )

        reason = (
            "BucketDeployment (aws-cdk-lib) grants its copy handler read on the staged asset and "
            "read/write on the destination bucket; it runs only during deployment, to copy the "
            "sample CSV into raw/"
        )
        for action in ("s3:GetBucket*", "s3:GetObject*", "s3:List*", "s3:Abort*", "s3:DeleteObject*",
                       "kms:GenerateDataKey*", "kms:ReEncrypt*"):
            nag.wildcard_action(deployment_role, action, reason)
        nag.wildcard_resource(deployment_role, self.bucket.arn_for_objects("*"), reason)
        # The staged CSV: Source.asset adds it to the deployment as "Asset1".
        asset = data_deployment.node.find_child("Asset1")
        nag.wildcard_resource(deployment_role, asset.bucket.arn_for_objects("*"), reason)
        for child in Stack.of(self).node.children:
            if child.node.id.startswith("Custom::CDKBucketDeployment"):
                nag.acknowledge(child, nag.L1,
                                "BucketDeployment's singleton handler: aws-cdk-lib picks and updates its runtime")

        stack_name = Stack.of(self).stack_name
        self.database_name = naming.glue_database_name(stack_name)
        self.database = glue.CfnDatabase(
            self,
            "Database",
            catalog_id=Aws.ACCOUNT_ID,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=self.database_name,
                description="Churn feature store: the offline store table Feature Store creates",
            ),
        )

        self.work_group_name = naming.work_group_name(stack_name)
        self.query_results_uri = f"{self.uri(QUERY_PREFIX)}/"
        athena.CfnWorkGroup(
            self,
            "WorkGroup",
            name=self.work_group_name,
            description="Churn pipeline queries over the feature store's offline store",
            state="ENABLED",
            recursive_delete_option=True,  # `cdk destroy` removes the workgroup with its history
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=self.query_results_uri,
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_KMS",
                        kms_key=self.key.key_arn,
                    ),
                ),
            ),
        )

    def grant_read(self, role: iam.IRole, prefix: str, why: str) -> None:
        """Read objects under `prefix`/ (and list that prefix, so a missing key is NoSuchKey); `why`
        says what reads there, for the acknowledgement of the prefix-wide grant."""
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[self.bucket.arn_for_objects(f"{prefix}/*")])
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{prefix}/*"]}},
            )
        )
        self.key.grant(role, "kms:Decrypt")
        self.acknowledge_prefix(role, prefix, why)

    def grant_write(self, role: iam.IRole, prefix: str, why: str) -> None:
        """Create objects under `prefix`/ (multipart uploads need kms:Decrypt as well)."""
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
                resources=[self.bucket.arn_for_objects(f"{prefix}/*")],
            )
        )
        self.key.grant(role, "kms:GenerateDataKey", "kms:Decrypt")
        self.acknowledge_prefix(role, prefix, why)

    def acknowledge_prefix(self, role: IConstruct, prefix: str, why: str) -> None:
        """cdk-nag reports a grant on `<bucket>/<prefix>/*` as a wildcard: it is one on purpose."""
        nag.wildcard_resource(
            role,
            self.bucket.arn_for_objects(f"{prefix}/*"),
            f"{why}; object keys are generated at run time, so the grant is limited to the {prefix}/ prefix",
        )

    def uri(self, prefix: str) -> str:
        """s3://bucket/prefix (no trailing slash)."""
        return f"s3://{self.bucket.bucket_name}/{prefix}"

    def route_logs(self, function: IConstruct, construct_id: str) -> None:
        """Send an aws-cdk-lib handler's logs (an L1 function with no log group setting) to one of ours."""
        if not isinstance(function, CfnResource) or function.cfn_resource_type != "AWS::Lambda::Function":
            raise TypeError(f"{function.node.path} is not a Lambda function resource")
        group = self.log_group(construct_id)
        # The Ref makes CloudFormation create the group first and delete it last.
        function.add_property_override("LoggingConfig.LogGroup", group.log_group_name)

    def lambda_role(self, scope: Construct, name: str, description: str) -> tuple[iam.Role, logs.LogGroup]:
        """A Lambda execution role, `<name>Role`, that can only write its own log group, `<name>Logs`."""
        role = iam.Role(scope, f"{name}Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                        description=description[:1000])
        log_group = self.log_group(f"{name}Logs", scope)
        log_group.grant_write(role)
        return role, log_group

    def log_group(self, construct_id: str, scope: Construct | None = None, name: str | None = None) -> logs.LogGroup:
        """A log group encrypted with the key, kept for the configured retention, deleted on destroy."""
        return logs.LogGroup(
            scope or self,
            construct_id,
            log_group_name=name,
            encryption_key=self.key,
            retention=LOG_RETENTION,
            removal_policy=RemovalPolicy.DESTROY,
        )
