"""The dataset: every analyst table as plain Parquet under ``OUT/dataset``, for any tool.

    OUT/dataset/<table>/day=YYYY-MM-DD/*.parquet    the rows whose ``Table.day`` falls on
                                                    that UTC date (hive-style folders;
                                                    ``day=__HIVE_DEFAULT_PARTITION__``
                                                    when it is null)
    OUT/dataset/incident_messages/*.parquet         not partitioned
    OUT/dataset/mailstorm.duckdb                    views over them by relative paths

The files hold exactly the registry's columns (``detector.schema.TABLES``), so Spark,
polars, pandas and any DuckDB read them alike; nothing in the folder names an absolute
path, so it can be moved, copied or shipped as is.

A night costs what it changed, not what the warehouse holds:
* events: each warehouse part holds one UTC day (``Warehouse.write_part``), and the
  dataset's files are hard links to the parts, added and removed as the parts are;
* the model tables: only the days a build could have changed are written again: the days
  of the rows of its new parts, of the rows its tombstones hide, and of the parts it (or
  retention) dropped. ``threads`` (a view) is written again for the days of the threads
  those rows belong to; incidents for the days whose incidents differ.
A day is written aside and swapped in with one rename (an exchange where Linux has it),
so a reader never sees half a day twice. What the dataset holds of each model part is
remembered in ``.mailstorm-dataset.json`` (dot names are not data to any reader).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from detector.dialect import DUCKDB
from detector.model.build import view_statements
from detector.schema import TABLES, Table, comment_statements
from detector.sqltext import sql_string, truncated, utc_text
from detector.warehouse import (
    MODEL_PARTS,
    Warehouse,
    dead_table,
    has_tombstones,
    model_part_sql,
    part_build,
    sql_path,
    table_exists,
    with_builds_sql,
)

DATASET_DIR = "dataset"
CATALOG = "mailstorm.duckdb"
#: the folder name of rows whose day is null, as Hive, Spark, DuckDB and Arrow read it
NULL_DAY = "__HIVE_DEFAULT_PARTITION__"
#: the storage the catalog is written in: DuckDB 1.0 and every later release open it
STORAGE_VERSION = "v1.0.0"
_STATE = ".mailstorm-dataset.json"
_WORK = ".incoming"  # days and the catalog written aside, then renamed into place
_ANALYST_MODEL = [n for n in MODEL_PARTS if n in TABLES]
#: up to this many days are written one at a time, more by one partitioned write
_FEW_DAYS = 4
#: beside the catalog: a hash of the statements it was made of
_CATALOG_MARK = ".mailstorm-catalog"
#: the relation holding a table's rows of some days (None: all), as SQL
Source = Callable[[set[str] | None], str]
#: of some days, those whose rows are exactly some files -> the files
Links = Callable[[set[str]], dict[str, list[Path]]]


@dataclass
class Published:
    """What one publication did: per table, the day folders (or files) written again,
    and the events parts linked and removed."""

    folder: Path
    days: dict[str, int] = field(default_factory=dict)
    linked: int = 0
    unlinked: int = 0
    seconds: float = 0.0


def dataset_dir_of(out_dir: Path) -> Path:
    return out_dir / DATASET_DIR


def day_sql(column: str, alias: str = "", *, null: str | None = NULL_DAY) -> str:
    """The UTC date of ``column`` (of the relation ``alias``) as a partition value, and
    ``null`` when it is null. COPY's PARTITION_BY is given the null itself (it names the
    folder NULL_DAY; given the text, it would escape it)."""
    ref = f'{alias}."{column}"' if alias else f'"{column}"'
    value = utc_text(ref, "%Y-%m-%d")
    return value if null is None else f"coalesce({value}, {sql_string(null)})"


def _columns(table: Table) -> str:
    return ", ".join(f'"{name}"' for name in table.columns)


def publish_dataset(wh: Warehouse, out_dir: Path, *, full: bool = False) -> Published:
    """Bring ``OUT/dataset`` up to date with the warehouse ``wh`` (open for writing):
    events linked, the changed days of the model tables and incidents written again,
    the catalog written anew. ``full`` writes every table again."""
    started = time.monotonic()
    folder = dataset_dir_of(out_dir)
    work = folder / _WORK
    shutil.rmtree(work, ignore_errors=True)  # what a killed run left
    work.mkdir(parents=True)
    state_file = folder / _STATE
    state: dict[str, dict[str, list[str]]] = {}
    build = -1
    if not full and state_file.is_file():
        saved = json.loads(state_file.read_text(encoding="utf-8"))
        state, build = saved.get("parts", {}), int(saved.get("build", -1))
    done = Published(folder)
    done.linked, done.unlinked = _link_events(wh, folder / "events", work)
    new_state: dict[str, dict[str, list[str]]] = {}
    wh.con.execute("CREATE OR REPLACE TEMP TABLE _changed_threads (thread_id VARCHAR)")
    for name in _ANALYST_MODEL:
        days, new_state[name] = _model_days(wh, name, state.get(name), build,
                                            (folder / name).is_dir())
        done.days[name] = _write_days(wh, folder, name, functools.partial(
            _parts_holding, wh, name, holds=new_state[name]), days, work,
            among={d for held in new_state[name].values() for d in held},
            links=functools.partial(_whole_parts, wh, name, new_state[name]))
    days, source = _thread_days(wh, folder, state, new_state)
    done.days["threads"] = _write_days(wh, folder, "threads", lambda _: source, days, work)
    if table_exists(wh.con, "incidents"):
        done.days["incidents"] = _write_days(wh, folder, "incidents",
                                             lambda _: "main.incidents",
                                             _incident_days(wh, folder), work)
        done.days["incident_messages"] = _write_flat(wh, folder, "incident_messages", work)
    for table in TABLES.values():
        if (folder / table.name).is_dir() or table.name == "events":
            _keep_columns(wh, folder / table.name, table)
    row = wh.con.execute("SELECT value FROM meta WHERE key = 'model_build'").fetchone()
    tmp_state = work / _STATE
    tmp_state.write_text(json.dumps({"build": int(row[0]) if row else -1,
                                     "parts": new_state}), encoding="utf-8")
    os.replace(tmp_state, state_file)
    write_catalog(folder)
    shutil.rmtree(work, ignore_errors=True)
    done.seconds = time.monotonic() - started
    return done


# --- events: hard links to the warehouse's parts ----------------------------------------
_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


def _part_day(path: Path) -> str | None:
    """The one UTC day of an events part, from its footer's statistics of ``ts``; None
    when it holds more than one (a part written before parts were split by day)."""
    meta = pq.read_metadata(path)
    ts = meta.schema.names.index("ts")
    # raw integers, not Python datetimes: pyarrow imports a time zone module for those,
    # which costs a night more than all the rest of the events' step
    per_second = _PER_SECOND[meta.schema.to_arrow_schema().field("ts").type.unit]
    days: set[str] = set()
    nulls = 0
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        stats = group.column(ts).statistics
        if stats is None:
            return None
        nulls += stats.null_count
        if stats.has_min_max:
            days |= {datetime.fromtimestamp(raw / per_second, UTC).date().isoformat()
                     for raw in (stats.min_raw, stats.max_raw)}
        elif stats.null_count < group.num_rows:
            return None
    if not days:
        return NULL_DAY
    if nulls or len(days) > 1:
        return None
    return days.pop()


def _link_events(wh: Warehouse, folder: Path, work: Path) -> tuple[int, int]:
    """Make ``folder`` hold exactly the warehouse's committed parts, each in its day's
    folder (a hard link; a part of several days is split into copies of the same name)."""
    parts = {p.name: p for p in wh.parts_dir.glob("part-*.parquet")}
    present = {p.name: p for p in folder.glob("day=*/part-*.parquet")}
    removed = 0
    for name, path in present.items():
        if name not in parts:
            path.unlink()
            removed += 1
    linked = 0
    for name in sorted(set(parts) - set(present)):
        day = _part_day(parts[name])
        if day is None:
            _split_part(wh, parts[name], folder, work)
        else:
            link_file(parts[name], folder / f"day={day}" / name, work)
        linked += 1
    _remove_empty_days(folder)
    return linked, removed


def link_file(file: Path, target: Path, aside: Path | None = None) -> None:
    """Put ``file`` at ``target`` as a hard link: a copy where the file system has none,
    or ``target`` is on another device (made in the folder ``aside``, when given, and
    renamed into place, so that no reader sees half of it)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(file, target)
    except OSError:
        copy = aside / file.name if aside else target
        shutil.copy2(file, copy)
        os.replace(copy, target)


