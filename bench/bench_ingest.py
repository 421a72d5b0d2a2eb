"""Benchmark 1: ingest throughput against one fake Feature Store endpoint: the seed, the SDK v3 peer, ours.

    make -C bench ingest            # or: .venv/bin/python bench/bench_ingest.py --latency-ms 10

One run starts one fake Feature Store runtime endpoint (bench/fake_featurestore_endpoint.py, its
own process, every request delayed by --latency-ms to model the network) and measures against it:

- seed: SDK v2 `FeatureGroup.ingest(data_frame, max_workers=3)` (bench/seed_ingest.py in
  bench/.venv-seed): one PutRecord per row from 3 threads;
- peer: SDK v3 `ingest_dataframe(..., use_batch_write_record=True)` (bench/peer_ingest.py in
  bench/.venv-peer) at its best `max_workers` x `max_processes` on this machine: a small grid is
  measured first (--peer-grid) and the fastest point is run again with the full row count;
- ours, one Lambda: the ingest Lambda's handler (churn.handlers.ingest_batch.handler, unchanged: its one
  shared client, BatchWriteRecord calls of 25 entries in parallel) called for Distributed Map
  batches of 500 rows one after another in one process: one warm Lambda container;
- ours, Distributed Map: the same handler in `--lambdas` processes (default: the stack's
  ingest_max_concurrency) fed the batches as the Map hands them out: the deployed "Ingest features"
  step, emulated on this machine.

Every method writes the generator's Telco-like rows (bench/generate_data.py) as the same records;
the endpoint counts the distinct records written, and that count is checked against the rows sent.
The handler's batches are read and cut before the clock starts (on AWS the item reader does this),
converting rows is timed; the SDKs' DataFrames are built before their clocks start. CPU per record
is the CPU of the process(es) doing the ingest (all their threads) over the timed part; the
endpoint's own CPU is shown apart, and so is "other CPU": what the machine was busy with besides
(others share it). Prints a table and derived AWS figures; writes bench/out/ingest-<time>.json.
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
PEER_PYTHON = BENCH / ".venv-peer" / "bin" / "python"
EVENT_TIME = "2026-11-26T07:07:54.12Z"
LAMBDA_MEMORY_MB = 1769  # the stack's IngestFunction (stacks/training_pipeline.py)
PEER_GRID = "1x4,1x16,2x1,2x4,2x8,2x16,3x8,4x2,4x8"  # max_processes x max_workers


# -- the endpoint --------------------------------------------------------------------------
class Endpoint:
    def __init__(self, latency_ms: float, faults: dict[str, float]):
        command = [sys.executable, str(BENCH / "fake_featurestore_endpoint.py"), "--latency-ms", str(latency_ms),
                   "--spec", str(SPEC_PATH)]
        for name, value in faults.items():
            command += [f"--{name.replace('_', '-')}", str(value)]
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


# -- the SDKs, each in its own venv ----------------------------------------------------------
def run_sdk(python: Path, script: str, endpoint: Endpoint, data: Path, rows: int, group: str,
            options: list[str]) -> dict[str, Any]:
    """One SDK ingest in a subprocess; its JSON line plus what the endpoint saw."""
    if not python.exists():
        raise SystemExit(f"{python} is missing: run `make -C bench ingest` (it makes the SDK venvs)")
    endpoint.reset()
    cpu = endpoint.cpu_seconds()
    command = [str(python), str(BENCH / script), "--endpoint", endpoint.url, "--csv", str(data),
               "--rows", str(rows), "--spec", str(SPEC_PATH), "--group", group, *options]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{script} failed:\n{completed.stderr[-3000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["endpoint_cpu_seconds"] = endpoint.cpu_seconds() - cpu
    result["endpoint"] = endpoint.stats()
    return result


def run_seed(endpoint: Endpoint, data: Path, rows: int, max_workers: int) -> dict[str, Any]:
    return run_sdk(SEED_PYTHON, "seed_ingest.py", endpoint, data, rows, "bench-seed",
                   ["--max-workers", str(max_workers)])


def run_peer(endpoint: Endpoint, data: Path, rows: int, processes: int, workers: int) -> dict[str, Any]:
    return run_sdk(PEER_PYTHON, "peer_ingest.py", endpoint, data, rows, "bench-peer",
                   ["--max-workers", str(workers), "--max-processes", str(processes)])


def peer_grid(endpoint: Endpoint, data: Path, rows: int, grid: str) -> tuple[list[dict[str, Any]], tuple[int, int]]:
    """The peer at each `processes x workers` of the grid; the fastest point (records/s)."""
    points = [tuple(int(n) for n in point.split("x")) for point in grid.split(",")]
    results = [run_peer(endpoint, data, rows, processes, workers) for processes, workers in points]
    best = max(results, key=lambda r: r["records"] / r["seconds"])
    return results, (best["max_processes"], best["max_workers"])


# -- ours: the Lambda handler in worker processes ----------------------------------------------
_handler = None


def _worker_init(environment: dict[str, str], ready, retry_mode: str | None) -> None:
    """A Lambda container: its environment, the handler module imported, the client created."""
    global _handler
    os.environ.update(environment)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # Powertools prints one EMF metrics line per invocation
    from churn.handlers import ingest_batch as ingest

    if retry_mode:  # what-if only: the same client with another retry mode
        import boto3
        from botocore.config import Config

        other = boto3.client("sagemaker-featurestore-runtime", config=Config(
            retries={"mode": retry_mode, "max_attempts": 10}, max_pool_connections=ingest.WORKERS,
            parameter_validation=False))  # as churn.handlers.ingest_batch.featurestore_client, retries aside
        ingest.featurestore_client = lambda: other
    else:
        ingest.featurestore_client()
    _handler = ingest.handler
    ready.wait()


class _Context:
    function_name = "bench-ingest"
    memory_limit_in_mb = LAMBDA_MEMORY_MB
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:bench-ingest"
    aws_request_id = "bench"


def _invoke(event: dict[str, Any]) -> dict[str, Any]:
    """One invocation; the handler's result plus the CPU this process (all its threads) spent."""
    cpu = time.process_time()
    try:
        result = _handler(event, _Context())
    except Exception as exc:  # noqa: BLE001 - reported in the table
        result = {"ingested": 0, "failed_count": len(event["Items"]), "calls": 0,
                  "failed": [{"error_code": type(exc).__name__, "message": str(exc)[:300]}]}
    return {**result, "cpu_seconds": time.process_time() - cpu}


