"""The windowed shape (window functions over sorted rows) against the self-join it replaced.

The reference below is the compiler's windowed SQL as it was before the rewrite: for each
anchor a, a join with every message b of its group with a.t - window < b.t <= a.t. It is
quadratic but obviously right; hypothesis draws small tables with ties, repeated senders,
messages exactly one window apart and nulls, and the two must return the same rows.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.assets import builtin_rules_dir
from detector.rules.compiler import compile_rule
from detector.rules.loader import load_rules
from detector.rules.model import Condition, Param, Rule, Severity, initial_values
from detector.rules.vocabulary import GROUPINGS, MEASURES, OPS, SELECTIONS, measures_for

# --- a small logical_messages table ----------------------------------------------------------

COLUMNS = {  # the columns of logical_messages that rules read, with the model's types
    "message_uid": "VARCHAR", "sender": "VARCHAR", "subject": "VARCHAR",
    "is_reply": "BOOLEAN", "is_auto": "BOOLEAN", "first_seen": "TIMESTAMPTZ",
    "recipients": "BIGINT", "deliveries": "BIGINT", "bounced": "BIGINT",
    "submitted": "BIGINT", "loop_bounces": "BIGINT", "to_address": "VARCHAR",
    "max_passes": "BIGINT", "list": "VARCHAR", "thread_id": "VARCHAR",
    "returned": "BIGINT", "prelog_origin": "VARCHAR",
}  # fmt: skip
BASE_TIME = datetime(2016, 11, 14, 9, 0, tzinfo=UTC)


@dataclass
class Msg:
    """One row of logical_messages; ``us`` is microseconds after BASE_TIME."""

    uid: str
    us: int | None
    sender: str | None = "a@x"
    subject: str | None = "s"
    is_reply: bool | None = True
    is_auto: bool | None = False
    recipients: int | None = 1
    deliveries: int | None = 1
    bounced: int | None = 0
    submitted: int | None = 1
    loop_bounces: int | None = 0
    to_address: str | None = None
    max_passes: int | None = None
    list: str | None = "l@x"
    thread_id: str | None = "t1"
    returned: int = 0
    prelog_origin: str | None = None

    def row(self) -> tuple[Any, ...]:
        return (self.uid, self.sender, self.subject, self.is_reply, self.is_auto,
                None if self.us is None else BASE_TIME + timedelta(microseconds=self.us),
                self.recipients, self.deliveries,
                self.bounced, self.submitted, self.loop_bounces, self.to_address,
                self.max_passes, self.list, self.thread_id, self.returned,
                self.prelog_origin)


@functools.cache
def _memory_db() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()  # one a process: a new database is 16 ms of DuckDB's catalog
    con.execute("SET TimeZone = 'UTC'")
    return con


def messages_db(messages: Sequence[Msg]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB holding ``messages`` as logical_messages (the table of the
    call before replaced)."""
    con = _memory_db()
    columns = ", ".join(f"{c} {t}" for c, t in COLUMNS.items())
    con.execute(f"CREATE OR REPLACE TABLE logical_messages ({columns})")
    if messages:  # one statement: executemany costs a round trip per row
        row = f"({', '.join('?' * len(COLUMNS))})"
        con.execute(f"INSERT INTO logical_messages VALUES {', '.join([row] * len(messages))}",
                    [value for m in messages for value in m.row()])
    return con


def make_rule(select: str, group_by: str, conditions: Sequence[tuple[str, str, float]],
              severity: str, window_seconds: int | None = 60) -> Rule:
    """A rule built in code: conditions as (measure, op, threshold)."""
    params = tuple(Param(f"p{i}", value, "float", "p", 1)
                   for i, (_, _, value) in enumerate(conditions))
    levels = Severity(severity, (("low", 0),))
    windowed = group_by != "message"
    return Rule(
        "r", "reply_storm", "d", select, group_by,
        f"{window_seconds}s" if windowed else None, window_seconds if windowed else None,
        params, tuple(Condition(m, op, f"p{i}", 1) for i, (m, op, _) in enumerate(conditions)),
        levels, (), (), "r.yaml", initial_values(params, levels),
    )  # fmt: skip


# --- the reference: the self-join of the compiler before the rewrite ---------------------------

