"""The feature schema: one spec file drives the feature group, ingest, the local store and the SQL."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FEATURE_TYPES = ("String", "Integral", "Fractional")
# Feature Store adds these columns to every offline-store row; a feature may not use them.
RESERVED_NAMES = frozenset({"is_deleted", "write_time", "api_invocation_time"})
# Feature Store allows ^[a-zA-Z0-9]([-_]*[a-zA-Z0-9]){0,63}; we also require lower case so the
# names are the same in Glue/Athena (which lower-cases columns) and DuckDB.
_NAME_RE = re.compile(r"^[a-z0-9]([_]?[a-z0-9]){0,63}$")
MAX_FEATURES = 2500  # Feature Store's limit per feature group


class SpecError(ValueError):
    """The feature spec is invalid; the message says where and why."""


@dataclass(frozen=True)
class Feature:
    name: str
    type: str
    source: str = ""  # the raw CSV column it comes from ("" for computed ones like event time)

    @property
    def source_column(self) -> str:
        return self.source or self.name


@dataclass(frozen=True)
class FeatureSpec:
    record_identifier: Feature
    event_time: Feature
    label: Feature
    features: tuple[Feature, ...]
    description: str = ""
    origin: str = field(default="<memory>", compare=False)

    # -- derived views -------------------------------------------------------------------
    @property
    def all_features(self) -> tuple[Feature, ...]:
        """Every feature stored in the feature group, in a stable order."""
        return (self.record_identifier, self.event_time, *self.features, self.label)

    @property
    def model_columns(self) -> tuple[str, ...]:
        """Columns of the training set: identifier, features, label (no event time)."""
        return (self.record_identifier.name, *(f.name for f in self.features), self.label.name)

    @property
    def by_name(self) -> dict[str, Feature]:
        return {f.name: f for f in self.all_features}

    def feature_definitions(self) -> list[dict[str, str]]:
        """The `FeatureDefinitions` of a SageMaker feature group."""
        return [{"FeatureName": f.name, "FeatureType": f.type} for f in self.all_features]

    def feature_group_definition(self) -> dict[str, Any]:
        """CreateFeatureGroup's schema arguments (no name, stores or role): pass them with `**`."""
        return {
            "RecordIdentifierFeatureName": self.record_identifier.name,
            "EventTimeFeatureName": self.event_time.name,
            "FeatureDefinitions": self.feature_definitions(),
        }

    def fingerprint(self) -> str:
        """Short hash of what a feature group cannot change in place (names, types, keys)."""
        canonical = json.dumps(
            {
                "id": self.record_identifier.name,
                "event_time": self.event_time.name,
                "definitions": self.feature_definitions(),
            },
            sort_keys=True,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:8]

    # -- (de)serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        def one(f: Feature) -> dict[str, str]:
            d = {"name": f.name}
            if f.source:
                d["source"] = f.source
            d["type"] = f.type
            return d

        return {
            "description": self.description,
            "record_identifier": one(self.record_identifier),
            "event_time": one(self.event_time),
            "label": one(self.label),
            "features": [one(f) for f in self.features],
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, separators=None if indent else (",", ":"))

    @classmethod
    def from_dict(cls, data: Any, origin: str = "<memory>") -> FeatureSpec:
        if not isinstance(data, dict):
            raise SpecError(f"{origin}: a feature spec must be a JSON object")
        for key in ("record_identifier", "event_time", "label", "features"):
            if key not in data:
                raise SpecError(f"{origin}: missing required key '{key}'")
        if not isinstance(data["features"], list) or not data["features"]:
            raise SpecError(f"{origin}: 'features' must be a non-empty list")
        spec = cls(
            record_identifier=_feature(data["record_identifier"], f"{origin}: record_identifier"),
            event_time=_feature(data["event_time"], f"{origin}: event_time"),
            label=_feature(data["label"], f"{origin}: label"),
            features=tuple(
                _feature(f, f"{origin}: features[{i}]") for i, f in enumerate(data["features"])
            ),
            description=str(data.get("description", "")),
            origin=origin,
        )
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
        return cls.from_json(text, str(path))

    def validate(self) -> None:
        where = self.origin
        if self.record_identifier.type not in ("String", "Integral"):
            raise SpecError(f"{where}: the record identifier must be String or Integral")
        if self.event_time.type not in ("String", "Fractional"):
            raise SpecError(f"{where}: the event time must be String or Fractional")
        if self.label.type != "Integral":
            raise SpecError(f"{where}: the label '{self.label.name}' must be Integral (0/1)")
        if len(self.all_features) > MAX_FEATURES:
            raise SpecError(f"{where}: {len(self.all_features)} features exceed {MAX_FEATURES}")
        seen: dict[str, str] = {}
        sources: dict[str, str] = {}
        for f in self.all_features:
            if f.name in seen:
                raise SpecError(f"{where}: feature name '{f.name}' is used twice")
            seen[f.name] = f.name
            if f.source:
                if f.source in sources:
                    raise SpecError(
                        f"{where}: source column '{f.source}' feeds both "
                        f"'{sources[f.source]}' and '{f.name}'"
                    )
                sources[f.source] = f.name
        if self.event_time.source:
            raise SpecError(
                f"{where}: event_time is set at ingestion (UTC, ISO-8601); it takes no 'source'"
            )


def _feature(raw: Any, where: str) -> Feature:
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: expected an object with 'name' and 'type'")
    unknown = set(raw) - {"name", "type", "source"}
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {sorted(unknown)}")
    name, ftype, source = raw.get("name"), raw.get("type"), raw.get("source", "")
    if not isinstance(name, str) or not name:
        raise SpecError(f"{where}: 'name' is required")
    if name in RESERVED_NAMES:
        raise SpecError(
            f"{where}: '{name}' is reserved by SageMaker Feature Store "
            f"({', '.join(sorted(RESERVED_NAMES))}); rename the feature"
        )
    if not _NAME_RE.match(name):
        raise SpecError(
            f"{where}: feature name '{name}' must be snake_case: lower-case letters, digits and "
            "single underscores, at most 64 characters"
        )
    if ftype not in FEATURE_TYPES:
        raise SpecError(f"{where}: feature '{name}' has type {ftype!r}; use one of {FEATURE_TYPES}")
    if not isinstance(source, str):
        raise SpecError(f"{where}: 'source' must be a column name")
    return Feature(name=name, type=ftype, source=source)

