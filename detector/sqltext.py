"""Text spliced into SQL: one quoting rule for every literal we build (paths, patterns)."""

from __future__ import annotations

import re


def sql_string(value: str) -> str:
    """SQL string literal (DuckDB does not treat backslashes as escapes; Spark does, see
    spark.sql.parser.escapedStringLiterals when porting)."""
    return "'" + value.replace("'", "''") + "'"


#: microseconds in each unit ``truncated`` cuts times to
_UNIT_US = {"minute": 60_000_000, "hour": 3_600_000_000, "day": 86_400_000_000}


def utc_text(column: str, fmt: str) -> str:
    """``strftime`` of a TIMESTAMPTZ column's UTC time (DuckDB), from its microseconds:
    ``AT TIME ZONE`` goes through the ICU calendar for each of millions of rows."""
    return f"strftime(make_timestamp(epoch_us({column})), '{fmt}')"


def truncated(session_zone: str, unit: str, column: str) -> str:
    """``date_trunc(unit, column)`` of a TIMESTAMPTZ column (DuckDB). In a UTC session
    (the warehouse's) by integer arithmetic on its microseconds, since date_trunc goes
    through the calendar for each of millions of rows: the same instants either way."""
    if session_zone != "UTC":
        return f"date_trunc('{unit}', {column})"
    n = _UNIT_US[unit]
    us = f"epoch_us({column})"
    return f"to_timestamp(({us} - (({us} % {n}) + {n}) % {n}) // 1000000)"


def _code_spans(sql: str) -> list[tuple[int, int]]:
    """The stretches of ``sql`` outside string literals, quoted names and comments."""
    spans, start, i, n = [], 0, 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            spans.append((start, i))
            j = i + 1
            while j < n:
                if sql[j] == c and sql[j + 1:j + 2] == c:  # a doubled quote: still inside
                    j += 2
                    continue
                if sql[j] == "\\" and c == "'":  # Spark reads a backslash as an escape
                    j += 2
                    continue
                if sql[j] == c:
                    break
                j += 1
            i = start = j + 1
        elif sql.startswith("--", i):
            spans.append((start, i))
            j = sql.find("\n", i)
            i = start = n if j < 0 else j
        else:
            i += 1
    spans.append((start, n))
    return [(a, b) for a, b in spans if b > a]


def markers(sql: str) -> int:
    """How many ``?`` parameter markers ``sql`` holds (not those in literals or
    comments, such as a regex's ``(?d)``)."""
    return sum(sql.count("?", a, b) for a, b in _code_spans(sql))


#: a CTE's name and the parenthesis its body opens with (comments before it skipped)
_CTE_NAME = re.compile(r"(?:\s|--[^\n]*\n)*(\w+)\s+AS\s*\(", re.IGNORECASE)
_COMMA = re.compile(r"\s*,")


def split_with(sql: str) -> tuple[list[tuple[str, str]], str]:
    """``WITH a AS (...), b AS (...) <select>`` as ([(a, body), (b, body)], select); a
    statement without a WITH clause as ([], sql). Parentheses in literals and comments
    do not count."""
    code = [False] * len(sql)
    for a, b in _code_spans(sql):
        code[a:b] = [True] * (b - a)
    head = re.match(r"\s*WITH\s+", sql, re.IGNORECASE)
    if not head or re.match(r"RECURSIVE\b", sql[head.end():], re.IGNORECASE):
        return [], sql
    ctes, i = [], head.end()
    while True:
        m = _CTE_NAME.match(sql, i)
        if not m:
            raise ValueError(f"not a CTE at {sql[i:i + 40]!r}")
        depth, j = 1, m.end()
        while depth:
            if j >= len(sql):
                raise ValueError(f"unbalanced parentheses in CTE {m.group(1)}")
            if code[j]:
                depth += {"(": 1, ")": -1}.get(sql[j], 0)
            j += 1
        ctes.append((m.group(1), sql[m.end():j - 1]))
        comma = _COMMA.match(sql, j)
        if not comma:
            return ctes, sql[j:]
        i = comma.end()
