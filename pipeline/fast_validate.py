"""A fast, conservative pre-check of a raw churn CSV for the local mode's "Validate input" step.

`churn.csv_input.validate_file` is the reference: it reads the file row by row in Python and
raises the first problem, located by file, line and column (~20 s for 1M Telco rows). This module
checks the same rules column-wise with pyarrow (~1.5 s), but it may only ever *vouch* for a file:
whenever it sees anything it cannot prove the reference accepts, it runs the reference, which
raises the exact located error (or, for an exotic but valid file, returns its summary). So the
answer is always the reference's answer; only the time differs.

How it stays sound:
- The header is read and checked by csv_input's own code (`csv_rows`, `check_header`), and
  pyarrow must read the same column names from the same lines.
- A byte scan first proves that pyarrow and Python's `csv.reader(strict=True)` split the file
  into the same rows and fields: no NUL byte, no carriage return outside CRLF, valid UTF-8 (the
  same decoder), no line that could hold a field over `csv.field_size_limit()`, and every `"`
  part of a simple quoted field (opened at a field start, no `"` and no line break inside, closed
  before a comma or line end). Python's strict reader rejects `"a"b` and a quote left open at the
  end of the file; pyarrow accepts both, so anything else with quotes is left to the reference.
- Values are checked against patterns that only match texts `churn.features.parse_value` and
  `parse_label` accept: whole numbers of at most 18 digits (or `5.0`) for Integral, plain decimals
  below 1e38 (within float32, which XGBoost trains on) for Fractional, the label tokens after
  stripping Python's whitespace. Any other value, exotic but valid ("1_000", "1e30", "٣") or not
  ("1e39", "nan"), goes to the reference.
- Record identifiers are canonicalised exactly as `to_record` does (stripped; Integral as an
  integer) and must be unique and non-empty; rows are counted after pyarrow skips empty lines, as
  the reference does; a whitespace-only line makes pyarrow fail, so it goes to the reference.
Memory stays bounded: the byte scan reads 4 MiB blocks, pyarrow streams 1 MiB blocks of only the
columns with rules (identifier, numbers, label), and only the canonical identifiers are kept.
"""

from __future__ import annotations

import csv
import logging
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from churn import csv_input
from churn.csv_input import CsvSummary, InputValidationError
from churn.features import LABEL_FALSE, LABEL_TRUE
from churn.schema import FeatureGroupSpec

log = logging.getLogger(__name__)

# Byte-scan block; a block grows up to _SCAN_MAX_BLOCK while it holds no newline.
_SCAN_BLOCK = 4 * 2**20
_SCAN_MAX_BLOCK = 64 * 2**20
_PARSE_BLOCK = 2**20  # pyarrow reads ahead several blocks: 1 MiB keeps that small
_BOM = b"\xef\xbb\xbf"

# str.strip() removes exactly the characters for which str.isspace() is true (a test checks this
# list against the running interpreter).
PY_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# Only spaces and tabs around numbers: a subset of what strip() removes, so a match is accepted.
# int() takes any run of ASCII digits; float("5.0").is_integer() makes "5.0" a whole number too
# (15 digits keep the float exact). Blank is a missing value.
_INTEGRAL = r"[+-]?(?:[0-9]{1,18}|[0-9]{1,15}\.0*)"
# At most 29 integer digits and a one-digit positive exponent: |x| < 1e38, within churn.features.FRACTIONAL_MAX.
_FRACTIONAL_DIGITS = 29
_FRACTIONAL = r"[+-]?(?:[0-9]{1,29}(?:\.[0-9]*)?|\.[0-9]+)(?:[eE](?:-[0-9]{1,2}|\+?[0-9]))?"
_INTEGRAL_OR_BLANK = rf"^[ \t]*(?:{_INTEGRAL})?[ \t]*$"
_FRACTIONAL_OR_BLANK = rf"^[ \t]*(?:{_FRACTIONAL})?[ \t]*$"
_INTEGRAL_ID = rf"^[ \t]*{_INTEGRAL}[ \t]*$"
_EVENT_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$"


