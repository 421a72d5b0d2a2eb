"""Benchmark 2: the local pipeline end to end at 10k, 100k and 1M rows: wall time per step, peak RSS.

    make -C bench pipeline          # or: .venv/bin/python bench/bench_pipeline.py --rows 10000 100000 1000000

For each size: generate the Telco-like CSV (bench/generate_data.py, seed 7; reused when already
there), then run `LocalPipeline(...).run(data)` -- exactly what `python -m pipeline run --local`
runs, with the default settings -- in a fresh process on a fresh workspace under bench/out/.
Per step wall times come from the pipeline's own Reporter callbacks. Peak RSS:
- "tree": the largest sum of RSS over the run's process and all its descendants (the training
  subprocess included), sampled from /proc every 20 ms;
- "largest process": getrusage's exact high-water mark of the biggest single process.
This is a virtual machine whose speed varies with its host (the same code has measured 1.4x
apart an hour apart), so each size also records a speed probe before and after (a fixed
pure-Python loop, `common.speed_probe`) and the CPU time the hypervisor stole during the run.
Prints a table; writes bench/out/pipeline-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate_data  # noqa: E402
from common import OUT, ROOT, SPEC_PATH, cpu_times, load_average, machine, save, speed_probe, table  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


# -- the child: one pipeline run -----------------------------------------------------------------
def child(data: Path, workspace: Path) -> int:
    from churn.config import PipelineSettings
    from churn.schema import FeatureSpec
    from pipeline.backends import Reporter
    from pipeline.runner import LocalPipeline, PipelineFailed, Workspace

    class Recorder(Reporter):
        def __init__(self) -> None:
            self.steps: dict[str, float] = {}

        def step_finished(self, step: str, seconds: float, detail: str) -> None:
            self.steps[step] = seconds
            print(f"  {step}: {seconds:.2f} s ({detail})", file=sys.stderr, flush=True)

        def step_failed(self, step: str, seconds: float, error: str) -> None:
            self.steps[step] = seconds
            print(f"  {step}: FAILED after {seconds:.2f} s: {error}", file=sys.stderr, flush=True)

    recorder = Recorder()
    pipeline = LocalPipeline(spec=FeatureSpec.load(SPEC_PATH), settings=PipelineSettings(),
                             workspace=Workspace(workspace), reporter=recorder)
    started = time.perf_counter()
    result: dict[str, Any] = {}
    try:
        outcome = pipeline.run(data, run_id="bench")
        result.update(status=outcome.status, auc=outcome.auc, records=outcome.records_ingested,
                      training_rows=outcome.training_rows)
    except PipelineFailed as exc:
        result.update(status="FAILED", error=f"{exc.error}: {exc.cause}"[:500])
    result["seconds"] = time.perf_counter() - started
    result["steps"] = recorder.steps
    # getrusage's exact high-water mark of the largest process of this run: this one or a (waited-for)
    # descendant, i.e. the ingest workers and the training process (Linux: KiB)
    result["largest_process_kib"] = max(resource.getrusage(who).ru_maxrss
                                        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    print(json.dumps(result), flush=True)
    return 0


# -- the parent: generate, run, watch memory -------------------------------------------------------
def _descendants(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                children = Path(f"/proc/{current}/task/{task}/children").read_text().split()
                stack.extend(int(c) for c in children)
        except OSError:
            continue
    return found


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


class TreeRss:
    """Samples the summed RSS of a process tree until stopped; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.02):
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, sum(_rss(p) for p in _descendants(self.pid)))
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_size(rows: int, seed: int, keep: bool) -> dict[str, Any]:
    started = time.perf_counter()
    data = generate_data.ensure(OUT / f"telco-{rows}.csv", rows, seed)
    generated = time.perf_counter() - started
    workspace = OUT / f"workspace-{rows}"
    shutil.rmtree(workspace, ignore_errors=True)
    probe_before = speed_probe()
    load_before = load_average()
    cpu_before = cpu_times()
    print(f"{rows:,} rows ({data.stat().st_size / 1e6:.0f} MB CSV, generated/reused in {generated:.1f} s), "
          f"load average {load_average()}", file=sys.stderr, flush=True)
    process = subprocess.Popen([sys.executable, __file__, "--child", str(data), str(workspace)],
                               stdout=subprocess.PIPE, text=True, cwd=ROOT)
    with TreeRss(process.pid) as sampler:
        stdout, _ = process.communicate()
    cpu_after = cpu_times()
    result = json.loads(stdout.strip().splitlines()[-1])
    result.update(rows=rows, csv_mb=data.stat().st_size / 1e6, peak_rss_tree_mib=sampler.peak / 2**20,
                  peak_rss_largest_process_mib=result.pop("largest_process_kib") / 1024,
                  load_average_before=load_before, load_average_after=load_average(),
                  cpu_busy_s=round(cpu_after["busy"] - cpu_before["busy"], 1),
                  cpu_steal_s=round(cpu_after["steal"] - cpu_before["steal"], 1),
                  speed_probe_before_s=probe_before, speed_probe_after_s=speed_probe())
    if not keep:
        shutil.rmtree(workspace, ignore_errors=True)
    return result


