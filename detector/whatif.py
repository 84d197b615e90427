"""What-if replay: when would a storm protection policy have fired, and what would it save?

For each reply or auto storm, the incident's messages are replayed in time order against
a policy: "at least N replies (or N distinct repliers), each to at least R recipients,
within W minutes; then block further replies to the thread for H hours". The replay gives
the moment the policy fires and the deliveries of the replies it would have blocked.
Two policies are replayed: Exchange Online's reply-all storm protection defaults, and the
detecting rule's own thresholds. The messages of one incident are few (tens to
thousands), so this is plain Python over rows the warehouse already aggregated.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Policy:
    name: str
    label: str  # short, for a sentence
    description: str
    min_count: int  # replies (or distinct repliers) in the window
    distinct: bool  # count distinct senders instead of messages
    min_recipients: int  # a reply counts when it reached at least this many recipients
    window: timedelta
    block: timedelta  # how long replies are blocked once it fires


#: Exchange Online reply-all storm protection, default settings
EXCHANGE_ONLINE = Policy(
    "exchange_online", "a block at Exchange Online's default reply-all storm thresholds",
    "a policy with the documented defaults of Exchange Online's reply-all storm "
    "protection: 10 reply-alls to 2,500 or more recipients within 60 minutes, then "
    "replies blocked for 6 hours (replayed on this log; not the product's own behaviour)",
    10, False, 2500, timedelta(minutes=60), timedelta(hours=6))


@dataclass(frozen=True, slots=True)  # a storm can hold a million
class Reply:
    """One message of the incident, as the replay needs it."""

    ts: datetime
    sender: str
    recipients: int
    deliveries: int
    is_root: bool


@dataclass(frozen=True)
class PolicyEstimate:
    """A policy replayed on a storm's messages: when it would fire (None: never) and what
    blocking from then on would spare. An estimate of a policy from the log, not what a
    product did or would do."""

    policy: str
    label: str
    description: str
    fires_at: datetime | None
    messages_before: int
    blocked_messages: int
    prevented_deliveries: int
    deliveries: int
    prevented_share: float


def replay(policy: Policy, messages: Sequence[Reply]) -> PolicyEstimate:
    """When ``policy`` fires on these messages and what blocking from then on saves."""
    ordered = sorted(messages, key=lambda m: m.ts)
    total = sum(m.deliveries for m in ordered)
    counted = [m for m in ordered if not m.is_root and m.recipients >= policy.min_recipients]
    # a sliding window over the counted replies: senders in it and how often (a storm of
    # thousands of recall notices stays linear)
    fired: Reply | None = None
    in_window: Counter[str] = Counter()
    first = 0
    for i, m in enumerate(counted):
        in_window[m.sender] += 1
        while counted[first].ts <= m.ts - policy.window:
            in_window[counted[first].sender] -= 1
            if not in_window[counted[first].sender]:
                del in_window[counted[first].sender]
            first += 1
        count = len(in_window) if policy.distinct else i - first + 1
        if count >= policy.min_count:
            fired = m
            break
    if fired is None:
        return PolicyEstimate(policy.name, policy.label, policy.description, None,
                              len(ordered), 0, 0, total, 0.0)
    until = fired.ts + policy.block
    blocked = [m for m in ordered if not m.is_root and fired.ts < m.ts <= until]
    prevented = sum(m.deliveries for m in blocked)
    return PolicyEstimate(
        policy.name, policy.label, policy.description, fired.ts,
        messages_before=sum(1 for m in ordered if m.ts <= fired.ts),
        blocked_messages=len(blocked), prevented_deliveries=prevented, deliveries=total,
        prevented_share=round(prevented / total, 3) if total else 0.0)


def rule_policy(name: str, min_senders: int, min_audience: int, window_seconds: int,
                block: timedelta = timedelta(hours=6)) -> Policy:
    """The detecting rule's thresholds as a blocking policy (distinct repliers)."""
    minutes = window_seconds // 60
    return Policy(
        f"rule:{name}", f"a block at the {name} rule's own thresholds",
        f"the {name} rule's thresholds: {min_senders} distinct repliers to "
        f"{min_audience:,} or more recipients within {minutes} minutes, then replies blocked "
        f"for {int(block.total_seconds() // 3600)} hours",
        min_senders, True, min_audience, timedelta(seconds=window_seconds), block)
