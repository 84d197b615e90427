"""Read log files into the warehouse: sniff, anchor years, parse in batches, append.

Memory stays bounded by the batch size: at most workers + 1 batches are in flight. Files
of one rotation group are read oldest first with one year state, so a Dec 31 -> Jan 1
rollover across ``mail.log.1`` and ``mail.log`` is seen.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import groupby
from zoneinfo import ZoneInfo

import polars as pl

from detector import fastpath, formats
from detector.errors import DamagedInputError, InputError, UnreadableInputsError, UsageError
from detector.formats import shared
from detector.formats.context import ParseContext
from detector.formats.finish import LEAP_DAY
from detector.formats.syslog import YearState, assign_years, months_of_raw, sniff_rfc3164
from detector.progress import Meter, file_sizes
from detector.sources import (
    BATCH_BYTES,
    MAX_LINE,
    STDIN,
    LineBatches,
    LogFile,
    head_lines,
    iter_batches,
    last_line,
    read_head,
    shown,
)
from detector.times import GUESSED_YEAR
from detector.warehouse import HEAD_BYTES, FileWrite, LedgerEntry, Part, Warehouse

WORKERS = min(2, os.cpu_count() or 1)  # parse workers for a run: the machine's cores

Progress = Callable[[str], None]


@dataclass
class FileResult:
    path: str
    format: str | None
    lines: int = 0  # lines read in this run
    skipped: str | None = None  # why nothing was read ("already ingested", ...)
    cut_lines: int = 0  # lines longer than max_line, cut to it (read, but not whole)
    year_source: str = ""  # where the year of its year-less stamps came from
    damaged: str | None = None  # why it could not be read to its end (the lines before are)
    leap_days: int = 0  # lines dated Feb 29 given a year that is not leap: they have no time


@dataclass
class IngestResult:
    files: list[FileResult] = field(default_factory=list)

    @property
    def lines(self) -> int:
        return sum(f.lines for f in self.files)

    @property
    def not_read(self) -> list[tuple[str, str]]:
        """(path, why) of the files that could not be read, whole or in part: a truncated
        .gz, a dangling link, a file it may not open... Not the files of unknown format
        (skipped only as --skip-unknown asks), empty ones or ones read before."""
        return [(f.path, f.damaged or f.skipped or "") for f in self.files
                if f.damaged or (f.skipped and f.skipped not in NOT_ERRORS)]


#: why a file may be skipped without anything being wrong with it (or with what the run
#: was asked): skipping it is no reason for the exit status that says a file was skipped
NOT_ERRORS = ("empty", "already ingested", "unknown format")


def _head_text(head: bytes) -> tuple[str, ...]:
    """The opening lines formats are sniffed from (and parsers may look at)."""
    return tuple(head.decode("utf-8", "replace").splitlines()[:200])


@dataclass(frozen=True)
class Sniffed:
    """Every input, sniffed before anything loads: each path is in one of the two maps."""

    formats: dict[str, str]  # path -> format of a file to read
    why_not: dict[str, str]  # path -> why it is not read: "empty", "unknown format"...

    @property
    def unreadable(self) -> list[tuple[str, str]]:
        """(path, why) of the files mailstorm cannot read; an empty file is no error."""
        return [(path, why) for path, why in self.why_not.items() if why != "empty"]

    @property
    def unknown(self) -> list[str]:
        """The files of no known format."""
        return [path for path, why in self.why_not.items() if why == "unknown format"]


def sniff_inputs(files: list[LogFile], fmt: str | None = None, *, skip_unknown: bool = False,
                 progress: Progress | None = None) -> Sniffed:
    """Read the head of every file (only the head) and find its format (``fmt`` when given:
    then no file is of unknown format).

    A file that cannot be read (a dangling link, a FIFO, a name that is not UTF-8, one it
    may not open, one that cannot be decompressed: "truncated gzip"...) is skipped with a
    warning naming it and why; the rest is read (``IngestResult.not_read`` lists them, and
    the run's exit status says so). A file of unknown format stops the run: one
    UnreadableInputsError names every file that cannot be read; with ``skip_unknown``, it
    is skipped with a warning too.
    """
    if fmt is not None and fmt not in formats.FORMATS:
        raise UsageError(f"unknown format {fmt!r} (choose from {', '.join(formats.FORMATS)})")
    found: dict[str, str] = {}
    why_not: dict[str, str] = {}
    for log in files:
        if log.why_not:  # known when found: a FIFO, a dangling link, an unlistable folder
            why_not[log.path] = log.why_not
            continue
        try:
            head = read_head(log.path, HEAD_BYTES)
        except InputError as exc:
            why_not[log.path] = exc.message
            continue
        if not head:
            why_not[log.path] = "empty"
        elif name := fmt or formats.sniff(list(_head_text(head))):
            found[log.path] = name
        else:
            why_not[log.path] = "unknown format"
    sniffed = Sniffed(found, why_not)
    if sniffed.unknown and not skip_unknown:
        raise UnreadableInputsError(sniffed.unreadable, len(files))
    for path, why in sniffed.unreadable:
        if progress:
            progress(f"warning: skipping {path}: {why}")
    return sniffed


def file_host(log: LogFile) -> str:
    """The host of a file's lines that name none: its rotation group (the folder and base
    name, ``/var/log/exim4/mainlog`` for ``mainlog.1.gz`` too), so that two servers'
    mainlogs read in one run never share a queue id, and a file keeps its host from one
    night to the next; ``stdin`` for standard input."""
    return "stdin" if log.group == STDIN else os.path.abspath(log.group)


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


def _start_year(group: list[LogFile], tz: ZoneInfo, year: int | None) -> tuple[int, str]:
    """Year of the first line of a rotation group (assumed to span less than a year), and
    where it came from (for the report)."""
    if year is not None:
        return year, f"--year {year}"
    newest = group[-1].path  # standard input arrives here spooled to a file
    end_year, last = _end_year(newest, tz)
    first = next((s for s in map(sniff_rfc3164, head_lines(group[0].path, 5)) if s), None)
    source = f"{GUESSED_YEAR} of {shown(os.path.basename(newest))}"
    if first and last and first > last:
        return end_year - 1, source
    return end_year, source


def ingest(
    wh: Warehouse,
    files: list[LogFile],
    *,
    tz: str = "UTC",
    year: int | None = None,
    fmt: str | None = None,
    skip_unknown: bool = False,
    batch_bytes: int = BATCH_BYTES,
    max_line: int = MAX_LINE,
    progress: Progress | None = None,
    workers: int = WORKERS,
    sniffed: Sniffed | None = None,
    host: str | None = None,
) -> IngestResult:
    """Ingest files into the warehouse; returns what was read.

    Every file is sniffed first (``sniffed``: done already by ``sniff_inputs`` with the
    same files, format and ``skip_unknown``), which skips the files it cannot read, with a
    warning each. If any is of unknown format, nothing is loaded and UnreadableInputsError
    names them all; with ``skip_unknown`` they are skipped with a warning each too.

    A file damaged past its first 64 KiB (a truncated .gz: a logrotate race) keeps the
    lines before the damage: they are committed, the file's ``damaged`` says why and where
    it stopped, and the ledger records the bytes read, so a later run reads only what
    follows (nothing, while the file stays damaged; the rest once it is whole).

    A line longer than ``max_line`` bytes is cut to it; each file's ``cut_lines`` counts
    them (and a warning says so).

    ``host``: the host of the lines of files that name none (a native Exim mainlog);
    by default each rotation group is a host of its own (``file_host``).
    """
    try:
        zone = ZoneInfo(tz)
    except (KeyError, ValueError) as exc:
        raise UsageError(f"unknown time zone {tz!r} (use an IANA name like Europe/London)") \
            from exc
    if sniffed is None:
        sniffed = sniff_inputs(files, fmt, skip_unknown=skip_unknown, progress=progress)
    found, why_not = sniffed.formats, sniffed.why_not
    result = IngestResult()
    # One pool for the whole run: while the last batches of a file are parsed, the next
    # file is already being read, so many small files (one per host) keep both cores busy.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        run = _Run(wh, pool, workers, progress)
        if isinstance(progress, Meter):  # bytes read of the total, on a terminal
            run.meter = progress
            run.sizes = file_sizes(list(found))
            progress.read_bytes(0, sum(run.sizes.values()))
        try:
            for _, members in groupby(files, key=lambda f: f.group):
                group = list(members)
                readable = [log for log in group if log.path in found]
                start, year_source = _start_year(readable, zone, year) if readable \
                    else (0, "")
                years = YearState(start) if readable else None
                for log in group:
                    if years is None or log.path not in found:
                        result.files.append(FileResult(log.path, None, skipped=why_not[log.path]))
                    else:
                        result.files.append(run.read_file(
                            log.path, found[log.path], tz, years, batch_bytes,
                            max_line=max_line, dispatch=fmt is None, host=host or file_host(log),
                            year_source=year_source))
            run.commit_all()
        except BaseException:
            run.abandon()
            raise
    return result


def _leap_days_without_time(batch: pl.DataFrame, events: pl.DataFrame) -> tuple[int, set[int]]:
    """How many of a batch's lines are dated Feb 29 and got no time (the year inferred for
    their year-less stamp is not a leap year: ``finish`` keeps their raw text), and the
    years they were given. Looked for among the events without a time only."""
    if "ts" not in events.columns or not events["ts"].null_count():
        return 0, set()
    n = events.select((pl.col("ts").is_null() & pl.col("raw").str.contains(LEAP_DAY)
                       .fill_null(False)).sum()).item()
    if not n or "_year" not in batch.columns:
        return int(n or 0), set()
    year = pl.col("_year")
    years = batch.filter(pl.col("raw").str.contains(LEAP_DAY).fill_null(False)
                         & ~((year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))))
    return int(n), set(years["_year"].drop_nulls().unique().to_list())


def continue_after(years: YearState, zone: ZoneInfo, last_ts: datetime | None,
                   year_source: str, earlier_source: str | None) -> str:
    """For a file read on from a file read before (the ledger's row of it: its newest
    line ``last_ts``, where its year came from ``earlier_source``): its year goes on from
    that line; returns where its year comes from, given ``year_source`` (its group's, or
    "its stamps" where they carry their year)."""
    if last_ts is not None:
        local = last_ts.astimezone(zone)
        years.year, years.prev_month = local.year, local.month
        if year_source != "its stamps":
            year_source = "the last line read from it before"
    if earlier_source and year_source != "its stamps":
        year_source = earlier_source  # where the year of its first line came from
    return year_source


def dated_batches(batches: LineBatches, years: YearState, consumed: int
                  ) -> Iterator[tuple[pl.DataFrame, int, bool]]:
    """(batch with each line's year, bytes of whole lines read after it, whether it holds
    only an unterminated last line) of a file's ``batches``, read on from ``consumed``:
    both engines' read loop."""
    for batch, read_to in batches:
        partial = read_to == consumed and batch.height > 0
        consumed = read_to
        yield batch.with_columns(assign_years(months_of_raw(batch["raw"]), years)), read_to, \
            partial


