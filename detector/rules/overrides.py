"""Command-line overrides of rule numbers: ``--set rule.param=value``.

Values arrive as text and are converted to each param's declared type; unknown rules or
params and out-of-order severity thresholds are usage errors naming the key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from detector.errors import UsageError
from detector.rules.model import Number, Rule, threshold_problem

_SET_FORMS = "RULE.PARAM=VALUE or RULE.severity.LEVEL=VALUE (e.g. reply_storm.min_senders=20)"


def parse_overrides(pairs: Iterable[str]) -> dict[str, str]:
    """``--set`` strings (``rule.param=value``) as key -> value text; the last one wins."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = (part.strip() for part in pair.partition("="))
        parts = key.split(".")
        if not sep or not value or len(parts) < 2 or not all(parts):
            raise UsageError(f"bad --set {pair!r}: expected {_SET_FORMS}")
        overrides[key] = value
    return overrides


def apply_overrides(rules: list[Rule], overrides: Mapping[str, str]) -> list[Rule]:
    """Copies of ``rules`` with override values (converted to each param's type) applied."""
    by_name = {rule.name: rule for rule in rules}
    updates: dict[str, dict[str, Number]] = {}
    for key, text in overrides.items():
        rule_name, _, item = key.partition(".")
        rule = by_name.get(rule_name)
        if rule is None:
            known = ", ".join(sorted(by_name)) or "no rules loaded"
            raise UsageError(
                f"bad override {key!r}: unknown rule {rule_name!r} (expected one of: {known})"
            )
        if item not in rule.values:
            kind = "severity level" if item.startswith("severity.") else "param"
            raise UsageError(
                f"bad override {key!r}: rule {rule_name!r} has no {kind} {item!r} "
                f"(expected one of: {', '.join(rule.values)})"
            )
        try:
            updates.setdefault(rule_name, {})[item] = rule.parse_value(item, str(text))
        except ValueError as exc:
            raise UsageError(f"bad override {key!r}: {exc}") from None
    result = []
    for rule in rules:
        changed = updates.get(rule.name)
        if changed:
            rule = rule.with_values(changed)
            problem = threshold_problem(rule.severity.levels)
            if problem is not None:
                # Blame an overridden level of the offending pair (the lower one if both).
                index, message = problem
                level = rule.severity.levels[index][0]
                if f"severity.{level}" not in changed:
                    level = rule.severity.levels[index - 1][0]
                raise UsageError(f"bad override '{rule.name}.severity.{level}': {message}")
        result.append(rule)
    return result
