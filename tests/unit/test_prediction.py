"""`predict`'s reading of the online store: the id as ingest wrote it, and why a customer is missing."""

from __future__ import annotations

import pytest

from pipeline.errors import EXIT_BAD_INPUT, OperatorError
from pipeline.local_aws.feature_store import LocalFeatureStore
from pipeline.prediction import online_features

ONLINE = {"OnlineStoreConfig": {"EnableOnlineStore": True}, "OfflineStoreConfig": {}}


def _group(store: LocalFeatureStore, name: str, id_type: str, feature: str) -> None:
    store.create_feature_group(
        FeatureGroupName=name, RecordIdentifierFeatureName="customer_id", EventTimeFeatureName="event_time",
        FeatureDefinitions=[{"FeatureName": "customer_id", "FeatureType": id_type},
                            {"FeatureName": "event_time", "FeatureType": "String"},
                            {"FeatureName": feature, "FeatureType": "Integral"}], **ONLINE)


def _put(store: LocalFeatureStore, name: str, customer: str, feature: str) -> None:
    store.put_record(FeatureGroupName=name, Record=[
        {"FeatureName": "customer_id", "ValueAsString": customer},
        {"FeatureName": "event_time", "ValueAsString": "2026-01-01T00:00:00.000Z"},
        {"FeatureName": feature, "ValueAsString": "3"}])


@pytest.fixture
def store(tmp_path):
    with LocalFeatureStore(tmp_path / "feature-store") as fs:
        _group(fs, "numbered", "Integral", "visits")
        _group(fs, "named", "String", "logins")
        _put(fs, "numbered", "7", "visits")
        _put(fs, "named", "C7", "logins")
        yield fs


@pytest.mark.parametrize(("given", "group"), [(" 007 ", "numbered"), ("+7.0", "numbered"), (" C7 ", "named")])
def test_the_id_is_read_as_ingest_wrote_it(store, given, group):
    """Ingest strips a value and writes an Integral id as its digits: so does predict's lookup."""
    key, values, read = online_features(store, store, {"g": group}, given, "scores")
    assert read == [group] and key == values["customer_id"] and key in ("7", "C7")


def test_an_id_the_identifier_cannot_be_is_a_bad_option(store):
    """(An empty --id is refused by the CLI before any store is read: test_cli_local.)"""
    with pytest.raises(OperatorError) as raised:
        online_features(store, store, {"g": "numbered"}, "abc", "scores")
    assert raised.value.message == "--id 'abc': expected a whole number" and raised.value.exit_code == EXIT_BAD_INPUT


def test_a_customer_one_group_lacks_is_explained_with_several_groups(store):
    _put(store, "numbered", "8", "visits")  # 8 has no record in "named"'s online store ("C7" does)
    with pytest.raises(OperatorError) as raised:
        online_features(store, store, {"a": "numbered", "b": "named"}, "C7", "scores")
    assert raised.value.error == "InvalidOption"  # "C7" is no whole number: the Integral group says so first
    with pytest.raises(OperatorError) as raised:
        online_features(store, store, {"b": "named", "a": "numbered"}, "8", "scores")
    assert raised.value.message.startswith("customer '8' is not in the online store of feature group named")
    assert "predict needs the customer's record in every online feature group" in raised.value.hint
