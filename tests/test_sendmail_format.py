"""The Sendmail parser: one realistic line per kind, recipient lists, the syslog envelope,
batching independence, the real corpus, the renderer, and the storm end to end."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from bench import sample_logs
from detector import pipeline
from detector.formats import ParseContext, sendmail
from detector.formats import sniff as sniff_format
from detector.formats.syslog import YearState
from detector.schema import EVENTS_SCHEMA
from detector.simulate.delivery import count_final
from detector.simulate.postfix import write_postfix
from detector.simulate.sendmail import pintvl, render_sendmail, write_sendmail
from detector.sources import iter_batches
from tests.conftest import lines_frame

FIELDS = [
    "queue_id", "message_id", "sender", "recipient", "orig_to", "size", "nrcpt", "relay",
    "delay", "dsn", "status", "client", "subject", "in_reply_to", "refs", "next_queue_id",
    "detail",
]
H = "Nov 14 10:02:11 mx1"
SM = f"{H} sendmail[4711]: uAEA2BHO004711: "
CL = "mail.example.com [192.0.2.10]"


def parse_sendmail(lines: Sequence[str | None], *, year: int = 2016,
                   tz: str = "UTC") -> pl.DataFrame:
    """Parse lines as one batch; rows in line order (a line's recipients in its order)."""
    ctx = ParseContext(source_file="test.log", tz=tz, years=YearState(year))
    return sendmail.parse(lines_frame(lines), ctx).sort("line_no", maintain_order=True)


def case(kind: str, line: str, id: str, **fields: object) -> object:
    return pytest.param(line, kind, fields, id=f"{kind}-{id}")


CASES = [
    case("received", f"{SM}from=<alice@example.com>, size=5938, class=0, nrcpts=7, "
         f"msgid=<201611141002.uAEA2BHO004711@mail.example.com>, bodytype=8BITMIME, "
         f"proto=ESMTPS, daemon=MTA, relay={CL}", "smtp",
         queue_id="uAEA2BHO004711", sender="alice@example.com", size=5938, nrcpt=7,
         message_id="201611141002.uAEA2BHO004711@mail.example.com",
         client="mail.example.com[192.0.2.10]"),
    case("received", f"{SM}from=<>, size=3575, class=0, nrcpts=1, msgid=<x@y>, proto=ESMTP, "
         "daemon=MTA, relay=localhost [127.0.0.1]", "null-sender",
         queue_id="uAEA2BHO004711", sender="", size=3575, nrcpt=1, message_id="x@y",
         client="localhost[127.0.0.1]"),
    case("received", "Nov 14 12:27:16 server1 sendmail[6005]: 21QBRGdX006005: from=root, "
         "size=30, class=0, nrcpts=6, msgid=<202202261127.21QBRGdX006005@server1.example>, "
         "relay=root@localhost", "msp-local-user",
         queue_id="21QBRGdX006005", sender="root", size=30, nrcpt=6,
         message_id="202202261127.21QBRGdX006005@server1.example", client="root@localhost"),
    case("aborted", f"{SM}from=<evil@x>, size=0, class=0, nrcpts=0, proto=ESMTP, "
         "daemon=MTA, relay=host.example [192.0.2.9] (may be forged)", "no-recipient-forged",
         queue_id="uAEA2BHO004711", sender="evil@x", size=0, nrcpt=0,
         client="host.example[192.0.2.9]"),
    case("received", f"{SM}from=<a@x>, size=10, class=0, nrcpts=1, msgid=<a, relay=evil>, "
         "proto=ESMTP, daemon=MTA, relay=[192.0.2.4]", "hostile-msgid",
         queue_id="uAEA2BHO004711", sender="a@x", size=10, nrcpt=1,
         message_id="a, relay=evil", client="[192.0.2.4]"),
    case("delivery", f"{SM}to=<bob@example.org>, delay=00:00:01, xdelay=00:00:01, "
         "mailer=esmtp, pri=120343, relay=mx.example.org. [192.0.2.20], dsn=2.0.0, "
         "stat=Sent (Ok: queued as 4F1B61F4B8)", "sent-postfix-reply",
         queue_id="uAEA2BHO004711", recipient="bob@example.org",
         relay="mx.example.org[192.0.2.20]", delay=1.0, dsn="2.0.0", status="sent",
         detail="Ok: queued as 4F1B61F4B8", next_queue_id="4F1B61F4B8"),
    case("received", f"{SM}from=<jürgen@beispiel.de>, size=2048, class=0, nrcpts=2, "
         "msgid=<ä1@beispiel.de>, proto=ESMTP, daemon=MTA, relay=mx.beispiel.de [192.0.2.5]",
         "non-ascii-sender", queue_id="uAEA2BHO004711", sender="jürgen@beispiel.de",
         size=2048, nrcpt=2, message_id="ä1@beispiel.de", client="mx.beispiel.de[192.0.2.5]"),
    case("delivery", f"{SM}to=<prøve@eksempel.no>, ctladdr=<alle@eksempel.no> (8/0), "
         "delay=00:00:02, xdelay=00:00:01, mailer=esmtp, pri=120343, "
         "relay=mx.eksempel.no. [192.0.2.21], dsn=2.0.0, stat=Sent (Mottatt – ok)",
         "non-ascii-address", queue_id="uAEA2BHO004711", recipient="prøve@eksempel.no",
         orig_to="alle@eksempel.no", relay="mx.eksempel.no[192.0.2.21]", delay=2.0,
         dsn="2.0.0", status="sent", detail="Mottatt – ok"),
    case("delivery", f"{SM}to=root, ctladdr=root (0/0), delay=00:00:01, xdelay=00:00:00, "
         "mailer=relay, pri=180030, relay=[127.0.0.1] [127.0.0.1], dsn=2.0.0, "
         "stat=Sent (21QCHVg3012286 Message accepted for delivery)", "msp-to-mta",
         queue_id="uAEA2BHO004711", recipient="root", relay="[127.0.0.1]", delay=1.0,
         dsn="2.0.0", status="sent", detail="21QCHVg3012286 Message accepted for delivery",
         next_queue_id="21QCHVg3012286"),
    case("delivery", f"{SM}to=<x@other.example>, delay=1+00:00:15, xdelay=00:00:15, "
         "mailer=esmtp, pri=34527, relay=[93.184.216.34] [93.184.216.34], dsn=4.3.5, "
         "stat=Deferred: 451 4.3.5 Server configuration problem", "deferred-days",
         queue_id="uAEA2BHO004711", recipient="x@other.example", relay="[93.184.216.34]",
         delay=86415.0, dsn="4.3.5", status="deferred",
         detail="451 4.3.5 Server configuration problem"),
    case("delivery", f"{SM}to=<x@y.example>, ctladdr=<all.staff@nhs.example> (8/0), "
         "delay=00:00:00, xdelay=00:00:00, mailer=local, pri=30061, dsn=5.1.1, "
         "stat=User unknown", "bounced-via-alias-local",
         queue_id="uAEA2BHO004711", recipient="x@y.example", orig_to="all.staff@nhs.example",
         relay="local", delay=0.0, dsn="5.1.1", status="bounced", detail="User unknown"),
    case("delivery", f"{SM}to=\"|/usr/lib/mailman/mail/mailman post all.staff\", "
         "ctladdr=<all.staff@nhs.example> (8/0), delay=00:00:00, xdelay=00:00:00, "
         "mailer=prog, pri=30756, dsn=2.0.0, stat=Sent", "program-alias",
         queue_id="uAEA2BHO004711", recipient='"|/usr/lib/mailman/mail/mailman post all.staff"',
         orig_to="all.staff@nhs.example", relay="prog", delay=0.0, dsn="2.0.0",
         status="sent"),
    case("delivery", f"{SM}to=<x@y.example>, delay=5+00:00:00, xdelay=00:00:00, "
         "mailer=esmtp, pri=8490343, relay=mx.y.example., dsn=4.4.7, "
         "stat=Cannot send message for 5 days", "expired",
         queue_id="uAEA2BHO004711", recipient="x@y.example", relay="mx.y.example", delay=432000.0,
         dsn="4.4.7", status="expired", detail="Cannot send message for 5 days"),
    case("delivery", f"{SM}to=<a@b.example>, delay=00:00:00, mailer=esmtp, pri=30343, "
         "stat=queued", "queued-is-pending",
         queue_id="uAEA2BHO004711", recipient="a@b.example", delay=0.0, status="deferred"),
    case("expansion", f"{SM}alias <all.staff@nhs.example> => "
         ":include:/etc/mail/lists/all.staff", "include",
         queue_id="uAEA2BHO004711", orig_to="all.staff@nhs.example",
         recipient=":include:/etc/mail/lists/all.staff"),
    case("header_subject", f"{SM}Subject: =?UTF-8?B?UmU6IMOcYmVyc2ljaHQ=?=", "rfc2047",
         queue_id="uAEA2BHO004711", subject="Re: Übersicht"),
    case("header_subject", f'{SM}Subject: "Re: test"', "currheader-quoted",
         queue_id="uAEA2BHO004711", subject="Re: test"),
    case("header_in_reply_to", f"{SM}In-Reply-To: <CAH+w=7bXk2@mail.gmail.com>", "bracketed",
         queue_id="uAEA2BHO004711", in_reply_to="CAH+w=7bXk2@mail.gmail.com"),
    case("header_references", f"{SM}References: <a1@x.example> <b2@y.example>", "two",
         queue_id="uAEA2BHO004711", refs="<a1@x.example> <b2@y.example>"),
    case("dsn", "Nov 14 12:27:16 server1 sendmail[6005]: 21QBRGdX006005: 21QBRGdY006005: DSN: "
         "User unknown", "dsn", queue_id="21QBRGdX006005", next_queue_id="21QBRGdY006005",
         detail="User unknown"),
    case("dsn", f"{SM}uAEA2BHP004711: return to sender: Cannot send message for 5 days",
         "return-to-sender", queue_id="uAEA2BHO004711", next_queue_id="uAEA2BHP004711",
         detail="Cannot send message for 5 days"),
    case("dsn_notify", f"{SM}uAEA2BHP004711: sender notify: Warning: could not send message "
         "for past 4 hours", "delay-warning", queue_id="uAEA2BHO004711",
         next_queue_id="uAEA2BHP004711",
         detail="Warning: could not send message for past 4 hours"),
    case("clone", f"{SM}uAEA2BHP004711: clone: owner=owner-all.staff", "owner",
         queue_id="uAEA2BHO004711", next_queue_id="uAEA2BHP004711",
         detail="owner=owner-all.staff"),
    case("queue_done", f"{SM}done; delay=00:00:00, ntries=2", "done",
         queue_id="uAEA2BHO004711", detail="done; delay=00:00:00, ntries=2"),
    case("rcpt_reject", f"{SM}<anton@domain.com>... No such user here", "no-such-user",
         queue_id="uAEA2BHO004711", recipient="anton@domain.com", detail="No such user here"),
    case("ruleset_reject", f"{SM}ruleset=check_rcpt, arg1=<joe@x.example>, relay={CL} "
         "(may be forged), reject=550 5.7.1 <joe@x.example>... Relaying denied",
         "check-rcpt", queue_id="uAEA2BHO004711", recipient="joe@x.example",
         client="mail.example.com[192.0.2.10]", status="reject", dsn="5.7.1",
         detail="550 5.7.1 <joe@x.example>... Relaying denied"),
    case("ruleset_reject", f"{H} sm-mta[22707]: ruleset=check_relay, arg1=[192.0.2.7], "
         "arg2=127.0.0.4, relay=[192.0.2.7], reject=550 5.7.1 Rejected: 192.0.2.7 listed at "
         "zen.spamhaus.org", "check-relay-no-qid", client="[192.0.2.7]", status="reject",
         dsn="5.7.1", detail="550 5.7.1 Rejected: 192.0.2.7 listed at zen.spamhaus.org"),
    case("ruleset_reject", f"{SM}ruleset=check_mail, arg1=<spam@bad.example>, relay={CL}, "
         "discard", "check-mail-discard", queue_id="uAEA2BHO004711",
         sender="spam@bad.example", client="mail.example.com[192.0.2.10]", status="discard"),
    case("milter", f"{SM}Milter: no active filter", "notice", queue_id="uAEA2BHO004711",
         detail="Milter: no active filter"),
    case("tls", f"{SM}STARTTLS=server, relay={CL}, version=TLSv1.2, verify=NO, "
         "cipher=ECDHE-RSA-AES256-GCM-SHA384, bits=256/256", "server",
         queue_id="uAEA2BHO004711", client="mail.example.com[192.0.2.10]"),
    case("tls", f"{SM}STARTTLS=client, relay=mx.example.org., version=TLSv1.2, verify=FAIL, "
         "cipher=ECDHE-RSA-AES128-GCM-SHA256, bits=128/128", "client-side",
         queue_id="uAEA2BHO004711", relay="mx.example.org"),
    case("auth", f"{SM}AUTH=server, relay=[10.20.1.2], authid=alice, mech=LOGIN, bits=0",
         "server", queue_id="uAEA2BHO004711", client="[10.20.1.2]"),
    case("auth_failure", f"{SM}AUTH failure (LOGIN): authentication failure (-13) SASL(-13): "
         "authentication failure: checkpass failed, user=test, relay=[192.0.2.8]", "login",
         queue_id="uAEA2BHO004711", client="[192.0.2.8]",
         detail="authentication failure (-13) SASL(-13): authentication failure: checkpass "
         "failed, user=test"),
    case("session_error", f"{SM}{CL} did not issue MAIL/EXPN/VRFY/ETRN during connection to "
         "MTA", "did-not-issue", queue_id="uAEA2BHO004711",
         detail=f"{CL} did not issue MAIL/EXPN/VRFY/ETRN during connection to MTA"),
    case("session_error", f"{SM}lost input channel from {CL} to MTA after rcpt",
         "lost-input", queue_id="uAEA2BHO004711",
         detail=f"lost input channel from {CL} to MTA after rcpt"),
    case("session_error", f"{SM}collect: premature EOM: unexpected close", "collect",
         queue_id="uAEA2BHO004711", detail="collect: premature EOM: unexpected close"),
    case("expn_vrfy", f"{H} sendmail[11675]: NOQUEUE: [192.168.11.200]: expn root",
         "noqueue-expn", detail="[192.168.11.200]: expn root"),
    case("connect", f"{H} sm-mta[100]: NOQUEUE: connect from {CL}", "noqueue",
         client="mail.example.com[192.0.2.10]"),
    case("smtp_trace", f"{SM}--- 050 <a@b.example>... Connecting to mx.b.example. via esmtp...",
         "verbose", queue_id="uAEA2BHO004711"),
    case("syserr", f"{H} sendmail[1]: NOQUEUE: SYSERR(nobody): can not write to queue "
         "directory /var/spool/clientmqueue/", "queue-dir",
         detail="SYSERR(nobody): can not write to queue directory /var/spool/clientmqueue/"),
    case("warning", f"{SM}Losing ./qfuAEA2BHO004711: savemail panic", "losing",
         queue_id="uAEA2BHO004711", detail="Losing ./qfuAEA2BHO004711: savemail panic"),
    case("daemon", f"{H} sendmail[1066]: starting daemon (8.14.7): SMTP+queueing@01:00:00",
         "start", detail="starting daemon (8.14.7): SMTP+queueing@01:00:00"),
    case("daemon", f"{H} sendmail[5948]: alias database /etc/aliases rebuilt by root",
         "newaliases", detail="alias database /etc/aliases rebuilt by root"),
    case("queue_note", f"{SM}SMTP outgoing connect on [192.168.198.81]", "other",
         queue_id="uAEA2BHO004711", detail="SMTP outgoing connect on [192.168.198.81]"),
    case("foreign", f"{H} postfix/smtpd[5530]: connect from a.example[192.0.2.1]", "postfix"),
    case("foreign", f"{H} dovecot: imap-login: Login: user=<bob@example.com>", "dovecot"),
    case("unparsed", "x68DJAVD023504: to=<someone@xs4all.nl>, delay=12:34:45, xdelay=00:00:00,"
         " mailer=lmtp, pri=128179, relay=imap.xs4all.nl [194.109.6.110], dsn=2.0.0, stat=Sent",
         "message-only"),
    case("unparsed", f"{H} sendmail[1]: Something nobody has seen before", "unknown-shape"),
]


@pytest.mark.parametrize(("line", "kind", "fields"), CASES)
def test_line_kind_and_fields(line: str, kind: str, fields: dict[str, object]) -> None:
    out = parse_sendmail([line])
    assert out.height == 1
    row = out.row(0, named=True)
    assert row["kind"] == kind
    if kind == "delivery" and fields.get("status") == "sent":  # its reply is not kept
        fields = {**fields, "detail": None}
    for name in FIELDS:
        assert row[name] == fields.get(name), name
    assert row["raw"] == (line if kind in ("foreign", "unparsed") else None)
    assert row["line_no"] == 1
    assert row["source_file"] == "test.log"


def test_every_kind_has_a_case() -> None:
    assert {p.values[1] for p in CASES} == set(sendmail.KINDS)


def test_all_cases_in_one_batch_match_one_by_one() -> None:
    """Per-kind extraction must not leak between kinds when they share a batch."""
    lines = [p.values[0] for p in CASES]
    together = parse_sendmail(lines)
    alone = pl.concat([parse_sendmail([line]) for line in lines]).with_columns(
        line_no=pl.int_range(1, len(lines) + 1, dtype=pl.Int64))
    assert_frame_equal(together, alone)


# --- recipient lists ------------------------------------------------------------------------

TAIL = ", delay=00:00:02, xdelay=00:00:01, mailer=esmtp, pri=78008726, relay=mailstore2.nhs" \
       ".example [10.1.0.6], dsn=2.0.0, stat=Sent (uAE9w0u9561923 Message accepted for delivery)"


def test_one_row_per_recipient_with_the_line_fields_on_each() -> None:
    out = parse_sendmail([f"{SM}to=<a@nhs.example>,<b@nhs.example>,c@nhs.example{TAIL}"])
    assert out["recipient"].to_list() == ["a@nhs.example", "b@nhs.example", "c@nhs.example"]
    assert out["line_no"].to_list() == [1, 1, 1]
    for col, value in [("status", "sent"), ("delay", 2.0), ("dsn", "2.0.0"),
                       ("relay", "mailstore2.nhs.example[10.1.0.6]"),
                       ("next_queue_id", "uAE9w0u9561923"), ("queue_id", "uAEA2BHO004711")]:
        assert out[col].to_list() == [value] * 3, col


def test_more_lines_continue_the_list_and_ctladdr_names_the_list() -> None:
    """Past sendmail's syslog buffer the list goes on in a "[more]" line; both lines name
    the alias as the controlling address."""
    ctl = ", ctladdr=<all.staff@nhs.example> (8/0)"
    out = parse_sendmail([f"{SM}to=a@nhs.example,b@nhs.example, [more]{ctl}{TAIL}",
                          f"{SM}to=c@nhs.example{ctl}{TAIL}"])
    assert out["recipient"].to_list() == ["a@nhs.example", "b@nhs.example", "c@nhs.example"]
    assert out["line_no"].to_list() == [1, 1, 2]
    assert set(out["orig_to"]) == {"all.staff@nhs.example"}


@pytest.mark.parametrize(("ctladdr", "orig_to"), [
    ("<all.staff@nhs.example> (8/0)", "all.staff@nhs.example"),  # an alias
    (":include:/etc/mail/lists/all.staff (0/0)", ":include:/etc/mail/lists/all.staff"),
    ("root (0/0)", None),  # the local submitter, not a list
    ("root@localhost.localdomain (0/0)", None),
    ("<a@nhs.example> (1000/1000)", None),  # a local mailbox controls itself
    ("<> (8/8)", None),
])
def test_ctladdr_gives_orig_to_only_for_lists_and_aliases(ctladdr: str,
                                                          orig_to: str | None) -> None:
    out = parse_sendmail([f"{SM}to=<a@nhs.example>, ctladdr={ctladdr}{TAIL}"])
    assert out["orig_to"].to_list() == [orig_to]


def test_quoted_program_recipient_is_not_split_on_commas() -> None:
    out = parse_sendmail([f'{SM}to="|/usr/bin/procmail -a x,y", ctladdr=<bob@x> (1000/100)'
                          f"{TAIL}"])
    assert out["recipient"].to_list() == ['"|/usr/bin/procmail -a x,y"']
    assert out["orig_to"].to_list() == ["bob@x"]


@pytest.mark.parametrize(("reply", "next_qid"), [
    ("Ok: queued as 99D0EBC23", "99D0EBC23"),
    ("uAE9w0u9561923 Message accepted for delivery", "uAE9w0u9561923"),
    ("OK id=1cGyUR-0004Ps-Ql", "1cGyUR-0004Ps-Ql"),
    ("ok:  Message 40279894 accepted", None),
    ("<mid@x> [InternalId=12, Hostname=AM5PR01] Queued mail for delivery", None),
])
def test_next_queue_id_from_the_receivers_reply(reply: str, next_qid: str | None) -> None:
    out = parse_sendmail([f"{SM}to=<a@b.example>, delay=00:00:00, xdelay=00:00:00, "
                          f"mailer=esmtp, pri=1, relay=mx.b.example. [192.0.2.1], dsn=2.0.0, "
                          f"stat=Sent ({reply})"])
    assert out["next_queue_id"].item() == next_qid
    assert out["detail"].item() is None  # a successful delivery's reply is not kept


def test_header_values_need_a_queue_id() -> None:
    out = parse_sendmail([f"{H} sendmail[1]: Subject: hello", f"{SM}Subject: hello"])
    assert out["kind"].to_list() == ["unparsed", "header_subject"]


# --- the syslog envelope --------------------------------------------------------------------

RECEIVED = "from=<a@b.example>, size=1, class=0, nrcpts=1, msgid=<m@b>, relay=[192.0.2.1]"


@pytest.mark.parametrize(("line", "host", "program"), [
    (f"Jun 17 14:37:39 <mail.info> robin sm-mta[2794]: 55HIbcGI002794: {RECEIVED}",
     "robin", "sm-mta"),  # a facility.severity tag after the stamp
    (f" Jun 17 14:37:39 mozart sendmail[1]: 55HIbcGI002794: {RECEIVED}", "mozart",
     "sendmail"),  # indented
    (f"Jun 17 14:37:39 mx sendmail[23292]: [ID 801593 mail.info] 55HIbcGI002794: {RECEIVED}",
     "mx", "sendmail"),  # Solaris message id
    (f"Jun 17 14:37:39 mx sm-msp-queue[1107]: 55HIbcGI002794: {RECEIVED}", "mx",
     "sm-msp-queue"),
    (f"Jun 17 14:37:39 kismet sm-acceptingconnections[3]: 55HIbcGI002794: {RECEIVED}",
     "kismet", "sm-acceptingconnections"),
    (f"2016-06-17T14:37:39.123456+00:00 mx sendmail[9]: 55HIbcGI002794: {RECEIVED}", "mx",
     "sendmail"),
])
def test_header_variants(line: str, host: str, program: str) -> None:
    row = parse_sendmail([line]).row(0, named=True)
    assert (row["kind"], row["host"], row["program"]) == ("received", host, program)
    assert row["queue_id"] == "55HIbcGI002794"
    assert row["ts"].replace(microsecond=0) == datetime(2016, 6, 17, 14, 37, 39, tzinfo=UTC)


def test_stamps_without_zone_are_local_time() -> None:
    out = parse_sendmail([f"Jul 15 12:00:00 mx sendmail[1]: 55HIbcGI002794: {RECEIVED}"],
                         tz="Europe/London")
    assert out["ts"].item() == datetime(2016, 7, 15, 11, tzinfo=UTC)


def test_sniff_accepts_sendmail_and_refuses_others() -> None:
    assert sendmail.sniff([f"{H} dovecot: x", f"{SM}{RECEIVED}"])
    assert sendmail.sniff(["Jun 17 14:37:39 <mail.info> robin sm-mta[2794]: x"])
    assert not sendmail.sniff([f"{H} postfix/sendmail[12]: warning: x", "hello"])
    assert not sendmail.sniff(["Nov 14 10:02:11 2016 (1234) post to all.staff from a@b, "
                               "size=1, message-id=<x>, success"])
    assert sniff_format([f"{SM}{RECEIVED}"]) == "sendmail"
    # in a mixed file the Postfix sniffer, earlier in the registry, claims it
    assert sniff_format([f"{SM}{RECEIVED}", f"{H} postfix/qmgr[6273]: 4F1B61F4B8: "
                         "removed"]) == "postfix"


# --- schema and properties ------------------------------------------------------------------


@pytest.mark.parametrize("lines", [
    pytest.param([p.values[0] for p in CASES], id="all-kinds"),
    pytest.param([], id="empty"),
    pytest.param(["hello", None], id="only-unparsed"),
    pytest.param([f"{SM}to=<a@x>,<b@x>{TAIL}"], id="only-deliveries"),
])
def test_parse_returns_exactly_the_events_schema(lines: list[str | None]) -> None:
    out = parse_sendmail(lines)
    assert out.schema == EVENTS_SCHEMA
    assert out["line_no"].unique().sort().to_list() == list(range(1, len(lines) + 1))


MESSAGES = sorted({p.values[0].split(" ", 4)[4] for p in CASES if p.values[0].startswith(H)}
                  | {f"sendmail[1]: uAEA2BHO004711: to=a@x,<b@y>, [more]{TAIL}"})
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
rfc3164_line = st.builds(
    lambda mon, day, hh, msg: f"{mon} {day:>2} {hh:02d}:00:00 mx1 {msg}",
    st.sampled_from(MONTHS), st.integers(1, 28), st.integers(0, 23), st.sampled_from(MESSAGES),
)
any_line = st.one_of(
    rfc3164_line, rfc3164_line, st.sampled_from([p.values[0] for p in CASES]), st.none(),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\n"), max_size=60),
)


def _ordered(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort("line_no", "recipient", nulls_last=True, maintain_order=True)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(any_line, min_size=1, max_size=30), data=st.data())
def test_parsing_is_independent_of_batching(lines: list[str | None],
                                            data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(lines) - 1)), max_size=5)))
    whole_ctx = ParseContext("f.log", tz="Europe/Berlin", years=YearState(2019))
    whole = sendmail.parse(lines_frame(lines), whole_ctx)
    ctx = ParseContext("f.log", tz="Europe/Berlin", years=YearState(2019))
    bounds = [0, *(c for c in cuts if c < len(lines)), len(lines)]
    split = pl.concat([
        sendmail.parse(lines_frame(lines[a:b], first_line_no=a + 1), ctx)
        for a, b in zip(bounds, bounds[1:], strict=False) if b > a
    ])
    assert_frame_equal(_ordered(whole), _ordered(split))
    assert ctx.years == whole_ctx.years


