"""Ingest into a real DuckDB warehouse: year inference, time zones, idempotent resume, and
what happens to stored events when a file cannot be read."""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from detector.errors import UnreadableInputsError, UsageError
from detector.ingest import ingest
from detector.sources import discover
from detector.warehouse import Warehouse

MSG = "postfix/smtpd[4711]: connect from client{n}.example[192.0.2.{n}]"


def line(stamp: str, n: int = 1) -> str:
    """A Postfix line with the given header timestamp (RFC 3164 or RFC 3339)."""
    return f"{stamp} mx1 {MSG.format(n=n)}"


def write(path: Path, stamps: list[str], first_n: int = 1) -> Path:
    path.write_text("".join(line(s, first_n + i) + "\n" for i, s in enumerate(stamps)))
    return path


def set_mtime(path: Path, when: datetime) -> None:
    os.utime(path, (when.timestamp(), when.timestamp()))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def wh(tmp_path: Path) -> Iterator[Warehouse]:
    with Warehouse(tmp_path / "w.duckdb") as w:
        yield w


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    """The tests' logs, in a folder of their own so that reading the folder is possible."""
    d = tmp_path / "logs"
    d.mkdir()
    return d


def stamps_of(wh: Warehouse, path: Path) -> list[datetime]:
    rows = wh.query("SELECT ts FROM events WHERE source_file = ? ORDER BY line_no", [str(path)])
    return rows["ts"].to_list()


def count(wh: Warehouse, path: Path | None = None) -> int:
    if path is None:
        return wh.scalar("SELECT count(*) FROM events")
    return wh.scalar("SELECT count(*) FROM events WHERE source_file = ?", [str(path)])


# --- year inference -------------------------------------------------------------------------


def test_new_year_inside_one_file_from_mtime(logdir: Path, wh: Warehouse) -> None:
    p = write(logdir / "mail.log", ["Dec 31 23:59:58", "Dec 31 23:59:59", "Jan  1 00:00:01",
                                      "Jan  1 00:00:05"])
    set_mtime(p, utc(2024, 1, 2, 12))
    ingest(wh, discover([str(p)]))
    assert stamps_of(wh, p) == [utc(2023, 12, 31, 23, 59, 58), utc(2023, 12, 31, 23, 59, 59),
                                utc(2024, 1, 1, 0, 0, 1), utc(2024, 1, 1, 0, 0, 5)]


def test_new_year_across_a_rotation_group(logdir: Path, wh: Warehouse) -> None:
    old = write(logdir / "mail.log.1", ["Dec 30 08:00:00", "Dec 31 23:59:59"])
    new = write(logdir / "mail.log", ["Jan  1 00:00:03", "Jan  2 09:30:00"], first_n=3)
    set_mtime(old, utc(2025, 1, 1, 0, 0, 10))
    set_mtime(new, utc(2025, 1, 2, 10))
    result = ingest(wh, discover([str(logdir)]))
    assert [Path(f.path).name for f in result.files] == ["mail.log.1", "mail.log"]
    assert stamps_of(wh, old) == [utc(2024, 12, 30, 8), utc(2024, 12, 31, 23, 59, 59)]
    assert stamps_of(wh, new) == [utc(2025, 1, 1, 0, 0, 3), utc(2025, 1, 2, 9, 30)]
    # line numbers are per file
    lines = wh.query("SELECT source_file, line_no, client FROM events ORDER BY ts")
    assert lines["line_no"].to_list() == [1, 2, 1, 2]
    assert lines["client"].to_list() == [f"client{n}.example[192.0.2.{n}]" for n in (1, 2, 3, 4)]


def test_last_line_of_dec_31_in_a_file_touched_on_jan_1(logdir: Path, wh: Warehouse) -> None:
    p = write(logdir / "mail.log.1", ["Dec 30 10:00:00", "Dec 31 23:59:59"])
    set_mtime(p, utc(2025, 1, 1, 6, 25))  # logrotate ran on New Year's morning
    ingest(wh, discover([str(p)]))
    assert stamps_of(wh, p) == [utc(2024, 12, 30, 10), utc(2024, 12, 31, 23, 59, 59)]


@pytest.mark.parametrize("mtime, last, year", [
    (utc(2024, 1, 31, 23, 59), "Feb  1 00:00:30", 2024),  # clock a little ahead, month end
    (utc(2024, 3, 1, 0, 5), "Feb 29 23:59:00", 2024),  # leap day, same year
])
def test_year_from_mtime_at_month_ends(logdir: Path, wh: Warehouse, mtime: datetime, last: str,
                                       year: int) -> None:
    p = write(logdir / "mail.log", [last])
    set_mtime(p, mtime)
    ingest(wh, discover([str(p)]))
    assert stamps_of(wh, p)[0].year == year


