"""Parser throughput per format on a ~1M-line simulated storm day of that format.

    python bench/parsers.py [--lines 1000000] [--repeat 3] [--format exim ...]

Each format's file is rendered once into bench/data/ from the same kind of day (the
traffic is scaled so the file has about --lines lines: an Exchange line holds a whole
delivery batch, so its day has more messages). The parse is timed alone: 32 MB batches
read in advance, then each format's ``parse()`` over them on one thread, through
``formats.shared`` as ingest calls it (a syslog file's lines of other MTAs go to their own
format), best of the repeats. Printed: lines/s, MB/s, events/s and the time per line
relative to Postfix (the acceptance bar of issue 4: at most 2x).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from bench.generate import build  # noqa: E402
from detector.formats import shared  # noqa: E402
from detector.formats.context import ParseContext  # noqa: E402
from detector.formats.syslog import YearState, assign_years, months_of_raw  # noqa: E402
from detector.simulate.day import writers  # noqa: E402
from detector.sources import head_lines, iter_batches  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
# mailman's own logs hold two lines per list post: a 1M-line one is not a day of mail
FORMATS = ("postfix", "exim", "sendmail", "exchange", "m365")


def render(fmt: str, lines: int) -> Path:
    """A storm day of about ``lines`` lines in ``fmt`` (rendered once, then reused)."""
    path = DATA / f"{fmt}-storm-{lines}.log"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    write = writers()[fmt]
    probe = DATA / f".probe-{fmt}.log"
    site, messages, _ = build(100_000, "storm", 1)  # lines per Postfix line, measured
    ratio = write(probe, site, messages, seed=1, headers=True) / 100_000
    probe.unlink()
    site, messages, _ = build(int(lines / ratio), "storm", 1)
    write(path, site, messages, seed=1, headers=True)
    return path


def time_parse(fmt: str, path: Path, repeat: int) -> dict:
    head = tuple(head_lines(str(path), 200))
    years = YearState(2016)
    batches = [b.with_columns(assign_years(months_of_raw(b["raw"]), years))
               for b, _ in iter_batches(str(path))]
    lines = sum(b.height for b in batches)
    best, events = float("inf"), 0
    for _ in range(repeat):
        t = time.perf_counter()
        events = 0
        for b in batches:
            ctx = ParseContext(str(path), "UTC", YearState(2016), head=head)
            # as ingest calls it: a syslog file's lines of other MTAs go to their format
            events += shared.parse(b, ctx, fmt)[0].height
        best = min(best, time.perf_counter() - t)
    mb = path.stat().st_size / 1e6
    return {"format": fmt, "lines": lines, "mb": mb, "events": events, "seconds": best}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--format", dest="formats", action="append", choices=FORMATS)
    args = ap.parse_args(argv)
    pl.Config.set_tbl_rows(20)
    rows = [time_parse(f, render(f, args.lines), args.repeat)
            for f in dict.fromkeys(["postfix", *(args.formats or FORMATS)])]
    base = rows[0]["seconds"] / rows[0]["lines"]
    print("| format | lines | MB | events | seconds | lines/s | MB/s | events/s | "
          "time per line vs Postfix |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        s = r["seconds"]
        print(f"| {r['format']} | {r['lines']:,} | {r['mb']:.0f} | {r['events']:,} | {s:.2f} | "
              f"{r['lines'] / s:,.0f} | {r['mb'] / s:.0f} | {r['events'] / s:,.0f} | "
              f"x{s / r['lines'] / base:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
