"""A small HTTP server on 127.0.0.1 that speaks the Feature Store runtime's BatchWriteRecord, PutRecord
and GetRecord.

    python bench/fake_featurestore_endpoint.py --port 8999 --latency-ms 10 --spec data/churn.spec.json

Point any boto3 client at it with `endpoint_url=` or the environment variables
`AWS_ENDPOINT_URL_SAGEMAKER_FEATURESTORE_RUNTIME` (runtime) and `AWS_ENDPOINT_URL_SAGEMAKER`
(control plane: DescribeFeatureGroup is answered too, so the SageMaker SDKs' ingest methods run
against it unmodified). Any credentials are accepted; signatures are not checked.

The wire format is botocore's service model for `sagemaker-featurestore-runtime` (rest-json):
- BatchWriteRecord: `POST /BatchWriteRecord`, JSON body `{"Entries": [{"FeatureGroupName", "Record",
  "TargetStores"?, "TtlDuration"?}, ...] (1-25), "TtlDuration"?}` -> 200 `{"Errors": [{"Entry",
  "ErrorCode", "ErrorMessage"}], "UnprocessedEntries": [<entry>, ...]}` (both always present);
  fewer than 1 or more than 25 entries, or a malformed entry, is a ValidationError for the call.
- PutRecord: `PUT /FeatureGroup/<name>`, JSON body `{"Record": [{"FeatureName", "ValueAsString"}, ...],
  "TargetStores"?: [...]}` -> 200, empty body.
- GetRecord: `GET /FeatureGroup/<name>?RecordIdentifierValueAsString=<id>` -> `{"Record": [...]}`, or
  `{}` when there is no such record (as the service answers).
- Errors: status + `x-amzn-ErrorType: <Code>` + `{"__type": <Code>, "message": ...}`, which botocore
  turns into `ClientError` with that code: `ThrottlingException` (400; botocore's standard and
  adaptive retry modes retry it with backoff), `ValidationError` (400; not retried).

Every request first sleeps `latency` seconds (the network round trip being modelled), in its own
thread, so concurrent requests overlap as they do over a real network. Fault injection (seeded,
reproducible draws):
- `throttle_rate`: each PutRecord or BatchWriteRecord call is answered ThrottlingException with
  this probability (a throttled BatchWriteRecord writes none of its entries);
- `throttle_first`: the first N attempts *of each record id* are throttled, then it succeeds
  (deterministic: proves that a client retried); a BatchWriteRecord call holding such a record is
  throttled whole;
- `unprocessed_rate` / `unprocessed_first` (BatchWriteRecord): each entry is left in
  `UnprocessedEntries` with this probability / for the first N attempts of its record id;
- `reject_rate` (BatchWriteRecord): each entry is answered in `Errors` (ErrorCode
  `ValidationError`) with this probability;
- `fail_ids`: records with these ids always fail with ValidationError: the whole PutRecord, or the
  entry's `Errors` item in a BatchWriteRecord (a persistent failure).
The service model does not list the per-entry error codes; `ValidationError` (the operation's own
error for bad input) is this fake's assumption.

A write honours `TargetStores` (default: both): the online view keeps the latest record per id by
event time (an older event time never overwrites), so tests can check that re-putting a batch is
idempotent; every write, online or offline, counts towards the distinct (id, event time) pairs
written per group. `GET /_stats` returns the counters as JSON (calls, entries per call, records
written, distinct records), `POST /_reset` clears them and the records.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from botocore.session import get_session

PREFIX = "/FeatureGroup/"
BATCH_WRITE_PATH = "/BatchWriteRecord"
# BatchWriteRecordEntries' length limits, as the service's model states them (1-25 entries)
_ENTRIES = get_session().get_service_model("sagemaker-featurestore-runtime").shape_for("BatchWriteRecordEntries")
BATCH_WRITE_MIN_ENTRIES, BATCH_WRITE_MAX_ENTRIES = _ENTRIES.metadata["min"], _ENTRIES.metadata["max"]
STORES = frozenset({"OnlineStore", "OfflineStore"})
TTL_UNITS = frozenset({"Seconds", "Minutes", "Hours", "Days", "Weeks"})


class RequestInvalid(ValueError):
    """The request breaks the service model: the call is answered ValidationError."""


def feature_group_name(name_or_arn: str) -> str:
    """FeatureGroupNameOrArn: `arn:aws:sagemaker:<region>:<account>:feature-group/<name>` or the name."""
    return name_or_arn.rsplit("feature-group/", 1)[-1] if name_or_arn.startswith("arn:") else name_or_arn


def check_record(record: Any, where: str) -> list[dict[str, str]]:
    """Record: a non-empty list of FeatureValue {FeatureName, ValueAsString} (scalar features only)."""
    if not isinstance(record, list) or not record or not all(
        isinstance(i, dict) and isinstance(i.get("FeatureName"), str) and isinstance(i.get("ValueAsString"), str)
        for i in record
    ):
        raise RequestInvalid(f"{where}: Record must be a non-empty list of {{FeatureName, ValueAsString}}")
    return record


def check_stores(stores: Any, where: str) -> frozenset[str]:
    """TargetStores: 1-2 of OnlineStore, OfflineStore; absent means every store of the group."""
    if stores is None:
        return STORES
    if not isinstance(stores, list) or not 1 <= len(stores) <= 2 or not set(stores) <= STORES:
        raise RequestInvalid(f"{where}: TargetStores must be 1-2 of {sorted(STORES)}, got {stores!r}")
    return frozenset(stores)


def check_ttl(ttl: Any, where: str) -> None:
    """TtlDuration: {Unit: Seconds|Minutes|Hours|Days|Weeks, Value: integer >= 1}."""
    if ttl is None:
        return
    if not isinstance(ttl, dict) or ttl.get("Unit") not in TTL_UNITS or not isinstance(ttl.get("Value"), int) \
            or ttl["Value"] < 1:
        raise RequestInvalid(f"{where}: TtlDuration must be {{Unit: {'|'.join(sorted(TTL_UNITS))}, Value >= 1}}")


def check_batch_write(request: Any) -> list[dict[str, Any]]:
    """A BatchWriteRecord body's entries, each as the service model requires; else RequestInvalid."""
    entries = request.get("Entries") if isinstance(request, dict) else None
    if not isinstance(entries, list) or not BATCH_WRITE_MIN_ENTRIES <= len(entries) <= BATCH_WRITE_MAX_ENTRIES:
        count = len(entries) if isinstance(entries, list) else "no"
        raise RequestInvalid(f"Entries must hold {BATCH_WRITE_MIN_ENTRIES} to {BATCH_WRITE_MAX_ENTRIES} entries, "
                             f"got {count}")
    check_ttl(request.get("TtlDuration"), "request")
    for position, entry in enumerate(entries):
        where = f"Entries[{position}]"
        name = entry.get("FeatureGroupName") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise RequestInvalid(f"{where}: FeatureGroupName is required")
        check_record(entry.get("Record"), where)
        check_stores(entry.get("TargetStores"), where)
        check_ttl(entry.get("TtlDuration"), where)
    return entries


