"""Batch scoring: the ranking and scores.csv (churn.scoring), the "Rank scores" Lambda against moto S3,
and the training script's serving functions as Batch Transform calls them."""

from __future__ import annotations

import io
import tarfile
from itertools import accumulate, takewhile
from pathlib import Path

import numpy as np
import pytest

from churn.handlers import rank_scores
from churn.scoring import (
    ScoringError,
    model_version_from_arn,
    rank,
    read_predictions,
    read_scores,
    scores_csv,
)
from tests.training.training_helpers import fit_small_model, to_csv_text, training_set_rows
from tests.unit.lambda_support import BUCKET, FakeContext

ROOT = Path(__file__).resolve().parents[2]

ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churnpipeline-churn-models/7"


# -- ranking ---------------------------------------------------------------------------------------
def test_rank_orders_by_probability_then_id_and_numbers_from_one():
    ranked = rank([("c", 0.2), ("b", 0.9), ("a", 0.2), ("d", 0.5)])
    assert [(s["record_id"], s["rank"]) for s in ranked.top(len(ranked))] == [("b", 1), ("d", 2), ("a", 3), ("c", 4)]
    assert ranked.top(1) == [{"record_id": "b", "churn_probability": 0.9, "rank": 1}]


def test_rank_with_many_ties_is_probability_descending_then_id():
    rng = np.random.default_rng(3)
    ids = [f"{i:05d}" for i in rng.permutation(5_000)]
    pairs = list(zip(ids, rng.choice([0.0, 0.25, 0.5, 1.0, *rng.random(20)], size=5_000).tolist(), strict=True))
    ranked = rank(pairs)
    assert list(zip(ranked.record_ids, ranked.probabilities, strict=True)) == sorted(pairs, key=lambda p: (-p[1], p[0]))


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([("a", 0.1), ("a", 0.2)], "record 'a' was scored twice"),
        ([], "no predictions"),
    ],
)
def test_rank_rejects_duplicates_and_nothing(pairs, message):
    with pytest.raises(ScoringError, match=message):
        rank(pairs)


def test_model_version_is_the_package_arns_suffix():
    assert model_version_from_arn(ARN) == "7"
    assert model_version_from_arn("arn:aws:sagemaker:us-east-1:1:model-package/unversioned") == (
        "arn:aws:sagemaker:us-east-1:1:model-package/unversioned"
    )


# -- the transform output --------------------------------------------------------------------------
def test_one_request_output_with_header_and_trailing_newline():
    text = "\ufeffcustomer_id,churn_probability\nA-1,0.250000\nB-2,0.750000\n"
    assert list(read_predictions(io.StringIO(text), "customer_id", "x.out")) == [("A-1", 0.25), ("B-2", 0.75)]


def test_mini_batch_outputs_repeat_the_header_and_it_is_skipped():
    # SplitType Line + MultiRecord: each response has its own header, AssembleWith Line joins them.
    text = "customer_id,churn_probability\nA,0.1\n\ncustomer_id,churn_probability\nB,0.2\r\nC,0.3"
    assert [r for r, _ in read_predictions(io.StringIO(text), "customer_id", "x.out")] == ["A", "B", "C"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("customer_id,churn_probability\nA,0.1,extra\n", r"x\.out line 2: expected 2 columns"),
        ("customer_id,churn_probability\nA,high\n", r"x\.out line 2: churn probability 'high' is not a number"),
        ("customer_id,churn_probability\nA,1.5\n", "not between 0 and 1"),
        ("customer_id,churn_probability\nA,nan\n", "not between 0 and 1"),
        ("customer_id,churn_probability\n,0.5\n", "the customer_id is empty"),
        ("customer_id,probability\nA,0.5\n", r"x\.out line 1: a header customer_id,probability where "
         "customer_id,churn_probability was expected"),
    ],
)
def test_bad_transform_output_names_file_and_line(text, message):
    with pytest.raises(ScoringError, match=message):
        list(read_predictions(io.StringIO(text), "customer_id", "x.out"))


# -- scores.csv ------------------------------------------------------------------------------------
def test_scores_csv_shape_and_round_trip():
    ranked = rank([("A", 0.1234567), ("B", 0.9), ("C", 0.5)])
    text = scores_csv(ranked, "account_id", "3")
    assert text.splitlines() == [
        "account_id,churn_probability,rank,model_version",
        "B,0.900000,1,3",
        "C,0.500000,2,3",
        "A,0.123457,3,3",
    ]
    id_column, rows = read_scores(io.StringIO(text), "scores.csv")
    assert id_column == "account_id"
    assert [(r.record_id, r.rank, r.model_version) for r in rows] == [("B", 1, "3"), ("C", 2, "3"), ("A", 3, "3")]
    assert rows[2].probability == pytest.approx(0.123457)


