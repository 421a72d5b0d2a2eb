"""Local "Ingest features" on every core: the Lambda's batch code in worker processes.

On AWS each Distributed Map batch runs in its own Lambda container. Locally, threads cannot do
that: converting rows and validating records is Python work that holds the GIL, so a thread pool
uses one core however many it has. Here each worker process is one "container": it opens its own
`LocalFeatureStore` on the shared root (the store supports several processes: SQLite WAL for the
online store, uniquely named Parquet files for the offline store), runs
`churn.ingest.ingest_batch` -- the handler's code -- on the batches it is given, and flushes its
store when the input ends. The parent streams the CSV in the state machine's batch size through
a bounded queue, so memory stays flat whatever the file size.

Worker processes are spawned (a fresh interpreter each, as a Lambda container is; nothing is
inherited from the parent's open SQLite connection), which costs ~2-3 s of imports, so the
caller uses them only for files large enough to repay it.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_REPORTED_FAILURES = 100  # per worker: the step's error shows 5 and the total count


@dataclass
class IngestTotals:
    ingested: int = 0
    failed_count: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)  # the first few, for the message


class IngestWorkerError(RuntimeError):
    """A worker process failed (not a bad record: those are counted, this is a crash)."""


def _worker(store_args: dict[str, Any], group: str, spec_json: str, event_time: str, tasks, results) -> None:
    try:
        from churn.ingest import ingest_batch
        from churn.schema import FeatureSpec
        from pipeline.feature_store import LocalFeatureStore

        spec = FeatureSpec.from_json(spec_json, origin="ingest worker")
        totals = IngestTotals()
        with LocalFeatureStore(**store_args) as store:
            while True:
                batch = tasks.get()
                if batch is None:
                    break
                result = ingest_batch(batch, spec=spec, feature_group_name=group, event_time=event_time,
                                      client=store, max_workers=1)
                totals.ingested += result.ingested
                totals.failed_count += len(result.failed)
                room = MAX_REPORTED_FAILURES - len(totals.failed)
                if room > 0:
                    totals.failed += result.failed[:room]
        results.put(("done", totals))  # after close(): everything this worker put is on disk
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        results.put(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


def ingest_in_processes(
    batches: Iterable[list[dict[str, str]]],
    *,
    store_root: Path,
    store_args: dict[str, Any],
    group: str,
    spec_json: str,
    event_time: str,
    processes: int,
) -> IngestTotals:
    """Run `ingest_batch` over `batches` in `processes` worker processes; return the totals."""
    context = mp.get_context("spawn")
    tasks = context.Queue(maxsize=2 * processes)  # bounded: the file is streamed, not loaded
    results = context.Queue()
    args = {"root": str(store_root), **store_args}
    workers = [
        context.Process(target=_worker, args=(args, group, spec_json, event_time, tasks, results),
                        name=f"ingest-worker-{i}", daemon=True)
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    reports: list[tuple[str, Any]] = []

    def check() -> None:
        """Raise if a worker reported an error or died without reporting."""
        while True:
            try:
                reports.append(results.get_nowait())
            except queue.Empty:
                break
        errors = [detail for status, detail in reports if status == "error"]
        if errors:
            raise IngestWorkerError(f"an ingest worker failed: {errors[0]}")
        dead = [w for w in workers if w.exitcode not in (None, 0)]
        if dead:
            raise IngestWorkerError(f"ingest worker {dead[0].name} died with exit code {dead[0].exitcode}")

    def put(item: list[dict[str, str]] | None) -> None:
        while True:
            try:
                tasks.put(item, timeout=1.0)
                return
            except queue.Full:
                check()

    try:
        for batch in batches:
            put(batch)
        for _ in workers:
            put(None)
        while sum(1 for status, _ in reports if status == "done") < len(workers):
            try:
                reports.append(results.get(timeout=1.0))
            except queue.Empty:
                pass
            check()
        for worker in workers:
            worker.join(timeout=30)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
                worker.join(timeout=5)
        tasks.close()
        results.close()
    totals = IngestTotals()
    for _, report in reports:
        totals.ingested += report.ingested
        totals.failed_count += report.failed_count
        totals.failed += report.failed
    return totals
