"""Batch scoring, written once: rank the model's churn probabilities and write scores.csv.

The "Rank scores" Lambda runs it on the Batch Transform output in S3; the local runner runs it on
the same output written by the same serving functions. Standard library only (it runs in Lambda).

scores.csv: `<record id name>,churn_probability,rank,model_version`, one row per customer, highest
probability first (rank 1), ties in record-id order so the ranking is deterministic.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

SCORES_FILE = "scores.csv"
PROBABILITY_COLUMN = "churn_probability"  # what the training script's output_fn writes
RANK_COLUMN = "rank"
MODEL_VERSION_COLUMN = "model_version"
TRANSFORM_OUTPUT_SUFFIX = ".out"  # Batch Transform names its output <input file name>.out
TOP_CUSTOMERS = 5


class ScoringError(ValueError):
    """The transform output cannot be ranked (the message names the source and the row)."""


@dataclass(frozen=True)
class Score:
    record_id: str
    probability: float
    rank: int

    def to_dict(self) -> dict[str, Any]:
        return {"record_id": self.record_id, PROBABILITY_COLUMN: self.probability, RANK_COLUMN: self.rank}


def score_columns(id_column: str) -> list[str]:
    return [id_column, PROBABILITY_COLUMN, RANK_COLUMN, MODEL_VERSION_COLUMN]


def model_version_from_arn(model_package_arn: str) -> str:
    """`arn:...:model-package/<group>/7` -> "7" (a versioned package's ARN ends in its version)."""
    tail = model_package_arn.rstrip("/").rpartition("/")[2]
    return tail if tail.isdigit() else model_package_arn


def _probability(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ScoringError(f"{where}: churn probability {text!r} is not a number") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ScoringError(f"{where}: churn probability {text!r} is not between 0 and 1")
    return value


def read_predictions(lines: Iterable[str], id_column: str, source: str) -> Iterator[tuple[str, float]]:
    """(record id, probability) pairs from the serving output `<id>,churn_probability`.

    One request gives one header (SplitType None); with SplitType Line every mini-batch's response
    starts with its own header, so a header row is skipped wherever it appears.
    """
    header = [id_column, PROBABILITY_COLUMN]
    for number, row in enumerate(csv.reader(lines), start=1):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        cells = [cell.strip() for cell in row]
        if number == 1 and cells:
            cells[0] = cells[0].lstrip("\ufeff")
        if cells == header:
            continue
        where = f"{source} line {number}"
        if len(cells) != 2:
            raise ScoringError(f"{where}: expected 2 columns ({id_column},{PROBABILITY_COLUMN}), got {len(cells)}")
        if not cells[0]:
            raise ScoringError(f"{where}: the {id_column} is empty (did the scoring input lose its id column?)")
        yield cells[0], _probability(cells[1], where)


def rank(predictions: Iterable[tuple[str, float]]) -> list[Score]:
    """Highest probability first; equal probabilities in record-id order. Ranks run 1..N."""
    seen: set[str] = set()
    pairs = []
    for record_id, probability in predictions:
        if record_id in seen:
            raise ScoringError(f"record {record_id!r} was scored twice: the scoring set must have one row per record")
        seen.add(record_id)
        pairs.append((record_id, probability))
    if not pairs:
        raise ScoringError("the transform output holds no predictions")
    pairs.sort(key=lambda pair: (-pair[1], pair[0]))
    return [Score(record_id, probability, number) for number, (record_id, probability) in enumerate(pairs, start=1)]


def format_probability(probability: float) -> str:
    return f"{probability:.6f}"


def write_scores(scores: Iterable[Score], stream: IO[str], id_column: str, model_version: str) -> int:
    """scores.csv into a text stream; returns the number of rows."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(score_columns(id_column))
    count = 0
    for score in scores:
        writer.writerow([score.record_id, format_probability(score.probability), score.rank, model_version])
        count += 1
    return count


def scores_csv(scores: Iterable[Score], id_column: str, model_version: str) -> str:
    buffer = io.StringIO()
    write_scores(scores, buffer, id_column, model_version)
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
    if len(header) != 4 or header[1:] != [PROBABILITY_COLUMN, RANK_COLUMN, MODEL_VERSION_COLUMN]:
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
        rows.append(ScoreRow(row[0], _probability(row[1], where), position, row[3]))
        if limit is not None and len(rows) >= limit:
            break
    return header[0], rows
