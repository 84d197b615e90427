"""``--summary text``: the run in a few lines for cron mail (pflogsumm's habit).

    mailstorm run /var/log/mail.log --out /srv/mailstorm -q --summary text \\
        | mail -s "mailstorm $(hostname)" postmaster

The first line is the run's headline; then one line per incident that is new or changed
since the previous run (its status, severity, kind, start, story and page). Subjects and
addresses in a story come from logs: each line is kept one line (controls and line breaks
shown as escapes), and redacted as the report is.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from detector.display import Display
from detector.incidents import Incident, severity_rank
from detector.publish import PAGES_DIR
from detector.reports import sort_incidents

# C0 and C1 controls, and what reorders or hides text: a log line must not forge lines
# of the mail or make it say what the log does not
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064"
                     "\u2066-\u2069\ufeff]")


def text_summary(incidents: list[Incident], summary: dict[str, Any], report: Path,
                 display: Display) -> str:
    """The headline line, then a line per new or changed incident, most severe first."""
    counts = Counter(i.severity for i in incidents)
    detail = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(),
                                                     key=lambda kv: -severity_rank(kv[0])))
    changed = [i for i in sort_incidents(incidents) if i.changed]
    span = summary.get("time_span") or {}
    read = summary.get("lines_read")
    head = (f"mailstorm: {len(incidents):,} incident{'' if len(incidents) == 1 else 's'}"
            f"{f' ({detail})' if detail else ''}, {len(changed):,} new or changed; "
            + (f"{read:,} new log lines read; " if isinstance(read, int) else "")
            + f"mail from {display.time(span.get('start'), False) or '?'} to "
            f"{display.time(span.get('end'), False) or '?'}: "
            f"{int(summary.get('messages') or 0):,} messages, "
            f"{int(summary.get('deliveries') or 0):,} deliveries; report {report}")
    lines = [head]
    for inc in changed:
        page = report.parent / PAGES_DIR / f"{inc.id}.html"
        story = display.redacted(inc.headline or inc.subject or inc.list or "")
        lines.append(f"{inc.status.upper()} {inc.severity} {inc.kind} from "
                     f"{display.time(inc.start, False)}: {story} ({page})")
    return "".join(f"{_one_line(line)}\n" for line in lines)


def _one_line(text: str) -> str:
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
