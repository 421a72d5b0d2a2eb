"""LocalFeatureStore: SageMaker Feature Store semantics on one machine, exercised for real."""

from __future__ import annotations

import csv
import os
import re
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from datetime import datetime
from itertools import islice
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from churn.features import from_feature_store_record, to_feature_store_record
from churn.ingest import ingest_batch
from churn.schema import FeatureSpec
from churn.sql import offline_count_sql, table_reference, training_set_sql
from pipeline.local_aws.feature_store import ONLINE_PAGE_BYTES, LocalFeatureStore

REPO = Path(__file__).resolve().parents[2]
SPEC = FeatureSpec.load(REPO / "data" / "churn.spec.json")
GROUP = "churn-features"
T1 = "2026-01-01T10:00:00.000Z"
T2 = "2026-01-02T11:30:00.000Z"
T3 = "2026-01-03T12:45:00.500Z"


def record(customer_id: str, event_time: str, /, **overrides: str | None) -> dict[str, str]:
    """A complete, valid churn record (feature name -> Feature Store string)."""
    values: dict[str, str | None] = {
        "customer_id": customer_id,
        "event_time": event_time,
        "gender": "Female",
        "senior_citizen": "0",
        "partner": "Yes",
        "dependents": "No",
        "tenure": "12",
        "phone_service": "Yes",
        "multiple_lines": "No",
        "internet_service": "DSL",
        "online_security": "No",
        "online_backup": "Yes",
        "device_protection": "No",
        "tech_support": "No",
        "streaming_tv": "No",
        "streaming_movies": "No",
        "contract": "Month-to-month",
        "paperless_billing": "Yes",
        "payment_method": "Electronic check",
        "monthly_charges": "29.85",
        "total_charges": "358.2",
        "churn": "0",
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def put(store: LocalFeatureStore, rec: dict[str, str], group: str = GROUP) -> None:
    store.put_record(FeatureGroupName=group, Record=to_feature_store_record(rec))


def online(store: LocalFeatureStore, customer_id: str, group: str = GROUP) -> dict[str, str] | None:
    response = store.get_record(FeatureGroupName=group, RecordIdentifierValueAsString=customer_id)
    return from_feature_store_record(response["Record"]) if "Record" in response else None


def offline_rows(store: LocalFeatureStore, group: str = GROUP) -> list[dict]:
    files = store.offline_files(group)
    if not files:
        return []
    table = pa.concat_tables(pq.read_table(f) for f in files)
    return sorted(table.to_pylist(), key=lambda r: r["api_invocation_time"])


def training_set(store: LocalFeatureStore, as_of: str) -> dict[str, dict]:
    con = store.connect_duckdb(GROUP, "churn_db", "churn_features")
    cursor = con.execute(training_set_sql(SPEC, table_reference("churn_db", "churn_features")), [as_of])
    names = [d[0] for d in cursor.description]
    return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


@pytest.fixture
def store(tmp_path: Path):
    with LocalFeatureStore(tmp_path / "feature-store") as fs:
        fs.create_feature_group(GROUP, SPEC)
        yield fs


def hard_delete(store: LocalFeatureStore, customer_id: str, event_time: str) -> None:
    store.delete_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString=customer_id, EventTime=event_time,
                        DeletionMode="HardDelete")