def _string_array(values: list[str]) -> pa.Array:
    """pa.array() without its pandas check: that imports pandas (~0.3 s) the local mode avoids."""
    encoded = [value.encode() for value in values]
    offsets = np.cumsum([0, *map(len, encoded)], dtype=np.int32)
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    return pa.Array.from_buffers(pa.string(), len(encoded), buffers)


# A value set, not a pattern: is_in takes half the CPU of a regular expression on 1M labels.
_LABEL_TOKENS = _string_array(sorted(LABEL_TRUE | LABEL_FALSE))


class _CannotVouch(Exception):
    """The fast check cannot prove the reference accepts the file; the message says why."""


def validate_file_fast(path: str, group: FeatureGroupSpec, not_after: str | None = None) -> CsvSummary:
    """What the reference, `churn.csv_input.validate_file`, returns or raises, faster (see the module doc)."""
    summary, reason = precheck(path, group, not_after)
    if summary is not None:
        return summary
    log.info("fast validation cannot vouch for %s (%s): running the full validation", path, reason)
    return csv_input.validate_file(path, group, not_after)


def precheck(path: str, group: FeatureGroupSpec, not_after: str | None = None) -> tuple[CsvSummary | None, str]:
    """(the summary, "") when the check vouches for the file (rows counted as the reference counts them),
    else (None, why not)."""
    try:
        return _vouch(path, group, not_after), ""
    except _CannotVouch as exc:
        return None, str(exc)
    except (OSError, csv.Error, InputValidationError, pa.ArrowException) as exc:
        return None, f"{type(exc).__name__}: {exc}"


# -- the checks -----------------------------------------------------------------------------------
def _vouch(path: str, group: FeatureGroupSpec, not_after: str | None) -> CsvSummary:
    limit = csv.field_size_limit()
    parse = pa_csv.ParseOptions()  # comma, ", no escape; no value spans lines (the scan proved it)
    raw_header = _header(path, group, parse)
    _scan_bytes(path, limit)
    raw_name = {name.strip(): name for name in raw_header}  # names unique (check_header); only names looked up

    id_feature = group.record_identifier
    checks: list[tuple[str, str]] = [(id_feature.source_column, "id")]
    if group.has_history:
        checks.append((group.event_time.source, "event_time"))
    checks += [(f.source_column, f.type) for f in group.features if f.type in ("Integral", "Fractional")]
    if group.label is not None:
        checks.append((group.label.source_column, "label"))
    keys, rows = _read_checked(path, raw_name, checks, parse, id_feature.type, not_after)
    if rows == 0:
        raise _CannotVouch("no data rows")
    if len(pc.unique(keys)) != rows:
        raise _CannotVouch("duplicate records")
    return CsvSummary(rows=rows)


def _read_checked(path: str, raw_name: dict[str, str], checks: list[tuple[str, str]], parse: pa_csv.ParseOptions,
                  id_type: str, not_after: str | None) -> tuple[pa.ChunkedArray, int]:
    """Check every column with a rule, a block at a time; (each row's record key, the row count)."""
    columns = list(dict.fromkeys(raw_name[column] for column, _ in checks))
    convert = pa_csv.ConvertOptions(
        column_types={name: pa.string() for name in columns},
        include_columns=columns,
        check_utf8=True,
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    read = pa_csv.ReadOptions(block_size=_PARSE_BLOCK)
    keys: list[pa.Array] = []
    rows = 0
    with pa_csv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert) as reader:
        for batch in reader:
            rows += batch.num_rows
            key = None
            for column, rule in checks:
                values = batch.column(raw_name[column])
                if values.null_count:
                    raise _CannotVouch(f"null values in column {column!r}")
                if rule == "id":
                    key = pc.cast(_canonical_ids(values, column, id_type), pa.string())
                elif rule == "event_time":
                    times = _event_times(values, column)
                    if not_after is not None and pc.any(pc.greater(times, not_after)).as_py():
                        raise _CannotVouch(f"an event time in column {column!r} after the run's")
                    key = pc.binary_join_element_wise(key, times, "\x00")
                elif rule == "label":
                    _check_labels(values, column)
                else:
                    _check_numbers(values, column, rule)
            keys.append(key)
    return pa.chunked_array(keys, pa.string()), rows


