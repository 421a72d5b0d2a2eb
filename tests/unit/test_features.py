import csv
from datetime import UTC, datetime, timedelta, timezone

import pytest

from churn.features import (
    RowError,
    canonical_event_time,
    fit_name,
    format_event_time,
    normalise_name,
    parse_event_time,
    parse_label,
    to_feature_store_record,
    to_record,
)

EVENT_TIME = "2026-11-26T07:00:00.000Z"


@pytest.mark.parametrize(
    ("raw", "name"),
    [("customerID", "customer_id"), ("SeniorCitizen", "senior_citizen"), ("StreamingTV", "streaming_tv"),
     ("tenure", "tenure"), ("Total Charges", "total_charges"), (" PaymentMethod ", "payment_method"),
     ("2ndLine", "f_2nd_line"), ("HTTPServer", "http_server"), ("Größe", "grosse"), ("GRÖẞE", "grosse"),
     ("Crème Brûlée", "creme_brulee"), ("émoji😀", "emoji"), ("PreisÜberÅr", "preis_uber_ar"),
     ("prix€total", "prix_total"), ("ﬁle", "file"), ("日本", "")],
)
def test_normalise_name(raw, name):
    assert normalise_name(raw) == name


@pytest.mark.parametrize(
    ("name", "suffix", "fitted"),
    [("tenure", "", "tenure"), ("a" * 70, "", "a" * 64), ("a" * 63 + "_b", "", "a" * 63),
     ("a" * 70, "_2", "a" * 62 + "_2"), ("a" * 61 + "_bc", "_2", "a" * 61 + "_2")],
)
def test_fit_name_cuts_within_64_characters_suffix_included_and_never_before_a_separator(name, suffix, fitted):
    assert fit_name(name, suffix) == fitted


@pytest.mark.parametrize("value", ["Yes", "yes", " YES ", "True", "true", "1", "t", "Y"])
def test_positive_labels(value):
    assert parse_label(value, "Churn") == 1


@pytest.mark.parametrize("value", ["No", "no ", "FALSE", "0", " n"])
def test_negative_labels(value):
    assert parse_label(value, "Churn") == 0


def test_unknown_label_names_column_and_value():
    with pytest.raises(RowError) as info:
        parse_label("maybe", "Churn")
    assert info.value.column == "Churn"
    assert "maybe" in str(info.value)


