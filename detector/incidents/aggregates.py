"""Stage 4: what each span's messages add up to, its root, timeline and top senders.

Every pick of one value among several breaks ties explicitly (by time, then by a key), so
the same data in another line order or batch size gives the same root, list and id.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import polars as pl

from detector.incidents.model import Minute, Root, SenderCount
from detector.warehouse import Warehouse

# each span's messages with the columns the statements below read: a view, not a table
# (a storm of a million messages would hold them all in memory for a few joins saved)
MEMBER_ROWS = """
CREATE OR REPLACE TEMP VIEW _mem AS
SELECT k.incident_key, s.answering, m.message_uid, m.sender, m.subject,
    m.thread_subject, m.root_ref, m.list, m.is_reply, m.is_auto, m.first_seen, m.last_seen,
    m.last_delivery, m.deliveries, m.recipients, m.bounced + m.returned AS bounced,
    m.max_passes, m.loop_bounces
FROM _members k
JOIN _spans s USING (incident_key)
JOIN logical_messages m USING (message_uid)
"""

AGGREGATES = """
SELECT
    m.incident_key,
    min(m.first_seen) AS start,
    max(coalesce(m.last_delivery, m.last_seen)) AS "end",
    max(m.first_seen) AS last_message,
    count(*) AS messages,
    count(*) FILTER (WHERE m.is_reply) AS replies,
    count(DISTINCT m.sender) AS senders,
    count(DISTINCT m.sender) FILTER (WHERE m.is_reply) AS repliers,
    CAST(sum(m.deliveries) AS BIGINT) AS deliveries,
    max(m.recipients) AS list_size,
    CAST(sum(m.bounced) AS BIGINT) AS bounced,
    count(*) FILTER (WHERE m.subject IS NULL) AS no_subject,
    count(*) FILTER (WHERE m.is_auto) AS auto_messages,
    -- what the automatic messages are, from their subjects (see evidence.cause_of)
    count(*) FILTER (WHERE m.is_auto AND regexp_matches(lower(m.subject), 'recall')) AS recalls,
    count(*) FILTER (WHERE m.is_auto AND regexp_matches(lower(m.subject),
                     '^(not )?read:|gelesen:')) AS receipts,
    max(m.max_passes) AS max_passes,
    CAST(sum(m.loop_bounces) AS BIGINT) AS loop_bounces
FROM _mem m
GROUP BY m.incident_key
"""

# The list most of an incident's messages went to (the first by name on a tie), and the
# thread subject most of them carry (the earliest on a tie): edited subjects during a
# storm ("please remove me") do not name it.
MAIN_LIST_AND_SUBJECT = """
WITH lists AS (
    SELECT incident_key, list, count(*) AS n
    FROM _mem WHERE list IS NOT NULL GROUP BY incident_key, list
), subjects AS (
    SELECT incident_key, thread_subject, count(*) AS n, min(first_seen) AS first_ts
    FROM _mem WHERE coalesce(thread_subject, '') <> '' GROUP BY incident_key, thread_subject
), main_list AS (
    SELECT incident_key, arg_min(list, (-n, list)) AS list FROM lists GROUP BY incident_key
), main_subject AS (
    SELECT incident_key, arg_min(thread_subject, (-n, first_ts, thread_subject)) AS subject
    FROM subjects GROUP BY incident_key
)
SELECT k.incident_key, l.list, s.subject
FROM (SELECT DISTINCT incident_key FROM _mem) k
LEFT JOIN main_list l USING (incident_key)
LEFT JOIN main_subject s USING (incident_key)
"""

# The root of each span. For replies (ANSWERING_KINDS): the message most of them answer
# (the first id of References, else In-Reply-To, as the model's root_ref), whether or not
# that message is in the log; when the log names none, the earliest post of the main
# subject, a non-reply before any reply. For other kinds: the earliest message. Ties on
# time go to the smaller uid: never an unrelated post because it came in the same second.
ROOTS = """
WITH answered AS (
    SELECT incident_key, arg_min(root_ref, (-n, first_ts, root_ref)) AS message_id
    FROM (SELECT incident_key, root_ref, count(*) AS n, min(first_seen) AS first_ts
          FROM _mem
          WHERE root_ref IS NOT NULL AND answering
          GROUP BY incident_key, root_ref)
    GROUP BY incident_key
), first_post AS (
    SELECT m.incident_key,
        arg_min(m.message_uid, (
            CASE WHEN m.answering AND m.thread_subject IS NOT DISTINCT FROM s.subject
                 THEN 0 ELSE 1 END,
            CASE WHEN m.answering AND m.is_reply THEN 1 ELSE 0 END,
            m.first_seen, m.message_uid)) AS message_uid
    FROM _mem m
    LEFT JOIN _main s USING (incident_key)
    GROUP BY m.incident_key
), picked AS (
    SELECT f.incident_key, a.message_id AS answered_id,
        coalesce(r.message_uid, CASE WHEN a.message_id IS NULL THEN f.message_uid END)
            AS message_uid
    FROM first_post f
    LEFT JOIN answered a USING (incident_key)
    LEFT JOIN logical_messages r ON r.message_id = a.message_id
)
SELECT p.incident_key, p.message_uid,
    coalesce(m.message_id, p.answered_id) AS message_id,
    m.sender, m.subject, m.thread_subject, m.first_seen AS ts, m.deliveries
