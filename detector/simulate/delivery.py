"""Derive per-recipient deliveries (times, outcomes, retries, bounces) from a Message.

Outcomes come from ``random.Random(message.seed)`` only, so the same message always has
the same deliveries whichever renderer asks, and truth can be counted without rendering.
The timing model follows a Postfix-like queue manager: recipients are grouped by next
hop, handed to parallel delivery agents in transactions of up to 50 recipients, deferred
recipients are retried from the deferred queue after a back-off, and hard bounces produce
one non-delivery notification per message pass.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field

from detector.simulate.scenario import Batch, Delivery, Message, Site, from_us

RCPT_PER_BATCH = 50  # default_destination_recipient_limit
MAX_AGENTS = 20  # default_destination_concurrency_limit
CONNECT_TIMEOUT_US = 30_000_000  # smtp_connect_timeout
QUOTA_SHARE = 0.0015  # local recipients over quota (temporary failure)


@dataclass(slots=True)
class Plan:
    """Everything that happens to one queued message after it was accepted."""

    message: Message
    arrival_us: int
    active_us: int
    deliveries: list[Delivery]  # every attempt; final ones have status sent/bounced
    activations: list[tuple[int, int]] = field(default_factory=list)  # retry: (time, pending)
    notices: list[Message] = field(default_factory=list)  # non-delivery notifications
    removed_us: int = 0

    @property
    def nrcpt(self) -> int:
        return sum(1 for d in self.deliveries if d.status != "deferred")


def expand(site: Site, msg: Message) -> list[tuple[str, str | None]]:
    """Final recipients as (address, list it came from), in queue-file order.

    Like virtual alias expansion with enable_original_recipient=yes: a member who is also
    a direct recipient gets two copies (the original recipients differ).
    """
    out: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    for rcpt in msg.recipients:
        if rcpt in seen:
            continue
        seen.add(rcpt)
        members = site.lists.get(rcpt)
        if members is None:
            out.append((rcpt, None))
        else:
            out.extend([(m, rcpt) for m in members])
    return out


def count_final(site: Site, msg: Message) -> int:
    """Number of final-status delivery lines the message will have (one per recipient)."""
    if msg.reject:
        return 0
    return sum(len(site.lists.get(r, (r,))) for r in dict.fromkeys(msg.recipients))


def _route(site: Site, addr: str) -> tuple[str, str]:
    """(transport, next-hop fqdn) for a final recipient."""
    host = site.mailbox_host.get(addr)
    if host is not None:
        return "lmtp", host
    dom = addr.rpartition("@")[2]
    if dom == site.domain:
        return "lmtp", ""
    mx = site.mx_of.get(dom)
    if mx is None:  # an outside domain nobody declared: invent its MX, stable per name
        mx = site.mx_of[dom] = f"mx.{dom}"
        site.hosts.setdefault(mx, f"198.51.100.{2 + zlib.crc32(dom.encode()) % 250}")
    return "smtp", mx


def plan_delivery(site: Site, msg: Message) -> Plan:
    """Schedule all delivery attempts of ``msg`` (empty plan for rejected messages)."""
    rng = random.Random(msg.seed)
    arrival = msg.time_us
    if msg.reject:
        return Plan(msg, arrival, arrival, [], removed_us=arrival)
    # cleanup -> qmgr hand-off; huge recipient lists take the queue manager a while to read
    rcpts = expand(site, msg)
    active = arrival + rng.randint(15_000, 250_000) + len(rcpts) * 20
    plan = Plan(msg, arrival, active, [])
    groups: dict[tuple[str, str], list[tuple[str, str | None]]] = {}
    for r in rcpts:
        key = _route(site, r[0])
        g = groups.get(key)
        if g is None:
            groups[key] = [r]
        else:
            g.append(r)
    pending = _attempt(site, msg, plan, groups, active, active, 0, rng)
    attempt, backoff = 0, 300_000_000  # minimal_backoff_time
    end = max((d.time_us for d in plan.deliveries), default=active)
    bounced = [d for d in plan.deliveries if d.status == "bounced"]
    if bounced and msg.sender:
        plan.notices.append(_notice(msg, bounced, end + rng.randint(2_000, 40_000), rng))
    while pending:
        attempt += 1
        again = end + backoff + rng.randint(0, 300_000_000)  # queue_run_delay jitter
        plan.activations.append((again, len(pending)))
        retry: dict[tuple[str, str], list[tuple[str, str | None]]] = {}
        for r in pending:
            retry.setdefault(_route(site, r[0]), []).append(r)
        pending = _attempt(site, msg, plan, retry, again + rng.randint(5_000, 60_000),
                           again, attempt, rng)
        end = max(d.time_us for d in plan.deliveries)
        backoff *= 2
    last = max((d.time_us for d in plan.deliveries), default=active)
    if plan.notices:
        last = max(last, plan.notices[-1].time_us)
    plan.removed_us = last + rng.randint(300, 4_000)
    return plan


def _attempt(site, msg, plan, groups, start, arrival, attempt, rng):
    """Deliver every group once; return the recipients that were deferred."""
    deliveries = plan.deliveries
    add = deliveries.append
    rand, randint = rng.random, rng.randint
    gone = site.gone
    pending: list[tuple[str, str | None]] = []
    size_us = msg.size // 20  # ~50 MB/s to a local store
    for (transport, relay), rcpts in groups.items():
        nb = (len(rcpts) + RCPT_PER_BATCH - 1) // RCPT_PER_BATCH
        free = [start + randint(0, 3_000) + i * 400 for i in range(min(MAX_AGENTS, nb))]
        dom = relay if transport == "lmtp" else rcpts[0][0].rpartition("@")[2]
        down = transport == "smtp" and dom in site.down and (attempt == 0 or rand() < 0.5)
        grey = transport == "smtp" and dom in site.greylisting and attempt == 0
        # a full mailbox usually has room again at the first retry
        full = (QUOTA_SHARE, 0.25)[attempt] if transport == "lmtp" and attempt < 2 else 0.0
        for b in range(nb):
            agent = b % len(free)
            t0 = free[agent] + randint(100, 2_000)
            chunk = rcpts[b * RCPT_PER_BATCH:(b + 1) * RCPT_PER_BATCH]
            if down:  # no connection: every recipient waits for the connect timeout
                conn = t0 + CONNECT_TIMEOUT_US + randint(0, 200_000)
                batch = Batch(transport, relay, agent, t0, conn, arrival, attempt, False)
                for i, (a, o) in enumerate(chunk):
                    t = conn + i * 150
                    add(Delivery(t, a, o, "deferred", "4.4.1", "timeout", batch,
                                 (t - msg.time_us) / 1e6))
                    pending.append((a, o))
                free[agent] = conn + 1_000
                continue
            if transport == "lmtp":
                conn = t0 + randint(800, 4_000)
                per = randint(3_000, 12_000)  # store writes one mailbox after another
                done = conn + len(chunk) * 300 + size_us + randint(2_000, 8_000)
            else:
                conn = t0 + randint(40_000, 450_000)
                per = 0
                done = conn + len(chunk) * 25_000 + msg.size * 2 + randint(30_000, 600_000)
            batch = Batch(transport, relay, agent, t0, conn, arrival, attempt)
            for i, (a, o) in enumerate(chunk):
                if a in gone:  # rejected at RCPT TO, before the data phase
                    t = conn + (i + 1) * 300
                    add(Delivery(t, a, o, "bounced", "5.1.1", "unknown_user", batch,
                                 (t - msg.time_us) / 1e6))
                    continue
                t = done + (i + 1) * per + i * 120
                if grey or (full and rand() < full):
                    st, dsn, why = ("deferred", "4.2.0", "greylist") if grey else (
                        "deferred", "4.2.2", "quota")
                    pending.append((a, o))
                else:
                    st, dsn, why = "sent", "2.0.0", "ok"
                add(Delivery(t, a, o, st, dsn, why, batch, (t - msg.time_us) / 1e6))
            free[agent] = done + len(chunk) * per + randint(500, 3_000)
    return pending


def _notice(msg: Message, bounced: list[Delivery], when: int, rng: random.Random) -> Message:
    """The non-delivery notification the MTA sends back to the sender."""
    return Message(
        time=from_us(when), sender="", recipients=[msg.sender],
        subject="Undelivered Mail Returned to Sender", message_id="",
        size=2_600 + 180 * len(bounced) + min(msg.size, 50_000), client_host="localhost",
        client_ip="127.0.0.1", is_auto=True, mua="postfix", source="bounce",
        seed=rng.getrandbits(32),
    )
