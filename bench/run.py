"""Benchmark mailstorm end to end against the floor (wc -l) and pflogsumm.

    python bench/run.py                       # 1M-line storm night, 3 repeats
    python bench/run.py --lines 1000000 --lines 10000000 --kind storm --repeat 3

Logs are generated once into bench/data/ by bench/generate.py (deterministic, seeded).
Each measured command runs in a fresh process; wall time is the median of the repeats,
peak RSS the largest resident set of that process and its children (from getrusage).
Results print as a table and are appended to bench/results/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
DATA = BENCH / "data"
RESULTS = BENCH / "results"
PY = sys.executable

# Runs a command and prints its peak RSS (KiB): the wrapper's only child is the command.
_RSS = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], "
        "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN)"
        ".ru_maxrss); sys.exit(r.returncode)")


def measure(cmd: list[str], repeat: int) -> tuple[float, float]:
    """(median seconds, max peak RSS in MB) of a command over repeats."""
    times, rss = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        res = subprocess.run([PY, "-c", _RSS, *cmd], capture_output=True, text=True)
        times.append(time.perf_counter() - t)
        if res.returncode != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{res.stderr[-2000:]}")
        rss.append(int(res.stdout.split()[-1]) / 1024)
    return statistics.median(times), max(rss)


def generate(lines: int, kind: str) -> Path:
    path = DATA / f"{kind}-{lines}.log"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        subprocess.run([PY, str(BENCH / "generate.py"), "--lines", str(lines), "--kind", kind,
                        "--seed", "1", "--out", str(path)], check=True)
    return path


def pflogsumm() -> str | None:
    return shutil.which("pflogsumm")


def bench_one(path: Path, repeat: int) -> dict:
    lines = int(subprocess.run(["wc", "-l", str(path)], capture_output=True,
                               text=True).stdout.split()[0])
    size_mb = path.stat().st_size / 1e6
    row: dict = {"file": path.name, "lines": lines, "mb": round(size_mb, 1), "runs": {}}

    def record(name: str, seconds: float, rss: float | None) -> None:
        row["runs"][name] = {"seconds": round(seconds, 3), "lines_per_s": round(lines / seconds),
                             "mb_per_s": round(size_mb / seconds, 1),
                             "peak_rss_mb": round(rss, 1) if rss is not None else None}

    record("wc -l", *measure(["wc", "-l", str(path)], repeat))
    if pflogsumm():
        record("pflogsumm", *measure(["pflogsumm", str(path)], repeat))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        times, rss = [], []
        for i in range(repeat):  # a fresh warehouse every time: a full first run
            sec, mb = measure([PY, "-m", "detector", "run", str(path), "--out",
                               str(out / f"r{i}"), "--year", "2016", "--tz", "UTC", "-q"], 1)
            times.append(sec)
            rss.append(mb)
        record("mailstorm run", statistics.median(times), max(rss))
        record("mailstorm report (re-run, no parse)", *measure(
            [PY, "-m", "detector", "report", "--db", str(out / "r0" / "mailstorm.duckdb"),
             "--out", str(out / "again"), "-q"], repeat))
        incidents = json.loads((out / "r0" / "incidents.json").read_text())["incidents"]
        row["incidents"] = [(i["kind"], i["severity"], i["deliveries"]) for i in incidents]
    stages = subprocess.run([PY, str(BENCH / "stages.py"), str(path)], capture_output=True,
                            text=True, check=True)
    row["stages"] = json.loads(stages.stdout)["seconds"]
    return row


def show(row: dict) -> None:
    print(f"\n{row['file']}: {row['lines']:,} lines, {row['mb']} MB")
    base = row["runs"]["mailstorm run"]["seconds"]
    for name, r in row["runs"].items():
        rss = f"{r['peak_rss_mb']:>8.0f} MB" if r["peak_rss_mb"] is not None else ""
        print(f"  {name:38s} {r['seconds']:8.2f} s {r['lines_per_s']:>12,} lines/s "
              f"{r['mb_per_s']:>7.1f} MB/s {rss}  x{r['seconds'] / base:.2f} of mailstorm")
    print("  stages (s, cumulative where marked): " + ", ".join(
        f"{k}={v:.2f}" for k, v in row["stages"].items()))
    print(f"  incidents: {row['incidents']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, action="append", help="log size (repeatable)")
    ap.add_argument("--kind", default="storm", choices=["storm", "quiet"])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not pflogsumm():
        print("note: pflogsumm not found (apt-get install pflogsumm); comparing to wc -l only",
              file=sys.stderr)
    meta = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
            "python": platform.python_version(), "machine": platform.machine()}
    RESULTS.mkdir(exist_ok=True)
    for lines in args.lines or [1_000_000]:
        row = bench_one(generate(lines, args.kind), args.repeat)
        show(row)
        with open(RESULTS / "results.jsonl", "a") as f:
            f.write(json.dumps({**meta, **row}) + "\n")


if __name__ == "__main__":
    main()
