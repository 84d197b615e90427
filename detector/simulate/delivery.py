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

from detector.simulate.rand import fast_randint
from detector.simulate.scenario import Batch, Delivery, Message, Site, from_us

RCPT_PER_BATCH = 50  # default_destination_recipient_limit
MAX_AGENTS = 20  # default_destination_concurrency_limit
CONNECT_TIMEOUT_US = 30_000_000  # smtp_connect_timeout
QUOTA_SHARE = 0.0015  # local recipients over quota (temporary failure)


# outcome code of an attempt -> (status, dsn, reason)
OUTCOMES = {
    "sent": ("sent", "2.0.0", "ok"),
    "bounced": ("bounced", "5.1.1", "unknown_user"),
    "timeout": ("deferred", "4.4.1", "timeout"),
    "greylist": ("deferred", "4.2.0", "greylist"),
    "quota": ("deferred", "4.2.2", "quota"),
    "loop": ("bounced", "5.4.6", "loop"),  # the next hop refused it: too many hops
}
# one attempt, compact: (time_us, recipient, orig_to, outcome code, batch)
Row = tuple[int, str, "str | None", str, Batch]


@dataclass(slots=True)
class Plan:
    """Everything that happens to one queued message after it was accepted.

    ``rows`` holds the attempts as plain tuples (cheap to make by the million);
    ``deliveries`` gives the same as ``Delivery`` objects.
    """

    message: Message
    arrival_us: int
    active_us: int
    rows: list[Row]  # every attempt, first attempts before retries
    activations: list[tuple[int, int]] = field(default_factory=list)  # retry: (time, pending)
    notices: list[Message] = field(default_factory=list)  # non-delivery notifications
    removed_us: int = 0
    nrcpt: int = 0  # final recipients (= delivery lines with a final status)
    bounced: int = 0

    @property
    def deliveries(self) -> list[Delivery]:
        arr = self.arrival_us
        out = []
        for t, rcpt, orig, code, batch in self.rows:
            status, dsn, why = OUTCOMES[code]
            out.append(Delivery(t, rcpt, orig, status, dsn, why, batch, (t - arr) / 1e6))
        return out


def members(site: Site, address: str) -> list[str] | None:
    """Final members of a list, nested lists expanded (each address once), else None.

    Like Postfix virtual alias expansion, which recurses and drops duplicate addresses;
    the original recipient of every member stays the list that was written to.
    """
    direct = site.lists.get(address)
    if direct is None:
        return None
    if not any(m in site.lists for m in direct):
        return direct
    cache = site.cache.setdefault("flat", {})
    hit = cache.get(address)
    if hit is None or hit[0] != len(direct):
        out: dict[str, None] = {}
        todo, seen = [address], {address}
        while todo:
            for m in site.lists[todo.pop(0)]:
                if m in site.lists:
                    if m not in seen:
                        seen.add(m)
                        todo.append(m)
                else:
                    out.setdefault(m)
        hit = cache[address] = (len(direct), list(out))
    return hit[1]


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
        flat = members(site, rcpt)
        if flat is None:
            out.append((rcpt, None))
        else:
            out.extend([(m, rcpt) for m in flat])
    return out


def count_final(site: Site, msg: Message) -> int:
    """Number of final-status delivery lines the message will have (one per recipient)."""
    if msg.reject:
        return 0
    return sum(len(members(site, r) or (r,)) for r in dict.fromkeys(msg.recipients))


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


def _groups(site: Site, msg: Message) -> dict[tuple[str, str], list[tuple[str, str | None]]]:
    """Final recipients grouped by next hop, in queue-file order.

    A list's grouping is the same for every message sent to it, so it is computed once
    per site and shared (never mutated: merging always builds new lists).
    """
    cache = site.cache.setdefault("groups", {})
    groups: dict[tuple[str, str], list[tuple[str, str | None]]] = {}
    for rcpt in dict.fromkeys(msg.recipients):
        flat = members(site, rcpt)
        if flat is None:
            key = _route(site, rcpt)
            groups[key] = [*groups.get(key, ()), (rcpt, None)]
            continue
        hit = cache.get(rcpt)
        if hit is None or hit[0] is not flat or hit[1] != len(flat):
            by_hop: dict[tuple[str, str], list[tuple[str, str | None]]] = {}
            for m in flat:
                by_hop.setdefault(_route(site, m), []).append((m, rcpt))
            hit = cache[rcpt] = (flat, len(flat), by_hop)
        for key, part in hit[2].items():
            g = groups.get(key)
            groups[key] = part if g is None else g + part
    return groups


