"""Reading raw churn CSVs: streamed, validated whole before anything is written.

Every problem is reported once, as `file, line N, column C: reason`, so a user can open the file
at that spot. A UTF-8 BOM and CRLF line endings are accepted; anything else that is not a clean
CSV of the spec's columns is an InputValidationError.
"""

from __future__ import annotations

import codecs
import csv
import functools
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from churn import contract
from churn.features import RowError, to_record
from churn.schema import FeatureGroupSpec

_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}
# The file line of the first data row (the header is line 1). As validation admits no blank line and
# no value with a line break, data row N (from 0, as the Distributed Map numbers its items) is on line
# N + FIRST_DATA_LINE.
FIRST_DATA_LINE = 2
# What csv.reader(strict=True)'s "unexpected end of data" means: the file ends inside a quoted value.
_UNCLOSED_QUOTE = "a quote opened in this row is never closed"
# Lines are split at LF only, so the only line end an unquoted value can hold is a carriage return: Python's own
# words for it suggest opening the file in another mode, which a user of the file cannot do.
_LONE_CR = ("a carriage return ends a line or sits in an unquoted value: lines ending in a carriage return alone "
            "(old Mac files) must be saved with LF or CRLF endings")


class InputValidationError(ValueError):
    """The input file cannot be ingested. The message names file, line and column."""

    def __init__(self, source: str, reason: str, *, line: int | None = None, column: str | None = None):
        self.source, self.line, self.column, self.reason = source, line, column, reason
        at = (f", line {line}" if line is not None else "") + (f", column '{column}'" if column is not None else "")
        super().__init__(f"{source}{at}: {reason}")

    def __reduce__(self) -> tuple:  # rebuilt from its parts: it crosses back intact from an ingest worker process
        return functools.partial(type(self), line=self.line, column=self.column), (self.source, self.reason)


def map_item_rows(items: list[dict[str, Any]]) -> list[tuple[int, dict[str, str | None]]]:
    """Distributed Map items, `{ITEM_INDEX: the row's position in the file, ITEM_ROW: the row}` (its CSV item
    reader keys a row by the header as written), as iter_raw_rows reads them: (file line, row), a BOM and
    stray spaces dropped from the column names, and no blank line. The reader makes an item of a blank line
    (every value an empty string: the fields a row lacks are empty strings); data_rows admits blank lines
    only at the end of the file, so such an item is nothing more."""
    lines_and_rows = ((item[contract.ITEM_INDEX] + FIRST_DATA_LINE, item[contract.ITEM_ROW]) for item in items)
    rows = [(line, {str(k).lstrip("\ufeff").strip(): (None if v is None else str(v)) for k, v in row.items()})
            for line, row in lines_and_rows]
    return [(line, row) for line, row in rows if any(value and value.strip() for value in row.values())]


@dataclass(frozen=True)
class CsvSummary:
    rows: int


def _byte_lines(stream: BinaryIO, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """Split any readable binary stream (file, S3 StreamingBody) into lines, endings kept."""
    pending = b""
    for chunk in iter(functools.partial(stream.read, chunk_size), b""):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            yield line + b"\n"
    if pending:
        yield pending


def text_lines(stream: BinaryIO, source: str) -> Iterator[str]:
    """Decode UTF-8 (a leading BOM dropped) line by line, so a bad byte is reported with its line."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
    for number, raw in enumerate(_byte_lines(stream), start=1):
        try:
            yield decoder.decode(raw)
        except UnicodeDecodeError as exc:
            raise InputValidationError(
                source, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at position {exc.start + 1})", line=number
            ) from None


def csv_rows(stream: BinaryIO, source: str) -> Iterator[tuple[int, int, list[str]]]:
    """Each row of the UTF-8 CSV text as (the line it starts on, the line it ends on, its fields).

    The one reader of a raw CSV (validation, ingest, `spec infer`): strict, so `"a"b` is an error
    rather than a guess; a row the reader cannot split is an InputValidationError naming its line.
    """
    reader = csv.reader(text_lines(stream, source), strict=True)
    end = 0
    try:
        for row in reader:
            start, end = end + 1, reader.line_num  # a quoted value may go on over lines
            yield start, end, row
    except csv.Error as exc:
        # Named by the line the broken row starts on: reading stops further on (at the end of the file,
        # for a quote never closed), where the user would find nothing wrong.
        reason = (_UNCLOSED_QUOTE if str(exc) == "unexpected end of data"
                  else _LONE_CR if str(exc).startswith("new-line character seen in unquoted field")
                  # a quote left open takes in the lines after it until the value outgrows the limit
                  else f"{exc}: {_UNCLOSED_QUOTE}, or a value is that long" if str(exc).startswith("field larger")
                  else str(exc))
        raise InputValidationError(source, f"malformed CSV{' header' if end == 0 else ''} ({reason})",
                                   line=end + 1) from None


def read_header(rows: Iterator[tuple[int, int, list[str]]], source: str, group: FeatureGroupSpec) -> list[str]:
    """The header row of `csv_rows`, its names stripped, checked against the group's columns."""
    try:
        _, _, header = next(rows)
    except StopIteration:
        raise InputValidationError(source, "the file is empty (no header row)") from None
    header = [h.strip() for h in header]
    check_header(header, source, group)
    return header


def iter_raw_rows(stream: BinaryIO, source: str, group: FeatureGroupSpec) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row as column -> text) after checking the header against the group's columns."""
    rows = csv_rows(stream, source)
    header = read_header(rows, source, group)
    for line, row in data_rows(rows, header, source):
        yield line, dict(zip(header, row, strict=True))