def test_impossible_date_gets_no_timestamp_not_a_wrong_one(logdir: Path, wh: Warehouse) -> None:
    p = write(logdir / "mail.log", ["Feb 29 23:59:00"])
    set_mtime(p, utc(2023, 3, 1, 0, 5))  # 2023 has no Feb 29
    ingest(wh, discover([str(p)]))
    assert stamps_of(wh, p) == [None]


def test_year_argument_is_the_year_of_the_first_line(logdir: Path, wh: Warehouse) -> None:
    old = write(logdir / "mail.log.1", ["Dec 31 22:00:00"])
    new = write(logdir / "mail.log", ["Jan  1 01:00:00", "Mar  3 12:00:00"], first_n=2)
    for p in (old, new):
        set_mtime(p, utc(2030, 6, 1))  # --year wins over the files' dates
    ingest(wh, discover([str(logdir)]), year=2019)
    assert stamps_of(wh, old) == [utc(2019, 12, 31, 22)]
    assert stamps_of(wh, new) == [utc(2020, 1, 1, 1), utc(2020, 3, 3, 12)]


@pytest.mark.parametrize("batch_bytes", [1 << 20, 80])
def test_straggler_around_midnight_stays_in_the_old_year(logdir: Path, wh: Warehouse,
                                                         batch_bytes: int) -> None:
    p = write(logdir / "mail.log", ["Dec 31 23:59:58", "Jan  1 00:00:01", "Dec 31 23:59:59",
                                      "Jan  1 00:00:02", "Jan  1 00:00:03"])
    ingest(wh, discover([str(p)]), year=2023, batch_bytes=batch_bytes)
    assert stamps_of(wh, p) == [utc(2023, 12, 31, 23, 59, 58), utc(2024, 1, 1, 0, 0, 1),
                                utc(2023, 12, 31, 23, 59, 59), utc(2024, 1, 1, 0, 0, 2),
                                utc(2024, 1, 1, 0, 0, 3)]


def test_rfc3339_offsets_end_up_utc(logdir: Path, wh: Warehouse) -> None:
    p = write(logdir / "mail.log", ["2024-08-26T03:33:38.572449+02:00",
                                      "2024-08-26T01:33:38-05:00", "2024-12-31T23:30:00-01:00",
                                      "2024-08-26T01:33:38Z"])
    ingest(wh, discover([str(p)]), tz="Europe/London")  # offsets win over --tz
    assert stamps_of(wh, p) == [utc(2024, 8, 26, 1, 33, 38, 572449), utc(2024, 8, 26, 6, 33, 38),
                                utc(2025, 1, 1, 0, 30), utc(2024, 8, 26, 1, 33, 38)]


def test_zone_less_lines_are_read_in_the_given_zone(logdir: Path, wh: Warehouse) -> None:
    # British Summer Time starts on 2024-03-31: the same wall clock moves one hour in UTC
    p = write(logdir / "mail.log", ["Mar 30 12:00:00", "Apr  2 12:00:00"])
    iso = write(logdir / "iso.log", ["2024-07-15T12:00:00", "2024-01-15T12:00:00"])
    ingest(wh, discover([str(p), str(iso)]), tz="Europe/London", year=2024)
    assert stamps_of(wh, p) == [utc(2024, 3, 30, 12), utc(2024, 4, 2, 11)]
    assert stamps_of(wh, iso) == [utc(2024, 7, 15, 11), utc(2024, 1, 15, 12)]


def test_mtime_is_read_in_the_given_zone(logdir: Path, wh: Warehouse) -> None:
    # 2025-01-01 00:30 in Auckland is still 2024 in UTC: the file's end year is 2025
    p = write(logdir / "mail.log", ["Dec 31 23:50:00", "Jan  1 00:20:00"])
    set_mtime(p, datetime(2025, 1, 1, 0, 30, tzinfo=ZoneInfo("Pacific/Auckland")))
    ingest(wh, discover([str(p)]), tz="Pacific/Auckland")
    assert stamps_of(wh, p) == [utc(2024, 12, 31, 10, 50), utc(2024, 12, 31, 11, 20)]


def test_unknown_time_zone_is_a_usage_error(logdir: Path, wh: Warehouse) -> None:
    p = write(logdir / "mail.log", ["Mar 30 12:00:00"])
    with pytest.raises(UsageError, match="Mars/Olympus"):
        ingest(wh, discover([str(p)]), tz="Mars/Olympus")
    assert count(wh) == 0


