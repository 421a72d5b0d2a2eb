"""A small HTTP server on 127.0.0.1 that speaks the Feature Store runtime's PutRecord (and GetRecord).

    python bench/fake_featurestore_endpoint.py --port 8999 --latency-ms 10 --spec data/churn.spec.json

Point any boto3 client at it with `endpoint_url=` or the environment variables
`AWS_ENDPOINT_URL_SAGEMAKER_FEATURESTORE_RUNTIME` (runtime) and `AWS_ENDPOINT_URL_SAGEMAKER`
(control plane: DescribeFeatureGroup is answered too, so the SageMaker SDK's `FeatureGroup.ingest`
runs against it unmodified). Any credentials are accepted; signatures are not checked.

The wire format is botocore's service model for `sagemaker-featurestore-runtime` (rest-json):
- PutRecord: `PUT /FeatureGroup/<name>`, JSON body `{"Record": [{"FeatureName", "ValueAsString"}, ...],
  "TargetStores"?: [...]}` -> 200, empty body.
- GetRecord: `GET /FeatureGroup/<name>?RecordIdentifierValueAsString=<id>` -> `{"Record": [...]}`, or
  `{}` when there is no such record (as the service answers).
- Errors: status + `x-amzn-ErrorType: <Code>` + `{"__type": <Code>, "message": ...}`, which botocore
  turns into `ClientError` with that code: `ThrottlingException` (400; botocore's standard and
  adaptive retry modes retry it with backoff), `ValidationError` (400; not retried).

Every request first sleeps `latency` seconds (the network round trip being modelled), in its own
thread, so concurrent requests overlap as they do over a real network. Fault injection:
- `throttle_rate`: each PutRecord is answered ThrottlingException with this probability
  (seeded, reproducible);
- `throttle_first`: the first N PutRecord attempts *of each record id* are throttled, then it
  succeeds (deterministic: proves that a client retried);
- `fail_ids`: PutRecords of these record ids always fail with ValidationError (a persistent failure).

The online view keeps the latest record per id by event time (an older event time never
overwrites), so tests can check that re-putting a batch is idempotent. `GET /_stats` returns the
counters as JSON, `POST /_reset` clears them and the records.
"""

from __future__ import annotations

import argparse
import json
import random
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

PREFIX = "/FeatureGroup/"


@dataclass
class Faults:
    latency: float = 0.0  # seconds slept before every answer
    throttle_rate: float = 0.0
    throttle_first: int = 0
    fail_ids: frozenset[str] = frozenset()
    seed: int = 0


