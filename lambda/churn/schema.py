"""The feature spec: one file drives the feature groups, ingest, the local store, the SQL and training.

A spec names one or more feature groups (record identifier, event time, features, the CSV columns
that feed them) and, optionally, a labels source `(entity id, observation time, label)`. Two forms:

- single group (the Telco form): `record_identifier`, `event_time`, `label`, `features` at the top
  level; the label is stored in the one group and every entity is observed at the run's event time;
- several groups: `feature_groups: [...]` plus `labels: {...}`; every group is keyed by the same
  entity id, and the training set takes, for each labels row, each group's latest version as of the
  observation time (`churn.sql`). The labels are an offline-only feature group of their own.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from churn import naming
from churn.derivations import DERIVATIONS
from churn.scoring import SCORE_COLUMNS

FEATURE_TYPES = ("String", "Integral", "Fractional")
# Feature Store adds these columns to every offline-store row; a feature may not use them.
WRITE_TIME = "write_time"  # when the offline store wrote the version
API_INVOCATION_TIME = "api_invocation_time"  # when the PutRecord / BatchWriteRecord call was made
IS_DELETED = "is_deleted"  # a DeleteRecord's version
RESERVED_NAMES = frozenset({IS_DELETED, WRITE_TIME, API_INVOCATION_TIME})
# Feature Store's FeatureName (and FeatureGroupName) is [a-zA-Z0-9]([-_]*[a-zA-Z0-9]){0,63} and at most
# MAX_NAME_LENGTH characters (botocore's sagemaker model; the pattern alone allows longer names with "-"
# or "_"). We also require lower case, so the names are the same in Glue/Athena (which lower-cases
# columns) and DuckDB, and single underscores.
MAX_NAME_LENGTH = naming.FEATURE_GROUP_MAX
_NAME_RE = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)*$")
# A group's name is part of its feature group's and Glue table's physical names.
_GROUP_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,19}$")
MAX_FEATURES = 2500  # Feature Store's limit per feature group
# OnlineStoreConfig.TtlDuration.Unit, in seconds.
TTL_UNIT_SECONDS = {"Seconds": 1, "Minutes": 60, "Hours": 3_600, "Days": 86_400, "Weeks": 604_800}
# Feature Store sets no upper bound on a TTL, but a record's ExpiresAt (event time + TTL) must stay a
# timestamp: 1,000 years keep it before year 9999 for any event time before 8999, and in int64 µs.
MAX_TTL_YEARS = 1_000
MAX_TTL_SECONDS = MAX_TTL_YEARS * 365 * 86_400
SINGLE_GROUP_NAME = "churn"  # the one group of a single-group spec
LABELS_GROUP_NAME = "labels"
VALIDATION_SPLITS = ("random", "out_of_time")


class SpecError(ValueError):
    """The feature spec is invalid; the message says where and why."""


@dataclass(frozen=True)
class Feature:
    name: str
    type: str
    source: str = ""  # the raw CSV column it comes from ("" = same as the name; for event time: the run's)

    @property
    def source_column(self) -> str:
        return self.source or self.name


@dataclass(frozen=True)
class OnlineTtl:
    """How long a record stays readable in the online store after its event time (TtlDuration)."""

    value: int
    unit: str

    def to_api(self) -> dict[str, Any]:
        return {"Unit": self.unit, "Value": self.value}


@dataclass(frozen=True)
class FeatureGroupSpec:
    name: str
    record_identifier: Feature
    event_time: Feature  # with a source column, each row carries its own event time (history)
    features: tuple[Feature, ...]
    label: Feature | None = None  # stored in the group: the single-group form, and the labels group
    online: bool = True  # the labels group is offline only
    online_ttl: OnlineTtl | None = None

    @property
    def all_features(self) -> tuple[Feature, ...]:
        """Every feature stored in the feature group, in a stable order."""
        label = (self.label,) if self.label is not None else ()
        return (self.record_identifier, self.event_time, *self.features, *label)

    @property
    def has_history(self) -> bool:
        """Rows carry their own event times (snapshots, observations) rather than the run's."""
        return bool(self.event_time.source)

    @property
    def source_columns(self) -> tuple[str, ...]:
        """The CSV columns the group's input file must have."""
        own_time = (self.event_time.source,) if self.has_history else ()
        label = (self.label.source_column,) if self.label is not None else ()
        return (self.record_identifier.source_column, *own_time, *(f.source_column for f in self.features), *label)

    def feature_definitions(self) -> list[dict[str, str]]:
        return [{"FeatureName": f.name, "FeatureType": f.type} for f in self.all_features]

    def feature_group_definition(self) -> dict[str, Any]:
        """CreateFeatureGroup's schema arguments (no name, stores or role), for `**`."""
        return {
            "RecordIdentifierFeatureName": self.record_identifier.name,
            "EventTimeFeatureName": self.event_time.name,
            "FeatureDefinitions": self.feature_definitions(),
        }

    def online_store_config(self) -> dict[str, Any] | None:
        """CreateFeatureGroup's OnlineStoreConfig (None: an offline-only group), without the key."""
        if not self.online:
            return None
        config: dict[str, Any] = {"EnableOnlineStore": True}
        if self.online_ttl is not None:
            config["TtlDuration"] = self.online_ttl.to_api()
        return config

    def fingerprint(self) -> str:
        """Short hash of what a feature group cannot change in place (names, types, keys, stores)."""
        canonical: dict[str, Any] = {
            "id": self.record_identifier.name,
            "event_time": self.event_time.name,
            "definitions": self.feature_definitions(),
        }
        if not self.online:
            canonical["online"] = False
        if self.online_ttl is not None:
            canonical["online_ttl"] = self.online_ttl.to_api()
        return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class FeatureSpec:
    groups: tuple[FeatureGroupSpec, ...]
    labels: FeatureGroupSpec | None = None
    validation_split: str = "random"
    validation_periods: int = 1
    # out_of_time: how many days after its observation time a label is settled ("no purchase in the next
    # 90 days": 90); training keeps the periods settled by the first validated time (train_model.py)
    label_horizon_days: int = 0
    derive: str = ""  # a derivation (churn.derivations) that turns one input file into each group's CSV
    description: str = ""
    origin: str = field(default="<memory>", compare=False)

    # -- derived views -------------------------------------------------------------------
    @property
    def is_single_group(self) -> bool:
        return self.labels is None

    @property
    def all_groups(self) -> tuple[FeatureGroupSpec, ...]:
        """Every feature group the spec creates: the feature groups, then the labels group."""
        return (*self.groups, *((self.labels,) if self.labels else ()))

    @property
    def record_identifier(self) -> Feature:
        """The entity id every group is keyed by."""
        return self.groups[0].record_identifier

    @property
    def label(self) -> Feature:
        owner = self.labels or self.groups[0]
        assert owner.label is not None  # validate() guarantees it
        return owner.label

    @property
    def observation_time(self) -> Feature | None:
        """The labels' observation time (None: every entity is observed at the run's event time)."""
        return self.labels.event_time if self.labels else None

    @property
    def features(self) -> tuple[Feature, ...]:
        """The model's features: every group's, in spec order."""
        return tuple(f for group in self.groups for f in group.features)

    @property
    def categorical_columns(self) -> list[str]:
        """The features the model treats as categories: the String-typed ones."""
        return [f.name for f in self.features if f.type == "String"]

    @property
    def training_columns(self) -> tuple[str, ...]:
        """Columns of the training set: entity id, [observation time,] features, label."""
        time = (self.observation_time.name,) if self.observation_time else ()
        return (self.record_identifier.name, *time, *(f.name for f in self.features), self.label.name)

    @property
    def scoring_columns(self) -> tuple[str, ...]:
        """Columns of the scoring set: entity id, features."""
        return (self.record_identifier.name, *(f.name for f in self.features))

    def group(self, name: str) -> FeatureGroupSpec:
        for group in self.all_groups:
            if group.name == name:
                return group
        raise KeyError(f"the feature spec '{self.origin}' has no feature group '{name}'")

    # -- (de)serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.derive:
            extra["derive"] = self.derive
        if (self.validation_split, self.validation_periods, self.label_horizon_days) != ("random", 1, 0):
            extra["validation"] = {"split": self.validation_split, "periods": self.validation_periods,
                                   **({"label_horizon_days": self.label_horizon_days} if self.label_horizon_days
                                      else {})}
        if self.labels is None:
            body = _group_dict(self.groups[0])
        else:
            body = {"feature_groups": [{"name": g.name, **_group_dict(g)} for g in self.groups],
                    "labels": _group_dict(self.labels)}
        return {"description": self.description, **extra, **body}

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, separators=None if indent else (",", ":"))

    @classmethod
    def from_dict(cls, data: Any, origin: str = "<memory>") -> FeatureSpec:
        if not isinstance(data, dict):
            raise SpecError(f"{origin}: a feature spec must be a JSON object")
        multi = "feature_groups" in data
        single = {"record_identifier", "event_time", "label", "features", "online_ttl"}
        known = {"description", "derive", "validation"} | ({"feature_groups", "labels"} if multi else single)
        _no_unknown(data, known, origin)
        if "derive" in data and not multi:  # a single group's CSV is read as it is, on AWS and locally
            raise SpecError(f"{origin}: 'derive' needs 'feature_groups' and 'labels': a derivation writes each "
                            "feature group's CSV, the labels' too, from one input file")
        if multi:
            groups, labels = _groups(data, origin)
        else:
            groups, labels = (_group(data, SINGLE_GROUP_NAME, origin, single=True),), None
        derive = str(data.get("derive", ""))
        split, periods, horizon = _validation(data.get("validation"), origin)
        if horizon is None:  # a derivation knows its labels' horizon
            horizon = DERIVATIONS[derive].label_horizon_days if split == "out_of_time" and derive in DERIVATIONS else 0
        spec = cls(groups=groups, labels=labels, validation_split=split, validation_periods=periods,
                   label_horizon_days=horizon, derive=derive, description=str(data.get("description", "")),
                   origin=origin)
        spec.validate()
        return spec

    @classmethod
    def from_json(cls, text: str, origin: str = "<memory>") -> FeatureSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"{origin}: not valid JSON ({exc})") from None
        return cls.from_dict(data, origin)

    @classmethod
    def load(cls, path: str | Path) -> FeatureSpec:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SpecError(f"{path}: feature spec not found") from None
        except IsADirectoryError:
            raise SpecError(f"{path}: is a folder, not a feature spec file") from None
        except UnicodeDecodeError as exc:
            raise SpecError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                            "save the feature spec as UTF-8") from None
        except OSError as exc:  # a symlink loop, no permission, ...
            raise SpecError(f"{path}: cannot read the feature spec ({exc.strerror or exc})") from None
        return cls.from_json(text, str(path))

    def validate(self) -> None:
        where = self.origin
        for group in self.all_groups:
            _validate_group(group, f"{where}: feature group '{group.name}'")
        names = [g.name for g in self.all_groups]
        if len(set(names)) != len(names):
            raise SpecError(f"{where}: feature group names must be unique, got {names}")
        entity = self.record_identifier
        for group in self.all_groups:
            if (group.record_identifier.name, group.record_identifier.type) != (entity.name, entity.type):
                raise SpecError(f"{where}: feature group '{group.name}' must be keyed by the entity "
                                f"'{entity.name}' ({entity.type}) like the others")
        if entity.name in SCORE_COLUMNS:  # scores.csv is the record identifier, then these
            raise SpecError(f"{where}: the record identifier '{entity.name}' would be a second '{entity.name}' "
                            f"column of scores.csv (<record identifier>,{','.join(SCORE_COLUMNS)}); rename it")
        if repeated := _repeated(self.training_columns):
            raise SpecError(f"{where}: the training set would have the column(s) {repeated} twice; "
                            "feature names must be unique across groups")
        if self.validation_split == "out_of_time" and self.observation_time is None:
            raise SpecError(f"{where}: out-of-time validation needs a labels source with observation times")
        if self.label_horizon_days and self.validation_split != "out_of_time":
            raise SpecError(f"{where}: validation: 'label_horizon_days' applies to the out_of_time split")
        if self.derive:
            _validate_derivation(self, names)