def _split_part(wh: Warehouse, part: Path, folder: Path, work: Path) -> None:
    """Copy a part that holds several days into each day's folder, under its name."""
    aside = work / f"events-{uuid.uuid4().hex}"
    wh.con.execute(f"COPY (SELECT *, {day_sql('ts', null=None)} AS day FROM read_parquet("
                   f"{sql_path(part)})) TO {sql_path(aside)} (FORMAT parquet, "
                   "PARTITION_BY (day), COMPRESSION zstd, COMPRESSION_LEVEL 1)")
    for day in aside.iterdir():
        target = folder / day.name
        target.mkdir(parents=True, exist_ok=True)
        for i, file in enumerate(sorted(day.iterdir())):
            name = part.name if i == 0 else f"{part.stem}-{i}.parquet"
            os.replace(file, target / name)
    shutil.rmtree(aside)


def _remove_empty_days(folder: Path) -> None:
    for day in folder.glob("day=*"):
        with contextlib.suppress(OSError):
            day.rmdir()  # only when empty


# --- model tables: the days a build could have changed ---------------------------------
def _model_days(wh: Warehouse, name: str, known: dict[str, list[str]] | None, build: int,
                exists: bool) -> tuple[set[str] | None, dict[str, list[str]]]:
    """The days of ``name`` to write again (None: all) and the days each current part
    holds. For logical_messages, the threads of the rows written or hidden go to the
    temporary table ``_changed_threads``."""
    con, table = wh.con, TABLES[name]
    files = wh.model_files(name)
    now: dict[str, list[str]] = {}
    new = [f for f in files if known is None or f.name not in known]
    new_listed = "[" + ", ".join(sql_path(f) for f in new) + "]"
    if new:
        # the distinct UTC days as integers first: formatting a date per row of a storm
        # night's deliveries cost more than the rest of the scan
        midnight = truncated("UTC", "day", f'"{table.day}"')
        for part, days in con.execute(
                f"SELECT part, list({day_sql('d')}) FROM ("
                f"  SELECT DISTINCT parse_filename(filename) AS part, {midnight} AS d"
                f"  FROM read_parquet({new_listed}, filename = true)) GROUP BY part"
        ).fetchall():
            now[part] = sorted(days)
    now.update({f.name: (known or {}).get(f.name, []) for f in files if f.name not in now})
    if known is None or not exists:
        return None, now
    threads = name == "logical_messages"
    if threads and new:
        con.execute("INSERT INTO _changed_threads SELECT DISTINCT thread_id FROM "
                    f"read_parquet({new_listed})")
    days = {d for f in new for d in now[f.name]}
    days |= {d for part, ds in known.items() if part not in now for d in ds}  # dropped
    old = [f for f in files if f.name in known]
    if old and has_tombstones(con, name):
        # the stored rows this build's tombstones (and those of any build since the
        # dataset was last written) hide
        con.execute(f"""CREATE OR REPLACE TEMP TABLE _hidden AS
            SELECT {day_sql(str(table.day), 'd')} AS day{", d.thread_id" * threads}
            {_hidden_rows(name, old, "WHERE build > ?")}""", [build])
        days |= {r[0] for r in con.execute("SELECT DISTINCT day FROM _hidden").fetchall()}
        if threads:
            con.execute("INSERT INTO _changed_threads SELECT DISTINCT thread_id FROM _hidden")
        con.execute("DROP TABLE _hidden")
    return days, now


