"""Files that hold only the message part of an MTA's syslog lines (``journalctl -o cat``,
a parser's test inputs): named as that MTA's format, not refused as unknown.

Without a timestamp or host no line can be placed in time or tied to a server, so the
format reads every such line as ``unparsed`` (counted and shown, never silently
dropped); only the sniff is here.
"""

from __future__ import annotations

import re

# message parts only one MTA writes: its queue-id lines with their own keys (strong), and
# its other notices (weak: "warning: " alone proves nothing)
_STRONG: dict[str, re.Pattern[str]] = {
    "postfix": re.compile(
        r"^(?:[0-9A-F]{6,}|[0-9BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz]{10,}|NOQUEUE): "
        r"(?:to=.*, status=|from=<[^>]*>, size=|client=|message-id=|removed$|uid=\d+ from=|"
        r"reject: |[a-z_]+: header |milter-|sender non-delivery|Used TLS for |"
        r"conversation with |host \S+ said: )"
        r"|^(?:dis)?connect (?:from|to) \S+\["),
    "sendmail": re.compile(
        r"^[0-9A-Za-z]{14}: (?:from=.*, nrcpts=|to=.*, (?:mailer|stat)=|ruleset=|Milter)"
        r"|^NOQUEUE: (?:SYSERR|connect from|\S+ did not issue)"),
}
_WEAK: dict[str, re.Pattern[str]] = {
    "postfix": re.compile(r"^(?:statistics|warning|fatal|error|panic): "),
    "sendmail": re.compile(r"^(?:STARTTLS|AUTH|alias database|starting daemon)"),
}


def sniff(lines: list[str]) -> str | None:
    """The MTA whose message parts these lines are: at least two of its queue-id lines,
    and with its other notices at least a third of the lines; else None."""
    lines = [x.strip() for x in lines if x.strip()]
    for name, strong in _STRONG.items():
        hits = sum(1 for x in lines if strong.search(x))
        if hits < 2:
            continue
        hits += sum(1 for x in lines if not strong.search(x) and _WEAK[name].search(x))
        if 3 * hits >= len(lines):
            return name
    return None