@dataclass(frozen=True)
class ParsedBatch:
    """A batch of lines parsed: its events and what the run reports of it."""

    events: pl.DataFrame  # EVENTS_SCHEMA
    held: set[str]  # the formats whose lines it held
    leap_days: int  # lines dated Feb 29 given a year that is not leap (no time)
    leap_years: set[int]  # the years they were given
    #: lines left unparsed for a later parse_batch (``defer``), with their columns
    deferred: pl.DataFrame | None = None


#: the lines the Rust fast path leaves are pooled across a file's batches up to this many
#: before the Polars parser reads them: its fixed cost per call is that of thousands of
#: lines (bench/README.md)
DEFER_LINES = 50_000


def parse_batch(batch: pl.DataFrame, ctx: ParseContext, fmt: str, *, dispatch: bool,
                host: str | None, defer: bool = False) -> ParsedBatch:
    """Parse a batch of raw lines (with their years assigned) of a file of format ``fmt``:
    the one parse step of both engines (ingest's workers here, Spark's executors in
    ``detector.spark.parse``). ``host`` fills the host of the lines of a format that names
    none (``file_host``). With ``defer``, the lines the Rust fast path cannot vouch for
    are not parsed but returned (``deferred``), for the caller to parse many batches'
    worth at once."""
    split = fastpath.split_file_batch(batch, ctx, fmt, dispatch=dispatch) if defer else None
    deferred = None
    if split is not None:
        events, deferred = split
        held = {fmt}
    else:
        events, held = shared.parse(batch, ctx, fmt, shared=dispatch)
    if host is not None and fmt in formats.ONE_HOST and events["host"].null_count():
        events = events.with_columns(pl.col("host").fill_null(
            pl.when(pl.col("kind") != "unparsed").then(pl.lit(host))))
    leap_days, leap_years = _leap_days_without_time(batch, events)
    return ParsedBatch(events, held, leap_days, leap_years, deferred)


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
    #: lines the fast path left, waiting for one Polars parse (``DEFER_LINES``)
    deferred: list[pl.DataFrame] = field(default_factory=list)
    held: set[str] = field(default_factory=set)  # formats whose lines the file held
    leap_years: set[int] = field(default_factory=set)  # years Feb 29 lines wrongly got
    consumed: int = 0
    whole: int = 0  # newline-terminated lines (an unterminated one is re-read next run)
    lines: int = 0
    reading: bool = True
    failed: bool = False  # a batch could not be parsed or written
    flush: Callable[[], None] = lambda: None  # submits the parse of ``deferred``

    def take_next(self) -> None:
        """Wait for the oldest batch in flight and add its part to the file's write."""
        future, partial = self.futures.popleft()
        part, held, leap_days, leap_years, deferred = future.result()
        self.txn.add(part, partial)
        self.held |= held
        self.result.leap_days += leap_days
        self.leap_years |= leap_years
        if deferred is not None and deferred.height:
            self.deferred.append(deferred)

    def deferred_lines(self) -> int:
        return sum(d.height for d in self.deferred)


