"""Small pieces of Postfix log text: delay numbers, logged headers, SMTP replies."""

from __future__ import annotations

import base64
import random
from functools import lru_cache

TLS_IN = (
    "TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits)",
    "TLSv1.2 with cipher ECDHE-RSA-AES128-GCM-SHA256 (128/128 bits)",
    "TLSv1 with cipher ECDHE-RSA-AES256-SHA (256/256 bits)",
)
TLS_OUT_TRUST = ("Untrusted", "Trusted", "Verified")
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def format_tv(us: int) -> str:
    """Postfix format_tv(): two significant digits, at most two decimals, no trailing zeros.

    So 0.523 s -> "0.52", 1.13 s -> "1.1", 12.6 s -> "13", 0.004 s -> "0".
    """
    sec, usec = divmod(max(us, 0), 1_000_000)
    if sec > 0:
        n = 1
        while sec >= n and n <= 10:
            n *= 10
        ures = 10_000 * n
    else:
        ures = 10_000
        while usec >= 100 * ures:
            ures *= 10
    usec += ures // 2
    if usec >= 1_000_000:
        sec, usec = sec + 1, usec - 1_000_000
    if ures >= 1_000_000:
        return str(sec)
    places = 6 - len(str(ures)) + 1
    frac = f"{usec // ures:0{places}d}".rstrip("0")
    return f"{sec}.{frac}" if frac else str(sec)


class DelayText(dict):
    """Cache of format_tv by whole milliseconds: ``d[us // 1000]``."""

    def __missing__(self, ms: int) -> str:
        s = self[ms] = format_tv(ms * 1000)
        return s


def fold(name: str, value: str, each: bool = False) -> str:
    """A header as cleanup logs it: folded lines joined by '\\n ', which Postfix's log
    sanitiser prints as '? '; content is cut at 200 characters (cleanup's ``%.200s``)."""
    if each:  # Outlook puts every References id on its own line
        text = f"{name}: " + "? ".join(value.split(" "))
    elif len(name) + 2 + len(value) <= 78:
        text = f"{name}: {value}"
    else:
        lines, cur = [], f"{name}:"
        for word in value.split(" "):
            if len(cur) + 1 + len(word) > 78 and cur.strip() != f"{name}:":
                lines.append(cur)
                cur = ""
            cur += " " + word
        lines.append(cur)
        text = "?".join(lines)
    return text[:200]


def remote_qid(rng: random.Random) -> str:
    return f"{rng.getrandbits(40):010X}"


def smtp_ok(style: str, rng: random.Random, mid: str, size: int, t_us: int) -> str:
    """What a receiving server answers after DATA, by server family."""
    if style == "gsmtp":
        a = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(3))
        return (f"250 2.0.0 OK {t_us // 1_000_000} {a[0]}{rng.randint(1, 9)}si"
                f"{rng.randint(1_000_000, 9_999_999)}{a[1:]}{rng.choice('xyz')}"
                f".{rng.randint(1, 999)} - gsmtp")
    if style == "exo":
        host = f"AM5PR0{rng.randint(1, 9)}01MB{rng.randint(1000, 9999)}"
        secs = rng.uniform(0.02, 0.4)
        return (f"250 2.6.0 <{mid}> [InternalId={rng.randint(10**12, 10**13)}, "
                f"Hostname={host}.eurprd0{rng.randint(1, 8)}.prod.cloudmail.example] "
                f"{size} bytes in {secs:.3f}, {size / 1024 / secs:.3f} KB/sec "
                "Queued mail for delivery")
    return f"250 2.0.0 Ok: queued as {remote_qid(rng)}"


def session_id(rng: random.Random, n: int = 10) -> str:
    """``n`` (<= 12) random base64 characters, as in Dovecot LMTP session ids."""
    return base64.b64encode(rng.getrandbits(72).to_bytes(9, "big")).decode()[:n]


@lru_cache(maxsize=512)
def counters(*, tls: bool, auth: bool, rcpt: int) -> str:
    """smtpd's per-command counters on the disconnect line of a successful session."""
    parts = [("ehlo", 2), ("starttls", 1)] if tls else [("ehlo", 1)]
    if auth:
        parts.append(("auth", 1))
    parts += [("mail", 1), ("rcpt", rcpt), ("data", 1), ("quit", 1)]
    total = sum(n for _, n in parts)
    return " ".join(f"{k}={n}" for k, n in parts) + f" commands={total}"


REJECTS = {
    "rbl": "554 5.7.1 Service unavailable; Client host [{ip}] blocked using zen.spamhaus.org",
    "relay": "454 4.7.1 <{rcpt}>: Relay access denied",
    "unknown_user": ("550 5.1.1 <{rcpt}>: Recipient address rejected: "
                     "User unknown in virtual mailbox table"),
}


def too_many_hops(rcpt: str) -> str:
    """Sendmail's refusal of a message that went round a loop (collect.c, MaxHopCount 25)."""
    return f"Too many hops 26 (25 max): to <{rcpt}>"


def failure(code: str, rcpt: str, host: str, lmtp: bool) -> str:
    """dsn/status/reply of a delivery attempt that did not succeed, by outcome code."""
    if code == "bounced":
        if lmtp:  # Dovecot LMTP refusing a mailbox that no longer exists
            return (f"dsn=5.1.1, status=bounced (host {host} said: 550 5.1.1 <{rcpt}> User "
                    f"doesn't exist: {rcpt} (in reply to RCPT TO command))")
        return (f"dsn=5.1.1, status=bounced (host {host} said: 550 5.1.1 <{rcpt}>: Recipient "
                "address rejected: User unknown in virtual mailbox table (in reply to RCPT TO "
                "command))")
    if code == "loop":  # the next hop counted the Received headers (Sendmail's words)
        return (f"dsn=5.4.6, status=bounced (host {host} said: 554 5.4.6 {too_many_hops(rcpt)} "
                "(in reply to end of DATA command))")
    if code == "timeout":
        return f"dsn=4.4.1, status=deferred (connect to {host}:25: Connection timed out)"
    if code == "greylist":
        dom = rcpt.rpartition("@")[2]
        return (f"dsn=4.2.0, status=deferred (host {host} said: 450 4.2.0 <{rcpt}>: Recipient "
                "address rejected: Greylisted, see "
                f"http://postgrey.schweikert.ch/help/{dom}.html (in reply to RCPT TO command))")
    return (f"dsn=4.2.2, status=deferred (host {host} said: 452 4.2.2 <{rcpt}> Quota exceeded "
            "(mailbox for user is full) (in reply to end of DATA command))")
