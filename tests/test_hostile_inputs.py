"""Inputs a careless or hostile user feeds a nightly run: each is a reason, never a hang.

Issue 12 (inputs): a FIFO or a device is never opened; a dangling symbolic link, an
unreadable file or folder, a name that is not UTF-8 and a truncated .gz never stop the
night: each is one warning line naming it and why, the rest is read, the report lists it,
and the run exits 5 (a truncated .gz keeps the lines before its damage, and the ledger
reads on from there once it is whole); a line longer than the limit is cut and counted, never held
whole; a decompression bomb stops its file with one line and keeps what was committed;
standard input is spooled at most up to a limit and the spool is removed however the run
ends. Real files, FIFOs and processes throughout; every process has a timeout, so a
regression fails instead of hanging the suite.
"""

from __future__ import annotations

import base64
import bz2
import gzip
import os
import re
import signal
import subprocess
import sys
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from detector.dayview import day_overview
from detector.ingest import ingest
from detector.sources import (
    MAX_LINE,
    RATIO_FLOOR,
    STDIN_LIMIT,
    discover,
    iter_batches,
)
from detector.warehouse import Warehouse
from tests.test_unreadable_inputs import LINES, _report_notes, good_logs, invoke, ledger

ROOT = os.geteuid() == 0
AS_ROOT = "runs as root: permissions do not stop root from reading"
# 785 bytes of .bz2 that are 1 GiB of zeros without a newline (one stream, level 9)
GIB_OF_ZEROS = base64.b64decode(
    "QlpoOTFBWSZTWQ4J4t8BX45AAMAAAAggADCATUZCoCWpCoCXMUFZJlNZDgni3wFfjkAAwAAACCAAMIBNRkKgJakK"
    "gJcxQVkmU1kOCeLfAV+OQADAAAAIIAAwgE1GQqAlqQqAlzFBWSZTWQ4J4t8BX45AAMAAAAggADCATUZCoCWpCoCX"
    "MUFZJlNZDgni3wFfjkAAwAAACCAAMIBNRkKgJakKgJcxQVkmU1kOCeLfAV+OQADAAAAIIAAwgE1GQqAlqQqAlzFB"
    "WSZTWQ4J4t8BX45AAMAAAAggADCATUZCoCWpCoCXMUFZJlNZDgni3wFfjkAAwAAACCAAMIBNRkKgJakKgJcxQVkm"
    "U1kOCeLfAV+OQADAAAAIIAAwgE1GQqAlqQqAlzFBWSZTWQ4J4t8BX45AAMAAAAggADCATUZCoCWpCoCXMUFZJlNZ"
    "Dgni3wFfjkAAwAAACCAAMIBNRkKgJakKgJcxQVkmU1kOCeLfAV+OQADAAAAIIAAwgE1GQqAlqQqAlzFBWSZTWQ4J"
    "4t8BX45AAMAAAAggADCATUZCoCWpCoCXMUFZJlNZDgni3wFfjkAAwAAACCAAMIBNRkKgJakKgJcxQVkmU1kOCeLf"
    "AV+OQADAAAAIIAAwgE1GQqAlqQqAlzFBWSZTWQ4J4t8BX45AAMAAAAggADCATUZCoCWpCoCXMUFZJlNZDgni3wFf"
    "jkAAwAAACCAAMIBNRkKgJakKgJcxQVkmU1kOCeLfAV+OQADAAAAIIAAwgE1GQqAlqQqAlzFBWSZTWQ4J4t8BX45A"
    "AMAAAAggADCATUZCoCWpCoCXMUFZJlNZDgni3wFfjkAAwAAACCAAMIBNRkKgJakKgJcxQVkmU1kOCeLfAV+OQADA"
    "AAAIIAAwgE1GQqAlqQqAlzFBWSZTWQ4J4t8BX45AAMAAAAggADCATUZCoCWpCoCXMUFZJlNZDgni3wFfjkAAwAAA"
    "CCAAMIBNRkKgJakKgJcxQVkmU1lIfF/JAIpSyADAAAAEAAggADDMBSmmkSJDYUSJDxdyRThQkPaI5AI="
)


