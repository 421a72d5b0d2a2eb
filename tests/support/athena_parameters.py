"""Where Athena accepts a `?` execution parameter: only in a WHERE clause. Athena's "Use parameterized
queries" page, Considerations and limitations: "Currently, ? parameters can be placed only in the WHERE
clause. Syntax like SELECT ? FROM table is not supported."
(https://docs.aws.amazon.com/athena/latest/ug/querying-with-prepared-statements.html)

The SQL is parsed by DuckDB's parser (`json_serialize_sql`, the parse tree before binding): the same text
runs on DuckDB, so it parses there. The clause that holds a `?` is the one of the innermost SELECT (or join)
around it: a subquery's WHERE is a WHERE clause, a `?` in the select list of a subquery inside a WHERE is not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import duckdb

# The clauses of a SELECT as DuckDB's parse tree names them (any other key of a SELECT is named as it is).
_SELECT_CLAUSES = {"select_list": "SELECT list", "from_table": "FROM clause", "where_clause": "WHERE clause",
                   "group_expressions": "GROUP BY clause", "having": "HAVING clause", "qualify": "QUALIFY clause",
                   "modifiers": "ORDER BY or LIMIT clause", "cte_map": "WITH clause"}
WHERE = _SELECT_CLAUSES["where_clause"]


@dataclass(frozen=True)
class Placeholder:
    number: int  # 1 for the text's first `?`
    line: int
    column: int
    clause: str  # the clause that holds it: as _SELECT_CLAUSES names it, "JOIN ... ON condition", ...

    def __str__(self) -> str:
        return f"? number {self.number} (line {self.line}, column {self.column}) is in the {self.clause}"


def placeholders(sql: str) -> list[Placeholder]:
    """Every `?` of `sql` with the clause it is in, in text order."""
    with duckdb.connect(":memory:") as con:
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    if tree["error"]:
        raise ValueError(f"the query does not parse: {tree['error_message']}")
    found = []
    for number, offset, clause in _parameters(tree["statements"], "statement outside any SELECT"):
        before = sql.encode()[:offset].decode()  # DuckDB's locations count UTF-8 bytes
        found.append(Placeholder(number, before.count("\n") + 1, len(before) - before.rfind("\n"), clause))
    return sorted(found, key=lambda p: p.number)


def outside_where(sql: str) -> list[Placeholder]:
    """The `?` of `sql` that Athena refuses: those not in a WHERE clause."""
    return [p for p in placeholders(sql) if p.clause != WHERE]


def _parameters(node: Any, clause: str) -> Iterator[tuple[int, int, str]]:
    """(number, character offset, clause) of every parameter in a DuckDB parse tree."""
    if isinstance(node, list):
        for item in node:
            yield from _parameters(item, clause)
    elif isinstance(node, dict):
        if node.get("class") == "PARAMETER":
            yield int(node["identifier"]), node["query_location"], clause
            return
        for key, value in node.items():
            yield from _parameters(value, _entered(node.get("type"), key, clause))


def _entered(node_type: object, key: str, clause: str) -> str:
    """The clause a child under `key` of a node of `node_type` is in."""
    if node_type == "SELECT_NODE":
        return _SELECT_CLAUSES.get(key, key)
    if node_type == "JOIN" and key == "condition":
        return "JOIN ... ON condition"
    if node_type == "SET_OPERATION_NODE" and key == "modifiers":
        return _SELECT_CLAUSES[key]
    return clause
