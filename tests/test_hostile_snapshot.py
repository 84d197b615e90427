"""Analysts never block the writer (issue 12.3): each run publishes a snapshot of the
warehouse, and a reader holding it open (plain DuckDB, as an analyst's session) neither
makes the next run wait nor sees it change under its feet. A real reader process, a real
run of the CLI in a subprocess with no lock timeout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from detector import pipeline
from detector.cli import main
from detector.snapshot import current_snapshot

# the reader: counts what it sees, waits for a line on stdin, counts again
_READER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
query = ("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM deliveries), "
         "(SELECT sum(lines) FROM files)")
print(*con.execute(query).fetchone(), flush=True)
sys.stdin.readline()
print(*con.execute(query).fetchone(), flush=True)
"""


def _night(path: Path, first: int, n: int, *, partial: bool = False) -> None:
    """Append ``n`` messages delivered once each; ``partial``: the last line has no
    newline yet (stored as a part the next run replaces)."""
    lines = []
    for i in range(first, first + n):
        q, t = f"{i:010X}", f"Nov 14 09:{i // 60 % 60:02d}:{i % 60:02d}"
        lines += [f"{t} mx1 postfix/qmgr[2]: {q}: from=<a{i}@x.example>, size=100, nrcpt=1"
                  " (queue active)",
                  f"{t} mx1 postfix/smtp[3]: {q}: to=<b{i}@y.example>, relay=y.example"
                  "[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 ok)",
                  f"{t} mx1 postfix/qmgr[2]: {q}: removed"]
    with open(path, "a") as f:
        f.write("\n".join(lines) + ("" if partial else "\n"))


def test_a_reader_of_the_snapshot_never_blocks_the_run(tmp_path: Path) -> None:
    log, out = tmp_path / "mail.log", tmp_path / "out"
    db = out / "mailstorm.duckdb"
    _night(log, 0, 40, partial=True)
    pipeline.run([str(log)], out, tz="UTC", year=2016)
    snap = current_snapshot(db)
    assert snap is not None
    reader = subprocess.Popen([sys.executable, "-c", _READER, str(snap)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert reader.stdin is not None and reader.stdout is not None
    try:
        before = reader.stdout.readline().split()
        assert before == ["120", "40", "119"]  # the ledger counts whole lines
        # the next night: the partial last line completed (its part is replaced), more
        # mail, the model's deliveries rewritten; the run may not wait at all
        with open(log, "a") as f:
            f.write("\n")
        _night(log, 40, 30)
        res = subprocess.run(
            [sys.executable, "-m", "detector", "run", str(log), "--out", str(out), "--tz",
             "UTC", "--year", "2016", "-q", "--lock-timeout", "0"],
            capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        reader.stdin.write("again\n")
        reader.stdin.flush()
        assert reader.stdout.readline().split() == before  # its snapshot, unchanged
        assert reader.wait(timeout=30) == 0
    finally:
        reader.kill()
        reader.wait()
    # the superseded files are gone from the warehouse, not from the snapshot read
    # before; 'mailstorm sql' reads the new snapshot, without the writer's lock
    res2 = CliRunner().invoke(main, ["sql", "SELECT count(*) AS n FROM deliveries",
                                     "--db", str(db), "--format", "csv"])
    assert res2.exit_code == 0, res2.output
    assert res2.output.splitlines()[-1] == "70"
    assert current_snapshot(db) != snap


def test_mailstorm_sql_reads_the_snapshot_while_the_warehouse_is_held(tmp_path: Path) -> None:
    import duckdb

    log, out = tmp_path / "mail.log", tmp_path / "out"
    _night(log, 0, 10)
    pipeline.run([str(log)], out, tz="UTC", year=2016)
    db = out / "mailstorm.duckdb"
    with duckdb.connect(str(db)):  # the writer's lock, held (a run going on)
        res = CliRunner().invoke(main, ["sql", "SELECT count(*) FROM events", "--db",
                                        str(db), "--format", "csv"])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[-1] == "30"
