"""Rules -> DuckDB SQL. Query shapes are named templates; rules only pick from tables.

A rule file never contributes SQL text: its select, group_by and measures are looked up
in the fixed tables below, and every number (thresholds, window) is a bound parameter.
Two shapes exist:

* ``windowed``: for every selected message (the anchor), measure the messages of the
  same group in the sliding window ``(anchor - window, anchor]``; a self-join rather
  than a DISTINCT window aggregate, so it stays standard SQL.
* ``per_message``: each message on its own, against its sender's baseline.

Both return one row per hit: group_key, anchor_uid, anchor_ts, window_start and one
column per measure.
"""

from __future__ import annotations

from dataclasses import dataclass

from detector.errors import RuleError
from detector.rules.model import Rule

#: rows that feed a rule (over logical_messages)
SELECT_SQL = {
    "messages": "NOT is_auto",
    # a message whose subject was not logged may be a reply: the degraded mode of sites
    # that log no subjects, where a storm is many senders posting to one large list
    "replies": "NOT is_auto AND (is_reply OR subject IS NULL)",
    "auto_replies": "is_auto AND sender <> ''",
    "bounces": "sender = ''",
    "bounced": "bounced > 0 AND NOT is_auto",
    "one_to_one": "to_address IS NOT NULL AND sender <> ''",
}
#: what hits are grouped by: expressions over logical_messages, ``{t}`` the table prefix
GROUP_SQL = {
    "thread": "{t}thread_id",
    "list": "{t}list",
    "sender": "{t}sender",
    "list_or_sender": "coalesce({t}list, {t}sender)",
    "list_or_thread": "coalesce({t}list, {t}thread_id)",
    "pair": "least({t}sender, {t}to_address) || ' <-> ' || greatest({t}sender, {t}to_address)",
    "message": "{t}message_uid",
}


def group_sql(group_by: str, table: str = "") -> str:
    """The grouping expression of ``group_by`` over ``table`` (an alias, or none)."""
    return GROUP_SQL[group_by].format(t=f"{table}." if table else "")
#: measures of the windowed shape, over the window's messages b
WINDOW_MEASURES = {
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
#: measures of the per-message shape
MESSAGE_MEASURES = {
    "messages": "1",
    "distinct_senders": "1",
    "deliveries": "deliveries",
    "audience": "recipients",
    "recipients": "recipients",
    "bounces": "bounced",
    "bounce_rate": "bounced / greatest(deliveries, 1)",
    "auto_messages": "CASE WHEN is_auto THEN 1 ELSE 0 END",
    "unknown_or_auto": "CASE WHEN is_auto OR subject IS NULL THEN 1 ELSE 0 END",
    "passes": "coalesce(max_passes, 1)",
    "duplicates": "greatest(deliveries - recipients, 0)",
    "loop_bounces": "loop_bounces",
    "amplification": "deliveries / greatest(submitted, 1)",
    "baseline_ratio": "deliveries / greatest(sender_median, 1)",
    "history": "history",
    "span_seconds": "0",
}

_FEED = """
feed AS (
    SELECT
        {group} AS group_key, message_uid, first_seen AS ts, epoch(first_seen) AS t,
        sender, is_reply, is_auto, subject IS NULL AS no_subject,
        deliveries, recipients, submitted, bounced
    FROM logical_messages
    WHERE {select} AND {group} IS NOT NULL
)"""

WINDOWED = """
WITH {feed},
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

PER_MESSAGE = """
WITH base AS (
    SELECT
        {group} AS group_key, message_uid, first_seen AS ts, sender, is_auto, subject,
        deliveries, recipients, submitted, bounced, max_passes, loop_bounces,
        count(*) OVER (PARTITION BY sender) - 1 AS history,
        median(deliveries) OVER (PARTITION BY sender) AS sender_median
    FROM logical_messages
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


@dataclass(frozen=True)
class CompiledRule:
    rule: Rule
    sql: str
    params: list[float | int]
    measures: tuple[str, ...]


def _measure_table(rule: Rule) -> dict[str, str]:
    return MESSAGE_MEASURES if rule.group_by == "message" else WINDOW_MEASURES


def compile_rule(rule: Rule) -> CompiledRule:
    """The SQL of a rule's hits, with its numbers as parameters in order."""
    if rule.select not in SELECT_SQL or rule.group_by not in GROUP_SQL:
        raise RuleError(rule.path, None,
                        f"select '{rule.select}' with group_by '{rule.group_by}' is not "
                        "supported yet")
    table = _measure_table(rule)
    wanted = [c.measure for c in rule.conditions] + [rule.severity.measure]
    for cond in rule.conditions:
        if cond.measure not in table:
            raise RuleError(rule.path, cond.line,
                            f"measure '{cond.measure}' is not available when grouping by "
                            f"{rule.group_by} (available: {', '.join(table)})")
    if rule.severity.measure not in table:
        raise RuleError(rule.path, None, f"severity measure '{rule.severity.measure}' is not "
                        f"available when grouping by {rule.group_by}")
    measures = tuple(dict.fromkeys([*wanted, "deliveries", "distinct_senders", "audience"]))
    select_cols = ",\n        ".join(f"{table[m]} AS {m}" for m in measures)
    conditions = " AND ".join(f"{c.measure} {c.op.replace('==', '=')} ?"
                              for c in rule.conditions)
    params: list[float | int] = []
    if rule.group_by == "message":
        sql = PER_MESSAGE.format(group=group_sql(rule.group_by), select=SELECT_SQL[rule.select],
                                 measures=select_cols, conditions=conditions)
    else:
        feed = _FEED.format(group=group_sql(rule.group_by), select=SELECT_SQL[rule.select])
        sql = WINDOWED.format(feed=feed.strip(), measures=select_cols, conditions=conditions)
        params.append(rule.window_seconds or 0)
    params.extend(rule.value(c.param) for c in rule.conditions)
    return CompiledRule(rule=rule, sql=sql.strip(), params=params, measures=measures)
