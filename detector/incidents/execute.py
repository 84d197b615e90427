"""Stage 1: run each compiled rule over the model, into the temporary table ``_hits``.

A run can be limited to a time range (``--since`` / ``--until``): the rules then read
``_scope``, the logical messages first seen in that range, instead of the whole table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from detector.dialect import DUCKDB, Dialect
from detector.rules.compiler import CompiledRule, compile_rule
from detector.rules.model import Rule
from detector.warehouse import Warehouse, database_name

ALL_MESSAGES = "logical_messages"
SCOPED_MESSAGES = "_scope"


@dataclass(frozen=True)
class Scope:
    """The time range a run detects in: messages first seen in [since, until)."""

    since: datetime | None = None
    until: datetime | None = None

    @property
    def limited(self) -> bool:
        return self.since is not None or self.until is not None


def prepare_scope(wh: Warehouse, scope: Scope | None) -> str:
    """The table the rules read: all logical messages, or a copy of those in the scope."""
    if scope is None or not scope.limited:
        return ALL_MESSAGES
    wh.con.execute(f"CREATE OR REPLACE TEMP TABLE {SCOPED_MESSAGES} AS {scope_sql()}",
                   scope_params(scope))
    return SCOPED_MESSAGES


def scope_sql(dialect: Dialect = DUCKDB, source: str = ALL_MESSAGES) -> str:
    """The logical messages of ``source`` in a scope: a SELECT whose ``?`` parameters
    are :func:`scope_params`."""
    ts = dialect.cast_timestamp("?")
    return f"""
            SELECT * FROM {source}
            WHERE ({ts} IS NULL OR first_seen >= ?)
              AND ({ts} IS NULL OR first_seen < ?)"""


def scope_params(scope: Scope) -> list[datetime | None]:
    """The parameters of :func:`scope_sql`."""
    return [scope.since, scope.since, scope.until, scope.until]


def scoped_table_sql(name: str, relation: str, since: datetime,
                     dialect: Dialect = DUCKDB) -> str:
    """The rows of model table ``name`` (read as ``relation``) a detection from
    ``since`` reads (see scoped_model). A view takes no parameter: the time, written by
    us, is a literal."""
    try:
        earliest = since - SCOPE_MARGIN
    except OverflowError:  # --since in the first day of year 1: nothing is older
        earliest = since
    start = dialect.cast_timestamp(dialect.string(earliest.isoformat()))
    return f"SELECT * FROM {relation} WHERE {_SCOPED[name]} >= {start}"


#: model tables a detection in a scope reads through a window (see scoped_model); a
#: message answered or relayed up to this long before the scope is still found
SCOPE_MARGIN = timedelta(days=1)
_SCOPED = {"logical_messages": "coalesce(last_delivery, last_seen)",
           "messages": "last_seen", "deliveries": "ts"}


@contextmanager
def scoped_model(wh: Warehouse, since: datetime | None) -> Iterator[None]:
    """While open, the model tables read by name hold only rows from ``since`` on (less
    ``SCOPE_MARGIN``): temporary views, which DuckDB finds before the tables, so that a
    night's detection and report read its days, not every day the warehouse holds (the
    Parquet parts of older builds are skipped by their time statistics)."""
    if since is None:
        yield
        return
    db = database_name(wh.con)
    for name in _SCOPED:  # the warehouse's table, not temp's main schema
        wh.con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS "
                       + scoped_table_sql(name, f"{db}.main.{name}", since))
    try:
        yield
    finally:
        for name in _SCOPED:
            wh.con.execute(f"DROP VIEW IF EXISTS temp.{name}")


#: runs a rule on another engine (``mailstorm run --engine spark``): given the rule and
#: the table it reads (``source``), its compiled form and its hits as an Arrow table of
#: the columns the rule's SQL selects
RuleRunner = Callable[[Rule, str], tuple[CompiledRule, Any]]


def run_rules(wh: Warehouse, rules: Sequence[Rule], source: str,
              runner: RuleRunner | None = None) -> Iterator[tuple[CompiledRule, int]]:
    """``run_rule`` for each rule in turn, as the caller reads ``_hits``. A windowed rule
    none of whose messages is there is not run (its plan costs milliseconds whatever its
    input; all are asked for in one query) and ``_hits`` is then absent."""
    if runner is not None:
        for rule in rules:
            yield run_rule(wh, rule, source, runner)
        return
    compiled = [_compiled(rule, source) for rule in rules]
    probes = [c.feed for c in compiled if c.feed]
    found = (wh.con.execute("SELECT " + ", ".join(f"EXISTS ({feed})" for feed in probes))
             .fetchone() if probes else None) or ()
    fed = dict(zip(probes, found, strict=False))
    for each in compiled:
        if each.feed and not fed.get(each.feed, True):
            wh.con.execute("DROP TABLE IF EXISTS temp._hits")
            yield each, 0
        else:
            yield each, _execute(wh, each)


def run_rule(wh: Warehouse, rule: Rule, source: str,
             runner: RuleRunner | None = None) -> tuple[CompiledRule, int]:
    """Execute one rule into ``_hits``: one row per anchor message meeting its conditions
    (found by ``runner`` on another engine, when given); the rule and how many rows."""
    if runner is not None:
        compiled, hits = runner(rule, source)
        wh.con.register("_runner_hits", hits)
        try:
            made = wh.con.execute("CREATE OR REPLACE TEMP TABLE _hits AS "
                                  "SELECT * FROM _runner_hits").fetchone()
        finally:
            wh.con.unregister("_runner_hits")
        return compiled, int(made[0]) if made else 0
    compiled = _compiled(rule, source)
    return compiled, _execute(wh, compiled)


def _compiled(rule: Rule, source: str) -> CompiledRule:
    return compile_rule(rule) if source == ALL_MESSAGES else compile_rule(rule, source=source)


def _execute(wh: Warehouse, compiled: CompiledRule) -> int:
    made = wh.con.execute(f"CREATE OR REPLACE TEMP TABLE _hits AS {compiled.sql}",
                          compiled.params).fetchone()
    return int(made[0]) if made else 0
