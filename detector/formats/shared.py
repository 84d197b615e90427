"""One syslog file, several mail programs: each line to the format of its program tag.

A stock FreeBSD or RHEL box logs Sendmail (PHP ``mail()``, cron, ``sendmail -t``) and
Postfix into one ``maillog``; Exim and Postfix share files too. The file's format is
sniffed from its head; inside a batch, the lines whose syslog tag names another format's
program (``SYSLOG_PROGRAM`` of each syslog format) are parsed by that format, the rest
(the sniffed format's lines, programs that carry no mail: ``foreign``, lines without a
header: ``unparsed``) by the sniffed one. The split is by columns, never a loop over lines.

A batch holding none of the other programs (the usual case) costs one pattern search
over its lines on top of the sniffed format's parse.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import polars as pl

from detector.formats import exim, plainsyslog, postfix, sendmail
from detector.formats.context import ParseContext
from detector.formats.syslog import assign_years, months_of_raw, split_header

# formats that log through syslog, in the order their program names are tried
SYSLOG: dict[str, ModuleType] = {m.NAME: m for m in (postfix, sendmail, exim)}
# syslog-framed files whose other programs' lines are dispatched: those formats' files,
# and a syslog file whose opening lines held no mail program
SYSLOG_FRAMED = {*SYSLOG, plainsyslog.NAME}


def _tag_pattern(names: list[str]) -> str:
    """A line whose syslog tag is one of these formats' programs (a superset: the exact
    test is on the tag split from the header)."""
    programs = "|".join(f"(?:{SYSLOG[n].SYSLOG_PROGRAM})" for n in names)
    return rf" (?:{programs})(?:\[\d+\])?: "


def _owner(names: list[str], column: str = "prog") -> pl.Expr:
    """The format whose program wrote the line (``column``: the program as the header
    split gave it), null for none of ``names``."""
    prog = pl.col(column)
    chain: Any = None
    for n in names:
        test = prog.str.contains(f"^(?:{SYSLOG[n].SYSLOG_PROGRAM})$").fill_null(False)
        chain = (pl.when(test) if chain is None else chain.when(test)).then(pl.lit(n))
    assert chain is not None
    return chain.otherwise(None).alias("_fmt")


def other_programs(fmt: str) -> pl.Expr:
    """Whether a line's ``program`` is one of the other syslog formats' (not ``fmt``'s):
    such lines go to their own format's parser."""
    return _owner([n for n in SYSLOG if n != fmt], column="program").is_not_null()


def held_by(names: str) -> set[str]:
    """The formats of a ledger ``format`` value ("postfix+sendmail")."""
    return set(names.split("+")) if names else set()


def ledger_name(held: set[str]) -> str:
    """The ledger ``format`` value of a file that held these formats."""
    return "+".join(sorted(held))


def parse(lines: pl.DataFrame, ctx: ParseContext, fmt: str, *,
          shared: bool = True) -> tuple[pl.DataFrame, set[str]]:
    """The events of a batch of a file sniffed (or forced) as ``fmt``, and the formats
    whose lines it held. With ``shared`` (not forced), a syslog file's lines of other
    mail programs go to their own format."""
    from detector.formats import FORMATS  # the registry imports this module

    main = FORMATS[fmt]
    if not shared or fmt not in SYSLOG_FRAMED or not lines.height:
        return main.parse(lines, ctx), {fmt}
    others = [n for n in SYSLOG if n != fmt]
    hit = lines["raw"].str.contains(_tag_pattern(others)).fill_null(False)
    if not hit.any():
        return main.parse(lines, ctx), {fmt}
    owner = split_header(lines.filter(hit).select("raw")).select(_owner(others))["_fmt"]
    if owner.null_count() == owner.len():
        return main.parse(lines, ctx), {fmt}
    if "_year" not in lines.columns:
        # the parts must not each advance the year state: years of the whole batch first
        lines = lines.with_columns(assign_years(months_of_raw(lines["raw"]), ctx.years))
    full = pl.repeat(fmt, lines.height, eager=True, dtype=pl.String).scatter(
        hit.arg_true(), owner.fill_null(fmt))
    parts, held = [], {fmt}
    for name in sorted(set(full.unique().to_list())):
        held.add(name)
        parts.append(FORMATS[name].parse(lines.filter(full == name), ctx))
    return pl.concat(parts).sort("line_no", maintain_order=True), held
