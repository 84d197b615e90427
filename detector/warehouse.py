"""The warehouse: a DuckDB file for the model and the ledger, Parquet parts for events.

Events, the bulk of the data (one row per log line), are written by polars straight to
Parquet parts (``<db stem>.parquet/events/part-*.parquet``) as batches are parsed, so
memory stays bounded and no row passes through DuckDB's insert path; the DuckDB view
``events`` reads them all. The model tables (messages, deliveries, ...) are DuckDB tables
built from that view.

Ingest is incremental and idempotent: the ``files`` ledger remembers, for every file read,
a hash of its first bytes and how many (decompressed) bytes were ingested. A file whose
head matches a ledger entry is the same log (the live ``mail.log`` grown since, or a
rotated / compressed copy of it), so only the bytes after the ingested prefix are read.
Each file is one transaction: its parts are written aside and moved into place and
recorded (table ``parts``) when the file commits; parts a crash left behind are
removed on the next open, so an error leaves the warehouse as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import polars as pl
import pyarrow.parquet as pq

from detector import thread_limit
from detector.errors import MailstormError, UsageError
from detector.schema import EVENT_COLUMNS, comment_tables
from detector.sqltext import sql_string, truncated

SCHEMA_VERSION = 2
HEAD_BYTES = 65536
# Parquet encodings of the events parts, chosen per column: a dictionary pays off for the
# columns with few distinct values (hosts, kinds, statuses, lists...) and is wasted work on
# addresses, ids and reply texts; min/max statistics let a query skip parts by time or
# kind, and are not worth computing for the rest. 18% faster than writing every column
# the same way, for files 10% larger.
_DICTIONARY_COLUMNS = ["host", "source_file", "program", "kind", "status", "dsn", "relay",
                       "client", "sender", "orig_to"]
_STATS_COLUMNS = ["ts", "kind"]
#: the file of a model table's part (write_model_part): the table's name, the build that
#: wrote it (files of older versions, which held it in a column ``build``, name none), a
#: uuid
_MODEL_PART_FILE = re.compile(r"([a-z_]+)-(?:b([0-9]+)-)?[0-9a-f]{32}\.parquet")
#: a UTC day of at least this many events has a file of its own in a daily model table
#: (ModelPart.daily), which the dataset links; the other days' rows share one file: a copy
#: per day costs more than the dataset's writing a small day's rows
DAILY_MIN_EVENTS = 100_000
_PARQUET_VIEW = "parquet_view:"  # meta key of a model table kept as Parquet: + its name
class ModelPart(NamedTuple):
    """How a model table kept as Parquet parts is maintained: ``key`` (of SQL type
    ``kind``) names the rows a later build replaces (see model_part_sql), ``time`` is the
    time of a row, by which retention (--keep) drops whole parts. ``daily``: a build
    writes the rows of each UTC day of ``time`` (a column) with DAILY_MIN_EVENTS events
    or more to a file of their own, so that the dataset's folder of that day can hold the
    file itself, as it does the events parts (``Warehouse.write_model_part``)."""

    key: str
    kind: str
    time: str
    daily: bool = False


#: the model tables kept as Parquet parts (one per build), in the order model.sql makes
#: them (``threads`` is a view summing ``logical_messages``: threads.sql)
MODEL_PARTS: dict[str, ModelPart] = {
    "messages": ModelPart("message_key", "BIGINT", "last_seen"),
    "expansions": ModelPart("message_uid", "VARCHAR", "ts"),
    "list_posts": ModelPart("message_id", "VARCHAR", "ts"),
    "deliveries": ModelPart("message_key", "BIGINT", "ts", daily=True),
    "logical_messages": ModelPart("message_uid", "VARCHAR",
                                  "coalesce(last_delivery, last_seen)"),
    # not for analysts: the hashes an incremental build follows (model.sql, stage 6)
    "_relations": ModelPart("message_key", "BIGINT", "last_seen"),
}


def dead_table(name: str) -> str:
    """The table of tombstones of the model table ``name``: (key, build) hides the rows
    with that key written by builds before ``build``."""
    return f"model_dead_{name}"

_DUCK_TYPES: dict[pl.DataType, str] = {
    pl.Datetime("us", "UTC"): "TIMESTAMPTZ",
    pl.String(): "VARCHAR",
    pl.Int64(): "BIGINT",
    pl.Float64(): "DOUBLE",
}

_DDL = [
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    """CREATE TABLE IF NOT EXISTS files (
        path VARCHAR, format VARCHAR, head_len BIGINT, head_sha256 VARCHAR,
        bytes_ingested BIGINT, lines BIGINT, unparsed BIGINT,
        first_ts TIMESTAMPTZ, last_ts TIMESTAMPTZ, ingested_at TIMESTAMPTZ,
        year_source VARCHAR)""",
    # warehouses made before the ledger said where a file's year came from
    "ALTER TABLE files ADD COLUMN IF NOT EXISTS year_source VARCHAR",
    # partial: the part holds only a last line that had no newline yet (re-read next run)
    """CREATE TABLE IF NOT EXISTS parts (
        part VARCHAR PRIMARY KEY, source_file VARCHAR, rows BIGINT, partial BOOLEAN)""",
    # the line kinds each part holds (null: a part written before they were recorded), by
    # which the model skips its statements over kinds no part holds
    "ALTER TABLE parts ADD COLUMN IF NOT EXISTS kinds VARCHAR[]",
    # the messages of events parts removed since the model was built (a half-written last
    # line superseded): the next build reads them again (detector/model/build.py)
    "CREATE TABLE IF NOT EXISTS model_dirty (host VARCHAR, queue_id VARCHAR, "
    "message_id VARCHAR)",
    # the newest row time of each model part (ModelPart.time), recorded as it is written,
    # by which retention drops whole parts without reading them
    "CREATE TABLE IF NOT EXISTS model_part_times (part VARCHAR PRIMARY KEY, "
    "last_ts TIMESTAMPTZ)",
]


def default_memory_limit() -> str:
    """DuckDB's share of memory: a quarter of the machine, at most 1 GB.

    The parse keeps its own memory bounded by the batch size; together they stay under
    about 2 GB on any log size (see bench/README.md).
    """
    return f"{max(256, min(1024, machine_memory() // 4 >> 20))}MB"


def machine_memory() -> int:
    """Bytes of memory this machine has (4 GiB where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
          "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4}


def parse_size(text: str) -> int:
    """Bytes in a size like '2GB', '500 MB' or '1.5GiB' (the forms DuckDB accepts)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).upper() not in _UNITS:
        raise UsageError(f"bad --memory-limit {text!r}: use a size like 2GB or 500MB")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def _empty_events_sql() -> str:
    cols = ", ".join(f"CAST(NULL AS {_DUCK_TYPES[t]}) AS {name}"
                     for name, (t, _) in EVENT_COLUMNS.items())
    return f"SELECT {cols} WHERE false"


#: a file in a warehouse's Parquet folder naming the warehouse file that owns it
OWNER_MARK = ".mailstorm-warehouse"


def _owner_of(folder: Path) -> str | None:
    """The warehouse file a Parquet folder is marked as owned by, if it still exists
    beside it (a mark naming a file since renamed away claims nothing)."""
    try:
        name = (folder / OWNER_MARK).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return name if name and (folder.parent / name).exists() else None


def parquet_dir_of(db: Path | str) -> Path:
    """The folder of Parquet files beside the warehouse file ``db``: ``<stem>.parquet``,
    unless another warehouse of the same stem owns that one (``w.duckdb`` and ``w.db`` in
    one folder), then ``<name>.parquet``."""
    base = Path(db)
    preferred = base.with_name(base.stem + ".parquet")
    owner = _owner_of(preferred)
    if owner is None or owner == base.name:
        return preferred
    return base.with_name(base.name + ".parquet")


def parts_dir_of(db: Path | str) -> Path:
    """Where the Parquet parts of the warehouse file ``db`` live."""
    return parquet_dir_of(db) / "events"


#: seconds a run waits for another process's lock on the warehouse (a run still going,
#: an analyst's open session) before it gives up
LOCK_TIMEOUT = 300.0
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<prog>.+?) \(PID (?P<pid>\d+)\)")


def _connect_waiting(path: str, timeout: float) -> duckdb.DuckDBPyConnection:
    """Open the warehouse for writing, waiting up to ``timeout`` seconds while another
    process holds it; then one error saying which process holds it."""
    deadline = time.monotonic() + max(timeout, 0.0)
    while True:
        try:
            threads = thread_limit()
            return duckdb.connect(path, config={"threads": threads} if threads else {})
        except duckdb.IOException as exc:
            holder = _LOCK_HOLDER.search(str(exc))
            if holder is None:
                raise MailstormError(f"cannot open warehouse {path}: {exc}") from exc
            if time.monotonic() >= deadline:
                raise MailstormError(
                    f"warehouse {path} is locked by process {holder['pid']} "
                    f"({holder['prog']}) and was not released within {timeout:g} s "
                    "(another run, or an analyst's session on it); see --lock-timeout") \
                    from exc
            time.sleep(min(0.5, max(deadline - time.monotonic(), 0.01)))
        except duckdb.Error as exc:
            raise MailstormError(f"cannot open warehouse {path}: {exc}") from exc


def _whole_parquet(path: Path) -> bool:
    """A Parquet file that ends as one must (its footer's magic): a truncated or
    overwritten part does not."""
    try:
        with open(path, "rb") as f:
            f.seek(-4, os.SEEK_END)
            return f.read(4) == b"PAR1"
    except OSError:
        return False


def sql_path(path: Path) -> str:
    """An absolute path as a SQL string literal."""
    return sql_string(str(path.resolve()))


#: the main schemas a lookup reads: the current database's and temp's, not those of
#: another database attached to the connection
_OWN_MAIN = "schema_name = 'main' AND (database_name = current_database() OR temporary)"


def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the current database's main schema, or temp's, holds ``name`` (a table or
    a view)."""
    # DuckDB's own catalog functions: information_schema is a view over them, twice as slow
    return bool(con.execute(
        f"SELECT 1 FROM duckdb_tables() WHERE table_name = $1 AND {_OWN_MAIN} UNION ALL "
        f"SELECT 1 FROM duckdb_views() WHERE view_name = $1 AND {_OWN_MAIN}",
        [name]).fetchall())


def replace_views(con: duckdb.DuckDBPyConnection, views: dict[str, str]) -> None:
    """``CREATE OR REPLACE VIEW name AS select`` for each of ``views`` in the current
    database, but for a view that already reads exactly that (DuckDB's normalised text
    compared): a view made again loses its comments, and giving them back costs more than
    the comparison."""
    if not views:
        return
    changed = con.execute(
        "SELECT n.name FROM (SELECT unnest($1) AS name, unnest($2) AS sel) n "
        "LEFT JOIN duckdb_views() v ON v.view_name = n.name "
        "AND v.database_name = current_database() AND v.schema_name = 'main' "
        "WHERE v.sql IS DISTINCT FROM 'CREATE VIEW ' || n.name || ' AS ' "
        "|| json_deserialize_sql(json_serialize_sql(n.sel)) || ';'",
        [list(views), list(views.values())]).fetchall()
    for (name,) in changed:
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {views[name]}")


def database_name(con: duckdb.DuckDBPyConnection) -> str:
    """The warehouse's database name in SQL (its file's stem, quoted), to name its tables
    where another schema (temp's, an attached database's) holds the same names."""
    row = con.execute("SELECT current_database()").fetchone()
    return '"' + str(row[0] if row else "memory").replace('"', '""') + '"'


def _parquet_view_files(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """Model table kept as Parquet -> the names of its files (from ``meta``)."""
    rows = con.execute("SELECT key, value FROM meta WHERE key LIKE ?",
                       [_PARQUET_VIEW + "%"]).fetchall()
    return {key.removeprefix(_PARQUET_VIEW): [f for f in file.split(",") if f]
            for key, file in rows}


def main_tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The tables (not views) of the current database's main schema and temp's."""
    return {name for (name,) in con.execute(
        f"SELECT table_name FROM duckdb_tables() WHERE {_OWN_MAIN}").fetchall()}


def set_meta(con: duckdb.DuckDBPyConnection, values: dict[str, str]) -> None:
    """Set keys of the ``meta`` table, in the caller's transaction: a delete and an
    insert, which DuckDB runs in half the time of one ``INSERT OR REPLACE``."""
    keys = list(values)
    con.execute("DELETE FROM meta WHERE list_contains($1, key)", [keys])
    con.execute("INSERT INTO meta SELECT unnest($1), unnest($2)", [keys, list(values.values())])


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """One transaction around the block: committed at its end, rolled back if it raises
    (a rollback DuckDB refuses after a failed write leaves the first error the one
    raised)."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def has_tombstones(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return table_exists(con, dead_table(name))


def parquet_view_paths(con: duckdb.DuckDBPyConnection, db: Path | str
                       ) -> dict[str, list[Path]]:
    """View name -> its files, for the model tables kept as Parquet (see
    ``Warehouse.write_model_part``) whose files are all there."""
    paths = {name: [parquet_dir_of(db) / f for f in files]
             for name, files in _parquet_view_files(con).items()
             if name in MODEL_PARTS}  # not a table an older model kept (build drops it)
    return {name: found for name, found in paths.items()
            if found and all(p.is_file() for p in found)}


def part_build(path: Path) -> int | None:
    """The build that wrote the model part ``path``, from its name (None: a file of an
    older version, which holds it in its column ``build``, if anywhere)."""
    found = _MODEL_PART_FILE.fullmatch(path.name)
    return int(found.group(2)) if found and found.group(2) is not None else None


def model_part_path(parquet_dir: Path, name: str, build: int) -> Path:
    """A new file name for a part of the model table ``name`` written by ``build``."""
    return parquet_dir / f"{name}-b{int(build)}-{uuid.uuid4().hex}.parquet"


Relation = Callable[[list[Path]], str]


def parquet_scan(paths: list[Path]) -> str:
    """``read_parquet`` of these files (absolute paths), as SQL."""
    return "read_parquet([" + ", ".join(sql_path(p) for p in paths) + "])"


#: the build in a model part's file name (see _MODEL_PART_FILE)
_BUILD_IN_NAME = "-b([0-9]+)-[0-9a-f]{32}[.]parquet$"


def with_builds_sql(paths: list[Path], source: Relation | None = None) -> str:
    """The rows of these model parts, each with the build that wrote it as ``build``
    (a part's file holds exactly its table's columns, so that the dataset can link it):
    from the file's name, which DuckDB reads once per vector of rows, not per row; with
    ``source`` (a relation of some of the files, without their names), one scan per
    build and the number a constant."""
    older = [p for p in paths if part_build(p) is None]
    named = [p for p in paths if part_build(p) is not None]
    scans = []
    if named and source is None:
        scans.append(f"SELECT * EXCLUDE (filename), CAST(regexp_extract(filename, "
                     f"'{_BUILD_IN_NAME}', 1) AS INTEGER) AS build FROM read_parquet(["
                     + ", ".join(sql_path(p) for p in named) + "], filename = true)")
    elif named and source is not None:
        by_build: dict[int, list[Path]] = {}
        for path in named:
            by_build.setdefault(part_build(path) or 0, []).append(path)
        scans += [f"SELECT *, {b} AS build FROM {source(files)}"
                  for b, files in sorted(by_build.items())]
    if older:  # written before a part's build was in its name: in a column
        scans.append(f"SELECT * FROM {(source or parquet_scan)(older)}")
    return " UNION ALL ".join(scans)


def model_part_sql(name: str, paths: list[Path], *, tombstones: bool,
                   source: Relation | None = None) -> str:
    """SELECT over the parts of the model table ``name`` (absolute paths; ``source``
    makes the relation that reads some of them): each part is one build's rows, and a
    message rebuilt later has a tombstone that hides its rows of earlier builds."""
    if not tombstones:  # a full build's parts, or ones from before builds were incremental
        return f"SELECT * FROM {(source or parquet_scan)(paths)}"
    key = MODEL_PARTS[name].key
    # a join on the key alone (the newest tombstone of each), then the build compared: a
    # correlated NOT EXISTS with the comparison inside ran 20 times slower
    return (f"SELECT d.* EXCLUDE (build) FROM ({with_builds_sql(paths, source)}) d "
            f"LEFT JOIN (SELECT {key}, max(build) AS dead FROM main.{dead_table(name)} "
            f"GROUP BY {key}) x ON x.{key} = d.{key} "
            "WHERE x.dead IS NULL OR d.build >= x.dead")


def parquet_views_sql(con: duckdb.DuckDBPyConnection, db: Path | str) -> dict[str, str]:
    """View name -> SELECT over its current files; absolute paths, checked on every
    open."""
    tables = main_tables(con)
    return {name: model_part_sql(name, paths, tombstones=dead_table(name) in tables)
            for name, paths in parquet_view_paths(con, db).items()}


def events_view_sql(parts_dir: Path) -> str:
    """SELECT over every part in the folder; a typed empty relation when there is none.

    The path is absolute (DuckDB resolves relative ones against the working directory),
    so every open recreates the view: moving the folder does not break it.
    """
    if parts_dir.is_dir() and any(parts_dir.glob("part-*.parquet")):
        return f"SELECT * FROM read_parquet({sql_path(parts_dir / 'part-*.parquet')})"
    return _empty_events_sql()


@dataclass(frozen=True)
class LedgerEntry:
    path: str
    head_len: int
    head_sha256: str
    bytes_ingested: int
    lines: int
    unparsed: int = 0
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    format: str | None = None  # the formats the file held so far ("postfix+sendmail")
    year_source: str | None = None  # where the year of its year-less stamps came from


def head_digest(head: bytes) -> str:
    return hashlib.sha256(head).hexdigest()


def extreme(pick: Callable[[list[datetime]], datetime], a: datetime | None,
             b: datetime | None) -> datetime | None:
    """min or max of two optional times (None when both are)."""
    present = [t for t in (a, b) if t is not None]
    return pick(present) if present else None


@dataclass(frozen=True)
class Part:
    """One Parquet part written for a file, with what the ledger needs to know of it."""

    path: Path
    rows: int
    unparsed: int
    first_ts: datetime | None
    last_ts: datetime | None
    kinds: tuple[str, ...] = ()  # the line kinds it holds


@dataclass
class FileWrite:
    """The parts of one file being ingested, not yet visible."""

    written: list[Part] = field(default_factory=list)
    partial: set[Path] = field(default_factory=set)  # parts of a half-written last line
    unparsed: int = 0
    first_ts: datetime | None = None
    last_ts: datetime | None = None

    def add(self, parts: Part | list[Part] | None, partial: bool) -> None:
        for part in [parts] if isinstance(parts, Part) else parts or []:
            self.written.append(part)
            if partial:
                self.partial.add(part.path)
            self.unparsed += part.unparsed
            self.first_ts = extreme(min, self.first_ts, part.first_ts)
            self.last_ts = extreme(max, self.last_ts, part.last_ts)


class Warehouse:
    """A DuckDB file holding events, the model tables, incidents and the ingest ledger."""

    def __init__(self, path: Path | str, memory_limit: str | None = None, *,
                 lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.path = str(path)
        self.con = _connect_waiting(self.path, lock_timeout)
        self.con.execute("SET TimeZone = 'UTC'")
        #: this warehouse's database in SQL, for statements run while another is in use
        #: (the model build's scratch database)
        self.catalog = database_name(self.con)
        #: newest row time of each model part written and not yet recorded
        self._part_times: dict[str, str | None] = {}
        # no query here relies on row order; keeping it costs memory on big tables
        self.con.execute("SET preserve_insertion_order = false")
        # the model's tables and the events are many Parquet parts, read by many queries
        # of one run: their footers are parsed once (parts are never rewritten in place)
        self.con.execute("SET parquet_metadata_cache = true")
        base = Path(self.path)
        # DuckDB spills what does not fit under the limit to a folder beside the file
        self.con.execute("SET temp_directory = ?",
                         [str(base.with_name(base.name + ".tmp"))])
        try:
            self.con.execute("SET memory_limit = ?", [memory_limit or default_memory_limit()])
        except duckdb.Error as exc:
            raise UsageError(f"bad --memory-limit {memory_limit!r}: use a size like 2GB or "
                             "500MB") from exc
        self.parquet_dir = parquet_dir_of(base)
        self.parts_dir = parts_dir_of(base)
        self._tmp_dir = self.parts_dir / ".incoming"
        # this warehouse's folder from now on: no other warehouse tidies it
        self.parquet_dir.mkdir(parents=True, exist_ok=True)
        (self.parquet_dir / OWNER_MARK).write_text(base.name + "\n", encoding="utf-8")
        try:
            self._migrate()
            self._tidy_parts()
        except BaseException:
            self.con.close()
            raise
        self.tidy_parquet_views()
        # the folder may have moved: views whose paths changed are made again
        replace_views(self.con, {"events": events_view_sql(self.parts_dir),
                                 **parquet_views_sql(self.con, base)})
        comment_tables(self.con)  # the views made again lose them

    def _migrate(self) -> None:
        for ddl in _DDL:
            self.con.execute(ddl)
        row = self.scalar_row("SELECT value FROM meta WHERE key = 'schema_version'")
        if row is None:
            self.con.execute(
                "INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
        elif int(row[0]) != SCHEMA_VERSION:
            raise MailstormError(
                f"{self.path} has schema version {row[0]}, this mailstorm writes "
                f"{SCHEMA_VERSION}: use a new --db file")

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- ledger -------------------------------------------------------------------------
    def find_ingested(self, head: bytes) -> LedgerEntry | None:
        """The ledger entry of a file whose head this file starts with, if any."""
        rows = self.con.execute(
            "SELECT path, head_len, head_sha256, bytes_ingested, lines, unparsed, first_ts, "
            "last_ts, format, year_source FROM files WHERE head_len <= ? "
            "ORDER BY bytes_ingested DESC",
            [len(head)]
        ).fetchall()
        for row in rows:
            if head_digest(head[: row[1]]) == row[2]:
                return LedgerEntry(*row)
        return None

    def begin_file(self) -> FileWrite:
        self._tmp_dir.mkdir(parents=True, exist_ok=True)
        return FileWrite()

    def write_part(self, events: pl.DataFrame) -> list[Part]:
        """Write a batch of events as Parquet parts, aside until their file commits: one
        part per UTC day of ``ts`` (a batch across midnight makes two), so that the
        dataset's day folders hold the parts themselves (``detector.dataset``).

        Thread-safe (no shared state): ingest calls it from its parse workers.
        """
        if events.height == 0:
            return []
        days = events["ts"].dt.date()
        if days.n_unique() == 1:
            return [self._write_one(events)]
        return [self._write_one(day) for day in
                events.with_columns(_day=days).partition_by("_day", maintain_order=True,
                                                            include_key=False)]

    def _write_one(self, events: pl.DataFrame) -> Part:
        path = self._tmp_dir / f"part-{uuid.uuid4().hex}.parquet"
        try:
            # Polars' string views as they are (to large strings was a copy of every
            # string, a sixth of the write); the file's own types, not an Arrow schema
            # naming views, so that every reader reads plain strings
            pq.write_table(events.to_arrow(compat_level=pl.CompatLevel.newest()), path,
                           compression="zstd", compression_level=1,
                           use_dictionary=_DICTIONARY_COLUMNS,
                           write_statistics=_STATS_COLUMNS, store_schema=False)
        except OSError as exc:  # Arrow's message names no file: say which
            path.unlink(missing_ok=True)
            raise OSError(exc.errno, str(exc).removeprefix("Error writing bytes to file. "),
                          str(path)) from exc
        ts = events["ts"]
        return Part(path, events.height, int((events["kind"] == "unparsed").sum()),
                    ts.min(), ts.max(),  # type: ignore[arg-type]
                    tuple(sorted(events["kind"].drop_nulls().unique())))

    def commit_file(self, txn: FileWrite, *, path: str, fmt: str, head: bytes,
                    previous: LedgerEntry | None, bytes_ingested: int, lines: int,
                    year_source: str | None = None) -> None:
        """Make the file's parts visible and record it in the ledger, atomically."""
        head_len = min(len(head), HEAD_BYTES)
        stale: list[str] = []
        unparsed, first, last = txn.unparsed, txn.first_ts, txn.last_ts
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            if previous is not None:
                con.execute("DELETE FROM files WHERE head_len = ? AND head_sha256 = ?",
                            [previous.head_len, previous.head_sha256])
                # a half-written last line stored last time is superseded by this read
                stale = [r[0] for r in con.execute(
                    "SELECT part FROM parts WHERE source_file = ? AND partial",
                    [previous.path]).fetchall()]
                con.execute("DELETE FROM parts WHERE source_file = ? AND partial",
                            [previous.path])
                superseded = 0
                if stale:  # the model built from them is rebuilt by the next build
                    files = ", ".join(sql_path(self.parts_dir / n) for n in stale)
                    con.execute("INSERT INTO model_dirty SELECT host, queue_id, message_id "
                                f"FROM read_parquet([{files}])")
                    # a half line that did not parse is read again whole: not unparsed
                    row = con.execute(f"SELECT count(*) FROM read_parquet([{files}]) "
                                      "WHERE kind = 'unparsed'").fetchone()
                    superseded = int(row[0]) if row else 0
                unparsed += previous.unparsed - superseded
                first = extreme(min, first, previous.first_ts)
                last = extreme(max, last, previous.last_ts)
            for part in txn.written:
                con.execute("INSERT INTO parts (part, source_file, rows, partial, kinds) "
                            "VALUES (?, ?, ?, ?, ?)", [part.path.name, path, part.rows,
                                                       part.path in txn.partial,
                                                       list(part.kinds)])
            con.execute("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, now(), ?)",
                        [path, fmt, head_len, head_digest(head[:head_len]), bytes_ingested,
                         lines, unparsed, first, last, year_source or None])
            for part in txn.written:
                os.replace(part.path, self.parts_dir / part.path.name)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            for part in txn.written:  # moved or not, none of them is committed
                (self.parts_dir / part.path.name).unlink(missing_ok=True)
                part.path.unlink(missing_ok=True)
            raise
        for name in stale:
            (self.parts_dir / name).unlink(missing_ok=True)
        self.refresh_events_view()

    def rollback(self, txn: FileWrite) -> None:
        for part in txn.written:
            part.path.unlink(missing_ok=True)

    def _tidy_parts(self) -> None:
        """Remove what a crash left (parts written but never committed), and check that
        every part the ledger names is there and whole.

        A committed part is moved into place before its ledger row commits, so no crash
        leaves a known part missing: one missing or damaged was removed or overwritten
        from outside. Its lines are gone while the ledger still counts them, and the
        ledger cannot tell which of today's files to read again (a rotated file's parts
        carry the name it had when each was read), so the run stops and says so; nothing
        is deleted."""
        if self._tmp_dir.is_dir():
            for leftover in self._tmp_dir.iterdir():
                leftover.unlink()
        known = dict(self.con.execute("SELECT part, source_file FROM parts").fetchall())
        present = {p.name for p in self.parts_dir.glob("part-*.parquet")} \
            if self.parts_dir.is_dir() else set()
        for name in present - set(known):
            (self.parts_dir / name).unlink()
        missing = sorted(set(known) - present)
        damaged = sorted(n for n in set(known) & present
                         if not _whole_parquet(self.parts_dir / n))
        if missing or damaged:
            files = sorted({known[n] for n in (*missing, *damaged)})
            what = ", ".join(
                [f"{len(missing)} missing"] * bool(missing)
                + [f"{len(damaged)} damaged"] * bool(damaged))
            raise MailstormError(
                f"{self.path}: {what} of its {len(known)} event parts in {self.parts_dir} "
                f"(lines of {', '.join(files[:5])}{' ...' if len(files) > 5 else ''}): the "
                "warehouse no longer holds every line its ledger counts; move it and its "
                "Parquet folder aside and run again on the logs to rebuild it")

    def write_model_part(self, name: str, select: str, build: int) -> list[tuple[Path, int]]:
        """Write the rows of ``select`` to new Parquet files beside the events, as build
        ``build``'s part of the model table ``name`` (``set_model_files`` makes it
        visible); returns each file and its row count. DuckDB writes Parquet a third
        faster than its own table storage, and a build adds a part rather than rewriting
        a table. A ``daily`` table's rows of each UTC day on which the events it is built
        from hold DAILY_MIN_EVENTS lines or more are a file of their own, all the other
        rows one more: each a copy with its ranges of time, which DuckDB pushes down to
        the events' scan (a day's events are parts of their own), so each reads its day.
        A file without rows is left out, unless no file has any (a part holds its
        table's columns). Each file's newest row time is kept for ``save_part_times``."""
        self.parquet_dir.mkdir(parents=True, exist_ok=True)
        time = MODEL_PARTS[name].time
        if not MODEL_PARTS[name].daily:
            return [self._write_part_file(name, select, [], build)]
        big = sorted(start for start, events in self.con.execute(
            f"SELECT {truncated('UTC', 'day', 'ts')} AS day, count(*) FROM events "
            "GROUP BY day").fetchall() if start is not None and events >= DAILY_MIN_EVENTS)
        files: list[tuple[Path, int]] = []
        # the other days: null, before the first big day, between two, after the last
        rest, params, since = [f"{time} IS NULL"], list[object](), None
        for start in big:
            end = start + timedelta(days=1) if start.date() < date.max else None
            within = f"{time} >= ?" + (f" AND {time} < ?" if end else "")
            files.append(self._write_part_file(
                name, f"SELECT * FROM ({select}) AS rows_of_day WHERE {within}",
                [start, end] if end else [start], build))
            rest.append(f"{time} < ?" if since is None else f"({time} >= ? AND {time} < ?)")
            params += [start] if since is None else [since, start]
            since = end
        if since is not None:
            rest.append(f"{time} >= ?")
            params.append(since)
        where = " OR ".join(rest) if big else "true"
        files.append(self._write_part_file(
            name, f"SELECT * FROM ({select}) AS other_days WHERE {where}", params, build))
        kept = [(path, rows) for path, rows in files if rows] or files[-1:]
        for path, _ in files:
            if all(path != k for k, _ in kept):
                path.unlink(missing_ok=True)
                self._part_times.pop(path.name, None)
        return kept

    def _write_part_file(self, name: str, select: str, params: list[object], build: int
                         ) -> tuple[Path, int]:
        path = model_part_path(self.parquet_dir, name, build)
        # the part's newest time comes with the write's own statistics, not a read back
        row = self.con.execute(f"COPY ({select}) TO {sql_path(path)} "
                               "(FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, "
                               "RETURN_STATS true)", params).fetchone()
        rows = int(row[1]) if row else 0
        time = MODEL_PARTS[name].time
        if not rows:
            newest = None
        elif time.isidentifier():
            newest = ((row[4] or {}).get(f'"{time}"', {}) if row else {}).get("max")
        else:  # an expression (logical_messages): read back
            found = self.con.execute(f"SELECT CAST(max({time}) AS VARCHAR) "
                                     f"FROM read_parquet({sql_path(path)})").fetchone()
            newest = found[0] if found else None
        self._part_times[path.name] = newest
        return path, rows

    def save_part_times(self) -> None:
        """Record the newest row times of the parts written since the last call, in one
        statement (the build's transaction: an insert of its own was a commit each)."""
        if self._part_times:
            self.con.execute(f"INSERT OR REPLACE INTO {self.catalog}.main.model_part_times "
                             "SELECT unnest($1), CAST(unnest($2) AS TIMESTAMPTZ)",
                             [list(self._part_times), list(self._part_times.values())])
        self._part_times.clear()

    def forget_part_times(self) -> None:
        """Drop the times kept for parts a failed build wrote (and removes)."""
        self._part_times.clear()

    def record_part_times(self, name: str, paths: list[Path]) -> None:
        """Record the newest row time of these parts of the model table ``name``."""
        if not paths:
            return
        listed = ", ".join(sql_path(p) for p in paths)
        self.con.execute(f"""INSERT OR REPLACE INTO {self.catalog}.main.model_part_times
            SELECT parse_filename(filename), max({MODEL_PARTS[name].time})
            FROM read_parquet([{listed}], filename = true) GROUP BY ALL""")
        # a part without rows has no time: recorded as such, not read again
        self.con.execute(f"INSERT OR IGNORE INTO {self.catalog}.main.model_part_times "
                         "SELECT unnest(?), NULL", [[p.name for p in paths]])

    def set_model_files(self, name: str, paths: list[Path], *,
                        tombstones: bool | None = None) -> None:
        """Make the view ``name`` read these parts, in the caller's transaction
        (``tombstones``: whether its table of dead rows exists, when the caller knows)."""
        if not paths:  # the table is no longer kept
            self.con.execute("DELETE FROM meta WHERE key = ?", [_PARQUET_VIEW + name])
            return
        set_meta(self.con, {_PARQUET_VIEW + name: ",".join(p.name for p in paths)})
        if tombstones is None:
            tombstones = has_tombstones(self.con, name)
        select = model_part_sql(name, paths, tombstones=tombstones)
        self.con.execute(f"CREATE OR REPLACE VIEW main.{name} AS {select}")

    def parquet_tables(self) -> list[str]:
        """The model tables this warehouse keeps as Parquet parts."""
        return sorted(_parquet_view_files(self.con))

    def model_files(self, name: str) -> list[Path]:
        """The current parts of the model table ``name`` kept as Parquet."""
        return [self.parquet_dir / f for f in _parquet_view_files(self.con).get(name, [])]

    def tidy_parquet_views(self) -> None:
        """Remove the files of model tables no view reads (replaced, or left by a crash)."""
        files = _parquet_view_files(self.con)
        current = [f for names in files.values() for f in names]
        self.con.execute("DELETE FROM model_part_times WHERE part NOT IN (SELECT unnest(?))",
                         [current])
        for path in self.parquet_dir.glob("*-*.parquet"):
            part = _MODEL_PART_FILE.fullmatch(path.name)
            if part and path.name not in files.get(part.group(1), ()):
                path.unlink(missing_ok=True)

    def drop_temp_tables(self) -> None:
        """Drop this session's temporary tables (a build's or a detection's working
        tables): their memory is freed, and a checkpoint no longer pays for them."""
        for (name,) in self.con.execute("SELECT table_name FROM duckdb_tables() "
                                        "WHERE temporary").fetchall():
            self.con.execute(f'DROP TABLE IF EXISTS temp."{name}"')

    def event_kinds(self) -> set[str] | None:
        """The line kinds the committed events parts hold; None when a part's are not
        recorded (written by an older mailstorm, or linked from a Spark dataset)."""
        row = self.scalar_row("SELECT bool_or(kinds IS NULL), "
                              "list_distinct(flatten(list(kinds))) FROM parts")
        if row is None or row[0] is None:
            return set()  # no parts
        return None if row[0] else set(row[1] or [])

    def refresh_events_view(self) -> None:
        """The events view over every committed part (a typed empty view when none)."""
        replace_views(self.con, {"events": events_view_sql(self.parts_dir)})

    # --- queries ------------------------------------------------------------------------
    def query(self, sql: str, params: list | None = None) -> pl.DataFrame:
        rel = self.con.sql(sql, params=params) if params else self.con.sql(sql)
        return rel.pl() if rel is not None else pl.DataFrame()

    def scalar_row(self, sql: str, params: list | None = None) -> tuple | None:
        # fetchall, not fetchone: DuckDB 2 refuses new work while a result is unfinished
        rows = self.con.execute(sql, params or []).fetchall()
        return rows[0] if rows else None

    def scalar(self, sql: str, params: list | None = None) -> Any:  # any SQL value
        row = self.scalar_row(sql, params)
        return row[0] if row else None
