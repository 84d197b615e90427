"""Time detection + report (``pipeline._detect_and_report``) on an existing warehouse.

    .venv/bin/python bench/report_stage.py OUT [--rounds 3] [--keep DIR]

``OUT`` is the output folder of a ``mailstorm run`` (it holds ``mailstorm.duckdb``). Each
round runs in this process what ``mailstorm report`` runs (no log read, nothing recorded),
writing the report into a fresh temporary folder (or ``--keep DIR``, to compare outputs),
and times its sub-stages: wall and CPU seconds (CPU of every thread of the process, so
DuckDB's threads count). Prints the minimum of the rounds per sub-stage as JSON.

Sub-stages: ``detect`` (the rules, the incidents), ``summary``, ``day`` (the day
overview), ``details`` (the incident pages' details, the impact), ``render`` (the
templates, incidents.json), ``csv`` (the CSV exports, written while publishing), and
``total`` (the whole of ``_detect_and_report``; ``other`` is what the rest leaves).
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from detector import pipeline
from detector.warehouse import Warehouse


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Clock:
    """Wall and CPU seconds spent in the functions wrapped, by sub-stage."""

    def __init__(self) -> None:
        self.spent: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        self.depth = 0

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self.depth:  # nested (a CSV written inside render): the outer one counts it
                return fn(*args, **kwargs)
            self.depth += 1
            t, c = time.perf_counter(), cpu()
            try:
                return fn(*args, **kwargs)
            finally:
                self.depth -= 1
                self.spent[name][0] += time.perf_counter() - t
                self.spent[name][1] += cpu() - c
        return timed


def one_round(db: Path, out: Path) -> dict[str, tuple[float, float]]:
    clock = Clock()
    saved = {n: getattr(pipeline, n) for n in
             ("detect", "build_summary", "day_overview", "incident_details", "csv_writers",
              "write_report")}

    def csv_writers(*args: Any, **kwargs: Any) -> Any:
        writers = saved["csv_writers"](*args, **kwargs)
        return {name: clock.wrap("csv", w) for name, w in writers.items()}

    def write_report(*args: Any, **kwargs: Any) -> Any:
        # the CSVs are written inside: timed apart, taken off render below
        t, c = time.perf_counter(), cpu()
        try:
            return saved["write_report"](*args, **kwargs)
        finally:
            clock.spent["render"][0] += time.perf_counter() - t
            clock.spent["render"][1] += cpu() - c

    pipeline.detect = clock.wrap("detect", saved["detect"])
    pipeline.build_summary = clock.wrap("summary", saved["build_summary"])
    pipeline.day_overview = clock.wrap("day", saved["day_overview"])
    pipeline.incident_details = clock.wrap("details", saved["incident_details"])
    pipeline.csv_writers = csv_writers
    pipeline.write_report = write_report
    rules = pipeline.load_ruleset(None, {})
    try:
        with Warehouse(db) as wh:
            t, c = time.perf_counter(), cpu()
            pipeline._detect_and_report(wh, rules, out, None, None, None, scope=None,
                                        run_info=None)
            total = (time.perf_counter() - t, cpu() - c)
    finally:
        for n, f in saved.items():
            setattr(pipeline, n, f)
    spent = dict(clock.spent)
    csv = spent.get("csv", [0.0, 0.0])
    spent["render"] = [spent["render"][0] - csv[0], spent["render"][1] - csv[1]]
    spent["total"] = list(total)
    spent["other"] = [total[i] - sum(v[i] for k, v in spent.items() if k != "total")
                      for i in (0, 1)]
    return {k: (v[0], v[1]) for k, v in spent.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="a run's output folder (holds mailstorm.duckdb)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="write the last round's report here")
    args = ap.parse_args(argv)
    db = args.out / "mailstorm.duckdb"
    best: dict[str, list[float]] = {}
    for n in range(args.rounds):
        last = n == args.rounds - 1
        if args.keep and last:
            shutil.rmtree(args.keep, ignore_errors=True)
            dest = args.keep
        else:
            dest = Path(tempfile.mkdtemp(prefix="report-stage-"))
        try:
            spent = one_round(db, dest)
        finally:
            if dest != args.keep:
                shutil.rmtree(dest, ignore_errors=True)
        print(json.dumps({"round": n, **{k: [round(v[0], 3), round(v[1], 3)]
                                          for k, v in spent.items()}}), file=sys.stderr)
        for k, (wall, cpus) in spent.items():
            b = best.setdefault(k, [wall, cpus])
            b[0], b[1] = min(b[0], wall), min(b[1], cpus)
    order = ["detect", "summary", "day", "details", "render", "csv", "other", "total"]
    print(json.dumps({"warehouse": str(db), "rounds": args.rounds,
                      "min_wall_cpu_s": {k: [round(best[k][0], 3), round(best[k][1], 3)]
                                         for k in order if k in best}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