def error_of(exc_info: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = exc_info.value.response["Error"]
    return error["Code"], error["Message"]


# -- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rec", "expected"),
    [
        (record("C-1", T1, loyalty_points="7"), ["'C-1'", "loyalty_points", "'7'", "not defined"]),
        (record("C-2", T1, tenure="twelve"), ["'C-2'", "tenure", "'twelve'", "Integral"]),
        (record("C-3", T1, tenure="12.5"), ["'C-3'", "tenure", "'12.5'", "Integral"]),
        (record("C-4", T1, monthly_charges="29,85"), ["'C-4'", "monthly_charges", "'29,85'", "Fractional"]),
        (record("C-5", T1, monthly_charges="nan"), ["'C-5'", "monthly_charges", "'nan'", "Fractional"]),
        (record("C-6", T1, total_charges="1e999"), ["'C-6'", "total_charges", "'1e999'", "finite"]),
        (record("C-7", T1, total_charges=" "), ["'C-7'", "total_charges", "' '", "Fractional"]),
        (record("C-8", T1, customer_id=None), ["<missing id>", "customer_id", "missing"]),
        (record("C-9", "2026-01-01T10:00:00Z"), ["'C-9'", "event_time", "'2026-01-01T10:00:00Z'"]),
        (record("C-10", "2026-01-01"), ["'C-10'", "event_time", "'2026-01-01'", "YYYY-MM-DDTHH:MM:SS.sssZ"]),
        (record("C-11", "2026-13-01T10:00:00.000Z"), ["'C-11'", "event_time", "'2026-13-01T10:00:00.000Z'"]),
        (record("C-12", T1, event_time=None), ["'C-12'", "event_time", "missing"]),
    ],
    ids=[
        "unknown-feature",
        "bad-integral",
        "fractional-as-integral",
        "bad-fractional",
        "nan-fractional",
        "infinite-fractional",
        "blank-fractional",
        "missing-id",
        "event-time-without-millis",
        "event-time-date-only",
        "event-time-month-13",
        "missing-event-time",
    ],
)
def test_invalid_records_raise_validation_exception_naming_id_feature_value(store, rec, expected):
    with pytest.raises(ClientError) as exc_info:
        put(store, rec)
    code, message = error_of(exc_info)
    assert code == "ValidationException"
    assert exc_info.value.operation_name == "PutRecord"
    for fragment in expected:
        assert fragment in message, (fragment, message)
    assert offline_rows(store) == []  # nothing of an invalid record is written


def test_duplicate_feature_and_non_string_value_are_rejected(store):
    items = to_feature_store_record(record("C-1", T1)) + [{"FeatureName": "tenure", "ValueAsString": "13"}]
    with pytest.raises(ClientError) as exc_info:
        store.put_record(FeatureGroupName=GROUP, Record=items)
    code, message = error_of(exc_info)
    assert code == "ValidationException" and "'C-1'" in message and "tenure" in message and "more than once" in message

    items = to_feature_store_record(record("C-2", T1))
    items[4] = {"FeatureName": items[4]["FeatureName"], "ValueAsString": 12}
    with pytest.raises(ClientError) as exc_info:
        store.put_record(FeatureGroupName=GROUP, Record=items)
    assert error_of(exc_info)[0] == "ValidationException"
    assert online(store, "C-1") is None and online(store, "C-2") is None


def test_unknown_feature_group_is_resource_not_found(store):
    calls = [
        lambda: store.put_record(FeatureGroupName="nope", Record=to_feature_store_record(record("C-1", T1))),
        lambda: store.get_record(FeatureGroupName="nope", RecordIdentifierValueAsString="C-1"),
        lambda: store.delete_record(FeatureGroupName="nope", RecordIdentifierValueAsString="C-1", EventTime=T1),
        lambda: store.describe_feature_group("nope"),
    ]
    for call in calls:
        with pytest.raises(ClientError) as exc_info:
            call()
        assert error_of(exc_info)[0] == "ResourceNotFound"


# -- online store -------------------------------------------------------------------------------
def test_online_store_keeps_the_latest_record_by_event_time(store):
    put(store, record("C-1", T1, tenure="1"))
    put(store, record("C-1", T2, tenure="2"))
    assert online(store, "C-1")["tenure"] == "2"
    put(store, record("C-1", T2, tenure="3"))  # equal event time: the later call wins
    assert online(store, "C-1")["tenure"] == "3"


def test_older_event_time_does_not_overwrite_online_but_is_appended_offline(store):
    put(store, record("C-1", T2, tenure="2"))
    put(store, record("C-1", T1, tenure="1"))  # late arrival
    assert online(store, "C-1")["tenure"] == "2"
    store.flush()
    put(store, record("C-1", T1, tenure="0"))  # late arrival against the *flushed* (SQLite) record
    assert online(store, "C-1")["tenure"] == "2"
    store.flush()
    assert online(store, "C-1")["tenure"] == "2"
    rows = offline_rows(store)
    assert [(r["event_time"], r["tenure"]) for r in rows] == [(T2, 2), (T1, 1), (T1, 0)]


