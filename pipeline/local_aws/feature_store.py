"""A local SageMaker Feature Store: the service's control plane and runtime on one machine, no AWS account.

The methods take boto3's keyword arguments and raise the `botocore.exceptions.ClientError` codes the
service raises, so handler code written for the `sagemaker` and `sagemaker-featurestore-runtime`
clients runs unchanged against it. Only AWS's shapes are known here (no project types).

What it mirrors, and how:
- **Control plane**: `create_feature_group` (ResourceInUse if the name exists), `describe_feature_group`.
  A group has an online store (`OnlineStoreConfig.EnableOnlineStore`), an
  offline store (an `OfflineStoreConfig` is given; its content is not used), or both.
- **Online store**: one SQLite file (WAL) that any number of stores, in any processes, write at once
  (SQLite's own locking, with a busy timeout). It keeps the latest record per identifier: a write
  with an *older* event time never overwrites, an equal or newer one does (at an equal event time
  the later API call wins, whichever process flushes first).
- **TTL** (online store): `ExpiresAt = EventTime + TtlDuration`, as botocore's model documents for
  PutRecord, BatchWriteRecord and `OnlineStoreConfig.TtlDuration`: the duration comes from the
  entry, else the BatchWriteRecord request, else the group. An expired record is treated as deleted
  (HardDelete): GetRecord returns `{}` for it and any write replaces it. AWS deletes expired records
  "typically within a few days" and then appends a deletion marker to the offline store; locally
  no marker is written (the moment is not defined), and whether GetRecord hides an expired record
  not yet deleted is not documented by AWS (assumed: it does, since AWS says a hard-deleted record
  is inaccessible at once).
- **Offline store**: append-only Parquet in Feature Store's S3 layout,
  `<root>/offline-store/<account>/sagemaker/<region>/offline-store/<group>-<created unix>/data/
  year=YYYY/month=MM/day=DD/hour=HH/<file>.parquet`, partitioned by each record's event time, with
  `write_time`, `api_invocation_time` (UTC, timestamps without zone, as Athena's Glue table types
  them) and `is_deleted` added to every row. String -> string, Integral -> int64, Fractional ->
  float64, a feature left out of a record -> null; the event time keeps its feature type.
- `attach_duckdb` makes `"database"."table"` a DuckDB view over the offline store, so the project's
  Athena SQL runs verbatim.

Writes are buffered in memory and written at `flush()`, automatically every `flush_rows` writes, and
on `close()`; GetRecord first moves this store's online writes into SQLite, a DuckDB view flushes
first; other processes see the writes once they are in SQLite or Parquet. One store may be shared by
any number of threads. DeleteRecord and DeleteFeatureGroup are not served: nothing in the pipeline
deletes (the training set's SQL still drops the deletion markers AWS writes, `is_deleted`).

Differences from the service: records reach the offline store at `flush()` rather than minutes
later; a group is looked up by name only (not by ARN). Assumed where AWS documents nothing: a
BatchWriteRecord entry's `ErrorCode` is the code PutRecord would raise for it (ValidationError,
ResourceNotFound); `UnprocessedEntries` is always empty (the service fills it when throttled);
`ExpiresAt` is written `YYYY-MM-DDTHH:MM:SS.sssZ`. Not the service's: a TtlDuration over 1,000 years
is refused with a ValidationError (botocore's model sets no maximum; here an expiry must stay a
timestamp).
"""

from __future__ import annotations

import itertools
import json
import operator
import os
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from botocore.exceptions import ClientError

from churn.ingest import BATCH_WRITE_MAX_ENTRIES, BATCH_WRITE_MIN_ENTRIES
from churn.sql import quote
from pipeline.local_aws.feature_group import (
    NAME_RULE,
    ONLINE_STORE,
    ROW_CALL,
    ROW_DELETED,
    ROW_EXPIRES,
    ROW_KEY,
    ROW_VALUES,
    TIMESTAMP,
    FeatureGroup,
    client_error,
    invalid,
    is_name,
    ttl_us,
)
from pipeline.local_aws.store_files import (
    ONLINE_FILE,
    StoreDamagedError,
    claim_format,
    create_file,
    online_store_damage,
    open_online_store,
)

_DUCKDB_TYPES = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN",
                 TIMESTAMP: "TIMESTAMP"}
