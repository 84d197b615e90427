"""Retention (``mailstorm run --keep 90d``): drop what is older than a span and reclaim
its space.

The span is counted back from the newest line the warehouse holds, not from the clock, so
that reading an old archive keeps it. Only whole Parquet parts go: an events part whose
last line, or a model part whose last row, is older than the cut. A part that straddles
the cut stays until all of it is old. The ledger keeps its rows, so the files the dropped
lines came from are not read again; the incidents that ended before the cut leave the
``incidents`` table (the memory of what was reported stays: it is small). Nothing here
makes the next build a full one: the model's record of the events parts it holds loses
the dropped ones too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from detector.errors import UsageError
from detector.summary import count_parts
from detector.warehouse import MODEL_PARTS, Warehouse, table_exists, transaction

_SPAN = re.compile(r"^\s*(\d{1,5})\s*([hdw])\s*$", re.IGNORECASE)
_UNIT = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def parse_keep(text: str) -> timedelta:
    """'90d', '12h', '8w' -> the span."""
    m = _SPAN.match(text)
    if not m or int(m.group(1)) == 0:
        raise UsageError(f"--keep {text!r}: give a span like 90d, 12h or 8w")
    return int(m.group(1)) * _UNIT[m.group(2).lower()]


@dataclass(frozen=True)
class Dropped:
    cut: datetime | None  # rows older than this could go
    event_parts: int = 0
    event_rows: int = 0
    model_parts: int = 0
    bytes: int = 0


def apply_retention(wh: Warehouse, keep: timedelta) -> Dropped:
    """Drop the events and model parts wholly older than ``keep`` before the newest line,
    and the incidents that ended before then; one transaction, files removed after it."""
    con = wh.con
    row = con.execute("SELECT max(last_ts) FROM files").fetchone()
    if row is None or row[0] is None:
        return Dropped(cut=None)
    cut: datetime = row[0] - keep
    count_parts(wh)
    old = con.execute("""SELECT part, sum(lines) FROM part_stats GROUP BY part
                         HAVING max(last_ts) < ? ORDER BY part""", [cut]).fetchall()
    old_events = [wh.parts_dir / name for name, _ in old]
    old_model: dict[str, list[Path]] = {}
    for name in MODEL_PARTS:
        files = wh.model_files(name)
        if len(files) < 2:  # a table's only part holds its columns
            continue
        names = [f.name for f in files]
        known = dict(con.execute("SELECT part, last_ts FROM model_part_times "
                                 "WHERE part IN (SELECT unnest(?))", [names]).fetchall())
        # parts written before their times were recorded: read once, then recorded
        wh.record_part_times(name, [f for f in files if f.name not in known])
        ends = con.execute("SELECT part, last_ts FROM model_part_times "
                           "WHERE part IN (SELECT unnest(?))", [names]).fetchall()
        gone = {n for n, end in ends if end is not None and end < cut}
        keep_files = [f for f in files if f.name not in gone]
        if gone and keep_files:
            old_model[name] = [f for f in files if f.name in gone]
    if not old_events and not old_model:
        return Dropped(cut=cut)
    size = sum(p.stat().st_size for p in [*old_events, *(f for fs in old_model.values()
                                                           for f in fs)] if p.exists())
    names = [p.name for p in old_events]
    with transaction(con):
        con.execute("DELETE FROM parts WHERE part IN (SELECT unnest(?))", [names])
        con.execute("DELETE FROM part_stats WHERE part IN (SELECT unnest(?))", [names])
        con.execute("DELETE FROM model_parts WHERE part IN (SELECT unnest(?))", [names])
        for name, files in old_model.items():
            wh.set_model_files(name, [f for f in wh.model_files(name) if f not in files])
            con.execute("DELETE FROM model_part_times WHERE part IN (SELECT unnest(?))",
                        [[f.name for f in files]])
        if table_exists(con, "incidents"):
            con.execute("DELETE FROM incident_messages WHERE incident_id IN "
                        """(SELECT id FROM incidents WHERE "end" < ?)""", [cut])
            con.execute("""DELETE FROM incidents WHERE "end" < ?""", [cut])
    for path in old_events:
        path.unlink(missing_ok=True)
    wh.tidy_parquet_views()
    wh.refresh_events_view()
    con.execute("CHECKPOINT")  # the DuckDB file's freed blocks are reused
    return Dropped(cut=cut, event_parts=len(old_events),
                   event_rows=int(sum(n for _, n in old)),
                   model_parts=sum(len(f) for f in old_model.values()), bytes=size)
