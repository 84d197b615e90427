"""Bounces told as one story (issue 11.3): the bounces of a list post name the list, the
non-delivery notices remote servers return later to the list's bounce address are
bounces of the same incident, and bounces of messages queued before the log starts
(sender unknown) still count, grouped by what is known.

The lines are in the shapes of ../shared/corpus postfix/fgforrest-pda.log (line 1848:
a bounced smtp delivery), postfix/lightmeter-cases.log (line 1065: a local delivery to a
command) and postfix/postfix-maillog-dump.log (smtpd client=, cleanup message-id=,
qmgr from=); VERP return paths as Mailman writes them ("<list>-bounces+<member>=
<domain>@<list domain>", Mailman 2 ``VERP_FORMAT``).
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from detector.cli import main

LIST = "all.staff@lists.example.org"
BOUNCES = "all.staff-bounces"


def _qid(n: int, prefix: str) -> str:
    return f"{prefix}{n:06X}"


def _copy(n: int, t: str) -> list[str]:
    """Mailman's VERP copy of one post to member n, bounced by the member's server."""
    q, member = _qid(n, "A1"), f"user{n}@dead.example.net"
    verp = f"{BOUNCES}+user{n}=dead.example.net@lists.example.org"
    return [
        f"Nov 14 {t} lists postfix/smtpd[100]: {q}: client=localhost[127.0.0.1]",
        f"Nov 14 {t} lists postfix/cleanup[101]: {q}: message-id=<post-1@example.org>",
        f"Nov 14 {t} lists postfix/qmgr[102]: {q}: from=<{verp}>, size=4012, nrcpt=1"
        " (queue active)",
        f"Nov 14 {t} lists postfix/smtp[103]: {q}: to=<{member}>,"
        " relay=mx.dead.example.net[192.0.2.7]:25, delay=1.1, delays=0.01/0/1/0.04,"
        f" dsn=5.1.1, status=bounced (host mx.dead.example.net[192.0.2.7] said: 550 5.1.1"
        " Sorry, no mailbox here by that name. (in reply to RCPT TO command))",
        f"Nov 14 {t} lists postfix/qmgr[102]: {q}: removed",
    ]


def _returned(n: int, t: str) -> list[str]:
    """A non-delivery notice a remote server sends back later to member n's VERP address,
    delivered to Mailman's bounce processor."""
    q = _qid(n, "B2")
    verp = f"{BOUNCES}+user{n}=late.example.com@lists.example.org"
    return [
        f"Nov 14 {t} lists postfix/smtpd[200]: {q}: client=mx.late.example.com[198.51.100.9]",
        f"Nov 14 {t} lists postfix/cleanup[201]: {q}: message-id=<ndr-{n}@mx.late.example.com>",
        f"Nov 14 {t} lists postfix/qmgr[202]: {q}: from=<>, size=6120, nrcpt=1 (queue active)",
        f"Nov 14 {t} lists postfix/local[203]: {q}: to=<{verp}>, relay=local, delay=0.1,"
        " delays=0.09/0/0/0.01, dsn=2.0.0, status=sent (delivered to command:"
        " /usr/lib/mailman/mail/mailman bounces all.staff)",
        f"Nov 14 {t} lists postfix/qmgr[202]: {q}: removed",
    ]


def _prelog(n: int, t: str) -> list[str]:
    """The expiry of a message queued before the log starts: only its delivery logged."""
    q = _qid(n, "C3")
    # Postfix names the sender again when the deferred message re-enters the active
    # queue; the arrival (smtpd, cleanup) is in yesterday's log
    retry = [f"Nov 14 {t} mx1 postfix/qmgr[301]: {q}: from=<clerk{n}@example.org>,"
             " size=3120, nrcpt=1 (queue active)"] if n % 2 else []
    return [
        *retry,
        f"Nov 14 {t} mx1 postfix/smtp[300]: {q}: to=<staff{n}@gone.example.com>,"
        " relay=mx.gone.example.com[203.0.113.5]:25, delay=432000,"
        " delays=431999/0/0.5/0.5, dsn=5.1.1, status=bounced (host mx.gone.example.com"
        "[203.0.113.5] said: 550 5.1.1 <staff@gone.example.com>: Recipient address"
        " rejected (in reply to RCPT TO command))",
        f"Nov 14 {t} mx1 postfix/qmgr[301]: {q}: removed",
    ]


def _incidents(tmp_path: Path, lines: list[str], min_bounces: int) -> list[dict]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "mail.log"
    log.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run", str(log), "--out", str(out), "--tz", "UTC",
                                    "--year", "2016", "-q", "--set",
                                    f"bounce_storm.min_bounces={min_bounces}"])
    assert res.exit_code == 0, res.output
    return json.loads((out / "incidents.json").read_text())["incidents"]


def test_a_list_posts_bounces_and_the_notices_returned_later_are_one_story(
        tmp_path: Path) -> None:
    lines = [x for n in range(8) for x in _copy(n, f"10:00:{n:02d}")]
    lines += [x for n in range(5) for x in _returned(n, f"10:{20 + n}:00")]
    [storm] = [i for i in _incidents(tmp_path, lines, 13) if i["kind"] == "bounce_storm"]
    assert storm["list"] == LIST  # named from the VERP return path, not 8 senders
    assert storm["bounced"] == 8 + 5
    assert storm["messages"] == 1 + 5


def test_one_short_is_no_storm(tmp_path: Path) -> None:
    lines = [x for n in range(8) for x in _copy(n, f"10:00:{n:02d}")]
    lines += [x for n in range(5) for x in _returned(n, f"10:{20 + n}:00")]
    assert [i for i in _incidents(tmp_path, lines, 14) if i["kind"] == "bounce_storm"] == []


def test_bounces_of_mail_queued_before_the_log_still_count(tmp_path: Path) -> None:
    lines = [x for n in range(12) for x in _prelog(n, f"06:{n:02d}:00")]
    [storm] = [i for i in _incidents(tmp_path, lines, 12) if i["kind"] == "bounce_storm"]
    assert storm["bounced"] == 12
    assert storm["list"] is None
    assert "of mail queued before the log to @gone.example.com via mx.gone.example.com" \
        in storm["headline"]
    assert [i for i in _incidents(tmp_path / "short", lines, 13)
            if i["kind"] == "bounce_storm"] == []


def test_a_notice_made_on_this_host_is_not_returned_again(tmp_path: Path) -> None:
    # the same notices, but handed over on the loopback (made here: the bounces they
    # report are the deliveries counted already)
    lines = [x for n in range(8) for x in _copy(n, f"10:00:{n:02d}")]
    lines += [x.replace("client=mx.late.example.com[198.51.100.9]", "client=localhost[127.0.0.1]")
              for n in range(5) for x in _returned(n, f"10:{20 + n}:00")]
    [storm] = [i for i in _incidents(tmp_path, lines, 8) if i["kind"] == "bounce_storm"]
    assert storm["bounced"] == 8
