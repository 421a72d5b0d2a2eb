"""Reading raw churn CSVs: streamed, validated whole before anything is written.

Every problem is reported once, as `file, line N, column C: reason`, so a user can open the file
at that spot. A UTF-8 BOM and CRLF line endings are accepted; anything else that is not a clean
CSV of the spec's columns is an InputValidationError.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from churn.features import RowError, to_record
from churn.schema import FeatureSpec

_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}


class InputValidationError(ValueError):
    """The input file cannot be ingested. The message names file, line and column."""

    def __init__(self, source: str, reason: str, *, line: int | None = None, column: str | None = None):
        self.source = source
        self.line = line
        self.column = column
        self.reason = reason
        where = source
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class CsvSummary:
    rows: int


def _byte_lines(stream: BinaryIO, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """Split any readable binary stream (file, S3 StreamingBody) into lines, endings kept."""
    pending = b""
    while True:
        chunk = stream.read(chunk_size)
        if not chunk:
            break
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            yield line + b"\n"
    if pending:
        yield pending


def _text_lines(stream: BinaryIO, source: str) -> Iterator[str]:
    """Decode UTF-8 (a leading BOM dropped) line by line, so a bad byte is reported with its line."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
    for number, raw in enumerate(_byte_lines(stream), start=1):
        try:
            yield decoder.decode(raw)
        except UnicodeDecodeError as exc:
            raise InputValidationError(
                source, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at position {exc.start + 1})", line=number
            ) from None


def iter_raw_rows(stream: BinaryIO, source: str, spec: FeatureSpec) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row as column -> text) after checking the header against the spec."""
    lines = _text_lines(stream, source)
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise InputValidationError(source, "the file is empty (no header row)") from None
    except csv.Error as exc:
        raise InputValidationError(source, f"malformed CSV header ({exc})", line=1) from None
    header = [h.strip() for h in header]
    _check_header(header, source, spec)
    width = len(header)
    try:
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and row[0].strip() == ""):
                continue  # blank line
            if len(row) != width:
                raise InputValidationError(
                    source, f"expected {width} fields as in the header, found {len(row)}", line=line
                )
            yield line, dict(zip(header, row, strict=False))
    except csv.Error as exc:
        raise InputValidationError(source, f"malformed CSV ({exc})", line=reader.line_num) from None


def _check_header(header: list[str], source: str, spec: FeatureSpec) -> None:
    if len(header) == 1 and header[0] == "":
        raise InputValidationError(source, "the header row is empty", line=1)
    if len(header) == 1:
        for delimiter, name in _DELIMITERS.items():
            if delimiter in header[0]:
                raise InputValidationError(
                    source, f"the header is split by {name}s, not commas: save the file as comma-separated CSV", line=1
                )
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise InputValidationError(source, f"duplicate column name(s) {duplicates}", line=1)
    required = [spec.record_identifier, *spec.features, spec.label]
    missing = [f.source_column for f in required if f.source_column not in header]
    if missing:
        raise InputValidationError(
            source, f"missing column(s) {missing} that the feature spec '{spec.origin}' requires", line=1
        )


def iter_records(
    rows: Iterable[tuple[int, dict[str, str]]], source: str, spec: FeatureSpec, event_time: str
) -> Iterator[tuple[int, dict[str, str]]]:
    """Convert raw rows to records, turning a RowError into a located InputValidationError."""
    for line, row in rows:
        try:
            yield line, to_record(row, spec, event_time)
        except RowError as exc:
            shown = "" if exc.value is None else f" (value {exc.value!r})"
            raise InputValidationError(source, exc.reason + shown, line=line, column=exc.column) from None


def validate_stream(stream: BinaryIO, source: str, spec: FeatureSpec) -> CsvSummary:
    """Read the whole file and fail on the first problem; nothing is written anywhere.

    Checks header, encoding, row widths, each value against its feature type, the label, and
    that every record identifier appears once.
    """
    first_line: dict[str, int] = {}
    id_name = spec.record_identifier.name
    raw = iter_raw_rows(stream, source, spec)
    for line, record in iter_records(raw, source, spec, "1970-01-01T00:00:00.000Z"):
        joined = "".join(record.values())
        if "\n" in joined or "\r" in joined:
            _line_break(record, source, spec, line)
        record_id = record[id_name]
        if record_id in first_line:
            raise InputValidationError(
                source,
                f"duplicate record identifier {record_id!r} (first seen on line {first_line[record_id]})",
                line=line,
                column=spec.record_identifier.source_column,
            )
        first_line[record_id] = line
    if not first_line:
        raise InputValidationError(source, "the file has a header but no data rows")
    return CsvSummary(rows=len(first_line))


def _line_break(record: dict[str, str], source: str, spec: FeatureSpec, line: int) -> None:
    """Reject a value that still holds a line break once stripped: "Score customers" hands the scoring
    set to Batch Transform line by line (SplitType Line), which would cut such a record in two."""
    columns = {f.name: f.source_column for f in (spec.record_identifier, *spec.features, spec.label)}
    name, value = next((n, v) for n, v in record.items() if "\n" in v or "\r" in v)
    raise InputValidationError(
        source,
        f"the value holds a line break (value {value!r}); batch scoring reads customers line by line, "
        "so a value must fit on one line",
        line=line,
        column=columns.get(name, name),
    )


def validate_file(path: str, spec: FeatureSpec) -> CsvSummary:
    try:
        with open(path, "rb") as stream:
            return validate_stream(stream, path, spec)
    except FileNotFoundError:
        raise InputValidationError(path, "file not found") from None
    except IsADirectoryError:
        raise InputValidationError(path, "is a directory, not a CSV file") from None
