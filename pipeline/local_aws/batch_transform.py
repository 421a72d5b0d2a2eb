"""How Batch Transform cuts an input object into requests and joins the responses, for local runs.

The stack's "Score customers" job uses SplitType Line + BatchStrategy MultiRecord + AssembleWith
Line (stacks/training_pipeline.py): SageMaker reads the scoring set line by line, packs as many whole
lines as fit in MaxPayloadInMB into one request (the header is just the first line of the first
request), and writes the responses one after another, each ending in a newline, to
`<input name>.out`. The local pipeline and the moto harness both go through these two functions, so
the serving code sees locally exactly the requests it gets on AWS.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO

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
    eof = False
    while pending or not eof:
        while not eof and len(pending) <= max_payload_bytes:
            block = stream.read(max(READ_BYTES, max_payload_bytes + 1 - len(pending)))
            if block:
                pending += block
            else:
                eof = True
        if not pending:
            return
        if len(pending) <= max_payload_bytes:  # the rest of the input fits in one request
            yield pending
            return
        cut = pending.rfind(b"\n", 0, max_payload_bytes) + 1  # just past the last line that fits whole
        if cut == 0:
            raise PayloadTooLarge(
                f"{source}, line {line_number}: the line is longer than the transform's MaxPayloadInMB "
                f"({max_payload_bytes:,} bytes); Batch Transform cannot send it in one request"
            )
        request, pending = pending[:cut], pending[cut:]
        line_number += request.count(b"\n")
        yield request


def assemble_lines(responses: Iterable[bytes]) -> Iterator[bytes]:
    """AssembleWith Line: every response, then a newline (one, whether or not the response ended in one)."""
    for response in responses:
        yield response.rstrip(b"\n") + b"\n"
