"""Consistent outputs and private data (issue 12.5): what a run creates is readable by no
more people than the logs it came from. Real files chmod'ed as syslog leaves them, real
runs of the CLI in a subprocess under a known umask."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import duckdb

from detector import permissions, pipeline


def _log(path: Path, n: int, host: str, mode: int) -> Path:
    lines = [f"Nov 14 09:{i // 60:02d}:{i % 60:02d} {host} postfix/smtpd[1]: connect from"
             f" c{i}.example[192.0.2.{i % 250 + 1}]" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(mode)
    return path


def _cli(*args: str, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "detector", *args], capture_output=True,
                          text=True, timeout=300, umask=umask)


def _open_to(root: Path, who: int) -> list[str]:
    """What under ``root`` those ``who`` (the group: 0o070, others: 0o007) can reach and
    read: a file with their read bit under folders all with their search bit. Symbolic
    links are followed through what they point at (listed themselves)."""
    read, search = who & 0o444, who & 0o111
    found = []
    for folder, _dirs, files in os.walk(root):
        path = Path(folder)
        chain = [path, *path.relative_to(root).parents]
        if not all(root.joinpath(p).stat().st_mode & search for p in chain):
            continue
        for name in files:
            st = (path / name).lstat()
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & read:
                found.append(str((path / name).relative_to(root)))
    return sorted(found)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _run(log: Path, out: Path, *more: str) -> subprocess.CompletedProcess[str]:
    return _cli("run", str(log), "--out", str(out), "--tz", "UTC", "--year", "2016", "-q",
                *more)


def test_private_logs_make_a_private_warehouse_and_report(tmp_path: Path) -> None:
    # Debian's mail.log: root:adm 0640, read by the adm group, not by others
    out = tmp_path / "out"
    assert _run(_log(tmp_path / "mail.log", 200, "mx1", 0o640), out).returncode == 0
    group = _open_to(out, 0o070)
    assert {"index.html", "incidents.json", "mailstorm.duckdb"} <= set(group)
    assert any(p.startswith("mailstorm.parquet/events/part-") for p in group)
    assert _open_to(out, 0o007) == []
    assert _mode(out / "mailstorm.duckdb") == 0o640 and _mode(out) == 0o750
    # a report from that warehouse is as private as the warehouse (in this process,
    # whatever its umask)
    with permissions.applied(0o002):
        pipeline.report(out / "mailstorm.duckdb", tmp_path / "r")
    assert "index.html" in _open_to(tmp_path / "r", 0o070)
    assert _open_to(tmp_path / "r", 0o007) == []


def test_a_private_log_closes_a_warehouse_made_from_public_ones(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with permissions.applied(0o022):
        pipeline.run([str(_log(tmp_path / "mail.log", 100, "mx1", 0o644))], out, tz="UTC",
                     year=2016)
    assert _mode(out / "index.html") == 0o644 == _mode(out / "mailstorm.duckdb")  # as before
    # a log only its owner may read joins: what exists is tightened at its top, what is
    # made is made closed; nothing in the warehouse or report is open to anyone else
    assert _run(_log(tmp_path / "secure", 100, "mx2", 0o600), out).returncode == 0
    assert _open_to(out, 0o070) == [] and _open_to(out, 0o007) == []
    assert _mode(out / "mailstorm.duckdb") == 0o600
    assert _mode(out / "mailstorm.parquet") == 0o700


def test_umask_option(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from detector.cli import main

    log = _log(tmp_path / "mail.log", 50, "mx1", 0o644)
    out = tmp_path / "out"
    runner = CliRunner()
    res = runner.invoke(main, ["run", str(log), "--out", str(out), "--tz", "UTC", "--year",
                               "2016", "-q", "--umask", "077"])
    assert res.exit_code == 0, res.output
    assert _open_to(out, 0o077) == [] and _mode(out / "index.html") == 0o600
    bad = runner.invoke(main, ["report", "--db", str(out / "mailstorm.duckdb"), "--out",
                               str(out), "--umask", "0700"])
    assert bad.exit_code == 2 and "owner" in bad.output


def test_duckdb_and_its_write_ahead_log_follow_the_umask(tmp_path: Path) -> None:
    # the WAL lives only while a writer has uncommitted checkpoints: look at it then
    db = tmp_path / "w.duckdb"
    with permissions.applied(0o027), duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE t AS SELECT range AS x FROM range(1000)")
        wal = db.with_name(db.name + ".wal")
        assert wal.exists()
        assert stat.S_IMODE(wal.stat().st_mode) == 0o640
    assert stat.S_IMODE(db.stat().st_mode) == 0o640


def test_umask_from_modes() -> None:
    assert permissions.umask_from_modes([0o644, 0o644], 0o022) == 0o022
    assert permissions.umask_from_modes([0o644, 0o640], 0o022) == 0o027
    assert permissions.umask_from_modes([0o600], 0o002) == 0o077
    assert permissions.umask_from_modes([], 0o077) == 0o077  # never loosened
    assert permissions.parse_umask("0o027") == 0o027
