"""Read log files into the warehouse: sniff, anchor years, parse in batches, append.

Memory stays bounded by the batch size: each batch is parsed and appended before the
next one is read. Files of one rotation group are read oldest first with one year state,
so a Dec 31 -> Jan 1 rollover across ``mail.log.1`` and ``mail.log`` is seen.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import groupby
from zoneinfo import ZoneInfo

import polars as pl

from detector import formats
from detector.errors import InputError, UsageError
from detector.formats.context import ParseContext
from detector.formats.syslog import YearState, assign_years, months_of_raw, sniff_rfc3164
from detector.sources import (
    BATCH_BYTES,
    STDIN,
    LogFile,
    head_lines,
    iter_batches,
    last_line,
    open_binary,
    reading,
)
from detector.warehouse import HEAD_BYTES, Part, Warehouse

WORKERS = min(2, os.cpu_count() or 1)  # parse workers per file: the machine's cores

Progress = Callable[[str], None]


@dataclass
class FileResult:
    path: str
    format: str | None
    lines: int = 0  # lines read in this run
    skipped: str | None = None  # why nothing was read ("already ingested", ...)


@dataclass
class IngestResult:
    files: list[FileResult] = field(default_factory=list)

    @property
    def lines(self) -> int:
        return sum(f.lines for f in self.files)


def _read_head(path: str) -> bytes:
    with reading(path), open_binary(path) as f:
        return f.read(HEAD_BYTES)


def _end_year(path: str, tz: ZoneInfo) -> tuple[int, tuple[int, int, str] | None]:
    """Year of a file's last line, from its mtime: the last line cannot be in the future."""
    mtime = datetime.fromtimestamp(os.stat(path).st_mtime, tz)
    line = last_line(path)
    stamp = sniff_rfc3164(line) if line else None
    year = mtime.year
    if stamp:
        try:
            last = date(year, stamp[0], stamp[1])
        except ValueError:  # Feb 29 in a non-leap year: it must be the year before
            last = date(year, 12, 31)
        if last > mtime.date() + timedelta(days=1):  # a day of slack for clock skew
            year -= 1  # e.g. last line Dec 31, file touched Jan 1
    return year, stamp


def _start_year(group: list[LogFile], tz: ZoneInfo, year: int | None) -> int:
    """Year of the first line of a rotation group (assumed to span less than a year)."""
    if year is not None:
        return year
    newest = group[-1].path
    if newest == STDIN:
        return datetime.now(tz).year
    end_year, last = _end_year(newest, tz)
    first = next((s for s in map(sniff_rfc3164, head_lines(group[0].path, 5)) if s), None)
    if first and last and first > last:
        return end_year - 1
    return end_year


def ingest(
    wh: Warehouse,
    files: list[LogFile],
    *,
    tz: str = "UTC",
    year: int | None = None,
    fmt: str | None = None,
    skip_unknown: bool = False,
    batch_bytes: int = BATCH_BYTES,
    progress: Progress | None = None,
    workers: int = WORKERS,
) -> IngestResult:
    """Ingest files into the warehouse; returns what was read."""
    try:
        zone = ZoneInfo(tz)
    except (KeyError, ValueError) as exc:
        raise UsageError(f"unknown time zone {tz!r} (use an IANA name like Europe/London)") \
            from exc
    if fmt is not None and fmt not in formats.FORMATS:
        raise UsageError(f"unknown format {fmt!r} (choose from {', '.join(formats.FORMATS)})")
    result = IngestResult()
    for _, members in groupby(files, key=lambda f: f.group):
        group = list(members)
        years = YearState(_start_year(group, zone, year))
        for log in group:
            result.files.append(
                _ingest_file(wh, log.path, tz, years, fmt, skip_unknown, batch_bytes, progress,
                             workers))
    return result


def _ingest_file(wh: Warehouse, path: str, tz: str, years: YearState, fmt: str | None,
                 skip_unknown: bool, batch_bytes: int, progress: Progress | None,
                 workers: int) -> FileResult:
    head = _read_head(path) if path != STDIN else b""
    if path != STDIN and not head:
        return FileResult(path, None, skipped="empty")
    name = fmt or formats.sniff(head.decode("utf-8", "replace").splitlines()[:200])
    if name is None:
        if skip_unknown:
            if progress:
                progress(f"warning: skipping {path}: unknown log format")
            return FileResult(path, None, skipped="unknown format")
        raise InputError(path, None, "unknown log format (use --format, or --skip-unknown)")
    previous = wh.find_ingested(head) if path != STDIN else None
    if previous is not None:
        last = wh.scalar("SELECT max(last_ts) FROM files WHERE head_sha256 = ?",
                         [previous.head_sha256])
        if last is not None:  # resume the year where the earlier run stopped
            local = last.astimezone(ZoneInfo(tz))
            years.year, years.prev_month = local.year, local.month
    parser = formats.FORMATS[name]
    ctx = ParseContext(source_file=path, tz=tz, years=years)
    skip = previous.bytes_ingested if previous else 0
    lines = 0  # lines read this run
    whole = 0  # of which newline-terminated (an unterminated one is re-read next run)
    consumed = skip
    txn = wh.begin_file()
    in_flight: deque[tuple[Future, bool]] = deque()

    def parse_and_write(batch: pl.DataFrame) -> Part | None:
        return wh.write_part(parser.parse(batch, ctx))

    try:
        # The main thread reads and numbers years (sequential); workers parse and write
        # parts in parallel. At most workers + 1 batches are in memory at once.
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for batch, read_to in iter_batches(path, batch_bytes, skip_bytes=skip):
                partial = read_to == consumed and batch.height > 0
                if not partial:
                    whole += batch.height
                consumed = read_to
                batch = batch.with_columns(assign_years(months_of_raw(batch["raw"]), years))
                in_flight.append((pool.submit(parse_and_write, batch), partial))
                lines += batch.height
                while len(in_flight) > workers:
                    future, was_partial = in_flight.popleft()
                    txn.add(future.result(), was_partial)
                if progress:
                    progress(f"{path}: {lines:,} lines")
            while in_flight:
                future, was_partial = in_flight.popleft()
                txn.add(future.result(), was_partial)
        if previous is not None and lines == 0:
            wh.rollback(txn)
            return FileResult(path, name, skipped="already ingested")
        wh.commit_file(txn, path=path, fmt=name, head=head, previous=previous,
                       bytes_ingested=consumed, lines=whole + (previous.lines if previous else 0))
    except BaseException:  # nothing of a half-read file is kept
        for future, was_partial in in_flight:  # parts finished after the failure
            with contextlib.suppress(BaseException):
                txn.add(future.result(), was_partial)
        wh.rollback(txn)
        raise
    return FileResult(path, name, lines=lines)
