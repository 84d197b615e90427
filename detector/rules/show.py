"""Rules and the rule vocabulary as text: ``mailstorm rules show`` and ``docs/rules.md``."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from detector.errors import UsageError
from detector.rules import vocabulary as v
from detector.rules.compiler import compile_rule
from detector.rules.model import Number, Rule

_WIDTH = 88


def find_rule(rules: Sequence[Rule], name: str) -> Rule:
    """The rule called ``name``; a usage error naming the rules there are otherwise."""
    for rule in rules:
        if rule.name == name:
            return rule
    known = ", ".join(r.name for r in rules) or "no rules loaded"
    raise UsageError(f"unknown rule {name!r} (expected one of: {known})")


def _number(value: Number) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def _wrapped(text: str, indent: str, first: str | None = None) -> str:
    """``text`` filled to the width, after ``first`` (default: the indent)."""
    return textwrap.fill(" ".join(text.split()), _WIDTH, initial_indent=first or indent,
                         subsequent_indent=indent)


def _field(label: str, text: str) -> str:
    return _wrapped(text, " " * 13, f"{label:13}")


def describe_rule(rule: Rule) -> str:
    """A rule for a reviewer: what it reads, its parameters, conditions, severity, SQL."""
    compiled = compile_rule(rule)
    shape = v.shape_of(rule.group_by)
    window = (f"{rule.window} ({rule.window_seconds} seconds)" if rule.window
              else "none (each message on its own)")
    lines = [
        _field("rule", rule.name),
        _field("kind", f"{rule.kind}: {v.KINDS[rule.kind]}"),
        _field("select", f"{rule.select}: {v.SELECTIONS[rule.select].description}"),
        _field("group_by", f"{rule.group_by}: {v.GROUPINGS[rule.group_by].description}"),
        _field("window", window),
        f"{'file':13}{rule.path}",
        "",
        _wrapped(rule.description, "  "),
        "",
        "parameters",
    ]
    for param in rule.params:
        value = rule.value(param.name)
        default = "" if value == param.default else f" (default {_number(param.default)})"
        lines.append(f"  {param.name} = {_number(value)}{default}")
        lines.append(_wrapped(param.description, "      "))
    lines += ["", "conditions (all must hold)"]
    for cond in rule.conditions:
        lines.append(f"  {cond.measure} {cond.op} {cond.param} "
                     f"({_number(rule.value(cond.param))})")
        lines.append(_wrapped(v.MEASURES[cond.measure].description, "      "))
    measure = rule.severity.measure
    lines += ["", f"severity by {measure}: {v.MEASURES[measure].description}"]
    width = max(len(level) for level in v.LEVELS)
    lines += [f"  {level:{width}}  >= {_number(limit)}" for level, limit in rule.severity.levels]
    if "info" not in dict(rule.severity.levels):
        lines.append(f"  {'info':{width}}  below those")
    lines += ["", f"SQL ({shape} shape: {v.SHAPES[shape]})", "",
              textwrap.indent(compiled.sql, "  "), "", "bound parameters, in order"]
    shown = [str(value) for value in compiled.params]  # as bound, type and all
    width = max((len(text) for text in shown), default=0)
    lines += [f"  {i}. {text:>{width}}  {name}" for i, (text, name) in
              enumerate(zip(shown, compiled.param_names, strict=True), 1)]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _code(sql: str | None) -> str:
    return f"`{_cell(sql)}`" if sql is not None else "-"


def vocabulary_markdown() -> str:
    """docs/rules.md: the vocabulary a rule file can use, generated from ``vocabulary``."""
    parts = [
        "# Rule vocabulary",
        "",
        "Generated from `detector/rules/vocabulary.py` by `detector.rules.show."
        "vocabulary_markdown`; do not edit by hand (regenerate with "
        "`MAILSTORM_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_rule_vocabulary.py`).",
        "",
        "A rule file (`rules/*.yaml`, one rule per file) names its `kind`, which messages it",
        "reads (`select`), what it groups them by (`group_by`) and, unless it groups by",
        "message, its sliding `window`; its `conditions` compare measures with its `params`",
        "and its `severity` follows one measure. `mailstorm rules show NAME` prints a rule",
        "with the SQL it compiles to; `mailstorm rules check DIR` validates rule files.",
        "",
        "## Query shapes",
        "",
        "| shape | used when | what a hit is |",
        "| --- | --- | --- |",
        f"| windowed | `group_by` is not `message` | {v.SHAPES['windowed']} |",
        f"| per_message | `group_by: message` | {v.SHAPES['per_message']} |",
        "",
        "## Kinds",
        "",
        "| kind | looks for |",
        "| --- | --- |",
        *(f"| `{name}` | {text} |" for name, text in v.KINDS.items()),
        "",
        "## Selections (`select`)",
        "",
        "Conditions over `logical_messages`; an incident gathers the messages of its group",
        "that meet the membership condition.",
        "",
        "| select | messages | feed | incident members |",
        "| --- | --- | --- | --- |",
        *(f"| `{s.name}` | {_cell(s.description)} | {_code(s.feed)} | {_code(s.members)} |"
          for s in v.SELECTIONS.values()),
        "",
        "## Groupings (`group_by`)",
        "",
        "| group_by | groups by | shape | expression |",
        "| --- | --- | --- | --- |",
        *(f"| `{g.name}` | {_cell(g.description)} | {v.shape_of(g.name)} | "
          f"{_code(v.group_sql(g.name))} |" for g in v.GROUPINGS.values()),
        "",
        "## Measures (in `conditions` and `severity`)",
        "",
        "A measure can be used only in the shapes where it has SQL; `rules check` rejects",
        "the others at their line. Windowed expressions are over the window's aggregates",
        "(below); per-message ones over the message's row.",
        "",
        "| measure | meaning | windowed | per_message |",
        "| --- | --- | --- | --- |",
        *(f"| `{m.name}` | {_cell(m.description)} | {_code(m.windowed)} | "
          f"{_code(m.per_message)} |" for m in v.MEASURES.values()),
        "",
        "Window columns, over the messages of the anchor's group in `(anchor - window,",
        "anchor]`: sums of each message's share, and maxima of each message's value.",
        "Besides these, `t` and `window_t0` are the anchor's time and the window's first",
        "message's time in microseconds, and `repeats` counts the window's messages whose",
        "sender wrote earlier in it (so `n_sender_messages - repeats` is the number of",
        "distinct senders):",
        "",
        "| column | over the window |",
        "| --- | --- |",
        *(f"| `{name}` | sum of {_code(sql)} |" for name, sql in v.WINDOW_SUMS.items()),
        *(f"| `{name}` | maximum of {_code(sql)} |" for name, sql in v.WINDOW_MAXIMA.items()),
        "",
        "## Operators (`op`)",
        "",
        "| op | means |",
        "| --- | --- |",
        *(f"| `{_cell(op)}` | {text} |" for op, text in v.OPS.items()),
        "",
        "## Severity levels, most severe first",
        "",
        "A rule lists a subset, in this order, each with a threshold of its severity",
        "measure; an incident below every threshold is `info`.",
        "",
        "| level | means |",
        "| --- | --- |",
        *(f"| `{level}` | {text} |" for level, text in v.LEVELS.items()),
    ]
    return "\n".join(parts) + "\n"
