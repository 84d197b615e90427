"""Rules -> SQL. Query shapes are named templates; rules only pick from the vocabulary.

A rule file never contributes SQL text: its select, group_by and measures are looked up
in ``vocabulary``, and every number (thresholds, window) is a bound parameter. The
templates and the vocabulary's SQL are in the subset DuckDB and Spark read alike but for
the fields filled from a ``Dialect`` (epoch_t, block_no). Two shapes:

* ``windowed``: every selected message (the anchor) is measured over the messages of its
  group in the sliding window ``(anchor - window, anchor]`` (ties with the anchor
  included). Window functions over the group's messages sorted by time: the cost grows
  about as n log n of a group's messages, not n squared as the self-join's did.
* ``per_message``: each message on its own, against its sender's baseline.

Both return one row per hit: group_key, anchor_uid, anchor_ts, window_start and one
column per measure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from detector.dialect import DUCKDB, Dialect
from detector.errors import RuleError
from detector.rules.model import Number, Rule
from detector.rules.vocabulary import (
    GROUPINGS,
    MEASURES,
    SELECTIONS,
    WINDOW_MAXIMA,
    WINDOW_SUMS,
    group_sql,
    measure_problem,
    shape_of,
)

__all__ = ["CompiledRule", "compile_rule", "group_sql"]

# Every window holds the group's messages in (anchor - window, anchor], ties with the
# anchor included; t is integer microseconds. Nothing aggregates over a frame as long as
# the window, so a group of n messages costs a few sorts, rank functions and equi-joins:
#
# * where a window starts: each distinct anchor time puts a probe at t - window into the
#   stream of its group's messages; the probe's place in the stream, less the probes
#   before it, is the number of messages before the window, so the window's first message
#   is the next one by number;
# * sums: per group and time, running sums over the times before it; a window's sum is
#   the running sum up to its anchor's time (ties included) less that before its first
#   message's time. Aggregating over the group's distinct times rather than its messages
#   keeps these running sums small where stamps are in seconds (DuckDB pays far more for
#   a running sum over a partition than for a rank);
# * maxima: the group's time is cut into blocks one window long, so a window meets at most
#   its anchor's block (a running maximum from the block's start, ties included) and the
#   block before (the maximum from the window's first time to that block's end);
# * distinct senders, without a DISTINCT window aggregate (not standard; Spark has none):
#   a window's senders are its messages less its "repeats", the messages whose sender
#   wrote earlier in the same window. A message is *followed* when its sender's next
#   message comes while it is still in that message's window, and that next message is a
#   *repeat*. At anchor T the repeats are the repeats up to T less the followed messages
#   before T's window: the count of live intervals (a message is live from its time until
#   its sender's next message or until it leaves the window).
#
# The window length is bound once, as a parameter read in the first CTE. A named window
# in an expression is parenthesised: Spark reads "OVER g - x" as the window "g-x".
WINDOWED = """
WITH bound AS (
    SELECT CAST(? AS BIGINT) * 1000000 AS w
),
feed AS (
    SELECT
        {group} AS group_key, message_uid, first_seen AS ts, {epoch_t} AS t,
        sender, is_reply, is_auto, subject IS NULL AS no_subject,
        deliveries, recipients, submitted, bounced{values}
    FROM {source}
    WHERE {select} AND {group} IS NOT NULL
),
numbered AS (
    SELECT f.*, bound.w, {block_no} AS block,
        row_number() OVER (PARTITION BY f.group_key ORDER BY f.t, f.message_uid) AS n
    FROM feed f
    CROSS JOIN bound
),
probed AS (  -- per group and anchor time: its messages at or before anchor - window
    SELECT group_key, anchor_t,
        place - row_number() OVER (PARTITION BY group_key ORDER BY anchor_t) AS n_before
    FROM (
        SELECT group_key, anchor_t, probe,
            row_number() OVER (PARTITION BY group_key ORDER BY stream_t, probe) AS place
        FROM (SELECT group_key, t AS stream_t, 0 AS probe, NULL AS anchor_t FROM numbered
              UNION ALL
              SELECT DISTINCT group_key, t - w AS stream_t, 1 AS probe, t AS anchor_t
              FROM numbered) stream
    ) placed
    WHERE probe = 1
),
framed AS (  -- each message with the time of its window's first message
    SELECT a.*, f.t AS window_t0
    FROM numbered a
    JOIN probed p ON p.group_key = a.group_key AND p.anchor_t = a.t
    JOIN numbered f ON f.group_key = a.group_key AND f.n = p.n_before + 1
),
linked AS (
    -- a sender's messages in order (ties by uid, so that both directions agree)
    SELECT *,
        CASE WHEN sender IS NOT NULL AND lag(t) OVER s >= window_t0
             THEN 1 ELSE 0 END AS m_repeats,
        CASE WHEN sender IS NOT NULL AND t >= lead(window_t0) OVER s
             THEN 1 ELSE 0 END AS m_followed
    FROM framed
    WINDOW s AS (PARTITION BY group_key, sender ORDER BY t, message_uid)
),
times AS (  -- per group and time: what its messages add up to
    SELECT group_key, t, block, min(ts) AS ts,
        sum(m_repeats) AS at_repeats, sum(m_followed) AS at_followed{at}
    FROM linked
    GROUP BY group_key, t, block
),
running AS (  -- per group and time: sums over the times before it, maxima in its block
    SELECT *,
        (sum(at_repeats) OVER g) - at_repeats AS before_repeats,
        (sum(at_followed) OVER g) - at_followed AS before_followed{running}
    FROM times
    WINDOW g AS (PARTITION BY group_key ORDER BY t)
),
windows AS (
    SELECT l.*, s.ts AS window_start,
        e.before_repeats + e.at_repeats - s.before_followed AS repeats{window}
    FROM linked l
    JOIN running e ON e.group_key = l.group_key AND e.t = l.t
    JOIN running s ON s.group_key = l.group_key AND s.t = l.window_t0
),
hits AS (
    SELECT
        group_key, message_uid AS anchor_uid, ts AS anchor_ts, window_start,
        {measures}
    FROM windows
)
SELECT * FROM hits
WHERE {conditions}
"""

PER_MESSAGE = """
WITH base AS (
    SELECT
        {group} AS group_key, message_uid, first_seen AS ts, sender, is_auto, subject,
        deliveries, recipients, submitted, bounced, returned, max_passes, loop_bounces,
        count(*) OVER (PARTITION BY sender) - 1 AS history,
        median(deliveries) OVER (PARTITION BY sender) AS sender_median
    FROM {source}
    WHERE {select}
),
hits AS (
    SELECT
        group_key, message_uid AS anchor_uid, ts AS anchor_ts, ts AS window_start,
        {measures}
    FROM base
)
SELECT * FROM hits
WHERE {conditions}
"""

#: measures every hit carries, whatever its conditions: the incident code reports them
ALWAYS = ("deliveries", "distinct_senders", "audience")
_SOURCE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _window_columns(used: str) -> dict[str, str]:
    """The window sums and maxima that the measures' SQL ``used`` names."""
    sums = [(n, sql) for n, sql in WINDOW_SUMS.items() if re.search(rf"\b{n}\b", used)]
    maxima = [(n, sql) for n, sql in WINDOW_MAXIMA.items() if re.search(rf"\b{n}\b", used)]
    block = "OVER (PARTITION BY group_key, block ORDER BY t"
    return {
        # each message's share of a sum, never null so that the differences are not
        "values": "".join(f",\n        coalesce({sql}, 0) AS m_{name}" for name, sql in sums)
        + "".join(f",\n        {sql} AS m_{name}" for name, sql in maxima),
        "at": "".join(f",\n        sum(m_{name}) AS at_{name}" for name, _ in sums)
        + "".join(f",\n        max(m_{name}) AS at_{name}" for name, _ in maxima),
        "running": "".join(f",\n        (sum(at_{name}) OVER g) - at_{name} AS before_{name}"
                           for name, _ in sums)
        + "".join(f",\n        max(at_{name}) {block}) AS {name}_from_block_start"
                  f",\n        max(at_{name}) {block} DESC) AS {name}_to_block_end"
                  for name, _ in maxima),
        "window": "".join(f",\n        e.before_{name} + e.at_{name} - s.before_{name} AS {name}"
                          for name, _ in sums)
        + "".join(f",\n        CASE WHEN s.block < e.block THEN greatest("
                  f"e.{name}_from_block_start, s.{name}_to_block_end) "
                  f"ELSE e.{name}_from_block_start END AS {name}" for name, _ in maxima),
    }


