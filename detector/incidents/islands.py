"""Stage 2: a rule's hits whose windows overlap are one span (gaps and islands in SQL).

Each island of one rule and group becomes a span: from the earliest window start to the
last hit, with the measures of its peak hit (the one with the highest severity measure;
ties go to the earliest anchor, then its id, so a re-run picks the same).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from detector.rules.compiler import CompiledRule
from detector.rules.model import Rule
from detector.warehouse import Warehouse

ISLANDS = """
WITH ordered AS (
    SELECT *,
        CASE WHEN lag(anchor_ts) OVER (PARTITION BY group_key ORDER BY anchor_ts, anchor_uid)
                  >= window_start THEN 0 ELSE 1 END AS new_island
    FROM _hits
), numbered AS (
    SELECT *,
        sum(new_island) OVER (PARTITION BY group_key ORDER BY anchor_ts, anchor_uid
                              ROWS UNBOUNDED PRECEDING) AS island
    FROM ordered
), ranked AS (
    SELECT *,
        row_number() OVER (PARTITION BY group_key, island
                           ORDER BY {peak} DESC, anchor_ts, anchor_uid) AS rank_in_island,
        min(window_start) OVER (PARTITION BY group_key, island) AS span_start,
        max(anchor_ts) OVER (PARTITION BY group_key, island) AS span_end
    FROM numbered
)
SELECT * EXCLUDE (new_island, rank_in_island) FROM ranked WHERE rank_in_island = 1
ORDER BY group_key, island
"""


@dataclass(frozen=True)
class Span:
    """One island of a rule's hits: the raw material of one incident."""

    key: str  # rule | group | island: unique within one detection
    rule: Rule
    group_key: str
    span_start: datetime
    span_end: datetime
    measures: dict[str, float]  # the peak hit's measures
    # a per-message rule's spans merged as one cause repeating (see repeats.py): all
    # their messages, and how many times it came back
    messages: tuple[str, ...] = ()
    occurrences: int = 1


def find_spans(wh: Warehouse, compiled: CompiledRule) -> list[Span]:
    """The spans of the hits in ``_hits`` (written by ``execute.run_rule``)."""
    rule = compiled.rule
    # the peak column is a measure name the compiler produced, never text from a file
    rows = wh.query(ISLANDS.format(peak=rule.severity.measure))
    return [
        Span(key=f"{rule.name}|{row['group_key']}|{row['island']}", rule=rule,
             group_key=str(row["group_key"]), span_start=row["span_start"],
             span_end=row["span_end"],
             measures={m: _number(row[m]) for m in compiled.measures})
        for row in rows.iter_rows(named=True)
    ]


def _number(value: object) -> float:
    """DuckDB sums come back as Decimal; evidence wants plain numbers."""
    number = float(value or 0)  # type: ignore[arg-type]
    return int(number) if number.is_integer() else round(number, 2)
