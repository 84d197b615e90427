"""One syslog file, several mail programs: a RHEL maillog where Sendmail (``sendmail -t``
from cron) hands mail to Postfix on the same host. Each line goes to the format of its
program tag; ``--format`` still forces one.

The lines are server1's, from ../shared/corpus (infohtreasure/Postfix-Maillog-Dump, one
maillog split by program when the corpus was built): Postfix lines from
``postfix/postfix-maillog-dump.log``, Sendmail lines from
``sendmail/postfix-maillog-dump.log``, put back together in time order.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.formats import shared
from detector.formats.context import ParseContext
from detector.formats.syslog import YearState
from detector.summary import build_summary
from detector.warehouse import Warehouse

POSTFIX_DELIVERIES = [  # postfix/postfix-maillog-dump.log lines 51 and 506
    "Feb 25 13:58:28 server1 postfix/local[3267]: 9C37E404B379: to=<root@server1.alsoft.org>,"
    " relay=local, delay=0.03, delays=0.01/0.02/0/0.01, dsn=2.0.0, status=sent (delivered to"
    " mailbox)",
    "Feb 25 15:36:31 server1 postfix/smtp[25298]: D4748404B37D: to=<myemail@ymail.com>,"
    " relay=mta7.am0.yahoodns.net[67.195.204.72]:25, delay=36, delays=34/0.04/1.2/0.62,"
    " dsn=5.0.0, status=bounced (host mta7.am0.yahoodns.net[67.195.204.72] said: 552 1"
    " Requested mail action aborted, mailbox not found (in reply to end of DATA command))",
]
SENDMAIL_HEAD = [  # sendmail/postfix-maillog-dump.log lines 1-3
    "Feb 26 12:27:04 server1 sendmail[5948]: alias database /etc/aliases rebuilt by root",
    "Feb 26 12:27:04 server1 sendmail[5948]: /etc/aliases: 77 aliases, longest 10 bytes,"
    " 778 bytes total",
    "Feb 26 12:27:16 server1 sendmail[6005]: 21QBRGdX006005: from=root, size=30, class=0,"
    " nrcpts=6, msgid=<202202261127.21QBRGdX006005@server1.alsoft.org>, relay=root@localhost",
]
_REFUSED = (  # sendmail/postfix-maillog-dump.log lines 4-8
    "Feb 26 12:27:16 server1 sendmail[6005]: 21QBRGdX006005: to={}, ctladdr=root (0/0),"
    " delay=00:00:00, xdelay=00:00:00, mailer=relay, pri=180030, relay=[127.0.0.1]"
    " [127.0.0.1], dsn=5.1.1, stat=User unknown"
)
SENDMAIL_REFUSED = [_REFUSED.format(r) for r in ("This", "is", "the", "subject", "line")]
SENDMAIL_SENT = (  # line 9: handed to the local Postfix, which queued it as A3EF4405DD14
    "Feb 26 12:27:16 server1 sendmail[6005]: 21QBRGdX006005: to=info.htreasure@gmail.com,"
    " ctladdr=root (0/0), delay=00:00:00, xdelay=00:00:00, mailer=relay, pri=180030,"
    " relay=[127.0.0.1] [127.0.0.1], dsn=2.0.0, stat=Sent (Ok: queued as A3EF4405DD14)"
)
POSTFIX_CLIENT = (  # postfix/postfix-maillog-dump.log line 6086
    "Feb 26 12:27:16 server1 postfix/smtpd[6006]: A3EF4405DD14: client=localhost[127.0.0.1]")
SENDMAIL_DSN = (  # line 10
    "Feb 26 12:27:16 server1 sendmail[6005]: 21QBRGdX006005: 21QBRGdY006005: DSN:"
    " User unknown")
POSTFIX_QUEUED = [  # postfix/postfix-maillog-dump.log lines 6274 and 6292
    "Feb 26 12:27:16 server1 postfix/cleanup[6009]: A3EF4405DD14:"
    " message-id=<202202261127.21QBRGdX006005@server1.alsoft.org>",
    "Feb 26 12:27:16 server1 postfix/qmgr[4652]: A3EF4405DD14: from=<root@server1.alsoft.org>,"
    " size=497, nrcpt=1 (queue active)",
]
SENDMAIL_DSN_SENT = (  # line 11
    "Feb 26 12:27:16 server1 sendmail[6005]: 21QBRGdY006005: to=root, delay=00:00:00,"
    " xdelay=00:00:00, mailer=relay, pri=31054, relay=[127.0.0.1] [127.0.0.1], dsn=2.0.0,"
    " stat=Sent (Ok: queued as CB45F405DD15)"
)
MAILLOG = [*POSTFIX_DELIVERIES, *SENDMAIL_HEAD, *SENDMAIL_REFUSED, SENDMAIL_SENT, POSTFIX_CLIENT,
           SENDMAIL_DSN, *POSTFIX_QUEUED, SENDMAIL_DSN_SENT]
SENDMAIL_LINES = 3 + 5 + 1 + 1 + 1
POSTFIX_LINES = 2 + 1 + 2


def _parse(fmt: str, *, shared_file: bool = True) -> tuple[pl.DataFrame, set[str]]:
    lines = pl.DataFrame({"raw": MAILLOG, "line_no": range(1, len(MAILLOG) + 1)})
    ctx = ParseContext("maillog", "UTC", YearState(2022))
    return shared.parse(lines, ctx, fmt, shared=shared_file)


def test_the_lines_are_the_ones_counted() -> None:
    assert len(MAILLOG) == SENDMAIL_LINES + POSTFIX_LINES


@pytest.mark.parametrize("sniffed", ["postfix", "sendmail"])
def test_each_program_is_read_by_its_own_format(sniffed: str) -> None:
    events, held = _parse(sniffed)
    assert held == {"postfix", "sendmail"}
    assert events["kind"].is_in(["foreign", "unparsed"]).sum() == 0
    assert sorted(set(events["line_no"])) == list(range(1, len(MAILLOG) + 1))
    sm = events.filter(pl.col("program") == "sendmail")
    pf = events.filter(pl.col("program").str.starts_with("postfix/"))
    assert sm["line_no"].n_unique() == SENDMAIL_LINES
    assert pf["line_no"].n_unique() == POSTFIX_LINES
    # Sendmail: one message received, seven recipients (five refused by the relay, the
    # message and its DSN handed on)
    [received] = sm.filter(pl.col("kind") == "received").to_dicts()
    assert received["message_id"] == "202202261127.21QBRGdX006005@server1.alsoft.org"
    assert received["nrcpt"] == 6
    deliveries = sm.filter(pl.col("kind") == "delivery").sort("line_no")
    assert deliveries["recipient"].to_list()[:5] == ["This", "is", "the", "subject", "line"]
    assert deliveries["status"].to_list() == ["bounced"] * 5 + ["sent", "sent"]
    # the hand-over to Postfix is named (joining the two is the model's business)
    assert deliveries["next_queue_id"].to_list()[5:] == ["A3EF4405DD14", "CB45F405DD15"]
    # Postfix: its two deliveries and the queued message's three lines
    pf_deliveries = pf.filter(pl.col("kind") == "delivery").sort("line_no")
    assert pf_deliveries["status"].to_list() == ["sent", "bounced"]
    assert sorted(pf.filter(pl.col("queue_id") == "A3EF4405DD14")["kind"]) == [
        "cleanup_message_id", "qmgr_from", "smtpd_client"]
    assert events["ts"].null_count() == 0


def test_a_forced_format_reads_only_its_own_program() -> None:
    events, held = _parse("postfix", shared_file=False)
    assert held == {"postfix"}
    assert (events["kind"] == "foreign").sum() == SENDMAIL_LINES
    assert events.filter(pl.col("kind") == "delivery").height == 2


def test_a_file_of_one_format_is_parsed_by_it_alone() -> None:
    lines = pl.DataFrame({"raw": POSTFIX_DELIVERIES, "line_no": [1, 2]})
    events, held = shared.parse(lines, ParseContext("maillog", "UTC", YearState(2022)),
                                "postfix")
    assert held == {"postfix"}
    assert events["kind"].to_list() == ["delivery", "delivery"]


def _run(log: Path, out: Path, *extra: str) -> None:
    res = CliRunner().invoke(main, ["run", str(log), "--year", "2022", "--tz", "UTC",
                                    "--out", str(out), "-q", *extra], catch_exceptions=False)
    assert res.exit_code == 0, res.output


def test_cli_reads_both_mtas_of_one_maillog(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    log.write_text("\n".join(MAILLOG) + "\n")
    _run(log, tmp_path / "out")
    with Warehouse(tmp_path / "out" / "mailstorm.duckdb") as wh:
        assert wh.con.execute("SELECT format, lines FROM files").fetchall() == [
            ("postfix+sendmail", len(MAILLOG))]
        kinds = dict(wh.con.execute(
            "SELECT kind, count(*) FROM events GROUP BY kind").fetchall())
        assert "foreign" not in kinds
        assert kinds["delivery"] == 7 + 2
        assert kinds["received"] == 1
    index = (tmp_path / "out" / "index.html").read_text()
    assert "<td>postfix+sendmail</td>" in index


def test_cli_format_still_forces_one(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    log.write_text("\n".join(MAILLOG) + "\n")
    _run(log, tmp_path / "out", "--format", "postfix")
    with Warehouse(tmp_path / "out" / "mailstorm.duckdb") as wh:
        assert wh.con.execute("SELECT format FROM files").fetchall() == [("postfix",)]
        assert wh.scalar("SELECT count(*) FROM events WHERE kind = 'foreign'") \
            == SENDMAIL_LINES


def test_the_line_kinds_say_which_format_gave_them(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    log.write_text("\n".join(MAILLOG) + "\n")
    _run(log, tmp_path / "out")
    with Warehouse(tmp_path / "out" / "mailstorm.duckdb") as wh:
        kinds = {r["kind"]: r for r in build_summary(wh, [], [])["kinds"]}
    assert kinds["delivery"] == {"kind": "delivery", "lines": 9,
                                 "formats": "postfix, sendmail"}
    assert kinds["received"]["formats"] == "sendmail"
    assert kinds["qmgr_from"]["formats"] == "postfix"
    index = (tmp_path / "out" / "index.html").read_text()
    assert "<td>postfix, sendmail</td>" in index


def test_exim_and_postfix_share_a_file() -> None:
    exim_line = (  # exim/crowdsec-hub.syslog.log
        "Jun 29 15:33:46 server exim[1234]: H=test.com [1.2.3.4]:53343 F=<info@test.com>"
        " rejected RCPT <toto@toto.com>: \"JunkMail rejected - test.com [1.2.3.4]:53343 is in"
        " an RBL: https://www.spamhaus.org/sbl/query/SBLCSS\"")
    postfix_line = POSTFIX_DELIVERIES[0].replace("Feb 25", "Jun 29")  # the date in order
    lines = pl.DataFrame({"raw": [postfix_line, exim_line], "line_no": [1, 2]})
    events, held = shared.parse(lines, ParseContext("mail.log", "UTC", YearState(2022)),
                                "postfix")
    assert held == {"exim", "postfix"}
    rows = {r["line_no"]: r for r in events.to_dicts()}
    assert rows[1]["kind"] == "delivery"
    assert rows[2]["program"] == "exim"
    assert rows[2]["kind"] not in ("foreign", "unparsed")
    assert rows[2]["recipient"] == "toto@toto.com"


# The local Postfix's side of the DSN Sendmail made (21QBRGdY006005) and handed over as
# CB45F405DD15: the dump keeps no lines of it, so they are written in the shape of the
# hand-over of line 9 above (smtpd client=, cleanup message-id=, qmgr from=) and of the
# local delivery in line 51 of postfix/postfix-maillog-dump.log. Sendmail logs no
# Message-ID for the DSNs it makes; Postfix logs the one in its header.
DSN_IN_POSTFIX = [
    "Feb 26 12:27:16 server1 postfix/smtpd[6006]: CB45F405DD15: client=localhost[127.0.0.1]",
    "Feb 26 12:27:16 server1 postfix/cleanup[6009]: CB45F405DD15:"
    " message-id=<202202261127.21QBRGdY006005@server1.alsoft.org>",
    "Feb 26 12:27:16 server1 postfix/qmgr[4652]: CB45F405DD15: from=<>, size=2264, nrcpt=1"
    " (queue active)",
    "Feb 26 12:27:16 server1 postfix/local[6011]: CB45F405DD15: to=<root@server1.alsoft.org>,"
    " orig_to=<root>, relay=local, delay=0.03, delays=0.01/0.02/0/0.01, dsn=2.0.0,"
    " status=sent (delivered to mailbox)",
    "Feb 26 12:27:16 server1 postfix/qmgr[4652]: CB45F405DD15: removed",
]


def test_a_message_handed_from_sendmail_to_postfix_is_one_message(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    log.write_text("\n".join([*MAILLOG, *DSN_IN_POSTFIX]) + "\n")
    _run(log, tmp_path / "out")
    with Warehouse(tmp_path / "out" / "mailstorm.duckdb") as wh:
        # the DSN: Sendmail's instance (no id logged) and Postfix's are one message, its
        # one delivery counted once (the hand-over to Postfix is a hop)
        rows = wh.con.execute(
            "SELECT m.queue_id, l.sender, l.hops, l.deliveries, l.is_auto"
            " FROM messages m JOIN logical_messages l USING (message_uid)"
            " WHERE m.queue_id IN ('21QBRGdY006005', 'CB45F405DD15') ORDER BY 1").fetchall()
        assert rows == [("21QBRGdY006005", "", 2, 1, True), ("CB45F405DD15", "", 2, 1, True)]
        # the message it bounced: both MTAs logged its id, one message by it, whose
        # sender is Postfix's qualified root@host, not Sendmail's "from=root"
        rows = wh.con.execute(
            "SELECT count(DISTINCT m.message_uid), max(l.hops), max(l.sender) FROM messages m"
            " JOIN logical_messages l USING (message_uid)"
            " WHERE m.queue_id IN ('21QBRGdX006005', 'A3EF4405DD14')").fetchall()
        assert rows == [(1, 2, "root@server1.alsoft.org")]
        assert wh.scalar("SELECT count(*) FROM logical_messages") == 2 + 2  # + Postfix's 2


def test_lines_of_other_programs_are_never_called_parsed(tmp_path: Path) -> None:
    # a maillog where most lines are dovecot's (postfix/postfix-maillog-dump.log keeps
    # some): stored as foreign, and the report says how many, apart from the mail lines
    dovecot = ("Feb 26 12:27:17 server1 dovecot: imap-login: Login: user=<info>, method=PLAIN,"
               " rip=127.0.0.1, lip=127.0.0.1, mpid=6012, secured, session=<abc>")
    log = tmp_path / "maillog"
    log.write_text("\n".join([*MAILLOG, *[dovecot] * 90]) + "\n")
    _run(log, tmp_path / "out")
    index = (tmp_path / "out" / "index.html").read_text()
    share = round(100 * 90 / (len(MAILLOG) + 90))
    assert f"<td>90 ({share}%, not mail: stored, not read)</td>" in index
