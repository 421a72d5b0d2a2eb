"""Record conversion: one raw CSV row -> one feature group record, the same on AWS and locally (features
computed from several rows, e.g. CDNOW's snapshots, are a derivation's: churn.derivations).

What it does, and why:
- column names become snake_case feature names (the spec maps raw column -> feature);
- the label (Yes/No, True/False, 1/0, any case, stray spaces) becomes 0/1;
- the record identifier is the dataset's own id column, so re-ingesting a file updates the same
  records instead of creating new ones (a DataFrame index would not be stable across runs);
- the event time is one UTC ISO-8601 timestamp with a `Z`, set by the caller for a whole run, or,
  for a group whose rows carry their own (snapshots, observations), read from the row's column;
- blank or whitespace numerics are *missing*: the feature is left out of the record (Feature Store
  stores it as null) rather than invented (no imputation, no zero);
- categorical values are kept as their (trimmed) strings: the feature store holds reusable,
  readable features, and the training script encodes them deterministically;
- nothing is scaled: gradient-boosted trees are invariant to monotonic transforms of a feature.
No feature is computed from the label.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from churn.schema import MAX_NAME_LENGTH, Feature, FeatureGroupSpec

INTEGRAL_MIN, INTEGRAL_MAX = -(2**63), 2**63 - 1  # Feature Store's Integral is a 64-bit integer
# XGBoost holds features as float32: a Fractional beyond this (Feature Store takes any finite double) would fail
# Train model, or scoring, after it had been ingested.
FRACTIONAL_MAX = 3.4028234663852886e38
FRACTIONAL_RANGE = "within ±3.4e38 (XGBoost's float32)"  # FRACTIONAL_MAX, as messages say it
LABEL_TRUE = frozenset({"yes", "y", "true", "t", "1", "1.0"})
LABEL_FALSE = frozenset({"no", "n", "false", "f", "0", "0.0"})

# Feature Store accepts yyyy-MM-dd'T'HH:mm:ssZ and yyyy-MM-dd'T'HH:mm:ss.SSSZ for String event
# times. We always write the millisecond form so event times also sort correctly as strings
# (the training-set SQL compares them as strings on Athena and DuckDB alike).
# ASCII digits only (re.ASCII): strptime() takes any Unicode digit; Feature Store's documented form is ASCII.
EVENT_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$", re.ASCII)
_SFN_TIME_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?Z$", re.ASCII)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)


class RowError(ValueError):
    """A value in a row cannot become a feature. Callers add the file and line."""

    def __init__(self, reason: str, *, column: str, value: str | None = None):
        self.column, self.value = column, value
        self.detail = reason if value is None else f"{reason} (value {value!r})"  # the reason, with the value
        super().__init__(f"column '{column}': {self.detail}")


def normalise_name(raw: str) -> str:
    """`customerID` -> `customer_id`, `StreamingTV` -> `streaming_tv`, `Total Charges` -> `total_charges`.

    Letters lose their accents (`Größe` -> `grosse`); other characters outside ASCII separate words.
    Any length: `fit_name` makes it a feature name."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", _ascii_letters(raw.strip()))
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    name = re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()
    if name and name[0].isdigit():
        name = f"f_{name}"
    return name


def _ascii_letters(text: str) -> str:
    """`text` with its letters' accents and ligatures taken apart (`é` -> `e`, `ß` -> `ss`, `ﬁ` -> `fi`),
    case kept; characters with no ASCII form are kept as they are (normalise_name makes them separators)."""
    bare = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return "".join(c if c.isascii() else _ascii_letter(c) for c in bare)


def _ascii_letter(char: str) -> str:
    # Case folding spells out what NFKD leaves whole (ß -> ss); the case is put back for the word splits.
    folded = "".join(c for c in unicodedata.normalize("NFKD", char.casefold()) if not unicodedata.combining(c))
    if not folded.isascii():
        return char
    return folded.upper() if char.isupper() else folded


def fit_name(name: str, suffix: str = "") -> str:
    """`name` + `suffix` within MAX_NAME_LENGTH: `name` is cut, and a cut never leaves a trailing `_`
    (Feature Store's names end in a letter or digit)."""
    return name[: MAX_NAME_LENGTH - len(suffix)].rstrip("_") + suffix


def parse_label(value: str, column: str) -> int:
    token = value.strip().lower()
    if token in LABEL_TRUE:
        return 1
    if token in LABEL_FALSE:
        return 0
    raise RowError("label must be one of Yes/No, True/False or 1/0", column=column, value=value)


def _integral(text: str, feature: Feature, raw: str) -> str:
    try:
        number: int | Decimal = int(text)
    except ValueError:
        try:  # a whole number written otherwise ("5.0", "5e3"), read exactly: a float rounds it past 2**53
            number = Decimal(text)
        except InvalidOperation:
            number = Decimal("NaN")
        if not number.is_finite() or number != number.to_integral_value():
            raise RowError("expected a whole number", column=feature.source_column, value=raw) from None
    if not INTEGRAL_MIN <= number <= INTEGRAL_MAX:
        raise RowError("expected a whole number that fits in 64 bits (Feature Store's Integral)",
                       column=feature.source_column, value=raw)
    return str(int(number))


