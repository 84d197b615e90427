"""Postfix (and its neighbours in the same syslog file) -> events, vectorized.

One pass splits the syslog header, one anchored pattern peels the queue id, the kind table
(TABLE: the first row whose test holds) gives every line a kind, and each kind's fields
are extracted only on the rows of that kind with one anchored pattern. Lines of other
programs (dovecot, amavis, opendkim...) are ``foreign``; Postfix lines matching no known
shape, and lines without a syslog header, are ``unparsed``. Both keep their raw text.
"""

from __future__ import annotations

import re

import polars as pl

from detector import fastpath
from detector.formats.context import ParseContext
from detector.formats.finish import finish
from detector.formats.kinds import (
    Cond,
    Kind,
    Sample,
    absent,
    classifier,
    contains,
    descriptions,
    equals,
    field_groups,
    matches,
    one_of,
    present,
    starts,
)
from detector.formats.syslog import parse_header

NAME = "postfix"

_PROGRAM = re.compile(r"(?:^|\s)postfix(?:-[^/\s]+)?/[\w/-]+\[\d+\]: ")
# the syslog program names of this format's lines (postfix/smtpd, postfix-out/smtp...)
SYSLOG_PROGRAM = r"postfix[^\s\[:]*"
_QID = r"^(?:[0-9A-F]{5,}X*|[0-9BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz]{10,}|NOQUEUE)$"
_REJECT = (
    r"^(?:NOQUEUE: )?(?P<status>[a-z_-]+): (?P<stage>[A-Z-]+) from (?P<client>[^ ]+?): "
    r"(?P<detail>.*?);(?: from=<(?P<sender>[^>]*)>,?)?(?: to=<(?P<recipient>[^>]*)>,?)?"
    r"(?: proto=|$)"  # the reply text may contain ';' (RBL rejects); postscreen adds commas
)
# "proxy-reject: END-OF-MESSAGE: 554 5.7.1 text; from=<a> to=<b> proto=ESMTP helo=<h>":
# a NOQUEUE reject's trailer without its " from client" (smtpd_proxy_filter's reply; may
# be empty, may contain ';')
_PROXY = (
    r"^proxy-(?P<status>accept|reject): (?P<stage>[A-Z-]+): (?P<detail>.*?);"
    r"(?: from=<(?P<sender>[^>]*)>,?)?(?: to=<(?P<recipient>[^>]*)>,?)?(?: proto=|$)"
)
_DSN = r"(?:^|: )[245]\d\d[ -]([245]\.\d{1,3}\.\d{1,3})\b"  # "554 5.7.1" opening a reply
# kind -> anchored pattern over the message text after the queue id ("rest");
# delivery lines, the bulk of a log, have their own splitter (_delivery_fields)
_FIELDS: dict[str, str] = {
    "qmgr_from": r"^from=<(?P<sender>[^>]*)>, size=(?P<size>\d+), nrcpt=(?P<nrcpt>\d+)",
    "qmgr_expired": r"^from=<(?P<sender>[^>]*)>, status=(?P<status>(?:force-)?expired)",
    "cleanup_message_id": r"^message-id=<?(?P<message_id>[^<>\s]*)>?",
    "cleanup_resent_message_id": r"^resent-message-id=<?(?P<message_id>[^<>\s]*)>?",
    "smtpd_client": r"^client=(?P<client>[^,\s]+)",
    "header": (
        r"^[a-z_]+: header (?P<hname>[A-Za-z-]+): ?(?P<hvalue>.*) from (?P<client>[^ ;]+);"
        r" from=<(?P<sender>[^>]*)> to=<(?P<recipient>[^>]*)>"
    ),
    "pickup": r"^uid=\d+ from=<(?P<sender>[^>]*)>",
    "bounce_notification": r"notification\w*: (?P<next_queue_id>[0-9A-Za-z]+)$",
    "reject": _REJECT,
    "proxy": _PROXY,
    "connect": r"^(?:dis)?connect from (?P<client>[^ ]+)",
    "detail": r"^(?P<detail>.*)$",
}
_NEXT_QUEUE_ID = r"(?:queued as|forwarded as) ([0-9A-Za-z]{5,})"
# starts of the lines Postfix writes with -v or debug_peer_list: internals, not mail flow
_DEBUG = "^(?:" + "|".join([
    r"[a-z][a-z0-9_]*: ", r"[a-z][a-z0-9_]* = ", "send attr ", "input attribute ",
    r"[\w/.-]+ socket: ", "request", r"(?:start|end|done) \w+ ", "private/", "public/",
    "[<>] ", ">>> ", r"(?:initial|extracted) envelope ", r"\w+ stream disconnect",
    "connection established", "connection closed", "idle timeout", "process generation",
    "cleanup flags", "wakeup ", "(?:before|after) input_transp", "host name lookup",
    r"(?:begin|end) \S+ address list", "connecting to ", "Compiled against",
    "Run-time linked", r"pref +\d", "master disconnect", r"lookup \S+ type ",
    r"open (?:incoming|active|deferred|maildrop|hold)/",
]) + ")"


