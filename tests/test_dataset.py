"""OUT/dataset: every analyst table as Parquet by day, read by any tool, moved anywhere.

The oracle is the warehouse's own views (the model as the detector reads it): after a
first night and after an incremental second one, each table of the dataset holds exactly
their rows (EXCEPT ALL both ways), read by DuckDB, polars and pyarrow alike; the events
files are the warehouse's parts themselves (same inode); and a copy of the folder, read
from its new place by the DuckDB releases on PyPI, counts what the live warehouse counts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.cli import main
from detector.dataset import NULL_DAY, day_sql, write_catalog
from detector.schema import TABLES, conform
from detector.sqltext import sql_string, truncated
from detector.warehouse import Warehouse

SAMPLES = Path(__file__).resolve().parents[1] / "sample_logs"
RUN = ("--year", "2016", "--tz", "UTC", "-q")
#: where `pip install --target` put the DuckDB releases from PyPI (.ci/run does)
OLD_DUCKDB = Path(os.environ.get("MAILSTORM_OLD_DUCKDB", "/tmp/mailstorm-duckdb"))


def _run(*args: str | Path) -> int:
    res = CliRunner().invoke(main, ["run", *map(str, args)])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    return res.exit_code


def _files(folder: Path, name: str) -> str:
    pattern = "*/*.parquet" if TABLES[name].day else "*.parquet"
    return f"read_parquet({sql_string(str(folder / name / pattern))}, hive_partitioning = false)"


def _cols(name: str) -> str:
    return ", ".join(f'"{c}"' for c in TABLES[name].columns)


def _check_dataset(out: Path) -> dict[str, int]:
    """Every table of OUT/dataset against the warehouse's views; their row counts."""
    folder = out / "dataset"
    counts: dict[str, int] = {}
    con = duckdb.connect(str(out / "mailstorm.duckdb"), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        for name, table in TABLES.items():
            live = f"SELECT {_cols(name)} FROM main.{name}"
            stored = f"SELECT {_cols(name)} FROM {_files(folder, name)}"
            for a, b in ((live, stored), (stored, live)):
                extra = con.execute(f"SELECT count(*) FROM ({a} EXCEPT ALL {b})").fetchone()
                assert extra == (0,), (name, a[:40])
            row = con.execute(f"SELECT count(*) FROM main.{name}").fetchone()
            counts[name] = int(row[0]) if row else 0
            # the files hold exactly the registry's columns, in order
            for file in (folder / name).rglob("*.parquet"):
                assert pl.read_parquet_schema(file).names() == list(table.columns), file
            if table.day is None:
                continue
            # a day's folder holds that UTC day's rows only
            wrong = con.execute(
                f"""SELECT count(*) FROM read_parquet({sql_string(str(folder / name))}
                    || '/*/*.parquet', hive_partitioning = true)
                WHERE day IS DISTINCT FROM CAST(timezone('UTC', "{table.day}") AS DATE)""")
            assert wrong.fetchone() == (0,), name
    finally:
        con.close()
    for name, n in counts.items():
        path = folder / name
        polars_rows = pl.scan_parquet(path, hive_partitioning=bool(TABLES[name].day)
                                      ).select(pl.len()).collect().item()
        # the day's type given: a table without rows has only the null day to infer from
        arrow_rows = pads.dataset(path, format="parquet", partitioning=pads.partitioning(
            pa.schema([("day", pa.date32())]), flavor="hive")).count_rows()
        assert polars_rows == arrow_rows == n, name
    return counts


def _events_are_links(out: Path) -> None:
    parts = {p.name: p.stat().st_ino for p in (out / "mailstorm.parquet" / "events")
             .glob("part-*.parquet")}
    linked = {p.name: p.stat().st_ino for p in (out / "dataset" / "events")
              .glob("day=*/part-*.parquet")}
    assert linked == parts


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """OUT after the quiet day's night, then the storm day's (incremental) night; the
    dataset is checked after the first night here, after the second by the tests."""
    root = tmp_path_factory.mktemp("dataset")
    (root / "logs").mkdir()
    shutil.copy(SAMPLES / "mail.log.1.gz", root / "logs")
    out = root / "out"
    with pytest.MonkeyPatch.context() as patch:
        # the sample days (tens of thousands of lines) as big days: their deliveries are
        # files of their own, which the dataset links where no later build hides a row
        patch.setattr("detector.warehouse.DAILY_MIN_EVENTS", 10_000)
        assert _run(root / "logs", "--out", out, *RUN) == 0
        first = _check_dataset(out)
        _events_are_links(out)
        assert first["events"] > 0 and first["deliveries"] > 0
        (root / "first.json").write_text(json.dumps(first))
        shutil.copy(SAMPLES / "mail.log", root / "logs")
        assert _run(root / "logs", "--out", out, *RUN) == 0
        linked = {p.stat().st_ino for p in (out / "mailstorm.parquet").glob("deliveries-*")}
        assert any(p.stat().st_ino in linked
                   for p in (out / "dataset" / "deliveries").glob("day=*/*.parquet"))
    yield root  # (the other tests' runs: days of tens of thousands of lines are small)


def test_second_night_and_an_idle_one(nights: Path) -> None:
    out = nights / "out"
    first = json.loads((nights / "first.json").read_text())
    second = _check_dataset(out)
    _events_are_links(out)
    assert second["events"] > first["events"] and second["incidents"] > 0

    # a night that read nothing writes no day again (but incidents: their status moves
    # on, from new to ongoing)
    def days() -> dict[Path, int]:
        return {p: p.stat().st_ino for p in (out / "dataset").glob("*/day=*")
                if p.parent.name != "incidents"}

    before = days()
    catalog = (out / "dataset" / "mailstorm.duckdb").stat().st_ino
    assert _run(nights / "logs", "--out", out, *RUN) == 4
    assert days() == before
    assert _check_dataset(out) == second
    # and the catalog, made of the same statements, is the same file
    assert (out / "dataset" / "mailstorm.duckdb").stat().st_ino == catalog


def test_retention_removes_the_old_day(nights: Path) -> None:
    day1 = nights / "logs1"
    day1.mkdir()
    shutil.copy(SAMPLES / "mail.log.1.gz", day1)
    fresh = nights / "fresh"
    assert _run(day1, "--out", fresh, *RUN) == 0
    _check_dataset(fresh)
    storm = shutil.copy(SAMPLES / "mail.log", day1)
    assert _run(storm, "--out", fresh, "--keep", "12h", *RUN) == 0
    _check_dataset(fresh)
    _events_are_links(fresh)
    assert not (fresh / "dataset" / "events" / "day=2016-11-13").exists()


def test_no_dataset_writes_none(tmp_path: Path) -> None:
    assert _run(SAMPLES / "mail.log.1.gz", "--out", tmp_path, "--no-dataset", *RUN) == 0
    assert not (tmp_path / "dataset").exists()


def test_comments_in_warehouse_and_catalog(nights: Path) -> None:
    for db in (nights / "out" / "mailstorm.duckdb",
               nights / "out" / "dataset" / "mailstorm.duckdb"):
        con = duckdb.connect(str(db), read_only=True)
        try:
            found = {(t, c): comment for t, c, comment in con.execute(
                "SELECT table_name, column_name, comment FROM duckdb_columns() "
                "WHERE schema_name = 'main'").fetchall()}
            tables = dict(con.execute("SELECT table_name, comment FROM duckdb_tables() "
                                      "UNION ALL SELECT view_name, comment FROM "
                                      "duckdb_views() WHERE NOT internal").fetchall())
        finally:
            con.close()
        for name, table in TABLES.items():
            assert tables[name] == table.description, (db, name)
            for col, spec in table.columns.items():
                assert found[(name, col)] == spec.description, (db, name, col)


def test_registry_matches_the_warehouse(nights: Path) -> None:
    """Every table the pipeline writes has the registry's columns, order and types."""
    con = duckdb.connect(str(nights / "out" / "mailstorm.duckdb"), read_only=True)
    try:
        for name, table in TABLES.items():
            described = [(r[0], r[1]) for r in con.execute(f"DESCRIBE {name}").fetchall()]
            assert described == [(c, s.duckdb_type) for c, s in table.columns.items()], name
    finally:
        con.close()


_COUNT = """
import duckdb, json, sys
con = duckdb.connect("mailstorm.duckdb", read_only=True)
names = [r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal")
         .fetchall()]
print(json.dumps({"version": duckdb.__version__,
                  "counts": {n: con.execute(f"SELECT count(*) FROM {n}").fetchone()[0]
                             for n in names}}))
"""


@pytest.mark.parametrize("version", ["1.1.3", "1.5.0"])
def test_a_moved_copy_reads_in_pypi_duckdb(nights: Path, tmp_path: Path,
                                           version: str) -> None:
    target = OLD_DUCKDB / version
    if not (target / "duckdb").is_dir():
        pytest.skip(f"no DuckDB {version} in {target} (.ci/run installs it there)")
    out = nights / "out"
    counts = _check_dataset(out)
    copy = tmp_path / "elsewhere"
    shutil.copytree(out / "dataset", copy)
    hidden = out / "dataset-away"  # the original out of reach: nothing may read it
    os.rename(out / "dataset", hidden)
    try:
        res = subprocess.run([sys.executable, "-c", _COUNT], cwd=copy, capture_output=True,
                             text=True, env={**os.environ, "PYTHONPATH": str(target)},
                             check=False, timeout=120)
    finally:
        os.rename(hidden, out / "dataset")
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["version"] == version
    assert got["counts"] == counts


def test_parts_are_split_by_utc_day(tmp_path: Path) -> None:
    """A batch across midnight (and lines without a time) makes one part per day; the
    dataset links each into its day, and a null day reads as null."""
    times = [datetime(2016, 11, 13, 23, 59, tzinfo=UTC), None,
             datetime(2016, 11, 14, 0, 0, 1, tzinfo=UTC),
             datetime(2016, 11, 13, 12, 0, tzinfo=UTC)]
    frame = conform(pl.DataFrame({"ts": times, "kind": ["a", "b", "c", "d"],
                                  "line_no": [1, 2, 3, 4]},
                                 schema_overrides={"ts": pl.Datetime("us", "UTC")})).collect()
    with Warehouse(tmp_path / "w.duckdb") as wh:
        txn = wh.begin_file()
        parts = wh.write_part(frame)
        txn.add(parts, False)
        # a part of two days, as a warehouse written before parts were split holds
        old = wh._write_one(frame.with_columns(line_no=pl.col("line_no") + 10))
        txn.add(old, False)
        wh.commit_file(txn, path="x.log", fmt="postfix", head=b"x", previous=None,
                       bytes_ingested=1, lines=8)
        by_part = [sorted(pl.read_parquet(wh.parts_dir / p.path.name)["line_no"])
                   for p in parts]
        assert sorted(by_part) == [[1, 4], [2], [3]]
        from detector.dataset import _link_events
        (tmp_path / "work").mkdir()
        _link_events(wh, tmp_path / "ds" / "events", tmp_path / "work")
    days = sorted(p.name for p in (tmp_path / "ds" / "events").iterdir())
    assert days == ["day=2016-11-13", "day=2016-11-14", f"day={NULL_DAY}"]
    write_catalog(tmp_path / "ds")
    read = pl.scan_parquet(tmp_path / "ds" / "events", hive_partitioning=True).select(
        "line_no", "day").sort("line_no").collect()
    assert read["day"].is_null().to_list() == [False, True, False, False] * 2
    # each day's folder holds its rows, of the split part too
    assert read.filter(pl.col("day") == datetime(2016, 11, 13).date())["line_no"].to_list() \
        == [1, 4, 11, 14]
    con = duckdb.connect(str(tmp_path / "ds" / "mailstorm.duckdb"), read_only=True)
    try:
        con.execute("SET file_search_path = ?", [str(tmp_path / "ds")])
        assert con.execute("SELECT count(*), count(ts) FROM events").fetchone() == (8, 6)
        assert con.execute("SELECT count(*) FROM read_parquet('events/*/*.parquet', "
                           "hive_partitioning = true) WHERE day IS NULL").fetchone() == (2,)
    finally:
        con.close()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.datetimes(min_value=datetime(1, 1, 1),
                             max_value=datetime(9999, 12, 31, 23, 59, 59, 999999),
                             timezones=st.just(UTC)), min_size=1, max_size=20))
