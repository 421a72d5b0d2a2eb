"""The SQL over the offline store, written once: Athena runs it on AWS, DuckDB runs it locally.

Every statement takes its run-time values as positional `?` parameters (Athena
`ExecutionParameters`, DuckDB prepared parameters), so the text is byte-identical in both places;
`Query.parameters` names them in order. Athena takes a `?` only in a WHERE clause (a subquery's too),
never in a SELECT list or a JOIN condition, so every `?` filters rows. Timestamps arrive as
`'YYYY-MM-DD HH:MM:SS.fff'` (UTC) and are compared through `CAST(? AS TIMESTAMP)`, which both engines read
the same way.

Point in time: a record's versions are ranked newest first (event time, then the API call, then the
write), the top one is kept, and only *then* are deletions dropped (filtering deletions first would
resurrect a deleted record's previous version). With several feature groups, every labels row
(entity, observation time) takes each group's latest version with event time <= its observation
time and written no later than the knowledge cutoff; an entity a group does not know yields nulls. The
scoring set observes every entity at one time (now): each group's latest versions as of it, joined.

Every name the SQL makes up (the rank column, subqueries, CTEs, table aliases, the count) starts with
"_": a feature name starts with a letter or digit (schema.py), so no feature column can shadow one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from churn.features import format_event_time
from churn.schema import API_INVOCATION_TIME, IS_DELETED, WRITE_TIME, FeatureGroupSpec, FeatureSpec

# The parameters, by name: the run's event time (an event-time string, the as-of of the training set),
# the knowledge cutoff (no version written later is used), when the run started (its ingest began).
AS_OF = "as_of"
KNOWLEDGE_CUTOFF = "knowledge_cutoff"
RUN_STARTED = "run_started"
NO_CUTOFF = "9999-12-31 23:59:59.999"  # the default knowledge cutoff: everything written so far
_TIMESTAMP_RE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}", re.ASCII)


@dataclass(frozen=True)
class Query:
    text: str
    parameters: tuple[str, ...]  # what each `?` stands for, in order


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def table_reference(database: str, table: str) -> str:
    """`"database"."table"`: a Glue table in Athena, a schema-qualified view in DuckDB."""
    return f"{quote(database)}.{quote(table)}"


def sql_timestamp(moment: datetime) -> str:
    """The value of a timestamp parameter: `YYYY-MM-DD HH:MM:SS.fff` in UTC (an event time as SQL writes it)."""
    return format_event_time(moment)[:-1].replace("T", " ")


def knowledge_cutoff(value: object) -> str:
    """A run's knowledge cutoff as the SQL takes it: `value` ("YYYY-MM-DD HH:MM:SS.fff", UTC), or
    NO_CUTOFF when the run names none."""
    if value is None:
        return NO_CUTOFF
    if isinstance(value, str) and _TIMESTAMP_RE.fullmatch(value):
        try:
            datetime.strptime(value, "%Y-%m-%d %H:%M:%S.%f")  # a real date and time of day
            return value
        except ValueError:
            pass
    raise ValueError(f"knowledge_cutoff {value!r} is not a UTC time written 'YYYY-MM-DD HH:MM:SS.fff'")


def athena_parameter(value: str) -> str:
    """Athena substitutes execution parameters as SQL literals: a string must arrive quoted."""
    return "'" + value.replace("'", "''") + "'"


def _columns(names: list[str] | tuple[str, ...], table: str = "", indent: int = 4) -> str:
    prefix = f"{quote(table)}." if table else ""
    return (",\n" + " " * indent).join(prefix + quote(n) for n in names)


def _newest_first(event_time: str | None, table: str = "") -> list[str]:
    """The ORDER BY terms that rank a record's versions newest first: event time (unless the partition
    already fixes it), then the API call, then the write."""
    prefix = f"{quote(table)}." if table else ""
    names = [event_time] if event_time else []
    return [f"{prefix}{quote(name)} DESC" for name in (*names, API_INVOCATION_TIME, WRITE_TIME)]


# Only the top-ranked version is kept, and only *then* are deletions dropped.
_NEWEST_KEPT = f') AS "_versions"\nWHERE "_version_rank" = 1 AND NOT {quote(IS_DELETED)}'


# The knowledge cutoff: a version written after `?` is not known to the run.
_WRITTEN_BY_CUTOFF = f"{quote(WRITE_TIME)} <= CAST(? AS TIMESTAMP)"


def _latest_versions(group: FeatureGroupSpec, table: str, columns: list[str] | tuple[str, ...], *, cutoff: bool,
                     observations: bool = False) -> str:
    """The newest non-deleted version of every record of `table` with event time <= `?` (and, with `cutoff`,
    written by the knowledge cutoff); of the labels group's `observations`: of every entity and observation time."""
    key = [group.record_identifier.name] + ([group.event_time.name] if observations else [])
    newest = ", ".join(_newest_first(None if observations else group.event_time.name))
    condition = f"{quote(group.event_time.name)} <= ?" + (f" AND {_WRITTEN_BY_CUTOFF}" if cutoff else "")
    return f"""SELECT
    {_columns(columns)}
FROM (
    SELECT
        *,
        row_number() OVER (
            PARTITION BY {", ".join(map(quote, key))}
            ORDER BY {newest}
        ) AS "_version_rank"
    FROM {table}
    WHERE {condition}
{_NEWEST_KEPT}"""


