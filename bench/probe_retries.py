"""How long throttled PutRecords take to get through, adaptive vs. standard retry mode.

    .venv/bin/python bench/probe_retries.py

botocore's adaptive mode (once the ingest Lambda's client; it uses standard mode since this probe
and bench/README.md showed what follows) adds a client-side token bucket to the standard mode's
backoff: each throttled response sets the allowed send rate to 0.7 x the measured rate (CUBIC),
floor 0.5 request/s, and the rate is measured in 0.5 s buckets. So a client throttled before it has
measured any rate -- a cold Lambda container -- or throttled on many requests at once is held to a
few requests per second until CUBIC regrows the rate. This probe puts N records through 8 threads
sharing one client (as one Lambda invocation does), every record's first attempt throttled by the
fake endpoint, and prints the time.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SPEC_PATH, load_average, table  # noqa: E402
from fake_featurestore_endpoint import Faults, feature_store_server  # noqa: E402


def scenario(url: str, server, mode: str, warm_seconds: float, throttled: int, tag: str) -> list:
    import boto3
    from botocore.config import Config

    client = boto3.client("sagemaker-featurestore-runtime", endpoint_url=url, config=Config(
        retries={"mode": mode, "max_attempts": 10}, max_pool_connections=8))

    def put(record_id: str) -> None:
        client.put_record(FeatureGroupName="probe", Record=[
            {"FeatureName": "customer_id", "ValueAsString": record_id},
            {"FeatureName": "event_time", "ValueAsString": "2026-11-26T07:07:54.120Z"}])

    server.set_faults(Faults(latency=0.010))
    with ThreadPoolExecutor(8) as pool:
        started, n = time.perf_counter(), 0
        while time.perf_counter() - started < warm_seconds:
            list(pool.map(put, [f"{tag}-warm-{n + i}" for i in range(40)]))
            n += 40
        server.set_faults(Faults(latency=0.010, throttle_first=1))
        server.reset()
        started = time.perf_counter()
        list(pool.map(put, [f"{tag}-{i}" for i in range(throttled)]))
        seconds = time.perf_counter() - started
    server.set_faults(Faults(latency=0.010))
    state = "cold (new client)" if not warm_seconds else f"warm ({warm_seconds:g} s of traffic first)"
    return [mode, state, throttled, server.stats.throttled, seconds, throttled / seconds]


def main() -> int:
    os.environ.update(AWS_ACCESS_KEY_ID="probe", AWS_SECRET_ACCESS_KEY="probe", AWS_DEFAULT_REGION="us-east-1")
    server = feature_store_server(spec_path=SPEC_PATH, latency_ms=10).start()
    rows = []
    try:
        for mode in ("adaptive", "standard"):
            for warm, throttled in ((0.0, 8), (1.1, 8), (1.1, 24)):
                rows.append(scenario(server.url, server, mode, warm, throttled, f"{mode}-{warm}-{throttled}"))
    finally:
        server.stop()
    print(f"\nEvery record's first PutRecord throttled, 8 threads on one client, 10 ms per request; "
          f"load average {load_average()}\n")
    print(table(["retry mode", "client", "records", "throttled", "seconds", "records/s"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