@settings(max_examples=25, deadline=None)
@given(lines=st.lists(any_line, max_size=25))
def test_every_line_gets_a_kind(lines: list[str | None]) -> None:
    out = parse_sendmail(lines)
    assert out["line_no"].unique().sort().to_list() == list(range(1, len(lines) + 1))
    assert out["kind"].null_count() == 0
    assert set(out["kind"]) <= set(sendmail.KINDS)
    # only a delivery line (one row per recipient) gives more than one row
    multi = out.group_by("line_no").agg(pl.len(), pl.col("kind").first()).filter(
        pl.col("len") > 1)
    assert set(multi["kind"]) <= {"delivery", "expansion"}


# --- the real corpus ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parsed_corpus(corpus_dir: Path) -> dict[str, tuple[pl.DataFrame, int]]:
    out = {}
    for path in sorted((corpus_dir / "sendmail").glob("*.log")):
        ctx = ParseContext(str(path), years=YearState(2022))
        frames = [sendmail.parse(batch, ctx) for batch, _ in iter_batches(str(path))]
        data = path.read_bytes()
        lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
        out[path.name] = (pl.concat(frames), lines)
    return out


def test_corpus_every_line_gets_a_kind(parsed_corpus: dict) -> None:
    assert len(parsed_corpus) >= 6
    for name, (events, lines) in parsed_corpus.items():
        assert events["line_no"].unique().sort().to_list() == list(range(1, lines + 1)), name
        assert events["kind"].null_count() == 0, name
        assert set(events["kind"]) <= set(sendmail.KINDS), name
        assert events.schema == EVENTS_SCHEMA, name
        per_line = events.unique("line_no")
        unparsed = per_line.filter(pl.col("kind") == "unparsed").height
        print(f"{name}: {unparsed}/{lines} lines unparsed")