def test_read_scores_reads_only_the_top_it_needs():
    def lines():
        yield "customer_id,churn_probability,rank,model_version\n"
        yield "A,0.9,1,1\n"
        yield "B,0.8,2,1\n"
        raise AssertionError("read past the rows asked for")

    _, rows = read_scores(lines(), "scores.csv", limit=2)
    assert [r.record_id for r in rows] == ["A", "B"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("customer_id,probability\nA,0.1\n", "not a scores file"),
        ("customer_id,churn_probability,rank,model_version\nA,0.9,2,1\n", "rank 2 out of order"),
    ],
)
def test_read_scores_rejects_other_files(text, message):
    with pytest.raises(ScoringError, match=message):
        read_scores(io.StringIO(text), "scores.csv")


# -- the "Rank scores" Lambda against moto S3 ------------------------------------------------------
def event(execution: str = "run-1") -> dict:
    return {
        "transform_output": f"s3://{BUCKET}/scores/{execution}/transform/",
        "scores_uri": f"s3://{BUCKET}/scores/{execution}/scores.csv",
        "model_package_arn": ARN,
    }


def test_rank_scores_handler_ranks_every_output_file_and_writes_scores_csv(s3):
    probabilities = np.random.default_rng(7).random(12)
    rows = [(f"{i:04d}-CUST", p) for i, p in enumerate(probabilities)]
    first = "customer_id,churn_probability\n" + "".join(f"{r},{p:.6f}\n" for r, p in rows[:7])
    second = "customer_id,churn_probability\n" + "".join(f"{r},{p:.6f}\n" for r, p in rows[7:])
    s3.put_object(Bucket=BUCKET, Key="scores/run-1/transform/part-1.csv.out", Body=first.encode())
    s3.put_object(Bucket=BUCKET, Key="scores/run-1/transform/part-2.csv.out", Body=second.encode())
    s3.put_object(Bucket=BUCKET, Key="scores/run-1/transform/_manifest.json", Body=b"{not csv")  # not *.out
    other_run = b"customer_id,churn_probability\nZ,1\n"
    s3.put_object(Bucket=BUCKET, Key="scores/run-2/transform/other.csv.out", Body=other_run)

    result = rank_scores.handler(event(), FakeContext())

    body = s3.get_object(Bucket=BUCKET, Key="scores/run-1/scores.csv")["Body"].read().decode()
    lines = body.splitlines()
    assert lines[0] == "customer_id,churn_probability,rank,model_version"
    assert len(lines) == 13
    expected = sorted(rows, key=lambda r: -round(r[1], 6))
    assert [line.split(",")[0] for line in lines[1:]] == [r for r, _ in expected]
    assert [int(line.split(",")[2]) for line in lines[1:]] == list(range(1, 13))
    assert {line.split(",")[3] for line in lines[1:]} == {"7"}
    assert result["scores_uri"] == f"s3://{BUCKET}/scores/run-1/scores.csv"
    assert result["customers"] == 12 and result["model_version"] == "7"
    assert [t["record_id"] for t in result["top"]] == [r for r, _ in expected[:5]]
    assert [t["rank"] for t in result["top"]] == [1, 2, 3, 4, 5]