def read_batches(data: Path, rows: int, batch_size: int, group_name: str) -> list[dict[str, Any]]:
    """Rows as the Distributed Map hands them to the Lambda: the CSV item reader's rows (header ->
    text), each with its index in the file (the stack's ItemSelector), batched, with BatchInput."""
    from churn import contract
    from churn.schema import SINGLE_GROUP_NAME

    with open(data, encoding="utf-8", newline="") as handle:
        items = [{contract.ITEM_INDEX: index, contract.ITEM_ROW: row}
                 for index, row in enumerate(islice(csv.DictReader(handle), rows))]
    if len(items) < rows:
        raise SystemExit(f"{data} has fewer than {rows} rows")
    batch_input = {contract.EVENT_TIME: EVENT_TIME, contract.GROUP: SINGLE_GROUP_NAME,
                   contract.FEATURE_GROUP_NAME: group_name}
    return [{"Items": items[i:i + batch_size], "BatchInput": batch_input} for i in range(0, rows, batch_size)]


def run_ours(endpoint: Endpoint, data: Path, rows: int, group: str, *, lambdas: int, workers: int,
             batch_size: int, retry_mode: str | None = None) -> dict[str, Any]:
    from churn.schema import FeatureSpec

    events = read_batches(data, rows, batch_size, group)
    environment = {
        "FEATURE_SPEC": FeatureSpec.load(SPEC_PATH).to_json(),
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
        busy, cpu = cpu_times()["busy"], endpoint.cpu_seconds()
        started = time.perf_counter()
        outcomes = list(pool.imap_unordered(_invoke, events, chunksize=1))
        seconds = time.perf_counter() - started
        endpoint_cpu, busy = endpoint.cpu_seconds() - cpu, cpu_times()["busy"] - busy
    return {
        "records": rows, "ingested": sum(o["ingested"] for o in outcomes),
        "failed_count": sum(o["failed_count"] for o in outcomes),
        "failed_examples": [f for o in outcomes for f in o["failed"]][:5],
        "handler_calls": sum(o["calls"] for o in outcomes),
        "seconds": seconds, "lambdas": lambdas, "workers": workers, "batch_size": batch_size,
        "retry_mode": retry_mode or "standard (the Lambda's client as deployed)",
        "cpu_seconds": sum(o["cpu_seconds"] for o in outcomes), "endpoint_cpu_seconds": endpoint_cpu,
        "machine_busy_seconds": busy, "endpoint": endpoint.stats(),
    }


# -- the report --------------------------------------------------------------------------------
def rate(result: dict[str, Any]) -> float:
    """Records written per second: what the endpoint counted as distinct records."""
    return result["endpoint"]["distinct_records"] / result["seconds"]


def other_cpu(result: dict[str, Any]) -> float:
    """CPU seconds the machine was busy with something else during the timed part: its busy time less
    the ingest's and the endpoint's (others share this machine; a large figure means a disturbed run)."""
    return max(0.0, result["machine_busy_seconds"] - result["cpu_seconds"] - result["endpoint_cpu_seconds"])


def report_row(label: str, result: dict[str, Any], in_flight: int, seed: float | None,
               peer: float | None) -> list[Any]:
    records, stats = result["records"], result["endpoint"]
    return [label, in_flight, records, stats["distinct_records"], result["seconds"], rate(result),
            1000 * result["cpu_seconds"] / records, 1000 * result["endpoint_cpu_seconds"] / records,
            1000 * stats["write_calls"] / records, other_cpu(result),
            (rate(result) / seed) if seed else "-", (rate(result) / peer) if peer else "-"]


HEADERS = ["method", "in flight (max)", "rows", "records written", "wall s", "records/s", "ingest CPU ms/record",
           "endpoint CPU ms/record", "calls per 1,000 records", "other CPU s", "x seed", "x peer"]


def report_table(results: dict[str, Any]) -> str:
    seed = rate(results["seed"]) if "seed" in results else None
    peer = rate(results["peer"]) if "peer" in results else None
    rows = []
    for key in ("seed", "peer"):
        if key in results:
            r = results[key]
            rows.append(report_row(r["sdk"], r, r["max_workers"] * r["max_processes"], seed, peer))
    for key, label in (("one_lambda", "ours: 1 Lambda (handler, batches of {b}, {w} workers)"),
                       ("distributed_map", "ours: Distributed Map ({l} Lambdas x {w} workers, batches of {b})")):
        if key in results:
            r = results[key]
            rows.append(report_row(label.format(b=r["batch_size"], w=r["workers"], l=r["lambdas"]), r,
                                   r["lambdas"] * r["workers"], seed, peer))
    return table(HEADERS, rows)


def grid_table(grid: list[dict[str, Any]]) -> str:
    rows = [[r["max_processes"], r["max_workers"], r["records"], r["endpoint"]["distinct_records"], r["seconds"],
             rate(r), 1000 * r["cpu_seconds"] / r["records"], other_cpu(r)] for r in grid]
    return table(["max_processes", "max_workers", "rows", "records written", "wall s", "records/s",
                  "ingest CPU ms/record", "other CPU s"], rows)


def warnings(results: dict[str, Any]) -> list[str]:
    found = []
    for key in ("seed", "peer", "one_lambda", "distributed_map"):
        if key not in results:
            continue
        r, stats = results[key], results[key]["endpoint"]
        if stats["distinct_records"] < r["records"]:
            found.append(f"{key}: the endpoint has {stats['distinct_records']} of {r['records']} records"
                         f" (failed as reported by the method: {r.get('failed_count', '?')}; "
                         f"e.g. {r.get('failed_examples', [])[:2]})")
        if stats["throttled"] or stats["unprocessed"] or stats["failed"]:
            found.append(f"{key}: {stats['throttled']} calls throttled, {stats['unprocessed']} entries left "
                         f"unprocessed, {stats['failed']} rejected")
    return found


def derived(results: dict[str, Any], cpus: int) -> list[str]:
    """Figures computed from the measured ones, not measured themselves."""
    lines = []
    for key in ("seed", "peer", "one_lambda", "distributed_map"):
        if key in results:
            r = results[key]
            per_million = 1e6 * r["endpoint"]["write_calls"] / r["records"]
            lines.append(f"{key}: {per_million:,.0f} Feature Store write requests per million records")
    if "one_lambda" in results:
        one = results["one_lambda"]
        invocations = 1e6 / one["batch_size"]
        seconds_per_record = one["seconds"] / one["records"]
        gb_seconds = LAMBDA_MEMORY_MB / 1024 * seconds_per_record * 1e6
        results["derived"] = {"lambda_invocations_per_million": invocations,
                              "lambda_gb_seconds_per_million": gb_seconds}
        lines.append(f"ours: + {invocations:,.0f} Lambda invocations per million records (one per batch of "
                     f"{one['batch_size']}); Lambda time {seconds_per_record * 1e3:.3f} ms per record (1 Lambda, "
                     f"measured) x {LAMBDA_MEMORY_MB:,} MB = {gb_seconds:,.0f} GB-seconds per million records")
    if "one_lambda" in results and "distributed_map" in results:
        # On this machine every emulated Lambda and the endpoint share the cores; on AWS each
        # Lambda (1,769 MB) has a vCPU of its own.
        one, spread = results["one_lambda"], results["distributed_map"]
        cpu_per_record = (spread["cpu_seconds"] + spread["endpoint_cpu_seconds"]) / spread["records"]
        ceiling = cpus / cpu_per_record
        projected = spread["lambdas"] * rate(one)
        results["derived"].update(cpu_ceiling_records_per_second=ceiling, projected_map_records_per_second=projected)
        lines.append(f"this machine's CPU ceiling for the Distributed Map = {cpus} CPUs / {1000 * cpu_per_record:.3f}"
                     f" ms of CPU per record (handler + endpoint) = {ceiling:,.0f} records/s")
        lines.append(f"{spread['lambdas']} Lambdas with a vCPU each = {spread['lambdas']} x the 1-Lambda rate = "
                     f"{projected:,.0f} records/s")
    return lines


# -- the run ---------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from churn.config import PipelineSettings

    settings = PipelineSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=10.0)
    parser.add_argument("--throttle-rate", type=float, default=0.0, help="share of write calls answered throttled")
    parser.add_argument("--unprocessed-rate", type=float, default=0.0,
                        help="share of BatchWriteRecord entries left unprocessed")
    parser.add_argument("--reject-rate", type=float, default=0.0, help="share of BatchWriteRecord entries rejected")
    parser.add_argument("--seed-rows", type=int, default=4000)
    parser.add_argument("--peer-rows", type=int, default=20000)
    parser.add_argument("--peer-grid", default=PEER_GRID, help="max_processes x max_workers points to try")
    parser.add_argument("--peer-grid-rows", type=int, default=10000)
    parser.add_argument("--peer", default=None, help="skip the grid: run the peer at this processes x workers")
    parser.add_argument("--one-lambda-rows", type=int, default=20000)
    parser.add_argument("--map-rows", type=int, default=100000)
    parser.add_argument("--lambdas", type=int, default=settings.ingest_max_concurrency)
    parser.add_argument("--workers", type=int, default=settings.ingest_workers)
    parser.add_argument("--batch-size", type=int, default=settings.ingest_batch_size)
    parser.add_argument("--seed-max-workers", type=int, default=3)
    parser.add_argument("--skip", nargs="*", default=[], choices=["seed", "peer", "one-lambda"])
    parser.add_argument("--retry-mode", choices=["standard", "adaptive", "legacy"], default=None,
                        help="what-if: replace the Lambda client's retry mode (default: the client as deployed)")
    return parser.parse_args(argv)


