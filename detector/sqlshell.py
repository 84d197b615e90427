"""The analyst's SQL: one query on the warehouse, read-only for real, printed as it streams.

``mailstorm sql`` hands the analyst a DuckDB connection; before their query runs, the
connection is closed in:

- the warehouse file is opened read-only (no write to any table);
- external access is off (``enable_external_access = false``): no file is read or written
  and no network is reached, except the warehouse's own Parquet folder, which the
  ``events`` and ``deliveries`` views read (``allowed_directories``);
- only statements that read run (SELECT, DESCRIBE, SUMMARIZE, SHOW, EXPLAIN, PRAGMA,
  CALL, PIVOT, SET VARIABLE): COPY and EXPORT would write files even inside the allowed
  folder, ATTACH would create one, PREPARE/EXECUTE would hide what runs;
- no extension is installed or loaded, automatically or not;
- the project's memory limit applies (``warehouse.default_memory_limit``);
- then ``lock_configuration = true``: the query cannot SET any of it back.

``allow_files`` (``--allow-files PATH``) opens exactly the paths named, for reading and
writing (a folder with everything under it), and lets COPY and EXPORT DATABASE run. The
warehouse's own files are then read through Arrow, not by path, so a COPY cannot
overwrite them; they cannot be named as such a path either.

The result is fetched in batches and printed as it goes: a result larger than memory
prints, and a reader that stops early (``| head``) stops the query.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import duckdb

from detector.errors import MailstormError, UsageError
from detector.warehouse import (
    default_memory_limit,
    events_view_sql,
    has_tombstones,
    model_part_sql,
    parquet_dir_of,
    parquet_view_paths,
    parquet_views_sql,
    parts_dir_of,
)

FORMATS = ("table", "csv", "json")
BATCH_ROWS = 2048  # rows fetched (and held) at a time

_T = duckdb.StatementType
_READING = frozenset({_T.SELECT, _T.EXPLAIN, _T.PRAGMA, _T.CALL, _T.SET, _T.VARIABLE_SET,
                      _T.MULTI})
_WRITING_FILES = frozenset({_T.COPY, _T.EXPORT})


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _allowed(paths: Sequence[Path], db: Path) -> tuple[list[str], list[str]]:
    """--allow-files paths as (allowed_directories, allowed_paths), all absolute."""
    own = [db.resolve(), parquet_dir_of(db).resolve()]
    dirs: list[str] = []
    files: list[str] = []
    for given in paths:
        path = given.expanduser().resolve()
        if any(_within(path, mine) or _within(mine, path) for mine in own):
            raise UsageError(f"--allow-files {given}: that is (or holds) the warehouse's "
                             "own files; name a path outside it")
        if path.is_dir():
            dirs.append(f"{path}/")
        else:
            files.append(str(path))
    return dirs, files


def _arrow_views(con: duckdb.DuckDBPyConnection, db: Path) -> None:
    """events and the Parquet model tables as Arrow scans: DuckDB needs no path to them."""
    import pyarrow.dataset as pads  # here, not above: it imports pandas where installed

    parts = sorted(str(p.resolve()) for p in parts_dir_of(db).glob("part-*.parquet"))
    if parts:
        con.register("events", pads.dataset(parts, format="parquet"))
    else:
        con.execute(f"CREATE TEMP VIEW events AS {events_view_sql(parts_dir_of(db))}")
    for name, paths in parquet_view_paths(con, db).items():  # the model's Parquet tables
        registered: list[str] = []

        def scan(files: list[Path], name: str = name, registered: list[str] = registered
                 ) -> str:
            registered.append(f"_{name}_parts{len(registered)}")
            con.register(registered[-1], pads.dataset([str(p.resolve()) for p in files],
                                                      format="parquet"))
            return registered[-1]

        select = model_part_sql(name, paths, tombstones=has_tombstones(con, name),
                                source=scan)
        con.execute(f"CREATE TEMP VIEW {name} AS {select}")


def open_readonly(db: Path, *, allow_files: Sequence[Path] = (),
                  memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the warehouse ``db``, closed in as the module says."""
    dirs, files = _allowed(allow_files, db)
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error as exc:
        raise MailstormError(f"cannot open warehouse {db}: "
                             f"{str(exc).splitlines()[0]}") from exc
    try:
        con.execute("SET TimeZone = 'UTC'")
        if allow_files:
            _arrow_views(con, db)
        else:
            # the stored views name the parts by absolute path; if the folder moved, a
            # view in the session's temporary schema (searched first) points at them now
            con.execute(f"CREATE TEMP VIEW events AS {events_view_sql(parts_dir_of(db))}")
            for name, select in parquet_views_sql(con, db).items():
                con.execute(f"CREATE TEMP VIEW {name} AS {select}")
            dirs.append(f"{parquet_dir_of(db).resolve()}/")
        con.execute("SET allowed_directories = ?", [dirs])
        con.execute("SET allowed_paths = ?", [files])
        con.execute("SET enable_external_access = false")
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
        con.execute("SET allow_community_extensions = false")
        con.execute("SET memory_limit = ?", [memory_limit or default_memory_limit()])
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def _check(statements: Sequence[Any], allow_files: bool) -> None:
    allowed = _READING | _WRITING_FILES if allow_files else _READING
    for stmt in statements:
        if stmt.type not in allowed:
            hint = ("it writes files: --allow-files PATH names where it may"
                    if stmt.type in _WRITING_FILES else "only statements that read run")
            raise MailstormError(f"mailstorm sql is read-only: {stmt.type.name} "
                                 f"is refused ({hint})")


