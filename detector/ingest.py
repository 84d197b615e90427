"""Read log files into the warehouse: sniff, anchor years, parse in batches, append.

Memory stays bounded by the batch size: at most workers + 1 batches are in flight. Files
of one rotation group are read oldest first with one year state, so a Dec 31 -> Jan 1
rollover across ``mail.log.1`` and ``mail.log`` is seen.
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
    LogFile,
    head_lines,
    iter_batches,
    last_line,
    open_binary,
    reading,
)
from detector.warehouse import HEAD_BYTES, FileWrite, LedgerEntry, Part, Warehouse

WORKERS = min(2, os.cpu_count() or 1)  # parse workers for a run: the machine's cores

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
    newest = group[-1].path  # standard input arrives here spooled to a file
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
    # One pool for the whole run: while the last batches of a file are parsed, the next
    # file is already being read, so many small files (one per host) keep both cores busy.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        run = _Run(wh, pool, workers, progress)
        try:
            for _, members in groupby(files, key=lambda f: f.group):
                group = list(members)
                years = YearState(_start_year(group, zone, year))
                for log in group:
                    result.files.append(run.read_file(log.path, tz, years, fmt, skip_unknown,
                                                      batch_bytes))
            run.commit_all()
        except BaseException:
            run.abandon()
            raise
    return result


@dataclass
class _Job:
    """A file read and handed to the workers, committed once all its parts are written."""

    path: str
    fmt: str
    head: bytes
    previous: LedgerEntry | None
    txn: FileWrite
    result: FileResult  # what the caller is told; completed as the job goes
    futures: deque[tuple[Future, bool]] = field(default_factory=deque)
    consumed: int = 0
    whole: int = 0  # newline-terminated lines (an unterminated one is re-read next run)
    lines: int = 0
    reading: bool = True
    failed: bool = False  # a batch could not be parsed or written


class _Run:
    """Files in order: the main thread reads them and numbers years (sequential work);
    workers parse and write parts; files commit in order as their parts complete. At most
    workers + 1 batches are in memory at once, across all files."""

    def __init__(self, wh: Warehouse, pool: ThreadPoolExecutor, workers: int,
                 progress: Progress | None) -> None:
        self.wh, self.pool, self.workers, self.progress = wh, pool, workers, progress
        self.jobs: deque[_Job] = deque()

    def read_file(self, path: str, tz: str, years: YearState, fmt: str | None,
                  skip_unknown: bool, batch_bytes: int) -> FileResult:
        wh = self.wh
        head = _read_head(path)
        if not head:
            return FileResult(path, None, skipped="empty")
        head_text = tuple(head.decode("utf-8", "replace").splitlines()[:200])
        name = fmt or formats.sniff(list(head_text))
        if name is None:
            if skip_unknown:
                if self.progress:
                    self.progress(f"warning: skipping {path}: unknown log format")
                return FileResult(path, None, skipped="unknown format")
            raise InputError(path, None, "unknown log format (use --format, or --skip-unknown)")
        if any(head.startswith(j.head[:HEAD_BYTES]) or j.head.startswith(head)
               for j in self.jobs):
            self.commit_all()  # a copy of a file still in flight: let the ledger see it first
        previous = wh.find_ingested(head)
        if previous is not None and previous.last_ts is not None:
            # resume the year where the earlier run stopped
            local = previous.last_ts.astimezone(ZoneInfo(tz))
            years.year, years.prev_month = local.year, local.month
        parser = formats.FORMATS[name]
        ctx = ParseContext(source_file=path, tz=tz, years=years, head=head_text)
        skip = previous.bytes_ingested if previous else 0
        job = _Job(path, name, head, previous, wh.begin_file(), FileResult(path, name),
                   consumed=skip)
        self.jobs.append(job)

        def parse_and_write(batch: pl.DataFrame) -> Part | None:
            return wh.write_part(parser.parse(batch, ctx))

        for batch, read_to in iter_batches(path, batch_bytes, skip_bytes=skip):
            partial = read_to == job.consumed and batch.height > 0
            if not partial:
                job.whole += batch.height
            job.consumed = read_to
            batch = batch.with_columns(assign_years(months_of_raw(batch["raw"]), years))
            job.futures.append((self.pool.submit(parse_and_write, batch), partial))
            job.lines += batch.height
            while sum(len(j.futures) for j in self.jobs) > self.workers:
                self._wait_one()
            if self.progress:
                self.progress(f"{path}: {job.lines:,} lines")
        job.reading = False
        job.result.lines = job.lines
        self._commit_ready()
        return job.result

    def _wait_one(self) -> None:
        job = next(j for j in self.jobs if j.futures)
        future, partial = job.futures.popleft()
        try:
            job.txn.add(future.result(), partial)
        except BaseException:
            job.failed = True
            raise
        self._commit_ready()

    def _commit_ready(self) -> None:
        while self.jobs and not self.jobs[0].reading and not self.jobs[0].futures:
            job = self.jobs.popleft()
            if job.previous is not None and job.lines == 0:
                self.wh.rollback(job.txn)
                job.result.skipped = "already ingested"
                continue
            previous_lines = job.previous.lines if job.previous else 0
            self.wh.commit_file(job.txn, path=job.path, fmt=job.fmt, head=job.head,
                                previous=job.previous, bytes_ingested=job.consumed,
                                lines=job.whole + previous_lines)

    def commit_all(self) -> None:
        while any(j.futures for j in self.jobs):
            self._wait_one()
        self._commit_ready()

    def abandon(self) -> None:
        """After a failure: files read whole are committed, the one that failed is not."""
        for job in list(self.jobs):
            while job.futures:
                future, partial = job.futures.popleft()
                try:
                    job.txn.add(future.result(), partial)
                except BaseException:
                    job.failed = True
            if job.reading or job.failed:
                self.jobs.remove(job)
                self.wh.rollback(job.txn)
        with contextlib.suppress(BaseException):
            self._commit_ready()