def test_get_record_of_missing_record_is_empty_and_feature_names_filter(store):
    assert store.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="nobody") == {}
    put(store, record("C-1", T1, total_charges=None))
    response = store.get_record(
        FeatureGroupName=GROUP, RecordIdentifierValueAsString="C-1", FeatureNames=["tenure", "total_charges"]
    )
    assert response == {"Record": [{"FeatureName": "tenure", "ValueAsString": "12"}]}  # missing stays missing
    full = online(store, "C-1")
    assert full == record("C-1", T1, total_charges=None)
    with pytest.raises(ClientError):
        store.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="C-1", FeatureNames=["nope"])


def test_delete_record_removes_online_and_appends_a_marker_offline(store):
    put(store, record("C-1", T1))
    put(store, record("C-2", T1))
    store.delete_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="C-1", EventTime=T2)
    assert online(store, "C-1") is None
    assert online(store, "C-2") is not None
    put(store, record("C-1", T1, tenure="99"))  # older than the deletion: not resurrected online
    assert online(store, "C-1") is None
    store.flush()
    assert online(store, "C-1") is None

    marker = [r for r in offline_rows(store) if r["is_deleted"]]
    assert len(marker) == 1
    assert marker[0]["customer_id"] == "C-1" and marker[0]["event_time"] == T2
    features = set(SPEC.by_name) - {"customer_id", "event_time"}
    assert all(marker[0][name] is None for name in features)

    put(store, record("C-1", T3, tenure="5"))  # newer than the deletion: back online
    assert online(store, "C-1")["tenure"] == "5"


def test_older_soft_delete_keeps_online_record_but_still_writes_marker(store):
    put(store, record("C-1", T2))
    store.flush()
    store.delete_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="C-1", EventTime=T1)
    assert online(store, "C-1") is not None
    assert [(r["event_time"], r["is_deleted"]) for r in offline_rows(store)] == [(T2, False), (T1, True)]


def test_hard_delete(store):
    put(store, record("C-1", T2))
    with pytest.raises(ClientError) as exc_info:  # older than the stored record: refused, no marker
        hard_delete(store, "C-1", T1)
    assert error_of(exc_info)[0] == "ValidationException"
    assert online(store, "C-1") is not None
    hard_delete(store, "C-1", T3)
    assert online(store, "C-1") is None
    put(store, record("C-1", T1, tenure="7"))  # a hard delete leaves no tombstone
    assert online(store, "C-1")["tenure"] == "7"
    assert [r["is_deleted"] for r in offline_rows(store)] == [False, True, False]


def test_target_stores(store):
    rec = to_feature_store_record(record("C-1", T1))
    store.put_record(FeatureGroupName=GROUP, Record=rec, TargetStores=["OnlineStore"])
    assert online(store, "C-1") is not None and offline_rows(store) == []
    store.put_record(
        FeatureGroupName=GROUP, Record=to_feature_store_record(record("C-2", T1)), TargetStores=["OfflineStore"]
    )
    assert online(store, "C-2") is None and [r["customer_id"] for r in offline_rows(store)] == ["C-2"]
    with pytest.raises(ClientError):
        store.put_record(FeatureGroupName=GROUP, Record=rec, TargetStores=["Elsewhere"])


# -- offline store ------------------------------------------------------------------------------
def test_offline_layout_matches_sagemaker_and_is_partitioned_by_event_time(store, tmp_path):
    put(store, record("C-1", "2025-12-31T23:59:59.999Z"))
    put(store, record("C-2", "2026-02-03T04:05:06.007Z"))
    files = store.offline_files(GROUP)
    info = store.describe_feature_group(GROUP)
    pattern = re.compile(
        r"offline-store/000000000000/sagemaker/us-east-1/offline-store/"
        rf"{GROUP}-(\d{{10}})/data/year=(\d{{4}})/month=(\d{{2}})/day=(\d{{2}})/hour=(\d{{2}})/[^/]+\.parquet$"
    )
    found = set()
    for f in files:
        relative = f.relative_to(tmp_path / "feature-store").as_posix()
        match = pattern.search(relative)
        assert match, relative
        assert int(match.group(1)) == info.created_unix
        found.add(match.groups()[1:])
    assert found == {("2025", "12", "31", "23"), ("2026", "02", "03", "04")}
    assert store.offline_glob(GROUP).endswith("year=*/month=*/day=*/hour=*/*.parquet")


