"""Format-neutral description of a mail site and its traffic.

A ``Site`` is the organisation (its users, distribution lists, mail stores and the outside
world it talks to); a ``Message`` is what one client handed to the site's MTA; ``Delivery``
records are derived per final recipient by ``detector.simulate.delivery``. Renderers for
Postfix (and later Exim, Exchange, Sendmail) only turn these into their own log lines, so
all of them tell the same story for the same seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from detector.simulate import naming

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def to_us(when: datetime) -> int:
    """Aware datetime -> POSIX microseconds (exact, unlike float timestamps)."""
    return (when - EPOCH) // _US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


@dataclass
class Site:
    """An organisation's mail world. Addresses are lower-case ``local@domain``."""

    domain: str
    hosts: dict[str, str]  # fqdn -> IPv4 of every host that appears in logs
    users: list[str]  # local mailboxes
    lists: dict[str, list[str]]  # list address -> members (local or external)
    mailbox_host: dict[str, str]  # local address -> mail store fqdn; "" = on the MTA itself
    mx_of: dict[str, str]  # external domain -> its MX fqdn
    out_of: dict[str, str]  # external domain -> host that sends its outbound mail
    reply_style: dict[str, str]  # external domain -> how its MX answers (postfix, gsmtp, exo)
    gone: frozenset[str] = frozenset()  # addresses that bounce 5.1.1 (left staff, typos)
    down: frozenset[str] = frozenset()  # external domains whose MX often times out
    greylisting: frozenset[str] = frozenset()  # external domains that greylist first tries
    webmail: str = ""  # fqdn of the webmail front end (submits on port 25 from inside)
    app_server: str = ""  # fqdn of an application server sending notifications
    #: external domain -> (answers again at, queue flushed at), POSIX microseconds: its MX
    #: times out until then, and its deferred mail is retried at the flush, all at once
    outages: dict[str, tuple[int, int]] = field(default_factory=dict)
    log_start: int = 0  # POSIX microseconds: lines before it are not in the log (rotated)
    cache: dict = field(default_factory=dict, repr=False, compare=False)  # derived data

    def is_local(self, addr: str) -> bool:
        return addr.endswith("@" + self.domain) and addr not in self.lists

    def external_users(self) -> list[str]:
        """External addresses known from list memberships (stable order)."""
        seen: dict[str, None] = {}
        for members in self.lists.values():
            for m in members:
                if not m.endswith("@" + self.domain):
                    seen.setdefault(m)
        return list(seen)


@dataclass(slots=True)
class Message:
    """One message as submitted by a client (before list expansion)."""

    time: datetime  # aware UTC: when the MTA accepted it into its queue
    sender: str  # envelope sender; "" is the null sender of bounces
    recipients: list[str]  # envelope recipients as given, list addresses unexpanded
    subject: str  # as on the wire (RFC 2047 encoded words kept encoded)
    message_id: str  # without brackets; "" = the MTA adds one
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    size: int = 4096
    client_host: str = "localhost"
    client_ip: str = "127.0.0.1"
    helo: str = ""
    is_auto: bool = False  # bounces, auto-replies, notifications
    mua: str = "remote"  # client style: decides header order and folding
    source: str = "smtp"  # smtp | submission | pickup | bounce
    sasl_user: str | None = None  # authenticated submission user
    tls: bool = True
    reject: str | None = None  # SMTP-time reject reason: rbl | relay | unknown_user | auth
    loop: bool = False  # has gone round a forwarding loop: the next hop refuses it (5.4.6)
    seed: int = 0  # drives per-recipient outcomes, so every renderer agrees

    @property
    def time_us(self) -> int:
        return to_us(self.time)


@dataclass(slots=True)
class Batch:
    """One delivery transaction: recipients sharing a connection to one next hop."""

    transport: str  # lmtp | smtp
    relay: str  # next-hop fqdn; "" = the MTA's own LMTP socket
    agent: int  # parallel delivery-process slot for this destination
    start_us: int  # handed to the delivery agent
    conn_us: int  # connection set up (equals start_us when none could be made)
    arrival_us: int  # when the message entered the active queue for this attempt
    attempt: int  # 0 first try, 1.. retries from the deferred queue
    connected: bool = True
    end_us: int = 0  # the agent is free again


