"""Time the Rust fast path for Postfix lines (detector.fastpath) on a storm night.

    .venv/bin/python bench/fastpath.py [LOG] [--lines N]

Reads the first N lines (default 2,000,000) of LOG (default bench/data/storm-10M.log) in
ingest's batches, years assigned ahead as ingest does, then per batch, one core:

- split: the Rust splitter alone (no columns built), lines/s and ns per line;
- arrow: building the vouched lines' Arrow columns (split_postfix minus split);
- frame: the Python side (Polars frame, zone, schema) on top;
- fallback: the Polars parser on the lines left, ns per such line;
- polars: the Polars parser on every line (the path without the module), for the ratio.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import polars as pl

from detector import fastpath
from detector.formats import postfix
from detector.formats.context import ParseContext
from detector.formats.syslog import YearState, assign_years, months_of_raw
from detector.sources import iter_batches

DEFAULT = Path(__file__).parent / "data" / "storm-10M.log"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log", nargs="?", default=str(DEFAULT))
    ap.add_argument("--lines", type=int, default=2_000_000)
    ap.add_argument("--year", type=int, default=2016)
    args = ap.parse_args()
    if not fastpath.available():
        raise SystemExit("mailstorm_fastpath is not installed (pip install ./fastpath)")
    import mailstorm_fastpath as native

    years = YearState(args.year)
    batches, n = [], 0
    for batch, _ in iter_batches(args.log):
        batch = batch.head(args.lines - n)
        batches.append(batch.with_columns(assign_years(months_of_raw(batch["raw"]), years)))
        n += batch.height
        if n >= args.lines:
            break
    ctx = ParseContext(args.log, tz="UTC")
    t = dict.fromkeys(["split", "native", "fast", "fallback", "polars"], 0.0)
    vouched = left = 0
    for batch in batches:
        raw = batch["raw"].to_arrow(compat_level=pl.CompatLevel.newest())
        year = batch["_year"].to_arrow()
        t0 = time.perf_counter()
        vouched += native.count_postfix(raw, year)
        t1 = time.perf_counter()
        native.split_postfix(raw, year)
        t2 = time.perf_counter()
        _, rest = fastpath.split(batch, ctx)
        t3 = time.perf_counter()
        postfix.parse_lines(rest, ctx)
        t4 = time.perf_counter()
        postfix.parse_lines(batch, ctx)
        t5 = time.perf_counter()
        left += rest.height
        for key, dt in zip(t, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            t[key] += dt
    fast_total = t["fast"] + t["fallback"]
    print(f"{n:,} lines in {len(batches)} batches of {args.log}")
    print(f"coverage        {vouched / n:7.2%}  ({vouched:,} vouched, {left:,} left)")
    print(f"split           {n / t['split'] / 1e6:7.2f} M lines/s  "
          f"{t['split'] / n * 1e9:6.0f} ns/line")
    print(f"arrow building  {(t['native'] - t['split']) / n * 1e9:15.0f} ns/line")
    print(f"python frame    {(t['fast'] - t['native']) / n * 1e9:15.0f} ns/line")
    print(f"fallback parse  {t['fallback'] / max(left, 1) * 1e9:15.0f} ns/line left "
          f"({t['fallback'] / n * 1e9:.0f} ns/line overall)")
    print(f"fast path total {fast_total / n * 1e9:15.0f} ns/line")
    print(f"polars only     {t['polars'] / n * 1e9:15.0f} ns/line  "
          f"(ratio {t['polars'] / fast_total:.1f}x)")


if __name__ == "__main__":
    main()
