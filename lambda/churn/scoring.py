"""Batch scoring, written once: rank the model's churn probabilities and write scores.csv.

The "Rank scores" Lambda runs it on the Batch Transform output in S3; the local runner runs it on
the same output written by the same serving functions. Standard library only (it runs in Lambda).

scores.csv: `<record id name>,churn_probability,rank,model_version`, one row per customer, highest
probability first (rank 1), ties in record-id order so the ranking is deterministic.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import count, repeat
from typing import IO, Any

PROBABILITY_COLUMN = "churn_probability"  # what the training script's output_fn writes
RANK_COLUMN = "rank"
MODEL_VERSION_COLUMN = "model_version"
SCORE_COLUMNS = (PROBABILITY_COLUMN, RANK_COLUMN, MODEL_VERSION_COLUMN)  # scores.csv's, after the record id
# The largest request of the "Score customers" transform (SplitType Line + MultiRecord: whole lines up
# to this size per request), on AWS and locally. In script mode the XGBoost container's model server
# sets no body limit (nginx client_max_body_size 0); bounded requests keep each one's memory and time
# small whatever the number of customers.
TRANSFORM_MAX_PAYLOAD_MB = 5
TOP_CUSTOMERS = 5


class ScoringError(ValueError):
    """The transform output cannot be ranked (the message names the source and the row)."""


def model_version_from_arn(model_package_arn: str) -> str:
    """`arn:...:model-package/<group>/7` -> "7" (a versioned package's ARN ends in its version)."""
    tail = model_package_arn.rstrip("/").rpartition("/")[2]
    return tail if tail.isdigit() else model_package_arn


def read_predictions(lines: Iterable[str], id_column: str, source: str) -> Iterator[tuple[str, float]]:
    """(record id, probability) pairs from the serving output `<id>,churn_probability`.

    The "Score customers" transform sends requests of whole lines (SplitType Line + MultiRecord) and
    every response starts with its own header, so a header row is skipped wherever it appears.
    "line N" in an error is the Nth csv row.
    """
    for number, row in enumerate(csv.reader(lines), start=1):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != 2:
            raise ScoringError(f"{source} line {number}: expected 2 columns ({id_column},{PROBABILITY_COLUMN}), "
                               f"got {len(row)}")
        record_id = row[0].strip().lstrip("\ufeff") if number == 1 else row[0].strip()
        if record_id == id_column:
            if row[1].strip() == PROBABILITY_COLUMN:
                continue  # a response's header
            raise ScoringError(f"{source} line {number}: a header {row[0].strip()},{row[1].strip()} where {id_column},"
                               f"{PROBABILITY_COLUMN} was expected")
        if not record_id:
            raise ScoringError(f"{source} line {number}: the {id_column} is empty (did the scoring input lose its id "
                               "column?)")
        yield record_id, _probability(row[1], source, number)


def _probability(text: str, source: str, number: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ScoringError(f"{source} line {number}: churn probability {text.strip()!r} is not a number") from None
    if not 0.0 <= value <= 1.0:  # NaN fails this too
        raise ScoringError(f"{source} line {number}: churn probability {text.strip()!r} is not between 0 and 1")
    return value


@dataclass(frozen=True)
class Ranking:
    """Every customer in rank order: rank N is position N - 1 of both lists."""

    record_ids: list[str]
    probabilities: list[float]

    def __len__(self) -> int:
        return len(self.record_ids)

    def top(self, count: int) -> list[dict[str, Any]]:
        """The first `count` customers, as a run's result lists them."""
        pairs = zip(self.record_ids[:count], self.probabilities[:count], strict=True)
        return [{"record_id": record_id, PROBABILITY_COLUMN: probability, RANK_COLUMN: position}
                for position, (record_id, probability) in enumerate(pairs, start=1)]


def rank(predictions: Iterable[tuple[str, float]]) -> Ranking:
    """Highest probability first; equal probabilities in record-id order.

    The predictions are read in order, so the first record scored twice, or the first bad row, is the error.
    """
    by_id: dict[str, float] = {}
    for record_id, probability in predictions:
        if record_id in by_id:
            raise ScoringError(f"record {record_id!r} was scored twice: the scoring set must have one row per record")
        by_id[record_id] = probability
    if not by_id:
        raise ScoringError("the transform output holds no predictions")
    # Two stable sorts on plain keys (ids, then probabilities descending) instead of one on (-p, id)
    # tuples: Python compares floats and strings directly but tuples element by element (2x at 1M rows).
    record_ids = sorted(by_id)
    record_ids.sort(key=by_id.__getitem__, reverse=True)
    return Ranking(record_ids, [by_id[record_id] for record_id in record_ids])


def write_scores(ranking: Ranking, stream: IO[str], id_column: str, model_version: str) -> None:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow([id_column, *SCORE_COLUMNS])
    writer.writerows(zip(ranking.record_ids, map("{:.6f}".format, ranking.probabilities), count(1),
                         repeat(model_version)))


def scores_csv(ranking: Ranking, id_column: str, model_version: str) -> str:
    buffer = io.StringIO()
    write_scores(ranking, buffer, id_column, model_version)
    return buffer.getvalue()


@dataclass(frozen=True)
class ScoreRow:
    """One row of scores.csv as read back."""

    record_id: str
    probability: float
    rank: int
    model_version: str

    def to_dict(self) -> dict[str, Any]:
        return {"record_id": self.record_id, PROBABILITY_COLUMN: self.probability, RANK_COLUMN: self.rank,
                MODEL_VERSION_COLUMN: self.model_version}


def read_scores(lines: Iterable[str], source: str, limit: int | None = None) -> tuple[str, list[ScoreRow]]:
    """(id column name, the first `limit` rows) of a scores.csv, which is written in rank order.

    Reads no further than it needs, so the top N of a large file costs N rows.
    """
    reader = csv.reader(lines)
    header = next(reader, None)
    if not header:
        raise ScoringError(f"{source}: empty file")
    header = [cell.strip() for cell in header]
    header[0] = header[0].lstrip("\ufeff")
    if tuple(header[1:]) != SCORE_COLUMNS:
        raise ScoringError(f"{source}: not a scores file (header {header})")
    rows: list[ScoreRow] = []
    if limit is not None and limit <= 0:
        return header[0], rows
    for number, row in enumerate(reader, start=2):
        if not row:
            continue
        where = f"{source} line {number}"
        if len(row) != 4:
            raise ScoringError(f"{where}: expected 4 columns, got {len(row)}")
        try:
            position = int(row[2])
        except ValueError:
            raise ScoringError(f"{where}: rank {row[2]!r} is not a whole number") from None
        if position != len(rows) + 1:
            raise ScoringError(f"{where}: rank {position} out of order (expected {len(rows) + 1})")
        rows.append(ScoreRow(row[0], _probability(row[1], source, number), position, row[3]))
        if limit is not None and len(rows) >= limit:
            break
    return header[0], rows