def render(facts: dict[str, Any], results: list[dict[str, Any]]) -> None:
    steps_seen: list[str] = []
    for r in results:
        steps_seen += [step for step in r["steps"] if step not in steps_seen]
    headers = ["rows", *steps_seen, "total s", "s per 100k rows", "peak RSS tree MiB", "largest process MiB",
               "status", "AUC"]
    lines = []
    for r in results:
        steps = [r["steps"].get(step, "-") for step in steps_seen]
        auc = r.get("auc")
        lines.append([r["rows"], *steps, r["seconds"], r["seconds"] / r["rows"] * 1e5, r["peak_rss_tree_mib"],
                      r["peak_rss_largest_process_mib"] or "-", r["status"], f"{auc:.3f}" if auc else "-"])
    print("\nLocal pipeline end to end (LocalPipeline.run, default settings), wall seconds per step")
    print(f"machine: {facts['cpu']}, {facts['cpus']} CPUs, {facts['memory_gib']} GiB, Python {facts['python']}; "
          f"load average before {facts['load_average_before']}, after {facts['load_average_after']}\n")
    print(table(headers, lines))
    for r in results:
        if r["status"] != "SUCCEEDED":
            print(f"\n{r['rows']:,} rows: {r.get('error')}")
        print(f"{r['rows']:,} rows: load average before {r.get('load_average_before', '?')}, "
              f"after {r.get('load_average_after', '?')}", end="")
        if "speed_probe_before_s" in r:
            print(f"; CPU busy {r['cpu_busy_s']} s, stolen by the host {r['cpu_steal_s']} s; "
                  f"speed probe {r['speed_probe_before_s']:.3f} s before, {r['speed_probe_after_s']:.3f} s after "
                  "(lower is faster)", end="")
        print()
    for rows in dict.fromkeys(r["rows"] for r in results):
        runs = [r for r in results if r["rows"] == rows and r["status"] == "SUCCEEDED"]
        if len(runs) > 1:
            totals = sorted(r["seconds"] for r in runs)
            probes = [r[key] for r in runs for key in ("speed_probe_before_s", "speed_probe_after_s") if key in r]
            spread = f"; speed probe {min(probes):.3f}-{max(probes):.3f} s" if probes else ""
            print(f"{rows:,} rows, {len(runs)} runs: total s min {totals[0]:.1f}, median "
                  f"{statistics.median(totals):.1f}, max {totals[-1]:.1f}{spread}")


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 4 and sys.argv[1] == "--child":
        return child(Path(sys.argv[2]), Path(sys.argv[3]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep-workspaces", action="store_true")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run each size this many times in a row and print the spread of the totals "
                             "(this VM's speed varies by up to 1.5x)")
    parser.add_argument("--from-json", type=Path, help="print the table of an earlier run's JSON and exit")
    args = parser.parse_args(argv)
    if args.from_json:
        saved = json.loads(args.from_json.read_text(encoding="utf-8"))
        render(saved["machine"], saved["results"])
        return 0
    facts = machine()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    results = [run_size(rows, args.seed, args.keep_workspaces) for rows in args.rows for _ in range(args.repeat)]
    facts["load_average_after"] = load_average()
    render(facts, results)
    path = save("pipeline", {"machine": facts, "results": results})
    print(f"\nraw results: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