# --- idempotency and resume -----------------------------------------------------------------


def test_ingesting_the_same_file_twice_adds_nothing(logdir: Path, wh: Warehouse) -> None:
    p = write(logdir / "mail.log", ["Jun 10 06:00:00", "Jun 10 06:00:01", "Jun 10 06:00:02"])
    first = ingest(wh, discover([str(p)]), year=2024)
    assert first.lines == 3 and first.files[0].skipped is None
    assert first.files[0].format == "postfix"
    second = ingest(wh, discover([str(p)]), year=2024)
    assert second.files[0].skipped == "already ingested"
    assert second.lines == 0
    assert count(wh) == 3
    assert wh.scalar("SELECT count(*) FROM files") == 1


def test_appended_lines_are_added_with_their_line_numbers(logdir: Path, wh: Warehouse) -> None:
    p = write(logdir / "mail.log", ["Dec 31 23:00:00", "Dec 31 23:30:00"])
    set_mtime(p, utc(2023, 12, 31, 23, 31))
    ingest(wh, discover([str(p)]))
    with p.open("a") as f:  # the live log grows past midnight
        f.write(line("Dec 31 23:59:59", 3) + "\n" + line("Jan  1 00:10:00", 4) + "\n")
    # copied off the server later: the mtime says nothing, the stored prefix anchors the year
    set_mtime(p, utc(2026, 3, 1))
    again = ingest(wh, discover([str(p)]))
    assert again.lines == 2
    rows = wh.query("SELECT line_no, ts, client FROM events ORDER BY line_no")
    assert rows["line_no"].to_list() == [1, 2, 3, 4]
    assert rows["client"].to_list() == [f"client{n}.example[192.0.2.{n}]" for n in (1, 2, 3, 4)]
    assert rows["ts"].to_list() == [utc(2023, 12, 31, 23), utc(2023, 12, 31, 23, 30),
                                    utc(2023, 12, 31, 23, 59, 59), utc(2024, 1, 1, 0, 10)]
    assert ingest(wh, discover([str(p)])).files[0].skipped == "already ingested"
    assert wh.scalar("SELECT lines FROM files") == 4


def test_line_half_written_at_ingest_time_is_whole_after_resume(logdir: Path,
                                                               wh: Warehouse) -> None:
    p = logdir / "mail.log"
    full = line("Jun 10 06:00:01", 2)
    p.write_text(line("Jun 10 06:00:00", 1) + "\n" + full[:40])
    ingest(wh, discover([str(p)]), year=2024)
    # the half line, as it stood, did not parse
    assert wh.scalar_row("SELECT lines, unparsed FROM files") == (1, 1)
    with p.open("a") as f:
        f.write(full[40:] + "\n")
    ingest(wh, discover([str(p)]), year=2024)
    rows = wh.query("SELECT line_no, kind, client FROM events ORDER BY line_no, client")
    assert rows.rows() == [(1, "smtpd_connect", "client1.example[192.0.2.1]"),
                           (2, "smtpd_connect", "client2.example[192.0.2.2]")]
    # the ledger counts the two whole lines, and no unparsed line: the half one was read
    # again whole, and both lines of the file are connects
    assert wh.scalar_row("SELECT lines, unparsed FROM files") == (2, 0)


def test_rotated_gzip_copy_adds_nothing(logdir: Path, wh: Warehouse) -> None:
    live = write(logdir / "mail.log", ["Jun 10 06:00:00", "Jun 10 06:00:01"])
    ingest(wh, discover([str(live)]), year=2024)
    # logrotate: the ingested log becomes mail.log.1.gz, a new mail.log starts
    rotated = logdir / "mail.log.1.gz"
    rotated.write_bytes(gzip.compress(live.read_bytes()))
    write(live, ["Jun 11 06:00:00", "Jun 11 06:00:01", "Jun 11 06:00:02"], first_n=3)
    result = ingest(wh, discover([str(logdir)]), year=2024)
    assert [(Path(f.path).name, f.skipped, f.lines) for f in result.files] == [
        ("mail.log.1.gz", "already ingested", 0), ("mail.log", None, 3)]
    assert count(wh) == 5
    assert count(wh, rotated) == 0


