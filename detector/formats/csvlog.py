"""CSV logs whose header names the columns (Exchange logs, Microsoft 365 exports).

Three steps, all vectorized: physical lines are grouped into CSV records (a quoted field
may hold a newline, so a record can span lines), records that are not well-formed CSV are
set aside, and the rest are split into named string columns by polars' CSV reader.

Grouping uses quote parity: a line continues the record before it when that record has
an odd number of ``"`` so far. A batch may start inside a record cut by the batch
boundary; a ``start`` pattern (an Exchange line begins with its timestamp) lets the
grouping resynchronise there, and a record left unbalanced at either end of the batch is
returned line by line as not well-formed, for the caller to keep as ``unparsed``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection

import polars as pl

# one CSV field: quoted (doubled quotes and newlines inside) or bare (no quote, comma)
_FIELD = r'(?:"(?:[^"]|"")*"|[^",\n]*)'
WELL_FORMED = rf"^{_FIELD}(?:,{_FIELD})*$"


def header_fields(line: str) -> list[str]:
    """Column names of one header line (``a,b`` or ``"a","b"``), duplicates made unique."""
    names: list[str] = []
    for raw in next(csv.reader([line.lstrip("\ufeff")]), []):
        name, n = raw.strip(), 1
        while name in names:  # polars needs unique names; a repeated column keeps its first
            n += 1
            name = f"{raw.strip()}~{n}"
        names.append(name)
    return names


def records(lines: pl.DataFrame, start: pl.Expr | None = None) -> pl.DataFrame:
    """Group lines (columns raw, line_no) into records: columns line_no (of the record's
    first line), raw (lines joined by newline), lines (number of lines), ok (balanced
    quotes, not empty). An unbalanced group comes back one row per line with ok false,
    so that every physical line is accounted for.

    ``start``: an expression true on lines that can only begin a record; the quote
    parity restarts there (so one stray quote does not swallow the rest of the batch).
    """
    frame = lines.select("raw", "line_no").with_columns(
        (pl.col("raw").str.count_matches('"', literal=True) % 2 == 1).alias("_odd"))
    if not frame["_odd"].any():  # the usual case: every line is a record
        return frame.select(
            "line_no", "raw", pl.lit(1, pl.UInt32).alias("lines"),
            _ok(pl.col("raw")))
    odd = pl.col("_odd").cast(pl.Int64)
    before = odd.cum_sum() - odd  # odd lines before this one, in the batch
    if start is None:
        open_before = before % 2 == 1
    else:
        first = pl.int_range(pl.len()) == 0
        restart = (start.fill_null(False) | first)
        base = pl.when(restart).then(before).forward_fill()
        open_before = ((before - base) % 2 == 1) & ~restart
    frame = frame.with_columns(open_before.alias("_cont")).with_columns(
        (~pl.col("_cont")).cum_sum().alias("_rec"))
    grouped = frame.group_by("_rec", maintain_order=True).agg(
        pl.col("line_no").first(),
        pl.col("raw").str.join("\n"),
        pl.len().cast(pl.UInt32).alias("lines"),
        (pl.col("_odd").sum() % 2 == 0).alias("_even"),
    )
    balanced = grouped.filter(pl.col("_even")).select(
        "line_no", "raw", "lines", _ok(pl.col("raw")))
    broken = grouped.filter(~pl.col("_even")).select("_rec")
    if not broken.height:
        return balanced
    loose = frame.join(broken, on="_rec", how="semi").select(
        "line_no", "raw", pl.lit(1, pl.UInt32).alias("lines"), pl.lit(False).alias("ok"))
    return pl.concat([balanced, loose])


def _ok(raw: pl.Expr) -> pl.Expr:
    # an empty line is not a record (the CSV reader would skip it and misalign the rows)
    return (raw != "").fill_null(False).alias("ok")


def _read(texts: pl.Series, names: list[str], keep: list[str]) -> pl.DataFrame | None:
    """The records as string columns, or None when the CSV reader refuses them."""
    # the reader takes the number of columns from the first line: a header line of
    # placeholders gives it, whatever the first record looks like
    placeholders = [f"c{i}" for i in range(len(names))]
    wanted = [p for p, name in zip(placeholders, names, strict=True) if name in keep]
    block = io.BytesIO()  # one "\n"-joined block, written in Rust (no Python string)
    pl.DataFrame({",".join(placeholders): texts}).write_csv(block, quote_style="never")
    try:
        frame = pl.read_csv(block.getvalue(), schema=dict.fromkeys(placeholders, pl.String),
                            columns=wanted, quote_char='"', truncate_ragged_lines=True)
    except pl.exceptions.PolarsError:  # a field such as "a"b is not CSV
        return None
    frame.columns = [name for name in names if name in keep]
    return frame if frame.height == texts.len() else None


def table(recs: pl.DataFrame, names: list[str], keep: Collection[str] | None = None
          ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split records (columns line_no, raw) into string columns named ``names`` (missing
    trailing fields null, extra ones dropped; only those in ``keep`` when given), plus
    line_no and ``_raw``; and the records that are not CSV (columns line_no, raw).

    The records go through polars' CSV reader as one in-memory block: it handles the
    quoting (doubled quotes, commas and newlines inside quotes) in Rust. Only when it
    refuses the block are the records checked one by one (a pattern over the column) and
    the malformed ones set aside.
    """
    kept = [n for n in names if keep is None or n in keep]
    bad = recs.clear().select("line_no", "raw")
    frame = _read(recs["raw"], names, kept) if recs.height else None
    if frame is None and recs.height:
        good = recs["raw"].str.contains(WELL_FORMED).fill_null(False)
        bad, recs = recs.filter(~good).select("line_no", "raw"), recs.filter(good)
        frame = _read(recs["raw"], names, kept) if recs.height else None
        if frame is None:  # cannot happen for well-formed records; never lose the lines
            bad, recs = pl.concat([bad, recs.select("line_no", "raw")]), recs.clear()
    if frame is None:
        frame = pl.DataFrame(schema=dict.fromkeys(kept, pl.String))
    # a column the parser reads that this header does not name (a trimmed log
    # configuration, a hand-made file) is there, null: the parser never fails on it
    absent = sorted(set(keep or ()) - set(names))
    return frame.with_columns(recs["line_no"], recs["raw"].alias("_raw"),
                              *(pl.lit(None, pl.String).alias(n) for n in absent)), bad


