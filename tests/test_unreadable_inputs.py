"""Inputs mailstorm cannot read, end to end: every input is sniffed before anything loads.

A file of unknown format stops the run: one error names every file that cannot be read
and the warehouse stays as it was; with --skip-unknown the rest loads and the report says
which files were skipped and why. A file that cannot be read (issue 12: a truncated .gz,
a dangling link...) never stops the run: it is skipped, or read up to its damage, with a
warning, and the run exits 5. The facts checked come from outside the code: the files
written here, the ledger table in the DuckDB file, the exit status and the text on stderr.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
import subprocess
from html import unescape
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.errors import InputError
from detector.sources import read_head

REPO = Path(__file__).resolve().parents[1]
SAMPLE = (REPO / "sample_logs" / "mail.log").read_bytes()
LINES = SAMPLE.splitlines(keepends=True)


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def ledger(db: Path) -> list[tuple]:
    """The warehouse's ledger of ingested files, read straight from the DuckDB file."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT * FROM files ORDER BY path").fetchall()
    finally:
        con.close()


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def good_logs(folder: Path) -> list[Path]:
    """Two real Postfix logs of one rotation group: a gzipped older one and the live one."""
    folder.mkdir(parents=True, exist_ok=True)
    older = folder / "mail.log.1.gz"
    older.write_bytes(gzip.compress(b"".join(LINES[:300])))
    live = folder / "mail.log"
    live.write_bytes(b"".join(LINES[300:600]))
    return [older, live]


