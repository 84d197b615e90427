"""The Exim main log parser and renderer: one realistic line per kind, the envelopes
(native, +pid, +millisec, log_timezone, syslog), sniffing, batching, the real corpus, the
renderer against its delivery plans, and the NHS storm end to end against Postfix."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from bench import sample_logs
from detector import pipeline
from detector.formats import ParseContext, exim
from detector.formats import sniff as sniff_format
from detector.formats.kinds import classifier
from detector.formats.syslog import YearState, assign_years, months_of_raw
from detector.schema import EVENTS_SCHEMA
from detector.simulate import make_site, storm, utc
from detector.simulate.delivery import OUTCOMES, plan_delivery
from detector.simulate.exim import print_time, quoted, render_exim, write_exim
from detector.simulate.postfix import write_postfix
from detector.sources import iter_batches
from tests.conftest import lines_frame

FIELDS = [
    "queue_id", "message_id", "sender", "recipient", "orig_to", "size", "nrcpt", "relay",
    "delay", "dsn", "status", "client", "subject", "in_reply_to", "refs", "next_queue_id",
    "detail",
]
S = "2016-11-14 10:02:11"  # a native stamp
ID = "1cGABC-0005MB-00"
NEW_ID = "1rVDhn-000000001bo-D342"
SY = "Nov 14 10:02:11 mx1 exim[4242]:"  # an exim line written via syslog


def parse(lines: list[str | None], *, tz: str = "UTC", year: int = 2016) -> pl.DataFrame:
    ctx = ParseContext("test.log", tz=tz, years=YearState(year))
    return exim.parse(lines_frame(lines), ctx).sort("line_no")


def case(kind: str, line: str, id: str, **fields: object) -> object:
    return pytest.param(line, kind, fields, id=f"{kind}-{id}")


CASES = [
    # --- arrivals -----------------------------------------------------------------------
    case("received", f"{S} {ID} <= alice@example.com H=mail.example.com (helo.example.com) "
         "[192.0.2.10]:41234 I=[10.1.0.2]:25 P=esmtps X=TLS1.2:ECDHE-RSA-AES256-GCM-SHA384:256 "
         'CV=no S=21778 id=384a86a3@example.com T="Re: rota for \\"December\\"" from '
         "<alice@example.com> for bob@nhs.example carol@nhs.example", "full",
         queue_id=ID, sender="alice@example.com", client="mail.example.com[192.0.2.10]",
         size=21778, message_id="384a86a3@example.com", subject='Re: rota for "December"',
         nrcpt=2),
    case("received", f"{S} {ID} <= <> R=1cGAAA-0005LL-0A U=Debian-exim P=local S=3456 "
         f"id=E{ID}@mx1.nhs.example", "local-bounce",
         queue_id=ID, sender="", size=3456, message_id=f"E{ID}@mx1.nhs.example",
         detail="1cGAAA-0005LL-0A"),
    case("received", f"{S} {NEW_ID} <= root@nhs.example U=root P=local S=811 "
         f"id*=E{NEW_ID}@mx1.nhs.example T=\"Caf\\303\\251 rota \\342\\200\\223 =?UTF-8?Q?"
         "ok?=\"", "new-id-created-msgid-octal-escapes",
         queue_id=NEW_ID, sender="root@nhs.example", size=811,
         message_id=f"E{NEW_ID}@mx1.nhs.example", subject="Café rota – ok"),
    case("received", f"{S} {ID} <= eve@bad.example H=(x) [203.0.113.9] P=esmtp S=100 "
         'id=a@b T="hi\\" S=999 id=evil@x for a b c" for victim@nhs.example', "hostile-subject",
         queue_id=ID, sender="eve@bad.example", client="unknown[203.0.113.9]", size=100,
         message_id="a@b", subject='hi" S=999 id=evil@x for a b c', nrcpt=1),
    case("received", f"{S} {ID} (= bob@example.com H=mail.example.com [192.0.2.10] P=esmtp "
         "S=2000 id=fr@example.com", "fakereject",
         queue_id=ID, sender="bob@example.com", client="mail.example.com[192.0.2.10]",
         size=2000, message_id="fr@example.com", detail="fakereject"),
    # --- deliveries ---------------------------------------------------------------------
    case("delivery", f"{S} {ID} => m.one@example.org <all.staff@nhs.example> R=dnslookup "
         "T=remote_smtp H=mx.example.org [198.51.100.7]:25 X=TLS1.2:ECDHE-RSA-AES256-GCM-"
         'SHA384:256 CV=yes C="250 OK id=1cGXYZ-0001Ab-5T" QT=1m3s DT=0s', "list-member-exim-id",
         queue_id=ID, recipient="m.one@example.org", orig_to="all.staff@nhs.example",
         relay="mx.example.org[198.51.100.7]:25", delay=63.0, status="sent",
         detail="250 OK id=1cGXYZ-0001Ab-5T", next_queue_id="1cGXYZ-0001Ab-5T"),
    case("delivery", f"{S} {ID} -> m.two@example.org <all.staff@nhs.example> R=dnslookup "
         'T=remote_smtp H=mx.example.org [198.51.100.7]* C="250 2.0.0 Ok: queued as 9B6EC9D286"'
         " QT=0.512s DT=0.101s", "additional-address-reused-connection",
         queue_id=ID, recipient="m.two@example.org", orig_to="all.staff@nhs.example",
         relay="mx.example.org[198.51.100.7]", delay=0.512, dsn="2.0.0", status="sent",
         detail="250 2.0.0 Ok: queued as 9B6EC9D286", next_queue_id="9B6EC9D286"),
    case("delivery", f"{S} {ID} => john.smith <all.staff@nhs.example> R=local_user "
         'T=dovecot_lmtp C="250 2.0.0 <john.smith@nhs.example> s5Vb2kS8Kl Saved" QT=2s DT=0s',
         "log-as-local-list-member",
         queue_id=ID, recipient="john.smith@nhs.example", orig_to="all.staff@nhs.example",
         relay="dovecot_lmtp", delay=2.0, dsn="2.0.0", status="sent",
         detail="250 2.0.0 <john.smith@nhs.example> s5Vb2kS8Kl Saved"),
    case("delivery", f"{S} {ID} => CALLER <CALLER@the.local.host.name> R=localuser "
         "T=local_delivery", "log-as-local-no-list",
         queue_id=ID, recipient="CALLER@the.local.host.name", relay="local_delivery",
         status="sent"),
    case("delivery", f'{S} {ID} => |/bin/sh -c "cat >/tmp/x" <pipe@test.ex> R=alias T=pipe',
         "pipe-with-spaces", queue_id=ID, recipient="pipe@test.ex", relay="pipe", status="sent"),
    case("delivery", f"{S} {ID} => /dev/null (faq@nl.example) <faq-list@nl.example> "
         "R=algemeen_aliases T=**bypassed**", "file-with-parent",
         queue_id=ID, recipient="faq@nl.example", orig_to="faq-list@nl.example",
         relay="**bypassed**", status="sent"),
    # thrown away, not delivered: shapes of the corpus's exim-testsuite.log
    case("delivery", f"{S} {ID} => :blackhole: <hole@nowhere.example> R=blackhole_router",
         "blackhole", queue_id=ID, recipient="hole@nowhere.example", relay="blackhole_router",
         status="discarded"),
    case("delivery", f"{S} {ID} => blackhole (RCPT ACL discarded recipients)",
         "acl-discard", queue_id=ID, recipient="blackhole", status="discarded",
         detail="RCPT ACL discarded recipients"),
    case("delivery", f"{S} {ID} => bob@example.com R=dnslookup T=remote_smtp H=mx.example.com "
         '[192.0.2.5] C="250 it said \\"QT=9s\\" ok" QT=1s DT=0s', "escaped-quote-in-reply",
         queue_id=ID, recipient="bob@example.com", relay="mx.example.com[192.0.2.5]",
         delay=1.0, status="sent", detail='250 it said "QT=9s" ok'),
    case("delivery", f"{S} {ID} ** gone@example.com <all.staff@nhs.example> R=dnslookup "
         "T=remote_smtp H=mx.example.com [192.0.2.5] : SMTP error from remote mail server "
         "after RCPT TO:<gone@example.com>: 550 5.1.1 <gone@example.com>: User unknown",
         "bounced-remote", queue_id=ID, recipient="gone@example.com",
         orig_to="all.staff@nhs.example", relay="mx.example.com[192.0.2.5]", dsn="5.1.1",
         status="bounced", detail="SMTP error from remote mail server after RCPT "
         "TO:<gone@example.com>: 550 5.1.1 <gone@example.com>: User unknown"),
    case("delivery", "2020-02-11 17:09:47 1j1Z2g-00Faoy-Uh ** admin@example.net "
         "R=virtual_aliases: No such person at this address.", "bounced-router",
         queue_id="1j1Z2g-00Faoy-Uh", recipient="admin@example.net", relay="virtual_aliases",
         status="bounced", detail="No such person at this address."),
    case("delivery", f"{S} {ID} ** b@known.ex: retry timeout exceeded", "bounced-timeout",
         queue_id=ID, recipient="b@known.ex", status="bounced",
         detail="retry timeout exceeded"),
    case("delivery", f"{S} {ID} == x@greylist.example R=dnslookup T=remote_smtp defer (-44) "
         "H=mx.greylist.example [198.51.100.9]: SMTP error from remote mail server after RCPT "
         "TO:<x@greylist.example>: 450 4.2.0 Greylisted", "deferred-remote",
         queue_id=ID, recipient="x@greylist.example", relay="mx.greylist.example[198.51.100.9]",
         dsn="4.2.0", status="deferred", detail="SMTP error from remote mail server after "
         "RCPT TO:<x@greylist.example>: 450 4.2.0 Greylisted"),
    case("delivery", f"{S} {ID} == userx@myhost.test.ex routing defer (-52): retry time not "
         "reached", "deferred-routing", queue_id=ID, recipient="userx@myhost.test.ex",
         status="deferred", detail="retry time not reached"),
    case("delivery", f"{S} {ID} *> accept <accept@y> R=accept T=appendfile", "suppressed",
         queue_id=ID, recipient="accept@y", relay="appendfile", status="sent",
         detail="suppressed by -N"),
    case("delivery", f"{S} {ID} >> userx@domain.com P=<CALLER@myhost.test.ex> R=all T=smtp "
         'H=127.0.0.1 [127.0.0.1] C="250 OK"', "cutthrough",
         queue_id=ID, recipient="userx@domain.com", relay="127.0.0.1[127.0.0.1]",
         status="sent", detail="250 OK"),
    case("delivery", f"{S} {ID} => prøve@example.no <øst@nhs.example> R=dnslookup "
         'T=remote_smtp H=mx.example.no [192.0.2.77] C="250 OK"', "utf8-addresses",
         queue_id=ID, recipient="prøve@example.no", orig_to="øst@nhs.example",
         relay="mx.example.no[192.0.2.77]", status="sent", detail="250 OK"),
    # --- headers an ACL logwrite puts in the log -------------------------------------------
    case("header_in_reply_to", f"{S} {ID} In-Reply-To: <CAH+w=7bXk2@mail.example.com>", "acl",
         queue_id=ID, in_reply_to="CAH+w=7bXk2@mail.example.com"),
    case("header_references", f"{S} {ID} References: <a1@x.example> <b2@y.example>", "acl",
         queue_id=ID, refs="<a1@x.example> <b2@y.example>"),
    case("header_subject", f"{S} {ID} Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=", "acl",
         queue_id=ID, subject="Grüße"),
    # --- the queue ----------------------------------------------------------------------
    case("exim_completed", f"{S} {ID} Completed QT=3m45s", "with-qt", queue_id=ID,
         delay=225.0),
    case("exim_completed", f"{S} {ID} Completed", "plain", queue_id=ID),
    case("exim_autoreply", f"{S} {ID} => >alice@example.com <bob@nhs.example> R=userforward "
         "T=address_reply", "vacation", queue_id=ID,
         detail="=> >alice@example.com <bob@nhs.example> R=userforward T=address_reply"),
    case("exim_frozen", f"{S} {ID} Frozen (delivery error message)", "frozen", queue_id=ID,
         detail="Frozen (delivery error message)"),
    case("exim_queue_note", f"{S} {ID} no immediate delivery: queued by ACL", "queued",
         queue_id=ID, detail="no immediate delivery: queued by ACL"),
    case("exim_remote_error", f"{S} {ID} H=mx.gone.example [198.51.100.3] Connection timed "
         "out", "timeout", queue_id=ID,
         detail="H=mx.gone.example [198.51.100.3] Connection timed out"),
    case("exim_dkim", f"{S} {ID} DKIM: d=test.ex s=sel c=simple/simple a=rsa-sha1 b=1024 "
         "[verification succeeded]", "verified", queue_id=ID,
         detail="DKIM: d=test.ex s=sel c=simple/simple a=rsa-sha1 b=1024 [verification "
         "succeeded]"),
    # --- SMTP sessions without a message ------------------------------------------------------
    case("exim_reject", "2022-06-29 15:33:46 H=test.com [1.2.3.4]:53343 F=<info@test.com> "
         'rejected RCPT <toto@toto.com>: "JunkMail rejected - test.com [1.2.3.4]:53343 is in '
         'an RBL"', "rcpt", client="test.com[1.2.3.4]", sender="info@test.com",
         recipient="toto@toto.com", detail='H=test.com [1.2.3.4]:53343 F=<info@test.com> '
         'rejected RCPT <toto@toto.com>: "JunkMail rejected - test.com [1.2.3.4]:53343 is in '
         'an RBL"'),
    case("exim_reject", f"{S} {ID} H=(x) [192.0.2.1] F=<a@b.example> rejected after DATA: "
         "message too big", "after-data-with-id", queue_id=ID, client="unknown[192.0.2.1]",
         sender="a@b.example",
         detail="H=(x) [192.0.2.1] F=<a@b.example> rejected after DATA: message too big"),
    case("exim_reject", "2022-06-29 14:33:43 H=test.sa.com [1.2.3.4]:18146 temporarily "
         'rejected connection in "connect" ACL: "Host is ratelimited"', "connect-acl",
         client="test.sa.com[1.2.3.4]", detail="H=test.sa.com [1.2.3.4]:18146 temporarily "
         'rejected connection in "connect" ACL: "Host is ratelimited"'),
    case("exim_verify_fail", "2022-06-29 15:47:21 H=tata.test.biz [1.2.3.4]:41584 sender "
         "verify fail for <toto@test.biz>: Unrouteable address", "sender",
         client="tata.test.biz[1.2.3.4]", detail="H=tata.test.biz [1.2.3.4]:41584 sender "
         "verify fail for <toto@test.biz>: Unrouteable address"),
    case("exim_auth_fail", "2022-06-29 16:04:19 dovecot_login authenticator failed for "
         "([1.2.3.5]) [1.2.3.4]:55379: 535 Incorrect authentication data (set_id=abuse@test.com)",
         "helo-only", client="unknown[1.2.3.4]", detail="dovecot_login authenticator failed "
         "for ([1.2.3.5]) [1.2.3.4]:55379: 535 Incorrect authentication data "
         "(set_id=abuse@test.com)"),
    case("exim_connection", "2017-01-24 03:09:46 SMTP connection from [10.101.1.10]:55010 "
         "(TCP/IP connection count = 1)", "open", client="unknown[10.101.1.10]",
         detail="SMTP connection from [10.101.1.10]:55010 (TCP/IP connection count = 1)"),
    case("exim_connection", "2013-06-02 09:22:05 [19591] SMTP call from pc1.example.tw "
         "[163.14.21.161]:3767 I=[1.2.3.4]:25 dropped: too many nonmail commands", "dropped",
         client="pc1.example.tw[163.14.21.161]", detail="SMTP call from pc1.example.tw "
         "[163.14.21.161]:3767 I=[1.2.3.4]:25 dropped: too many nonmail commands"),
    case("exim_smtp_error", "2016-03-18 00:34:06 [7513] SMTP protocol error in \"AUTH LOGIN\" "
         "H=(ylmf-pc) [45.32.34.167]:60723 I=[172.89.0.6]:587 AUTH command used when not "
         "advertised", "protocol", client="unknown[45.32.34.167]",
         detail='SMTP protocol error in "AUTH LOGIN" H=(ylmf-pc) [45.32.34.167]:60723 '
         "I=[172.89.0.6]:587 AUTH command used when not advertised"),
    case("exim_tls", f"{S} TLS error on connection from (x.example) [192.0.2.4] (SSL_accept): "
         "timed out", "accept", detail="TLS error on connection from (x.example) [192.0.2.4] "
         "(SSL_accept): timed out"),
    case("exim_host_lookup", "2017-12-03 08:32:00 no host name found for IP address 192.0.2.8",
         "no-ptr", detail="no host name found for IP address 192.0.2.8"),
    case("exim_warning", f"{S} H=(test) [192.0.2.16] U=CALLER Warning: found in rbl2.test.ex",
         "acl-warn", client="unknown[192.0.2.16]",
         detail="H=(test) [192.0.2.16] U=CALLER Warning: found in rbl2.test.ex"),
    case("exim_queue_run", f"{S} [1234] Start queue run: pid=1234", "start",
         detail="Start queue run: pid=1234"),
    case("exim_daemon", f"{S} exim 4.94.2 daemon started: pid=1212, -q30m, listening for SMTP "
         "on port 25 (IPv4)", "started", detail="exim 4.94.2 daemon started: pid=1212, -q30m, "
         "listening for SMTP on port 25 (IPv4)"),
    case("exim_continuation", "  <u213@shrike.depaul.edu>,", "indented",
         detail="<u213@shrike.depaul.edu>,"),
    case("exim_continuation", f"{SY} [2/2] ail.example>)", "syslog-split-part",
         detail="ail.example>)"),
    # --- other programs and junk --------------------------------------------------------
    # log_selector = +arguments (the Exim specification, "Log files"): no message id
    case("exim_arguments", f"{S} cwd=/var/spool/exim4 3 args: /usr/sbin/exim4 -Mc {ID}",
         "queue-runner-delivery", detail=f"cwd=/var/spool/exim4 3 args: /usr/sbin/exim4 -Mc {ID}"),
    case("exim_arguments", f"{SY} cwd=/ 4 args: /usr/sbin/exim4 -bd -q30m -oX 25",
         "syslog-daemon", detail="cwd=/ 4 args: /usr/sbin/exim4 -bd -q30m -oX 25"),
    case("foreign", "Nov 14 10:02:11 mx1 dovecot: imap-login: Login: user=<bob@example.com>",
         "dovecot"),
    case("unparsed", "hello world", "no-stamp"),
    case("exim_note", f"{S} something nobody has seen before", "unknown-shape",
         detail="something nobody has seen before"),
]


@pytest.mark.parametrize(("line", "kind", "fields"), CASES)
def test_line_kind_and_fields(line: str, kind: str, fields: dict[str, object]) -> None:
    row = parse([line]).row(0, named=True)
    assert row["kind"] == kind
    if kind == "delivery":  # addressed directly unless the line names a list
        fields = {"orig_to": fields.get("recipient"), **fields}
    if kind == "delivery" and fields.get("status") == "sent":  # its reply is not kept
        fields = {**fields, "detail": None}
    for name in FIELDS:
        assert row[name] == fields.get(name), name
    assert row["raw"] == (line if kind in ("foreign", "unparsed") else None)
    assert row["line_no"] == 1 and row["source_file"] == "test.log"


def test_every_kind_has_a_case() -> None:
    assert {p.values[1] for p in CASES} == set(exim.KINDS)


def test_all_cases_in_one_batch_match_one_by_one() -> None:
    """Per-kind extraction must not leak between kinds when they share a batch."""
    lines = [p.values[0] for p in CASES]
    together = parse(lines)
    alone = pl.concat([parse([line]) for line in lines]).with_columns(
        line_no=pl.int_range(1, len(lines) + 1, dtype=pl.Int64))
    assert_frame_equal(together, alone)


# --- the envelopes ----------------------------------------------------------------------------

ARRIVAL = f"{ID} <= a@example.com U=root P=local S=1"


@pytest.mark.parametrize(("line", "ts", "host", "program"), [
    (f"{S} {ARRIVAL}", datetime(2016, 11, 14, 10, 2, 11, tzinfo=UTC), None, "exim"),
    (f"{S}.250 {ARRIVAL}", datetime(2016, 11, 14, 10, 2, 11, 250000, tzinfo=UTC), None, "exim"),
    (f"{S} +0100 {ARRIVAL}", datetime(2016, 11, 14, 9, 2, 11, tzinfo=UTC), None, "exim"),
    (f"{S}.007 -0430 [77] {ARRIVAL}", datetime(2016, 11, 14, 14, 32, 11, 7000, tzinfo=UTC),
     None, "exim"),
    (f"{SY} {ARRIVAL}", datetime(2016, 11, 14, 10, 2, 11, tzinfo=UTC), "mx1", "exim"),
    # syslog_timestamp: Exim's own stamp inside wins (it has the year and the fraction)
    (f"Nov 14 10:02:11 mx1 exim4[7]: 2016-11-14 10:02:11.5 {ARRIVAL}",
     datetime(2016, 11, 14, 10, 2, 11, 500000, tzinfo=UTC), "mx1", "exim4"),
    (f"{SY} [1/1] {ARRIVAL}", datetime(2016, 11, 14, 10, 2, 11, tzinfo=UTC), "mx1", "exim"),
    (f"2016-11-14 10:02:11 mx1.fqdn.example exim[29786]: {ARRIVAL}",
     datetime(2016, 11, 14, 10, 2, 11, tzinfo=UTC), "mx1.fqdn.example", "exim"),
    (f"mail.example.com exim[3751842]: {S} {ARRIVAL}",
     datetime(2016, 11, 14, 10, 2, 11, tzinfo=UTC), "mail.example.com", "exim"),
])
def test_envelope_stamp_host_and_program(line: str, ts: datetime, host: str | None,
                                         program: str) -> None:
    row = parse([line]).row(0, named=True)
    assert (row["kind"], row["queue_id"], row["sender"], row["size"]) == \
        ("received", ID, "a@example.com", 1)
    assert (row["ts"], row["host"], row["program"]) == (ts, host, program)


def test_zone_less_stamps_are_local_time_offsets_are_not() -> None:
    out = parse([f"2016-07-15 12:00:00 {ARRIVAL}", f"2016-07-15 12:00:00 +0000 {ARRIVAL}",
                 f"Jan 15 12:00:00 mx1 exim[1]: {ARRIVAL}"], tz="Europe/London")
    assert out["ts"].to_list() == [datetime(2016, 7, 15, 11, tzinfo=UTC),
                                   datetime(2016, 7, 15, 12, tzinfo=UTC),
                                   datetime(2016, 1, 15, 12, tzinfo=UTC)]


@pytest.mark.parametrize("anchor", [2015, 2016])
@pytest.mark.parametrize("from_ingest", [False, True])
def test_syslog_lines_keep_the_year_of_exims_own_stamps(anchor: int, from_ingest: bool) -> None:
    """Exim via syslog with syslog_timestamp on some lines only (the "Nov 14 10:02:11 mx1
    exim4[7]: 2016-11-14 10:02:11.5" shape above): a year-less neighbour takes the year
    of the nearest line that carries one, across the new year, whatever year the reader
    guessed for the file (2016 here is one too many)."""
    lines = [
        f"Dec 31 23:59:58 mx1 exim[1]: {ARRIVAL}",
        f"Dec 31 23:59:59 mx1 exim[1]: 2015-12-31 23:59:59 {ID} => b@example.com R=r T=t",
        f"Jan  1 00:00:01 mx1 exim[1]: {ID} Completed",
        f"Jan  1 00:00:02 mx1 exim[1]: 2016-01-01 00:00:02 {ID} Completed",
        "Jan  1 00:00:03 mx1 dovecot: imap-login: Login: user=<bob@example.com>",
    ]
    batch = lines_frame(lines)
    if from_ingest:  # ingest assigns the years ahead of the parse
        batch = batch.with_columns(assign_years(months_of_raw(batch["raw"]), YearState(anchor)))
    ctx = ParseContext("test.log", tz="UTC", years=YearState(anchor))
    ts = exim.parse(batch, ctx).sort("line_no")["ts"].to_list()
    assert [t.year for t in ts] == [2015, 2015, 2016, 2016, 2016]
    assert ts == sorted(ts)


def test_impossible_date_is_null_not_a_crash() -> None:
    row = parse([f"2016-02-30 10:00:00 {ARRIVAL}"]).row(0, named=True)
    assert row["ts"] is None and row["kind"] == "received"


def test_sniff_accepts_exim_and_refuses_others() -> None:
    assert exim.sniff([f"{S} {ARRIVAL}", f"{S} {ID} Completed"])
    assert exim.sniff([f"{S} [12] Start queue run: pid=12"])
    assert exim.sniff([f"{SY} {ARRIVAL}", "Nov 14 10:02:12 mx1 dovecot: imap-login: x"])
    assert not exim.sniff(["Nov 14 10:02:11 mx1 postfix/smtpd[1]: connect from a[192.0.2.1]"])
    assert not exim.sniff(["Nov 14 10:02:11 mx1 sendmail[1]: x1: from=<a@b>, size=1"])
    assert not exim.sniff(["2016-11-14 10:02:11,123 INFO something else", "hello"])
    assert not exim.sniff([])
    assert sniff_format([f"{S} {ARRIVAL}"]) == "exim"
    assert sniff_format([f"{SY} {ARRIVAL}"]) == "exim"


@pytest.mark.parametrize("lines", [
    pytest.param([p.values[0] for p in CASES], id="all-kinds"),
    pytest.param([], id="empty"),
    pytest.param(["hello", None], id="only-unparsed"),
    pytest.param(["Nov 14 10:02:11 mx1 dovecot: x"], id="only-foreign"),
    pytest.param([f"{S} {ID} => a@b R=r T=t"], id="only-delivery"),
])
def test_parse_returns_exactly_the_events_schema(lines: list[str | None]) -> None:
    out = parse(lines)
    assert out.schema == EVENTS_SCHEMA
    assert out.height == len(lines)


def test_corrupt_numbers_become_null_instead_of_failing_the_batch() -> None:
    out = parse([f"{S} {ID} <= a@b U=root P=local S=99999999999999999999999",
                 f"{S} {ID} => a@b R=r T=t QT=1.2.3s"])
    assert out["size"][0] is None and out["kind"][0] == "received"
    assert out["delay"][1] is None and out["status"][1] == "sent"


# --- properties -----------------------------------------------------------------------------

MESSAGES = sorted({p.values[0].split(" ", 2)[2] for p in CASES if p.values[0].startswith(S)})
native_line = st.builds(lambda d, h, msg: f"2016-11-{d:02d} {h:02d}:00:00 {msg}",
                        st.integers(1, 30), st.integers(0, 23), st.sampled_from(MESSAGES))
syslog_line = st.builds(lambda m, d, msg: f"{m} {d:>2} 10:00:00 mx1 exim[9]: {msg}",
                        st.sampled_from(["Jan", "Jun", "Dec"]), st.integers(1, 28),
                        st.sampled_from(MESSAGES))
realistic_line = st.one_of(native_line, syslog_line, st.sampled_from([p.values[0] for p in CASES]),
                           st.none())


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(realistic_line, min_size=1, max_size=25), data=st.data())
def test_parsing_is_independent_of_batching(lines: list[str | None], data: st.DataObject
                                            ) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(lines) - 1)), max_size=4)))
    whole_ctx = ParseContext("f.log", tz="Europe/Berlin", years=YearState(2019))
    whole = exim.parse(lines_frame(lines), whole_ctx).sort("line_no")
    ctx = ParseContext("f.log", tz="Europe/Berlin", years=YearState(2019))
    bounds = [0, *(c for c in cuts if c < len(lines)), len(lines)]
    split = pl.concat([
        exim.parse(lines_frame(lines[a:b], first_line_no=a + 1), ctx)
        for a, b in zip(bounds, bounds[1:], strict=False) if b > a
    ]).sort("line_no")
    assert_frame_equal(whole, split)
    assert ctx.years == whole_ctx.years


damaged_line = st.builds(
    lambda line, cut, junk: line[:min(cut, len(line))] + junk + line[min(cut, len(line)):],
    st.sampled_from([p.values[0] for p in CASES]), st.integers(0, 300),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\n"), max_size=12),
)


@settings(max_examples=30, deadline=None)
@given(lines=st.lists(st.one_of(realistic_line, damaged_line, st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\n"), max_size=80)), max_size=20))
def test_every_line_gets_exactly_one_kind(lines: list[str | None]) -> None:
    out = parse(lines)
    assert out["line_no"].to_list() == list(range(1, len(lines) + 1))
    assert out["kind"].null_count() == 0
    assert set(out["kind"]) <= set(exim.KINDS)
    kept = out.filter(~pl.col("kind").is_in(["foreign", "unparsed"]))
    assert kept["raw"].null_count() == kept.height


# --- the real corpus --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parsed_corpus(corpus_dir: Path) -> dict[str, tuple[pl.DataFrame, int]]:
    out = {}
    for path in sorted((corpus_dir / "exim").glob("*.log")):
        ctx = ParseContext(str(path), years=YearState(2022))
        events = pl.concat([exim.parse(b, ctx) for b, _ in iter_batches(str(path))])
        data = path.read_bytes()
        out[path.name] = (events.sort("line_no"),
                          data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0))
    return out


def test_corpus_every_line_gets_a_kind(parsed_corpus: dict, corpus_dir: Path) -> None:
    assert len(parsed_corpus) == 7
    for name, (events, lines) in parsed_corpus.items():
        assert events["line_no"].to_list() == list(range(1, lines + 1)), name
        assert events["kind"].null_count() == 0, name
        assert set(events["kind"]) <= set(exim.KINDS), name
        assert events.schema == EVENTS_SCHEMA, name
        head = (corpus_dir / "exim" / name).read_text(errors="replace").splitlines()[:200]
        assert sniff_format(head) == "exim", name


def test_two_passes_give_the_kinds_of_the_table_in_one(corpus_dir: Path) -> None:
    """_with_kinds runs TABLE's flag rows on every line and the rows by text on the rest:
    the kinds must be those of classifier(TABLE) over every line at once."""
    lines = [p.values[0] for p in CASES]
    for path in sorted((corpus_dir / "exim").glob("*.log")):
        lines += path.read_text(encoding="utf-8", errors="replace").splitlines()
    ctx = ParseContext("test.log", years=YearState(2022))
    frame = exim._columns(lines_frame(lines), ctx)
    rest = pl.col("rest")
    whole = frame.with_columns(_flag=rest.str.slice(0, 3),
                               _words=rest.str.replace(exim._PREAMBLE, "")).select(
        pl.coalesce("_kind0", classifier(exim.TABLE)))
    assert exim._with_kinds(frame)["kind"].to_list() == whole.to_series().to_list()


def test_corpus_unparsed_share(parsed_corpus: dict) -> None:
    """Only the test suite's own ACL debugging lines are left (printed with -s)."""
    for name, (events, lines) in parsed_corpus.items():
        unparsed = events.filter(pl.col("kind") == "unparsed").height
        print(f"{name}: {unparsed}/{lines} unparsed ({unparsed / lines:.1%})")
        limit = 0.05 if name == "exim-testsuite.log" else 0.0
        assert unparsed / lines <= limit, name


def test_corpus_message_flow_fields(parsed_corpus: dict, corpus_dir: Path) -> None:
    events, _ = parsed_corpus["exim-testsuite.log"]
    flow = events.filter(pl.col("kind").is_in(["received", "delivery"]))
    assert flow["queue_id"].null_count() == 0
    deliveries = flow.filter(pl.col("kind") == "delivery")
    assert deliveries["status"].null_count() == 0
    # a handful of mua_wrapper / filter-expansion shapes name no recipient address
    assert deliveries["recipient"].null_count() < 10
    # "=> final@x <original@y> R=...": the original is orig_to whenever it differs
    shape = re.compile(r"^\S+ \S+ (?:\[\d+\] )?\S+ (?:=>|->|\*\*|==) ([^\s|/\">]+@\S+) "
                       r"<([^<>]+)> R=")
    raw = (corpus_dir / "exim" / "exim-testsuite.log").read_text(errors="replace").splitlines()
    want = {n: m.groups() for n, line in enumerate(raw, 1) if (m := shape.match(line))}
    got = deliveries.filter(pl.col("line_no").is_in(list(want)))
    assert got.height == len(want) > 50
    for n, rcpt, orig in got.select("line_no", "recipient", "orig_to").iter_rows():
        assert (rcpt, orig) == (want[n][0], want[n][1] if want[n][1] != want[n][0] else orig)
    real, _ = parsed_corpus["logstash-patterns-core.log"]
    arrivals = real.filter(pl.col("kind") == "received")
    assert arrivals.height == 5
    assert arrivals["sender"].null_count() == 0
    assert arrivals.filter(pl.col("message_id").is_not_null()).height == 4


# --- the renderer -------------------------------------------------------------------------------

DAY = utc(2016, 11, 14)


@pytest.fixture(scope="module")
def small() -> tuple:
    rng = random.Random(11)
    site = make_site(rng, "nhs.example", lists={"team.radiology": 25})
    from detector.simulate import background
    msgs, _ = background(site, rng, DAY, 220)
    st_msgs, _ = storm(site, rng, DAY + timedelta(hours=9, minutes=58), list_size=300,
                       repliers=12)
    return site, msgs + st_msgs


def _expected(site, messages) -> tuple[dict, dict]:
    """status counts and (recipient, list) counts the plans say the log must hold."""
    statuses: dict[str, int] = {}
    pairs: dict[tuple, int] = {}
    for m in messages:
        if m.reject:
            continue
        plan = plan_delivery(site, m)
        rows = list(plan.rows)
        for notice in plan.notices:
            rows += plan_delivery(site, notice).rows
        for _, rcpt, orig, code, _ in rows:
            status = OUTCOMES[code][0]
            statuses[status] = statuses.get(status, 0) + 1
            pairs[(rcpt, orig)] = pairs.get((rcpt, orig), 0) + 1
    return statuses, pairs


@pytest.mark.parametrize("options", [
    pytest.param({}, id="default"),
    pytest.param({"pid": True, "millisec": True, "log_timezone": True, "new_ids": True,
                  "tz": "Europe/London"}, id="pid-millisec-zone-new-ids"),
    pytest.param({"syslog": True, "connections": False}, id="syslog"),
    pytest.param({"syslog": True, "syslog_timestamp": True, "topbit": True},
                 id="syslog-with-exim-stamp-topbit"),
])
def test_rendered_log_parses_back_to_the_plans(small: tuple, options: dict) -> None:
    site, messages = small
    lines = list(render_exim(site, messages, seed=3, **options))
    events = exim.parse(lines_frame(lines), ParseContext(
        "r.log", tz=str(options.get("tz", "UTC")), years=YearState(2016)))
    assert set(events["kind"]) <= set(exim.KINDS) - {"unparsed", "foreign"}
    assert events["ts"].null_count() == 0
    deliveries = events.filter(pl.col("kind") == "delivery")
    statuses, pairs = _expected(site, messages)
    got = deliveries.group_by("status").len()
    assert dict(zip(got["status"], got["len"], strict=True)) == statuses
    # a direct delivery says so: orig_to is the recipient itself
    got_pairs = deliveries.with_columns(orig_to=pl.when(pl.col("orig_to") != pl.col("recipient"))
                                        .then("orig_to")).group_by("recipient", "orig_to").len()
    assert {(r, o): n for r, o, n in got_pairs.iter_rows()} == pairs
    received = events.filter(pl.col("kind") == "received")
    want = {m.message_id for m in messages if not m.reject and m.message_id}
    assert want <= set(received["message_id"])
    # a message's lines are on the day, in UTC, wherever its clock was
    assert events["ts"].min() >= DAY - timedelta(minutes=1)
    assert events["ts"].max() < DAY + timedelta(days=2)


def test_renderer_is_deterministic_and_ids_are_unique(small: tuple) -> None:
    site, messages = small
    one = list(render_exim(site, messages, seed=3))
    assert one == list(render_exim(site, messages, seed=3))
    assert one != list(render_exim(site, messages, seed=4))
    arrivals = [line.split(" ")[2] for line in one if " <= " in line]
    assert len(arrivals) == len(set(arrivals))
    assert one == sorted(one, key=lambda line: line[:19])  # time ordered


def test_headers_switch_logs_subject_and_threading_or_neither(small: tuple) -> None:
    site, messages = small
    on = list(render_exim(site, messages, seed=3, headers=True))
    off = list(render_exim(site, messages, seed=3, headers=False))
    assert any(' T="' in line for line in on)
    assert any(" References: <" in line for line in on)
    ctx = ParseContext("r.log", years=YearState(2016))
    quiet = exim.parse(lines_frame(off), ctx)
    assert not set(quiet["kind"]) & {"header_subject", "header_in_reply_to", "header_references"}
    assert quiet["subject"].null_count() == quiet.height
    loud = exim.parse(lines_frame(on), ctx)
    replies = {m.message_id: m.in_reply_to for m in messages if m.in_reply_to and not m.reject}
    got = loud.filter(pl.col("kind") == "header_in_reply_to").select("queue_id", "in_reply_to")
    ids = loud.filter(pl.col("kind") == "received").select("queue_id", "message_id")
    pairs = dict(got.join(ids, on="queue_id").select("message_id", "in_reply_to").iter_rows())
    assert pairs == replies


def test_quoting_printing_and_times() -> None:
    assert quoted('a "b" \\ c') == '"a \\"b\\" \\\\ c"'
    assert quoted("Café", 100) == '"Caf\\303\\251"'
    assert quoted("Café", 100, topbit=True) == '"Café"'
    assert quoted("x" * 150, 100) == '"' + "x" * 100 + '"'
    assert [print_time(s) for s in (0, 59, 225, 93600)] == ["0s", "59s", "3m45s", "1d2h"]
    assert print_time(1.5781, millisec=True) == "1.578s"


# --- end to end: the NHS storm, rendered by Exim and by Postfix ---------------------------------


@pytest.fixture(scope="module")
def storm_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    """The storm day of the sample, as Postfix logs it and as Exim logs it when its DATA
    ACL writes In-Reply-To and References (stock Exim logs only the subject: then the
    edited and re-encoded replies fall out of the thread, and with them a few senders)."""
    site, _, day2, _ = sample_logs.build()
    root = tmp_path_factory.mktemp("storm")
    write_postfix(root / "postfix" / "mail.log", site, day2, seed=3)
    write_exim(root / "exim" / "mainlog", site, day2, seed=3, headers=True)
    out = {}
    for name in ("postfix", "exim"):
        res = pipeline.run([str(root / name)], root / f"{name}-out", year=2016, tz="UTC")
        out[name] = [i.to_record() for i in res.incidents if i.kind == "reply_storm"]
    return out


def test_storm_from_exim_equals_storm_from_postfix(storm_runs: dict) -> None:
    [pf], [ex] = storm_runs["postfix"], storm_runs["exim"]
    for key in ("kind", "list", "root_message_id", "deliveries", "messages", "repliers"):
        assert ex[key] == pf[key], key
    start_pf, start_ex = (datetime.fromisoformat(i["start"]) for i in (pf, ex))
    assert abs(start_ex - start_pf) <= timedelta(seconds=5)
