"""Batch scoring, written once: rank the model's churn probabilities and write scores.csv.

The "Rank scores" Lambda runs it on the Batch Transform output in S3; the local runner runs it on
the same output written by the same serving functions. Standard library only (it runs in Lambda).

scores.csv: `<record id name>,churn_probability,rank,model_version`, one row per customer, highest
probability first (rank 1), ties in record-id order so the ranking is deterministic.
"""

from __future__ import annotations

import csv
import gc
import io
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from itertools import count, islice, repeat
from operator import itemgetter, mul, neg
from typing import IO, Any, NamedTuple

SCORES_FILE = "scores.csv"
PROBABILITY_COLUMN = "churn_probability"  # what the training script's output_fn writes
RANK_COLUMN = "rank"
MODEL_VERSION_COLUMN = "model_version"
TRANSFORM_OUTPUT_SUFFIX = ".out"  # Batch Transform names its output <input file name>.out
# The largest request of the "Score customers" transform (SplitType Line + MultiRecord: whole lines up
# to this size per request), on AWS and locally. The XGBoost container's model server refuses bodies
# above 6 MiB by default (its serving.py, in the two versions read; the newer one takes
# MAX_CONTENT_LENGTH, at most 20 MiB), so a request stays below that default.
TRANSFORM_MAX_PAYLOAD_MB = 5
TOP_CUSTOMERS = 5


class ScoringError(ValueError):
    """The transform output cannot be ranked (the message names the source and the row)."""


# Rows are read, checked and written a batch at a time: the per-row work is done by C loops (map, zip,
# join) rather than Python statements, which is what makes 1,000,000 rows take seconds rather than
# tens of seconds. A batch with anything unusual in it (a header, a blank line, a bad row) goes
# through the per-row code instead, which is the only code that reports errors.
READ_BATCH = 1024
WRITE_BATCH = 4096


class Score(NamedTuple):
    """One ranked customer. A named tuple (made by the million, so it must be cheap to create)."""

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


def _prediction(row: list[str], number: int, id_column: str, source: str) -> tuple[str, float] | None:
    """One csv row of the transform output: (record id, probability), None for a blank or header row."""
    if not row or (len(row) == 1 and not row[0].strip()):
        return None
    cells = [cell.strip() for cell in row]
    if number == 1 and cells:
        cells[0] = cells[0].lstrip("\ufeff")
    if cells == [id_column, PROBABILITY_COLUMN]:
        return None
    where = f"{source} line {number}"
    if len(cells) != 2:
        raise ScoringError(f"{where}: expected 2 columns ({id_column},{PROBABILITY_COLUMN}), got {len(cells)}")
    if not cells[0]:
        raise ScoringError(f"{where}: the {id_column} is empty (did the scoring input lose its id column?)")
    return cells[0], _probability(cells[1], where)


_Columns = tuple[list[str], list[float]]  # record ids, probabilities


def _plain_columns(rows: list[list[str]]) -> _Columns | None:
    """The batch's record ids and probabilities if every row is an ordinary prediction, else None.

    What `_prediction` gives for each row, found by whole-batch operations: every row has 2 cells, no
    id is empty once stripped, every probability parses (so none is a header) and is within 0..1.
    `float` ignores the same surrounding whitespace `str.strip` removes, so the unstripped text gives
    the same number. The first row of a file (the byte-order mark) never comes here.
    """
    if list(map(len, rows)).count(2) != len(rows):
        return None
    ids, texts = zip(*rows, strict=True)
    record_ids = list(map(str.strip, ids))
    if "" in record_ids:
        return None
    try:
        probabilities = list(map(float, texts))
    except ValueError:
        return None
    total = sum(probabilities)  # NaN if any is NaN (min and max can miss one)
    if total != total or min(probabilities) < 0.0 or max(probabilities) > 1.0:
        return None
    return record_ids, probabilities


