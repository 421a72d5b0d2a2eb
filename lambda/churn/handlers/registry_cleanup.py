"""Custom resource: on stack deletion, delete the model packages so their group can be deleted.

CloudFormation cannot delete a model package group that still holds model packages, and every
successful execution registers one; without this, `cdk destroy` would fail on the group.
"""

from __future__ import annotations

from typing import Any

from churn.handlers._runtime import client, logger


def delete_model_packages(sagemaker: Any, group: str) -> int:
    """Delete every model package in the group; returns how many. A missing group is already clean.

    The packages are listed whole before any is deleted (deleting while paginating can shift the pages
    and skip some), then listed again until none is left.
    """
    deleted = 0
    paginator = sagemaker.get_paginator("list_model_packages")
    try:
        while True:
            arns = [package["ModelPackageArn"] for page in paginator.paginate(ModelPackageGroupName=group)
                    for package in page.get("ModelPackageSummaryList", [])]
            if not arns:
                return deleted
            for arn in arns:
                sagemaker.delete_model_package(ModelPackageName=arn)
            deleted += len(arns)
    except sagemaker.exceptions.ResourceNotFound:
        return deleted


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    group = event.get("ResourceProperties", {})["ModelPackageGroupName"]
    if event["RequestType"] == "Delete":
        deleted = delete_model_packages(client("sagemaker"), group)
        logger.info("model registry clean-up", extra={"group": group, "deleted": deleted})
    return {"PhysicalResourceId": event.get("PhysicalResourceId") or f"{group}-packages"}