REFERENCE_MEASURES = {
    "messages": "count(*)",
    "replies": "count(*) FILTER (WHERE b.is_reply)",
    "distinct_senders": "count(DISTINCT b.sender)",
    "deliveries": "sum(b.deliveries)",
    "audience": "max(b.recipients)",
    "recipients": "sum(b.recipients)",
    "bounces": "sum(b.bounced)",
    "bounce_rate": "sum(b.bounced) / greatest(sum(b.deliveries), 1)",
    "auto_messages": "count(*) FILTER (WHERE b.is_auto)",
    "unknown_or_auto": "count(*) FILTER (WHERE b.is_auto OR b.no_subject)",
    "amplification": "sum(b.deliveries) / greatest(sum(b.submitted), 1)",
    "span_seconds": "max(b.t) - min(b.t)",
}
REFERENCE = """
WITH feed AS (
    SELECT
        {group} AS group_key, message_uid, first_seen AS ts, epoch(first_seen) AS t,
        sender, is_reply, is_auto, subject IS NULL AS no_subject,
        deliveries, recipients, submitted, bounced
    FROM logical_messages
    WHERE {select} AND {group} IS NOT NULL
),
hits AS (
    SELECT
        a.group_key, a.message_uid AS anchor_uid, a.ts AS anchor_ts,
        min(b.ts) AS window_start,
        {measures}
    FROM feed a
    JOIN feed b
      ON b.group_key = a.group_key AND b.t > a.t - ? AND b.t <= a.t
    GROUP BY a.group_key, a.message_uid, a.ts
)
SELECT * FROM hits
WHERE {conditions}
"""
REFERENCE_SELECT = {  # the selections of the old compiler, copied rather than imported
    "messages": "NOT is_auto",
    "replies": "NOT is_auto AND (is_reply OR subject IS NULL)",
    "auto_replies": "is_auto AND sender <> ''",
    "bounces": "sender = ''",
    "bounced": "bounced > 0 AND NOT is_auto",
    "one_to_one": "to_address IS NOT NULL AND sender <> ''",
}
REFERENCE_GROUP = {
    "thread": "thread_id", "list": "list", "sender": "sender",
    "list_or_sender": "coalesce(list, sender)", "list_or_thread": "coalesce(list, thread_id)",
    "pair": "least(sender, to_address) || ' <-> ' || greatest(sender, to_address)",
}  # fmt: skip


def reference(rule: Rule, measures: Sequence[str]) -> tuple[str, list[float]]:
    sql = REFERENCE.format(
        group=REFERENCE_GROUP[rule.group_by], select=REFERENCE_SELECT[rule.select],
        measures=",\n        ".join(f"{REFERENCE_MEASURES[m]} AS {m}" for m in measures),
        conditions=" AND ".join(f"{c.measure} {c.op.replace('==', '=')} ?"
                                for c in rule.conditions))
    return sql, [rule.window_seconds or 0, *(rule.value(c.param) for c in rule.conditions)]


def _same(column: str, a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        # the reference subtracts epoch seconds as doubles (about 0.24 µs apart in 2016);
        # the compiler subtracts integer microseconds
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-6 if column == "span_seconds" else 0)
    return a == b


def assert_same_rows(con: duckdb.DuckDBPyConnection, rule: Rule) -> int:
    """The rule's hits by the compiler and by the reference are the same; how many."""
    compiled = compile_rule(rule)
    got_rel = con.execute(compiled.sql, compiled.params)
    columns = [d[0] for d in got_rel.description]
    got = sorted(got_rel.fetchall(), key=lambda r: r[1])
    ref_sql, ref_params = reference(rule, compiled.measures)
    ref_rel = con.execute(ref_sql, ref_params)
    assert [d[0] for d in ref_rel.description] == columns
    expected = sorted(ref_rel.fetchall(), key=lambda r: r[1])
    assert [r[1] for r in got] == [r[1] for r in expected]
    for g, e in zip(got, expected, strict=True):
        assert all(_same(c, x, y) for c, x, y in zip(columns, g, e, strict=True)), (columns, g, e)
    return len(got)


# --- random tables -------------------------------------------------------------------------

WINDOWS = [1, 3, 60]


