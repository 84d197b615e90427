"""Rebuild the model tables (messages, deliveries, logical_messages, threads...) from events."""

from __future__ import annotations

import re
from importlib import resources

import duckdb

from detector.model.subjects import (
    has_reply_prefix_sql,
    is_auto_subject_sql,
    normalize_subject_sql,
)

MODEL_TABLES = (
    "messages", "expansions", "list_posts", "deliveries", "logical_messages", "threads",
)


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
    pattern = LIST_COPY_SENDER.replace("'", "''")
    con.execute("CREATE OR REPLACE MACRO list_of_copy(s) AS CASE WHEN "
                f"regexp_matches(s, '{pattern}') THEN regexp_replace(s, '{pattern}', '@') END")


def statements(sql: str) -> list[str]:
    """Split a SQL script into statements (our scripts hold no ';' or '--' in literals)."""
    body = re.sub(r"--[^\n]*", "", sql)
    return [s.strip() for s in body.split(";") if s.strip()]


def build_model(con: duckdb.DuckDBPyConnection) -> None:
    """Recreate the model tables from the events table, in one transaction."""
    create_macros(con)
    sql = resources.files("detector.model").joinpath("sql/model.sql").read_text("utf-8")
    con.execute("BEGIN TRANSACTION")
    try:
        for statement in statements(sql):
            con.execute(statement)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
