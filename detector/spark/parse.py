"""Log files -> the events DataFrame, parsed on Spark's executors by the Polars formats.

The driver sniffs the files (``ingest.sniff_inputs``) and anchors each rotation group's
year (``ingest._start_year``), as the DuckDB engine does; a group is one job, because a
year-less syslog stamp's year carries from one file of the group to the next (Dec 31 in
``mail.log.1``, Jan 1 in ``mail.log``). The jobs are spread over tasks and ``mapInArrow``
reads each group's files in order, in bounded batches, with the same year state, batch
parse (``ingest.parse_batch``) and host fill as ``ingest``; it yields Arrow batches of
``EVENTS_SCHEMA``. Executors open the files by path: on a cluster the logs must be on
storage every executor sees at the same path (NFS, a shared volume...).

What each file held (lines, cut lines, damage, leap days, formats) cannot travel in the
events, so each task writes it as a small JSON file to ``stats_dir`` (beside the output,
also on shared storage), read back by the driver for the report and the ledger.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import polars as pl

from detector.errors import DamagedInputError, UsageError
from detector.formats.syslog import sniff_rfc3164
from detector.ingest import FileResult, Sniffed, _head_text, _start_year, file_host
from detector.schema import EVENTS_SCHEMA
from detector.sources import BATCH_BYTES, MAX_LINE, LogFile, read_head
from detector.warehouse import HEAD_BYTES, extreme

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

_SPARK_TYPES = {pl.Datetime("us", "UTC"): "TIMESTAMP", pl.String(): "STRING",
                pl.Int64(): "BIGINT", pl.Float64(): "DOUBLE"}
#: the events schema as Spark DDL (same names, order and types as EVENTS_SCHEMA)
EVENTS_DDL = ", ".join(f"{name} {_SPARK_TYPES[t]}" for name, t in EVENTS_SCHEMA.items())


@dataclass(frozen=True)
class FileJob:
    """One file of a job, as the executor reads it."""

    path: str
    fmt: str
    host: str  # the host of its lines that name none (ingest's file_host, or --host)
    year_source: str
    #: where the executor opens it: the path made absolute on the driver (an executor's
    #: working directory is its own), while ``path``, as given, names it in the events
    opened: str = ""
    #: the year of its first line where it starts a rotation group; None where it follows
    #: the file before it in its group
    start_year: int | None = None


@dataclass(frozen=True)
class GroupJob:
    """Rotation groups' readable files, oldest first, read by one task in order: one
    group, or several whose files' first bytes repeat one another's (a copy, or a log
    rotated into a longer one), which the task reads as ingest's ledger does."""

    index: int
    files: list[FileJob]


@dataclass
class FileStats:
    """What an executor learned of a file (FileResult's fields, and the ledger's)."""

    path: str
    lines: int = 0  # lines read
    whole: int = 0  # newline-terminated lines (the ledger's count)
    consumed: int = 0  # decompressed bytes of whole lines read
    cut_lines: int = 0
    damaged: str | None = None
    leap_days: int = 0
    leap_years: list[int] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # formats whose lines it held
    year_source: str = ""
    #: the file read before it whose first bytes it repeats, read on from its end (its
    #: ledger row is replaced by this file's, as ingest's is)
    continues: str | None = None
    skipped: str | None = None  # "already ingested": nothing past the file it repeats


@dataclass
class _Read:
    """A file a task has read, as ingest's ledger row holds it (the ledger in small)."""

    head: bytes
    consumed: int
    last: datetime | None  # its newest line's time (UTC)
    year_source: str
    held: set[str]


