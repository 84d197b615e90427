"""Render simulated traffic as Exchange message tracking logs and Microsoft 365 exports.

``ExchangeRenderer`` writes one Exchange 2016-style server (``EXCH01``) holding every
mailbox: a message from Outlook, a phone or Outlook on the web is picked up from the
mailbox (NOTIFYMAPI, RECEIVE and SUBMIT by STOREDRIVER) and received by transport (SMTP
RECEIVE); other mail arrives by SMTP. Transport logs agent and shadow-redundancy events,
EXPAND for each distribution group (DUPLICATEEXPAND for a member who was also addressed
directly: Exchange delivers such a recipient once), DELIVER for local mailboxes and SEND
for other organisations, with the recipients of one delivery batch ``;``-joined on one
row, FAIL for a bounce and DEFER for a delay, and DSN when it writes a non-delivery
report. What real Exchange 2013+ spreads over MSGTRK, MSGTRKMS and MSGTRKMD files is
written to one file.

``render_m365`` writes what an administrator exports from Microsoft 365: the
``Get-MessageTrace | Export-Csv`` table (one row per message and recipient, newest
first, with the final status) or the historical search summary report (one row per
message, the recipients' statuses joined in ``recipient_status``).

Outcomes come from ``plan_delivery``, so these logs tell the same story as the Postfix
rendering of the same messages.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from email.header import decode_header, make_header
from functools import lru_cache
from itertools import chain
from pathlib import Path

from detector.formats.exchange import FIELDS_2010, FIELDS_2013, FIELDS_2016
from detector.simulate.delivery import OUTCOMES, Plan, Row, plan_delivery
from detector.simulate.output import write_lines
from detector.simulate.postfix_text import too_many_hops
from detector.simulate.rand import fast_randint
from detector.simulate.scenario import Batch, Message, Site, from_us, to_us
from detector.simulate.stream import Mail, span
from detector.simulate.sweep import sweep

LEAD_US = 2_000_000  # a message's first row is at most this long before its arrival
VERSIONS = {  # layout -> (#Version of the header, fields)
    "2010": ("14.03.0123.004", FIELDS_2010),
    "2013": ("15.00.1497.002", FIELDS_2013),
    "2016": ("15.01.2507.039", FIELDS_2016),
}
NDR_SENDER = "MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e"
MAPI_CLIENTS = {"outlook": "MOMT", "mobile": "AirSync", "webmail": "OWA", "sieve": "System"}
_FAILOVER = ("Attempted failover to alternate host, but that did not succeed. Either there "
             "are no alternate hosts, or delivery failed to all alternate hosts.")


def quote(value: str) -> str:
    """A CSV field as Exchange and Export-Csv write it: quoted when it must be."""
    if '"' in value or "," in value or "\n" in value or "\r" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


@lru_cache(maxsize=4096)
def logged_subject(subject: str) -> str:
    """Exchange logs the Subject decoded (RFC 2047 words become text)."""
    if "=?" not in subject:
        return subject
    try:
        return str(make_header(decode_header(subject)))
    except (ValueError, LookupError):
        return subject


class IsoStamper:
    """``2016-11-14T10:02:11.123Z`` for POSIX microseconds, formatted once per second."""

    def __init__(self) -> None:
        self.sec = -1
        self.prefix = ""

    def __call__(self, us: int) -> str:
        sec, rest = divmod(us, 1_000_000)
        if sec != self.sec:
            self.sec, self.prefix = sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return f"{self.prefix}.{rest // 1000:03d}Z"


class ExchangeRenderer:
    """Message tracking log of one Exchange server; see the module docstring."""

    def __init__(self, site: Site, *, seed: int = 0, server: str = "EXCH01",
                 version: str = "2016", subjects: bool = True) -> None:
        self.site = site
        self.subjects = subjects  # MessageTrackingLogSubjectLoggingEnabled
        self.rng = random.Random(seed)
        self.row_ids = random.Random(f"log-id:{seed}")
        self.ri = fast_randint(self.rng)
        self.version, self.fields = VERSIONS[version]
        self.server = server
        self.fqdn = f"{server}.{site.domain}"
        self.shadow = f"EXCH02.{site.domain}"
        self.ip = "10.1.0.2"
        self.next_id = 70_000_000_000_000 + self.rng.randrange(10**12)  # transport ids
        self.ms_id = 400 + self.rng.randrange(500)  # the submission service's own ids
        self.iso = IsoStamper()
        self.lines_rendered = 0
        self.forest = f"S:DeliveryPriority=Normal;S:AccountForest={site.domain}"
        self.db = {store: self._guid() for store in sorted(set(site.mailbox_host.values()))}

    # ---- ids --------------------------------------------------------------------------
    def _guid(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def _new_id(self) -> str:
        self.next_id += 1 + self.ri(0, 6)
        return str(self.next_id)

    def _mid(self) -> str:
        """A Message-ID as Exchange stamps one: <32 hex digits@server fqdn>."""
        return f"{self.rng.getrandbits(128):032x}@{self.fqdn}"

    # ---- output -----------------------------------------------------------------------
    def header(self, created_us: int) -> list[str]:
        return ["#Software: Microsoft Exchange Server", f"#Version: {self.version}",
                "#Log-type: Message Tracking Log", f"#Date: {self.iso(created_us)}",
                "#Fields: " + ",".join(self.fields)]

    def timed_chunks(self, messages: Iterable[Message]) -> Iterator[tuple[int, int, list[str]]]:
        """Time-ordered rows, ten seconds at a time, with the first and last row's time."""
        iso = self.iso
        for flat in sweep(messages, self.message, LEAD_US, self.site.log_start):
            self.lines_rendered += len(flat)
            yield flat[0][0], flat[-1][0], [f"{iso(t)},{text}" for t, text in flat]

    def chunks(self, messages: Iterable[Message]) -> Iterator[list[str]]:
        for _, _, lines in self.timed_chunks(messages):
            yield lines

    def _row(self, values: dict[str, str]) -> str:
        """The row after its date-time, in the layout's field order."""
        if "log-id" in self.fields:  # from its own generator: the layout changes no story
            h = f"{self.row_ids.getrandbits(128):032x}"
            values.setdefault("log-id", f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
            values.setdefault("schema-version", self.version)
            values.setdefault("transport-traffic-type", "Email")
        get = values.get
        return ",".join([quote(get(f, "")) for f in self.fields[1:]])

    # ---- one message --------------------------------------------------------------------
    def message(self, m: Message, ev: list[tuple[int, str]]) -> None:
        """Append every row ``m`` causes to ``ev`` (SMTP-time rejects leave none)."""
        if m.reject:
            return
        plan = plan_delivery(self.site, m)
        qid = self._new_id()
        mid = m.message_id or self._mid()
        notices = [(n, self._mid()) for n in plan.notices]
        base = self._base(m, mid)
        self._intake(m, plan, qid, base, ev)
        self._expand(m, plan, qid, base, ev)
        ndr = f"<{notices[0][1]}>" if notices else ""
        self._deliveries(plan.rows, qid, base, plan.arrival_us, ndr, ev)
        for n, nmid in notices:
            self._notice(n, nmid, mid, base, ev)

    def _base(self, m: Message, mid: str) -> dict[str, str]:
        """Fields every row about ``m`` repeats."""
        local = m.sender.endswith("@" + self.site.domain)
        return {
            "message-id": f"<{mid}>", "network-message-id": self._guid(),
            "total-bytes": str(m.size),
            "message-subject": logged_subject(m.subject) if self.subjects else "",
            "sender-address": m.sender, "return-path": m.sender or "<>",
            "directionality": "Originating" if local or not m.sender else "Incoming",
            "custom-data": self.forest,
        }

    def _rcpt_fields(self, rcpts: list[str]) -> dict[str, str]:
        return {"recipient-address": ";".join(rcpts), "recipient-count": str(len(rcpts)),
                "recipient-status": ";".join(["To", *["Cc"] * (len(rcpts) - 1)])}

    def _intake(self, m: Message, plan: Plan, qid: str, base: dict[str, str],
                ev: list) -> None:
        ri, s, t = self.ri, self.server, plan.arrival_us
        rcpts = list(dict.fromkeys(m.recipients))
        env = self._rcpt_fields(rcpts)
        client = MAPI_CLIENTS.get(m.mua)
        if client and (m.sender.endswith("@" + self.site.domain) or not m.sender):
            # picked up from the mailbox by the Mailbox Transport Submission service
            db = self.db.get(self.site.mailbox_host.get(m.sender, ""), self._guid())
            t0 = t - ri(60_000, 400_000)
            ctx = (f"MDB:{db}, Mailbox:{self._guid()}, Event:{ri(10**6, 10**8)}, "
                   f"MessageClass:IPM.Note, CreationTime:{self.iso(t0 - ri(1_000, 90_000))}, "
                   f"ClientType:{client}, "
                   "SubmissionAssistant:MailboxTransportSubmissionEmailAssistant")
            ev.append((t0, self._row({
                "client-ip": self.ip, "client-hostname": s, "source-context": ctx,
                "source": "STOREDRIVER", "event-id": "NOTIFYMAPI",
                "sender-address": base["sender-address"],
                "message-info": f"{self.iso(t0)};LSRV={self.fqdn}:TOTAL-SUB=0.0"
                                f"{ri(10, 99)}|SA=0.0{ri(10, 99)}|MTSS-PEN=0.000",
                "custom-data": f"S:ItemEntryId=00-00-00-00-{ri(10, 99)}-{ri(10, 99)}"})))
            self.ms_id += 1 + ri(0, 3)
            ms = {**base, **env, "client-ip": self.ip, "client-hostname": self.fqdn,
                  "server-ip": self.ip, "server-hostname": s, "source-context": ctx,
                  "source": "STOREDRIVER", "internal-message-id": str(self.ms_id),
                  "message-info": "04I: ", "original-client-ip": m.client_ip,
                  "custom-data": f"S:MailboxDatabaseGuid={db};{self.forest}"}
            ev.append((t0 + ri(20_000, 40_000), self._row({**ms, "event-id": "RECEIVE"})))
            ev.append((t0 + ri(45_000, 59_000), self._row({**ms, "event-id": "SUBMIT"})))
            client_ip, client_host = self.ip, self.fqdn
            connector = f"{s}\\Default {s}"
        else:
            client_ip, client_host = m.client_ip, m.client_host
            connector = (f"{s}\\Client Proxy {s}" if m.source == "submission"
                         else f"{s}\\Default Frontend {s}")
        session = f"{self.rng.getrandbits(64):016X}"
        row = {**base, **env, "client-ip": client_ip, "client-hostname": client_host,
               "server-ip": self.ip, "server-hostname": s,
               "source-context": f"{session};{self.iso(t - ri(50_000, 900_000))};0",
               "connector-id": connector, "source": "SMTP", "event-id": "RECEIVE",
               "internal-message-id": qid, "message-info": "0cA: ",
               "original-client-ip": m.client_ip, "original-server-ip": self.ip}
        ev.append((t, self._row(row)))
        rand = self.rng.random
        if rand() < 0.3:  # shadow redundancy: a copy is kept on a second server
            ev.append((t + ri(1_000, 9_000), self._row({
                **base, **env, "server-hostname": s, "source": "SMTP",
                "event-id": "HAREDIRECT", "internal-message-id": qid,
                "source-context": f"{self.shadow} = 250 2.6.0 <{base['message-id'][1:-1]}> "
                                  f"[InternalId={self.rng.getrandbits(40)}, "
                                  f"Hostname={self.shadow}] Queued mail for redundancy"})))
        if rand() < 0.5:  # a transport agent logs its work on the message
            ev.append((t + ri(10_000, 60_000), self._row({
                **base, **env, "client-hostname": s, "source": "AGENT",
                "event-id": "AGENTINFO", "internal-message-id": qid,
                "custom-data": f"S:AMA=SUM|action=p|error=|atch=0;S:CompCost=|ETR=0;"
                               f"{self.forest}"})))

    def _expand(self, m: Message, plan: Plan, qid: str, base: dict[str, str],
                ev: list) -> None:
        lists = self.site.lists
        rcpts = list(dict.fromkeys(m.recipients))
        direct = {r for r in rcpts if r not in lists}
        t = plan.arrival_us + (plan.active_us - plan.arrival_us) // 2
        # a group whose members include groups: each nested group is expanded in turn
        groups = [r for r in rcpts if r in lists]
        for group in groups:
            groups += [g for g in lists[group] if g in lists and g not in groups]
        for i, group in enumerate(groups):
            members = lists[group]
            common = {**base, "server-hostname": self.server, "source": "ROUTING",
                      "internal-message-id": qid, "related-recipient-address": group}
            ev.append((t + i * 500, self._row({
                **common, "event-id": "EXPAND", "recipient-address": ";".join(members),
                "recipient-count": str(len(members))})))
            for dup in direct.intersection(members):  # a member also addressed directly
                ev.append((t + i * 500 + 1, self._row({
                    **common, "event-id": "DUPLICATEEXPAND", "recipient-address": dup,
                    "recipient-count": "1"})))

    def _deliveries(self, rows: list[Row], qid: str, base: dict[str, str], arrival: int,
                    ndr: str, ev: list) -> None:
        """One row per delivery batch and outcome (FAIL: one per recipient)."""
        seen: set[tuple[str, int]] = set()
        groups: dict[tuple[int, str], tuple[Batch, list[tuple[int, str, str]]]] = {}
        for t, rcpt, _orig, code, batch in rows:
            key = (rcpt, batch.attempt)
            if key in seen:  # the list's copy of a direct recipient: Exchange sends one
                continue
            seen.add(key)
            status = OUTCOMES[code][0]
            groups.setdefault((id(batch), status), (batch, []))[1].append((t, rcpt, code))
        origin = self.iso(arrival)
        for (_, status), (batch, items) in groups.items():
            common = {**base, "internal-message-id": qid, "client-ip": self.ip,
                      "client-hostname": self.server,
                      "message-info": f"{origin};SRV={self.fqdn}:TOTAL-HUB="
                                      f"{(items[-1][0] - arrival) / 1e6:.3f}"}
            if status == "bounced":
                for t, rcpt, code in items:
                    ev.append((t, self._row({**common, **self._failure(batch, rcpt, code),
                                             "event-id": "FAIL", "reference": ndr})))
            elif status == "deferred":
                replies = [self._failure(batch, rcpt, code) for _, rcpt, code in items]
                ev.append((items[0][0], self._row({
                    **common, **replies[0], "event-id": "DEFER",
                    "recipient-address": ";".join(r for _, r, _ in items),
                    "recipient-status": ";".join(x["recipient-status"] for x in replies),
                    "recipient-count": str(len(items))})))
            else:
                ev.append((items[-1][0], self._row({**common, **self._sent(batch, items, base),
                                                    "recipient-count": str(len(items))})))

    def _sent(self, batch: Batch, items: list[tuple[int, str, str]],
              base: dict[str, str]) -> dict[str, str]:
        rcpts = ";".join(r for _, r, _ in items)
        if batch.transport == "lmtp":  # a mailbox database on this server
            return {"server-ip": self.ip, "server-hostname": self.server,
                    "source": "STOREDRIVER", "event-id": "DELIVER",
                    "recipient-address": rcpts,
                    "source-context": f"MDB:{self.db.get(batch.relay) or self._guid()}"}
        ip = self.site.hosts.get(batch.relay, "198.51.100.250")
        style = self.site.reply_style.get(items[0][1].rpartition("@")[2], "postfix")
        if style == "exo":
            host = f"AM5PR0{self.ri(1, 9)}01MB{self.ri(1000, 9999)}.eurprd0{self.ri(1, 8)}" \
                   ".prod.cloudmail.example"
            reply = (f"250 2.6.0 {base['message-id']} [InternalId={self.rng.getrandbits(42)}, "
                     f"Hostname={host}] Queued mail for delivery")
        else:
            reply = f"250 2.0.0 Ok: queued as {self.rng.getrandbits(40):010X}"
        return {"server-ip": ip, "server-hostname": batch.relay, "source": "SMTP",
                "event-id": "SEND", "connector-id": "Outbound to Internet",
                "source-context": f";{reply};ClientSubmitTime:", "recipient-address": rcpts,
                "recipient-status": ";".join(["250 2.1.5 Recipient OK"] * len(items))}

    def _failure(self, batch: Batch, rcpt: str, code: str) -> dict[str, str]:
        """recipient, status and source of a FAIL or DEFER."""
        ip = self.site.hosts.get(batch.relay, "198.51.100.250")
        if code == "bounced" and batch.transport == "lmtp":
            status, source = "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found", "ROUTING"
        elif code == "bounced":
            status, source = (f"550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown "
                              "in virtual mailbox table"), "SMTP"
        elif code == "loop":
            status, source = f"554 5.4.6 {too_many_hops(rcpt)}", "SMTP"
        elif code == "quota":
            status, source = ("452 4.2.2 STOREDRV.Deliver.Exception:QuotaExceededException."
                              "MapiExceptionShutoffQuotaExceeded; Failed to process message "
                              "due to a transient exception with message [Mailbox full]"),\
                "STOREDRIVER"
        elif code == "greylist":
            status, source = ('451 4.4.0 Primary target IP address responded with: "450 4.2.0 '
                              f'<{rcpt}>: Recipient address rejected: Greylisted." '
                              f"{_FAILOVER} The last endpoint attempted was {ip}:25"), "SMTP"
        else:
            status, source = ('451 4.4.0 Primary target IP address responded with: "421 4.2.1 '
                              f'Unable to connect." {_FAILOVER} The last endpoint attempted '
                              f"was {ip}:25"), "SMTP"
        relay = self.server if batch.transport == "lmtp" else batch.relay
        return {"recipient-address": rcpt, "recipient-status": status, "source": source,
                "server-hostname": relay, "recipient-count": "1"}

    def _notice(self, n: Message, nmid: str, mid: str, parent: dict[str, str],
                ev: list) -> None:
        """The non-delivery report Exchange writes (DSN) and its own delivery."""
        plan = plan_delivery(self.site, n)
        qid = self._new_id()
        base = {**self._base(n, nmid), "return-path": "<>",
                "sender-address": f"{NDR_SENDER}@{self.site.domain}",
                "message-subject": "Undeliverable: " + parent["message-subject"]
                if self.subjects else ""}
        ev.append((plan.arrival_us, self._row({
            **base, "server-hostname": self.server, "source": "DSN", "event-id": "DSN",
            "internal-message-id": qid, "recipient-address": n.recipients[0],
            "recipient-count": "1", "reference": f"<{mid}>"})))
        self._deliveries(plan.rows, qid, base, plan.arrival_us, "", ev)


def render_exchange(site: Site, messages: Iterable[Message], *, seed: int = 0,
                    server: str = "EXCH01", version: str = "2016",
                    headers: bool = True) -> Iterator[str]:
    """Header and rows of the message tracking log for ``messages``, in time order.

    version: "2010", "2013" or "2016" (field layout); headers=False: subject logging off.
    """
    r = ExchangeRenderer(site, seed=seed, server=server, version=version, subjects=headers)
    messages = messages if isinstance(messages, Mail) else list(messages)
    yield from r.header(_first_us(messages) - LEAD_US)
    for chunk in r.chunks(messages):
        yield from chunk


def write_exchange(path: str | Path, site: Site, messages: Iterable[Message], *,
                   seed: int = 0, server: str = "EXCH01", version: str = "2016",
                   headers: bool = True, compresslevel: int = 6) -> int:
    """Stream the log to ``path`` (gzip if it ends in .gz); return lines written."""
    r = ExchangeRenderer(site, seed=seed, server=server, version=version, subjects=headers)
    messages = messages if isinstance(messages, Mail) else list(messages)
    return write_lines(path, chain([r.header(_first_us(messages) - LEAD_US)],
                                   r.chunks(messages)), compresslevel)


def _first_us(messages: Iterable[Message]) -> int:
    """The first message's time (the log's creation date), 0 for none."""
    first = span(messages)
    return to_us(first[0]) if first else 0


# ---- Microsoft 365 ---------------------------------------------------------------------
M365_TRACE_TYPE = "#TYPE Deserialized.Microsoft.Exchange.Management.FfoReporting.MessageTrace"
M365_TRACE_COLUMNS = ("Organization", "MessageId", "Received", "SenderAddress",
                      "RecipientAddress", "Subject", "Status", "ToIP", "FromIP", "Size",
                      "MessageTraceId", "StartDate", "EndDate", "Index")
M365_SUMMARY_COLUMNS = ("origin_timestamp_utc", "sender_address", "recipient_status",
                        "message_subject", "total_bytes", "message_id", "network_message_id",
                        "original_client_ip", "directionality", "connector_id",
                        "delivery_priority")
_TRACE_STATUS = {"sent": "Delivered", "bounced": "Failed", "deferred": "Pending"}
_SUMMARY_EVENT = {"Delivered": "Deliver", "Failed": "Fail", "Pending": "Defer",
                  "Expanded": "Expand"}


def culture_time(t: datetime, culture: str) -> str:
    """A UTC time as Export-Csv writes it in a culture (en-US, en-GB) or ISO 8601."""
    if culture == "en-US":
        h12 = t.hour % 12 or 12
        return f"{t.month}/{t.day}/{t.year} {h12}:{t:%M:%S} {'AM' if t.hour < 12 else 'PM'}"
    if culture == "en-GB":
        return f"{t:%d/%m/%Y %H:%M:%S}"
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}0"