def test_corpus_full_logs_are_all_parsed(parsed_corpus: dict) -> None:
    full = {n: v for n, v in parsed_corpus.items()
            if not n.endswith((".msgonly.log", ".partial.log"))}
    assert {"fail2ban.log", "postfix-maillog-dump.log", "ossec-hids.log"} <= set(full)
    for name, (events, _) in full.items():
        assert "unparsed" not in set(events["kind"]), name


def test_corpus_lines_without_a_syslog_header_are_unparsed(parsed_corpus: dict) -> None:
    """Message-only and partial files: no kind guessed, the raw text kept."""
    for name in ("lua_sandbox_extensions.msgonly.log", "ossec-hids.partial.log"):
        events, lines = parsed_corpus[name]
        assert set(events["kind"]) == {"unparsed"}
        assert events["raw"].null_count() == 0


def test_corpus_message_flow(parsed_corpus: dict) -> None:
    events, _ = parsed_corpus["postfix-maillog-dump.log"]
    required = {
        "received": ["queue_id", "sender", "size", "nrcpt"],
        "delivery": ["queue_id", "recipient", "relay", "delay", "dsn", "status"],
        "dsn": ["queue_id", "next_queue_id"],
        "rcpt_reject": ["queue_id", "recipient"],
    }
    for kind, cols in required.items():
        rows = events.filter(pl.col("kind") == kind)
        assert rows.height > 50, kind
        for col in cols:
            assert rows[col].null_count() == 0, f"{kind}.{col}"
    # the accidental fan-out: six words of a subject as recipients, five bounce
    statuses = events.filter(pl.col("kind") == "delivery")["status"].value_counts()
    assert set(statuses["status"]) == {"sent", "bounced"}
    # each DSN names a bounce whose delivery is in the log
    dsn_ids = set(events.filter(pl.col("kind") == "dsn")["next_queue_id"])
    delivered = set(events.filter(pl.col("kind") == "delivery")["queue_id"])
    assert len(dsn_ids & delivered) > 0.9 * len(dsn_ids)


