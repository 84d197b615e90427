"""Time the Rust fast path for Postfix lines (detector.fastpath) on a storm night.

    .venv/bin/python bench/fastpath.py [LOG] [--lines N] [--rounds R]

Reads the first N lines (default 2,000,000) of LOG (default bench/data/storm-10M.log) in
ingest's batches, years assigned ahead as ingest does, then per batch, CPU time of the
process (all threads: Polars runs on its pool), each stage the minimum of R rounds
(default 3; the machine is shared, the least disturbed round is the closest to the cost):

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
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--raw", choices=["binary", "string"], default="binary",
                    help="how raw is passed to the module (string: as builds before "
                         "binary views were taken, for before/after comparisons)")
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
    # raw as binary views, as detector.fastpath passes it (no UTF-8 pass on import)
    raw_type = pl.Binary if args.raw == "binary" else pl.String
    arrays = [(b["raw"].cast(raw_type).to_arrow(compat_level=pl.CompatLevel.newest()),
               b["_year"].cast(pl.Int64).to_arrow()) for b in batches]
    stages = ["split", "native", "fast", "fallback", "polars"]
    t = dict.fromkeys(stages, float("inf"))
    vouched = left = 0
    for _ in range(args.rounds):
        r = dict.fromkeys(stages, 0.0)
        vouched = left = 0
        for batch, (raw, year) in zip(batches, arrays, strict=True):
            t0 = time.process_time()
            vouched += native.count_postfix(raw, year)
            t1 = time.process_time()
            native.split_postfix(raw, year)
            t2 = time.process_time()
            _, rest = fastpath.split(batch, ctx)
            t3 = time.process_time()
            postfix.parse_lines(rest, ctx)
            t4 = time.process_time()
            postfix.parse_lines(batch, ctx)
            t5 = time.process_time()
            left += rest.height
            for key, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                r[key] += dt
        t = {key: min(t[key], r[key]) for key in stages}
    fast_total = t["fast"] + t["fallback"]
    print(f"{n:,} lines in {len(batches)} batches of {args.log}, "
          f"CPU time, min of {args.rounds} rounds")
    print(f"coverage        {vouched / n:7.2%}  ({vouched:,} vouched, {left:,} left)")
    print(f"split           {n / t['split'] / 1e6:7.2f} M lines/s  "
          f"{t['split'] / n * 1e9:6.0f} ns/line")
    print(f"arrow building  {(t['native'] - t['split']) / n * 1e9:15.0f} ns/line")
    print(f"split_postfix   {t['native'] / n * 1e9:15.0f} ns/line")
    print(f"python frame    {(t['fast'] - t['native']) / n * 1e9:15.0f} ns/line")
    print(f"fastpath.split  {t['fast'] / n * 1e9:15.0f} ns/line")
    print(f"fallback parse  {t['fallback'] / max(left, 1) * 1e9:15.0f} ns/line left "
          f"({t['fallback'] / n * 1e9:.0f} ns/line overall)")
    print(f"fast path total {fast_total / n * 1e9:15.0f} ns/line")
    print(f"polars only     {t['polars'] / n * 1e9:15.0f} ns/line  "
          f"(ratio {t['polars'] / fast_total:.1f}x)")


if __name__ == "__main__":
    main()
