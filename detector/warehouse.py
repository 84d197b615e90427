"""The DuckDB warehouse: events in, model tables rebuilt, a ledger of what was read.

Ingest is incremental and idempotent: the ``files`` ledger remembers, for every file read,
a hash of its first bytes and how many (decompressed) bytes were ingested. A file whose
head matches a ledger entry is the same log (the live ``mail.log`` grown since, or a
rotated / compressed copy of it), so only the bytes after the ingested prefix are read.
Each file is ingested in one transaction: an error leaves the warehouse as it was.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from detector.errors import MailstormError
from detector.schema import EVENT_COLUMNS

SCHEMA_VERSION = 1
HEAD_BYTES = 65536

_DUCK_TYPES = {
    pl.Datetime("us", "UTC"): "TIMESTAMPTZ",
    pl.String: "VARCHAR",
    pl.Int64: "BIGINT",
    pl.Float64: "DOUBLE",
}


def _ddl_events() -> str:
    cols = ",\n  ".join(f"{name} {_DUCK_TYPES[t]}" for name, (t, _) in EVENT_COLUMNS.items())
    return f"CREATE TABLE IF NOT EXISTS events (\n  {cols}\n)"


_DDL = [
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    """CREATE TABLE IF NOT EXISTS files (
        path VARCHAR, format VARCHAR, head_len BIGINT, head_sha256 VARCHAR,
        bytes_ingested BIGINT, lines BIGINT, unparsed BIGINT,
        first_ts TIMESTAMPTZ, last_ts TIMESTAMPTZ, ingested_at TIMESTAMPTZ)""",
    _ddl_events(),
]


@dataclass(frozen=True)
class LedgerEntry:
    path: str
    head_len: int
    head_sha256: str
    bytes_ingested: int
    lines: int


def head_digest(head: bytes) -> str:
    return hashlib.sha256(head).hexdigest()


class Warehouse:
    """A DuckDB file holding events, the model tables, incidents and the ingest ledger."""

    def __init__(self, path: Path | str, memory_limit: str | None = None) -> None:
        self.path = str(path)
        try:
            self.con = duckdb.connect(self.path)
        except duckdb.Error as exc:
            raise MailstormError(f"cannot open warehouse {self.path}: {exc}") from exc
        self.con.execute("SET TimeZone = 'UTC'")
        if memory_limit:
            self.con.execute("SET memory_limit = ?", [memory_limit])
        self._migrate()

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
            "SELECT path, head_len, head_sha256, bytes_ingested, lines FROM files "
            "WHERE head_len <= ? ORDER BY bytes_ingested DESC", [len(head)]
        ).fetchall()
        for path, head_len, sha, ingested, lines in rows:
            if head_digest(head[:head_len]) == sha:
                return LedgerEntry(path, head_len, sha, ingested, lines)
        return None

    def begin_file(self) -> None:
        self.con.execute("BEGIN TRANSACTION")

    def append_events(self, events: pl.DataFrame) -> None:
        self.con.register("_batch", events.to_arrow())
        try:
            self.con.execute("INSERT INTO events SELECT * FROM _batch")
        finally:
            self.con.unregister("_batch")

    def commit_file(self, *, path: str, fmt: str, head: bytes, previous: LedgerEntry | None,
                    bytes_ingested: int, lines: int) -> None:
        """Record the file in the ledger and commit its events."""
        head_len = min(len(head), HEAD_BYTES)
        if previous is not None:
            self.con.execute(
                "DELETE FROM files WHERE head_len = ? AND head_sha256 = ?",
                [previous.head_len, previous.head_sha256])
        self.con.execute(
            """INSERT INTO files
               SELECT ?, ?, ?, ?, ?, ?,
                 (SELECT count(*) FROM events WHERE source_file = ? AND kind = 'unparsed'),
                 (SELECT min(ts) FROM events WHERE source_file = ?),
                 (SELECT max(ts) FROM events WHERE source_file = ?), now()""",
            [path, fmt, head_len, head_digest(head[:head_len]), bytes_ingested, lines,
             path, path, path])
        self.con.execute("COMMIT")

    def rollback(self) -> None:
        self.con.execute("ROLLBACK")

    # --- queries ------------------------------------------------------------------------
    def query(self, sql: str, params: list | None = None) -> pl.DataFrame:
        rel = self.con.sql(sql, params=params) if params else self.con.sql(sql)
        return rel.pl() if rel is not None else pl.DataFrame()

    def scalar_row(self, sql: str, params: list | None = None) -> tuple | None:
        # fetchall, not fetchone: DuckDB 2 refuses new work while a result is unfinished
        rows = self.con.execute(sql, params or []).fetchall()
        return rows[0] if rows else None

    def scalar(self, sql: str, params: list | None = None):  # noqa: ANN201 - any SQL value
        row = self.scalar_row(sql, params)
        return row[0] if row else None
