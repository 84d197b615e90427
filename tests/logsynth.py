"""A tiny Postfix line writer for rule and incident tests.

Deliberately independent of detector.simulate: these tests pin the detection logic on
logs whose every line the test controls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass
class Mail:
    at: datetime
    sender: str
    to: list[str]  # addresses as written by the sender (list addresses expand)
    subject: str | None
    message_id: str
    in_reply_to: str | None = None
    host: str = "mx1"


@dataclass
class Site:
    lists: dict[str, list[str]] = field(default_factory=dict)

    def expand(self, address: str) -> list[tuple[str, str | None]]:
        members = self.lists.get(address)
        return [(m, address) for m in members] if members else [(address, None)]


def _stamp(ts: datetime) -> str:
    return f"{ts:%b} {ts.day:2d} {ts:%H:%M:%S}"


def mail_lines(site: Site, mail: Mail, queue_id: str) -> list[tuple[datetime, str]]:
    """The Postfix lines of one message: client, cleanup, headers, qmgr, deliveries."""
    t0 = mail.at
    h, q = mail.host, queue_id
    first = mail.to[0]
    trailer = f" from c.example[192.0.2.1]; from=<{mail.sender}> to=<{first}> proto=ESMTP helo=<c>"
    out = [
        (t0, f"{h} postfix/smtpd[100]: {q}: client=c.example[192.0.2.1]"),
        (t0, f"{h} postfix/cleanup[101]: {q}: message-id=<{mail.message_id}>"),
    ]
    if mail.subject is not None:
        out.append((t0, f"{h} postfix/cleanup[101]: {q}: info: header Subject: {mail.subject}"
                        f"{trailer}"))
    if mail.in_reply_to:
        out.append((t0, f"{h} postfix/cleanup[101]: {q}: info: header In-Reply-To: "
                        f"<{mail.in_reply_to}>{trailer}"))
    rcpts = [r for a in mail.to for r in site.expand(a)]
    out.append((t0, f"{h} postfix/qmgr[102]: {q}: from=<{mail.sender}>, size=2048, "
                    f"nrcpt={len(rcpts)} (queue active)"))
    t = t0 + timedelta(seconds=1)
    for rcpt, via in rcpts:
        orig = f" orig_to=<{via}>," if via else ""
        out.append((t, f"{h} postfix/lmtp[103]: {q}: to=<{rcpt}>,{orig} "
                       "relay=store.example[10.0.0.5]:24, delay=1, delays=0/0/0/1, dsn=2.0.0, "
                       "status=sent (250 2.0.0 Ok)"))
    out.append((t, f"{h} postfix/qmgr[102]: {q}: removed"))
    return out


def write_log(path, site: Site, mails: list[Mail]) -> int:  # noqa: ANN001 - Path or str
    """Write the mails' lines time-ordered (RFC 3164 stamps); returns delivery lines."""
    lines: list[tuple[datetime, int, str]] = []
    for n, mail in enumerate(mails):
        for i, (ts, text) in enumerate(mail_lines(site, mail, f"{0xA00000 + n:X}")):
            lines.append((ts, n * 100000 + i, text))
    lines.sort()
    with open(path, "w", encoding="utf-8") as f:
        for ts, _, text in lines:
            f.write(f"{_stamp(ts)} {text}\n")
    return sum(1 for _, _, text in lines if " to=<" in text and "status=" in text)


def storm(site: Site, *, list_addr: str, start: datetime, repliers: int, gap_s: int = 60,
          subject: str = "test", prefix: str = "RE: ") -> list[Mail]:
    """A root mail to a list and reply-alls from distinct members, gap_s apart."""
    members = site.lists[list_addr]
    root = Mail(start, "it.test@site.example", [list_addr], subject, "root-1@site.example")
    replies = [
        Mail(start + timedelta(seconds=gap_s * (i + 1)), members[i % len(members)],
             [list_addr], prefix + subject, f"reply-{i}@site.example", root.message_id)
        for i in range(repliers)
    ]
    return [root, *replies]