def _validate_derivation(spec: FeatureSpec, groups: list[str]) -> None:
    """The derivation exists, writes exactly the spec's feature groups and, validated out of time, its labels
    are not taken as settled sooner than they are."""
    derive, where = spec.derive, spec.origin
    if derive not in DERIVATIONS:
        raise SpecError(f"{where}: unknown derivation '{derive}'; known: {sorted(DERIVATIONS)}")
    derived = DERIVATIONS[derive].groups
    if sorted(derived) != sorted(groups):
        raise SpecError(f"{where}: derivation '{derive}' writes the feature groups {list(derived)}; the spec "
                        f"names {groups}")
    settled = DERIVATIONS[derive].label_horizon_days
    if spec.validation_split == "out_of_time" and spec.label_horizon_days < settled:
        raise SpecError(f"{where}: validation: 'label_horizon_days' {spec.label_horizon_days} is shorter than the "
                        f"{settled} days after which derivation '{derive}' settles a label; leave it out")


def _repeated(items: tuple[str, ...] | list[str]) -> list[str]:
    return sorted(item for item, times in Counter(items).items() if times > 1)


def _validate_group(group: FeatureGroupSpec, where: str) -> None:
    if group.record_identifier.type not in ("String", "Integral"):
        raise SpecError(f"{where}: the record identifier must be String or Integral")
    if group.event_time.type != "String":
        raise SpecError(f"{where}: the event time '{group.event_time.name}' must be String, not "
                        f"{group.event_time.type}: the pipeline writes event times as ISO-8601 UTC text "
                        "(yyyy-MM-ddTHH:mm:ss.SSSZ), reads a source column's that way and compares them as text")
    if group.label is not None and group.label.type != "Integral":
        raise SpecError(f"{where}: the label '{group.label.name}' must be Integral (0/1)")
    if len(group.all_features) > MAX_FEATURES:
        raise SpecError(f"{where}: {len(group.all_features)} features exceed {MAX_FEATURES}")
    if repeated := _repeated([f.name for f in group.all_features]):
        raise SpecError(f"{where}: feature name(s) {repeated} used twice")
    if repeated := _repeated(group.source_columns):
        raise SpecError(f"{where}: source column(s) {repeated} feed more than one feature")


