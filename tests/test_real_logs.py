"""The real continuous Postfix logs of the corpus: no false storm, and the FgForrest
bounce bursts of 2013-06-10 reported as what they are."""

from __future__ import annotations

import json
from pathlib import Path

from detector.pipeline import run


def _incidents(corpus: Path, tmp_path: Path, *names: str) -> list[dict]:
    run([str(corpus / "postfix" / n) for n in names], tmp_path / "out", tz="UTC")
    return json.loads((tmp_path / "out" / "incidents.json").read_text())["incidents"]


def test_lightmeter_has_no_incident(corpus_dir: Path, tmp_path: Path) -> None:
    assert _incidents(corpus_dir, tmp_path, "lightmeter.log", "lightmeter-cases.log") == []


def test_fgforrest_bounce_bursts_are_two_low_bounce_storms(corpus_dir: Path,
                                                           tmp_path: Path) -> None:
    found = _incidents(corpus_dir, tmp_path, "fgforrest-pda.log")
    assert not [i for i in found if i["kind"] in ("reply_storm", "auto_storm")]
    storms = sorted((i for i in found if i["kind"] == "bounce_storm"),
                    key=lambda i: i["start"])
    assert [(i["start"][:13], i["severity"]) for i in storms] == [
        ("2013-06-10T09", "low"), ("2013-06-10T15", "low")]
    # one bulk sender's per-recipient mailing; hundreds of bounces each, not thousands
    assert len({i["root"]["sender"] for i in storms}) == 1
    assert all(400 <= i["bounced"] < 2000 for i in storms)
    assert len(found) == 2
