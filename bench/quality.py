"""Detection quality matrix: every incident kind and look-alike x every format x subjects
logged or not, on simulated days. Prints the markdown table the README shows.

    python bench/quality.py [--seeds 3] [--format postfix --format exim ...]

Recall: injected incidents found with the right kind, list and start (within two
minutes). Precision: found incidents above info that match an injected one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from detector.simulate.day import BENIGN, INCIDENTS, writers  # noqa: E402
from detector.simulate.quality import score  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="simulated days per cell")
    ap.add_argument("--format", dest="formats", action="append", help="default: all")
    args = ap.parse_args(argv)
    formats = args.formats or sorted(writers())
    print("| scenario | format | subjects | injected | found | false alarms | recall | "
          "precision |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    totals = [0, 0, 0]
    for scenario in INCIDENTS + BENIGN:
        for fmt in formats:
            for subjects in (True, False):
                injected = found = extra = 0
                for seed in range(1, args.seeds + 1):
                    with tempfile.TemporaryDirectory() as tmp:
                        cell = score(scenario, fmt, subjects, Path(tmp), seed=seed)
                    injected, found, extra = (injected + cell.injected, found + cell.found,
                                              extra + cell.extra)
                    for note in cell.notes:
                        print(f"  seed {seed}: {note}", file=sys.stderr)
                totals = [totals[0] + injected, totals[1] + found, totals[2] + extra]
                recall = f"{found / injected:.0%}" if injected else "n/a"
                precision = f"{found / (found + extra):.0%}" if found + extra else "n/a"
                print(f"| {scenario} | {fmt} | {'yes' if subjects else 'no'} | {injected} | "
                      f"{found} | {extra} | {recall} | {precision} |", flush=True)
    injected, found, extra = totals
    print(f"\nAll: {found}/{injected} found (recall {found / max(injected, 1):.0%}), "
          f"{extra} false alarms (precision {found / max(found + extra, 1):.0%}).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