FROM picked p
LEFT JOIN logical_messages m ON m.message_uid = p.message_uid
"""

TIMELINE = """
WITH keyed AS (
    SELECT k.incident_key, m.message_key
    FROM _members k
    JOIN messages m USING (message_uid)
), per_minute AS (
    -- each member message's deliveries per minute, counted before the join: a message can
    -- be a member of several incidents; minutes from integer microseconds, as date_trunc
    -- on a TIMESTAMPTZ goes through the calendar for each of millions of rows
    SELECT d.message_key, epoch_us(d.ts) // 60000000 AS minute_no, count(*) AS deliveries
    FROM deliveries d
    WHERE d.message_key IN (SELECT message_key FROM keyed)
        AND NOT d.is_hop AND d.status NOT IN ('deferred', 'discarded')
    GROUP BY ALL
), dl AS (
    SELECT keyed.incident_key, to_timestamp(p.minute_no * 60) AS minute,
        CAST(sum(p.deliveries) AS BIGINT) AS deliveries
    FROM keyed
    JOIN per_minute p USING (message_key)
    GROUP BY ALL
), ms AS (
    SELECT incident_key, date_trunc('minute', first_seen) AS minute, count(*) AS messages
    FROM _mem
    GROUP BY ALL
)
SELECT incident_key, minute, coalesce(messages, 0) AS messages,
       coalesce(deliveries, 0) AS deliveries
FROM dl FULL JOIN ms USING (incident_key, minute)
ORDER BY incident_key, minute
"""

TOP_SENDERS = """
SELECT incident_key, sender, messages, deliveries, first_ts FROM (
    SELECT incident_key, sender, count(*) AS messages,
           CAST(sum(deliveries) AS BIGINT) AS deliveries, min(first_seen) AS first_ts,
           row_number() OVER (PARTITION BY incident_key
                              ORDER BY min(first_seen), sender) AS n
    FROM _mem
    GROUP BY incident_key, sender
) WHERE n <= 20
ORDER BY incident_key, first_ts, sender
"""

# the messages of the storms of answers, for the policy replay
STORM_MESSAGES = """
SELECT incident_key, message_uid, first_seen, sender, recipients, deliveries
FROM _mem
WHERE answering
ORDER BY incident_key, first_seen, message_uid
"""


@dataclass(frozen=True)
class Totals:
    """What one span's messages add up to."""

    row: dict[str, Any]  # the columns of AGGREGATES
    list: str | None
    subject: str | None  # the main thread subject
    root: Root
    root_thread_subject: str | None
    timeline: tuple[Minute, ...]
    top_senders: tuple[SenderCount, ...]


def totals(wh: Warehouse) -> dict[str, Totals]:
    """Span key -> its totals (over ``_spans`` and ``_members``, see members.py)."""
    wh.con.execute(MEMBER_ROWS)
    wh.con.execute(f"CREATE OR REPLACE TEMP TABLE _main AS {MAIN_LIST_AND_SUBJECT}")
    main = wh.query("SELECT * FROM _main")
    roots = {r["incident_key"]: r for r in wh.query(ROOTS).iter_rows(named=True)}
    mains = {r["incident_key"]: r for r in main.iter_rows(named=True)}
    timelines = _by_key(wh.query(TIMELINE).iter_rows(named=True))
    senders = _by_key(wh.query(TOP_SENDERS).iter_rows(named=True))
    out = {}
    for row in wh.query(AGGREGATES).iter_rows(named=True):
        key = row["incident_key"]
        r = roots[key]
        out[key] = Totals(
            row=row, list=mains[key]["list"], subject=mains[key]["subject"],
            root=Root(message_id=r["message_id"], sender=r["sender"], subject=r["subject"],
                      ts=r["ts"], deliveries=r["deliveries"], message_uid=r["message_uid"]),
            root_thread_subject=r["thread_subject"],
            timeline=tuple(Minute(p["minute"], p["messages"], p["deliveries"])
                           for p in timelines.get(key, [])),
            top_senders=tuple(SenderCount(s["sender"], s["messages"], s["deliveries"],
                                          s["first_ts"]) for s in senders.get(key, [])),
        )
    return out


def storm_messages(wh: Warehouse) -> dict[str, pl.DataFrame]:
    """Span key -> its messages in time order, for the spans of answers (the policy
    replay); as columns, since a storm can hold a million messages. After ``totals``."""
    frame = wh.query(STORM_MESSAGES)
    if frame.height == 0:
        return {}
    return {str(part["incident_key"][0]): part.drop("incident_key")
            for part in frame.partition_by("incident_key", maintain_order=True)}


def _by_key(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(row.pop("incident_key"), []).append(row)
    return out