# Rows per INSERT up to this many parameters (SQLite allows 32,766): the GIL is released per statement.
_STATEMENT_PARAMETERS = 30_000


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _alive(row: tuple | None, at_us: float) -> bool:
    """Whether an online row exists at `at_us`: an expired record counts as hard deleted."""
    return row is not None and (row[ROW_EXPIRES] is None or row[ROW_EXPIRES] > at_us)


def _table(group: FeatureGroup) -> str:
    """The group's table in the online store (its columns: the row layout, ROW_* in feature_group)."""
    return quote(f"fg_{group.name}")


def _upsert(group: FeatureGroup, rows: list[tuple]) -> tuple[str, list[Any]]:
    """One INSERT of rows that applies the online rule on conflict: a row replaces the stored one unless that is
    newer by event time (then by API call) and still alive at the row's call."""
    t = _table(group)
    names = ["_event_time", "_is_deleted", "_expires_us", *group.columns, "_call_us"]
    updates = ", ".join(f"{quote(n)} = excluded.{quote(n)}" for n in names)
    values = ", ".join(["(" + ", ".join("?" * len(rows[0])) + ")"] * len(rows))
    return (f"INSERT INTO {t} VALUES {values} ON CONFLICT (_record_id) DO UPDATE SET {updates} "
            f"WHERE (excluded._event_time, excluded._call_us) >= ({t}._event_time, {t}._call_us) "
            f"OR {t}._expires_us <= excluded._call_us", list(itertools.chain.from_iterable(rows)))


