import json
import re
from pathlib import Path

import pytest

from churn.derivations import CHURN_HORIZON_DAYS
from churn.schema import MAX_NAME_LENGTH, MAX_TTL_SECONDS, RESERVED_NAMES, FeatureSpec, SpecError
from churn.scoring import SCORE_COLUMNS
from tests.support.specs import unreadable_spec_file


def base_spec() -> dict:
    return {
        "record_identifier": {"name": "customer_id", "source": "customerID", "type": "String"},
        "event_time": {"name": "event_time", "type": "String"},
        "label": {"name": "churn", "source": "Churn", "type": "Integral"},
        "features": [{"name": "tenure", "type": "Integral"}, {"name": "plan", "source": "Plan", "type": "String"}],
    }


def test_bundled_spec_covers_every_telco_column(spec, data_path):
    header = data_path.read_text().splitlines()[0].split(",")
    sources = {f.source_column for f in spec.groups[0].all_features if f.name != "event_time"}
    assert sources == set(header)
    assert spec.record_identifier.name == "customer_id"
    assert spec.label.name == "churn"
    types = {f.name: f.type for f in spec.groups[0].all_features}
    assert types["tenure"] == "Integral" and types["total_charges"] == "Fractional"
    assert types["contract"] == "String"


def test_feature_definitions_follow_spec_order(spec):
    definitions = spec.groups[0].feature_definitions()
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
        (lambda d: d["features"].append({"name": "y", "source": "Plan", "type": "String"}), "feed more than one"),
        (lambda d: d.update(derive="cdnow"), "'derive' needs 'feature_groups' and 'labels'"),
    ],
)
def test_invalid_specs_say_what_is_wrong(mutate, message):
    assert_refused(base_spec(), mutate, message, "my.spec.json")


def assert_refused(data: dict, mutate, message: str, origin: str) -> None:
    """The mutated spec is refused with `message`, and the error starts with the file it came from."""
    mutate(data)
    with pytest.raises(SpecError, match=message) as info:
        FeatureSpec.from_dict(data, origin)
    assert str(info.value).startswith(origin)


def test_round_trip_and_fingerprint(tmp_path):
    spec = FeatureSpec.from_dict(base_spec())
    path = tmp_path / "s.json"
    path.write_text(spec.to_json(indent=2))
    again = FeatureSpec.load(path)
    assert again == spec
    fingerprint = spec.groups[0].fingerprint()
    changed = base_spec()
    changed["features"][0]["type"] = "Fractional"
    assert FeatureSpec.from_dict(changed).groups[0].fingerprint() != fingerprint
    # the description is not part of what a feature group cannot change
    described = base_spec() | {"description": "other words"}
    assert FeatureSpec.from_dict(described).groups[0].fingerprint() == fingerprint


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


def multi_spec() -> dict:
    entity = {"name": "customer_id", "type": "String"}
    return {
        "feature_groups": [
            {"name": "profile", "record_identifier": entity, "event_time": {"name": "event_time", "type": "String"},
             "features": [{"name": "plan", "type": "String"}], "online_ttl": {"value": 30, "unit": "Days"}},
            {"name": "activity", "record_identifier": entity,
             "event_time": {"name": "event_time", "source": "snapshot", "type": "String"},
             "features": [{"name": "visits", "type": "Integral"}]},
        ],
        "labels": {"record_identifier": entity, "event_time": {"name": "observed", "source": "observed",
                                                               "type": "String"},
                   "label": {"name": "churned", "type": "Integral"}},
        "validation": {"split": "out_of_time", "periods": 2},
    }


def test_telco_feature_group_keeps_its_fingerprint(spec):
    """The fingerprint names the deployed feature group and its Glue table: it must not drift."""
    assert spec.groups[0].fingerprint() == "65cc790c"
    assert spec.is_single_group and spec.observation_time is None


