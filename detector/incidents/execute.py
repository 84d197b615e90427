"""Stage 1: run each compiled rule over the model, into the temporary table ``_hits``.

A run can be limited to a time range (``--since`` / ``--until``): the rules then read
``_scope``, the logical messages first seen in that range, instead of the whole table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from detector.rules.compiler import CompiledRule, compile_rule
from detector.rules.model import Rule
from detector.warehouse import Warehouse

ALL_MESSAGES = "logical_messages"
SCOPED_MESSAGES = "_scope"


@dataclass(frozen=True)
class Scope:
    """The time range a run detects in: messages first seen in [since, until)."""

    since: datetime | None = None
    until: datetime | None = None

    @property
    def limited(self) -> bool:
        return self.since is not None or self.until is not None


def prepare_scope(wh: Warehouse, scope: Scope | None) -> str:
    """The table the rules read: all logical messages, or a copy of those in the scope."""
    if scope is None or not scope.limited:
        return ALL_MESSAGES
    wh.con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {SCOPED_MESSAGES} AS
            SELECT * FROM {ALL_MESSAGES}
            WHERE (CAST(? AS TIMESTAMPTZ) IS NULL OR first_seen >= ?)
              AND (CAST(? AS TIMESTAMPTZ) IS NULL OR first_seen < ?)""",
        [scope.since, scope.since, scope.until, scope.until])
    return SCOPED_MESSAGES


def run_rule(wh: Warehouse, rule: Rule, source: str) -> CompiledRule:
    """Execute one rule into ``_hits``: one row per anchor message meeting its conditions."""
    compiled = (compile_rule(rule) if source == ALL_MESSAGES
                else compile_rule(rule, source=source))
    wh.con.execute(f"CREATE OR REPLACE TEMP TABLE _hits AS {compiled.sql}", compiled.params)
    return compiled