class LocalFeatureStore:
    """SageMaker Feature Store (control plane + runtime) persisted under `root`.

    Locks, always taken in this order: `_flush_lock` (one flush at a time: a flush returns when
    everything put before it is on disk), `_db_lock` (the SQLite connection), `_lock` (in-memory state, held briefly).
    """

    def __init__(self, root: str | Path, *, account: str = "000000000000", region: str = "us-east-1",
                 flush_rows: int = 50_000, clock: Callable[[], float] = time.time):
        self.root = Path(root).resolve()
        self.account, self.region = account, region
        self.flush_rows = max(1, flush_rows)
        self.clock = clock  # unix seconds: API call and write times, TTL expiry
        self.offline_prefix = self.root / "offline-store" / account / "sagemaker" / region / "offline-store"
        self._meta_dir = self.root / "feature-groups"
        claim_format(self.root)
        self._meta_dir.mkdir(exist_ok=True)
        self._flush_lock, self._db_lock, self._lock = threading.Lock(), threading.Lock(), threading.Lock()
        self._groups: dict[str, FeatureGroup] = {}
        self._unflushed = self._last_call_us = 0
        self._closed = False
        self._db = open_online_store(self.root / ONLINE_FILE)

    def __enter__(self) -> LocalFeatureStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Flush everything and close the online store. Safe to call twice."""
        if self._closed:
            return
        self.flush()
        with self._flush_lock, self._db_lock, self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the local feature store at {self.root} is closed")

    # -- control plane (boto3 `sagemaker` shape) --------------------------------------------------
    def create_feature_group(self, **request: Any) -> dict[str, Any]:
        """CreateFeatureGroup: ResourceInUse if the name is taken (by this or any other process). The definitions
        are not checked here: the pipeline creates a group only from a spec, which checks them (churn.schema)."""
        name = request["FeatureGroupName"]
        if not is_name(name):  # it names files
            raise invalid(f"FeatureGroupName {name!r} must {NAME_RULE}", "CreateFeatureGroup")
        created = datetime.fromtimestamp(int(self.clock()), UTC)
        directory = self.offline_prefix / f"{name}-{int(created.timestamp())}"
        description = {**request, "CreationTime": created.isoformat(),
                       "offline_dir": directory.relative_to(self.root).as_posix()}
        group = FeatureGroup(description, self.root)
        with self._db_lock, self._lock:
            self._check_open()
            if group.online:  # before the group is visible: a writer in another process finds the table
                features = ", ".join(f"{quote(c)} TEXT" for c in group.columns)
                # The bookkeeping columns start with "_", which no feature name can. A rowid table with a
                # unique key, not WITHOUT ROWID: an upsert changes a small index page and appends the row
                # instead of rewriting wide-row pages all over the tree (bench/README.md: a third less CPU at 1M rows).
                self._db.execute(f"CREATE TABLE IF NOT EXISTS {_table(group)} (_record_id TEXT NOT NULL UNIQUE, "
                                 f"_event_time REAL NOT NULL, _is_deleted INTEGER NOT NULL, _expires_us INTEGER, "
                                 f"{features}, _call_us INTEGER NOT NULL)")
            if not create_file(self._meta_dir / f"{name}.json", json.dumps(description, indent=2)):
                raise client_error("ResourceInUse", f"feature group '{name}' already exists", "CreateFeatureGroup")
            self._groups[name] = group
        return {"FeatureGroupArn": self._arn(name)}

    def describe_feature_group(self, *, FeatureGroupName: str) -> dict[str, Any]:
        group = self._group(FeatureGroupName, "DescribeFeatureGroup")
        described = {k: v for k, v in group.description.items() if k != "offline_dir"}
        described.update(FeatureGroupArn=self._arn(group.name), FeatureGroupStatus="Created",
                         CreationTime=datetime.fromisoformat(group.description["CreationTime"]))
        if group.offline:
            s3 = {**described["OfflineStoreConfig"].get("S3StorageConfig", {}),
                  "S3Uri": self.root.joinpath("offline-store").as_uri(), "ResolvedOutputS3Uri": group.data_dir.as_uri()}
            described["OfflineStoreConfig"] = {**described["OfflineStoreConfig"], "S3StorageConfig": s3}
        return described

    def _arn(self, name: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{self.account}:feature-group/{name.lower()}"

    def _group(self, name: Any, operation: str) -> FeatureGroup:
        group = self._groups.get(name) if isinstance(name, str) else None
        if group is not None:
            return group
        path = self._meta_dir / f"{name}.json" if is_name(name) else None
        if path is not None and path.exists():  # created by another store
            try:
                loaded = FeatureGroup(json.loads(path.read_text(encoding="utf-8")), self.root)
            except (ValueError, KeyError, TypeError) as exc:  # not JSON, or not a description this store wrote
                raise StoreDamagedError(f"{path}: the feature group's description is damaged ({exc!r})") from None
            with self._lock:
                return self._groups.setdefault(name, loaded)
        raise client_error("ResourceNotFound", f"Resource not found: feature group '{name}'", operation, 404)

    # -- runtime (boto3 `sagemaker-featurestore-runtime` shape) -----------------------------------
    def put_record(self, *, FeatureGroupName: str, Record: list[dict[str, str]], TargetStores: Any = None,
                   TtlDuration: Any = None) -> dict[str, Any]:
        """PutRecord: online, replace the record unless the stored one is newer; offline, append."""
        self._write([self._prepare(FeatureGroupName, Record, TargetStores, TtlDuration, None, "PutRecord")])
        return {"ResponseMetadata": {"HTTPStatusCode": 200}}

    def batch_write_record(self, *, Entries: list[dict[str, Any]], TtlDuration: Any = None) -> dict[str, Any]:
        """BatchWriteRecord: 1-25 entries, each written as PutRecord would; a bad entry goes to
        `Errors` (with the entry itself) while the others are written."""
        operation = "BatchWriteRecord"
        if not isinstance(Entries, list) or not BATCH_WRITE_MIN_ENTRIES <= len(Entries) <= BATCH_WRITE_MAX_ENTRIES:
            raise invalid(f"Entries must be a list of {BATCH_WRITE_MIN_ENTRIES} to {BATCH_WRITE_MAX_ENTRIES} "
                          "entries", operation)
        if not all(isinstance(e, dict) and "FeatureGroupName" in e and "Record" in e for e in Entries):
            raise invalid("every entry needs FeatureGroupName and Record", operation)
        request_ttl = ttl_us(TtlDuration, operation)
        writes, errors = [], []
        for entry in Entries:
            try:
                writes.append(self._prepare(entry["FeatureGroupName"], entry["Record"], entry.get("TargetStores"),
                                            entry.get("TtlDuration"), request_ttl, operation))
            except ClientError as exc:
                error = exc.response["Error"]
                errors.append({"Entry": entry, "ErrorCode": error["Code"], "ErrorMessage": error["Message"]})
        self._write(writes)
        return {"Errors": errors, "UnprocessedEntries": [], "ResponseMetadata": {"HTTPStatusCode": 200}}

    def _prepare(self, name: Any, record: Any, stores: Any, ttl: Any, request_ttl_us: int | None,
                 operation: str) -> tuple:
        group = self._group(name, operation)
        online, offline = group.targets(stores, operation)
        ttl = request_ttl_us if ttl is None else ttl_us(ttl, operation)  # the entry's, the request's, the group's
        row, partition = group.row(record, group.ttl_us if ttl is None else ttl, operation)
        return group, row, partition, online, offline

    def _write(self, writes: list[tuple]) -> None:
        """Stamp each write with its API call time (strictly increasing) and buffer it."""
        with self._lock:
            self._check_open()
            last = self._last_call_us
            for group, row, partition, online, offline in writes:
                now = int(self.clock() * 1e6)
                last = now if now > last else last + 1
                stamped = (*row, last)
                if online:
                    group.pending.append(stamped)
                if offline:
                    group.buffer[partition].append(stamped)
            self._last_call_us = last
            self._unflushed += len(writes)
            flush = self._unflushed >= self.flush_rows
        if flush:
            self.flush()

    def get_record(self, *, FeatureGroupName: str, RecordIdentifierValueAsString: str, FeatureNames: Any = None,
                   ExpirationTimeResponse: str = "Disabled") -> dict[str, Any]:
        """GetRecord: `{"Record": [...]}` (and `ExpiresAt` if asked and set), or `{}` when the record
        is absent or expired."""
        group = self._group(FeatureGroupName, "GetRecord")
        if not group.online:
            raise invalid(f"feature group '{group.name}' has no {ONLINE_STORE}", "GetRecord")
        key = group.record_id(RecordIdentifierValueAsString, "GetRecord")
        if FeatureNames is not None and not set(FeatureNames) <= set(group.columns):
            raise invalid(f"FeatureNames {FeatureNames!r} must name features of '{group.name}'", "GetRecord")
        if ExpirationTimeResponse not in ("Enabled", "Disabled"):
            raise invalid(f"ExpirationTimeResponse {ExpirationTimeResponse!r} must be Enabled or Disabled",
                          "GetRecord")
        with self._db_lock:
            self._upsert_pending()  # the online half of a flush: no Parquet file for a read
            with online_store_damage(self.root / ONLINE_FILE):  # SELECT *: the table's columns are the row layout
                row = self._db.execute(f"SELECT * FROM {_table(group)} WHERE _record_id = ?", (key,)).fetchone()
        if not _alive(row, self.clock() * 1e6) or row[ROW_DELETED]:  # a tombstone of an earlier version's delete
            return {}
        wanted = set(FeatureNames or group.columns)
        values = zip(group.columns, row[ROW_VALUES], strict=True)
        response: dict[str, Any] = {"Record": [{"FeatureName": n, "ValueAsString": v}
                                               for n, v in values if v is not None and n in wanted]}
        if ExpirationTimeResponse == "Enabled" and row[ROW_EXPIRES] is not None:
            response["ExpiresAt"] = _iso(row[ROW_EXPIRES])
        return response

    # -- flushing ---------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write unflushed online rows to SQLite (one transaction) and offline rows as one Parquet
        file per group and partition."""
        with self._flush_lock:
            with self._db_lock:
                with self._lock:
                    self._check_open()
                    offline = [(g, g.buffer) for g in self._groups.values() if g.buffer]
                    for group in self._groups.values():
                        group.buffer = defaultdict(list)
                    self._unflushed = 0
                self._upsert_pending()
            for group, buffer in offline:
                for partition, rows in buffer.items():
                    self._write_parquet(group, partition, rows)

    def _upsert_pending(self) -> None:
        """Move this store's unflushed online writes into SQLite (caller holds _db_lock: batches taken by
        concurrent callers land in the order they were taken)."""
        with self._lock:
            self._check_open()
            online = [(g, g.pending) for g in self._groups.values() if g.pending]
            for group in self._groups.values():
                group.pending = []
        if online:
            self._upsert(online)

    def _upsert(self, online: list[tuple[FeatureGroup, list[tuple]]]) -> None:
        """Apply the online writes, each record's in call order, in one transaction (caller holds _db_lock).

        In key order, so the B-tree is updated leaf after leaf (about half the CPU per row at 1M, bench/README.md)."""
        statements = []
        for group, pending in online:
            rows = sorted(pending, key=operator.itemgetter(ROW_KEY))  # stable: each record's writes in call order
            per = _STATEMENT_PARAMETERS // len(rows[0])
            statements += [_upsert(group, rows[start : start + per]) for start in range(0, len(rows), per)]
        self._db.execute("BEGIN IMMEDIATE")  # waits in the busy timeout while another process writes
        with online_store_damage(self.root / ONLINE_FILE), self._db:  # COMMIT, or ROLLBACK on any exception
            for sql, parameters in statements:
                self._db.execute(sql, parameters)

    def _write_parquet(self, group: FeatureGroup, partition: str, rows: list[tuple]) -> None:
        # pa.array is ~15x faster on a list than on the tuple zip() makes (pyarrow 26: ~25 vs ~400 ns a value)
        columns = [list(column) for column in zip(*rows, strict=True)]
        arrays = []
        for field, texts in zip(group.schema, columns[ROW_VALUES], strict=False):
            array = pa.array(texts, type=pa.string())
            if field.type != pa.string():  # validated already; Arrow's integer parser refuses a leading "+"
                array = pc.cast(pc.utf8_ltrim(array, characters="+"), field.type)
            arrays.append(array)
        write_us = int(self.clock() * 1e6)
        arrays.append(pa.array([write_us] * len(rows), type=TIMESTAMP))
        arrays.append(pa.array(columns[ROW_CALL], type=TIMESTAMP))
        arrays.append(pc.cast(pa.array(columns[ROW_DELETED], type=pa.int8()), pa.bool_()))
        directory = group.data_dir / partition
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{_iso(write_us)[:19].replace('-', '').replace(':', '')}Z_{uuid.uuid4().hex[:16]}.parquet"
        tmp = directory / f".{name}.tmp"  # not matched by the *.parquet glob until renamed
        pq.write_table(pa.Table.from_arrays(arrays, schema=group.schema), tmp)
        os.replace(tmp, directory / name)

    # -- DuckDB over the offline store ------------------------------------------------------------
    def attach_duckdb(self, con: duckdb.DuckDBPyConnection, name: str, database: str, table: str) -> None:
        """Create schema `database` and view `"database"."table"` over the group's offline store in
        `con` (this store's unflushed rows are flushed first). Files written later are picked up by
        the view's glob; a view created before any file exists stays empty (attach again)."""
        group = self._group(name, "AttachDuckDB")
        self.flush()
        typed = ", ".join(f"CAST({quote(f.name)} AS {_DUCKDB_TYPES[f.type]}) AS {quote(f.name)}" for f in group.schema)
        if any(group.data_dir.glob("year=*/month=*/day=*/hour=*/*.parquet")):
            pattern = str(group.data_dir / "year=*" / "month=*" / "day=*" / "hour=*" / "*.parquet").replace("'", "''")
            source = f"SELECT {typed} FROM read_parquet('{pattern}', union_by_name = true, hive_partitioning = false)"
        else:
            nulls = ", ".join(f"NULL AS {quote(f.name)}" for f in group.schema)
            source = f"SELECT {typed} FROM (SELECT {nulls}) LIMIT 0"
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(database)}")
        with self.offline_reads([name]):  # the view reads every file's Parquet footer now
            con.execute(f"CREATE OR REPLACE VIEW {quote(database)}.{quote(table)} AS {source}")

    @contextmanager
    def offline_reads(self, names: Iterable[str]) -> Iterator[None]:
        """DuckDB reading these groups' offline stores: a Parquet file it cannot read (not Parquet, cut off, a page
        overwritten) is StoreDamagedError naming the file, as DuckDB names it, or else the group's offline store."""
        try:
            yield
        except duckdb.Error as exc:
            groups = [self._group(name, "Query") for name in names]
            named = [group for group in groups if str(group.data_dir) in str(exc)]
            if not named and type(exc) is not duckdb.Error:  # the query's own (a typed DuckDB error naming no file)
                raise
            where = " or ".join(f"'{group.name}' in {group.data_dir}" for group in named or groups)
            problem = "".join(filter(str.isprintable, str(exc).splitlines()[0]))  # DuckDB may quote a byte read
            raise StoreDamagedError(f"the offline store of feature group {where} is damaged: {problem}") from None
