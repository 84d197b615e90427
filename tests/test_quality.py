"""Detection quality on simulated days: every injected incident is found with the right
kind, list and start (within two minutes), storms exactly at a rule's thresholds are
found, and look-alikes (storms just short of a threshold among them) are not reported
above info. Then the recorded sweep behind the README's table: the table is its
rendering, and a sample of its runs reproduces.

All of this is agreement between the project's own simulator and its detector; it says
nothing of accuracy on real logs. Results are read from each run's incidents.json.
"""

from __future__ import annotations

import random
from dataclasses import astuple
from pathlib import Path

import pytest

from bench.quality_matrix import (
    README,
    RESULTS,
    cells,
    load,
    readme_table,
    render_table,
    score,
)
from detector.simulate.day import AT_THRESHOLD, BENIGN, INCIDENTS, SHAPES, writers
from detector.simulate.thresholds import SUBJECTS_ONLY, limits

FORMATS = sorted(writers())
SUBJECTS = pytest.mark.parametrize("subjects", [True, False], ids=["subjects", "no-subjects"])


@SUBJECTS
@pytest.mark.parametrize("kind", INCIDENTS)
def test_every_injected_incident_is_found_in_postfix_logs(kind: str, subjects: bool,
                                                          tmp_path: Path) -> None:
    cell = score(kind, "postfix", subjects, tmp_path)
    assert cell.injected == 1
    assert (cell.found, cell.extra) == (1, 0), cell.notes


@SUBJECTS
@pytest.mark.parametrize("scenario", SHAPES)
def test_real_shaped_incidents_are_found_in_postfix_logs(scenario: str, subjects: bool,
                                                        tmp_path: Path) -> None:
    cell = score(scenario, "postfix", subjects, tmp_path)
    assert cell.injected == 1
    assert (cell.found, cell.extra) == (1, 0), cell.notes


@SUBJECTS
@pytest.mark.parametrize("day", AT_THRESHOLD)
def test_storms_exactly_at_a_threshold_are_found(day: str, subjects: bool,
                                                 tmp_path: Path) -> None:
    if not subjects and day in SUBJECTS_ONLY:
        pytest.skip("automatic answers cannot be told from posts without subjects")
    cell = score(day, "postfix", subjects, tmp_path)
    assert cell.injected == 1
    assert (cell.found, cell.extra) == (1, 0), cell.notes


@SUBJECTS
@pytest.mark.parametrize("scenario", BENIGN)
def test_look_alikes_are_not_incidents(scenario: str, subjects: bool, tmp_path: Path) -> None:
    cell = score(scenario, "postfix", subjects, tmp_path)
    assert cell.injected == 0
    assert cell.extra == 0, cell.notes


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "postfix"])
@pytest.mark.parametrize("kind", INCIDENTS)
def test_other_formats_find_every_kind(fmt: str, kind: str, tmp_path: Path) -> None:
    cell = score(kind, fmt, True, tmp_path)
    assert (cell.found, cell.extra) == (1, 0), cell.notes


def _one_short() -> dict[str, tuple[str, str, int]]:
    """Day short of a threshold -> (incident kind, the rule param it misses, its value)."""
    x = limits()
    return {
        "reply_storm_one_replier_short": ("reply_storm", "min_senders", x.reply_senders),
        "reply_storm_list_one_short": ("reply_storm", "min_audience", x.reply_audience),
        "auto_storm_one_sender_short": ("auto_storm", "min_senders", x.auto_senders),
        "auto_storm_list_one_short": ("auto_storm", "min_audience", x.auto_audience),
        "bounce_storm_one_short": ("bounce_storm", "min_bounces", x.bounces),
    }


@pytest.mark.parametrize("day", sorted(_one_short()))
def test_a_day_one_short_is_a_storm_once_the_threshold_is_one_lower(day: str,
                                                                   tmp_path: Path) -> None:
    """The short days are short by one, not by far: one less in the rule finds them."""
    kind, param, value = _one_short()[day]
    cell = score(day, "postfix", True, tmp_path,
                 overrides={f"{kind}.{param}": str(value - 1)})
    assert cell.extra == 1 and cell.notes[0].startswith(f"extra {kind} "), cell.notes


@pytest.mark.parametrize(("day", "key", "value"), [
    ("reply_storm_at_threshold", "reply_storm.min_senders", lambda x: x.reply_senders),
    ("reply_storm_at_threshold", "reply_storm.min_audience", lambda x: x.reply_audience),
    ("bounce_storm_at_threshold", "bounce_storm.min_bounces", lambda x: x.bounces),
])
def test_a_day_at_the_threshold_is_none_once_the_threshold_is_one_higher(
        day: str, key: str, value, tmp_path: Path) -> None:
    cell = score(day, "postfix", True, tmp_path, overrides={key: str(value(limits()) + 1)})
    assert (cell.injected, cell.found) == (1, 0), cell.notes


# ---- the recorded sweep and the README's table ------------------------------------------
def test_readme_table_is_the_rendering_of_the_recorded_sweep() -> None:
    data, runs = load(RESULTS)
    assert readme_table(README.read_text(encoding="utf-8")) == render_table(data, runs)


def test_recorded_sweep_covers_the_whole_matrix() -> None:
    data, runs = load(RESULTS)
    assert data["formats"] == FORMATS
    want = {(s, f, subj, seed) for s, f, subj in cells(FORMATS)
            for seed in range(1, data["seeds"] + 1)}
    assert sorted((c.scenario, c.fmt, c.subjects, c.seed) for c in runs) == sorted(want)


def test_a_sample_of_the_recorded_runs_reproduces(tmp_path: Path) -> None:
    """Re-run some recorded days (one per format, chosen by a fixed seed) and compare
    every recorded number and note."""
    _, runs = load(RESULTS)
    rng = random.Random(10)
    sample = [rng.choice([c for c in runs if c.fmt == fmt]) for fmt in FORMATS]
    for i, rec in enumerate(sample):
        again = score(rec.scenario, rec.fmt, rec.subjects, tmp_path / str(i), seed=rec.seed)
        assert astuple(again) == astuple(rec), (rec, again)
