"""Time each stage of the pipeline on one log file, in one process (used by run.py).

Prints one JSON object: seconds per stage and the line count. Stages run cumulatively,
the way the pipeline runs them: read (split into lines), parse (read + parse), ingest
(read + parse + DuckDB append), model, detect, report.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from detector.formats import postfix
from detector.formats.context import ParseContext
from detector.formats.syslog import YearState
from detector.incidents import detect
from detector.ingest import ingest
from detector.model.build import build_model
from detector.pipeline import load_ruleset
from detector.reports import write_report
from detector.sources import discover, iter_batches
from detector.summary import build_summary
from detector.warehouse import Warehouse


def main(path: str) -> None:
    out: dict[str, float] = {}
    t = time.perf_counter()
    lines = sum(batch.height for batch, _ in iter_batches(path))
    out["read"] = time.perf_counter() - t

    t = time.perf_counter()
    ctx = ParseContext(path, "UTC", YearState(2016))
    for batch, _ in iter_batches(path):
        postfix.parse(batch, ctx)
    out["parse"] = time.perf_counter() - t

    with tempfile.TemporaryDirectory() as tmp, Warehouse(Path(tmp) / "w.duckdb") as wh:
        t = time.perf_counter()
        ingest(wh, discover([path]), tz="UTC", year=2016)
        out["ingest"] = time.perf_counter() - t
        t = time.perf_counter()
        build_model(wh)
        out["model"] = time.perf_counter() - t
        rules = load_ruleset(None, {})
        t = time.perf_counter()
        incidents = detect(wh, rules)
        out["detect"] = time.perf_counter() - t
        t = time.perf_counter()
        write_report(Path(tmp) / "out", build_summary(wh, rules, []), incidents)
        out["report"] = time.perf_counter() - t
    print(json.dumps({"lines": lines, "seconds": out}))


if __name__ == "__main__":
    main(sys.argv[1])
