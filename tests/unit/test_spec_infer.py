"""`spec infer`'s proposals (pipeline.spec_infer): every name it writes is a valid Feature Store name
for the column it comes from, and every renaming a user would not guess is reported."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from churn.csv_input import InputValidationError, validate_file
from churn.schema import MAX_NAME_LENGTH
from pipeline.spec_infer import Inference, infer_spec

# Feature Store's FeatureName pattern, lower case as the spec requires: no leading or trailing separator.
VALID_NAME = re.compile(r"^[a-z0-9]([_]?[a-z0-9])*$")


def infer(tmp_path: Path, *columns: str) -> Inference:
    """The spec inferred from a CSV of `id`, the given feature columns (numbers), `churn`, with as many rows
    of each class as training needs (fewer is a problem of its own)."""
    path = tmp_path / "customers.csv"
    rows = [["id", *columns, "churn"]] + [[f"A{i}", *(str(i) for _ in columns), ("Yes", "No")[i % 2]]
                                          for i in range(2 * min_rows_per_class())]
    path.write_text("".join(",".join(row) + "\n" for row in rows), encoding="utf-8")
    return infer_spec(path, id_column="id", label_column="churn")


def feature_names(inference: Inference) -> dict[str, str]:
    """CSV column -> feature name."""
    return {f.source_column: f.name for f in inference.spec.features}


def test_columns_sharing_a_long_prefix_get_distinct_names_within_the_limit(tmp_path):
    prefix = "metric_" + "x" * 70
    names = feature_names(infer(tmp_path, prefix + "a", prefix + "b"))
    assert len(set(names.values())) == 2
    for name in names.values():
        assert len(name) <= MAX_NAME_LENGTH and VALID_NAME.match(name), name
    assert names[prefix + "b"].endswith("_2")


def test_a_long_name_cut_at_a_separator_loses_the_separator(tmp_path):
    column = " ".join("abcdefghijklmnopqrstuvwxyzabcdef") + " f"  # cut at 64, its 64th character is a separator
    inference = infer(tmp_path, column)
    (name,) = feature_names(inference).values()
    assert len(name) <= MAX_NAME_LENGTH and VALID_NAME.match(name), name
    assert any(f"column '{column}'" in p and f"'{name}'" in p for p in inference.problems), inference.problems


def test_a_reserved_name_renamed_stays_valid(tmp_path):
    names = feature_names(infer(tmp_path, "write_time"))
    assert names == {"write_time": "write_time_value"}


def test_every_feature_reads_a_column_of_the_csv(tmp_path):
    """A feature without `source` reads the column of its own name: a column named '' cannot be one."""
    inference = infer(tmp_path, "Größe", "", "tenure")
    header = ["id", "Größe", "", "tenure", "churn"]
    assert set(inference.spec.groups[0].source_columns) <= set(header) - {""}
    assert [f.source_column for f in inference.spec.features] == ["Größe", "tenure"]
    assert any(p.startswith("column 3 has no name in the header: left out") for p in inference.problems)


def test_every_column_without_a_name_is_left_out(tmp_path):
    """A spreadsheet export's trailing `,,`: several unnamed columns, each left out and reported."""
    inference = infer(tmp_path, "", "tenure", "", "")
    assert [f.source_column for f in inference.spec.features] == ["tenure"]
    assert [p for p in inference.problems if "has no name" in p] == [
        f"column {n} has no name in the header: left out (name it to make it a feature)" for n in (2, 4, 5)]


def test_letters_outside_ascii_lose_their_accents_and_each_renaming_is_reported(tmp_path):
    inference = infer(tmp_path, "Größe", "émoji😀", "Crème Brûlée", "日本")
    assert feature_names(inference) == {"Größe": "grosse", "émoji😀": "emoji", "Crème Brûlée": "creme_brulee",
                                        "日本": "column"}
    for column, name in (("Größe", "grosse"), ("émoji😀", "emoji"), ("Crème Brûlée", "creme_brulee"),
                         ("日本", "column")):
        assert any(p.startswith(f"column '{column}' ") and p.endswith(f": named '{name}'")
                   for p in inference.problems), (column, inference.problems)
    assert not any("Crème" in p and "日本" in p for p in inference.problems)  # one line a column


def test_a_plain_ascii_column_is_renamed_silently(tmp_path):
    """customerID -> customer_id is the documented normalisation: the table shows it, no warning."""
    assert not infer(tmp_path, "MonthlyCharges").problems


