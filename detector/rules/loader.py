"""Load rule files (YAML, one rule per file) into checked, frozen ``Rule`` objects.

We walk ``yaml.compose`` nodes rather than loaded dicts: nodes keep line numbers (every
error is ``path:line: message``) and let us reject duplicate keys, which ``yaml.load``
silently merges. The walker records errors and carries on, so ``check_rules`` can report
everything wrong in a file at once; ``load_rule`` raises the first (topmost) one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from detector.errors import RuleError
from detector.rules import vocabulary
from detector.rules.model import (
    PARAM_TYPES,
    Condition,
    Number,
    Param,
    Rule,
    Severity,
    initial_values,
    parse_duration,
    threshold_problem,
)

_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")
_NAME_RULE = "use lowercase letters, digits and _, starting with a letter"
_SCIENTIFIC_RE = re.compile(r"[+-]?[0-9]+(\.[0-9]*)?[eE][+-]?[0-9]+")  # YAML 1.1 says str
_TAG = "tag:yaml.org,2002:"
_NULL = _TAG + "null"
_YAML = yaml.constructor.SafeConstructor()  # only for its YAML 1.1 number parsing

# key -> required?
_RULE_KEYS = {
    "name": True, "kind": True, "description": True, "select": True, "group_by": True,
    "window": False, "params": False, "conditions": True, "severity": True,
    "references": False, "tags": False,
}  # fmt: skip
_PARAM_KEYS = {"default": True, "type": False, "description": True}
_CONDITION_KEYS = {"measure": True, "op": True, "param": True}
_SEVERITY_KEYS = {"measure": True, "levels": True}
RULE_SUFFIXES = (".yaml", ".yml")


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _got(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _NULL:
        return "nothing"
    quoted = isinstance(node, ScalarNode) and node.style
    return f"the quoted text {node.value!r}" if quoted else repr(node.value)


class _Walker:
    """Reads one file's node tree, collecting errors instead of stopping at the first.

    Helpers take ``None`` for a key that is absent and return None without a new error:
    ``mapping`` has already reported it if it was required.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.errors: list[RuleError] = []
        self.name_line = 1  # where the rule's name is, for duplicate-name errors

    def error(self, node: Node | None, message: str) -> None:
        # None only for a key that is absent, whose error the mapping has reported
        self.errors.append(RuleError(self.path, _line(node) if node else None, message))

    def entries(self, node: Node | None, what: str) -> dict[str, tuple[Node, Node]] | None:
        """A mapping's key -> (key node, value node), reporting odd and duplicate keys."""
        if node is None:
            return None
        if not isinstance(node, MappingNode):
            self.error(node, f"{what} must be a mapping (got {_got(node)})")
            return None
        found: dict[str, tuple[Node, Node]] = {}
        for key, value in node.value:
            if not isinstance(key, ScalarNode) or key.tag == _NULL:
                self.error(key, f"keys of {what} must be names (got {_got(key)})")
            elif key.value in found:
                first = _line(found[key.value][0])
                self.error(key, f"duplicate key {key.value!r} in {what} (first at line {first})")
            else:
                found[key.value] = (key, value)
        return found

    def mapping(
        self, node: Node | None, what: str, keys: dict[str, bool], at: Node | None = None
    ) -> dict[str, Node]:
        """A mapping with a fixed set of keys (key -> required?); {} if not a mapping.

        Missing keys are reported at ``at`` (e.g. a param's name) or else the mapping.
        """
        found = self.entries(node, what)
        if found is None:
            return {}
        for key, (key_node, _) in found.items():
            if key not in keys:
                expected = ", ".join(sorted(keys))
                self.error(key_node, f"unknown key {key!r} in {what} (expected one of: {expected})")
        for key in (k for k, required in keys.items() if required and k not in found):
            self.error(at or node, f"missing key {key!r} in {what}")
        return {key: value for key, (_, value) in found.items() if key in keys}

    def text(self, node: Node | None, what: str) -> str | None:
        if node is None:
            return None
        if not isinstance(node, ScalarNode) or node.tag == _NULL:
            self.error(node, f"{what} must be text (got {_got(node)})")
        elif not node.value.strip():
            self.error(node, f"{what} must not be empty")
        else:
            return str(node.value).strip()  # folded text (>) ends with a newline
        return None

    def choice(self, node: Node | None, what: str, choices: Collection[str]) -> str | None:
        value = self.text(node, repr(what))
        if value is not None and value not in choices:
            self.error(node, f"unknown {what} {value!r} (expected one of: {', '.join(choices)})")
            return None
        return value

    def number(self, node: Node | None, what: str) -> Number | None:
        if node is None:
            return None
        # quoted numbers are text (a plain scalar's style: None, or "" from libyaml)
        if isinstance(node, ScalarNode) and not node.style:
            if node.tag == _TAG + "int":
                return _YAML.construct_yaml_int(node)
            if node.tag == _TAG + "float":
                value = _YAML.construct_yaml_float(node)
                if math.isfinite(value):
                    return value
            if node.tag == _TAG + "str" and _SCIENTIFIC_RE.fullmatch(node.value):
                return float(node.value)
        self.error(node, f"{what} must be a number (got {_got(node)})")
        return None

    def strings(self, node: Node | None, what: str) -> tuple[str, ...]:
        if node is None:
            return ()
        if not isinstance(node, SequenceNode):
            self.error(node, f"{what} must be a list (got {_got(node)})")
            return ()
        items = [self.text(item, f"each item of {what}") for item in node.value]
        return tuple(item for item in items if item is not None)


