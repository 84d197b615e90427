"""Render simulated traffic as Sendmail 8.14-style syslog lines (maillog), in time order.

Each message becomes its own list of (microseconds, text) events, merged by ``sweep``:
the SMTP session (STARTTLS=server, AUTH=server), the header values a ``Klog syslog`` /
``HSubject: $>+LogSubject`` configuration logs, the ``from=`` line when the message is
queued, one ``to=`` line per delivery transaction (all recipients of the transaction
comma-joined, split with ``[more]`` past sendmail's syslog buffer; refused recipients
each on a line of their own), ``DSN:`` lines and the bounce's own delivery. Local
submissions go through the MSP queue (``sendmail -t``) and are relayed to the MTA.

Lists are ``/etc/aliases`` entries by default: members show the list as their controlling
address (``ctladdr=<all.staff@dom> (8/0)``). With ``lists="mailman"`` the MTA hands a post
to Mailman (``mailer=mailman``) and delivers Mailman's copies to the members as plain
recipients of new envelopes; ``simulate.mailman`` writes Mailman's own logs for them.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from detector.simulate import postfix_text as pt
from detector.simulate.delivery import Plan, Row, plan_delivery
from detector.simulate.delivery import members as members_of
from detector.simulate.mailman import ListPost, bounces_address, list_posts
from detector.simulate.output import write_lines
from detector.simulate.processes import IdsBySecond, Pids
from detector.simulate.rand import fast_choice, fast_randint
from detector.simulate.scenario import Batch, Message, Site
from detector.simulate.stamps import Stamper
from detector.simulate.sweep import sweep

LEAD_US = 2_000_000  # a message's first line (STARTTLS) is at most this long before arrival
TO_LIMIT = 760  # characters of a to= list per line: SYSLOG_BUFSIZE - 100 - the rest
_B60 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwx"
_REPLY_CODE = re.compile(r"^\d{3} (?:\d\.\d{1,3}\.\d{1,3} )?")
_HEADER_ORDER = {
    "outlook": ("References", "In-Reply-To", "Subject"),
    "thunderbird": ("Subject", "References", "In-Reply-To"),
}
_DEFAULT_ORDER = ("Subject", "In-Reply-To", "References")
_DEFAULT_UID = "(8/0)"  # DefaultUser=mail: what an alias expansion runs as
_FAIL = {  # outcome code -> (dsn, stat= text); {r} recipient, {h} next hop
    "timeout": ("4.0.0", "Deferred: Connection timed out with {h}."),
    "greylist": ("4.2.0", "Deferred: 450 4.2.0 <{r}>... Recipient address rejected: "
                          "Greylisted, see http://postgrey.schweikert.ch/help/{d}.html"),
    "quota": ("4.2.2", "Deferred: 452 4.2.2 <{r}>... Mailbox full"),
    "bounced": ("5.1.1", "User unknown"),
    "loop": ("5.4.6", "Service unavailable"),  # 554 5.4.6 Too many hops, after DATA
}


def pintvl(us: int) -> str:
    """sendmail's pintvl(): ``hh:mm:ss``, with ``d+`` in front past a day."""
    sec = max(us, 0) // 1_000_000
    days, sec = divmod(sec, 86_400)
    text = f"{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}"
    return f"{days}+{text}" if days else text