def _groups(data: dict[str, Any], origin: str) -> tuple[tuple[FeatureGroupSpec, ...], FeatureGroupSpec]:
    raw_groups, raw_labels = data.get("feature_groups"), data.get("labels")
    if not isinstance(raw_groups, list) or not raw_groups:
        raise SpecError(f"{origin}: 'feature_groups' must be a non-empty list")
    if not isinstance(raw_labels, dict):
        raise SpecError(f"{origin}: a spec with 'feature_groups' needs a 'labels' object "
                        "(record_identifier, event_time = the observation time, label)")
    groups = []
    for i, raw in enumerate(raw_groups):
        where = f"{origin}: feature_groups[{i}]"
        if not isinstance(raw, dict):
            raise SpecError(f"{where}: expected an object")
        _no_unknown(raw, {"name", "record_identifier", "event_time", "features", "online_ttl"}, where)
        name = raw.get("name")
        if not isinstance(name, str) or not _GROUP_NAME_RE.match(name) or name == LABELS_GROUP_NAME:
            raise SpecError(f"{where}: 'name' must be 1-20 lower-case letters and digits, starting with a "
                            f"letter, and not '{LABELS_GROUP_NAME}' (got {name!r})")
        groups.append(_group(raw, name, where, single=False))
    where = f"{origin}: labels"
    keys = ("record_identifier", "event_time", "label")
    _no_unknown(raw_labels, set(keys), where)
    _require(raw_labels, keys, where)
    identifier, event_time, label = (_feature(raw_labels[key], f"{where}.{key}") for key in keys)
    labels = FeatureGroupSpec(name=LABELS_GROUP_NAME, record_identifier=identifier, event_time=event_time,
                              features=(), label=label, online=False)
    if not labels.has_history:
        raise SpecError(f"{where}.event_time: the observation time needs a 'source' column")
    return tuple(groups), labels


