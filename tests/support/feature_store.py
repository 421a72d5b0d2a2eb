"""Reading the local feature store's offline store back in tests, as a DuckDB view; damaging its online store."""

from __future__ import annotations

from pathlib import Path

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


def overwrite_page_headers(sqlite_file: Path) -> None:
    """Every page of a SQLite file but the first (the file's header, the schema) gets a b-tree page header no page
    can have: the file opens, a read or write that meets another page fails."""
    data = bytearray(sqlite_file.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    for start in range(page, len(data), page):
        data[start : start + 16] = b"\xff" * 16
    sqlite_file.write_bytes(data)
