"""The Rust fast path for the hottest Postfix line shapes (``fastpath/``, module
``mailstorm_fastpath``), optional: without it every line takes the Polars parser.

The splitter vouches only for lines whose events it makes exactly as
``detector.formats.postfix`` would (deliveries, qmgr, cleanup, connects, foreign lines...);
the rest of a batch goes through the Polars parser and the two parts are put back in line
order. ``MAILSTORM_FASTPATH=0`` turns it off (tests, benchmarks).
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import TYPE_CHECKING

import polars as pl

from detector.schema import EVENTS_SCHEMA

if TYPE_CHECKING:  # the formats package imports this module
    from detector.formats.context import ParseContext

ENV = "MAILSTORM_FASTPATH"


def _load() -> ModuleType | None:
    try:
        import mailstorm_fastpath
    except ImportError:
        return None
    return mailstorm_fastpath


_NATIVE = _load()


def available() -> bool:
    """Whether the Rust module is installed (``make`` builds it when cargo is on PATH)."""
    return _NATIVE is not None


def enabled() -> bool:
    """Installed and not turned off by ``MAILSTORM_FASTPATH=0``."""
    return _NATIVE is not None and os.environ.get(ENV, "1") != "0"


def split(lines: pl.DataFrame, ctx: ParseContext) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(events of the lines the fast path vouches for, in line order; the other lines).

    ``lines`` needs ``_year`` (assigned ahead by ingest): years are not inferred here."""
    from detector.formats.syslog import _localize

    assert _NATIVE is not None
    # as binary views (a free cast): their import checks bounds, not UTF-8 over the batch
    raw = lines["raw"].cast(pl.Binary).to_arrow(compat_level=pl.CompatLevel.newest())
    out = _NATIVE.split_postfix(raw, lines["_year"].cast(pl.Int64).to_arrow())
    vouched = pl.Series("v", out.pop("vouched"))
    index = pl.Series("i", out.pop("index"))
    cols = {name: pl.Series(name, arr) for name, arr in out.items()}
    naive = cols.pop("micros").cast(pl.Datetime("us"))
    frame = pl.DataFrame(cols).with_columns(
        ts=naive, line_no=lines["line_no"].gather(index),
        source_file=pl.lit(ctx.source_file, pl.String)).with_columns(
        _localize(pl.col("ts"), ctx.tz))
    events = frame.select(pl.col(name).cast(dtype) for name, dtype in EVENTS_SCHEMA.items())
    return events, lines.filter(~vouched)