# the working columns: prog (syslog program), daemon (its last part), queue_id, rest (the
# message after the queue id)
_QUEUED = (present("queue_id"), ~equals("NOQUEUE", "queue_id"))  # a real queue id
_HEADER_ACTION = matches(r"^[a-z_]+: (?:header|body) ")
_DAEMON_PROGRAMS = ("master", "postfix-script", "postfix", "postlog", "postmulti")
_H = "Jun 10 06:50:26 mx1"  # the syslog header added to a corpus line's message part


def _queued(*conds: Cond) -> tuple[Cond, ...]:
    return (*_QUEUED, *conds)


def _corpus(ref: str) -> str:
    return f"corpus postfix/{ref}"


def _msgonly(ref: str) -> str:  # a message-only corpus line under an added syslog header
    return f"corpus postfix/{ref} (message part; syslog header added)"


_CLEANUP_LOG = ("postfix.org header_checks(5) INFO action; src/cleanup/cleanup_message.c "
                "cleanup_act_log()")

TABLE: tuple[Kind, ...] = (
    Kind("unparsed", "no syslog header, or a Postfix message of unknown shape",
         (absent("prog"),), samples=(
             Sample("ir/)", _corpus("lightmeter-cases.log:1038")),
             Sample("postfix/postfix-script: fatal: the Postfix mail system is not running",
                    _corpus("ossec-hids.partial.log:1")))),
    Kind("foreign", "a line of another program in the same log (dovecot, amavis...)",
         (~starts("postfix", "prog"),), samples=(Sample(
             "Jun  3 10:40:57 mail opendkim[235]: 4AA091855DA0: DKIM-Signature field added "
             "(s=mail, d=mail.sender.com)", _corpus("lightmeter-cases.log:6")),)),
    # also after NOQUEUE: the after-filter Postfix queued it, this smtpd has no queue id
    Kind("proxy_reject",
         "smtpd: before-queue content filter (smtpd_proxy_filter) rejected a message",
         (starts("proxy-reject: "),), "proxy", samples=(Sample(
             f"{_H} postfix/smtpd[5530]: NOQUEUE: proxy-reject: END-OF-MESSAGE: ; "
             "from=<user1@test.example.com> to=<user2@example2.com> proto=ESMTP "
             "helo=<[192.168.0.16]>",
             _msgonly("postfix-grok-patterns.msgonly.log:152") + ", NOQUEUE as smtpd.c "
             "log_whatsup() writes it"),)),
    Kind("proxy_accept",
         "smtpd: before-queue content filter accepted a message (queued as: next id)",
         (starts("proxy-accept: "),), "proxy", samples=(Sample(
             f"{_H} postfix/smtpd[5530]: NOQUEUE: proxy-accept: END-OF-MESSAGE: 250 2.0.0 Ok: "
             "queued as 7949396087; from=<jdoe@example.org> to=<jane.doe@example.org> "
             "proto=ESMTP helo=<mx.example.org>",
             _msgonly("sekoia-intake-formats.msgonly.log:35") + ", NOQUEUE as smtpd.c "
             "log_whatsup() writes it"),)),
    Kind("noqueue", "smtpd: NOQUEUE reject/warn/filter before queueing",
         (equals("NOQUEUE", "queue_id"),), "reject", samples=(Sample(
             "Sep 23 10:21:21 ebox011101 postfix/smtpd[14747]: NOQUEUE: reject: RCPT from "
             "unknown[192.168.9.1]: 554 5.7.1 <ckent@dplanet.com>: Relay access denied; "
             "from=<macaco@monos.org> to=<ckent@dplanet.com> proto=ESMTP "
             "helo=<localhost.localdomain>", _corpus("zentyal.log:104")),)),
    Kind("delivery", "smtp/lmtp/local/virtual/pipe/error: one recipient delivery attempt",
         _queued(starts("to=<")), "delivery", samples=(Sample(
             "Oct  1 11:47:53 u86 postfix/smtp[10248]: DBED828417: to=<jamor@dplanet.com>, "
             "relay=mail.dplanet.com[67.23.8.134]:25, delay=1.6, delays=0.17/0.04/0.88/0.48, "
             "dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as C1EBF731439)",
             _corpus("zentyal.log:8")),)),
    Kind("smtpd_client", "smtpd: message accepted into the queue (client=)",
         _queued(starts("client=")), "smtpd_client", samples=(
             Sample("Jun  3 10:40:57 mail postfix/submission/smtpd[9708]: 4AA091855DA0: "
                    "client=some.domain.name[1.2.3.4], sasl_method=PLAIN, "
                    "sasl_username=user@sender.com", _corpus("lightmeter-cases.log:3")),
             Sample("2013 Jun 10 06:50:26.123 gds39d postfix/smtpd[2953]: 7D830C2C10FXXXX: "
                    "client=gds39k.active24.cz[81.95.110.19]", _corpus("fgforrest-pda.log:220")),
         )),
    Kind("cleanup_message_id", "cleanup: the Message-ID of a queued message",
         _queued(starts("message-id=")), "cleanup_message_id", samples=(Sample(
             "Oct  1 11:47:51 u86 postfix/cleanup[10247]: DBED828417: "
             "message-id=<465387.531879486-sendEmail@huginn>", _corpus("zentyal.log:5")),)),
    Kind("cleanup_resent_message_id", "cleanup: Resent-Message-ID",
         _queued(starts("resent-message-id=")), "cleanup_resent_message_id", samples=(Sample(
             f"{_H} postfix/cleanup[4468]: 3mL1Hq0Tgvz7sWh: "
             "resent-message-id=<3mL1Hq0Tgvz7sWh@mx14.example.net>",
             _msgonly("postfix-parser.msgonly.log:22")),)),
    Kind("qmgr_expired", "qmgr: message expired, returned to sender",
         _queued(starts("from=<"), matches(", status=(?:force-)?expired")), "qmgr_expired",
         samples=(Sample(
             "Apr 10 14:50:16 mail postfix/qmgr[3663]: BACE842E72: from=<noreply@domain.com>, "
             "status=expired, returned to sender", _corpus("postfix_exporter.log:32")),)),
    Kind("qmgr_from", "qmgr: sender, size and recipient count (queue active)",
         _queued(starts("from=<")), "qmgr_from", samples=(Sample(
             "Oct  1 11:47:51 u86 postfix/qmgr[9572]: DBED828417: from=<macaco@monos.org>, "
             "size=890, nrcpt=2 (queue active)", _corpus("zentyal.log:6")),)),
    Kind("queue_removed", "qmgr/postsuper: message removed from the queue",
         _queued(equals("removed")), samples=(
             Sample("Oct  1 11:47:53 u86 postfix/qmgr[9572]: DBED828417: removed",
                    _corpus("zentyal.log:9")),
             Sample("Nov  6 01:01:03 mailq2 postfix/postsuper[1936]: 3nsRhm5bH5z306M: removed",
                    _corpus("postfix-parser.log:7")))),
    Kind("pickup", "pickup: locally submitted message (uid= from=)",
         _queued(starts("uid=")), "pickup", samples=(Sample(
             "Feb  1 13:17:02 mail postfix/pickup[28541]: 08ACF1541B01: uid=0 from=<root>",
             _corpus("lightmeter-cases.log:328")),)),
    # header_checks INFO, the usual way of logging a header: the fast path's rows, then
    # any action (WARN, HOLD...) logging one
    Kind("header_subject", "header_checks INFO/WARN line logging Subject",
         _queued(starts("info: header Subject:")), "header", samples=(Sample(
             f"{_H} postfix/cleanup[4468]: D95341E50350: info: header Subject: "
             "=?utf-8?Q?Gr=C3=BC=C3=9Fe?= =?utf-8?Q?_=E2=80=92?= test from local; "
             "from=<from@example.com> to=<to@example.com>",
             _msgonly("postfix-grok-patterns.msgonly.log:20")),)),
    Kind("header_in_reply_to", "header_checks line logging In-Reply-To",
         _queued(starts("info: header In-Reply-To:")), "header", samples=(Sample(
             f"{_H} postfix/cleanup[4468]: 4F1B61F4B8: info: header In-Reply-To: "
             "<5F3A2B1C.4010203@example.com> from mail.example.com[192.0.2.10]; "
             "from=<alice@example.com> to=<bob@example.org> proto=ESMTP "
             "helo=<mail.example.com>", _CLEANUP_LOG),)),
    Kind("header_references", "header_checks line logging References",
         _queued(starts("info: header References:")), "header", samples=(Sample(
             f"{_H} postfix/cleanup[4468]: 4F1B61F4B8: info: header References: "
             "<4E2A1B0C.3020100@example.com> <5F3A2B1C.4010203@example.com> from "
             "mail.example.com[192.0.2.10]; from=<alice@example.com> to=<bob@example.org> "
             "proto=ESMTP helo=<mail.example.com>", _CLEANUP_LOG),)),
    Kind("header_subject", "", _queued(_HEADER_ACTION, contains(": header Subject:")),
         "header", samples=(Sample(
             f"{_H} postfix/cleanup[4468]: 3D770111AF50: warning: header Subject: Manquants "
             "LASTNAME GB Nouvelle version from unknown[10.1.1.1]; from=<foo@corp.com> "
             "to=<first.last@corp.com> proto=ESMTP helo=<SUBDOMAIN.CORP.COM>",
             _msgonly("sekoia-intake-formats.msgonly.log:41")),)),
    Kind("header_in_reply_to", "", _queued(_HEADER_ACTION, contains(": header In-Reply-To:")),
         "header"),
    Kind("header_references", "", _queued(_HEADER_ACTION, contains(": header References:")),
         "header"),
    Kind("header_check", "other header/body_checks action", _queued(_HEADER_ACTION), samples=(
        Sample("2013 Jun 10 06:50:26.123 gds39d postfix/cleanup[4468]: 7D830C2C10FXXXX: info: "
               "header client-id: first-client-id from localhost[127.0.0.1]; "
               "from=<liska@fg.cz> to=<liska@fg.cz> proto=ESMTP helo=<jlinb>",
               _corpus("fgforrest-pda.log:222")),)),
    Kind("milter", "a milter action on a message (milter-reject...)",
         _queued(starts("milter-")), "reject", samples=(Sample(
             "Mar 7 02:09:33 server postfix/smtpd[27246]: 1D8CC1CA0A7F: milter-reject: DATA "
             "from 66-220-155-151.mail-mail.facebook.com[192.0.2.151]: 550 5.7.1 Command "
             "rejected; from=<security@mail.example.com> to=<hostmaster@example.com> "
             "proto=ESMTP helo=<192-0-2-151.mail-mail.example.com>",
             _corpus("fail2ban.log:17")),)),
    Kind("bounce_notification", "bounce: sender non-delivery/delay/success notification",
         _queued(matches(r"^(?:sender|postmaster) [\w-]+(?: [\w-]+)? notification")),
         "bounce_notification", samples=(Sample(
             "Oct  1 12:18:16 u86 postfix/bounce[12107]: 72FEB28781: sender non-delivery "
             "notification: B876628785", _corpus("zentyal.log:44")),)),
    Kind("smtpd_reject", "smtpd: reject/warn/hold/discard of a queued message",
         _queued(matches(r"^(?:reject|reject_warning|warn|hold|discard|filter|redirect|prepend"
                         r"|replace|bcc): ")), "reject", samples=(Sample(
             "Aug 13 15:45:46 server postfix/smtpd[13844]: 00ADB3C0899: reject: RCPT from "
             "example.com[192.0.2.1]: 550 5.1.1 <sales@server.com>: Recipient address "
             "rejected: User unknown in local recipient table; from=<xxxxxx@example.com> "
             "to=<sales@server.com> proto=ESMTP helo=<mail.example.com>",
             _corpus("fail2ban.log:8")),)),
    Kind("smtp_session", "smtp: remote host said / lost connection, about a message",
         _queued(matches(r"^(?:host |lost connection|conversation with |enabling PIX"
                         r"|Server certificate|Trusted|Untrusted|Verified|Anonymous TLS)")),
         "detail", samples=(Sample(
             "Dec 29 02:54:09 mail postfix/smtp[7648]: 732BB407C3: host mail.domain.com"
             "[1.1.1.1] said: 451 DT:SPM 163 mx13,P8CowECpNVM_oEVaenoEAQ--.23796S3 1514512449, "
             "please try again 15min later (in reply to end of DATA command)",
             _corpus("postfix_exporter.log:42")),)),
    Kind("postsuper", "postsuper: hold, release, requeue, delete",
         _queued(equals("postsuper", "daemon")), samples=(Sample(
             f"{_H} postfix/postsuper[1936]: D4F2023DB: requeued",
             _msgonly("postfix-grok-patterns.msgonly.log:84")),)),
    Kind("queue_note", "other queue-id prefixed notice", _QUEUED, "detail", samples=(Sample(
        "Feb 25 15:36:29 server1 postfix/qmgr[5898]: D4748404B37D: recipient limit 5000",
        _corpus("postfix-maillog-dump.log:442")),)),
    # lines without a queue id from here on
    Kind("smtpd_connect", "smtpd: connect from a client", (starts("connect from "),),
         "connect", samples=(Sample(
             "2013 Jun 10 06:27:30.123 gds39d postfix/smtpd[5530]: connect from "
             "nms.active24.cz[81.95.96.49]", _corpus("fgforrest-pda.log:1")),)),
    Kind("smtpd_disconnect", "smtpd: disconnect, with per-command counters",
         (starts("disconnect from "),), "connect", samples=(Sample(
             "Jun  3 10:40:57 mail postfix/submission/smtpd[9708]: disconnect from "
             "some.domain.name[1.2.3.4] ehlo=2 starttls=1 auth=1 mail=1 rcpt=1 data=1 quit=1 "
             "commands=8", _corpus("lightmeter-cases.log:8")),)),
    Kind("connect_failure", "smtp: connect to a remote host failed", (starts("connect to "),),
         "detail", samples=(Sample(
             "Oct 30 13:08:09 ebox011101 postfix/smtp[16770]: connect to 192.168.45.120"
             "[192.168.45.120]:25: Connection timed out", _corpus("zentyal.log:65")),)),
    Kind("session_error", "lost connection / timeout / too many errors after a command",
         (matches(r"^(?:lost connection|timeout|too many errors|improper command pipelining"
                  r"|SSL_accept error|reject: )"),), "detail", samples=(Sample(
             "Sep 23 10:21:21 ebox011101 postfix/smtpd[14747]: lost connection after RCPT "
             "from unknown[192.168.9.1]", _corpus("zentyal.log:105")),)),
    Kind("sasl", "SASL authentication notices and failures",
         (matches(r"(?i)sasl|authentication fail"),), samples=(Sample(
             "May 11 04:02:36 host1 postfix/smtpd[26897]: warning: unknown[192.168.1.1]: SASL "
             "LOGIN authentication failed: authentication failure",
             _corpus("crowdsec-hub.log:1")),)),
    Kind("tls", "TLS session set-up, certificates, SSL errors",
         (matches(r"TLS|SSL|certificate|tls_|[Cc]ipher"),), samples=(Sample(
             "Jun  3 10:40:57 mail postfix/submission/smtpd[9708]: Anonymous TLS connection "
             "established from some.domain.name[1.2.3.4]: TLSv1.2 with cipher "
             "ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits)", _corpus("lightmeter-cases.log:2")),)),
    Kind("postscreen", "postscreen: CONNECT, PASS, PREGREET, DNSBL, HANGUP...",
         (equals("postscreen", "daemon"),), samples=(Sample(
             "Jan 27 06:49:57 mail postfix/postscreen[25134]: CONNECT from [147.224.63.58]:56922 "
             "to [170.45.1.1]:25", _corpus("lightmeter.log:6")),)),
    Kind("tls", "", (equals("tlsproxy", "daemon"),), samples=(Sample(
        "Jan 27 16:42:19 mail postfix/tlsproxy[20644]: CONNECT from [180.43.30.135]:47992",
        _corpus("lightmeter.log:3081")),)),
    Kind("dnsblog", "dnsblog: address listed by a DNSBL", (equals("dnsblog", "daemon"),),
         samples=(Sample(
             "Jul  8 17:05:18 mail postfix/dnsblog[21133]: addr 1.2.3.4 listed by domain "
             "zen.spamhaus.org as 127.0.0.3", _corpus("lightmeter-cases.log:1118")),)),
    Kind("anvil", "anvil: connection/rate statistics", (equals("anvil", "daemon"),),
         samples=(Sample(
             "Jan 27 06:53:21 mail postfix/anvil[25162]: statistics: max connection rate 1/60s "
             "for (smtpd:147.224.63.58) at Jan 27 06:50:01", _corpus("lightmeter.log:11")),)),
    Kind("scache", "scache: connection cache statistics", (equals("scache", "daemon"),),
         samples=(Sample(
             "Jan 27 16:01:42 mail postfix/scache[9257]: statistics: start interval Jan 27 "
             "15:59:37", _corpus("lightmeter.log:2853")),)),
    Kind("postsuper", "", (equals("postsuper", "daemon"),), samples=(Sample(
        f"{_H} postfix/postsuper[1936]: Deleted: 115 messages",
        _msgonly("postfix-grok-patterns.msgonly.log:87")),)),
    Kind("fatal", "fatal, panic or error", (matches(r"^(?:fatal|panic|error): "),), "detail",
         samples=(Sample(
             "Aug 31 13:12:49 xxxxxxxx postfix/smtp[2156]: fatal: unknown service: "
             "private/dovecot-lmtp/tcp", _corpus("postfix-maillog-dump.log:7")),)),
    # before debug: "warning: " would match debug's "<word>: " start
    Kind("warning", "other warning", (starts("warning: "),), "detail", samples=(Sample(
        "Aug 14 10:00:01 mail postfix/smtpd[1234]: warning: hostname bad.example.com does not "
        "resolve to address 192.0.2.44: Name or service not known", _corpus("fail2ban.log:46")),
    )),
    Kind("debug", "verbose (-v / debug_peer_list) trace of Postfix internals",
         (matches(_DEBUG),), samples=(Sample(
             "Feb 25 14:09:43 server1 postfix/qmgr[5898]: name_mask: all",
             _corpus("postfix-maillog-dump.log:55")),)),
    Kind("daemon", "master/postfix-script: start, stop, reload, daemon notices",
         (one_of(_DAEMON_PROGRAMS, "daemon"),), samples=(Sample(
             "Mar 29 12:55:50 test1 postfix/postfix-script[15017]: starting the Postfix mail "
             "system", _corpus("lightmeter-cases.log:1045")),)),
    Kind("daemon", "", (matches(r"^(?:daemon started|terminating on signal|reload|starting the "
                                r"Postfix|stopping the Postfix|refreshing the Postfix"
                                r"|table \S+ has changed)"),), samples=(Sample(
        "Feb 14 19:05:25 123-mail postfix/smtpd[1517]: table hash:/etc/postfix/"
        "virtual_mailbox_maps(0,lock|fold_fix) has changed -- restarting",
        _corpus("postfix_exporter.log:61")),)),
)
KINDS = descriptions(TABLE)


