"""Plain-words headline and evidence for an incident, built only from its numbers."""

from __future__ import annotations

from datetime import datetime

from detector.incidents.model import Incident
from detector.incidents.repeats import REPEAT_GAP
from detector.whatif import PolicyEstimate


def plural(count: int | float, noun: str, many: str | None = None) -> str:
    """``1 minute``, ``2 minutes``, ``1,200 messages``."""
    word = noun if count == 1 else (many or noun + "s")
    return f"{count:,} {word}"


def _minutes(start: datetime | None, end: datetime | None) -> int:
    if start is None or end is None:
        return 0
    return max(1, round((end - start).total_seconds() / 60))


def _hhmm(ts: datetime | None) -> str:
    return f"{ts:%H:%M}" if ts is not None else "?"


def describe(inc: Incident) -> tuple[str, tuple[str, ...]]:
    """The headline and the lines of evidence of an incident."""
    root = inc.root
    # '' is the null sender of bounces; None a sender the log never named (the message
    # was queued before the log starts)
    known = root is not None and root.sender is not None
    sender = (root.sender or "<>") if root is not None and known else "an unknown sender"
    # how long people kept sending; deliveries (retries) may trail on to inc.end
    within = plural(_minutes(inc.start, inc.last_message or inc.end), "minute")
    audience = (f"all {inc.list_size:,} members of {inc.list}" if inc.list
                else plural(inc.list_size, "recipient"))
    costing = plural(inc.deliveries, "delivery", "deliveries")
    if inc.kind == "reply_storm":
        headline = (f"{plural(inc.repliers, 'person', 'people')} replied to {audience} "
                    f"within {within}, costing {costing}")
    elif inc.kind == "auto_storm":
        headline = (f"{plural(inc.senders, 'mail client')} answered {audience} "
                    f"automatically within {within}, costing {costing}")
    elif inc.kind == "bounce_storm":
        # the group is the list, the sender, or what is known of mail queued before the
        # log starts (its bounces' domain and relay)
        mail = (f"mail to {inc.list}" if inc.list
                else f"mail from {sender}" if not inc.group_key or inc.group_key == sender
                else inc.group_key)
        headline = (f"{plural(inc.bounced, 'delivery', 'deliveries')} of {mail} "
                    f"bounced within {within}")
    elif inc.kind == "mail_loop" and inc.occurrences > 1:
        headline = (f"The same loop came back {plural(inc.occurrences, 'time')} in {within}: "
                    f"{plural(inc.messages, 'message')} from {sender} ({inc.cause})")
    elif inc.kind == "mail_loop":
        headline = (f"{plural(inc.messages, 'message')} went round a loop in {within} "
                    f"({inc.cause})")
    elif inc.kind == "fanout":
        mailboxes = plural(inc.deliveries, "mailbox", "mailboxes")
        headline = (f"One message from {sender} reached {mailboxes}"
                    + (f" through {inc.list}" if inc.list else ""))
    else:
        headline = (f"{inc.kind.replace('_', ' ')}: {plural(inc.messages, 'message')}, "
                    f"{costing} in {within}")
    message_id = (root.message_id if root else None) or "(no Message-ID logged)"
    started = (f"It started with message {message_id} "
               f"from {sender} at {_hhmm(root.ts if root else None)} UTC")
    if root is not None and root.deliveries:
        started += f", delivered to {plural(root.deliveries, 'mailbox', 'mailboxes')}."
    else:
        started += "."
    evidence = [
        f"Cause: {inc.cause}.",
        started,
        f"{plural(inc.messages, 'message')} from {plural(inc.senders, 'distinct sender')} "
        f"({plural(inc.replies, 'reply', 'replies')}) sent between {_hhmm(inc.start)} and "
        f"{_hhmm(inc.last_message or inc.end)} UTC; the last delivery was at "
        f"{_hhmm(inc.end)} UTC.",
        f"Busiest minute {_hhmm(inc.peak)} UTC; {costing} in all, "
        f"{inc.amplification:,} per message sent.",
    ]
    if inc.occurrences > 1:
        evidence.append(
            f"One cause repeating: {plural(inc.occurrences, 'message')} of the same sender "
            f"to the same target each went round the loop, none more than "
            f"{plural(round(REPEAT_GAP.total_seconds() / 60), 'minute')} after the one "
            f"before; reported as one incident.")
    fired = " and ".join(f"{c.measure} = {c.value:,} {c.op} {c.threshold:,}"
                         for c in inc.conditions)
    window = f" within a {inc.window} window" if inc.window else ""
    evidence.append(f"Rule {inc.rule} fired at its peak: {fired}{window}.")
    evidence += [_estimate(w) for w in inc.what_if]
    return headline, tuple(evidence)


def _estimate(result: PolicyEstimate) -> str:
    if result.fires_at is None:
        return f"Estimate: {result.label} would not have fired on this storm."
    return (f"Estimate: {result.label} would have fired at "
            f"{_hhmm(result.fires_at)} UTC, after {plural(result.messages_before, 'message')}; "
            f"blocking the {plural(result.blocked_messages, 'later reply', 'later replies')} "
            f"would have spared about {result.prevented_deliveries:,} of "
            f"{result.deliveries:,} deliveries ({result.prevented_share:.0%}).")
