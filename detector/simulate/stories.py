"""Days in the shapes real servers write (issue 11): message identity, nested lists, list
bounces and loops told as one story, and bounces of mail queued before the log began.

Each builder takes the site, a seeded generator and a start, and returns ``(messages,
truth)`` like ``traffic``'s. Thresholds are read from the built-in rules as loaded (never
written here), so a day one short of a rule moves with the rule:

- ``fixed_message_id`` (nothing): a storage appliance and a broken backup script each
  send the day's different alerts (recipients, sizes, subjects) under one fixed
  Message-ID. No loop, no storm.
- ``nested_list_copies`` (fanout): ``all.wards@`` is an MTA alias whose members are the
  list server's ward lists, which share members; each list sends its own copy, so a
  member on two or three wards gets two or three copies (Bedlam DL3). The poster has no
  earlier mail (the baseline fanout rule cannot fire): the copies must be counted.
  ``nested_list_copies_one_short`` (nothing): one shared membership fewer than the
  ``fanout_duplicates`` rule's ``min_duplicates``.
- ``list_bounces`` (bounce_storm on the list): a post to a Mailman list with VERP
  (``list-bounces+member=domain@``); dead local members bounce at once, dead remote ones
  come back 10-60 minutes later as non-delivery notices from the remote servers (null
  sender, to the VERP address). ``list_bounces_one_short`` (nothing): ``min_bounces - 1``
  bounces in all, told the same way.
- ``repeating_loop`` (one mail_loop): a monitoring alert every three minutes for an hour,
  each going round between the MTA and a pager gateway until the gateway refuses it
  (``554 5.4.6 Too many hops``). ``repeating_loop_short`` (nothing): each alert passes
  the MTA one time fewer than the ``mail_loop_hops`` rule's ``min_passes`` and the
  gateway then drops it (its script's own hop check): no pass count or 5.4.6 bounce
  reaches a loop rule's threshold.
- ``prelog_bounces`` (bounce_storm, no list): the log begins (rotated) while the
  evening's mail to a merged trust's old domain waits in the queue (its MX was down);
  at the flush, the domain answers again with every mailbox deleted: a burst of 5.1.1
  bounces of messages whose intake is not in the log.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from detector.simulate import clients, naming
from detector.simulate.delivery import count_final
from detector.simulate.scenario import Message, Site, add_people, to_us
from detector.simulate.stream import Messages
from detector.simulate.traffic import iso, people_of

Truth = dict[str, object]
Built = tuple[Messages, list[Truth]]
Build = Callable[[Site, random.Random, datetime, str], Built]
#: Mailman sends one envelope to at most this many members (SMTP_MAX_RCPTS)
MAX_RCPTS = 500
#: domains of bulk senders: nobody's list membership
_BULK = frozenset({"mailing.example.net", "news.example"})


@dataclass(frozen=True)
class Limits:
    """The thresholds these days sit on, from the built-in rules as loaded."""

    bounces: int  # bounce_storm.min_bounces
    duplicates: int  # fanout_duplicates.min_duplicates
    fanout_deliveries: int  # fanout.min_deliveries
    passes: int  # mail_loop_hops.min_passes


@lru_cache(maxsize=1)
def limits() -> Limits:
    from detector.assets import builtin_rules_dir
    from detector.rules.loader import load_rules

    rules = {r.name: r for r in load_rules(builtin_rules_dir())}
    return Limits(
        bounces=math.ceil(rules["bounce_storm"].value("min_bounces")),
        duplicates=math.ceil(rules["fanout_duplicates"].value("min_duplicates")),
        fanout_deliveries=math.ceil(rules["fanout"].value("min_deliveries")),
        passes=math.ceil(rules["mail_loop_hops"].value("min_passes")),
    )


# ---- the list server ----------------------------------------------------------------------
def list_server(site: Site) -> tuple[str, str]:
    """(mail domain, fqdn) of the site's Mailman host, which the MTA relays its lists to and
    which sends the lists' copies back through the MTA."""
    fqdn = dom = f"lists.{site.domain}"
    if dom not in site.mx_of:
        site.hosts[fqdn] = "10.1.0.30"
        site.mx_of[dom] = site.out_of[dom] = fqdn
        site.reply_style[dom] = "postfix"
    return dom, fqdn


