"""Benchmark 3: the local feature store alone: PutRecord and BatchWriteRecord (25-entry calls) throughput.

    make -C bench store              # or: .venv/bin/python bench/bench_store.py --rows 200000

The first N rows of the generated Telco-like CSV (bench/generate_data.py, seed 7) are turned into
Feature Store records with the ingest code (`churn.features`) before the clock starts; then each
mode writes them all into a fresh store in one thread and closes it (the final flush counted).
Records/s is wall time; CPU seconds are this process's. Prints a table; writes
bench/out/store-<time>.json.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate_data  # noqa: E402
from common import OUT, SPEC_PATH, load_average, machine, save, speed_probe, table  # noqa: E402

GROUP = "bench-features"
EVENT_TIME = "2026-12-01T00:00:00.000Z"


def records(rows: int) -> list[list[dict[str, str]]]:
    from churn.csv_input import iter_raw_rows
    from churn.features import to_feature_store_record, to_record
    from churn.schema import FeatureSpec

    group = FeatureSpec.load(SPEC_PATH).groups[0]
    data = generate_data.ensure(OUT / f"telco-{rows}.csv", rows, 7)
    with open(data, "rb") as stream:
        return [to_feature_store_record(to_record(row, group, EVENT_TIME))
                for _, row in iter_raw_rows(stream, str(data), group)]


def run(mode: str, batch: list[list[dict[str, str]]], root: Path) -> dict[str, float]:
    from churn.ingest import BATCH_WRITE_MAX_ENTRIES
    from churn.schema import FeatureSpec
    from pipeline.local_aws.feature_store import LocalFeatureStore
    from pipeline.runner import create_feature_group

    shutil.rmtree(root, ignore_errors=True)
    store = LocalFeatureStore(root)
    create_feature_group(store, GROUP, FeatureSpec.load(SPEC_PATH).groups[0])
    started, cpu = time.perf_counter(), time.process_time()
    if mode == "PutRecord":
        for record in batch:
            store.put_record(FeatureGroupName=GROUP, Record=record)
    else:
        for start in range(0, len(batch), BATCH_WRITE_MAX_ENTRIES):
            entries = [{"FeatureGroupName": GROUP, "Record": r} for r in batch[start : start + BATCH_WRITE_MAX_ENTRIES]]
            response = store.batch_write_record(Entries=entries)
            if response["Errors"]:
                raise RuntimeError(response["Errors"][0])
    store.close()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"mode": mode, "records": len(batch), "seconds": round(seconds, 2), "cpu_s": round(cpu, 2),
            "records_per_s": round(len(batch) / seconds), "cpu_us_per_record": round(cpu / len(batch) * 1e6, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=2, help="alternate the modes this many times")
    args = parser.parse_args()
    batch = records(args.rows)
    probe = speed_probe()
    results = []
    for _ in range(args.repeat):
        for mode in ("PutRecord", "BatchWriteRecord"):
            results.append(run(mode, batch, OUT / "store-bench"))
            print(f"  {results[-1]}", file=sys.stderr, flush=True)
    shutil.rmtree(OUT / "store-bench", ignore_errors=True)
    print(f"Local feature store, {args.rows:,} Telco records, one thread; load average {load_average()}; "
          f"speed probe {probe:.3f} s before, {speed_probe():.3f} s after (lower is faster)\n")
    headers = list(results[0])
    print(table(headers, [[r[h] for h in headers] for r in results]))
    print(f"\nraw results: {save('store', {'machine': machine(), 'results': results})}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
