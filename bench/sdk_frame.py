"""What the SDK ingest scripts share (seed_ingest.py in SDK v2's venv, peer_ingest.py in SDK v3's): their
command-line options, the DataFrame of the records our ingest writes, the fake endpoint's environment,
and a timer that counts wall seconds and the CPU of the process, its threads and its reaped child processes.

Imports nothing from this project (those venvs do not have it); pandas and bench/common.py only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from collections.abc import Callable
from typing import Any

from common import cpu_times

EVENT_TIME = "2026-11-26T07:07:54.120Z"


def sdk_options(max_workers: int) -> argparse.ArgumentParser:
    """The options both scripts take: the endpoint, the CSV and how many of its rows, the spec, the
    feature group, and the SDK's thread count (`max_workers`, defaulting to the method's own)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--csv", required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--max-workers", type=int, default=max_workers)
    return parser


def point_sdk_at(endpoint: str) -> None:
    """The standard AWS endpoint variables: the SDKs reach the fake endpoint unmodified
    (`..._SAGEMAKER` for DescribeFeatureGroup, `..._FEATURESTORE_RUNTIME` for the writes)."""
    os.environ.update(
        AWS_ENDPOINT_URL_SAGEMAKER=endpoint,
        AWS_ENDPOINT_URL_SAGEMAKER_FEATURESTORE_RUNTIME=endpoint,
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
    )


def records_frame(csv_path: str, rows: int, spec_path: str, event_time: str = EVENT_TIME) -> Any:
    """The first `rows` rows of the Telco-like CSV as the records our ingest writes: the spec's
    feature names and types, the label as 0/1, a blank value missing (NaN: the SDKs leave it out of
    the record, as ours does), one event time."""
    import pandas as pd

    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    features = [spec["record_identifier"], *spec["features"], spec["label"]]
    frame = pd.read_csv(csv_path, nrows=rows, dtype=str, keep_default_na=False)
    data = {}
    for feature in features:
        column = frame[feature.get("source") or feature["name"]].str.strip()
        if feature is spec["label"]:
            data[feature["name"]] = column.str.lower().map({"yes": 1, "no": 0}).astype("int64")
        elif feature["type"] == "Integral":
            data[feature["name"]] = pd.to_numeric(column).astype("int64")
        elif feature["type"] == "Fractional":
            data[feature["name"]] = pd.to_numeric(column.replace("", None), errors="raise").astype("float64")
        else:
            data[feature["name"]] = column.astype("string")
    data[spec["event_time"]["name"]] = event_time
    return pd.DataFrame(data)


def cpu_seconds() -> float:
    """CPU (user + system) of this process, all its threads, and its child processes reaped so far."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(call: Callable[[], Any]) -> dict[str, float]:
    """Wall seconds and CPU seconds of `call()` (a pool of worker processes counts once it is joined),
    the whole machine's busy CPU seconds meanwhile, and how many rows the SDK reported failed (its
    IngestionError carries them)."""
    busy, cpu, started = cpu_times()["busy"], cpu_seconds(), time.perf_counter()
    failed = 0
    try:
        call()
    except Exception as exc:
        if not hasattr(exc, "failed_rows"):
            raise
        failed = len(exc.failed_rows)
    return {"seconds": time.perf_counter() - started, "cpu_seconds": cpu_seconds() - cpu,
            "machine_busy_seconds": cpu_times()["busy"] - busy, "failed_count": failed}
