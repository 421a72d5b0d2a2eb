"""Ingest one batch of raw rows into a feature group with BatchWriteRecord, 25 records a call.

`client` is anything with the Feature Store runtime's `batch_write_record(Entries=...)`: the boto3
`sagemaker-featurestore-runtime` client on AWS, the local feature store locally. Calls run in
parallel on the one client; the entries the service leaves unprocessed are sent again together
after a backoff; every entry it rejects (`Errors`) is reported as a failed record with its file line.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.session import get_session

from churn.features import RowError, to_feature_store_record, to_record
from churn.schema import FeatureGroupSpec

# BatchWriteRecord takes 1-25 entries a call: the limits as the service's model states them
_ENTRIES = get_session().get_service_model("sagemaker-featurestore-runtime").shape_for("BatchWriteRecordEntries")
BATCH_WRITE_MIN_ENTRIES, BATCH_WRITE_MAX_ENTRIES = _ENTRIES.metadata["min"], _ENTRIES.metadata["max"]
ONLINE_AND_OFFLINE = ["OnlineStore", "OfflineStore"]
OFFLINE_ONLY = ["OfflineStore"]
REPORTED_FAILURES = 100  # a batch's result lists the first ones (its output must stay small); the count is exact


class IngestError(RuntimeError):
    """Records could not be written; the message names them (file line, record id, error)."""


@dataclass(frozen=True)
class Backoff:
    """How unprocessed entries are sent again: exponential, full jitter, a bounded number of attempts."""

    attempts: int = 6
    base_seconds: float = 0.2
    max_seconds: float = 5.0
    sleep: Callable[[float], None] = time.sleep

    def wait(self, attempt: int) -> None:
        self.sleep(random.uniform(0, min(self.max_seconds, self.base_seconds * 2**attempt)))  # noqa: S311


@dataclass
class BatchResult:
    ingested: int = 0
    failed_count: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)  # line, record_id, error_code, message
    calls: int = 0
    listed: int | None = REPORTED_FAILURES  # how many failures `failed` keeps (None: all)

    def fail(self, line: int | None, record_id: str, error_code: str, message: str) -> None:
        self.failed_count += 1
        if self.listed is None or len(self.failed) < self.listed:
            self.failed.append({"line": line, "record_id": record_id, "error_code": error_code, "message": message})

    def add(self, other: dict[str, Any]) -> None:
        """Count another batch's result (`to_dict()` of it) in."""
        self.ingested += other["ingested"]
        self.calls += other.get("calls", 0)
        for failure in other["failed"]:
            self.fail(**failure)
        self.failed_count += other["failed_count"] - len(other["failed"])

    def to_dict(self) -> dict[str, Any]:
        return {"ingested": self.ingested, "failed_count": self.failed_count, "failed": self.failed,
                "calls": self.calls}


def target_stores(records: list[dict[str, str]], group: FeatureGroupSpec) -> list[list[str]]:
    """Where each record goes: history to the offline store only; each entity's latest version in the
    batch to the online store too (which keeps the newest by event time, so a version another batch
    wrote online never loses to an older one)."""
    if not group.online:
        return [OFFLINE_ONLY] * len(records)
    id_name, time_name = group.record_identifier.name, group.event_time.name
    latest: dict[str, int] = {}
    for position, record in enumerate(records):
        current = latest.get(record[id_name])
        if current is None or record[time_name] >= records[current][time_name]:
            latest[record[id_name]] = position
    online = set(latest.values())
    return [ONLINE_AND_OFFLINE if position in online else OFFLINE_ONLY for position in range(len(records))]


def _error_code(exc: Exception) -> tuple[str, str]:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        error = response["Error"]
        return str(error.get("Code", type(exc).__name__)), str(error.get("Message", ""))
    return type(exc).__name__, str(exc)


