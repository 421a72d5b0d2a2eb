"""Custom resource: on stack deletion, drop the Glue table the feature group created.

DeleteFeatureGroup leaves the offline store's Glue table behind; without this, `cdk destroy`
would leave it in the account.
"""

from __future__ import annotations

from typing import Any

from churn.handlers._runtime import client, logger


def delete_table(glue: Any, database: str, table: str) -> bool:
    """Delete the table; True if it existed. A missing table or database is already clean."""
    try:
        glue.delete_table(DatabaseName=database, Name=table)
    except glue.exceptions.EntityNotFoundException:
        return False
    return True


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    props = event.get("ResourceProperties", {})
    database, table = props["DatabaseName"], props["TableName"]
    if event["RequestType"] == "Delete":
        deleted = delete_table(client("glue"), database, table)
        logger.info("glue table clean-up", extra={"database": database, "table": table, "deleted": deleted})
    return {"PhysicalResourceId": event.get("PhysicalResourceId") or f"{database}.{table}"}