@dataclass(frozen=True)
class CompiledRule:
    rule: Rule
    sql: str
    params: list[Number]
    measures: tuple[str, ...]
    #: what each parameter is, in order: "window (seconds)" or a param name
    param_names: tuple[str, ...] = ()
    #: a windowed rule's SELECT of the messages it reads at all (no parameters): none of
    #: them, no hits ("" for a per-message rule, whose plan is cheap)
    feed: str = ""


def compile_rule(rule: Rule, *, source: str = "logical_messages",
                 dialect: Dialect = DUCKDB) -> CompiledRule:
    """The SQL of a rule's hits in ``dialect``, with its numbers as ``?`` parameters in
    order (DuckDB's execute and Spark 4's ``spark.sql(sql, args=[...])`` both bind them).

    ``source`` is the table read instead of logical_messages (e.g. a time-scoped temporary
    copy); it is an identifier chosen by the calling code, never text from a rule file.
    """
    if not _SOURCE_RE.fullmatch(source):
        raise ValueError(f"source must be a table name, got {source!r}")
    if rule.select not in SELECTIONS or rule.group_by not in GROUPINGS:
        raise RuleError(rule.path, None,
                        f"unknown select '{rule.select}' or group_by '{rule.group_by}'")
    for measure, line in [*((c.measure, c.line) for c in rule.conditions),
                          (rule.severity.measure, None)]:
        problem = measure_problem(rule.group_by, measure)
        if problem:
            raise RuleError(rule.path, line, problem)
    shape = shape_of(rule.group_by)
    wanted = [c.measure for c in rule.conditions] + [rule.severity.measure]
    measures = tuple(dict.fromkeys([*wanted, *ALWAYS]))
    expressions = {m: MEASURES[m].sql(shape) or "" for m in measures}
    select_cols = ",\n        ".join(f"{expressions[m]} AS {m}" for m in measures)
    conditions = " AND ".join(f"{c.measure} {c.op.replace('==', '=')} ?"
                              for c in rule.conditions)
    template = WINDOWED if shape == "windowed" else PER_MESSAGE
    fields = {"group": group_sql(rule.group_by), "select": SELECTIONS[rule.select].feed,
              "source": source, "measures": select_cols, "conditions": conditions,
              "epoch_t": dialect.epoch_us("first_seen"),
              "block_no": dialect.int_div("f.t", "bound.w")}
    params: list[Number] = []
    names: list[str] = []
    if shape == "windowed":
        fields.update(_window_columns(" ".join(expressions.values())))
        params.append(rule.window_seconds or 0)
        names.append("window (seconds)")
    params.extend(rule.value(c.param) for c in rule.conditions)
    names.extend(c.param for c in rule.conditions)
    feed = (f"SELECT 1 FROM {source} WHERE {fields['select']} AND {fields['group']} "
            "IS NOT NULL" if shape == "windowed" else "")
    return CompiledRule(rule=rule, sql=template.format(**fields).strip(), params=params,
                        measures=measures, param_names=tuple(names), feed=feed)
