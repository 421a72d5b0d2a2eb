"""Bad input: every case either works (BOM, CRLF) or fails once, naming file, line and column."""

import errno
import os

import pytest

from churn.csv_input import InputValidationError, iter_raw_rows, validate_file
from pipeline.fast_validate import validate_file_fast
from pipeline.spec_infer import infer_spec
from tests.support.specs import HISTORY, deny_reading

HEADER = None


@pytest.fixture(scope="module")
def telco_lines(data_path):
    return data_path.read_text().splitlines()


def write(tmp_path, content, name="in.csv"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def sample(telco_lines, rows=5):
    return telco_lines[: rows + 1]


def test_bundled_file_is_valid(group, data_path):
    assert validate_file(str(data_path), group).rows == 7043


def test_bom_and_crlf_work(group, tmp_path, telco_lines):
    path = write(tmp_path, b"\xef\xbb\xbf" + "\r\n".join(sample(telco_lines)).encode() + b"\r\n")
    assert validate_file(str(path), group).rows == 5
    with open(path, "rb") as stream:
        rows = [row for _, row in iter_raw_rows(stream, str(path), group)]
    assert rows[0]["customerID"] == "7590-VHVEG"
    assert rows[0]["Churn"] == "No"  # no stray \r


def expect_error(group, path, *, line=None, column=None, match=None):
    with pytest.raises(InputValidationError) as info:
        validate_file(str(path), group)
    err = info.value
    assert str(path) in str(err)
    if line is not None:
        assert err.line == line, str(err)
        assert f"line {line}" in str(err)
    if column is not None:
        assert err.column == column, str(err)
        assert f"column '{column}'" in str(err)
    if match is not None:
        assert match in str(err), str(err)
    return err


def test_missing_file(group, tmp_path):
    expect_error(group, tmp_path / "missing.csv", match="file not found")


def test_empty_file(group, tmp_path):
    expect_error(group, write(tmp_path, ""), match="empty")


def test_header_only(group, tmp_path, telco_lines):
    expect_error(group, write(tmp_path, telco_lines[0] + "\n"), match="no data rows")


@pytest.mark.parametrize("column", ["customerID", "Churn", "tenure"])
def test_missing_required_column(group, tmp_path, telco_lines, column):
    lines = [line.split(",") for line in sample(telco_lines)]
    index = lines[0].index(column)
    content = "\n".join(",".join(c for i, c in enumerate(cols) if i != index) for cols in lines)
    expect_error(group, write(tmp_path, content), line=1, match=f"missing column(s) ['{column}']")


def test_duplicate_ids(group, tmp_path, telco_lines):
    lines = sample(telco_lines) + [telco_lines[2]]
    expect_error(group, write(tmp_path, "\n".join(lines)), line=7, column="customerID",
                 match="duplicate record identifier '5575-GNVDE' (first seen on line 3)")


def test_text_in_numeric_column(group, tmp_path, telco_lines):
    lines = sample(telco_lines)
    lines[3] = lines[3].replace(",53.85,", ",fifty,")
    expect_error(group, write(tmp_path, "\n".join(lines)), line=4, column="MonthlyCharges", match="'fifty'")


def test_blank_numeric_is_fine(group, tmp_path, telco_lines):
    lines = sample(telco_lines)
    lines[3] = lines[3].replace(",108.15,", ", ,")
    assert validate_file(str(write(tmp_path, "\n".join(lines))), group).rows == 5


def test_unknown_label(group, tmp_path, telco_lines):
    lines = sample(telco_lines)
    lines[2] = lines[2][: lines[2].rindex(",")] + ",Perhaps"
    expect_error(group, write(tmp_path, "\n".join(lines)), line=3, column="Churn", match="'Perhaps'")


def test_wrong_delimiter(group, tmp_path, telco_lines):
    content = "\n".join(line.replace(",", ";") for line in sample(telco_lines))
    expect_error(group, write(tmp_path, content), line=1, match="semicolons, not commas")


def test_non_utf8_bytes(group, tmp_path, telco_lines):
    lines = [line.encode() for line in sample(telco_lines)]
    lines[4] = lines[4].replace(b"Male", b"M\xe4le")
    expect_error(group, write(tmp_path, b"\n".join(lines)), line=5, match="not UTF-8")


def test_ragged_row(group, tmp_path, telco_lines):
    lines = sample(telco_lines)
    lines[5] = lines[5] + ",extra"
    expect_error(group, write(tmp_path, "\n".join(lines)), line=6, match="expected 21 fields")


def test_unterminated_quote(group, tmp_path, telco_lines):
    lines = sample(telco_lines)
    lines[2] = lines[2].replace("Female", '"Female', 1).replace("Male", '"Male', 1)
    expect_error(group, write(tmp_path, "\n".join(lines)), match="line")


def test_an_unterminated_quote_is_reported_on_the_line_its_row_starts(group, tmp_path, telco_lines):
    """Not the line where reading stopped (the end of the file): run, the fast validator and spec infer
    name the row that opened the quote."""
    lines = sample(telco_lines, 30)
    lines[11] = lines[11].replace(",", ',"', 1)
    path = write(tmp_path, "\n".join(lines) + "\n")
    expected = f"{path}, line 12: malformed CSV (a quote opened in this row is never closed)"
    for validate in (validate_file, validate_file_fast):
        with pytest.raises(InputValidationError) as refused:
            validate(str(path), group)
        assert str(refused.value) == expected
    with pytest.raises(InputValidationError) as refused:
        infer_spec(path, id_column="customerID", label_column="Churn")
    assert str(refused.value) == expected


def test_an_unterminated_quote_far_from_the_end_says_so(group, tmp_path, telco_lines):
    """Reading stops where the open value outgrows csv's field limit (128 KiB), not at the end of the file:
    that was reported as 'field larger than field limit' alone, a reason the user would not find in the row."""
    lines = sample(telco_lines, 2000)
    lines[299] = lines[299].replace(",", ',"', 1)
    path = write(tmp_path, "\n".join(lines) + "\n")
    for validate in (validate_file, validate_file_fast):
        with pytest.raises(InputValidationError, match=r", line 300: malformed CSV \(field larger than field limit "
                           r"\(131072\): a quote opened in this row is never closed, or a value is that long\)"):
            validate(str(path), group)


@pytest.mark.parametrize("unnamed", [",", ",,", ",,,"])
def test_columns_without_a_name_are_left_out_however_many(group, tmp_path, telco_lines, unnamed):
    """A spreadsheet export's trailing `,,`: columns no feature can name, so none is read (README.md,
    "Bring your own CSV"); both validators accept the file and ingest reads the same rows as without them."""
    lines = sample(telco_lines)
    plain = write(tmp_path, "\n".join(lines) + "\n", "plain.csv")
    path = write(tmp_path, "".join(f"{line}{unnamed}\n" for line in lines))
    assert validate_file(str(path), group).rows == validate_file_fast(str(path), group).rows == 5
    with open(path, "rb") as stream, open(plain, "rb") as plain_stream:
        rows = [(line, {k: v for k, v in row.items() if k}) for line, row in iter_raw_rows(stream, str(path), group)]
        assert rows == list(iter_raw_rows(plain_stream, str(plain), group))


def test_a_name_twice_is_refused_beside_columns_without_a_name(group, tmp_path, telco_lines):
    lines = sample(telco_lines)
    lines[0] = lines[0].replace(",tenure,", ",,tenure,", 1) + ",tenure,,"
    path = write(tmp_path, "\n".join(lines) + "\n")
    expect_error(group, path, line=1, match="duplicate column name(s) ['tenure']")
    with pytest.raises(InputValidationError, match=r"line 1: duplicate column name\(s\) \['tenure'\]$"):
        validate_file_fast(str(path), group)


def test_a_header_of_only_unnamed_columns_is_empty(group, tmp_path, telco_lines):
    path = write(tmp_path, ",,\n" + "\n".join(sample(telco_lines)[1:]) + "\n")
    expect_error(group, path, line=1, match="the header row is empty")


def test_empty_id(group, tmp_path, telco_lines):
    lines = sample(telco_lines)
    lines[1] = "," + lines[1].split(",", 1)[1]
    expect_error(group, write(tmp_path, "\n".join(lines)), line=2, column="customerID", match="empty")


def test_directory_is_not_a_file(group, tmp_path):
    expect_error(group, tmp_path, match="is a directory")


@pytest.mark.parametrize("kind", ["permission denied", "symlink loop"])
def test_a_file_that_cannot_be_read_is_one_error_naming_it(group, tmp_path, telco_lines, monkeypatch, kind):
    path = tmp_path / "in.csv"
    if kind == "symlink loop":
        path.symlink_to(path)
    else:
        write(tmp_path, "\n".join(sample(telco_lines)))
        deny_reading(monkeypatch, path)
    reason = os.strerror(errno.EACCES if kind == "permission denied" else errno.ELOOP)
    for validate in (validate_file, validate_file_fast):
        with pytest.raises(InputValidationError) as refused:
            validate(str(path), group)
        assert str(refused.value) == f"{path}: cannot be read ({reason})"


def test_a_blank_line_inside_the_data_is_rejected_where_it_is(group, tmp_path, telco_lines):
    lines = sample(telco_lines, 4)
    path = write(tmp_path, "\n".join(lines[:3] + ["", *lines[3:]]) + "\n")
    expect_error(group, path, line=4, match="blank line inside the data")


def test_blank_lines_may_end_the_file(group, tmp_path, telco_lines):
    path = write(tmp_path, "\n".join(sample(telco_lines, 4)) + "\n\n  \n\n")
    assert validate_file(str(path), group).rows == 4


@pytest.mark.parametrize("value", ['"Month\nto-month"', '"Month-to-month\n"', '"\r\nMonth-to-month"'])
def test_a_value_with_a_line_break_is_rejected_at_its_first_line(group, tmp_path, telco_lines, value):
    lines = sample(telco_lines, 3)
    lines[3] = lines[3].replace("Month-to-month", value, 1)
    assert value in lines[3]
    expect_error(group, write(tmp_path, "\n".join(lines) + "\n"), line=4, column="Contract", match="line break")




def test_a_history_has_one_row_per_record_and_event_time(tmp_path):
    ok = write(tmp_path, "customer_id,snapshot,visits\na,2026-01-01,1\na,2026-02-01T00:00:00Z,2\nb,2026-01-01,3\n")
    assert validate_file(str(ok), HISTORY).rows == 3
    twice = write(tmp_path, "customer_id,snapshot,visits\na,2026-01-01,1\na,2026-01-01T00:00:00.000Z,2\n", "2.csv")
    err = expect_error(HISTORY, twice, line=3, column="customer_id", match="'a' at 2026-01-01T00:00:00.000Z")
    assert "first seen on line 2" in str(err)


ARABIC_INDIC_2026 = "\u0662\u0660\u0662\u0666"  # strptime() takes these digits; Feature Store's form is ASCII


@pytest.mark.parametrize("value", ["2026-13-01", "yesterday", "2026-01-01 10:00:00", "", f"{ARABIC_INDIC_2026}-01-02",
                                   f"{ARABIC_INDIC_2026}-01-02T03:04:05Z"])
def test_a_history_row_needs_a_valid_event_time(tmp_path, value):
    path = write(tmp_path, f"customer_id,snapshot,visits\na,2026-01-01,1\nb,{value},2\n")
    expect_error(HISTORY, path, line=3, column="snapshot", match="expected a UTC time")


def test_a_history_row_after_the_run_is_refused_by_both_validators(tmp_path):
    """A version dated after the run would be served online at once but used by no training set or batch
    score (they read as of the run): Validate input refuses it, the fast validator deferring to this one."""
    path = write(tmp_path, "customer_id,snapshot,visits\na,2026-01-01,1\nb,2026-03-01T00:00:00.001Z,2\n")
    run = "2026-03-01T00:00:00.000Z"
    for validate in (validate_file, validate_file_fast):
        with pytest.raises(InputValidationError) as raised:
            validate(str(path), HISTORY, not_after=run)
        assert (raised.value.line, raised.value.column) == (3, "snapshot")
        assert raised.value.reason.startswith("the event time 2026-03-01T00:00:00.001Z is after the run's")
        assert validate(str(path), HISTORY, not_after="2026-03-01T00:00:00.001Z").rows == 2  # at the run: kept
