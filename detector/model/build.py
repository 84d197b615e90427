"""Rebuild the model tables (messages, deliveries, logical_messages, threads...) from events."""

from __future__ import annotations

import contextlib
import re
from importlib import resources

import duckdb

from detector.model.subjects import (
    has_reply_prefix_sql,
    is_auto_subject_sql,
    normalize_subject_sql,
)
from detector.sqltext import sql_string
from detector.warehouse import Warehouse

MODEL_TABLES = (
    "messages", "expansions", "list_posts", "deliveries", "logical_messages", "threads",
)
#: model tables whose view in model.sql is written to a Parquet file as it is built, and
#: read from it by the later statements and by analysts (Warehouse.write_parquet_view)
PARQUET_TABLES = ("deliveries",)
_VIEW = re.compile(r"CREATE OR REPLACE VIEW (\w+) AS", re.IGNORECASE)


#: the envelope sender of a list server's own copies: "<list>-bounces@domain" (Mailman),
#: also with VERP "<list>-bounces+member=host@domain"
LIST_COPY_SENDER = r"-bounces(\+[^@]*)?@"


def create_macros(con: duckdb.DuckDBPyConnection) -> None:
    """SQL macros for the subject rules, built from the one set of patterns in subjects.py,
    and for a list server's copies."""
    con.execute(f"CREATE OR REPLACE MACRO thread_subject(s) AS {normalize_subject_sql('s')}")
    con.execute(f"CREATE OR REPLACE MACRO has_reply_prefix(s) AS {has_reply_prefix_sql('s')}")
    con.execute(f"CREATE OR REPLACE MACRO is_auto_subject(s) AS {is_auto_subject_sql('s')}")
    # the list address a copy was sent for (list-bounces@d -> list@d), null for other mail
    pattern = sql_string(LIST_COPY_SENDER)
    con.execute("CREATE OR REPLACE MACRO list_of_copy(s) AS CASE WHEN "
                f"regexp_matches(s, {pattern}) THEN regexp_replace(s, {pattern}, '@') END")


def statements(sql: str) -> list[str]:
    """Split a SQL script into statements (our scripts hold no ';' or '--' in literals)."""
    body = re.sub(r"--[^\n]*", "", sql)
    return [s.strip() for s in body.split(";") if s.strip()]


def build_model(wh: Warehouse) -> None:
    """Recreate the model tables from the events table, in one transaction."""
    con = wh.con
    create_macros(con)
    sql = resources.files("detector.model").joinpath("sql/model.sql").read_text("utf-8")
    for name in PARQUET_TABLES:  # warehouses written before they were kept as Parquet
        if con.execute("SELECT 1 FROM information_schema.tables WHERE table_name = ? "
                       "AND table_type = 'BASE TABLE'", [name]).fetchone():
            con.execute(f"DROP TABLE {name}")
    written = []
    con.execute("BEGIN TRANSACTION")
    try:
        for statement in statements(sql):
            con.execute(statement)
            view = _VIEW.match(statement)
            if view and view.group(1) in PARQUET_TABLES:
                written.append(wh.write_parquet_view(view.group(1),
                                                     f"SELECT * FROM {view.group(1)}"))
        con.execute("COMMIT")
    except BaseException:
        # after a failed write (a full disk) DuckDB may refuse the rollback too: the first
        # error is the one that says what happened
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        for path in written:
            path.unlink(missing_ok=True)
        raise
    wh.tidy_parquet_views()