@dataclass
class Faults:
    latency: float = 0.0  # seconds slept before every answer
    throttle_rate: float = 0.0
    throttle_first: int = 0
    unprocessed_rate: float = 0.0
    unprocessed_first: int = 0
    reject_rate: float = 0.0
    fail_ids: frozenset[str] = frozenset()
    seed: int = 0


@dataclass
class Stats:
    requests: int = 0
    put_requests: int = 0
    batch_requests: int = 0
    records_written: int = 0  # successful writes (a record written twice counts twice)
    throttled: int = 0  # calls answered ThrottlingException
    failed: int = 0  # PutRecords answered ValidationError, entries answered in Errors
    unprocessed: int = 0  # entries answered in UnprocessedEntries
    in_flight: int = 0
    max_in_flight: int = 0
    connections: int = 0
    first_put: float | None = None
    last_put: float | None = None
    attempts: Counter = field(default_factory=Counter)  # (group, record id) -> write attempts
    entries_per_call: Counter = field(default_factory=Counter)  # entries -> BatchWriteRecord calls

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "put_requests": self.put_requests,
            "batch_requests": self.batch_requests,
            "write_calls": self.put_requests + self.batch_requests,
            "entries_per_call": {str(n): calls for n, calls in sorted(self.entries_per_call.items())},
            "records_written": self.records_written,
            "throttled": self.throttled,
            "failed": self.failed,
            "unprocessed": self.unprocessed,
            "max_in_flight": self.max_in_flight,
            "connections": self.connections,
            "retried_records": sum(1 for n in self.attempts.values() if n > 1),
            "put_seconds": (self.last_put - self.first_put) if self.first_put and self.last_put else 0.0,
        }


