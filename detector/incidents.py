"""Rule hits -> incidents with stable ids, severity and evidence.

Hits of one rule and group whose windows overlap are one incident (gaps and islands in
SQL). An incident's messages are its group's messages from one window before its first
hit to its last hit, so the root message that started a storm is part of it. Everything
is set-based SQL over the warehouse; Python only shapes the few resulting rows.
"""

from __future__ import annotations

import hashlib

import polars as pl

from detector.narrative import describe
from detector.rules.compiler import compile_rule, group_sql
from detector.rules.model import Rule
from detector.times import iso_z
from detector.warehouse import Warehouse
from detector.whatif import EXCHANGE_ONLINE, Reply, replay, rule_policy

ISLANDS = """
WITH ordered AS (
    SELECT *,
        CASE WHEN lag(anchor_ts) OVER (PARTITION BY group_key ORDER BY anchor_ts, anchor_uid)
                  >= window_start THEN 0 ELSE 1 END AS new_island
    FROM _hits
), numbered AS (
    SELECT *,
        sum(new_island) OVER (PARTITION BY group_key ORDER BY anchor_ts, anchor_uid
                              ROWS UNBOUNDED PRECEDING) AS island
    FROM ordered
), ranked AS (
    SELECT *,
        row_number() OVER (PARTITION BY group_key, island
                           ORDER BY {peak} DESC, anchor_ts, anchor_uid) AS rank_in_island,
        min(window_start) OVER (PARTITION BY group_key, island) AS span_start,
        max(anchor_ts) OVER (PARTITION BY group_key, island) AS span_end,
        count(*) OVER (PARTITION BY group_key, island) AS hits
    FROM numbered
)
SELECT * EXCLUDE (new_island, rank_in_island) FROM ranked WHERE rank_in_island = 1
"""

# An incident's messages: its group's messages of the same nature as the rule's (replies
# bring in the message they answer; automatic ones are left to the rules that look for them)
MEMBERS = """
INSERT INTO _members
SELECT s.incident_key, m.message_uid
FROM _spans s
JOIN logical_messages m
  ON {group} = s.group_key
 AND m.first_seen >= s.span_start - to_seconds(s.window_seconds)
 AND m.first_seen <= s.span_end
WHERE s.rule = ? AND {nature}
"""
MEMBER_SQL = {
    "messages": "NOT m.is_auto",
    "replies": "NOT m.is_auto",
    "auto_replies": "m.sender <> ''",  # the answers and the post they answer
    "bounces": "m.sender = ''",
    "bounced": "m.bounced > 0 AND NOT m.is_auto",
    "one_to_one": "m.to_address IS NOT NULL AND m.sender <> ''",
}

AGGREGATES = """
SELECT
    k.incident_key,
    min(m.first_seen) AS start,
    max(coalesce(m.last_delivery, m.last_seen)) AS "end",
    max(m.first_seen) AS last_message,
    count(*) AS messages,
    count(*) FILTER (WHERE m.is_reply) AS replies,
    count(DISTINCT m.sender) AS senders,
    count(DISTINCT m.sender) FILTER (WHERE m.is_reply) AS repliers,
    CAST(sum(m.deliveries) AS BIGINT) AS deliveries,
    CAST(sum(m.submitted) AS BIGINT) AS submitted,
    max(m.recipients) AS list_size,
    mode(m.list) AS list,
    arg_min(m.message_uid, m.first_seen) AS root_uid,
    arg_min(m.message_id, m.first_seen) AS root_message_id,
    arg_min(m.sender, m.first_seen) AS root_sender,
    arg_min(m.subject, m.first_seen) AS root_subject,
    arg_min(m.thread_subject, m.first_seen) AS subject,
    arg_min(m.deliveries, m.first_seen) AS root_deliveries,
    CAST(sum(m.bounced) AS BIGINT) AS bounced,
    count(*) FILTER (WHERE m.subject IS NULL) AS no_subject,
    count(*) FILTER (WHERE m.is_auto) AS auto_messages,
    -- what the automatic messages are, from their subjects (see cause_of)
    count(*) FILTER (WHERE m.is_auto AND regexp_matches(lower(m.subject), 'recall')) AS recalls,
    count(*) FILTER (WHERE m.is_auto AND regexp_matches(lower(m.subject),
                     '^(not )?read:|gelesen:')) AS receipts,
    max(m.max_passes) AS max_passes,
    CAST(sum(m.loop_bounces) AS BIGINT) AS loop_bounces
FROM _members k
JOIN logical_messages m USING (message_uid)
GROUP BY k.incident_key
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
        AND NOT d.is_hop AND d.status <> 'deferred'
    GROUP BY ALL
), dl AS (
    SELECT keyed.incident_key, to_timestamp(p.minute_no * 60) AS minute,
        CAST(sum(p.deliveries) AS BIGINT) AS deliveries
    FROM keyed
    JOIN per_minute p USING (message_key)
    GROUP BY ALL
), ms AS (
    SELECT k.incident_key, date_trunc('minute', m.first_seen) AS minute, count(*) AS messages
    FROM _members k
    JOIN logical_messages m USING (message_uid)
    GROUP BY ALL
)
SELECT incident_key, minute, coalesce(messages, 0) AS messages,
       coalesce(deliveries, 0) AS deliveries
FROM dl FULL JOIN ms USING (incident_key, minute)
ORDER BY incident_key, minute
"""

