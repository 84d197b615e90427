"""Nothing stored is lost without a word (issue 12.1): a warehouse owns its Parquet
folder, and a part removed or damaged from outside stops the run with one line saying
so, instead of events silently missing. Real files, real runs of the CLI in a
subprocess (its exit status and stderr as a cron job sees them)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb

SAMPLE = Path(__file__).resolve().parents[1] / "sample_logs"


def _log(path: Path, n: int, host: str) -> int:
    lines = [f"Nov 14 09:{i // 60:02d}:{i % 60:02d} {host} postfix/smtpd[1]: connect from"
             f" c{i}.example[192.0.2.{i % 250 + 1}]" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return n


def _run(log: Path, out: Path, db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "detector", "run", str(log), "--out", str(out), "--db",
         str(db), "--tz", "UTC", "--year", "2016", "-q"],
        capture_output=True, text=True, timeout=300)


def _events(db: Path) -> int:
    with duckdb.connect(str(db)) as con:  # the Warehouse opens its views: count parts
        return con.execute("SELECT sum(rows) FROM parts").fetchone()[0]


def test_two_warehouses_sharing_a_stem_keep_their_events(tmp_path: Path) -> None:
    a, b = _log(tmp_path / "a.log", 300, "mx1"), _log(tmp_path / "b.log", 200, "mx2")
    assert _run(tmp_path / "a.log", tmp_path / "oa", tmp_path / "w.duckdb").returncode == 0
    assert _run(tmp_path / "b.log", tmp_path / "ob", tmp_path / "w.db").returncode == 0
    # each opened again (nothing new to read: exit 4): neither tidied the other's parts
    assert _run(tmp_path / "a.log", tmp_path / "oa", tmp_path / "w.duckdb").returncode == 4
    assert (_events(tmp_path / "w.duckdb"), _events(tmp_path / "w.db")) == (a, b)
    assert (tmp_path / "w.parquet" / ".mailstorm-warehouse").read_text().strip() == "w.duckdb"
    assert (tmp_path / "w.db.parquet" / ".mailstorm-warehouse").read_text().strip() == "w.db"
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        assert con.execute("SELECT sum(lines) FROM files").fetchone()[0] == a


def _first_part(db: Path) -> Path:
    return sorted((db.parent / (db.stem + ".parquet") / "events").glob("part-*.parquet"))[0]


def test_a_missing_part_stops_the_run_with_one_line(tmp_path: Path) -> None:
    _log(tmp_path / "a.log", 300, "mx1")
    db = tmp_path / "w.duckdb"
    assert _run(tmp_path / "a.log", tmp_path / "out", db).returncode == 0
    part = _first_part(db)
    part.unlink()
    res = _run(tmp_path / "a.log", tmp_path / "out", db)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    [line] = res.stderr.strip().splitlines()
    assert "1 missing" in line and str(tmp_path / "a.log") in line
    assert _events(db) == 300  # the ledger still says what it read: nothing deleted


def test_a_damaged_part_stops_the_run_with_one_line(tmp_path: Path) -> None:
    _log(tmp_path / "a.log", 300, "mx1")
    db = tmp_path / "w.duckdb"
    assert _run(tmp_path / "a.log", tmp_path / "out", db).returncode == 0
    part = _first_part(db)
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2])  # cut by a full disk or a bad copy
    res = _run(tmp_path / "a.log", tmp_path / "out", db)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "1 damaged" in res.stderr
    assert part.stat().st_size == len(data) // 2  # left for the postmaster to look at


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "detector", *args], capture_output=True,
                          text=True, timeout=300)


def test_a_run_that_reads_no_new_line_says_so_and_exits_4(tmp_path: Path) -> None:
    # broken log shipping must not look like a quiet night: an empty folder, an empty
    # file, and yesterday's log again
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "mail.log").write_text("")
    res = _cli("run", str(tmp_path / "empty"), "--out", str(tmp_path / "o1"), "-q")
    assert res.returncode == 4, res.stderr
    [line] = res.stderr.strip().splitlines()
    assert "no new log line" in line
    assert "read no new log line" in (tmp_path / "o1" / "index.html").read_text()
    assert _cli("run", str(tmp_path / "empty"), "--out", str(tmp_path / "o1"), "-q",
                "--allow-empty").returncode == 0
    _log(tmp_path / "a.log", 50, "mx1")
    first = _cli("run", str(tmp_path / "a.log"), "--out", str(tmp_path / "o2"), "-q",
                 "--year", "2016")
    assert first.returncode == 0 and first.stderr == ""
    again = _cli("run", str(tmp_path / "a.log"), "--out", str(tmp_path / "o2"), "-q",
                 "--year", "2016")
    assert again.returncode == 4


_HOLD = ("import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True);"
         " time.sleep(float(sys.argv[2])); c.close()")


def _holding(db: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process with the warehouse open for writing (a run still going, an
    analyst's session), released after ``seconds``."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(db), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_locked_warehouse_is_waited_for(tmp_path: Path) -> None:
    _log(tmp_path / "a.log", 50, "mx1")
    db = tmp_path / "w.duckdb"
    assert _run(tmp_path / "a.log", tmp_path / "out", db).returncode == 0
    _log(tmp_path / "a.log", 80, "mx1")  # the log grew: the next night has lines to read
    holder = _holding(db, 2)
    try:
        res = _cli("run", str(tmp_path / "a.log"), "--out", str(tmp_path / "out"), "--db",
                   str(db), "--year", "2016", "-q", "--lock-timeout", "60")
    finally:
        holder.wait(timeout=30)
    assert res.returncode == 0, res.stderr
    assert _events(db) == 80


def test_a_lock_not_released_in_time_names_its_holder(tmp_path: Path) -> None:
    _log(tmp_path / "a.log", 50, "mx1")
    db = tmp_path / "w.duckdb"
    assert _run(tmp_path / "a.log", tmp_path / "out", db).returncode == 0
    holder = _holding(db, 30)
    try:
        res = _cli("report", "--db", str(db), "--out", str(tmp_path / "r"), "-q",
                   "--lock-timeout", "1")
    finally:
        holder.kill()
        holder.wait()
    assert res.returncode == 1 and "Traceback" not in res.stderr
    [line] = res.stderr.strip().splitlines()
    assert f"locked by process {holder.pid}" in line and "--lock-timeout" in line


def test_temporaries_a_killed_report_left_are_removed(tmp_path: Path) -> None:
    _log(tmp_path / "a.log", 50, "mx1")
    out = tmp_path / "out"
    assert _run(tmp_path / "a.log", out, tmp_path / "w.duckdb").returncode == 0
    # what a kill during _write_atomic leaves: an hour-old one, and one being written now
    old, fresh = out / ".index.html.0badc0de.tmp", out / ".incidents.json.1badc0de.tmp"
    for tmp in (old, fresh):
        tmp.write_text("half a file")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    notes = out / ".my-notes.tmp"  # not a name mailstorm writes: left alone
    notes.write_text("mine")
    os.utime(notes, (time.time() - 3600, time.time() - 3600))
    assert _cli("report", "--db", str(tmp_path / "w.duckdb"), "--out", str(out),
                "-q").returncode == 0
    assert (old.exists(), fresh.exists(), notes.exists()) == (False, True, True)


def test_a_full_disk_says_so_and_where(tmp_path: Path) -> None:
    # a real full disk: a 1 MB tmpfs holding the warehouse and the report
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        import pytest

        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        _log(tmp_path / "big.log", 500_000, "mx1")
        res = _run(tmp_path / "big.log", disk / "out", disk / "w.duckdb")
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    [line] = res.stderr.strip().splitlines()
    assert "disk full" in line and str(disk) in line


def test_the_report_says_where_each_files_year_came_from(tmp_path: Path) -> None:
    syslog, exim = tmp_path / "logs" / "mail.log", tmp_path / "logs" / "mainlog"
    syslog.parent.mkdir()
    _log(syslog, 10, "mx1")  # RFC 3164 stamps: no year
    exim.write_text("2016-11-14 09:00:00 10HmaX-000000005vi-0000 Completed\n")
    stamp = datetime(2016, 11, 15, 6, 0, tzinfo=UTC).timestamp()
    os.utime(syslog, (stamp, stamp))
    assert _cli("run", str(tmp_path / "logs"), "--out", str(tmp_path / "o1"), "--tz", "UTC",
                "-q").returncode == 0
    index = (tmp_path / "o1" / "index.html").read_text()
    assert "<td class=\"text\">guessed from the modification time of mail.log</td>" in index
    assert "<td class=\"text\">its stamps</td>" in index
    assert "The year of 1 file (stamps without a year) was guessed" in index
    assert _cli("run", str(syslog), "--out", str(tmp_path / "o2"), "--tz", "UTC", "--year",
                "2016", "-q").returncode == 0
    index = (tmp_path / "o2" / "index.html").read_text()
    assert "<td class=\"text\">--year 2016</td>" in index and "was guessed" not in index
