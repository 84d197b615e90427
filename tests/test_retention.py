"""--keep: old parts go, their space comes back, and nothing is read twice.

The oracle is the sample logs themselves: the quiet day's file holds exactly the lines a
run keeping half a day after the storm day must drop.
"""

from __future__ import annotations

import gzip
import json
import shutil
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.errors import UsageError
from detector.retention import parse_keep

SAMPLES = Path(__file__).resolve().parents[1] / "sample_logs"
RUN = ("--year", "2016", "--tz", "UTC", "-q")


def _run(*args: str | Path) -> int:
    res = CliRunner().invoke(main, ["run", *map(str, args)])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    return res.exit_code


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.parquet"))


@pytest.mark.parametrize(("text", "span"), [("90d", timedelta(days=90)),
                                            ("12h", timedelta(hours=12)),
                                            ("8W", timedelta(weeks=8))])
def test_spans(text: str, span: timedelta) -> None:
    assert parse_keep(text) == span


@pytest.mark.parametrize("text", ["", "0d", "90", "d", "1y", "-3d", "1e9d"])
def test_bad_spans_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_keep(text)


def test_keep_drops_the_older_day_and_reads_nothing_twice(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    quiet = shutil.copy(SAMPLES / "mail.log.1.gz", logs / "mail.log.1.gz")
    quiet_lines = len(gzip.decompress(Path(quiet).read_bytes()).splitlines())
    out = tmp_path / "out"
    twin = tmp_path / "twin"  # the same nights, without --keep
    for folder in (out, twin):
        assert _run(quiet, "--out", folder, *RUN) == 0
    parquet = out / "mailstorm.parquet"
    quiet_events = _size(parquet / "events")

    storm = shutil.copy(SAMPLES / "mail.log", logs / "mail.log")
    storm_lines = len(Path(storm).read_bytes().splitlines())
    assert _run(storm, "--out", out, "--keep", "12h", *RUN) == 0
    assert _run(storm, "--out", twin, *RUN) == 0
    con = duckdb.connect(str(out / "mailstorm.duckdb"), read_only=True)
    try:
        # every line of the older day is gone, every line of the newer one is there
        assert con.execute("SELECT sum(rows) FROM parts").fetchone() == (storm_lines,)
        ledger = dict(con.execute("SELECT path, lines FROM files").fetchall())
        assert ledger == {str(quiet): quiet_lines, str(storm): storm_lines}
    finally:
        con.close()
    page = (out / "index.html").read_text()
    assert f"dropped {quiet_lines:,} older lines" in page
    # the space comes back: the quiet day's events parts, and model parts wholly older
    # (Parquet bytes vary a little from run to run with the batches: not compared exactly)
    assert _size(parquet / "events") < _size(twin / "mailstorm.parquet" / "events") \
        - quiet_events * 0.9
    assert _size(parquet) < _size(twin / "mailstorm.parquet") - quiet_events // 2
    storm_only = tmp_path / "fresh"
    assert _run(storm, "--out", storm_only, *RUN) == 0
    events = len(list((parquet / "events").glob("part-*.parquet")))
    assert events == len(list((storm_only / "mailstorm.parquet" / "events")
                              .glob("part-*.parquet")))

    # the storm is still found; both files again: nothing new (the dropped day is not
    # read again)
    storms = [i for i in json.loads((out / "incidents.json").read_text())["incidents"]
              if i["kind"] == "reply_storm"]
    assert len(storms) == 1
    assert _run(logs, "--out", out, "--keep", "12h", *RUN) == 4


def test_each_model_part_s_newest_time_is_recorded_as_it_is_written(tmp_path: Path) -> None:
    """Retention drops a model part by the newest time recorded when it was written, so
    that it never reads every part again: the record must be that part's newest row."""
    from detector.warehouse import MODEL_PARTS

    out = tmp_path / "out"
    assert _run(SAMPLES / "mail.log.1.gz", "--out", out, *RUN) == 0
    assert _run(SAMPLES / "mail.log", "--out", out, *RUN) == 0
    con = duckdb.connect(str(out / "mailstorm.duckdb"), read_only=True)
    try:
        recorded = dict(con.execute("SELECT part, last_ts FROM model_part_times").fetchall())
        files = {row[0].removeprefix("parquet_view:"): row[1].split(",") for row in
                 con.execute("SELECT key, value FROM meta WHERE key LIKE 'parquet_view:%'")
                 .fetchall()}
        assert set(files) == set(MODEL_PARTS)
        assert set(recorded) == {f for names in files.values() for f in names}
        for name, names in files.items():
            for part in names:  # read from the file itself, as retention used to
                (newest,) = con.execute(
                    f"SELECT max({MODEL_PARTS[name].time}) FROM read_parquet(?)",
                    [str(out / "mailstorm.parquet" / part)]).fetchone() or (None,)
                assert recorded[part] == newest, (name, part)
    finally:
        con.close()