def _from_list_server(site: Site, rng: random.Random, sender: str, rcpts: list[str],
                      when: datetime, post: Message, subject: str) -> Message:
    fqdn = list_server(site)[1]
    return Message(time=when, sender=sender, recipients=rcpts, subject=subject,
                   message_id=post.message_id, in_reply_to=post.in_reply_to,
                   references=list(post.references), size=post.size + rng.randint(1_200, 1_900),
                   client_host=fqdn, client_ip=site.hosts[fqdn], helo=fqdn, mua="mailman",
                   source="smtp", tls=False, seed=rng.getrandbits(32))


def _prefix(address: str) -> str:
    """Mailman's default subject prefix: ``[Ward01.staff] ``."""
    name = address.partition("@")[0]
    return f"[{name[:1].upper()}{name[1:]}] "


def _alive_people(site: Site, rng: random.Random, n: int) -> list[str]:
    """``n`` local people who are not gone (adding some if the site is short of them)."""
    pool = [u for u in people_of(site) if u not in site.gone]
    if len(pool) < n:
        pool += add_people(site, rng, n - len(pool))
    return rng.sample(pool, n)


def _partners(site: Site) -> list[str]:
    """Outside domains whose MX takes mail at once (not down, no greylisting, not bulk)."""
    return [d for d, *_ in naming.EXTERNAL
            if d not in site.down | site.greylisting | _BULK and d in site.mx_of]


def _new_sender(site: Site, rng: random.Random) -> str:
    """A poster with no other mail that day (no baseline: fanout's own rule stays out)."""
    return add_people(site, rng, 1)[0]


# ---- point 2: message identity ------------------------------------------------------------
APPLIANCE_ALERTS = (
    "Warning: Disk {n} predictive failure reported", "Info: Snapshot completed for vol-ehr-0{n}",
    "Critical: Controller A cache battery low", "Info: Firmware check finished ({n} updates)",
    "Warning: Pool A is {n}0% full", "Info: Scrub of vdisk{n} completed without errors",
    "Warning: Port {n} link down", "Info: Daily health report",
)


def fixed_message_id(site: Site, rng: random.Random, start: datetime, *, alerts: int = 40,
                     reports: int = 12) -> Built:
    """A storage appliance sends ``alerts`` different alerts through the day, and a broken
    backup script on the MTA host ``reports`` reports, each under its one fixed
    Message-ID: different recipients, sizes and subjects, never the same message."""
    app = f"sanmgr.{site.domain}"
    site.hosts[app] = "10.1.4.52"
    team = _alive_people(site, rng, 6)
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    desk = f"it.servicedesk@{site.domain}"
    out: list[Message] = []
    for _ in range(alerts):
        t = day + timedelta(minutes=rng.uniform(20, 23.5 * 60))
        rcpts = rng.choice(([desk], [desk, *rng.sample(team, 2)], rng.sample(team, 3),
                            ["support@supplier.example"]))
        subject = f"[SANMGR] {rng.choice(APPLIANCE_ALERTS).format(n=rng.randint(1, 9))}"
        out.append(Message(time=t, sender=f"sanmgr@{site.domain}", recipients=rcpts,
                           subject=subject, message_id=f"alert@{app}",
                           size=rng.randint(1_200, 24_000), client_host=app,
                           client_ip=site.hosts[app], helo=app, is_auto=True, mua="script",
                           source="smtp", tls=False, seed=rng.getrandbits(32)))
    for _ in range(reports):  # a script that writes its own, constant, Message-ID header
        t = day + timedelta(minutes=rng.uniform(20, 23.5 * 60))
        who = rng.sample(team, rng.randint(1, 3))
        out.append(Message(time=t, sender=f"root@{site.domain}", recipients=who,
                           subject=f"Backup report: {rng.randint(2, 40)} jobs, "
                                   f"{rng.randint(0, 3)} failed",
                           message_id=f"backup-report@mx1.{site.domain}",
                           size=rng.randint(2_000, 60_000), mua="script", source="pickup",
                           is_auto=True, seed=rng.getrandbits(32)))
    return out, []