@dataclass
class Stats:
    requests: int = 0
    put_requests: int = 0
    records_written: int = 0
    throttled: int = 0
    failed: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    connections: int = 0
    first_put: float | None = None
    last_put: float | None = None
    attempts: Counter = field(default_factory=Counter)  # (group, record id) -> PutRecord attempts

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "put_requests": self.put_requests,
            "records_written": self.records_written,
            "throttled": self.throttled,
            "failed": self.failed,
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
        keep_records: bool = True,
    ):
        super().__init__(address, _Handler)
        self.faults = faults or Faults()
        self.feature_definitions = feature_definitions or []
        self.record_identifier = record_identifier
        self.event_time = event_time
        self.keep_records = keep_records
        self.lock = threading.Lock()
        self.stats = Stats()
        self.records: dict[str, dict[str, tuple[str, list[dict[str, str]]]]] = {}
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
            self._random = random.Random(self.faults.seed)

    def online_record(self, group: str, record_id: str) -> list[dict[str, str]] | None:
        with self.lock:
            entry = self.records.get(group, {}).get(record_id)
        return None if entry is None else entry[1]

    def record_count(self, group: str) -> int:
        with self.lock:
            return len(self.records.get(group, {}))

    # -- request handling ------------------------------------------------------------------
    def identifiers(self, record: list[dict[str, str]]) -> tuple[str, str]:
        values = {item["FeatureName"]: item["ValueAsString"] for item in record}
        id_name = self.record_identifier or record[0]["FeatureName"]
        event_name = self.event_time or ""
        return values.get(id_name, ""), values.get(event_name, "")

    def put(self, group: str, record: list[dict[str, str]]) -> tuple[int, str, str] | None:
        """None when written, else (status, error code, message)."""
        record_id, event_time = self.identifiers(record)
        faults = self.faults
        with self.lock:
            stats = self.stats
            stats.put_requests += 1
            key = (group, record_id)
            stats.attempts[key] += 1
            if record_id in faults.fail_ids:
                stats.failed += 1
                return 400, "ValidationError", f"record {record_id!r} is rejected (injected persistent failure)"
            if stats.attempts[key] <= faults.throttle_first or (
                faults.throttle_rate and self._random.random() < faults.throttle_rate
            ):
                stats.throttled += 1
                return 400, "ThrottlingException", "Rate exceeded"
            stats.records_written += 1
            now = time.perf_counter()
            stats.first_put = stats.first_put or now
            stats.last_put = now
            if self.keep_records:
                online = self.records.setdefault(group, {})
                current = online.get(record_id)
                if current is None or event_time >= current[0]:
                    online[record_id] = (event_time, record)
        return None

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
            group = unquote(path[len(PREFIX):])
            try:
                request = json.loads(body)
                record = request["Record"]
                if not isinstance(record, list) or not record or not all(
                    isinstance(i, dict) and isinstance(i.get("FeatureName"), str)
                    and isinstance(i.get("ValueAsString"), str) for i in record
                ):
                    raise ValueError("Record must be a non-empty list of {FeatureName, ValueAsString}")
            except (ValueError, KeyError, TypeError) as exc:
                return self._error(400, "ValidationError", f"invalid PutRecord request: {exc}")
            outcome = self.server.put(group, record)
            if outcome is None:
                return self._send(HTTPStatus.OK)
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
                    stats["distinct_records"] = sum(len(group) for group in self.server.records.values())
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
    fail_ids: Iterable[str] = (),
    spec_path: str | Path | None = None,
    port: int = 0,
    seed: int = 0,
    keep_records: bool = True,
) -> FakeFeatureStoreServer:
    """A server on 127.0.0.1:`port` (0: any free port); `.start()` it in a thread, or serve_forever()."""
    definitions: list[dict[str, str]] = []
    record_identifier = event_time = None
    if spec_path is not None:
        spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
        features = [spec["record_identifier"], spec["event_time"], *spec["features"], spec["label"]]
        definitions = [{"FeatureName": f["name"], "FeatureType": f["type"]} for f in features]
        record_identifier, event_time = spec["record_identifier"]["name"], spec["event_time"]["name"]
    faults = Faults(latency=latency_ms / 1000.0, throttle_rate=throttle_rate, throttle_first=throttle_first,
                    fail_ids=frozenset(fail_ids), seed=seed)
    return FakeFeatureStoreServer(("127.0.0.1", port), faults=faults, feature_definitions=definitions,
                                  record_identifier=record_identifier, event_time=event_time,
                                  keep_records=keep_records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A fake SageMaker Feature Store runtime endpoint (PutRecord).")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed on stdout)")
    parser.add_argument("--latency-ms", type=float, default=10.0)
    parser.add_argument("--throttle-rate", type=float, default=0.0)
    parser.add_argument("--throttle-first", type=int, default=0)
    parser.add_argument("--spec", default=None, help="feature spec JSON (for DescribeFeatureGroup and record ids)")
    parser.add_argument("--no-keep-records", action="store_true", help="count records without keeping them")
    args = parser.parse_args(argv)
    server = feature_store_server(latency_ms=args.latency_ms, throttle_rate=args.throttle_rate,
                                  throttle_first=args.throttle_first, spec_path=args.spec, port=args.port,
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
