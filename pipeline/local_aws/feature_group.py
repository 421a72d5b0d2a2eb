"""A feature group as Feature Store defines it: its names, and Records made rows.

Shared by the local feature store's online and offline stores: `FeatureGroup.row` validates a
PutRecord `Record` as the service does (a ValidationError naming record, feature and value) and
returns the flat tuple both stores keep, `ROW_*` below.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from botocore.exceptions import ClientError

from churn.features import INTEGRAL_MAX, INTEGRAL_MIN
from churn.schema import API_INVOCATION_TIME, IS_DELETED, MAX_NAME_LENGTH, MAX_TTL_SECONDS, TTL_UNIT_SECONDS, WRITE_TIME

ONLINE_STORE, OFFLINE_STORE = "OnlineStore", "OfflineStore"
_NAME_RE = re.compile(r"^[a-zA-Z0-9]([-_]*[a-zA-Z0-9]){0,63}$")  # FeatureGroupName and FeatureName
NAME_RULE = f"match {_NAME_RE.pattern} and be at most {MAX_NAME_LENGTH} characters"
# The two String event time forms CreateFeatureGroup documents.
_EVENT_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$")
_INTEGRAL_RE = re.compile(r"^[+-]?[0-9]+$")
_FRACTIONAL_RE = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$")
_TEXT = frozenset({str, type(None)})
TIMESTAMP = pa.timestamp("us")  # write_time, api_invocation_time: UTC without a zone, as Athena types them
_ARROW_TYPES = {"String": pa.string(), "Integral": pa.int64(), "Fractional": pa.float64()}
_EXTRA_FIELDS = [pa.field(WRITE_TIME, TIMESTAMP), pa.field(API_INVOCATION_TIME, TIMESTAMP),
                 pa.field(IS_DELETED, pa.bool_())]
# A write, as buffered and as stored online (one flat tuple, so neither needs reshaping):
# (record id, event seconds, is_deleted, expires µs or None, *feature values as text, API call µs).
ROW_KEY, ROW_EVENT, ROW_DELETED, ROW_EXPIRES, ROW_CALL = 0, 1, 2, 3, -1
ROW_VALUES = slice(4, -1)
# The latest ExpiresAt GetRecord can write (as an ISO-8601 time), in µs.
_LATEST_EXPIRY_US = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()) * 1_000_000


def client_error(code: str, message: str, operation: str, status: int = 400) -> ClientError:
    """A ClientError shaped like the one boto3 raises for a service error response."""
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
    )


# The runtime's model names its validation error ValidationError; the control plane's is ValidationException.
RUNTIME_OPERATIONS = frozenset({"PutRecord", "BatchWriteRecord", "GetRecord"})


def invalid(message: str, operation: str) -> ClientError:
    code = "ValidationError" if operation in RUNTIME_OPERATIONS else "ValidationException"
    return client_error(code, message, operation)


def ttl_us(ttl: Any, operation: str) -> int | None:
    """A TtlDuration in µs (None stays None), or a ValidationException (ValidationError at the runtime)."""
    if ttl is None:
        return None
    unit, value = (ttl.get("Unit"), ttl.get("Value")) if isinstance(ttl, dict) else (None, None)
    if unit not in TTL_UNIT_SECONDS or type(value) is not int or value < 1:
        raise invalid(f"TtlDuration {ttl!r} must be {{'Unit': one of {list(TTL_UNIT_SECONDS)}, 'Value': >= 1}}",
                      operation)
    seconds = value * TTL_UNIT_SECONDS[unit]
    if seconds > MAX_TTL_SECONDS:  # the service has no bound; here ExpiresAt must stay a timestamp
        raise invalid(f"TtlDuration {ttl!r} is longer than this local store keeps: at most "
                      f"{MAX_TTL_SECONDS // TTL_UNIT_SECONDS[unit]:,} {unit}", operation)
    return seconds * 1_000_000


def _is_int64(text: str) -> bool:
    return bool(_INTEGRAL_RE.match(text)) and (len(text) < 19 or INTEGRAL_MIN <= int(text) <= INTEGRAL_MAX)


def is_name(value: Any) -> bool:
    """A FeatureGroupName or FeatureName the service accepts: the pattern allows more than its length."""
    return isinstance(value, str) and len(value) <= MAX_NAME_LENGTH and bool(_NAME_RE.match(value))


class FeatureGroup:
    """One feature group: its definition, record parsing, and this store's unflushed writes."""

    def __init__(self, description: dict[str, Any], root: Path):
        self.description = description
        self.name: str = description["FeatureGroupName"]
        types = {d["FeatureName"]: d["FeatureType"] for d in description["FeatureDefinitions"]}
        self.columns = list(types)
        self.index = {name: i for i, name in enumerate(self.columns)}
        self.id_name, self.event_name = description["RecordIdentifierFeatureName"], description["EventTimeFeatureName"]
        self.id_index, self.event_index = self.columns.index(self.id_name), self.columns.index(self.event_name)
        self.id_integral = types[self.id_name] == "Integral"
        self.event_fractional = types[self.event_name] == "Fractional"
        keys = (self.id_name, self.event_name)
        self.integral = [i for i, (n, t) in enumerate(types.items()) if t == "Integral" and n not in keys]
        self.fractional = [i for i, (n, t) in enumerate(types.items()) if t == "Fractional" and n not in keys]
        online = description.get("OnlineStoreConfig") or {}
        self.online = bool(online.get("EnableOnlineStore"))
        self.offline = description.get("OfflineStoreConfig") is not None
        self.ttl_us = ttl_us(online.get("TtlDuration"), "CreateFeatureGroup")
        self.schema = pa.schema([pa.field(n, _ARROW_TYPES[t]) for n, t in types.items()] + _EXTRA_FIELDS)
        self.data_dir = root / description["offline_dir"] / "data"
        # This store's unflushed writes. Online: one list in call order, not a list per record id,
        # so a write keeps no container of its own (every container kept makes each garbage
        # collection longer). Offline: by event-time partition.
        self.pending: list[tuple] = []
        self.buffer: defaultdict[str, list[tuple]] = defaultdict(list)
        self._event_times: dict[str, tuple[float, str]] = {}  # event time text -> (seconds, partition)

    def targets(self, stores: Any, operation: str) -> tuple[bool, bool]:
        """(online, offline) a write reaches: TargetStores, by default every store the group has."""
        if stores is None:
            return self.online, self.offline
        if not isinstance(stores, list | tuple) or not stores or not set(stores) <= {ONLINE_STORE, OFFLINE_STORE}:
            raise invalid(f"TargetStores {stores!r} must be a non-empty list of {ONLINE_STORE}, {OFFLINE_STORE}",
                          operation)
        for store, present in ((ONLINE_STORE, self.online), (OFFLINE_STORE, self.offline)):
            if store in stores and not present:
                raise invalid(f"feature group '{self.name}' has no {store}", operation)
        return ONLINE_STORE in stores, OFFLINE_STORE in stores

    def record_id(self, value: Any, operation: str) -> str:
        if value is None:
            raise invalid(f"feature group '{self.name}': the record identifier '{self.id_name}' is missing", operation)
        if not isinstance(value, str) or not value or (self.id_integral and not _is_int64(value)):
            kind = "an Integral" if self.id_integral else "a non-empty string"
            raise invalid(f"feature group '{self.name}': record identifier '{self.id_name}' has value {value!r}, "
                          f"which is not {kind}", operation)
        return str(int(value)) if self.id_integral else value

    def event_time(self, value: Any, key: str, operation: str) -> tuple[float, str]:
        """(unix seconds, partition) of an event time, or the operation's validation error (`invalid`)."""
        parsed = self._event_times.get(value) if isinstance(value, str) else None
        if parsed is not None:
            return parsed
        try:
            if self.event_fractional:
                seconds = float(value) if _FRACTIONAL_RE.match(value) else math.nan
                moment = datetime.fromtimestamp(seconds, UTC)  # ValueError for nan, OverflowError
            else:
                if not _EVENT_TIME_RE.match(value):
                    raise ValueError
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
                seconds = moment.timestamp()
        except (TypeError, ValueError, OverflowError, OSError):
            form = "unix seconds" if self.event_fractional else "yyyy-MM-ddTHH:mm:ssZ or yyyy-MM-ddTHH:mm:ss.SSSZ"
            where = f"Record {key!r} (feature group '{self.name}'): event time feature '{self.event_name}'"
            if value is None:
                raise invalid(f"{where} is missing", operation) from None
            raise invalid(f"{where} has value {value!r}, which is not a valid time in the form {form}",
                          operation) from None
        parsed = seconds, f"year={moment:%Y}/month={moment:%m}/day={moment:%d}/hour={moment:%H}"
        if len(self._event_times) < 4096:  # a run writes one or a few event times
            self._event_times[value] = parsed
        return parsed

    def values(self, record: Any, operation: str) -> list[str | None]:
        """A Record's values in column order (None where left out), or the operation's validation error (`invalid`)."""
        texts: list[Any] = [None] * len(self.columns)
        index = self.index
        try:
            for item in record:
                texts[index[item["FeatureName"]]] = item["ValueAsString"]
            # a feature given twice, or a None value, leaves one None too many
            complete = len(record) + texts.count(None) == len(texts) and _TEXT.issuperset(map(type, texts))
        except (TypeError, KeyError):
            complete = False
        if not complete:
            raise self._explain(record, operation)
        integral, fractional = _INTEGRAL_RE.match, _FRACTIONAL_RE.match
        for i in self.integral:  # inline, not _is_int64: this loop runs for every value of every record
            text = texts[i]
            if text is not None and (not integral(text) or (len(text) > 18 and not _is_int64(text))):
                raise self._bad_number(texts, i, "Integral (64-bit)", operation)
        for i in self.fractional:  # "1e999" matches, but is not finite
            text = texts[i]
            if text is not None and (not fractional(text) or not math.isfinite(float(text))):
                raise self._bad_number(texts, i, "Fractional (finite)", operation)
        return texts

    def _where(self, raw_id: Any) -> str:
        return f"Record {raw_id!r} (feature group '{self.name}')" if raw_id else f"Record <missing id> ({self.name})"

    def _bad_number(self, texts: list[Any], i: int, kind: str, operation: str) -> ClientError:
        return invalid(f"{self._where(texts[self.id_index])}: feature '{self.columns[i]}' has value {texts[i]!r}, "
                       f"which is not a valid {kind}", operation)

    def _explain(self, record: Any, operation: str) -> ClientError:
        """Why `values` refused a record: its shape, an unknown feature, one given twice, or a value."""
        try:
            items = [(item["FeatureName"], item["ValueAsString"]) for item in record]
            given = dict(items)
        except (TypeError, KeyError):
            return invalid(f"feature group '{self.name}': Record must be a list of {{FeatureName, "
                           f"ValueAsString}}, got {record!r}", operation)
        where = self._where(given.get(self.id_name))
        unknown = [(name, value) for name, value in items if name not in self.index]
        if unknown:
            return invalid(f"{where}: feature {unknown[0][0]!r} (value {unknown[0][1]!r}) is not defined", operation)
        if len(given) != len(items):
            return invalid(f"{where}: a feature appears more than once", operation)
        return invalid(f"{where}: every ValueAsString must be a string", operation)

    def row(self, record: Any, ttl: int | None, operation: str) -> tuple[tuple, str]:
        """(row without its call time, partition) of a PutRecord Record; `ttl` in µs or None."""
        texts = self.values(record, operation)
        key = texts[self.id_index]
        if self.id_integral or not key:  # a String identifier is any non-empty string, already checked a str
            key = self.record_id(key, operation)
        seconds, partition = self.event_time(texts[self.event_index], key, operation)
        expires = None if ttl is None else round(seconds * 1e6) + ttl
        if expires is not None and expires > _LATEST_EXPIRY_US:
            raise invalid(f"Record {key!r} (feature group '{self.name}'): event time {texts[self.event_index]!r} "
                          "plus its TtlDuration is after 9999-12-31, the latest ExpiresAt", operation)
        return (key, seconds, 0, expires, *texts), partition
