"""The run summary shown at the top of the report: what was read and what it held."""

from __future__ import annotations

from datetime import UTC, datetime

from detector import __version__
from detector.rules.model import Rule
from detector.times import iso_z
from detector.warehouse import Warehouse

UNPARSED_SAMPLES = 20


def build_summary(wh: Warehouse, rules: list[Rule], skipped: list[tuple[str, str]]) -> dict:
    """Summary dict for the report, from the warehouse (all runs so far) and this run."""
    inputs = [
        {"path": r["path"], "format": r["format"], "host": r["host"], "lines": r["lines"],
         "unparsed": r["unparsed"], "first_ts": iso_z(r["first_ts"]),
         "last_ts": iso_z(r["last_ts"]), "skipped": False}
        for r in wh.query("""
            SELECT f.path, f.format, f.lines, f.unparsed, f.first_ts, f.last_ts,
                   (SELECT string_agg(DISTINCT host, ', ' ORDER BY host) FROM events e
                     WHERE e.source_file = f.path AND e.host IS NOT NULL) AS host
            FROM files f ORDER BY f.path""").iter_rows(named=True)
    ]
    inputs += [{"path": path, "format": None, "host": None, "lines": 0, "unparsed": 0,
                "first_ts": None, "last_ts": None, "skipped": True, "why": why}
               for path, why in skipped]
    kinds = wh.query("SELECT kind, count(*) AS lines FROM events GROUP BY kind "
                     "ORDER BY lines DESC, kind")
    samples = wh.query(f"""SELECT source_file, line_no, raw FROM events
                           WHERE kind = 'unparsed' ORDER BY source_file, line_no
                           LIMIT {UNPARSED_SAMPLES}""")
    span = wh.scalar_row("SELECT min(ts), max(ts) FROM events") or (None, None)
    lines = int(kinds["lines"].sum()) if kinds.height else 0
    unparsed = kinds.filter(kinds["kind"] == "unparsed")["lines"].sum() if kinds.height else 0
    return {
        "generated_at": iso_z(datetime.now(UTC).replace(microsecond=0)),
        "version": __version__,
        "inputs": inputs,
        "lines": lines,
        "kinds": kinds.to_dicts(),
        "unparsed": int(unparsed or 0),
        "unparsed_samples": samples.to_dicts(),
        "time_span": {"start": iso_z(span[0]), "end": iso_z(span[1])},
        "messages": int(wh.scalar("SELECT count(*) FROM logical_messages") or 0),
        "deliveries": int(wh.scalar("SELECT sum(deliveries) FROM logical_messages") or 0),
        "hosts": [r[0] for r in wh.con.execute(
            "SELECT DISTINCT host FROM messages ORDER BY host").fetchall()],
        "rules": [{"name": r.name, "kind": r.kind, "params": dict(r.values)} for r in rules],
    }