def test_rank_scores_handler_reads_crlf_and_mini_batch_headers_as_the_local_runner_does(s3):
    """The Lambda splits the object into lines itself (as iter_lines did): same ranking as from a file."""
    first = "\ufeffcustomer_id,churn_probability\r\nA,0.25\r\nB,0.75\r\n\r\ncustomer_id,churn_probability\r\nC,0.75\r\n"
    second = 'customer_id,churn_probability\n"D,1",0.5\nE,0.125'
    s3.put_object(Bucket=BUCKET, Key="scores/run-1/transform/a.csv.out", Body=first.encode())
    s3.put_object(Bucket=BUCKET, Key="scores/run-1/transform/b.csv.out", Body=second.encode())

    result = rank_scores.handler(event(), FakeContext())

    body = s3.get_object(Bucket=BUCKET, Key="scores/run-1/scores.csv")["Body"].read().decode()
    expected = scores_csv(rank([*read_predictions(io.StringIO(first, newline=""), "customer_id", "a"),
                                *read_predictions(io.StringIO(second, newline=""), "customer_id", "b")]),
                          "customer_id", "7")
    assert body == expected
    assert body.splitlines()[1:4] == ["B,0.750000,1,7", "C,0.750000,2,7", '"D,1",0.500000,3,7']
    assert result["customers"] == 5


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_rank_scores_handler_names_the_object_and_line_of_a_bad_row(s3):
    s3.put_object(Bucket=BUCKET, Key="scores/run-1/transform/a.csv.out",
                  Body=b"customer_id,churn_probability\nA,0.25\n")
    s3.put_object(Bucket=BUCKET, Key="scores/run-1/transform/b.csv.out",
                  Body=b"customer_id,churn_probability\r\nB,0.5\r\nC,high\r\n")
    with pytest.raises(ScoringError) as error:
        rank_scores.handler(event(), FakeContext())
    assert str(error.value) == (f"s3://{BUCKET}/scores/run-1/transform/b.csv.out line 3: "
                                "churn probability 'high' is not a number")


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_rank_scores_handler_without_transform_output_fails_clearly(s3):
    with pytest.raises(ScoringError, match=r"no Batch Transform output \(\*\.out\) under s3://"):
        rank_scores.handler(event("run-9"), FakeContext())


# -- the serving functions, called as Batch Transform calls them -----------------------------------
@pytest.fixture(scope="module")
def served_model(tmp_path_factory):
    """A small model trained by the script's own functions, saved as the job saves it, loaded by model_fn."""
    from churn.layout import TRAINING_ENTRY_POINT
    from pipeline.local_aws.batch_transform import serving_module
    from pipeline.prediction import SERVING_MODULE
    from pipeline.runner import TRAINING_DIR

    entry_point = serving_module(TRAINING_DIR, TRAINING_ENTRY_POINT)
    columns, rows = training_set_rows(limit=400)
    model_dir, _ = fit_small_model(entry_point, tmp_path_factory.mktemp("model"))
    return serving_module(TRAINING_DIR, SERVING_MODULE), entry_point.model_fn(str(model_dir)), columns, rows


def serve(serving, model, request: bytes) -> str:
    """One request as the container serves it: a str body for text/csv, (body, content type) back."""
    body, content_type = serving.output_fn(serving.predict_fn(serving.input_fn(request.decode(), "text/csv"), model),
                                           "text/csv")
    assert content_type == "text/csv"
    return body


def scoring_set_text(columns, rows, limit=None) -> str:
    """What Athena writes for the scoring set: every value quoted, no label, a trailing newline."""
    label = columns.index("churn")
    kept = [c for i, c in enumerate(columns) if i != label]
    return to_csv_text(kept, [[v for i, v in enumerate(row) if i != label] for row in rows[:limit]])


def test_split_type_none_request_gives_one_header_and_one_row_per_customer(served_model):
    serving, model, columns, rows = served_model
    body = scoring_set_text(columns, rows).encode("utf-8")
    assert body.endswith(b"\n")  # the default decoder would make a bad row of it; input_fn does not
    response = serve(serving, model, body)
    lines = response.splitlines()
    assert lines[0] == "customer_id,churn_probability"
    assert lines.count("customer_id,churn_probability") == 1
    assert [line.split(",")[0] for line in lines[1:]] == [row[0] for row in rows]
    ranked = rank(read_predictions(io.StringIO(response), "customer_id", "scoring-set.csv.out"))
    assert len(ranked) == len(rows)


def test_split_type_line_mini_batches_rank_the_same(served_model):
    """The scale-out path: the header only in the first mini-batch, the rest by position."""
    serving, model, columns, rows = served_model
    lines = scoring_set_text(columns, rows).splitlines(keepends=True)
    batches = [lines[:51], *(lines[i:i + 50] for i in range(51, len(lines), 50))]
    outputs = []
    for batch in batches:
        request = "".join(batch).encode("utf-8")
        outputs.append(serve(serving, model, request))
    assembled = "\n".join(output.rstrip("\n") for output in outputs) + "\n"  # AssembleWith Line
    whole = scoring_set_text(columns, rows).encode("utf-8")
    one = serve(serving, model, whole)
    by_line = rank(read_predictions(io.StringIO(assembled), "customer_id", "a.out"))
    by_file = rank(read_predictions(io.StringIO(one), "customer_id", "b.out"))
    assert by_line == by_file


