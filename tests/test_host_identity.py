"""A file without host names (a native Exim mainlog) gets a host of its own: its rotation
group, or ``--host NAME``. Two servers' mainlogs read in one run never merge their
messages; one server's rotated mainlog keeps one host across its files.

The lines are the Exim test suite's (../shared/corpus exim/exim-testsuite.log lines 1-3:
a local message without a Message-ID, delivered, completed), given here so the test runs
without the corpus.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
from click.testing import CliRunner

from detector.cli import main
from detector.pipeline import run

RECEIVED = ("1999-03-02 09:44:33 10HmaX-000000005vi-0000 <= someone@some.domain U=CALLER"
            " P=local-smtp S=sss")
DELIVERED = ("1999-03-02 09:44:33 10HmaX-000000005vi-0000 => {0} <{0}@the.local.host.name>"
             " R=localuser T=local_delivery")
COMPLETED = "1999-03-02 09:44:33 10HmaX-000000005vi-0000 Completed"


def _write(path: Path, *lines: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _rows(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_two_servers_mainlogs_keep_their_messages_apart(tmp_path: Path) -> None:
    # the same Exim id on two servers (ids are time and pid: they do repeat across hosts)
    _write(tmp_path / "logs/mx1/mainlog", RECEIVED, DELIVERED.format("alice"), COMPLETED)
    _write(tmp_path / "logs/mx2/mainlog", RECEIVED, DELIVERED.format("bob"), COMPLETED)
    run([str(tmp_path / "logs")], tmp_path / "out", tz="UTC")
    db = tmp_path / "out" / "mailstorm.duckdb"
    hosts = {os.path.abspath(tmp_path / f"logs/{h}/mainlog") for h in ("mx1", "mx2")}
    assert {h for (h,) in _rows(db, "SELECT DISTINCT host FROM events")} == hosts
    assert _rows(db, "SELECT count(*) FROM messages") == [(2,)]
    per_message = _rows(db, "SELECT recipients, deliveries FROM logical_messages")
    assert sorted(per_message) == [(1, 1), (1, 1)]


def test_one_servers_rotated_mainlog_is_one_host(tmp_path: Path) -> None:
    # received before midnight's rotation, delivered after it
    _write(tmp_path / "logs/mainlog.1", RECEIVED)
    _write(tmp_path / "logs/mainlog", DELIVERED.format("alice"), COMPLETED)
    run([str(tmp_path / "logs")], tmp_path / "out", tz="UTC")
    db = tmp_path / "out" / "mailstorm.duckdb"
    assert _rows(db, "SELECT count(DISTINCT host) FROM events") == [(1,)]
    assert _rows(db, "SELECT sender, deliveries FROM logical_messages") == [
        ("someone@some.domain", 1)]


def test_host_option_names_the_server(tmp_path: Path) -> None:
    _write(tmp_path / "mainlog", RECEIVED, DELIVERED.format("alice"), COMPLETED)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(tmp_path / "mainlog"), "--out", str(out),
                                       "--tz", "UTC", "--year", "1999", "-q", "--host", "mx7"])
    assert result.exit_code == 0, result.output
    assert _rows(out / "mailstorm.duckdb", "SELECT DISTINCT host FROM events") == [("mx7",)]
    assert _rows(out / "mailstorm.duckdb", "SELECT hosts FROM logical_messages") == [("mx7",)]
