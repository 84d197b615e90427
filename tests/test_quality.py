"""Detection quality on simulated days: every injected incident is found with the right
kind, list and start (within two minutes), and look-alikes are not reported above info."""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.simulate.day import BENIGN, INCIDENTS, writers
from detector.simulate.quality import score

FORMATS = sorted(writers())


@pytest.mark.parametrize("subjects", [True, False], ids=["subjects", "no-subjects"])
@pytest.mark.parametrize("kind", INCIDENTS)
def test_every_injected_incident_is_found_in_postfix_logs(kind: str, subjects: bool,
                                                          tmp_path: Path) -> None:
    cell = score(kind, "postfix", subjects, tmp_path)
    assert cell.injected == 1
    assert (cell.found, cell.extra) == (1, 0), cell.notes


@pytest.mark.parametrize("subjects", [True, False], ids=["subjects", "no-subjects"])
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
