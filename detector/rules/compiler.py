"""Rules -> SQL. Query shapes are named templates; rules only pick from the vocabulary.

A rule file never contributes SQL text: its select, group_by and measures are looked up
in ``vocabulary``, and every number (thresholds, window) is a bound parameter. Two shapes:

* ``windowed``: every selected message (the anchor) is measured over the messages of its
  group in the sliding window ``(anchor - window, anchor]`` (ties with the anchor
  included). Window functions over the group's messages sorted by time, so the cost grows
  with n log n of a group's messages, not n squared as a self-join's did.
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
    WINDOW_COLUMNS,
    group_sql,
    measure_problem,
    shape_of,
)

__all__ = ["CompiledRule", "compile_rule", "group_sql"]

# Distinct senders in a window without a DISTINCT window aggregate (not standard, and
# Spark has none): a window's senders are its messages less its "repeats", the messages
# whose sender wrote again later in the same window. A message is *followed* when its
# sender's next message comes while it is still in that message's window, and that next
# message is a *repeat*. At anchor T the repeats are the repeats up to T (a running
# count) less the followed messages that have left T's window (strictly before its first
# message). That is the live-interval count (each message live from its time until its
# sender's next message or until it leaves the window) with the window's end found
# through the frame, so the window length is bound once, in the frame.
# t is integer microseconds, so "b.t > a.t - window" is the frame offset window - 1 µs.
WINDOWED = """
WITH feed AS (
    SELECT
        {group} AS group_key, message_uid, first_seen AS ts, epoch_us(first_seen) AS t,
        sender, is_reply, is_auto, subject IS NULL AS no_subject,
        deliveries, recipients, submitted, bounced
    FROM {source}
    WHERE {select} AND {group} IS NOT NULL
),
framed AS (
    SELECT group_key, message_uid, ts, t, sender,
        min(ts) OVER w AS window_start,
        min(t) OVER w AS window_t0{window_columns}
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
followed_before AS (  -- per group and time: followed messages strictly before it
    SELECT group_key, t,
        sum(sum(is_followed)) OVER (PARTITION BY group_key ORDER BY t)
            - sum(is_followed) AS followed
    FROM linked
    GROUP BY group_key, t
),
windows AS (
    SELECT l.*,
        sum(l.is_repeat) OVER (PARTITION BY l.group_key ORDER BY l.t
                               RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
            - f.followed AS repeats
    FROM linked l
    JOIN followed_before f ON f.group_key = l.group_key AND f.t = l.window_t0
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
        used = " ".join(expressions.values())
        fields["window_columns"] = "".join(
            f",\n        {sql} OVER w AS {name}" for name, sql in WINDOW_COLUMNS.items()
            if re.search(rf"\b{name}\b", used))
        params.append(rule.window_seconds or 0)
        names.append("window (seconds)")
    params.extend(rule.value(c.param) for c in rule.conditions)
    names.extend(c.param for c in rule.conditions)
    return CompiledRule(rule=rule, sql=template.format(**fields).strip(), params=params,
                        measures=measures, param_names=tuple(names))