def _batches(cur: duckdb.DuckDBPyConnection, size: int) -> Iterator[list[tuple]]:
    while rows := cur.fetchmany(size):
        yield rows


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _write_table(out: TextIO, columns: list[str], batches: Iterator[list[tuple]]) -> int:
    """Aligned columns; widths come from the header and the first batch (a longer value
    later overflows its column instead of holding every row to measure them)."""
    first = [[_cell(v) for v in row] for row in next(batches, [])]
    widths = [max([len(c)] + [len(r[i]) for r in first]) for i, c in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(cells, widths, strict=True)).rstrip()

    out.write(line(columns) + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    count = 0
    for row in first:
        out.write(line(row) + "\n")
        count += 1
    for batch in batches:
        out.writelines(line([_cell(v) for v in row]) + "\n" for row in batch)
        count += len(batch)
    return count


def _write_csv(out: TextIO, columns: list[str], batches: Iterator[list[tuple]]) -> int:
    writer = csv.writer(out)
    writer.writerow(columns)
    count = 0
    for batch in batches:
        writer.writerows(batch)
        count += len(batch)
    return count


def _write_json(out: TextIO, columns: list[str], batches: Iterator[list[tuple]]) -> int:
    """A JSON array, written an object at a time."""
    count = 0
    out.write("[")
    for batch in batches:
        for row in batch:
            out.write(",\n  " if count else "\n  ")
            out.write(json.dumps(dict(zip(columns, row, strict=True)), default=str,
                                 ensure_ascii=False))
            count += 1
    out.write("\n]\n" if count else "]\n")
    return count


_WRITERS = {"table": _write_table, "csv": _write_csv, "json": _write_json}


def run_query(db: Path, query: str, out: TextIO, *, fmt: str = "table",
              allow_files: Sequence[Path] = (), memory_limit: str | None = None,
              batch_rows: int = BATCH_ROWS) -> int:
    """Run ``query`` (one or more statements) on the warehouse ``db`` read-only and write
    the last statement's rows to ``out`` in ``fmt`` as they come; the number of rows.

    Raises MailstormError for a statement that is refused, duckdb.Error for one DuckDB
    refuses or cannot run (a permission, a read-only table, a syntax error), and lets
    BrokenPipeError through for the caller to end quietly.
    """
    if fmt not in _WRITERS:
        raise UsageError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    con = open_readonly(db, allow_files=allow_files, memory_limit=memory_limit)
    try:
        statements = con.extract_statements(query)
        if not statements:
            raise MailstormError("the query is empty")
        _check(statements, bool(allow_files))
        for stmt in statements[:-1]:
            con.execute(stmt).fetchall()  # earlier statements: run, print nothing
        cur = con.execute(statements[-1])
        if cur.description is None:
            return 0
        columns = [d[0] for d in cur.description]
        count = _WRITERS[fmt](out, columns, _batches(cur, batch_rows))
        out.flush()
        return count
    finally:
        con.close()