def test_the_day_of_an_instant_by_integers_is_its_utc_date(times: list[datetime]) -> None:
    """The dataset finds a model part's days from instants cut to their day by integer
    arithmetic (``sqltext.truncated``): the day Python's calendar gives, before 1970 and
    at a day's last microsecond too."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    got = con.execute(f"SELECT list({day_sql('d')} ORDER BY i) FROM ("
                      f"SELECT i, {truncated('UTC', 'day', 't')} AS d FROM (SELECT unnest(?) AS t, "
                      "unnest(range(?)) AS i))", [times, len(times)]).fetchone()
    assert got == ([t.date().isoformat() for t in times],)


def _postfix_message(day: str, clock: str, queue_id: str, n: int, *, status: str = "sent"
                     ) -> list[str]:
    """A message received and delivered on mx1 (Postfix's lines as it writes them)."""
    head = f"Nov {day} {clock} mx1 postfix"
    lines = [f"{head}/smtpd[2001]: {queue_id}: client=client.example.org[192.0.2.10]",
             f"{head}/cleanup[2002]: {queue_id}: message-id=<m{n}@example.org>",
             f"{head}/qmgr[2003]: {queue_id}: from=<alice@example.org>, size=1200, "
             "nrcpt=1 (queue active)"]
    if status == "deferred":
        lines.append(f"{head}/smtp[2004]: {queue_id}: to=<bob@remote.example>, relay=none, "
                     "delay=1, delays=0.1/0/1/0, dsn=4.4.1, status=deferred (connect to "
                     "remote.example[203.0.113.5]:25: Connection timed out)")
    else:
        lines += [f"{head}/smtp[2004]: {queue_id}: to=<bob@remote.example>, "
                  "relay=remote.example[203.0.113.5]:25, delay=0.6, delays=0.1/0/0.3/0.2, "
                  "dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 9F8E7D6C5B)",
                  f"{head}/qmgr[2003]: {queue_id}: removed"]
    return lines


def test_a_day_whose_stored_rows_a_rebuild_hides_is_written_and_a_whole_day_linked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dataset's day of deliveries is the warehouse's own daily part (a hard link)
    while no later build hides a row of it; a message deferred before midnight and
    delivered after it is rebuilt by the second night, its first day's stored rows
    hidden: that day is written again, and holds what the warehouse's view holds."""
    monkeypatch.setattr("detector.warehouse.DAILY_MIN_EVENTS", 1)  # (days of a few lines)
    logs = tmp_path / "logs"
    logs.mkdir()
    first = [*_postfix_message("13", "10:00:00", "1A2B3C4D5E", 1),
             *_postfix_message("13", "23:50:00", "2B3C4D5E6F", 2, status="deferred")]
    (logs / "mail.log.1").write_text("\n".join(first) + "\n")
    out = tmp_path / "out"
    assert _run(logs, "--out", out, *RUN) == 0
    _check_dataset(out)
    later = ["Nov 14 00:20:00 mx1 postfix/smtp[2005]: 2B3C4D5E6F: to=<bob@remote.example>, "
             "relay=remote.example[203.0.113.5]:25, delay=1800, delays=1800/0/0.3/0.2, "
             "dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 8E7D6C5B4A)",
             "Nov 14 00:20:00 mx1 postfix/qmgr[2003]: 2B3C4D5E6F: removed",
             *_postfix_message("14", "09:00:00", "3C4D5E6F7A", 3)]
    (logs / "mail.log").write_text("\n".join(later) + "\n")
    assert _run(logs, "--out", out, *RUN) == 0
    _check_dataset(out)
    parts = {p.stat().st_ino for p in (out / "mailstorm.parquet").glob("deliveries-*")}
    day13 = list((out / "dataset" / "deliveries" / "day=2016-11-13").iterdir())
    day14 = list((out / "dataset" / "deliveries" / "day=2016-11-14").iterdir())
    assert day14 and all(p.stat().st_ino in parts for p in day14)
    assert day13 and not any(p.stat().st_ino in parts for p in day13)
    con = duckdb.connect(str(out / "mailstorm.duckdb"), read_only=True)
    try:  # the oracle: the log's own lines, not the model
        rows = con.execute("SELECT queue_id, status, CAST(ts AS VARCHAR) FROM deliveries "
                           "ORDER BY ts").fetchall()
    finally:
        con.close()
    assert rows == [("1A2B3C4D5E", "sent", "2016-11-13 10:00:00+00"),
                    ("2B3C4D5E6F", "deferred", "2016-11-13 23:50:00+00"),
                    ("2B3C4D5E6F", "sent", "2016-11-14 00:20:00+00"),
                    ("3C4D5E6F7A", "sent", "2016-11-14 09:00:00+00")]