class QueueIds:
    """Sendmail 8.12+ envelope ids: UTC time and a per-process sequence in base 60, then
    the pid (``21QBRGdX006005``: 2022, Feb, 26, 11:27:16, sequence dX, pid 6005)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.seq: dict[int, int] = {}
        self.used = IdsBySecond()

    def new(self, t_us: int, pid: int) -> str:
        sec = t_us // 1_000_000
        tm = time.gmtime(sec)
        head = "".join(_B60[v % 60] for v in (tm.tm_year - 1900, tm.tm_mon - 1, tm.tm_mday,
                                                tm.tm_hour, tm.tm_min, tm.tm_sec))
        used = self.used.of(sec)  # an id names its second: only that second's can clash
        while True:
            seq = self.seq.get(pid)
            seq = self.rng.randrange(3600) if seq is None else (seq + 1) % 3600
            self.seq[pid] = seq
            qid = f"{head}{_B60[seq // 60]}{_B60[seq % 60]}{pid:06d}"
            if qid not in used:
                used.add(qid)
                return qid


class SendmailRenderer:
    """Sendmail log renderer for one site; see ``render_sendmail`` for the options."""

    def __init__(self, site: Site, *, seed: int = 0, host: str = "mx1",
                 timestamps: str = "rfc3164", tz: str | None = None, lists: str = "alias",
                 log_headers: bool = True, program: str = "sendmail") -> None:
        if lists not in ("alias", "mailman"):
            raise ValueError('lists: "alias" (/etc/aliases) or "mailman"')
        self.site, self.lists, self.log_headers = site, lists, log_headers
        self.rng = random.Random(seed)
        self.ri = fast_randint(self.rng)
        self.pick = fast_choice(self.rng)
        self.host, self.fqdn = host, f"{host}.{site.domain}"
        self.prog = program
        self.ids = QueueIds(self.rng)
        self.pids = Pids(self.rng, first=1500)
        self.stamper = Stamper(timestamps, tz)
        self.uid: dict[str, int] = {}  # local users' uids, for ctladdr=
        self.lines_rendered = 0

    # ---- streaming ---------------------------------------------------------------------
    def chunks(self, messages: Iterable[Message]) -> Iterator[list[str]]:
        """Time-ordered lines, a bucket (up to ten seconds of traffic) at a time."""
        for flat in sweep(messages, self.message, LEAD_US, self.site.log_start):
            self.lines_rendered += len(flat)
            yield self.stamper.lines(flat)

    def _pre(self, pid: int) -> str:
        return f"{self.host} {self.prog}[{pid}]: "

    # ---- one message -------------------------------------------------------------------
    def message(self, m: Message, ev: list[tuple[int, str]]) -> None:
        """Append every line ``m`` causes to ``ev``."""
        self.ids.used.passing(m.time_us - LEAD_US)
        if m.reject:
            self._reject(m, ev)
            return
        plan = plan_delivery(self.site, m)
        posts = list_posts(self.site, m, plan) if self.lists == "mailman" else []
        on_list = {p.list_address for p in posts}
        direct = [row for row in plan.rows if row[2] not in on_list]
        nrcpt = plan.nrcpt if not posts else (
            sum(1 for row in direct if row[4].attempt == 0) + len(posts))
        if m.source == "pickup":
            qid = self._submit(m, plan, nrcpt, ev)
        else:
            qid = self._intake(m, plan.arrival_us, nrcpt, ev)
        mid = m.message_id or self._local_mid(qid, plan.arrival_us)
        dpid = self.pids.get(self.host, "deliver", plan.active_us, plan.active_us + 5_000_000)
        for post in posts:
            self._handoff(qid, dpid, m, plan, post, ev)
        self._deliveries(qid, dpid, m, direct, plan.arrival_us, 0, nrcpt, ev)
        bounced = sum(1 for row in direct if row[3] == "bounced")
        if bounced and m.sender and plan.notices:
            self._dsn(qid, dpid, plan.notices[0], ev)
        for post in posts:
            self._redistribute(m, mid, plan, post, ev)

    def _local_mid(self, qid: str, t_us: int) -> str:
        y, mo, d, hh, mi, _, _ = self.stamper.local_parts(t_us // 1_000_000)
        return f"{y:04d}{mo:02d}{d:02d}{hh:02d}{mi:02d}.{qid}@{self.fqdn}"

    def _client(self, host: str, ip: str) -> str:
        return f"[{ip}]" if host in ("unknown", "") else f"{host} [{ip}]"

    def _headers(self, pre: str, m: Message, t: int, ev: list) -> None:
        """Header values as a header-check ruleset logs them (``QID: Subject: ...``)."""
        if not self.log_headers:
            return
        refs = " ".join(f"<{r}>" for r in m.references)
        for name in _HEADER_ORDER.get(m.mua, _DEFAULT_ORDER):
            value = {"Subject": m.subject, "In-Reply-To": m.in_reply_to and f"<{m.in_reply_to}>",
                     "References": refs}[name]
            if value:
                ev.append((t, f"{pre}{name}: {value}"))
                t += 100 + int(self.rng.random() * 900)

    def _intake(self, m: Message, arrival: int, nrcpt: int, ev: list,
                client: tuple[str, str] | None = None, size: int | None = None,
                cls: int = 0) -> str:
        """The receiving daemon's lines; returns the queue id. ``client``: a relay on this
        host (localhost) instead of the message's own client."""
        ri = self.ri
        # a relay from localhost (MSP, Mailman) connects just before it sends
        tc = arrival - (ri(60_000, LEAD_US - 300_000) if client is None else ri(5_000, 30_000))
        pid = self.pids.get(self.host, "smtp", tc, arrival + ri(5_000, 60_000), reuse=0.0)
        qid = self.ids.new(tc, pid)
        pre = f"{self._pre(pid)}{qid}: "
        host, ip = client or (m.client_host, m.client_ip)
        cl = self._client(host, ip)
        tls, sasl = (m.tls, m.sasl_user) if client is None else (False, None)
        if tls:
            ev.append((tc + ri(2_000, 30_000), f"{pre}STARTTLS=server, relay={cl}, "
                       f"version=TLSv1.2, verify=NO, cipher={self.pick(_CIPHERS)}"))
        if sasl:
            ev.append((tc + ri(35_000, 55_000), f"{pre}AUTH=server, relay={cl}, authid={sasl}, "
                                                "mech=LOGIN, bits=0"))
        self._headers(pre, m, arrival - ri(5_000, 20_000), ev)
        mid = m.message_id or self._local_mid(qid, arrival)
        proto = "ESMTPSA" if sasl else "ESMTPS" if tls else "ESMTP"
        daemon = "MSA" if m.source == "submission" else "MTA"
        body = ", bodytype=8BITMIME" if m.mua in ("outlook", "thunderbird") else ""
        ev.append((arrival, f"{pre}from=<{m.sender}>, size={size or m.size}, class={cls}, "
                            f"nrcpts={nrcpt}, msgid=<{mid}>{body}, proto={proto}, "
                            f"daemon={daemon}, relay={cl}"))
        return qid

    def _submit(self, m: Message, plan: Plan, nrcpt: int, ev: list) -> str:
        """``sendmail -t`` on the host: the MSP queues the message and relays it to the MTA
        on localhost, which queues it again under its own id."""
        ri = self.ri
        t = plan.arrival_us - ri(40_000, 300_000)
        local, _, dom = m.sender.partition("@")
        shown = (local if dom == self.site.domain else m.sender) or "<>"
        user = local or "mail"  # the null sender: a daemon (Sieve vacation) runs as mail
        uid = 0 if user == "root" else 8 if user == "mail" else \
            self.uid.setdefault(user, 1000 + len(self.uid))
        mpid = self.pids.get(self.host, "msp", t, plan.arrival_us + 20_000, reuse=0.0)
        mqid = self.ids.new(t, mpid)
        mid = m.message_id or self._local_mid(mqid, t)
        rcpts = list(dict.fromkeys(m.recipients))
        mpre = f"{self._pre(mpid)}{mqid}: "
        ev.append((t, f"{mpre}from={shown}, size={m.size}, class=0, nrcpts={len(rcpts)}, "
                      f"msgid=<{mid}>, relay={user}@localhost"))
        sub = Message(time=m.time, sender=m.sender, recipients=m.recipients, subject=m.subject,
                      message_id=mid, in_reply_to=m.in_reply_to, references=m.references,
                      size=m.size, mua=m.mua, source="smtp", tls=False)
        qid = self._intake(sub, plan.arrival_us, nrcpt, ev, client=("localhost", "127.0.0.1"),
                           size=m.size + ri(250, 400))
        ev.append((plan.arrival_us + ri(1_000, 9_000),
                   f"{mpre}to={','.join(rcpts)}, ctladdr={user} ({uid}/{uid}), "
                   f"delay={pintvl(plan.arrival_us - t)}, xdelay=00:00:00, mailer=relay, "
                   f"pri={m.size + 30_000 * len(rcpts)}, relay=[127.0.0.1] [127.0.0.1], "
                   f"dsn=2.0.0, stat=Sent ({qid} Message accepted for delivery)"))
        return qid

    def _handoff(self, qid: str, dpid: int, m: Message, plan: Plan, post: ListPost,
                 ev: list) -> None:
        """The post delivered to Mailman by its mailer (no alias: no ctladdr)."""
        t = post.handoff_us
        ev.append((t, f"{self._pre(dpid)}{qid}: to=<{post.list_address}>, "
                      f"delay={pintvl(t - plan.arrival_us)}, xdelay={pintvl(t - plan.active_us)}"
                      f", mailer=mailman, pri={m.size + 30_000}, dsn=2.0.0, stat=Sent"))

    def _redistribute(self, m: Message, mid: str, plan: Plan, post: ListPost,
                      ev: list) -> None:
        """Mailman's copies come back over SMTP from localhost, one envelope per
        transaction of members; the members' deliveries follow."""
        sender = bounces_address(post.list_address)
        members = set(members_of(self.site, post.list_address) or ())
        rows = [row for row in plan.rows if row[2] == post.list_address and row[1] in members]
        shift = post.last_chunk_us + self.ri(20_000, 60_000) - plan.active_us
        copy = Message(time=m.time, sender=sender, recipients=[], subject=m.subject,
                       message_id=mid, in_reply_to=m.in_reply_to, references=m.references,
                       size=m.size + 1_400, mua="mailman", source="smtp", tls=False)
        for t, part in post.chunks:
            qid = self._intake(copy, t, len(part), ev, client=("localhost", "127.0.0.1"),
                               cls=-30)  # Precedence: list
            names = set(part)
            mine = [row for row in rows if row[1] in names]
            # the rows keep their plan times, moved after Mailman handed the copies back
            self._deliveries(qid, self.pids.get(self.host, "deliver", t + shift, t + shift),
                             copy, [(r[0], r[1], None, r[3], r[4]) for r in mine],
                             t - shift, shift, len(part), ev)
            bounced = sum(1 for row in mine if row[3] == "bounced")
            if bounced:
                end = max(row[0] for row in mine) + shift
                self._bounce_to_list(qid, end, sender, ev)

    def _bounce_to_list(self, qid: str, t: int, to: str, ev: list) -> None:
        """Member bounces go back to the list's -bounces address, i.e. to Mailman."""
        pid = self.pids.get(self.host, "deliver", t, t + 2_000)
        dqid = self.ids.new(t, pid)
        pre = self._pre(pid)
        ev.append((t + 500, f"{pre}{qid}: {dqid}: DSN: User unknown"))
        ev.append((t + self.ri(20_000, 90_000), f"{pre}{dqid}: to=<{to}>, delay=00:00:00, "
                                                "xdelay=00:00:00, mailer=mailman, pri=33000, "
                                                "dsn=2.0.0, stat=Sent"))

    def _dsn(self, qid: str, dpid: int, notice: Message, ev: list) -> None:
        """The DSN sendmail creates for refused recipients, and its delivery."""
        plan = plan_delivery(self.site, notice)
        t = plan.arrival_us
        dqid = self.ids.new(t, dpid)
        ev.append((t, f"{self._pre(dpid)}{qid}: {dqid}: DSN: User unknown"))
        self._deliveries(dqid, dpid, notice, plan.rows, t, 0, 1, ev)

    # ---- deliveries --------------------------------------------------------------------
    def _deliveries(self, qid: str, dpid: int, m: Message, rows: list[Row], arrival: int,
                    shift: int, nrcpt: int, ev: list) -> None:
        """One to= line per transaction: accepted recipients together (split with
        ``[more]`` when long), refused or deferred ones each on their own line."""
        groups: dict[tuple, list[Row]] = {}
        seen: set[int] = set()
        for row in rows:
            code, batch = row[3], row[4]
            if batch.transport == "smtp" and batch.connected and id(batch) not in seen:
                seen.add(id(batch))  # the session to a remote MX: STARTTLS=client
                if self.rng.random() < 0.7:
                    pid = dpid if batch.attempt == 0 else self.pids.get(
                        self.host, "runner", batch.conn_us + shift, reuse=0.9, limit=3)
                    verify = "OK" if self.rng.random() < 0.6 else "FAIL"
                    ev.append((batch.conn_us + shift, f"{self._pre(pid)}{qid}: STARTTLS=client, "
                                                      f"relay={batch.relay}., version=TLSv1.2, "
                                                      f"verify={verify}, cipher="
                                                      f"{self.pick(_CIPHERS)}"))
            local = batch.transport == "lmtp" and batch.relay == ""
            together = code in ("sent", "timeout") and not local
            key = (id(batch), code, row[2]) if together else (id(batch), code, row[1], len(groups))
            groups.setdefault(key, []).append(row)
        for part in groups.values():
            self._line(qid, dpid, m, part, arrival, shift, nrcpt, ev)

    def _line(self, qid: str, dpid: int, m: Message, part: list[Row], arrival: int,
              shift: int, nrcpt: int, ev: list) -> None:
        t, rcpt, orig, code, b = part[-1]
        t += shift
        pid = dpid if b.attempt == 0 else self.pids.get(self.host, "runner", t, t + 1_000,
                                                         reuse=0.9, limit=3)
        mailer, relay, ctl, stat, dsn = self._hop(m, rcpt, orig, code, b)
        pri = m.size + 30_000 * nrcpt + 90_000 * b.attempt
        tail = (f"{ctl}, delay={pintvl(t - arrival - shift)}, "
                f"xdelay={pintvl(t - b.conn_us - shift if b.connected else t - b.start_us - shift)}"
                f", mailer={mailer}, pri={pri}{relay}, dsn={dsn}, stat={stat}")
        # members come from an alias unbracketed, RCPT TO recipients bracketed
        names = [r if o else f"<{r}>" for _, r, o, _, _ in part]
        pre = f"{self._pre(pid)}{qid}: to="
        limit = max(200, TO_LIMIT - len(tail))
        text = ",".join(names)
        while len(text) > limit:  # sendmail's syslog buffer: the list goes on in [more]
            cut = text.rfind(",", 0, limit) + 1 or len(text)
            ev.append((t, f"{pre}{text[:cut]} [more]{tail}"))
            text = text[cut:]
        ev.append((t, f"{pre}{text}{tail}"))

    def _hop(self, m: Message, rcpt: str, orig: str | None, code: str,
             b: Batch) -> tuple[str, str, str, str, str]:
        """mailer, relay, ctladdr, stat and dsn of a transaction."""
        ctl = f", ctladdr=<{orig}> {_DEFAULT_UID}" if orig and self.lists == "alias" else ""
        if b.transport == "lmtp" and b.relay == "":  # a mailbox on this host
            local = rcpt.partition("@")[0]
            uid = self.uid.setdefault(local, 1000 + len(self.uid))
            ctl = f", ctladdr=<{rcpt}> ({uid}/{uid})"
            mailer, relay, reply = "local", "", ""
        elif b.transport == "lmtp":  # a mail store, which runs sendmail too
            ip = self.site.hosts.get(b.relay, "10.1.0.250")
            mailer, relay = "esmtp", f", relay={b.relay} [{ip}]"
            reply = f"{self.ids.new(b.conn_us, 100_000 + self.ri(0, 899_999))} " \
                    "Message accepted for delivery"
        else:
            ip = self.site.hosts.get(b.relay, "198.51.100.250")
            mailer = "esmtp"
            relay = f", relay={b.relay}. [{ip}]" if b.connected else f", relay={b.relay}."
            style = self.site.reply_style.get(rcpt.rpartition("@")[2], "postfix")
            reply = _REPLY_CODE.sub("", pt.smtp_ok(style, self.rng, m.message_id or "unknown",
                                                   m.size, b.conn_us))
        if code == "sent":
            return mailer, relay, ctl, f"Sent ({reply})" if reply else "Sent", "2.0.0"
        dsn, stat = _FAIL[code]
        return mailer, relay, ctl, stat.format(r=rcpt, h=b.relay,
                                               d=rcpt.rpartition("@")[2]), dsn

    # ---- refused sessions --------------------------------------------------------------
    def _reject(self, m: Message, ev: list) -> None:
        """A client refused at connect (DNSBL), at RCPT, or failing AUTH."""
        ri, t = self.ri, m.time_us
        tc = t - ri(50_000, 1_500_000)
        pid = self.pids.get(self.host, "smtp", tc, t + 600_000, reuse=0.0)
        cl = self._client(m.client_host, m.client_ip)
        pre = self._pre(pid)
        if m.reject == "rbl":  # FEATURE(dnsbl): check_relay, before any envelope exists
            name = m.client_host if m.client_host != "unknown" else f"[{m.client_ip}]"
            ev.append((tc, f"{pre}ruleset=check_relay, arg1={name}, arg2=127.0.0.2, "
                           f"relay={cl}, reject=550 5.7.1 Rejected: {m.client_ip} listed at "
                           "zen.spamhaus.org"))
            return
        qid = self.ids.new(tc, pid)
        pre = f"{pre}{qid}: "
        rcpt = m.recipients[0]
        if m.reject == "auth":
            ev.append((t, f"{pre}AUTH failure (LOGIN): authentication failure (-13) SASL(-13):"
                          f" authentication failure: checkpass failed, user={rcpt.split('@')[0]}"
                          f", relay={cl}"))
            ev.append((t + ri(1_000, 600_000), f"{pre}{cl} did not issue MAIL/EXPN/VRFY/ETRN "
                                               "during connection to MSA"))
            return
        if m.reject == "relay":
            ev.append((t, f"{pre}ruleset=check_rcpt, arg1=<{rcpt}>, relay={cl}, reject=550 "
                          f"5.7.1 <{rcpt}>... Relaying denied. IP name lookup failed "
                          f"[{m.client_ip}]"))
        else:
            ev.append((t, f"{pre}<{rcpt}>... User unknown"))
        ev.append((t + ri(1_000, 400_000), f"{pre}from=<{m.sender}>, size=0, class=0, nrcpts=0, "
                                           f"proto=ESMTP, daemon=MTA, relay={cl}"))


