"""Rules -> incidents: the stages in order (see the package docstring)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import polars as pl

from detector.incidents import aggregates, members, store
from detector.incidents.evidence import cause_of, policy_estimates
from detector.incidents.execute import RuleRunner, Scope, prepare_scope, run_rules
from detector.incidents.fold import fold_related
from detector.incidents.islands import Span, find_spans
from detector.incidents.model import ANSWERING_KINDS, ConditionResult, Incident, stable_id
from detector.incidents.narrative import describe
from detector.incidents.repeats import merge_repeats
from detector.rules.model import Rule
from detector.warehouse import Warehouse


def severity_of(rule: Rule, value: float) -> str:
    """The first level (most severe first) whose threshold the value reaches, else info."""
    for level, _ in rule.severity.levels:
        if value >= rule.value(f"severity.{level}"):
            return level
    return "info"


def detect(wh: Warehouse, rules: Sequence[Rule], *, scope: Scope | None = None,
           recording: bool = False, now: datetime | None = None,
           runner: RuleRunner | None = None) -> list[Incident]:
    """Run the rules over the model tables and return the incidents, earliest first,
    each with its status relative to what the warehouse recorded (see store.py).

    Writes the ``incidents`` and ``incident_messages`` tables; recording the run in the
    warehouse's memory is ``store.record``'s job, for the caller to decide. ``runner``
    runs the rules on another engine (see ``execute.run_rule``).
    """
    now = now or datetime.now(UTC).replace(microsecond=0)
    source = prepare_scope(wh, scope)
    members.start(wh)
    spans: list[Span] = []
    for compiled, hits in run_rules(wh, rules, source, runner):
        if not hits:  # (most rules, most nights)
            continue
        rule = compiled.rule
        found = merge_repeats(wh, rule, find_spans(wh, compiled))
        members.add(wh, rule, found, source)
        spans += found
    # a quiet night's detection reads no model table past the rules
    totals = aggregates.totals(wh) if spans else {}
    storms = aggregates.storm_messages(wh) if spans else {}
    incidents = [_incident(span, totals[span.key], storms.get(span.key)) for span in spans]
    incidents = _distinct_ids(incidents)
    incidents = fold_related(wh, incidents)
    incidents.sort(key=lambda i: (i.start, i.id))  # independent of row order
    incidents = store.with_status(wh, incidents, recording=recording, now=now,
                                  window_of={r.name: r.window_seconds or 0 for r in rules})
    store.store_results(wh, incidents, since=scope.since if scope else None)
    return incidents


def _incident(span: Span, totals: aggregates.Totals,
              storm: pl.DataFrame | None) -> Incident:
    rule, agg, root = span.rule, totals.row, totals.root
    measures = span.measures
    deliveries = int(agg["deliveries"] or 0)
    value = deliveries if rule.severity.measure == "deliveries" \
        else measures[rule.severity.measure]
    peak = max(totals.timeline, key=lambda p: p.deliveries, default=None)
    # a storm is about the subject most of its messages carry; other incidents about
    # their root message's
    subject = (totals.subject if rule.kind in ANSWERING_KINDS
               else None) or totals.root_thread_subject
    incident = Incident(
        id=stable_id(rule.kind, rule.name, span.group_key, root.message_id, agg["start"]),
        kind=rule.kind,
        severity=severity_of(rule, value or 0),
        rule=rule.name,
        list=totals.list,
        subject=subject,
        root_message_id=root.message_id,
        start=agg["start"],
        end=agg["end"],
        peak=peak.minute if peak else agg["start"],
        messages=agg["messages"],
        deliveries=deliveries,
        senders=agg["senders"],
        group_key=span.group_key,
        last_message=agg["last_message"],
        replies=agg["replies"],
        repliers=agg["repliers"],
        list_size=agg["list_size"] or 0,
        # deliveries per submitted message: what each press of "send" cost
        amplification=round(deliveries / max(agg["messages"], 1), 1),
        bounced=int(agg["bounced"] or 0),
        cause=cause_of(rule.kind, agg, totals.list),
        root=root,
        top_senders=totals.top_senders,
        timeline=totals.timeline,
        rule_description=rule.description,
        rule_params=dict(rule.values),
        window=rule.window,
        measures=measures,
        conditions=tuple(
            ConditionResult(c.measure, c.op, c.param, rule.value(c.param),
                            measures[c.measure]) for c in rule.conditions),
        what_if=(policy_estimates(rule, storm, root.message_uid)
                 if rule.kind in ANSWERING_KINDS else ()),
        occurrences=span.occurrences,
        key=span.key,
    )
    headline, evidence = describe(incident)
    return replace(incident, headline=headline, evidence=evidence)



def _distinct_ids(incidents: list[Incident]) -> list[Incident]:
    """Two bursts of one group answering the same root, hours apart, would share an id:
    the later ones add their start to it (the earliest keeps the plain id, so an incident
    keeps its id when a later burst appears)."""
    seen: set[str] = set()
    out = []
    for inc in sorted(incidents, key=lambda i: (i.start, i.key)):
        if inc.id in seen:
            anchor = f"{inc.root_message_id} {inc.start.isoformat()}"
            inc = replace(inc, id=stable_id(inc.kind, inc.rule, inc.group_key, anchor,
                                            inc.start))
        seen.add(inc.id)
        out.append(inc)
    return out
