"""Ingest one batch of raw rows into a feature group with concurrent PutRecord calls.

`client` is anything with the Feature Store runtime's `put_record(FeatureGroupName=, Record=)`:
the boto3 `sagemaker-featurestore-runtime` client on AWS, the local feature store locally.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from churn.features import RowError, to_feature_store_record, to_record
from churn.schema import FeatureSpec


class FeatureStoreRuntime(Protocol):
    def put_record(self, *, FeatureGroupName: str, Record: list[dict[str, str]]) -> Any: ...


# The ingest Lambda logs each failed batch under this message, with every failed record
# (`failed_records`: record id and error) and their count (`failed_count`); the operator CLI finds
# them in the function's log group when a run fails at "Ingest features".
FAILED_BATCH_LOG_MESSAGE = "ingest batch had failed records"


class IngestError(RuntimeError):
    """Some records of a batch could not be written; the others were."""


@dataclass
class BatchResult:
    ingested: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"ingested": self.ingested, "failed_count": len(self.failed), "failed": self.failed}


def _error_text(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        error = response["Error"]
        return f"{error.get('Code', type(exc).__name__)}: {error.get('Message', '')}"
    return f"{type(exc).__name__}: {exc}"


def ingest_batch(
    rows: Iterable[Mapping[str, str | None]],
    *,
    spec: FeatureSpec,
    feature_group_name: str,
    event_time: str,
    client: FeatureStoreRuntime,
    max_workers: int = 8,
) -> BatchResult:
    """Convert each row and put it. A row that fails is reported by id, never silently dropped.

    Re-running the same rows with the same event time writes identical records, so a retried
    batch converges (the online store keeps one record per id, the training-set SQL one version).
    """
    result = BatchResult()
    records: list[dict[str, str]] = []
    id_name = spec.record_identifier.name
    for position, row in enumerate(rows):
        try:
            records.append(to_record(row, spec, event_time))
        except RowError as exc:
            raw_id = row.get(spec.record_identifier.source_column) or f"<item {position}>"
            result.failed.append({"record_id": str(raw_id), "error": str(exc)})

    def put(record: dict[str, str]) -> tuple[str, Exception | None]:
        try:
            client.put_record(FeatureGroupName=feature_group_name, Record=to_feature_store_record(record))
            return record[id_name], None
        except Exception as exc:  # noqa: BLE001 - every failure is reported per record
            return record[id_name], exc

    if max_workers <= 1 or len(records) <= 1:
        outcomes = [put(r) for r in records]
    else:
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            outcomes = list(pool.map(put, records))
    for record_id, exc in outcomes:
        if exc is None:
            result.ingested += 1
        else:
            result.failed.append({"record_id": record_id, "error": _error_text(exc)})
    return result
