"""Reading the local feature store's offline store back in tests, as a DuckDB view; writing the deletion marker
AWS appends to an offline store (the pipeline never deletes, so the local store serves no DeleteRecord);
damaging its online store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

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


def write_deletion_marker(store: LocalFeatureStore, name: str, record_id: str, event_time: str) -> None:
    """The row DeleteRecord (or a TTL expiry) appends to the offline store, as the Feature Store developer guide
    describes it: the record identifier and event time, every other feature null, `is_deleted` true; in the
    event time's partition, with the schema of the group's other files."""
    store.flush()
    described = store.describe_feature_group(FeatureGroupName=name)
    data = Path(urlparse(described["OfflineStoreConfig"]["S3StorageConfig"]["ResolvedOutputS3Uri"]).path)
    schema = pq.read_schema(next(data.rglob("*.parquet")))
    moment = datetime.fromisoformat(event_time.replace("Z", "+00:00"))
    values = {described["RecordIdentifierFeatureName"]: record_id, described["EventTimeFeatureName"]: event_time,
              "write_time": datetime.now(UTC).replace(tzinfo=None), "is_deleted": True,
              "api_invocation_time": datetime.now(UTC).replace(tzinfo=None)}
    partition = data / f"year={moment:%Y}/month={moment:%m}/day={moment:%d}/hour={moment:%H}"
    partition.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([values], schema=schema), partition / "deletion-marker.parquet")


def overwrite_page_headers(sqlite_file: Path) -> None:
    """Every page of a SQLite file but the first (the file's header, the schema) gets a b-tree page header no page
    can have: the file opens, a read or write that meets another page fails."""
    data = bytearray(sqlite_file.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    for start in range(page, len(data), page):
        data[start : start + 16] = b"\xff" * 16
    sqlite_file.write_bytes(data)
