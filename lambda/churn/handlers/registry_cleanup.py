"""Custom resource: on stack deletion, delete the model packages so their group can be deleted.

CloudFormation cannot delete a model package group that still holds model packages, and every
successful execution registers one; without this, `cdk destroy` would fail on the group.
"""

from __future__ import annotations

from typing import Any

from churn.handlers._runtime import client, logger


def delete_model_packages(sagemaker: Any, group: str) -> int:
    """Delete every model package in the group; returns how many. A missing group is already clean."""
    deleted = 0
    paginator = sagemaker.get_paginator("list_model_packages")
    try:
        for page in paginator.paginate(ModelPackageGroupName=group):
            for package in page.get("ModelPackageSummaryList", []):
                sagemaker.delete_model_package(ModelPackageName=package["ModelPackageArn"])
                deleted += 1
    except sagemaker.exceptions.ResourceNotFound:
        return deleted
    return deleted


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    group = event.get("ResourceProperties", {})["ModelPackageGroupName"]
    if event["RequestType"] == "Delete":
        deleted = delete_model_packages(client("sagemaker"), group)
        logger.info("model registry clean-up", extra={"group": group, "deleted": deleted})
    return {"PhysicalResourceId": event.get("PhysicalResourceId") or f"{group}-packages"}
