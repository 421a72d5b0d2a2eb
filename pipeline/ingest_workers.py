"""Local "Ingest features" on every core: the Lambda's batch code in worker processes.

On AWS each Distributed Map batch runs in its own Lambda container. Locally, threads cannot do
that: converting rows and validating records is Python work that holds the GIL, so a thread pool
uses one core however many it has. Here each worker process is one "container": it opens its own
`LocalFeatureStore` on the shared root (the store supports several processes: one SQLite file that
they write in turn, and uniquely named Parquet files for the offline store), runs
`churn.ingest.ingest_batch` -- the handler's code -- on batches of the state machine's batch size,
and flushes its store when the input ends. The parent only cuts the file into chunks of whole CSV
records (`split_csv`, a few MiB each) and hands them out through a bounded queue: each worker
parses its chunks with the same reader as everywhere else (`churn.csv_input.iter_raw_rows`), so
the CSV parsing runs on every core too, and memory stays flat whatever the file size.

Worker processes are spawned (a fresh interpreter each, as a Lambda container is; nothing is
inherited from the parent's open SQLite connection), which costs ~0.5 s of start-up and imports
(0.43-0.49 s measured), so the caller uses them only for files large enough to repay it.
"""

from __future__ import annotations

import csv
import io
import multiprocessing as mp
import queue
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

MAX_REPORTED_FAILURES = 100  # per worker: the step's error shows 5 and the total count
CHUNK_BYTES = 2 * 2**20  # ~11k Telco rows: small enough to keep both workers busy to the end


def batches(rows: Iterator[tuple[int, dict[str, str]]], size: int) -> Iterator[list[dict[str, str]]]:
    """`iter_raw_rows` output in lists of at most `size` rows (the Distributed Map's item batches)."""
    while True:
        batch = [row for _, row in islice(rows, size)]
        if not batch:
            return
        yield batch


def _record_end(data: bytes, first_only: bool = False) -> int:
    """Offset just past the last (or the first) complete CSV record in `data`; 0 when there is none.

    Without a quote character every newline ends a record. With quotes, a newline may sit inside a
    quoted field, so the records are found by the csv module itself (strict, as the validator reads).
    UTF-8 never has a newline or quote byte inside a multi-byte character, so cutting bytes is safe.
    """
    if b'"' not in data:
        end = data.find(b"\n") if first_only else data.rfind(b"\n")
        return end + 1
    ends: list[int] = []

    def lines() -> Iterator[str]:
        start = 0
        while (newline := data.find(b"\n", start)) >= 0:
            ends.append(newline + 1)
            yield data[start : newline + 1].decode("utf-8", "replace")
            start = newline + 1

    last = 0
    try:
        for _ in csv.reader(lines(), strict=True):
            last = ends[-1]  # the row just read ended with the last line handed to the reader
            if first_only:
                break
    except csv.Error:
        pass  # an unfinished quoted field at the end of `data`: the record continues in the next block
    return last


def split_csv(stream: io.BufferedIOBase, chunk_bytes: int = CHUNK_BYTES) -> tuple[bytes, Iterator[bytes]]:
    """(header record, chunks of whole records) of a CSV byte stream, read `chunk_bytes` at a time.

    A worker parses `header + chunk` as a small CSV file of its own.
    """
    data = b""
    cut = 0
    while not cut:
        block = stream.read(chunk_bytes)
        if not block:
            return data, iter(())
        data += block
        cut = _record_end(data, first_only=True)
    header, rest = data[:cut], data[cut:]

    def chunks() -> Iterator[bytes]:
        pending = rest
        while block := stream.read(chunk_bytes):
            pending += block
            end = _record_end(pending)
            if end:
                yield pending[:end]
                pending = pending[end:]
        if pending:
            yield pending

    return header, chunks()


@dataclass
class IngestTotals:
    ingested: int = 0
    failed_count: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)  # the first few, for the message


class IngestWorkerError(RuntimeError):
    """A worker process failed (not a bad record: those are counted, this is a crash)."""


def _worker(store_args: dict[str, Any], job: dict[str, Any], tasks, results) -> None:
    try:
        from churn.csv_input import iter_raw_rows
        from churn.ingest import ingest_batch
        from churn.schema import FeatureSpec
        from pipeline.local_aws.feature_store import LocalFeatureStore

        spec = FeatureSpec.from_json(job["spec_json"], origin="ingest worker")
        header: bytes = job["header"]
        totals = IngestTotals()
        with LocalFeatureStore(**store_args) as store:
            while True:
                chunk = tasks.get()
                if chunk is None:
                    break
                rows = iter_raw_rows(io.BytesIO(header + chunk), job["source"], spec)
                for batch in batches(rows, job["batch_size"]):
                    result = ingest_batch(batch, spec=spec, feature_group_name=job["group"],
                                          event_time=job["event_time"], client=store, max_workers=1)
                    totals.ingested += result.ingested
                    totals.failed_count += len(result.failed)
                    room = MAX_REPORTED_FAILURES - len(totals.failed)
                    if room > 0:
                        totals.failed += result.failed[:room]
        results.put(("done", totals))  # after close(): everything this worker put is on disk
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        results.put(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


def ingest_in_processes(
    stream: io.BufferedIOBase,
    *,
    source: str,
    batch_size: int,
    store_root: Path,
    store_args: dict[str, Any],
    group: str,
    spec_json: str,
    event_time: str,
    processes: int,
    chunk_bytes: int = CHUNK_BYTES,
) -> IngestTotals:
    """Run `ingest_batch` over the CSV `stream` in `processes` worker processes; return the totals."""
    header, chunks = split_csv(stream, chunk_bytes)
    context = mp.get_context("spawn")
    tasks = context.Queue(maxsize=2 * processes)  # bounded: the file is streamed, not loaded
    results = context.Queue()
    args = {"root": str(store_root), **store_args}
    job = {"header": header, "source": source, "batch_size": batch_size, "group": group, "spec_json": spec_json,
           "event_time": event_time}
    workers = [
        context.Process(target=_worker, args=(args, job, tasks, results), name=f"ingest-worker-{i}", daemon=True)
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

    def put(item: bytes | None) -> None:
        while True:
            try:
                tasks.put(item, timeout=1.0)
                return
            except queue.Full:
                check()

    try:
        for chunk in chunks:
            put(chunk)
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