_CIPHERS = (
    "ECDHE-RSA-AES256-GCM-SHA384, bits=256/256",
    "ECDHE-RSA-AES128-GCM-SHA256, bits=128/128",
    "DHE-RSA-AES256-SHA, bits=256/256",
)


def render_sendmail(site: Site, messages: Iterable[Message], *, seed: int = 0,
                    host: str = "mx1", timestamps: str = "rfc3164", tz: str | None = None,
                    lists: str = "alias", log_headers: bool = True,
                    program: str = "sendmail") -> Iterator[str]:
    """Sendmail maillog lines for ``messages``, sorted by time (ties keep message order).

    lists: "alias" (members show ctladdr=<list>) or "mailman" (the MTA alone does not
    name the list; see ``simulate.mailman``). log_headers: write the Subject, In-Reply-To
    and References values a header-check ruleset logs. program: "sendmail" (Red Hat) or
    "sm-mta" (Debian). timestamps and tz as for ``render_postfix``.
    """
    r = SendmailRenderer(site, seed=seed, host=host, timestamps=timestamps, tz=tz,
                         lists=lists, log_headers=log_headers, program=program)
    for chunk in r.chunks(messages):
        yield from chunk


def write_sendmail(path: str | Path, site: Site, messages: Iterable[Message], *,
                   seed: int = 0, host: str = "mx1", timestamps: str = "rfc3164",
                   tz: str | None = None, lists: str = "alias", log_headers: bool = True,
                   program: str = "sendmail", compresslevel: int = 6) -> int:
    """Stream the rendered log to ``path`` (gzip if it ends in .gz); return lines written."""
    r = SendmailRenderer(site, seed=seed, host=host, timestamps=timestamps, tz=tz,
                         lists=lists, log_headers=log_headers, program=program)
    return write_lines(path, r.chunks(messages), compresslevel)
