"""A syslog file whose opening lines hold no mail program (``/var/log/messages``, a
``syslog`` that mail lines reach only later).

It is read, not refused: its lines are ``foreign`` (cron, kernel, sshd...) or
``unparsed`` (no syslog header), and the lines of a mail program inside it go to that
program's format like in any syslog file (``shared.parse``).
"""

from __future__ import annotations

import polars as pl

from detector.formats.context import ParseContext
from detector.formats.finish import finish
from detector.formats.kinds import Kind, Sample, classifier, descriptions, present
from detector.formats.syslog import parse_header, split_header

NAME = "syslog"

TABLE: tuple[Kind, ...] = (
    Kind("foreign", "a line of a program that carries no mail (cron, kernel, sshd...)",
         (present("prog"),),
         samples=(Sample("Nov  3 09:23:38 veridian automount[7998]: lookup(file): lookup for"
                         " foobar failed", "corpus syslog/lnav.log:1"),
                  Sample("<6>2014-02-10T08:33:15.407935-08:00 trink-x230 kernel: imklog 5.8.6,"
                         " log source = /proc/kmsg started.",
                         "corpus syslog/lua_sandbox_extensions.log:3"))),
    Kind("unparsed", "a line without a syslog header", (),
         samples=(Sample("trink-x230 trink-x230 trink-x230 127.0.0.1 kernel: kernel 6"
                         " kern.info<6> 1 0 kern 6 info Feb 10 09:20:53",
                         "corpus syslog/lua_sandbox_extensions.log:5 (cut)"),)),
)
KINDS = descriptions(TABLE)


def sniff(lines: list[str]) -> bool:
    """Most of the opening lines (and at least one) have a syslog header."""
    lines = [x for x in lines if x.strip()]
    if not lines:
        return False
    framed = split_header(pl.DataFrame({"raw": lines}))["prog"].is_not_null().sum()
    return framed > 0 and 2 * framed >= len(lines)


def parse(lines: pl.DataFrame, ctx: ParseContext) -> pl.DataFrame:
    """Turn a batch of raw lines (columns raw, line_no) into the events frame."""
    frame = parse_header(lines, ctx.tz, ctx.years)
    frame = frame.with_columns(kind=classifier(TABLE), program=pl.col("prog"),
                               detail=pl.lit(None, pl.String))
    return finish(frame, ctx)
