"""An incident's details for its page, read from the warehouse after detection.

Everything a reviewer acts on that the ``Incident`` does not carry: every message (root
marked), the senders and subjects of the replies, its bounces and deferrals by reason,
the incidents it shares messages with, and the service impact (``impact``). All
set-based SQL over the warehouse's own tables, every value bound; Python only shapes the
few resulting rows. Long lists are bounded for the page and say how many rows they hold
in all; the CSVs beside the page (``exports``) hold every row.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from detector.dsn import dsn_meaning
from detector.incidents.impact import Impact, impacts
from detector.incidents.model import ANSWERING_KINDS, Incident
from detector.warehouse import Warehouse, database_name, table_exists
from detector.whatif import EXCHANGE_ONLINE

#: most messages, senders and subjects listed on a page (the CSVs hold them all)
PAGE_ROWS = 2000
#: words of a subject asking to be taken off the list (or everyone to stop), found in the
#: lower-cased decoded subject (vocabulary: one place)
REMOVE_ME = ("remove me", "unsubscribe", "take me off", "aus dem verteiler", "abmelden",
             "désinscri", "desinscri", "stop replying")
_REMOVE_ME_RE = "|".join(re.escape(w) for w in REMOVE_ME)
#: the window Exchange Online counts replies in (a whole number of minutes, ours)
_EXO_MINUTES = int(EXCHANGE_ONLINE.window.total_seconds() // 60)


@dataclass(frozen=True)
class MessageRow:
    """One message of the incident, as its table shows it."""

    anchor: str  # id of its table row, for links
    ts: datetime
    sender: str | None
    subject: str | None
    message_id: str | None
    recipients: int
    deliveries: int
    bounced: int
    deferred: int
    is_root: bool
    is_reply: bool
    is_auto: bool


@dataclass(frozen=True)
class SenderRow:
    sender: str | None
    messages: int
    deliveries: int
    first_ts: datetime


@dataclass(frozen=True)
class SubjectRow:
    subject: str | None
    messages: int
    first_ts: datetime
    asks_removal: bool


@dataclass(frozen=True)
class FailureRow:
    """Bounced or deferred delivery attempts of one status, code and recipient domain."""

    status: str
    dsn: str | None
    meaning: str
    domain: str | None
    attempts: int
    recipients: int
    first_ts: datetime
    last_ts: datetime


@dataclass(frozen=True)
class RelatedRow:
    """Another incident sharing messages with this one: reported on its own page, or
    folded into this one (its messages' rows are linked)."""

    id: str
    kind: str
    rule: str
    headline: str
    shared: int
    page: str | None  # its own page (relative to this one), when it was reported apart
    anchor: str | None  # the row of its root among this incident's messages


@dataclass(frozen=True)
class Details:
    """What an incident's page shows beyond the ``Incident`` itself."""

    storm_end: datetime  # its last message: the storm itself ends here
    messages: tuple[MessageRow, ...]
    messages_total: int
    senders: tuple[SenderRow, ...]  # of the replies (answering kinds), else every sender
    senders_total: int
    subjects: tuple[SubjectRow, ...]
    subjects_total: int
    failures: tuple[FailureRow, ...]
    bounced: int
    deferred: int
    impact: Impact | None
    related: tuple[RelatedRow, ...] = ()
    removal_requests: int = 0  # replies whose subject asks to be taken off the list
    dead_recipients: int = 0  # distinct recipients with a permanent failure
    max_submitted: int | None = None  # most addresses one message named before expansion
    root_submitted: int | None = None
    replies_naming_more: int = 0  # replies naming more addresses than the root
    replies_in_window: int | None = None  # most replies within Exchange Online's window
    min_reply_recipients: int | None = None  # the smallest audience of a reply


def model_tables(wh: Warehouse) -> dict[str, str]:
    """The warehouse's own model tables, past the temporary views a scoped detection puts
    in front of them (the day before lies outside a night's scope)."""
    db = database_name(wh.con)
    return {t: f"{db}.main.{t}" for t in ("logical_messages", "messages", "deliveries")}


MEMBERS = """
CREATE OR REPLACE TEMP TABLE _detail_msgs AS
SELECT im.incident_id, im.is_root, l.message_uid, l.message_id, l.sender, l.subject,
    l.first_seen, coalesce(l.recipients, 0) AS recipients,
    coalesce(l.deliveries, 0) AS deliveries, coalesce(l.bounced, 0) AS bounced,
    coalesce(l.is_reply, false) AS is_reply, coalesce(l.is_auto, false) AS is_auto,
    l.submitted,
    row_number() OVER (PARTITION BY im.incident_id ORDER BY l.first_seen, l.message_uid) AS n
FROM incident_messages im
JOIN {logical_messages} l USING (message_uid)
WHERE im.incident_id IN (SELECT unnest(?))
"""

KEYS = """
CREATE OR REPLACE TEMP TABLE _detail_keys AS
SELECT DISTINCT d.incident_id, d.message_uid, m.message_key
FROM _detail_msgs d
JOIN {messages} m USING (message_uid)
"""

# each message's deferred attempts (its deliveries and bounces are in logical_messages)
MESSAGE_ROWS = """
WITH deferred AS (
    SELECT k.incident_id, k.message_uid, count(*) AS deferred
    FROM _detail_keys k
    JOIN {deliveries} dl USING (message_key)
    WHERE NOT dl.is_hop AND dl.status = 'deferred'
    GROUP BY ALL
)
SELECT d.incident_id, d.n, d.first_seen, d.sender, d.subject, d.message_id, d.recipients,
    d.deliveries, d.bounced, coalesce(x.deferred, 0) AS deferred, d.is_root, d.is_reply,
    d.is_auto
FROM _detail_msgs d
LEFT JOIN deferred x USING (incident_id, message_uid)
WHERE d.n <= ?
ORDER BY d.incident_id, d.n
"""

# the senders of the replies: the root's message is not a reply, whoever sent it
SENDERS = """
SELECT incident_id, sender, messages, deliveries, first_ts, total FROM (
    SELECT incident_id, sender, count(*) AS messages,
        CAST(sum(deliveries) AS BIGINT) AS deliveries, min(first_seen) AS first_ts,
        row_number() OVER (PARTITION BY incident_id ORDER BY min(first_seen), sender) AS n,
        count(*) OVER (PARTITION BY incident_id) AS total
    FROM _detail_msgs
    WHERE NOT (is_root AND incident_id IN (SELECT unnest(?)))
    GROUP BY incident_id, sender
) WHERE n <= ?
ORDER BY incident_id, n
"""

SUBJECTS = """
SELECT incident_id, subject, messages, first_ts, asks_removal, total FROM (
    SELECT incident_id, subject, count(*) AS messages, min(first_seen) AS first_ts,
        regexp_matches(lower(coalesce(subject, '')), ?) AS asks_removal,
        row_number() OVER (PARTITION BY incident_id ORDER BY min(first_seen), subject) AS n,
        count(*) OVER (PARTITION BY incident_id) AS total
    FROM _detail_msgs
    GROUP BY incident_id, subject
) WHERE n <= ?
ORDER BY incident_id, n
"""

# bounces and deferrals by status, code and the recipient's domain
FAILURES = """
SELECT k.incident_id, dl.status, dl.dsn,
    lower(nullif(split_part(dl.recipient, '@', 2), '')) AS domain,
    count(*) AS attempts, count(DISTINCT dl.recipient) AS recipients,
    min(dl.ts) AS first_ts, max(dl.ts) AS last_ts
FROM _detail_keys k
JOIN {deliveries} dl USING (message_key)
WHERE NOT dl.is_hop AND dl.status NOT IN ('sent')
GROUP BY ALL
ORDER BY k.incident_id, attempts DESC, dl.status, dl.dsn, domain
"""

# what the replies named before any list expanded them, and the recipients that failed
# for good: the evidence the next steps are drawn from
EVIDENCE = """
WITH dead AS (
    SELECT k.incident_id, count(DISTINCT dl.recipient) AS dead
    FROM _detail_keys k
    JOIN {deliveries} dl USING (message_key)
    WHERE NOT dl.is_hop AND dl.status = 'bounced'
    GROUP BY ALL
), windowed AS (
    SELECT incident_id, max(n) AS replies_in_window FROM (
        SELECT incident_id, count(*) OVER (
            PARTITION BY incident_id ORDER BY first_seen
            RANGE BETWEEN CURRENT ROW AND INTERVAL {window_minutes} MINUTES FOLLOWING) AS n
        FROM _detail_msgs WHERE NOT is_root)
    GROUP BY incident_id
)
SELECT d.incident_id,
    max(d.submitted) AS max_submitted,
    max(d.submitted) FILTER (WHERE d.is_root) AS root_submitted,
    count(*) FILTER (WHERE NOT d.is_root AND d.submitted > r.root_submitted)
        AS replies_naming_more,
    count(*) FILTER (WHERE NOT d.is_root
                     AND regexp_matches(lower(coalesce(d.subject, '')), ?)) AS removal_requests,
    min(d.recipients) FILTER (WHERE NOT d.is_root) AS min_reply_recipients,
    any_value(coalesce(x.dead, 0)) AS dead,
    any_value(w.replies_in_window) AS replies_in_window
FROM _detail_msgs d
LEFT JOIN (SELECT incident_id, max(submitted) AS root_submitted FROM _detail_msgs
           WHERE is_root GROUP BY incident_id) r USING (incident_id)
LEFT JOIN dead x USING (incident_id)
LEFT JOIN windowed w USING (incident_id)
GROUP BY d.incident_id
"""

# the reported incidents sharing messages with each (folded ones are in Incident.related)
SHARED = """
SELECT a.incident_id, b.incident_id AS other, count(*) AS shared
FROM incident_messages a
JOIN incident_messages b ON b.message_uid = a.message_uid AND b.incident_id <> a.incident_id
WHERE a.incident_id IN (SELECT unnest(?)) AND b.incident_id IN (SELECT unnest(?))
GROUP BY ALL
ORDER BY a.incident_id, shared DESC, other
"""


def incident_details(wh: Warehouse, incidents: Sequence[Incident]) -> dict[str, Details]:
    """Incident id -> its details, for incidents the last detection stored (its
    ``incident_messages``); none when the warehouse holds no such table."""
    if not incidents or not table_exists(wh.con, "incident_messages"):
        return {}
    names = model_tables(wh)
    ids = [i.id for i in incidents]
    answering = [i.id for i in incidents if i.kind in ANSWERING_KINDS]
    con = wh.con
    con.execute(MEMBERS.format(**names), [ids])
    con.execute(KEYS.format(**names))
    messages = _grouped(wh.query(MESSAGE_ROWS.format(**names), [PAGE_ROWS]))
    senders = _grouped(wh.query(SENDERS, [answering or [""], PAGE_ROWS]))
    subjects = _grouped(wh.query(SUBJECTS, [_REMOVE_ME_RE, PAGE_ROWS]))
    failures = _grouped(wh.query(FAILURES.format(**names)))
    evidence = {r["incident_id"]: r for r in
                wh.query(EVIDENCE.format(window_minutes=_EXO_MINUTES, **names),
                         [_REMOVE_ME_RE]).iter_rows(named=True)}
    totals = {r[0]: r[1] for r in con.execute(
        "SELECT incident_id, count(*) FROM _detail_msgs GROUP BY ALL").fetchall()}
    impact_of = impacts(wh, incidents, names)
    shared = _grouped(wh.query(SHARED, [ids, ids]))
    out = {}
    for inc in incidents:
        rows = messages.get(inc.id, [])
        msg_rows = tuple(MessageRow(
            anchor=f"m{r['n']}", ts=r["first_seen"], sender=r["sender"], subject=r["subject"],
            message_id=r["message_id"], recipients=int(r["recipients"]),
            deliveries=int(r["deliveries"]), bounced=int(r["bounced"]),
            deferred=int(r["deferred"]), is_root=bool(r["is_root"]),
            is_reply=bool(r["is_reply"]), is_auto=bool(r["is_auto"])) for r in rows)
        fails = failures.get(inc.id, [])
        ev = evidence.get(inc.id, {})
        out[inc.id] = Details(
            storm_end=inc.last_message or inc.end,
            messages=msg_rows, messages_total=totals.get(inc.id, 0),
            senders=tuple(SenderRow(r["sender"], int(r["messages"]), int(r["deliveries"] or 0),
                                    r["first_ts"]) for r in senders.get(inc.id, [])),
            senders_total=_total(senders.get(inc.id)),
            subjects=tuple(SubjectRow(r["subject"], int(r["messages"]), r["first_ts"],
                                      bool(r["asks_removal"])) for r in subjects.get(inc.id, [])),
            subjects_total=_total(subjects.get(inc.id)),
            failures=tuple(FailureRow(r["status"], r["dsn"], dsn_meaning(r["dsn"]), r["domain"],
                                      int(r["attempts"]), int(r["recipients"]), r["first_ts"],
                                      r["last_ts"]) for r in fails),
            bounced=sum(int(r["attempts"]) for r in fails if r["status"] == "bounced"),
            deferred=sum(int(r["attempts"]) for r in fails if r["status"] == "deferred"),
            impact=impact_of.get(inc.id),
            related=_related(inc, msg_rows, shared.get(inc.id, []),
                             {i.id: i for i in incidents}),
            removal_requests=int(ev.get("removal_requests") or 0),
            dead_recipients=int(ev.get("dead") or 0),
            max_submitted=ev.get("max_submitted"),
            root_submitted=ev.get("root_submitted"),
            replies_naming_more=int(ev.get("replies_naming_more") or 0),
            replies_in_window=ev.get("replies_in_window"),
            min_reply_recipients=ev.get("min_reply_recipients"),
        )
    return out


def _related(inc: Incident, rows: tuple[MessageRow, ...], shared: list[dict[str, Any]],
             reported: dict[str, Incident]) -> tuple[RelatedRow, ...]:
    """Reported incidents sharing messages (linked to their pages), then the ones folded
    into this one (linked to the row of their root message)."""
    out = [RelatedRow(r["other"], reported[r["other"]].kind, reported[r["other"]].rule,
                      reported[r["other"]].headline, int(r["shared"]), f"{r['other']}.html",
                      None)
           for r in shared if r["other"] in reported]
    anchor_of = {r.message_id: r.anchor for r in rows if r.message_id}
    out += [RelatedRow(f.id, f.kind, f.rule, f.headline, 1, None,
                       anchor_of.get(f.root_message_id or ""))
            for f in inc.folded]
    return tuple(out)


def _grouped(frame: Any) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in frame.iter_rows(named=True):
        out.setdefault(row.pop("incident_id"), []).append(row)
    return out


def _total(rows: list[dict[str, Any]] | None) -> int:
    return int(rows[0]["total"]) if rows else 0