def _final(site: Site, m: Message) -> tuple[Plan, dict[str, str]]:
    """The plan and each recipient's last status, lists first as 'Expanded'."""
    plan = plan_delivery(site, m)
    status = {r: "Expanded" for r in dict.fromkeys(m.recipients) if r in site.lists}
    for _t, rcpt, _orig, code, _b in plan.rows:
        status[rcpt] = _TRACE_STATUS[OUTCOMES[code][0]]
    return plan, status


def render_m365(site: Site, messages: Iterable[Message], *, seed: int = 0,
                start: datetime | None = None, end: datetime | None = None,
                style: str = "trace", culture: str = "en-US",
                organization: str | None = None, headers: bool = True) -> list[str]:
    """A Microsoft 365 export of the messages received in [start, end).

    style "trace": ``Get-MessageTrace | Export-Csv`` (``#TYPE`` line, every field quoted,
    newest first); "summary": the historical search summary report CSV. Ids come from
    ``seed`` and each message's own seed, so two exports of overlapping windows agree on
    the rows they share. headers=False blanks the subjects (a redacted export).
    """
    org = organization or site.domain.replace(".", "") + ".onmicrosoft.com"
    ndr = f"{NDR_SENDER}@{site.domain}"
    rows: list[tuple[int, list[str]]] = []
    for m in messages:
        if m.reject or (start and m.time < start) or (end and m.time >= end) or (
                m.time_us < site.log_start):  # received before the export's window
            continue
        plan, status = _final(site, m)
        items = [(m, status)]
        for n in plan.notices:
            items.append((n, _final(site, n)[1]))
        for msg, st in items:
            rng = random.Random(f"{seed}:{msg.seed}")  # the same ids in every export
            mid = msg.message_id or f"{rng.getrandbits(128):032x}@{org}"
            trace = "-".join(f"{rng.getrandbits(b):0{b // 4}x}" for b in (32, 16, 16, 16, 48))
            sender = msg.sender or ndr
            subject = logged_subject(msg.subject) if msg.sender else \
                "Undeliverable: " + logged_subject(m.subject)
            subject = subject if headers else ""
            received = from_us(msg.time_us)
            if style == "summary":
                rstat = ";".join(f"{r}##Receive, {_SUMMARY_EVENT[s]}" for r, s in st.items())
                local = sender.endswith("@" + site.domain)
                rows.append((msg.time_us, [
                    received.strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z", sender, rstat,
                    subject, str(msg.size), f"<{mid}>", trace, msg.client_ip,
                    "Originating" if local else "Incoming", "", "Normal"]))
                continue
            for rcpt, s in st.items():
                ext = not rcpt.endswith("@" + site.domain)
                mx = site.mx_of.get(rcpt.rpartition("@")[2], "") if ext else ""
                rows.append((msg.time_us, [
                    org, f"<{mid}>", culture_time(received, culture), sender, rcpt, subject, s,
                    site.hosts.get(mx, "") if s == "Delivered" else "", msg.client_ip,
                    str(msg.size), trace, "", "", ""]))
    if style == "summary":
        rows.sort(key=lambda r: r[0])
        return [",".join(M365_SUMMARY_COLUMNS)] + [",".join(quote(v) for v in r)
                                                   for _, r in rows]
    rows.sort(key=lambda r: -r[0])  # Get-MessageTrace lists the newest first
    lo = culture_time(start, culture) if start else ""
    hi = culture_time(end, culture) if end else ""
    out = [M365_TRACE_TYPE, ",".join(f'"{c}"' for c in M365_TRACE_COLUMNS)]
    for i, (_, r) in enumerate(rows):
        r[11], r[12], r[13] = lo, hi, str(i)
        out.append(",".join('"' + v.replace('"', '""') + '"' for v in r))
    return out


def write_m365(path: str | Path, site: Site, messages: Iterable[Message], *, seed: int = 0,
               start: datetime | None = None, end: datetime | None = None,
               style: str = "trace", culture: str = "en-US", headers: bool = True) -> int:
    """Write ``render_m365(...)`` to ``path`` (gzip if it ends in .gz); return lines."""
    return write_lines(path, [render_m365(site, messages, seed=seed, start=start, end=end,
                                          style=style, culture=culture, headers=headers)])
