"""Score detection on simulated days: every kind x every format x subjects logged or not.

Used by ``tests/test_quality.py`` and ``bench/quality.py`` (which prints the README
table). A found incident matches an injected one when the kind agrees (see
``ACCEPTED_KINDS``), the list agrees and the start is within two minutes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from detector.simulate.day import Options, build_day, write_day

#: what may be reported for an injected kind. Without subjects, replies, recalls and
#: auto-replies look alike: an auto storm is then reported as a reply storm whose cause
#: says so.
ACCEPTED_KINDS = {
    ("auto_storm", False): {"auto_storm", "reply_storm"},
}
TOLERANCE = timedelta(minutes=2)
#: small enough to keep a matrix cell under a second, large enough for the default rules
QUICK = Options(list_size=2600, repliers=14, duration=timedelta(minutes=40), background=300)


@dataclass
class Cell:
    scenario: str
    fmt: str
    subjects: bool
    injected: int  # incidents injected
    found: int  # of which found (kind, list, start)
    extra: int  # incidents above info that match nothing injected
    notes: list[str]


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def matches(truth: dict, incident: dict, subjects: bool) -> bool:
    kinds = ACCEPTED_KINDS.get((truth["kind"], subjects), {truth["kind"]})
    return (incident["kind"] in kinds and incident["list"] == truth["list"]
            and abs(_time(incident["start"]) - _time(truth["start"])) <= TOLERANCE)


def score(scenario: str, fmt: str, subjects: bool, work: Path, *, seed: int = 5,
          options: Options = QUICK) -> Cell:
    """Simulate one day with ``scenario``, run mailstorm on it, compare with the truth."""
    from detector.pipeline import run

    site, messages, truth = build_day([scenario], seed=seed, options=options)
    log = write_day(work, fmt, site, messages, truth, seed=seed, subjects=subjects)
    run([str(log.parent)], work / "report", tz="UTC")
    found = json.loads((work / "report" / "incidents.json").read_text())["incidents"]
    hits = [t for t in truth if any(matches(t, i, subjects) for i in found)]
    extra = [i for i in found if i["severity"] != "info"
             and not any(matches(t, i, subjects) for t in truth)]
    notes = [f"missed {t['kind']} on {t['list']} at {t['start']}" for t in truth
             if t not in hits]
    notes += [f"extra {i['kind']} ({i['severity']}) on {i['list']} at {i['start']}"
              for i in extra]
    return Cell(scenario, fmt, subjects, len(truth), len(hits), len(extra), notes)
