"""The few physical names AWS demands (or the SQL needs at synth), derived from the stack name.

The stack and the local mode both use these, so a local run names things as a deployment would.
"""

from __future__ import annotations

import re

# SageMaker: feature group ^[a-zA-Z0-9]([_-]*[a-zA-Z0-9]){0,63}$, model package group
# ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$. A CloudFormation stack name is [a-zA-Z][-a-zA-Z0-9]*, so
# only the length needs care.
DEFAULT_STACK_NAME = "ChurnPipeline"  # app.py deploys under it; the CLI looks it up by it
FEATURE_GROUP_MAX = 64  # FeatureGroupName's and FeatureName's limit (churn.schema.MAX_NAME_LENGTH)
MODEL_PACKAGE_GROUP_MAX = 63
WORK_GROUP_MAX = 128


def _fit(prefix: str, suffix: str, limit: int) -> str:
    head = prefix[: max(1, limit - len(suffix))].rstrip("-_")
    return f"{head}{suffix}"


def snake(name: str) -> str:
    """ChurnPipeline-Dev -> churn_pipeline_dev: Glue/Athena names are lower case with underscores."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return re.sub(r"[^a-z0-9]+", "_", spaced.lower()).strip("_")


def feature_group_name(stack_name: str, group: str, fingerprint: str) -> str:
    """`<stack>-<group>-<fingerprint>`: a new schema fingerprint means a new feature group (definitions
    cannot change in place). A single-group spec's group is "churn": `churnpipeline-churn-<fingerprint>`.

    Lower case: SageMaker lower-cases some names inside ARNs, and IAM matches ARNs exactly, so a
    lower-case name has one ARN whichever way SageMaker writes it.
    """
    return _fit(stack_name.lower(), f"-{group}-{fingerprint}", FEATURE_GROUP_MAX)


def offline_table_name(group: str, fingerprint: str) -> str:
    """Feature Store creates this Glue table (`churn_features_<fingerprint>` for a single-group spec);
    a new schema gets a new table beside the old one."""
    return f"{group}_features_{fingerprint}"


def glue_database_name(stack_name: str) -> str:
    return f"{snake(stack_name)[:200]}_feature_store"


def work_group_name(stack_name: str) -> str:
    return _fit(stack_name.lower(), "-churn", WORK_GROUP_MAX)


def model_package_group_name(stack_name: str) -> str:
    return _fit(stack_name.lower(), "-churn-models", MODEL_PACKAGE_GROUP_MAX)


# SageMaker's own names, one for the account: the log group (and metrics namespace) of each kind of job.
TRAINING_JOBS, TRANSFORM_JOBS = "TrainingJobs", "TransformJobs"


def sagemaker_log_group(jobs: str) -> str:
    """Where SageMaker logs every job of a kind (TRAINING_JOBS, TRANSFORM_JOBS); its metrics namespace too."""
    return f"/aws/sagemaker/{jobs}"