TOP_SENDERS = """
SELECT incident_key, sender, messages, deliveries, first_ts FROM (
    SELECT k.incident_key, m.sender, count(*) AS messages,
           CAST(sum(m.deliveries) AS BIGINT) AS deliveries, min(m.first_seen) AS first_ts,
           row_number() OVER (PARTITION BY k.incident_key
                              ORDER BY min(m.first_seen), m.sender) AS n
    FROM _members k
    JOIN logical_messages m USING (message_uid)
    GROUP BY k.incident_key, m.sender
) WHERE n <= 20
ORDER BY incident_key, first_ts, sender
"""


def cause_of(kind: str, agg: dict) -> str:
    """What set the incident off, in words, from its messages' subjects and counts."""
    messages = max(agg["messages"], 1)
    if agg["no_subject"] >= messages / 2 and kind in ("reply_storm", "auto_storm"):
        return ("unknown: the log has no subjects, so replies, recalls and auto-replies "
                "look alike; many senders posted to one large list")
    if kind == "auto_storm":
        if agg["recalls"] >= agg["auto_messages"] / 2:
            return "message recalls answered to the whole list"
        if agg["receipts"] >= agg["auto_messages"] / 2:
            return "read receipts sent to the whole list"
        return "out-of-office and other automatic replies sent to the whole list"
    if kind == "reply_storm":
        return "reply-all to a large list"
    if kind == "bounce_storm":
        return "deliveries to dead addresses" + (" on the list" if agg["list"] else "")
    if kind == "mail_loop":
        if (agg["max_passes"] or 1) > 1 or agg["loop_bounces"]:
            return "a message forwarded round in a loop"
        return "two addresses answering each other automatically"
    return "one message expanded far beyond its sender's usual audience"


# the messages of the storms, for the what-if replay
STORM_MESSAGES = """
SELECT k.incident_key, m.message_uid, m.first_seen, m.sender, m.recipients, m.deliveries
FROM _members k
JOIN logical_messages m USING (message_uid)
ORDER BY k.incident_key, m.first_seen
"""
WHAT_IF_KINDS = ("reply_storm", "auto_storm")


def what_if(rule: Rule, rows: list[dict], root_uid: str) -> list[dict]:
    """Exchange Online's policy and the rule's own thresholds replayed on a storm."""
    messages = [Reply(r["first_seen"], r["sender"], r["recipients"], r["deliveries"],
                      r["message_uid"] == root_uid) for r in rows]
    policies = [EXCHANGE_ONLINE]
    if {"min_senders", "min_audience"} <= set(rule.values) and rule.window_seconds:
        policies.append(rule_policy(rule.name, int(rule.value("min_senders")),
                                    int(rule.value("min_audience")), rule.window_seconds))
    out = []
    for policy in policies:
        result = replay(policy, messages)
        out.append(dict(result, fires_at=iso_z(result["fires_at"])))
    return out


def _number(value: object) -> int | float:
    """DuckDB sums come back as Decimal; JSON and templates want int or float."""
    number = float(value or 0)  # type: ignore[arg-type]
    return int(number) if number.is_integer() else round(number, 2)


def severity_of(rule: Rule, value: float) -> str:
    """The first level (most severe first) whose threshold the value reaches, else info."""
    for level, _ in rule.severity.levels:
        if value >= rule.value(f"severity.{level}"):
            return level
    return "info"