def mailstorm(*args: str, stdin=None, env: dict[str, str] | None = None,
              stdin_limit: int | None = None, timeout: float = 120,
              ) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own (``stdin_limit``: the spool limit it runs with)."""
    code = "import sys\n"
    if stdin_limit is not None:
        code += f"import detector.sources as s; s.STDIN_LIMIT = {stdin_limit}\n"
    code += "from detector.cli import main\nmain(sys.argv[1:], prog_name='mailstorm')\n"
    return subprocess.run([sys.executable, "-c", code, *args], stdin=stdin, env=env,
                          capture_output=True, text=True, timeout=timeout,
                          errors="backslashreplace")


def run_args(logs: Path | str, out: Path, *extra: str) -> list[str]:
    return ["run", str(logs), "--out", str(out), "--year", "2016", "--tz", "UTC", *extra]


def error_line(res: subprocess.CompletedProcess[str]) -> str:
    [line] = res.stderr.splitlines()  # one line, no traceback
    assert line.startswith("Error: ")
    return line


def named(line: str) -> dict[str, str]:
    """path -> reason, from "Error: cannot read N of M inputs: a (why), b (why); ..." """
    listed = line.split(" inputs: ", 1)[1].split("; nothing was loaded")[0]
    return dict(re.findall(r"(\S+) \(([^)]+)\)", listed))


# --- 1. never blocks: only regular files are opened ------------------------------------------


def test_a_fifo_in_a_log_folder_is_not_opened(tmp_path: Path) -> None:
    logs, out = tmp_path / "logs", tmp_path / "out"
    good = good_logs(logs)
    fifo = logs / "mail.pipe"
    os.mkfifo(fifo)  # nobody ever writes to it: opening it would wait forever

    res = mailstorm(*run_args(logs, out, "-q"))
    assert res.returncode == 5, res.stderr
    assert res.stderr == f"warning: skipping {fifo}: not a regular file\n"
    assert sorted(row[0] for row in ledger(out / "mailstorm.duckdb")) == sorted(map(str, good))
    assert _report_notes(out / "index.html")[str(fifo)] == "skipped: not a regular file"


def test_a_fifo_or_device_named_explicitly_is_skipped_unopened(tmp_path: Path) -> None:
    logs, out = tmp_path / "logs", tmp_path / "out"
    [_, live] = good_logs(logs)
    fifo = tmp_path / "mail.log.fifo"
    os.mkfifo(fifo)
    res = mailstorm(*run_args(live, out, "-q"), str(fifo), "/dev/zero", "/dev/null")
    assert res.returncode == 5, res.stderr
    assert res.stderr.splitlines() == [f"warning: skipping {p}: not a regular file"
                                       for p in (fifo, "/dev/zero", "/dev/null")]
    assert [row[0] for row in ledger(out / "mailstorm.duckdb")] == [str(live)]


def test_opening_a_fifo_refuses_it_without_waiting(tmp_path: Path) -> None:
    """The check at open time too: a file swapped for a FIFO after discovery."""
    fifo = tmp_path / "mail.log"
    os.mkfifo(fifo)
    code = ("import sys\nfrom detector.errors import InputError\n"
            "from detector.sources import open_binary\n"
            "try:\n    open_binary(sys.argv[1])\nexcept InputError as e:\n    print(e)\n")
    res = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True,
                         text=True, timeout=60)
    assert res.stdout == f"{fifo}: not a regular file\n"


def test_a_dangling_link_and_a_name_that_is_not_utf8_are_one_entry_each(
        tmp_path: Path) -> None:
    logs, out = tmp_path / "logs", tmp_path / "out"
    good = good_logs(logs)
    dangling = logs / "mail.log.2"
    dangling.symlink_to(logs / "gone.log")
    latin1 = os.path.join(os.fsencode(logs), b"caf\xe9.log")  # a Latin-1 name
    with open(latin1, "wb") as f:
        f.write(b"".join(LINES[:50]))
    shown = str(logs / "caf\\xe9.log")  # printed with its byte escaped
    expected = {str(dangling): "dangling symbolic link", shown: "file name is not UTF-8"}

    res = mailstorm(*run_args(logs, out, "-q"))
    assert res.returncode == 5, res.stderr
    assert sorted(res.stderr.splitlines()) == sorted(f"warning: skipping {p}: {why}"
                                                     for p, why in expected.items())
    assert sorted(row[0] for row in ledger(out / "mailstorm.duckdb")) == sorted(map(str, good))
    notes = _report_notes(out / "index.html")
    assert {p: notes[p] for p in expected} == {p: f"skipped: {w}" for p, w in expected.items()}


@pytest.mark.skipif(ROOT, reason=AS_ROOT)
def test_an_unreadable_file_and_an_unreadable_folder_are_one_entry_each(
        tmp_path: Path) -> None:
    logs, out = tmp_path / "logs", tmp_path / "out"
    good = good_logs(logs)
    locked_file = logs / "mail.log.3"
    locked_file.write_bytes(b"".join(LINES[:50]))
    locked_dir = logs / "mx2"
    locked_dir.mkdir()
    (locked_dir / "mail.log").write_bytes(b"".join(LINES[50:100]))
    locked_file.chmod(0)
    locked_dir.chmod(0)
    try:
        expected = {str(locked_file): "cannot open: Permission denied",
                    str(locked_dir): "cannot read folder: Permission denied"}
        res = mailstorm(*run_args(logs, out, "-q"))
        assert res.returncode == 5, res.stderr
        assert sorted(res.stderr.splitlines()) == sorted(f"warning: skipping {p}: {why}"
                                                         for p, why in expected.items())
        rows = ledger(out / "mailstorm.duckdb")
        assert sorted(row[0] for row in rows) == sorted(map(str, good))
        notes = _report_notes(out / "index.html")
        assert {p: notes[p] for p in expected} == {p: f"skipped: {w}"
                                                   for p, w in expected.items()}
    finally:
        locked_dir.chmod(0o755)


def test_a_night_with_a_truncated_gz_a_dangling_link_and_a_latin1_name_reads_the_rest(
        tmp_path: Path) -> None:
    """Issue 12.3: none of them stops the night. One warning line each, naming the file and
    why; the rest is read; the report lists each; exit 5. The truncated .gz (gzip still
    writing it: a logrotate race) keeps the lines before its damage, and the ledger reads
    on from there: the same night again adds nothing, the whole file adds the rest."""
    logs, out = tmp_path / "logs", tmp_path / "out"
    good = good_logs(logs)
    whole = gzip.compress(b"".join(LINES[1000:3000]))  # 300 KB: damaged past the 64 KiB head
    cut = logs / "mx2.log.1.gz"
    cut.write_bytes(whole[: len(whole) * 6 // 10])
    before_damage = zlib.decompressobj(31).decompress(cut.read_bytes())
    kept = before_damage.count(b"\n")  # every whole line gzip itself can give
    assert 300 < kept < 2000
    dangling = logs / "mail.log.2.gz"
    dangling.symlink_to(logs / "gone.gz")
    latin1 = os.path.join(os.fsencode(logs), b"caf\xe9.log")
    with open(latin1, "wb") as f:
        f.write(b"".join(LINES[3000:3050]))
    shown = str(logs / "caf\\xe9.log")
    damage = f"truncated gzip after line {kept:,}: the lines before it are read, the rest is not"

    res = mailstorm(*run_args(logs, out, "-q"))

    assert res.returncode == 5, res.stderr
    assert sorted(res.stderr.splitlines()) == sorted([
        f"warning: skipping {dangling}: dangling symbolic link",
        f"warning: skipping {shown}: file name is not UTF-8",
        f"warning: {cut}: {damage}"])
    lines_of = {row[0]: row[5] for row in ledger(out / "mailstorm.duckdb")}
    assert lines_of == {str(good[0]): 300, str(good[1]): 300, str(cut): kept}
    notes = _report_notes(out / "index.html")
    assert {p: notes[p] for p in (str(dangling), shown, str(cut))} == {
        str(dangling): "skipped: dangling symbolic link",
        shown: "skipped: file name is not UTF-8", str(cut): f"in this run: {damage}"}
    assert "3 inputs were not read in full in this run" in (out / "index.html").read_text()

    # the next night, nothing new and the file still damaged: 4 (nothing read) beats 5
    again = invoke("run", *run_args(logs, out, "-q")[1:])
    assert again.exit_code == 4
    assert f"warning: {cut}: {damage}" in again.stderr.splitlines()
    assert {row[0]: row[5] for row in ledger(out / "mailstorm.duckdb")} == lines_of
    # gzip finished, the link and the odd name were cleaned up: the rest, once, exit 0
    cut.write_bytes(whole)
    dangling.unlink()
    os.unlink(latin1)
    done = invoke("run", *run_args(logs, out, "-q")[1:])
    assert (done.exit_code, done.stderr) == (0, "")
    assert {row[0]: row[5] for row in ledger(out / "mailstorm.duckdb")}[str(cut)] == 2000
    con = duckdb.connect(str(out / "mailstorm.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*), count(DISTINCT line_no) FROM events "
                           "WHERE source_file = ?", [str(cut)]).fetchone() == (2000, 2000)
    finally:
        con.close()


@pytest.mark.parametrize(("alert", "nothing_read", "not_read", "status"), [
    (False, False, False, 0), (False, False, True, 5), (False, True, True, 4),
    (True, False, True, 3), (True, True, True, 3), (True, True, False, 3)])
def test_exit_status_precedence(alert: bool, nothing_read: bool, not_read: bool,
                                status: int) -> None:
    """3 (a new incident), then 4 (nothing read), then 5 (an input not read in full)."""
    from types import SimpleNamespace

    from detector.cli import _finish
    from detector.ingest import FileResult, IngestResult

    files = [FileResult("a.log", "postfix", lines=0 if nothing_read else 10)]
    if not_read:
        files.append(FileResult("b.log.gz", None, skipped="truncated gzip"))
    incident = SimpleNamespace(severity="high", changed=alert, previous_severity=None)
    result = SimpleNamespace(incidents=[incident], ingested=IngestResult(files))
    if status == 0:
        _finish(result, "high", False, True, allow_empty=False)  # type: ignore[arg-type]
        return
    with pytest.raises(SystemExit) as exc:
        _finish(result, "high", False, True, allow_empty=False)  # type: ignore[arg-type]
    assert exc.value.code == status


def test_feb_29_in_a_year_that_is_not_leap_is_counted_and_shown(tmp_path: Path) -> None:
    """Issue 12.1: lines dated Feb 29 whose file was given a year that is not leap (its
    modification time says 2017: a copy made a year later) have no time: never silently.
    One warning per file naming the count and the year, the report counts them per file
    and says the year is probably wrong, and the warehouse keeps their text as evidence."""
    logs = tmp_path / "logs"
    logs.mkdir()
    days = [b"Feb 28"] * 100 + [b"Feb 29"] * 200 + [b"Mar  1"] * 100
    log = logs / "mail.log"
    log.write_bytes(b"".join(day + line[6:] for day, line in zip(days, LINES, strict=False)))
    when = datetime(2017, 3, 1, 12, tzinfo=UTC).timestamp()
    os.utime(log, (when, when))
    out = tmp_path / "out"

    res = mailstorm("run", str(logs), "--out", str(out), "--tz", "UTC", "-q")

    assert res.returncode == 0, res.stderr
    assert res.stderr == (
        f"warning: {log}: 200 line(s) dated Feb 29 have no time: the year they were given "
        "(2017; guessed from the modification time of mail.log) is not a leap year, so the "
        "year is probably wrong for the whole file (one that spans a year end, or was "
        "copied without its modification time): check its dates in the report; --year "
        "sets the year\n")
    html = (out / "index.html").read_text()
    assert "200 lines are dated Feb 29 in a file whose year is not a leap year" in html
    assert _report_notes(out / "index.html")[str(log)] == (
        "200 dated Feb 29 without a time (not a leap year)")
    con = duckdb.connect(str(out / "mailstorm.duckdb"), read_only=True)
    try:
        undated = con.execute("SELECT line_no, raw FROM events WHERE ts IS NULL "
                              "ORDER BY line_no").fetchall()
    finally:
        con.close()
    assert [n for n, _ in undated] == list(range(101, 301))
    assert all(raw.startswith("Feb 29 ") for _, raw in undated)

    # the right year (2016 is leap): every line has its time, nothing to say
    res = invoke("run", str(logs), "--out", str(tmp_path / "right"), "--tz", "UTC",
                 "--year", "2016", "-q")
    assert (res.exit_code, res.stderr) == (0, "")
    assert "dated Feb 29" not in (tmp_path / "right" / "index.html").read_text()


def on_a_terminal(*args: str) -> tuple[int, str]:
    """The CLI with stderr (and stdout) on a real pseudo-terminal: (status, what it shows)."""
    import pty
    import select

    master, slave = pty.openpty()
    code = "import sys\nfrom detector.cli import main\nmain(sys.argv[1:], prog_name='mailstorm')\n"
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, env={**os.environ, "COLUMNS": "120"})
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 1)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the process closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
            elif proc.poll() is not None:
                break
        status = proc.wait(timeout=60)
    finally:
        proc.kill()
        os.close(master)
    return status, shown.decode("utf-8", "replace").replace("\r\n", "\n")


def test_progress_shows_on_a_terminal_and_nowhere_else(tmp_path: Path) -> None:
    """Issue 12.5: on a terminal, reading shows bytes read of the total, a percentage and
    the time left, and each later stage its time; with stderr not a terminal, or with -q,
    stderr holds nothing but warnings and errors."""
    logs = tmp_path / "logs"
    good = good_logs(logs)
    total = sum(p.stat().st_size for p in good)
    status, shown = on_a_terminal(*run_args(logs, tmp_path / "tty"))
    assert status == 0, shown
    bars = re.findall(r"reading \[[#-]{24}\] +(\d+)%  \S+ k?B of (\S+ k?B)  (\S+) left", shown)
    assert bars and bars[-1][0] == "100"  # the last drawing of the bar: all of it
    assert {of for _, of, _ in bars} == {f"{total / 1000:.1f} kB"}  # bytes on disk
    assert f"read {total / 1000:.1f} kB of {total / 1000:.1f} kB in " in shown
    assert re.search(r"\rrunning \d+ rules: \d+\.\d s\n", shown.replace("\x1b[K", ""))
    assert re.search(r"\n0 incident\(s\), 0 new or grown; report: ", shown)

    # not a terminal: nothing at all on a night without news
    res = mailstorm(*run_args(logs, tmp_path / "pipe"))
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")
    # -q on a terminal: the warnings, and nothing else
    (logs / "mail.log.2.gz").symlink_to(logs / "gone.gz")
    status, shown = on_a_terminal(*run_args(logs, tmp_path / "quiet", "-q"))
    assert (status, shown) == (5, f"warning: skipping {logs / 'mail.log.2.gz'}: "
                                  "dangling symbolic link\n")


def test_discover_names_what_it_cannot_read(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_bytes(b"x\n")
    os.mkfifo(tmp_path / "b.log")
    (tmp_path / "c.log").symlink_to(tmp_path / "nowhere")
    (tmp_path / "d.log").symlink_to(tmp_path / "d.log")  # a loop
    found = {os.path.basename(f.path): f.why_not for f in discover([str(tmp_path)])}
    assert found == {"a.log": None, "b.log": "not a regular file",
                     "c.log": "dangling symbolic link",
                     "d.log": "cannot open: Too many levels of symbolic links"}


# --- 2. bounded memory: long lines cut, bombs stopped -----------------------------------------


def lines_of(path: Path, max_line: int, batch_bytes: int) -> tuple[list[str], int, int]:
    batches = iter_batches(str(path), batch_bytes, max_line=max_line)
    rows: list[str | None] = []
    consumed = 0
    for frame, read_to in batches:
        consumed = read_to
        assert frame["line_no"].to_list() == list(range(len(rows) + 1,
                                                        len(rows) + 1 + frame.height))
        rows.extend(frame["raw"].to_list())
    return rows, batches.cut_lines, consumed


@pytest.mark.parametrize("batch_bytes", [5, 64, 333, 4096, 1 << 20])
def test_long_lines_are_cut_and_counted_whatever_the_batches(tmp_path: Path,
                                                             batch_bytes: int) -> None:
    limit = 100
    lines = [b"short", b"a" * 100, b"b" * 101, b"c" * 5000, b"", b"d" * 250 + b"\r",
             "é".encode() * 60, b"e" * 99 + "é".encode(), b"tail"]
    path = tmp_path / "mail.log"
    path.write_bytes(b"\n".join(lines) + b"\n" + b"f" * 777)  # an unterminated last line
    rows, cut, consumed = lines_of(path, limit, batch_bytes)
    # (an empty line is a null, as it always was)
    assert rows == ["short", "a" * 100, "b" * 100, "c" * 100, None, "d" * 100, "é" * 50,
                    "e" * 99, "tail", "f" * 100]
    assert cut == 6  # b, c, d, é, e..é, and the unterminated f line
    assert consumed == path.stat().st_size - 777  # whole lines only, cut ones included


def test_lines_under_the_limit_read_as_before(tmp_path: Path) -> None:
    path = tmp_path / "mail.log"
    path.write_bytes(b"".join(LINES))
    rows, cut, consumed = lines_of(path, MAX_LINE, 4096)
    assert rows == [x.decode().rstrip("\n") for x in LINES]
    assert (cut, consumed) == (0, len(b"".join(LINES)))


def test_ingest_counts_the_cut_lines_of_each_file(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    huge = b"Nov 14 06:00:00 mx postfix/smtpd[1]: warning: " + b"x" * (3 << 20) + b"\n"
    log.write_bytes(b"".join(LINES[:100]) + huge + b"".join(LINES[100:200]))
    with Warehouse(tmp_path / "w.duckdb") as wh:
        result = ingest(wh, discover([str(log)]), year=2016, batch_bytes=1 << 20,
                        max_line=4096)
    [f] = result.files
    assert (f.lines, f.cut_lines, f.skipped) == (201, 1, None)
    # a later run finds it ingested whole: the cut line's bytes were consumed
    with Warehouse(tmp_path / "w.duckdb") as wh:
        [again] = ingest(wh, discover([str(log)]), year=2016).files
    assert again.skipped == "already ingested"


def test_a_decompression_bomb_stops_its_file_and_keeps_what_was_read(tmp_path: Path) -> None:
    assert len(GIB_OF_ZEROS) < 1024
    logs, out = tmp_path / "logs", tmp_path / "out"
    good = logs / "a.log"
    logs.mkdir()
    good.write_bytes(b"".join(LINES[:300]))
    bomb = logs / "z.log.bz2"  # looks like a log for its first lines, then a GiB of zeros
    bomb.write_bytes(bz2.compress(b"".join(LINES[300:400])) + GIB_OF_ZEROS)

    res = mailstorm(*run_args(logs, out, "-q"))

    assert res.returncode == 1
    assert error_line(res) == (
        f"Error: {bomb}: bz2 stream decompresses to more than {RATIO_FLOOR:,} bytes "
        "(1000x its size): stopped, a decompression bomb?")
    assert [(row[0], row[5]) for row in ledger(out / "mailstorm.duckdb")] == [(str(good), 300)]


# --- 3. standard input: a bounded spool, always removed ---------------------------------------


def spool_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    spool = tmp_path / "spool"
    spool.mkdir()
    return {**os.environ, "TMPDIR": str(spool)}, spool


def test_stdin_is_read_and_its_spool_removed(tmp_path: Path) -> None:
    env, spool = spool_env(tmp_path)
    data = tmp_path / "in.log"
    data.write_bytes(b"".join(LINES) * 3)  # more than one pipe buffer
    with data.open("rb") as stdin:
        res = mailstorm(*run_args("-", tmp_path / "out", "-q"), stdin=stdin, env=env)
    assert res.returncode == 0, res.stderr
    assert list(spool.iterdir()) == []


def test_endless_stdin_stops_at_the_limit_and_leaves_nothing(tmp_path: Path) -> None:
    env, spool = spool_env(tmp_path)
    limit = 8 << 20
    with open("/dev/zero", "rb") as zero:
        res = mailstorm(*run_args("-", tmp_path / "out"), stdin=zero, env=env,
                        stdin_limit=limit)
    assert res.returncode == 1
    assert error_line(res) == (f"Error: standard input: more than {limit:,} bytes, the most "
                               "it may hold; read so much from a file instead")
    assert list(spool.iterdir()) == []
    assert STDIN_LIMIT >= 1 << 30  # the real limit holds a night of a busy server


def test_an_interrupted_spool_is_removed(tmp_path: Path) -> None:
    env, spool = spool_env(tmp_path)
    code = "from detector.cli import main\nmain(prog_name='mailstorm')\n"
    proc = subprocess.Popen([sys.executable, "-c", code, *run_args("-", tmp_path / "out")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env,
                            # a job started in the background ignores SIGINT: undo that
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdin is not None
        proc.stdin.write(b"".join(LINES) * 10)  # and the pipe stays open: still spooling
        proc.stdin.flush()
        deadline = time.monotonic() + 60
        while not list(spool.rglob("stdin.log")):
            assert time.monotonic() < deadline, "the spool never appeared"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode != 0
    assert list(spool.iterdir()) == []


def test_max_line_option_cuts_and_counts(tmp_path: Path) -> None:
    # the CLI's --max-line reaches the reader: a 5,000-byte line cut to 1,000 and counted
    from click.testing import CliRunner

    from detector.cli import main as cli_main

    log = tmp_path / "mail.log"
    line = "Nov 14 09:00:00 mx1 postfix/smtpd[1]: connect from x" + "y" * 5000 + "[192.0.2.1]"
    log.write_text(line + "\n")
    res = CliRunner().invoke(cli_main, ["run", str(log), "--out", str(tmp_path / "o"),
                                        "--year", "2016", "--tz", "UTC", "--max-line", "1000"])
    assert res.exit_code == 0, res.output
    assert f"warning: {log}: 1 line(s) longer than 1,000 bytes cut to 1,000" in res.output


#: Exim lines (ISO stamps) of one message dated the last day Python's datetime has, and
#: of one dated its first
FAR_LINES = [
    "9999-12-31 10:02:11 1c66j7-0000Wa-3A <= a@b.example H=x [192.0.2.1] P=esmtp S=1 "
    "id=m2@b.example",
    '9999-12-31 23:59:59 1c66j7-0000Wa-3A => c@d.example R=dnslookup T=remote_smtp '
    'H=mx.d.example [192.0.2.9] C="250 OK"',
    "9999-12-31 23:59:59 1c66j7-0000Wa-3A Completed",
]
NEAR_LINES = [
    "0001-01-01 00:00:01 1c66j7-0000Wa-3B <= a@b.example H=x [192.0.2.1] P=esmtp S=1 "
    "id=m3@b.example",
    '0001-01-01 00:00:02 1c66j7-0000Wa-3B => c@d.example R=dnslookup T=remote_smtp '
    'H=mx.d.example [192.0.2.9] C="250 OK"',
]


def test_lines_dated_year_1_and_9999_are_read_and_shown_by_the_days_they_have(
        tmp_path: Path) -> None:
    """A log's wildest dates (a clock gone wrong, a forged line) are no crash: the run ends
    well, the dataset keeps each line under its own day (9999-12-31 has no next day to
    end a range before), and the day view lists the two days with traffic, not the
    3.65 million quiet days between them."""
    log = tmp_path / "far.log"
    log.write_text("\n".join(FAR_LINES + NEAR_LINES) + "\n", encoding="utf-8")
    out = tmp_path / "out"

    res = invoke("run", str(log), "--out", str(out), "-q")

    assert res.exit_code == 0, res.output
    days = {p.parent.name: pq.read_metadata(p).num_rows
            for p in (out / "dataset" / "events").glob("*/*.parquet")}
    assert days == {"day=9999-12-31": len(FAR_LINES), "day=0001-01-01": len(NEAR_LINES)}
    with Warehouse(out / "mailstorm.duckdb") as wh:
        traffic = day_overview(wh)["traffic"]
    assert [(t["start"].date().isoformat(), t["delivered"]) for t in traffic] == [
        ("0001-01-01", 1), ("9999-12-31", 1)]
    assert traffic[-1]["end"] == datetime.max.replace(tzinfo=UTC)