def _group(raw: dict[str, Any], name: str, where: str, *, single: bool) -> FeatureGroupSpec:
    _require(raw, ("record_identifier", "event_time", "features", *(("label",) if single else ())), where)
    if not isinstance(raw["features"], list) or not raw["features"]:
        raise SpecError(f"{where}: 'features' must be a non-empty list")
    event_time = _feature(raw["event_time"], f"{where}: event_time")
    if single and event_time.source:
        raise SpecError(f"{where}: event_time is set at ingestion (UTC, ISO-8601); it takes no 'source'")
    return FeatureGroupSpec(
        name=name,
        record_identifier=_feature(raw["record_identifier"], f"{where}: record_identifier"),
        event_time=event_time,
        features=tuple(_feature(f, f"{where}: features[{i}]") for i, f in enumerate(raw["features"])),
        label=_feature(raw["label"], f"{where}: label") if single else None,
        online_ttl=_ttl(raw.get("online_ttl"), f"{where}: online_ttl"),
    )


def _ttl(raw: Any, where: str) -> OnlineTtl | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) != {"value", "unit"}:
        raise SpecError(f"{where}: expected {{\"value\": <whole number>, \"unit\": one of {list(TTL_UNIT_SECONDS)}}}")
    value, unit = _whole_number(raw, "value", where), _one_of(raw, "unit", list(TTL_UNIT_SECONDS), where)
    if value * TTL_UNIT_SECONDS[unit] > MAX_TTL_SECONDS:
        raise SpecError(f"{where}: {value} {unit} is more than {MAX_TTL_YEARS:,} years, too far for a record's "
                        f"expiry time; use at most {MAX_TTL_SECONDS // TTL_UNIT_SECONDS[unit]:,} {unit}")
    return OnlineTtl(value=value, unit=unit)


