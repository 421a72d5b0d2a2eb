"""Local "Ingest features": the ingest Lambda's batch code over a feature group's validated file.

On AWS each Distributed Map batch runs in a Lambda container of its own. Here a large file is cut
into chunks of whole lines and the chunks go to worker processes (converting rows and validating
records is Python work that holds the GIL, so threads would use one core); each worker is one
"container" with its own local feature store on the shared root, running `churn.ingest.ingest_batch`
on batches of the state machine's size, and flushing what it wrote at the end of every chunk. A small
file is ingested in this process: starting workers would cost more than a second core saves. Lines
can be cut anywhere because "Validate input" admits no value with a line break.
"""

from __future__ import annotations

import io
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from itertools import islice
from pathlib import Path
from typing import Any

from churn.csv_input import FIRST_DATA_LINE, iter_raw_rows
from churn.ingest import BatchResult, ingest_batch
from churn.schema import FeatureGroupSpec
from pipeline.local_aws.feature_store import LocalFeatureStore

# Files this big or larger go to worker processes (bench/README.md: where threads and processes cross).
PARALLEL_INGEST_MIN_BYTES = 5 * 2**20
CHUNK_BYTES = 4 * 2**20  # a worker's unit of work: small enough to keep both cores busy to the end

_store: LocalFeatureStore | None = None  # a worker process's own store


def _batches(rows: Iterator[tuple[int, dict[str, str]]], size: int) -> Iterator[list[tuple[int, dict[str, str]]]]:
    while batch := list(islice(rows, size)):
        yield batch


def _ingest_stream(store: LocalFeatureStore, stream: io.BufferedIOBase, job: dict[str, Any],
                   first_line: int = FIRST_DATA_LINE) -> BatchResult:
    """Every batch of the CSV `stream` (its header first), numbering its data rows from `first_line`."""
    total = BatchResult()
    rows = ((line - FIRST_DATA_LINE + first_line, row) for line, row in iter_raw_rows(stream, job["source"],
                                                                                           job["group"]))
    for batch in _batches(rows, job["batch_size"]):
        result = ingest_batch(batch, group=job["group"], feature_group_name=job["feature_group_name"],
                              event_time=job["event_time"], client=store, max_workers=1)
        total.add(result.to_dict())
    return total


def _open_worker_store(root: str, store_args: dict[str, Any]) -> None:
    global _store  # noqa: PLW0603 - one store per worker process, like one client per Lambda container
    _store = LocalFeatureStore(root, **store_args)


def _ingest_chunk(job: dict[str, Any], header: bytes, chunk: bytes, first_line: int) -> dict[str, Any]:
    assert _store is not None
    result = _ingest_stream(_store, io.BytesIO(header + chunk), job, first_line)
    _store.flush()  # the pool has no end-of-worker hook: everything a chunk wrote is on disk when it returns
    return result.to_dict()


def _chunks(stream: io.BufferedIOBase) -> Iterator[tuple[bytes, int]]:
    """(chunk of whole lines, the file line it starts on) after the header, CHUNK_BYTES at a time."""
    pending, line = b"", FIRST_DATA_LINE
    while block := stream.read(CHUNK_BYTES):
        pending += block
        cut = pending.rfind(b"\n") + 1
        if cut:
            yield pending[:cut], line
            line += pending.count(b"\n", 0, cut)
            pending = pending[cut:]
    if pending:
        yield pending, line


def ingest_file(store: LocalFeatureStore, path: Path, *, group: FeatureGroupSpec, feature_group_name: str,
                event_time: str, batch_size: int, processes: int) -> BatchResult:
    """Ingest a validated CSV into the group, in worker processes when it is large; the totals."""
    job = {"source": str(path), "group": group, "feature_group_name": feature_group_name, "event_time": event_time,
           "batch_size": batch_size}
    if processes < 2 or path.stat().st_size < PARALLEL_INGEST_MIN_BYTES:
        with open(path, "rb") as stream:
            return _ingest_stream(store, stream, job)
    store.flush()  # the workers' stores read the group's state from disk
    total = BatchResult()
    settings = {"account": store.account, "region": store.region, "flush_rows": store.flush_rows}
    context = multiprocessing.get_context("spawn")  # a fresh interpreter each, as a Lambda container is
    with open(path, "rb") as stream, ProcessPoolExecutor(
        processes, mp_context=context, initializer=_open_worker_store, initargs=(str(store.root), settings)
    ) as pool:
        header = stream.readline()
        pending: set[Future[dict[str, Any]]] = set()
        for chunk, line in _chunks(stream):
            pending.add(pool.submit(_ingest_chunk, job, header, chunk, line))
            if len(pending) >= 2 * processes:  # bounded: the file is streamed, not loaded
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    total.add(future.result())
        for future in pending:
            total.add(future.result())
    return total
