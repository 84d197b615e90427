"""Log formats: one module per format, each turning raw-line batches into events.

A format module exposes ``NAME``, ``KINDS`` (kind -> description, for the README and
``mailstorm kinds``), ``sniff(lines) -> bool`` and ``parse(lines, ctx) -> events``.
"""

from __future__ import annotations

from types import ModuleType

from detector.formats import (
    exchange,
    exchange_protocol,
    exim,
    m365,
    mailman,
    message_part,
    plainsyslog,
    postfix,
    sendmail,
)
from detector.formats.context import ParseContext

__all__ = ["FORMATS", "ParseContext", "sniff"]

FORMATS: dict[str, ModuleType] = {
    exchange.NAME: exchange,
    exchange_protocol.NAME: exchange_protocol,
    m365.NAME: m365,
    mailman.NAME: mailman,
    exim.NAME: exim,
    postfix.NAME: postfix,
    sendmail.NAME: sendmail,
    # last: a syslog file with no mail program among its opening lines
    plainsyslog.NAME: plainsyslog,
}


#: formats whose files are one host's log: lines that name no host (a native Exim
#: mainlog, Mailman's logs) are that file's host (``ingest.file_host``, or ``--host``).
#: Exports (Exchange, Microsoft 365) name the server on each row.
ONE_HOST = frozenset({postfix.NAME, sendmail.NAME, exim.NAME, mailman.NAME, plainsyslog.NAME})


def sniff(lines: list[str]) -> str | None:
    """Name of the first format whose sniffer accepts these opening lines, else the MTA
    whose message parts (without syslog header) they are, else None."""
    for name, module in FORMATS.items():
        if module.sniff(lines):
            return name
    return message_part.sniff(lines)
