"""Local "Ingest features": the ingest Lambda's batch code over a feature group's validated file.

On AWS each Distributed Map batch runs in a Lambda container of its own. Here a large file is cut
into one share of whole lines a worker process (converting rows and validating records is Python
work that holds the GIL, so threads would use one core); each worker is one "container" with its own
local feature store on the shared root, reads its share of the file itself and runs
`churn.ingest.ingest_batch` on batches of the state machine's size. A small file is ingested in this
process: starting workers would cost more than a second core saves. Lines can be cut anywhere
because "Validate input" admits no value with a line break.
"""

from __future__ import annotations

import gc
import io
import multiprocessing
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from itertools import chain, islice
from pathlib import Path
from typing import Any

from churn.csv_input import FIRST_DATA_LINE, InputValidationError, iter_raw_rows
from churn.ingest import BatchResult, ingest_batch
from churn.schema import FeatureGroupSpec
from pipeline.local_aws.feature_store import LocalFeatureStore

# Files this big or larger go to worker processes (bench/README.md: where threads and processes cross).
PARALLEL_INGEST_MIN_BYTES = 5 * 2**20


def _ingest_stream(store: LocalFeatureStore, stream: io.BufferedIOBase, job: dict[str, Any],
                   first_line: int = FIRST_DATA_LINE) -> BatchResult:
    """Every batch of the CSV `stream` (its header first), numbering its data rows from `first_line`."""
    total, shift = BatchResult(), first_line - FIRST_DATA_LINE
    rows = ((line + shift, row) for line, row in iter_raw_rows(stream, job["source"], job["group"]))
    try:
        for first in rows:  # a batch's rows are read as it converts them, not held in a list first
            batch = chain([first], islice(rows, job["batch_size"] - 1))
            result = ingest_batch(batch, group=job["group"], feature_group_name=job["feature_group_name"],
                                  event_time=job["event_time"], client=store, max_workers=1)
            total.add(result.to_dict())
    except InputValidationError as exc:  # the file changed after Validate input; a share numbers lines from 1
        if not shift or exc.line is None or exc.line < FIRST_DATA_LINE:
            raise
        raise InputValidationError(exc.source, exc.reason, line=exc.line + shift, column=exc.column) from None
    return total


class _Share(io.RawIOBase):
    """The file's header line, then its bytes [start, end): a share read as a CSV file of its own."""

    def __init__(self, stream: io.BufferedIOBase, start: int, end: int):
        self.stream, self.pending, self.left = stream, stream.readline(), end - start
        stream.seek(start)

    def read(self, size: int = -1) -> bytes:
        if self.pending:
            head, self.pending = self.pending, b""
            return head
        data = self.stream.read(self.left if size < 0 else min(size, self.left))
        self.left -= len(data)
        return data


def _ingest_share(job: dict[str, Any], store_args: dict[str, Any], start: int, end: int, first_line: int
                  ) -> dict[str, Any]:
    """A worker process: the lines in bytes [start, end) of the file, into a store of its own."""
    # No cycle collection: reference counting frees a worker's rows, records and entries; the collector,
    # run every few hundred of the containers each row makes, found next to nothing to free (1,632 objects
    # in 200k rows) and cost 9 % of the 1M ingest (bench/README.md). The process ends with the pool.
    gc.disable()
    with open(job["source"], "rb") as stream, LocalFeatureStore(**store_args) as store:
        return _ingest_stream(store, _Share(stream, start, end), job, first_line).to_dict()


def _shares(path: Path, parts: int) -> list[tuple[int, int, int]]:
    """(start, end, first line) of `parts` byte ranges of whole lines after the header."""
    with open(path, "rb") as stream:
        stream.readline()
        begin, size = stream.tell(), path.stat().st_size
        cuts = [begin]
        for part in range(1, parts):
            stream.seek(max(cuts[-1], begin + (size - begin) * part // parts))
            stream.readline()  # on to the end of the line the cut fell into
            cuts.append(stream.tell())
        cuts.append(size)
        shares, line = [], FIRST_DATA_LINE
        for start, end in zip(cuts, cuts[1:], strict=False):
            stream.seek(start)
            shares.append((start, end, line))
            line += stream.read(end - start).count(b"\n")
    return [share for share in shares if share[0] < share[1]]


def ingest_file(store: LocalFeatureStore, path: Path, *, group: FeatureGroupSpec, feature_group_name: str,
                event_time: str, batch_size: int, processes: int) -> BatchResult:
    """Ingest a validated CSV into the group, a share of its lines a worker process when it is large."""
    job = {"source": str(path), "group": group, "feature_group_name": feature_group_name, "event_time": event_time,
           "batch_size": batch_size}
    if processes < 2 or path.stat().st_size < PARALLEL_INGEST_MIN_BYTES:
        with open(path, "rb") as stream:
            return _ingest_stream(store, stream, job)
    store.flush()  # the workers' stores read the group's state from disk
    store_args = {"root": str(store.root), "account": store.account, "region": store.region,
                  "flush_rows": store.flush_rows}
    total = BatchResult()
    context = multiprocessing.get_context("spawn")  # a fresh interpreter each, as a Lambda container is
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        try:
            with _workers_deaf_to_ctrl_c():
                results = [pool.submit(_ingest_share, job, store_args, *share) for share in _shares(path, processes)]
            for result in results:
                total.add(result.result())
        except KeyboardInterrupt:  # the pool would otherwise wait for the workers to finish their shares
            for worker in multiprocessing.active_children():
                worker.terminate()
            raise
    return total


@contextmanager
def _workers_deaf_to_ctrl_c() -> Iterator[None]:
    """Workers started inside never see SIGINT: it is blocked while they start (a signal mask is inherited).
    Ctrl-C in a terminal reaches the whole process group; a worker interrupted while starting or idle would
    print a traceback of its own, so this process stops them instead. A Ctrl-C meanwhile is held until the
    workers have started (interrupting a start half-way leaves a worker without its instructions) and
    raised then."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set a handler
        yield
        return
    caught: list[int] = []
    handler = signal.signal(signal.SIGINT, lambda number, frame: caught.append(number))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, handler)
    if caught:
        raise KeyboardInterrupt
