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


def test_the_whole_corpus_reads_in_one_run(corpus_dir: Path, tmp_path: Path) -> None:
    """Every file of ../shared/corpus in one run: none fails, each is named by the formats
    it held, every line is stored, and lines without a known shape stay under 0.1% of
    the files that hold whole log lines (not message parts or header-less fragments)."""
    import duckdb

    run([str(corpus_dir)], tmp_path / "out", tz="UTC")
    logs = sorted(p for p in corpus_dir.rglob("*") if p.is_file() and p.suffix != ".md")
    data = {p: p.read_bytes() for p in logs}
    # a file another one starts with (wazuh's test log is ossec's plus two lines) is that
    # file's beginning: its lines are read once, and the longer file is the one recorded
    grown = {p: q for p in logs for q in logs if q != p and data[q].startswith(data[p])}
    con = duckdb.connect(str(tmp_path / "out" / "mailstorm.duckdb"), read_only=True)
    named = dict(con.execute("SELECT path, format FROM files").fetchall())
    assert sorted(named) == [str(p) for p in logs if p not in grown]
    assert all(named.values()), [p for p, f in named.items() if not f]
    stored = dict(con.execute("SELECT source_file, count(DISTINCT line_no) FROM events "
                              "GROUP BY ALL").fetchall())
    for p in logs:  # the oracle: the files' own line counts
        if p in grown:
            assert stored[str(p)] + stored[str(grown[p])] == len(data[grown[p]].splitlines())
        elif p not in grown.values():
            assert stored[str(p)] == len(data[p].splitlines()), p.name
    whole = [str(p) for p in logs if not p.name.endswith((".msgonly.log", ".partial.log"))]
    lines, unparsed = con.execute(
        "SELECT count(DISTINCT (source_file, line_no)),"
        " count(DISTINCT (source_file, line_no)) FILTER (WHERE kind = 'unparsed')"
        " FROM events WHERE list_contains(?, source_file)", [whole]).fetchone()
    assert lines > 100_000
    assert unparsed < 0.001 * lines, unparsed
