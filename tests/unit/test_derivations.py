"""The CDNOW derivation: snapshots know only the purchases before their time; labels look 90 days ahead."""

from __future__ import annotations

import csv
import io

import pytest

from churn.derivations import DerivationError, derive_cdnow

PURCHASES = """ customer_id  date number_of_cds  dollar_value
 00001 19970101  1   11.77
 00001 19970310  2   20.00
 00002 19970215  1   10.00
 00001 19970801  1    5.00
 00003 19980301  1    1.00
 00004 19970105  1    3.00
 00004 19970415  1    4.00
"""


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
def derived() -> dict[str, list[dict[str, str]]]:
    return {group: rows(text) for group, text in derive_cdnow(io.StringIO(PURCHASES), "cdnow.txt").items()}


def test_the_profile_is_known_from_the_day_after_the_first_purchase(derived) -> None:
    first = derived["profile"][0]
    assert first == {"customer_id": "00001", "profile_time": "1997-01-02T00:00:00.000Z",
                     "first_purchase_month": "1997-01", "first_purchase_cds": "1", "first_purchase_dollars": "11.77"}
    assert [p["customer_id"] for p in derived["profile"]] == ["00001", "00002", "00003", "00004"]


def test_a_snapshot_counts_only_purchases_before_its_time(derived) -> None:
    snapshots = {r["snapshot_time"][:10]: r for r in derived["activity"] if r["customer_id"] == "00001"}
    assert snapshots["1997-03-01"]["purchases_30d"] == "0"  # the 10 March purchase is not known yet
    april = snapshots["1997-04-01"]
    assert april == {"customer_id": "00001", "snapshot_time": "1997-04-01T00:00:00.000Z", "recency_days": "22",
                     "purchases_30d": "1", "spend_30d": "20.00", "purchases_90d": "2", "spend_90d": "31.77",
                     "purchases_365d": "2", "spend_365d": "31.77", "tenure_days": "90"}
    assert snapshots["1998-04-01"]["purchases_365d"] == "1"  # 1 August 1997 only
    assert min(snapshots) == "1997-02-01" and max(snapshots) == "1998-04-01"  # a month past the data


def test_labels_look_90_days_after_the_observation_where_the_data_covers_them(derived) -> None:
    labels = {(r["customer_id"], r["observation_time"][:10]): r["churned"] for r in derived["labels"]}
    assert labels[("00001", "1997-04-15")] == "1"  # next purchase 1 August: 108 days later
    assert labels[("00001", "1997-06-15")] == "0"  # 1 August is within 90 days
    assert labels[("00002", "1997-04-15")] == "1"
    # Observed at 00:00 on 15 April: a purchase that day comes after the observation, so it is in the window
    assert labels[("00004", "1997-04-15")] == "0"
    assert ("00003", "1997-12-15") not in labels  # not a customer yet
    assert not [key for key in labels if key[1] >= "1997-12-15"]  # the data ends 1 March 1998


def test_a_bad_line_is_named() -> None:
    with pytest.raises(DerivationError, match=r"cdnow.txt, line 3: expected 'customer_id YYYYMMDD cds dollars'"):
        derive_cdnow(io.StringIO(PURCHASES.replace(" 00001 19970310  2   20.00", " 00001 1997-03-10 2 20")),
                     "cdnow.txt")