@dataclass(slots=True)
class Delivery:
    """One delivery attempt for one final recipient."""

    time_us: int  # POSIX microseconds, UTC
    recipient: str
    orig_to: str | None  # list address when the recipient came from expanding a list
    status: str  # sent | deferred | bounced
    dsn: str
    reason: str  # ok | quota | timeout | greylist | unknown_user
    batch: Batch
    delay: float  # seconds since the message arrived

    @property
    def time(self) -> datetime:
        return from_us(self.time_us)

    @property
    def relay(self) -> str:
        return self.batch.relay


def make_site(
    rng: random.Random,
    domain: str = "nhs.example",
    lists: dict[str, int] | None = None,
    n_users: int | None = None,
    external_share: float = 0.01,
    gone_share: float = 0.003,
) -> Site:
    """Build a site whose lists have the requested sizes (members mostly local users)."""
    lists = lists or {}
    biggest = max(lists.values(), default=0)
    n_users = n_users or max(400, int(biggest * 1.04) + 50)
    taken: set[str] = set()
    users = [naming.person_address(rng, domain, taken) for _ in range(n_users)]
    users += [f"{r}@{domain}" for r in ("it.servicedesk", "postmaster", "news", "hr.team")]
    hosts: dict[str, str] = {}
    stores = [f"mailstore{i}.{domain}" for i in (1, 2, 3)]
    for i, h in enumerate(stores):
        hosts[h] = f"10.1.0.{5 + i}"
    webmail, app = f"webmail.{domain}", f"ehr-app.{domain}"
    hosts[webmail], hosts[app] = "10.1.0.20", "10.1.4.31"
    # 3% of mailboxes (the IT team) live on the MTA host's own Dovecot: gives dovecot lines.
    mailbox_host = {u: ("" if rng.random() < 0.03 else rng.choice(stores)) for u in users}
    mx_of, out_of, style = {}, {}, {}
    blocks = ("192.0.2", "198.51.100")
    for dom, mx, out, st in naming.EXTERNAL:
        mx_of[dom], out_of[dom], style[dom] = mx, out, st
        hosts.setdefault(mx, naming.ip_in(rng, rng.choice(blocks)))
        hosts.setdefault(out, naming.ip_in(rng, rng.choice(blocks)))
    bulk = ("mailing.example.net", "news.example")  # senders only, nobody's list membership
    partner_domains = [d for d, *_ in naming.EXTERNAL if d not in bulk]
    ext_taken: set[str] = set()
    site_lists: dict[str, list[str]] = {}
    pool = users[:n_users]  # people, not role accounts
    for name, size in lists.items():
        n_ext = int(size * external_share) if size > 100 else 0
        members = rng.sample(pool, min(size - n_ext, len(pool)))
        members += [naming.person_address(rng, rng.choice(partner_domains), ext_taken)
                    for _ in range(n_ext)]
        rng.shuffle(members)
        site_lists[name if "@" in name else f"{name}@{domain}"] = members
    gone = frozenset(u for u in pool if rng.random() < gone_share)
    ext_gone = frozenset(a for m in site_lists.values() for a in m
                         if not a.endswith(domain) and rng.random() < 0.02)
    return Site(
        domain=domain, hosts=hosts, users=users, lists=site_lists, mailbox_host=mailbox_host,
        mx_of=mx_of, out_of=out_of, reply_style=style, gone=gone | ext_gone,
        down=frozenset({"gone.example"}), greylisting=frozenset({"greylist.example"}),
        webmail=webmail, app_server=app,
    )


def ensure_list(site: Site, rng: random.Random, address: str, size: int) -> list[str]:
    """Make ``address`` a list of ``size`` local members (adding users if the site is small)."""
    members = site.lists.get(address)
    if members is not None and len(members) == size:
        return members
    people = [u for u in site.users if u not in site.lists and "." in u.split("@")[0]]
    if len(people) < size:
        people += add_people(site, rng, size - len(people))
    members = rng.sample(people, size)
    site.lists[address] = members
    return members


def add_people(site: Site, rng: random.Random, n: int) -> list[str]:
    """``n`` new local users (first.last@, a mailbox on one of the site's stores)."""
    taken = set(site.users)
    stores = sorted({h for h in site.mailbox_host.values() if h}) or [""]
    new = []
    for _ in range(n):
        u = naming.person_address(rng, site.domain, taken)
        site.users.append(u)
        site.mailbox_host[u] = rng.choice(stores)
        new.append(u)
    return new
