"""Large CSV inputs (training files and text/csv requests of ARROW_MIN_BYTES or more) are read by pyarrow with
dictionary-encoded columns when it is installed and the body is plain, else by pandas: the values, the
trained model, the served bytes and the errors are the same either way. Large validation sets and CV folds
are predicted through the indicator trees: the same probabilities as the booster."""

from __future__ import annotations

import io
import random
import sys

import numpy as np
import pandas as pd
import pytest
from training_helpers import to_csv_text, training_set_rows

pytest.importorskip("pyarrow")


def _as_read_by_pandas(frame: pd.DataFrame) -> pd.DataFrame:
    """Categorical columns as object columns (NaN for missing), as read_csv_text reads them."""
    frame = frame.astype(object)
    return frame.where(frame.notna(), np.nan)


def _random_body(rng: random.Random) -> bytes:
    header = rng.choice(['id,a,b\n', '"id","a","b"\n', 'id,a,b,\n', 'id,a\n', ' id , a ,b\n', 'id,a,a\n',
                         'id,a, a\n'])
    if rng.random() < 0.5:
        values = ["", "x", '"y"', '""', "1", '"a,b"', " z ", "NA", '"p""q"', 'r"s', '"t"u', "é", '"\n"']
        rows = "".join(",".join(rng.choice(values) for _ in range(rng.choice([2, 3, 3, 3, 4]))) + "\n"
                       for _ in range(rng.randint(0, 4)))
    else:
        alphabet = ["a", "b", ",", '"', "\n", " ", "1", "é", "\r", '""', "x,y", '"q"', "\t", "NA", "\\"]
        rows = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
    return (header + rows).encode("utf-8")


def test_arrow_reader_reads_what_it_accepts_like_pandas(train_model):
    rng = random.Random(7)
    accepted = 0
    for _ in range(4000):
        body = _random_body(rng)
        frame = train_model._read_csv_arrow(body, ("id",))
        if frame is None:
            continue
        accepted += 1
        expected = train_model.read_csv_text(io.BytesIO(body))  # raises if pandas cannot read it
        assert frame["id"].dtype == object, body
        got = _as_read_by_pandas(frame)
        assert list(got.columns) == list(expected.columns), body
        assert got.equals(_as_read_by_pandas(expected)), body
        assert isinstance(frame.index, pd.RangeIndex) and len(frame.index) == len(expected.index)
    assert accepted > 400  # the comparison is not vacuous


@pytest.mark.parametrize("body", [
    b'id,a\n1,"open quote at the end',
    b'id,a\n1,"open quote at the end\n',
    b'id,a\n1,"two\nlines"\n',
    b'id,a\r\n1,x\r\n',
    b'id,a\n1,x\n\n2,y\n',
    b'\nid,a\n1,x\n',
    b'id,id\n1,x\n',
    b'id,\n1,x\n',
    b'id, id\n1,x\n',
    b'id,a\n1,x\x00\n',
    b'id,a\n1,\xff\n',
    b'id,a\n1\n',
    b'id,a\n1,x,y\n',
    b'id\n1\n',
])
def test_arrow_reader_leaves_anything_unusual_to_pandas(train_model, body):
    assert train_model._read_csv_arrow(body, ("id",)) is None