def _parts_holding(wh: Warehouse, name: str, days: set[str] | None, *,
                   holds: dict[str, list[str]]) -> str:
    """The rows of the model table ``name`` as its view has them, read from only the
    parts that hold rows of ``days`` (all of them for None)."""
    if days is None:
        return f"main.{name}"
    files = [f for f in wh.model_files(name) if days & set(holds.get(f.name, []))]
    if not files:
        return f"(SELECT * FROM main.{name} WHERE false)"
    return f"({model_part_sql(name, files, tombstones=has_tombstones(wh.con, name))})"


def _whole_parts(wh: Warehouse, name: str, holds: dict[str, list[str]], days: set[str]
                 ) -> dict[str, list[Path]]:
    """Of ``days``, those whose rows in the model table ``name`` are exactly the rows of
    some of its parts, and those parts: every part holding rows of the day holds that
    day's alone (a build writes a big day's deliveries to a file of their own:
    ``ModelPart.daily``), holds the table's columns and nothing else, and no tombstone
    hides a row of it."""
    table = TABLES[name]
    by_day: dict[str, list[Path]] = {}
    mixed: set[str] = set()
    for part in wh.model_files(name):
        held = holds.get(part.name, [])
        if (len(held) == 1 and held[0] in days and part_build(part) is not None
                and pq.read_schema(part).names == list(table.columns)):
            by_day.setdefault(held[0], []).append(part)
        else:
            mixed.update(held)
    whole = {day: parts for day, parts in by_day.items() if day not in mixed}
    if whole and has_tombstones(wh.con, name) and wh.scalar(
            f"SELECT count(*) > 0 FROM main.{dead_table(name)}"):
        parts = [p for ps in whole.values() for p in ps]
        for (day,) in wh.con.execute(
                f"SELECT DISTINCT {day_sql(str(table.day), 'd')} "
                f"{_hidden_rows(name, parts)}").fetchall():
            whole.pop(day, None)
    return whole


