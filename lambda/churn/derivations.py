"""Derivations: one raw input file -> the CSV of each feature group of a spec, the same on AWS and locally.

A spec names its derivation (`"derive": "cdnow"`); "Derive sources" (a Lambda on AWS, a step of the
local run) reads the input once and writes one CSV per feature group, which ingest then reads like
any other input. Standard library only: it runs in Lambda.

CDNOW (`CDNOW_master.txt`: customer id, purchase date YYYYMMDD, number of CDs, dollar value; every
purchase of the 23,570 customers who first bought in Q1 1997, until June 1998):
- `profile`, one row per customer, from the day after the first purchase: its month, CDs and value;
- `activity`, a snapshot per customer on the first of every month after the first purchase: days
  since the last purchase, purchases and spend over the last 30/90/365 days, tenure;
- `labels`, every customer observed at 00:00 on the 15th of every other month from April 1997 to
  February 1998: churned = 1 when the customer bought nothing in the 90 days from the observation (that
  day included: its purchases come after 00:00; an observation is made only where the data covers them).
Every value is computed from purchases strictly before the row's event time, so no snapshot holds
anything that was not known at its time.
"""

from __future__ import annotations

import csv
import io
import math
from bisect import bisect_left
from collections.abc import Callable, Iterable
from datetime import date
from itertools import accumulate
from typing import NamedTuple

WINDOWS = (30, 90, 365)
CHURN_HORIZON_DAYS = 90
OBSERVATION_DATES = tuple(date(y, m, 15) for y, m in ((1997, 4), (1997, 6), (1997, 8), (1997, 10), (1997, 12),
                                                      (1998, 2)))


class DerivationError(ValueError):
    """The input cannot be derived from; the message names the source and the line."""


def _event_time(day: date) -> str:
    return f"{day.isoformat()}T00:00:00.000Z"


def _month_starts(first: date, last: date) -> list[date]:
    """The first of every month after `first`'s month, up to the month after `last`'s."""
    starts, year, month = [], first.year, first.month
    while True:
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        starts.append(date(year, month, 1))
        if starts[-1] > last:
            return starts


def _read_purchases(lines: Iterable[str], source: str) -> dict[str, list[tuple[int, int, float]]]:
    """customer id -> [(day ordinal, CDs, dollars)] in date order."""
    purchases: dict[str, list[tuple[int, int, float]]] = {}
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or (number == 1 and fields[0] == "customer_id"):
            continue
        try:
            customer, day, cds, dollars = fields
            when = date(int(day[:4]), int(day[4:6]), int(day[6:8])).toordinal()
            value = float(dollars)
            if not math.isfinite(value):
                raise ValueError(dollars)
            purchases.setdefault(customer, []).append((when, int(cds), value))
        except ValueError:
            raise DerivationError(f"{source}, line {number}: expected 'customer_id YYYYMMDD cds dollars', "
                                  f"got {line.strip()!r}") from None
    if not purchases:
        raise DerivationError(f"{source}: no purchases")
    for history in purchases.values():
        history.sort()
    return purchases


def _csv(header: list[str], rows: Iterable[list[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _profile_row(customer: str, first: tuple[int, int, float]) -> list[object]:
    """Known from the day after the first purchase (purchases carry a date, not a time)."""
    day, cds, dollars = first
    return [customer, _event_time(date.fromordinal(day + 1)), date.fromordinal(day).strftime("%Y-%m"), cds,
            f"{dollars:.2f}"]


def _activity_rows(customer: str, history: list[tuple[int, int, float]], last_day: date) -> Iterable[list[object]]:
    days = [day for day, _, _ in history]
    spend = [0.0, *accumulate(dollars for _, _, dollars in history)]  # spend[n]: of the first n purchases
    for start in _month_starts(date.fromordinal(days[0]), last_day):
        now = start.toordinal()
        known = bisect_left(days, now)  # purchases strictly before the snapshot
        row: list[object] = [customer, _event_time(start), now - days[known - 1]]
        for window in WINDOWS:
            since = bisect_left(days, now - window)
            row += [known - since, f"{spend[known] - spend[since]:.2f}"]
        yield [*row, now - days[0]]


def _label_rows(customer: str, history: list[tuple[int, int, float]], last_day: date) -> Iterable[list[object]]:
    days = [day for day, _, _ in history]
    for observed in OBSERVATION_DATES:
        now = observed.toordinal()
        if days[0] >= now or now + CHURN_HORIZON_DAYS > last_day.toordinal():
            continue  # not a customer yet, or the data ends before the horizon does
        # Observed at 00:00: a purchase on the observation day itself comes after it (dates carry no time)
        bought_after = bisect_left(days, now + CHURN_HORIZON_DAYS) - bisect_left(days, now)
        yield [customer, _event_time(observed), 0 if bought_after else 1]


CDNOW_GROUPS = ("profile", "activity", "labels")  # the feature groups derive_cdnow writes a CSV for


def derive_cdnow(lines: Iterable[str], source: str) -> dict[str, str]:
    """CDNOW purchases -> {"profile": csv, "activity": csv, "labels": csv}."""
    purchases = _read_purchases(lines, source)
    last_day = date.fromordinal(max(history[-1][0] for history in purchases.values()))
    customers = sorted(purchases)
    profile = _csv(["customer_id", "profile_time", "first_purchase_month", "first_purchase_cds",
                    "first_purchase_dollars"], (_profile_row(c, purchases[c][0]) for c in customers))
    window_columns = [f"{kind}_{window}d" for window in WINDOWS for kind in ("purchases", "spend")]
    activity = _csv(["customer_id", "snapshot_time", "recency_days", *window_columns, "tenure_days"],
                    (row for c in customers for row in _activity_rows(c, purchases[c], last_day)))
    labels = _csv(["customer_id", "observation_time", "churned"],
                  (row for c in customers for row in _label_rows(c, purchases[c], last_day)))
    return dict(zip(CDNOW_GROUPS, (profile, activity, labels), strict=True))


class Derivation(NamedTuple):
    """What a spec's "derive" names: the feature groups it writes, the function that writes them (the
    input's lines and its name -> {feature group: CSV text}), and how many days after its observation
    a label it writes is settled (out-of-time validation trains only on labels settled by then)."""

    groups: tuple[str, ...]
    derive: Callable[[Iterable[str], str], dict[str, str]]
    label_horizon_days: int


DERIVATIONS = {"cdnow": Derivation(CDNOW_GROUPS, derive_cdnow, CHURN_HORIZON_DAYS)}

