"""The CSVs beside an incident's page: its messages, and every delivery attempt of them.

The deliveries of a storm can run to millions of rows, so DuckDB writes each file
(``COPY``) while the report is being published, never holding it in Python. Cells come
from logs an attacker can write to: a cell starting with ``=``, ``+``, ``-``, ``@``, a tab
or a carriage return would be run as a formula by a spreadsheet, so it gets a leading
``'`` (OWASP's advice for CSV injection). Times are UTC, ISO 8601.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa

from detector.incidents.details import model_tables
from detector.redact import Redactor
from detector.sqltext import utc_text
from detector.warehouse import Warehouse, sql_path

#: file name endings of the CSVs of an incident, after its id
MESSAGES_CSV = "-messages.csv"
DELIVERIES_CSV = "-deliveries.csv"

Writer = Callable[[Path], None]


#: first characters a spreadsheet reads as a formula: = + - @ tab carriage return
_FORMULA_STARTS = "61, 43, 45, 64, 9, 13"


def _cell(column: str) -> str:
    """A text column with formula-starting cells neutralised: by the code of the first
    character (a regular expression per cell costs seconds on a storm's deliveries)."""
    return (f"CASE WHEN ascii({column}) IN ({_FORMULA_STARTS}) THEN '''' || {column} "
            f"ELSE {column} END")


def _time(column: str) -> str:
    return utc_text(column, "%Y-%m-%dT%H:%M:%SZ")


MESSAGES = f"""
SELECT {_time('d.first_seen')} AS time_utc, {_cell('d.message_id')} AS message_id,
    {_cell('d.sender')} AS sender, {_cell('d.subject')} AS subject,
    d.recipients, d.deliveries, d.bounced, d.is_root AS root, d.is_reply AS reply,
    d.is_auto AS automatic
FROM _detail_msgs d
WHERE d.incident_id = ?
ORDER BY d.n
"""

DELIVERIES = f"""
SELECT {_time('dl.ts')} AS time_utc, {_cell('d.message_id')} AS message_id,
    {_cell('d.sender')} AS sender, {_cell('d.subject')} AS subject,
    {_cell('dl.recipient')} AS recipient, {_cell('dl.list')} AS list,
    {_cell('dl.status')} AS status, {_cell('dl.dsn')} AS dsn, {_cell('dl.relay')} AS relay,
    dl.delay AS delay_seconds, {_cell('dl.host')} AS host, {_cell('dl.queue_id')} AS queue_id
FROM _detail_keys k
JOIN _detail_msgs d USING (incident_id, message_uid)
JOIN {{deliveries}} dl USING (message_key)
WHERE k.incident_id = ? AND NOT dl.is_hop
"""


#: the columns of each CSV that hold log text with addresses in it
_MESSAGES_TEXT = ("message_id", "sender", "subject")
_DELIVERIES_TEXT = (*_MESSAGES_TEXT, "recipient", "list")


def csv_writers(wh: Warehouse, incident_ids: Sequence[str],
                redactor: Redactor | None = None) -> dict[str, Writer]:
    """``<id>-messages.csv`` and ``<id>-deliveries.csv`` -> a function writing it to the
    path given, for each incident whose details were read (``details.incident_details``,
    whose temporary tables they read: call them before the next detection); with a
    ``redactor`` (``--redact``), its addresses' local parts replaced as in the pages."""
    names = model_tables(wh)
    out: dict[str, Writer] = {}
    for incident_id in incident_ids:
        out[incident_id + MESSAGES_CSV] = _writer(wh, MESSAGES, _MESSAGES_TEXT, incident_id,
                                                  redactor)
        out[incident_id + DELIVERIES_CSV] = _writer(wh, DELIVERIES.format(**names),
                                                    _DELIVERIES_TEXT, incident_id, redactor)
    return out


def _writer(wh: Warehouse, select: str, text: tuple[str, ...], incident_id: str,
            redactor: Redactor | None) -> Writer:
    def write(path: Path) -> None:
        # the path is the report's own, made by us: the only literal in the statement.
        # The deliveries are in no set order (a table to sort: sorting a storm's million
        # rows here would cost several times writing them)
        rows = _redacted(wh, select, text, incident_id, redactor) if redactor else select
        wh.con.execute(f"COPY ({rows}) TO {sql_path(path)} (FORMAT csv, HEADER true)",
                       [incident_id])
    return write


def _redacted(wh: Warehouse, select: str, columns: tuple[str, ...], incident_id: str,
              redactor: Redactor) -> str:
    """``select`` with its text columns redacted: each distinct value (an incident's
    messages, its recipients: not a row per delivery) is rewritten once by the redactor
    and joined back in SQL."""
    values = wh.con.execute(
        f"SELECT DISTINCT v FROM (SELECT unnest([{', '.join(columns)}]) AS v "
        f"FROM ({select})) WHERE v IS NOT NULL", [incident_id]).fetchall()
    plain = [v for (v,) in values]
    wh.con.register("_redacted_text", pa.table(
        {"v": pa.array(plain, pa.string()),
         "r": pa.array([redactor.text(v) for v in plain], pa.string())}))
    joins = " ".join(f"LEFT JOIN _redacted_text r{i} ON r{i}.v = s.{c}"
                     for i, c in enumerate(columns))
    replaced = ", ".join(f"coalesce(r{i}.r, s.{c}) AS {c}" for i, c in enumerate(columns))
    return f"SELECT s.* REPLACE ({replaced}) FROM ({select}) s {joins}"
