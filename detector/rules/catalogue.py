"""Names the rule compiler understands, each with a one-line description.

The loader validates rule files against these tables and ``rules list`` prints the
descriptions. They are plain dicts (name -> description) so that the compiler can register
what it adds in one place; dict order is the order shown to users.
"""

from __future__ import annotations

#: what a rule looks for; decides how the compiler shapes its query
KINDS: dict[str, str] = {
    "reply_storm": "many distinct senders reply to one thread (reply-all storm)",
    "fanout": "one message is delivered to far more mailboxes than it was addressed to",
    "mail_loop": "the same message keeps coming back between the same parties",
    "bounce_storm": "a burst of bounces (non-delivery reports) for one sender or list",
    "auto_storm": "automatic messages (recalls, out-of-office, receipts) sent to a large list",
}

#: which rows of the message table feed a rule
SELECTS: dict[str, str] = {
    "messages": "every submitted message",
    "replies": "messages that answer another message (In-Reply-To or References set)",
    "auto_replies": "automatic messages with a sender: out-of-office, recalls, read receipts "
                    "(with the list's ordinary posts, so the post they answer is the root)",
    "bounces": "non-delivery reports (null sender <>)",
    "bounced": "messages some of whose deliveries bounced",
    "one_to_one": "messages written to one address (auto-responders, forwarding loops)",
}

#: what the selected rows are grouped by before measuring
GROUP_BYS: dict[str, str] = {
    "thread": "conversation, from Message-ID, In-Reply-To and References",
    "list": "distribution list or alias the message was expanded from",
    "sender": "envelope sender",
    "list_or_sender": "the list a message went to, else its envelope sender",
    "list_or_thread": "the list a message went to, else its thread",
    "pair": "two addresses writing to each other, in either direction",
    "message": "one message (no time window)",
}

#: comparison operators of a condition: measure <op> param
OPS: dict[str, str] = {
    ">=": "at least",
    ">": "more than",
    "<=": "at most",
    "<": "less than",
    "==": "exactly",
}

#: severity levels, most severe first; a rule's levels are a subset in this order
LEVELS: dict[str, str] = {
    "critical": "mail service at risk; act now",
    "high": "many users affected; act soon",
    "medium": "noticeable load or annoyance",
    "low": "small, worth a look",
    "info": "for the record",
}

#: numbers computed per group (per window, unless grouped by message)
MEASURES: dict[str, str] = {
    "messages": "messages submitted",
    "replies": "replies submitted",
    "distinct_senders": "distinct envelope senders",
    "deliveries": "deliveries made (one per recipient mailbox)",
    "audience": "max recipients reached by one message in the window",
    "amplification": "deliveries per submitted recipient",
    "baseline_ratio": "deliveries relative to the group's usual per-message deliveries",
    "history": "earlier messages of the group used for the baseline",
    "recipients": "distinct recipients",
    "bounces": "deliveries that bounced",
    "bounce_rate": "share of deliveries that bounced",
    "auto_messages": "automatic messages (auto-replies, recalls, receipts)",
    "unknown_or_auto": "automatic messages, or messages of unknown nature (no subject logged)",
    "duplicates": "copies beyond one per recipient (one person reached through two lists)",
    "passes": "most times the message passed one host (a loop brings it back)",
    "loop_bounces": "deliveries bounced as a mail loop (5.4.6: forwarding loop, too many hops)",
    "span_seconds": "seconds from the first to the last message",
}