def stable_id(kind: str, rule: str, group_key: str, root: str | None, start: str) -> str:
    """Same incident, same id on a re-run: it hangs on the group and the root message."""
    digest = hashlib.sha1(f"{rule}|{group_key}|{root or start}".encode()).hexdigest()
    return f"{kind}-{digest[:12]}"


def _collect_spans(wh: Warehouse, rules: list[Rule]) -> list[dict]:
    con = wh.con
    con.execute("""CREATE OR REPLACE TEMP TABLE _spans (
        incident_key VARCHAR, rule VARCHAR, group_key VARCHAR, span_start TIMESTAMPTZ,
        span_end TIMESTAMPTZ, window_seconds BIGINT)""")
    con.execute("CREATE OR REPLACE TEMP TABLE _members (incident_key VARCHAR, message_uid VARCHAR)")
    spans: list[dict] = []
    for rule in rules:
        compiled = compile_rule(rule)
        con.execute(f"CREATE OR REPLACE TEMP TABLE _hits AS {compiled.sql}", compiled.params)
        peak = rule.severity.measure  # a name from the compiler's measure table
        islands = wh.query(ISLANDS.format(peak=peak))
        rows = []
        for row in islands.iter_rows(named=True):
            key = f"{rule.name}|{row['group_key']}|{row['island']}"
            spans.append({"key": key, "rule": rule, "hit": row, "measures": compiled.measures})
            rows.append((key, rule.name, row["group_key"], row["span_start"], row["span_end"],
                         rule.window_seconds or 0))
        if rows:  # one statement for all of a rule's incidents, however many
            con.executemany("INSERT INTO _spans VALUES (?, ?, ?, ?, ?, ?)", rows)
        con.execute(MEMBERS.format(group=group_sql(rule.group_by, "m"),
                                   nature=MEMBER_SQL[rule.select]), [rule.name])
    return spans


def _by_key(frame: pl.DataFrame) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in frame.iter_rows(named=True):
        out.setdefault(row.pop("incident_key"), []).append(row)
    return out


def detect(wh: Warehouse, rules: list[Rule]) -> list[dict]:
    """Run the rules over the model tables; store and return the incidents."""
    spans = _collect_spans(wh, rules)
    aggregates = {r["incident_key"]: r for r in wh.query(AGGREGATES).iter_rows(named=True)}
    timelines = _by_key(wh.query(TIMELINE))
    senders = _by_key(wh.query(TOP_SENDERS))
    storm_rows = _by_key(wh.query(STORM_MESSAGES)) if any(
        s["rule"].kind in WHAT_IF_KINDS for s in spans) else {}
    incidents = []
    for span in spans:
        agg = aggregates[span["key"]]
        rule: Rule = span["rule"]
        timeline = [{"minute": iso_z(p["minute"]), "messages": p["messages"],
                     "deliveries": p["deliveries"]} for p in timelines.get(span["key"], [])]
        peak = max(timeline, key=lambda p: p["deliveries"], default=None)
        measures = {m: _number(span["hit"][m]) for m in span["measures"]}
        value = agg["deliveries"] if rule.severity.measure == "deliveries" \
            else measures[rule.severity.measure]
        start = iso_z(agg["start"])
        incident = {
            "id": stable_id(rule.kind, rule.name, span["hit"]["group_key"],
                            agg["root_message_id"], start or ""),
            "kind": rule.kind,
            "severity": severity_of(rule, value or 0),
            "rule": rule.name,
            "list": agg["list"],
            "subject": agg["subject"],
            "root_message_id": agg["root_message_id"],
            "start": start,
            "end": iso_z(agg["end"]),
            "last_message": iso_z(agg["last_message"]),
            "peak": peak["minute"] if peak else start,
            "messages": agg["messages"],
            "deliveries": agg["deliveries"] or 0,
            "senders": agg["senders"],
            "replies": agg["replies"],
            "repliers": agg["repliers"],
            "list_size": agg["list_size"],
            # deliveries per submitted message: what each press of "send" cost
            "amplification": round((agg["deliveries"] or 0) / max(agg["messages"], 1), 1),
            "cause": cause_of(rule.kind, agg),
            "bounced": agg["bounced"] or 0,
            "root": {"message_id": agg["root_message_id"], "sender": agg["root_sender"],
                     "subject": agg["root_subject"], "ts": start,
                     "deliveries": agg["root_deliveries"]},
            "root_uid": agg["root_uid"],
            "top_senders": [dict(s, first_ts=iso_z(s["first_ts"]))
                            for s in senders.get(span["key"], [])],
            "timeline": timeline,
            "rule_description": rule.description,
            "rule_params": dict(rule.values),
            "window": rule.window,
            "measures": measures,
            "conditions": [{"measure": c.measure, "op": c.op, "param": c.param,
                            "threshold": rule.value(c.param), "value": measures[c.measure]}
                           for c in rule.conditions],
            "_key": span["key"],
        }
        if rule.kind in WHAT_IF_KINDS:
            incident["what_if"] = what_if(rule, storm_rows.get(span["key"], []),
                                          agg["root_uid"])
        incident.update(describe(incident))
        incidents.append(incident)
    incidents = _fold_related(wh, incidents)
    incidents.sort(key=lambda i: (i["start"] or "", i["id"]))  # independent of row order
    _store(wh, incidents)
    return incidents