def plan_delivery(site: Site, msg: Message) -> Plan:
    """Schedule all delivery attempts of ``msg`` (empty plan for rejected messages)."""
    rng = random.Random(msg.seed)
    randint = fast_randint(rng)
    arrival = msg.time_us
    if msg.reject:
        return Plan(msg, arrival, arrival, [], removed_us=arrival)
    groups = _groups(site, msg)
    n = sum(len(g) for g in groups.values())
    # cleanup -> qmgr hand-off; huge recipient lists take the queue manager a while to read
    active = arrival + randint(15_000, 250_000) + n * 20
    plan = Plan(msg, arrival, active, [], [], [], 0, n)
    pending, end = _attempt(site, msg, plan, groups, active, active, 0, rng.random, randint)
    attempt, backoff = 0, 300_000_000  # minimal_backoff_time
    bounced = plan.bounced
    if bounced and msg.sender:
        plan.notices.append(_notice(msg, bounced, end + randint(2_000, 40_000), rng))
    while pending:
        attempt += 1
        again = end + backoff + randint(0, 300_000_000)  # queue_run_delay jitter
        if site.outages:
            again = _flushed(site, pending, end, again, randint)
        plan.activations.append((again, len(pending)))
        retry: dict[tuple[str, str], list[tuple[str, str | None]]] = {}
        for r in pending:
            retry.setdefault(_route(site, r[0]), []).append(r)
        pending, end = _attempt(site, msg, plan, retry, again + randint(5_000, 60_000),
                                again, attempt, rng.random, randint)
        backoff *= 2
    last = end
    if plan.notices:
        last = max(last, plan.notices[-1].time_us)
    plan.removed_us = last + randint(300, 4_000)
    return plan


def _attempt(site, msg, plan, groups, start, arrival, attempt, rand, randint):
    """Deliver every group once; return the deferred recipients and the last attempt time."""
    add = plan.rows.append
    last = start
    gone = site.gone
    pending: list[tuple[str, str | None]] = []
    size_us = msg.size // 20  # ~50 MB/s to a local store
    for (transport, relay), rcpts in groups.items():
        nb = (len(rcpts) + RCPT_PER_BATCH - 1) // RCPT_PER_BATCH
        free = ([start + randint(0, 3_000) + i * 400 for i in range(min(MAX_AGENTS, nb))]
                if nb > 1 else [start + randint(0, 3_000)])
        dom = relay if transport == "lmtp" else rcpts[0][0].rpartition("@")[2]
        down = transport == "smtp" and dom in site.down and (attempt == 0 or rand() < 0.5)
        if transport == "smtp" and dom in site.outages:
            down = start < site.outages[dom][0]
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
                    add((conn + i * 150, a, o, "timeout", batch))
                    pending.append((a, o))
                free[agent] = batch.end_us = conn + len(chunk) * 150 + 1_000
                last = max(last, batch.end_us)
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
            step = per + 120
            t = done + per
            for a, o in chunk:
                if a in gone:  # rejected at RCPT TO, before the data phase
                    plan.bounced += 1
                    add((conn + 300, a, o, "bounced", batch))
                elif msg.loop and transport == "smtp":  # refused after DATA: too many hops
                    plan.bounced += 1
                    add((t, a, o, "loop", batch))
                elif grey or (full and rand() < full):
                    add((t, a, o, "greylist" if grey else "quota", batch))
                    pending.append((a, o))
                else:
                    add((t, a, o, "sent", batch))
                t += step
            free[agent] = batch.end_us = done + len(chunk) * (per + 120) + randint(500, 3_000)
            last = max(last, batch.end_us)
    return pending, last


def _flushed(site: Site, pending: list[tuple[str, str | None]], end: int, again: int,
             randint) -> int:
    """A retry due near (or after) a flush of the queue for a domain that was down happens
    at the flush (``postqueue -f`` once the domain answers again)."""
    flushes = [site.outages[d][1] for d in {a.rpartition("@")[2] for a, _ in pending}
               if d in site.outages]
    flush = min(flushes, default=None)
    if flush is None or end >= flush or again < flush - FOLD_US:
        return again
    return flush + randint(50_000, 20_000_000)


#: retries due this long before a flush wait for it (no retry in the minutes before)
FOLD_US = 600_000_000


def _notice(msg: Message, bounced: int, when: int, rng: random.Random) -> Message:
    """The non-delivery notification the MTA sends back to the sender."""
    return Message(
        time=from_us(when), sender="", recipients=[msg.sender],
        subject="Undelivered Mail Returned to Sender", message_id="",
        size=2_600 + 180 * bounced + min(msg.size, 50_000), client_host="localhost",
        client_ip="127.0.0.1", is_auto=True, mua="postfix", source="bounce",
        seed=rng.getrandbits(32),
    )