def data_rows(rows: Iterator[tuple[int, int, list[str]]], header: list[str], source: str
              ) -> Iterator[tuple[int, list[str]]]:
    """The data rows of `csv_rows` after `read_header`, as (line number, fields), each the header's width on
    one line (the rules of run and `spec infer` alike).

    A blank line may only end the file: the Distributed Map reads the file as items, one a line, and whether
    its CSV reader counts a blank line (as an item of empty strings: map_item_rows drops those) is not
    documented, so the lines it names could shift.
    """
    blank = None
    for line, end, row in rows:
        if not row or (len(row) == 1 and row[0].strip() == ""):
            blank = blank or line
            continue
        if blank is not None:
            raise InputValidationError(source, "a blank line inside the data (blank lines may only end the file)",
                                       line=blank)
        if len(row) != len(header):
            raise InputValidationError(source, f"expected {len(header)} fields as in the header, found {len(row)}",
                                       line=line)
        if end != line:  # a quoted value went on over lines
            for column, value in zip(header, row, strict=True):
                if "\n" in value or "\r" in value:
                    raise _line_break(source, value, line, column)
        yield line, row


def _line_break(source: str, value: str, line: int, column: str) -> InputValidationError:
    # Ingest numbers each record by its line, and batch scoring reads customers line by line.
    return InputValidationError(source, f"the value holds a line break (value {value!r}); every record must fit on "
                                "one line", line=line, column=column)


def check_text(columns: Iterable[str], values: Collection[str], source: str, line: int) -> None:
    """Refuse a row's value that no record may hold, judged stripped as a record holds it: a carriage return (a
    quoted value may hold one on its line: batch scoring would cut it) or a NUL (XGBoost refuses a category holding
    one, after the records are in the feature store). The rule of run and `spec infer` alike: `columns` names each
    value's column (read only when a value is refused); a column without a name is read by no feature."""
    joined = "".join(values)
    if "\r" not in joined and "\x00" not in joined:
        return
    for column, value in zip(columns, values, strict=True):
        text = value.strip() if column else ""
        if "\r" in text:
            raise _line_break(source, text, line, column)
        if "\x00" in text:
            raise InputValidationError(source, f"the value holds a NUL character (value {text!r}), which no value "
                                       "may hold", line=line, column=column)


def check_header(header: list[str], source: str, group: FeatureGroupSpec) -> None:
    """A column without a name (an export's trailing `,,`) is read by no feature, however many there are:
    a feature reads the column its `source`, or else its own name, names."""
    if not any(header):
        raise InputValidationError(source, "the header row is empty", line=1)
    if len(header) == 1:
        for delimiter, name in _DELIMITERS.items():
            if delimiter in header[0]:
                raise InputValidationError(
                    source, f"the header is split by {name}s, not commas: save the file as comma-separated CSV", line=1
                )
    if duplicates := sorted({h for h in header if h and header.count(h) > 1}):
        raise InputValidationError(source, f"duplicate column name(s) {duplicates}", line=1)
    if missing := [column for column in group.source_columns if column not in header]:
        raise InputValidationError(
            source, f"missing column(s) {missing} that the feature group '{group.name}' requires", line=1
        )


def validate_stream(stream: BinaryIO, source: str, group: FeatureGroupSpec, not_after: str | None = None
                    ) -> CsvSummary:
    """Read the whole file and fail on the first problem; nothing is written anywhere.

    Checks header, encoding, row widths, blank lines, each value against its feature type, the label,
    and that every record appears once: one row per record identifier, or, for a group whose rows
    carry their own event times, one per identifier and event time, none after `not_after` (the run's
    event time: the online store would serve a later version that no training set or batch score sees).
    """
    first_line: dict[tuple[str, str], int] = {}
    id_name, time_name = group.record_identifier.name, group.event_time.name
    columns = {f.name: f.source_column for f in group.all_features}
    for line, row in iter_raw_rows(stream, source, group):
        try:
            record = to_record(row, group, "1970-01-01T00:00:00.000Z")
        except RowError as exc:
            raise InputValidationError(source, exc.detail, line=line, column=exc.column) from None
        check_text(map(columns.__getitem__, record), record.values(), source, line)
        key = (record[id_name], record[time_name])
        if group.has_history and not_after is not None and key[1] > not_after:  # both YYYY-MM-DDTHH:MM:SS.sssZ
            raise InputValidationError(source, f"the event time {key[1]} is after the run's ({not_after}): a future "
                                       "version would be served online but used by no training set or batch score",
                                       line=line, column=group.event_time.source)
        if key in first_line:
            at = f" at {key[1]}" if group.has_history else ""
            raise InputValidationError(
                source,
                f"duplicate record identifier {key[0]!r}{at} (first seen on line {first_line[key]})",
                line=line,
                column=group.record_identifier.source_column,
            )
        first_line[key] = line
    if not first_line:
        raise InputValidationError(source, "the file has a header but no data rows")
    return CsvSummary(rows=len(first_line))


def unreadable(path: str, exc: OSError) -> InputValidationError:
    """A file that cannot be opened or read (missing, no permission, a symlink loop), as bad input naming it."""
    if isinstance(exc, FileNotFoundError):
        return InputValidationError(path, "file not found")
    return InputValidationError(path, f"cannot be read ({exc.strerror or exc})")


def validate_file(path: str, group: FeatureGroupSpec, not_after: str | None = None) -> CsvSummary:
    try:
        with open(path, "rb") as stream:
            return validate_stream(stream, path, group, not_after)
    except IsADirectoryError:
        raise InputValidationError(path, "is a directory, not a CSV file") from None
    except OSError as exc:
        raise unreadable(path, exc) from None
