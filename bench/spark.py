"""Time both engines per stage on one night's logs, and print lines/s per core.

    .venv/bin/python bench/spark.py /tmp/storm-1M.log --rounds 3
    .venv/bin/python bench/spark.py bench/data/storm-10M.log --rounds 1 --master 'local[*]'

DuckDB engine stages: parse (ingest: read, parse, write the events parts), model
(build_model), rules (detect), report (summary and report pages), dataset (the Parquet
dataset written from the warehouse). Spark engine stages: session (started once, in the
first round), parse (mapInArrow over the Polars parsers, events written as the dataset),
model (Spark SQL; each table written to the dataset and read back), attach (the
warehouse's hard links to the dataset), rules (Spark SQL, hits back as Arrow, then the
same incident code: detect), report, dataset (incidents and the catalog). Each round
runs in a fresh output folder; the minimum of each stage over the rounds is printed,
with lines/s per core (``--cores``: the cores both engines were given; DuckDB and Polars
use every core of the machine, Spark ``local[N]`` N). One JSON object per round goes
to stderr, and the whole result with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from detector.dataset import dataset_dir_of, publish_dataset  # noqa: E402
from detector.incidents import detect  # noqa: E402
from detector.ingest import ingest, sniff_inputs  # noqa: E402
from detector.model.build import build_model  # noqa: E402
from detector.pipeline import load_ruleset  # noqa: E402
from detector.reports import write_report  # noqa: E402
from detector.sources import discover  # noqa: E402
from detector.summary import build_summary  # noqa: E402
from detector.warehouse import Warehouse  # noqa: E402


def _timed(out: dict[str, float], name: str, start: float) -> float:
    now = time.perf_counter()
    out[name] = now - start
    return now


def duckdb_round(logs: list[str], work: Path, year: int) -> dict[str, float]:
    out: dict[str, float] = {}
    rules = load_ruleset(None, {})
    with Warehouse(work / "mailstorm.duckdb") as wh:
        t = time.perf_counter()
        ingest(wh, discover(logs), tz="UTC", year=year)
        t = _timed(out, "parse", t)
        build_model(wh)
        t = _timed(out, "model", t)
        incidents = detect(wh, rules, recording=True)
        t = _timed(out, "rules", t)
        write_report(work, build_summary(wh, rules, []), incidents)
        t = _timed(out, "report", t)
        publish_dataset(wh, work)
        _timed(out, "dataset", t)
    return out


def spark_round(logs: list[str], work: Path, year: int, master: str,
                conf: dict[str, str]) -> dict[str, float]:
    from detector.spark.engine import SparkEngine

    out: dict[str, float] = {}
    rules = load_ruleset(None, {})
    t = time.perf_counter()
    engine = SparkEngine(work, master=master, conf=conf)
    t = _timed(out, "session", t)
    files = discover(logs)
    engine.parse(files, sniff_inputs(files), tz="UTC", year=year, fmt=None, host=None)
    t = _timed(out, "parse", t)
    engine.build_model()
    t = _timed(out, "model", t)
    with Warehouse(work / "mailstorm.duckdb") as wh:
        engine.attach(wh)
        t = _timed(out, "attach", t)
        incidents = detect(wh, rules, recording=True, runner=engine.rule_runner(None))
        t = _timed(out, "rules", t)
        write_report(work, build_summary(wh, rules, []), incidents)
        t = _timed(out, "report", t)
        engine.publish_incidents(wh)
        _timed(out, "dataset", t)
    out["incidents"] = len(incidents)
    # where the model's time went, statement by statement (stderr's JSON only)
    out.update({f"sql:{k}": v for k, v in engine.timings.statements.items()})
    return out


def _lines(logs: list[str]) -> int:
    from detector.sources import iter_batches

    return sum(b.height for f in discover(logs) for b, _ in iter_batches(f.path))


def _bytes_per_line(folder: Path, lines: int) -> dict[str, float]:
    """Bytes of each table's Parquet files in the dataset, per log line."""
    return {table.name: round(sum(f.stat().st_size for f in table.rglob("*.parquet"))
                              / max(lines, 1), 1)
            for table in sorted(folder.iterdir()) if table.is_dir()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--year", type=int, default=2016)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--shuffle-partitions", default="8")
    parser.add_argument("--engines", default="duckdb,spark")
    parser.add_argument("--json", type=Path, help="write the whole result here")
    args = parser.parse_args()
    lines = _lines(args.logs)
    engines = args.engines.split(",")
    rounds: dict[str, list[dict[str, float]]] = {e: [] for e in engines}
    sizes: dict[str, dict[str, float]] = {}
    conf = {"spark.sql.shuffle.partitions": args.shuffle_partitions}
    for i in range(args.rounds):
        for engine in engines:
            work = Path(tempfile.mkdtemp(prefix=f"bench-{engine}-"))
            try:
                took = (duckdb_round(args.logs, work, args.year) if engine == "duckdb" else
                        spark_round(args.logs, work, args.year, args.master, conf))
                sizes[engine] = _bytes_per_line(dataset_dir_of(work), lines)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            rounds[engine].append(took)
            print(json.dumps({"round": i + 1, "engine": engine, **took}), file=sys.stderr,
                  flush=True)
    result: dict[str, Any] = {"lines": lines, "cores": args.cores, "master": args.master,
                              "rounds": rounds, "dataset_bytes_per_line": sizes}
    print(f"{lines:,} lines, {args.rounds} round(s), minimum of each stage; "
          f"lines/s per core over {args.cores} core(s)")
    for engine, runs in rounds.items():
        stages = [k for k in runs[0] if k != "incidents" and not k.startswith("sql:")]
        # the session starts in the first round only (later rounds reuse it)
        best = {k: (runs[0][k] if k == "session" else min(r[k] for r in runs))
                for k in stages}
        result[f"{engine}_min"] = best
        work_s = sum(v for k, v in best.items() if k != "session")
        print(f"\n{engine}: {work_s:.1f} s without session start "
              f"({lines / work_s / args.cores:,.0f} lines/s per core)")
        for k, v in best.items():
            rate = f"{lines / v / args.cores:12,.0f} lines/s/core" if v > 0 else ""
            print(f"  {k:8} {v:8.1f} s {rate}")
        print(f"  dataset bytes per line: {sizes.get(engine)}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