def _validation(raw: Any, origin: str) -> tuple[str, int, int | None]:
    """(split, periods, label_horizon_days; None when not given)."""
    where = f"{origin}: validation"
    if raw is not None and not isinstance(raw, dict):
        raise SpecError(f"{where}: expected an object with 'split' and optionally 'periods' and "
                        "'label_horizon_days'")
    raw = {"split": "random", "periods": 1, **(raw or {})}
    _no_unknown(raw, {"split", "periods", "label_horizon_days"}, where)
    horizon = _whole_number(raw, "label_horizon_days", where, minimum=0) if "label_horizon_days" in raw else None
    return _one_of(raw, "split", list(VALIDATION_SPLITS), where), _whole_number(raw, "periods", where), horizon


def _one_of(raw: dict[str, Any], key: str, choices: list[str], where: str) -> str:
    if raw[key] not in choices:
        raise SpecError(f"{where}: '{key}' must be one of {choices}, got {raw[key]!r}")
    return raw[key]


def _whole_number(raw: dict[str, Any], key: str, where: str, minimum: int = 1) -> int:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"{where}: '{key}' must be a whole number of at least {minimum}, got {value!r}")
    return value


def _no_unknown(raw: dict[str, Any], known: set[str], where: str) -> None:
    if unknown := set(raw) - known:
        raise SpecError(f"{where}: unknown key(s) {sorted(unknown)}")


def _require(raw: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    for key in keys:
        if key not in raw:
            raise SpecError(f"{where}: missing required key '{key}'")


def _feature(raw: Any, where: str) -> Feature:
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: expected an object with 'name' and 'type'")
    _no_unknown(raw, {"name", "type", "source"}, where)
    name, ftype, source = raw.get("name"), raw.get("type"), raw.get("source", "")
    if not isinstance(name, str) or not name:
        raise SpecError(f"{where}: 'name' is required")
    if name in RESERVED_NAMES:
        raise SpecError(f"{where}: '{name}' is reserved by SageMaker Feature Store "
                        f"({', '.join(sorted(RESERVED_NAMES))}); rename the feature")
    if not _NAME_RE.match(name) or len(name) > MAX_NAME_LENGTH:
        raise SpecError(f"{where}: feature name '{name}' must be snake_case: lower-case letters, digits and "
                        f"single underscores, at most {MAX_NAME_LENGTH} characters")
    if ftype not in FEATURE_TYPES:
        raise SpecError(f"{where}: feature '{name}' has type {ftype!r}; use one of {FEATURE_TYPES}")
    if not isinstance(source, str):
        raise SpecError(f"{where}: 'source' must be a column name")
    return Feature(name=name, type=ftype, source=source)


def _feature_dict(feature: Feature) -> dict[str, str]:
    return {"name": feature.name, **({"source": feature.source} if feature.source else {}), "type": feature.type}


def _group_dict(group: FeatureGroupSpec) -> dict[str, Any]:
    """A group as the spec writes it (without its name): the single-group form's top level, a labels
    object (no features, no TTL) or an entry of `feature_groups` (no label)."""
    ttl = group.online_ttl
    return {"record_identifier": _feature_dict(group.record_identifier), "event_time": _feature_dict(group.event_time),
            **({"label": _feature_dict(group.label)} if group.label else {}),
            **({"features": [_feature_dict(f) for f in group.features]} if group.features else {}),
            **({"online_ttl": {"value": ttl.value, "unit": ttl.unit}} if ttl else {})}
