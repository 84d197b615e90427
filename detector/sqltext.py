"""Text spliced into SQL: one quoting rule for every literal we build (paths, patterns)."""

from __future__ import annotations


def sql_string(value: str) -> str:
    """SQL string literal (DuckDB does not treat backslashes as escapes; Spark does, see
    spark.sql.parser.escapedStringLiterals when porting)."""
    return "'" + value.replace("'", "''") + "'"


#: microseconds in each unit ``truncated`` cuts times to
_UNIT_US = {"minute": 60_000_000, "hour": 3_600_000_000, "day": 86_400_000_000}


def truncated(session_zone: str, unit: str, column: str) -> str:
    """``date_trunc(unit, column)`` of a TIMESTAMPTZ column (DuckDB). In a UTC session
    (the warehouse's) by integer arithmetic on its microseconds, since date_trunc goes
    through the calendar for each of millions of rows: the same instants either way."""
    if session_zone != "UTC":
        return f"date_trunc('{unit}', {column})"
    n = _UNIT_US[unit]
    us = f"epoch_us({column})"
    return f"to_timestamp(({us} - (({us} % {n}) + {n}) % {n}) // 1000000)"