def _hidden_rows(name: str, parts: list[Path], tombstones: str = "") -> str:
    """FROM ... WHERE of the rows of these parts of the model table ``name`` (as ``d``)
    that a later build's tombstone hides (of the tombstones ``tombstones`` selects)."""
    key = MODEL_PARTS[name].key
    return (f"FROM ({with_builds_sql(parts)}) d "
            f"JOIN (SELECT {key}, max(build) AS dead FROM main.{dead_table(name)} "
            f"{tombstones} GROUP BY {key}) x ON x.{key} = d.{key} "
            "WHERE d.build < x.dead")


def _thread_days(wh: Warehouse, folder: Path, state: dict[str, dict[str, list[str]]],
                 now: dict[str, dict[str, list[str]]]) -> tuple[set[str] | None, str]:
    """The days of ``threads`` to write again (None: all) and where their rows are: the
    threads of the logical messages written or hidden, summed again by threads.sql's own
    statement over their messages only, and the other threads of those days as the
    dataset has them. Retention dropping a logical_messages part makes it all."""
    before, after = state.get("logical_messages"), now["logical_messages"]
    stored = sorted(folder.glob("threads/day=*/*.parquet"))
    con = wh.con
    if before is None or not stored or any(part not in after for part in before):
        # summed once, then written a day at a time
        con.execute("CREATE OR REPLACE TEMP TABLE _threads_now AS SELECT * FROM main.threads")
        return None, "_threads_now"
    select = next(v.sql for v in view_statements(DUCKDB) if v.name == "threads")
    # the same SQL, over a relation of the same name holding only those threads' rows
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _threads_now AS
        WITH logical_messages AS (
            SELECT * FROM main.logical_messages
            WHERE thread_id IN (SELECT thread_id FROM _changed_threads))
        {select}""")
    listed = "[" + ", ".join(sql_path(f) for f in stored) + "]"
    days = {r[0] for r in con.execute(
        f"""SELECT DISTINCT {day_sql('first_ts')} FROM _threads_now
            UNION SELECT DISTINCT {day_sql('first_ts')} FROM read_parquet({listed},
                hive_partitioning = false)
            WHERE thread_id IN (SELECT thread_id FROM _changed_threads)""").fetchall()}
    kept = [f for f in stored if f.parent.name.removeprefix("day=") in days]
    cols = _columns(TABLES["threads"])
    source = f"SELECT {cols} FROM _threads_now"
    if kept:
        source += (f" UNION ALL SELECT {cols} FROM read_parquet("
                   "[" + ", ".join(sql_path(f) for f in kept) + "], hive_partitioning = false) "
                   "WHERE thread_id NOT IN (SELECT thread_id FROM _changed_threads)")
    return days, f"({source})"


def _incident_days(wh: Warehouse, folder: Path) -> set[str] | None:
    """The days whose incidents differ from the dataset's (None: all, when it has none)."""
    files = sorted(folder.glob("incidents/day=*/*.parquet"))
    if not files:
        return None
    cols = _columns(TABLES["incidents"])
    listed = "[" + ", ".join(sql_path(f) for f in files) + "]"
    stored = f"SELECT {cols} FROM read_parquet({listed}, hive_partitioning = false)"
    live = f"SELECT {cols} FROM main.incidents"
    return {r[0] for r in wh.con.execute(
        f"SELECT DISTINCT {day_sql('start')} FROM (({live} EXCEPT ALL {stored}) "
        f"UNION ALL ({stored} EXCEPT ALL {live}))").fetchall()}


