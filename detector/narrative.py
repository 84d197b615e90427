"""Plain-words headline and evidence for an incident, built only from its numbers."""

from __future__ import annotations

from datetime import datetime


def _minutes(start: str | None, end: str | None) -> int:
    if not start or not end:
        return 0
    span = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    return max(1, round(span.total_seconds() / 60))


def _hhmm(ts: str | None) -> str:
    return ts[11:16] if ts else "?"


def describe(inc: dict) -> dict:
    """{'headline': str, 'evidence': [str, ...]} for an incident dict."""
    root = inc["root"]
    # how long people kept sending; deliveries (retries) may trail on to inc["end"]
    minutes = _minutes(inc["start"], inc.get("last_message") or inc["end"])
    audience = f"all {inc['list_size']:,} members of {inc['list']}" if inc["list"] \
        else f"{inc['list_size']:,} recipients"
    if inc["kind"] == "reply_storm":
        headline = (f"{inc['repliers']:,} people replied to {audience} "
                    f"within {minutes} minutes, costing {inc['deliveries']:,} deliveries")
    elif inc["kind"] == "auto_storm":
        headline = (f"{inc['senders']:,} mail clients answered {audience} automatically "
                    f"within {minutes} minutes, costing {inc['deliveries']:,} deliveries")
    elif inc["kind"] == "bounce_storm":
        where = f"to {inc['list']}" if inc["list"] else f"from {root['sender'] or '<>'}"
        headline = (f"{inc['bounced']:,} deliveries of mail {where} bounced "
                    f"within {minutes} minutes")
    elif inc["kind"] == "mail_loop":
        headline = (f"{inc['messages']:,} messages went round a loop in {minutes} minutes "
                    f"({inc['cause']})")
    elif inc["kind"] == "fanout":
        headline = (f"One message from {root['sender'] or '<>'} reached "
                    f"{inc['deliveries']:,} mailboxes"
                    + (f" through {inc['list']}" if inc["list"] else ""))
    else:
        headline = (f"{inc['kind'].replace('_', ' ')}: {inc['messages']:,} messages, "
                    f"{inc['deliveries']:,} deliveries in {minutes} minutes")
    evidence = [
        f"Cause: {inc['cause']}.",
        f"It started with message {root['message_id'] or '(no Message-ID logged)'} from "
        f"{root['sender'] or '<>'} at {_hhmm(root['ts'])} UTC"
        + (f", delivered to {root['deliveries']:,} mailboxes." if root["deliveries"] else "."),
        f"{inc['messages']:,} messages from {inc['senders']:,} distinct senders "
        f"({inc['replies']:,} replies) sent between {_hhmm(inc['start'])} and "
        f"{_hhmm(inc.get('last_message') or inc['end'])} UTC; the last delivery was at "
        f"{_hhmm(inc['end'])} UTC.",
        f"Busiest minute {_hhmm(inc['peak'])} UTC; {inc['deliveries']:,} deliveries in all, "
        f"{inc['amplification']:,} per message sent.",
    ]
    fired = " and ".join(f"{c['measure']} = {c['value']:,} {c['op']} {c['threshold']:,}"
                         for c in inc["conditions"])
    window = f" within a {inc['window']} window" if inc.get("window") else ""
    evidence.append(f"Rule {inc['rule']} fired at its peak: {fired}{window}.")
    evidence += [_what_if(w) for w in inc.get("what_if", [])]
    return {"headline": headline, "evidence": evidence}


def _what_if(result: dict) -> str:
    if result["fires_at"] is None:
        return f"What if: {result['label']} would not have fired on this storm."
    return (f"What if: {result['label']} would have fired at "
            f"{_hhmm(result['fires_at'])} UTC, after {result['messages_before']:,} messages; "
            f"blocking the {result['blocked_messages']:,} later replies would have saved "
            f"{result['prevented_deliveries']:,} of {result['deliveries']:,} deliveries "
            f"({result['prevented_share']:.0%}).")