def _fast_tokens(table: tuple[Kind, ...]) -> tuple[
        dict[str, str], dict[str, str], set[str], set[str], dict[str, tuple[Cond, ...]]]:
    """The fast path read off the table: its leading rows whose whole test is one literal
    start of ``rest`` (or all of it). Rows before the NOQUEUE row hold for any line (the
    proxy verdicts); then come rows of a real queue id, up to the first one with another
    test; after the catch-all of queued lines, rows for lines without one, likewise. A
    literal row with more conditions (qmgr_expired before qmgr_from) is narrower: the
    lines passing them are left to the table. Literal starts cannot pass each other (the
    pattern tries the tokens in table order), so the fast path gives the table's kind;
    tests/test_postfix_format.py checks it on the corpus.

    Returns: start -> kind after a queue id, start -> kind without one, the kinds of the
    rows before NOQUEUE, the tokens that are a whole message, and start -> the narrower
    rows' extra conditions."""
    queued: dict[str, str] = {}
    unqueued: dict[str, str] = {}
    whole: set[str] = set()
    anywhere: set[str] = set()
    narrower: dict[str, tuple[Cond, ...]] = {}
    stage, open_ = "any", True  # "any" -> "queued" (NOQUEUE row) -> "none" (catch-all)
    n = len(_QUEUED)
    for row in table:
        w = row.when
        if w == (equals("NOQUEUE", "queue_id"),):
            stage, open_ = "queued", True
            continue
        if w == _QUEUED:
            stage, open_ = "none", True
            continue
        if stage == "queued":
            if w is None or w[:n] != _QUEUED:
                open_ = False
                continue
            w = w[n:]
        if not open_ or not w:
            continue
        lead = w[0]
        if all(c.column == "prog" for c in w):
            continue  # unparsed, foreign: the fast path's own first tests
        if lead.column != "rest" or lead.op not in ("starts", "equals") or lead.negate:
            open_ = False
            continue
        token = str(lead.value)
        if len(w) > 1:
            narrower.setdefault(token, w[1:])
            continue
        if lead.op == "equals":
            whole.add(token)
        if stage == "any":
            anywhere.add(row.name)
        for kinds in ([queued] if stage == "queued" else [unqueued] if stage == "none"
                      else [queued, unqueued]):
            kinds.setdefault(token, row.name)
    return queued, unqueued, anywhere, whole, narrower


