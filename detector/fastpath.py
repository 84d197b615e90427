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

from detector.schema import conform

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


def split_file_batch(lines: pl.DataFrame, ctx: ParseContext, fmt: str, *, dispatch: bool
                     ) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    """``split`` for a batch of a file sniffed (or forced) as ``fmt`` ahead of
    ``formats.shared``'s dispatch: None where the fast path does not apply (another
    format, no years assigned, turned off). With ``dispatch``, a line of another syslog
    format's program (Sendmail, Exim) is left with the rest, for its own parser. The rest
    holds its own bytes (``_compact``): its caller pools it across batches."""
    if fmt != "postfix" or not lines.height or "_year" not in lines.columns or not enabled():
        return None
    events, rest = split(lines, ctx)
    if dispatch:
        from detector.formats.shared import other_programs

        # the programs' patterns tried on the foreign lines only (few), not on every line
        back = events.filter(pl.col("kind") == "foreign").filter(other_programs(fmt))["line_no"]
        if back.len():
            handed = pl.col("line_no").is_in(back.implode())
            events = events.filter(~handed)
            rest = pl.concat([rest, lines.filter(handed)])
    return events, _compact(rest)


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
    return conform(frame).collect(), lines.filter(~vouched)


def _compact(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with its strings in buffers of their own: a filter keeps views into the
    whole batch's buffers, so a few lines left over, pooled by ingest (DEFER_LINES), would
    hold every 24 MB batch they came from."""
    out = pl.from_arrow(frame.to_arrow(compat_level=pl.CompatLevel.oldest()))
    assert isinstance(out, pl.DataFrame)
    return out.cast(frame.schema)