# --- the renderer ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def storm_day() -> tuple:
    """The NHS-style sample: site, storm day messages, truth (the quiet day is not used)."""
    site, _, day2, truth = sample_logs.build()
    return site, day2, truth


def test_pintvl() -> None:
    assert pintvl(0) == "00:00:00"
    assert pintvl(3_725_000_000) == "01:02:05"
    assert pintvl((86_400 + 15) * 1_000_000) == "1+00:00:15"


def test_rendered_storm_parses_completely_and_counts_every_delivery(storm_day: tuple) -> None:
    site, day2, truth = storm_day
    storm = [m for m in day2 if m.message_id in set(truth[0]["message_ids"])]
    lines = list(render_sendmail(site, storm, seed=3))
    assert lines == list(render_sendmail(site, storm, seed=3))  # deterministic
    assert any(" [more], " in line for line in lines)  # the long lists are split
    out = parse_sendmail(lines)
    assert not set(out["kind"]) & {"unparsed", "foreign"}
    received = out.filter(pl.col("kind") == "received")
    mids = dict(zip(received["queue_id"], received["message_id"], strict=True))
    own = out.filter((pl.col("kind") == "delivery") & (pl.col("status") != "deferred")
                     & pl.col("queue_id").replace_strict(mids, default=None)
                     .is_in(truth[0]["message_ids"]))  # not the DSNs to the repliers
    assert own.height == sum(count_final(site, m) for m in storm)
    # list members name the list; the others are direct recipients, or mailboxes on the
    # host itself, which control their own deliveries (ctladdr=<member>)
    direct = {r for m in storm for r in m.recipients if r not in site.lists}
    unlisted = own.filter(pl.col("orig_to").is_null() & (pl.col("relay") != "local"))
    assert set(unlisted["recipient"]) <= direct
    assert set(own["orig_to"].drop_nulls()) == {truth[0]["list"]}
    assert own["orig_to"].null_count() < 0.1 * own.height


