"""Custom resource: on stack deletion, delete the scoring models that interrupted executions left behind.

Every execution creates a SageMaker model named after itself for "Score customers" and deletes it once
the transform has ended. An execution that was stopped or timed out in between runs no catcher, so its
model stays (and a failed one keeps it if the deletion itself failed). On Delete, this deletes the model
named after each such execution of the state machine, where one exists.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from churn.handlers._runtime import client, logger

# Succeeded executions deleted their model; running ones are left alone (they still use theirs).
SWEPT_STATUSES = ("ABORTED", "TIMED_OUT", "FAILED")


def _delete_model(sagemaker: Any, name: str) -> bool:
    """True if the model existed. DeleteModel answers ValidationException for a model that does not."""
    try:
        sagemaker.delete_model(ModelName=name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ValidationException":
            return False
        raise
    return True


def delete_scoring_models(sfn: Any, sagemaker: Any, state_machine_arn: str) -> list[str]:
    """Delete the models named after the machine's stopped, timed-out and failed executions; their names."""
    paginator = sfn.get_paginator("list_executions")
    names = [execution["name"]
             for status in SWEPT_STATUSES
             for page in paginator.paginate(stateMachineArn=state_machine_arn, statusFilter=status)
             for execution in page["executions"]]
    return [name for name in names if _delete_model(sagemaker, name)]


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    machine = event.get("ResourceProperties", {})["StateMachineArn"]
    if event["RequestType"] == "Delete":
        deleted = delete_scoring_models(client("stepfunctions"), client("sagemaker"), machine)
        logger.info("scoring model clean-up", extra={"state_machine": machine, "deleted": deleted})
    return {"PhysicalResourceId": event.get("PhysicalResourceId") or f"{machine}-scoring-models"}