def test_several_groups_and_labels(tmp_path):
    spec = FeatureSpec.from_dict(multi_spec(), "multi.json")
    assert [g.name for g in spec.all_groups] == ["profile", "activity", "labels"]
    labels = spec.labels
    assert labels is not None and not labels.online and labels.online_store_config() is None
    assert spec.training_columns == ("customer_id", "observed", "plan", "visits", "churned")
    assert spec.scoring_columns == ("customer_id", "plan", "visits")
    assert spec.categorical_columns == ["plan"]
    assert spec.group("profile").online_store_config() == {"EnableOnlineStore": True,
                                                           "TtlDuration": {"Unit": "Days", "Value": 30}}
    assert spec.group("activity").has_history and not spec.group("profile").has_history
    assert spec.group("activity").source_columns == ("customer_id", "snapshot", "visits")
    assert (spec.validation_split, spec.validation_periods) == ("out_of_time", 2)
    path = tmp_path / "m.json"
    path.write_text(spec.to_json(indent=2))
    assert FeatureSpec.load(path) == spec


def test_online_ttl_is_part_of_the_fingerprint():
    with_ttl = FeatureSpec.from_dict(base_spec() | {"online_ttl": {"value": 7, "unit": "Days"}})
    assert with_ttl.groups[0].fingerprint() != FeatureSpec.from_dict(base_spec()).groups[0].fingerprint()
    assert with_ttl.groups[0].online_store_config()["TtlDuration"] == {"Unit": "Days", "Value": 7}


def _entity_other_name(d):
    d["feature_groups"][1]["record_identifier"] = {"name": "cid", "type": "String"}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_entity_other_name, "keyed by the entity"),
        (lambda d: d["feature_groups"][1]["features"].append({"name": "plan", "type": "String"}), "twice"),
        (lambda d: d["feature_groups"][1]["event_time"].update(type="Fractional"), "must be String"),
        (lambda d: d["labels"]["event_time"].pop("source"), "needs a 'source'"),
        (lambda d: d["feature_groups"][0].update(name="labels"), "not 'labels'"),
        (lambda d: d["feature_groups"][0].update(name="Profile"), "lower-case"),
        (lambda d: d.pop("labels"), "needs a 'labels' object"),
        (lambda d: d.update(derive="nope"), "unknown derivation"),
        (lambda d: d.update(derive="cdnow") or d["feature_groups"][0].update(name="customer"),
         r"derivation 'cdnow' writes the feature groups \['profile', 'activity', 'labels'\]; the spec names "
         r"\['customer', 'activity', 'labels'\]"),
        (lambda d: d["validation"].update(split="sideways"), "must be one of"),
        (lambda d: d["validation"].update(periods=0), "at least 1"),
        (lambda d: d["feature_groups"][0].update(online_ttl={"value": 1, "unit": "Years"}), "'unit' must be"),
        (lambda d: d["feature_groups"][0].update(online_ttl={"value": 0, "unit": "Days"}), "at least 1"),
        (lambda d: d["labels"]["label"].update(type="String"), "must be Integral"),
    ],
)
def test_invalid_multi_group_specs_say_what_is_wrong(mutate, message):
    assert_refused(multi_spec(), mutate, message, "multi.json")


def test_an_online_ttl_too_long_for_an_expiry_time_is_refused_naming_the_longest():
    longest = MAX_TTL_SECONDS // 604_800
    assert FeatureSpec.from_dict(base_spec() | {"online_ttl": {"value": longest, "unit": "Weeks"}})
    with pytest.raises(SpecError) as info:
        FeatureSpec.from_dict(base_spec() | {"online_ttl": {"value": 2_147_483_647, "unit": "Weeks"}}, "s.json")
    assert str(info.value) == (f"s.json: online_ttl: 2147483647 Weeks is more than 1,000 years, too far for a "
                               f"record's expiry time; use at most {longest:,} Weeks")
    with pytest.raises(SpecError, match="use at most"):
        FeatureSpec.from_dict(base_spec() | {"online_ttl": {"value": longest + 1, "unit": "Weeks"}})

@pytest.mark.parametrize("name", SCORE_COLUMNS)
def test_a_record_identifier_named_like_a_scores_csv_column_is_refused(name):
    data = base_spec()
    data["record_identifier"]["name"] = name
    with pytest.raises(SpecError) as info:
        FeatureSpec.from_dict(data, "s.json")
    assert str(info.value) == (f"s.json: the record identifier '{name}' would be a second '{name}' column of "
                               "scores.csv (<record identifier>,churn_probability,rank,model_version); rename it")

