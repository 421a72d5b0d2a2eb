"""LocalFeatureStore: SageMaker Feature Store's semantics (boto3 shapes and error codes) on one machine."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from churn.features import to_feature_store_record
from churn.schema import MAX_TTL_SECONDS, FeatureSpec
from churn.sql import NO_CUTOFF, offline_count_sql, table_reference, training_set_sql
from pipeline.local_aws.feature_store import LocalFeatureStore
from pipeline.local_aws.store_files import StoreDamagedError
from tests.support.feature_store import offline_store, overwrite_page_headers, write_deletion_marker

REPO = Path(__file__).resolve().parents[2]
TELCO = FeatureSpec.load(REPO / "data" / "churn.spec.json")
SPEC = TELCO.groups[0]  # the one feature group of the bundled spec
GROUP = "churn-features"
T1 = "2026-01-01T10:00:00.000Z"
T2 = "2026-01-02T11:30:00.000Z"
T3 = "2026-01-03T12:45:00.500Z"
T1_UNIX = datetime(2026, 1, 1, 10, tzinfo=UTC).timestamp()
BOTH_STORES = {"OnlineStoreConfig": {"EnableOnlineStore": True},
               "OfflineStoreConfig": {"S3StorageConfig": {"S3Uri": "s3://bucket/offline-store"}}}


def record(customer_id: str, event_time: str, /, **overrides: str | None) -> dict[str, str]:
    """A complete, valid churn record (feature name -> Feature Store string)."""
    values: dict[str, str | None] = {
        "customer_id": customer_id, "event_time": event_time, "gender": "Female", "senior_citizen": "0",
        "partner": "Yes", "dependents": "No", "tenure": "12", "phone_service": "Yes", "multiple_lines": "No",
        "internet_service": "DSL", "online_security": "No", "online_backup": "Yes", "device_protection": "No",
        "tech_support": "No", "streaming_tv": "No", "streaming_movies": "No", "contract": "Month-to-month",
        "paperless_billing": "Yes", "payment_method": "Electronic check", "monthly_charges": "29.85",
        "total_charges": "358.2", "churn": "0",
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def create(store: LocalFeatureStore, group: str = GROUP, **config) -> dict:
    """The churn spec's group with both stores, unless `config` replaces a store config (None: no such store)."""
    stores = {k: v for k, v in {**BOTH_STORES, **config}.items() if v is not None}
    return store.create_feature_group(FeatureGroupName=group, **SPEC.feature_group_definition(), **stores)


def put(store: LocalFeatureStore, rec: dict[str, str], group: str = GROUP, **kwargs) -> None:
    store.put_record(FeatureGroupName=group, Record=to_feature_store_record(rec), **kwargs)


def online(store: LocalFeatureStore, customer_id: str, group: str = GROUP) -> dict[str, str] | None:
    response = store.get_record(FeatureGroupName=group, RecordIdentifierValueAsString=customer_id)
    return {item["FeatureName"]: item["ValueAsString"] for item in response["Record"]} if "Record" in response else None


def data_dir(store: LocalFeatureStore, group: str = GROUP) -> Path:
    described = store.describe_feature_group(FeatureGroupName=group)
    return Path(urlparse(described["OfflineStoreConfig"]["S3StorageConfig"]["ResolvedOutputS3Uri"]).path)


def offline_files(store: LocalFeatureStore, group: str = GROUP) -> list[Path]:
    store.flush()
    return sorted(data_dir(store, group).rglob("*.parquet"))


def offline_rows(store: LocalFeatureStore, group: str = GROUP) -> list[dict]:
    files = offline_files(store, group)
    if not files:
        return []
    table = pa.concat_tables(pq.read_table(f) for f in files)
    return sorted(table.to_pylist(), key=lambda r: r["api_invocation_time"])


def training_set(store: LocalFeatureStore, as_of: str) -> dict[str, dict]:
    con = offline_store(store, GROUP, "churn_db", "churn_features")
    query = training_set_sql(TELCO, {SPEC.name: table_reference("churn_db", "churn_features")})
    cursor = con.execute(query.text, [as_of, NO_CUTOFF])
    names = [d[0] for d in cursor.description]
    return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


