"""The Postfix parser: one realistic line per kind, the syslog envelope, odd bytes, schema,
batching independence, and the real corpus."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from detector.formats import ParseContext, postfix
from detector.formats import sniff as sniff_format
from detector.formats.syslog import YearState, parse_header
from detector.schema import EVENTS_SCHEMA
from detector.sources import iter_batches
from tests.conftest import lines_frame, parse_postfix

# every field a kind may fill; a case lists the ones it expects, all others must be null
FIELDS = [
    "queue_id", "message_id", "sender", "recipient", "orig_to", "size", "nrcpt", "relay",
    "delay", "dsn", "status", "client", "subject", "in_reply_to", "refs", "next_queue_id",
    "detail",
]

H = "Jun 10 06:50:26 mx1"  # a plain RFC 3164 header: timestamp + host
SUBJECT_TEXT = "Re: Übersicht Q3 – Zahlen"
SUBJECT_B64 = "=?UTF-8?B?" + base64.b64encode(SUBJECT_TEXT.encode()).decode() + "?="
TRAILER = (
    "from mail.example.com[192.0.2.10]; from=<alice@example.com> to=<bob@example.org> "
    "proto=ESMTP helo=<mail.example.com>"
)
CLIENT = "mail.example.com[192.0.2.10]"


def case(kind: str, line: str, id: str, **fields: object) -> object:
    return pytest.param(line, kind, fields, id=f"{kind}-{id}")


CASES = [
    # --- smtpd --------------------------------------------------------------------------
    case("smtpd_connect", f"{H} postfix/smtpd[5530]: connect from "
         "mail-wr1-f54.google.com[209.85.221.54]", "plain",
         client="mail-wr1-f54.google.com[209.85.221.54]"),
    case("smtpd_disconnect", f"{H} postfix/smtpd[5530]: disconnect from unknown[192.0.2.1] "
         "ehlo=1 auth=0/1 quit=1 commands=2/3", "counters", client="unknown[192.0.2.1]"),
    case("smtpd_client", f"{H} postfix/smtpd[5530]: 4F1B61F4B8: client={CLIENT}", "short-hex",
         queue_id="4F1B61F4B8", client=CLIENT),
    case("smtpd_client", "2013 Jun 10 06:50:26.123 gds39d postfix/smtpd[2953]: "
         "7D830C2C10FXXXX: client=gds39k.active24.cz[81.95.110.19]", "masked-qid",
         queue_id="7D830C2C10FXXXX", client="gds39k.active24.cz[81.95.110.19]"),
    case("smtpd_client", f"{H} postfix/submission/smtpd[9708]: 4VxKqT1bZ2z9vKN: "
         "client=unknown[198.51.100.23], sasl_method=PLAIN, sasl_username=alice@example.com",
         "long-qid-submission", queue_id="4VxKqT1bZ2z9vKN", client="unknown[198.51.100.23]"),
    case("smtpd_reject", f"{H} postfix/smtpd[13844]: 00ADB3C0899: reject: RCPT from "
         "example.com[192.0.2.1]: 550 5.1.1 <sales@server.com>: Recipient address rejected: "
         "User unknown in local recipient table; from=<xx@example.com> to=<sales@server.com> "
         "proto=ESMTP helo=<mail.example.com>", "reject",
         queue_id="00ADB3C0899", status="reject", client="example.com[192.0.2.1]",
         detail="550 5.1.1 <sales@server.com>: Recipient address rejected: User unknown in "
         "local recipient table", sender="xx@example.com", recipient="sales@server.com"),
    case("smtpd_reject", f"{H} postfix/smtpd[13844]: 4F1B61F4B8: hold: RCPT from {CLIENT}: "
         "<alice@example.com>: Sender address triggers HOLD action; from=<alice@example.com> "
         "to=<bob@example.org> proto=ESMTP helo=<mail.example.com>", "hold",
         queue_id="4F1B61F4B8", status="hold", client=CLIENT,
         detail="<alice@example.com>: Sender address triggers HOLD action",
         sender="alice@example.com", recipient="bob@example.org"),
    case("noqueue", f"{H} postfix/smtpd[26897]: NOQUEUE: reject: RCPT from unknown[192.0.2.9]: "
         "554 5.7.1 Service unavailable; Client host [192.0.2.9] blocked using "
         "zen.spamhaus.org; from=<spam@bad.example> to=<user@example.com> proto=ESMTP "
         "helo=<bad>", "rbl-detail-with-semicolons",
         status="reject", client="unknown[192.0.2.9]",
         detail="554 5.7.1 Service unavailable; Client host [192.0.2.9] blocked using "
         "zen.spamhaus.org", sender="spam@bad.example", recipient="user@example.com"),
    case("noqueue", f"{H} postfix/smtpd[26897]: NOQUEUE: reject: RCPT from {CLIENT}: 450 4.1.8 "
         "<>: Sender address rejected: Domain not found; from=<> to=<bob@example.org> "
         "proto=ESMTP helo=<mail.example.com>", "null-sender",
         status="reject", client=CLIENT,
         detail="450 4.1.8 <>: Sender address rejected: Domain not found",
         sender="", recipient="bob@example.org"),
    case("noqueue", "Feb 24 16:18:40 letterman postfix/postscreen[1234]: NOQUEUE: reject: RCPT "
         "from [192.0.2.4]:5678: 550 5.7.1 Service unavailable; client [192.0.2.4] blocked "
         "using zen.spamhaus.org; from=<a@b.example>, to=<c@d.example>, proto=ESMTP, "
         "helo=<x>", "postscreen-commas",
         status="reject", client="[192.0.2.4]:5678",
         detail="550 5.7.1 Service unavailable; client [192.0.2.4] blocked using "
         "zen.spamhaus.org", sender="a@b.example", recipient="c@d.example"),
    case("noqueue", f"{H} postfix/smtpd[26897]: NOQUEUE: reject: CONNECT from unknown[192.0.2.7]:"
         " 554 5.7.1 <unknown[192.0.2.7]>: Client host rejected: Access denied; proto=SMTP",
         "connect-no-envelope", status="reject", client="unknown[192.0.2.7]",
         detail="554 5.7.1 <unknown[192.0.2.7]>: Client host rejected: Access denied"),
    # before-queue content filter (smtpd_proxy_filter): shapes of the corpus's
    # postfix-grok-patterns and Sekoia smtpd samples, with the syslog header and queue id
    # (or NOQUEUE) that smtpd writes in front of them
    case("proxy_reject", f"{H} postfix/smtpd[1234]: 4F9D195E3E: proxy-reject: END-OF-MESSAGE: "
         "554 5.7.0 Reject, contact postmaster@example.com, id=31619-02 - spam; from=<> "
         "to=<user2@example2.com> proto=SMTP helo=<17.33.12.53>", "queued",
         queue_id="4F9D195E3E", status="reject", dsn="5.7.0", sender="",
         recipient="user2@example2.com",
         detail="554 5.7.0 Reject, contact postmaster@example.com, id=31619-02 - spam"),
    case("proxy_reject", f"{H} postfix/smtpd[1234]: NOQUEUE: proxy-reject: END-OF-MESSAGE: ; "
         "from=<user1@test.example.com> to=<user2@example2.com> proto=ESMTP "
         "helo=<[192.168.0.16]>", "noqueue-empty-reply",
         status="reject", sender="user1@test.example.com", recipient="user2@example2.com"),
    case("proxy_accept", f"{H} postfix/smtpd[1234]: NOQUEUE: proxy-accept: END-OF-MESSAGE: "
         "250 2.0.0 from MTA(smtp:[127.0.0.1]:10013): 250 2.0.0 Ok: queued as DF66E940333; "
         "from=<user1@test.example.com> to=<user2@example2.com> proto=ESMTP "
         "helo=<[127.0.0.1]>", "noqueue-through-amavis",
         status="accept", dsn="2.0.0", sender="user1@test.example.com",
         recipient="user2@example2.com", next_queue_id="DF66E940333",
         detail="250 2.0.0 from MTA(smtp:[127.0.0.1]:10013): 250 2.0.0 Ok: queued as "
         "DF66E940333"),
    case("proxy_accept", f"{H} postfix/smtpd[1234]: 4F9D195E3E: proxy-accept: END-OF-MESSAGE: "
         "250 2.0.0 Ok: queued as 7949396087; from=<jdoe@example.org> "
         "to=<jane.doe@example.org> proto=ESMTP helo=<mx.example.org>", "queued",
         queue_id="4F9D195E3E", status="accept", dsn="2.0.0", sender="jdoe@example.org",
         recipient="jane.doe@example.org", next_queue_id="7949396087",
         detail="250 2.0.0 Ok: queued as 7949396087"),
    case("milter", f"{H} postfix/cleanup[27246]: 1D8CC1CA0A7F: milter-reject: END-OF-MESSAGE "
         f"from {CLIENT}: 5.7.1 Command rejected; from=<security@mail.example.com> "
         "to=<hostmaster@example.com> proto=ESMTP helo=<mail.example.com>", "reject",
         queue_id="1D8CC1CA0A7F", status="milter-reject", client=CLIENT,
         detail="5.7.1 Command rejected", sender="security@mail.example.com",
         recipient="hostmaster@example.com"),
    # --- pickup / cleanup / headers ---------------------------------------------------
    case("pickup", f"{H} postfix/pickup[30583]: D25433FC013: uid=108 from=<logcheck>", "uid",
         queue_id="D25433FC013", sender="logcheck"),
    case("cleanup_message_id", f"{H} postfix/cleanup[4468]: 4F1B61F4B8: "
         "message-id=<20240610065026.4F1B61F4B8@mail.example.com>", "bracketed",
         queue_id="4F1B61F4B8", message_id="20240610065026.4F1B61F4B8@mail.example.com"),
    case("cleanup_message_id", "2013 Jun 10 06:50:26.123 gds39d postfix/cleanup[4468]: "
         "7D830C2C10FXXXX: message-id=msgId-7D830C2C10FXXXX", "bare-masked",
         queue_id="7D830C2C10FXXXX", message_id="msgId-7D830C2C10FXXXX"),
    case("cleanup_resent_message_id", f"{H} postfix/cleanup[4468]: 52A49200E1: "
         "resent-message-id=<4739073.1@example.com>", "bracketed",
         queue_id="52A49200E1", message_id="4739073.1@example.com"),
    case("header_subject", f"{H} postfix/cleanup[4468]: 4F1B61F4B8: info: header Subject: "
         f"Re: quarterly numbers {TRAILER}", "plain",
         queue_id="4F1B61F4B8", subject="Re: quarterly numbers", client=CLIENT,
         sender="alice@example.com", recipient="bob@example.org"),
    case("header_subject", f"{H} postfix/cleanup[4468]: 4VxKqT1bZ2z9vKN: info: header Subject: "
         f"{SUBJECT_B64} {TRAILER}", "rfc2047-long-qid",
         queue_id="4VxKqT1bZ2z9vKN", subject=SUBJECT_TEXT, client=CLIENT,
         sender="alice@example.com", recipient="bob@example.org"),
    case("header_subject", f"{H} postfix/cleanup[4468]: 4F1B61F4B8: warning: header Subject: "
         "=?iso-8859-1?Q?AW:_Pr=FCfung?= from mail.example.com[192.0.2.10]; from=<> "
         "to=<bob@example.org> proto=ESMTP helo=<mail.example.com>: subject logged",
         "warn-q-encoded-null-sender",
         queue_id="4F1B61F4B8", subject="AW: Prüfung", client=CLIENT, sender="",
         recipient="bob@example.org"),
    case("header_subject", f"{H} postfix/cleanup[4468]: 4F1B61F4B8: info: header Subject: "
         f"Re: offer from x[1.2.3.4]; from=<evil@x> {TRAILER}", "hostile",
         queue_id="4F1B61F4B8", subject="Re: offer from x[1.2.3.4]; from=<evil@x>",
         client=CLIENT, sender="alice@example.com", recipient="bob@example.org"),
    case("header_subject", f"{H} postfix/cleanup[4468]: 4F1B61F4B8: info: header Subject: "
         f"hi from x[1.2.3.4]; from=<evil@x> to=<evil@y> proto=ESMTP helo=<x> {TRAILER}",
         "hostile-full-fake-trailer",
         queue_id="4F1B61F4B8",
         subject="hi from x[1.2.3.4]; from=<evil@x> to=<evil@y> proto=ESMTP helo=<x>",
         client=CLIENT, sender="alice@example.com", recipient="bob@example.org"),
    case("header_in_reply_to", f"{H} postfix/cleanup[4468]: 4F1B61F4B8: info: header "
         f"In-Reply-To: <CAH+w=7bXk2@mail.gmail.com> {TRAILER}", "bracketed",
         queue_id="4F1B61F4B8", in_reply_to="CAH+w=7bXk2@mail.gmail.com", client=CLIENT,
         sender="alice@example.com", recipient="bob@example.org"),
    case("header_references", f"{H} postfix/cleanup[4468]: 4F1B61F4B8: info: header "
         f"References: <a1@x.example> <b2@y.example> {TRAILER}", "two-ids",
         queue_id="4F1B61F4B8", refs="<a1@x.example> <b2@y.example>", client=CLIENT,
         sender="alice@example.com", recipient="bob@example.org"),
    case("header_check", "2013 Jun 10 06:50:26.123 gds39d postfix/cleanup[4468]: "
         "7D830C2C10FXXXX: info: header client-id: first-client-id from localhost[127.0.0.1]; "
         "from=<liska@fg.cz> to=<liska@fg.cz> proto=ESMTP helo=<jlinb>", "other-header",
         queue_id="7D830C2C10FXXXX"),
    case("header_check", f"{H} postfix/cleanup[4468]: 26B6AC2DB5: reject: body Cheap pills "
         "from local; from=<root@localhost>: 5.7.1 Spam", "body-reject",
         queue_id="26B6AC2DB5"),
    # --- qmgr -----------------------------------------------------------------------------
    case("qmgr_from", "2013 Jun 10 06:28:17.123 gds39d postfix/qmgr[6273]: 7E1AEC2C388XXXX: "
         "from=<u0-r3piy@d1r3ehf41i.fa.eo>, size=34644, nrcpt=1 (queue active)", "masked",
         queue_id="7E1AEC2C388XXXX", sender="u0-r3piy@d1r3ehf41i.fa.eo", size=34644, nrcpt=1),
    case("qmgr_from", f"{H} postfix/qmgr[6273]: 4VxKqT1bZ2z9vKN: from=<>, size=2345, "
         "nrcpt=250 (queue active)", "null-sender-long-qid",
         queue_id="4VxKqT1bZ2z9vKN", sender="", size=2345, nrcpt=250),
    case("qmgr_expired", f"{H} postfix/qmgr[6273]: 953B93FC06E: from=<kb@example.com>, "
         "status=expired, returned to sender", "expired",
         queue_id="953B93FC06E", sender="kb@example.com", status="expired"),
    case("qmgr_expired", f"{H} postfix/qmgr[3663]: BACE842E73: from=<noreply@domain.com>, "
         "status=force-expired, returned to sender", "force-expired",
         queue_id="BACE842E73", sender="noreply@domain.com", status="force-expired"),
    case("queue_removed", f"{H} postfix/qmgr[6273]: 4F1B61F4B8: removed", "qmgr",
         queue_id="4F1B61F4B8"),
    case("queue_removed", f"{H} postfix/postsuper[811]: 4F1B61F4B8: removed", "postsuper",
         queue_id="4F1B61F4B8"),
    # --- deliveries ---------------------------------------------------------------------
    case("delivery", "2013 Jun 10 06:50:26.123 gds39d postfix/smtp[31099]: 7D830C2C10FXXXX: "
         "to=<h4@fa.eo>, relay=hermes.fg.cz[193.86.74.5]:25, delay=0.17, "
         "delays=0.03/0/0.07/0.08, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 99D0EBC23)",
         "sent-queued-as", queue_id="7D830C2C10FXXXX", recipient="h4@fa.eo",
         relay="hermes.fg.cz[193.86.74.5]:25", delay=0.17, dsn="2.0.0", status="sent",
         detail="250 2.0.0 Ok: queued as 99D0EBC23", next_queue_id="99D0EBC23"),
    case("delivery", f"{H} postfix/smtp[28692]: 08ACF1541B01: to=<bob@example.com>, "
         "orig_to=<postmaster>, relay=127.0.0.1[127.0.0.1]:10024, delay=6.8, "
         "delays=0.19/0.01/0/6.6, dsn=2.0.0, status=sent (250 2.0.0 from "
         "MTA(smtp:[127.0.0.1]:10025): 250 2.0.0 Ok: queued as AED441541AFC)", "orig-to-amavis",
         queue_id="08ACF1541B01", recipient="bob@example.com", orig_to="postmaster",
         relay="127.0.0.1[127.0.0.1]:10024", delay=6.8, dsn="2.0.0", status="sent",
         detail="250 2.0.0 from MTA(smtp:[127.0.0.1]:10025): 250 2.0.0 Ok: queued as "
         "AED441541AFC", next_queue_id="AED441541AFC"),
    case("delivery", f"{H} postfix/smtp[28692]: 4VxKqT1bZ2z9vKN: to=<carol@example.org>, "
         "relay=mx.example.org[198.51.100.7]:25, delay=1.2, delays=0.1/0/0.5/0.6, dsn=2.0.0, "
         "status=sent (250 2.0.0 Ok: queued as 4VxKr02mGbz9vLP)", "long-qids",
         queue_id="4VxKqT1bZ2z9vKN", recipient="carol@example.org",
         relay="mx.example.org[198.51.100.7]:25", delay=1.2, dsn="2.0.0", status="sent",
         detail="250 2.0.0 Ok: queued as 4VxKr02mGbz9vLP", next_queue_id="4VxKr02mGbz9vLP"),
    case("delivery", f"{H} postfix/smtp[28692]: 4F1B61F4B8: to=<prøve@eksempel.no>, "
         "orig_to=<alle@eksempel.no>, relay=mx.eksempel.no[198.51.100.8]:25, delay=0.4, "
         "delays=0.1/0/0.2/0.1, dsn=2.0.0, status=sent (250 2.0.0 Mottatt – ok)",
         "non-ascii-address", queue_id="4F1B61F4B8", recipient="prøve@eksempel.no",
         orig_to="alle@eksempel.no", delay=0.4, dsn="2.0.0",
         relay="mx.eksempel.no[198.51.100.8]:25", status="sent", detail="250 2.0.0 Mottatt – ok"),
    case("delivery", f"{H} postfix/local[4242]: 5C8E23F1A0: to=<bob@example.com>, "
         "orig_to=<bob@example.com>, relay=local, delay=0.1, delays=0.05/0/0/0.05, dsn=2.0.0, "
         "status=sent (forwarded as 6D9F34A2B1)", "local-forwarded-as",
         queue_id="5C8E23F1A0", recipient="bob@example.com", orig_to="bob@example.com",
         relay="local", delay=0.1, dsn="2.0.0", status="sent",
         detail="forwarded as 6D9F34A2B1", next_queue_id="6D9F34A2B1"),
    case("delivery", "2013 Jun 10 07:59:37.123 gds39d postfix/smtp[18816]: 6A3F73FC075XXXX: "
         "to=<frf4d4@s3ou4f.eo>, relay=mx70.seznam.cz[77.75.77.49]:25, conn_use=2, delay=1.3, "
         "delays=0.01/1.2/0/0.02, dsn=2.0.0, status=sent (250 2.0.0 Mail 638398149 queued for "
         "delivery in session d9300000002.)", "conn-use",
         queue_id="6A3F73FC075XXXX", recipient="frf4d4@s3ou4f.eo",
         relay="mx70.seznam.cz[77.75.77.49]:25", delay=1.3, dsn="2.0.0", status="sent",
         detail="250 2.0.0 Mail 638398149 queued for delivery in session d9300000002."),
    case("delivery", f"{H} postfix/smtp[16152]: 7E1AEC2C388: to=<k0@f1eh43i4.example>, "
         "relay=none, delay=71766, delays=71766/0.01/0.29/0, dsn=4.4.1, status=deferred "
         "(connect to michaela.com[176.74.176.167]:25: Connection refused)", "deferred",
         queue_id="7E1AEC2C388", recipient="k0@f1eh43i4.example", relay="none",
         delay=71766.0, dsn="4.4.1", status="deferred",
         detail="connect to michaela.com[176.74.176.167]:25: Connection refused"),
    case("delivery", f"{H} postfix/smtp[18815]: 28DF8C2C113XXXX: to=<f1@s3ou4f.eo>, "
         "relay=mx70.seznam.cz[77.75.77.49]:25, delay=1.1, delays=0.01/0/1/0.04, dsn=5.1.1, "
         "status=bounced (host mx70.seznam.cz[77.75.77.49] said: 550 5.1.1 Sorry, no mailbox "
         "here by that name. (in reply to RCPT TO command))", "bounced-nested-parens",
         queue_id="28DF8C2C113XXXX", recipient="f1@s3ou4f.eo",
         relay="mx70.seznam.cz[77.75.77.49]:25", delay=1.1, dsn="5.1.1", status="bounced",
         detail="host mx70.seznam.cz[77.75.77.49] said: 550 5.1.1 Sorry, no mailbox here by "
         "that name. (in reply to RCPT TO command)"),
    case("delivery", f"{H} postfix-1.2.3.4/smtp[127]: 3A4B5C6D7E: to=<x@example.net>, "
         "relay=mx.example.net[203.0.113.5]:25, delay=0.5, delays=0.1/0/0.2/0.2, dsn=2.0.0, "
         "status=sent (250 OK id=1a2b3c-000001-AB)", "multi-instance",
         queue_id="3A4B5C6D7E", recipient="x@example.net",
         relay="mx.example.net[203.0.113.5]:25", delay=0.5, dsn="2.0.0", status="sent",
         detail="250 OK id=1a2b3c-000001-AB"),
    # --- bounces and smtp client notices ----------------------------------------------
    case("bounce_notification", f"{H} postfix/bounce[23129]: 4F1B61F4B8: sender non-delivery "
         "notification: 5A2C3D4E6F", "non-delivery",
         queue_id="4F1B61F4B8", next_queue_id="5A2C3D4E6F"),
    case("bounce_notification", "2013 Jun 10 07:59:58.123 gds39d postfix/bounce[23129]: "
         "28DF8C2C113XXXX: sender non-delivery notificationXXXX: 35B20C2C115", "masked",
         queue_id="28DF8C2C113XXXX", next_queue_id="35B20C2C115"),
    case("bounce_notification", f"{H} postfix/bounce[23129]: 4F1B61F4B8: sender delay "
         "notification: 7B1C2D3E4F", "delay", queue_id="4F1B61F4B8", next_queue_id="7B1C2D3E4F"),
    case("bounce_notification", f"{H} postfix/bounce[23129]: 4F1B61F4B8: postmaster "
         "non-delivery notification: 8C1D2E3F40", "postmaster",
         queue_id="4F1B61F4B8", next_queue_id="8C1D2E3F40"),
    case("smtp_session", f"{H} postfix/smtp[10732]: 7C6983FD150: host svc1.example.cz"
         "[147.32.127.214] said: 450 4.1.1 <n@example.cz>: Recipient address rejected: "
         "unverified address (in reply to RCPT TO command)", "host-said",
         queue_id="7C6983FD150", detail="host svc1.example.cz[147.32.127.214] said: 450 4.1.1 "
         "<n@example.cz>: Recipient address rejected: unverified address (in reply to RCPT TO "
         "command)"),
    case("smtp_session", f"{H} postfix/smtp[10732]: 7C6983FD150: lost connection with "
         "mx.example.org[198.51.100.7] while receiving the initial server greeting", "lost",
         queue_id="7C6983FD150", detail="lost connection with mx.example.org[198.51.100.7] "
         "while receiving the initial server greeting"),
    case("queue_note", f"{H} postfix/qmgr[6273]: 4F1B61F4B8: skipped, still being delivered",
         "skipped", queue_id="4F1B61F4B8", detail="skipped, still being delivered"),
    case("connect_failure", f"{H} postfix/smtp[16152]: connect to michaela.com"
         "[176.74.176.167]:25: Connection refused", "refused",
         detail="connect to michaela.com[176.74.176.167]:25: Connection refused"),
    case("session_error", f"{H} postfix/smtpd[29306]: lost connection after CONNECT from "
         "unknown[192.0.2.25]", "lost-connection",
         detail="lost connection after CONNECT from unknown[192.0.2.25]"),
    case("session_error", f"{H} postfix/smtpd[29306]: too many errors after RCPT from "
         "example.com[192.0.2.11]", "too-many-errors",
         detail="too many errors after RCPT from example.com[192.0.2.11]"),
    case("session_error", f"{H} postfix/smtpd[29306]: timeout after END-OF-MESSAGE from "
         "example.com[192.0.2.11]", "timeout",
         detail="timeout after END-OF-MESSAGE from example.com[192.0.2.11]"),
    # --- noise kinds --------------------------------------------------------------------
    case("tls", f"{H} postfix/submission/smtpd[9708]: Anonymous TLS connection established "
         "from some.domain.name[192.0.2.4]: TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 "
         "(256/256 bits)", "established"),
    case("tls", f"{H} postfix/smtp[9708]: setting up TLS connection to "
         "mx.example.org[198.51.100.7]:25", "setting-up"),
    case("sasl", f"{H} postfix/smtpd[26897]: warning: unknown[192.168.1.1]: SASL LOGIN "
         "authentication failed: authentication failure", "login-failed"),
    case("postscreen", f"{H} postfix/postscreen[21057]: CONNECT from [192.0.2.2]:59415 to "
         "[198.51.100.1]:25", "connect"),
    case("postscreen", f"{H} postfix/postscreen[21057]: PREGREET 14 after 0.08 from "
         "[192.0.2.2]:59415: EHLO ylmf-pc\\r\\n", "pregreet"),
    case("dnsblog", f"{H} postfix/dnsblog[21133]: addr 192.0.2.2 listed by domain "
         "zen.spamhaus.org as 127.0.0.3", "listed"),
    case("anvil", f"{H} postfix/anvil[6337]: statistics: max connection rate 1/60s for "
         "(smtp:81.95.96.49) at Jun 10 06:22:30", "rate"),
    case("scache", f"{H} postfix/scache[6338]: statistics: domain lookup hits=0 miss=3 "
         "success=0%", "lookup"),
    case("daemon", f"{H} postfix/master[1021]: daemon started -- version 3.7.11, "
         "configuration /etc/postfix", "master-started"),
    case("daemon", f"{H} postfix/postfix-script[15017]: starting the Postfix mail system",
         "postfix-script"),
    case("postsuper", f"{H} postfix/postsuper[811]: Deleted: 3 messages", "deleted"),
    case("postsuper", f"{H} postfix/postsuper[811]: 4F1B61F4B8: placed on hold", "hold",
         queue_id="4F1B61F4B8"),
    case("debug", f"{H} postfix/qmgr[5898]: name_mask: all", "name-mask"),
    case("debug", f"{H} postfix/smtpd[5898]: match_string: mynetworks ~? debug_peer_list",
         "match-string"),
    case("warning", f"{H} postfix/smtpd[5530]: warning: hostname foo.example does not resolve "
         "to address 192.0.2.9: Name or service not known", "hostname",
         detail="warning: hostname foo.example does not resolve to address 192.0.2.9: Name or "
         "service not known"),
    case("warning", f"{H} postfix/master[1021]: warning: process /usr/lib/postfix/sbin/smtpd "
         "pid 4711 exit status 1", "master",
         detail="warning: process /usr/lib/postfix/sbin/smtpd pid 4711 exit status 1"),
    case("fatal", f"{H} postfix/smtp[2156]: fatal: unknown service: private/dovecot-lmtp/tcp",
         "fatal", detail="fatal: unknown service: private/dovecot-lmtp/tcp"),
    case("fatal", f"{H} postfix/trivial-rewrite[2156]: error: open database "
         "/etc/postfix/transport.db: No such file or directory", "error",
         detail="error: open database /etc/postfix/transport.db: No such file or directory"),
    # --- other programs and junk --------------------------------------------------------
    case("foreign", f"{H} dovecot: imap-login: Login: user=<bob@example.com>, method=PLAIN, "
         "rip=192.0.2.5", "dovecot-no-pid"),
    case("foreign", f"{H} amavis[1259]: (01259-05) Passed CLEAN {{RelayedInbound}}, "
         "[192.0.2.10]:40012 <alice@example.com> -> <bob@example.org>, Queue-ID: 4F1B61F4B8",
         "amavis"),
    case("foreign", f"{H} opendkim[235]: 4AA091855DA0: DKIM-Signature field added "
         "(s=mail, d=mail.sender.com)", "opendkim-names-postfix-qid",
         queue_id="4AA091855DA0"),
    case("unparsed", "fatal: root(0): Message file too big", "no-header"),
    case("unparsed", "postfix/postfix-script: fatal: the Postfix mail system is not running",
         "partial-no-timestamp"),
    case("unparsed", f"{H} postfix/smtpd[5530]: Something nobody has seen before happened",
         "unknown-postfix-shape"),
]


@pytest.mark.parametrize(("line", "kind", "fields"), CASES)
def test_line_kind_and_fields(line: str, kind: str, fields: dict[str, object]) -> None:
    row = parse_postfix([line]).row(0, named=True)
    assert row["kind"] == kind
    if kind == "delivery":  # addressed directly unless the line names a list
        fields = {"orig_to": fields.get("recipient"), **fields}
    if kind == "delivery" and fields.get("status") == "sent":  # its reply is not kept
        fields = {**fields, "detail": None}
    for name in FIELDS:
        assert row[name] == fields.get(name), name
    # raw is kept for the lines nothing else describes, and only for them
    assert row["raw"] == (line if kind in ("foreign", "unparsed") else None)
    assert row["line_no"] == 1
    assert row["source_file"] == "test.log"


def test_every_kind_has_a_case() -> None:
    covered = {p.values[1] for p in CASES}
    assert covered == set(postfix.KINDS)


def test_all_cases_in_one_batch_match_one_by_one() -> None:
    """Per-kind extraction must not leak between kinds when they share a batch."""
    lines = [p.values[0] for p in CASES]
    together = parse_postfix(lines)
    alone = pl.concat([parse_postfix([line]) for line in lines]).with_columns(
        line_no=pl.int_range(1, len(lines) + 1, dtype=pl.Int64))
    assert_frame_equal(together, alone)


# --- the syslog envelope --------------------------------------------------------------------

CONNECT = "postfix/smtpd[60203]: connect from a.example[192.0.2.1]"


@pytest.mark.parametrize(("line", "ts", "host"), [
    (f"Jun  3 10:40:57 mail {CONNECT}", datetime(2024, 6, 3, 10, 40, 57, tzinfo=UTC), "mail"),
    (f"Mar 7 02:09:33 server {CONNECT}", datetime(2024, 3, 7, 2, 9, 33, tzinfo=UTC), "server"),
    (f"Nov 14 10:02:11.250 mx {CONNECT}",
     datetime(2024, 11, 14, 10, 2, 11, 250000, tzinfo=UTC), "mx"),
    # a year in front wins over the year state
    (f"2013 Jun 10 06:27:30.123 gds39d {CONNECT}",
     datetime(2013, 6, 10, 6, 27, 30, 123000, tzinfo=UTC), "gds39d"),
    (f"2024-08-26T01:33:38.572449+00:00 machine {CONNECT}",
     datetime(2024, 8, 26, 1, 33, 38, 572449, tzinfo=UTC), "machine"),
    (f"2024-08-26T03:33:38+02:00 machine {CONNECT}",
     datetime(2024, 8, 26, 1, 33, 38, tzinfo=UTC), "machine"),
    (f"2024-05-10T14:21:02+0300 machine {CONNECT}",  # journald short-iso
     datetime(2024, 5, 10, 11, 21, 2, tzinfo=UTC), "machine"),
    (f"2024-05-10T14:21:02-0430 machine {CONNECT}",
     datetime(2024, 5, 10, 18, 51, 2, tzinfo=UTC), "machine"),
    (f"2024-05-10T14:21:02Z machine {CONNECT}",
     datetime(2024, 5, 10, 14, 21, 2, tzinfo=UTC), "machine"),
    (f"Feb 30 10:00:00 mx {CONNECT}", None, "mx"),  # impossible date: null, not a crash
])
def test_header_timestamp_and_host(line: str, ts: datetime | None, host: str) -> None:
    row = parse_postfix([line], year=2024).row(0, named=True)
    assert row["ts"] == ts
    assert row["host"] == host
    assert row["program"] == "postfix/smtpd"
    assert row["kind"] == "smtpd_connect"
    assert row["client"] == "a.example[192.0.2.1]"


def test_zone_less_lines_are_local_time_offsets_are_not() -> None:
    out = parse_postfix([
        f"Jul 15 12:00:00 mx {CONNECT}",
        f"2024-07-15T12:00:00 mx {CONNECT}",
        f"2024-07-15T12:00:00+00:00 mx {CONNECT}",
        f"2024-01-15T12:00:00 mx {CONNECT}",
    ], year=2024, tz="Europe/London")
    assert out["ts"].to_list() == [
        datetime(2024, 7, 15, 11, tzinfo=UTC),  # BST = UTC+1
        datetime(2024, 7, 15, 11, tzinfo=UTC),
        datetime(2024, 7, 15, 12, tzinfo=UTC),  # explicit offset wins over --tz
        datetime(2024, 1, 15, 12, tzinfo=UTC),  # GMT
    ]


@pytest.mark.parametrize("program", [
    "postfix-1.2.3.4/smtp", "postfix/submission/smtpd", "postfix-smo/submission/smtpd",
    "postfix/smtps/smtpd", "postfix-incoming/smtpd",
])
def test_multi_instance_and_service_names_are_postfix(program: str) -> None:
    out = parse_postfix([f"{H} {program}[77]: connect from a.example[192.0.2.1]"])
    assert out["program"].item() == program
    assert out["kind"].item() == "smtpd_connect"
    assert out["client"].item() == "a.example[192.0.2.1]"
    assert out["raw"].item() is None


def test_sniff_accepts_postfix_and_refuses_others() -> None:
    assert postfix.sniff([f"{H} dovecot: x", f"{H} postfix-1.2.3.4/smtp[12]: x"])
    assert postfix.sniff([f"{H} postfix/submission/smtpd[9708]: connect from a[1.2.3.4]"])
    assert not postfix.sniff([f"{H} dovecot: imap-login: x", "hello world"])
    assert not postfix.sniff(["1999-03-02 09:44:33 10HmaX-000000005vi-0000 <= a@b S=1"])
    assert sniff_format([f"{H} postfix/qmgr[6273]: 4F1B61F4B8: removed"]) == "postfix"
    assert sniff_format(["hello world"]) is None


# --- bytes from disk: NUL, CRLF, invalid UTF-8 ----------------------------------------------

DELIVERY = (f"{H} postfix/smtp[31099]: 7D830C2C10F: to=<h4@fa.eo>, relay=x.example[192.0.2.5]:25,"
            " delay=0.17, delays=0.03/0/0.07/0.08, dsn=2.0.0, status=sent (250 2.0.0 Ok: "
            "queued as 99D0EBC23)")


def parse_bytes(tmp_path: Path, data: bytes) -> pl.DataFrame:
    path = tmp_path / "mail.log"
    path.write_bytes(data)
    ctx = ParseContext(str(path), years=YearState(2024))
    frames = [postfix.parse(batch, ctx) for batch, _ in iter_batches(str(path))]
    return pl.concat(frames).sort("line_no")


def test_crlf_endings_do_not_leak_into_fields(tmp_path: Path) -> None:
    out = parse_bytes(tmp_path, (DELIVERY + "\r\n" + f"{H} {CONNECT}\r\n").encode())
    assert out["kind"].to_list() == ["delivery", "smtpd_connect"]
    first = out.row(0, named=True)
    assert first["next_queue_id"] == "99D0EBC23"  # the line's last field, read from its reply
    assert out["client"][1] == "a.example[192.0.2.1]"


def test_nul_bytes_are_dropped_and_do_not_shift_lines(tmp_path: Path) -> None:
    data = (b"\x00" * 300 + f"{H} {CONNECT}\n".encode()  # NUL-filled block after a crash
            + b"\x00\x00\x00\n"  # a line of NULs only
            + DELIVERY.encode() + b"\n")
    out = parse_bytes(tmp_path, data)
    assert out["line_no"].to_list() == [1, 2, 3]
    assert out["kind"].to_list() == ["smtpd_connect", "unparsed", "delivery"]
    assert out["client"][0] == "a.example[192.0.2.1]"
    assert out["recipient"][2] == "h4@fa.eo"


def test_nul_inside_a_parsed_string_does_not_crash() -> None:
    out = parse_postfix([f"{H} postfix/smtpd[1]: connect from a\x00b[192.0.2.1]", DELIVERY])
    assert out["kind"].to_list() == ["smtpd_connect", "delivery"]


def test_invalid_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    line = (f"{H} postfix/cleanup[4468]: 4F1B61F4B8: info: header Subject: Caf".encode()
            + b"\xe9 \xff\xfe " + TRAILER.encode() + b"\n")
    out = parse_bytes(tmp_path, line + f"{H} {CONNECT}\n".encode())
    row = out.row(0, named=True)
    assert row["kind"] == "header_subject"
    assert row["subject"] == "Caf\ufffd \ufffd\ufffd"
    assert row["sender"] == "alice@example.com"
    assert out["kind"][1] == "smtpd_connect"


def test_corrupt_numbers_become_null_instead_of_failing_the_batch() -> None:
    out = parse_postfix([
        DELIVERY.replace("delay=0.17", "delay=0.1.7"),
        f"{H} postfix/qmgr[6273]: 4F1B61F4B8: from=<a@example.com>, "
        "size=99999999999999999999999, nrcpt=2 (queue active)",
        f"{H} {CONNECT}",
    ])
    assert out["kind"].to_list() == ["delivery", "qmgr_from", "smtpd_connect"]
    assert out["delay"][0] is None
    assert out["status"][0] == "sent"
    assert out["size"][1] is None
    assert out["nrcpt"][1] == 2


# --- schema ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lines", [
    pytest.param([p.values[0] for p in CASES], id="all-kinds"),
    pytest.param([], id="empty"),
    pytest.param(["hello", None], id="only-unparsed"),
    pytest.param([f"{H} dovecot: imap-login: x"], id="only-foreign"),
    pytest.param([f"{H} postfix/qmgr[1]: 953B93FC06E: from=<a@b>, status=expired, returned "
                  "to sender"], id="only-expired"),
])
def test_parse_returns_exactly_the_events_schema(lines: list[str | None]) -> None:
    out = parse_postfix(lines)
    assert out.schema.names() == EVENTS_SCHEMA.names()
    assert out.schema == EVENTS_SCHEMA
    assert out.height == len(lines)


# --- properties -----------------------------------------------------------------------------

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
# "<program>[pid]: message" of every case that has an RFC 3164 header
MESSAGES = sorted({p.values[0].split(" ", 4)[4] for p in CASES if p.values[0].startswith(H)})

rfc3164_line = st.builds(
    lambda mon, day, hh, msg: f"{mon} {day:>2} {hh:02d}:00:00 mx1 {msg}",
    st.sampled_from(MONTHS), st.integers(1, 31), st.integers(0, 23), st.sampled_from(MESSAGES),
)
realistic_line = st.one_of(
    rfc3164_line, rfc3164_line,  # weighted: these drive the year state
    st.sampled_from([p.values[0] for p in CASES]),
    st.none(),  # an empty line
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(realistic_line, min_size=1, max_size=30), data=st.data())
def test_parsing_is_independent_of_batching(lines: list[str | None], data: st.DataObject
                                            ) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(lines) - 1)), max_size=5)))
    whole_ctx = ParseContext("f.log", tz="Europe/Berlin", years=YearState(2019))
    whole = postfix.parse(lines_frame(lines), whole_ctx).sort("line_no")

    ctx = ParseContext("f.log", tz="Europe/Berlin", years=YearState(2019))
    bounds = [0, *(c for c in cuts if c < len(lines)), len(lines)]
    parts = [
        postfix.parse(lines_frame(lines[a:b], first_line_no=a + 1), ctx)
        for a, b in zip(bounds, bounds[1:], strict=False) if b > a
    ]
    split = pl.concat(parts).sort("line_no")
    assert_frame_equal(whole, split)
    assert ctx.years == whole_ctx.years  # the state handed to the next file agrees too


def _mutate(line: str, cut: int, junk: str) -> str:
    """A damaged real line: cut short, or with junk spliced in."""
    pos = min(cut, len(line))
    return line[:pos] + junk + line[pos:]


damaged_line = st.builds(
    _mutate, st.sampled_from([p.values[0] for p in CASES]), st.integers(0, 400),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\n"), max_size=12),
)
any_line = st.one_of(
    realistic_line, damaged_line,
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\n"), max_size=80),
)


@settings(max_examples=80, deadline=None)
@given(lines=st.lists(any_line, max_size=25))
def test_every_line_gets_exactly_one_kind(lines: list[str | None]) -> None:
    out = parse_postfix(lines)
    assert out["line_no"].to_list() == list(range(1, len(lines) + 1))
    assert out["kind"].null_count() == 0
    assert set(out["kind"]) <= set(postfix.KINDS)
    # the text is kept of lines not read, and of lines that got no time (Feb 29 in a year
    # that has none): nothing else
    keeps_raw = out["kind"].is_in(["foreign", "unparsed"]) | out["ts"].is_null()
    assert out.filter(~keeps_raw)["raw"].null_count() == out.filter(~keeps_raw).height


# --- the real corpus ------------------------------------------------------------------------


def _line_count(data: bytes) -> int:
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


@pytest.fixture(scope="module")
def parsed_corpus(corpus_dir: Path) -> dict[str, tuple[pl.DataFrame, int]]:
    """file name -> (events of the whole file, its line count); each file parsed once."""
    out = {}
    for path in sorted((corpus_dir / "postfix").glob("*.log")):
        ctx = ParseContext(str(path), years=YearState(2013))
        frames = [postfix.parse(batch, ctx) for batch, _ in iter_batches(str(path))]
        out[path.name] = (pl.concat(frames).sort("line_no"), _line_count(path.read_bytes()))
    return out


def test_corpus_every_line_gets_a_kind(parsed_corpus: dict) -> None:
    assert len(parsed_corpus) >= 15
    for name, (events, lines) in parsed_corpus.items():
        assert events.height == lines, name
        assert events["line_no"].to_list() == list(range(1, lines + 1)), name
        assert events["kind"].null_count() == 0, name
        assert set(events["kind"]) <= set(postfix.KINDS), name
        assert events.schema == EVENTS_SCHEMA, name


def test_corpus_full_logs_have_under_one_percent_unparsed(parsed_corpus: dict) -> None:
    full = {n: v for n, v in parsed_corpus.items()
            if not n.endswith((".msgonly.log", ".partial.log"))}
    assert len(full) >= 10 and "fgforrest-pda.log" in full
    for name, (events, lines) in full.items():
        unparsed = events.filter(pl.col("kind") == "unparsed").height
        assert unparsed / lines < 0.01, f"{name}: {unparsed}/{lines} unparsed"


def test_corpus_message_only_files_are_unparsed_with_raw_kept(parsed_corpus: dict,
                                                              corpus_dir: Path) -> None:
    """No syslog header, no kind guessed; the text survives for later inspection."""
    for name in ("logreporter.msgonly.log", "postfix-parser.msgonly.log"):
        events, _ = parsed_corpus[name]
        assert set(events["kind"]) == {"unparsed"}
        text = (corpus_dir / "postfix" / name).read_text(encoding="utf-8", errors="replace")
        assert events["raw"].to_list() == [line or None for line in text.splitlines()]


def test_corpus_fgforrest_message_flow(parsed_corpus: dict) -> None:
    events, _ = parsed_corpus["fgforrest-pda.log"]
    kinds = events["kind"].value_counts().to_dict(as_series=False)
    counts = dict(zip(kinds["kind"], kinds["count"], strict=True))
    assert counts["bounce_notification"] > 1000
    assert counts["delivery"] > 8000
    # the masked "notificationXXXX: ID" lines still name the bounce's new queue id
    bounces = events.filter(pl.col("kind") == "bounce_notification")
    assert bounces["next_queue_id"].null_count() == 0
    assert bounces["queue_id"].null_count() == 0
    # every line of the main message-flow kinds has its fields
    required = {
        "delivery": ["queue_id", "recipient", "relay", "delay", "dsn", "status"],
        "qmgr_from": ["queue_id", "sender", "size", "nrcpt"],
        "qmgr_expired": ["queue_id", "sender", "status"],
        "cleanup_message_id": ["queue_id", "message_id"],
        "smtpd_client": ["queue_id", "client"],
        "smtpd_connect": ["client"],
        "queue_removed": ["queue_id"],
    }
    for kind, cols in required.items():
        rows = events.filter(pl.col("kind") == kind)
        assert rows.height > 0, kind
        for col in cols:
            assert rows[col].null_count() == 0, f"{kind}.{col}"
    # all timestamps come from the "2013 Jun 10" year-prefixed header
    assert events["ts"].null_count() == 0
    assert events["ts"].dt.year().unique().to_list() == [2013]
    assert events["raw"].null_count() == events.height  # nothing foreign or unparsed


# delivery lines with every combination of the optional pairs, in Postfix's order or not:
# the positional fast path and the by-key lookup must give the values written
address = st.from_regex(r"[a-z0-9.+é-]{1,12}@[a-z]{1,8}\.example", fullmatch=True)
reply = st.from_regex(r"[ -~é]{0,40}", fullmatch=True).map(lambda s: s.replace("\n", ""))


@st.composite
def delivery_line(draw: st.DrawFn) -> tuple[str, dict]:
    want = {"recipient": draw(address), "orig_to": draw(st.none() | address),
            "relay": draw(st.sampled_from(["local", "none", "mx.b.example[192.0.2.1]:25"])),
            "delay": draw(st.sampled_from(["0.1", "12", "0.1.7"])),
            "dsn": draw(st.sampled_from(["2.0.0", "5.1.1", "4.4.1"])),
            "status": draw(st.sampled_from(["sent", "bounced", "deferred"])),
            "detail": draw(reply)}
    pairs = [f"to=<{want['recipient']}>"]
    if want["orig_to"] is not None:
        pairs.append(f"orig_to=<{want['orig_to']}>")
    pairs.append(f"relay={want['relay']}")
    if draw(st.booleans()):
        pairs.append("conn_use=2")
    pairs += [f"delay={want['delay']}", "delays=0.1/0/0/0", f"dsn={want['dsn']}"]
    if draw(st.booleans()):  # not Postfix's order: found by key
        pairs = [pairs[0], *draw(st.permutations(pairs[1:]))]
    text = ", ".join(pairs) + f", status={want['status']} ({want['detail']})"
    return f"{H} postfix/smtp[7]: 4BC1D2E3F4: {text}", want


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases=st.lists(delivery_line(), min_size=1, max_size=20))
def test_delivery_fields_are_read_in_any_order(cases: list[tuple[str, dict]]) -> None:
    out = parse_postfix([line for line, _ in cases])
    for row, (line, want) in zip(out.iter_rows(named=True), cases, strict=True):
        assert row["kind"] == "delivery", line
        got = {k: row[k] for k in want}
        expected = {**want, "orig_to": want["orig_to"] or want["recipient"],
                    "delay": None if want["delay"] == "0.1.7" else float(want["delay"]),
                    # a successful delivery's reply is not kept (schema.SENT)
                    "detail": None if want["status"] == "sent" else want["detail"]}
        assert got == expected, line


# --- the fast path against the kind table ---------------------------------------------------


def _fast_and_table_kinds(lines: list[str]) -> pl.DataFrame:
    """Each line's kind by the fast path (null: left to the table) and by the table alone."""
    ctx = ParseContext(source_file="test.log", tz="UTC", years=YearState(2024))
    frame = parse_header(lines_frame(lines), ctx.tz, ctx.years).with_columns(
        pl.col("msg").str.splitn(": ", 2).struct.rename_fields(["_id", "_after"]).alias("_q")
    ).unnest("_q").with_columns(_has=pl.col("_id").str.contains(postfix._QID))
    frame = frame.with_columns(
        queue_id=pl.when("_has").then("_id"),
        rest=pl.when("_has").then("_after").otherwise("msg"),
        daemon=pl.col("prog").str.extract(r"([^/]+)$"),
    ).with_columns(_token=pl.col("rest").str.extract(postfix._FAST, 1))
    return frame.select("raw", fast=postfix._fast_kind(), table=postfix._CLASSIFY)


