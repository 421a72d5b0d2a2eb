"""A Batch Transform job on this machine: the serving container's functions over one input object.

The stack's "Score customers" job uses SplitType Line + BatchStrategy MultiRecord + AssembleWith
Line (stacks/scoring.py): SageMaker reads the scoring set line by line, packs as many whole lines as
fit in MaxPayloadInMB into one request (the header is just the first line of the first request),
calls the model server with each, and writes the responses one after another, each ending in a
newline, to `<input name>.out`. The local run and the moto harness both cut and join requests with
`mini_batches` and `assemble_lines`, so the serving code sees locally exactly the requests it gets on AWS.
"""

from __future__ import annotations

import importlib
import io
import os
import secrets
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from churn.layout import TRANSFORM_OUTPUT_SUFFIX

CONTENT_TYPE = "text/csv"  # of the scoring set and of the serving responses

READ_BYTES = 1 << 20


class PayloadTooLarge(ValueError):
    """One line of the input is longer than MaxPayloadInMB: Batch Transform cannot send it."""


def mini_batches(stream: BinaryIO, max_payload_bytes: int, source: str = "input") -> Iterator[bytes]:
    """Requests of whole lines (each with its newline), each at most `max_payload_bytes` long, in order.

    Lines are packed greedily: a request ends where the next line would not fit. The stream is read
    a request at a time, so memory stays at about one request whatever the input size.
    """
    if max_payload_bytes < 1:
        raise ValueError(f"max_payload_bytes must be positive, got {max_payload_bytes}")
    pending = b""
    line_number = 1  # of the first line in `pending`
    while block := stream.read(max(READ_BYTES, max_payload_bytes + 1 - len(pending))):
        pending += block
        while len(pending) > max_payload_bytes:  # more than one request's worth: cut the first
            cut = pending.rfind(b"\n", 0, max_payload_bytes) + 1  # just past the last line that fits whole
            if cut == 0:
                raise PayloadTooLarge(
                    f"{source}, line {line_number}: the line is longer than the transform's MaxPayloadInMB "
                    f"({max_payload_bytes:,} bytes); Batch Transform cannot send it in one request"
                )
            request, pending = pending[:cut], pending[cut:]
            line_number += request.count(b"\n")
            yield request
    if pending:  # the rest of the input fits in one request
        yield pending


def assemble_lines(responses: Iterable[bytes]) -> Iterator[bytes]:
    """AssembleWith Line: every response, then a newline (one, whether or not the response ended in one)."""
    for response in responses:
        yield response.rstrip(b"\n") + b"\n"


def serving_module(code_dir: Path, entry_point: str) -> Any:
    """The entry point imported as the container's model server imports it: the code directory on
    sys.path (the training folder is not a package and imports nothing of the project)."""
    folder = str(Path(code_dir).resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(Path(entry_point).stem)


@contextmanager
def extracted_model(artifact: Path | bytes) -> Iterator[Path]:
    """A model.tar.gz (path or bytes) unpacked into a temporary directory, as SageMaker unpacks it into
    /opt/ml/model before calling model_fn."""
    with tempfile.TemporaryDirectory(prefix="churn-model-") as folder:
        source = (tarfile.open(fileobj=io.BytesIO(artifact), mode="r:gz") if isinstance(artifact, bytes)
                  else tarfile.open(artifact, mode="r:gz"))
        with source as archive:
            archive.extractall(folder, filter="data")
        yield Path(folder)


def transform(serving: Any, model_dir: Path, source: Path, output_dir: Path, max_payload_bytes: int) -> Path:
    """Every request of `source` through model_fn/input_fn/predict_fn/output_fn; the responses joined
    line-wise into `<source name>.out`, which appears only once every request has succeeded."""
    output_dir.mkdir(parents=True, exist_ok=True)
    output = output_dir / f"{source.name}{TRANSFORM_OUTPUT_SUFFIX}"
    partial = output_dir / f".{output.name}.{secrets.token_hex(4)}.tmp"
    model = serving.model_fn(str(model_dir))
    where = str(source)

    def responses(stream: BinaryIO) -> Iterator[bytes]:
        nonlocal where
        first_line = 1
        for number, request in enumerate(mini_batches(stream, max_payload_bytes, str(source)), 1):
            lines = request.count(b"\n") + (not request.endswith(b"\n"))
            where = f"{source}, request {number} (lines {first_line}-{first_line + lines - 1})"
            body, _ = serving.output_fn(serving.predict_fn(serving.input_fn(request.decode("utf-8"), CONTENT_TYPE),
                                                           model), CONTENT_TYPE)
            yield body.encode("utf-8") if isinstance(body, str) else body
            first_line += lines

    try:
        with open(source, "rb") as stream, open(partial, "wb") as sink:
            sink.writelines(assemble_lines(responses(stream)))
        os.replace(partial, output)
    except PayloadTooLarge:
        raise
    except (ValueError, OSError) as exc:
        raise ValueError(f"{where}: {' '.join(str(exc).split())}") from None  # names the request and its lines
    finally:
        partial.unlink(missing_ok=True)
    return output