def plan_jobs(files: list[LogFile], sniffed: Sniffed, *, tz: str, year: int | None,
              fmt: str | None, host: str | None
              ) -> tuple[list[GroupJob], list[FileResult]]:
    """The jobs of the readable files, and a result for each file not read (in the order
    ingest reports them)."""
    try:
        zone = ZoneInfo(tz)
    except (KeyError, ValueError) as exc:
        raise UsageError(f"unknown time zone {tz!r} (use an IANA name like Europe/London)") \
            from exc
    groups: list[list[FileJob]] = []
    heads: list[bytes] = []  # of every file planned, in the order ingest reads them
    owner: list[int] = []  # the group of each
    together = list(range(len(files)))  # union-find over the groups read by one task
    skipped: list[FileResult] = []
    for _, members in groupby(files, key=lambda f: f.group):
        group = list(members)
        readable = [log for log in group if log.path in sniffed.formats]
        skipped += [FileResult(log.path, None, skipped=sniffed.why_not[log.path])
                    for log in group if log.path not in sniffed.formats]
        if not readable:
            continue
        start, source = _start_year(readable, zone, year)
        specs = []
        for i, log in enumerate(readable):
            head = read_head(log.path, HEAD_BYTES)
            for earlier, g in zip(heads, owner, strict=True):
                if earlier and head.startswith(earlier):  # read after it, in its task
                    together[_root(together, len(groups))] = _root(together, g)
            heads.append(head)
            owner.append(len(groups))
            specs.append(FileJob(log.path, sniffed.formats[log.path], host or file_host(log),
                                 _year_source(head, source), os.path.abspath(log.path),
                                 start if i == 0 else None))
        groups.append(specs)
    tasks: dict[int, list[FileJob]] = {}
    for g, specs in enumerate(groups):
        tasks.setdefault(_root(together, g), []).extend(specs)
    return [GroupJob(i, specs) for i, specs in enumerate(tasks.values())], skipped


