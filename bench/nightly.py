"""Nights in a row into one warehouse: does a night cost what its own lines cost?

    python bench/generate.py --lines 1000000 --kind quiet --date 2016-11-DD \
        --out bench/data/nights/mail.log-201611DD          # for DD in 01..30
    python bench/nightly.py bench/data/nights/mail.log-2016* --out /tmp/nights

Each night is one fresh process (as cron starts it) running ``pipeline.run`` on that
night's file into the same OUT; the stages are timed (wall and CPU seconds of the process,
DuckDB's and Polars' threads included) at the pipeline's own progress messages. Prints
one JSON line per night, then the ratio of the last night to the first.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_night(log: str, out: str, year: int, dataset: bool = True) -> dict[str, object]:
    """Run one night in this process; seconds per stage."""
    sys.path.insert(0, str(ROOT))
    from detector.pipeline import run

    marks: list[tuple[str, float, float]] = []

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def mark(message: str) -> None:
        if message.startswith("warning"):
            return
        marks.append((message.split(" ")[0], time.perf_counter(), cpu()))

    t0, c0 = time.perf_counter(), cpu()
    marks.append(("start", t0, c0))
    result = run([log], Path(out), year=year, progress=mark, dataset=dataset)
    marks.append(("end", time.perf_counter(), cpu()))
    # a stage lasts from its message to the next one
    stages: dict[str, list[float]] = {}
    for (name, t, c), (_, t2, c2) in zip(marks, marks[1:], strict=False):
        wall, used = stages.setdefault(name, [0.0, 0.0])
        stages[name] = [wall + t2 - t, used + c2 - c]
    return {"night": Path(log).name, "lines": result.ingested.lines if result.ingested else 0,
            "wall": round(marks[-1][1] - t0, 2), "cpu": round(marks[-1][2] - c0, 2),
            "stages": {k: [round(w, 2), round(c, 2)] for k, (w, c) in stages.items()},
            "incidents": len(result.incidents)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("logs", nargs="+", help="one log file per night, in order")
    ap.add_argument("--out", required=True, help="OUT folder (the warehouse grows in it)")
    ap.add_argument("--year", type=int, default=2016)
    ap.add_argument("--no-dataset", action="store_true",
                    help="run without OUT/dataset (to measure what it costs)")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one_night(args.logs[0], args.out, args.year,
                                   dataset=not args.no_dataset)))
        return 0
    nights = []
    for log in args.logs:
        done = subprocess.run([sys.executable, __file__, "--one", "--out", args.out,
                               "--year", str(args.year), log,
                               *(["--no-dataset"] if args.no_dataset else [])],
                              capture_output=True, text=True, check=True)
        night = json.loads(done.stdout.strip().splitlines()[-1])
        nights.append(night)
        print(json.dumps(night), flush=True)
    if len(nights) > 1:
        first, last = nights[0], nights[-1]
        print(f"night {len(nights)} / night 1: wall {last['wall'] / first['wall']:.2f}x "
              f"({last['wall']} s / {first['wall']} s), "
              f"cpu {last['cpu'] / first['cpu']:.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
