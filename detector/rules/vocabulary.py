"""The rule vocabulary, declared once: kinds, selections, groupings, measures, ops, levels.

Each selection, grouping and measure carries its description and its SQL for each query
shape, or None where it has no meaning there. The loader validates against these tables
(so ``rules check`` rejects what ``run`` could not compile), the compiler and the incident
code read their SQL from them, and ``rules list`` / ``rules show`` / ``docs/rules.md``
print their descriptions. Dict order is the order shown to users.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Shape = Literal["windowed", "per_message"]

#: query shapes, as named in errors and docs
SHAPES: dict[Shape, str] = {
    "windowed": "for each message, the messages of its group in the window before it",
    "per_message": "each message on its own",
}


@dataclass(frozen=True)
class Selection:
    """Which rows of ``logical_messages`` feed a rule."""

    name: str
    description: str
    feed: str  # condition over logical_messages columns
    members: str  # condition over alias m: the messages an incident of the rule gathers


@dataclass(frozen=True)
class Grouping:
    """What selected rows are grouped by before measuring."""

    name: str
    description: str
    sql: str  # expression over logical_messages; {t} is the table prefix ("m." or "")


@dataclass(frozen=True)
class Measure:
    """A number computed per anchor message, in each shape where it has a meaning.

    ``windowed`` is an expression over the columns of ``WINDOW_SUMS`` and ``WINDOW_MAXIMA``,
    ``t`` and ``window_t0`` (the anchor's and the window's first message's time in
    microseconds) and ``repeats`` (see the compiler); ``per_message`` an expression over
    one message's row.
    """

    name: str
    description: str
    windowed: str | None
    per_message: str | None

    def sql(self, shape: Shape) -> str | None:
        return self.windowed if shape == "windowed" else self.per_message


#: what a rule looks for; decides nothing in the SQL, names the incident's kind
KINDS: dict[str, str] = {
    "reply_storm": "many distinct senders reply to one thread (reply-all storm)",
    "fanout": "one message is delivered to far more mailboxes than it was addressed to",
    "mail_loop": "the same message keeps coming back between the same parties",
    "bounce_storm": "a burst of bounces (non-delivery reports) for one sender or list",
    "auto_storm": "automatic messages (recalls, out-of-office, receipts) sent to a large list",
}

_SELECTIONS = [
    Selection("messages", "every submitted message", "NOT is_auto", "NOT m.is_auto"),
    # a message whose subject was not logged may be a reply: the degraded mode of sites
    # that log no subjects, where a storm is many senders posting to one large list.
    # Its incident gathers the message the replies answer too.
    Selection("replies", "messages that answer another message (In-Reply-To or References "
              "set), or whose subject was not logged",
              "NOT is_auto AND (is_reply OR subject IS NULL)", "NOT m.is_auto"),
    # the incident gathers the answers and the post they answer
    Selection("auto_replies", "automatic messages with a sender: out-of-office, recalls, "
              "read receipts (with the list's ordinary posts, so the post they answer is "
              "the root)", "is_auto AND sender <> ''", "m.sender <> ''"),
    Selection("bounces", "non-delivery reports (null sender <>)", "sender = ''",
              "m.sender = ''"),
    # with the non-delivery notices remote servers returned later to a list's bounce
    # address: they bounce the list's posts too
    Selection("bounced", "messages some of whose deliveries bounced, and non-delivery "
              "notices returned to a list's bounce address",
              "(bounced > 0 AND NOT is_auto) OR returned > 0",
              "(m.bounced > 0 AND NOT m.is_auto) OR m.returned > 0"),
    Selection("one_to_one", "messages written to one address (auto-responders, forwarding "
              "loops)", "to_address IS NOT NULL AND sender <> ''",
              "m.to_address IS NOT NULL AND m.sender <> ''"),
]  # fmt: skip
SELECTIONS: dict[str, Selection] = {s.name: s for s in _SELECTIONS}

_GROUPINGS = [
    Grouping("thread", "conversation, from Message-ID, In-Reply-To and References",
             "{t}thread_id"),
    Grouping("list", "distribution list or alias the message was expanded from", "{t}list"),
    Grouping("sender", "envelope sender", "{t}sender"),
    Grouping("list_or_sender", "the list a message went to, else (queued before the log "
             "starts) its bounces' recipient domain and relay, else its envelope sender",
             "coalesce({t}list, {t}prelog_origin, {t}sender)"),
    Grouping("list_or_thread", "the list a message went to, else its thread",
             "coalesce({t}list, {t}thread_id)"),
    Grouping("pair", "two addresses writing to each other, in either direction",
             "least({t}sender, {t}to_address) || ' <-> ' || greatest({t}sender, {t}to_address)"),
    Grouping("message", "one message (no time window)", "{t}message_uid"),
]  # fmt: skip
GROUPINGS: dict[str, Grouping] = {g.name: g for g in _GROUPINGS}


def shape_of(group_by: str) -> Shape:
    """The query shape of a rule grouped by ``group_by``."""
    return "per_message" if group_by == "message" else "windowed"


def group_sql(group_by: str, table: str = "") -> str:
    """The grouping expression of ``group_by`` over ``table`` (an alias, or none)."""
    return GROUPINGS[group_by].sql.format(t=f"{table}." if table else "")


#: per anchor, sums over the messages of its window: the per-message value summed. The
#: compiler sums them as running sums (cheap) less the running sum before the window; the
#: model never leaves these columns null (it coalesces them to 0).
WINDOW_SUMS: dict[str, str] = {
    "n_messages": "1",
    "n_replies": "CASE WHEN is_reply THEN 1 ELSE 0 END",
    "n_auto": "CASE WHEN is_auto THEN 1 ELSE 0 END",
    "n_unknown_or_auto": "CASE WHEN is_auto OR no_subject THEN 1 ELSE 0 END",
    "n_sender_messages": "CASE WHEN sender IS NOT NULL THEN 1 ELSE 0 END",
    "sum_deliveries": "deliveries",
    "sum_recipients": "recipients",
    "sum_bounced": "bounced + returned",
    "sum_submitted": "submitted",
}
#: per anchor, maxima over the messages of its window: the per-message value maximised
WINDOW_MAXIMA: dict[str, str] = {
    "max_recipients": "recipients",
}

_MEASURES = [
    Measure("messages", "messages submitted", "n_messages", "1"),
    Measure("replies", "replies submitted", "n_replies", None),
    # repeats: messages of the window whose sender wrote earlier in it
    Measure("distinct_senders", "distinct envelope senders",
            "n_sender_messages - repeats", "1"),
    Measure("deliveries", "deliveries made (one per recipient mailbox)", "sum_deliveries",
            "deliveries"),
    Measure("audience", "max recipients reached by one message in the window",
            "max_recipients", "recipients"),
    Measure("amplification", "deliveries per submitted recipient",
            "sum_deliveries / greatest(sum_submitted, 1)", "deliveries / greatest(submitted, 1)"),
    Measure("baseline_ratio", "deliveries relative to the sender's usual per-message "
            "deliveries", None, "deliveries / greatest(sender_median, 1)"),
    Measure("history", "other messages of the same sender (what the baseline is made of)", None,
            "history"),
    Measure("recipients", "distinct recipients", "sum_recipients", "recipients"),
    Measure("bounces", "deliveries that bounced (and notices returned to a list)",
            "sum_bounced", "bounced + returned"),
    Measure("bounce_rate", "share of deliveries that bounced",
            "sum_bounced / greatest(sum_deliveries, 1)", "bounced / greatest(deliveries, 1)"),
    Measure("auto_messages", "automatic messages (auto-replies, recalls, receipts)", "n_auto",
            "CASE WHEN is_auto THEN 1 ELSE 0 END"),
    Measure("unknown_or_auto", "automatic messages, or messages of unknown nature (no "
            "subject logged)", "n_unknown_or_auto",
            "CASE WHEN is_auto OR subject IS NULL THEN 1 ELSE 0 END"),
    Measure("duplicates", "copies beyond one per recipient (one person reached through two "
            "lists)", None, "greatest(deliveries - recipients, 0)"),
    Measure("passes", "most times the message passed one host (a loop brings it back)", None,
            "coalesce(max_passes, 1)"),
    Measure("loop_bounces", "deliveries bounced as a mail loop (5.4.6: forwarding loop, too "
            "many hops)", None, "loop_bounces"),
    # the anchor is the window's last message; t is in microseconds
    Measure("span_seconds", "seconds from the first to the last message",
            "(t - window_t0) / 1000000", "0"),
]  # fmt: skip
MEASURES: dict[str, Measure] = {m.name: m for m in _MEASURES}


def measures_for(group_by: str) -> list[str]:
    """Names of the measures that have a meaning for rules grouped by ``group_by``."""
    shape = shape_of(group_by)
    return [m.name for m in _MEASURES if m.sql(shape) is not None]


def measure_problem(group_by: str, measure: str) -> str | None:
    """Why ``measure`` cannot be computed for rules grouped by ``group_by``, if it cannot."""
    available = measures_for(group_by)
    if measure in available:
        return None
    return (f"measure {measure!r} is not available when grouping by {group_by} "
            f"(available: {', '.join(available)})")


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