class _Writer:
    """BatchWriteRecord calls of up to 25 entries, in parallel; what they leave unprocessed is sent again,
    all together and in calls of 25 again, after a backoff. A call's entries are made just before it:
    a whole batch's Record lists at once would be thousands of objects alive together, which makes
    Python's garbage collector run and scan far more often (it dominated the local ingest's time)."""

    def __init__(self, client: Any, group: FeatureGroupSpec, feature_group_name: str,
                 lines: dict[tuple[str, str], int], result: BatchResult):
        self.client, self.feature_group_name, self.lines, self.result = client, feature_group_name, lines, result
        self.id_name, self.time_name = group.record_identifier.name, group.event_time.name

    def fail(self, entry: Mapping[str, Any], code: str, message: str) -> None:
        values = {item["FeatureName"]: item.get("ValueAsString") for item in entry["Record"]}
        key = (values.get(self.id_name, ""), values.get(self.time_name, ""))
        self.result.fail(self.lines.get(key), key[0], code, message)

    def entries(self, records: list[tuple[dict[str, str], list[str]]]) -> list[dict[str, Any]]:
        return [{"FeatureGroupName": self.feature_group_name, "Record": to_feature_store_record(record),
                 "TargetStores": stores} for record, stores in records]

    def call(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One call; returns the entries left unprocessed."""
        try:
            response = self.client.batch_write_record(Entries=entries)
        except Exception as exc:  # noqa: BLE001 - the client retried throttling already; report every entry
            code, message = _error_code(exc)
            for entry in entries:
                self.fail(entry, code, message)
            return []
        errors, unprocessed = response.get("Errors", []), response.get("UnprocessedEntries", [])
        for error in errors:
            self.fail(error["Entry"], error.get("ErrorCode", ""), error.get("ErrorMessage", ""))
        self.result.ingested += len(entries) - len(errors) - len(unprocessed)
        return unprocessed

    def write(self, records: list[tuple[dict[str, str], list[str]]], run: Callable[..., Iterable[Any]],
              backoff: Backoff) -> None:
        """(record, its target stores) in calls of 25; `run` maps the calls: a thread pool's `map`, or the
        builtin `map` for one call at a time."""
        pending: list[Any] = records
        send = lambda part: self.call(self.entries(part))  # noqa: E731 - the first round's entries are made here
        for attempt in range(backoff.attempts):
            if attempt:
                backoff.wait(attempt)
            calls = [pending[i:i + BATCH_WRITE_MAX_ENTRIES] for i in range(0, len(pending), BATCH_WRITE_MAX_ENTRIES)]
            self.result.calls += len(calls)
            pending = [entry for unprocessed in run(send, calls) for entry in unprocessed]
            if not pending:
                return
            send = self.call
        for entry in pending:
            self.fail(entry, "Unprocessed", f"still unprocessed after {backoff.attempts} attempts")


def ingest_batch(
    rows: Iterable[tuple[int, Mapping[str, str | None]]],
    *,
    group: FeatureGroupSpec,
    feature_group_name: str,
    event_time: str,
    client: Any,
    max_workers: int = 8,
    backoff: Backoff = Backoff(),  # noqa: B008 - immutable
) -> BatchResult:
    """Convert each (file line, row) and write the records. A record that fails is reported by line and
    id, never silently dropped.

    Re-running the same rows with the same event time writes identical records, so a retried batch
    converges (the online store keeps one record per id, the training-set SQL one version).
    """
    result = BatchResult()
    records: list[dict[str, str]] = []
    lines: dict[tuple[str, str], int] = {}
    id_source = group.record_identifier.source_column
    for line, row in rows:
        try:
            record = to_record(row, group, event_time)
        except RowError as exc:
            result.fail(line, str(row.get(id_source) or ""), "InvalidValue", str(exc))
            continue
        records.append(record)
        lines[(record[group.record_identifier.name], record[group.event_time.name])] = line
    writer = _Writer(client, group, feature_group_name, lines, result)
    targeted = list(zip(records, target_stores(records, group), strict=True))
    if max_workers <= 1:  # the local mode's worker processes: a thread would only add GIL hand-offs
        writer.write(targeted, map, backoff)
    else:
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            writer.write(targeted, pool.map, backoff)
    return result


def describe_failures(failed: list[dict[str, Any]], total: int, shown: int = 5) -> str:
    """`N records failed: line 12 0001-ABC (ValidationError: ...), ...` for an error message."""
    listed = ", ".join(f"line {f['line']} {f['record_id']} ({f['error_code']}: {f['message']})" for f in failed[:shown])
    more = f" and {total - shown} more" if total > shown else ""
    return f"{total} record(s) failed: {listed}{more}"