def test_a_duplicate_column_name_is_refused_as_run_refuses_it(tmp_path):
    with pytest.raises(InputValidationError) as refused:
        infer(tmp_path, "x", "x")
    assert str(refused.value) == f"{tmp_path / 'customers.csv'}, line 1: duplicate column name(s) ['x']"


def test_a_column_renamed_for_several_reasons_gets_one_line_giving_each(tmp_path):
    first, second = "metric_" + "x" * 70 + "a", "metric_" + "x" * 70 + "b"
    inference = infer(tmp_path, first, second, "Write Time")
    assert inference.problems == [
        f"column '{first}' makes a name over 64 characters, Feature Store's limit: named 'metric_{'x' * 57}'",
        f"column '{second}' makes a name over 64 characters, Feature Store's limit; makes 'metric_{'x' * 57}', "
        f"a name already taken: named 'metric_{'x' * 55}_2'",
        "column 'Write Time' makes 'write_time', a name Feature Store reserves: named 'write_time_value'",
    ]


def test_numbers_written_with_leading_zeros_are_text(tmp_path):
    """A zip code "00332" or a code "007" loses its zeros as a number: inferred String (and the id too),
    while "0", "0.5" and "-0.25" are still numbers."""
    path = tmp_path / "customers.csv"
    path.write_text("id,zip,code,small,ratio,churn\n"
                    "007,00332,12,0,0.5,Yes\n"
                    "012,90210,007,1,-0.25,No\n", encoding="utf-8")
    inference = infer_spec(path, id_column="id", label_column="churn")
    kinds = {f.source_column: f.type for f in inference.spec.features}
    assert kinds == {"zip": "String", "code": "String", "small": "Integral", "ratio": "Fractional"}
    assert inference.spec.record_identifier.type == "String"
    assert any("zip" in problem and "leading zero" in problem for problem in inference.problems)


def test_columns_of_times_or_of_one_value_are_named(tmp_path):
    """Kept as features, as every column is, but named: a snapshot time became a category no later snapshot
    matches, without a word."""
    path = tmp_path / "customers.csv"
    path.write_text("id,snapshot_time,signed_up,country,plan,churn\n"
                    "1,2026-01-01T00:00:00Z,2025-03-04,NZ,basic,Yes\n"
                    "2,2026-01-01T00:00:00Z,2024-11-30,NZ,pro,No\n", encoding="utf-8")
    problems = infer_spec(path, id_column="id", label_column="churn").problems
    assert [p for p in problems if "dates or times" in p] == [
        "column 'snapshot_time' holds dates or times ('2026-01-01T00:00:00Z'): as a String feature each is a "
        "category, which a later snapshot's times never match; remove it from the spec, or with several feature "
        "groups make it a group's event time `source`",
        "column 'signed_up' holds dates or times ('2024-11-30'): as a String feature each is a category, which a "
        "later snapshot's times never match; remove it from the spec, or with several feature groups make it a "
        "group's event time `source`"]
    assert "column 'country' holds 'NZ' in every row: it tells the model nothing; remove it from the spec" in problems
    assert not any("'plan'" in problem for problem in problems)


def test_a_number_beyond_float32_is_named_as_ingest_refuses_it(tmp_path):
    """XGBoost holds features as float32: run refuses 1e39 at Validate input, so infer names it (a 40-digit whole
    number got the advice that it would be kept as Fractional)."""
    path = tmp_path / "customers.csv"
    path.write_text(f"id,amount,count,churn\n1,1e39,{'4' * 40},Yes\n2,2.5,{'1' * 20},No\n", encoding="utf-8")
    problems = infer_spec(path, id_column="id", label_column="churn").problems
    assert [p for p in problems if "3.4e38" in p] == [
        "column 'amount' holds '1e39', not a finite number within ±3.4e38 (XGBoost's float32): ingest refuses such "
        "values in a Fractional feature; leave them blank (missing), or make it a String",
        f"column 'count' holds '{'4' * 40}', not a finite number within ±3.4e38 (XGBoost's float32): ingest refuses "
        "such values in a Fractional feature; leave them blank (missing), or make it a String"]
    assert not any("beyond 64 bits" in p for p in problems)


@pytest.mark.parametrize(("codes", "named"), [(1000, False), (1001, True)])
def test_a_text_column_with_over_1000_distinct_values_is_named_a_likely_identifier(tmp_path, codes, named):
    path = tmp_path / "customers.csv"
    path.write_text("id,code,churn\n" + "".join(f"A{i},c{i % codes},Yes\n" for i in range(3000)), encoding="utf-8")
    problems = infer_spec(path, id_column="id", label_column="churn").problems
    flagged = ("column 'code' has over 1000 distinct text values: an identifier or free text? It is kept as a String "
               "feature; remove it from the spec if it carries no signal")
    assert (flagged in problems) is named