# The shapes that make most of a busy log, told apart by their first words in one anchored
# pass; every other line goes through the whole table.
_FAST_QUEUED, _FAST_UNQUEUED, _BEFORE_NOQUEUE, _FAST_WHOLE, _NARROWER = _fast_tokens(TABLE)
_FAST = "^(" + "|".join(re.escape(t) + ("$" if t in _FAST_WHOLE else "")
                        for t in dict.fromkeys([*_FAST_QUEUED, *_FAST_UNQUEUED])) + ")"
_FIELD_GROUP = field_groups(TABLE)
_CLASSIFY = classifier(TABLE)


def sniff(lines: list[str]) -> bool:
    """A syslog file with Postfix lines among its first lines."""
    return any(_PROGRAM.search(line) for line in lines)


def _delivery_fields(frame: pl.DataFrame) -> pl.DataFrame:
    """Fields of delivery lines, the bulk of a storm log, by literal splits.

    ``to=<a>, orig_to=<l>, relay=r, conn_use=2, delay=1, delays=.., dsn=2.0.0, status=sent
    (reply)``: everything before ", status=" is ", "-separated key=value pairs, the status
    word and the reply text follow. Postfix writes the pairs in one order with two optional
    ones (orig_to, conn_use), so each value is read at its position; a line whose pairs are
    not in that order has them looked up by key instead (_fields_by_key).
    """
    # literal splits, not find + slice: find counts bytes and slice characters, which
    # disagree on a non-ASCII address
    parts = pl.col("rest").str.splitn(", status=", 2).struct.rename_fields(["_kv", "_tail"])
    frame = frame.with_columns(parts.alias("_p")).unnest("_p")
    k = [pl.col(f"_k{i}") for i in range(8)]
    frame = frame.with_columns(
        pl.col("_kv").str.split_exact(", ", 7).struct.rename_fields(
            [f"_k{i}" for i in range(8)]).alias("_k"),
        pl.col("_tail").str.splitn(" (", 2).struct.rename_fields(["status", "detail"])
        .alias("_t"),
    ).unnest("_k", "_t")
    # the optional pairs shift the others: by one for orig_to=, one more for conn_use=
    orig = k[1].str.starts_with("orig_to=<")
    frame = frame.with_columns(_o=orig, _s=orig.cast(pl.Int8) + pl.when(orig).then(k[3])
                               .otherwise(k[2]).str.starts_with("conn_use=").cast(pl.Int8))
    shift = pl.col("_s")

    def at(i: int) -> pl.Expr:  # the pair at position i when neither optional one is there
        return pl.when(shift == 0).then(k[i]).when(shift == 1).then(k[i + 1]) \
            .otherwise(k[i + 2])

    frame = frame.with_columns(
        _relay=pl.when(pl.col("_o")).then(k[2]).otherwise(k[1]),
        _delay=at(2), _delays=at(3), _dsn=at(4), _end=at(5),
    )
    fits = (pl.col("_relay").str.starts_with("relay=")
            & pl.col("_delay").str.starts_with("delay=")
            & pl.col("_delays").str.starts_with("delays=")
            & pl.col("_dsn").str.starts_with("dsn=")
            & pl.col("_end").is_null()).fill_null(False)  # and no pair after dsn=
    frame = frame.with_columns(
        recipient=k[0].str.strip_prefix("to=<").str.strip_suffix(">"),
        orig_to=pl.when(pl.col("_o")).then(k[1].str.slice(9).str.strip_suffix(">")),
        relay=pl.col("_relay").str.slice(6),
        delay=pl.col("_delay").str.slice(6),
        dsn=pl.col("_dsn").str.slice(4),
        detail=pl.col("detail").str.strip_suffix(")"),
        _fits=fits,
    ).drop("_kv", "_tail", "_o", "_s", "_relay", "_delay", "_delays", "_dsn", "_end",
           *[f"_k{i}" for i in range(8)])
    if not frame["_fits"].all():  # pairs in another order: look each one up by key
        odd = frame["_fits"].not_()
        frame = pl.concat([frame.filter(~odd), _fields_by_key(frame.filter(odd))],
                          how="diagonal_relaxed")
    return frame.drop("_fits").with_columns(  # the reply names the next hop's queue id
        next_queue_id=pl.col("detail").str.extract(_NEXT_QUEUE_ID, 1))