def test_mailman_mode_does_not_name_the_list(storm_day: tuple) -> None:
    site, day2, truth = storm_day
    storm = [m for m in day2 if m.message_id == truth[0]["root_message_id"]]
    out = parse_sendmail(list(render_sendmail(site, storm, seed=3, lists="mailman")))
    deliveries = out.filter(pl.col("kind") == "delivery")
    assert deliveries["orig_to"].null_count() == deliveries.height
    # Mailman's copies come back from localhost in envelopes of at most 500 members
    copies = out.filter((pl.col("kind") == "received") & (pl.col("client") == "localhost"
                                                          "[127.0.0.1]"))
    assert copies["nrcpt"].sum() == len(site.lists[truth[0]["list"]])
    assert copies["nrcpt"].max() <= 500
    assert set(copies["message_id"]) == {truth[0]["root_message_id"]}


# --- end to end -----------------------------------------------------------------------------


def storm_incident(log_dir: Path, out: Path) -> dict:
    result = pipeline.run([str(log_dir)], out, tz="UTC", year=2016)
    storms = [i for i in (x.to_record() for x in result.incidents) if i["kind"] == "reply_storm"]
    assert len(storms) == 1, [i.kind for i in result.incidents]
    return storms[0]


@pytest.fixture(scope="module")
def postfix_incident(storm_day: tuple, tmp_path_factory: pytest.TempPathFactory) -> dict:
    site, day2, _ = storm_day
    tmp = tmp_path_factory.mktemp("postfix")
    write_postfix(tmp / "logs" / "mail.log", site, day2, seed=1)
    return storm_incident(tmp / "logs", tmp / "out")