def bad_logs(folder: Path) -> dict[Path, str]:
    """Three files no run can read whole, with the reason each must be given (the
    truncated one: when it is read, up to its damage)."""
    whole = folder / "whole.gz"
    # under the sniffed head; lines of no other file (a truncated copy of a file read
    # whole is that file to the ledger: its lines would count once, under the other name)
    whole.write_bytes(gzip.compress(b"".join(LINES[700:900])))
    truncated = folder / "cut.log.gz"  # cut the way a full disk or a killed copy does
    with truncated.open("wb") as out:
        subprocess.run(["head", "-c", str(whole.stat().st_size // 2), str(whole)],
                       stdout=out, check=True)
    whole.unlink()
    binary = folder / "core.dump"
    binary.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(range(256)) * 64)
    notes = folder / "notes.log"
    notes.write_text("Meeting notes\n- upgrade the MX on Tuesday\n- rotate logs weekly\n")
    return {truncated: "truncated gzip", binary: "unknown format", notes: "unknown format"}


def test_unreadable_inputs_stop_the_run_and_leave_the_warehouse_as_it_was(
        tmp_path: Path) -> None:
    logs, out = tmp_path / "logs", tmp_path / "out"
    good = good_logs(logs)
    first = invoke("run", str(logs), "--out", str(out), "--year", "2016", "--tz", "UTC", "-q")
    assert first.exit_code == 0, first.output
    db = out / "mailstorm.duckdb"
    before = ledger(db)
    assert sorted(row[0] for row in before) == sorted(map(str, good))
    warehouse_before = tree(out)
    # a new readable file and three unreadable ones join the folder
    extra = logs / "mx2.log"
    extra.write_bytes(b"".join(LINES[600:700]))
    bad = bad_logs(logs)

    res = invoke("run", str(logs), "--out", str(out), "--year", "2016", "--tz", "UTC")

    assert res.exit_code == 1
    assert res.stdout == ""
    [line] = res.stderr.splitlines()  # one line, and no progress: nothing was read
    # the files of unknown format stop the run (the truncated one gives lines: it is met
    # only when read)
    assert line.startswith("Error: cannot read 2 of 6 inputs: ")
    assert line.endswith("; nothing was loaded; use --skip-unknown to load the rest")
    named = re.findall(r"(\S+) \(([^)]+)\)", line.split(": ", 2)[2])
    assert sorted(named) == sorted((str(p), why) for p, why in bad.items()
                                   if why == "unknown format")
    # nothing loaded: the ledger, the parts and the report are byte for byte as before
    assert ledger(db) == before
    assert tree(out) == warehouse_before


def test_a_first_run_with_an_unreadable_input_creates_no_warehouse(tmp_path: Path) -> None:
    logs, out = tmp_path / "logs", tmp_path / "out"
    good_logs(logs)
    (logs / "notes.log").write_text("hello\nnot a mail log\n")
    res = invoke("run", str(logs), "--out", str(out), "--year", "2016", "-q")
    assert res.exit_code == 1
    assert res.stderr == (f"Error: cannot read 1 of 3 inputs: {logs / 'notes.log'} "
                          "(unknown format); nothing was loaded; use --skip-unknown to load "
                          "the rest\n")
    assert not out.exists()


def _report_notes(index: Path) -> dict[str, str]:
    """File -> the Note cell of its row in the report's input-files table."""
    html = index.read_text()
    table = html[html.index('<table class="inputs">'):]
    table = table[:table.index("</table>")]
    rows = re.findall(r'<td class="text"><code>(.*?)</code></td>.*?<td>([^<]*)</td>\s*</tr>',
                      table, flags=re.S)
    return {unescape(path): unescape(note) for path, note in rows}


def test_skip_unknown_loads_the_rest_and_the_report_says_why(tmp_path: Path) -> None:
    logs, out = tmp_path / "logs", tmp_path / "out"
    good = good_logs(logs)
    bad = bad_logs(logs)

    res = invoke("run", str(logs), "--out", str(out), "--year", "2016", "--tz", "UTC",
                 "--skip-unknown", "-q")

    assert res.exit_code == 5, res.output  # the truncated file was read only in part
    [truncated] = [p for p, why in bad.items() if why == "truncated gzip"]
    rows = ledger(out / "mailstorm.duckdb")
    lines_of = {row[0]: row[5] for row in rows}  # the ledger's `lines` column
    kept = lines_of.pop(str(truncated))
    assert 0 < kept < 200  # the lines before the damage, nothing after
    assert lines_of == {str(good[0]): 300, str(good[1]): 300}
    damage = f"truncated gzip after line {kept:,}: the lines before it are read, the rest is not"
    # -q: the warnings, and nothing else
    assert sorted(res.stderr.splitlines()) == sorted(
        [f"warning: skipping {p}: {why}" for p, why in bad.items() if p != truncated]
        + [f"warning: {truncated}: {damage}"])
    notes = _report_notes(out / "index.html")
    assert {p: notes[str(p)] for p in bad} == {
        p: f"in this run: {damage}" if p == truncated else f"skipped: {why}"
        for p, why in bad.items()}
    assert [notes[str(p)] for p in good] == ["", ""]


def test_a_forced_format_leaves_only_files_that_cannot_be_decompressed(tmp_path: Path) -> None:
    logs, out = tmp_path / "logs", tmp_path / "out"
    good_logs(logs)
    bad = bad_logs(logs)
    [truncated] = [p for p, why in bad.items() if why == "truncated gzip"]
    res = invoke("run", str(logs), "--out", str(out), "--format", "postfix", "--year", "2016",
                 "-q")
    assert res.exit_code == 5  # every file read; one of them up to its damage
    [line] = res.stderr.splitlines()
    assert line.startswith(f"warning: {truncated}: truncated gzip after line ")


@pytest.mark.parametrize(("name", "compress", "why", "cut"), [
    ("a.log.gz", gzip.compress, "truncated gzip", 10),  # its header, and nothing of the data
    ("a.log.bz2", bz2.compress, "truncated bz2", None),  # inside its first (only) block
    ("a.log.xz", lzma.compress, "truncated xz", 24),
])
def test_the_reason_names_the_compression(tmp_path: Path, name: str, compress, why: str,
                                          cut: int | None) -> None:
    data = compress(b"".join(LINES[:200]))  # cut before the first line can be decompressed
    path = tmp_path / name
    path.write_bytes(data[: cut or len(data) // 2])
    with pytest.raises(InputError) as exc:
        read_head(str(path), 65536)
    assert (exc.value.path, exc.value.message) == (str(path), why)


def test_a_damaged_deflate_stream_is_a_corrupt_gzip(tmp_path: Path) -> None:
    broken = bytearray(gzip.compress(b"".join(LINES[:50])))
    broken[10] = 0x07  # right after the 10-byte header: BFINAL=1, BTYPE=0b11 (invalid)
    path = tmp_path / "a.log.gz"
    path.write_bytes(bytes(broken))
    with pytest.raises(InputError) as exc:
        read_head(str(path), 65536)
    assert exc.value.message == "corrupt gzip"
