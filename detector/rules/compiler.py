"""Rules -> SQL. Query shapes are named templates; rules only pick from the vocabulary.

A rule file never contributes SQL text: its select, group_by and measures are looked up
in ``vocabulary``, and every number (thresholds, window) is a bound parameter. Two shapes:

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

from detector.errors import RuleError
from detector.rules.model import Number, Rule
from detector.rules.vocabulary import (
    GROUPINGS,
    MEASURES,
    SELECTIONS,
    WINDOW_FRAME,
    WINDOW_SUMS,
    group_sql,
    measure_problem,
    shape_of,
)

__all__ = ["CompiledRule", "compile_rule", "group_sql"]

# Every window is a frame of the group's messages sorted by time: (anchor - window,
# anchor], ties with the anchor included (RANGE ... CURRENT ROW takes peers). t is integer
# microseconds, so "b.t > a.t - window" is the frame offset window - 1 µs. The frame gives
# each anchor its window's first time (window_t0) and the aggregates that are no sums;
# sums are running sums at the anchor less those before window_t0, found by a join on
# (group, time), because DuckDB pays for each aggregate over a long RANGE frame anew.
#
# Distinct senders without a DISTINCT window aggregate (not standard; Spark has none): a
# window's senders are its messages less its "repeats", the messages whose sender wrote
# earlier in the same window. A message is *followed* when its sender's next message
# comes while it is still in that message's window, and that next message is a *repeat*.
# At anchor T the repeats are the repeats up to T less the followed messages before T's
# window. That is the live-interval count (a message is live from its time until its
# sender's next message or until it leaves the window) with the window's end found by the
# frame, so the window length is bound once: a parameter in the frame offset, which
# DuckDB binds and Spark folds to a literal once substituted.
WINDOWED = """
WITH feed AS (
    SELECT
        {group} AS group_key, message_uid, first_seen AS ts, epoch_us(first_seen) AS t,
        sender, is_reply, is_auto, subject IS NULL AS no_subject,
        deliveries, recipients, submitted, bounced{values}
    FROM {source}
    WHERE {select} AND {group} IS NOT NULL
),
framed AS (
    SELECT *,
        first_value(t) OVER w AS window_t0{frame}
    FROM feed
    WINDOW w AS (PARTITION BY group_key ORDER BY t
                 RANGE BETWEEN CAST(? AS BIGINT) * 1000000 - 1 PRECEDING AND CURRENT ROW)
),
linked AS (
    -- a sender's messages in order (ties by uid, so that both directions agree)
    SELECT *,
        CASE WHEN sender IS NOT NULL AND lag(t) OVER s >= window_t0
             THEN 1 ELSE 0 END AS is_repeat,
        CASE WHEN sender IS NOT NULL AND t >= lead(window_t0) OVER s
             THEN 1 ELSE 0 END AS is_followed
    FROM framed
    WINDOW s AS (PARTITION BY group_key, sender ORDER BY t, message_uid)
),
upto AS (  -- sums over the group's messages up to each one, its ties included
    SELECT *,
        sum(is_repeat) OVER r AS repeats_upto{upto}
    FROM linked
    WINDOW r AS (PARTITION BY group_key ORDER BY t
                 RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
before AS (  -- per group and time: sums over the messages before it, and its timestamp
    SELECT group_key, t, min(ts) AS ts,
        sum(sum(is_followed)) OVER b - sum(is_followed) AS followed_before{before}
    FROM linked
    GROUP BY group_key, t
    WINDOW b AS (PARTITION BY group_key ORDER BY t)
),
windows AS (
    SELECT u.*, b.ts AS window_start,
        u.repeats_upto - b.followed_before AS repeats{sums}
    FROM upto u
    JOIN before b ON b.group_key = u.group_key AND b.t = u.window_t0
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
        deliveries, recipients, submitted, bounced, max_passes, loop_bounces,
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
    """The window sums and frame aggregates that the measures' SQL ``used`` names."""
    sums = [(n, sql) for n, sql in WINDOW_SUMS.items() if re.search(rf"\b{n}\b", used)]
    return {
        "frame": "".join(f",\n        {sql} OVER w AS {name}" for name, sql in
                         WINDOW_FRAME.items() if re.search(rf"\b{name}\b", used)),
        # each message's share of a sum, never null so that the differences are not
        "values": "".join(f",\n        coalesce({sql}, 0) AS m_{name}" for name, sql in sums),
        "upto": "".join(f",\n        sum(m_{name}) OVER r AS upto_{name}" for name, _ in sums),
        "before": "".join(f",\n        sum(sum(m_{name})) OVER b - sum(m_{name}) AS before_{name}"
                          for name, _ in sums),
        "sums": "".join(f",\n        u.upto_{name} - b.before_{name} AS {name}"
                        for name, _ in sums),
    }


@dataclass(frozen=True)
class CompiledRule:
    rule: Rule
    sql: str
    params: list[Number]
    measures: tuple[str, ...]
    #: what each parameter is, in order: "window (seconds)" or a param name
    param_names: tuple[str, ...] = ()


def compile_rule(rule: Rule, *, source: str = "logical_messages") -> CompiledRule:
    """The SQL of a rule's hits, with its numbers as parameters in order.

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
              "source": source, "measures": select_cols, "conditions": conditions}
    params: list[Number] = []
    names: list[str] = []
    if shape == "windowed":
        fields.update(_window_columns(" ".join(expressions.values())))
        params.append(rule.window_seconds or 0)
        names.append("window (seconds)")
    params.extend(rule.value(c.param) for c in rule.conditions)
    names.extend(c.param for c in rule.conditions)
    return CompiledRule(rule=rule, sql=template.format(**fields).strip(), params=params,
                        measures=measures, param_names=tuple(names))
