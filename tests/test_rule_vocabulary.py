"""The one rule vocabulary: check agrees with compile-and-run, measures against a hand count,
the generated docs and the golden SQL of the shipped rules.

Regenerate docs/rules.md and tests/golden/rules/*.sql after an intended change:
    MAILSTORM_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_rule_vocabulary.py
"""

from __future__ import annotations

import itertools
import os
import statistics
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from detector.assets import builtin_rules_dir
from detector.errors import RuleError
from detector.rules.compiler import compile_rule
from detector.rules.loader import check_rules, load_rules
from detector.rules.show import describe_rule, vocabulary_markdown
from detector.rules.vocabulary import GROUPINGS, MEASURES, SELECTIONS, measures_for
from tests.test_rule_windows import Msg, make_rule, messages_db

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden" / "rules"
UPDATE = bool(os.environ.get("MAILSTORM_UPDATE_GOLDEN"))


def _golden(path: Path, text: str) -> None:
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text, (
        f"{path} is stale: run MAILSTORM_UPDATE_GOLDEN=1 pytest tests/test_rule_vocabulary.py")


# --- rules check says ok exactly when the rule compiles and its SQL runs ---------------------

RULE_FILE = """\
name: {name}
kind: reply_storm
description: every combination
select: {select}
group_by: {group_by}
{window}params:
  p:
    default: 1
    description: threshold
conditions:
  - measure: messages
    op: ">="
    param: p
  - measure: {measure}
    op: ">="
    param: p
severity:
  measure: {measure}
  levels:
    low: 0
"""
COMBINATIONS = list(itertools.product(SELECTIONS, GROUPINGS, MEASURES))


def _runs(select: str, group_by: str, measure: str, con: duckdb.DuckDBPyConnection) -> bool:
    rule = make_rule(select, group_by, [("messages", ">=", 1), (measure, ">=", 1)], measure)
    try:
        compiled = compile_rule(rule)
    except RuleError:
        return False
    con.execute(compiled.sql, compiled.params).fetchall()  # a failure here is a bug: raise
    return True


def test_check_rules_accepts_exactly_what_compiles_and_runs(tmp_path: Path) -> None:
    names = {}
    blame: dict[str, list[str]] = {}  # the lines naming the measure
    for i, (select, group_by, measure) in enumerate(COMBINATIONS):
        name = f"r{i:03d}"
        names[name] = (select, group_by, measure)
        window = "" if group_by == "message" else "window: 10m\n"
        text = RULE_FILE.format(name=name, select=select, group_by=group_by, measure=measure,
                                window=window)
        (tmp_path / f"{name}.yaml").write_text(text)
        blame[name] = [str(n) for n, line in enumerate(text.splitlines(), 1)
                       if line.endswith(f"measure: {measure}") and measure != "messages"]
    rejected: dict[str, list[str]] = {}
    for error in check_rules(tmp_path):
        rejected.setdefault(Path(error.path).stem, []).append(str(error))
    con = messages_db([Msg("m1", 0), Msg("m2", 5_000_000, sender="b@x", to_address="a@x")])
    # binding and running is what is checked here; the optimizer (most of the time spent on
    # a two-row table) runs in every other test of the rules
    con.execute("PRAGMA disable_optimizer")
    for name, (select, group_by, measure) in names.items():
        runs = _runs(select, group_by, measure, con)
        assert runs == (name not in rejected), (select, group_by, measure, rejected.get(name))
        if not runs:  # blamed where the measure is named: the condition and the severity
            assert [e.split(": ", 1)[0].rsplit(":", 1)[1] for e in rejected[name]] == blame[name]
    assert len(rejected) == len(SELECTIONS) * (
        (len(GROUPINGS) - 1) * (len(MEASURES) - len(measures_for("list")))
        + len(MEASURES) - len(measures_for("message")))
    assert "passes" not in measures_for("list") and "baseline_ratio" not in measures_for("list")
    assert "replies" not in measures_for("message")


# --- each measure, in each shape, against a count by hand ----------------------------------