def _event_times(values: pa.Array, column: str) -> pa.Array:
    """A history row's event times as to_record writes them (YYYY-MM-DDTHH:MM:SS.sssZ), when every
    value is a date or such a time with 0 or 3 fraction digits, on a real calendar day."""
    times = pc.utf8_trim(values, characters=PY_WHITESPACE)
    times = pc.replace_substring_regex(times, pattern=r"^([0-9]{4}-[0-9]{2}-[0-9]{2})$", replacement=r"\1T00:00:00Z")
    times = pc.replace_substring_regex(times, pattern=r"^(.{19})Z$", replacement=r"\1.000Z")
    if not pc.all(pc.match_substring_regex(times, _EVENT_TIME)).as_py():
        raise _CannotVouch(f"an event time in column {column!r} not in a plain form")
    pc.cast(times, pa.timestamp("ms", tz="UTC"))  # raises for a day the calendar lacks
    return times


def _header(path: str, group: FeatureGroupSpec, parse: pa_csv.ParseOptions) -> list[str]:
    """The raw header fields, read and checked by csv_input's code; pyarrow must read the same."""
    with open(path, "rb") as stream:
        try:
            _, lines, raw = next(csv_input.csv_rows(stream, path))
        except StopIteration:
            raise _CannotVouch("empty file") from None
        csv_input.check_header([h.strip() for h in raw], path, group)
        stream.seek(0)
        head = b"".join(stream.readline() for _ in range(lines))
    if pa_csv.read_csv(pa.BufferReader(head), parse_options=parse).column_names != raw:
        raise _CannotVouch("pyarrow reads a different header")
    return raw


def _scan_bytes(path: str, limit: int) -> None:
    """Prove pyarrow and csv.reader split the file alike (see the module doc), reading it in blocks of
    whole lines (a BOM dropped: the reference decodes with utf-8-sig and pyarrow skips it).

    Blocks end after a newline, and a simple quoted field holds none, so every block's quotes pair up.
    """
    pending, blank_seen = b"", False
    with open(path, "rb") as stream:
        if stream.read(len(_BOM)) != _BOM:
            stream.seek(0)
        while chunk := stream.read(_SCAN_BLOCK):
            data = pending + chunk
            cut = data.rfind(b"\n") + 1
            if cut == 0 and len(data) >= _SCAN_MAX_BLOCK:
                raise _CannotVouch(f"a line of {_SCAN_MAX_BLOCK} bytes or more")
            blank_seen = _check_block(data[:cut], limit, blank_seen)
            pending = data[cut:]
    _check_block(pending, limit, blank_seen)  # what follows the last newline


def _check_block(block: bytes, limit: int, blank_seen: bool) -> bool:
    """Raise _CannotVouch for what the two readers could split differently; whether a blank line was
    seen by the block's end (a blank line may only end the file)."""
    if b'"' in block and not _simple_quotes(block, limit):
        raise _CannotVouch("quotes other than simple one-line quoted fields")
    blank = 0 if blank_seen else _blank_line_end(block)
    if blank is not None and block[blank:].strip():
        raise _CannotVouch("a blank line inside the data")
    if b"\x00" in block:
        raise _CannotVouch("a NUL byte")
    if b"\r" in block and _BARE_CR.search(block):
        raise _CannotVouch("a carriage return outside a CRLF line ending")
    if not block.isascii():
        try:
            block.decode("utf-8")
        except UnicodeDecodeError:
            raise _CannotVouch("not UTF-8") from None
    _check_line_lengths(block, limit)
    return blank is not None


def _blank_line_end(block: bytes) -> int | None:
    """Where the block's first empty line ends (a block starts at the start of a line), None if none.
    A line of only spaces or tabs is not looked for: pyarrow refuses it, so the reference judges it."""
    if block.startswith((b"\n", b"\r\n")):
        return block.index(b"\n") + 1
    found = _EMPTY_LINE.search(block)  # the leftmost match ends first: a match is 2 or 3 bytes long
    return found.end() if found else None