def run_all(args: argparse.Namespace, endpoint: Endpoint, data: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if "seed" not in args.skip:
        results["seed"] = run_seed(endpoint, data, args.seed_rows, args.seed_max_workers)
    if "peer" not in args.skip:
        if args.peer:
            processes, workers = (int(n) for n in args.peer.split("x"))
        else:
            results["peer_grid"], (processes, workers) = peer_grid(endpoint, data, args.peer_grid_rows, args.peer_grid)
        results["peer"] = run_peer(endpoint, data, args.peer_rows, processes, workers)
    if "one-lambda" not in args.skip:
        results["one_lambda"] = run_ours(endpoint, data, args.one_lambda_rows, "bench-ours-one", lambdas=1,
                                         workers=args.workers, batch_size=args.batch_size, retry_mode=args.retry_mode)
    results["distributed_map"] = run_ours(endpoint, data, args.map_rows, "bench-ours-map", lambdas=args.lambdas,
                                          workers=args.workers, batch_size=args.batch_size,
                                          retry_mode=args.retry_mode)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    faults = {"throttle_rate": args.throttle_rate, "unprocessed_rate": args.unprocessed_rate,
              "reject_rate": args.reject_rate}
    total = max(args.seed_rows, args.peer_rows, args.peer_grid_rows, args.one_lambda_rows, args.map_rows)
    data = generate_data.ensure(OUT / f"telco-ingest-{total}.csv", total, seed=7)
    facts = machine()
    facts["speed_probe_before_s"] = speed_probe()
    cpu_before = cpu_times()
    endpoint = Endpoint(args.latency_ms, {k: v for k, v in faults.items() if v})
    try:
        results = {"machine": facts, "args": vars(args), **run_all(args, endpoint, data)}
    finally:
        endpoint.stop()
    facts["load_average_after"] = load_average()
    facts["cpu_steal_s"] = round(cpu_times()["steal"] - cpu_before["steal"], 1)
    facts["speed_probe_after_s"] = speed_probe()

    for line in warnings(results):
        print(f"WARNING {line}", file=sys.stderr)
    injected = ", ".join(f"{name.replace('_rate', '').replace('_', ' ')} {100 * share:g} %"
                         for name, share in faults.items() if share)
    print(f"\nIngest throughput against one fake Feature Store endpoint, {args.latency_ms:g} ms per request"
          f"{f' ({injected})' if injected else ''}")
    print(f"machine: {facts['cpu']}, {facts['cpus']} CPUs, {facts['memory_gib']} GiB, Python {facts['python']}; "
          f"load average before {facts['load_average_before']}, after {facts['load_average_after']}; "
          f"CPU stolen by the host {facts['cpu_steal_s']} s; speed probe {facts['speed_probe_before_s']:.3f} s "
          f"before, {facts['speed_probe_after_s']:.3f} s after (lower is faster)")
    if "peer_grid" in results:
        print("\npeer grid (SDK v3 ingest_dataframe, use_batch_write_record=True):\n")
        print(grid_table(results["peer_grid"]))
    print("\n" + report_table(results))
    print("\nderived, not measured:")
    for line in derived(results, facts["cpus"]):
        print(f"  {line}")
    path = save("ingest", results)
    print(f"\nraw results: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
