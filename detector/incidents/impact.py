"""The service impact of an incident: delivery delays and deferrals of its mail, of the
other mail of the same hours, and of all mail the same hours the day before.

``delay`` is what the log says: seconds from a message's arrival to a delivery attempt
(Postfix ``delay=``, Exim's queue time, Sendmail's ``delay=``, Exchange's time since
receipt); a format that logs none gives deliveries without delays, and the page says so
rather than show zeros.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from detector.incidents.model import Incident
from detector.sqltext import truncated
from detector.warehouse import Warehouse

#: the hours compared with: the same hours one day before
DAY_BEFORE = timedelta(days=1)


@dataclass(frozen=True)
class DelayStats:
    """Final deliveries (not deferred) of some mail in some hours, and their delay."""

    deliveries: int
    with_delay: int  # how many logged a delay (some formats log none)
    median: float | None
    p95: float | None
    max: float | None
    deferred: int  # deferred attempts


@dataclass(frozen=True)
class DelayMinute:
    minute: datetime
    incident_p95: float | None
    others_p95: float | None
    deferred: int


@dataclass(frozen=True)
class Impact:
    """The service impact of an incident over [start, end] (its deliveries drained)."""

    start: datetime
    end: datetime
    incident: DelayStats
    others: DelayStats
    day_before: DelayStats | None  # None: the warehouse holds no log of those hours
    minutes: tuple[DelayMinute, ...] = ()


# delays and deferrals of the incident's mail, of the other mail of the same hours, and
# of all mail the same hours a day before; final deliveries only for the delays (a
# deferred attempt is retried: its delay is not what the recipient waited)
_STATS = """
    count(*) FILTER (WHERE final) AS deliveries,
    count(delay) FILTER (WHERE final) AS with_delay,
    quantile_cont(delay, [0.5, 0.95]) FILTER (WHERE final) AS q,
    max(delay) FILTER (WHERE final) AS max,
    count(*) FILTER (WHERE status = 'deferred') AS deferred
"""

IMPACT = """
WITH w AS (
    SELECT unnest(?) AS incident_id, unnest(?::TIMESTAMPTZ[]) AS t0,
        unnest(?::TIMESTAMPTZ[]) AS t1
), own AS (
    SELECT k.incident_id, dl.ts, dl.delay, dl.status,
        dl.status NOT IN ('deferred', 'discarded') AS final
    FROM _detail_keys k
    JOIN {deliveries} dl USING (message_key)
    WHERE NOT dl.is_hop
), others AS (
    SELECT w.incident_id, dl.ts, dl.delay, dl.status,
        dl.status NOT IN ('deferred', 'discarded') AS final
    FROM w
    JOIN {deliveries} dl ON dl.ts BETWEEN w.t0 AND w.t1
    LEFT JOIN _detail_keys k ON k.incident_id = w.incident_id AND k.message_key = dl.message_key
    WHERE NOT dl.is_hop AND k.message_key IS NULL
), logged AS (
    -- the incidents whose hours a day before the warehouse holds a log of
    SELECT unnest(?) AS incident_id, unnest(?::TIMESTAMPTZ[]) AS t0,
        unnest(?::TIMESTAMPTZ[]) AS t1
), before AS (
    SELECT w.incident_id, dl.delay, dl.status,
        dl.status NOT IN ('deferred', 'discarded') AS final
    FROM logged w
    JOIN {deliveries} dl ON dl.ts BETWEEN w.t0 - ? AND w.t1 - ?
    WHERE NOT dl.is_hop
)
SELECT part, incident_id, deliveries, with_delay, q[1] AS median, q[2] AS p95, max, deferred
FROM (
    SELECT 'incident' AS part, incident_id, {stats} FROM own GROUP BY incident_id
    UNION ALL SELECT 'others', incident_id, {stats} FROM others GROUP BY incident_id
    UNION ALL SELECT 'before', incident_id, {stats} FROM before GROUP BY incident_id
)
"""

IMPACT_MINUTES = """
WITH w AS (
    SELECT unnest(?) AS incident_id, unnest(?::TIMESTAMPTZ[]) AS t0,
        unnest(?::TIMESTAMPTZ[]) AS t1
), rows AS (
    SELECT w.incident_id, {minute} AS minute, dl.delay, dl.status,
        k.message_key IS NOT NULL AS own
    FROM w
    JOIN {deliveries} dl ON dl.ts BETWEEN w.t0 AND w.t1
    LEFT JOIN _detail_keys k ON k.incident_id = w.incident_id AND k.message_key = dl.message_key
    WHERE NOT dl.is_hop
)
SELECT incident_id, minute,
    quantile_cont(delay, 0.95) FILTER (WHERE own AND status NOT IN ('deferred', 'discarded'))
        AS incident_p95,
    quantile_cont(delay, 0.95) FILTER (WHERE NOT own AND status NOT IN ('deferred', 'discarded'))
        AS others_p95,
    count(*) FILTER (WHERE status = 'deferred') AS deferred
