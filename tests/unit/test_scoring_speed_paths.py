"""The batch-at-a-time paths of churn.scoring against the row-at-a-time code they replaced, kept here
verbatim as the reference: the same pairs, the same ranking, the same scores.csv bytes, and the same
errors (type and message: file, line, what is wrong) raised at the same point.

The batch sizes are made small so that a few lines cover batch boundaries, plain batches (the fast
path) and batches with something unusual in them (the per-row path), side by side.
"""

from __future__ import annotations

import csv
import io
import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any

import botocore.response
import pytest

from churn import scoring
from churn.handlers import rank_scores
from churn.scoring import (
    PROBABILITY_COLUMN,
    Score,
    ScoringError,
    rank,
    rank_outputs,
    read_predictions,
    score_columns,
    write_scores,
)


# -- the reference: churn.scoring as it was, one row at a time ----------------------------------------
@dataclass(frozen=True)
class RefScore:
    record_id: str
    probability: float
    rank: int


def ref_probability(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ScoringError(f"{where}: churn probability {text!r} is not a number") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ScoringError(f"{where}: churn probability {text!r} is not between 0 and 1")
    return value


def ref_read_predictions(lines: Iterable[str], id_column: str, source: str) -> Iterator[tuple[str, float]]:
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
        yield cells[0], ref_probability(cells[1], where)


def ref_rank(predictions: Iterable[tuple[str, float]]) -> list[RefScore]:
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
    return [RefScore(record_id, probability, number) for number, (record_id, probability) in enumerate(pairs, start=1)]


def ref_write_scores(scores: Iterable[Any], stream: IO[str], id_column: str, model_version: str) -> int:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(score_columns(id_column))
    count = 0
    for score in scores:
        writer.writerow([score.record_id, f"{score.probability:.6f}", score.rank, model_version])
        count += 1
    return count


# -- helpers -------------------------------------------------------------------------------------------
def failure(exc: BaseException) -> tuple[str, str]:
    return type(exc).__name__, str(exc)


def exact(value: Any) -> Any:
    """Floats by repr, so -0.0 and 0.0 (equal) are told apart; the rest as it is."""
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, tuple | list):
        return type(value).__name__, [exact(item) for item in value]
    return value


def read_outcome(read: Callable, lines: Callable[[], Iterable[str]]) -> tuple[list, Any]:
    """Every pair yielded, then the error if there is one: the error comes after the same pairs."""
    pairs = []
    try:
        for pair in read(lines(), "customer_id", "x.out"):
            pairs.append(exact(pair))
    except Exception as exc:  # noqa: BLE001
        return pairs, failure(exc)
    return pairs, None


def rank_outcome(ranker: Callable, predictions: Callable[[], Iterable]) -> Any:
    try:
        return [(s.record_id, exact(s.probability), s.rank) for s in ranker(predictions())]
    except Exception as exc:  # noqa: BLE001
        return failure(exc)


def write_outcome(writer: Callable, scores: list, id_column: str = "customer_id", version: str = "7") -> Any:
    stream = io.StringIO()
    try:
        count = writer(scores, stream, id_column, version)
    except Exception as exc:  # noqa: BLE001
        return failure(exc), stream.getvalue()
    return count, stream.getvalue()


def as_ref(scores: list[Score]) -> list[RefScore]:
    return [RefScore(*score) for score in scores]


def assert_same_everywhere(text: str, newline: str | None = "\n") -> None:
    """read, rank and write of `text` (lines from a file-like object) as the reference does them."""

    def lines() -> io.StringIO:
        return io.StringIO(text, newline=newline)

    new = read_outcome(read_predictions, lines)
    ref = read_outcome(ref_read_predictions, lines)
    assert new == ref
    new_rank = rank_outcome(rank, lambda: read_predictions(lines(), "customer_id", "x.out"))
    ref_rank_ = rank_outcome(ref_rank, lambda: ref_read_predictions(lines(), "customer_id", "x.out"))
    assert new_rank == ref_rank_
    assert rank_outcome(lambda outputs: rank_outputs(outputs, "customer_id"), lambda: [(lines(), "x.out")]) == ref_rank_
    if isinstance(ref_rank_, list):
        ranked = rank(read_predictions(lines(), "customer_id", "x.out"))
        assert write_outcome(write_scores, ranked) == write_outcome(ref_write_scores, as_ref(ranked))