def _fractional(text: str, feature: Feature, raw: str) -> str:
    try:
        number = float(text)
    except ValueError:
        raise RowError("expected a number", column=feature.source_column, value=raw) from None
    if not math.isfinite(number):
        raise RowError("expected a finite number", column=feature.source_column, value=raw)
    if abs(number) > FRACTIONAL_MAX:
        raise RowError(f"expected a number {FRACTIONAL_RANGE}", column=feature.source_column, value=raw)
    return repr(number)


# Feature type -> converter of a stripped, non-empty text (None: kept as it is).
_CONVERTERS = {"String": None, "Integral": _integral, "Fractional": _fractional}


def parse_value(feature: Feature, value: str | None) -> str | None:
    """The canonical Feature Store string for one raw value, or None when it is missing."""
    if value is None:
        return None
    text = value.strip()
    if text == "":
        return None
    convert = _CONVERTERS[feature.type]
    return text if convert is None else convert(text, feature, value)


def _event_time_of(row: Mapping[str, str | None], group: FeatureGroupSpec) -> str:
    """The row's own event time in the canonical form, for a group whose rows carry one."""
    column = group.event_time.source
    value = (row.get(column) or "").strip()
    if _DATE_RE.match(value):
        value += "T00:00:00Z"
    try:  # a feature version's time rounded up, an observation's cut: neither ever sees a later version
        canonical = canonical_event_time(value, round_up=group.label is None)
        parse_event_time(canonical)
    except (ValueError, OverflowError):  # OverflowError: 9999-12-31T23:59:59.9999Z raised past the calendar
        raise RowError("expected a UTC time like 2026-01-31T00:00:00Z (or a date 2026-01-31)", column=column,
                       value=row.get(column)) from None
    return canonical


def to_record(row: Mapping[str, str | None], group: FeatureGroupSpec, event_time: str) -> dict[str, str]:
    """Convert one raw row (CSV column -> text) to a record (feature name -> Feature Store string).

    `event_time` is the run's; a group whose rows carry their own event time takes the row's.
    Missing values are left out of the record. Raises RowError on the first bad value.
    """
    id_feature = group.record_identifier
    record_id = parse_value(id_feature, row.get(id_feature.source_column))
    if record_id is None:
        raise RowError("the record identifier is empty", column=id_feature.source_column, value="")
    own_time = _event_time_of(row, group) if group.has_history else event_time
    record = {id_feature.name: record_id, group.event_time.name: own_time}
    for feature in group.features:
        if (value := parse_value(feature, row.get(feature.source_column))) is not None:
            record[feature.name] = value
    label = group.label
    if label is not None:
        label_value = row.get(label.source_column)
        if label_value is None or label_value.strip() == "":
            raise RowError("the label is empty", column=label.source_column, value=label_value or "")
        record[label.name] = str(parse_label(label_value, label.source_column))
    return record


def to_feature_store_record(record: Mapping[str, str]) -> list[dict[str, str]]:
    """A Feature Store `Record` (a BatchWriteRecord entry's, as PutRecord's)."""
    return [{"FeatureName": k, "ValueAsString": v} for k, v in record.items()]


def format_event_time(moment: datetime) -> str:
    """A UTC ISO-8601 event time with milliseconds and `Z`, e.g. 2026-11-26T07:07:54.123Z."""
    if moment.tzinfo is None:
        raise ValueError("event times must be timezone-aware (UTC)")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_event_time() -> str:
    return format_event_time(datetime.now(UTC))


def canonical_event_time(value: str, round_up: bool = False) -> str:
    """Normalise a UTC time with any fraction digits (a Step Functions `$$.Execution.StartTime`, a row's
    own time) to our form: cut to the millisecond, or with `round_up` raised to the next one when finer
    digits are not zero."""
    match = _SFN_TIME_RE.match(value.strip())
    if not match:
        raise ValueError(f"event time {value!r} is not a UTC ISO-8601 timestamp ending in Z")
    seconds, fraction = match.groups()
    millis = (fraction or "0").ljust(3, "0")[:3]
    if round_up and (fraction or "")[3:].strip("0"):
        cut = datetime.strptime(f"{seconds}.{millis}", "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
        return format_event_time(cut + timedelta(milliseconds=1))
    return f"{seconds}.{millis}Z"


def parse_event_time(value: str) -> datetime:
    if not EVENT_TIME_RE.match(value):
        raise ValueError(
            f"event time {value!r} is not in the form YYYY-MM-DDTHH:MM:SS.sssZ (UTC)"
        )
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