FROM rows
GROUP BY ALL
ORDER BY incident_id, minute
"""

def impacts(wh: Warehouse, incidents: Sequence[Incident],
            names: dict[str, str]) -> dict[str, Impact]:
    """Incident id -> its impact, over ``_detail_keys`` (details.py) and the model
    tables ``names``."""
    ids = [i.id for i in incidents]
    starts = [i.start for i in incidents]
    ends = [i.end for i in incidents]
    # the hours a day before count only where the warehouse read a log of them (the
    # others' figures would be thrown away: not read)
    first_logged = wh.scalar("SELECT min(first_ts) FROM files")
    logged = [i for i in incidents if isinstance(first_logged, datetime)
              and first_logged <= i.start - DAY_BEFORE]
    logged_ids = {i.id for i in logged}
    stats: dict[tuple[str, str], DelayStats] = {}
    for r in wh.query(IMPACT.format(stats=_STATS, **names),
                      [ids, starts, ends, [i.id for i in logged], [i.start for i in logged],
                       [i.end for i in logged], DAY_BEFORE, DAY_BEFORE]
                      ).iter_rows(named=True):
        stats[(r["part"], r["incident_id"])] = DelayStats(
            int(r["deliveries"]), int(r["with_delay"]), r["median"], r["p95"], r["max"],
            int(r["deferred"]))
    minute = truncated(str(wh.scalar("SELECT current_setting('TimeZone')")), "minute", "dl.ts")
    minutes = _grouped(wh.query(IMPACT_MINUTES.format(minute=minute, **names),
                                [ids, starts, ends]))
    empty = DelayStats(0, 0, None, None, None, 0)
    out = {}
    for inc in incidents:
        out[inc.id] = Impact(
            start=inc.start, end=inc.end,
            incident=stats.get(("incident", inc.id), empty),
            others=stats.get(("others", inc.id), empty),
            day_before=stats.get(("before", inc.id), empty) if inc.id in logged_ids
            else None,
            minutes=tuple(DelayMinute(r["minute"], r["incident_p95"], r["others_p95"],
                                      int(r["deferred"])) for r in minutes.get(inc.id, [])))
    return out


def _grouped(frame: Any) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in frame.iter_rows(named=True):
        out.setdefault(row.pop("incident_id"), []).append(row)
    return out


def format_seconds(value: Any) -> str:
    """A delay in seconds for a reader: ``0.41 s``, ``24 min``, ``2.8 h``."""
    if not isinstance(value, numbers.Real) or not math.isfinite(value):
        return "—"
    v = float(value)
    if v < 10:
        return f"{v:.2g} s" if v < 1 else f"{v:.1f} s"
    if v < 120:
        return f"{v:.0f} s"
    if v < 7200:
        return f"{v / 60:.0f} min"
    return f"{v / 3600:.1f} h"