def _root(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _year_source(head: bytes, inferred: str) -> str:
    """Where a file's year comes from, as ingest says it: a file whose stamps carry their
    year says so."""
    return inferred if any(map(sniff_rfc3164, _head_text(head)[:20])) else "its stamps"


def _arrow_schema() -> pa.Schema:
    return pl.DataFrame(schema=EVENTS_SCHEMA).to_arrow().schema


def parse_jobs(batches: Iterator[pa.RecordBatch], *, tz: str, dispatch: bool,
               batch_bytes: int, max_line: int, stats_dir: str
               ) -> Iterator[pa.RecordBatch]:
    """``mapInArrow``'s function: each row a GroupJob (as JSON), read and parsed as
    ``ingest`` reads it; yields the events, writes each group's FileStats to
    ``stats_dir``."""
    schema = _arrow_schema()
    for batch in batches:
        for text in batch.column("job").to_pylist():
            job = json.loads(text)
            stats = []
            for events, file_stats in _read_group(job, tz=tz, dispatch=dispatch,
                                                  batch_bytes=batch_bytes,
                                                  max_line=max_line):
                if events is not None and events.height:
                    yield from events.to_arrow().cast(schema).to_batches()
                if file_stats is not None:
                    stats.append(asdict(file_stats))
            out = Path(stats_dir) / f"group-{job['index']}.json"
            tmp = out.with_suffix(".tmp")
            tmp.write_text(json.dumps(stats), encoding="utf-8")
            os.replace(tmp, out)  # a task retried writes it again whole


def _read_group(job: dict[str, Any], *, tz: str, dispatch: bool, batch_bytes: int,
                max_line: int
                ) -> Iterator[tuple[pl.DataFrame | None, FileStats | None]]:
    """The events of a job's files, batch by batch, then each file's stats once read.

    As ingest's ledger does within a run: a file whose first bytes repeat a file read
    before it (the ledger's row of most bytes) is read on from where that one's whole
    lines ended, its year going on from that one's last line; that one's unterminated
    last line (read again as the start of a whole one) is dropped, so the events of a
    file's last, partial batch wait until the job's end."""
    from detector.formats.context import ParseContext
    from detector.formats.syslog import YearState
    from detector.ingest import continue_after, dated_batches, parse_batch
    from detector.sources import iter_batches

    zone = ZoneInfo(tz)
    ledger: dict[str, _Read] = {}  # path -> its row, as ingest's ledger holds it now
    partial: dict[str, pl.DataFrame] = {}  # path -> the events of its unterminated line
    years = YearState(0)
    for spec in job["files"]:
        path, name, opened = spec["path"], spec["fmt"], spec["opened"] or spec["path"]
        if spec["start_year"] is not None:  # a rotation group starts
            years = YearState(int(spec["start_year"]))
        stats = FileStats(path, year_source=spec["year_source"])
        head = read_head(opened, HEAD_BYTES)
        if not head:
            yield None, stats
            continue
        before = max((r for r in ledger.items() if head.startswith(r[1].head)),
                     key=lambda r: r[1].consumed, default=None)
        held = {name}
        if before is not None:
            previous = before[1]
            stats.continues, stats.consumed = before[0], previous.consumed
            stats.year_source = continue_after(years, zone, previous.last, stats.year_source,
                                               previous.year_source)
            held |= previous.held
        ctx = ParseContext(source_file=path, tz=tz, years=years, head=_head_text(head))
        last: datetime | None = None
        lines = iter_batches(opened, batch_bytes, skip_bytes=stats.consumed,
                             max_line=max_line)
        try:
            for batch, read_to, unterminated in dated_batches(lines, years, stats.consumed):
                if not unterminated:
                    stats.whole += batch.height
                stats.consumed = read_to
                parsed = parse_batch(batch, ctx, name, dispatch=dispatch, host=spec["host"])
                held |= parsed.held
                stats.leap_days += parsed.leap_days
                stats.leap_years = sorted(set(stats.leap_years) | parsed.leap_years)
                stats.lines += batch.height
                newest = parsed.events["ts"].max()
                last = extreme(max, last, newest if isinstance(newest, datetime) else None)
                if unterminated:
                    partial[path] = parsed.events
                else:
                    yield parsed.events, None
        except DamagedInputError as exc:  # the lines before the damage are good: kept
            read = (exc.line or 1) - 1
            stats.damaged = (f"{exc.message} after line {read:,}: the lines before it are "
                             "read, the rest is not")
        stats.cut_lines = lines.cut_lines
        stats.held = sorted(held)
        if before is not None and stats.lines == 0:
            stats.skipped = "already ingested"  # its row stays the one it repeats
        else:
            if before is not None:  # its row replaces the one it repeats
                del ledger[before[0]]
                partial.pop(before[0], None)  # read again as the start of a whole line
                last = extreme(max, last, before[1].last)
            ledger[path] = _Read(head, stats.consumed, last, stats.year_source, held)
        yield None, stats
    for events in partial.values():
        yield events, None


def events_frame(spark: SparkSession, jobs: list[GroupJob], *, tz: str, fmt: str | None,
                 stats_dir: Path, batch_bytes: int = BATCH_BYTES,
                 max_line: int = MAX_LINE, tasks: int | None = None) -> DataFrame:
    """The events of the jobs' files as a DataFrame (lazy: parsed when it is written).
    ``tasks``: how many tasks share the groups (default: one per group, at most the
    session's parallelism times four)."""
    from functools import partial

    stats_dir.mkdir(parents=True, exist_ok=True)
    rows = [(json.dumps({"index": j.index, "files": [asdict(f) for f in j.files]}),)
            for j in jobs]
    parallelism = spark.sparkContext.defaultParallelism if _classic(spark) else 2
    n = max(1, min(len(rows), tasks or parallelism * 4))
    jobs_df = spark.createDataFrame(rows, "job STRING").repartition(n)
    fn = partial(parse_jobs, tz=tz, dispatch=fmt is None, batch_bytes=batch_bytes,
                 max_line=max_line, stats_dir=str(stats_dir))
    return jobs_df.mapInArrow(fn, EVENTS_DDL)


def _classic(spark: SparkSession) -> bool:
    """A classic session (not Spark Connect, which has no SparkContext)."""
    try:
        spark.sparkContext  # noqa: B018
    except Exception:  # Spark Connect raises its own error type here
        return False
    return True


def read_stats(stats_dir: Path) -> dict[str, FileStats]:
    """The stats every task wrote, by path."""
    found: dict[str, FileStats] = {}
    for part in sorted(stats_dir.glob("group-*.json")):
        for item in json.loads(part.read_text(encoding="utf-8")):
            found[item["path"]] = FileStats(**item)
    return found
