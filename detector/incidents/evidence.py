"""What set an incident off, in words, and what a storm-protection policy might have spared."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from detector.rules.model import Rule
from detector.whatif import EXCHANGE_ONLINE, PolicyEstimate, Reply, replay, rule_policy


def cause_of(kind: str, agg: Mapping[str, Any], list_address: str | None) -> str:
    """What set the incident off, from its messages' subjects and counts."""
    messages = max(agg["messages"], 1)
    if agg["no_subject"] >= messages / 2 and kind in ("reply_storm", "auto_storm"):
        return ("unknown: the log has no subjects, so replies, recalls and auto-replies "
                "look alike; many senders posted to one large list")
    if kind == "auto_storm":
        if agg["recalls"] >= agg["auto_messages"] / 2:
            return "message recalls answered to the whole list"
        if agg["receipts"] >= agg["auto_messages"] / 2:
            return "read receipts sent to the whole list"
        return "out-of-office and other automatic replies sent to the whole list"
    if kind == "reply_storm":
        return "reply-all to a large list"
    if kind == "bounce_storm":
        return "deliveries to dead addresses" + (" on the list" if list_address else "")
    if kind == "mail_loop":
        if (agg["max_passes"] or 1) > 1 or agg["loop_bounces"]:
            return "a message forwarded round in a loop"
        return "two addresses answering each other automatically"
    return "one message expanded far beyond its sender's usual audience"


def policy_estimates(rule: Rule, storm: pl.DataFrame | None,
                     root_uid: str | None) -> tuple[PolicyEstimate, ...]:
    """Exchange Online's default thresholds and the rule's own, replayed on a storm's
    messages (columns message_uid, first_seen, sender, recipients, deliveries)."""
    if storm is None:
        return ()
    messages = [Reply(ts, sender, recipients, deliveries, uid == root_uid)
                for uid, ts, sender, recipients, deliveries in zip(
                    storm["message_uid"], storm["first_seen"], storm["sender"],
                    storm["recipients"], storm["deliveries"], strict=True)]
    policies = [EXCHANGE_ONLINE]
    if {"min_senders", "min_audience"} <= set(rule.values) and rule.window_seconds:
        policies.append(rule_policy(rule.name, int(rule.value("min_senders")),
                                    int(rule.value("min_audience")), rule.window_seconds))
    return tuple(replay(policy, messages) for policy in policies)
