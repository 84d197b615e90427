"""Render simulated traffic as Postfix syslog lines (mail.log), streamed in time order.

Each message becomes its own list of (microseconds, text) events: smtpd/pickup intake,
cleanup (message-id and header_checks INFO lines), opendkim, qmgr, one line per delivery
attempt, bounce notifications, retries and ``removed``; ``sweep`` merges them in time
order. Timestamps are added per second by ``Stamper``, never formatted per line.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from pathlib import Path

from detector.simulate import postfix_text as pt
from detector.simulate.delivery import Plan, Row, plan_delivery
from detector.simulate.output import write_lines
from detector.simulate.processes import Pids, QueueIds
from detector.simulate.rand import fast_choice, fast_randint
from detector.simulate.scenario import Batch, Message, Site
from detector.simulate.stamps import Stamper
from detector.simulate.sweep import sweep

LEAD_US = 2_000_000  # a message's first line (connect) is at most this long before arrival
# header_checks INFO order follows the order each client writes its headers in
_HEADER_ORDER = {
    "outlook": ("References", "In-Reply-To", "Subject", "Message-ID"),
    "thunderbird": ("Subject", "References", "Message-ID", "In-Reply-To"),
    "apple": ("Subject", "Message-ID", "References", "In-Reply-To"),
    "webmail": ("Subject", "In-Reply-To", "References", "Message-ID"),
}
_DEFAULT_ORDER = ("Subject", "Message-ID", "In-Reply-To", "References")


class PostfixRenderer:
    """Postfix log renderer for one site; see ``render_postfix`` for the options."""

    def __init__(self, site: Site, *, seed: int = 0, hosts: tuple[str, ...] = ("mx1",),
                 timestamps: str = "rfc3164", tz: str | None = None,
                 long_queue_ids: bool = False, headers: bool = True,
                 inodes: int = 0xEFFFF) -> None:
        if not 1 <= len(hosts) <= 2:
            raise ValueError("hosts: one MTA, or an edge MX and a list server")
        self.site = site
        self.headers = headers  # False: no header_checks lines (a site logging no subjects)
        self.rng = random.Random(seed)
        self.ri = fast_randint(self.rng)
        self.pick = fast_choice(self.rng)
        self.edge = hosts[0]
        self.list_host = hosts[1] if len(hosts) > 1 else None
        self.fqdn = {h: f"{h}.{site.domain}" for h in hosts}
        self.ip = {h: f"10.1.0.{2 + 7 * i}" for i, h in enumerate(hosts)}
        self.qmgr = {h: 1100 + 13 * i for i, h in enumerate(hosts)}
        self.dkim = {h: 812 + 5 * i for i, h in enumerate(hosts)}
        self.qids = QueueIds(self.rng, long_queue_ids, inodes)
        self.pids = Pids(self.rng)
        self.stamper = Stamper(timestamps, tz)
        self.delay = pt.DelayText()
        self.orig: dict[str | None, str] = {None: ""}
        self.lines_rendered = 0
        self.sess_tail: dict[str, str] = {}

    def chunks(self, messages: Iterable[Message]) -> Iterator[list[str]]:
        """Time-ordered lines, a bucket (up to ten seconds of traffic) at a time."""
        for _, _, lines in self.timed_chunks(messages):
            yield lines

    def timed_chunks(self, messages: Iterable[Message]) -> Iterator[tuple[int, int, list[str]]]:
        """Like ``chunks`` with the first and last line's time (POSIX microseconds).

        Buckets are aligned 10-second spans, so a caller can split files at any minute.
        """
        for flat in sweep(messages, self.message, LEAD_US, self.site.log_start):
            self.lines_rendered += len(flat)
            yield flat[0][0], flat[-1][0], self.stamper.lines(flat)

    # ---- one message -------------------------------------------------------------------
    def message(self, m: Message, ev: list[tuple[int, str]]) -> None:
        """Append every line ``m`` causes (on every host) to ``ev``."""
        if m.reject:
            self._reject(m, ev)
            return
        plan = plan_delivery(self.site, m)
        lists = self.site.lists
        if self.list_host and m.source != "bounce" and any(r in lists for r in m.recipients):
            self._two_hop(m, plan, ev)
            return
        qid = self._intake(self.edge, m, plan.arrival_us, plan.active_us, plan.nrcpt, ev)
        self._finish(self.edge, qid, m, plan, 0, ev)

    def _finish(self, h: str, qid: str, m: Message, plan: Plan, shift: int, ev: list) -> None:
        """Deliveries, retries from the deferred queue, bounce notices and removal."""
        rows = plan.rows
        self._deliveries(h, qid, m, rows, plan.arrival_us, shift, ev)
        retries: dict[int, int] = {}
        if rows and rows[-1][4].attempt:  # retries are planned after all first attempts
            for row in rows:
                b = row[4]
                if b.attempt:
                    retries[b.arrival_us] = retries.get(b.arrival_us, 0) + 1
        for t, pending in sorted(retries.items()):
            ev.append((t + shift, f"{h} postfix/qmgr[{self.qmgr[h]}]: {qid}: from=<{m.sender}>, "
                                  f"size={m.size}, nrcpt={pending} (queue active)"))
        for notice in plan.notices:
            self._notice(h, qid, notice, shift, ev)
        ev.append((plan.removed_us + shift, f"{h} postfix/qmgr[{self.qmgr[h]}]: {qid}: removed"))

    def _intake(self, h: str, m: Message, arrival: int, active: int, nrcpt: int, ev: list,
                via: str | None = None) -> str:
        """smtpd/pickup, cleanup, opendkim and the first qmgr line; returns the queue id.

        ``via``: the edge host that relays this copy to ``h`` (the list server).
        """
        rng, ri = self.rng, self.ri
        qid = self.qids.new(arrival)
        rcpt0 = m.recipients[0] if m.recipients else ""
        client, ip, helo, tls, sasl_user = m.client_host, m.client_ip, m.helo, m.tls, m.sasl_user
        source = m.source
        if via:
            client = helo = self.fqdn[via]
            ip, tls, sasl_user, source = self.ip[via], True, None, "smtp"
            rcpt0 = next((r for r in m.recipients if r in self.site.lists), rcpt0)
        if source == "pickup":
            pid = self.pids.get(h, "pickup", arrival, reuse=0.98, limit=1)
            uid = 0 if m.sender.startswith("root") else 1000 + ri(0, 40)
            local, _, dom = m.sender.partition("@")
            shown = local if dom == self.site.domain else m.sender  # as sendmail(1) gave it
            ev.append((arrival, f"{h} postfix/pickup[{pid}]: {qid}: uid={uid} from=<{shown}>"))
            origin = f"from local; from=<{m.sender}> to=<{rcpt0}>"
        else:
            prog = "postfix/submission/smtpd" if source == "submission" else "postfix/smtpd"
            tc = arrival - (ri(10_000, 30_000) if via else ri(30_000, LEAD_US - 500_000))
            t_bye = active + ri(-8_000, 40_000)
            pid = self.pids.get(h, prog, tc, t_bye)
            cl = f"{client}[{ip}]"
            pre = f"{h} {prog}[{pid}]: "
            ev.append((tc, f"{pre}connect from {cl}"))
            if tls:
                ev.append((tc + ri(1_000, 8_000), f"{pre}Anonymous TLS connection "
                           f"established from {cl}: {self.pick(pt.TLS_IN)}"))
            sasl = f", sasl_method=LOGIN, sasl_username={sasl_user}" if sasl_user else ""
            ev.append((arrival, f"{pre}{qid}: client={cl}{sasl}"))
            n = 1 if via else len(m.recipients)
            bye = pt.counters(tls=tls, auth=bool(sasl_user), rcpt=n)
            ev.append((t_bye, f"{pre}disconnect from {cl} {bye}"))
            origin = f"from {cl}; from=<{m.sender}> to=<{rcpt0}> proto=ESMTP helo=<{helo}>"
        t = arrival + ri(1_000, 8_000)
        cpid = self.pids.get(h, "cleanup", arrival, t + 5_000)
        cpre = f"{h} postfix/cleanup[{cpid}]: {qid}: "
        mid = m.message_id or self._local_mid(h, qid, arrival)
        each = m.mua == "outlook"
        refs = " ".join(f"<{r}>" for r in m.references)
        rand = rng.random
        for name in _HEADER_ORDER.get(m.mua, _DEFAULT_ORDER):
            if name == "Message-ID" and m.message_id:
                ev.append((t, f"{cpre}message-id=<{mid}>"))
            elif not self.headers:
                pass
            elif name == "Subject" and m.subject:
                subj = m.subject
                subj = f"Subject: {subj}" if len(subj) < 70 else pt.fold("Subject", subj)
                ev.append((t, f"{cpre}info: header {subj} {origin}"))
            elif name == "In-Reply-To" and m.in_reply_to:
                ev.append((t, f"{cpre}info: header In-Reply-To: <{m.in_reply_to}> {origin}"))
            elif name == "References" and refs:
                ev.append((t, f"{cpre}info: header {pt.fold('References', refs, each)} {origin}"))
            t += 20 + int(rand() * 280)
        if not m.message_id:  # cleanup adds one after the last header
            ev.append((t, f"{cpre}message-id=<{mid}>"))
        if h == self.edge and source != "bounce":  # the milter runs on the edge only
            if m.sender.endswith("@" + self.site.domain):
                ev.append((t + ri(500, 4_000), f"{h} opendkim[{self.dkim[h]}]: {qid}: "
                           f"DKIM-Signature field added (s=mail, d={self.site.domain})"))
            elif source == "smtp" and rng.random() < 0.6:
                ev.append((t + ri(500, 4_000), f"{h} opendkim[{self.dkim[h]}]: {qid}: "
                           "DKIM verification successful"))
        ev.append((active, f"{h} postfix/qmgr[{self.qmgr[h]}]: {qid}: from=<{m.sender}>, "
                           f"size={m.size}, nrcpt={nrcpt} (queue active)"))
        return qid

    def _local_mid(self, h: str, qid: str, t_us: int) -> str:
        y, mo, d, hh, mi, s, _ = self.stamper.local_parts(t_us // 1_000_000)
        return f"{y:04d}{mo:02d}{d:02d}{hh:02d}{mi:02d}{s:02d}.{qid}@{self.fqdn[h]}"

    def _notice(self, h: str, parent: str, n: Message, shift: int, ev: list) -> None:
        """The bounce daemon's non-delivery notification and its own delivery."""
        plan = plan_delivery(self.site, n)
        t = plan.arrival_us + shift
        qid = self.qids.new(t)
        cpid = self.pids.get(h, "cleanup", t, t + 2_000)
        bpid = self.pids.get(h, "bounce", t, t + 1_000, reuse=0.95)
        ev.append((t, f"{h} postfix/cleanup[{cpid}]: {qid}: message-id=<"
                      f"{self._local_mid(h, qid, t)}>"))
        ev.append((t + 200, f"{h} postfix/bounce[{bpid}]: {parent}: sender non-delivery "
                            f"notification: {qid}"))
        ev.append((plan.active_us + shift, f"{h} postfix/qmgr[{self.qmgr[h]}]: {qid}: from=<>, "
                                           f"size={n.size}, nrcpt=1 (queue active)"))
        self._finish(h, qid, n, plan, shift, ev)

    def _two_hop(self, m: Message, plan: Plan, ev: list) -> None:
        """Edge MX relays list addresses to the list server, which expands them."""
        e, lh, ri = self.edge, self.list_host, self.ri
        assert lh is not None  # only called for a site with a list server
        env = list(dict.fromkeys(m.recipients))
        on_list = [r for r in env if r in self.site.lists]
        direct = [row for row in plan.rows if row[2] is None]
        expanded = [row for row in plan.rows if row[2] is not None]
        qid = self._intake(e, m, plan.arrival_us, plan.active_us, len(env), ev)
        t_rel = plan.active_us + ri(80_000, 250_000)
        list_active = t_rel + ri(5_000, 60_000)
        shift = list_active - plan.active_us
        lqid = self._intake(lh, m, t_rel - 40_000, list_active,
                            sum(1 for row in expanded if row[4].attempt == 0), ev, via=e)
        pid = self.pids.get(e, "smtp", t_rel - 60_000, t_rel + 1_000)
        p = self.delay[(plan.active_us - plan.arrival_us) // 1000]
        for i, addr in enumerate(on_list):
            t = t_rel + i * 200
            ev.append((t, f"{e} postfix/smtp[{pid}]: {qid}: to=<{addr}>, relay={self.fqdn[lh]}"
                          f"[{self.ip[lh]}]:25, delay={self.delay[(t - plan.arrival_us) // 1000]}, "
                          f"delays={p}/0/0/{self.delay[(t - plan.active_us) // 1000]}, dsn=2.0.0, "
                          f"status=sent (250 2.0.0 Ok: queued as {lqid})"))
        last = max([t_rel + len(on_list) * 200] + [row[4].end_us for row in direct])
        edge_plan = Plan(m, plan.arrival_us, plan.active_us, direct,
                         removed_us=last + ri(300, 3_000))
        self._finish(e, qid, m, edge_plan, 0, ev)
        # the list server's clock starts when the relayed copy arrived there
        list_plan = Plan(m, t_rel - 40_000 - shift, plan.active_us, expanded,
                         notices=plan.notices, removed_us=plan.removed_us)
        self._finish(lh, lqid, m, list_plan, shift, ev)

    def _reject(self, m: Message, ev: list) -> None:
        """A client refused at RCPT time (NOQUEUE) or failing SASL on submission."""
        h, rng, ri, t = self.edge, self.rng, self.ri, m.time_us
        prog = "postfix/submission/smtpd" if m.reject == "auth" else "postfix/smtpd"
        tc, end = t - ri(50_000, 1_500_000), t + ri(1_000, 600_000)
        pre = f"{h} {prog}[{self.pids.get(h, prog, tc, end)}]: "
        cl = f"{m.client_host}[{m.client_ip}]"
        ev.append((tc, f"{pre}connect from {cl}"))
        if m.reject == "auth":
            ev.append((t, f"{pre}warning: {cl}: SASL LOGIN authentication failed: "
                          "UGFzc3dvcmQ6"))
            ev.append((end, f"{pre}disconnect from {cl} ehlo=1 auth=0/1 quit=1 commands=2/3"))
            return
        rcpt = m.recipients[0]
        why = pt.REJECTS[m.reject or ""].format(ip=m.client_ip, rcpt=rcpt)
        ev.append((t, f"{pre}NOQUEUE: reject: RCPT from {cl}: {why}; from=<{m.sender}> "
                      f"to=<{rcpt}> proto=ESMTP helo=<{m.helo}>"))
        if rng.random() < 0.3:
            ev.append((end, f"{pre}lost connection after RCPT from {cl}"))
            ev.append((end, f"{pre}disconnect from {cl} ehlo=1 mail=1 rcpt=0/1 commands=2/3"))
        else:
            ev.append((end, f"{pre}disconnect from {cl} ehlo=1 mail=1 rcpt=0/1 quit=1 "
                            "commands=3/4"))
        if rng.random() < 0.15:  # anvil reports the busiest clients every few minutes
            ta = t + ri(60_000_000, 400_000_000)
            at = self.stamper.rfc3164(t // 1_000_000)
            pre = f"{h} postfix/anvil[{self.pids.get(h, 'anvil', ta, limit=1)}]: statistics: "
            ev.append((ta, f"{pre}max connection rate {ri(1, 6)}/60s for "
                           f"(smtp:{m.client_ip}) at {at}"))
            ev.append((ta, f"{pre}max connection count 1 for (smtp:{m.client_ip}) at {at}"))
            ev.append((ta, f"{pre}max cache size {ri(1, 4)} at {at}"))

    # ---- the hot loop: one line per delivery attempt -----------------------------------
    def _deliveries(self, h: str, qid: str, m: Message, rows: list[Row], arrival: int,
                    shift: int, ev: list) -> None:
        delay, orig, b64 = self.delay, self.orig, pt.B64
        app = ev.append
        mid = m.message_id or "unknown"
        last = None
        head = rs = ds = rel0 = ok = sess = tail_s = ""
        conn = local_end = dpid = k = 0
        local = lmtp = False
        for t, r, o, code, b in rows:
            if b is not last:
                if local:  # Dovecot logs the end of the previous LMTP session
                    app((local_end + shift + 300, f"{h} dovecot: lmtp({dpid}): Disconnect from "
                                                  "local: Client has quit the connection "
                                                  "(state=READY)"))
                last, conn, lmtp = b, b.conn_us, b.transport == "lmtp"
                local = lmtp and b.relay == "" and h == self.edge
                head, rs, ds, rel0, ok, sess, tail_s, dpid = self._batch(h, qid, m, b, arrival,
                                                                        shift, mid, r, ev)
                local_end = b.start_us
            ot = orig.get(o)
            if ot is None:
                ot = orig[o] = f", orig_to=<{o}>"
            if code == "sent":
                if lmtp:
                    k += 1
                    if local:
                        if t > local_end:
                            local_end = t
                        app((t + shift - 400, f"{h} dovecot: lmtp({r})<{dpid}><{sess}"
                                              f"{b64[k & 63]}{tail_s}>: msgid=<{mid}>: "
                                              "saved mail to INBOX"))
                    app((t + shift, f"{head}{r}>{ot}{rs}{delay[(t - arrival) // 1000]}{ds}"
                                    f"{delay[(t - conn) // 1000]}, dsn=2.0.0, status=sent "
                                    f"(250 2.0.0 <{r}> {sess}{b64[k & 63]}{tail_s} Saved)"))
                else:
                    app((t + shift, f"{head}{r}>{ot}{rs}{delay[(t - arrival) // 1000]}{ds}"
                                    f"{delay[(t - conn) // 1000]}, dsn=2.0.0, status=sent "
                                    f"({ok})"))
            else:
                app((t + shift, f"{head}{r}>{ot}{rs}{delay[(t - arrival) // 1000]}{ds}"
                                f"{delay[(t - conn) // 1000]}, "
                                f"{pt.failure(code, r, rel0, lmtp)}"))
        if local:
            app((local_end + shift + 300, f"{h} dovecot: lmtp({dpid}): Disconnect from local: "
                                          "Client has quit the connection (state=READY)"))

    def _batch(self, h: str, qid: str, m: Message, b: Batch, arrival: int, shift: int,
               mid: str, rcpt: str, ev: list) -> tuple:
        """Per-transaction parts of the delivery lines (and its TLS / Dovecot lines)."""
        rng, delay, start = self.rng, self.delay, b.start_us + shift
        pid = self.pids.get(h, b.transport, start, b.end_us + shift, 0.95)
        head = f"{h} postfix/{b.transport}[{pid}]: {qid}: to=<"
        local = b.transport == "lmtp" and b.relay == "" and h == self.edge
        if local:
            rel0 = relay = f"{self.fqdn[h]}[private/dovecot-lmtp]"
        elif b.relay == "":  # the list server reaches the edge's Dovecot over TCP
            rel0 = f"{self.fqdn[self.edge]}[{self.ip[self.edge]}]"
            relay = f"{rel0}:24"
        else:
            rel0 = f"{b.relay}[{self.site.hosts.get(b.relay, '198.51.100.250')}]"
            relay = f"{rel0}:24" if b.transport == "lmtp" else f"{rel0}:25"
        rs = f", relay={relay if b.connected else 'none'}, delay="
        ds = (f", delays={delay[(b.arrival_us - arrival) // 1000]}/"
              f"{delay[(b.start_us - b.arrival_us) // 1000]}/"
              f"{delay[(b.conn_us - b.start_us) // 1000]}/")
        ok = sess = tail_s = ""
        dpid = 0
        if b.transport == "lmtp":
            sess = pt.session_id(rng)
            tail_s = self.sess_tail.get(b.relay, "")
            if not tail_s:  # the constant end of a store's Dovecot session ids
                tail_s = self.sess_tail[b.relay] = pt.session_id(rng, 11)
            if local:
                dpid = self.pids.get(h, "dovecot-lmtp", start, b.end_us + shift, 0.0)
                ev.append((start, f"{h} dovecot: lmtp({dpid}): Connect from local"))
        else:
            style = self.site.reply_style.get(rcpt.rpartition("@")[2], "postfix")
            ok = pt.smtp_ok(style, rng, mid, m.size, b.conn_us)
            if b.connected and rng.random() < 0.7:
                ev.append((b.conn_us + shift, f"{h} postfix/smtp[{pid}]: "
                                              f"{self.pick(pt.TLS_OUT_TRUST)} TLS connection "
                                              f"established to {relay}: {self.pick(pt.TLS_IN)}"))
        return head, rs, ds, rel0, ok, sess, tail_s, dpid


def render_postfix(site: Site, messages: Iterable[Message], *, seed: int = 0,
                   hosts: tuple[str, ...] = ("mx1",), timestamps: str = "rfc3164",
                   tz: str | None = None, long_queue_ids: bool = False,
                   headers: bool = True) -> Iterator[str]:
    """Postfix mail.log lines for ``messages``, sorted by time (ties keep message order).

    hosts: ("mx1",) or (edge, list_server) to relay list mail to a list host.
    timestamps: "rfc3164" (``Nov 14 10:02:11``) or "rfc3339" (with microseconds and offset).
    tz: zoneinfo name for local time (default UTC). long_queue_ids: enable_long_queue_ids.
    headers: False for a site whose header_checks log no Subject/In-Reply-To/References.
    """
    r = PostfixRenderer(site, seed=seed, hosts=hosts, timestamps=timestamps, tz=tz,
                        long_queue_ids=long_queue_ids, headers=headers)
    for chunk in r.chunks(messages):
        yield from chunk


def write_postfix(path: str | Path, site: Site, messages: Iterable[Message], *, seed: int = 0,
                  hosts: tuple[str, ...] = ("mx1",), timestamps: str = "rfc3164",
                  tz: str | None = None, long_queue_ids: bool = False,
                  headers: bool = True, compresslevel: int = 6) -> int:
    """Stream the rendered log to ``path`` (gzip if it ends in .gz); return lines written."""
    r = PostfixRenderer(site, seed=seed, hosts=hosts, timestamps=timestamps, tz=tz,
                        long_queue_ids=long_queue_ids, headers=headers)
    return write_lines(path, r.chunks(messages), compresslevel)
