"""Text spliced into SQL: one quoting rule for every literal we build (paths, patterns)."""

from __future__ import annotations


def sql_string(value: str) -> str:
    """SQL string literal (DuckDB does not treat backslashes as escapes; Spark does, see
    spark.sql.parser.escapedStringLiterals when porting)."""
    return "'" + value.replace("'", "''") + "'"
