"""What an enhanced status code (RFC 3463) says, for the reasons a report groups by.

Data, not code: the class (first digit) and the subject.detail codes mail servers log
most, with their RFC 3463 meaning. An unknown detail falls back to its subject, then to
its class; nothing is guessed beyond what the code itself says.
"""

from __future__ import annotations

_CLASSES = {"2": "success", "4": "temporary failure (retried)", "5": "permanent failure"}

_SUBJECTS = {
    "0": "other or undefined status",
    "1": "addressing status",
    "2": "mailbox status",
    "3": "mail system status",
    "4": "network and routing status",
    "5": "mail delivery protocol status",
    "6": "message content or media status",
    "7": "security or policy status",
}

_DETAILS = {
    "1.1": "bad destination mailbox address (no such user)",
    "1.2": "bad destination system address",
    "1.3": "bad destination mailbox address syntax",
    "1.6": "destination mailbox has moved",
    "1.8": "bad sender's system address",
    "2.0": "other or undefined mailbox status (often greylisting)",
    "2.1": "mailbox disabled, not accepting messages",
    "2.2": "mailbox full",
    "2.3": "message length exceeds administrative limit",
    "3.0": "other or undefined mail system status",
    "3.1": "mail system full",
    "3.4": "message too big for system",
    "4.0": "other or undefined network or routing status",
    "4.1": "no answer from host",
    "4.2": "bad connection",
    "4.3": "directory server failure (DNS)",
    "4.4": "unable to route",
    "4.6": "routing loop detected",
    "4.7": "delivery time expired",
    "5.3": "too many recipients",
    "7.0": "other or undefined security status",
    "7.1": "delivery not authorized, message refused",
}


def dsn_meaning(code: str | None) -> str:
    """``5.1.1`` -> ``permanent failure: bad destination mailbox address (no such user)``;
    a code the log did not give, or not of the form, says so."""
    parts = (code or "").split(".")
    if len(parts) != 3 or parts[0] not in _CLASSES:
        return "no status code logged" if not code else "not an RFC 3463 code"
    detail = _DETAILS.get(f"{parts[1]}.{parts[2]}") or _SUBJECTS.get(parts[1], "unknown subject")
    return f"{_CLASSES[parts[0]]}: {detail}"
