"""Stage 3: the messages of each span, into the temporary table ``_members``.

An incident's messages are its group's messages from one window before its first hit to
its last hit, so the message that started a storm is part of it; which messages count
is the rule selection's membership (replies bring in the post they answer, automatic
messages are left to the rules that look for them).
"""

from __future__ import annotations

from collections.abc import Sequence

from detector.incidents.islands import Span
from detector.incidents.model import ANSWERING_KINDS
from detector.rules.model import Rule
from detector.rules.vocabulary import SELECTIONS, group_sql
from detector.warehouse import Warehouse

MEMBERS = """
INSERT INTO _members
SELECT s.incident_key, m.message_uid
FROM _spans s
JOIN {source} m
  ON {group} = s.group_key
 AND m.first_seen >= s.span_start - to_seconds(s.window_seconds)
 AND m.first_seen <= s.span_end
WHERE s.rule = ? AND {nature}
"""


def start(wh: Warehouse) -> None:
    """Empty ``_spans`` and ``_members`` for a new detection."""
    wh.con.execute("""CREATE OR REPLACE TEMP TABLE _spans (
        incident_key VARCHAR, rule VARCHAR, group_key VARCHAR, span_start TIMESTAMPTZ,
        span_end TIMESTAMPTZ, window_seconds BIGINT, answering BOOLEAN)""")
    wh.con.execute("CREATE OR REPLACE TEMP TABLE _members "
                   "(incident_key VARCHAR, message_uid VARCHAR)")


def add(wh: Warehouse, rule: Rule, spans: Sequence[Span], source: str) -> None:
    """Record a rule's spans and their member messages (none: nothing to read)."""
    if not spans:
        return
    wh.con.executemany(  # one statement for all of a rule's spans, however many
        "INSERT INTO _spans VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(s.key, rule.name, s.group_key, s.span_start, s.span_end,
          rule.window_seconds or 0, rule.kind in ANSWERING_KINDS) for s in spans])
    # the group expression and membership condition come from the rule vocabulary, the
    # source is a table name chosen by execute.py: no text from a rule file or a log
    wh.con.execute(MEMBERS.format(source=source, group=group_sql(rule.group_by, "m"),
                                  nature=SELECTIONS[rule.select].members), [rule.name])
    # the other messages of a cause repeating (hits of the rule each: no condition here)
    repeated = [(s.key, uid) for s in spans for uid in s.messages if uid != s.group_key]
    if repeated:
        wh.con.executemany("INSERT INTO _members VALUES (?, ?)", repeated)