@pytest.fixture(params=[1, 2, 3, 4096], ids=lambda size: f"batch{size}")
def batch_size(request, monkeypatch):
    monkeypatch.setattr(scoring, "READ_BATCH", request.param)
    monkeypatch.setattr(scoring, "WRITE_BATCH", request.param)
    return request.param


@pytest.fixture
def per_row_calls(monkeypatch):
    """How many rows went through the per-row reader (`_prediction`) rather than a whole batch."""
    calls = []
    original = scoring._prediction

    def counting(row, number, id_column, source):
        calls.append(number)
        return original(row, number, id_column, source)

    monkeypatch.setattr(scoring, "_prediction", counting)
    return calls


HEADER = "customer_id,churn_probability\n"


# -- reading: each kind of line the fast path must hand over, or take, exactly ------------------------------
@pytest.mark.parametrize(
    "text",
    [
        pytest.param(HEADER + "A,0.5\nB,0.25\nC,0.125\nD,1\nE,0\n", id="plain"),
        pytest.param(HEADER + "A,0.5\r\nB,0.25\r\nC,0.125\r\nD,1\r\n", id="crlf"),
        pytest.param(HEADER + "A,0.5\nB,0.25\r\nC,0.125\rD,1\n", id="lone-cr-mid-line"),
        pytest.param("\ufeff" + HEADER + "A,0.5\nB,0.25\n", id="bom"),
        pytest.param("\ufeffA,0.5\n\ufeffB,0.25\nC,0.1\n", id="bom-on-a-data-row"),
        pytest.param(HEADER + "A,0.5\nB,0.25\n" + HEADER + "C,0.125\n\n" + HEADER + "D,0.1\n", id="mid-headers"),
        pytest.param(HEADER + "A,0.5\n\n\nB,0.25\n   \n\t\nC,0.1\n\n", id="blank-lines"),
        pytest.param(HEADER + '"A,1",0.5\n"B""x",0.25\nC,0.1\n"D",0.2\n', id="quoted-ids"),
        pytest.param(HEADER + 'A,0.5\n"multi\nline",0.25\n"over\r\nthree\nlines",0.1\nB,0.2\n', id="quoted-newline"),
        pytest.param(HEADER + 'A,0.5\n"B",\'0.25\'\nC,"0.1"\nD,0.2\n', id="quoted-probability"),
        pytest.param(HEADER + ' A , 0.5 \n\tB\t,\t0.25\t\n\xa0C\u2003,\u20030.1\xa0\nD,0.2\n', id="whitespace"),
        pytest.param(HEADER + "A,\x1c0.5\nB,0.25\n", id="separator-char-not-float-space"),
        pytest.param(HEADER + "A,0.5\nB,-0.0\nC,0.0\nD,0\nE,1.0\nF,1e-3\nG,0_5\n", id="odd-numbers"),
        pytest.param(HEADER + "A,0.5\nB,\u0660.\u0665\nC,0.1\n", id="arabic-indic-digits"),
        pytest.param(HEADER + "A,0.5\nB,0.500000\nC,0.5\nD,0.25\nE,0.5\n", id="ties"),
        pytest.param(HEADER + "A,0.5\nB,0.25\nC,0.1,extra\nD,0.2\n", id="three-columns"),
        pytest.param(HEADER + "A,0.5\nB,0.25\nC\nD,0.2\n", id="one-column"),
        pytest.param(HEADER + "A,0.5\nB,0.25\n,0.1\nD,0.2\n", id="empty-id"),
        pytest.param(HEADER + "A,0.5\nB,0.25\n  ,0.1\nD,0.2\n", id="blank-id"),
        pytest.param(HEADER + "A,0.5\nB,0.25\nC,high\nD,0.2\n", id="not-a-number"),
        pytest.param(HEADER + "A,0.5\nB,0.25\nC,\nD,0.2\n", id="empty-probability"),
        pytest.param(HEADER + "A,0.5\nB,0.25\nC,1.5\nD,0.2\n", id="above-one"),
        pytest.param(HEADER + "A,0.5\nB,0.25\nC,-0.1\nD,0.2\n", id="below-zero"),
        pytest.param(HEADER + "A,0.5\nB,0.25\nC,nan\nD,0.2\n", id="nan"),
        pytest.param(HEADER + "A,0.5\nB,0.25\nC,inf\nD,-inf\n", id="inf"),
        pytest.param(HEADER + "A,0.5\nB,0.25\nA,0.1\nD,0.2\n", id="duplicate"),
        pytest.param(HEADER + "A,0.5\nA,0.25\nC,high\nD,0.2\n", id="duplicate-then-bad-row"),
        pytest.param(HEADER + "A,0.5\nC,high\nA,0.25\nD,0.2\n", id="bad-row-then-duplicate"),
        pytest.param(HEADER + "A,0.5\nB,0.25\nx\0y,0.1\nD,0.2\n", id="nul"),
        pytest.param(HEADER + 'A,0.5\nB,0.25\n"unterminated,0.1\nD,0.2\n', id="unterminated-quote"),
        pytest.param(HEADER, id="header-only"),
        pytest.param("", id="empty"),
        pytest.param("\n\n", id="blank-only"),
        pytest.param("A,0.5\nB,0.25\n", id="no-header"),
        pytest.param(HEADER + "A,0.5\nB,0.25", id="no-final-newline"),
        pytest.param("account_id,churn_probability\nA,0.5\n", id="other-id-column"),
    ],
)
def test_reading_ranking_and_writing_match_the_reference(text, batch_size):
    assert_same_everywhere(text)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 5], indirect=True)