@pytest.mark.parametrize(("kind", "message"), [
    ("latin-1", "not UTF-8 text (byte 0xff at offset 8); save the feature spec as UTF-8"),
    ("utf-16", "not UTF-8 text (byte 0xff at offset 0); save the feature spec as UTF-8"),
    ("folder", "is a folder, not a feature spec file"),
    ("symlink-loop", "cannot read the feature spec (Too many levels of symbolic links)"),
])
def test_a_spec_file_that_cannot_be_read_as_text_is_a_spec_error_naming_it(tmp_path, kind, message):
    path = unreadable_spec_file(tmp_path, kind)
    with pytest.raises(SpecError) as info:
        FeatureSpec.load(path)
    assert str(info.value) == f"{path}: {message}"

def test_a_feature_name_is_at_most_64_characters_like_feature_stores():
    """botocore's FeatureName pattern alone allows 127 characters with underscores; its max is 64."""
    assert MAX_NAME_LENGTH == 64
    for name, accepted in (("a" * 64, True), ("a" * 65, False), ("_".join(["a"] * 32) + "b", True),
                           ("_".join(["a"] * 33), False), ("_".join(["a"] * 64), False)):
        data = base_spec()
        data["features"].append({"name": name, "type": "Integral"})
        if accepted:
            assert FeatureSpec.from_dict(data).features[-1].name == name
        else:
            with pytest.raises(SpecError, match=f"feature name '{name}' must be snake_case: .* at most 64 characters"):
                FeatureSpec.from_dict(data)

def test_an_event_time_other_than_string_is_refused_saying_why():
    data = base_spec()
    data["event_time"]["type"] = "Fractional"
    with pytest.raises(SpecError) as info:
        FeatureSpec.from_dict(data, "s.json")
    assert str(info.value) == (
        "s.json: feature group 'churn': the event time 'event_time' must be String, not Fractional: the pipeline "
        "writes event times as ISO-8601 UTC text (yyyy-MM-ddTHH:mm:ss.SSSZ), reads a source column's that way and "
        "compares them as text")

def test_a_label_horizon_is_read_checked_and_written_back(tmp_path):
    spec = FeatureSpec.from_dict(multi_spec() | {"validation": {"split": "out_of_time", "label_horizon_days": 30}})
    assert (spec.validation_periods, spec.label_horizon_days) == (1, 30)
    assert FeatureSpec.from_json(spec.to_json()) == spec
    assert FeatureSpec.from_dict(multi_spec()).label_horizon_days == 0  # labels settled when observed
    for validation, expected in (
            ({"split": "out_of_time", "label_horizon_days": -1}, "'label_horizon_days' must be a whole number of "
                                                                  "at least 0, got -1"),
            ({"split": "out_of_time", "label_horizon_days": 1.5}, "'label_horizon_days' must be a whole number"),
            ({"split": "random", "label_horizon_days": 30}, "'label_horizon_days' applies to the out_of_time split")):
        with pytest.raises(SpecError, match=re.escape(f"m.json: validation: {expected}")):
            FeatureSpec.from_dict(multi_spec() | {"validation": validation}, "m.json")


def test_a_derived_spec_cannot_take_labels_as_settled_sooner_than_its_derivation_does():
    cdnow = json.loads((Path(__file__).resolve().parents[2] / "data" / "cdnow.spec.json").read_text())
    cdnow["validation"]["label_horizon_days"] = 30
    with pytest.raises(SpecError, match=r"^c\.json: validation: 'label_horizon_days' 30 is shorter than the 90 days "
                                        r"after which derivation 'cdnow' settles a label; leave it out$"):
        FeatureSpec.from_dict(cdnow, "c.json")
    cdnow["validation"] = {"split": "random"}
    assert FeatureSpec.from_dict(cdnow).label_horizon_days == 0


def test_out_of_time_validation_needs_observation_times():
    with pytest.raises(SpecError, match="needs a labels source"):
        FeatureSpec.from_dict(base_spec() | {"validation": {"split": "out_of_time"}}, "s.json")


def test_bundled_cdnow_spec_loads():
    spec = FeatureSpec.load(Path(__file__).resolve().parents[2] / "data" / "cdnow.spec.json")
    assert spec.derive == "cdnow" and spec.validation_split == "out_of_time"
    assert spec.label_horizon_days == CHURN_HORIZON_DAYS  # the derivation's, which the spec need not repeat
    assert [g.name for g in spec.groups] == ["profile", "activity"]
