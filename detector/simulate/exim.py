"""Render simulated traffic as an Exim main log (``mainlog``), or the same lines via syslog.

The same format-neutral messages and delivery plans as the Postfix renderer, told the way
one Exim host (``mx1``) logs them: an optional ``SMTP connection from`` line, the ``<=``
arrival with the Message-ID and subject (``log_selector = +subject +incoming_interface
+incoming_port +msg_id_created +queue_time +deliver_time +smtp_connection``), one line per
delivery attempt (``=>`` first address of a transaction, ``->`` the others, ``**`` failed,
``==`` deferred), Exim's own bounce messages (``<= <> R=<id>``) and ``Completed``.

Lists are expanded by a redirect router, so a member's delivery names the list in angle
brackets; mailboxes on the MTA itself go to Dovecot through an ``accept`` router and the
``lmtp`` transport, logged with the local part only (``log_as_local``); remote mail stores
are reached with an smtp transport speaking LMTP, the outside world with ``dnslookup`` and
``remote_smtp``. Stamps are added per second, never formatted per line.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from email.header import decode_header, make_header
from functools import lru_cache
from operator import itemgetter
from pathlib import Path

from detector.simulate import postfix_text as pt
from detector.simulate.delivery import Plan, plan_delivery
from detector.simulate.output import write_lines
from detector.simulate.processes import IdsBySecond, Pids
from detector.simulate.rand import fast_choice, fast_randint
from detector.simulate.scenario import Batch, Message, Site
from detector.simulate.stamps import Stamper
from detector.simulate.sweep import sweep

LEAD_US = 2_000_000  # a message's first line (connection) is at most this long before arrival
SYSLOG_LINE = 870  # Exim splits longer entries for syslog into [n/m] parts
B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BOUNCE_SUBJECT = "Mail delivery failed: returning message to sender"
TLS_CIPHERS = ("TLS1.2:ECDHE-RSA-AES256-GCM-SHA384:256", "TLS1.3:TLS_AES_256_GCM_SHA384:256",
               "TLS1.2:ECDHE-RSA-AES128-GCM-SHA256:128")
_T = itemgetter(0)
# event: (POSIX microseconds, process id, text after the stamp and pid)
Event = tuple[int, int, str]


def b62(n: int, width: int) -> str:
    """Exim's base-62 digits, most significant first, zero padded to ``width``."""
    out: list[str] = []
    while n or len(out) < width:
        n, r = divmod(n, 62)
        out.append(B62[r])
    return "".join(reversed(out))


def print_time(seconds: float, millisec: bool = False) -> str:
    """A QT=/DT= value as Exim prints it: ``3m45s``, ``0s``; ``1.578s`` below 5 s with
    +millisec (string_timediff)."""
    if millisec and seconds < 5:
        ms = int(seconds * 1000)
        return f"{ms // 1000}.{ms % 1000:03d}s"
    s = int(seconds)
    if s <= 0:
        return "0s"
    out = []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            out.append(f"{s // size}{unit}")
            s %= size
    if s:
        out.append(f"{s}s")
    return "".join(out)


@lru_cache(maxsize=4096)
def quoted(text: str, limit: int = 1024, topbit: bool = False) -> str:
    """A value as Exim logs T= and C=: in quotes, backslash before ``"`` and ``\\``, at most
    ``limit`` bytes of it, and string_printing()'s escapes for what is not printable."""
    out = ['"']
    for byte in text.encode("utf-8")[:limit]:
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= byte < 127 or (byte > 127 and topbit):
            out.append(ch if byte < 128 else bytes([byte]).decode("latin-1"))
        else:
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch, f"\\{byte:03o}"))
    out.append('"')
    if topbit:  # top-bit bytes were passed through: put the UTF-8 text back together
        return "".join(out).encode("latin-1").decode("utf-8", "replace")
    return "".join(out)


@lru_cache(maxsize=4096)
def subject_field(subject: str, topbit: bool = False) -> str:
    """T="..." for a subject as written on the wire: Exim logs $h_subject: (RFC 2047 words
    decoded), its first 100 bytes."""
    try:
        text = str(make_header(decode_header(subject))) if "=?" in subject else subject
    except (ValueError, LookupError, UnicodeDecodeError):
        text = subject
    return quoted(text, 100, topbit)