def _read_params(w: _Walker, node: Node | None) -> tuple[list[Param], set[str]]:
    """Valid params, and every well-formed param name (so conditions are judged fairly)."""
    params: list[Param] = []
    declared: set[str] = set()
    for name, (key, body) in (w.entries(node, "'params'") or {}).items():
        if not _NAME_RE.fullmatch(name):
            w.error(key, f"bad param name {name!r}: {_NAME_RULE}")
            continue
        declared.add(name)
        what = f"param {name!r}"
        fields = w.mapping(body, what, _PARAM_KEYS, at=key)
        default = w.number(fields.get("default"), f"{what} default")
        description = w.text(fields.get("description"), f"{what} description")
        type_ = (
            w.choice(fields["type"], "param type", PARAM_TYPES)
            if "type" in fields
            else ("float" if isinstance(default, float) else "int")
        )
        if type_ == "int" and isinstance(default, float):
            w.error(
                fields["default"],
                f"{what} default {fields['default'].value} is not a "
                "whole number (add type: float to allow fractions)",
            )
        elif default is not None and description is not None and type_ is not None:
            default = float(default) if type_ == "float" else default
            params.append(Param(name, default, type_, description, _line(key)))
    return params, declared


def _measure(w: _Walker, node: Node | None, group_by: str | None) -> str | None:
    """A measure's name, checked against the vocabulary and the rule's query shape."""
    measure = w.choice(node, "measure", vocabulary.MEASURES)
    problem = vocabulary.measure_problem(group_by, measure) if measure and group_by else None
    if problem is not None and node is not None:
        w.error(node, problem)
        return None
    return measure


def _read_conditions(
    w: _Walker, node: Node | None, declared: set[str], group_by: str | None
) -> list[Condition]:
    if node is None:
        return []
    if not isinstance(node, SequenceNode):
        w.error(node, f"'conditions' must be a list (got {_got(node)})")
        return []
    if not node.value:
        w.error(node, "'conditions' must list at least one condition")
    conditions = []
    for i, item in enumerate(node.value, 1):
        fields = w.mapping(item, f"condition {i}", _CONDITION_KEYS)
        measure = _measure(w, fields.get("measure"), group_by)
        op = w.choice(fields.get("op"), "op", vocabulary.OPS)
        param = w.text(fields.get("param"), "'param'")
        if param is not None and param not in declared:
            names = ", ".join(sorted(declared)) or "none"
            w.error(
                fields["param"], f"condition uses undeclared param {param!r} (declared: {names})"
            )
        elif measure and op and param:
            conditions.append(Condition(measure, op, param, _line(item)))
    return conditions