def _read_columns(lines: Iterable[str], id_column: str, source: str) -> Iterator[_Columns]:
    """`read_predictions` as (record ids, probabilities) a batch of rows at a time. The pairs before a
    bad row come out (as the last batch) before its error is raised, as do the rows read before an
    error from `lines` itself (a decoding error, say): as lazy as reading a row at a time."""
    reader = csv.reader(lines)
    number = 0
    while True:
        rows: list[list[str]] = []
        failure = None
        try:
            rows.extend(islice(reader, READ_BATCH))  # keeps the rows read before an exception
        except Exception as exc:  # noqa: BLE001 - raised again below, once the rows before it are out
            failure = exc
        start = 0
        if number == 0 and rows:  # the first row: the byte-order mark, and usually the header
            start = 1
            yield from _one_by_one(rows[:1], 0, id_column, source)
        plain = _plain_columns(rows[start:] if start else rows) if len(rows) > start else None
        if plain is not None:
            yield plain
        else:
            yield from _one_by_one(rows[start:], number + start, id_column, source)
        number += len(rows)
        if failure is not None:
            raise failure
        if len(rows) < READ_BATCH:
            return


def _one_by_one(rows: list[list[str]], after: int, id_column: str, source: str) -> Iterator[_Columns]:
    """Rows `after` + 1 on, a row at a time; the pairs before a bad row come out before its error."""
    ids: list[str] = []
    probabilities: list[float] = []
    failure = None
    for number, row in enumerate(rows, start=after + 1):
        try:
            pair = _prediction(row, number, id_column, source)
        except ScoringError as exc:
            failure = exc
            break
        if pair is not None:
            ids.append(pair[0])
            probabilities.append(pair[1])
    if ids:
        yield ids, probabilities
    if failure is not None:
        raise failure


def read_predictions(lines: Iterable[str], id_column: str, source: str) -> Iterator[tuple[str, float]]:
    """(record id, probability) pairs from the serving output `<id>,churn_probability`.

    The "Score customers" transform sends requests of whole lines (SplitType Line + MultiRecord) and
    every response starts with its own header, so a header row is skipped wherever it appears (one
    request, as SplitType None would send, gives one header). "line N" in an error is the Nth csv row
    (a quoted value can span lines).

    Lazy as a generator of single rows would be: the rows before a bad one are yielded before its
    error is raised, and an error from `lines` itself (a decoding error, say) is raised after the
    rows read before it.
    """
    for ids, probabilities in _read_columns(lines, id_column, source):
        yield from zip(ids, probabilities, strict=True)


