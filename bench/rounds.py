"""Same-round comparison on one log: this checkout, an earlier one and pflogsumm.

    git worktree add --detach /tmp/before 4b097d0
    python bench/rounds.py bench/data/storm-10M.log --before /tmp/before --rounds 3

The machine these run on is shared and its speed drifts between minutes, so a figure is
only compared with figures of the same round: every round runs each variant once, in a
fresh process, one after the other (``mailstorm run`` as ``bench/nightly.py --one`` of
that checkout runs it, stage by stage, into a fresh OUT; pflogsumm on the same file).
Variants: ``before`` (the earlier checkout), ``after`` (this one), ``after-polars``
(this one with MAILSTORM_FASTPATH=0: the Polars parser alone) and ``pflogsumm``.

Prints one JSON line per run (wall, CPU user+sys of the process and its threads, peak
RSS, seconds and CPU-seconds per stage), then per variant the minimum over the rounds
and its ratio to pflogsumm and to ``before`` taken round by round (the minimum of the
rounds' ratios and their median).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PFLOGSUMM = shutil.which("pflogsumm") or "/usr/sbin/pflogsumm"


def run_one(variant: str, log: str, before: Path | None, year: int) -> dict[str, object]:
    """One run of ``variant`` in a fresh process (a fresh wrapper, so that the peak RSS
    of its children is this run's)."""
    code = ("import json, resource, subprocess, sys, time; t = time.perf_counter(); "
            "p = subprocess.run(sys.argv[2:], capture_output=True, text=True, env=json.loads("
            "sys.argv[1])); w = time.perf_counter() - t; r = resource.getrusage("
            "resource.RUSAGE_CHILDREN); print(json.dumps({'rc': p.returncode, 'wall': w, "
            "'cpu': r.ru_utime + r.ru_stime, 'rss_mb': r.ru_maxrss / 1024, "
            "'out': p.stdout[-4000:], 'err': p.stderr[-2000:]}))")
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="mailstorm-rounds-") as out:
        if variant == "pflogsumm":
            cmd = [PFLOGSUMM, log]
        else:
            checkout = before if variant == "before" else ROOT
            assert checkout is not None
            env["PYTHONPATH"] = str(checkout)
            if variant == "after-polars":
                env["MAILSTORM_FASTPATH"] = "0"
            cmd = [sys.executable, str(checkout / "bench" / "nightly.py"), "--one", "--out",
                   str(Path(out) / "out"), "--year", str(year), log]
        done = subprocess.run([sys.executable, "-c", code, json.dumps(env), *cmd],
                              capture_output=True, text=True, check=True)
    res = json.loads(done.stdout)
    if res["rc"] != 0:
        raise SystemExit(f"{variant} failed:\n{res['err']}")
    row: dict[str, object] = {"variant": variant, "wall": round(res["wall"], 2),
                              "cpu": round(res["cpu"], 2), "rss_mb": round(res["rss_mb"])}
    if variant != "pflogsumm":
        night = json.loads(res["out"].strip().splitlines()[-1])
        row["stages"] = night["stages"]
        row["incidents"] = night["incidents"]
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("log")
    ap.add_argument("--before", type=Path, help="an earlier checkout (a git worktree)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--year", type=int, default=2016)
    ap.add_argument("--variants", default="before,after,after-polars,pflogsumm")
    args = ap.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v != "before" or args.before]
    runs: dict[str, list[dict[str, object]]] = {v: [] for v in variants}
    for i in range(args.rounds):
        for variant in variants:
            row = run_one(variant, args.log, args.before, args.year)
            row["round"] = i + 1
            runs[variant].append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{'variant':14} {'wall min':>9} {'cpu min':>8} {'rss max':>8} "
          f"{'x pflogsumm (min/median)':>26} {'/ before (min/median)':>23}")
    for variant, rows in runs.items():
        walls = [float(r["wall"]) for r in rows]  # type: ignore[arg-type]
        line = (f"{variant:14} {min(walls):8.2f}s "
                f"{min(float(r['cpu']) for r in rows):7.2f}s "  # type: ignore[arg-type]
                f"{max(float(r['rss_mb']) for r in rows):6.0f}MB")  # type: ignore[arg-type]
        for ref in ("pflogsumm", "before"):
            if ref in runs and variant not in (ref, "pflogsumm"):
                ratios = [float(b["wall"]) / float(a["wall"])  # type: ignore[arg-type]
                          if ref == "pflogsumm" else
                          float(a["wall"]) / float(b["wall"])  # type: ignore[arg-type]
                          for a, b in zip(rows, runs[ref], strict=True)]
                line += f"   {min(ratios):.2f} / {statistics.median(ratios):.2f}"
        print(line)
    print(f"(ratios round by round; {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cpus)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
