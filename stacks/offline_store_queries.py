"""OfflineStoreQueries: Athena states over the feature groups' offline store, and the state machine's right
to run them (granted once, whichever phases query)."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Aws, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from churn import contract
from churn.layout import OFFLINE_STORE_PREFIX, QUERY_PREFIX
from churn.sql import AS_OF, KNOWLEDGE_CUTOFF, RUN_STARTED, Query, table_reference
from stacks import nag, retries
from stacks.feature_store import FeatureStore

# Where a state finds each SQL parameter (churn.sql names them): the run's values, which "Validate
# input" returns as Athena literals (the Parallel state of several groups puts them in the same place).
RUN_VALUES = {
    AS_OF: contract.path(contract.VALIDATION, contract.EVENT_TIME_SQL),
    KNOWLEDGE_CUTOFF: contract.path(contract.VALIDATION, contract.KNOWLEDGE_CUTOFF_SQL),
    RUN_STARTED: contract.path(contract.VALIDATION, contract.RUN_STARTED_SQL),
}
# A query state's result keeps the query's id under this key (besides contract.OUTPUT_URI, its result CSV):
# what "Read offline count" asks Athena for the results of, and where "Stage scoring input" copies from.
QUERY_EXECUTION_ID = "query_execution_id"
# The scoring set's as-of: the moment its state starts, as an Athena string literal.
NOW = {AS_OF: "States.Format('\\'{}\\'', $$.State.EnteredTime)"}


def _athena_task(scope: Construct, state_name: str, action: str, failure: sfn.IChainable | None,
                 fields: dict) -> sfn.CustomState:
    state = sfn.CustomState(scope, state_name, state_json={
        "Type": "Task", "Resource": f"arn:{Aws.PARTITION}:states:::athena:{action}", **fields,
    })
    return retries.guard(state, retries.ATHENA, failure)


class OfflineStoreQueries:
    """Makes the Athena states of every phase; grants the state machine's role what they need, once."""

    def __init__(self, *, feature_store: FeatureStore, role: iam.IRole) -> None:
        self.store = store = feature_store.store
        self.tables = {name: table_reference(store.database_name, g.table) for name, g in feature_store.groups.items()}
        stack = Stack.of(role)
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["athena:StartQueryExecution", "athena:GetQueryExecution", "athena:GetQueryResults",
                     "athena:StopQueryExecution"],
            resources=[stack.format_arn(service="athena", resource="workgroup", resource_name=store.work_group_name)],
        ))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["athena:GetDataCatalog"],
            resources=[stack.format_arn(service="athena", resource="datacatalog", resource_name="AwsDataCatalog")],
        ))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["glue:GetDatabase", "glue:GetTable", "glue:GetPartition", "glue:GetPartitions",
                     "glue:BatchGetPartition"],
            resources=feature_store.glue_arns,
        ))
        # Where Lake Formation governs the catalog it vends the credentials for the tables' S3 data, and
        # Athena asks for them as the caller (aws-cdk-lib's own Athena task grants the same).
        role.add_to_principal_policy(iam.PolicyStatement(actions=["lakeformation:GetDataAccess"], resources=["*"]))
        nag.wildcard_resource(role, "*", "lakeformation:GetDataAccess has no resource-level permissions")
        # Athena reads the offline store and writes/reads results as the state machine's role.
        store.grant_read(role, OFFLINE_STORE_PREFIX, "Athena reads the feature groups' offline-store files")
        store.grant_read(role, QUERY_PREFIX, "Athena reads its query results")
        store.grant_write(role, QUERY_PREFIX, "Athena writes query results")
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["s3:GetBucketLocation", "s3:ListBucketMultipartUploads"], resources=[store.bucket.bucket_arn],
        ))

    def query(self, scope: Construct, state_name: str, query: Query, *, result_path: str,
              values: Mapping[str, str] = RUN_VALUES, failure: sfn.IChainable | None) -> sfn.CustomState:
        """Athena StartQueryExecution (.sync) of `query`, each `?` bound to the value its name maps to.

        Written as ASL rather than AthenaStartQueryExecution because that task grants s3 reads on every
        bucket and Glue create/delete rights; this state machine's role gets exact grants instead."""
        return _athena_task(scope, state_name, "startQueryExecution.sync", failure, {
            "Parameters": {
                "QueryString": query.text,
                "QueryExecutionContext": {"Catalog": "AwsDataCatalog", "Database": self.store.database_name},
                "WorkGroup": self.store.work_group_name,
                # Athena substitutes parameters as SQL literals; Validate input quotes the values.
                "ExecutionParameters.$": f"States.Array({', '.join(values[p] for p in query.parameters)})",
            },
            "ResultSelector": {
                f"{QUERY_EXECUTION_ID}.$": "$.QueryExecution.QueryExecutionId",
                # The workgroup enforces its result location: query/<QueryExecutionId>.csv
                f"{contract.OUTPUT_URI}.$": (
                    f"States.Format('{self.store.query_results_uri}{{}}.csv', $.QueryExecution.QueryExecutionId)"
                ),
            },
            "ResultPath": result_path,
        })

    def first_value(self, scope: Construct, state_name: str, *, query_path: str, result_path: str,
                    failure: sfn.IChainable | None) -> sfn.CustomState:
        """GetQueryResults of a one-number query: `result_path`.records is that number."""
        return _athena_task(scope, state_name, "getQueryResults", failure, {
            "Parameters": {"QueryExecutionId.$": f"{query_path}.{QUERY_EXECUTION_ID}", "MaxResults": 2},
            # Row 0 is the header; the count arrives as a string.
            "ResultSelector": {
                f"{contract.RECORDS}.$": "States.StringToJson($.ResultSet.Rows[1].Data[0].VarCharValue)"},
            "ResultPath": result_path,
        })