def test_offline_columns_and_types(store):
    put(store, record("C-1", T1, total_charges=None))
    store.delete_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="C-1", EventTime=T2)
    (file,) = [f for f in store.offline_files(GROUP) if "day=01" in str(f)]
    schema = pq.read_schema(file)
    assert schema.names == [*(f.name for f in SPEC.all_features), "write_time", "api_invocation_time", "is_deleted"]
    expected = {"String": pa.string(), "Integral": pa.int64(), "Fractional": pa.float64()}
    for feature in SPEC.all_features:
        assert schema.field(feature.name).type == expected[feature.type], feature.name
    assert schema.field("event_time").type == pa.string()  # a String event time stays a string
    assert schema.field("write_time").type == pa.timestamp("us", tz="UTC")
    assert schema.field("api_invocation_time").type == pa.timestamp("us", tz="UTC")
    assert schema.field("is_deleted").type == pa.bool_()
    put_row, marker = offline_rows(store)
    assert put_row["total_charges"] is None and put_row["tenure"] == 12 and put_row["monthly_charges"] == 29.85
    assert put_row["is_deleted"] is False and marker["is_deleted"] is True
    assert put_row["api_invocation_time"] < marker["api_invocation_time"]
    assert put_row["write_time"] >= put_row["api_invocation_time"]
    assert put_row["write_time"].tzinfo is not None


def test_auto_flush_bounds_the_buffer(tmp_path):
    with LocalFeatureStore(tmp_path, flush_rows=10) as fs:
        fs.create_feature_group(GROUP, SPEC)
        for i in range(25):
            put(fs, record(f"C-{i}", T1))
        files = sorted(fs.create_feature_group(GROUP, SPEC).data_dir.rglob("*.parquet"))
        assert sum(pq.read_metadata(f).num_rows for f in files) == 20  # two automatic flushes
        assert len(offline_rows(fs)) == 25


# -- control plane and persistence -----------------------------------------------------------------
def test_persistence_across_reopen_and_idempotent_create(tmp_path):
    root = tmp_path / "fs"
    with LocalFeatureStore(root) as fs:
        first = fs.create_feature_group(GROUP, SPEC)
        put(fs, record("C-1", T1, tenure="3"))
    with LocalFeatureStore(root) as fs:
        again = fs.create_feature_group(GROUP, SPEC)  # same fingerprint: the existing group
        assert again.offline_dir == first.offline_dir and again.created_at == first.created_at
        assert [g.name for g in fs.list_feature_groups()] == [GROUP]
        assert fs.describe_feature_group(GROUP).fingerprint == SPEC.fingerprint()
        assert online(fs, "C-1")["tenure"] == "3"
        assert len(offline_rows(fs)) == 1
        put(fs, record("C-1", T2, tenure="4"))
    with LocalFeatureStore(root) as fs:
        assert online(fs, "C-1")["tenure"] == "4"
        assert len(offline_rows(fs)) == 2


def test_create_with_a_different_spec_is_a_clear_error(store):
    data = SPEC.to_dict()
    data["features"] = [*data["features"], {"name": "region", "type": "String"}]
    changed = FeatureSpec.from_dict(data, "changed.spec.json")
    with pytest.raises(ClientError) as exc_info:
        store.create_feature_group(GROUP, changed)
    code, message = error_of(exc_info)
    assert code == "ResourceInUse"
    assert GROUP in message and SPEC.fingerprint() in message and changed.fingerprint() in message


def test_delete_feature_group_removes_online_and_offline_data(store):
    put(store, record("C-1", T1))
    info = store.describe_feature_group(GROUP)
    assert store.offline_files(GROUP)
    store.delete_feature_group(GROUP)
    assert not info.offline_dir.exists()
    assert store.list_feature_groups() == []
    with pytest.raises(ClientError):
        store.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="C-1")
    store.create_feature_group(GROUP, SPEC)
    assert online(store, "C-1") is None and offline_rows(store) == []


