"""The Python API behind the CLI: run (ingest + detect + report) and report."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from detector import permissions
from detector.assets import builtin_rules_dir
from detector.dataset import dataset_dir_of, publish_dataset
from detector.dayview import day_overview
from detector.display import Display, DisplayOptions, display_for
from detector.errors import UsageError
from detector.incidents import Incident, RunInfo, Scope, detect, look_again_from, record
from detector.incidents.details import Details, incident_details
from detector.incidents.execute import RuleRunner, scoped_model
from detector.incidents.exports import Writer, csv_writers
from detector.ingest import IngestResult, ingest, sniff_inputs
from detector.model.build import build_model
from detector.publish import REPORTS_DIR
from detector.redact import Redactor
from detector.reports import write_report
from detector.retention import Dropped, apply_retention
from detector.rules.loader import load_rules
from detector.rules.model import Rule
from detector.rules.overrides import apply_overrides
from detector.schema import comment_tables
from detector.snapshot import publish_snapshot, snapshot_root
from detector.sources import BATCH_BYTES, MAX_LINE, STDIN, LogFile, discover
from detector.summary import build_summary
from detector.times import iso_z
from detector.warehouse import LOCK_TIMEOUT, Warehouse, parquet_dir_of, parse_size

Progress = Callable[[str], None]


@dataclass
class RunResult:
    incidents: list[Incident]
    summary: dict[str, object]
    report: Path
    ingested: IngestResult | None = None
    #: how the report showed times and addresses (the text summary shows them alike)
    display: Display | None = None


def batch_bytes_for(memory_limit: str | None) -> int:
    """Text per parse batch: a parsed batch takes about ten times its text, and two are in
    flight, so a smaller --memory-limit makes smaller batches (between 4 and 24 MB)."""
    if not memory_limit:
        return BATCH_BYTES
    return max(4 << 20, min(BATCH_BYTES, parse_size(memory_limit) // 32))


def load_ruleset(rules_dir: Path | None, overrides: Mapping[str, str]) -> list[Rule]:
    return apply_overrides(load_rules(rules_dir or builtin_rules_dir()), overrides)


def _spool_stdin(files: list[LogFile], tmp: Path) -> list[LogFile]:
    """Copy standard input to a file in ``tmp`` so it can be sniffed and read like any
    other; at most ``sources.STDIN_LIMIT`` bytes (endless input is an error, not a full
    disk). The caller removes ``tmp`` however the run ends."""
    import os
    import select

    from detector import sources
    from detector.errors import InputError

    out = []
    for f in files:
        if f.path == STDIN:
            target = tmp / "stdin.log"
            limit, copied = sources.STDIN_LIMIT, 0
            try:
                fd: int | None = sys.stdin.fileno()
            except (AttributeError, OSError, ValueError):  # a stream without a descriptor
                fd = None
            with open(target, "wb") as sink:
                while True:
                    if fd is None:
                        chunk = sys.stdin.buffer.read(1 << 20)
                    # wake twice a second: Ctrl-C may land in another thread (DuckDB's,
                    # Polars'), and is raised here only when this thread runs
                    elif not select.select([fd], [], [], 0.5)[0]:
                        continue
                    else:
                        chunk = os.read(fd, 1 << 20)
                    if not chunk:
                        break
                    copied += len(chunk)
                    if copied > limit:
                        raise InputError("standard input", None,
                                         f"more than {limit:,} bytes, the most it may hold; "
                                         "read so much from a file instead")
                    sink.write(chunk)
            f = LogFile(path=str(target), group=STDIN, order=f.order)
        out.append(f)
    return out


def run(
    inputs: Sequence[str],
    out_dir: Path,
    *,
    db: Path | None = None,
    tz: str = "UTC",
    year: int | None = None,
    fmt: str | None = None,
    skip_unknown: bool = False,
    rules_dir: Path | None = None,
    templates_dir: Path | None = None,
    overrides: Mapping[str, str] | None = None,
    memory_limit: str | None = None,
    scope: Scope | None = None,
    progress: Progress | None = None,
    host: str | None = None,
    lock_timeout: float = LOCK_TIMEOUT,
    max_line: int = MAX_LINE,
    umask: int | None = None,
    keep: timedelta | None = None,
    display: DisplayOptions | None = None,
    dataset: bool = True,
    engine: str = "duckdb",
    spark_master: str = "local[*]",
) -> RunResult:
    """Ingest logs into the warehouse, rebuild the model, detect, write the report, and
    record in the warehouse what this run reported (for the next run's statuses).

    Everything it creates is readable by no more people than its logs and the warehouse
    are (``detector.permissions``), or as ``umask`` says. Last, it writes what changed
    to the Parquet dataset ``OUT/dataset`` (``dataset``; ``detector.dataset``) and
    publishes the analysts' snapshot of the warehouse (``detector.snapshot``).

    ``engine`` "spark" parses, builds the model and runs the rules on Spark
    (``spark_master``; ``detector.spark.engine``), not incrementally: the dataset and the
    warehouse's tables are built from ``inputs`` alone; the rest is the same."""
    started = datetime.now(UTC).replace(microsecond=0)
    _check_engine(engine, keep, spark_master)
    rules = load_ruleset(rules_dir, overrides or {})  # fail on bad rules before reading logs
    files = discover(inputs)
    db = db or out_dir / "mailstorm.duckdb"
    mask = permissions.source_umask([*(f.path for f in files if not f.why_not), db], umask)
    with permissions.applied(mask), tempfile.TemporaryDirectory() as tmp:
        files = _spool_stdin(files, Path(tmp))
        # every input sniffed before the warehouse is even opened: one unreadable file
        # (without --skip-unknown) stops the run with nothing touched
        sniffed = sniff_inputs(files, fmt, skip_unknown=skip_unknown, progress=progress)
        out_dir.mkdir(parents=True, exist_ok=True)
        _protect(db, out_dir, mask)
        with Warehouse(db, memory_limit, lock_timeout=lock_timeout) as wh:
            spark, runner, dropped = None, None, None
            if engine == "spark":
                from detector.spark.engine import SparkEngine

                spark = SparkEngine(out_dir, master=spark_master, progress=progress)
                ingested = spark.parse(files, sniffed, tz=tz, year=year, fmt=fmt, host=host,
                                       batch_bytes=batch_bytes_for(memory_limit),
                                       max_line=max_line)
                spark.build_model()
                spark.attach(wh)
                runner = spark.rule_runner(scope)
            else:
                ingested = ingest(wh, files, tz=tz, year=year, fmt=fmt, sniffed=sniffed,
                                  batch_bytes=batch_bytes_for(memory_limit),
                                  progress=progress, host=host, max_line=max_line)
                dropped = apply_retention(wh, keep) if keep else None
                if progress:
                    progress(f"read {ingested.lines:,} new lines; building the model")
                built = build_model(wh)
                if scope is None and not built.full:
                    # a night's detection reads what its lines could change, not all history
                    since = look_again_from(wh, built.since,
                                            {r.name: r.window_seconds or 0 for r in rules})
                    scope = Scope(since=since) if since is not None else None
            run_info = RunInfo(started_at=started, since=scope.since if scope else None,
                               until=scope.until if scope else None,
                               lines_read=ingested.lines)
            result = _detect_and_report(wh, rules, out_dir, templates_dir, ingested,
                                        progress, scope=scope, run_info=run_info,
                                        dropped=dropped, display=display, runner=runner)
            if spark is not None:  # Spark wrote the rest of the dataset
                spark.publish_incidents(wh)
            elif dataset:
                if progress:
                    progress("writing the dataset")
                publish_dataset(wh, out_dir)
            comment_tables(wh.con)  # views the build and detection made anew
            if progress:
                progress("publishing the analysts' snapshot")
            publish_snapshot(wh)  # last: it holds what this run recorded
            return result


def report(db: Path, out_dir: Path, *, rules_dir: Path | None = None,
           templates_dir: Path | None = None, overrides: Mapping[str, str] | None = None,
           memory_limit: str | None = None, scope: Scope | None = None,
           progress: Progress | None = None, lock_timeout: float = LOCK_TIMEOUT,
           umask: int | None = None, display: DisplayOptions | None = None) -> RunResult:
    """Detect and report again from an existing warehouse (no log is read). Statuses are
    relative to what the last ``run`` recorded; nothing is recorded. The report is
    readable by no more people than the warehouse is, or as ``umask`` says."""
    rules = load_ruleset(rules_dir, overrides or {})
    if not db.exists():
        raise UsageError(f"no warehouse at {db} (run 'mailstorm run' first)")
    mask = permissions.source_umask([db], umask)
    with permissions.applied(mask):
        out_dir.mkdir(parents=True, exist_ok=True)
        _protect(db, out_dir, mask)
        with Warehouse(db, memory_limit, lock_timeout=lock_timeout) as wh:
            return _detect_and_report(wh, rules, out_dir, templates_dir, None, progress,
                                      scope=scope, run_info=None, display=display)


#: the engines of ``mailstorm run --engine``
ENGINES = ("duckdb", "spark")


def _check_engine(engine: str, keep: timedelta | None, master: str) -> None:
    """A usage error, before anything is read, for an engine that cannot run."""
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r} (choose from {', '.join(ENGINES)})")
    if engine == "spark":
        from detector.spark import require_pyspark

        require_pyspark(connect=master.startswith("sc://"))
        if keep is not None:
            raise UsageError("--keep is for the DuckDB engine's warehouse: the Spark engine "
                             "builds everything from the logs it is given")