def test_lines_without_line_breaks_as_the_lambda_gives_them(batch_size):
    lines = ["customer_id,churn_probability", "A,0.5", "", "B,0.25", '"C,1",0.1', '"multi', 'line",0.2', "D,0.3"]
    new = read_outcome(read_predictions, lambda: iter(lines))
    assert new == read_outcome(ref_read_predictions, lambda: iter(lines))
    assert rank_outcome(rank, lambda: read_predictions(lines, "customer_id", "x.out")) == rank_outcome(
        ref_rank, lambda: ref_read_predictions(lines, "customer_id", "x.out"))


@pytest.mark.parametrize("batch_size", [2, 4096], indirect=True)
def test_lines_that_are_not_text_get_csvs_own_error(batch_size):
    lines = ["customer_id,churn_probability\n", "A,0.5\n", b"B,0.25\n", "C,0.1\n"]
    new = read_outcome(read_predictions, lambda: iter(lines))
    assert new == read_outcome(ref_read_predictions, lambda: iter(lines))
    assert new[1][0] == "Error" and new[0] == [("tuple", ["A", ("float", "0.5")])]


@pytest.mark.parametrize("batch_size", [1, 3, 4096], indirect=True)
def test_a_value_over_csvs_field_size_limit_is_refused_as_csv_refuses_it(batch_size):
    limit = csv.field_size_limit()
    csv.field_size_limit(8)
    try:
        text = HEADER + "A,0.5\nB,0.25\nCCCCCCCCC,0.1\nD,0.2\n"
        new = read_outcome(read_predictions, lambda: io.StringIO(text))
        assert new == read_outcome(ref_read_predictions, lambda: io.StringIO(text))
        assert new[1] == ("Error", "field larger than field limit (8)")
    finally:
        csv.field_size_limit(limit)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 4096], indirect=True)
def test_an_undecodable_line_fails_after_the_rows_before_it(batch_size):
    data = (HEADER + "A,0.5\nB,0.25\nC,0.125\n").encode() + b"D\xff,0.1\n" + b"E,0.2\n"

    def lines():
        return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline="")

    new = read_outcome(read_predictions, lines)
    assert new == read_outcome(ref_read_predictions, lines)
    assert new[1][0] == "UnicodeDecodeError"


def test_a_failure_of_the_lines_after_a_duplicate_reports_the_duplicate(batch_size):
    def lines():
        yield HEADER
        yield "A,0.5\n"
        yield "A,0.25\n"
        raise OSError("connection reset")

    def no_duplicate():
        yield HEADER
        yield "A,0.5\n"
        raise OSError("connection reset")

    assert rank_outcome(rank, lambda: read_predictions(lines(), "customer_id", "x")) == (
        "ScoringError", "record 'A' was scored twice: the scoring set must have one row per record")
    assert rank_outcome(rank, lambda: read_predictions(no_duplicate(), "customer_id", "x")) == (
        "OSError", "connection reset")