_EMPTY_LINE = re.compile(rb"\n\r?\n")  # an empty line after a line, LF or CRLF, in one pass over the block
_BARE_CR = re.compile(rb"\r(?!\n)")
_QUOTE, _COMMA, _LF, _CR = (ord(c) for c in '",\n\r')


def _simple_quotes(block: bytes, limit: int) -> bool:
    """Every `"` pairs with the next one as a field `"..."` opened at a field start, closed before a
    comma or line end, holding at most `limit` bytes and no line break. Then both readers see the same
    fields, one row per line. (A line break inside a value is the reference's to judge: it rejects one
    that stays after stripping, since batch scoring reads customers line by line.)"""
    data = np.frombuffer(block, dtype=np.uint8)
    quotes = np.flatnonzero(data == _QUOTE)
    if quotes.size % 2:
        return False
    opening, closing = quotes[0::2], quotes[1::2]
    if np.any(closing - opening - 1 > limit):
        return False
    if np.any(np.searchsorted(quotes, np.flatnonzero(data == _LF)) % 2):  # an odd number of quotes before it
        return False
    before = data[opening[opening > 0] - 1]  # a block starts at the start of a line
    if not np.all((before == _COMMA) | (before == _LF)):
        return False
    after_at = closing + 1
    after = data[after_at[after_at < data.size]]
    return bool(np.all((after == _COMMA) | (after == _LF) | (after == _CR)))


def _check_line_lengths(block: bytes, limit: int) -> None:
    """No run of bytes without a newline as long as `limit` (so no unquoted field is either).

    Every aligned window of `limit // 2` bytes must hold a newline: a run of 2 * window - 1
    bytes would cover one whole window, so every run is shorter than `limit` - 1.
    """
    window = limit // 2
    if window < 1024:
        raise _CannotVouch(f"csv.field_size_limit() is only {limit}")
    for start in range(0, len(block) - window + 1, window):
        if block.find(b"\n", start, start + window) < 0:
            raise _CannotVouch("a line that may hold a field over csv.field_size_limit()")


def _canonical_ids(values: pa.Array, column: str, id_type: str) -> pa.Array:
    """The identifiers as to_record makes them: stripped text, or the integer of an Integral id."""
    if id_type == "String":
        ids = pc.utf8_trim(values, characters=PY_WHITESPACE)
        if pc.min(pc.binary_length(ids)).as_py() == 0:
            raise _CannotVouch(f"an empty record identifier in column {column!r}")
        return ids
    if id_type != "Integral" or not pc.all(pc.match_substring_regex(values, _INTEGRAL_ID)).as_py():
        raise _CannotVouch(f"a record identifier in column {column!r} that is not a plain whole number")
    text = pc.replace_substring_regex(pc.utf8_trim(values, characters=" \t"), pattern=r"^\+|\.0*$", replacement="")
    return pc.cast(text, pa.int64())


def _check_numbers(values: pa.Array, column: str, feature_type: str) -> None:
    """Each value matches the type's pattern (or is blank); a cheap test clears most first.

    (No Python numbers in pyarrow.compute calls: converting one imports pandas.)
    """
    if feature_type == "Integral":
        digits, most, pattern = values, 18, _INTEGRAL_OR_BLANK
    else:
        digits, most, pattern = (pc.replace_substring(values, ".", "", max_replacements=1), _FRACTIONAL_DIGITS,
                                  _FRACTIONAL_OR_BLANK)
    plain = pc.ascii_is_decimal(digits)  # only digits (after dropping one "."), not empty
    if pc.max(pc.binary_length(values)).as_py() > most:
        rest = values  # a long value somewhere: the pattern judges them all
    elif pc.all(plain).as_py():
        return
    else:
        rest = pc.filter(values, pc.invert(plain))
    if not pc.all(pc.match_substring_regex(rest, pattern)).as_py():
        raise _CannotVouch(f"a value in column {column!r} that is not a plain {feature_type} number")


def _check_labels(values: pa.Array, column: str) -> None:
    tokens = pc.ascii_lower(pc.utf8_trim(values, characters=PY_WHITESPACE))
    if not pc.all(pc.is_in(tokens, value_set=_LABEL_TOKENS)).as_py():
        raise _CannotVouch(f"a label in column {column!r} that is not a plain label token")