def _protect(db: Path, out_dir: Path, mask: int) -> None:
    """What a run writes into that exists already, tightened to ``mask`` at its top (a
    warehouse made world-readable from public logs before private ones were added)."""
    permissions.tighten([db, db.with_name(db.name + ".wal"), parquet_dir_of(db),
                         snapshot_root(db), out_dir / REPORTS_DIR, dataset_dir_of(out_dir)],
                        mask)


def _detect_and_report(wh: Warehouse, rules: list[Rule], out_dir: Path,
                       templates_dir: Path | None, ingested: IngestResult | None,
                       progress: Progress | None, *, scope: Scope | None,
                       run_info: RunInfo | None, dropped: Dropped | None = None,
                       display: DisplayOptions | None = None,
                       runner: RuleRunner | None = None) -> RunResult:
    if progress:
        progress(f"running {len(rules)} rules")
    with scoped_model(wh, scope.since if scope else None):
        return _detect_and_report_in(wh, rules, out_dir, templates_dir, ingested,
                                     scope=scope, run_info=run_info, dropped=dropped,
                                     display=display, runner=runner)


def _detect_and_report_in(wh: Warehouse, rules: list[Rule], out_dir: Path,
                          templates_dir: Path | None, ingested: IngestResult | None, *,
                          scope: Scope | None, run_info: RunInfo | None,
                          dropped: Dropped | None,
                          display: DisplayOptions | None = None,
                          runner: RuleRunner | None = None) -> RunResult:
    incidents = detect(wh, rules, scope=scope, recording=run_info is not None,
                       now=run_info.started_at if run_info else None, runner=runner)
    skipped = [(f.path, f.damaged or f.skipped or "")
               for f in (ingested.files if ingested else [])
               if f.damaged or (f.skipped and f.skipped != "already ingested")]
    # what this run read: a run that read nothing new says so, or broken log shipping
    # would look like a quiet night
    summary = build_summary(wh, rules, skipped,
                            ingested.lines if ingested is not None else None,
                            since=scope.since if scope else None,
                            until=scope.until if scope else None)
    # the incidents, messages and deliveries a limited detection counted are of that span
    summary["detected_since"] = iso_z(scope.since) if scope and scope.since else None
    summary["detected_until"] = iso_z(scope.until) if scope and scope.until else None
    summary["retention"] = None if dropped is None or dropped.cut is None else {
        "cut": iso_z(dropped.cut), "lines": dropped.event_rows, "bytes": dropped.bytes,
        "parts": dropped.event_parts + dropped.model_parts}
    shown = _day_and_display(wh, scope, display)
    path = write_report(out_dir, summary, incidents, templates_dir,
                        *_incident_pages(wh, incidents, shown["display"].redactor), **shown)
    if run_info is not None:  # after the report: a run that wrote none has reported nothing
        record(wh, incidents, run_info)
    return RunResult(incidents=incidents, summary=summary, report=path, ingested=ingested,
                     display=shown["display"])


def _incident_pages(wh: Warehouse, incidents: list[Incident], redactor: Redactor | None
                    ) -> tuple[dict[str, Details], dict[str, Writer]]:
    """What each incident's page shows beyond the incident (its messages, repliers,
    failures, service impact, related incidents) and its CSVs, read from the warehouse
    the detection just wrote; ``mailstorm run`` and ``report`` both come here."""
    details = incident_details(wh, incidents)
    return details, csv_writers(wh, list(details), redactor)


def _day_and_display(wh: Warehouse, scope: Scope | None,
                     display: DisplayOptions | None) -> dict[str, Any]:
    """The report's day overview, over the span this detection looked at, and how the
    pages show times and addresses (``write_report``'s keywords)."""
    return {"day": day_overview(wh, scope.since if scope else None,
                                scope.until if scope else None),
            "display": display_for(wh, display)}
