"""Rule hits -> incidents with stable ids, severity, evidence and a memory across runs.

The stages, each in its own module, in the order ``detect`` runs them:

1. ``execute``: each compiled rule over the logical messages (or a time-scoped copy);
2. ``islands``: hits of one rule and group whose windows overlap become one span;
   ``repeats``: spans of a per-message loop rule repeating one cause become one;
3. ``members``: each span's messages;
4. ``aggregates``: what they add up to, the root, the timeline, the top senders;
5. ``fold``: an incident whose root belongs to a higher-ranked incident is folded in;
6. ``store``: status against what earlier runs reported, the result tables, the record.

``model`` holds the ``Incident`` type; ``evidence`` and ``narrative`` its words.
After detection, for the report: ``details`` (its messages, senders, subjects, failures,
related incidents) and ``impact`` (delivery delays) read from the warehouse, ``advice``
(what to do next) and ``exports`` (its CSVs).
Everything over messages is set-based SQL; Python only shapes the few resulting rows.
"""

from detector.incidents.detect import detect
from detector.incidents.execute import Scope
from detector.incidents.model import CONTRACT_FIELDS, STATUSES, Incident
from detector.incidents.store import (
    SEVERITIES,
    RunInfo,
    alerts,
    look_again_from,
    record,
    severity_rank,
)

__all__ = ["CONTRACT_FIELDS", "SEVERITIES", "STATUSES", "Incident", "RunInfo", "Scope",
           "alerts", "detect", "look_again_from", "record", "severity_rank"]
