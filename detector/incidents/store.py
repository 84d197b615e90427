"""Stage 6: incidents into the warehouse, and the warehouse's memory of them across runs.

Two kinds of table:
* ``incidents`` and ``incident_messages``: what the last detection found (replaced by
  each detection, for analysts);
* ``runs``, ``incident_state`` and ``incident_changes``: what each nightly run reported,
  so that the next run knows which incidents are new, which grew, and which are old news.
  Only ``mailstorm run`` records (``report`` compares with the record and leaves it).

Status of an incident, relative to the record:
* ``new``: never reported before;
* ``grown``: reported before, and now has more messages or deliveries or a higher
  severity;
* ``ongoing``: as reported, and the data do not yet reach one window past its last
  message, so it may still grow;
* ``ended``: as reported, and the data reach past that: it cannot grow any more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from detector.incidents.model import Incident, Status
from detector.rules.vocabulary import LEVELS
from detector.warehouse import Warehouse, table_exists, transaction

#: least to most severe
SEVERITIES: tuple[str, ...] = tuple(reversed(LEVELS))

_DDL = [
    """CREATE TABLE IF NOT EXISTS runs (
        run_id BIGINT PRIMARY KEY, started_at TIMESTAMPTZ, command VARCHAR,
        since TIMESTAMPTZ, until TIMESTAMPTZ, lines_read BIGINT, data_end TIMESTAMPTZ)""",
    """CREATE TABLE IF NOT EXISTS incident_state (
        id VARCHAR PRIMARY KEY, kind VARCHAR, rule VARCHAR, severity VARCHAR,
        status VARCHAR, messages BIGINT, deliveries BIGINT, senders BIGINT,
        start TIMESTAMPTZ, "end" TIMESTAMPTZ, last_message TIMESTAMPTZ,
        first_reported_run BIGINT, first_reported_at TIMESTAMPTZ,
        last_changed_run BIGINT, last_changed_at TIMESTAMPTZ, previous_severity VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS incident_changes (
        run_id BIGINT, incident_id VARCHAR, status VARCHAR, severity VARCHAR,
        messages BIGINT, deliveries BIGINT)""",
]


def look_again_from(wh: Warehouse, rebuilt_from: datetime | None,
                    window_of: dict[str, int]) -> datetime | None:
    """Where a run whose model build rebuilt messages from ``rebuilt_from`` on needs to
    detect again: one rule window before them (a window ending there may now hold more),
    and from the start of every incident that may still grow (recorded ``ongoing``).
    Incidents wholly before that stay as detected; None: detect everything. A run that
    rebuilt nothing looks where the last run looked, so that its report says the same."""
    ensure_tables(wh)
    if rebuilt_from is None:
        row = wh.scalar_row("SELECT since FROM runs ORDER BY run_id DESC LIMIT 1")
        return row[0] if row else None
    since = rebuilt_from - timedelta(seconds=max(window_of.values(), default=0))
    row = wh.scalar_row("SELECT min(start) FROM incident_state WHERE status <> 'ended'")
    if row and row[0] is not None:
        since = min(since, row[0])
    return since


def severity_rank(severity: str | None) -> int:
    """0 for info .. 4 for critical; -1 for anything unknown."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else -1


@dataclass(frozen=True)
class RunInfo:
    """One recording run, as the ``runs`` table keeps it."""

    started_at: datetime
    command: str = "run"
    since: datetime | None = None
    until: datetime | None = None
    lines_read: int = 0


def ensure_tables(wh: Warehouse) -> None:
    for ddl in _DDL:
        wh.con.execute(ddl)
    # warehouses made before the column was added
    wh.con.execute("ALTER TABLE incident_state ADD COLUMN IF NOT EXISTS previous_severity "
                   "VARCHAR")


def _recorded(wh: Warehouse) -> dict[str, dict[str, Any]]:
    rows = wh.query("SELECT * FROM incident_state")
    return {r["id"]: r for r in rows.iter_rows(named=True)}


def data_end(wh: Warehouse) -> datetime | None:
    """The newest time the warehouse holds a line for."""
    value = wh.scalar("SELECT max(last_ts) FROM files")
    return value if isinstance(value, datetime) else None


def _grew(inc: Incident, before: dict[str, Any]) -> bool:
    return (inc.messages > (before["messages"] or 0)
            or inc.deliveries > (before["deliveries"] or 0)
            or severity_rank(inc.severity) > severity_rank(before["severity"]))


def with_status(wh: Warehouse, incidents: Sequence[Incident], *, recording: bool,
                now: datetime, window_of: dict[str, int]) -> list[Incident]:
    """The incidents with their status relative to what the warehouse recorded.

    ``window_of`` gives each rule's window in seconds (0 for per-message rules). A
    detection that does not record shows an unchanged incident with its recorded status.
    """
    ensure_tables(wh)
    before = _recorded(wh)
    end = data_end(wh)
    out = []
    for inc in incidents:
        prev = before.get(inc.id)
        status: Status
        if prev is None:
            status, changed = "new", True
        elif _grew(inc, prev):
            status, changed = "grown", True
        elif not recording:  # as the last run reported it
            status, changed = prev["status"], False
            out.append(replace(inc, status=status, changed=changed,
                               first_reported=prev["first_reported_at"],
                               previous_severity=prev["previous_severity"]))
            continue
        else:
            last = inc.last_message or inc.end
            quiet_until = last + timedelta(seconds=window_of.get(inc.rule, 0))
            status = "ended" if end is not None and end >= quiet_until else "ongoing"
            changed = False
        out.append(replace(
            inc, status=status, changed=changed,
            first_reported=(prev["first_reported_at"] if prev
                            else now if recording else None),
            previous_severity=prev["severity"] if prev else None))
    return out


def alerts(incidents: Sequence[Incident], level: str, *, every: bool = False) -> list[Incident]:
    """The incidents ``--fail-on level`` exits 3 for: new at or above the level, or grown
    past it since the last run (``every``: any incident at or above it, new or not)."""
    floor = severity_rank(level)
    out = []
    for inc in incidents:
        if severity_rank(inc.severity) < floor:
            continue
        if every or (inc.changed and (inc.previous_severity is None
                                      or severity_rank(inc.previous_severity) < floor)):
            out.append(inc)
    return out


def store_results(wh: Warehouse, incidents: Sequence[Incident],
                  since: datetime | None = None) -> None:
    """Replace the ``incidents`` and ``incident_messages`` tables with this detection's;
    one limited to messages from ``since`` on replaces only the incidents starting then."""
    con = wh.con
    if since is not None and table_exists(con, "incidents"):
        con.execute("DELETE FROM incident_messages WHERE incident_id IN "
                    "(SELECT id FROM incidents WHERE start >= ?)", [since])
        con.execute("DELETE FROM incidents WHERE start >= ?", [since])
        _insert_results(wh, incidents)
        return
    con.execute("""CREATE OR REPLACE TABLE incidents (
        id VARCHAR PRIMARY KEY, kind VARCHAR, severity VARCHAR, rule VARCHAR, list VARCHAR,
        subject VARCHAR, root_message_id VARCHAR, start TIMESTAMPTZ, "end" TIMESTAMPTZ,
        peak TIMESTAMPTZ, messages BIGINT, deliveries BIGINT, senders BIGINT,
        status VARCHAR, first_reported TIMESTAMPTZ, headline VARCHAR)""")
    con.execute("""CREATE OR REPLACE TABLE incident_messages (
        incident_id VARCHAR, message_uid VARCHAR, is_root BOOLEAN)""")
    _insert_results(wh, incidents)


def _insert_results(wh: Warehouse, incidents: Sequence[Incident]) -> None:
    con = wh.con
    if not incidents:
        return
    con.execute("DELETE FROM incident_messages WHERE incident_id IN (SELECT unnest(?))",
                [[i.id for i in incidents]])
    con.execute("DELETE FROM incidents WHERE id IN (SELECT unnest(?))",
                [[i.id for i in incidents]])
    con.executemany(
        "INSERT INTO incidents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [[i.id, i.kind, i.severity, i.rule, i.list, i.subject, i.root_message_id, i.start,
          i.end, i.peak, i.messages, i.deliveries, i.senders, i.status, i.first_reported,
          i.headline] for i in incidents])
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _incident_keys AS "
        "SELECT unnest(?) AS incident_key, unnest(?) AS id, unnest(?) AS root_uid",
        [[i.key for i in incidents], [i.id for i in incidents],
         [i.root.message_uid if i.root else None for i in incidents]])
    con.execute("""INSERT INTO incident_messages
        SELECT k.id, m.message_uid, m.message_uid IS NOT DISTINCT FROM k.root_uid
        FROM _members m JOIN _incident_keys k USING (incident_key)""")