@contextmanager
def _collection_paused() -> Iterator[None]:
    """No cyclic garbage collection while millions of tuples are made (none of them can be garbage)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _checked(pairs: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """The pairs, checked one at a time as they come: the first record scored twice is the error."""
    seen: set[str] = set()
    checked = []
    for record_id, probability in pairs:
        if record_id in seen:
            raise ScoringError(f"record {record_id!r} was scored twice: the scoring set must have one row per record")
        seen.add(record_id)
        checked.append((record_id, probability))
    return checked


def rank(predictions: Iterable[tuple[str, float]]) -> list[Score]:
    """Highest probability first; equal probabilities in record-id order. Ranks run 1..N.

    The first record scored twice is the error, even if something further on is wrong too.
    """
    with _collection_paused():
        checked = _checked(predictions)
        if not checked:
            raise ScoringError("the transform output holds no predictions")
        checked.sort(key=lambda pair: (-pair[1], pair[0]))
        return [Score(record_id, probability, rank) for rank, (record_id, probability) in enumerate(checked, start=1)]


def rank_outputs(outputs: Iterable[tuple[Iterable[str], str]], id_column: str) -> list[Score]:
    """`rank` of `read_predictions(lines, id_column, source)` for each (lines, source) in turn, chained:
    the same ranking and the same errors, without a (record id, probability) pair made per row."""
    ids: list[str] = []
    probabilities: list[float] = []
    with _collection_paused():
        try:
            for lines, source in outputs:
                for more_ids, more_probabilities in _read_columns(lines, id_column, source):
                    ids += more_ids
                    probabilities += more_probabilities
        except Exception:
            _raise_earlier_duplicate(zip(ids, probabilities, strict=True))
            raise
        if len(set(ids)) != len(ids):
            _checked(zip(ids, probabilities, strict=True))  # raises for the first record scored twice
        if not ids:
            raise ScoringError("the transform output holds no predictions")
        return _ranked(ids, probabilities)


def _raise_earlier_duplicate(pairs: Iterable[tuple[str, float]]) -> None:
    """Raise for a record scored twice before a failure further on: checked one at a time, it came first."""
    try:
        _checked(pairs)
    except Exception as earlier:  # noqa: BLE001 - what the one-at-a-time check raises, as it is
        raise earlier from None


def _ranked(ids: list[str], probabilities: list[float]) -> list[Score]:
    """The ranking of distinct string ids with float or int probabilities, none NaN. Empties both lists.

    The order is the one-at-a-time sort key, (-probability, record id), given by the last sort
    below. The sorts before it are for speed, as is everything being copied afresh in rank order on
    the way: the rows as read lie all over memory, and a pass over them in rank order waits on memory
    for each one. First, two sorts on one float each (C compares those fastest): the ids by their
    -probability (the key function hands out the next one, as list.sort calls it once per item, in
    order) and the same -probabilities, so both come out in the same order, ties as they were read.
    Then (-probability, id) pairs, copied in that order, sorted on both: in order already but for
    the ties, which is quick.
    """
    negated = list(map(neg, probabilities))
    probabilities.clear()
    ordered = sorted(ids, key=partial(next, iter(negated)))
    ids.clear()
    negated.sort()
    keyed = list(zip(map(mul, negated, repeat(1)), map("".join, zip(ordered, repeat(""))), strict=True))
    del ordered, negated
    keyed.sort()
    return list(map(tuple.__new__, repeat(Score),
                    zip(map(itemgetter(1), keyed), map(neg, map(itemgetter(0), keyed)), count(1))))


def format_probability(probability: float) -> str:
    return f"{probability:.6f}"


# What makes csv.writer (QUOTE_MINIMAL, lineterminator "\n") quote a value, and "\r", which later
# Pythons quote too: a batch with an id holding any of them is written by csv.writer itself.
_CSV_SPECIAL = (",", '"', "\n", "\r")


def _csv_cell(value: Any) -> str:
    """`value` as csv.writer writes it in a row of more than one value."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(["", value])
    return buffer.getvalue()[1:-1]


def write_scores(scores: Iterable[Score], stream: IO[str], id_column: str, model_version: str) -> int:
    """scores.csv into a text stream; returns the number of rows.

    The bytes csv.writer writes row by row, a batch of rows at a time: "%s,%.6f,%s" is what
    csv.writer and `format_probability` make of a string id csv.writer leaves unquoted, a float or
    int probability and an int rank. A batch with anything else goes through csv.writer, as do the
    rows before an error from `scores`.
    """
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(score_columns(id_column))
    line = "%s,%.6f,%s," + _csv_cell(model_version).replace("%", "%%") + "\n"
    rows = iter(scores)
    total = 0
    while True:
        batch: list[Score] = []
        failure = None
        try:
            batch.extend(islice(rows, WRITE_BATCH))  # keeps the scores before an exception
        except Exception as exc:  # noqa: BLE001 - raised below, once the rows before it are written
            failure = exc
        text = _plain_text(batch, line)
        if text is not None:
            stream.write(text)
        else:
            for score in batch:
                writer.writerow([score.record_id, format_probability(score.probability), score.rank, model_version])
        total += len(batch)
        if failure is not None:
            raise failure
        if len(batch) < WRITE_BATCH:
            return total


_NUMBERS = {float, int, bool}


def _plain_text(batch: list[Score], line: str) -> str | None:
    """The batch's rows formatted in one go, None if csv.writer could write them otherwise."""
    if (not batch or set(map(type, batch)) != {Score} or not set(map(type, map(itemgetter(1), batch))) <= _NUMBERS
            or not set(map(type, map(itemgetter(2), batch))) <= _NUMBERS):
        return None
    try:
        ids = "".join(map(itemgetter(0), batch))
    except TypeError:  # an id that is not text
        return None
    if any(special in ids for special in _CSV_SPECIAL):
        return None
    return "".join(map(line.__mod__, batch))


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