def directives(head: tuple[str, ...] | list[str]) -> dict[str, str]:
    """The ``#Name: value`` lines of a W3C-style header (Exchange logs), last one wins;
    ``Fields`` is the comma-separated column list. A UTF-8 BOM before ``#`` is ignored."""
    out: dict[str, str] = {}
    for line in head:
        line = line.lstrip("\ufeff").replace("\x00", "")
        if line.startswith("#") and ":" in line:
            name, _, value = line[1:].partition(":")
            out[name.strip().lower()] = value.strip()
    return out


#: a one-line record starting with "#": a W3C-style header line (#Fields:, #Date:...)
HEADER_RECORD = pl.col("raw").str.starts_with("#") & (pl.col("lines") == 1)


def side_parts(recs: pl.DataFrame, header_kind: str) -> list[pl.DataFrame]:
    """The header lines (kind ``header_kind``, text in detail) and the records that are
    not CSV (``unparsed``, raw kept) of ``records()`` output, as event parts."""
    return [
        recs.filter(HEADER_RECORD).select("line_no", pl.lit(header_kind).alias("kind"),
                                          pl.col("raw").str.slice(1).alias("detail")),
        recs.filter(~HEADER_RECORD & ~pl.col("ok")).select(
            "line_no", "raw", pl.lit("unparsed").alias("kind")),
    ]
