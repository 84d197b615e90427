"""Stage 5: an incident whose root belongs to an incident of a higher kind is its evidence.

A storm that also fans out or bounces is one incident: the fan-out of a storm's root, or
the bounces of its replies, are reported inside the storm (as related ids and a line of
evidence), not apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from detector.incidents.model import FoldedIncident, Incident
from detector.warehouse import Warehouse

#: when two incidents share messages, the one whose kind comes first is the incident and
#: the other its evidence
FOLD_ORDER = ("reply_storm", "auto_storm", "bounce_storm", "mail_loop", "fanout")

# which spans hold each incident's root (small: one row per root and span holding it)
HOMES = """
SELECT r.key, m.incident_key AS home
FROM (SELECT unnest(?) AS key, unnest(?) AS root_uid) r
JOIN _members m ON m.message_uid = r.root_uid
"""


def _rank(kind: str) -> int:
    return FOLD_ORDER.index(kind) if kind in FOLD_ORDER else len(FOLD_ORDER)


def fold_related(wh: Warehouse, incidents: Sequence[Incident]) -> list[Incident]:
    """The incidents left once each is folded into the first-ranked incident holding its
    root (ties: the earliest, then by id); those kept carry what was folded in."""
    if len({i.kind for i in incidents}) < 2:
        return list(incidents)
    with_root = [i for i in incidents if i.root is not None and i.root.message_uid]
    homes: dict[str, set[str]] = {}
    for key, home in wh.con.execute(
            HOMES, [[i.key for i in with_root],
                    [i.root.message_uid for i in with_root if i.root]]).fetchall():
        homes.setdefault(key, set()).add(home)
    by_key = {i.key: i for i in incidents}
    order = sorted(incidents, key=lambda i: (_rank(i.kind), i.start, i.id))
    kept: set[str] = set()
    folded: dict[str, dict[str, list[Incident]]] = {}  # home key -> rule -> folded
    for inc in order:  # higher kinds first, so every possible home is decided before
        candidates = [by_key[h] for h in homes.get(inc.key, ())
                      if h in kept and _rank(by_key[h].kind) < _rank(inc.kind)]
        home = min(candidates, key=lambda h: (_rank(h.kind), h.start, h.id), default=None)
        if home is None:
            kept.add(inc.key)
        else:
            folded.setdefault(home.key, {}).setdefault(inc.rule, []).append(inc)
    out = []
    for inc in incidents:
        if inc.key not in kept:
            continue
        related = list(inc.related)
        evidence = list(inc.evidence)
        kept_in = list(inc.folded)
        for rule, found in sorted(folded.get(inc.key, {}).items()):
            related += [f.id for f in found]
            kept_in += [FoldedIncident(f.id, f.kind, f.rule, f.headline, f.root_message_id)
                        for f in found]
            evidence.append(
                f"Also found by the {rule} rule: {found[0].headline}" if len(found) == 1
                else f"{len(found)} of its messages were also found by the {rule} rule "
                     f"({found[0].kind}); reported here, not apart.")
        out.append(replace(inc, related=tuple(sorted(related)), evidence=tuple(evidence),
                           folded=tuple(sorted(kept_in, key=lambda f: f.id))))
    return out
