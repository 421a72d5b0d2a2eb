import json

import pytest

from churn.schema import RESERVED_NAMES, FeatureSpec, SpecError


def base_spec() -> dict:
    return {
        "record_identifier": {"name": "customer_id", "source": "customerID", "type": "String"},
        "event_time": {"name": "event_time", "type": "String"},
        "label": {"name": "churn", "source": "Churn", "type": "Integral"},
        "features": [{"name": "tenure", "type": "Integral"}, {"name": "plan", "source": "Plan", "type": "String"}],
    }


def test_bundled_spec_covers_every_telco_column(spec, data_path):
    header = data_path.read_text().splitlines()[0].split(",")
    sources = {f.source_column for f in spec.all_features if f.name != "event_time"}
    assert sources == set(header)
    assert spec.record_identifier.name == "customer_id"
    assert spec.label.name == "churn"
    types = {f.name: f.type for f in spec.all_features}
    assert types["tenure"] == "Integral" and types["total_charges"] == "Fractional"
    assert types["contract"] == "String"


def test_feature_definitions_follow_spec_order(spec):
    definitions = spec.feature_definitions()
    assert definitions[0] == {"FeatureName": "customer_id", "FeatureType": "String"}
    assert definitions[1] == {"FeatureName": "event_time", "FeatureType": "String"}
    assert definitions[-1] == {"FeatureName": "churn", "FeatureType": "Integral"}
    assert len(definitions) == len(spec.features) + 3


@pytest.mark.parametrize("reserved", sorted(RESERVED_NAMES))
def test_reserved_names_are_rejected(reserved):
    data = base_spec()
    data["features"].append({"name": reserved, "type": "String"})
    with pytest.raises(SpecError, match=f"'{reserved}' is reserved"):
        FeatureSpec.from_dict(data, "my.spec.json")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["features"].append({"name": "tenure", "type": "Integral"}), "used twice"),
        (lambda d: d["features"].append({"name": "Bad-Name", "type": "String"}), "snake_case"),
        (lambda d: d["features"].append({"name": "x", "type": "Float"}), "use one of"),
        (lambda d: d["label"].update(type="String"), "must be Integral"),
        (lambda d: d.pop("label"), "missing required key 'label'"),
        (lambda d: d["event_time"].update(source="ts"), "takes no 'source'"),
        (lambda d: d["features"].append({"name": "y", "source": "Plan", "type": "String"}), "feeds both"),
    ],
)
def test_invalid_specs_say_what_is_wrong(mutate, message):
    data = base_spec()
    mutate(data)
    with pytest.raises(SpecError, match=message) as info:
        FeatureSpec.from_dict(data, "my.spec.json")
    assert str(info.value).startswith("my.spec.json")


def test_round_trip_and_fingerprint(tmp_path):
    spec = FeatureSpec.from_dict(base_spec())
    path = tmp_path / "s.json"
    path.write_text(spec.to_json(indent=2))
    again = FeatureSpec.load(path)
    assert again == spec
    assert again.fingerprint() == spec.fingerprint()
    changed = base_spec()
    changed["features"][0]["type"] = "Fractional"
    assert FeatureSpec.from_dict(changed).fingerprint() != spec.fingerprint()
    # the description is not part of what a feature group cannot change
    described = base_spec() | {"description": "other words"}
    assert FeatureSpec.from_dict(described).fingerprint() == spec.fingerprint()


def test_missing_and_malformed_spec_files(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        FeatureSpec.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SpecError, match="not valid JSON"):
        FeatureSpec.load(bad)
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(SpecError, match="JSON object"):
        FeatureSpec.load(bad)