class _Run:
    """Files in order: the main thread reads them and numbers years (sequential work);
    workers parse and write parts; files commit in order as their parts complete. At most
    workers + 1 batches are in memory at once, across all files."""

    def __init__(self, wh: Warehouse, pool: ThreadPoolExecutor, workers: int,
                 progress: Progress | None) -> None:
        self.wh, self.pool, self.workers, self.progress = wh, pool, workers, progress
        self.jobs: deque[_Job] = deque()
        self.meter: Meter | None = None  # told the bytes read, when it can take them
        self.sizes: dict[str, int] = {}  # bytes on disk of each file to read
        self.read_before = 0  # bytes of the files read whole so far

    def read_file(self, path: str, name: str, tz: str, years: YearState,
                  batch_bytes: int, *, max_line: int = MAX_LINE, dispatch: bool = True,
                  host: str | None = None, year_source: str = "") -> FileResult:
        """Read a file whose format ``sniff_inputs`` found. Its head is read again (64 KiB,
        not kept from the sniff: a folder of thousands of files would hold them all).
        With ``dispatch`` (the format was sniffed, not forced), the lines of other mail
        programs in a syslog file go to their own format."""
        wh = self.wh
        head = read_head(path, HEAD_BYTES)
        if not head:  # emptied since it was sniffed
            return FileResult(path, None, skipped="empty")
        head_text = _head_text(head)
        if any(head.startswith(j.head[:HEAD_BYTES]) or j.head.startswith(head)
               for j in self.jobs):
            self.commit_all()  # a copy of a file still in flight: let the ledger see it first
        previous = wh.find_ingested(head)
        if not any(map(sniff_rfc3164, head_text[:20])):  # its stamps carry their year
            year_source = "its stamps"
        if previous is not None:
            year_source = continue_after(years, ZoneInfo(tz), previous.last_ts, year_source,
                                         previous.year_source)
        ctx = ParseContext(source_file=path, tz=tz, years=years, head=head_text)
        skip = previous.bytes_ingested if previous else 0
        job = _Job(path, name, head, previous, wh.begin_file(),
                   FileResult(path, name, year_source=year_source), consumed=skip,
                   held={name})
        if previous is not None and previous.format:
            job.held |= shared.held_by(previous.format)
        self.jobs.append(job)

        def parse_and_write(batch: pl.DataFrame, defer: bool = True
                            ) -> tuple[list[Part], set[str], int, set[int], pl.DataFrame | None]:
            parsed = parse_batch(batch, ctx, name, dispatch=dispatch, host=host, defer=defer)
            return wh.write_part(parsed.events), parsed.held, parsed.leap_days, \
                parsed.leap_years, parsed.deferred

        def flush() -> None:  # the lines the fast path left, parsed together
            lines = pl.concat(job.deferred).sort("line_no")
            job.deferred.clear()
            job.futures.append((self.pool.submit(parse_and_write, lines, False), False))

        job.flush = flush

        batches = iter_batches(path, batch_bytes, skip_bytes=skip, max_line=max_line)
        try:
            for batch, read_to, partial in dated_batches(batches, years, job.consumed):
                if not partial:
                    job.whole += batch.height
                job.consumed = read_to
                # a half-written last line alone is parsed as it is: its part is the one
                # the next run's read of it supersedes
                job.futures.append((self.pool.submit(parse_and_write, batch, not partial),
                                    partial))
                job.lines += batch.height
                while sum(len(j.futures) for j in self.jobs) > self.workers:
                    self._wait_one()
                if self.meter is not None:
                    self.meter.read_bytes(self.read_before + batches.position,
                                          sum(self.sizes.values()))
                elif self.progress:
                    self.progress(f"{path}: {job.lines:,} lines")
        except DamagedInputError as exc:  # the lines before the damage are good: keep them
            assert exc.line is not None
            read = exc.line - 1
            job.result.damaged = (f"{exc.message} after line {read:,}: the lines before it "
                                  "are read, the rest is not")
            if self.progress:
                self.progress(f"warning: {path}: {job.result.damaged}")
        job.reading = False
        self.read_before += self.sizes.get(path, 0)
        if self.meter is not None:
            self.meter.read_bytes(self.read_before, sum(self.sizes.values()))
        job.result.lines = job.lines
        job.result.cut_lines = batches.cut_lines
        if batches.cut_lines and self.progress:
            self.progress(f"warning: {path}: {batches.cut_lines:,} line(s) longer than "
                          f"{max_line:,} bytes cut to {max_line:,}")
        self._commit_ready()
        return job.result

    def _wait_one(self) -> None:
        job = next(j for j in self.jobs if j.futures)
        try:
            job.take_next()
        except BaseException:
            job.failed = True
            raise
        if job.deferred_lines() >= DEFER_LINES:
            job.flush()
        self._commit_ready()

    def _commit_ready(self) -> None:
        while self.jobs and not self.jobs[0].reading and not self.jobs[0].futures:
            if self.jobs[0].deferred:  # the last of its lines, then it commits
                self.jobs[0].flush()
                return
            job = self.jobs.popleft()
            if job.previous is not None and job.lines == 0:
                self.wh.rollback(job.txn)
                job.result.skipped = "already ingested"
                continue
            if job.result.leap_days and self.progress:
                years = ", ".join(map(str, sorted(job.leap_years)))
                self.progress(
                    f"warning: {job.path}: {job.result.leap_days:,} line(s) dated Feb 29 have "
                    f"no time: the year they were given ({years}; "
                    f"{job.result.year_source or 'inferred'}) is not a leap year, so the year "
                    "is probably wrong for the whole file (one that spans a year end, or "
                    "was copied without its modification time): check its dates in the "
                    "report; --year sets the year")
            previous_lines = job.previous.lines if job.previous else 0
            job.result.format = shared.ledger_name(job.held)
            self.wh.commit_file(job.txn, path=job.path, fmt=job.result.format, head=job.head,
                                previous=job.previous, bytes_ingested=job.consumed,
                                lines=job.whole + previous_lines,
                                year_source=job.result.year_source)

    def commit_all(self) -> None:
        while True:
            while any(j.futures for j in self.jobs):
                self._wait_one()
            self._commit_ready()  # may hand a file's deferred lines to the workers
            if not any(j.futures for j in self.jobs):
                return

    def abandon(self) -> None:
        """After a failure: files read whole are committed, the one that failed is not."""
        for job in list(self.jobs):
            for _ in range(2):  # its parts, then those of the lines it deferred
                while job.futures:
                    try:
                        job.take_next()
                    except BaseException:
                        job.failed = True
                if job.reading or job.failed or not job.deferred:
                    break
                job.flush()
            if job.reading or job.failed:
                self.jobs.remove(job)
                self.wh.rollback(job.txn)
        with contextlib.suppress(BaseException):
            self._commit_ready()
