"""The run summary shown at the top of the report: what was read and what it held."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from detector import __version__
from detector.formats import shared
from detector.formats.finish import LEAP_DAY_SQL
from detector.ingest import NOT_ERRORS
from detector.rules.model import Rule
from detector.times import iso_z
from detector.warehouse import Warehouse, sql_path

UNPARSED_SAMPLES = 20

# Counts per events part, made once for each part (the first summary after it is written)
# and kept: a nightly summary then costs its night, not every line the warehouse holds.
_PART_STATS = """CREATE TABLE IF NOT EXISTS part_stats (
    part VARCHAR, source_file VARCHAR, kind VARCHAR, program VARCHAR, host VARCHAR,
    lines BIGINT, first_ts TIMESTAMPTZ, last_ts TIMESTAMPTZ, leap_days BIGINT)"""


def count_parts(wh: Warehouse) -> None:
    """Add the counts of the events parts not counted yet; forget removed parts'."""
    con = wh.con
    con.execute(_PART_STATS)
    con.execute("DELETE FROM part_stats WHERE part NOT IN (SELECT part FROM parts)")
    new = [r[0] for r in con.execute(
        "SELECT part FROM parts WHERE part NOT IN (SELECT part FROM part_stats)").fetchall()]
    if not new:
        return
    files = ", ".join(sql_path(wh.parts_dir / n) for n in new)
    con.execute(f"""INSERT INTO part_stats
        SELECT parse_filename(filename) AS part, source_file, kind, program, host,
            count(*), min(ts), max(ts), count(*) FILTER (WHERE {LEAP_DAY_SQL})
        FROM read_parquet([{files}], filename = true)
        GROUP BY ALL""")


def build_summary(wh: Warehouse, rules: list[Rule], skipped: list[tuple[str, str]],
                  lines_read: int | None = None, since: datetime | None = None,
                  until: datetime | None = None) -> dict:
    """Summary dict for the report, from the warehouse (all runs so far) and this run
    (``lines_read``: the lines it read; None when it read no log, as ``report``;
    ``skipped``: (path, why) of the files it skipped, or could read only in part); its
    messages and deliveries are those first seen in [``since``, ``until``), the span a
    limited detection looked at."""
    count_parts(wh)
    inputs = [
        {"path": r["path"], "format": r["format"], "host": r["host"], "lines": r["lines"],
         "unparsed": r["unparsed"], "first_ts": iso_z(r["first_ts"]),
         "last_ts": iso_z(r["last_ts"]), "skipped": False, "year_source": r["year_source"]}
        for r in wh.query("""
            SELECT f.path, f.format, f.lines, f.unparsed, f.first_ts, f.last_ts,
                   f.year_source,
                   (SELECT string_agg(DISTINCT host, ', ' ORDER BY host) FROM part_stats p
                     WHERE p.source_file = f.path AND p.host IS NOT NULL) AS host
            FROM files f ORDER BY f.path""").iter_rows(named=True)
    ]
    # lines dated Feb 29 whose file was given a year that is not leap: no time (counted
    # from what the warehouse keeps of them, so the report says it every night)
    leap = dict(wh.con.execute("SELECT source_file, sum(leap_days) FROM part_stats "
                               "GROUP BY ALL HAVING sum(leap_days) > 0").fetchall())
    for i in inputs:
        i["leap_days"] = int(leap.get(i["path"], 0))
    # a file this run could not read (or read only in part: a truncated .gz) that the
    # ledger holds keeps its row, with the reason as its note; any other is a row of its own
    read_before = {i["path"]: i for i in inputs}
    for path, why in skipped:
        if path in read_before:
            read_before[path]["why"] = why
        else:
            inputs.append({"path": path, "format": None, "host": None, "lines": 0,
                           "unparsed": 0, "first_ts": None, "last_ts": None, "skipped": True,
                           "why": why})
    kinds = _kinds(wh)
    samples = _unparsed_samples(wh)
    span = wh.scalar_row("SELECT min(first_ts), max(last_ts) FROM part_stats") or (None, None)
    lines = int(kinds["lines"].sum()) if kinds.height else 0
    totals = wh.scalar_row(
        "SELECT count(*), sum(deliveries) FROM logical_messages "
        "WHERE (CAST(? AS TIMESTAMPTZ) IS NULL OR first_seen >= ?) "
        "AND (CAST(? AS TIMESTAMPTZ) IS NULL OR first_seen < ?)",
        [since, since, until, until]) or (0, 0)
    unparsed = kinds.filter(kinds["kind"] == "unparsed")["lines"].sum() if kinds.height else 0
    return {
        "generated_at": iso_z(datetime.now(UTC).replace(microsecond=0)),
        "version": __version__,
        "inputs": inputs,
        # files this run could not read, whole or in part (not those of unknown format,
        # skipped only as --skip-unknown asks, nor empty ones)
        "not_read": sum(1 for _, why in skipped if why not in NOT_ERRORS),
        "lines": lines,
        "lines_read": lines_read,
        "leap_days": sum(leap.values()),
        "kinds": kinds.to_dicts(),  # kind, lines, formats ("postfix, sendmail")
        "unparsed": int(unparsed or 0),
        "unparsed_samples": samples.to_dicts(),
        "time_span": {"start": iso_z(span[0]), "end": iso_z(span[1])},
        "messages": int(totals[0] or 0),
        "deliveries": int(totals[1] or 0),
        "hosts": [r[0] for r in wh.con.execute(
            "SELECT DISTINCT host FROM part_stats ORDER BY host").fetchall()],
        "rules": [{"name": r.name, "kind": r.kind, "params": dict(r.values)} for r in rules],
    }