def test_integral_identifier_and_fractional_event_time(tmp_path):
    spec = FeatureSpec.from_dict(
        {
            "record_identifier": {"name": "account_id", "type": "Integral"},
            "event_time": {"name": "updated_at", "type": "Fractional"},
            "label": {"name": "churned", "type": "Integral"},
            "features": [{"name": "balance", "type": "Fractional"}],
        }
    )
    with LocalFeatureStore(tmp_path) as fs:
        fs.create_feature_group("accounts", spec)
        rec = {"account_id": "42", "updated_at": "1767225600.5", "balance": "10.5", "churned": "1"}
        put(fs, rec, group="accounts")
        fs.delete_record(FeatureGroupName="accounts", RecordIdentifierValueAsString="42", EventTime="1767225601")
        assert fs.get_record(FeatureGroupName="accounts", RecordIdentifierValueAsString="42") == {}
        (file,) = fs.offline_files("accounts")
        assert "/year=2026/month=01/day=01/hour=00/" in file.as_posix()
        rows = pq.read_table(file).to_pylist()
        assert [(r["account_id"], r["updated_at"], r["is_deleted"]) for r in rows] == [
            (42, 1767225600.5, False),
            (42, 1767225601.0, True),
        ]
        with pytest.raises(ClientError):
            put(fs, {**rec, "account_id": "4x2"}, group="accounts")


# -- bulk and concurrency ---------------------------------------------------------------------------
def test_put_records_has_put_record_semantics_and_is_all_or_nothing(tmp_path):
    with LocalFeatureStore(tmp_path) as fs:
        fs.create_feature_group(GROUP, SPEC)
        batch = [record("C-1", T2, tenure="2"), record("C-1", T1, tenure="1"), record("C-2", T1)]
        fs.put_records(GROUP, [to_feature_store_record(r) for r in batch])
        assert online(fs, "C-1")["tenure"] == "2"
        assert len(offline_rows(fs)) == 3
        bad = [record("C-3", T1), record("C-4", T1, tenure="x")]
        with pytest.raises(ClientError) as exc_info:
            fs.put_records(GROUP, [to_feature_store_record(r) for r in bad])
        assert "'C-4'" in error_of(exc_info)[1]
        assert online(fs, "C-3") is None and len(offline_rows(fs)) == 3


def test_concurrent_puts_from_threads_are_consistent(tmp_path):
    threads, per_thread, ids = 8, 400, 150
    with LocalFeatureStore(tmp_path, flush_rows=1000) as fs:  # automatic flushes during the run
        fs.create_feature_group(GROUP, SPEC)
        errors: list[BaseException] = []

        def work(t: int) -> None:
            try:
                for i in range(per_thread):
                    n = t * per_thread + i
                    event_time = f"2026-01-01T00:{n // 60 % 60:02d}:{n % 60:02d}.{t:03d}Z"
                    put(fs, record(f"C-{n % ids}", event_time, tenure=str(n)))
                    if i % 50 == 0:
                        fs.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString=f"C-{n % ids}")
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert errors == []
        rows = offline_rows(fs)
        assert len(rows) == threads * per_thread
        assert len({r["api_invocation_time"] for r in rows}) == len(rows)  # strictly increasing call times
        latest: dict[str, dict] = {}
        for r in rows:  # the online rule, replayed in call order
            current = latest.get(r["customer_id"])
            if current is None or r["event_time"] >= current["event_time"]:
                latest[r["customer_id"]] = r
        assert len(latest) == ids
        for customer_id, r in latest.items():
            assert online(fs, customer_id)["tenure"] == str(r["tenure"])
        # the point-in-time SQL agrees with the online store
        newest = training_set(fs, "2999-01-01T00:00:00.000Z")
        assert {k: v["tenure"] for k, v in newest.items()} == {k: r["tenure"] for k, r in latest.items()}



# -- online shards: one SQLite file per writing store, reads take the newest ------------------------
def shard_files(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if re.fullmatch(r"online(-\d+)?\.sqlite", p.name))