class FakeFeatureStoreServer(ThreadingHTTPServer):
    """Thread per connection (HTTP/1.1 keep-alive, as botocore's pool uses them)."""

    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int] = ("127.0.0.1", 0),
        *,
        faults: Faults | None = None,
        feature_definitions: list[dict[str, str]] | None = None,
        record_identifier: str | None = None,
        event_time: str | None = None,
        other_event_times: tuple[str, ...] = (),
        keep_records: bool = True,
    ):
        super().__init__(address, _Handler)
        self.faults = faults or Faults()
        self.feature_definitions = feature_definitions or []
        self.record_identifier = record_identifier
        self.event_time = event_time  # DescribeFeatureGroup's EventTimeFeatureName
        self.event_time_names = tuple(name for name in (event_time, *other_event_times) if name)
        self.keep_records = keep_records
        self.lock = threading.Lock()
        self.stats = Stats()
        self.records: dict[str, dict[str, tuple[str, list[dict[str, str]]]]] = {}  # the online view
        self.written: dict[str, set[tuple[str, str]]] = {}  # group -> (record id, event time) written
        self._random = random.Random(self.faults.seed)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    # -- in-process use (tests) ------------------------------------------------------------
    def start(self) -> FakeFeatureStoreServer:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeFeatureStoreServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_faults(self, faults: Faults) -> None:
        """Change the injected faults of a running server (the random stream restarts from their seed)."""
        with self.lock:
            self.faults = faults
            self._random = random.Random(faults.seed)

    def reset(self) -> None:
        with self.lock:
            self.stats = Stats()
            self.records = {}
            self.written = {}
            self._random = random.Random(self.faults.seed)

    def online_record(self, group: str, record_id: str) -> list[dict[str, str]] | None:
        with self.lock:
            entry = self.records.get(group, {}).get(record_id)
        return None if entry is None else entry[1]

    def record_count(self, group: str) -> int:
        """Records in the group's online view (one per id)."""
        with self.lock:
            return len(self.records.get(group, {}))

    def distinct_records(self, group: str | None = None) -> int:
        """Distinct (record id, event time) pairs written to any store, of one group or of all."""
        with self.lock:
            if group is not None:
                return len(self.written.get(group, ()))
            return sum(len(keys) for keys in self.written.values())

    # -- request handling ------------------------------------------------------------------
    def identifiers(self, record: list[dict[str, str]]) -> tuple[str, str]:
        """(record id, event time) of a record: the spec's names (a multi-group spec's groups share the
        id and may name their event times differently), else the first feature and no time."""
        values = {item["FeatureName"]: item.get("ValueAsString") for item in record}
        record_id = values.get(self.record_identifier or record[0]["FeatureName"]) or ""
        event_time = next((values[name] for name in self.event_time_names if values.get(name)), "")
        return record_id, event_time

    def _throttle(self, attempts: int) -> bool:
        """Whether a call is answered ThrottlingException; the caller holds the lock."""
        faults = self.faults
        return attempts <= faults.throttle_first or bool(
            faults.throttle_rate and self._random.random() < faults.throttle_rate)

    def _write(self, group: str, record: list[dict[str, str]], stores: frozenset[str], key: tuple[str, str]) -> None:
        """Write one record; the caller holds the lock."""
        stats = self.stats
        stats.records_written += 1
        now = time.perf_counter()
        stats.first_put = stats.first_put or now
        stats.last_put = now
        self.written.setdefault(group, set()).add(key)
        if self.keep_records and "OnlineStore" in stores:
            online = self.records.setdefault(group, {})
            record_id, event_time = key
            current = online.get(record_id)
            if current is None or event_time >= current[0]:
                online[record_id] = (event_time, record)

    def put(self, group: str, record: list[dict[str, str]], stores: frozenset[str] = STORES,
            ) -> tuple[int, str, str] | None:
        """PutRecord: None when written, else (status, error code, message)."""
        key = self.identifiers(record)
        with self.lock:
            stats = self.stats
            stats.put_requests += 1
            stats.attempts[(group, key[0])] += 1
            if key[0] in self.faults.fail_ids:
                stats.failed += 1
                return 400, "ValidationError", f"record {key[0]!r} is rejected (injected persistent failure)"
            if self._throttle(stats.attempts[(group, key[0])]):
                stats.throttled += 1
                return 400, "ThrottlingException", "Rate exceeded"
            self._write(group, record, stores, key)
        return None

    def batch_write(self, entries: list[dict[str, Any]]) -> tuple[int, str, str] | dict[str, list[Any]]:
        """BatchWriteRecord on valid entries: the response body, or (status, error code, message)."""
        keyed = [(feature_group_name(entry["FeatureGroupName"]), self.identifiers(entry["Record"]), entry)
                 for entry in entries]
        errors: list[dict[str, Any]] = []
        unprocessed: list[dict[str, Any]] = []
        with self.lock:
            stats, faults = self.stats, self.faults
            stats.batch_requests += 1
            stats.entries_per_call[len(entries)] += 1
            attempts = []
            for group, key, _ in keyed:
                stats.attempts[(group, key[0])] += 1
                attempts.append(stats.attempts[(group, key[0])])
            if self._throttle(min(attempts)):
                stats.throttled += 1
                return 400, "ThrottlingException", "Rate exceeded"
            for (group, key, entry), attempt in zip(keyed, attempts, strict=True):
                if key[0] in faults.fail_ids or (faults.reject_rate and self._random.random() < faults.reject_rate):
                    errors.append({"Entry": entry, "ErrorCode": "ValidationError",
                                   "ErrorMessage": f"record {key[0]!r} is rejected (injected failure)"})
                elif attempt <= faults.unprocessed_first or (
                        faults.unprocessed_rate and self._random.random() < faults.unprocessed_rate):
                    unprocessed.append(entry)
                else:
                    self._write(group, entry["Record"], frozenset(entry.get("TargetStores") or STORES), key)
            stats.failed += len(errors)
            stats.unprocessed += len(unprocessed)
        return {"Errors": errors, "UnprocessedEntries": unprocessed}

    def describe(self, name: str) -> dict[str, Any]:
        return {
            "FeatureGroupName": name,
            "FeatureGroupArn": f"arn:aws:sagemaker:us-east-1:000000000000:feature-group/{name.lower()}",
            "RecordIdentifierFeatureName": self.record_identifier or "",
            "EventTimeFeatureName": self.event_time or "",
            "FeatureDefinitions": self.feature_definitions,
            "CreationTime": 0,
            "OnlineStoreConfig": {"EnableOnlineStore": True},
            "FeatureGroupStatus": "Created",
        }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: FakeFeatureStoreServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def setup(self) -> None:
        super().setup()
        # The headers and the body go out in two writes: without TCP_NODELAY, Nagle holds the body
        # until the client's delayed ACK (~40 ms on Linux), which no real service adds to a call.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.lock:
            self.server.stats.connections += 1

    def _begin(self) -> None:
        server = self.server
        with server.lock:
            server.stats.requests += 1
            server.stats.in_flight += 1
            server.stats.max_in_flight = max(server.stats.max_in_flight, server.stats.in_flight)
        if server.faults.latency:
            time.sleep(server.faults.latency)

    def _end(self) -> None:
        with self.server.lock:
            self.server.stats.in_flight -= 1

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload: dict[str, Any] | None = None, error: str | None = None) -> None:
        body = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")
        if error:
            self.send_header("x-amzn-ErrorType", error)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str) -> None:
        self._send(status, {"__type": code, "message": message}, error=code)

    def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
        body = self._body()
        self._begin()
        try:
            path = urlsplit(self.path).path
            if not path.startswith(PREFIX):
                return self._error(404, "UnknownOperationException", f"no operation at {self.path}")
            group = feature_group_name(unquote(path[len(PREFIX):]))
            try:
                request = json.loads(body)
                record = check_record(request.get("Record"), "PutRecord")
                stores = check_stores(request.get("TargetStores"), "PutRecord")
                check_ttl(request.get("TtlDuration"), "PutRecord")
            except (ValueError, AttributeError) as exc:  # RequestInvalid and JSONDecodeError are ValueErrors
                return self._error(400, "ValidationError", f"invalid PutRecord request: {exc}")
            outcome = self.server.put(group, record, stores)
            if outcome is None:
                return self._send(HTTPStatus.OK)
            return self._error(*outcome)
        finally:
            self._end()

    def _batch_write(self, body: bytes) -> None:
        self._begin()
        try:
            try:
                entries = check_batch_write(json.loads(body))
            except ValueError as exc:
                return self._error(400, "ValidationError", f"invalid BatchWriteRecord request: {exc}")
            outcome = self.server.batch_write(entries)
            if isinstance(outcome, dict):
                return self._send(HTTPStatus.OK, outcome)
            return self._error(*outcome)
        finally:
            self._end()

    def do_GET(self) -> None:  # noqa: N802
        self._begin()
        try:
            parts = urlsplit(self.path)
            if parts.path == "/_stats":
                with self.server.lock:
                    stats = self.server.stats.to_dict()
                    stats["distinct_records"] = sum(len(keys) for keys in self.server.written.values())
                    stats["online_records"] = sum(len(group) for group in self.server.records.values())
                return self._send(200, stats)
            if not parts.path.startswith(PREFIX):
                return self._error(404, "UnknownOperationException", f"no operation at {self.path}")
            group = unquote(parts.path[len(PREFIX):])
            record_id = parse_qs(parts.query).get("RecordIdentifierValueAsString", [""])[0]
            record = self.server.online_record(group, record_id)
            return self._send(200, {} if record is None else {"Record": record})
        finally:
            self._end()

    def do_POST(self) -> None:  # noqa: N802
        body = self._body()
        if self.path == "/_reset":
            self.server.reset()
            return self._send(200, {})
        if urlsplit(self.path).path == BATCH_WRITE_PATH:
            return self._batch_write(body)
        target = self.headers.get("X-Amz-Target", "")
        if target == "SageMaker.DescribeFeatureGroup":  # control plane (awsJson1_1 on POST /)
            name = json.loads(body or b"{}").get("FeatureGroupName", "")
            return self._send(200, self.server.describe(name))
        return self._error(400, "UnknownOperationException", f"unsupported operation {target or self.path!r}")