def refusals(path: Path, group) -> tuple[str, str]:
    """What `run --local`'s validation and `spec infer` say of the Telco-like file at `path`."""
    with pytest.raises(InputValidationError) as run:
        validate_file(str(path), group)
    with pytest.raises(InputValidationError) as inferred:
        infer_spec(path, id_column="customerID", label_column="Churn")
    return str(run.value), str(inferred.value)


def telco_lines(data_path: Path, rows: int = 20) -> list[bytes]:
    return data_path.read_bytes().splitlines(keepends=True)[: rows + 1]


def _edit_line(number: int, old: bytes, new: bytes):
    """An edit of the Telco lines: the first `old` on file line `number` becomes `new`."""
    def edit(lines: list[bytes]) -> None:
        lines[number - 1] = lines[number - 1].replace(old, new, 1)
    return edit


@pytest.mark.parametrize(("edit", "error"), [
    (_edit_line(17, b",", b"\xe9,"), "line 17: not UTF-8 text (byte 0xe9 at position 11)"),
    (_edit_line(12, b",", b"," + b"x" * 131073), "line 12: malformed CSV (field larger than field limit (131072): "
     "a quote opened in this row is never closed, or a value is that long)"),
    (lambda lines: lines.insert(9, b"\r\n"),
     "line 10: a blank line inside the data (blank lines may only end the file)"),
    (_edit_line(6, b",Female,", b',"Fe\nmale",'),
     "line 6, column 'gender': the value holds a line break (value 'Fe\\nmale'); every record must fit on one line"),
    (_edit_line(6, b",Female,", b',"Fe\rmale",'),
     "line 6, column 'gender': the value holds a line break (value 'Fe\\rmale'); every record must fit on one line"),
    (_edit_line(8, b",Male,", b",Ma\x00le,"),
     "line 8, column 'gender': the value holds a NUL character (value 'Ma\\x00le'), which no value may hold"),
    (lambda lines: lines.__setitem__(slice(None), [line.replace(b"\n", b"\r") for line in lines]),
     "line 1: malformed CSV header (a carriage return ends a line or sits in an unquoted value: lines ending in a "
     "carriage return alone (old Mac files) must be saved with LF or CRLF endings)"),
], ids=["not utf-8", "field too large", "blank line inside", "line break in a value", "lone CR in a value",
        "NUL in a value", "lines ending in a lone CR"])
def test_a_file_run_refuses_is_refused_on_its_line_as_run_refuses_it(tmp_path, data_path, group, edit, error):
    lines = telco_lines(data_path)
    edit(lines)
    path = tmp_path / "customers.csv"
    path.write_bytes(b"".join(lines))
    run, inferred = refusals(path, group)
    assert inferred == run == f"{path}, {error}"


def test_a_label_value_run_refuses_is_named_on_its_line_as_run_names_it(tmp_path, data_path, group):
    lines = telco_lines(data_path, rows=4000)
    lines[3499] = lines[3499].rstrip(b"\n").rsplit(b",", 1)[0] + b", Maybe\n"  # line 3500's Churn, spaced
    path = tmp_path / "customers.csv"
    path.write_bytes(b"".join(lines))
    run, inferred = refusals(path, group)
    assert run.startswith(f"{path}, line 3500, column 'Churn': ")
    assert inferred == f"{path}, line 3500, column 'Churn': label values ['Maybe'] are not Yes/No, True/False or 1/0"


def test_blank_lines_ending_the_file_are_accepted_as_run_accepts_them(tmp_path, data_path, group):
    path = tmp_path / "trailing.csv"
    path.write_bytes(b"".join(telco_lines(data_path)) + b"\n\r\n")
    assert validate_file(str(path), group).rows == infer_spec(path, id_column="customerID", label_column="Churn").rows


