"""The point-in-time SQL on DuckDB over offline-store-shaped tables: no value from after an observation
time (or written after the knowledge cutoff) ever reaches a training row."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from churn.schema import RESERVED_NAMES, FeatureSpec, SpecError
from churn.sql import (
    AS_OF,
    KNOWLEDGE_CUTOFF,
    NO_CUTOFF,
    RUN_STARTED,
    Query,
    knowledge_cutoff,
    offline_count_sql,
    scoring_set_sql,
    sql_timestamp,
    table_reference,
    training_set_sql,
)
from tests.conftest import ROOT
from tests.support.athena_parameters import outside_where, placeholders

SPEC = FeatureSpec.from_dict({
    "feature_groups": [
        {"name": "profile", "record_identifier": {"name": "customer_id", "type": "String"},
         "event_time": {"name": "event_time", "source": "t", "type": "String"},
         "features": [{"name": "segment", "type": "String"}]},
        {"name": "activity", "record_identifier": {"name": "customer_id", "type": "String"},
         "event_time": {"name": "event_time", "source": "t", "type": "String"},
         "features": [{"name": "spend", "type": "Fractional"}, {"name": "visits", "type": "Integral"}]},
    ],
    "labels": {"record_identifier": {"name": "customer_id", "type": "String"},
               "event_time": {"name": "observation_time", "source": "observed", "type": "String"},
               "label": {"name": "churned", "type": "Integral"}},
})
def tables(spec: FeatureSpec) -> dict[str, str]:
    return {g.name: table_reference("fs", f"{g.name}_table") for g in spec.all_groups}


TABLES = tables(SPEC)
BASE = datetime(2026, 1, 1, tzinfo=UTC)
_TYPES = {"String": "VARCHAR", "Integral": "BIGINT", "Fractional": "DOUBLE"}


def day(n: float) -> str:
    """An event time n days after BASE, as the pipeline writes them."""
    moment = BASE + timedelta(days=n)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def written(n: float) -> datetime:
    return (BASE + timedelta(days=n)).replace(tzinfo=None)


class Store:
    """Offline-store tables (features + write_time, api_invocation_time, is_deleted) in DuckDB."""

    def __init__(self, spec: FeatureSpec = SPEC) -> None:
        self.spec, self.tables = spec, tables(spec)
        self.con = duckdb.connect(":memory:")
        self.con.execute("CREATE SCHEMA fs")
        self.calls = 0
        for group in spec.all_groups:
            columns = ", ".join(f'"{f.name}" {_TYPES[f.type]}' for f in group.all_features)
            self.con.execute(f'CREATE TABLE {self.tables[group.name]} ({columns}, "write_time" TIMESTAMP, '
                             '"api_invocation_time" TIMESTAMP, "is_deleted" BOOLEAN)')

    def put(self, group: str, record: dict, *, write: float, deleted: bool = False) -> None:
        """One offline row; API calls are numbered in put order, written `write` days after BASE."""
        self.calls += 1
        names = [f.name for f in self.spec.group(group).all_features]
        values = [record.get(n) for n in names]
        api = BASE.replace(tzinfo=None) + timedelta(seconds=self.calls)
        self.con.execute(f"INSERT INTO {self.tables[group]} VALUES ({', '.join('?' * (len(names) + 3))})",
                         [*values, written(write), api, deleted])

    def query(self, query, **values) -> list[tuple]:
        return self.con.execute(query.text, [values[name] for name in query.parameters]).fetchall()

    def training_set(self, as_of: float = 1000, cutoff: str = NO_CUTOFF) -> list[tuple]:
        return self.query(training_set_sql(self.spec, self.tables), **{AS_OF: day(as_of), KNOWLEDGE_CUTOFF: cutoff})


def label(store: Store, customer: str, observed: float, churned: int, write: float = 0, **kwargs) -> None:
    store.put("labels", {"customer_id": customer, "observation_time": day(observed), "churned": churned},
              write=write, **kwargs)


def activity(store: Store, customer: str, at: float, spend: float, write: float = 0, **kwargs) -> None:
    store.put("activity", {"customer_id": customer, "event_time": day(at), "spend": spend, "visits": int(at)},
              write=write, **kwargs)


def test_each_observation_takes_the_latest_version_not_after_it() -> None:
    store = Store()
    store.put("profile", {"customer_id": "c1", "event_time": day(0), "segment": "new"}, write=0)
    store.put("profile", {"customer_id": "c1", "event_time": day(20), "segment": "loyal"}, write=0)
    for at, spend in ((5, 1.0), (10, 2.0), (15, 3.0), (25, 4.0)):
        activity(store, "c1", at, spend)
    label(store, "c1", 12, 0)
    label(store, "c1", 15, 1)  # an event at exactly the observation time counts
    label(store, "c1", 30, 1)
    assert store.training_set() == [
        ("c1", day(12), "new", 2.0, 10, 0),
        ("c1", day(15), "new", 3.0, 15, 1),
        ("c1", day(30), "loyal", 4.0, 25, 1),
    ]


def test_an_entity_a_group_does_not_know_yet_gets_nulls() -> None:
    store = Store()
    activity(store, "c1", 10, 5.0)
    label(store, "c1", 5, 1)  # before its first snapshot
    label(store, "c2", 20, 0)  # never in any group
    assert store.training_set() == [("c1", day(5), None, None, None, 1), ("c2", day(20), None, None, None, 0)]


def test_a_deletion_hides_the_versions_before_it() -> None:
    store = Store()
    activity(store, "c1", 5, 1.0)
    activity(store, "c1", 10, 0.0, deleted=True)
    activity(store, "c1", 20, 3.0)
    label(store, "c1", 15, 1)
    label(store, "c1", 25, 0)
    assert store.training_set() == [("c1", day(15), None, None, None, 1), ("c1", day(25), None, 3.0, 20, 0)]


def test_a_rewrite_of_the_same_event_time_wins_and_the_cutoff_ignores_later_writes() -> None:
    store = Store()
    activity(store, "c1", 10, 1.0, write=0)
    activity(store, "c1", 10, 9.0, write=50)  # corrected later, same event time
    label(store, "c1", 12, 1, write=0)
    assert store.training_set()[0][3] == 9.0
    rebuilt = store.training_set(cutoff=sql_timestamp(BASE + timedelta(days=40)))
    assert rebuilt[0][3] == 1.0


def test_labels_are_deduplicated_deleted_and_bounded_by_the_run() -> None:
    store = Store()
    label(store, "c1", 10, 0)
    label(store, "c1", 10, 1)  # the same observation written again: the newer write wins
    label(store, "c2", 10, 1)
    label(store, "c2", 10, 1, deleted=True)
    label(store, "c3", 500, 1)  # observed after the run's as-of
    label(store, "c4", 10, 1, write=60)  # written after the cutoff
    rows = store.training_set(as_of=100, cutoff=sql_timestamp(BASE + timedelta(days=30)))
    assert [(r[0], r[-1]) for r in rows] == [("c1", 1)]


def test_random_histories_match_a_brute_force_point_in_time_join() -> None:
    """Many entities with random versions, deletions, rewrites and late writes; every training row
    equals what a direct reading of "latest version not after the observation, written by the cutoff"
    gives, and no value comes from a version after its observation time."""
    rng = random.Random(7)
    store = Store()
    versions: list[tuple] = []  # (customer, event day, write day, deleted, spend, call number)
    observations: list[tuple] = []
    for c in range(60):
        customer = f"c{c:02d}"
        for _ in range(rng.randint(0, 8)):
            at, write = rng.randint(0, 60), rng.randint(0, 90)
            deleted = rng.random() < 0.15
            spend = round(rng.uniform(0, 100), 2)
            activity(store, customer, at, spend, write=write, deleted=deleted)
            versions.append((customer, at, write, deleted, spend, store.calls))
        for observed in rng.sample(range(0, 70), rng.randint(1, 3)):
            label(store, customer, observed, rng.randint(0, 1))
            observations.append((customer, observed))
    cutoff_day = 70
    rows = store.training_set(cutoff=sql_timestamp(BASE + timedelta(days=cutoff_day)))
    assert len(rows) == len(observations)
    for customer, observed, _, spend, _visits, _ in rows:
        candidates = [v for v in versions if v[0] == customer and day(v[1]) <= observed and v[2] <= cutoff_day]
        latest = max(candidates, key=lambda v: (v[1], v[5]), default=None)
        expected = None if latest is None or latest[3] else latest[4]
        assert spend == expected, (customer, observed)


def test_the_scoring_set_takes_every_entity_of_the_first_group_as_of_now() -> None:
    store = Store()
    store.put("profile", {"customer_id": "c1", "event_time": day(0), "segment": "a"}, write=0)
    store.put("profile", {"customer_id": "c2", "event_time": day(0), "segment": "b"}, write=0)
    store.put("profile", {"customer_id": "c3", "event_time": day(0), "segment": "c"}, write=0)
    store.put("profile", {"customer_id": "c3", "event_time": day(5), "segment": None}, write=0, deleted=True)
    activity(store, "c1", 10, 1.0)
    activity(store, "c1", 900, 2.0)  # in the future of "now"
    rows = store.query(scoring_set_sql(SPEC, TABLES), **{AS_OF: day(100)})
    assert rows == [("c1", "a", 1.0, 10), ("c2", "b", None, None)]


def test_offline_count_for_history_counts_versions_written_since_the_run_began() -> None:
    store = Store()
    activity(store, "c1", 1, 1.0)
    activity(store, "c1", 2, 1.0)
    activity(store, "c1", 2, 1.0)  # the same version twice counts once
    query = offline_count_sql(SPEC.group("activity"), TABLES["activity"])
    assert query.parameters == (RUN_STARTED,)
    started = BASE + timedelta(seconds=1.5)  # after the first call
    assert store.query(query, **{RUN_STARTED: sql_timestamp(started)}) == [(1,)]


def test_single_group_training_set_is_the_latest_version_as_of_the_run(spec) -> None:
    con = duckdb.connect(":memory:")
    con.execute("CREATE SCHEMA fs")
    group = spec.groups[0]
    columns = ", ".join(f'"{f.name}" {_TYPES[f.type]}' for f in group.all_features)
    con.execute(f'CREATE TABLE fs.t ({columns}, "write_time" TIMESTAMP, "api_invocation_time" TIMESTAMP, '
                '"is_deleted" BOOLEAN)')
    names = [f.name for f in group.all_features]

    def put(customer: str, at: float, churn: int, deleted: bool = False) -> None:
        values = {n: None for n in names} | {"customer_id": customer, "event_time": day(at), "churn": churn,
                                             "tenure": int(at)}
        con.execute(f"INSERT INTO fs.t VALUES ({', '.join('?' * (len(names) + 3))})",
                    [*(values[n] for n in names), written(0), written(at), deleted])

    put("a", 1, 0)
    put("a", 3, 1)
    put("b", 1, 0)
    put("b", 2, 0, deleted=True)
    put("c", 9, 1)  # after the run's as-of
    query = training_set_sql(spec, {group.name: "fs.t"})
    rows = con.execute(query.text, [day(5), NO_CUTOFF]).fetchall()
    assert [(r[0], r[names.index("tenure") - 1], r[-1]) for r in rows] == [("a", 3, 1)]


@pytest.mark.parametrize("build", [training_set_sql, scoring_set_sql])
def test_parameters_name_every_placeholder(build) -> None:
    query = build(SPEC, TABLES)
    assert query.text.count("?") == len(query.parameters)


def every_query(spec: FeatureSpec) -> dict[str, Query]:
    """Every query the module builds for `spec`, by what it is."""
    named = tables(spec)
    return {"training set": training_set_sql(spec, named), "scoring set": scoring_set_sql(spec, named),
            **{f"offline count of {g.name}": offline_count_sql(g, named[g.name]) for g in spec.all_groups}}


# One group (its offline count compares the run's event time) and several (histories, counted by API call
# time): the training set with its knowledge cutoff, the scoring set without one.
@pytest.mark.parametrize("spec_file", ["churn.spec.json", "cdnow.spec.json"])
def test_every_placeholder_is_in_a_where_clause_as_athena_requires(spec_file) -> None:
    queries = every_query(FeatureSpec.load(ROOT / "data" / spec_file))
    assert {name: len(placeholders(q.text)) for name, q in queries.items()} == {
        name: len(q.parameters) for name, q in queries.items()}
    misplaced = [f"{name}: {p}" for name, query in queries.items() for p in outside_where(query.text)]
    assert not misplaced, "\n".join(misplaced)


def test_the_knowledge_cutoff_is_the_runs_or_none() -> None:
    assert knowledge_cutoff(None) == NO_CUTOFF
    assert knowledge_cutoff("1997-12-31 23:59:59.999") == "1997-12-31 23:59:59.999"
    for bad in ("1997-12-31", "1997-12-31T23:59:59.999Z", "1997-12-31 23:59:59", "1997-02-30 00:00:00.000",
                "1997-12-31 24:00:00.000", 19971231, "", "\u0661\u0669\u0669\u0667-12-31 23:59:59.999"):
        with pytest.raises(ValueError, match="is not a UTC time written 'YYYY-MM-DD HH:MM:SS.fff'"):
            knowledge_cutoff(bad)


def _one_feature_spec(name: str, *, several_groups: bool) -> FeatureSpec:
    """A spec whose only feature is the Integral `name`: in the one group, or in a group beside the labels."""
    entity, label = {"name": "customer_id", "type": "String"}, {"name": "churned", "type": "Integral"}
    feature = [{"name": name, "type": "Integral"}]
    if not several_groups:
        return FeatureSpec.from_dict({"record_identifier": entity, "label": label, "features": feature,
                                      "event_time": {"name": "event_time", "type": "String"}})
    return FeatureSpec.from_dict({
        "feature_groups": [{"name": "activity", "record_identifier": entity, "features": feature,
                            "event_time": {"name": "event_time", "source": "t", "type": "String"}}],
        "labels": {"record_identifier": entity, "label": label,
                   "event_time": {"name": "observation_time", "source": "o", "type": "String"}},
    })


def _made_up_names(spec: FeatureSpec) -> set[str]:
    """Every quoted name the SQL of `spec` uses that is not a table, a spec column or a Feature Store one."""
    texts = [training_set_sql(spec, tables(spec)).text, scoring_set_sql(spec, tables(spec)).text,
             *(offline_count_sql(g, tables(spec)[g.name]).text for g in spec.all_groups)]
    quoted = {name for text in texts for name in re.findall(r'"([^"]+)"', text)}
    known = {"fs", *(f"{g.name}_table" for g in spec.all_groups),
             *(f.name for g in spec.all_groups for f in g.all_features), *RESERVED_NAMES}
    return quoted - known


# What the SQL called its rank column, subqueries, CTEs, table aliases and count before they took a "_".
_FORMER_HELPER_NAMES = ("version_rank", "versions", "observations", "features", "entities", "written", "records",
                        "activity_as_of")


@pytest.mark.parametrize("several_groups", [False, True], ids=["one group", "several groups"])
@pytest.mark.parametrize("name", _FORMER_HELPER_NAMES)
def test_a_feature_named_like_a_helper_of_the_sql_keeps_every_row(name, several_groups) -> None:
    spec = _one_feature_spec(name, several_groups=several_groups)
    store = Store(spec)
    for n, customer in enumerate(("c1", "c2", "c3")):
        value = n + 2  # never 1: the rank the SQL keeps
        if several_groups:
            store.put("activity", {"customer_id": customer, "event_time": day(1), name: value}, write=0)
            store.put("labels", {"customer_id": customer, "observation_time": day(5), "churned": n % 2}, write=0)
        else:
            store.put("churn", {"customer_id": customer, "event_time": day(1), name: value, "churned": n % 2},
                      write=0)
    time = (day(5),) if several_groups else ()
    assert store.training_set() == [("c1", *time, 2, 0), ("c2", *time, 3, 1), ("c3", *time, 4, 0)]
    scored = store.query(scoring_set_sql(spec, store.tables), **{AS_OF: day(100)})
    assert scored == [("c1", 2), ("c2", 3), ("c3", 4)]


@pytest.mark.parametrize("several_groups", [False, True], ids=["one group", "several groups"])
def test_no_feature_can_take_a_name_the_sql_makes_up(several_groups) -> None:
    made_up = _made_up_names(_one_feature_spec("visits", several_groups=several_groups))
    assert made_up and all(name.startswith("_") for name in made_up), sorted(made_up)
    for name in made_up:
        with pytest.raises(SpecError, match="must be snake_case"):
            _one_feature_spec(name, several_groups=several_groups)