def _unparsed_samples(wh: Warehouse) -> pl.DataFrame:
    """The first unparsed lines by file and line, read from the parts that hold them
    (of the first files by name, as many as the samples need)."""
    parts = [r[0] for r in wh.con.execute(f"""
        WITH f AS (SELECT source_file, sum(lines) AS n FROM part_stats
                   WHERE kind = 'unparsed' GROUP BY ALL),
        enough AS (SELECT source_file FROM f
                   QUALIFY coalesce(sum(n) OVER (ORDER BY source_file ROWS BETWEEN
                       UNBOUNDED PRECEDING AND 1 PRECEDING), 0) < {UNPARSED_SAMPLES})
        SELECT DISTINCT part FROM part_stats
        WHERE kind = 'unparsed' AND source_file IN (SELECT source_file FROM enough)
        ORDER BY part""").fetchall()]
    if not parts:
        return pl.DataFrame(schema={"source_file": pl.String, "line_no": pl.Int64,
                                    "raw": pl.String})
    files = ", ".join(sql_path(wh.parts_dir / n) for n in parts)
    return wh.query(f"""SELECT source_file, line_no, raw FROM read_parquet([{files}])
                        WHERE kind = 'unparsed' ORDER BY source_file, line_no
                        LIMIT {UNPARSED_SAMPLES}""")


def _kinds(wh: Warehouse) -> pl.DataFrame:
    """Lines per kind, most first, with the formats that gave them: a syslog line's by its
    program tag (a file can hold several MTAs), any other's by its file's format."""
    names = list(shared.SYSLOG)
    case = " ".join(f"WHEN regexp_matches(k.program, ?) THEN '{n}'" for n in names)
    by_format = wh.query(f"""
        WITH k AS (SELECT kind, program, source_file, sum(lines) AS n FROM part_stats
                   GROUP BY ALL)
        SELECT k.kind, CASE {case} ELSE f.format END AS format, sum(k.n) AS lines
        FROM k LEFT JOIN files f ON f.path = k.source_file GROUP BY ALL""",
        [f"^(?:{shared.SYSLOG[n].SYSLOG_PROGRAM})$" for n in names])
    if not by_format.height:
        return pl.DataFrame(schema={"kind": pl.String, "lines": pl.Int64, "formats": pl.String})
    return by_format.group_by("kind").agg(
        pl.col("lines").sum().cast(pl.Int64),
        pl.col("format").drop_nulls().str.split("+").explode().unique().sort()
        .str.join(", ").alias("formats"),
    ).sort(["lines", "kind"], descending=[True, False])