@st.composite
def tables(draw: st.DrawFn) -> tuple[int, list[Msg]]:
    window = draw(st.sampled_from(WINDOWS))
    w_us = window * 1_000_000
    # times on a coarse grid of half windows (ties, exactly one window apart) or anywhere,
    # nudged by a microsecond either way around the window's edges
    time = st.one_of(
        st.integers(0, 6).map(lambda k: k * w_us // 2),
        st.integers(0, 3 * w_us),
    ).flatmap(lambda us: st.sampled_from([us, us, us + 1, max(us - 1, 0)]))
    # the model never leaves first_seen null, but a message without a time must simply
    # not count, as in the reference
    time = st.one_of(time, time, time, st.none()) if draw(st.booleans()) else time
    n = draw(st.integers(0, 24))
    people = [None, "", "a@x", "b@x", "c@x", "d@x"]
    small = st.one_of(st.none(), st.integers(0, 50))
    count = st.integers(0, 50)  # the model coalesces these to 0
    messages = [
        Msg(
            uid=f"m{i:02d}", us=draw(time),
            sender=draw(st.sampled_from(people)),
            subject=draw(st.sampled_from([None, "s", "Re: s"])),
            is_reply=draw(st.sampled_from([None, True, False])),
            is_auto=draw(st.sampled_from([None, True, False, False])),
            recipients=draw(count), deliveries=draw(count), bounced=draw(count),
            submitted=draw(count), loop_bounces=draw(small),
            to_address=draw(st.sampled_from([None, "a@x", "b@x", "z@x"])),
            max_passes=draw(small),
            list=draw(st.sampled_from([None, "l1@x", "l2@x"])),
            thread_id=draw(st.sampled_from(["t1", "t2", "t3"])),
        )
        for i in range(n)
    ]
    return window, messages


WINDOWED_GROUPS = [g for g in GROUPINGS if g != "message"]
WINDOWED_MEASURES = measures_for("list")
SHIPPED = [r for r in load_rules(builtin_rules_dir()) if r.group_by != "message"]


def test_reference_covers_every_windowed_measure_and_shipped_rules_exist() -> None:
    assert set(REFERENCE_MEASURES) == set(WINDOWED_MEASURES)
    assert set(REFERENCE_SELECT) == set(SELECTIONS)
    assert set(REFERENCE_GROUP) == set(WINDOWED_GROUPS)
    assert {r.name for r in SHIPPED} >= {"reply_storm", "mail_loop", "bounce_storm"}


@settings(max_examples=60, deadline=None)
@given(table=tables(), thresholds=st.lists(st.integers(0, 4), min_size=8, max_size=8))
def test_shipped_windowed_rules_match_the_self_join(table: tuple[int, list[Msg]],
                                                   thresholds: list[int]) -> None:
    window, messages = table
    con = messages_db(messages)
    for rule in SHIPPED:
        values = {c.param: thresholds[i] for i, c in enumerate(rule.conditions)}
        rule = rule.with_values(values)
        assert_same_rows(con, replace(rule, window=f"{window}s", window_seconds=window))


@settings(max_examples=120, deadline=None)
@given(table=tables(), select=st.sampled_from(list(SELECTIONS)),
       group_by=st.sampled_from(WINDOWED_GROUPS), measure=st.sampled_from(WINDOWED_MEASURES),
       op=st.sampled_from(list(OPS)), threshold=st.sampled_from([0, 1, 2, 0.5]))
def test_every_windowed_measure_matches_the_self_join(
    table: tuple[int, list[Msg]], select: str, group_by: str, measure: str, op: str,
    threshold: float,
) -> None:
    window, messages = table
    con = messages_db(messages)
    # every measure at once (rows where each is >= -1, i.e. none is null)...
    every = [(m, ">=", -1.0) for m in WINDOWED_MEASURES]
    assert_same_rows(con, make_rule(select, group_by, every, "messages", window))
    # ...and one under a drawn condition, which keeps the rows where others are null
    assert_same_rows(con, make_rule(select, group_by, [(measure, op, threshold)], measure,
                                    window))


def test_a_known_table_gives_hits() -> None:
    """The properties above are not vacuous: a plain case hits, with the expected values."""
    ms = [Msg("m1", 0, sender="a@x"), Msg("m2", 1, sender="b@x"),
          Msg("m3", 60_000_000, sender="a@x"), Msg("m4", 60_000_000, sender="a@x")]
    con = messages_db(ms)
    rule = make_rule("messages", "list", [("distinct_senders", ">=", 1)], "messages", 60)
    assert assert_same_rows(con, rule) == 4
    rows = dict(con.execute(
        f"SELECT anchor_uid, distinct_senders FROM ({compile_rule(rule).sql})",
        compile_rule(rule).params).fetchall())
    # m3 and m4: m1 is exactly one window before and out; m2 is 1 µs later and in
    assert rows == {"m1": 1, "m2": 2, "m3": 2, "m4": 2}


@pytest.mark.parametrize("measure", [m for m in MEASURES if m not in WINDOWED_MEASURES])
def test_per_message_only_measures_are_rejected_for_windows(measure: str) -> None:
    from detector.errors import RuleError

    with pytest.raises(RuleError, match="is not available when grouping by list"):
        compile_rule(make_rule("messages", "list", [(measure, ">=", 1)], "messages"))