def _fields_by_key(frame: pl.DataFrame) -> pl.DataFrame:
    """The pairs of delivery lines found by key, wherever they are (slower)."""
    kv = pl.col("rest").str.splitn(", status=", 2).struct.field("field_0").str.split(", ")

    def value(key: str) -> pl.Expr:
        return kv.list.eval(pl.element().filter(pl.element().str.starts_with(key))
                            .str.slice(len(key))).list.first()

    return frame.with_columns(
        recipient=value("to=<").str.strip_suffix(">"),
        orig_to=value("orig_to=<").str.strip_suffix(">"),
        relay=value("relay="),
        delay=value("delay="),
        dsn=value("dsn="),
    )


def _with_fields(frame: pl.DataFrame) -> pl.DataFrame:
    """Extract each kind's fields on the rows of that kind only, then stack them."""
    group = pl.col("kind").replace_strict(_FIELD_GROUP, default=None, return_dtype=pl.String)
    if not frame.height:
        return frame
    parts = []
    for (name,), sub in frame.with_columns(group.alias("_group")).partition_by(
            "_group", as_dict=True, maintain_order=False).items():
        if name == "delivery":
            sub = _delivery_fields(sub)
        elif name in _FIELDS:
            sub = sub.with_columns(
                pl.col("rest").str.extract_groups(_FIELDS[name]).alias("_f")).unnest("_f")
        if name == "header":
            value, kind = pl.col("hvalue"), pl.col("kind")
            bare = value.str.strip_chars().str.strip_prefix("<").str.strip_suffix(">")
            sub = sub.with_columns(
                subject=pl.when(kind == "header_subject").then(value),
                in_reply_to=pl.when(kind == "header_in_reply_to").then(bare),
                refs=pl.when(kind == "header_references").then(value),
            )
        if name == "proxy":  # the filter's reply, or the after-filter MTA's through it
            detail = pl.col("detail")
            sub = sub.with_columns(
                detail=pl.when(detail != "").then(detail),  # "END-OF-MESSAGE: ; from=..."
                dsn=detail.str.extract(_DSN, 1),
                next_queue_id=pl.when(pl.col("kind") == "proxy_accept")
                .then(detail.str.extract(_NEXT_QUEUE_ID, 1)),
            )
        parts.append(sub)
    return pl.concat(parts, how="diagonal_relaxed")