def test_rotated_copy_that_grew_adds_only_the_tail(logdir: Path, wh: Warehouse) -> None:
    live = write(logdir / "mail.log", ["Jun 10 06:00:00", "Jun 10 06:00:01"])
    ingest(wh, discover([str(live)]), year=2024)
    grown = live.read_bytes() + (line("Jun 10 06:00:02", 3) + "\n").encode()
    (logdir / "mail.log.1.gz").write_bytes(gzip.compress(grown))
    live.unlink()
    result = ingest(wh, discover([str(logdir)]), year=2024)
    assert result.lines == 1
    tail = wh.query("SELECT source_file, line_no, ts FROM events WHERE line_no = 3")
    assert tail.rows() == [(str(logdir / "mail.log.1.gz"), 3, utc(2024, 6, 10, 6, 0, 2))]
    assert count(wh) == 3


# --- failures keep what was stored ----------------------------------------------------------


@pytest.mark.parametrize("size", ["small", "large"])
def test_a_truncated_gzip_keeps_the_lines_before_the_damage_and_reads_on(
        logdir: Path, wh: Warehouse, size: str) -> None:
    """Issue 12: a truncated .gz (a logrotate race) no longer stops the run. The lines
    before the damage are read and committed, the file after it too; the ledger records
    the bytes read, so the file read again damaged adds nothing, and repaired adds only
    the rest. small: damaged inside the 64 KiB head that is sniffed; large: past it."""
    first = write(logdir / "a.log", ["Jun 10 06:00:00", "Jun 10 06:00:01"])
    ingest(wh, discover([str(first)]))
    n = 50 if size == "small" else 3000
    stamps = [f"Jun 10 08:{i // 60 % 60:02d}:{i % 60:02d}" for i in range(n)]
    text = write(logdir / "c.txt", stamps).read_bytes()
    data = gzip.compress(text)
    broken = logdir / "c.log.1.gz"
    broken.write_bytes(data[: len(data) * 3 // 4])
    after = write(logdir / "d.log", ["Jun 10 07:00:00"])
    progress: list[str] = []
    result = ingest(wh, discover([str(broken), str(after)]), batch_bytes=16384,
                    year=2024 if size == "large" else None, progress=progress.append)
    damaged, read = result.files
    kept = damaged.lines
    assert 0 < kept < n
    assert damaged.damaged == (f"truncated gzip after line {kept:,}: the lines before it "
                               "are read, the rest is not")
    assert progress.count(f"warning: {broken}: {damaged.damaged}") == 1
    assert result.not_read == [(str(broken), damaged.damaged)]
    assert (read.lines, read.damaged) == (1, None)  # the file after it is read
    assert count(wh, broken) == kept and count(wh, after) == 1 and count(wh, first) == 2
    # read again, still damaged: nothing doubled, the damage said again
    again = ingest(wh, discover([str(broken)]), batch_bytes=16384)
    assert (again.files[0].skipped, again.files[0].damaged) == ("already ingested",
                                                                 damaged.damaged)
    assert count(wh, broken) == kept
    # repaired (the race is over): only the rest is read
    broken.write_bytes(data)
    [whole] = ingest(wh, discover([str(broken)]), batch_bytes=16384).files
    assert (whole.lines, whole.damaged) == (n - kept, None)
    assert count(wh, broken) == n
    assert wh.scalar("SELECT lines FROM files WHERE path = ?", [str(broken)]) == n


def test_unknown_format_names_the_file(logdir: Path, wh: Warehouse) -> None:
    good = write(logdir / "mail.log", ["Jun 10 06:00:00"])
    odd = logdir / "notes.log"
    odd.write_text("hello\nthis is not a mail log\n")
    with pytest.raises(UnreadableInputsError) as exc:
        ingest(wh, discover([str(odd), str(good)]))
    assert exc.value.unreadable == [(str(odd), "unknown format")]
    assert str(exc.value).startswith(f"cannot read 1 of 2 inputs: {odd} (unknown format);")
    assert count(wh) == 0


def test_skip_unknown_reads_the_other_files(logdir: Path, wh: Warehouse) -> None:
    good = write(logdir / "mail.log", ["Jun 10 06:00:00", "Jun 10 06:00:01"])
    odd = logdir / "notes.log"
    odd.write_text("hello\nthis is not a mail log\n")
    messages: list[str] = []
    result = ingest(wh, discover([str(odd), str(good)]), skip_unknown=True,
                    progress=messages.append)
    assert [(f.path, f.skipped, f.lines) for f in result.files] == [
        (str(odd), "unknown format", 0), (str(good), None, 2)]
    assert count(wh, good) == 2
    assert count(wh, odd) == 0
    assert f"warning: skipping {odd}: unknown format" in messages


def test_empty_file_is_skipped(logdir: Path, wh: Warehouse) -> None:
    empty = logdir / "mail.log"
    empty.write_bytes(b"")
    result = ingest(wh, discover([str(empty)]), year=2024)
    assert result.files[0].skipped == "empty"
    assert count(wh) == 0


def test_real_corpus_log_round_trips_through_the_warehouse(logdir: Path, wh: Warehouse,
                                                           corpus_dir: Path) -> None:
    src = corpus_dir / "postfix" / "zentyal.log"
    p = logdir / "mail.log"
    shutil.copy(src, p)
    lines = src.read_bytes().count(b"\n")
    result = ingest(wh, discover([str(p)]), year=2020)
    assert result.lines == lines
    assert count(wh) == lines
    assert wh.scalar("SELECT count(*) FROM events WHERE kind IS NULL") == 0
    assert wh.scalar("SELECT max(line_no) FROM events") == lines
    assert wh.scalar("SELECT lines FROM files") == lines


def test_parts_left_by_a_crash_are_removed_on_open(logdir: Path, tmp_path: Path) -> None:
    p = write(logdir / "mail.log", ["Jun 10 06:00:00", "Jun 10 06:00:01"])
    with Warehouse(tmp_path / "w.duckdb") as w:
        ingest(w, discover([str(p)]), year=2024)
        parts = w.parts_dir
        committed = sorted(x.name for x in parts.glob("part-*.parquet"))
        # a crash between writing parts and committing them leaves files nobody recorded
        (parts / "part-orphan.parquet").write_bytes(next(parts.glob("part-*.parquet"))
                                                   .read_bytes())
        (parts / ".incoming" / "part-halfway.parquet").write_bytes(b"not parquet")
    with Warehouse(tmp_path / "w.duckdb") as w:
        assert sorted(x.name for x in parts.glob("part-*.parquet")) == committed
        assert not any((parts / ".incoming").iterdir())
        assert count(w) == 2


def test_many_small_files_give_the_same_model_as_one(tmp_path: Path) -> None:
    from detector.model.build import build_model

    sample = Path(__file__).resolve().parents[1] / "sample_logs" / "mail.log.1.gz"
    lines = gzip.decompress(sample.read_bytes()).splitlines(keepends=True)
    whole, split = tmp_path / "whole", tmp_path / "split"
    whole.mkdir()
    split.mkdir()
    (whole / "mail.log").write_bytes(b"".join(lines))
    step = len(lines) // 7 + 1
    for i in range(7):  # as from seven hosts' files, read in one run by one worker pool
        (split / f"part{i}.log").write_bytes(b"".join(lines[i * step:(i + 1) * step]))
    figures = []
    for folder in (whole, split):
        with Warehouse(tmp_path / f"{folder.name}.duckdb") as w:
            result = ingest(w, discover([str(folder)]), tz="UTC", year=2016,
                            batch_bytes=64 * 1024)
            assert result.lines == len(lines)
            build_model(w)
            figures.append(w.query("SELECT count(*) AS n, sum(deliveries) AS d, "
                                   "count(DISTINCT thread_id) AS t FROM logical_messages").rows())
    assert figures[0] == figures[1]


def test_a_copy_in_the_same_run_is_read_once(logdir: Path, wh: Warehouse) -> None:
    live = write(logdir / "mail.log", ["Jun 10 06:00:00", "Jun 10 06:00:01"])
    (logdir / "mail.log.1.gz").write_bytes(gzip.compress(live.read_bytes()))
    result = ingest(wh, discover([str(logdir)]), year=2024)
    # the rotated copy counts as older, so it is read and the live file adds nothing
    assert [(Path(f.path).name, f.skipped) for f in result.files] == [
        ("mail.log.1.gz", None), ("mail.log", "already ingested")]
    assert count(wh) == 2


def test_parts_carry_time_statistics_for_analysts(logdir: Path, wh: Warehouse) -> None:
    # a query over a time window skips parts by their ts min/max
    import pyarrow.parquet as pq

    log = write(logdir / "mail.log", ["Nov 14 10:00:00", "Nov 14 11:30:00"])
    ingest(wh, discover([str(log)]), tz="UTC", year=2016)
    (part,) = wh.parts_dir.glob("part-*.parquet")
    meta = pq.ParquetFile(part).metadata.row_group(0)
    stats = {meta.column(i).path_in_schema: meta.column(i).statistics
             for i in range(meta.num_columns)}
    assert stats["ts"].min == utc(2016, 11, 14, 10) and stats["ts"].max == utc(2016, 11, 14, 11, 30)
    assert stats["kind"].has_min_max
