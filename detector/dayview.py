"""The day overview (``OUT/day.html``): what pflogsumm tells a postmaster about a day.

Traffic per hour (received, delivered, deferred, bounced, rejected), the top senders,
lists and recipient domains, delays per recipient domain, and the deferral, bounce and
reject reasons grouped, over the span a report covers. Every figure is one SQL query over
the warehouse (values bound, results bounded by ``TOP``), run while the pipeline holds
it; this module returns plain rows, ``reports`` renders them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from detector.sqltext import truncated
from detector.warehouse import Warehouse

#: rows in each top list (pflogsumm's -h / -u default is 10)
TOP = 10
#: a span longer than this is shown per day instead of per hour (a report over months
#: would otherwise draw thousands of bars)
HOURLY_UP_TO = timedelta(days=7)
#: days from the first to the last with traffic up to which the quiet ones are shown as
#: zeros; beyond (a log's line dated year 1 or 9999), only the days with traffic
FILLED_DAYS = 3660
#: line kinds that refuse mail in the SMTP dialogue, of every format, and the statuses of
#: those kinds that mean a refusal (a Postfix ``warn`` or ``hold`` action is none; Exim's
#: and Sendmail's recipient rejects carry no status)
REJECT_KINDS = ["noqueue", "smtpd_reject", "milter", "proxy_reject", "exim_reject",
                "rcpt_reject", "ruleset_reject"]
REJECT_STATUSES = ["reject", "milter-reject"]
_REJECTED = "list_contains(?, kind) AND list_contains(?, coalesce(status, 'reject'))"
#: statuses of a delivery attempt that gave up on the recipient
FAILED = ["bounced", "expired"]
# a reason grouped as pflogsumm does: without the addresses, hosts' addresses and the
# "host X said:" that make each line unique; cut to a readable length
_REASON = r"""left(trim(regexp_replace(regexp_replace(regexp_replace(coalesce(detail, ''),
    '^host \S+ said: ', ''),
    '[^\s<>()\[\]"'',;:@]+@[A-Za-z0-9.\-]+', '…', 'g'),
    '\[[0-9A-Fa-f.:]+\]', '[…]', 'g')), 160)"""


def _in_span(column: str, since: datetime | None, until: datetime | None
             ) -> tuple[str, list[Any]]:
    return (f"(CAST(? AS TIMESTAMPTZ) IS NULL OR {column} >= ?) AND "
            f"(CAST(? AS TIMESTAMPTZ) IS NULL OR {column} < ?)", [since, since, until, until])


def day_overview(wh: Warehouse, since: datetime | None = None,
                 until: datetime | None = None) -> dict[str, Any]:
    """The overview of [``since``, ``until``) (None: from the first, to the last line)."""
    bucket = _bucket(wh, since, until)
    return {
        "bucket": bucket,
        "traffic": _traffic(wh, bucket, since, until),
        "senders": _senders(wh, since, until),
        "lists": _lists(wh, since, until),
        **_domains(wh, since, until),
        "reasons": _reasons(wh, since, until),
        "top": TOP,
    }


def _truncated(wh: Warehouse, bucket: str, column: str) -> str:
    return truncated(str(wh.scalar("SELECT current_setting('TimeZone')")), bucket, column)


def _bucket(wh: Warehouse, since: datetime | None, until: datetime | None) -> str:
    where, params = _in_span("ts", since, until)
    row = wh.scalar_row(f"SELECT min(ts), max(ts) FROM deliveries WHERE {where}", params)
    if row is None or row[0] is None:
        return "hour"
    return "hour" if row[1] - row[0] <= HOURLY_UP_TO else "day"


def _traffic(wh: Warehouse, bucket: str, since: datetime | None,
             until: datetime | None) -> list[dict[str, Any]]:
    """Per hour (or day), from the first to the last with traffic, quiet ones as zeros."""
    step = {"hour": "INTERVAL 1 HOUR", "day": "INTERVAL 1 DAY"}[bucket]
    d_where, d_params = _in_span("ts", since, until)
    r_where, r_params = _in_span("first_seen", since, until)
    rows = wh.con.execute(f"""
        WITH d AS (
            SELECT {_truncated(wh, bucket, 'ts')} AS t,
                   count(*) FILTER (WHERE status = 'sent') AS delivered,
                   count(*) FILTER (WHERE status = 'deferred') AS deferred,
                   count(*) FILTER (WHERE list_contains(?, status)) AS bounced
            FROM deliveries WHERE NOT coalesce(is_hop, false) AND {d_where} GROUP BY ALL),
        r AS (SELECT {_truncated(wh, bucket, 'first_seen')} AS t, count(*) AS received
              FROM logical_messages WHERE {r_where} GROUP BY ALL),
        j AS (SELECT {_truncated(wh, bucket, 'ts')} AS t, count(*) AS rejected FROM events
              WHERE {_REJECTED} AND {d_where} GROUP BY ALL),
        seen AS (SELECT t FROM (SELECT t FROM d UNION SELECT t FROM r UNION SELECT t FROM j)
                 WHERE t IS NOT NULL),
        span AS (SELECT min(t) AS lo, max(t) AS hi FROM seen),
        every AS (SELECT unnest(range(lo::TIMESTAMP, hi::TIMESTAMP + {step}, {step}))
                         ::TIMESTAMPTZ AS t
                  FROM span WHERE lo IS NOT NULL AND hi - lo <= INTERVAL {FILLED_DAYS} DAY
                  UNION SELECT t FROM seen)
        SELECT every.t, coalesce(received, 0), coalesce(delivered, 0),
               coalesce(deferred, 0), coalesce(bounced, 0), coalesce(rejected, 0)
        FROM every LEFT JOIN d USING (t) LEFT JOIN r USING (t) LEFT JOIN j USING (t)
        ORDER BY every.t""",
        [FAILED, *d_params, *r_params, REJECT_KINDS, REJECT_STATUSES, *d_params]).fetchall()
    length = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
    return [{"start": _utc(t), "end": _after(_utc(t), length), "received": rec,
             "delivered": dlv, "deferred": dfr, "bounced": bnc, "rejected": rej}
            for t, rec, dlv, dfr, bnc, rej in rows]


def _senders(wh: Warehouse, since: datetime | None,
             until: datetime | None) -> list[dict[str, Any]]:
    """Senders by messages (then deliveries): pflogsumm's "Senders by message count"."""
    where, params = _in_span("first_seen", since, until)
    return _dicts(wh, f"""
        SELECT coalesce(sender, '') AS sender, count(*) AS messages,
               sum(deliveries) AS deliveries, sum(bounced) AS bounced,
               sum(size) AS bytes
        FROM logical_messages WHERE {where} GROUP BY ALL
        ORDER BY messages DESC, deliveries DESC, sender LIMIT ?""", [*params, TOP])