def _fast_kind() -> pl.Expr:
    qid, token = pl.col("queue_id"), pl.col("_token")
    queued = token.replace_strict(_FAST_QUEUED, default=None, return_dtype=pl.String)
    # lines a narrower row of the same start may take (from=<..., status=expired)
    narrower = pl.lit(False)
    for start, conds in _NARROWER.items():
        test = token.str.starts_with(start)
        for cond in conds:
            test = test & cond.expr()
        narrower = narrower | test
    fast = pl.when(qid.is_not_null()).then(queued).otherwise(
        token.replace_strict(_FAST_UNQUEUED, default=None, return_dtype=pl.String))
    return (
        pl.when(pl.col("prog").is_null()).then(pl.lit("unparsed"))
        .when(~pl.col("prog").str.starts_with("postfix")).then(pl.lit("foreign"))
        .when((qid == "NOQUEUE") & ~queued.is_in(sorted(_BEFORE_NOQUEUE))).then(pl.lit("noqueue"))
        .when(~narrower).then(fast)
    )


def _with_kinds(frame: pl.DataFrame) -> pl.DataFrame:
    """Kind of every line: the fast path first, the whole table for the rest."""
    # the first words, extracted once (an expression used twice would run twice)
    frame = frame.with_columns(pl.col("rest").str.extract(_FAST, 1).alias("_token"))
    frame = frame.with_columns(kind=_fast_kind()).drop("_token")
    todo = frame["kind"].is_null()
    if not todo.any():
        return frame
    # classify the rest on their own rows and put the kinds back in place (no frame copy)
    slow = frame.select("rest", "queue_id", "prog").filter(todo).with_columns(
        pl.col("prog").str.extract(r"([^/]+)$").alias("daemon")) \
        .select(kind=_CLASSIFY)["kind"]
    kinds = frame["kind"].scatter(todo.arg_true(), slow)
    return frame.with_columns(kinds)


