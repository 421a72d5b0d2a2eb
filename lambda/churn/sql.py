"""The SQL over the offline store, written once: Athena runs it on AWS, DuckDB runs it locally.

Both statements take their run-time value as a positional `?` parameter (Athena
`ExecutionParameters`, DuckDB prepared parameters), so the text is identical in both places.
"""

from __future__ import annotations

from churn.schema import FeatureSpec


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def table_reference(database: str, table: str) -> str:
    """`"database"."table"`: a Glue table in Athena, a schema-qualified view in DuckDB."""
    return f"{quote(database)}.{quote(table)}"


def training_set_sql(spec: FeatureSpec, table: str, *, include_label: bool = True) -> str:
    """Point-in-time training set as of `?` (an event time string).

    Every record's versions are ranked newest first (event time, then the API call, then the
    write), the top one is kept, and only *then* are deletions dropped: filtering deletions before
    ranking would resurrect a deleted record's previous version.
    """
    record_id = quote(spec.record_identifier.name)
    event_time = quote(spec.event_time.name)
    names = [spec.record_identifier.name, *(f.name for f in spec.features)]
    if include_label:
        names.append(spec.label.name)
    columns = ",\n    ".join(quote(n) for n in names)
    return f"""SELECT
    {columns}
FROM (
    SELECT
        *,
        row_number() OVER (
            PARTITION BY {record_id}
            ORDER BY {event_time} DESC, "api_invocation_time" DESC, "write_time" DESC
        ) AS "version_rank"
    FROM {table}
    WHERE {event_time} <= ?
) AS "versions"
WHERE "version_rank" = 1 AND NOT "is_deleted"
ORDER BY {record_id}"""


def offline_count_sql(spec: FeatureSpec, table: str) -> str:
    """How many distinct records the offline store holds with event time `?` (one run's writes)."""
    return (
        f'SELECT count(DISTINCT {quote(spec.record_identifier.name)}) AS "records" '
        f"FROM {table} WHERE {quote(spec.event_time.name)} = ?"
    )


def athena_parameter(value: str) -> str:
    """Athena substitutes execution parameters as SQL literals: a string must arrive quoted."""
    return "'" + value.replace("'", "''") + "'"
