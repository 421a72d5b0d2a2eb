"""Benchmark 1: PutRecord ingest throughput, our ingest code vs. the seed's method, same endpoint.

    make -C bench ingest            # or: .venv/bin/python bench/bench_ingest.py --latency-ms 10

One run starts one fake Feature Store runtime endpoint (bench/fake_featurestore_endpoint.py, its
own process, every request delayed by --latency-ms to model the network) and measures against it:

- seed: the SageMaker SDK v2 `FeatureGroup.ingest(data_frame, max_workers=3)` (bench/seed_ingest.py
  in bench/.venv-seed), one PutRecord per row from 3 threads;
- ours, one Lambda: the ingest Lambda's handler (churn.handlers.ingest.handler, unchanged: shared
  client with adaptive retries, pool sized to INGEST_WORKERS=8, concurrent PutRecords) called
  for batches of 500 rows one after another in one process -- one warm Lambda container;
- ours, Distributed Map: the same handler in `--lambdas` processes (default: the stack's
  ingest_max_concurrency, 10) fed batches of 500 rows as the Distributed Map's CSV item reader
  hands them out -- the deployed "Ingest features" step, emulated on this machine.

Rows are the generator's Telco-like rows (bench/generate_data.py); each method writes distinct
records and the endpoint's count of distinct records is checked against the rows sent. The
handler's batches are read and cut before the clock starts (on AWS the item reader does this);
the seed's DataFrame is prepared before its clock starts. Prints a table; writes
bench/out/ingest-<time>.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
import urllib.request
from itertools import islice
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate_data  # noqa: E402
from common import BENCH, OUT, ROOT, SPEC_PATH, cpu_times, load_average, machine, save, speed_probe, table  # noqa: E402

SEED_PYTHON = BENCH / ".venv-seed" / "bin" / "python"
EVENT_TIME = "2026-11-26T07:07:54.12Z"


# -- the endpoint --------------------------------------------------------------------------
class Endpoint:
    def __init__(self, latency_ms: float, throttle_rate: float):
        command = [sys.executable, str(BENCH / "fake_featurestore_endpoint.py"), "--latency-ms", str(latency_ms),
                   "--throttle-rate", str(throttle_rate), "--spec", str(SPEC_PATH)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http://"):
            raise RuntimeError(f"the fake endpoint did not start: {self.url!r}")

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/_stats", timeout=10) as response:  # noqa: S310 - 127.0.0.1
            return json.loads(response.read())

    def reset(self) -> None:
        request = urllib.request.Request(self.url + "/_reset", data=b"{}", method="POST")
        urllib.request.urlopen(request, timeout=10).read()  # noqa: S310

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


# -- the seed --------------------------------------------------------------------------------
def run_seed(endpoint: Endpoint, data: Path, rows: int, group: str, max_workers: int) -> dict[str, Any]:
    if not SEED_PYTHON.exists():
        raise SystemExit(f"{SEED_PYTHON} is missing: run `make -C bench seed-venv` first")
    endpoint.reset()
    cpu = endpoint.cpu_seconds()
    command = [str(SEED_PYTHON), str(BENCH / "seed_ingest.py"), "--endpoint", endpoint.url, "--csv", str(data),
               "--rows", str(rows), "--spec", str(SPEC_PATH), "--group", group, "--max-workers", str(max_workers)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"seed ingest failed:\n{completed.stderr[-3000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["endpoint"] = endpoint.stats()
    result["endpoint_cpu_seconds"] = endpoint.cpu_seconds() - cpu
    return result


# -- ours: the Lambda handler in worker processes ----------------------------------------------
_handler = None


def _worker_init(environment: dict[str, str], ready, retry_mode: str | None) -> None:
    """A Lambda container: its environment, the handler module imported, the client created."""
    global _handler
    os.environ.update(environment)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # Powertools prints one EMF metrics line per invocation
    from churn.handlers import ingest

    if retry_mode:  # what-if only: the same client with another retry mode
        import boto3
        from botocore.config import Config

        other = boto3.client("sagemaker-featurestore-runtime", config=Config(
            retries={"mode": retry_mode, "max_attempts": 10}, max_pool_connections=ingest.WORKERS,
            parameter_validation=False))  # as churn.handlers.ingest.featurestore_client, retries aside
        ingest.featurestore_client = lambda: other
    else:
        ingest.featurestore_client()
    _handler = ingest.handler
    ready.wait()


class _Context:
    function_name = "bench-ingest"
    memory_limit_in_mb = 1769  # the stack's IngestFunction
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:bench-ingest"
    aws_request_id = "bench"


def _invoke(event: dict[str, Any]) -> tuple[int, list[str], float]:
    cpu = time.process_time()
    try:
        result = _handler(event, _Context())
        return result["ingested"], [], time.process_time() - cpu
    except Exception as exc:  # noqa: BLE001 - reported in the table
        return 0, [f"{type(exc).__name__}: {exc}"[:300]], time.process_time() - cpu


def read_batches(data: Path, rows: int, batch_size: int, offset: int) -> list[dict[str, Any]]:
    """Rows as the Distributed Map's CSV item reader gives them (header -> text), batched."""
    with open(data, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        items = list(islice(reader, offset, offset + rows))
    if len(items) < rows:
        raise SystemExit(f"{data} has fewer than {offset + rows} rows")
    return [{"Items": items[i:i + batch_size], "BatchInput": {"event_time": EVENT_TIME}}
            for i in range(0, rows, batch_size)]


def run_ours(endpoint: Endpoint, data: Path, rows: int, offset: int, group: str, *, lambdas: int, workers: int,
             batch_size: int, retry_mode: str | None = None) -> dict[str, Any]:
    from churn.schema import FeatureSpec

    events = read_batches(data, rows, batch_size, offset)
    environment = {
        "FEATURE_SPEC": FeatureSpec.load(SPEC_PATH).to_json(),
        "FEATURE_GROUP_NAME": group,
        "INGEST_WORKERS": str(workers),
        "AWS_ENDPOINT_URL_SAGEMAKER_FEATURESTORE_RUNTIME": endpoint.url,
        "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_SERVICE_NAME": "bench-ingest",
    }
    context = mp.get_context("spawn")  # fresh interpreters, like Lambda containers
    ready = context.Barrier(lambdas + 1)
    endpoint.reset()
    with context.Pool(lambdas, initializer=_worker_init, initargs=(environment, ready, retry_mode)) as pool:
        ready.wait()  # every container is warm: imports done, client created
        cpu = endpoint.cpu_seconds()
        started = time.perf_counter()
        outcomes = list(pool.imap_unordered(_invoke, events, chunksize=1))
        seconds = time.perf_counter() - started
        endpoint_cpu = endpoint.cpu_seconds() - cpu
    ingested = sum(o[0] for o in outcomes)
    errors = [e for o in outcomes for e in o[1]]
    return {
        "records": rows, "ingested": ingested, "errors": errors[:5], "failed_batches": len(errors),
        "seconds": seconds, "lambdas": lambdas, "workers": workers, "batch_size": batch_size,
        "retry_mode": retry_mode or "adaptive (the Lambda's client)",
        "handler_cpu_seconds": sum(o[2] for o in outcomes), "endpoint_cpu_seconds": endpoint_cpu,
        "endpoint": endpoint.stats(),
    }


def main(argv: list[str] | None = None) -> int:
    from churn.config import PipelineSettings

    settings = PipelineSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=10.0)
    parser.add_argument("--throttle-rate", type=float, default=0.0, help="endpoint answers this share throttled")
    parser.add_argument("--seed-rows", type=int, default=4000)
    parser.add_argument("--one-lambda-rows", type=int, default=10000)
    parser.add_argument("--map-rows", type=int, default=40000)
    parser.add_argument("--lambdas", type=int, default=settings.ingest_max_concurrency)
    parser.add_argument("--workers", type=int, default=settings.ingest_workers)
    parser.add_argument("--batch-size", type=int, default=settings.ingest_batch_size)
    parser.add_argument("--seed-max-workers", type=int, default=3)
    parser.add_argument("--skip-seed", action="store_true")
    parser.add_argument("--skip-one-lambda", action="store_true")
    parser.add_argument("--retry-mode", choices=["standard", "adaptive", "legacy"], default=None,
                        help="what-if: replace the Lambda client's retry mode (default: the client as deployed)")
    args = parser.parse_args(argv)

    total = args.seed_rows + args.one_lambda_rows + args.map_rows
    data = generate_data.ensure(OUT / f"telco-ingest-{total}.csv", total, seed=7)
    facts = machine()
    facts["speed_probe_before_s"] = speed_probe()
    cpu_before = cpu_times()
    endpoint = Endpoint(args.latency_ms, args.throttle_rate)
    results: dict[str, Any] = {"machine": facts, "args": vars(args)}
    try:
        if not args.skip_seed:
            results["seed"] = run_seed(endpoint, data, args.seed_rows, "bench-seed", args.seed_max_workers)
        if not args.skip_one_lambda:
            results["one_lambda"] = run_ours(endpoint, data, args.one_lambda_rows, args.seed_rows, "bench-ours-one",
                                             lambdas=1, workers=args.workers, batch_size=args.batch_size,
                                             retry_mode=args.retry_mode)
        results["distributed_map"] = run_ours(endpoint, data, args.map_rows, args.seed_rows + args.one_lambda_rows,
                                              "bench-ours-map", lambdas=args.lambdas, workers=args.workers,
                                              batch_size=args.batch_size, retry_mode=args.retry_mode)
    finally:
        endpoint.stop()
    facts["load_average_after"] = load_average()
    cpu_after = cpu_times()
    facts["cpu_steal_s"] = round(cpu_after["steal"] - cpu_before["steal"], 1)
    facts["speed_probe_after_s"] = speed_probe()

    rows = []
    seed_rate = None
    if "seed" in results:
        seed = results["seed"]
        seed_rate = seed["records"] / seed["seconds"]
        rows.append([f"seed: SDK v{seed['sagemaker_version']} FeatureGroup.ingest(max_workers={seed['max_workers']})",
                     seed["max_workers"], seed["records"], seed["endpoint"]["records_written"], seed["seconds"],
                     seed_rate, 1.0, "-", seed["endpoint"]["max_in_flight"]])
    for key, label in (("one_lambda", "ours: 1 Lambda (handler, batches of {b}, {w} workers)"),
                       ("distributed_map", "ours: Distributed Map ({l} Lambdas x {w} workers, batches of {b})")):
        if key not in results:
            continue
        r = results[key]
        if args.retry_mode:
            label += f", {args.retry_mode} retries"
        rate = r["ingested"] / r["seconds"]
        rows.append([label.format(b=r["batch_size"], w=r["workers"], l=r["lambdas"]), r["lambdas"] * r["workers"],
                     r["records"], r["endpoint"]["records_written"], r["seconds"], rate,
                     (rate / seed_rate) if seed_rate else "-", 1000 * r["handler_cpu_seconds"] / r["records"],
                     r["endpoint"]["max_in_flight"]])
        if r["failed_batches"]:
            print(f"WARNING {key}: {r['failed_batches']} batches failed: {r['errors']}", file=sys.stderr)
        if r["endpoint"]["records_written"] < r["records"]:
            print(f"WARNING {key}: endpoint wrote {r['endpoint']['records_written']} of {r['records']}",
                  file=sys.stderr)
    for key in ("seed", "one_lambda", "distributed_map"):
        if key in results and results[key]["endpoint"]["throttled"]:
            stats = results[key]["endpoint"]
            print(f"{key}: {stats['throttled']} PutRecords throttled, {stats['retried_records']} records retried",
                  file=sys.stderr)
    print(f"\nIngest throughput against one fake PutRecord endpoint, {args.latency_ms:g} ms per request"
          f"{f', {args.throttle_rate:.0%} throttled' if args.throttle_rate else ''}")
    print(f"machine: {facts['cpu']}, {facts['cpus']} CPUs, {facts['memory_gib']} GiB, Python {facts['python']}; "
          f"load average before {facts['load_average_before']}, after {facts['load_average_after']}; "
          f"CPU stolen by the host {facts['cpu_steal_s']} s; speed probe {facts['speed_probe_before_s']:.3f} s "
          f"before, {facts['speed_probe_after_s']:.3f} s after (lower is faster)\n")
    print(table(["method", "in flight (max)", "rows", "records written", "wall s", "records/s", "x seed",
                 "handler CPU ms/record", "endpoint max in flight"], rows))
    if "one_lambda" in results and "distributed_map" in results:
        # Not measured: what the two figures above imply. On this machine every emulated Lambda and
        # the endpoint share the same cores; on AWS each Lambda (1,769 MB) has a vCPU of its own.
        one, spread = results["one_lambda"], results["distributed_map"]
        cpu_per_record = (spread["handler_cpu_seconds"] + spread["endpoint_cpu_seconds"]) / spread["records"]
        ceiling = facts["cpus"] / cpu_per_record
        projected = spread["lambdas"] * one["ingested"] / one["seconds"]
        results["derived"] = {"cpu_ceiling_records_per_second": ceiling,
                              "projected_map_records_per_second": projected}
        print(f"\nderived, not measured: this machine's CPU ceiling = {facts['cpus']} CPUs / "
              f"{1000 * cpu_per_record:.2f} ms of CPU per record (handler + endpoint) = {ceiling:,.0f} records/s"
              + (f" ({ceiling / seed_rate:.1f}x seed)" if seed_rate else ""))
        versus = f" ({projected / seed_rate:.1f}x seed)" if seed_rate else ""
        print(f"derived, not measured: {spread['lambdas']} Lambdas with a vCPU each = {spread['lambdas']} x the "
              f"1-Lambda rate = {projected:,.0f} records/s{versus}")
    path = save("ingest", results)
    print(f"\nraw results: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