def shard_rows(path: Path) -> list[tuple]:
    with closing(sqlite3.connect(path)) as con:
        return con.execute('SELECT record_id, event_time, tenure, is_deleted FROM "fg_churn-features" '
                           "ORDER BY record_id").fetchall()


def page_size(path: Path) -> int:
    with closing(sqlite3.connect(path)) as con:
        return con.execute("PRAGMA page_size").fetchone()[0]


@pytest.fixture
def two_stores(tmp_path: Path):
    root = tmp_path / "fs"
    with LocalFeatureStore(root) as a, LocalFeatureStore(root) as b:
        a.create_feature_group(GROUP, SPEC)
        b.create_feature_group(GROUP, SPEC)
        yield root, a, b


def test_stores_open_at_once_write_their_own_shard_and_read_each_others(two_stores):
    root, a, b = two_stores
    assert shard_files(root) == []  # a shard is claimed by the first write, not by opening
    put(a, record("C-1", T1, tenure="1"))
    put(b, record("C-2", T1, tenure="2"))
    a.flush()
    b.flush()
    assert shard_files(root) == ["online-1.sqlite", "online.sqlite"]
    assert shard_rows(root / "online.sqlite") == [("C-1", T1, "1", 0)]
    assert shard_rows(root / "online-1.sqlite") == [("C-2", T1, "2", 0)]
    assert [page_size(root / name) for name in shard_files(root)] == [ONLINE_PAGE_BYTES] * 2 != [4096] * 2
    for store in (a, b):
        assert online(store, "C-1")["tenure"] == "1" and online(store, "C-2")["tenure"] == "2"


def test_across_shards_the_newer_event_time_wins_then_the_later_write(two_stores):
    _, a, b = two_stores
    put(a, record("C-1", T2, tenure="11"))
    a.flush()
    put(b, record("C-1", T1, tenure="12"))  # older event time, written later: loses
    b.flush()
    assert online(a, "C-1")["tenure"] == "11" and online(b, "C-1")["tenure"] == "11"
    put(b, record("C-1", T2, tenure="13"))  # equal event time, written later: wins
    assert online(b, "C-1")["tenure"] == "13"  # b's own unflushed write
    b.flush()
    assert online(a, "C-1")["tenure"] == "13"
    put(a, record("C-1", T2, tenure="14"))  # a's unflushed write is later still
    assert online(a, "C-1")["tenure"] == "14"
    a.flush()
    assert online(b, "C-1")["tenure"] == "14"
    # the offline store holds every version, and the point-in-time SQL agrees with the online store
    assert training_set(a, "2999-01-01T00:00:00.000Z")["C-1"]["tenure"] == 14
    assert len(offline_rows(a)) == 4


def test_deletes_across_shards(two_stores):
    root, a, b = two_stores
    put(a, record("C-1", T2))
    put(a, record("C-2", T2))
    a.flush()
    b.delete_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="C-1", EventTime=T3)  # soft, newer
    b.flush()
    assert online(a, "C-1") is None and online(b, "C-1") is None
    put(a, record("C-1", T1, tenure="99"))  # older than b's tombstone: stays deleted
    a.flush()
    assert online(b, "C-1") is None
    with pytest.raises(ClientError) as exc_info:  # older than the record in a's shard: refused
        hard_delete(b, "C-2", T1)
    assert error_of(exc_info)[0] == "ValidationException"
    assert online(b, "C-2") is not None
    hard_delete(b, "C-2", T3)
    b.flush()
    assert online(a, "C-2") is None
    assert [r[0] for r in shard_rows(root / "online.sqlite")] == ["C-1"]  # removed from a's shard too
    put(a, record("C-2", T1, tenure="7"))  # a hard delete leaves no tombstone anywhere
    assert online(b, "C-2") is None  # not flushed yet: b cannot see a's pending write
    a.flush()
    assert online(b, "C-2")["tenure"] == "7"


def test_delete_feature_group_empties_every_shard(two_stores):
    root, a, b = two_stores
    put(a, record("C-1", T1))
    put(b, record("C-2", T1))
    a.flush()
    b.flush()
    a.delete_feature_group(GROUP)
    with LocalFeatureStore(root) as c:
        c.create_feature_group(GROUP, SPEC)
        assert online(c, "C-1") is None and online(c, "C-2") is None
        put(c, record("C-3", T1))
        assert online(c, "C-3") is not None


