"""The fast pre-check gives the reference's answer (validate_file) on good, bad and odd files.

Each case runs both: the same summary or the same error message. Where the case says so, the fast
check must also vouch for the file by itself (clean files must not pay for the reference), or
must not (anything the reference rejects).
"""

from __future__ import annotations

import csv
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import pipeline.fast_validate as fv
from churn import csv_input
from churn.config import PipelineSettings
from churn.csv_input import CsvSummary, InputValidationError, validate_file
from churn.schema import Feature
from pipeline.fast_validate import PY_WHITESPACE, precheck, validate_file_fast
from tests.support.specs import HISTORY

SPEC_PATH = Path(__file__).resolve().parents[2] / "data" / "churn.spec.json"


@pytest.fixture(scope="module")
def telco_rows(data_path):
    lines = data_path.read_text().splitlines()
    assert all('"' not in line for line in lines[:40])  # so split(",") is the CSV split
    return [line.split(",") for line in lines[:40]]


def outcome(validate, path, group):
    try:
        return ("rows", validate(str(path), group).rows)
    except InputValidationError as exc:
        return ("error", str(exc))


def check(tmp_path, group, content, *, vouched=None, name="in.csv"):
    """Run both validators on `content`; they must agree. Returns the reference's outcome."""
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    slow = outcome(validate_file, path, group)
    fast = outcome(validate_file_fast, path, group)
    assert fast == slow
    summary, reason = precheck(str(path), group)
    if slow[0] == "error":
        assert summary is None, f"vouched for a file the reference rejects: {slow[1]}"
        assert reason
    if vouched is True:
        assert slow[0] == "rows", slow[1]
        assert summary == CsvSummary(rows=slow[1]), reason
    elif vouched is False:
        assert summary is None
    return slow


def csv_text(rows, newline="\n"):
    return newline.join(",".join(row) for row in rows) + newline


def column_values(rows, column, values):
    """The header and len(values) rows, with `column` set to `values`."""
    for i, value in enumerate(values, start=1):
        rows = with_cell(rows, i, column, value)
    return rows[: len(values) + 1]


def with_extra_column(rows, *values):
    """An `Extra` column after the others, its cells cycling through `values`."""
    return [row + ["Extra" if i == 0 else values[i % len(values)]] for i, row in enumerate(rows)]


def with_cell(rows, row, column, value):
    rows = [list(r) for r in rows]
    rows[row][rows[0].index(column)] = value
    return rows


# -- good files: the fast check answers by itself -------------------------------------------------
GOOD = {
    "plain": lambda r: csv_text(r[:6]),
    "no final newline": lambda r: csv_text(r[:6]).rstrip("\n"),
    "bom and crlf": lambda r: b"\xef\xbb\xbf" + csv_text(r[:6], "\r\n").encode(),
    "blank lines at the end": lambda r: csv_text(r[:6]) + "\r\n\n",
    "integral variants": lambda r: csv_text(
        column_values(with_cell(r, 1, "SeniorCitizen", "007"), "tenure", [" 5 ", "+5", "5.0", "-0", "", " \t", "5."])
    ),
    "fractional variants": lambda r: csv_text(
        column_values(r, "MonthlyCharges", [".5", "-0", "5.", "1e3", "1E-5", "+1.5", " 29.85\t", "", "0.000"])
    ),
    "label variants": lambda r: csv_text(
        column_values(r, "Churn", [" yes ", "TRUE", "1.0", "Y", "f", "0", "No\u00a0", "\u3000t"])
    ),
    "quoted fields": lambda r: csv_text(
        with_cell(with_cell(with_cell(r[:6], 1, "gender", '"Female"'), 2, "PaymentMethod", '"Card, automatic"'),
                  3, "MonthlyCharges", '"29.85"')
        + [with_cell(r, 6, "Partner", '""')[6]]
    ),
    "extra columns": lambda r: csv_text(with_extra_column(r[:6], '"x, y"', "anything")),
    "columns without a name": lambda r: csv_text([row[:3] + [""] + row[3:] + ["", ""] for row in r[:6]]),
    "reordered columns": lambda r: csv_text([list(reversed(row)) for row in r[:6]]),
    "padded header": lambda r: csv_text([[f" {name} " for name in r[0]]] + r[1:6]),
    "ids differ in case only": lambda r: csv_text(r[:3] + [with_cell(r, 2, "customerID", r[2][0].lower())[2]]),
    "utf-8 text": lambda r: csv_text(with_cell(r[:6], 1, "gender", "Fémale ☃")),
}