def parse(lines: pl.DataFrame, ctx: ParseContext) -> pl.DataFrame:
    """Turn a batch of raw lines (columns raw, line_no) into the events frame.

    With the Rust fast path (detector.fastpath) and years assigned ahead (``_year``), the
    lines it vouches for are split there and only the others parsed here; the events are
    the same, in line order."""
    if "_year" in lines.columns and lines.height and fastpath.enabled():
        fast, rest = fastpath.split(lines, ctx)
        if not rest.height:
            return fast
        slow = parse_lines(rest, ctx).sort("line_no")
        if not fast.height:
            return slow
        if lines["line_no"].is_sorted():
            return fast.merge_sorted(slow, "line_no")
        return pl.concat([fast, slow]).sort("line_no", maintain_order=True)
    return parse_lines(lines, ctx)


def parse_lines(lines: pl.DataFrame, ctx: ParseContext) -> pl.DataFrame:
    """The Polars parser: every line, any shape."""
    frame = parse_header(lines, ctx.tz, ctx.years)
    # "QUEUEID: rest": one literal split, then the id checked on its own short column
    frame = frame.with_columns(
        pl.col("msg").str.splitn(": ", 2).struct.rename_fields(["_id", "_after"]).alias("_q")
    ).unnest("_q").with_columns(pl.col("_id").str.contains(_QID).alias("_has_id"))
    frame = frame.with_columns(
        queue_id=pl.when("_has_id").then("_id"),
        rest=pl.when("_has_id").then("_after").otherwise("msg"),
    ).drop("_id", "_after", "_has_id", "msg")
    frame = _with_kinds(frame)
    frame = _with_fields(frame).with_columns(
        program=pl.col("prog"),
        queue_id=pl.when(pl.col("queue_id") != "NOQUEUE").then("queue_id"),
    )
    # a delivery line that names no list says the recipient was addressed directly
    return finish(frame, ctx, direct_orig_to=True)
