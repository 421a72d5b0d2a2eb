"""Infer a feature spec for any churn-like CSV: names normalised, types inferred, problems reported."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from churn.csv_input import (
    FIRST_DATA_LINE,
    InputValidationError,
    check_text,
    csv_rows,
    data_rows,
    read_header,
    unreadable,
)
from churn.features import (
    FRACTIONAL_MAX,
    FRACTIONAL_RANGE,
    INTEGRAL_MAX,
    INTEGRAL_MIN,
    LABEL_FALSE,
    LABEL_TRUE,
    fit_name,
    normalise_name,
    parse_label,
)
from churn.layout import HYPERPARAMETERS_MODULE
from churn.schema import MAX_NAME_LENGTH, RESERVED_NAMES, FeatureSpec
from pipeline.local_aws.batch_transform import serving_module
from pipeline.runner import TRAINING_DIR

# run's rules for a header (not empty, comma-separated, no name twice) before there is a spec: a
# stand-in feature group that requires no column.
_NO_GROUP = SimpleNamespace(name="", source_columns=())
_MAX_DISTINCT = 1000  # a String column with more distinct values is named as a likely identifier or free text
_LEADING_ZERO = re.compile(r"[+-]?0\d")  # "007", "00332": text whose zeros a number would lose
# A date or a time as a CSV holds one: `2026-01-31`, `2026-01-31T00:00:00Z`, `2026-01-31 00:00:00+00:00`.
_TIME_LIKE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")
# A number column's stray non-numbers ('N/A', 'x', '?'): at most this share of its values, this many different ones.
_STRAY_SHARE = 0.01
_STRAY_DISTINCT = 10
# Stray non-numbers are judged against the share once there are more than this many: the first few may
# all sit at the top of a long file. Past it a column over the share is text and no longer parsed.
_STRAY_SETTLED = 100


@dataclass
class ColumnStats:
    source: str
    values: int = 0
    blanks: int = 0
    integral: bool = True
    numeric: bool = True  # every value a number
    parsing: bool = True  # values still parsed as numbers: False once the column is clearly text
    distinct: set[str] = field(default_factory=set)  # kept up to one over _MAX_DISTINCT
    not_numbers: int = 0  # values that are not numbers, while parsing
    strays: dict[str, int] = field(default_factory=dict)  # each value that is not a number -> its first line
    # the first "nan", "inf", "1e39"...: float() reads it, ingest refuses it in a number feature (XGBoost: float32)
    unusable: str = ""
    too_big: str = ""  # the first whole number beyond Feature Store's 64-bit Integral
    leading_zero: str = ""  # the first number written with a leading zero: the column is text

    def add(self, value: str, line: int) -> None:
        text = value.strip()
        if not text:
            self.blanks += 1
            return
        self.values += 1
        if len(self.distinct) <= _MAX_DISTINCT:
            self.distinct.add(text)
        if self.parsing:
            self._parse(text, line)

    def _parse(self, text: str, line: int) -> None:
        if _LEADING_ZERO.match(text):
            self.numeric = self.integral = self.parsing = False
            self.leading_zero = text
            return
        try:
            number = float(text)
        except ValueError:
            self._not_a_number(text, line)
            return
        if not (abs(number) <= FRACTIONAL_MAX or self.unusable):  # nan compares False too
            self.unusable = text
        if self.integral and not (number.is_integer() and "." not in text and "e" not in text.lower()):
            self.integral = False
        elif self.integral and not INTEGRAL_MIN <= int(text) <= INTEGRAL_MAX:
            self.integral, self.too_big = False, text

    def _not_a_number(self, text: str, line: int) -> None:
        self.numeric = False
        self.not_numbers += 1
        self.strays.setdefault(text, line)
        if len(self.strays) > _STRAY_DISTINCT or (
                self.not_numbers > max(_STRAY_SETTLED, self.values * _STRAY_SHARE)):
            self.parsing = False

    @property
    def has_strays(self) -> bool:
        """A column of numbers but for a few values that are not (inferred String all the same)."""
        return self.parsing and 0 < self.not_numbers <= self.values * _STRAY_SHARE

    @property
    def feature_type(self) -> str:
        if self.values and self.numeric:
            return "Integral" if self.integral else "Fractional"
        return "String"


@dataclass
class Inference:
    spec: FeatureSpec
    problems: list[str]
    rows: int


def _read_stats(path: Path, id_column: str, label_column: str, max_rows: int
                ) -> tuple[list[ColumnStats], list[str], list[str], bool]:
    """Every column's statistics over the first `max_rows` data rows, the id's and label's values (row by row,
    for what takes whole columns), and whether the file has more rows."""
    source = str(path)
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:  # missing, a directory, no permission
        raise unreadable(source, exc) from None
    with stream:
        rows = csv_rows(stream, source)  # run's reader: the same rows, the same errors on the same lines
        header = read_header(rows, source, _NO_GROUP)  # type: ignore[arg-type]
        missing = [c for c in (id_column, label_column) if c not in header]
        if missing:
            raise InputValidationError(source, f"no column named '{missing[0]}' (columns: {header})", line=1)
        stats = [ColumnStats(h) for h in header]
        id_at, label_at = header.index(id_column), header.index(label_column)
        ids: list[str] = []
        labels: list[str] = []
        more = False
        data = data_rows(rows, header, source)
        for line, row in data:
            check_text(header, row, source, line)  # every column with a name is a feature of the spec
            for stat, value in zip(stats, row, strict=True):
                stat.add(value, line)
            ids.append(row[id_at])
            labels.append(row[label_at])
            if len(ids) >= max_rows:
                more = next(data, None) is not None
                break
    if not ids:
        raise InputValidationError(source, "the file has a header but no data rows")
    return stats, ids, labels, more


def _feature_name(raw: str, used: set[str], problems: list[str]) -> str:
    """A snake_case feature name, not in `used` and never reserved; a renaming the user would not guess from
    the documented normalisation (`customerID` -> `customer_id`) goes to `problems`, one line a column."""
    normalised = normalise_name(raw)
    name = fit_name(normalised) or "column"
    why = []
    if not normalised:
        why.append("has no letter or digit a feature name can use")
    elif not raw.isascii():
        why.append("has characters outside ASCII, which feature names cannot hold")
    if normalised and name != normalised:
        why.append(f"makes a name over {MAX_NAME_LENGTH} characters, Feature Store's limit")
    if name in RESERVED_NAMES:
        why.append(f"makes '{name}', a name Feature Store reserves")
        name = fit_name(name, "_value")
    base, n = name, 2
    while name in used:
        name = fit_name(base, f"_{n}")
        n += 1
    if name != base:
        why.append(f"makes '{base}', a name already taken")
    if why:
        problems.append(f"column '{raw}' {'; '.join(why)}: named '{name}'")
    used.add(name)
    return name


def _no_signal(stat: ColumnStats, problems: list[str]) -> None:
    """A column of times, or of one value: kept as a feature, named so that the user removes it."""
    example = min(stat.distinct)
    if stat.feature_type == "String" and all(map(_TIME_LIKE.match, stat.distinct)):
        problems.append(f"column '{stat.source}' holds dates or times ({example!r}): as a String feature each is a "
                        "category, which a later snapshot's times never match; remove it from the spec, or with "
                        "several feature groups make it a group's event time `source`")
    elif len(stat.distinct) == 1 and not stat.blanks:
        problems.append(f"column '{stat.source}' holds {example!r} in every row: it tells the model nothing; remove "
                        "it from the spec")


def _feature(stat: ColumnStats, position: int, used: set[str], problems: list[str]) -> dict[str, str] | None:
    if not stat.source:  # a spec cannot name it: a feature without `source` reads the column of its own name
        problems.append(f"column {position} has no name in the header: left out (name it to make it a feature)")
        return None
    if stat.values == 0:
        problems.append(f"column '{stat.source}' is empty in every row: left out")
        return None
    _no_signal(stat, problems)
    if stat.feature_type == "String" and len(stat.distinct) > _MAX_DISTINCT and not stat.has_strays:
        problems.append(
            f"column '{stat.source}' has over {_MAX_DISTINCT} distinct text values: an identifier or free text? "
            "It is kept as a String feature; remove it from the spec if it carries no signal")
    if stat.blanks:
        problems.append(f"column '{stat.source}' is blank in {stat.blanks} rows: stored as missing")
    if stat.has_strays:
        value, line = next(iter(stat.strays.items()))
        problems.append(f"column '{stat.source}' holds numbers but {stat.not_numbers} values that are not (the "
                        f"first: {value!r}, line {line}): inferred String, so the model takes its numbers as "
                        "categories; blank those values (missing) or fix them to make it a number column")
    if stat.leading_zero and stat.feature_type == "String":
        problems.append(f"column '{stat.source}' holds {stat.leading_zero!r}: a String, as a number would lose its "
                        "leading zeros (a zip code, a code); make it Integral or Fractional if they carry no meaning")
    if stat.too_big and stat.feature_type != "String" and stat.too_big != stat.unusable:
        problems.append(f"column '{stat.source}' holds {stat.too_big!r}, a whole number beyond 64 bits: inferred "
                        "Fractional (about 15 significant digits kept); make it a String to keep every digit")
    if stat.unusable and stat.feature_type != "String":
        problems.append(f"column '{stat.source}' holds {stat.unusable!r}, not a finite number {FRACTIONAL_RANGE}: "
                        f"ingest refuses such values in a {stat.feature_type} feature; leave them blank (missing), "
                        "or make it a String")
    return {"name": _feature_name(stat.source, used, problems), "source": stat.source, "type": stat.feature_type}


def _label_problems(label: ColumnStats, values: list[str], problems: list[str]) -> None:
    if label.blanks:
        problems.append(f"label '{label.source}' is blank in {label.blanks} rows: those rows cannot be ingested")
    # The training script's own minimum, read from it (its standard-library module, as the local run checks
    # hyperparameters): a label below it is ingested whole, then fails at Train model.
    least = serving_module(TRAINING_DIR, HYPERPARAMETERS_MODULE).MIN_ROWS_PER_CLASS
    classes: Counter[int] = Counter()
    for value, rows in Counter(values).items():
        if value.strip():  # a blank label is reported above; every other is one (infer_spec refused the rest)
            classes[parse_label(value, label.source)] += rows
    churned, stayed = classes[1], classes[0]
    if min(churned, stayed) < least:
        problems.append(f"label '{label.source}' is true (Yes, True or 1) in {churned} of the {len(values)} rows "
                        f"read and false in {stayed}: training needs at least {least} rows of each, so the run "
                        "would fail at Train model")


def _id_problems(column: ColumnStats, ids: list[str], problems: list[str]) -> None:
    if column.blanks:
        problems.append(f"id column '{column.source}' is blank in {column.blanks} rows: those rows cannot be ingested")
    repeated = {value for value, n in Counter(map(str.strip, ids)).items() if n > 1 and value}
    first: dict[str, int] = {}
    for index, value in enumerate(map(str.strip, ids)):
        if value in first:  # data row N is on line N + FIRST_DATA_LINE: data_rows admits no other
            problems.append(f"id column '{column.source}' repeats {len(repeated)} ids (the first: {value!r}, on lines "
                            f"{first[value] + FIRST_DATA_LINE} and {index + FIRST_DATA_LINE}): run refuses the file "
                            "at Validate input, one row an id; keep one row per id")
            return
        if value in repeated:
            first[value] = index


def infer_spec(path: Path, *, id_column: str, label_column: str, max_rows: int = 200_000) -> Inference:
    """Read up to `max_rows` rows and propose a spec. Raises InputValidationError on unusable input."""
    stats, ids, labels, more = _read_stats(path, id_column, label_column, max_rows)
    rows = len(ids)
    problems: list[str] = []
    if more:
        problems.append(f"only the first {rows} rows were read: types, blanks and repeated ids are those rows'; "
                        "`run --local` checks every row and refuses a later value its column's type cannot hold")
    by_source = {s.source: s for s in stats}
    label_stats, id_stats = by_source[label_column], by_source[id_column]
    bad_labels = sorted(v for v in label_stats.distinct if v.strip().lower() not in LABEL_TRUE | LABEL_FALSE)
    if bad_labels:  # named on the first row holding one, as run names it (a row is one line: csv_input)
        first = next(i for i, value in enumerate(labels) if value.strip() in bad_labels)  # distinct: stripped
        raise InputValidationError(str(path), f"label values {bad_labels[:5]} are not Yes/No, True/False or 1/0",
                                   line=first + FIRST_DATA_LINE, column=label_column)
    _label_problems(label_stats, labels, problems)
    used: set[str] = set()
    id_feature = {"name": _feature_name(id_column, used, problems), "source": id_column,
                  "type": "Integral" if id_stats.feature_type == "Integral" else "String"}
    _id_problems(id_stats, ids, problems)
    label = {"name": _feature_name(label_column, used, problems), "source": label_column, "type": "Integral"}
    event_name = _feature_name("event_time", used, problems)
    features = [feature for position, stat in enumerate(stats, 1) if stat.source not in (id_column, label_column)
                if (feature := _feature(stat, position, used, problems)) is not None]
    if not features:
        raise InputValidationError(str(path), f"no feature column: every column but the id '{id_column}' and the "
                                   f"label '{label_column}' is missing or empty")
    data = {"description": f"Inferred from {path.name} ({rows} rows read)", "record_identifier": id_feature,
            "event_time": {"name": event_name, "type": "String"}, "label": label, "features": features}
    return Inference(spec=FeatureSpec.from_dict(data, origin=f"spec inferred from {path}"), problems=problems,
                     rows=rows)