def _read_severity(w: _Walker, node: Node | None, group_by: str | None) -> Severity | None:
    fields = w.mapping(node, "'severity'", _SEVERITY_KEYS)
    measure = _measure(w, fields.get("measure"), group_by)
    order = list(vocabulary.LEVELS)
    entries = w.entries(fields.get("levels"), "severity 'levels'")
    if entries == {}:
        w.error(
            fields["levels"], f"severity 'levels' must name at least one of: {', '.join(order)}"
        )
    levels: list[tuple[str, Number]] = []
    keys: list[Node] = []
    previous = None  # the last known level, to check the order
    for level, (key, value) in (entries or {}).items():
        threshold = w.number(value, f"threshold of severity level {level!r}")
        if level not in vocabulary.LEVELS:
            w.error(key, f"unknown severity level {level!r} (expected one of: {', '.join(order)})")
            continue
        if previous is not None and order.index(level) < order.index(previous):
            w.error(
                key,
                f"severity level {level!r} must come before {previous!r} "
                f"(order: {', '.join(order)})",
            )
            continue  # its threshold would be compared with the wrong neighbour
        previous = level
        if threshold is not None:
            levels.append((level, threshold))
            keys.append(key)
    problem = threshold_problem(levels)
    if problem is not None:
        w.error(keys[problem[0]], problem[1])
    return Severity(measure, tuple(levels)) if measure and levels else None


def _read_window(w: _Walker, node: Node | None, group_by: str | None) -> tuple[str, int] | None:
    if node is None:
        return None
    if group_by == "message":
        w.error(node, "'window' is not allowed when group_by is message")
        return None
    window = w.text(node, "'window'")
    try:
        return (window, parse_duration(window)) if window is not None else None
    except ValueError as exc:
        w.error(node, str(exc))
        return None


def _read_rule(w: _Walker, root: MappingNode, stem: str) -> Rule | None:
    top = w.mapping(root, "rule", _RULE_KEYS)
    name = w.text(top.get("name"), "'name'")
    if name is not None:
        w.name_line = _line(top["name"])
        if not _NAME_RE.fullmatch(name):
            w.error(top["name"], f"bad rule name {name!r}: {_NAME_RULE}")
        elif name != stem:
            w.error(top["name"], f"rule name {name!r} must match the file name (expected {stem!r})")
    kind = w.choice(top.get("kind"), "kind", vocabulary.KINDS)
    description = w.text(top.get("description"), "'description'")
    select = w.choice(top.get("select"), "select", vocabulary.SELECTIONS)
    group_by = w.choice(top.get("group_by"), "group_by", vocabulary.GROUPINGS)
    window = _read_window(w, top.get("window"), group_by)
    if "window" not in top and group_by not in (None, "message"):
        w.error(root, "missing key 'window' in rule (required unless group_by is message)")
    params, declared = _read_params(w, top.get("params"))
    conditions = _read_conditions(w, top.get("conditions"), declared, group_by)
    severity = _read_severity(w, top.get("severity"), group_by)
    references = w.strings(top.get("references"), "'references'")
    tags = w.strings(top.get("tags"), "'tags'")
    if (w.errors or severity is None or name is None or kind is None or description is None
            or select is None or group_by is None):  # every None above recorded an error
        return None
    return Rule(
        name, kind, description, select, group_by,
        window[0] if window else None, window[1] if window else None,
        tuple(params), tuple(conditions), severity, references, tags, w.path,
        initial_values(params, severity),
    )  # fmt: skip


def _yaml_error(path: str, text: str, exc: yaml.YAMLError) -> RuleError:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        message = f"invalid YAML: {exc.problem or exc.context}"
        if "'\\t'" in (exc.problem or ""):
            message += " (indent with spaces, not tabs)"
        elif "block scalar" in (exc.context or ""):
            message += ' (quote values starting with > or |, e.g. op: ">=")'
        return RuleError(path, mark.line + 1 if mark else 1, message)
    position = getattr(exc, "position", 0)  # yaml.reader.ReaderError: bad character
    return RuleError(path, text[:position].count("\n") + 1, f"invalid YAML: {exc}".split("\n")[0])


#: deepest nesting of mappings and lists a rule file may have; PyYAML composes by
#: recursion, so a file nested thousands deep would overflow Python's stack
MAX_NESTING = 20
_OPEN = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken,
         yaml.FlowMappingStartToken, yaml.FlowSequenceStartToken)
_CLOSE = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