class EximRenderer:
    """Exim main log renderer for one host; see ``render_exim`` for the options."""

    def __init__(self, site: Site, *, seed: int = 0, host: str = "mx1", tz: str | None = None,
                 pid: bool = False, millisec: bool = False, log_timezone: bool = False,
                 new_ids: bool = False, connections: bool = True, subjects: bool = True,
                 thread_headers: bool = False, syslog: bool = False,
                 syslog_timestamp: bool = False, topbit: bool = False) -> None:
        self.site = site
        self.rng = random.Random(seed)
        self.ri = fast_randint(self.rng)
        self.pick = fast_choice(self.rng)
        self.host, self.fqdn, self.ip = host, f"{host}.{site.domain}", "10.1.0.2"
        self.pid, self.millisec, self.log_timezone = pid, millisec, log_timezone
        self.new_ids, self.connections, self.thread_headers = new_ids, connections, thread_headers
        self.syslog, self.syslog_timestamp, self.topbit = syslog, syslog_timestamp, topbit
        self.subjects = subjects
        self.pids = Pids(self.rng)
        self.stamper = Stamper("rfc3164", tz)
        self.ids = IdsBySecond()
        self.sess_tail: dict[str, str] = {}
        self.orig: dict[str | None, str] = {None: ""}
        self.lines_rendered = 0
        self._stamps: dict[int, tuple[str, str]] = {}

    # ---- time-ordered output ------------------------------------------------------------
    def chunks(self, messages: Iterable[Message]) -> Iterator[list[str]]:
        """Time-ordered lines, a bucket (up to ten seconds of traffic) at a time."""
        for _, _, lines in self.timed_chunks(messages):
            yield lines

    def timed_chunks(self, messages: Iterable[Message]) -> Iterator[tuple[int, int, list[str]]]:
        """Like ``chunks`` with the first and last line's time (POSIX microseconds)."""
        for flat in sweep(messages, self.message, LEAD_US, self.site.log_start):  # type: ignore[arg-type]
            lines = self.lines(flat)  # type: ignore[arg-type]
            self.lines_rendered += len(lines)
            yield flat[0][0], flat[-1][0], lines

    def stamp(self, sec: int) -> tuple[str, str]:
        """("2016-11-14 10:02:11", " +0100" or "") in local time for a POSIX second."""
        hit = self._stamps.get(sec)
        if hit is None:
            if len(self._stamps) > 4096:
                self._stamps.clear()
            y, mo, d, h, mi, s, off = self.stamper.local_parts(sec)
            zone = ""
            if self.log_timezone:
                oh, om = divmod(abs(off) // 60, 60)
                zone = f" {'-' if off < 0 else '+'}{oh:02d}{om:02d}"
            hit = self._stamps[sec] = (f"{y:04d}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}", zone)
        return hit

    def lines(self, events: list[Event]) -> list[str]:
        """Whole lines for time-sorted events, one stamp computed per second."""
        out: list[str] = []
        n, lo = len(events), 0
        ms = self.millisec
        while lo < n:
            sec = events[lo][0] // 1_000_000
            hi = bisect_left(events, (sec + 1) * 1_000_000, lo, key=_T)
            day, zone = self.stamp(sec)
            base = sec * 1_000_000
            if self.syslog:
                out += self._syslog_lines(events[lo:hi], sec, day, zone, base)
            elif ms and self.pid:
                out += [f"{day}.{(t - base) // 1000:03d}{zone} [{p}] {x}"
                        for t, p, x in events[lo:hi]]
            elif ms:
                out += [f"{day}.{(t - base) // 1000:03d}{zone} {x}" for t, _, x in events[lo:hi]]
            elif self.pid:
                pre = f"{day}{zone} ["
                out += [f"{pre}{p}] {x}" for _, p, x in events[lo:hi]]
            else:
                pre = f"{day}{zone} "
                out += [pre + x for _, _, x in events[lo:hi]]
            lo = hi
        return out

    def _syslog_lines(self, events: list[Event], sec: int, day: str, zone: str,
                      base: int) -> list[str]:
        """``Nov 14 10:02:11 mx1 exim[pid]: [<exim stamp> ]text``, long entries split."""
        pre = f"{self.stamper.rfc3164(sec)} {self.host} exim["
        out = []
        for t, p, x in events:
            if self.syslog_timestamp:
                ms = f".{(t - base) // 1000:03d}" if self.millisec else ""
                x = f"{day}{ms}{zone} {x}"
            if len(x) <= SYSLOG_LINE:
                out.append(f"{pre}{p}]: {x}")
                continue
            parts = [x[i:i + SYSLOG_LINE] for i in range(0, len(x), SYSLOG_LINE)]
            out += [f"{pre}{p}]: [{i}/{len(parts)}] {part}" for i, part in enumerate(parts, 1)]
        return out

    # ---- one message --------------------------------------------------------------------
    def message(self, m: Message, ev: list[Event]) -> None:
        """Append every line ``m`` causes to ``ev``."""
        self.ids.passing(m.time_us - LEAD_US)
        if m.reject:
            self._reject(m, ev)
            return
        plan = plan_delivery(self.site, m)
        qid = self._intake(m, plan.arrival_us, plan.active_us, ev)
        self._finish(qid, m, plan, ev)

    def _new_id(self, t_us: int, pid: int) -> str:
        """A message id from the reception time and process, unique like Exim makes it
        (it waits for the clock to tick when the same process would repeat one)."""
        sec, usec = divmod(t_us, 1_000_000)
        while True:
            if self.new_ids:  # Exim 4.97+: 6 + 11 + 4 characters
                mid = f"{b62(sec, 6)}-{b62(pid, 11)}-{b62(usec, 4)}"
            else:
                mid = f"{b62(sec, 6)}-{b62(pid, 6)}-{b62(usec // 2000, 2)}"
            used = self.ids.of(sec)  # an id names its second: only that second's can clash
            if mid not in used:
                used.add(mid)
                return mid
            usec += 2000
            if usec >= 1_000_000:
                sec, usec = sec + 1, usec - 1_000_000

    def _connected(self, m: Message, tc: int, pid: int, peer: str, ev: list) -> None:
        """The lines of an SMTP connection opening (with +smtp_connection, a reverse
        lookup that failed)."""
        if self.connections:
            ev.append((tc, pid, f"SMTP connection from {peer} "
                                f"(TCP/IP connection count = {self.ri(1, 6)})"))
        if m.client_host == "unknown":
            ev.append((tc + self.ri(2_000, 40_000), pid,
                       f"no host name found for IP address {m.client_ip}"))

    def _client(self, m: Message) -> str:
        """The H= text of an incoming connection: verified name, HELO name, address."""
        if m.client_host == "unknown":
            return f"({m.helo or m.client_ip}) [{m.client_ip}]"
        if m.helo and m.helo != m.client_host:
            return f"{m.client_host} ({m.helo}) [{m.client_ip}]"
        return f"{m.client_host} [{m.client_ip}]"

    def _intake(self, m: Message, arrival: int, active: int, ev: list[Event],
                parent: str | None = None) -> str:
        """Reception: connection, ACL header lines and the ``<=`` line; returns the id."""
        ri = self.ri
        sender = m.sender or "<>"
        subject = f" T={subject_field(m.subject, self.topbit)}" \
            if m.subject and self.subjects else ""
        if m.source in ("pickup", "bounce"):  # sendmail(1), or Exim's own bounce
            pid = self.pids.get(self.host, "local", arrival, arrival + 30_000, reuse=0.0)
            qid = self._new_id(arrival, pid)
            if parent is not None:
                ev.append((arrival, pid, f"{qid} <= <> R={parent} U=Debian-exim P=local "
                                         f"S={m.size} id=E{qid}@{self.fqdn}{subject}"))
                return qid
            user = "root" if m.sender.startswith("root") else "vmail" if not m.sender else "www"
            mid = f"id={m.message_id}" if m.message_id else f"id*=E{qid}@{self.fqdn}"
            self._headers(m, qid, arrival, pid, ev)
            ev.append((arrival, pid, f"{qid} <= {sender} U={user} P=local S={m.size} {mid}"
                                     f"{subject}"))
            return qid
        port = 587 if m.source == "submission" else 25
        tc = arrival - ri(30_000, LEAD_US - 500_000)
        t_bye = active + ri(-8_000, 40_000)
        pid = self.pids.get(self.host, "smtp", tc, t_bye, reuse=0.0)  # a fork per connection
        peer = f"[{m.client_ip}]:{ri(32768, 60999)} I=[{self.ip}]:{port}"
        client = self._client(m)
        self._connected(m, tc, pid, peer, ev)
        qid = self._new_id(arrival, pid)
        host = client.rsplit(" ", 1)[0]  # the [ip] is in peer, with the port
        fields = f"H={host} {peer} "
        if m.sasl_user:
            fields += "P=esmtpsa" if m.tls else "P=esmtpa"
        else:
            fields += "P=esmtps" if m.tls else "P=esmtp"
        if m.tls:
            fields += f" X={self.pick(TLS_CIPHERS)} CV=no"
        if m.sasl_user:
            fields += f" A=dovecot_login:{m.sasl_user}"
        mid = f"id={m.message_id}" if m.message_id else f"id*=E{qid}@{self.fqdn}"
        self._headers(m, qid, arrival, pid, ev)
        ev.append((arrival, pid, f"{qid} <= {sender} {fields} S={m.size} {mid}{subject}"))
        if self.connections:
            ev.append((t_bye, pid, f"SMTP connection from {host} {peer} closed by QUIT"))
        return qid

    def _headers(self, m: Message, qid: str, arrival: int, pid: int, ev: list[Event]) -> None:
        """The DATA ACL's logwrite of In-Reply-To and References (thread_headers)."""
        if not self.thread_headers:
            return
        t = arrival - self.ri(300, 3_000)
        if m.in_reply_to:
            ev.append((t, pid, f"{qid} In-Reply-To: <{m.in_reply_to}>"))
        if m.references:
            refs = " ".join(f"<{r}>" for r in m.references)
            ev.append((t, pid, f"{qid} References: {refs}"))

    def _finish(self, qid: str, m: Message, plan: Plan, ev: list[Event]) -> None:
        """Deliveries (first try by the delivery process the reception forked, retries by
        queue runners), Exim's bounce messages and Completed."""
        h, arrival = self.host, plan.arrival_us
        rows = plan.rows
        runs: dict[int, int] = {}  # delivery process per pass (activation time)
        end = plan.removed_us
        for row in rows:
            b = row[4]
            if b.arrival_us not in runs:
                runs[b.arrival_us] = self.pids.get(h, "deliver", b.arrival_us, end, reuse=0.0)
        self._deliveries(qid, m, plan, runs, ev)
        last = runs[rows[-1][4].arrival_us] if rows else self.pids.get(h, "deliver", arrival)
        for notice in plan.notices:
            self._notice(qid, notice, ev)
        ev.append((plan.removed_us, last, f"{qid} Completed"))

    def _notice(self, parent: str, n: Message, ev: list[Event]) -> None:
        """Exim's bounce: a new message from <> naming the one it reports on (R=)."""
        plan = plan_delivery(self.site, n)
        bounce = Message(time=n.time, sender="", recipients=n.recipients, subject=BOUNCE_SUBJECT,
                         message_id="", size=n.size, source="bounce", is_auto=True, seed=n.seed)
        qid = self._intake(bounce, plan.arrival_us, plan.active_us, ev, parent=parent)
        self._finish(qid, bounce, plan, ev)

    # ---- the hot loop: one line per delivery attempt --------------------------------------
    def _deliveries(self, qid: str, m: Message, plan: Plan, runs: dict[int, int],
                    ev: list[Event]) -> None:
        app, arrival, ms = ev.append, plan.arrival_us, self.millisec
        orig = self.orig
        last: Batch | None = None
        k = 0
        router = transport = host = conf = sess = tail_s = ""
        local = more = False
        for t, r, o, code, b in plan.rows:
            if b is not last:
                last, more = b, False
                router, transport, host, local, conf, sess, tail_s = self._batch(qid, m, b, r,
                                                                                 runs, ev)
            pid = runs[b.arrival_us]
            top = orig.get(o)
            if top is None:
                top = orig[o] = f" <{o}>"
            timing = f" QT={print_time((t - arrival) / 1e6, ms)} " \
                     f"DT={print_time((t - b.conn_us) / 1e6, ms)}"
            if code == "sent":
                # log_as_local: the local part only, and then always the top address
                shown = f"{r.partition('@')[0]}{top or f' <{r}>'}" if local else f"{r}{top}"
                if b.transport == "lmtp":
                    k += 1
                    reply = f'"250 2.0.0 <{r}> {sess}{pt.B64[k & 63]}{tail_s} Saved"'
                else:
                    reply = conf
                flag = "->" if more else "=>"
                more = not local
                app((t, pid, f"{qid} {flag} {shown} R={router} T={transport}{host} C={reply}"
                             f"{timing}"))
            else:
                app((t, pid, f"{qid} {self._failure(code, r, top, router, transport, host, b)}"))

    def _batch(self, qid: str, m: Message, b: Batch, rcpt: str, runs: dict[int, int],
               ev: list[Event]) -> tuple[str, str, str, bool, str, str, str]:
        """Router, transport, H= text and reply of one delivery transaction."""
        rng = self.rng
        if b.transport == "lmtp" and b.relay == "":
            router, transport, host, local = "local_user", "dovecot_lmtp", "", True
        elif b.transport == "lmtp":
            ip = self.site.hosts.get(b.relay, "198.51.100.250")
            router, transport, host, local = "mailstore", "mailstore_lmtp", \
                f" H={b.relay} [{ip}]", False
        else:
            ip = self.site.hosts.get(b.relay, "198.51.100.250")
            router, transport, local = "dnslookup", "remote_smtp", False
            host = f" H={b.relay} [{ip}]"
            if b.connected and rng.random() < 0.7:
                host += f" X={self.pick(TLS_CIPHERS)} CV=yes"
            if not b.connected:  # the host failure Exim logs before the deferral
                ev.append((b.conn_us, runs[b.arrival_us], f"{qid} H={b.relay} [{ip}] "
                                                          "Connection timed out"))
        conf = sess = tail_s = ""
        if b.transport == "lmtp":
            sess = pt.session_id(rng)
            tail_s = self.sess_tail.get(b.relay, "")
            if not tail_s:  # the constant end of a store's Dovecot session ids
                tail_s = self.sess_tail[b.relay] = pt.session_id(rng, 11)
        else:
            style = self.site.reply_style.get(rcpt.rpartition("@")[2], "postfix")
            conf = quoted(pt.smtp_ok(style, rng, m.message_id or "unknown", m.size, b.conn_us))
        return router, transport, host, local, conf, sess, tail_s

    def _failure(self, code: str, r: str, top: str, router: str, transport: str, host: str,
                 b: Batch) -> str:
        """The ** or == text of an attempt that did not deliver, by outcome code."""
        where = f"{r}{top} R={router} T={transport}"
        host = host.split(" X=", 1)[0]
        lmtp = "LMTP" if b.transport == "lmtp" else "SMTP"
        if code == "bounced":
            if b.transport == "lmtp":
                why = f"550 5.1.1 <{r}> User doesn't exist: {r}"
            else:
                why = (f"550 5.1.1 <{r}>: Recipient address rejected: User unknown in "
                       "virtual mailbox table")
            said = "LMTP error" if lmtp == "LMTP" else "SMTP error from remote mail server"
            return f"** {where}{host} : {said} after RCPT TO:<{r}>: {why}"
        if code == "loop":  # the next hop refused it after the data: too many hops
            return (f"** {where}{host} : SMTP error from remote mail server after end of data: "
                    f"554 5.4.6 {pt.too_many_hops(r)}")
        if code == "timeout":
            return f"== {where} defer (110): Connection timed out"
        if code == "greylist":
            dom = r.rpartition("@")[2]
            return (f"== {where} defer (-44){host}: SMTP error from remote mail server after "
                    f"RCPT TO:<{r}>: 450 4.2.0 <{r}>: Recipient address rejected: Greylisted, "
                    f"see http://postgrey.schweikert.ch/help/{dom}.html")
        return (f"== {where} defer (-46){host}: LMTP error after end of data: 452 4.2.2 <{r}> "
                "Quota exceeded (mailbox for user is full)")

    def _reject(self, m: Message, ev: list[Event]) -> None:
        """A client refused at RCPT time, or failing SMTP AUTH on the submission port."""
        ri, t = self.ri, m.time_us
        tc, end = t - ri(50_000, 1_500_000), t + ri(1_000, 600_000)
        pid = self.pids.get(self.host, "smtp", tc, end, reuse=0.0)
        port = 587 if m.reject == "auth" else 25
        peer = f"[{m.client_ip}]:{ri(32768, 60999)} I=[{self.ip}]:{port}"
        host = self._client(m).rsplit(" ", 1)[0]
        self._connected(m, tc, pid, peer, ev)
        if m.reject == "auth":
            ev.append((t, pid, f"dovecot_login authenticator failed for {host} {peer}: 535 "
                               f"Incorrect authentication data (set_id={m.sender})"))
        else:
            rcpt = m.recipients[0]
            why = {
                "rbl": f"JunkMail rejected - {host} {peer.split(' ')[0]} is in an RBL: "
                       f"https://www.spamhaus.org/query/ip/{m.client_ip}",
                "unknown_user": "Unrouteable address",
                "relay": "relay not permitted",
            }[m.reject or "relay"]
            ev.append((t, pid, f"H={host} {peer} F=<{m.sender}> rejected RCPT <{rcpt}>: {why}"))
        if self.connections:
            how = "closed by QUIT" if self.rng.random() < 0.7 else "lost"
            ev.append((end, pid, f"SMTP connection from {host} {peer} {how}"))


def _options(headers: bool | None, options: dict[str, object]) -> dict[str, object]:
    """``headers`` (the simulator's switch for every format): True logs the subject and
    the threading headers, False neither; None leaves ``subjects``/``thread_headers``."""
    if headers is not None:
        options = {**options, "subjects": headers, "thread_headers": headers}
    return options


def render_exim(site: Site, messages: Iterable[Message], *, seed: int = 0,
                headers: bool | None = None, **options: object) -> Iterator[str]:
    """Exim main log lines for ``messages``, sorted by time (ties keep message order).

    Options: ``pid`` (+pid: ``[1234]`` after the stamp), ``millisec`` (+millisec),
    ``log_timezone`` (`` +0100`` after the stamp), ``tz`` (zoneinfo name for local time,
    default UTC), ``new_ids`` (Exim 4.97+ message ids), ``subjects`` (+subject, on by
    default), ``thread_headers`` (a DATA ACL logs In-Reply-To and References),
    ``connections`` (+smtp_connection, on by default), ``syslog`` (``Nov 14 10:02:11 mx1
    exim[pid]: ...``) with ``syslog_timestamp`` (Exim's own stamp kept inside), ``topbit``
    (print_topbitchars: UTF-8 subjects unescaped), ``host`` (default mx1).
    """
    r = EximRenderer(site, seed=seed, **_options(headers, options))  # type: ignore[arg-type]
    for chunk in r.chunks(messages):
        yield from chunk


def write_exim(path: str | Path, site: Site, messages: Iterable[Message], *, seed: int = 0,
               headers: bool | None = None, compresslevel: int = 6, **options: object) -> int:
    """Stream the rendered log to ``path`` (gzip if it ends in .gz); return lines written."""
    r = EximRenderer(site, seed=seed, **_options(headers, options))  # type: ignore[arg-type]
    return write_lines(path, r.chunks(messages), compresslevel)