@pytest.mark.parametrize(
    "texts",
    [
        pytest.param([HEADER + "A,0.5\nB,0.25\n", HEADER + "C,0.5\nD,0.75\n", HEADER + "E,0.1\n"], id="three"),
        pytest.param([HEADER + "A,0.5\nB,0.25\n", HEADER + "C,0.5\nA,0.75\n"], id="duplicate-across-files"),
        pytest.param([HEADER + "A,0.5\nB,0.25\n", HEADER + "A,0.5\nC,high\n"], id="duplicate-then-bad-row"),
        pytest.param([HEADER + "A,0.5\nB,high\n", HEADER + "A,0.5\n"], id="bad-row-then-duplicate"),
        pytest.param([HEADER, "", HEADER + "\n"], id="no-predictions-anywhere"),
        pytest.param([HEADER, HEADER + "A,0.5\n"], id="a-file-without-predictions"),
    ],
)
def test_rank_outputs_is_rank_of_the_chained_predictions(texts, batch_size):
    def outputs():
        for number, text in enumerate(texts):
            yield io.StringIO(text), f"part-{number}.out"

    def ref_predictions():
        for number, text in enumerate(texts):
            yield from ref_read_predictions(io.StringIO(text), "customer_id", f"part-{number}.out")

    def predictions():
        for lines, source in outputs():
            yield from read_predictions(lines, "customer_id", source)

    expected = rank_outcome(ref_rank, ref_predictions)
    assert rank_outcome(lambda o: rank_outputs(o, "customer_id"), outputs) == expected
    assert rank_outcome(rank, predictions) == expected


def test_rank_outputs_reports_a_duplicate_before_a_failure_to_open_the_next_output():
    def outputs(duplicate: bool):
        yield io.StringIO(HEADER + "A,0.5\n" + ("A,0.25\n" if duplicate else "B,0.25\n")), "part-0.out"
        raise FileNotFoundError("part-1.out")

    assert rank_outcome(lambda o: rank_outputs(o, "customer_id"), lambda: outputs(True)) == (
        "ScoringError", "record 'A' was scored twice: the scoring set must have one row per record")
    assert rank_outcome(lambda o: rank_outputs(o, "customer_id"), lambda: outputs(False)) == (
        "FileNotFoundError", "part-1.out")


def test_plain_batches_skip_the_per_row_reader(monkeypatch, per_row_calls):
    monkeypatch.setattr(scoring, "READ_BATCH", 4)
    rows = [f"{i:04d}-CUST,{(i * 37 % 101) / 100:.6f}\n" for i in range(40)]
    text = HEADER + "".join(rows[:20]) + HEADER + "".join(rows[20:])  # a mini-batch header in line 22
    assert read_outcome(read_predictions, lambda: io.StringIO(text)) == read_outcome(
        ref_read_predictions, lambda: io.StringIO(text))
    # Row 1 (the header, perhaps with a byte-order mark) always goes row by row; of the batches of 4
    # rows (1-4, 5-8, ...), only the one with the second header in it (rows 21-24).
    assert per_row_calls == [1, 21, 22, 23, 24]


def test_random_transform_outputs_match_the_reference(monkeypatch, per_row_calls):
    """Plain rows with the occasional oddity, in random files: the fast path and the per-row path mixed."""
    generator = random.Random(20240611)
    oddities = [
        "", "   ", HEADER.rstrip("\n"), '"Q,1",0.5', '"multi\nline",0.25', "A,0.5,x", ",0.5", "X,nan", "X,high",
        "X,1.5", " Y , 0.5 ", "\ufeffZ,0.5", "Z\0,0.5", 'W"x,0.5', "V,0.25\r", "U,\x1c0.5", "T,-0.0",
    ]
    endings = ["\n", "\n", "\n", "\r\n", "\r"]
    fast_cases = 0
    for _ in range(300):
        monkeypatch.setattr(scoring, "READ_BATCH", generator.choice([1, 2, 3, 5, 8]))
        monkeypatch.setattr(scoring, "WRITE_BATCH", generator.choice([1, 2, 3, 5, 8]))
        count = generator.randrange(0, 30)
        ids = generator.sample(range(10_000), count)
        if count and generator.random() < 0.1:
            ids.append(generator.choice(ids))  # a record scored twice
        lines = []
        for record in ids:
            if generator.random() < 0.06:
                lines.append(generator.choice(oddities))
            lines.append(f"{record:04d}-C,{generator.choice([0.5, 0.25, generator.random()]):.6f}")
        ending = generator.choice(endings)
        text = (HEADER if generator.random() < 0.8 else "") + ending.join(lines) + generator.choice([ending, ""])
        before = len(per_row_calls)
        assert_same_everywhere(text, newline=generator.choice(["\n", ""]))
        fast_cases += len(per_row_calls) - before < len(lines)  # fewer rows one by one than one read has
    assert fast_cases > 100  # the fast path was taken, not only the per-row one