def _too_deep(text: str, loader: type = yaml.SafeLoader) -> int | None:
    """The line where nesting first passes MAX_NESTING, or None.

    The scanner is iterative, so it measures depth safely before the recursive composer
    runs; its syntax errors raise yaml.YAMLError as compose's would.
    """
    depth = 0
    for token in yaml.scan(text, Loader=loader):
        if isinstance(token, _OPEN):
            depth += 1
            if depth > MAX_NESTING:
                return int(token.start_mark.line) + 1
        elif isinstance(token, _CLOSE):
            depth -= 1
    return None


#: libyaml's loader where PyYAML has it: the same nodes and line marks, about ten times
#: faster (every run reads the rules)
_FAST_LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose(text: str) -> tuple[int | None, Node | None]:
    """(the line where nesting passes MAX_NESTING or None, the root node). A file libyaml
    rejects is read again by PyYAML's own loader, whose errors say more (a tab named)."""
    def compose(loader: type) -> tuple[int | None, Node | None]:
        deep = _too_deep(text, loader)
        return deep, None if deep is not None else yaml.compose(text, Loader=loader)

    try:
        return compose(_FAST_LOADER)
    except yaml.YAMLError:
        return compose(yaml.SafeLoader)


def _read_file(path: Path) -> tuple[Rule | None, list[RuleError], int]:
    """The rule in one file (or None), every error found sorted by line, the name's line."""
    shown = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, [RuleError(shown, None, f"cannot read rule file: {exc.strerror}")], 1
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return None, [RuleError(shown, line, "rule file is not UTF-8 text")], 1
    try:
        deep, root = _compose(text)
    except yaml.YAMLError as exc:
        return None, [_yaml_error(shown, text, exc)], 1
    if deep is not None:
        return None, [RuleError(shown, deep, "rule file nested too deeply (more than "
                                f"{MAX_NESTING} levels)")], 1
    if root is None:
        return None, [RuleError(shown, 1, "empty rule file: expected a mapping of rule keys")], 1
    if not isinstance(root, MappingNode):
        message = f"rule file must be a mapping of keys (got {_got(root)})"
        return None, [RuleError(shown, 1, message)], 1
    walker = _Walker(shown)
    rule = _read_rule(walker, root, path.stem)
    return rule, sorted(walker.errors, key=lambda e: e.line or 0), walker.name_line


def _read_folder(directory: Path) -> tuple[list[Rule], list[RuleError]]:
    if not directory.is_dir():
        problem = "is not a folder" if directory.exists() else "does not exist"
        return [], [RuleError(str(directory), None, f"rules folder {problem}")]
    files = sorted(
        (
            p
            for p in directory.iterdir()
            if p.suffix in RULE_SUFFIXES and p.is_file() and not p.name.startswith(".")
        ),  # skip editor droppings such as .#x.yaml
        key=lambda p: p.name,
    )
    if not files:
        return [], [RuleError(str(directory), None, "no rule files (*.yaml, *.yml) in folder")]
    rules: list[Rule] = []
    errors: list[RuleError] = []
    seen: dict[str, str] = {}
    for path in files:
        rule, found, name_line = _read_file(path)
        errors.extend(found)
        if rule is None:
            continue
        if rule.name in seen:  # only x.yaml next to x.yml, since names match file names
            errors.append(
                RuleError(
                    rule.path,
                    name_line,
                    f"duplicate rule name {rule.name!r} (also in {seen[rule.name]})",
                )
            )
            continue
        seen[rule.name] = rule.path
        rules.append(rule)
    return rules, errors


def load_rule(path: Path) -> Rule:
    """Load and check one rule file; raises the first RuleError found."""
    rule, errors, _ = _read_file(Path(path))
    if errors:
        raise errors[0]
    assert rule is not None  # no errors means a rule was built
    return rule


def load_rules(directory: Path) -> list[Rule]:
    """Every rule file in a folder (not recursive), sorted by file name."""
    rules, errors = _read_folder(Path(directory))
    if errors:
        raise errors[0]
    return rules


def check_rules(directory: Path) -> list[RuleError]:
    """Every error in every rule file of a folder; empty when all rules are valid."""
    return _read_folder(Path(directory))[1]
