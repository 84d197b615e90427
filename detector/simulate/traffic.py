"""Scenario builders: a day of ordinary mail, a reply-all storm, and storm look-alikes.

Every builder takes the ``Site`` and a seeded ``random.Random`` and returns
``(messages, truth)``; truth lists the injected incidents (only storms are incidents,
the look-alikes return an empty list). Builders may add a list to the site.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from detector.simulate import clients, naming
from detector.simulate import replies as replies_
from detector.simulate.delivery import count_final
from detector.simulate.scenario import Message, Site, ensure_list
from detector.simulate.stream import Mail, Messages, Stream

# relative mail volume per UTC hour of an office day (night trickle, morning peak)
HOURLY = (0.15, 0.1, 0.08, 0.08, 0.1, 0.2, 0.5, 1.2, 2.6, 3.2, 3.0, 2.8,
          2.2, 2.6, 2.9, 2.7, 2.2, 1.4, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2)
SPAM_HELOS = ("bad", "User", "WIN-9QL4SDRB93L", "localhost", "mail.example.com", "ylmf-pc")
Truth = dict[str, object]
#: a storm's truth lists its Message-IDs and repliers up to this many (else null)
TRUTH_LIST_LIMIT = 10_000


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def people_of(site: Site) -> list[str]:
    """The site's people (first.last@), not its role accounts (postmaster@, news@...)."""
    return [u for u in site.users if "." in u.split("@")[0]]


def _day(day: date | datetime) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _jitter(rng: random.Random, t: datetime) -> datetime:
    """Sub-second part for a time given to the second (queue ids use the microseconds)."""
    return t + timedelta(microseconds=rng.randrange(1, 1_000_000)) if not t.microsecond else t


def background(site: Site, rng: random.Random, day: date | datetime, messages: int = 2000, *,
               reject_share: float = 0.12, newsletter_list: str | None = None,
               newsletter_size: int = 2000) -> tuple[list[Message], list[Truth]]:
    """A day of ordinary traffic: person-to-person mail, small threads, inbound and
    outbound mail, notifications, auto-replies, cron mail and NOQUEUE rejects; with
    ``newsletter_list`` also the 07:30 newsletter to that list (no replies). Deferrals and
    bounces follow from the site (full mailboxes, greylisting, a dead MX, gone users)."""
    t0 = _day(day)
    people = people_of(site)[:20_000]
    partners = [d for d in site.mx_of if d not in site.down | {"news.example"}]
    outside = [naming.person_address(rng, rng.choice(partners), set()) for _ in range(300)]
    outside += [f"{rng.choice(naming.ROLE_LOCALPARTS)}@{rng.choice(partners)}" for _ in range(40)]
    hours = rng.choices(range(24), weights=HOURLY, k=messages)
    times = sorted(t0 + timedelta(hours=h, microseconds=rng.randrange(3_600_000_000))
                   for h in hours)
    out: list[Message] = []
    threads: list[list] = []  # [participants, last message, closes at]
    for t in times:
        if rng.random() < reject_share:
            out.append(_reject(site, rng, t, people))
            continue
        k = rng.random()
        if len(threads) > 40:  # forget threads that went quiet
            threads = [th for th in threads if th[2] > t][-40:]
        if k < 0.14 and threads and threads[-1][2] > t:  # an answer in an open thread
            th = rng.choice([th for th in threads if th[2] > t])
            who, parent = rng.choice(th[0]), th[1]
            if who == parent.sender:
                continue
            rcpts = [p for p in th[0] if p != who]
            m = clients.from_local(site, rng, who, rcpts, t,
                                   clients.reply_subject(clients.mua_of(who), parent.subject),
                                   parent=parent)
            th[1] = m
        elif k < 0.40:  # person to person(s); a third start a small thread
            who = rng.choice(people)
            rcpts = rng.sample(people, rng.choice((1, 1, 1, 2, 3, 4)))
            rcpts = [r for r in rcpts if r != who] or [rng.choice(people)]
            m = clients.from_local(site, rng, who, rcpts, t, clients.subject_for(rng))
            if rng.random() < 0.3:
                team = [who, *rng.sample(people, rng.randint(2, 7))]
                m.recipients = team[1:]
                threads.append([team, m, t + timedelta(hours=rng.uniform(0.5, 5))])
        elif k < 0.68:  # inbound from outside
            m = clients.from_outside(site, rng, rng.choice(outside),
                                     rng.sample(people, rng.choice((1, 1, 1, 2))), t,
                                     clients.subject_for(rng, clients.EXTERNAL_SUBJECTS))
        elif k < 0.82:  # outbound
            who = rng.choice(people)
            m = clients.from_local(site, rng, who, rng.sample(outside, rng.choice((1, 1, 2, 3))),
                                   t, clients.subject_for(rng))
        elif k < 0.945:  # application notifications (appointments, results)
            m = _app_mail(site, rng, t, rng.choice(people))
        elif k < 0.99:  # out-of-office answer to an outside sender (null envelope sender)
            src = clients.from_outside(site, rng, rng.choice(outside), [], t,
                                       rng.choice(clients.EXTERNAL_SUBJECTS))
            m = clients.auto_reply(site, rng, rng.choice(people), src.sender, t, src)
        else:  # cron and monitoring mail submitted with sendmail(1)
            m = Message(time=t, sender=f"root@{site.domain}",
                        recipients=[f"it.servicedesk@{site.domain}"],
                        subject=rng.choice(("Logwatch for mx1 (Linux)", "Cron <root@mx1> "
                                            "/usr/local/bin/backup-check", "[nagios] disk OK")),
                        message_id="", size=rng.randint(1_500, 40_000), mua="script",
                        source="pickup", is_auto=True, seed=rng.getrandbits(32))
        out.append(m)
    if newsletter_list:
        out += newsletter(site, rng, t0 + timedelta(hours=7, minutes=30),
                          list_address=newsletter_list, list_size=newsletter_size)[0]
    return out, []


