"""``mailstorm run --engine spark``: parse, model and rules on Spark; incidents and the
report by the same code as the DuckDB engine.

1. the logs are parsed on the executors (``detector.spark.parse``) and written as
   ``OUT/dataset/events/day=YYYY-MM-DD/`` by Spark's writer;
2. the model's statements (``model_statements(SPARK)``) run as Spark SQL over them; each
   analyst table (``detector.schema.TABLES``) is written to ``OUT/dataset/<table>/`` and
   read back, which both publishes and materialises it; working tables are checkpointed;
3. the warehouse ``OUT/mailstorm.duckdb`` is pointed at those files: hard links to them
   become its events parts (with the ledger of the files read) and its model parts, so
   the summary, incident, report and snapshot code read them as they read their own;
4. the rules run as Spark SQL (``compile_rule(..., dialect=SPARK)``) and their hits come
   back as Arrow into ``_hits`` (``execute.run_rule``'s runner), then detection, the
   report and ``incidents.json`` are the DuckDB engine's; the incidents are added to the
   dataset and its catalog written.

It is not incremental: each run builds the dataset and the warehouse's tables from the
logs it is given (the warehouse keeps what earlier runs reported, for the statuses).
"""

from __future__ import annotations

import re
import shutil
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

from detector.dataset import NULL_DAY, dataset_dir_of, day_sql, link_file, write_catalog
from detector.dialect import SPARK
from detector.incidents.execute import (
    ALL_MESSAGES,
    Scope,
    scope_params,
    scope_sql,
    scoped_table_sql,
)
from detector.ingest import FileResult, IngestResult, Sniffed
from detector.model.build import create_views, model_statements
from detector.rules.compiler import CompiledRule, compile_rule
from detector.rules.model import Rule
from detector.schema import TABLES
from detector.sources import BATCH_BYTES, MAX_LINE, LogFile, read_head
from detector.spark.parse import EVENTS_DDL, FileStats, events_frame, plan_jobs, read_stats
from detector.sqltext import markers, split_with
from detector.warehouse import (
    HEAD_BYTES,
    MODEL_PARTS,
    Warehouse,
    dead_table,
    extreme,
    has_tombstones,
    head_digest,
    model_part_path,
    sql_path,
    transaction,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

Progress = Callable[[str], None]

#: the model tables of the dataset, in the order the model makes them
MODEL_TABLES = [name for name in MODEL_PARTS if name in TABLES]
#: working tables only an incremental build reads (the Spark engine builds afresh)
_SKIPPED = {"_relations"}
#: views of the model computed once: DuckDB reads a view's joins again for each use
#: cheaply, Spark (a recursive CTE's every round) does not
_MATERIALISED = {"_qev"}


@dataclass
class Timings:
    """Seconds per stage of a run, for the progress line and bench/spark.py."""

    stages: dict[str, float] = field(default_factory=dict)
    statements: dict[str, float] = field(default_factory=dict)  # the model's, each

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + time.monotonic() - start


class SparkEngine:
    """One run's Spark side: its session and where it writes the dataset."""

    def __init__(self, out_dir: Path, *, master: str, progress: Progress | None = None,
                 conf: dict[str, str] | None = None,
                 spark: SparkSession | None = None) -> None:
        from detector.spark.session import spark_session

        self.out_dir = out_dir
        self.dataset = dataset_dir_of(out_dir).resolve()
        self.progress = progress
        self.timings = Timings()
        self.file_stats: dict[str, FileStats] = {}
        with self.timings.stage("session"), warnings.catch_warnings():
            # pyspark checks the pandas version for mapInArrow; it uses no pandas there
            warnings.filterwarnings("ignore", message=".*pandas.*", category=FutureWarning)
            self.spark = spark or spark_session(master, conf=conf)

    def _say(self, text: str) -> None:
        if self.progress:
            self.progress(text)

    # --- 1. parse --------------------------------------------------------------------
    def parse(self, files: list[LogFile], sniffed: Sniffed, *, tz: str, year: int | None,
              fmt: str | None, host: str | None, batch_bytes: int = BATCH_BYTES,
              max_line: int = MAX_LINE) -> IngestResult:
        """Parse the files on the executors into ``dataset/events``; what was read."""
        jobs, skipped = plan_jobs(files, sniffed, tz=tz, year=year, fmt=fmt, host=host)
        # what the DuckDB engine's dataset held is replaced: its record of it goes too
        # (detector.dataset's state file), so that a later DuckDB run writes it afresh
        (self.dataset / ".mailstorm-dataset.json").unlink(missing_ok=True)
        self._say(f"parsing {sum(len(j.files) for j in jobs)} file(s) on Spark")
        stats_dir = self.dataset / ".incoming" / f"files-{uuid.uuid4().hex}"
        target = self.dataset / "events"
        with self.timings.stage("parse"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pandas.*", category=FutureWarning)
            if jobs:
                events = events_frame(self.spark, jobs, tz=tz, fmt=fmt, stats_dir=stats_dir,
                                      batch_bytes=batch_bytes, max_line=max_line)
            else:  # nothing to read: the tables are empty, with their columns
                events = self.spark.createDataFrame([], EVENTS_DDL)
            self._write(events, target, "events")
        stats = read_stats(stats_dir)
        shutil.rmtree(stats_dir.parent, ignore_errors=True)
        result = IngestResult()
        results = {r.path: r for r in skipped}
        for job in jobs:
            for spec in job.files:
                s = stats.get(spec.path) or FileStats(spec.path, year_source=spec.year_source)
                results[spec.path] = FileResult(
                    spec.path, "+".join(s.held) if s.held and not s.skipped else spec.fmt,
                    lines=s.lines,
                    cut_lines=s.cut_lines, year_source=s.year_source, damaged=s.damaged,
                    leap_days=s.leap_days, skipped=s.skipped)
        # in the order the files were read: a file's row replaces the one it continues
        self.file_stats = {f.path: stats[f.path] for j in jobs for f in j.files
                           if f.path in stats}
        result.files = [results[f.path] for f in files if f.path in results]
        for r in result.files:
            if r.damaged:
                self._say(f"warning: {r.path}: {r.damaged}")
            if r.cut_lines:
                self._say(f"warning: {r.path}: {r.cut_lines:,} line(s) longer than "
                          f"{max_line:,} bytes cut to {max_line:,}")
        return result

    def _write(self, df: DataFrame, target: Path, name: str) -> None:
        """Write ``df`` as the dataset's table ``name`` (replacing it), by day where the
        table has one, under file names of its own (``part-<uuid>.parquet``: Spark names
        the files of one task alike in every day folder)."""
        from pyspark.sql import functions as F

        table = TABLES[name]
        cols = [F.col(c) for c in table.columns]
        writer = (df.select(*cols, F.to_date(F.col(table.day)).alias("day")).write
                  .partitionBy("day") if table.day else df.select(*cols).write)
        writer.mode("overwrite").parquet(str(target))
        for path in list(target.glob("**/*")):
            if path.is_file() and path.name.startswith(("_", ".")):
                path.unlink()  # _SUCCESS, checksums: not data to any reader
            elif path.is_file() and path.suffix == ".parquet":
                path.rename(path.with_name(f"part-{uuid.uuid4().hex}.parquet"))
        if not any(target.glob("**/*.parquet")):  # no rows: one empty file keeps the columns
            folder = target / f"day={NULL_DAY}" if table.day else target
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(df.select(*cols).limit(0).toArrow(),
                           folder / f"part-{uuid.uuid4().hex}.parquet")

    def _read(self, name: str) -> DataFrame:
        df = self.spark.read.parquet(str(self.dataset / name))
        return df.select(*TABLES[name].columns)  # without the partition column

    # --- 2. model ----------------------------------------------------------------------
    def build_model(self) -> None:
        """Run the model's statements as Spark SQL over the dataset's events; write each
        analyst table to the dataset."""
        spark = self.spark
        self._say("building the model on Spark")
        with self.timings.stage("model"):
            self._read("events").createOrReplaceTempView("events")
            for statement in model_statements(SPARK):
                name = statement.name
                if name is None or name in _SKIPPED:
                    continue
                started = time.monotonic()
                if statement.kind == "drop":
                    spark.catalog.dropTempView(name)
                elif statement.kind == "view" and name not in _MATERIALISED:
                    spark.sql(statement.sql).createOrReplaceTempView(name)
                elif name in TABLES:
                    # written and read back: published and materialised at once; a
                    # cache() keeps the table's whole plan, which every later statement
                    # plans again (the driver ran out of memory planning deliveries)
                    self._write(spark.sql(statement.sql), self.dataset / name, name)
                    self._read(name).createOrReplaceTempView(name)
                else:  # a working table: computed once, its plan cut
                    spark.sql(statement.sql).localCheckpoint(eager=True) \
                        .createOrReplaceTempView(name)
                if statement.kind != "drop":  # (a drop would overwrite its table's)
                    self.timings.statements[name] = time.monotonic() - started
            self._write(spark.table("threads"), self.dataset / "threads", "threads")

    # --- 3. the warehouse reads the dataset ---------------------------------------------
    def attach(self, wh: Warehouse) -> None:
        """Make the warehouse's events and model tables the dataset's files (hard links:
        no byte is copied where the file system has them), replacing what it held."""
        con = wh.con
        with self.timings.stage("attach"):
            before = set(wh.parts_dir.glob("part-*.parquet"))
            with transaction(con):
                con.execute("DELETE FROM parts")
                con.execute("DELETE FROM files")
                con.execute("DELETE FROM model_dirty")
                wh.parts_dir.mkdir(parents=True, exist_ok=True)
                for part in sorted(self.dataset.glob("events/day=*/part-*.parquet")):
                    if (wh.parts_dir / part.name).exists():  # this dataset's, linked before
                        before.discard(wh.parts_dir / part.name)
                    else:
                        link_file(part, wh.parts_dir / part.name)
                    meta = pq.read_metadata(part)
                    con.execute("INSERT INTO parts (part, source_file, rows, partial) "
                                "VALUES (?, ?, ?, false)",
                                [part.name, _one_source(meta), meta.num_rows])
                wh.refresh_events_view()
                self._ledger(wh)
                for name in MODEL_TABLES:
                    if has_tombstones(con, name):  # of DuckDB builds: these are afresh
                        con.execute(f"DELETE FROM {dead_table(name)}")
                    paths = []
                    for part in sorted(self.dataset.glob(f"{name}/**/*.parquet")):
                        paths.append(model_part_path(wh.parquet_dir, name, 0))
                        link_file(part, paths[-1])
                    wh.set_model_files(name, paths)
                    wh.record_part_times(name, paths)
                create_views(con)
            for old in before:  # the parts of the run before, no longer in the ledger
                old.unlink(missing_ok=True)
            wh.tidy_parquet_views()

    def _ledger(self, wh: Warehouse) -> None:
        """The ledger rows of the files read (lines and bytes from the executors, times
        and unparsed lines from the events), as ingest writes them: a file that continues
        another (its first bytes repeat it) takes over its row, counts added; one that
        added nothing past it has none."""
        counts = {r[0]: r[1:] for r in wh.con.execute(
            "SELECT source_file, count(*) FILTER (WHERE kind = 'unparsed'), min(ts), max(ts) "
            "FROM events GROUP BY source_file").fetchall()}
        rows: dict[str, dict[str, Any]] = {}
        for path, s in self.file_stats.items():
            if s.skipped:
                continue
            head = read_head(path, HEAD_BYTES)
            unparsed, first, last = counts.get(path, (0, None, None))
            row = {"path": path, "format": "+".join(s.held), "head_len": len(head),
                   "head_sha256": head_digest(head), "bytes_ingested": s.consumed,
                   "lines": s.whole, "unparsed": unparsed, "first_ts": first,
                   "last_ts": last, "year_source": s.year_source or None}
            if s.continues in rows:
                before = rows.pop(s.continues)
                row["lines"] += before["lines"]
                row["unparsed"] += before["unparsed"]
                row["first_ts"] = extreme(min, first, before["first_ts"])
                row["last_ts"] = extreme(max, last, before["last_ts"])
            rows[path] = row
        now = datetime.now(UTC)
        for row in rows.values():
            row["ingested_at"] = now
            wh.con.execute(f"INSERT INTO files ({', '.join(row)}) "
                           f"VALUES ({', '.join('?' * len(row))})", list(row.values()))

    # --- 4. rules ------------------------------------------------------------------------
    def rule_runner(self, scope: Scope | None) -> Callable[[Rule, str], tuple[CompiledRule,
                                                                              Any]]:
        """``execute.run_rule``'s runner: the rule as Spark SQL over the Spark model (in
        ``scope``, as the DuckDB engine limits it)."""
        spark = self.spark
        if scope is not None and scope.since is not None:
            for name in ("logical_messages", "messages", "deliveries"):
                spark.sql(scoped_table_sql(name, name, scope.since, SPARK)) \
                    .createOrReplaceTempView(name)
        if scope is not None and scope.limited:
            spark.sql(scope_sql(SPARK), args=scope_params(scope)) \
                .createOrReplaceTempView("_scope")

        def run(rule: Rule, source: str) -> tuple[CompiledRule, Any]:
            with self.timings.stage("rules"):
                compiled = compile_rule(rule, source=source, dialect=SPARK) \
                    if source != ALL_MESSAGES else compile_rule(rule, dialect=SPARK)
                hits = staged_sql(spark, compiled.sql, list(compiled.params))
            return compiled, hits

        return run

    # --- 5. incidents into the dataset ---------------------------------------------------
    def publish_incidents(self, wh: Warehouse) -> None:
        """Add the detection's incidents to the dataset (DuckDB writes them: they are
        few), and write its catalog."""
        with self.timings.stage("dataset"):
            for name in ("incidents", "incident_messages"):
                target = self.dataset / name
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir(parents=True)
                table = TABLES[name]
                cols = ", ".join(f'"{c}"' for c in table.columns)
                if table.day:
                    wh.con.execute(
                        f"COPY (SELECT {cols}, {day_sql(table.day, null=None)} AS day FROM "
                        f"main.{name}) TO {sql_path(target)} (FORMAT parquet, PARTITION_BY "
                        "(day), COMPRESSION zstd, FILENAME_PATTERN 'part-{uuid}', "
                        "OVERWRITE_OR_IGNORE)")
                if not table.day or not any(target.glob("*/*.parquet")):
                    folder = target if not table.day else target / f"day={NULL_DAY}"
                    folder.mkdir(parents=True, exist_ok=True)
                    wh.con.execute(f"COPY (SELECT {cols} FROM main.{name}) TO "
                                   f"{sql_path(folder / 'part-0.parquet')} (FORMAT parquet, "
                                   "COMPRESSION zstd)")
            write_catalog(self.dataset)


def staged_sql(spark: SparkSession, sql: str, params: list[Any]) -> Any:
    """The rows of ``sql`` (Spark SQL with ``?`` markers bound to ``params``) as Arrow,
    each of its CTEs that later parts read more than once computed once first: Spark
    computes a CTE again at every use (a windowed rule reads its numbered messages four
    times). The CTEs are temporary views of their own names while it runs, unless the
    session has a view of that name."""
    ctes, final = split_with(sql)

    def reads(text: str, name: str) -> int:
        return len(re.findall(rf"\b{name}\b", text))

    kept = [name for k, (name, _) in enumerate(ctes)
            if sum(reads(text, name) for text in [*(b for _, b in ctes[k + 1:]), final]) > 1
            and not spark.catalog.tableExists(name)]
    offsets, at = {}, 0
    for name, body in ctes:
        offsets[name] = (at, at + markers(body))
        at = offsets[name][1]

    def piece(select: str, own: list[Any], done: set[str]) -> tuple[str, list[Any]]:
        # the CTEs it reads, not yet views, with theirs, in the order of the statement
        need, todo = set(), [select]
        while todo:
            text = todo.pop()
            for name, body in ctes:
                if name not in need and name not in done and reads(text, name):
                    need.add(name)
                    todo.append(body)
        used = [(name, body) for name, body in ctes if name in need]
        args = [v for name, _ in used for v in params[slice(*offsets[name])]] + own
        head = ("WITH " + ", ".join(f"{name} AS ({body})" for name, body in used) + " "
                if used else "")
        return head + select, args

    done: set[str] = set()
    try:
        for name, body in ctes:
            if name in kept:
                text, args = piece(body, params[slice(*offsets[name])], done)
                spark.sql(text, args=args).localCheckpoint(eager=True) \
                    .createOrReplaceTempView(name)
                done.add(name)
        text, args = piece(final, params[at:], done)
        return spark.sql(text, args=args).toArrow()
    finally:
        for name in done:
            spark.catalog.dropTempView(name)


def _one_source(meta: Any) -> str:
    """The log file of an events part, as its statistics tell it (the first, when it
    holds lines of several)."""
    names = meta.schema.names
    if "source_file" not in names or not meta.num_row_groups:
        return ""
    stats = meta.row_group(0).column(names.index("source_file")).statistics
    value = stats.min if stats is not None and stats.has_min_max else ""
    return value.decode() if isinstance(value, bytes) else str(value)

