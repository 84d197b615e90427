"""The replies of a reply-all storm: planned up front, made on demand.

A storm of a few dozen replies is made at once, as a list of messages. A larger one is
planned as compact arrays (who replies, when, and what kind of reply) and its messages
are made again on every pass by a seeded generator (``stream.Stream``): memory stays at
the plan, about 20 bytes a reply plus the people, for any number of replies.

Who replies: first the list's own members (everyone but the author, in random order).
When ``repliers`` is larger than that, site people who are not on the list post to it
too: the list is open to posts from anyone at the site, as an all-staff list often is
(new site users are made if the site has too few people). Beyond ``repliers``, people
reply again: by default a tenth of them answer twice; ``replies`` asks for any total,
the repeat replies falling on repliers at random.
"""

from __future__ import annotations

import random
from array import array
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from detector.simulate import clients, naming
from detector.simulate.scenario import Message, Site, add_people

#: storms with at most this many replies are made at once (and, for a given seed, are
#: the same messages as before storms could stream)
EAGER_LIMIT = 10_000
#: a reply to someone's reply answers one of the latest replies (the top of an inbox)
RECENT = 100
# what one reply is, besides a reply-all to the root
PLAIN, NESTED, DRIFT, ENCODED, REMOVE_ME = range(5)

DRIFT_TEXTS = ("please remove me from this list", "Please stop replying all!!",
               "PLEASE REMOVE ME", "Unsubscribe")


@dataclass(frozen=True)
class ReplyPlan:
    """Everything about a storm's replies except the messages themselves."""

    list_address: str
    start: datetime  # the root's time
    who: list[str]  # the sender of each reply, in time order
    offsets: array  # seconds after ``start`` of each reply, ascending
    roles: bytearray  # PLAIN, NESTED, DRIFT, ENCODED or REMOVE_ME per reply
    drift_texts: list[str]
    encoded_texts: list[str]
    on_list: int  # distinct repliers who are members of the list
    off_list: int  # distinct repliers who are not (site people posting to an open list)

    def time(self, i: int) -> datetime:
        return self.start + timedelta(seconds=self.offsets[i])


def pick_repliers(site: Site, rng: random.Random, pool: list[str], others: list[str],
                  repliers: int) -> tuple[list[str], int]:
    """``repliers`` distinct people: members from ``pool`` first, then site people from
    ``others`` (not on the list), then new site users; and how many came from ``pool``."""
    if repliers <= len(pool):
        return rng.sample(pool, repliers), repliers
    who = rng.sample(pool, len(pool))
    need = repliers - len(pool)
    outside = rng.sample(others, min(need, len(others)))
    outside += add_people(site, rng, need - len(outside))
    who += outside
    rng.shuffle(who)  # members and outsiders answer alike over time
    return who, len(pool)


def plan_replies(site: Site, rng: random.Random, *, list_address: str, pool: list[str],
                 others: list[str], author: str, start: datetime, subject: str,
                 repliers: int, replies: int | None, duration: timedelta,
                 double_share: float, remove_me_share: float, nested_share: float,
                 drifted: int, author_replies: bool,
                 spread: timedelta | None) -> ReplyPlan:
    """Who replies when, drawn in the order storms always drew them."""
    people = repliers - 1 if author_replies else repliers
    who, on_list = pick_repliers(site, rng, pool, others, people)
    if replies is None:
        extra = min(people, max(1, int(people * double_share))) if double_share else 0
    else:
        extra = max(0, replies - repliers)
    who += rng.sample(who, extra) if extra <= people else rng.choices(who, k=extra)
    if author_replies:  # "sorry all, please ignore": the author answers last
        who.append(author)
        on_list += 1
    n = len(who)
    if spread is None:  # bursty: most answer within 15-20 minutes, a tail up to duration
        seconds = duration.total_seconds()
        offsets = array("d", sorted(max(40.0, seconds * rng.betavariate(1.3, 4.0))
                                    for _ in range(n)))
    else:  # evenly spaced: a slow thread
        offsets = array("d", (spread.total_seconds() * (i + 1) for i in range(n)))
    # who does what: index 0 is the first answer, so it cannot answer another reply
    order = list(range(1, n))
    rng.shuffle(order)
    roles = bytearray(n)
    k = max(1, round(n * nested_share)) if nested_share else 0
    cut = 0
    for role, count in ((NESTED, k), (DRIFT, drifted), (ENCODED, 2),
                        (REMOVE_ME, int(n * remove_me_share))):  # remove-me: said in the body
        for i in order[cut:cut + count]:
            roles[i] = role
        cut += count
    del order
    drift_texts = rng.sample(DRIFT_TEXTS, 4)
    encoded_texts = rng.sample((f"AW: {subject} – bitte aus dem Verteiler löschen",
                                f"RE: {subject} — stop replying all ✋"), 2)
    return ReplyPlan(list_address, start, who, offsets, roles, drift_texts, encoded_texts,
                     on_list, len(set(who)) - on_list)


def make_replies(site: Site, rng: random.Random, plan: ReplyPlan,
                 root: Message) -> Iterator[Message]:
    """The replies, in time order; the same messages for the same generator state."""
    recent: deque[Message] = deque(maxlen=RECENT)
    stacks: dict[tuple[str, str], bool] = {}  # (client, subject) -> a reply adds a prefix
    drifts = encoded = 0
    lst = plan.list_address
    for i, replier in enumerate(plan.who):
        role = plan.roles[i]
        parent = root
        mua = clients.mua_of(replier)
        if role == NESTED:  # reply-all to someone's reply: "RE: RE: test", "AW: RE: test"
            others = [r for r in recent if r.sender != replier] or [root]
            stacked = [r for r in others if _stacks(stacks, mua, r.subject)]
            parent = rng.choice(stacked or others)
        subj = clients.reply_subject(mua, parent.subject)
        if role == DRIFT:  # edited subject, still threaded under the root
            subj = plan.drift_texts[drifts % len(plan.drift_texts)]
            drifts += 1
        elif role == ENCODED:  # clients encode a subject with non-ASCII characters
            subj = naming.encode_subject(plan.encoded_texts[encoded % 2])
            encoded += 1
        rcpts = [lst]
        if parent.sender != replier and rng.random() < 0.8:
            rcpts.insert(0, parent.sender)  # reply-all: To the author, Cc the list
        m = clients.from_local(site, rng, replier, rcpts, plan.time(i), subj, parent=parent,
                               msg_size=rng.randint(4_000, 60_000))
        recent.append(m)
        yield m


def _stacks(cache: dict[tuple[str, str], bool], mua: str, subject: str) -> bool:
    hit = cache.get((mua, subject))
    if hit is None:
        hit = cache[(mua, subject)] = clients.reply_subject(mua, subject) != subject
    return hit