def error_of(exc_info: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = exc_info.value.response["Error"]
    return error["Code"], error["Message"]


class Clock:
    """An injected clock (unix seconds) that moves only when told to."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path):
    with LocalFeatureStore(tmp_path / "feature-store") as fs:
        create(fs)
        yield fs


# -- control plane --------------------------------------------------------------------------------
def test_create_and_describe_in_boto3_shapes(tmp_path):
    clock = Clock(1_767_225_600.75)
    with LocalFeatureStore(tmp_path / "fs", account="123456789012", region="eu-west-1", clock=clock) as fs:
        response = create(fs)
        assert response == {"FeatureGroupArn": f"arn:aws:sagemaker:eu-west-1:123456789012:feature-group/{GROUP}"}
        described = fs.describe_feature_group(FeatureGroupName=GROUP)
    assert described["FeatureGroupName"] == GROUP and described["FeatureGroupStatus"] == "Created"
    assert described["RecordIdentifierFeatureName"] == "customer_id"
    assert described["EventTimeFeatureName"] == "event_time"
    assert described["FeatureDefinitions"] == SPEC.feature_definitions()
    assert described["OnlineStoreConfig"] == {"EnableOnlineStore": True}
    assert described["CreationTime"] == datetime(2026, 1, 1, tzinfo=UTC)
    resolved = urlparse(described["OfflineStoreConfig"]["S3StorageConfig"]["ResolvedOutputS3Uri"]).path
    assert resolved == (tmp_path / "fs" / "offline-store" / "123456789012" / "sagemaker" / "eu-west-1" /
                        "offline-store" / f"{GROUP}-1767225600" / "data").as_posix()


def test_create_of_an_existing_name_is_resource_in_use_from_any_store(tmp_path):
    with LocalFeatureStore(tmp_path) as first, LocalFeatureStore(tmp_path) as second:
        create(first)
        for fs in (first, second):
            with pytest.raises(ClientError) as exc_info:
                create(fs)
            assert error_of(exc_info)[0] == "ResourceInUse" and GROUP in error_of(exc_info)[1]
        assert second.describe_feature_group(FeatureGroupName=GROUP)["FeatureGroupName"] == GROUP


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"FeatureGroupName": "no spaces"}, "FeatureGroupName"),
        ({"FeatureGroupName": "_".join(["g"] * 33)}, "at most 64 characters"),
        ({"OnlineStoreConfig": {"EnableOnlineStore": True, "TtlDuration": {"Unit": "Years", "Value": 1}}},
         "TtlDuration"),
    ],
    ids=["name", "name-over-64", "ttl-unit"],
)
def test_create_refuses_a_name_or_ttl_the_service_refuses(tmp_path, change, fragment):
    request = {"FeatureGroupName": GROUP, **SPEC.feature_group_definition(), **BOTH_STORES, **change}
    with LocalFeatureStore(tmp_path) as fs:
        with pytest.raises(ClientError) as exc_info:
            fs.create_feature_group(**{k: v for k, v in request.items() if v is not None})
        assert error_of(exc_info)[0] == "ValidationException" and fragment in error_of(exc_info)[1]
        with pytest.raises(ClientError):
            fs.describe_feature_group(FeatureGroupName=request["FeatureGroupName"])


def test_unknown_feature_group_is_resource_not_found(store):
    calls = [
        lambda: store.put_record(FeatureGroupName="nope", Record=to_feature_store_record(record("C-1", T1))),
        lambda: store.get_record(FeatureGroupName="nope", RecordIdentifierValueAsString="C-1"),
        lambda: store.describe_feature_group(FeatureGroupName="nope"),
    ]
    for call in calls:
        with pytest.raises(ClientError) as exc_info:
            call()
        assert error_of(exc_info)[0] == "ResourceNotFound"


def test_a_root_written_by_the_sharded_layout_is_refused_with_a_clear_error(tmp_path):
    (tmp_path / "online.sqlite").write_bytes(b"")
    with pytest.raises(RuntimeError, match="older version.*delete that directory"):
        LocalFeatureStore(tmp_path)


# -- record validation ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rec", "expected"),
    [
        (record("C-1", T1, loyalty_points="7"), ["'C-1'", "loyalty_points", "'7'", "not defined"]),
        (record("C-2", T1, tenure="twelve"), ["'C-2'", "tenure", "'twelve'", "Integral"]),
        (record("C-3", T1, tenure="12.5"), ["'C-3'", "tenure", "'12.5'", "Integral"]),
        (record("C-4", T1, tenure="9223372036854775808"), ["'C-4'", "tenure", "64-bit"]),
        (record("C-5", T1, monthly_charges="29,85"), ["'C-5'", "monthly_charges", "'29,85'", "Fractional"]),
        (record("C-6", T1, monthly_charges="nan"), ["'C-6'", "monthly_charges", "'nan'", "Fractional"]),
        (record("C-7", T1, total_charges="1e999"), ["'C-7'", "total_charges", "'1e999'", "finite"]),
        (record("C-8", T1, total_charges=" "), ["'C-8'", "total_charges", "' '", "Fractional"]),
        (record("C-9", T1, customer_id=None), ["customer_id", "missing"]),
        (record("C-10", "2026-01-01"), ["'C-10'", "event_time", "'2026-01-01'", "yyyy-MM-ddTHH:mm:ss.SSSZ"]),
        (record("C-11", "2026-13-01T10:00:00.000Z"), ["'C-11'", "event_time", "'2026-13-01T10:00:00.000Z'"]),
        (record("C-12", "2026-01-01T10:00:00.5Z"), ["'C-12'", "event_time"]),
        (record("C-13", T1, event_time=None), ["'C-13'", "event_time", "missing"]),
    ],
    ids=["unknown-feature", "bad-integral", "fractional-as-integral", "integral-overflow", "bad-fractional",
         "nan-fractional", "infinite-fractional", "blank-fractional", "missing-id", "event-time-date-only",
         "event-time-month-13", "event-time-one-fraction-digit", "missing-event-time"],
)
def test_invalid_records_raise_validation_error_naming_id_feature_value(store, rec, expected):
    with pytest.raises(ClientError) as exc_info:
        put(store, rec)
    code, message = error_of(exc_info)
    assert code == "ValidationError" and exc_info.value.operation_name == "PutRecord"
    for fragment in expected:
        assert fragment in message, (fragment, message)
    assert offline_rows(store) == []  # nothing of an invalid record is written


def test_duplicate_feature_and_non_string_value_are_rejected(store):
    items = to_feature_store_record(record("C-1", T1)) + [{"FeatureName": "tenure", "ValueAsString": "13"}]
    with pytest.raises(ClientError) as exc_info:
        store.put_record(FeatureGroupName=GROUP, Record=items)
    assert error_of(exc_info)[0] == "ValidationError" and "more than once" in error_of(exc_info)[1]
    items = to_feature_store_record(record("C-2", T1))
    items[4] = {"FeatureName": items[4]["FeatureName"], "ValueAsString": 12}
    with pytest.raises(ClientError) as exc_info:
        store.put_record(FeatureGroupName=GROUP, Record=items)
    assert error_of(exc_info)[0] == "ValidationError" and "'C-2'" in error_of(exc_info)[1]
    assert online(store, "C-1") is None and online(store, "C-2") is None


def test_both_documented_event_time_forms_are_accepted(store):
    put(store, record("C-1", "2026-01-01T10:00:00Z"))  # yyyy-MM-dd'T'HH:mm:ssZ
    put(store, record("C-2", T1))  # yyyy-MM-dd'T'HH:mm:ss.SSSZ
    assert online(store, "C-1")["event_time"] == "2026-01-01T10:00:00Z"
    assert len(offline_rows(store)) == 2


# -- online store ---------------------------------------------------------------------------------
@pytest.mark.parametrize("flush_between", [False, True], ids=["in-memory", "after-flush"])
def test_online_store_keeps_the_latest_record_by_event_time(store, flush_between):
    def write(rec: dict[str, str]) -> None:
        put(store, rec)
        if flush_between:
            store.flush()

    write(record("C-1", T1, tenure="1"))
    write(record("C-1", T2, tenure="2"))
    assert online(store, "C-1")["tenure"] == "2"
    write(record("C-1", T1, tenure="0"))  # a late arrival: offline only
    assert online(store, "C-1")["tenure"] == "2"
    write(record("C-1", T2, tenure="3"))  # an equal event time: the later call wins
    assert online(store, "C-1")["tenure"] == "3"
    store.flush()
    assert online(store, "C-1")["tenure"] == "3"
    assert [(r["event_time"], r["tenure"]) for r in offline_rows(store)] == [(T1, 1), (T2, 2), (T1, 0), (T2, 3)]


def test_get_record_of_missing_record_is_empty_and_feature_names_filter(store):
    assert store.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="nobody") == {}
    put(store, record("C-1", T1, total_charges=None))
    response = store.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="C-1",
                                FeatureNames=["tenure", "total_charges"])
    assert response == {"Record": [{"FeatureName": "tenure", "ValueAsString": "12"}]}  # missing stays missing
    assert online(store, "C-1") == record("C-1", T1, total_charges=None)
    with pytest.raises(ClientError) as exc_info:
        store.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="C-1", FeatureNames=["nope"])
    assert error_of(exc_info)[0] == "ValidationError"


def test_target_stores(store):
    put(store, record("C-1", T1), TargetStores=["OnlineStore"])
    assert online(store, "C-1") is not None and offline_rows(store) == []
    put(store, record("C-2", T1), TargetStores=["OfflineStore"])
    assert online(store, "C-2") is None and [r["customer_id"] for r in offline_rows(store)] == ["C-2"]
    for stores in (["Elsewhere"], []):
        with pytest.raises(ClientError) as exc_info:
            put(store, record("C-3", T1), TargetStores=stores)
        assert error_of(exc_info)[0] == "ValidationError"


def test_an_offline_only_group_refuses_online_writes_and_reads(tmp_path):
    with LocalFeatureStore(tmp_path) as fs:
        create(fs, OnlineStoreConfig=None)
        put(fs, record("C-1", T1))  # by default: every store the group has
        assert [r["customer_id"] for r in offline_rows(fs)] == ["C-1"]
        for call in (lambda: put(fs, record("C-2", T1), TargetStores=["OnlineStore", "OfflineStore"]),
                     lambda: fs.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="C-1")):
            with pytest.raises(ClientError) as exc_info:
                call()
            assert error_of(exc_info)[0] == "ValidationError" and "no OnlineStore" in error_of(exc_info)[1]


def test_integral_identifier_and_fractional_event_time(tmp_path):
    with LocalFeatureStore(tmp_path) as fs:
        fs.create_feature_group(
            FeatureGroupName="accounts", RecordIdentifierFeatureName="account_id", EventTimeFeatureName="updated_at",
            FeatureDefinitions=[{"FeatureName": "account_id", "FeatureType": "Integral"},
                                {"FeatureName": "updated_at", "FeatureType": "Fractional"},
                                {"FeatureName": "balance", "FeatureType": "Fractional"}],
            OnlineStoreConfig={"EnableOnlineStore": True}, OfflineStoreConfig={},
        )
        put(fs, {"account_id": "+42", "updated_at": "1767225600.5", "balance": "10.5"}, group="accounts")
        assert fs.get_record(FeatureGroupName="accounts", RecordIdentifierValueAsString="042")["Record"][1] == {
            "FeatureName": "updated_at", "ValueAsString": "1767225600.5"}
        put(fs, {"account_id": "42", "updated_at": "1767225601"}, group="accounts")
        assert fs.get_record(FeatureGroupName="accounts", RecordIdentifierValueAsString="42")["Record"][1] == {
            "FeatureName": "updated_at", "ValueAsString": "1767225601"}
        files = offline_files(fs, "accounts")
        assert all("/year=2026/month=01/day=01/hour=00/" in file.as_posix() for file in files)
        assert [(r["account_id"], r["updated_at"]) for r in offline_rows(fs, "accounts")] == [
            (42, 1767225600.5), (42, 1767225601.0)]
        with pytest.raises(ClientError):
            put(fs, {"account_id": "4x2", "updated_at": "1767225600"}, group="accounts")


# -- BatchWriteRecord -------------------------------------------------------------------------------
def entry(rec: dict[str, str], group: str = GROUP, **extra) -> dict:
    return {"FeatureGroupName": group, "Record": to_feature_store_record(rec), **extra}


@pytest.mark.parametrize("count", [0, 26])
def test_batch_write_record_takes_1_to_25_entries(store, count):
    with pytest.raises(ClientError) as exc_info:
        store.batch_write_record(Entries=[entry(record(f"C-{i}", T1)) for i in range(count)])
    assert error_of(exc_info)[0] == "ValidationError"
    assert exc_info.value.operation_name == "BatchWriteRecord"
    assert offline_rows(store) == []


def test_batch_write_record_writes_the_good_entries_and_reports_the_bad_ones(store, tmp_path):
    create(store, "other-features")
    entries = [entry(record(f"C-{i}", T1)) for i in range(23)]
    entries[5] = entry(record("C-5", T1, tenure="five"))
    entries[9] = entry(record("C-9", T1), group="missing-group")
    entries.append(entry(record("C-1", T2), TargetStores=["Elsewhere"]))
    entries.append(entry(record("O-1", T1), group="other-features", TargetStores=["OnlineStore"]))

    response = store.batch_write_record(Entries=entries)

    assert response["UnprocessedEntries"] == []
    assert [e["Entry"] for e in response["Errors"]] == [entries[5], entries[9], entries[23]]
    assert [e["ErrorCode"] for e in response["Errors"]] == ["ValidationError", "ResourceNotFound",
                                                            "ValidationError"]
    assert "'C-5'" in response["Errors"][0]["ErrorMessage"] and "tenure" in response["Errors"][0]["ErrorMessage"]
    written = sorted(r["customer_id"] for r in offline_rows(store))
    assert written == sorted(f"C-{i}" for i in range(23) if i not in (5, 9))
    assert online(store, "C-1")["event_time"] == T1
    assert online(store, "O-1", group="other-features") is not None
    assert offline_rows(store, "other-features") == []


def test_batch_write_record_entries_keep_put_record_semantics_in_order(store):
    response = store.batch_write_record(Entries=[entry(record("C-1", T2, tenure="2")),
                                                 entry(record("C-1", T1, tenure="1")),
                                                 entry(record("C-1", T2, tenure="3"))])
    assert response["Errors"] == []
    assert online(store, "C-1")["tenure"] == "3"
    rows = offline_rows(store)
    assert [r["tenure"] for r in rows] == [2, 1, 3]
    assert rows[0]["api_invocation_time"] < rows[1]["api_invocation_time"] < rows[2]["api_invocation_time"]


# -- TTL (online store) --------------------------------------------------------------------------------
def expires_at(store: LocalFeatureStore, customer_id: str) -> str | None:
    response = store.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString=customer_id,
                                ExpirationTimeResponse="Enabled")
    return response.get("ExpiresAt", "absent") if response else None


@pytest.mark.parametrize("flush_between", [False, True], ids=["in-memory", "after-flush"])
def test_a_record_expires_its_ttl_after_its_event_time(tmp_path, flush_between):
    clock = Clock(T1_UNIX)
    with LocalFeatureStore(tmp_path, clock=clock) as fs:
        create(fs, OnlineStoreConfig={"EnableOnlineStore": True, "TtlDuration": {"Unit": "Hours", "Value": 2}})
        put(fs, record("C-1", T1))
        put(fs, record("C-2", T1), TtlDuration={"Unit": "Minutes", "Value": 30})  # the request's own TTL wins
        if flush_between:
            fs.flush()
        clock.now = T1_UNIX + 1_799
        assert expires_at(fs, "C-1") == "2026-01-01T12:00:00.000Z"  # ExpiresAt = EventTime + TtlDuration
        assert expires_at(fs, "C-2") == "2026-01-01T10:30:00.000Z"
        assert "ExpiresAt" not in fs.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="C-1")
        clock.now = T1_UNIX + 1_800
        assert expires_at(fs, "C-1") is not None and expires_at(fs, "C-2") is None  # gone, like an absent one
        clock.now = T1_UNIX + 7_200
        assert online(fs, "C-1") is None
        # an expired record is deleted: an older event time is written again
        put(fs, record("C-1", "2026-01-01T09:00:00.000Z", tenure="3"),
            TtlDuration={"Unit": "Days", "Value": 1})
        if flush_between:
            fs.flush()
        assert online(fs, "C-1")["tenure"] == "3" and expires_at(fs, "C-1") == "2026-01-02T09:00:00.000Z"
        assert len(offline_rows(fs)) == 3  # the offline store keeps every write


def test_expiry_counts_from_the_event_time_not_the_write(tmp_path):
    clock = Clock(T1_UNIX + 86_400)  # written a day after its event time, with a TTL of an hour
    with LocalFeatureStore(tmp_path, clock=clock) as fs:
        create(fs, OnlineStoreConfig={"EnableOnlineStore": True, "TtlDuration": {"Unit": "Hours", "Value": 1}})
        put(fs, record("C-1", T1))
        assert online(fs, "C-1") is None
        assert [r["customer_id"] for r in offline_rows(fs)] == ["C-1"]


def test_without_ttl_a_record_never_expires_and_has_no_expires_at(tmp_path):
    clock = Clock(T1_UNIX)
    with LocalFeatureStore(tmp_path, clock=clock) as fs:
        create(fs)
        put(fs, record("C-1", T1))
        clock.now += 10 * 365 * 86_400
        assert expires_at(fs, "C-1") == "absent"


def test_batch_write_record_ttl_entry_overrides_request(tmp_path):
    clock = Clock(T1_UNIX)
    with LocalFeatureStore(tmp_path, clock=clock) as fs:
        create(fs, OnlineStoreConfig={"EnableOnlineStore": True, "TtlDuration": {"Unit": "Weeks", "Value": 1}})
        response = fs.batch_write_record(
            Entries=[entry(record("C-1", T1)), entry(record("C-2", T1), TtlDuration={"Unit": "Seconds", "Value": 5}),
                     entry(record("C-3", T1), TtlDuration={"Unit": "Seconds", "Value": 0})],
            TtlDuration={"Unit": "Days", "Value": 1})
        assert [e["Entry"]["Record"][0]["ValueAsString"] for e in response["Errors"]] == ["C-3"]
        assert expires_at(fs, "C-1") == "2026-01-02T10:00:00.000Z"  # the request's TTL over the group's
        assert expires_at(fs, "C-2") == "2026-01-01T10:00:05.000Z"
        with pytest.raises(ClientError) as exc_info:
            fs.batch_write_record(Entries=[entry(record("C-4", T1))], TtlDuration={"Unit": "Days"})
        assert error_of(exc_info)[0] == "ValidationError"



def test_a_ttl_longer_than_the_limit_is_a_validation_error_not_a_crash(tmp_path):
    """Feature Store sets no upper bound on TtlDuration; here ExpiresAt must stay a timestamp, so a
    longer one is refused the way the service refuses a bad one, on every operation that takes one."""
    too_long = {"Unit": "Weeks", "Value": 2_147_483_647}
    longest = {"Unit": "Days", "Value": MAX_TTL_SECONDS // 86_400}
    clock = Clock(T1_UNIX)
    with LocalFeatureStore(tmp_path, clock=clock) as fs:
        with pytest.raises(ClientError) as exc_info:
            create(fs, OnlineStoreConfig={"EnableOnlineStore": True, "TtlDuration": too_long})
        assert error_of(exc_info)[0] == "ValidationException" and "TtlDuration" in error_of(exc_info)[1]
        create(fs)
        with pytest.raises(ClientError) as exc_info:
            put(fs, record("C-1", T1), TtlDuration=too_long)
        assert error_of(exc_info)[0] == "ValidationError" and "at most" in error_of(exc_info)[1]
        with pytest.raises(ClientError) as exc_info:
            fs.batch_write_record(Entries=[entry(record("C-1", T1))], TtlDuration=too_long)
        assert error_of(exc_info)[0] == "ValidationError"
        response = fs.batch_write_record(Entries=[entry(record("C-1", T1), TtlDuration=too_long),
                                                  entry(record("C-2", T1), TtlDuration=longest)])
        assert [(e["Entry"]["Record"][0]["ValueAsString"], e["ErrorCode"]) for e in response["Errors"]] == [
            ("C-1", "ValidationError")]
        assert expires_at(fs, "C-2").startswith("3025-")  # the longest TTL: 1,000 years of 365 days
        with pytest.raises(ClientError) as exc_info:  # an expiry after year 9999 cannot be written
            put(fs, record("C-3", "9999-06-01T00:00:00.000Z"), TtlDuration={"Unit": "Days", "Value": 365})
        assert error_of(exc_info)[0] == "ValidationError" and "after 9999-12-31" in error_of(exc_info)[1]
        assert online(fs, "C-1") is None and online(fs, "C-3") is None


# -- offline store ----------------------------------------------------------------------------------
def test_offline_layout_is_feature_stores_partitioned_by_event_time(store, tmp_path):
    put(store, record("C-1", "2025-12-31T23:59:59.999Z"))
    put(store, record("C-2", "2026-02-03T04:05:06.007Z"))
    partitions = {f.parent.relative_to(data_dir(store)).as_posix() for f in offline_files(store)}
    assert partitions == {"year=2025/month=12/day=31/hour=23", "year=2026/month=02/day=03/hour=04"}
    assert data_dir(store).parent.name.startswith(f"{GROUP}-")
    assert data_dir(store).relative_to(tmp_path / "feature-store").parts[:5] == (
        "offline-store", "000000000000", "sagemaker", "us-east-1", "offline-store")


def test_offline_columns_and_types(tmp_path):
    clock = Clock(T1_UNIX)
    with LocalFeatureStore(tmp_path, clock=clock) as fs:
        create(fs)
        put(fs, record("C-1", T1, total_charges=None, tenure="+12"))
        clock.now += 1.5
        put(fs, record("C-1", T2))
        clock.now += 1
        (file, _) = offline_files(fs)
        schema = pq.read_schema(file)
        assert schema.names == [*(f.name for f in SPEC.all_features), "write_time", "api_invocation_time",
                                "is_deleted"]
        expected = {"String": pa.string(), "Integral": pa.int64(), "Fractional": pa.float64()}
        assert all(schema.field(f.name).type == expected[f.type] for f in SPEC.all_features)
        assert schema.field("write_time").type == schema.field("api_invocation_time").type == pa.timestamp("us")
        assert schema.field("is_deleted").type == pa.bool_()
        first, second = offline_rows(fs)
    assert first["total_charges"] is None and first["tenure"] == 12 and first["monthly_charges"] == 29.85
    assert first["is_deleted"] is False and second["is_deleted"] is False
    assert first["api_invocation_time"] == datetime(2026, 1, 1, 10)  # UTC, without a zone, as in Athena
    assert second["api_invocation_time"] == datetime(2026, 1, 1, 10, 0, 1, 500_000)
    assert first["write_time"] == second["write_time"] == datetime(2026, 1, 1, 10, 0, 2, 500_000)


# -- buffering, persistence, threads and processes ------------------------------------------------------
def test_reads_see_unflushed_writes_and_flushes_bound_the_buffer(tmp_path):
    with LocalFeatureStore(tmp_path, flush_rows=10) as fs:
        create(fs)
        for i in range(25):
            put(fs, record(f"C-{i}", T1))
        files = sorted(data_dir(fs).rglob("*.parquet"))
        assert sum(pq.read_metadata(f).num_rows for f in files) == 20  # two automatic flushes
        with LocalFeatureStore(tmp_path) as other:
            assert online(other, "C-19") is not None and online(other, "C-24") is None  # not flushed yet
            assert online(fs, "C-24") is not None  # a read moves this store's online writes into SQLite first
            assert online(other, "C-24") is not None
        assert sum(pq.read_metadata(f).num_rows for f in sorted(data_dir(fs).rglob("*.parquet"))) == 20  # no file
    with LocalFeatureStore(tmp_path) as reopened:  # closing flushed the rest
        assert online(reopened, "C-24") is not None and len(offline_rows(reopened)) == 25


def test_concurrent_puts_from_threads_are_consistent(tmp_path):
    threads, per_thread, ids = 8, 400, 150
    with LocalFeatureStore(tmp_path, flush_rows=1000) as fs:  # automatic flushes during the run
        create(fs)
        errors: list[BaseException] = []

        def work(t: int) -> None:
            try:
                for i in range(per_thread):
                    n = t * per_thread + i
                    event_time = f"2026-01-01T00:{n // 60 % 60:02d}:{n % 60:02d}.{t:03d}Z"
                    if i % 2:
                        put(fs, record(f"C-{n % ids}", event_time, tenure=str(n)))
                    else:
                        fs.batch_write_record(Entries=[entry(record(f"C-{n % ids}", event_time, tenure=str(n)))])
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
        assert {k: online(fs, k)["tenure"] for k in latest} == {k: str(r["tenure"]) for k, r in latest.items()}
        newest = training_set(fs, "2999-01-01T00:00:00.000Z")  # the point-in-time SQL agrees
        assert {k: v["tenure"] for k, v in newest.items()} == {k: r["tenure"] for k, r in latest.items()}


def test_at_an_equal_event_time_the_later_call_wins_whichever_store_flushes_first(tmp_path):
    clock_a, clock_b = Clock(100.0), Clock(200.0)
    with LocalFeatureStore(tmp_path, clock=clock_a) as a, LocalFeatureStore(tmp_path, clock=clock_b) as b:
        create(a)
        put(a, record("C-1", T1, tenure="1"))  # called first
        put(b, record("C-1", T1, tenure="2"))  # called later
        b.flush()
        a.flush()
        assert online(a, "C-1")["tenure"] == online(b, "C-1")["tenure"] == "2"


WRITER = """
import sys
from churn.features import to_feature_store_record
from pipeline.local_aws.feature_store import LocalFeatureStore
from test_local_feature_store import GROUP, entry, record
root, writer = sys.argv[1], int(sys.argv[2])
with LocalFeatureStore(root, flush_rows=97) as store:  # many small transactions, interleaved
    for n in range(600):
        event_time = f"2026-01-01T00:{n // 60 % 60:02d}:{n % 60:02d}.{writer:03d}Z"
        rec = record(f"C-{n % 200}", event_time, tenure=str(writer))
        if n % 3:
            store.put_record(FeatureGroupName=GROUP, Record=to_feature_store_record(rec))
        else:
            response = store.batch_write_record(Entries=[entry(rec)])
            assert response["Errors"] == [], response
"""


def test_several_processes_write_one_root_at_once(tmp_path):
    writers = 4
    with LocalFeatureStore(tmp_path) as fs:
        create(fs)
    env = {"PYTHONPATH": f"{REPO / 'lambda'}:{REPO}:{Path(__file__).parent}"}
    processes = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(w)], env=env,
                                  stderr=subprocess.PIPE, text=True) for w in range(writers)]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    with LocalFeatureStore(tmp_path) as fs:
        assert len(offline_rows(fs)) == writers * 600
        # each id's newest event time is n = 400 + id (ms = the writer): the last writer's wins
        assert {online(fs, f"C-{i}")["tenure"] for i in range(200)} == {str(writers - 1)}
        assert online(fs, "C-7")["event_time"] == f"2026-01-01T00:06:47.{writers - 1:03d}Z"


# -- the offline store in DuckDB, and the project's SQL over it ---------------------------------------
def test_duckdb_view_has_athenas_column_types_before_and_after_data(store):
    con = offline_store(store, GROUP, "churn_db", "churn_features")
    empty = dict(con.execute('SELECT column_name, column_type FROM (DESCRIBE "churn_db"."churn_features")')
                 .fetchall())
    query = training_set_sql(TELCO, {SPEC.name: table_reference("churn_db", "churn_features")})
    assert con.execute(query.text, [T1, NO_CUTOFF]).fetchall() == []
    put(store, record("A", T1))
    filled = offline_store(store, GROUP, "churn_db", "churn_features")
    types = dict(filled.execute('SELECT column_name, column_type FROM (DESCRIBE "churn_db"."churn_features")')
                 .fetchall())
    assert types == empty
    assert [types["write_time"], types["api_invocation_time"], types["is_deleted"]] == ["TIMESTAMP", "TIMESTAMP",
                                                                                     "BOOLEAN"]
    assert [types["customer_id"], types["tenure"], types["monthly_charges"]] == ["VARCHAR", "BIGINT", "DOUBLE"]


def test_duckdb_compares_write_times_with_athenas_timestamp_parameter(tmp_path):
    clock = Clock(T1_UNIX)
    with LocalFeatureStore(tmp_path, clock=clock) as fs:
        create(fs)
        put(fs, record("A", T1))
        fs.flush()  # written at 10:00:00.000
        clock.now += 60
        put(fs, record("B", T1))
        con = offline_store(fs, GROUP, "db", "features")  # B written at 10:01:00.000
        sql = 'SELECT customer_id FROM "db"."features" WHERE write_time >= CAST(? AS TIMESTAMP) ORDER BY 1'
        assert con.execute(sql, ["2026-01-01 10:00:30.000"]).fetchall() == [("B",)]
        assert con.execute(sql, ["2026-01-01 10:00:00.000"]).fetchall() == [("A",), ("B",)]


def test_training_set_sql_point_in_time_semantics(store):
    put(store, record("reingested", T1, tenure="1", monthly_charges="10.0"))
    put(store, record("reingested", T2, tenure="2", monthly_charges="20.0"))
    put(store, record("deleted", T1, tenure="5"))
    write_deletion_marker(store, GROUP, "deleted", T2)
    put(store, record("late", T2, tenure="20"))
    put(store, record("late", T1, tenure="10"))  # arrives after the newer version
    put(store, record("future", T3, tenure="30"))
    put(store, record("missing-charges", T1, total_charges=None))

    at_t2 = training_set(store, T2)
    assert sorted(at_t2) == ["late", "missing-charges", "reingested"]
    assert list(at_t2["reingested"]) == list(TELCO.training_columns)
    assert at_t2["reingested"]["tenure"] == 2 and at_t2["reingested"]["monthly_charges"] == 20.0
    assert at_t2["late"]["tenure"] == 20 and at_t2["missing-charges"]["total_charges"] is None
    at_t1 = training_set(store, T1)  # before the re-ingest, the deletion and the future record
    assert sorted(at_t1) == ["deleted", "late", "missing-charges", "reingested"]
    assert at_t1["reingested"]["tenure"] == 1 and at_t1["deleted"]["tenure"] == 5 and at_t1["late"]["tenure"] == 10
    assert sorted(training_set(store, T3)) == ["future", "late", "missing-charges", "reingested"]
    assert training_set(store, "2025-12-31T00:00:00.000Z") == {}


def test_offline_count_sql_counts_distinct_records_of_one_event_time(store):
    for customer_id in ("A", "B", "C"):
        put(store, record(customer_id, T1))
    put(store, record("A", T1, tenure="2"))  # a retried put: same record, same event time
    put(store, record("D", T2))
    con = offline_store(store, GROUP, "churn_db", "churn_features")
    sql = offline_count_sql(SPEC, table_reference("churn_db", "churn_features")).text
    assert [con.execute(sql, [t]).fetchone() for t in (T1, T2, T3)] == [(3,), (1,), (0,)]




@pytest.mark.parametrize(("where", "named"), [(0, "the group's data folder"), (48, "the file")])
def test_a_parquet_file_damaged_past_its_footer_is_store_damaged_when_a_query_reads_it(store, where, named):
    """A page overwritten, the footer intact: the view is made, the query fails. DuckDB names the file when a page's
    content is bad, none when its header is: then the group's offline store is named."""
    for i in range(20):  # a dictionary page of 20 ids: at 48 bytes in, past its header, in its content
        put(store, record(f"C-{i}", T1))
    (path,) = offline_files(store)
    column = pq.ParquetFile(path).metadata.row_group(0).column(0)
    damaged = bytearray(path.read_bytes())
    start = (column.dictionary_page_offset or column.data_page_offset) + where
    damaged[start : start + 8] = b"\xff" * 8
    path.write_bytes(damaged)
    con = offline_store(store, GROUP, "db", "t")
    with pytest.raises(StoreDamagedError) as error, store.offline_reads([GROUP]):
        con.execute('SELECT * FROM "db"."t"').fetchall()
    expected = path if named == "the file" else data_dir(store)
    assert f"feature group '{GROUP}'" in str(error.value) and str(expected) in str(error.value)
    with pytest.raises(duckdb.BinderException), store.offline_reads([GROUP]):  # the query's own error, as it is
        con.execute('SELECT no_such_column FROM "db"."t"')


def test_an_online_store_damaged_past_its_header_is_store_damaged_when_read_or_written(tmp_path):
    """The file opens (its header is intact); a read or a flush that meets a damaged page names the file."""
    with LocalFeatureStore(tmp_path / "feature-store") as fs:
        create(fs)
        for i in range(200):
            put(fs, record(f"C-{i}", T1))
    online_file = tmp_path / "feature-store" / "online-store.sqlite"
    overwrite_page_headers(online_file)
    store = LocalFeatureStore(tmp_path / "feature-store")
    with pytest.raises(StoreDamagedError, match=f"^{online_file}: the local feature store's online store is damaged"):
        online(store, "C-7")
    put(store, record("C-7", T2))
    with pytest.raises(StoreDamagedError, match=f"^{online_file}: the local feature store's online store is damaged"):
        store.flush()
    store.close()
