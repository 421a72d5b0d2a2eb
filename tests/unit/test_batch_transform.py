"""Batch Transform's SplitType Line + MultiRecord cutting and AssembleWith Line joining
(pipeline.local_aws.batch_transform), which the local pipeline and the moto harness both use."""

from __future__ import annotations

import io
import random

import pytest

from pipeline.local_aws import batch_transform
from pipeline.local_aws.batch_transform import PayloadTooLarge, assemble_lines, mini_batches


def greedy_reference(body: bytes, limit: int) -> list[bytes]:
    """Line by line: a request ends where the next whole line would not fit."""
    requests: list[bytes] = []
    *whole, last = body.split(b"\n")
    current = b""
    for line in [line + b"\n" for line in whole] + ([last] if last else []):
        if current and len(current) + len(line) > limit:
            requests.append(current)
            current = b""
        current += line
    if current:
        requests.append(current)
    return requests


def lines_body(rng: random.Random) -> bytes:
    lines = [b"x" * rng.randint(0, 40) for _ in range(rng.randint(0, 60))]
    body = b"\n".join(lines)
    return body + (b"\n" if rng.random() < 0.7 else b"")


@pytest.mark.parametrize("read_bytes", [3, 64, 1 << 20])
def test_requests_are_whole_lines_packed_greedily_up_to_the_payload(monkeypatch, read_bytes):
    monkeypatch.setattr(batch_transform, "READ_BYTES", read_bytes)  # small reads cross every boundary
    rng = random.Random(11)
    checked = 0
    for _ in range(400):
        body = lines_body(rng)
        longest = max((len(line) + 1 for line in body.split(b"\n")), default=1)
        limit = rng.randint(longest, longest * 6)
        requests = list(mini_batches(io.BytesIO(body), limit))
        assert b"".join(requests) == body
        assert all(0 < len(r) <= limit for r in requests)
        assert all(r.endswith(b"\n") for r in requests[:-1])  # only the last may lack its newline
        assert requests == greedy_reference(body, limit)
        checked += len(requests) > 1
    assert checked > 100  # most inputs needed several requests


def test_crlf_lines_are_cut_after_their_newline():
    body = b"h1,h2\r\na,1\r\nb,2\r\nc,3\r\n"
    assert list(mini_batches(io.BytesIO(body), 13)) == [b"h1,h2\r\na,1\r\n", b"b,2\r\nc,3\r\n"]


def test_an_empty_input_sends_no_request():
    assert list(mini_batches(io.BytesIO(b""), 10)) == []


def test_a_line_longer_than_the_payload_is_an_error_naming_it():
    body = b"header\nshort\n" + b"y" * 30 + b"\nafter\n"
    requests = mini_batches(io.BytesIO(body), 20, "s3://bucket/scores/x/input/scoring-set.csv")
    assert next(requests) == b"header\nshort\n"
    with pytest.raises(PayloadTooLarge, match=r"scoring-set\.csv, line 3: the line is longer than the "
                                              r"transform's MaxPayloadInMB \(20 bytes\)"):
        next(requests)


def test_the_payload_must_be_positive():
    with pytest.raises(ValueError, match="must be positive"):
        list(mini_batches(io.BytesIO(b"a\n"), 0))


def test_assemble_with_line_ends_every_response_with_one_newline():
    responses = [b"id,p\na,0.1\n", b"id,p\nb,0.2", b"id,p\nc,0.3\n\n"]
    assert b"".join(assemble_lines(responses)) == b"id,p\na,0.1\nid,p\nb,0.2\nid,p\nc,0.3\n"