def test_fast_tokens_give_the_tables_kind() -> None:
    """Every token of the fast path, on a line with and without a queue id, and NOQUEUE."""
    lines = []
    for token in [*postfix._FAST_QUEUED, *postfix._FAST_UNQUEUED]:
        text = token + ("" if token in postfix._FAST_WHOLE else "x, status=expired y")
        lines += [f"{H} postfix/smtpd[1]: {qid}{text}"
                  for qid in ("4F1B61F4B8: ", "NOQUEUE: ", "")]
    kinds = _fast_and_table_kinds(lines).filter(pl.col("fast").is_not_null())
    assert kinds.height >= len(postfix._FAST_QUEUED)
    assert kinds.filter(pl.col("fast") != pl.col("table")).height == 0


def test_fast_path_gives_the_tables_kind_on_the_corpus(corpus_dir: Path) -> None:
    """Where the fast path names a kind, the whole table names the same one."""
    lines = [s.line for k in postfix.TABLE for s in k.samples]
    for path in sorted((corpus_dir / "postfix").glob("*.log")):
        lines += path.read_text(encoding="utf-8", errors="replace").splitlines()
    kinds = _fast_and_table_kinds(lines).filter(pl.col("fast").is_not_null())
    assert kinds.height > len(lines) / 2  # the fast path does most of the work
    assert kinds.filter(pl.col("fast") != pl.col("table")).to_dicts() == []