# --- writing days ----------------------------------------------------------------------
def _write_days(wh: Warehouse, folder: Path, name: str, source: Source,
                days: set[str] | None, work: Path, *, among: set[str] | None = None,
                links: Links | None = None) -> int:
    """Write the rows of ``source(days)`` on ``days`` (None: all) to ``folder/name``, a
    day at a time swapped in; a day left without rows goes. Returns the days written or
    gone. ``among``: the days the table can hold, when known (its parts' days), so that
    writing all of them does not read the table once more to find them. ``links``: the
    days whose rows are exactly some files, which the day's folder then holds (hard
    links), written by nobody again."""
    if days is not None and not days:
        return 0
    table = TABLES[name]
    target = folder / name
    aside = work / name
    col = f'"{table.day}"'
    options = "FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1"
    every = days is None
    if days is None:
        days = among if among is not None else {r[0] for r in wh.con.execute(
            f"SELECT DISTINCT {day_sql(str(table.day))} FROM {source(None)}").fetchall()}
    linked = links(days) if links else {}
    for day, files in linked.items():
        for file in files:
            link_file(file, aside / f"day={day}" / file.name, work)
    each = days - set(linked)
    if every and len(each) > _FEW_DAYS:
        # all days but the linked: the parts holding them hold no linked day (a day is
        # linked only when each part holding it holds it alone)
        wh.con.execute(f"COPY (SELECT {_columns(table)}, "
                       f"{day_sql(str(table.day), null=None)} AS day FROM "
                       f"{source(each)}) TO {sql_path(aside)} ({options}, "
                       "PARTITION_BY (day), FILENAME_PATTERN 'part-{uuid}', "
                       "OVERWRITE_OR_IGNORE)")
        each = set()
    # a few days one at a time, each a range of time read from the parts that hold it:
    # a partitioned write of them cost two to three times as much
    for day in sorted(each):
        file = aside / f"day={day}" / f"part-{uuid.uuid4().hex}.parquet"
        file.parent.mkdir(parents=True)
        where, params = f"{col} IS NULL", list[object]()
        if day != NULL_DAY:
            start = datetime.fromisoformat(day).replace(tzinfo=UTC)
            where, params = f"{col} >= ?", [start]
            if start.date() < date.max:  # (9999-12-31, a log's wildest date, has no next)
                where += f" AND {col} < ?"
                params.append(start + timedelta(days=1))
        row = wh.con.execute(f"COPY (SELECT {_columns(table)} FROM {source({day})} "
                             f"WHERE {where}) TO {sql_path(file)} ({options})",
                             params).fetchone()
        if not row or not row[0]:
            shutil.rmtree(file.parent)
    target.mkdir(parents=True, exist_ok=True)
    made = {p.name: p for p in aside.iterdir()} if aside.is_dir() else {}
    stale = [p for p in target.glob("day=*")
             if p.name not in made and (every or p.name.removeprefix("day=") in days)]
    for dirname, path in made.items():
        _swap_in(path, target / dirname, work)
    for path in stale:
        shutil.rmtree(path)
    shutil.rmtree(aside, ignore_errors=True)
    return len(made) + len(stale)