W = 60  # seconds
S = 1_000_000
ROWS = [  # a handful of messages on two lists; m4 comes exactly one window after m1
    Msg("m1", 0, "a@x", "s", False, False, 100, 100, 2, 1, 0, None, 1, "l1@x"),
    Msg("m2", 10 * S, "b@x", "Re: s", True, False, 100, 98, 5, 1, 0, None, 2, "l1@x"),
    Msg("m3", 10 * S, "a@x", None, False, False, 3, 6, 0, 2, 0, None, None, "l1@x"),
    Msg("m4", 60 * S, "c@x", "Re: s", True, False, 100, 100, 0, 1, 0, None, 1, "l1@x"),
    Msg("m5", 65 * S, "b@x", "Auto: s", False, True, 1, 1, 1, 1, 1, "c@x", 1, "l1@x"),
    Msg("m6", 30 * S, "d@x", "Re: t", True, False, 50, 50, 0, 1, 0, None, 3, "l2@x"),
    Msg("m7", 100 * S, "a@x", "Re: t", True, False, 10, 30, 0, 3, 2, "z@x", 5, "l2@x"),
    Msg("m8", 20 * S, "", "Undeliverable", False, True, 1, 1, 1, 1, 0, "a@x", None, "l2@x"),
    Msg("m9", 40 * S, "a@x", "Re: t", True, False, 12, 12, 0, 12, 0, None, None, "l2@x"),
]  # fmt: skip
# the selections in plain Python, written from their descriptions
PICK: dict[str, Callable[[Msg], bool]] = {
    "messages": lambda m: not m.is_auto,
    "replies": lambda m: not m.is_auto and (bool(m.is_reply) or m.subject is None),
    "auto_replies": lambda m: bool(m.is_auto) and m.sender != "",
    "bounces": lambda m: m.sender == "",
    "bounced": lambda m: (m.bounced or 0) > 0 and not m.is_auto,
    "one_to_one": lambda m: m.to_address is not None and m.sender != "",
}


def _sum(ms: list[Msg], field: str) -> int:
    return sum(getattr(m, field) for m in ms)


def by_hand_windowed(rows: list[Msg], anchor: Msg) -> dict[str, float]:
    win = [b for b in rows if b.list == anchor.list and anchor.us - W * S < b.us <= anchor.us]
    return {
        "messages": len(win),
        "replies": sum(1 for b in win if b.is_reply),
        "distinct_senders": len({b.sender for b in win}),
        "deliveries": _sum(win, "deliveries"),
        "audience": max(b.recipients for b in win),  # type: ignore[type-var]
        "amplification": _sum(win, "deliveries") / max(_sum(win, "submitted"), 1),
        "recipients": _sum(win, "recipients"),
        "bounces": _sum(win, "bounced"),
        "bounce_rate": _sum(win, "bounced") / max(_sum(win, "deliveries"), 1),
        "auto_messages": sum(1 for b in win if b.is_auto),
        "unknown_or_auto": sum(1 for b in win if b.is_auto or b.subject is None),
        "span_seconds": (anchor.us - min(b.us for b in win)) / S,
    }


def by_hand_per_message(rows: list[Msg], m: Msg) -> dict[str, float]:
    same_sender = [r.deliveries for r in rows if r.sender == m.sender]
    median = statistics.median(same_sender)  # type: ignore[type-var]
    return {
        "messages": 1, "distinct_senders": 1, "deliveries": m.deliveries,  # type: ignore[dict-item]
        "audience": m.recipients, "recipients": m.recipients,  # type: ignore[dict-item]
        "amplification": m.deliveries / max(m.submitted, 1),  # type: ignore[operator, type-var]
        "baseline_ratio": m.deliveries / max(median, 1),  # type: ignore[operator]
        "history": len(same_sender) - 1,
        "bounces": m.bounced, "loop_bounces": m.loop_bounces,  # type: ignore[dict-item]
        "bounce_rate": m.bounced / max(m.deliveries, 1),  # type: ignore[operator, type-var]
        "auto_messages": int(bool(m.is_auto)),
        "unknown_or_auto": int(bool(m.is_auto) or m.subject is None),
        "duplicates": max(m.deliveries - m.recipients, 0),  # type: ignore[operator]
        "passes": m.max_passes or 1,
        "span_seconds": 0,
    }