def test_without_pyarrow_nothing_is_read_by_it(train_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    assert train_model._read_csv_arrow(b"id,a\n1,x\n", ("id",)) is None


@pytest.fixture(scope="module")
def served_model(train_model):
    columns, rows = training_set_rows(limit=1500)
    frame = train_model.read_csv_text(io.StringIO(to_csv_text(columns, rows)))
    fit, _ = train_model.train(frame, {**train_model.default_params(), "num_round": 40, "early_stopping_rounds": 10})
    return train_model.ChurnModel(booster=fit.booster, encoding=fit.encoding)


def _request_bodies() -> dict[str, bytes]:
    columns, rows = training_set_rows(limit=300)
    plain = to_csv_text([c for c in columns if c != "churn"], [r[:-1] for r in rows]).encode("utf-8")
    header, *lines = plain.rstrip(b"\n").split(b"\n")
    return {
        "plain": plain,
        "no final newline": plain.rstrip(b"\n"),
        "bom": b"\xef\xbb\xbf" + plain,
        "crlf": plain.replace(b"\n", b"\r\n"),
        "unseen category": plain.replace(b'"Fiber optic"', b'"Fibre"'),
        "missing values": plain.replace(b'"No"', b"", 200),
        "quoted empty values": plain.replace(b'"Yes"', b'""', 100),
        "comma and quote in values": plain.replace(b'"Male"', b'"Ma,le"', 20).replace(b'"Female"', b'"Fe""male"', 20),
        "padded values": plain.replace(b'"Yes"', b' "Yes" ', 20),
        "not a number": plain.replace(b'"1"', b'"one"', 3),
        "ids missing or with commas": plain.replace(lines[0].split(b",")[0], b"", 1).replace(
            lines[1].split(b",")[0], b'"a,b"', 1),
        "reordered columns": b"\n".join(b",".join(reversed(line.split(b","))) for line in [header, *lines]) + b"\n",
        "too few fields": b"\n".join([header, *lines[:50], b'"x","Male"', *lines[50:]]) + b"\n",
        "too many fields": b"\n".join([header, *lines[:50], lines[50] + b',"extra"', *lines[51:]]) + b"\n",
        "open quote at the end": plain + b'"9999-ZZZZZ","Male',
        "undecodable": plain.replace(b'"Male"', b'"M\xe9le"', 1),
        "missing feature column": plain.replace(b'"gender"', b'"sex"', 1),
    }


def _serve(train_model, model, body: bytes, accept: str) -> tuple:
    try:
        return ("ok", train_model.output_fn(train_model.predict_fn(train_model.input_fn(body, "text/csv"), model),
                                            accept))
    except ValueError as exc:
        return ("error", str(exc))


@pytest.mark.parametrize("name", sorted(_request_bodies()))
def test_requests_are_served_the_same_whichever_reader_reads_them(train_model, served_model, monkeypatch, name,
                                                                   capsys):
    body = _request_bodies()[name]
    train_model._SERVING_STATE["encoding"] = served_model.encoding
    results = {}
    for reader, threshold in (("pandas", 1 << 62), ("arrow", 0)):
        monkeypatch.setattr(train_model, "ARROW_MIN_BYTES", threshold)
        results[reader] = [_serve(train_model, served_model, body, accept) for accept in ("text/csv",
                                                                                          "application/json")]
        results[reader].append(capsys.readouterr().err)  # the same warnings too
    assert results["arrow"] == results["pandas"]


def test_training_reads_and_fits_the_same_without_pyarrow(train_model, tmp_path, monkeypatch):
    columns, rows = training_set_rows()
    channel = tmp_path / "train"
    channel.mkdir()
    (channel / "training-set.csv").write_text(to_csv_text(columns, rows), encoding="utf-8")
    monkeypatch.setattr(train_model, "ARROW_MIN_BYTES", 0)
    params = {**train_model.default_params(), "num_round": 80, "early_stopping_rounds": 20}
    with_arrow, _ = train_model.read_training_frame(channel, text_columns=("customer_id",))
    assert isinstance(with_arrow["contract"].dtype, pd.CategoricalDtype)  # pyarrow did read it
    assert with_arrow["customer_id"].dtype == object
    with monkeypatch.context() as patched:
        patched.setitem(sys.modules, "pyarrow", None)
        patched.setitem(sys.modules, "pyarrow.csv", None)
        without, _ = train_model.read_training_frame(channel, text_columns=("customer_id",))
    assert without["contract"].dtype == object
    pd.testing.assert_frame_equal(_as_read_by_pandas(with_arrow), without)
    fits = [train_model.train(frame, params)[0] for frame in (with_arrow, without)]
    assert bytes(fits[0].booster.save_raw("json")) == bytes(fits[1].booster.save_raw("json"))
    assert fits[0].encoding == fits[1].encoding
    assert np.array_equal(fits[0].validation_probabilities, fits[1].validation_probabilities)


def test_large_validation_sets_are_predicted_like_the_booster(train_model, served_model):
    columns, rows = training_set_rows()
    frame = train_model.read_csv_text(io.StringIO(to_csv_text(columns, rows)))
    many = pd.concat([frame, frame], ignore_index=True)  # more than INDICATOR_MIN_ROWS rows
    assert len(many) >= train_model.INDICATOR_MIN_ROWS
    encoded = train_model.apply_encoding(many, served_model.encoding)
    assert train_model._IndicatorTrees.build(served_model.booster, served_model.encoding) is not None
    fast = train_model._predict_encoded(train_model.ChurnModel(served_model.booster, served_model.encoding),
                                        encoded, 1)
    reference = train_model._predict(served_model.booster, encoded, 1)
    assert fast.dtype == reference.dtype == np.float32
    assert np.array_equal(fast, reference)


def test_the_characters_csv_writer_quotes_are_the_ones_output_fn_looks_for(train_model):
    """_prediction_csv joins rows itself when no id contains a character the csv writer would quote."""
    import csv

    quoted = set()
    for code in range(0x10000):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([f"a{chr(code)}b", "0.5"])
        if buffer.getvalue() != f"a{chr(code)}b,0.5\n":
            quoted.add(chr(code))
    assert quoted <= {",", '"', "\r", "\n"}  # the pattern may catch more: such rows go through the writer
    assert all(train_model._CSV_QUOTED.search(c) for c in quoted)


@pytest.mark.parametrize("ids", [["a", "b"], ["", "x"], [None, "y"], ["a,b", "c"], ['q"', "d"], ["e\r", "f\n"],
                                 [" padded ", "é✓"]])
def test_prediction_csv_is_the_csv_writers(train_model, ids):
    import csv

    prediction = pd.DataFrame({"customer_id": pd.Series(ids, dtype=object),
                               "churn_probability": np.array([0.1234565, 0.5], dtype=np.float32).astype(float)})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["customer_id", "churn_probability"])
    writer.writerows([["" if i is None else i, f"{p:.6f}"] for i, p in zip(ids, prediction["churn_probability"])])
    assert train_model.output_fn(prediction, "text/csv") == buffer.getvalue()


@pytest.mark.parametrize("name", ["plain", "no final newline", "unseen category", "missing values",
                                  "quoted empty values", "comma and quote in values", "padded values",
                                  "ids missing or with commas", "not a number"])
def test_headerless_requests_are_served_like_the_same_rows_with_their_header(train_model, served_model, monkeypatch,
                                                                             name):
    """Batch Transform with SplitType Line: every request after the first has no header. Its rows are
    read by position, by either reader, into what the same rows with the header give."""
    body = _request_bodies()[name]
    headerless = body.split(b"\n", 1)[1]
    train_model._SERVING_STATE["encoding"] = served_model.encoding
    for threshold in (1 << 62, 0):  # pandas, then pyarrow
        monkeypatch.setattr(train_model, "ARROW_MIN_BYTES", threshold)
        assert _serve(train_model, served_model, headerless, "text/csv") == _serve(
            train_model, served_model, body, "text/csv")
        frame = train_model.input_fn(headerless, "text/csv").frame
        categorical = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
        assert bool(categorical) == (threshold == 0)  # the fast reader did read it