def feature_store_server(
    *,
    latency_ms: float = 0.0,
    throttle_rate: float = 0.0,
    throttle_first: int = 0,
    unprocessed_rate: float = 0.0,
    unprocessed_first: int = 0,
    reject_rate: float = 0.0,
    fail_ids: Iterable[str] = (),
    spec_path: str | Path | None = None,
    port: int = 0,
    seed: int = 0,
    keep_records: bool = True,
) -> FakeFeatureStoreServer:
    """A server on 127.0.0.1:`port` (0: any free port); `.start()` it in a thread, or serve_forever()."""
    definitions: list[dict[str, str]] = []
    record_identifier = event_time = None
    other_event_times: tuple[str, ...] = ()
    if spec_path is not None:
        spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
        if "feature_groups" in spec:  # several groups: ids and event times only (Describe is single-group)
            groups = [*spec["feature_groups"], spec["labels"]]
            record_identifier = groups[0]["record_identifier"]["name"]
            event_time, *rest = dict.fromkeys(group["event_time"]["name"] for group in groups)
            other_event_times = tuple(rest)
        else:
            features = [spec["record_identifier"], spec["event_time"], *spec["features"], spec["label"]]
            definitions = [{"FeatureName": f["name"], "FeatureType": f["type"]} for f in features]
            record_identifier, event_time = spec["record_identifier"]["name"], spec["event_time"]["name"]
    faults = Faults(latency=latency_ms / 1000.0, throttle_rate=throttle_rate, throttle_first=throttle_first,
                    unprocessed_rate=unprocessed_rate, unprocessed_first=unprocessed_first, reject_rate=reject_rate,
                    fail_ids=frozenset(fail_ids), seed=seed)
    return FakeFeatureStoreServer(("127.0.0.1", port), faults=faults, feature_definitions=definitions,
                                  record_identifier=record_identifier, event_time=event_time,
                                  other_event_times=other_event_times, keep_records=keep_records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed on stdout)")
    parser.add_argument("--latency-ms", type=float, default=10.0)
    parser.add_argument("--throttle-rate", type=float, default=0.0)
    parser.add_argument("--throttle-first", type=int, default=0)
    parser.add_argument("--unprocessed-rate", type=float, default=0.0, help="BatchWriteRecord entries left unprocessed")
    parser.add_argument("--reject-rate", type=float, default=0.0, help="BatchWriteRecord entries answered in Errors")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault draws")
    parser.add_argument("--spec", default=None, help="feature spec JSON (for DescribeFeatureGroup and record ids)")
    parser.add_argument("--no-keep-records", action="store_true", help="count records without keeping them")
    args = parser.parse_args(argv)
    server = feature_store_server(latency_ms=args.latency_ms, throttle_rate=args.throttle_rate,
                                  throttle_first=args.throttle_first, unprocessed_rate=args.unprocessed_rate,
                                  reject_rate=args.reject_rate, spec_path=args.spec, port=args.port, seed=args.seed,
                                  keep_records=not args.no_keep_records)
    print(server.url, flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