@pytest.mark.parametrize("select", list(SELECTIONS))
@pytest.mark.parametrize("group_by", ["list", "message"])
def test_every_measure_in_every_shape_matches_a_count_by_hand(select: str, group_by: str) -> None:
    available = measures_for(group_by)
    rule = make_rule(select, group_by, [(m, ">=", -1) for m in available], "messages", W)
    compiled = compile_rule(rule)
    got = messages_db(ROWS).execute(compiled.sql, compiled.params)
    columns = [d[0] for d in got.description]
    rows = {r[1]: dict(zip(columns, r, strict=True)) for r in got.fetchall()}
    picked = [m for m in ROWS if PICK[select](m)]
    by_hand = by_hand_windowed if group_by == "list" else by_hand_per_message
    assert set(rows) == {m.uid for m in picked}
    assert set(columns[4:]) == set(available)
    for anchor in picked:
        expected = by_hand(picked, anchor)
        got_row = {m: rows[anchor.uid][m] for m in available}
        assert got_row == pytest.approx(expected), anchor.uid
    if select == "replies" and group_by == "list":  # the edges the table was built for
        assert rows["m4"]["messages"] == 3  # m1 exactly one window before: out
        assert rows["m3"]["distinct_senders"] == 2  # a@x twice, b@x at the same time


# --- generated docs and golden SQL ----------------------------------------------------------


def test_docs_rules_md_is_the_rendered_vocabulary() -> None:
    _golden(REPO / "docs" / "rules.md", vocabulary_markdown())


SHIPPED = load_rules(builtin_rules_dir())


@pytest.mark.parametrize("rule", SHIPPED, ids=[r.name for r in SHIPPED])
def test_shipped_rule_compiles_to_its_golden_sql(rule: object) -> None:
    compiled = compile_rule(rule)  # type: ignore[arg-type]
    params = "\n".join(f"--   {i}. {value!r}  {name}" for i, (value, name) in
                       enumerate(zip(compiled.params, compiled.param_names, strict=True), 1))
    text = (f"-- {compiled.rule.name}: compiled from rules/{compiled.rule.name}.yaml\n"
            f"-- bound parameters, in order:\n{params}\n{compiled.sql}\n")
    _golden(GOLDEN / f"{compiled.rule.name}.sql", text)


def test_golden_folder_has_no_stale_rule() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.sql")) == sorted(r.name for r in SHIPPED)


def test_rules_show_names_everything_a_reviewer_needs() -> None:
    rule = next(r for r in SHIPPED if r.name == "reply_storm").with_values({"min_senders": 7})
    text = describe_rule(rule)
    compiled = compile_rule(rule)
    assert compiled.sql in "\n".join(line.removeprefix("  ") for line in text.splitlines())
    assert "  min_senders = 7 (default 10)" in text
    assert "  distinct_senders >= min_senders (7)" in text
    assert "  1. 3600  window (seconds)\n  2.    7  min_senders\n  3. 2500  min_audience" in text
    assert "window       60m (3600 seconds)" in text


def test_rules_show_command_and_unknown_rule() -> None:
    from click.testing import CliRunner

    from detector.cli import main

    res = CliRunner().invoke(main, ["rules", "show", "mail_loop", "--set",
                                    "mail_loop.min_messages=12"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("rule         mail_loop\n")
    assert "  min_messages = 12 (default 30)" in res.output
    assert compile_rule(next(r for r in SHIPPED if r.name == "mail_loop")).sql.splitlines()[0] \
        in res.output
    res = CliRunner().invoke(main, ["rules", "show", "reply_strom"])
    assert res.exit_code == 2
    assert res.output.splitlines()[-1] == (
        "Error: unknown rule 'reply_strom' (expected one of: "
        f"{', '.join(r.name for r in SHIPPED)})")