def test_a_closed_store_releases_its_shard(tmp_path):
    root = tmp_path / "fs"
    for tenure in ("1", "2"):
        with LocalFeatureStore(root) as fs:
            fs.create_feature_group(GROUP, SPEC)
            put(fs, record("C-1", T1, tenure=tenure))
    assert shard_files(root) == ["online.sqlite"]
    with LocalFeatureStore(root) as fs:
        assert online(fs, "C-1")["tenure"] == "2"


_WRITER = """
import os, sys
from churn.features import to_feature_store_record
from pipeline.local_aws.feature_store import LocalFeatureStore
store = LocalFeatureStore(sys.argv[1])
store.put_record(FeatureGroupName=sys.argv[2], Record=to_feature_store_record(eval(sys.argv[3])))
store.flush()
os._exit(0)  # dies without closing: the operating system releases its shard
"""


def test_a_process_that_dies_releases_its_shard(tmp_path):
    root = tmp_path / "fs"
    with LocalFeatureStore(root) as fs:
        fs.create_feature_group(GROUP, SPEC)
        put(fs, record("C-1", T1, tenure="21"))
        fs.flush()  # this store holds slot 0
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "lambda")])}
        for tenure in ("22", "23"):
            rec = record("C-2", T1, tenure=tenure)
            subprocess.run([sys.executable, "-c", _WRITER, str(root), GROUP, repr(rec)], env=env, check=True)
        assert shard_files(root) == ["online-1.sqlite", "online.sqlite"]  # the second child reused slot 1
        assert online(fs, "C-2")["tenure"] == "23" and online(fs, "C-1")["tenure"] == "21"


def test_an_online_store_written_before_shards_is_read_and_updated(tmp_path):
    root = tmp_path / "fs"
    with LocalFeatureStore(root) as fs:
        fs.create_feature_group(GROUP, SPEC)
    # the table as it was before rows carried their write time
    columns = ", ".join(f'"{f.name}" TEXT' for f in SPEC.all_features)
    names = ", ".join(f'"{f.name}"' for f in SPEC.all_features)
    old = record("C-1", T2, tenure="31")
    with closing(sqlite3.connect(root / "online.sqlite")) as con:
        con.execute(f'CREATE TABLE "fg_churn-features" (record_id TEXT PRIMARY KEY, event_key REAL NOT NULL, '
                    f"is_deleted INTEGER NOT NULL, {columns}) WITHOUT ROWID")
        values = [old.get(f.name) for f in SPEC.all_features]
        con.execute(f'INSERT INTO "fg_churn-features" (record_id, event_key, is_deleted, {names}) '
                    f"VALUES (?, ?, 0, {', '.join('?' * len(values))})",
                    ["C-1", datetime.fromisoformat(T2).timestamp(), *values])
        con.commit()
    with LocalFeatureStore(root) as fs:
        assert online(fs, "C-1")["tenure"] == "31"
        put(fs, record("C-1", T1, tenure="32"))
        fs.flush()
        assert online(fs, "C-1")["tenure"] == "31"
        put(fs, record("C-1", T2, tenure="33"))
        fs.flush()
        assert online(fs, "C-1")["tenure"] == "33"
    assert page_size(root / "online.sqlite") == 4096  # an existing file keeps its page size

