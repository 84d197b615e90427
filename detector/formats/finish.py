"""The tail every format's parse ends with, written once: numbers cast leniently, raw text
kept only where it is the evidence, subjects decoded, the events schema conformed."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import polars as pl

from detector.formats.context import ParseContext
from detector.schema import addressed_directly, conform

#: kinds whose whole line is kept in ``raw``: nothing else of them was understood
KEEP_RAW = ("foreign", "unparsed")
#: an RFC 3164 stamp of Feb 29 (no year: the year was inferred). A line with it and no
#: time was given a year that is not a leap year: its raw text is kept as the evidence,
#: and the report counts such lines per file (``LEAP_DAY_SQL``)
LEAP_DAY = r"^(?:<\d{1,3}>)?Feb 29 "
LEAP_DAY_SQL = "ts IS NULL AND regexp_matches(raw, '^(<[0-9]{1,3}>)?Feb 29 ')"
_NUMBERS = (("size", pl.Int64), ("nrcpt", pl.Int64), ("delay", pl.Float64))
# the years Python's datetime holds: the warehouse, reports and JSON read times through it
_FIRST = datetime(1, 1, 1, tzinfo=UTC)
_LAST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def outside_calendar_unparsed(frame: pl.DataFrame) -> pl.DataFrame:
    """A stamp in year 0 (``0000-01-01``) or past 9999 (``--year 9999`` and a rollover)
    is a corrupt line: no time, counted as unparsed with its raw text, never a crash."""
    ts = pl.col("ts")
    bad = ts.is_not_null() & ((ts < _FIRST) | (ts > _LAST))
    if not frame.select(bad.any()).item():
        return frame
    fixed = [pl.when(bad).then(None).otherwise(ts).alias("ts")]
    if "kind" in frame.columns:
        fixed.append(pl.when(bad).then(pl.lit("unparsed")).otherwise("kind").alias("kind"))
    return frame.with_columns(fixed)


def finish(frame: pl.DataFrame, ctx: ParseContext, *, keep_raw: Iterable[str] = KEEP_RAW,
           direct_orig_to: bool = False,
           unescape: Callable[[pl.Series], pl.Series] | None = None) -> pl.DataFrame:
    """Parsed fields -> the events frame.

    ``direct_orig_to``: the format names the list on each delivery line (Postfix orig_to,
    Exim's parent address), so a delivery naming none was addressed directly.
    ``unescape``: the format's own escaping of subjects (Exim's T=), undone before RFC 2047
    words are decoded.
    """
    frame = frame.with_columns(source_file=pl.lit(ctx.source_file))
    if "ts" in frame.columns:
        frame = outside_calendar_unparsed(frame)
    if "raw" in frame.columns:
        keep = frame["kind"].is_in(list(keep_raw))
        if "ts" in frame.columns and frame["ts"].null_count():
            # a Feb 29 in a year that is not leap has no time: its line is kept as the why
            # (looked for among the lines without a time only: they are few)
            undated = frame["ts"].is_null().arg_true()
            leap = frame["raw"].gather(undated).str.contains(LEAP_DAY).fill_null(False)
            if leap.any():
                keep = keep.scatter(undated.filter(leap), True)
        frame = frame.with_columns(raw=pl.when(keep).then(pl.col("raw")))
    # a corrupt number (delay=0.1.7, a 30-digit size) must not stop the whole file
    frame = frame.with_columns(pl.col(name).cast(dtype, strict=False)
                               for name, dtype in _NUMBERS if name in frame.columns)
    if "subject" in frame.columns and frame["subject"].null_count() < frame.height:
        from detector.model.subjects import decode_rfc2047

        subject = frame["subject"]
        if unescape is not None:
            subject = unescape(subject)
        frame = frame.with_columns(decode_rfc2047(subject).alias("subject"))
    if direct_orig_to:
        frame = addressed_directly(frame)
    return conform(frame).collect()