@pytest.mark.parametrize("case", sorted(GOOD))
def test_good_files_are_vouched_for(group, tmp_path, telco_rows, case):
    kind, _ = check(tmp_path, group, GOOD[case](telco_rows), vouched=True)
    assert kind == "rows"


def test_bundled_file_without_the_reference(group, data_path, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("the reference ran on a clean file")

    monkeypatch.setattr(csv_input, "validate_file", must_not_run)
    assert validate_file_fast(str(data_path), group) == CsvSummary(rows=7043)


def test_local_pipeline_uses_the_fast_check(spec, tmp_path, monkeypatch, telco_rows):
    """Validate input runs the fast check; the reference only for a file it cannot vouch for."""
    from pipeline.runner import LocalPipeline, PipelineFailed, Workspace  # here: the rest of this file does not need it

    pipeline = LocalPipeline(spec=spec, settings=PipelineSettings(), workspace=Workspace(tmp_path / "ws"))
    calls = []
    monkeypatch.setattr(csv_input, "validate_file", lambda path, s, not_after: calls.append(path) or
                        validate_file(path, s, not_after))
    good = tmp_path / "good.csv"
    good.write_text(csv_text(telco_rows[:6]))
    with pytest.raises(PipelineFailed) as later:  # six customers pass validation, then cannot train a model
        pipeline.run(good)
    assert calls == [] and later.value.step != "Validate input"
    assert later.value.outcome.step_seconds["Validate input"] >= 0
    bad = tmp_path / "bad.csv"
    bad.write_text(csv_text(with_cell(telco_rows[:6], 4, "tenure", "ten")))
    with pytest.raises(InputValidationError, match=r"line 5, column 'tenure': expected a whole number \(value 'ten'\)"):
        pipeline.run(bad)
    assert calls == [str(bad)]


# -- valid but unusual: the reference answers ------------------------------------------------------
ODD_BUT_VALID = {
    "integral underscores": ("tenure", "1_000"),
    "integral exponent": ("tenure", "1e3"),
    "integral arabic digit": ("tenure", "\u0663"),
    "integral nbsp": ("tenure", "\u00a05"),
    "integral over 18 digits": ("tenure", "1" * 19),
    "fractional underscores": ("MonthlyCharges", "1_000.5"),
    "fractional big exponent": ("MonthlyCharges", "1e30"),
    "fractional of 30 digits": ("MonthlyCharges", "1" * 30 + ".5"),
    "quote inside a field": ("gender", 'Fe"male'),
    "doubled quotes": ("PaymentMethod", '"Credit ""card"""'),
}


@pytest.mark.parametrize("case", sorted(ODD_BUT_VALID))
def test_odd_but_valid_values_go_to_the_reference(group, tmp_path, telco_rows, case):
    column, value = ODD_BUT_VALID[case]
    assert check(tmp_path, group, csv_text(with_cell(telco_rows[:6], 3, column, value)), vouched=False) == ("rows", 5)


@pytest.mark.parametrize("blank", ["   ", '""', " \t "])
def test_blank_looking_lines_inside_get_the_reference_error(group, tmp_path, telco_rows, blank):
    content = csv_text(telco_rows[:3]) + blank + "\n" + csv_text(telco_rows[3:6])
    assert check(tmp_path, group, content, vouched=False)[1].endswith("line 4: a blank line inside the data "
                                                                     "(blank lines may only end the file)")


# -- bad files: the reference's error, never a vouch ----------------------------------------------
def _ragged(r, extra):
    rows = [list(row) for row in r[:6]]
    rows[4] = rows[4] + ["extra"] if extra else rows[4][:-1]
    return csv_text(rows)


BAD = {
    "empty file": (lambda r: "", "the file is empty"),
    "header only": (lambda r: csv_text(r[:1]), "no data rows"),
    "header and empty lines": (lambda r: csv_text(r[:1]) + "\n\r\n\n", "no data rows"),
    "a blank line inside": (lambda r: csv_text(r[:3]) + "\n" + csv_text(r[3:6]), "line 4: a blank line inside"),
    "a blank line at a block start": (lambda r: csv_text(r[:3]) + " \r\n" + csv_text(r[3:6]), "blank line inside"),
    "blank first line": (lambda r: "\n" + csv_text(r[:6]), "line 1"),
    "header row empty": (lambda r: " \n" + csv_text(r[:6]), "the header row is empty"),
    "missing id column": (lambda r: csv_text([row[1:] for row in r[:6]]), "missing column(s) ['customerID']"),
    "missing label column": (lambda r: csv_text([row[:-1] for row in r[:6]]), "missing column(s) ['Churn']"),
    "duplicate column": (lambda r: csv_text([row + [row[5]] for row in r[:6]]), "duplicate column name(s) ['tenure']"),
    "semicolons": (lambda r: csv_text(r[:6]).replace(",", ";"), "semicolons, not commas"),
    "tabs": (lambda r: csv_text(r[:6]).replace(",", "\t"), "tabs, not commas"),
    "duplicate id": (lambda r: csv_text(r[:6] + [r[2]]),
                     "line 7, column 'customerID': duplicate record identifier '5575-GNVDE' (first seen on line 3)"),
    "duplicate id after strip": (lambda r: csv_text(r[:6] + [with_cell(r, 2, "customerID", " 5575-GNVDE\t")[2]]),
                                 "(first seen on line 3)"),
    "duplicate id after unicode strip": (
        lambda r: csv_text(r[:6] + [with_cell(r, 2, "customerID", "\u30005575-GNVDE\u2028")[2]]), "duplicate record"),
    "duplicate id across quoting": (lambda r: csv_text(r[:6] + [with_cell(r, 2, "customerID", '"5575-GNVDE"')[2]]),
                                    "duplicate record"),
    "empty id": (lambda r: csv_text(with_cell(r[:6], 1, "customerID", "")), "line 2, column 'customerID': the record"),
    "blank id": (lambda r: csv_text(with_cell(r[:6], 1, "customerID", " \u00a0")), "the record identifier is empty"),
    "text in integral": (lambda r: csv_text(with_cell(r[:6], 3, "tenure", "ten")), "line 4, column 'tenure'"),
    "fraction in integral": (lambda r: csv_text(with_cell(r[:6], 3, "tenure", "1.5")), "expected a whole number"),
    # read exactly, not through a float (which made 1111111111111111111.5 the whole number 1111111111111111168)
    "fraction in a long integral": (lambda r: csv_text(with_cell(r[:6], 3, "tenure", "1" * 19 + ".5")),
                                    "expected a whole number"),
    "integral over 64 bits": (lambda r: csv_text(with_cell(r[:6], 3, "tenure", "9" * 19)), "fits in 64 bits"),
    "text in fractional": (lambda r: csv_text(with_cell(r[:6], 3, "MonthlyCharges", "fifty")), "'fifty'"),
    "infinite fractional": (lambda r: csv_text(with_cell(r[:6], 3, "MonthlyCharges", "1e400")), "finite number"),
    "inf": (lambda r: csv_text(with_cell(r[:6], 3, "TotalCharges", "inf")), "finite number"),
    "nan": (lambda r: csv_text(with_cell(r[:6], 3, "TotalCharges", "nan")), "finite number"),
    "long digits overflow": (lambda r: csv_text(with_cell(r[:6], 3, "TotalCharges", "9" * 400)), "finite number"),
    # finite, but XGBoost's float32 overflows: Train model failed with a C++ backtrace, after ingest
    "beyond float32": (lambda r: csv_text(with_cell(r[:6], 3, "MonthlyCharges", "-1e39")), "line 4, column "
                       "'MonthlyCharges': expected a number within ±3.4e38 (XGBoost's float32) (value '-1e39')"),
    "39 digits": (lambda r: csv_text(with_cell(r[:6], 3, "TotalCharges", "4" * 39)), "float32"),
    "lone dot": (lambda r: csv_text(with_cell(r[:6], 3, "TotalCharges", ".")), "expected a number"),
    "unknown label": (lambda r: csv_text(with_cell(r[:6], 2, "Churn", "Perhaps")), "line 3, column 'Churn'"),
    "empty label": (lambda r: csv_text(with_cell(r[:6], 2, "Churn", " ")), "the label is empty"),
    "non-ascii label": (lambda r: csv_text(with_cell(r[:6], 2, "Churn", "Yés")), "label must be"),
    "zero-width space in label": (lambda r: csv_text(with_cell(r[:6], 2, "Churn", "Yes\u200b")), "label must be"),
    "non-utf8 text": (lambda r: csv_text(r[:6]).encode().replace(b"Male", b"M\xe4le", 1), "not UTF-8"),
    "non-utf8 extra column": (
        lambda r: csv_text(with_extra_column(r[:6], "x")).encode().replace(b",x\n", b",\xff\n", 1),
        "line 2: not UTF-8",
    ),
    "line break in a value": (lambda r: csv_text(with_cell(r[:6], 2, "PaymentMethod", '"two\nlines"')),
                              "line 3, column 'PaymentMethod': the value holds a line break (value 'two\\nlines')"),
    "crlf in a value": (lambda r: csv_text(with_cell(r[:6], 2, "gender", '"Fe\r\nmale"'), "\r\n"),
                        "line 3, column 'gender': the value holds a line break"),
    "nul byte in text": (lambda r: csv_text(with_cell(r[:6], 3, "gender", "Fe\x00male")),
                         "line 4, column 'gender': the value holds a NUL character (value 'Fe\\x00male')"),
    "nul byte in an id": (lambda r: csv_text(with_cell(r[:6], 5, "customerID", "A\x00B")),
                          "line 6, column 'customerID': the value holds a NUL character"),
    "line break in an id": (lambda r: csv_text(with_cell(r[:6], 5, "customerID", '"A\nB"')),
                            "line 6, column 'customerID': the value holds a line break"),
    "line breaks stripped off a value": (lambda r: csv_text(with_cell(r[:6], 3, "PaymentMethod",
                                                                      '"\r\nMailed check\n"')),
                                         "line 4, column 'PaymentMethod': the value holds a line break"),
    "line break in a label": (lambda r: csv_text(with_cell(r[:6], 3, "Churn", '"\r\nYes"')),
                              "line 4, column 'Churn': the value holds a line break"),
    "ragged long": (lambda r: _ragged(r, True), "line 5: expected 21 fields"),
    "ragged short": (lambda r: _ragged(r, False), "line 5: expected 21 fields"),
    "unterminated quote at end": (lambda r: csv_text(r[:6]) + '"', "malformed CSV"),
    "unterminated quote in a row": (lambda r: csv_text(with_cell(r[:6], 5, "Churn", '"No')), "malformed CSV"),
    "text after a closing quote": (lambda r: csv_text(with_cell(r[:6], 2, "gender", '"Fe"male')), "malformed CSV"),
    "space after a closing quote": (lambda r: csv_text(with_cell(r[:6], 2, "gender", '"Female" ')), "malformed CSV"),
    "bare carriage return": (lambda r: csv_text(with_cell(r[:6], 2, "gender", "Fe\rmale")), "malformed CSV"),
    "rows split by bare carriage returns": (lambda r: csv_text(r[:6], "\r"), "line 1: malformed CSV"),
    "a row split by a bare carriage return": (lambda r: csv_text(r[:3]) + csv_text(r[3:6], "\r"), "line 4: malformed"),
    "field over the size limit": (lambda r: csv_text(with_cell(r[:4], 2, "gender", "x" * 131073)), "field larger"),
    "quoted field over the size limit": (lambda r: csv_text(with_cell(r[:4], 2, "gender", '"' + "x" * 131073 + '"')),
                                         "field larger"),
    "quoted lines over the size limit": (
        lambda r: csv_text(with_cell(r[:4], 2, "gender", '"' + "\n".join(["x" * 1000] * 132) + '"')), "field larger"),
    "wide extra column over the limit": (lambda r: csv_text([row + ["y" * (131073 if i == 2 else 1)]
                                                             for i, row in enumerate(r[:4])]), "field larger"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_get_the_reference_error(group, tmp_path, telco_rows, case):
    build, message = BAD[case]
    kind, text = check(tmp_path, group, build(telco_rows), vouched=False)
    assert kind == "error"
    assert message in text
    assert str(tmp_path / "in.csv") in text


def test_missing_file_and_directory(group, tmp_path):
    assert check(tmp_path, group, None, name="missing.csv")[1].endswith("file not found")
    assert check(tmp_path, group, None, name=".")[1].endswith("is a directory, not a CSV file")


# -- an Integral record identifier is compared as a number, as to_record does ---------------------
@pytest.fixture
def integral_id_spec(group):
    return replace(group, record_identifier=Feature(name="customer_id", type="Integral", source="customerID"))


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        (["1", "2", " 3 ", "+4", "5.0"], ("rows", 5)),
        (["1", "2", "007", "7", "8"], "duplicate record identifier '7' (first seen on line 4)"),
        (["1", "+2", "2", "3", "4"], "duplicate record identifier '2'"),
        (["0", "-0", "1", "2", "3"], "duplicate record identifier '0'"),
        (["5.00", "5", "1", "2", "3"], "duplicate record identifier '5'"),
        (["1", "2", "", "3", "4"], "the record identifier is empty"),
        (["1", "2", "x", "3", "4"], "expected a whole number"),
    ],
)
def test_integral_identifiers(integral_id_spec, tmp_path, telco_rows, ids, expected):
    rows = column_values(telco_rows, "customerID", ids)
    result = check(tmp_path, integral_id_spec, csv_text(rows), vouched=expected == ("rows", 5))
    if isinstance(expected, tuple):
        assert result == expected
    else:
        assert result[0] == "error" and expected in result[1]


# -- blocks: quoted fields in small scan blocks, duplicates across pyarrow batches -----------------
def test_small_blocks(group, tmp_path, telco_rows, monkeypatch):
    monkeypatch.setattr(fv, "_SCAN_BLOCK", 300)
    monkeypatch.setattr(fv, "_PARSE_BLOCK", 1024)
    rows = [with_cell(telco_rows, i, "PaymentMethod", f'"line, {i}, of one"')[i] for i in range(1, 40)]
    content = csv_text([telco_rows[0], *rows])
    assert check(tmp_path, group, content, vouched=True) == ("rows", 39)
    kind, text = check(tmp_path, group, content + csv_text([telco_rows[3]]), vouched=False)
    assert kind == "error" and "duplicate record identifier" in text and "line 41" in text
    # a quoted field across a block's end holds a line break: the reference's to judge (here: rejected)
    long_field = with_cell(telco_rows[:3], 2, "PaymentMethod", '"' + "\n".join(["x" * 50] * 20) + '"')
    kind, text = check(tmp_path, group, csv_text(long_field), vouched=False)
    assert kind == "error" and "line 3, column 'PaymentMethod': the value holds a line break" in text
    monkeypatch.setattr(fv, "_SCAN_MAX_BLOCK", 500)  # a block grows past _SCAN_BLOCK only up to this
    wide = with_cell(telco_rows[:3], 2, "PaymentMethod", "y" * 600)
    assert check(tmp_path, group, csv_text(wide), vouched=False) == ("rows", 2)


def test_reason_names_the_column(group, tmp_path, telco_rows):
    path = tmp_path / "in.csv"
    path.write_text(csv_text(with_cell(telco_rows[:6], 3, "tenure", "1_000")))
    assert "'tenure'" in precheck(str(path), group)[1]


def test_does_not_import_pandas(group, data_path, tmp_path, telco_rows):
    """The local mode keeps pandas out of its process (~0.3 s); pa.array() or a Python number in a
    pyarrow.compute call would import it."""
    integral = tmp_path / "integral-ids.csv"
    integral.write_text(csv_text(column_values(telco_rows, "customerID", ["1", "+2", "3.0", " 4 "])))
    program = f"""
import sys
from dataclasses import replace
from churn.schema import Feature, FeatureSpec
from pipeline.fast_validate import precheck
group = FeatureSpec.load({str(SPEC_PATH)!r}).groups[0]
assert precheck({str(data_path)!r}, group)[0].rows == 7043
int_spec = replace(group, record_identifier=Feature(name="customer_id", type="Integral", source="customerID"))
assert precheck({str(integral)!r}, int_spec)[0].rows == 4
assert "pandas" not in sys.modules
"""
    subprocess.run([sys.executable, "-c", program], check=True)


def test_whitespace_list_is_pythons():
    assert PY_WHITESPACE == "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())


def test_field_size_limit_is_read_when_called(group, tmp_path, telco_rows):
    path = tmp_path / "in.csv"
    path.write_text(csv_text(with_cell(telco_rows[:6], 2, "gender", "x" * 5000)))
    assert precheck(str(path), group)[0] == CsvSummary(rows=5)
    old = csv.field_size_limit(4096)
    try:
        kind, text = check(tmp_path, group, path.read_bytes(), vouched=False)
    finally:
        csv.field_size_limit(old)
    assert kind == "error" and "field larger than field limit (4096)" in text


# -- many generated files --------------------------------------------------------------------------
TOKENS = [
    "", " ", "0", "1", "-0", "+5", " 5 ", "5.0", "5.", ".5", "1e3", "1E-5", "1_000", "1.5", "ten", "inf", "nan",
    "1e400", "1e39", "3e38",
    "\u0663", "Yes", " no ", "TRUE", "f", "1.0", "Perhaps", '"quoted"', '"a,b"', '"two\nlines"', '""',
    'a"b', '"a"b', '"open', "\u00a0", "x" * 30, "Fémale", "\u3000y\u3000",
]


def mutate(rng, rows):
    rows = [list(r) for r in rows]
    kind = rng.randrange(9)
    if kind <= 3:  # a cell
        i = rng.randrange(1, len(rows))
        j = rng.randrange(len(rows[i]))
        rows[i][j] = rng.choice(TOKENS)
    elif kind == 4:  # a duplicate row, maybe re-spaced
        row = list(rng.choice(rows[1:]))
        row[0] = rng.choice(["", " ", "\t"]) + row[0]
        rows.insert(rng.randrange(1, len(rows) + 1), row)
    elif kind == 5:  # a blank-ish line, mostly at the end (the only place a blank line may be)
        at = len(rows) if rng.random() < 0.8 else rng.randrange(1, len(rows) + 1)
        rows.insert(at, [rng.choice(["", " ", '""'])])
    elif kind == 6:  # a ragged row
        i = rng.randrange(1, len(rows))
        rows[i] = rows[i][:-1] if rng.random() < 0.5 else rows[i] + ["more"]
    elif kind == 7:  # swap two columns
        a, b = rng.sample(range(len(rows[0])), 2)
        for row in rows:
            if len(row) > max(a, b):
                row[a], row[b] = row[b], row[a]
    else:  # an extra column
        for i, row in enumerate(rows):
            row.append("Extra" if i == 0 else rng.choice(TOKENS))
    return rows


def test_generated_files_agree(group, tmp_path, telco_rows):
    rng = random.Random(20241126)
    seen = {"vouched": 0, "referred": 0, "error": 0}
    for n in range(400):
        rows = telco_rows[: rng.randrange(2, 12)]
        for _ in range(rng.randrange(0, 4)):
            rows = mutate(rng, rows)
        content = csv_text(rows, rng.choice(["\n", "\r\n"])).encode()
        if rng.random() < 0.2:
            content = b"\xef\xbb\xbf" + content
        if rng.random() < 0.1:
            content = content.rstrip(b"\r\n")
        kind, _ = check(tmp_path, group, content, name=f"gen{n}.csv")
        if kind == "error":
            seen["error"] += 1
        elif precheck(str(tmp_path / f"gen{n}.csv"), group)[0] is not None:
            seen["vouched"] += 1
        else:
            seen["referred"] += 1
    assert min(seen.values()) >= 20, seen




@pytest.mark.parametrize(("rows", "expected", "vouched"), [
    (["a,2026-01-01,1", "a,2026-02-01T00:00:00Z,2", "b, 2026-01-01T10:00:00.123Z ,3"], ("rows", 3), True),
    (["a,2026-01-01,1", "a,2026-01-01T00:00:00.000Z,2"], "'a' at 2026-01-01T00:00:00.000Z", False),
    (["a,2026-02-30,1"], "line 2, column 'snapshot': expected a UTC time", False),
    (["a,2026-01-01 10:00,1"], "line 2, column 'snapshot': expected a UTC time", False),
    (["a,2026-01-01T10:00:00.1Z,1"], ("rows", 1), False),  # valid, but not a form the fast check knows
])
def test_histories_have_one_row_per_record_and_event_time(tmp_path, rows, expected, vouched):
    result = check(tmp_path, HISTORY, "customer_id,snapshot,visits\n" + "\n".join(rows) + "\n", vouched=vouched)
    assert result == expected if isinstance(expected, tuple) else expected in result[1]