# -- the point-in-time SQL on DuckDB ----------------------------------------------------------------
def test_training_set_sql_point_in_time_semantics(store):
    put(store, record("reingested", T1, tenure="1", monthly_charges="10.0"))
    put(store, record("reingested", T2, tenure="2", monthly_charges="20.0"))
    put(store, record("deleted", T1, tenure="5"))
    store.delete_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="deleted", EventTime=T2)
    put(store, record("late", T2, tenure="20"))
    put(store, record("late", T1, tenure="10"))  # arrives after the newer version
    put(store, record("future", T3, tenure="30"))
    put(store, record("missing-charges", T1, total_charges=None))

    at_t2 = training_set(store, T2)
    assert sorted(at_t2) == ["late", "missing-charges", "reingested"]
    assert list(at_t2["reingested"]) == list(SPEC.model_columns)
    assert at_t2["reingested"]["tenure"] == 2 and at_t2["reingested"]["monthly_charges"] == 20.0
    assert at_t2["late"]["tenure"] == 20
    assert at_t2["missing-charges"]["total_charges"] is None

    at_t1 = training_set(store, T1)  # before the re-ingest, the deletion and the future record
    assert sorted(at_t1) == ["deleted", "late", "missing-charges", "reingested"]
    assert at_t1["reingested"]["tenure"] == 1 and at_t1["deleted"]["tenure"] == 5
    assert at_t1["late"]["tenure"] == 10

    assert sorted(training_set(store, T3)) == ["future", "late", "missing-charges", "reingested"]
    assert training_set(store, "2025-12-31T00:00:00.000Z") == {}


def test_offline_count_sql_counts_distinct_records_of_one_event_time(store):
    for customer_id in ("A", "B", "C"):
        put(store, record(customer_id, T1))
    put(store, record("A", T1, tenure="2"))  # a retried put: same record, same event time
    put(store, record("D", T2))
    con = store.connect_duckdb(GROUP, "churn_db", "churn_features")
    sql = offline_count_sql(SPEC, table_reference("churn_db", "churn_features"))
    assert con.execute(sql, [T1]).fetchone() == (3,)
    assert con.execute(sql, [T2]).fetchone() == (1,)
    assert con.execute(sql, [T3]).fetchone() == (0,)


def test_duckdb_view_exists_with_typed_columns_before_any_data(store):
    con = store.connect_duckdb(GROUP, "churn_db", "churn_features")
    empty = con.execute('DESCRIBE "churn_db"."churn_features"').fetchall()
    assert con.execute(training_set_sql(SPEC, table_reference("churn_db", "churn_features")), [T1]).fetchall() == []
    assert con.execute(offline_count_sql(SPEC, table_reference("churn_db", "churn_features")), [T1]).fetchone() == (0,)
    put(store, record("A", T1))
    filled = store.connect_duckdb(GROUP, "churn_db", "churn_features")
    assert filled.execute('DESCRIBE "churn_db"."churn_features"').fetchall() == empty
    assert filled.execute('SELECT count(*) FROM "churn_db"."churn_features"').fetchone() == (1,)


# -- the shared ingest code against the local store ------------------------------------------------
def test_ingest_batch_runs_unchanged_against_the_local_store(store):
    with (REPO / "data" / "churn.csv").open(newline="", encoding="utf-8") as f:
        rows = list(islice(csv.DictReader(f), 500))
    blank = [r["customerID"] for r in rows if not r["TotalCharges"].strip()]
    assert blank, "the sample should contain a blank TotalCharges row"
    rows.append({**rows[0], "customerID": "BAD-ROW", "tenure": "many"})

    result = ingest_batch(rows, spec=SPEC, feature_group_name=GROUP, event_time=T1, client=store, max_workers=8)
    assert result.ingested == 500
    assert [f["record_id"] for f in result.failed] == ["BAD-ROW"]
    assert "tenure" in result.failed[0]["error"]

    for customer_id in blank:
        stored = online(store, customer_id)
        assert stored is not None and "total_charges" not in stored
    con = store.connect_duckdb(GROUP, "churn_db", "churn_features")
    training = con.execute(training_set_sql(SPEC, table_reference("churn_db", "churn_features")), [T1]).fetchall()
    assert len(training) == 500
    total_charges = SPEC.model_columns.index("total_charges")
    assert sorted(r[0] for r in training if r[total_charges] is None) == sorted(blank)
    assert con.execute(offline_count_sql(SPEC, table_reference("churn_db", "churn_features")), [T1]).fetchone() == (
        500,
    )

    # the store's own ValidationException reaches the caller per record, like the service's
    again = ingest_batch(rows[:3], spec=SPEC, feature_group_name=GROUP, event_time="2026-01-01", client=store)
    assert again.ingested == 0
    assert [f["record_id"] for f in again.failed] == [r["customerID"] for r in rows[:3]]
    assert all(f["error"].startswith("ValidationException: ") for f in again.failed)
