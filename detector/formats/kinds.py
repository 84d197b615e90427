"""Line kinds as data: each format's kinds are one ordered table (the lnav habit).

A format declares ``TABLE: tuple[Kind, ...]``. Each row names a kind, says what it means,
gives the test a line must pass to get it (conditions on the format's working columns,
all of which must hold; the first row whose test holds wins), names the field group the
format extracts for it, and carries real sample lines with their source. From the table:

- ``classifier(TABLE)`` builds the one Polars expression that gives every line its kind;
- ``descriptions(TABLE)`` is the format's ``KINDS`` (README, ``mailstorm kinds``);
- ``tests/test_line_kinds.py`` parses every sample with its format and checks it gets
  exactly its kind, and that every kind has a sample.

A row whose ``when`` is ``None`` is not given by the chain: the format assigns it from the
line's structure (a CSV export's layout, a continuation line); its samples still check it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl

Op = Literal["starts", "equals", "in", "matches", "contains", "null", "not_null"]


@dataclass(frozen=True)
class Cond:
    """One condition on one working column of a format (``rest``, ``queue_id``...)."""

    column: str
    op: Op
    value: str | tuple[str, ...] | None = None
    negate: bool = False

    def __invert__(self) -> Cond:
        return Cond(self.column, self.op, self.value, not self.negate)

    def expr(self) -> pl.Expr:
        c = pl.col(self.column)
        v = self.value
        e: pl.Expr
        if self.op == "starts":
            e = c.str.starts_with(str(v))
        elif self.op == "equals":
            e = c == str(v)
        elif self.op == "in":
            e = c.is_in(list(v or ()))
        elif self.op == "matches":
            e = c.str.contains(str(v))
        elif self.op == "contains":
            e = c.str.contains(str(v), literal=True)
        elif self.op == "null":
            e = c.is_null()
        else:
            e = c.is_not_null()
        # a null column fails a test (and passes its negation) instead of nulling the kind
        if self.op not in ("null", "not_null"):
            e = e.fill_null(False)
        return ~e if self.negate else e


def starts(prefix: str, column: str = "rest") -> Cond:
    return Cond(column, "starts", prefix)


def equals(value: str, column: str = "rest") -> Cond:
    return Cond(column, "equals", value)


def one_of(values: Sequence[str], column: str) -> Cond:
    return Cond(column, "in", tuple(values))


def matches(pattern: str, column: str = "rest") -> Cond:
    return Cond(column, "matches", pattern)


def contains(text: str, column: str = "rest") -> Cond:
    return Cond(column, "contains", text)


def present(column: str) -> Cond:
    return Cond(column, "not_null")


def absent(column: str) -> Cond:
    return Cond(column, "null")


@dataclass(frozen=True)
class Sample:
    """A real line of a kind, and where it comes from (a corpus file and line, or the
    documentation page whose exact shape it follows). ``before``: lines its format must
    read first (a CSV header naming the columns)."""

    line: str
    source: str
    before: tuple[str, ...] = ()


@dataclass(frozen=True)
class Kind:
    """One row of a format's kind table."""

    name: str
    description: str
    when: tuple[Cond, ...] | None = ()  # () = always (a fallback row); None = structural
    fields: str | None = None  # the field group the format extracts for this kind
    samples: tuple[Sample, ...] = ()


def descriptions(table: Sequence[Kind]) -> dict[str, str]:
    """kind -> description, in table order (a kind may have several rows: the first
    row's description is kept)."""
    out: dict[str, str] = {}
    for k in table:
        out.setdefault(k.name, k.description)
    return out


def field_groups(table: Sequence[Kind]) -> dict[str, str]:
    """kind -> field group, for the kinds that have one."""
    out: dict[str, str] = {}
    for k in table:
        if k.fields is not None:
            out.setdefault(k.name, k.fields)
    return out


def classifier(table: Sequence[Kind], default: str = "unparsed") -> pl.Expr:
    """The kind of each line: the first row of ``table`` whose conditions all hold, else
    ``default``. Structural rows (``when is None``) are skipped."""
    chain: Any = None
    for k in table:
        if k.when is None:
            continue
        test = pl.lit(True)
        for cond in k.when:
            test = test & cond.expr()
        chain = (pl.when(test) if chain is None else chain.when(test)).then(pl.lit(k.name))
    if chain is None:
        return pl.lit(default, pl.String)
    return chain.otherwise(pl.lit(default))


def samples(table: Sequence[Kind]) -> list[tuple[str, Sample]]:
    """(kind, sample) of every row, in table order."""
    return [(k.name, s) for k in table for s in k.samples]
