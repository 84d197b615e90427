"""Detection quality matrix: every incident kind, threshold day and look-alike x every
format x subjects logged or not, on simulated days. Prints the table; with --write, keeps
every run in docs/quality.json and puts the table into the README (between its markers).

    python bench/quality.py --seeds 3 --jobs 2 --write
    python bench/quality.py --seeds 1 --format postfix     # a quick look, nothing written

What it measures is agreement between mailstorm's own simulator and its detector, not
accuracy on real logs. Found: right kind, list and start (within two minutes). False
alarm: an incident above info that matches nothing injected. tests/test_quality.py checks
that the README shows exactly docs/quality.json and re-runs a sample of its runs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from bench.quality_matrix import (  # noqa: E402
    README,
    RESULTS,
    Cell,
    cells,
    render_table,
    save,
    score,
    write_readme_table,
)
from detector.simulate.day import writers  # noqa: E402


def _one(job: tuple[str, str, bool, int]) -> Cell:
    scenario, fmt, subjects, seed = job
    with tempfile.TemporaryDirectory() as tmp:
        return score(scenario, fmt, subjects, Path(tmp), seed=seed)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="simulated days per cell")
    ap.add_argument("--format", dest="formats", action="append", help="default: all")
    ap.add_argument("--jobs", type=int, default=2, help="days run at once (processes)")
    ap.add_argument("--write", action="store_true",
                    help=f"write {RESULTS.relative_to(ROOT)} and the README table "
                         "(all formats only)")
    args = ap.parse_args(argv)
    formats = args.formats or sorted(writers())
    if args.write and formats != sorted(writers()):
        ap.error("--write records the whole matrix: leave out --format")
    jobs = [(s, f, subj, seed) for s, f, subj in cells(formats)
            for seed in range(1, args.seeds + 1)]
    started = time.perf_counter()
    runs: list[Cell] = []
    # spawned, not forked: a child forked after Polars started its thread pool can hang
    # on a lock no thread will release (no day ever finishes)
    with ProcessPoolExecutor(max_workers=args.jobs,
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        for i, cell in enumerate(pool.map(_one, jobs), 1):
            runs.append(cell)
            for note in cell.notes:
                print(f"  {cell.scenario} {cell.fmt} subjects={cell.subjects} seed "
                      f"{cell.seed}: {note}", file=sys.stderr)
            if i % 50 == 0:
                print(f"{i}/{len(jobs)} days, {time.perf_counter() - started:.0f} s",
                      file=sys.stderr)
    data = {"formats": formats, "seeds": args.seeds}
    table = render_table(data, runs)
    print(table)
    if args.write:
        save(RESULTS, runs, seeds=args.seeds, formats=formats)
        write_readme_table(README, table)
        print(f"wrote {RESULTS} and the table in {README}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