def _write_flat(wh: Warehouse, folder: Path, name: str, work: Path) -> int:
    """Write the small unpartitioned ``name`` again, as one file replaced by a rename."""
    target = folder / name
    target.mkdir(parents=True, exist_ok=True)
    aside = work / f"{name}.parquet"
    wh.con.execute(f"COPY (SELECT {_columns(TABLES[name])} FROM main.{name}) TO "
                   f"{sql_path(aside)} (FORMAT parquet, COMPRESSION zstd)")
    os.replace(aside, target / "part-0.parquet")
    for other in target.glob("*.parquet"):
        if other.name != "part-0.parquet":
            other.unlink()
    return 1


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _swap_in(new: Path, old: Path, work: Path) -> None:
    """Put the folder ``new`` at ``old``'s place: one atomic exchange of the two where
    Linux has renameat2, else the old one moved aside first (a reader may then find the
    day missing for a moment, never twice)."""
    if old.exists():
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.renameat2(_AT_FDCWD, os.fsencode(new), _AT_FDCWD, os.fsencode(old),
                              _RENAME_EXCHANGE) == 0:
                shutil.rmtree(new)  # now the old day's files
                return
        except (AttributeError, OSError):
            pass
        gone = work / f"gone-{uuid.uuid4().hex}"
        os.rename(old, gone)
        os.rename(new, old)
        shutil.rmtree(gone)
        return
    os.rename(new, old)


_EMPTY = "empty.parquet"


def _keep_columns(wh: Warehouse, target: Path, table: Table) -> None:
    """A table without rows holds one file without rows (in the null day's folder), so
    that every reader finds its columns; it goes when rows come."""
    empty = target / f"day={NULL_DAY}" / _EMPTY if table.day else target / _EMPTY
    pattern = "day=*/*.parquet" if table.day else "*.parquet"
    if any(p != empty for p in target.glob(pattern)):
        if empty.exists():
            empty.unlink()
            _remove_empty_days(target)
        return
    if empty.exists():
        return
    empty.parent.mkdir(parents=True, exist_ok=True)
    aside = target.parent / _WORK / f"{table.name}-{_EMPTY}"
    wh.con.execute(f"COPY ({_empty_sql(table)}) TO {sql_path(aside)} (FORMAT parquet)")
    os.replace(aside, empty)


def _empty_sql(table: Table) -> str:
    cols = ", ".join(f'CAST(NULL AS {c.duckdb_type}) AS "{n}"'
                     for n, c in table.columns.items())
    return f"SELECT {cols} WHERE false"


# --- the catalog ------------------------------------------------------------------------
def _view_sql(table: Table, folder: Path) -> str:
    pattern = f"{table.name}/*/*.parquet" if table.day else f"{table.name}/*.parquet"
    if any(folder.glob(pattern)):
        return (f"SELECT {_columns(table)} FROM read_parquet({sql_string(pattern)}, "
                "hive_partitioning = false)")
    return _empty_sql(table)


def write_catalog(dataset_dir: Path) -> Path:
    """(Re)create ``dataset_dir/mailstorm.duckdb``: a view per table found in the folder
    (read by paths relative to it: open it from there, or ``SET file_search_path``), with
    the registry's comments, in storage DuckDB 1.0 and later open. Returns its path."""
    dataset_dir = dataset_dir.resolve()
    path = dataset_dir / CATALOG
    statements = [statement for table in TABLES.values()
                  if (dataset_dir / table.name).is_dir()
                  for statement in (f"CREATE VIEW {table.name} AS "
                                    f"{_view_sql(table, dataset_dir)}",
                                    *comment_statements(table))]
    # the same statements as the catalog there was made of: it is kept as it is (most
    # nights add rows, not tables), and a session open on it is not left on a replaced file
    made_of = hashlib.sha256("\n".join([STORAGE_VERSION, *statements]).encode()).hexdigest()
    marker = dataset_dir / _CATALOG_MARK
    with contextlib.suppress(OSError):
        if path.is_file() and marker.read_text(encoding="utf-8").strip() == made_of:
            return path
    work = dataset_dir / _WORK
    work.mkdir(parents=True, exist_ok=True)
    tmp = work / f"catalog-{uuid.uuid4().hex}.duckdb"
    con = duckdb.connect(str(tmp), config={"storage_compatibility_version": STORAGE_VERSION})
    try:
        con.execute("SET file_search_path = ?", [str(dataset_dir)])
        con.execute("BEGIN TRANSACTION")  # one commit, not one per statement
        for statement in statements:
            con.execute(statement)
        con.execute("COMMIT")
    finally:
        con.close()
    marker.unlink(missing_ok=True)  # no mark naming a catalog not yet in place
    os.replace(tmp, path)
    tmp_mark = work / _CATALOG_MARK
    tmp_mark.write_text(made_of + "\n", encoding="utf-8")
    os.replace(tmp_mark, marker)
    with contextlib.suppress(OSError):
        work.rmdir()
    return path