def record(wh: Warehouse, incidents: Sequence[Incident], run: RunInfo) -> int:
    """Remember this run and what it reported; returns the run's number."""
    ensure_tables(wh)
    con = wh.con
    run_id = int(wh.scalar("SELECT coalesce(max(run_id), 0) + 1 FROM runs") or 1)
    with transaction(con):
        con.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [run_id, run.started_at, run.command, run.since, run.until,
                     run.lines_read, data_end(wh)])
        before = _recorded(wh)
        for inc in incidents:
            prev = before.get(inc.id)
            changed = inc.changed or prev is None or prev["status"] != inc.status
            first_run = prev["first_reported_run"] if prev else run_id
            last_run = run_id if changed else prev["last_changed_run"] if prev else run_id
            last_at = run.started_at if changed else (prev or {}).get("last_changed_at")
            con.execute(
                "INSERT OR REPLACE INTO incident_state VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [inc.id, inc.kind, inc.rule, inc.severity, inc.status, inc.messages,
                 inc.deliveries, inc.senders, inc.start, inc.end, inc.last_message,
                 first_run, inc.first_reported, last_run, last_at,
                 inc.previous_severity if changed else (prev or {}).get("previous_severity")])
            if changed:
                con.execute("INSERT INTO incident_changes VALUES (?, ?, ?, ?, ?, ?)",
                            [run_id, inc.id, inc.status, inc.severity, inc.messages,
                             inc.deliveries])
    return run_id
