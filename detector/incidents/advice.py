"""What to do next about an incident: steps drawn from its evidence, per kind.

The steps are data (``STEPS``): for which kinds, who acts, the sentence as a template
over the incident's evidence (``evidence``), and the evidence it needs; a step whose
evidence is missing is left out, so no step is said without the numbers behind it. The
settings named are the products' documented ones (the ``source`` of each step); the
thresholds are this incident's, computed from its messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from detector.incidents.details import Details
from detector.incidents.impact import format_seconds
from detector.incidents.model import Incident

STORMS = frozenset({"reply_storm", "auto_storm"})
REPLY = frozenset({"reply_storm"})  # what reply-all storm protection counts
#: Postfix's default smtpd_recipient_limit (postconf(5))
POSTFIX_RECIPIENT_LIMIT = 1000


@dataclass(frozen=True)
class Step:
    kinds: frozenset[str]
    who: str
    text: str  # str.format template over ``evidence``
    needs: tuple[str, ...] = ()  # evidence that must be present and non-zero
    source: str = ""


@dataclass(frozen=True)
class NextStep:
    who: str
    text: str
    source: str


STEPS: tuple[Step, ...] = (
    Step(STORMS, "list owner, now",
         "Stop further replies reaching {list}: hold every post to it for a moderator until "
         "it is quiet (Mailman: the list's emergency flag; Exchange: Set-DistributionGroup "
         "-Identity {list} -ModerationEnabled $true -ModeratedBy <owner>; a Postfix alias: "
         "accept mail to {list} only from named senders).",
         ("list",), "Mailman emergency rule; Set-DistributionGroup; Postfix "
         "RESTRICTION_CLASS_README, \"Protecting internal email distribution lists\""),
    Step(STORMS, "list owner",
         "Restrict who may post to {list} for good: each of its {list_size} members got "
         "every one of the {replies} replies. Let only named senders post (Exchange: "
         "-AcceptMessagesOnlyFromSendersOrMembers; Mailman 3: default_member_action = hold; "
         "Mailman 2.1: default_member_moderation), so a reply-all waits for a moderator.",
         ("list", "list_size", "replies"),
         "Set-DistributionGroup; Mailman moderation settings"),
    Step(REPLY, "Exchange Online admin",
         "Keep reply-all storm protection on (Set-TransportConfig "
         "-ReplyAllStormProtectionEnabled $true). At its defaults (10 replies to 2,500 or "
         "more recipients within 60 minutes, then replies blocked for 6 hours) it would have "
         "fired at {exo_fires_at} UTC after {exo_messages_before} messages, sparing about "
         "{exo_spared} deliveries ({exo_share}). This storm would have tripped "
         "-ReplyAllStormDetectionMinimumReplies up to {replies_60m} and "
         "-ReplyAllStormDetectionMinimumRecipients up to {min_audience}.",
         ("exo_fires_at", "replies_60m", "min_audience"),
         "Set-TransportConfig (Exchange Online)"),
    Step(REPLY, "Exchange Online admin",
         "Exchange Online's reply-all storm protection would not have fired at its defaults "
         "(10 replies to 2,500 or more recipients within 60 minutes): this storm had at most "
         "{replies_60m} replies within 60 minutes, the smallest reaching {min_audience} "
         "recipients. To catch one like it, set -ReplyAllStormDetectionMinimumReplies to at "
         "most {replies_60m} and -ReplyAllStormDetectionMinimumRecipients to at most "
         "{min_audience} (Set-TransportConfig).",
         ("exo_never", "replies_60m", "min_audience"),
         "Set-TransportConfig (Exchange Online)"),
    Step(STORMS, "list server admin",
         "Mailman's max_num_recipients holds a post naming that many addresses or more: set "
         "to {root_submitted_plus1} on {list}, it would have held the "
         "{replies_naming_more} replies that named the list and more addresses (the first "
         "post named {root_submitted}).",
         ("list", "replies_naming_more", "root_submitted"),
         "Mailman max-recipients rule (max_num_recipients)"),
    Step(STORMS | {"fanout"}, "postmaster",
         "Postfix's smtpd_recipient_limit (default 1,000) would not have stopped it: no "
         "message here named more than {max_submitted} addresses before {list} expanded "
         "them, and the limit counts only those.",
         ("list", "max_submitted", "recipient_limit_blind"), "postconf(5) smtpd_recipient_limit"),
    Step(STORMS | {"bounce_storm", "fanout"}, "list owner",
         "Remove the {dead} dead addresses from {list}: every post to it bounced for them "
         "({bounced} bounces here, each sending a non-delivery notice back to its sender). "
         "They are the bounced rows of the deliveries CSV.",
         ("list", "dead", "bounced")),
    Step(frozenset({"bounce_storm", "mail_loop"}), "postmaster",
         "{dead} recipients failed for good ({bounced} bounces): the failures table groups "
         "them by status code and domain; remove or correct those addresses at their source.",
         ("dead", "bounced", "no_list")),
    Step(STORMS, "list owner",
         "Answer the {removal_requests} replies asking to be taken off the list (or everyone "
         "to stop) once, off the list: a reply to the list would add to the storm.",
         ("removal_requests",)),
    Step(STORMS, "tell",
         "Tell {root_sender}, who sent the first message, and the {repliers} people who "
         "replied (the messages CSV names them) why posting to {list} is now held, and tell "
         "the service desk that its deliveries drained until {drained_until} UTC.",
         ("list", "root_sender", "repliers", "drained_until")),
    Step(frozenset({"fanout", "bounce_storm"}), "tell",
         "Tell {root_sender}, who sent it, and the owner of {list} what happened; tell the "
         "service desk that its deliveries drained until {drained_until} UTC.",
         ("list", "root_sender", "drained_until")),
    Step(STORMS | {"fanout", "bounce_storm", "mail_loop"}, "tell",
         "Other mail was slowed: its 95th-percentile delivery delay was {others_p95} during "
         "the incident against {before_p95} the same hours the day before; late mail users "
         "report from then is explained by this incident.",
         ("slowed_others",)),
    Step(frozenset({"fanout"}), "list owner",
         "Check how {list} is built: one message from {root_sender} reached {deliveries} "
         "mailboxes, {amplification} per address its sender wrote; a list holding other "
         "lists delivers a member once per list holding them. Remove nested lists or "
         "duplicate members.",
         ("list", "root_sender", "deliveries")),
    Step(frozenset({"mail_loop"}), "postmaster",
         "Break the loop ({cause}): {messages} messages in the messages table. Postfix "
         "bounces a message with more than hopcount_limit (default 50) Received: headers, "
         "which stops a forwarding loop but not two auto-responders answering each other "
         "with new messages: turn off the automatic reply or the forward on one side.",
         ("messages",), "postconf(5) hopcount_limit"),
)


def evidence(inc: Incident, details: Details | None) -> dict[str, Any]:
    """The numbers and names the steps are drawn from, formatted for a sentence; a value
    the incident does not have is None."""
    exo = next((w for w in inc.what_if if w.policy == "exchange_online"), None)
    d = details
    impact = d.impact if d else None
    others = impact.others.p95 if impact else None
    before = impact.day_before.p95 if impact and impact.day_before else None
    return {
        "list": inc.list,
        "list_size": f"{inc.list_size:,}" if inc.list_size else None,
        "replies": inc.replies or None,
        "repliers": inc.repliers,
        "messages": f"{inc.messages:,}",
        "deliveries": f"{inc.deliveries:,}",
        "amplification": f"{inc.amplification:,}",
        "cause": inc.cause,
        "root_sender": inc.root.sender if inc.root else None,
        "drained_until": f"{inc.end:%H:%M}",
        "exo_fires_at": f"{exo.fires_at:%H:%M}" if exo and exo.fires_at else None,
        "exo_never": exo is not None and exo.fires_at is None,
        "exo_messages_before": exo.messages_before if exo else None,
        "exo_spared": f"{exo.prevented_deliveries:,}" if exo else None,
        "exo_share": f"{exo.prevented_share:.0%}" if exo else None,
        "replies_60m": d.replies_in_window if d else None,
        "min_audience": f"{d.min_reply_recipients:,}" if d and d.min_reply_recipients else None,
        "max_submitted": d.max_submitted if d else None,
        "recipient_limit_blind": bool(d and d.max_submitted is not None
                                      and d.max_submitted < POSTFIX_RECIPIENT_LIMIT),
        "root_submitted": d.root_submitted if d else None,
        "root_submitted_plus1": (d.root_submitted + 1) if d and d.root_submitted else None,
        "replies_naming_more": d.replies_naming_more if d else None,
        "dead": d.dead_recipients if d else None,
        "bounced": f"{d.bounced:,}" if d and d.bounced else None,
        "no_list": not inc.list,
        "removal_requests": d.removal_requests if d else None,
        "others_p95": format_seconds(others),
        "before_p95": format_seconds(before),
        # slowed: a tail at least twice the day before's and over a minute
        "slowed_others": (others is not None and before is not None
                          and others > max(2 * before, 60)),
    }


def next_steps(inc: Incident, details: Details | None) -> list[NextStep]:
    """The steps for this incident's kind whose evidence it has, in ``STEPS`` order."""
    facts = evidence(inc, details)
    out = []
    for step in STEPS:
        if inc.kind not in step.kinds or not all(facts.get(n) for n in step.needs):
            continue
        text = step.text.format_map({k: "" if v is None else v for k, v in facts.items()})
        out.append(NextStep(step.who, text, step.source))
    return out