# -- ranking ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pairs",
    [
        pytest.param([("c", 0.2), ("b", 0.9), ("a", 0.2), ("d", 0.5)], id="ties"),
        pytest.param([(f"{i:03d}", [0.5, 0.25, 0.75][i % 3]) for i in range(60, 0, -1)], id="many-ties"),
        pytest.param([("b", 0.0), ("a", -0.0), ("c", 0.0)], id="signed-zero-ties"),
        pytest.param([("b", 1), ("a", 0.5), ("c", 1.0)], id="int-probabilities"),
        pytest.param([("b", True), ("a", 0.5)], id="bool-probability"),
        pytest.param([("b", Decimal("0.1234567890123456789012345678901")), ("a", Decimal("0.5"))], id="decimal"),
        pytest.param([(2, 0.5), ("a", 0.25), (1, 0.75)], id="ids-that-do-not-compare-but-do-not-tie"),
        pytest.param([(2, 0.5), ("a", 0.5)], id="ids-that-do-not-compare-on-a-tie"),
        pytest.param([(1, 0.5), (1.0, 0.25)], id="equal-ids-of-other-types"),
        pytest.param([("a", 0.5), ("b", float("nan")), ("c", 0.25), ("d", 0.75)], id="nan"),
        pytest.param([("a", 10**400), ("b", 0.5), ("c", 1)], id="huge-int"),
        pytest.param([("a", float("inf")), ("b", float("-inf")), ("c", 0.5)], id="infinities"),
        pytest.param([("a", 0.5), (["b"], 0.25)], id="unhashable-id"),
        pytest.param([("a", 0.5), ("b", 0.25, 3)], id="not-a-pair"),
        pytest.param([("a", "0.5"), ("b", "0.25")], id="text-probabilities"),
        pytest.param([("a", 0.5), ("b", 0.25), ("a", 0.75)], id="duplicate"),
        pytest.param([], id="nothing"),
    ],
)
def test_rank_matches_the_reference(pairs):
    assert rank_outcome(rank, lambda: iter(pairs)) == rank_outcome(ref_rank, lambda: iter(pairs))


def test_rank_of_a_million_like_spread_with_ties_matches_the_reference():
    generator = random.Random(5)
    pairs = [(f"{generator.randrange(10**6):06d}-{i}", generator.randrange(1000) / 1000) for i in range(20_000)]
    assert rank_outcome(rank, lambda: pairs) == rank_outcome(ref_rank, lambda: pairs)


def test_score_is_what_the_rest_of_the_code_uses():
    score = Score("b", 0.9, 1)
    assert (score.record_id, score.probability, score.rank) == ("b", 0.9, 1)
    assert score == Score("b", 0.9, 1) and score != Score("b", 0.9, 2) and hash(score) == hash(Score("b", 0.9, 1))
    assert score.to_dict() == {"record_id": "b", "churn_probability": 0.9, "rank": 1}
    assert repr(score) == "Score(record_id='b', probability=0.9, rank=1)"
    with pytest.raises(AttributeError):
        score.rank = 2  # type: ignore[misc]
    assert rank([("b", 0.9), ("a", 0.1)])[0] == score


# -- writing ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [1, 2, 4096], indirect=True)
@pytest.mark.parametrize(
    "record_ids",
    [
        pytest.param(["A", "B", "C"], id="plain"),
        pytest.param(["a,b", "B", 'q"q', "C"], id="comma-and-quote"),
        pytest.param(["new\nline", "B", "cr\rx", "C"], id="line-breaks"),
        pytest.param([" lead", "trail ", "\ttab", "%s", "%d%%", "{}", "\ufeffbom", "x\0y"], id="needs-no-quoting"),
        pytest.param(["", "B"], id="empty-id"),
    ],
)
@pytest.mark.parametrize("version", ["7", "a,b", '"%s"', "%", "{0}"])
def test_scores_csv_bytes_match_csv_writer(record_ids, version, batch_size):
    scores = [Score(record_id, 1 / (number + 3), number) for number, record_id in enumerate(record_ids, start=1)]
    assert write_outcome(write_scores, scores, "account_id", version) == write_outcome(
        ref_write_scores, as_ref(scores), "account_id", version)