def _reject(site: Site, rng: random.Random, t: datetime, people: list[str]) -> Message:
    kind = rng.choices(("rbl", "unknown_user", "relay", "auth"), weights=(55, 25, 10, 10))[0]
    ip = naming.ip_in(rng, "203.0.113")
    host = rng.choice(("unknown", "unknown", f"static-{ip.replace('.', '-')}.isp.example"))
    rcpt = (rng.choice(people) if kind == "rbl" else
            f"{rng.choice(naming.ROLE_LOCALPARTS)}{rng.randint(2, 99)}@{site.domain}"
            if kind == "unknown_user" else f"victim{rng.randint(1, 999)}@example.net")
    spam_dom = rng.choice(("bad.example", "cheap-meds.example", "lottery.example"))
    return Message(time=t, sender=f"{rng.choice(('spam', 'info', 'promo', 'admin'))}@{spam_dom}",
                   recipients=[rcpt], subject="", message_id="", client_host=host,
                   client_ip=ip, helo=rng.choice(SPAM_HELOS), reject=kind,
                   seed=rng.getrandbits(32))


def _app_mail(site: Site, rng: random.Random, t: datetime, to: str) -> Message:
    app = site.app_server
    return Message(time=t, sender=f"noreply@{site.domain}", recipients=[to],
                   subject=rng.choice(("Results available for review", "Appointment reminder",
                                       "Task assigned to you", "Shift swap approved")),
                   message_id=naming.message_id(rng, "app", t, app), size=rng.randint(3_000, 9_000),
                   client_host=app, client_ip=site.hosts[app], helo=app, is_auto=True,
                   mua="app", tls=False, seed=rng.getrandbits(32))