def nested_list_copies(site: Site, rng: random.Random, start: datetime, *, duplicates: int,
                       singles: int = 900, wards: int = 8,
                       subject: str = "Visiting hours from Monday") -> Built:
    """A post to the alias ``all.wards@``, whose members are the list server's ward lists;
    members on two or three wards get a copy from each (``duplicates`` copies beyond one
    per member in all)."""
    dom, fqdn = list_server(site)
    umbrella = f"all.wards@{site.domain}"
    subs = [f"ward{i:02d}.staff@{dom}" for i in range(1, wards + 1)]
    site.lists[umbrella] = subs
    site.cache.clear()
    three = duplicates // 4
    two = duplicates - 2 * three
    people = _alive_people(site, rng, singles + two + three)
    ward_members: list[list[str]] = [[] for _ in subs]
    for i, who in enumerate(people):
        copies = 1 if i < singles else 2 if i < singles + two else 3
        for w in rng.sample(range(wards), copies):
            ward_members[w].append(who)
    for members in ward_members:
        rng.shuffle(members)
    sender = _new_sender(site, rng)
    start = start + timedelta(microseconds=rng.randrange(1, 1_000_000))
    post = clients.from_local(site, rng, sender, [umbrella], start, subject)
    msgs = [post]
    t = start + timedelta(seconds=rng.uniform(20, 60))  # Mailman's runners pick them up
    for address, members in zip(subs, ward_members, strict=True):
        local = address.partition("@")[0]
        for i in range(0, len(members), MAX_RCPTS):
            msgs.append(_from_list_server(site, rng, f"{local}-bounces@{dom}",
                                          members[i:i + MAX_RCPTS], t, post,
                                          _prefix(address) + subject))
            t += timedelta(seconds=rng.uniform(1.5, 6))
    member_deliveries = sum(len(m) for m in ward_members)
    return msgs, [{
        "kind": "fanout", "list": umbrella, "root_message_id": post.message_id,
        "root_sender": sender, "subject": subject, "start": iso(post.time),
        "end": iso(max(m.time for m in msgs)), "messages": len(msgs),
        "deliveries": sum(count_final(site, m) for m in msgs),
        "member_deliveries": member_deliveries, "recipients": len(people),
        "duplicates": member_deliveries - len(people), "sublists": wards,
        "members_by_copies": {"1": singles, "2": two, "3": three},
        "list_server": fqdn, "sender_history": 0,
    }]


# ---- point 3: bounces and loops as one story ----------------------------------------------
NDR_SUBJECTS = {"postfix": "Undelivered Mail Returned to Sender",
                "gsmtp": "Delivery Status Notification (Failure)", "exo": "Undeliverable: "}