def first_rows(data_path, n=None):
    with open(data_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return rows if n is None else rows[:n]


def test_telco_row_becomes_a_feature_store_record(group, data_path):
    row = first_rows(data_path, 1)[0]
    record = to_record(row, group, EVENT_TIME)
    assert record["customer_id"] == "7590-VHVEG"
    assert record["event_time"] == EVENT_TIME
    assert record["churn"] == "0"
    assert record["senior_citizen"] == "0"
    assert record["tenure"] == "1"
    assert record["monthly_charges"] == "29.85"
    assert record["multiple_lines"] == "No phone service"
    assert set(record) == {f.name for f in group.all_features}
    fs = to_feature_store_record(record)
    assert {"FeatureName": "customer_id", "ValueAsString": "7590-VHVEG"} in fs


def test_blank_total_charges_are_missing_not_invented(group, data_path):
    rows = [r for r in first_rows(data_path) if not r["TotalCharges"].strip()]
    assert len(rows) == 11  # the Telco quirk: customers with tenure 0
    for row in rows:
        record = to_record(row, group, EVENT_TIME)
        assert "total_charges" not in record
        assert record["tenure"] == "0"


def test_label_is_never_a_feature_input(group, data_path):
    row = first_rows(data_path, 1)[0]
    flipped = dict(row, Churn="Yes")
    a, b = to_record(row, group, EVENT_TIME), to_record(flipped, group, EVENT_TIME)
    assert {k: v for k, v in a.items() if k != "churn"} == {k: v for k, v in b.items() if k != "churn"}


def test_bad_numeric_names_the_column(group, data_path):
    row = dict(first_rows(data_path, 1)[0], tenure="twelve")
    with pytest.raises(RowError, match="column 'tenure': expected a whole number") as info:
        to_record(row, group, EVENT_TIME)
    assert info.value.value == "twelve"


def test_record_id_is_stable_and_comes_from_the_data(group, data_path):
    rows = first_rows(data_path, 3)
    ids = [to_record(r, group, EVENT_TIME)["customer_id"] for r in reversed(rows)]
    assert ids == [r["customerID"] for r in reversed(rows)]


def test_event_time_format():
    moment = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert format_event_time(moment) == "2026-01-02T03:04:05.678Z"
    other_zone = moment.astimezone(timezone(timedelta(hours=5)))
    assert format_event_time(other_zone) == "2026-01-02T03:04:05.678Z"
    assert format_event_time(datetime(999, 1, 2, tzinfo=UTC)) == "0999-01-02T00:00:00.000Z"  # as parse reads it
    assert parse_event_time("2026-01-02T03:04:05.678Z") == moment.replace(microsecond=678000)
    with pytest.raises(ValueError):
        format_event_time(datetime(2026, 1, 2))
    with pytest.raises(ValueError):
        parse_event_time("2026-01-02 03:04:05")


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("2026-11-26T07:07:54.123Z", "2026-11-26T07:07:54.123Z"),
        ("2026-11-26T07:07:54Z", "2026-11-26T07:07:54.000Z"),
        ("2026-11-26T07:07:54.1Z", "2026-11-26T07:07:54.100Z"),
        ("2026-11-26T07:07:54.123456Z", "2026-11-26T07:07:54.123Z"),
    ],
)
def test_step_functions_start_time_is_canonicalised(raw, canonical):
    assert canonical_event_time(raw) == canonical


@pytest.mark.parametrize(("value", "stored"), [("9223372036854775807", "9223372036854775807"),
                                               ("-9223372036854775808", "-9223372036854775808"),
                                               ("9223372036854775807.0", "9223372036854775807")])
def test_an_integral_feature_takes_any_64_bit_whole_number(group, data_path, value, stored):
    row = {**first_rows(data_path, 1)[0], "SeniorCitizen": value}
    assert to_record(row, group, EVENT_TIME)["senior_citizen"] == stored


@pytest.mark.parametrize("value", ["9223372036854775808", "-9223372036854775809", "1e20"])
def test_an_integral_feature_refuses_what_feature_store_cannot_hold(group, data_path, value):
    """Feature Store's Integral is 64-bit: the service (and the local store) refuse the record, so the row is
    refused where its file, line and column can still be named, before anything is written."""
    row = {**first_rows(data_path, 1)[0], "SeniorCitizen": value}
    with pytest.raises(RowError, match="fits in 64 bits") as info:
        to_record(row, group, EVENT_TIME)
    assert (info.value.column, info.value.value) == ("SeniorCitizen", value)


@pytest.mark.parametrize(("given", "version", "observation"), [
    ("2020-02-20T00:00:00.0009Z", "2020-02-20T00:00:00.001Z", "2020-02-20T00:00:00.000Z"),
    ("2020-12-31T23:59:59.9999Z", "2021-01-01T00:00:00.000Z", "2020-12-31T23:59:59.999Z"),
    ("2020-02-20T00:00:00.1230Z", "2020-02-20T00:00:00.123Z", "2020-02-20T00:00:00.123Z"),
])
def test_times_finer_than_a_millisecond_never_let_an_observation_see_a_later_version(given, version, observation):
    """A feature version's time is raised to the next millisecond, an observation's cut: a version 0.4 ms after
    an observation (both .000 when cut alike) stays out of that observation's training row."""
    from tests.support.specs import HISTORY, HISTORY_SPEC

    row = {"customer_id": "a", "snapshot": given, "visits": "1", "observed": given, "churned": "1"}
    assert to_record(row, HISTORY, EVENT_TIME)["event_time"] == version
    assert to_record(row, HISTORY_SPEC.group(HISTORY_SPEC.labels.name), EVENT_TIME)["observed"] == observation
