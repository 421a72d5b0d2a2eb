"""Reading the local feature store back in tests: a DuckDB view of a group's offline store, a Record as a dict."""

from __future__ import annotations

import duckdb

from pipeline.local_aws.feature_store import LocalFeatureStore


def offline_store(store: LocalFeatureStore, name: str, database: str, table: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection whose `database.table` is the group's offline store (`attach_duckdb`)."""
    con = duckdb.connect(":memory:")
    try:
        store.attach_duckdb(con, name, database, table)
    except BaseException:
        con.close()
        raise
    return con


def record_values(record: list[dict[str, str]]) -> dict[str, str]:
    """A runtime `Record` (FeatureName / ValueAsString items) as feature name -> value."""
    return {item["FeatureName"]: item["ValueAsString"] for item in record}