def list_bounces(site: Site, rng: random.Random, start: datetime, *, dead: int,
                 later_share: float = 0.45, size: int | None = None,
                 subject: str = "Car parking consultation: have your say") -> Built:
    """A post to ``staff.forum@lists.`` (Mailman, VERP) with ``dead`` dead members: some
    refused at once by the MTA (local mailboxes gone, remote servers refusing at RCPT),
    the rest accepted by remote servers that send a non-delivery notice later."""
    dom, fqdn = list_server(site)
    address = f"staff.forum@{dom}"
    late = round(dead * later_share)
    at_once = dead - late
    size = size or max(600, 2 * dead)
    local_dead = math.ceil(at_once * 0.7)
    n_ext = max(late + (at_once - local_dead) + 20, size // 3)
    partners = _partners(site)
    taken: set[str] = set()
    external = [naming.person_address(rng, rng.choice(partners), taken) for _ in range(n_ext)]
    # the dead mailboxes are new names: no other mail of the day goes to them
    dead_local = add_people(site, rng, local_dead)
    site.gone = site.gone | frozenset(dead_local) | frozenset(external[:at_once - local_dead])
    local = dead_local + _alive_people(site, rng, size - n_ext - local_dead)
    site.cache.clear()
    later = external[at_once - local_dead:at_once - local_dead + late]
    members = local + external
    rng.shuffle(members)
    sender = _new_sender(site, rng)
    start = start + timedelta(microseconds=rng.randrange(1, 1_000_000))
    post = clients.from_local(site, rng, sender, [address], start, subject)
    msgs = [post]
    t = start + timedelta(seconds=rng.uniform(20, 60))
    verp: dict[str, Message] = {}
    list_local = address.partition("@")[0]
    for member in members:  # VERP: one envelope per member, the member in the sender
        mlocal, _, mdom = member.partition("@")
        copy = _from_list_server(site, rng, f"{list_local}-bounces+{mlocal}={mdom}@{dom}",
                                 [member], t, post, _prefix(address) + subject)
        verp[member] = copy
        msgs.append(copy)
        t += timedelta(seconds=rng.uniform(0.03, 0.2))
    notices = []
    for member in later:  # the remote server accepted the copy, then found no mailbox
        mdom = member.partition("@")[2]
        copy = verp[member]
        when = copy.time + timedelta(minutes=rng.uniform(10, 60))
        n = clients.from_outside(site, rng, f"postmaster@{mdom}", [copy.sender], when,
                                 NDR_SUBJECTS[site.reply_style.get(mdom, "postfix")],
                                 is_auto=True)
        if n.subject.endswith(": "):
            n.subject += copy.subject
        n.sender, n.mua, n.size = "", "remote", rng.randint(3_000, 8_000) + copy.size
        n.in_reply_to, n.references = None, []
        notices.append(n)
    msgs += notices
    return msgs, [{
        "kind": "bounce_storm", "list": address, "root_message_id": post.message_id,
        "root_sender": sender, "subject": subject, "start": iso(post.time),
        "end": iso(max(m.time for m in msgs)), "messages": len(msgs),
        "deliveries": sum(count_final(site, m) for m in msgs), "list_size": len(members),
        "bounced": dead, "bounced_at_once": at_once, "bounced_later": late,
        "later_notices": len(notices), "verp": True, "list_server": fqdn,
        "bounces_address": f"{list_local}-bounces@{dom}",
    }]


LOOP_ALERTS = ("Disk /var is CRITICAL", "Load average is WARNING", "Swap usage is CRITICAL",
               "HTTP is CRITICAL", "Replication lag is WARNING")


def repeating_loop(site: Site, rng: random.Random, start: datetime, *, passes: int = 13,
                   refused: bool = True, alerts: int = 20,
                   every: timedelta = timedelta(minutes=3)) -> Built:
    """Nagios mails ``oncall@alerts.`` every ``every``; the MTA relays that domain to the
    pager gateway, whose smarthost for it is the MTA again. Each alert passes the MTA
    ``passes`` times; with ``refused`` the gateway then refuses it (Sendmail's MaxHopCount:
    ``554 5.4.6 Too many hops``) and the MTA bounces it to Nagios, else the gateway's
    script drops it silently."""
    gw, nagios = f"pager-gw.{site.domain}", f"nagios.{site.domain}"
    adom = f"alerts.{site.domain}"
    site.hosts[gw], site.hosts[nagios] = "10.1.4.61", "10.1.4.40"
    site.mx_of[adom] = site.out_of[adom] = gw
    site.reply_style[adom] = "postfix"
    site.cache.clear()
    rcpt, sender = f"oncall@{adom}", f"nagios@{site.domain}"
    msgs: list[Message] = []
    firsts: list[Message] = []
    for k in range(alerts):
        t = start + k * every + timedelta(seconds=rng.uniform(0, 20), microseconds=rng.randrange(
            1, 1_000_000))
        what = rng.choice(LOOP_ALERTS)
        subject = f"** PROBLEM Service Alert: ehr-db0{rng.randint(1, 3)}/{what} **"
        mid = f"{int(t.timestamp())}.{rng.randint(10_000, 99_999)}.nagios@{nagios}"
        size = rng.randint(1_400, 2_200)
        for p in range(passes):
            host = nagios if p == 0 else gw
            m = Message(time=t, sender=sender, recipients=[rcpt], subject=subject,
                        message_id=mid, size=size + 640 * p,  # two Received headers a pass
                        client_host=host, client_ip=site.hosts[host], helo=host,
                        is_auto=True, mua="script", source="smtp", tls=False,
                        loop=refused and p == passes - 1, seed=rng.getrandbits(32))
            msgs.append(m)
            if p == 0:
                firsts.append(m)
            t += timedelta(seconds=rng.uniform(0.6, 2.5))
    truth: Truth = {
        "kind": "mail_loop", "list": None, "root_message_id": firsts[0].message_id,
        "root_sender": sender, "start": iso(firsts[0].time),
        "end": iso(max(m.time for m in msgs)), "messages": len(msgs),
        "deliveries": sum(count_final(site, m) for m in msgs), "occurrences": alerts,
        "passes_per_alert": passes, "loop_bounces": alerts if refused else 0,
        "recipient": rcpt, "relay": gw, "message_ids": [m.message_id for m in firsts],
    }
    return msgs, [truth]


def prelog_bounces(site: Site, rng: random.Random, start: datetime, *, bounces: int,
                   domain: str = "oldtrust.example") -> Built:
    """The evening's mail to ``domain`` (whose MX was down) waits in the queue; the log
    begins five minutes before ``start``, when the queue is flushed and the domain
    answers with every mailbox gone: ``bounces`` bounced deliveries at once, of messages
    whose intake (client, cleanup, Message-ID) was logged before the log's first line."""
    mx = f"mx.{domain}"
    site.mx_of[domain], site.out_of[domain] = mx, f"mail.{domain}"
    site.hosts[mx], site.hosts[f"mail.{domain}"] = "198.51.100.77", "198.51.100.78"
    site.reply_style[domain] = "postfix"
    flush = to_us(start)
    site.outages = {**site.outages, domain: (flush, flush)}
    site.log_start = flush - 300_000_000
    people = _alive_people(site, rng, 60)
    taken: set[str] = set()
    gone: list[str] = []
    msgs: list[Message] = []
    while len(gone) < bounces:
        n = min(rng.choice((1, 1, 2, 3)), bounces - len(gone))
        rcpts = [naming.person_address(rng, domain, taken) for _ in range(n)]
        gone += rcpts
        t = start - timedelta(hours=rng.uniform(1, 11))
        msgs.append(clients.from_local(site, rng, rng.choice(people), rcpts, t,
                                       clients.subject_for(rng)))
    site.gone = site.gone | frozenset(gone)
    site.cache.clear()
    return msgs, [{
        "kind": "bounce_storm", "list": None, "root_message_id": None, "root_sender": None,
        "start": iso(start), "log_start": iso(start - timedelta(minutes=5)),
        "messages": len(msgs), "bounced": bounces, "deliveries": bounces,
        "recipient_domain": domain, "relay": mx, "senders": len({m.sender for m in msgs}),
        "queued_from": iso(min(m.time for m in msgs)),
        "queued_until": iso(max(m.time for m in msgs)),
        # a Microsoft 365 trace of the day lists messages received that day only
        "unseen_in": ["m365"],
    }]


# ---- the registry -------------------------------------------------------------------------
def _days() -> dict[str, tuple[Build, str | None]]:
    """Day name -> (builder, the incident kind expected, None for nothing)."""
    def copies(short: bool) -> Build:
        def build(site: Site, rng: random.Random, t: datetime, dom: str) -> Built:
            x = limits()
            d = x.duplicates - 1 if short else math.ceil(x.duplicates * 1.5)
            return nested_list_copies(site, rng, t, duplicates=d)
        return build

    def bounces(short: bool) -> Build:
        def build(site: Site, rng: random.Random, t: datetime, dom: str) -> Built:
            x = limits()
            d = x.bounces - 1 if short else math.ceil(x.bounces * 1.5)
            return list_bounces(site, rng, t, dead=d)
        return build

    def loop(short: bool) -> Build:
        def build(site: Site, rng: random.Random, t: datetime, dom: str) -> Built:
            if short:
                return repeating_loop(site, rng, t, passes=limits().passes - 1, refused=False)
            return repeating_loop(site, rng, t)
        return build

    def prelog(site: Site, rng: random.Random, t: datetime, dom: str) -> Built:
        return prelog_bounces(site, rng, t, bounces=math.ceil(limits().bounces * 1.5))

    def fixed(site: Site, rng: random.Random, t: datetime, dom: str) -> Built:
        return fixed_message_id(site, rng, t)

    return {
        "nested_list_copies": (copies(False), "fanout"),
        "list_bounces": (bounces(False), "bounce_storm"),
        "repeating_loop": (loop(False), "mail_loop"),
        "prelog_bounces": (prelog, "bounce_storm"),
        "fixed_message_id": (fixed, None),
        "nested_list_copies_one_short": (copies(True), None),
        "list_bounces_one_short": (bounces(True), None),
        "repeating_loop_short": (loop(True), None),
    }


DAYS = _days()
#: days with an incident, and the kind it must be reported as
EXPECTED = {name: kind for name, (_, kind) in DAYS.items() if kind}
#: days where nothing may be reported above info
NOTHING = tuple(name for name, (_, kind) in DAYS.items() if kind is None)


def build(name: str, site: Site, rng: random.Random, start: datetime) -> Built:
    """Inject the day ``name``; a day where nothing is expected returns no truth."""
    builder, kind = DAYS[name]
    msgs, truth = builder(site, rng, start, site.domain)
    for t in truth:
        t["story"] = name
    return msgs, truth if kind else []


def for_format(truth: list[Truth], fmt: str) -> list[Truth]:
    """The injected incidents a log of format ``fmt`` can show."""
    return [t for t in truth if fmt not in t.get("unseen_in", ())]  # type: ignore[operator]
