"""Athena StartQueryExecution as a job of the moto harness: the query's real SQL on DuckDB over the local
feature store's offline store, with Feature Store's replication lag when a test asks for it.

A `?` outside a WHERE clause fails the query, as Athena documents (tests/support/athena_parameters.py; the
wording of Athena's error is not known here). The query text gets its ExecutionParameters substituted as SQL
literals (as Athena does); the result is written to the workgroup's result location in moto S3 as Athena
writes it (a header, every value double-quoted, NULL as an empty field, and a `.csv.metadata` file beside
it) and served to GetQueryResults through moto's Athena backend.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
from moto.athena.models import QueryResults, athena_backends

from churn.sql import quote
from tests.infra.sync_jobs import JobOutcome
from tests.support.athena_parameters import outside_where
from tests.support.moto import ACCOUNT, REGION

_HIDDEN = "_written_"  # the schema of a table's every offline row when ReplicationLag filters what shows


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def substitute_parameters(sql: str, parameters: list[str]) -> str:
    """Athena's ExecutionParameters: each `?` outside quotes becomes the next value, as SQL text."""
    out: list[str] = []
    values = iter(parameters)
    quoting: str | None = None
    used = 0
    for char in sql:
        if quoting:
            if char == quoting:
                quoting = None
        elif char in ("'", '"'):
            quoting = char
        elif char == "?":
            try:
                out.append(next(values))
            except StopIteration:
                raise ValueError(f"the query has more ? placeholders than the {len(parameters)} parameters") from None
            used += 1
            continue
        out.append(char)
    if used != len(parameters):
        raise ValueError(f"the query has {used} ? placeholders but {len(parameters)} parameters were given")
    return "".join(out)


class ReplicationLag:
    """Feature Store writes the offline store minutes after the API call. Here a record shows in a query
    once `queries` more queries have started since it was written; records whose identifier is in
    `never_replicated` never show."""

    def __init__(self, *, queries: int = 1, never_replicated: Collection[str] = ()) -> None:
        self.queries = queries
        self.never_replicated = frozenset(never_replicated)
        self.started: list[datetime] = []
        self._lock = threading.Lock()

    def written_before(self) -> datetime:
        """Called as a query starts: the API call time before which its records have replicated."""
        with self._lock:
            self.started.append(datetime.now(UTC).replace(tzinfo=None))
            bound = len(self.started) - 1 - self.queries
            return self.started[bound] if bound >= 0 else datetime.min


class AthenaOnDuckDB:
    """Athena StartQueryExecution as a job (a `JobOutcome`), the SQL run on DuckDB."""

    def __init__(self) -> None:
        # (database, table) -> (feature group name, its record identifier) in the local feature store
        self.tables: dict[tuple[str, str], tuple[str, str]] = {}
        self.replication: ReplicationLag | None = None
        # checks run before a query; one may return an error message to fail the query with
        self.fault_injectors: list[Callable[[str], str | None]] = []
        self.queries: list[dict[str, Any]] = []

    def fail_when(self, predicate: Callable[[str], bool], message: str) -> None:
        self.fault_injectors.append(lambda sql: message if predicate(sql) else None)

    def __call__(self, host: Any, request: dict[str, Any], started: dict[str, Any]) -> JobOutcome:
        execution_id = started["QueryExecutionId"]
        configuration = host.client("athena").get_work_group(WorkGroup=request["WorkGroup"])["WorkGroup"][
            "Configuration"]["ResultConfiguration"]
        output = f"{configuration['OutputLocation'].rstrip('/')}/{execution_id}.csv"
        sql = request["QueryString"]
        parameters = list(request.get("ExecutionParameters", []))
        record = {"id": execution_id, "sql": sql, "parameters": parameters, "output": output}
        self.queries.append(record)
        visible = self.replication.written_before() if self.replication else None
        backend = athena_backends[ACCOUNT][REGION]
        execution = backend.executions[execution_id]
        execution.config = {**configuration, "OutputLocation": output}
        try:
            for inject in self.fault_injectors:
                message = inject(sql)
                if message:
                    raise RuntimeError(message)
            misplaced = outside_where(sql)
            if misplaced:
                raise ValueError("? parameters can be placed only in the WHERE clause: "
                                 + "; ".join(map(str, misplaced)))
            columns, rows, csv_bytes = self._run(host.feature_store, substitute_parameters(sql, parameters), visible)
        except Exception as exc:  # noqa: BLE001 - any query error is the query's failure
            message = " ".join(str(exc).split())
            execution.status = "FAILED"
            record["error"] = message
            return JobOutcome(False, {"QueryExecution": {"Status": {
                "State": "FAILED", "StateChangeReason": message,
                "AthenaError": {"ErrorCategory": 2, "ErrorType": 1006, "Retryable": False, "ErrorMessage": message}}}})
        bucket, key = split_s3_uri(output)
        s3 = host.client("s3")
        s3.put_object(Bucket=bucket, Key=key, Body=csv_bytes)
        # Athena writes a binary description of the columns next to every result.
        s3.put_object(Bucket=bucket, Key=f"{key}.metadata", Body=json.dumps(columns).encode())
        header = {"Data": [{"VarCharValue": c} for c in columns]}
        data = [{"Data": [{} if v is None else {"VarCharValue": _athena_text(v)} for v in row]} for row in rows]
        backend.query_results[execution_id] = QueryResults(
            rows=[header, *data], column_info=[{"Name": c, "Label": c, "Type": "varchar"} for c in columns])
        execution.status = "SUCCEEDED"
        record["rows"] = len(rows)
        return JobOutcome(True, {"QueryExecution": {"Status": {"State": "SUCCEEDED"}}})

    def _attach(self, con: duckdb.DuckDBPyConnection, store: Any, visible: datetime | None) -> None:
        for (database, table), (group, record_id) in self.tables.items():
            if visible is None:
                store.attach_duckdb(con, group, database, table)
                continue
            store.attach_duckdb(con, group, _HIDDEN + database, table)
            condition = f"api_invocation_time < TIMESTAMP '{visible.isoformat(sep=' ')}'"
            if self.replication.never_replicated:
                never = ", ".join(f"'{v}'" for v in sorted(self.replication.never_replicated))
                condition += f" AND CAST({quote(record_id)} AS VARCHAR) NOT IN ({never})"
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(database)}")
            con.execute(f"CREATE VIEW {quote(database)}.{quote(table)} AS SELECT * FROM "
                        f"{quote(_HIDDEN + database)}.{quote(table)} WHERE {condition}")

    def _run(self, store: Any, sql: str, visible: datetime | None) -> tuple[list[str], list[tuple[Any, ...]], bytes]:
        con = duckdb.connect(":memory:")
        try:
            self._attach(con, store, visible)
            con.execute(f"CREATE TEMP TABLE athena_result AS {sql}")
            columns = [row[0] for row in con.execute("DESCRIBE athena_result").fetchall()]
            rows = con.execute("SELECT * FROM athena_result LIMIT 1000").fetchall()
            with tempfile.TemporaryDirectory() as tmp:
                target = Path(tmp) / "result.csv"
                # Athena's CSV: a header, every value double-quoted, NULL as an empty field.
                con.execute(f"COPY athena_result TO '{target}' (HEADER, FORCE_QUOTE *)")
                return columns, rows, target.read_bytes()
        finally:
            con.close()


def _athena_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