#: when two incidents share messages, the one whose kind comes first is the incident and
#: the other its evidence: a storm that also fans out or bounces is one incident
FOLD_ORDER = ("reply_storm", "auto_storm", "bounce_storm", "mail_loop", "fanout")


def _fold_related(wh: Warehouse, incidents: list[dict]) -> list[dict]:
    """Fold an incident whose root message belongs to an incident of a higher kind (a
    fan-out of a storm's root, the bounces of a storm's replies) into that incident."""
    if len({i["kind"] for i in incidents}) < 2:
        return incidents
    members = _by_key(wh.query("SELECT incident_key, message_uid FROM _members"))
    uids = {i["_key"]: {m["message_uid"] for m in members.get(i["_key"], [])}
            for i in incidents}
    rank = {kind: n for n, kind in enumerate(FOLD_ORDER)}
    ordered = sorted(incidents, key=lambda i: rank.get(i["kind"], len(rank)))
    kept: list[dict] = []
    folded: dict[str, dict[str, list[dict]]] = {}  # home key -> rule -> folded incidents
    for inc in ordered:
        home = next((k for k in kept if rank.get(k["kind"], len(rank)) < rank.get(
            inc["kind"], len(rank)) and inc["root_uid"] in uids[k["_key"]]), None)
        if home is None:
            kept.append(inc)
        else:
            folded.setdefault(home["_key"], {}).setdefault(inc["rule"], []).append(inc)
    for home in kept:
        for rule, found in folded.get(home["_key"], {}).items():
            home["related"] = sorted([*home.get("related", []), *(i["id"] for i in found)])
            home["evidence"].append(
                f"Also found by the {rule} rule: {found[0]['headline']}" if len(found) == 1
                else f"{len(found)} of its messages were also found by the {rule} rule "
                     f"({found[0]['kind']}); reported here, not apart.")
    kept_keys = {k["_key"] for k in kept}
    return [i for i in incidents if i["_key"] in kept_keys]


def _store(wh: Warehouse, incidents: list[dict]) -> None:
    con = wh.con
    con.execute("""CREATE OR REPLACE TABLE incidents (
        id VARCHAR PRIMARY KEY, kind VARCHAR, severity VARCHAR, rule VARCHAR, list VARCHAR,
        subject VARCHAR, root_message_id VARCHAR, start TIMESTAMPTZ, "end" TIMESTAMPTZ,
        peak TIMESTAMPTZ, messages BIGINT, deliveries BIGINT, senders BIGINT,
        headline VARCHAR)""")
    con.execute("""CREATE OR REPLACE TABLE incident_messages (
        incident_id VARCHAR, message_uid VARCHAR, is_root BOOLEAN)""")
    for inc in incidents:
        con.execute(
            "INSERT INTO incidents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [inc["id"], inc["kind"], inc["severity"], inc["rule"], inc["list"], inc["subject"],
             inc["root_message_id"], inc["start"], inc["end"], inc["peak"], inc["messages"],
             inc["deliveries"], inc["senders"], inc["headline"]])
        con.execute(
            """INSERT INTO incident_messages
               SELECT ?, message_uid, message_uid = ? FROM _members WHERE incident_key = ?""",
            [inc["id"], inc["root_uid"], inc["_key"]])
    for inc in incidents:
        inc.pop("_key", None)
        inc.pop("root_uid", None)