def storm(site: Site, rng: random.Random, start: datetime, *,
          list_address: str | None = None, list_size: int = 3000, repliers: int = 40,
          replies: int | None = None, duration: timedelta = timedelta(minutes=60),
          subject: str = "test", sender: str | None = None, double_share: float = 0.1,
          remove_me_share: float = 0.25, nested_share: float = 0.15, drifted: int = 3,
          auto_replies: int = 4, author_replies: bool = False,
          spread: timedelta | None = None) -> tuple[Messages, list[Truth]]:
    """NHS-style reply-all storm: a test mail to a large list, then ``repliers`` people
    answering to the whole list (every reply is expanded to every member again).

    ``repliers`` may outnumber the list: members answer first, then site people who are
    not on it post to it too (an open list); ``replies`` (default: ``repliers`` and a
    tenth again, who answer twice) may be larger still, people answering several times.
    ``author_replies``: the author is one of the repliers and answers last. ``spread``:
    replies evenly this far apart instead of in a burst. Storms of more than
    ``replies.EAGER_LIMIT`` replies come back as ``Mail``, their replies made on demand.
    """
    list_address = list_address or f"all.staff@{site.domain}"
    members = ensure_list(site, rng, list_address, list_size)
    start = _jitter(rng, start)
    local = [m for m in members if m.endswith("@" + site.domain)]
    sender = sender or rng.choice(local)
    root = clients.from_local(site, rng, sender, [list_address], start, subject,
                              msg_size=rng.randint(2_500, 9_000))
    pool = [m for m in local if m != sender]
    others: list[str] = []
    if repliers - author_replies > len(pool):
        on_list = set(members)
        others = [u for u in people_of(site) if u not in on_list and u != sender]
    plan = replies_.plan_replies(
        site, rng, list_address=list_address, pool=pool, others=others, author=sender,
        start=start, subject=subject, repliers=repliers, replies=replies, duration=duration,
        double_share=double_share, remove_me_share=remove_me_share,
        nested_share=nested_share, drifted=drifted, author_replies=author_replies,
        spread=spread)
    n = len(plan.who)
    made: Iterable[Message]
    if n <= replies_.EAGER_LIMIT:
        made = list(replies_.make_replies(site, rng, plan, root))
    else:
        seed = rng.getrandbits(64)
        made = Stream(lambda: replies_.make_replies(site, random.Random(seed), plan, root),
                      n, plan.time(0), plan.time(n - 1))
    autos = []
    for _ in range(auto_replies):  # vacation answers go to the author only
        t = start + timedelta(seconds=rng.uniform(2, 120))
        autos.append(clients.auto_reply(site, rng, rng.choice(local), sender, t, root))
    truth = _storm_truth(site, root, made, plan, members)
    truth["auto_replies"] = len(autos)
    if isinstance(made, list):
        return [root, *made, *autos], [truth]
    return Mail([root, *autos], [made]), [truth]


def _storm_truth(site: Site, root: Message, replies: Iterable[Message],
                 plan: replies_.ReplyPlan, members: list[str]) -> Truth:
    """What the storm is, counted over one pass of its replies."""
    deliveries = count_final(site, root)
    end = root.time
    ids: list[str] | None = [root.message_id]
    n = 0
    for m in replies:
        n += 1
        deliveries += count_final(site, m)
        end = max(end, m.time)
        if ids is not None:
            ids.append(m.message_id)
            if len(ids) > TRUTH_LIST_LIMIT:
                ids = None
    senders = sorted(set(plan.who))
    roles = plan.roles
    return {
        "kind": "reply_storm",
        "list": plan.list_address,
        "list_size": len(members),
        "root_message_id": root.message_id,
        "root_sender": root.sender,
        "subject": root.subject,
        "start": iso(root.time),
        "end": iso(end),
        "messages": 1 + n,
        "replies": n,
        "repliers": len(senders),
        "repliers_on_list": plan.on_list,
        "repliers_off_list": plan.off_list,
        "repeat_replies": n - len(senders),
        "deliveries": deliveries,
        "message_ids": ids,
        "replier_addresses": senders if len(senders) <= TRUTH_LIST_LIMIT else None,
        "remove_me_replies": roles.count(replies_.REMOVE_ME) + roles.count(replies_.DRIFT),
    }