def churn_file(tmp_path: Path, columns: dict[str, list[str]], rows: int) -> Path:
    """`id`, the given columns (each value list cycled over the rows), `churn` alternating Yes/No."""
    path = tmp_path / "customers.csv"
    lines = ["id," + ",".join(columns) + ",churn\n"]
    lines += [f"C{i}," + ",".join(values[i % len(values)] for values in columns.values()) + f",{('Yes', 'No')[i % 2]}\n"
              for i in range(rows)]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_a_number_column_with_a_few_stray_values_is_named_with_the_first_of_them(tmp_path):
    """'N/A' in 3 of 1200 rows, one 'x' in 200: inferred String (so categories to the model), and said so;
    not named a likely identifier for its many distinct values."""
    charges = [str(n * 1.5) for n in range(1197)] + ["N/A", "n/a", "N/A"]
    visits = ["x" if n == 150 else str(n) for n in range(200)]
    path = churn_file(tmp_path, {"charges": charges, "visits": visits}, 1200)
    inference = infer_spec(path, id_column="id", label_column="churn")
    assert {f.source_column: f.type for f in inference.spec.features} == {"charges": "String", "visits": "String"}
    assert inference.problems == [
        "column 'charges' holds numbers but 3 values that are not (the first: 'N/A', line 1199): inferred String, "
        "so the model takes its numbers as categories; blank those values (missing) or fix them to make it a "
        "number column",
        "column 'visits' holds numbers but 6 values that are not (the first: 'x', line 152): inferred String, "
        "so the model takes its numbers as categories; blank those values (missing) or fix them to make it a "
        "number column",
    ]


@pytest.mark.parametrize("values", [
    ["Yes", "No", "No phone service"],  # text
    ["A", "B", "12", "7"],  # codes, some of them digits
    ["N/A"] + [str(n) for n in range(49)],  # 2% not numbers: too many to be strays
    [f"code{n}" if n % 100 == 0 else str(n) for n in range(1100)],  # 11 different non-numbers in 1%
], ids=["text", "codes", "two percent", "eleven different"])
def test_a_text_column_is_not_named_a_number_column_with_strays(tmp_path, values):
    inference = infer_spec(churn_file(tmp_path, {"plan": values}, 2200), id_column="id", label_column="churn")
    assert inference.spec.features[0].type == "String"
    assert not [p for p in inference.problems if "that are not" in p], inference.problems


def min_rows_per_class() -> int:
    """The training script's least rows of each label class (training/, as the local run loads it)."""
    from churn.layout import HYPERPARAMETERS_MODULE
    from pipeline.local_aws.batch_transform import serving_module
    from pipeline.runner import TRAINING_DIR

    return serving_module(TRAINING_DIR, HYPERPARAMETERS_MODULE).MIN_ROWS_PER_CLASS


@pytest.mark.parametrize("churned", [0, min_rows_per_class() - 1, min_rows_per_class()])
def test_a_label_with_too_few_rows_of_a_class_is_named_before_train_model_fails(tmp_path, churned):
    """Every row 'No': the run would ingest them all, then fail at Train model."""
    path = tmp_path / "customers.csv"
    path.write_text("id,tenure,churn\n" + "".join(f"C{i},{i},{'Yes' if i < churned else 'No'}\n" for i in range(40)),
                    encoding="utf-8")
    problems = infer_spec(path, id_column="id", label_column="churn").problems
    least = min_rows_per_class()
    named = (f"label 'churn' is true (Yes, True or 1) in {churned} of the 40 rows read and false in {40 - churned}: "
             f"training needs at least {least} rows of each, so the run would fail at Train model")
    assert problems == ([named] if churned < least else [])


def test_repeated_ids_are_named_with_the_first_as_run_refuses_it(tmp_path, group):
    path = tmp_path / "customers.csv"
    path.write_text("id,tenure,churn\n" + "".join(f"C{i % 30},{i},{('Yes', 'No')[i % 2]}\n" for i in range(40)),
                    encoding="utf-8")
    problems = infer_spec(path, id_column="id", label_column="churn").problems
    assert problems == ["id column 'id' repeats 10 ids (the first: 'C0', on lines 2 and 32): run refuses the file "
                        "at Validate input, one row an id; keep one row per id"]
    spec = infer_spec(path, id_column="id", label_column="churn").spec
    with pytest.raises(InputValidationError) as run:
        validate_file(str(path), spec.groups[0])
    assert str(run.value) == f"{path}, line 32, column 'id': duplicate record identifier 'C0' (first seen on line 2)"


@pytest.mark.parametrize("rows", [20, 21])
def test_a_file_read_only_in_part_says_so(tmp_path, rows):
    """Past `max_rows` spec infer stops reading: the proposal says its types come from those rows only."""
    path = churn_file(tmp_path, {"tenure": ["1", "2"]}, rows)
    problems = infer_spec(path, id_column="id", label_column="churn", max_rows=20).problems
    partly = [p for p in problems if p.startswith("only the first 20 rows were read")]
    assert len(partly) == (rows > 20)