# -- the local "Score customers": Batch Transform's requests, emulated -------------------------------
@pytest.fixture(scope="module")
def local_scoring(served_model, tmp_path_factory):
    """A LocalPipeline, the served model packaged as model.tar.gz and every bundled customer's scoring set
    (~1.2 MB: more than one request of 1 MiB)."""
    from churn.config import PipelineSettings
    from churn.schema import FeatureSpec
    from pipeline.runner import LocalPipeline, Workspace

    serving, model, _, _ = served_model
    columns, rows = training_set_rows()
    folder = tmp_path_factory.mktemp("local-scoring")
    artifact = folder / "model.tar.gz"
    serving.save_model(folder, model)
    with tarfile.open(artifact, "w:gz") as archive:
        for name in (serving.MODEL_FILE, serving.ENCODING_FILE):
            archive.add(folder / name, arcname=name)
    scoring_set = folder / "scoring-set.csv"
    scoring_set.write_text(scoring_set_text(columns, rows), encoding="utf-8")
    assert scoring_set.stat().st_size > 2**20
    pipeline = LocalPipeline(spec=FeatureSpec.load(ROOT / "data" / "churn.spec.json"), settings=PipelineSettings(),
                             workspace=Workspace(folder / "workspace"))
    return pipeline, artifact, scoring_set, rows


def test_local_score_customers_sends_requests_of_at_most_the_payload_and_ranks_as_one_request(local_scoring,
                                                                                             tmp_path):
    pipeline, artifact, scoring_set, rows = local_scoring
    split = pipeline.score_customers(artifact, scoring_set, tmp_path / "split", max_payload_mb=1)
    whole = pipeline.score_customers(artifact, scoring_set, tmp_path / "whole", max_payload_mb=100)
    assert split.name == whole.name == "scoring-set.csv.out"
    header = "customer_id,churn_probability"
    split_lines = split.read_text(encoding="utf-8").splitlines()
    assert split_lines.count(header) == 2 and split_lines[0] == header  # two requests, each answered with a header
    assert whole.read_text(encoding="utf-8").splitlines().count(header) == 1
    by_request = rank(read_predictions(io.StringIO(split.read_text(encoding="utf-8")), "customer_id", "a.out"))
    by_file = rank(read_predictions(io.StringIO(whole.read_text(encoding="utf-8")), "customer_id", "b.out"))
    assert by_request == by_file and len(by_file) == len(rows)
    assert sorted(p.name for p in split.parent.iterdir()) == ["scoring-set.csv.out"]  # no temporary file left


def test_local_score_customers_names_the_request_and_lines_that_failed_and_writes_nothing(local_scoring, tmp_path):
    from pipeline.runner import PipelineFailed

    pipeline, artifact, scoring_set, _ = local_scoring
    lines = scoring_set.read_bytes().splitlines(keepends=True)
    first_request = len(list(takewhile(lambda total: total <= 2**20, accumulate(len(line) for line in lines))))
    broken = tmp_path / "scoring-set.csv"
    bad = first_request + 10  # (1-based) a line of the second request, which starts at line first_request + 1
    lines[bad - 1] = lines[bad - 1].rstrip(b"\n") + b',"an extra value"\n'
    broken.write_bytes(b"".join(lines))
    with pytest.raises(PipelineFailed, match=rf"scoring-set\.csv, request 2 \(lines {first_request + 1}-\d+\): "
                                             r"could not parse the text/csv request") as failed:
        pipeline.score_customers(artifact, broken, tmp_path / "transform", max_payload_mb=1)
    assert failed.value.error == "ScoringFailed"
    assert list((tmp_path / "transform").iterdir()) == []  # neither the output nor a partial file

    too_long = tmp_path / "long" / "scoring-set.csv"
    too_long.parent.mkdir()
    too_long.write_bytes(lines[0] + b'"x","' + b"y" * 2**20 + b'"\n')
    with pytest.raises(PipelineFailed, match=r"scoring-set\.csv, line 2: the line is longer than the transform's "
                                             r"MaxPayloadInMB \(1,048,576 bytes\)"):
        pipeline.score_customers(artifact, too_long, tmp_path / "transform-long", max_payload_mb=1)
    assert list((tmp_path / "transform-long").iterdir()) == []
