"""One syslog file, two MTAs: a RHEL/FreeBSD ``maillog`` where Sendmail takes the host's
local submissions and hands them to the local Postfix, which logs everything else.

Postfix is the MTA (port 25 and 587, deliveries, bounces). What is submitted on the host
itself goes through ``/usr/sbin/sendmail`` of Sendmail (its submission program, the MSP
of ``submit.cf``), which queues the message and relays it to ``[127.0.0.1]``:

* the webmail front end runs on the MTA host and uses PHP ``mail()`` (``sendmail -t -i
  -f user``): every webmail user's mail, about a fifth of the site's people;
* cron, monitoring scripts and the mail stores' Sieve answers (``source="pickup"``).

Those messages get Sendmail's two lines, in the shape of a RHEL maillog (see
``tests/test_shared_syslog.py``)::

    sendmail[6005]: 21QBRGdX006005: from=root, size=30, class=0, nrcpts=1,
        msgid=<202202261127.21QBRGdX006005@server1.alsoft.org>, relay=root@localhost
    sendmail[6005]: 21QBRGdX006005: to=info.htreasure@gmail.com, ctladdr=root (0/0),
        delay=00:00:00, xdelay=00:00:00, mailer=relay, pri=180030,
        relay=[127.0.0.1] [127.0.0.1], dsn=2.0.0, stat=Sent (Ok: queued as A3EF4405DD14)

and then Postfix's own: ``smtpd`` ``client=localhost[127.0.0.1]``, ``cleanup``
``message-id=`` (the one Sendmail logged, added by it when the script gave none),
``qmgr`` ``from=``, the deliveries. One message, two queue ids, one Message-ID.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from detector.simulate.output import write_lines
from detector.simulate.postfix import LEAD_US, PostfixRenderer
from detector.simulate.scenario import Message, Site
from detector.simulate.sendmail import QueueIds, pintvl

PROGRAM = "sendmail"  # Red Hat's tag; Debian's sm-mta is the daemon, not the MSP
APACHE = ("apache", 48)  # the web server's user on RHEL: PHP mail() runs as it


def by_sendmail(site: Site, m: Message) -> bool:
    """Whether the message is submitted on the host, through Sendmail's MSP."""
    return not m.reject and (m.source == "pickup" or (m.client_host == site.webmail
                                                      and m.source == "smtp"))


class MaillogRenderer(PostfixRenderer):
    """Postfix's lines for everything, Sendmail's MSP lines in front of local submissions."""

    def __init__(self, site: Site, *, seed: int = 0, headers: bool = True, **kw) -> None:
        super().__init__(site, seed=seed, headers=headers, **kw)
        self.msp_rng = random.Random(seed ^ 0x5E4D)  # the MSP's draws apart from Postfix's
        self.msp_ids = QueueIds(self.msp_rng)
        self.uids: dict[str, int] = {}

    def _intake(self, h: str, m: Message, arrival: int, active: int, nrcpt: int, ev: list,
                via: str | None = None) -> str:
        if via or h != self.edge or not by_sendmail(self.site, m):
            return super()._intake(h, m, arrival, active, nrcpt, ev, via)
        ri = self.msp_rng.randint
        # the MSP queues the message in clientmqueue, then connects to port 25 at once
        handed = replace(m, client_host="localhost", client_ip="127.0.0.1",
                         helo=self.fqdn[h], source="smtp", tls=False, sasl_user=None,
                         size=m.size + ri(250, 400))  # plus the MSP's Received header
        # before Postfix's connect (at most LEAD_US - 0.5 s before arrival), within the lead
        t = arrival - ri(LEAD_US - 480_000, LEAD_US - 50_000)
        pid = self.pids.get(h, "msp", t, arrival + 20_000, reuse=0.0)
        mqid = self.msp_ids.new(t, pid)
        local, _, dom = m.sender.partition("@")
        # as given to sendmail(1): cron and scripts name the local user (``from=root``),
        # webmail passes the user's whole address with -f
        shown = (local if dom == self.site.domain else m.sender) or "<>"
        if m.client_host == self.site.webmail:
            shown = m.sender
            user, uid = APACHE
        elif local == "root":
            user, uid = "root", 0
        elif not m.sender or m.is_auto and m.mua == "sieve":
            user, uid = "mail", 8  # the null sender: a daemon (Sieve vacation) runs as mail
        else:
            user, uid = local, self.uids.setdefault(local, 1000 + len(self.uids))
        y, mo, d, hh, mi, _, _ = self.stamper.local_parts(t // 1_000_000)
        mid = m.message_id or f"{y:04d}{mo:02d}{d:02d}{hh:02d}{mi:02d}.{mqid}@{self.fqdn[h]}"
        rcpts = list(dict.fromkeys(m.recipients))
        pre = f"{h} {PROGRAM}[{pid}]: {mqid}: "
        handed.message_id = mid
        ev.append((t, f"{pre}from={shown}, size={m.size}, class=0, nrcpts={len(rcpts)}, "
                      f"msgid=<{mid}>, relay={user}@localhost"))
        qid = super()._intake(h, handed, arrival, active, nrcpt, ev)
        sent = arrival + ri(9_000, 30_000)  # Postfix answered 250 after cleanup took it
        ev.append((sent, f"{pre}to={','.join(rcpts)}, ctladdr={user} ({uid}/{uid}), "
                         f"delay={pintvl(sent - t)}, xdelay={pintvl(sent - arrival)}, "
                         f"mailer=relay, pri={m.size + 30_000 * len(rcpts)}, "
                         "relay=[127.0.0.1] [127.0.0.1], dsn=2.0.0, "
                         f"stat=Sent (Ok: queued as {qid})"))
        return qid


def write_maillog(path: str | Path, site: Site, messages: Iterable[Message], *, seed: int = 0,
                  headers: bool = True, compresslevel: int = 6) -> int:
    """Stream the shared maillog to ``path`` (gzip if it ends in .gz); return lines written."""
    r = MaillogRenderer(site, seed=seed, headers=headers)
    return write_lines(path, r.chunks(messages), compresslevel)