def training_set_sql(spec: FeatureSpec, tables: dict[str, str]) -> Query:
    """The training set: one row per labels row (one per entity, as of the run, for a single group)."""
    if spec.is_single_group:
        group = spec.groups[0]
        text = _latest_versions(group, tables[group.name], spec.training_columns, cutoff=True)
        return Query(f"{text}\nORDER BY {quote(spec.record_identifier.name)}", (AS_OF, KNOWLEDGE_CUTOFF))
    labels = spec.labels
    assert labels is not None and labels.label is not None
    entity, time = spec.record_identifier.name, labels.event_time.name
    observations = _latest_versions(labels, tables[labels.name], [entity, time, labels.label.name], cutoff=True,
                                    observations=True)
    as_of = [(f"_{g.name}_as_of", _as_of(g, tables[g.name], entity, time)) for g in spec.groups]
    text = _left_joined([("_observations", observations), *as_of], [entity, time], spec.training_columns)
    return Query(text, (AS_OF, KNOWLEDGE_CUTOFF) + (KNOWLEDGE_CUTOFF,) * len(spec.groups))


def scoring_set_sql(spec: FeatureSpec, tables: dict[str, str]) -> Query:
    """Every entity's latest features as of `?` (now): the entities of the first group, no label."""
    first = spec.groups[0]
    entity = spec.record_identifier.name
    if spec.is_single_group:
        text = _latest_versions(first, tables[first.name], spec.scoring_columns, cutoff=False)
        return Query(f"{text}\nORDER BY {quote(entity)}", (AS_OF,))
    # Every group's latest versions as of `?`, the others joined to the first's: now is one time for every
    # entity, so each group filters by it (Athena would not take it as an observation-time column).
    latest = [(f"_{g.name}_latest", _latest_versions(g, tables[g.name], [entity, *(f.name for f in g.features)],
                                                     cutoff=False)) for g in spec.groups]
    return Query(_left_joined(latest, [entity], spec.scoring_columns), (AS_OF,) * len(spec.groups))


def _left_joined(ctes: list[tuple[str, str]], keys: list[str], columns: tuple[str, ...]) -> str:
    """The rows of the first of `ctes` (name, query), each with the others' columns joined on `keys` (nulls
    where one has no row), ordered by `keys`."""
    using = ", ".join(map(quote, keys))
    joins = "".join(f"LEFT JOIN {quote(name)} USING ({using})\n" for name, _ in ctes[1:])
    return ("WITH " + ", ".join(f"{quote(name)} AS (\n{query}\n)" for name, query in ctes)
            + f"\nSELECT\n    {_columns(columns)}\nFROM {quote(ctes[0][0])}\n{joins}ORDER BY {using}")


def _as_of(group: FeatureGroupSpec, table: str, entity: str, time: str) -> str:
    """Each observation with the group's newest non-deleted version whose event time is not after it, among
    the versions written by the knowledge cutoff (a derived table's WHERE: Athena takes `?` nowhere else)."""
    names = [entity, time, *(f.name for f in group.features)]
    *newer, oldest = _newest_first(group.event_time.name, "_features")  # the last term on a line of its own
    return f"""SELECT
    {_columns(names)}
FROM (
    SELECT
        "_observations".{quote(entity)},
        "_observations".{quote(time)},
        {_columns([f.name for f in group.features] + [IS_DELETED], "_features", indent=8)},
        row_number() OVER (
            PARTITION BY "_observations".{quote(entity)}, "_observations".{quote(time)}
            ORDER BY {", ".join(newer)},
                {oldest}
        ) AS "_version_rank"
    FROM "_observations"
    JOIN (SELECT * FROM {table} WHERE {_WRITTEN_BY_CUTOFF}) AS "_features"
        ON "_features".{quote(entity)} = "_observations".{quote(entity)}
        AND "_features".{quote(group.event_time.name)} <= "_observations".{quote(time)}
{_NEWEST_KEPT}"""


def offline_count_sql(group: FeatureGroupSpec, table: str) -> Query:
    """How many of this run's records the group's offline store holds: records with the run's event
    time, or for a group whose rows carry their own event times, versions written since the run began."""
    record_id = quote(group.record_identifier.name)
    if group.has_history:
        return Query(
            f'SELECT count(*) AS "_records" FROM (SELECT DISTINCT {record_id}, {quote(group.event_time.name)} '
            f'FROM {table} WHERE {quote(API_INVOCATION_TIME)} >= CAST(? AS TIMESTAMP)) AS "_written"',
            (RUN_STARTED,),
        )
    return Query(f'SELECT count(DISTINCT {record_id}) AS "_records" FROM {table} '
                 f"WHERE {quote(group.event_time.name)} = ?", (AS_OF,))