def busy_small_thread(site: Site, rng: random.Random, start: datetime, *,
                      list_address: str | None = None, members: int = 25, replies: int = 22,
                      duration: timedelta = timedelta(minutes=60),
                      subject: str = "Rota changes for December") -> tuple[list[Message],
                                                                            list[Truth]]:
    """A lively thread on a small team list: many replies, but a small audience."""
    list_address = list_address or f"team.radiology@{site.domain}"
    team = ensure_list(site, rng, list_address, members)
    start = _jitter(rng, start)
    root = clients.from_local(site, rng, team[0], [list_address], start, subject)
    msgs = [root]
    talkers = team[: max(3, members // 2)]
    for off in sorted(rng.uniform(60, duration.total_seconds()) for _ in range(replies)):
        parent = msgs[-1] if rng.random() < 0.7 else rng.choice(msgs)
        who = rng.choice([p for p in talkers if p != parent.sender])
        rcpts = [parent.sender, list_address] if rng.random() < 0.6 else [list_address]
        msgs.append(clients.from_local(
            site, rng, who, rcpts, start + timedelta(seconds=off),
            clients.reply_subject(clients.mua_of(who), parent.subject), parent=parent))
    return msgs, []


def newsletter(site: Site, rng: random.Random, start: datetime, *,
               list_address: str | None = None, list_size: int = 2000,
               sender: str | None = None, auto_replies: int = 2) -> tuple[list[Message],
                                                                         list[Truth]]:
    """One large mailing to a list and no replies (a few out-of-office answers)."""
    list_address = list_address or f"news.letter@{site.domain}"
    ensure_list(site, rng, list_address, list_size)
    start = _jitter(rng, start)
    sender = sender or f"news@{site.domain}"
    title = f"Trust Weekly News – {start:%d %B}"
    m = _app_mail(site, rng, start, list_address)
    m.sender, m.subject, m.size = sender, naming.encode_subject(title, b=False), 96_000
    m.is_auto = False
    msgs = [m]
    for _ in range(auto_replies):
        away = rng.choice(site.lists[list_address])
        if away.endswith("@" + site.domain):
            t = start + timedelta(seconds=rng.uniform(3, 90))
            msgs.append(clients.auto_reply(site, rng, away, sender, t, m))
    return msgs, []


def _history(site: Site, rng: random.Random, sender: str, before: datetime,
             n: int = 4) -> list[Message]:
    """A few ordinary messages of ``sender`` earlier that day: the baseline rules compare with."""
    people = [u for u in people_of(site) if u != sender]
    out = []
    for i in range(n):
        t = before - timedelta(minutes=30 + 37 * i, seconds=rng.uniform(0, 30))
        out.append(clients.from_local(site, rng, sender, rng.sample(people, rng.randint(1, 3)),
                                      _jitter(rng, t), clients.subject_for(rng)))
    return out


def _truth(kind: str, list_address: str | None, root: Message, msgs: list[Message],
           site: Site, **extra: object) -> Truth:
    return {"kind": kind, "list": list_address, "root_message_id": root.message_id,
            "root_sender": root.sender, "start": iso(root.time),
            "end": iso(max(m.time for m in msgs)), "messages": len(msgs),
            "deliveries": sum(count_final(site, m) for m in msgs), **extra}


AUTO_PREFIXES = {
    "recall": ("Recall: ", "Message Recall Failure: ", "Recall: "),
    "out_of_office": ("Automatic reply: ", "Out of Office: ", "Auto: "),
    "read_receipt": ("Read: ", "Read: ", "Not read: "),
}


def auto_storm(site: Site, rng: random.Random, start: datetime, *,
               list_address: str | None = None, list_size: int = 2500, senders: int = 30,
               messages: int | None = None, duration: timedelta = timedelta(minutes=40),
               spread: timedelta | None = None, subject: str = "Budget update",
               cause: str = "recall") -> tuple[list[Message], list[Truth]]:
    """Microsoft 2006: a message to a large list, then members' mail clients answer the
    list automatically (recall notices, out-of-office replies to a list set as Reply-To,
    read receipts), and every answer is expanded to every member again.

    Only members receive the post, so at most every member's client answers: ``senders``
    is capped at the list's local members (less the author). ``messages`` (default: one
    per sender) may be more, some clients answering twice. ``spread``: answers evenly
    this far apart instead of in a burst."""
    list_address = list_address or f"all.managers@{site.domain}"
    members = ensure_list(site, rng, list_address, list_size)
    start = _jitter(rng, start)
    local = [m for m in members if m.endswith("@" + site.domain)]
    author = rng.choice(local)
    root = clients.from_local(site, rng, author, [list_address], start, subject)
    msgs = [root]
    pool = [m for m in local if m != author]
    who = rng.sample(pool, min(senders, len(pool)))
    who += rng.choices(who, k=max(0, (messages or 0) - len(who)))
    for i, sender in enumerate(who):
        if spread is None:
            off = max(20.0, duration.total_seconds() * rng.betavariate(1.2, 3.0))
        else:
            off = spread.total_seconds() * (i + 1)
        t = start + timedelta(seconds=off)
        m = clients.from_local(site, rng, sender, [list_address], _jitter(rng, t),
                               rng.choice(AUTO_PREFIXES[cause]) + subject, parent=root)
        m.is_auto = True
        if cause != "out_of_office":  # a recall or receipt does not thread as a reply
            m.in_reply_to, m.references = None, []
        msgs.append(m)
    distinct = len(set(who))
    return msgs, [_truth("auto_storm", list_address, root, msgs, site, cause=cause,
                         senders=distinct + 1, auto_senders=distinct,
                         auto_messages=len(who), list_size=len(members))]


def bounce_storm(site: Site, rng: random.Random, start: datetime, *,
                 list_address: str | None = None, list_size: int = 3000,
                 dead_share: float = 0.3, dead: int | None = None, posts: int = 1,
                 every: timedelta = timedelta(minutes=30), history: int = 4,
                 subject: str = "Staff survey 2016") -> tuple[list[Message], list[Truth]]:
    """A post to a list full of dead addresses (a stale export of a staff directory): a
    burst of bounced deliveries, and the non-delivery notices back to the sender.

    ``dead``: exactly this many members bounce (instead of ``dead_share`` of them, on top
    of the site's few gone users). ``posts``: the sender posts again every ``every``
    ("Reminder: ..."), each post bouncing again. ``history``: ordinary messages the
    sender wrote earlier that day (with them, the post is also far beyond the sender's
    usual audience: a fanout)."""
    list_address = list_address or f"all.contractors@{site.domain}"
    members = ensure_list(site, rng, list_address, list_size)
    if dead is None:
        site.gone = site.gone | frozenset(rng.sample(members, int(len(members) * dead_share)))
    else:
        alive = [m for m in members if m not in site.gone]
        more = dead - (len(members) - len(alive))
        if more < 0:
            raise ValueError(f"{list_address} already has more than {dead} dead members")
        site.gone = site.gone | frozenset(rng.sample(alive, more))
    site.cache.clear()
    start = _jitter(rng, start)
    sender = rng.choice([u for u in people_of(site) if u not in site.gone])
    msgs = [*_history(site, rng, sender, start, history),
            clients.from_local(site, rng, sender, [list_address], start, subject)]
    root = msgs[-1]
    for k in range(1, posts):
        msgs.append(clients.from_local(site, rng, sender, [list_address],
                                       _jitter(rng, start + k * every), "Reminder: " + subject))
    bounced = sum(1 for m in members if m in site.gone)
    return msgs, [_truth("bounce_storm", list_address, root, msgs[-posts:], site,
                         bounced=bounced * posts, list_size=len(members))]


def nested_fanout(site: Site, rng: random.Random, start: datetime, *,
                  list_address: str | None = None, sublists: int = 12, sublist_size: int = 400,
                  subject: str = "Car park closure on Monday") -> tuple[list[Message],
                                                                         list[Truth]]:
    """Bedlam DL3: an umbrella list whose members are lists; one message to it reaches
    every member of every sub-list, far beyond what its sender ever writes to."""
    list_address = list_address or f"all.departments@{site.domain}"
    subs = [f"dept{i:02d}.staff@{site.domain}" for i in range(sublists)]
    for sub in subs:
        ensure_list(site, rng, sub, sublist_size)
    site.lists[list_address] = subs
    site.cache.clear()
    start = _jitter(rng, start)
    sender = rng.choice(people_of(site))
    msgs = [*_history(site, rng, sender, start),
            clients.from_local(site, rng, sender, [list_address], start, subject)]
    return msgs, [_truth("fanout", list_address, msgs[-1], msgs[-1:], site,
                         sublists=sublists)]


def mail_loop(site: Site, rng: random.Random, start: datetime, *,
              duration: timedelta = timedelta(minutes=50), every: timedelta = timedelta(
                  seconds=40)) -> tuple[list[Message], list[Truth]]:
    """Two auto-responders answering each other (neither uses the null sender): a local
    user's vacation rule and an outside ticket system, one message each way every
    ``every``, until someone notices."""
    user = rng.choice(people_of(site))
    ext = f"helpdesk@{rng.choice(sorted(site.out_of))}"
    t = _jitter(rng, start)
    first = clients.from_outside(site, rng, ext, [user], t, "Ticket #48213 received",
                                 is_auto=True)
    msgs = [first]
    subject = first.subject
    end = start + duration
    while t < end:
        t += every + timedelta(seconds=rng.uniform(-3, 3))
        last = msgs[-1]
        if last.sender == ext:  # the user's rule answers the ticket system
            m = clients.from_local(site, rng, user, [ext], t, "Automatic reply: " + subject,
                                   parent=last)
        else:  # the ticket system answers with a new "ticket received"
            m = clients.from_outside(site, rng, ext, [user], t, subject, is_auto=True)
        m.is_auto = True
        msgs.append(m)
    return msgs, [_truth("mail_loop", None, first, msgs, site,
                         pair=sorted([user, ext]))]
