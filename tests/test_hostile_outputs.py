"""Consistent outputs and private data (issue 12.5): what a run creates is readable by no
more people than the logs it came from. Real files chmod'ed as syslog leaves them, real
runs of the CLI in a subprocess under a known umask."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime
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
    assert "mailstorm.duckdb" in group
    assert {p.rsplit("/", 1)[-1] for p in group if p.startswith(".reports/")} >= {
        "index.html", "incidents.json"}  # OUT/index.html... are links into .reports/
    assert any(p.startswith("mailstorm.parquet/events/part-") for p in group)
    assert _open_to(out, 0o007) == []
    assert _mode(out / "mailstorm.duckdb") == 0o640 and _mode(out) == 0o750
    # a report from that warehouse is as private as the warehouse (in this process,
    # whatever its umask)
    with permissions.applied(0o002):
        pipeline.report(out / "mailstorm.duckdb", tmp_path / "r")
    assert any(p.endswith("/index.html") for p in _open_to(tmp_path / "r", 0o070))
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


# --- a report swapped in whole ---------------------------------------------------------

# a writer of the report as write_report publishes it (rendering is not what is tested
# here, and this process starts in milliseconds)
_WRITER = """
import json, sys
from pathlib import Path
from detector.publish import publish_files
out, tag, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ids = [f"reply_storm-{tag}{i:010x}" for i in range(n)]
files = {f"incidents/{i}.html": f"<p>{i}</p>" for i in ids}
files["incidents.json"] = json.dumps({"incidents": [{"id": i} for i in ids]})
files["index.html"] = "".join(f'<a href="incidents/{i}.html">{i}</a>' for i in ids)
publish_files(out, files)
"""
#: steps of publish.publish a writer is killed at, and whose report a reader sees then:
#: the one before or its own. pages, json: its folder half written; folder: written,
#: not yet renamed whole; pointer: whole, the pointer not moved; links: the pointer
#: moved, OUT's entries still the legacy files; prune: all done but removing old reports
_KILLED_AT = {"pages": "old", "json": "old", "folder": "old", "pointer": "old",
              "links": "old", "prune": "new"}


def _ids(tag: str, n: int) -> set[str]:
    return {f"reply_storm-{tag}{i:010x}" for i in range(n)}


def _seen(out: Path) -> set[str]:
    """The incidents a reader of OUT sees, checked whole: index.html and incidents.json
    name the same ones, and each has its page."""
    import json
    import re

    index = (out / "index.html").read_text()
    linked = set(re.findall(r'href="incidents/([a-z_]+-[0-9a-f]{12})\.html"', index))
    listed = {r["id"] for r in json.loads((out / "incidents.json").read_text())["incidents"]}
    assert linked == listed, (linked, listed)
    assert all((out / "incidents" / f"{i}.html").is_file() for i in listed)
    return listed


def _leftovers(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*")
                  if p.name.endswith(".tmp") or p.name.startswith(".half-"))


def test_a_report_killed_at_any_step_leaves_one_whole_report(tmp_path: Path) -> None:
    import shutil
    import signal

    from detector.incidents import Incident
    from detector.reports import write_report

    # OUT as older versions left it: index.html, incidents.json and a folder of pages
    # (with a reader's notes), plus a temporary a killed writer left an hour ago
    legacy = tmp_path / "legacy"
    t = datetime(2016, 11, 14, 9, tzinfo=UTC)
    old = [Incident(id=i, kind="reply_storm", severity="high", rule="reply_storm",
                    list="all@x.example", subject="s", root_message_id=None, start=t, end=t,
                    peak=t, messages=1, deliveries=1, senders=1) for i in sorted(_ids("aa", 3))]
    write_report(tmp_path / "fresh", {"generated_at": "2016-11-14T02:00:00Z"}, old)
    shutil.copytree(tmp_path / "fresh" / ".reports" / "current", legacy)
    (legacy / "incidents" / "notes.txt").write_text("mine")
    stale = legacy / ".index.html.0badc0de.tmp"
    stale.write_text("half")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    assert _seen(legacy) == _ids("aa", 3)

    outs = {step: tmp_path / step for step in _KILLED_AT}
    writers = {}
    for n, (step, out) in enumerate(outs.items()):
        shutil.copytree(legacy, out, symlinks=True)
        writers[step] = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(out), f"b{n}", "4"], stderr=subprocess.PIPE,
            text=True, env={**os.environ, "_MAILSTORM_TEST_PAUSE_REPORT": step})
    try:
        for step, writer in writers.items():
            assert writer.stderr is not None
            assert writer.stderr.readline().strip() == f"paused at {step}", step
        for n, (step, out) in enumerate(outs.items()):
            expected = _ids("aa", 3) if _KILLED_AT[step] == "old" else _ids(f"b{n}", 4)
            assert _seen(out) == expected, step  # while the writer is stopped there
            writers[step].send_signal(signal.SIGKILL)
            writers[step].wait()
            assert _seen(out) == expected, step  # and after it was killed
    finally:
        for writer in writers.values():
            writer.kill()
            writer.wait()
    for step, out in outs.items():
        # the next report cleans up after the killed one and carries the notes on
        write_report(out, {"generated_at": "2016-11-16T02:00:00Z"}, old[:1])
        assert _seen(out) == set(sorted(_ids("aa", 3))[:1]), step
        assert _leftovers(out) == [], step
        reports = [p.name for p in (out / ".reports").iterdir() if not p.name.startswith(".")]
        assert len(reports) <= 3, (step, reports)  # current, the one before, the pointer
        assert all((out / e).is_symlink() for e in ("index.html", "incidents.json",
                                                    "incidents"))
        assert (out / "incidents" / "notes.txt").read_text() == "mine"