def _lists(wh: Warehouse, since: datetime | None,
           until: datetime | None) -> list[dict[str, Any]]:
    """Lists and aliases by the deliveries they expanded to."""
    where, params = _in_span("ts", since, until)
    return _dicts(wh, f"""
        SELECT list, count(DISTINCT message_key) AS messages,
               count(*) FILTER (WHERE status <> 'deferred') AS deliveries,
               count(*) FILTER (WHERE status = 'deferred') AS deferred,
               count(*) FILTER (WHERE list_contains(?, status)) AS bounced
        FROM deliveries
        WHERE list IS NOT NULL AND list <> recipient AND NOT coalesce(is_hop, false)
          AND {where}
        GROUP BY ALL ORDER BY deliveries DESC, list LIMIT ?""", [FAILED, *params, TOP])


def _domains(wh: Warehouse, since: datetime | None,
             until: datetime | None) -> dict[str, list[dict[str, Any]]]:
    """Recipient domains with their delays: pflogsumm's "Host/Domain Summary: Message
    Delivery", the busiest (``domains``) and the slowest (``slow_domains``): one pass
    over the deliveries, kept in a temporary table for the two orderings."""
    where, params = _in_span("ts", since, until)
    wh.con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _day_domains AS
        SELECT domain, delivered, deferred, bounced, q[1] AS median_delay,
               q[2] AS p95_delay, max_delay
        FROM (SELECT lower(split_part(recipient, '@', 2)) AS domain,
                     count(*) FILTER (WHERE status = 'sent') AS delivered,
                     count(*) FILTER (WHERE status = 'deferred') AS deferred,
                     count(*) FILTER (WHERE list_contains(?, status)) AS bounced,
                     quantile_cont(delay, [0.5, 0.95]) FILTER (WHERE status = 'sent') AS q,
                     max(delay) FILTER (WHERE status = 'sent') AS max_delay
              FROM deliveries
              WHERE NOT coalesce(is_hop, false) AND recipient LIKE '%@%' AND {where}
              GROUP BY ALL)""", [FAILED, *params])
    try:
        return {key: _dicts(wh, f"SELECT * FROM _day_domains ORDER BY {order}, domain "
                                "LIMIT ?", [TOP])
                for key, order in (("domains", "delivered DESC"),
                                   ("slow_domains", "p95_delay DESC NULLS LAST"))}
    finally:
        wh.con.execute("DROP TABLE IF EXISTS temp._day_domains")


def _reasons(wh: Warehouse, since: datetime | None,
             until: datetime | None) -> list[dict[str, Any]]:
    """Deferral, bounce and reject reasons grouped (status, code, reason), the most
    frequent ``TOP`` of each, with how many lines and recipient domains each hit."""
    where, params = _in_span("ts", since, until)
    return _dicts(wh, f"""
        WITH lines AS (
            SELECT CASE WHEN {_REJECTED} THEN 'rejected'
                        WHEN status = 'deferred' THEN 'deferred' ELSE 'bounced' END AS what,
                   dsn, {_REASON} AS reason, ts,
                   lower(split_part(recipient, '@', 2)) AS domain
            FROM events
            WHERE ({_REJECTED} OR (kind = 'delivery' AND
                                   (status = 'deferred' OR list_contains(?, status))))
              AND {where})
        SELECT what, coalesce(dsn, '') AS dsn, reason, count(*) AS lines,
               count(DISTINCT domain) AS domains, min(ts) AS first, max(ts) AS last
        FROM lines GROUP BY what, dsn, reason
        QUALIFY row_number() OVER (PARTITION BY what ORDER BY count(*) DESC, dsn, reason)
                <= ?
        ORDER BY CASE what WHEN 'bounced' THEN 0 WHEN 'deferred' THEN 1 ELSE 2 END,
                 lines DESC, dsn, reason""",
        [REJECT_KINDS, REJECT_STATUSES, REJECT_KINDS, REJECT_STATUSES, FAILED, *params,
         TOP])


def _dicts(wh: Warehouse, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cursor = wh.con.execute(sql, params)
    names = [d[0] for d in cursor.description or []]
    return [{k: _utc(v) if isinstance(v, datetime) else v for k, v in zip(names, row,
                                                                          strict=True)}
            for row in cursor.fetchall()]


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _after(start: datetime, length: timedelta) -> datetime:
    """``start + length``, or the last instant Python has (a line dated 9999-12-31)."""
    try:
        return start + length
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC)


def hours_of(start: datetime, end: datetime, incidents: list[dict[str, Any]]
             ) -> list[dict[str, Any]]:
    """The incidents (views with ``start`` and ``end`` ISO times) active in [start, end)."""
    active = []
    for inc in incidents:  # a handful of incidents, for display
        try:
            first, last = (datetime.fromisoformat(inc[k]) for k in ("start", "end"))
        except (KeyError, TypeError, ValueError):
            continue
        if first < end and last >= start:
            active.append(inc)
    return active
