"""Reading the local feature store's offline store back in tests, as a DuckDB view."""

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