def test_sendmail_storm_is_the_postfix_storm(storm_day: tuple, postfix_incident: dict,
                                             tmp_path: Path) -> None:
    site, day2, truth = storm_day
    write_sendmail(tmp_path / "logs" / "maillog", site, day2, seed=1)
    inc = storm_incident(tmp_path / "logs", tmp_path / "out")
    for key in ("kind", "list", "root_message_id", "deliveries", "messages", "repliers"):
        assert inc[key] == postfix_incident[key], key
    assert inc["list"] == truth[0]["list"]
    # sendmail logs the session (STARTTLS, AUTH) under the queue id before the message
    start, expected = (datetime.fromisoformat(i["start"]) for i in (inc, postfix_incident))
    assert abs(start - expected) <= timedelta(seconds=5)


def test_rendered_lines_fit_syslog_and_name_their_queue(storm_day: tuple) -> None:
    """Every rendered line fits sendmail's 1024-byte syslog buffer and a queue id shape."""
    site, day2, _ = storm_day
    qid = re.compile(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d mx1 sendmail\[\d+\]: "
                     r"(?:[0-9A-Za-x]{8}\d{6}: |ruleset=check_relay)")
    for line in render_sendmail(site, day2[:300], seed=2):
        assert len(line) < 1024 - 100
        assert qid.match(line), line


def test_fast_path_gives_the_tables_kinds(corpus_dir: Path) -> None:
    """The first-word shortcut changes no kind: every case, sample and corpus line gets
    the kind the whole table gives it."""
    lines = [p.values[0] for p in CASES] + [s.line for k in sendmail.TABLE for s in k.samples]
    for path in sorted((corpus_dir / "sendmail").glob("*.log")):
        lines += path.read_text(encoding="utf-8", errors="replace").splitlines()
    ctx = ParseContext("test.log", "UTC", YearState(2016))
    frame = sendmail._working_columns(lines_frame(lines), ctx)
    kinds = sendmail._with_kinds(frame).select("raw", "kind", table=sendmail._CLASSIFY)
    assert kinds.filter(pl.col("kind") != pl.col("table")).to_dicts() == []