@pytest.mark.parametrize(
    "score",
    [
        pytest.param(Score(7, 0.5, 1), id="int-id"),
        pytest.param(Score(None, 0.5, 1), id="no-id"),
        pytest.param(Score("A", 1, 1), id="int-probability"),
        pytest.param(Score("A", True, 1), id="bool-probability"),
        pytest.param(Score("A", Decimal("0.1234565"), 1), id="decimal-probability"),
        pytest.param(Score("A", -0.0, 1), id="negative-zero"),
        pytest.param(Score("A", 0.5, 1.5), id="float-rank"),
        pytest.param(Score("A", 0.5, True), id="bool-rank"),
        pytest.param(Score("A", 0.5, None), id="no-rank"),
        pytest.param(Score("A", "0.5", 1), id="text-probability"),
        pytest.param(Score("A", 0.5, "1,2"), id="text-rank-needing-quotes"),
        pytest.param(Score("A", 0.5, 10**30), id="big-rank"),
    ],
)
def test_scores_of_other_types_are_written_as_csv_writer_writes_them(score):
    scores = [Score("Z", 0.25, 2), score, Score("Y", 0.125, 3)]
    assert write_outcome(write_scores, scores) == write_outcome(ref_write_scores, as_ref(scores))


@pytest.mark.parametrize("batch_size", [1, 3, 4096], indirect=True)
def test_scores_that_fail_part_way_leave_the_rows_before_written(batch_size):
    def scores():
        yield Score("A", 0.5, 1)
        yield Score("B", 0.25, 2)
        raise OSError("gone")

    def ref_scores():
        yield RefScore("A", 0.5, 1)
        yield RefScore("B", 0.25, 2)
        raise OSError("gone")

    new = write_outcome(write_scores, scores())
    assert new == write_outcome(ref_write_scores, ref_scores())
    assert new[0] == ("OSError", "gone") and new[1].count("\n") == 3


def test_write_scores_takes_any_iterable_and_counts_rows(monkeypatch):
    monkeypatch.setattr(scoring, "WRITE_BATCH", 3)
    scores = rank((f"{i:02d}", i / 10) for i in range(10))
    stream = io.StringIO()
    assert write_scores(iter(scores), stream, "customer_id", "2") == 10
    assert stream.getvalue() == write_outcome(ref_write_scores, as_ref(scores), version="2")[1]


# -- the Lambda's lines: what StreamingBody.iter_lines gave, decoded ---------------------------------------
def body(data: bytes) -> botocore.response.StreamingBody:
    return botocore.response.StreamingBody(io.BytesIO(data), len(data))


@pytest.mark.parametrize(
    "data",
    [
        b"customer_id,churn_probability\nA,0.5\nB,0.25\n",
        b"customer_id,churn_probability\r\nA,0.5\r\nB,0.25",
        b"A,0.5\rB,0.25\r\rC,0.1\r\n\r\n\nD,0.2\n\r",
        b"\xef\xbb\xbfcustomer_id,churn_probability\nA\xc3\xa9,0.5\n",
        b"\n",
        b"\n\n\r\r\n\r",
        b"",
        b"A,0.5\x0bB\x0c,0.25\x1c\x1d\x1e\xc2\x85C,0.1\xe2\x80\xa8D\n",  # line breaks to str, not to bytes
    ],
)
@pytest.mark.parametrize("chunk_size", [1, 2, 3, 1024])
@pytest.mark.parametrize("text_chunk", [1, 2, 5, 1 << 20])
def test_lambda_lines_are_iter_lines_decoded(data, chunk_size, text_chunk, monkeypatch):
    monkeypatch.setattr(rank_scores, "_TEXT_CHUNK", text_chunk)
    expected = [line.decode("utf-8") for line in body(data).iter_lines(chunk_size=chunk_size)]
    assert list(rank_scores._lines(body(data))) == expected


def test_lambda_lines_with_bad_utf8_fail_at_the_line_as_before():
    data = b"customer_id,churn_probability\nA,0.5\nB\xff,0.25\nC,0.1\n"

    def old_lines():
        for line in body(data).iter_lines():
            yield line.decode("utf-8")

    assert read_outcome(read_predictions, lambda: rank_scores._lines(body(data))) == read_outcome(
        ref_read_predictions, old_lines)
