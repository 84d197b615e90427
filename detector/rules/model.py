"""Rules as frozen data: what ``loader`` builds from a YAML file and the compiler reads.

Nothing here touches YAML; the loader checks a file and then builds these objects, so
every Rule that exists is valid. Effective numbers (param defaults, severity thresholds,
then ``--set`` overrides) live in ``Rule.values``; the compiler should read them through
``Rule.value`` rather than ``Param.default``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

Number = int | float

#: the one table of duration units; the loader, the docs and the tests all use it
DURATION_UNITS: dict[str, int] = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# Largest unit first, each at most once: "1h30m" but not "30m1h" or "1h1h".
_UNITS_DESC = sorted(DURATION_UNITS, key=DURATION_UNITS.__getitem__, reverse=True)
_DURATION_RE = re.compile("".join(f"(?:([0-9]+){unit})?" for unit in _UNITS_DESC))
_UNIT_WORDS = ", ".join(list(DURATION_UNITS)[:-1]) + " or " + list(DURATION_UNITS)[-1]
#: longest window: a storm is hours, and a window of 10^20 days overflows the engine's
#: intervals mid-run, long after ``rules check`` said ok
MAX_DURATION = 366 * 86400

#: param types and how a value of that type is described in errors
PARAM_TYPES: dict[str, str] = {"int": "a whole number", "float": "a number"}
_INT_RE = re.compile(r"[+-]?[0-9](?:_?[0-9])*")


def parse_duration(text: str) -> int:
    """Seconds in a duration such as ``90s``, ``60m``, ``1h30m`` or ``2d``.

    Raises ValueError with a one-line message (no path; the caller adds it).
    """
    match = _DURATION_RE.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"bad duration {text!r}: use a number and a unit {_UNIT_WORDS} (e.g. 60m)")
    counts = [(unit, count) for unit, count in zip(_UNITS_DESC, match.groups(), strict=True)
              if count is not None]
    # int() refuses over 4,300 digits with a message of its own; far past the limit anyway
    if any(len(count.lstrip("0")) > 12 for _, count in counts):
        raise ValueError(f"bad duration {text[:40]!r}: must be at most {MAX_DURATION // 86400}d")
    seconds = sum(int(count) * DURATION_UNITS[unit] for unit, count in counts)
    if seconds == 0:
        raise ValueError(f"bad duration {text!r}: must be longer than zero")
    if seconds > MAX_DURATION:
        raise ValueError(f"bad duration {text!r}: must be at most {MAX_DURATION // 86400}d")
    return seconds


def parse_number(text: str, type_: str | None) -> Number:
    """A command-line number: ``int`` / ``float`` as declared, or None for either."""
    text = text.strip()
    if _INT_RE.fullmatch(text):
        return float(int(text)) if type_ == "float" else int(text)
    if type_ == "int":
        raise ValueError(f"{text!r} is not {PARAM_TYPES['int']} (the param is an int)")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def threshold_problem(levels: Sequence[tuple[str, Number]]) -> tuple[int, str] | None:
    """The first level whose threshold is not strictly below the previous one, if any."""
    for i in range(1, len(levels)):
        (above, limit), (name, value) = levels[i - 1], levels[i]
        if not value < limit:
            return i, (
                f"threshold of severity level {name!r} ({value}) must be below "
                f"that of {above!r} ({limit})"
            )
    return None


@dataclass(frozen=True)
class Param:
    name: str
    default: Number  # as declared in the file; overrides go to Rule.values
    type: str  # "int" | "float"; a float param's default is always a float
    description: str
    line: int


@dataclass(frozen=True)
class Condition:
    measure: str  # key of vocabulary.MEASURES
    op: str  # key of vocabulary.OPS
    param: str  # name of a Param of the same rule
    line: int


@dataclass(frozen=True)
class Severity:
    measure: str  # key of vocabulary.MEASURES
    # (level, threshold), most severe first, thresholds strictly decreasing; kept in step
    # with Rule.values["severity.<level>"] by Rule.with_values.
    levels: tuple[tuple[str, Number], ...]


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    description: str
    select: str
    group_by: str
    window: str | None  # as written ("1h30m"); None when group_by is "message"
    window_seconds: int | None
    params: tuple[Param, ...]
    conditions: tuple[Condition, ...]
    severity: Severity
    references: tuple[str, ...]
    tags: tuple[str, ...]
    path: str
    # param name / "severity.<level>" -> effective number; read-only
    values: Mapping[str, Number] = field(hash=False)

    def value(self, name: str) -> Number:
        """Effective value of a param or of ``severity.<level>``."""
        try:
            return self.values[name]
        except KeyError:
            raise KeyError(f"rule {self.name!r} has no value {name!r}") from None

    def param(self, name: str) -> Param:
        for param in self.params:
            if param.name == name:
                return param
        raise KeyError(f"rule {self.name!r} has no param {name!r}")

    def parse_value(self, name: str, text: str) -> Number:
        """Convert command-line text for ``name`` (a key of ``values``) to its type."""
        if name.startswith("severity.") and name in self.values:
            return parse_number(text, None)
        return parse_number(text, self.param(name).type)

    def with_values(self, updates: Mapping[str, Number]) -> Rule:
        """A copy with some values replaced; severity levels follow the new thresholds.

        Does not validate; ``loader.apply_overrides`` does, to word errors for the user.
        """
        values = {**self.values, **updates}
        levels = tuple((level, values[f"severity.{level}"]) for level, _ in self.severity.levels)
        return replace(
            self,
            values=MappingProxyType(values),
            severity=replace(self.severity, levels=levels),
        )


def initial_values(params: Sequence[Param], severity: Severity) -> Mapping[str, Number]:
    """``Rule.values`` before any override: defaults, then severity thresholds."""
    values: dict[str, Number] = {param.name: param.default for param in params}
    values.update((f"severity.{level}", limit) for level, limit in severity.levels)
    return MappingProxyType(values)
