"""Stage 2b: one cause repeating is one incident.

A per-message loop rule finds each looping message on its own, so a monitoring alert
that goes round a forwarding loop every few minutes for an hour would be twenty
incidents. Spans of one such rule whose messages share sender and target (the one
address they were written to, else their list) and follow each other within
``REPEAT_GAP`` become one span: its first message is its group and root (so its id
holds as the loop comes back on later nights), its peak the worst occurrence, and it
counts its occurrences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

from detector.incidents.islands import Span
from detector.rules.model import Rule
from detector.warehouse import Warehouse

#: longest quiet time between two occurrences of one cause
REPEAT_GAP = timedelta(hours=1)

#: what makes two looping messages the same loop
CAUSES = """
SELECT message_uid, sender, coalesce(to_address, list) AS target
FROM logical_messages
WHERE message_uid IN (SELECT unnest(?)) AND sender IS NOT NULL
    AND coalesce(to_address, list) IS NOT NULL
"""


def repeats_apply(rule: Rule) -> bool:
    """Rules whose incidents are merged when their cause repeats: per-message loops."""
    return rule.kind == "mail_loop" and rule.window_seconds is None


def merge_repeats(wh: Warehouse, rule: Rule, spans: Sequence[Span]) -> list[Span]:
    """The spans, those of one cause within ``REPEAT_GAP`` of each other merged."""
    if len(spans) < 2 or not repeats_apply(rule):
        return list(spans)
    causes = {uid: (sender, target) for uid, sender, target in
              wh.con.execute(CAUSES, [[s.group_key for s in spans]]).fetchall()}
    chains: dict[tuple[str, ...], list[list[Span]]] = {}
    for span in sorted(spans, key=lambda s: (s.span_start, s.group_key)):
        cause = causes.get(span.group_key) or (span.group_key,)  # unknown: its own
        runs = chains.setdefault(cause, [])
        if runs and span.span_start - runs[-1][-1].span_end <= REPEAT_GAP:
            runs[-1].append(span)
        else:
            runs.append([span])
    return [_merged(rule, chain) for runs in chains.values() for chain in runs]


def _merged(rule: Rule, chain: list[Span]) -> Span:
    if len(chain) == 1:
        return chain[0]
    measure = rule.severity.measure
    peak = max(chain, key=lambda s: (s.measures.get(measure, 0), -s.span_start.timestamp()))
    first = chain[0]
    return replace(first, span_end=max(s.span_end for s in chain),
                   measures=peak.measures, messages=tuple(s.group_key for s in chain),
                   occurrences=len(chain))
