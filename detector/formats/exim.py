"""Exim main log (``mainlog``, or the same lines written via syslog) -> events, vectorized.

A mainlog line is ``<stamp> [<pid>] [<message id>] <text>``: the stamp is local time
``2016-11-14 10:02:11`` with ``.123`` (``+millisec``) and `` +0100`` (``log_timezone``)
optional, ``[1234]`` is there with ``+pid``, and the message id is the old
``1cGABC-0005MB-00`` or the Exim 4.97+ ``1rVDhn-000000001bo-D342``. Lines written via
syslog carry ``host exim[pid]:`` in front, then the same text, with or without Exim's own
stamp (``syslog_timestamp``), and ``[n/m]`` markers where syslog split a long entry.

The two-character flag after the id says what happened (the Exim specification, chapter
"Log files"): ``<=`` arrival (``(=`` fakereject), ``=>`` delivery, ``->`` another address
of the same delivery, ``>>`` cutthrough, ``*>`` suppressed by -N, ``**`` failed (bounced),
``==`` deferred. A delivery shows the final address, the address it was expanded from in
parentheses (the last intermediate one) and the original, top-level address in angle
brackets: ``=> member@nhs.example <all.staff@nhs.example> R=router T=transport ...``.
Successful local deliveries show the local part only (``log_as_local``).

Exim logs no In-Reply-To or References; a site that wants reply threads beyond the subject
logs them from its DATA ACL, one header a line, and they are read as Postfix's header
kinds (same meaning, and the model reads them)::

    warn  condition = ${if def:h_In-Reply-To:}
          logwrite  = In-Reply-To: ${sg{$h_In-Reply-To:}{\\N\\s+\\N}{ }}
    warn  condition = ${if def:h_References:}
          logwrite  = References: ${sg{$h_References:}{\\N\\s+\\N}{ }}
"""

from __future__ import annotations

import re

import polars as pl

from detector.formats.context import ParseContext
from detector.formats.finish import KEEP_RAW, finish
from detector.formats.kinds import (
    Kind,
    Sample,
    classifier,
    descriptions,
    field_groups,
    matches,
    one_of,
    present,
    starts,
)
from detector.formats.syslog import (
    STAMP_PATTERN,
    YearState,
    add_timestamps,
    assign_years,
    months_of_raw,
    split_header,
)

NAME = "exim"

# "2016-11-14 10:02:11[.123][ +0100] " (the stamp of every native line, with its space)
_NATIVE = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,6})?(?: [+-]\d{4})? "
# "host exim[pid]: " in front of Exim's own stamp, without (or after) a syslog stamp
_HOST_TAG = r"^\S+ exim\d*(?:\[\d+\])?: "
# syslog_processname: exim by default, exim4 on some systems
SYSLOG_PROGRAM = r"exim\d*"
_EXIM_PROG = rf"^{SYSLOG_PROGRAM}$"
_SPLIT_MARK = r"^\[\d+[/\\]\d+\] "  # syslog split a long entry: [1/3] ... [3/3]
_PID = r"^\[\d+\] "
_QID = r"^([0-9A-Za-z]{6}-(?:[0-9A-Za-z]{11}-[0-9A-Za-z]{4}|[0-9A-Za-z]{6}-[0-9A-Za-z]{2})) "
_STATUS = {"=> ": "sent", "-> ": "sent", ">> ": "sent", "*> ": "sent", "** ": "bounced",
           "== ": "deferred"}

# a quoted value as Exim writes T= and C=: backslash before " and \, octal for non-printers
_QUOTED = r'(?:[^"\\]|\\.)*'
_RECEIVED = (
    rf'^(?P<sender>\S*)(?P<fields>.*?)(?: T="(?P<subject>{_QUOTED})")?'
    r"(?: from <(?P<from>[^>]*)>)?(?: for (?P<rcpts>.*))?$"
)
# the final address (a pipe command may contain spaces; :blackhole: ends in a colon), the
# intermediate parent(s) in parentheses, the top-level address in angle brackets, then the
# fields, an error after ": ", or "defer (errno)"
_DELIVERY = (
    r'^(?P<addr>:blackhole:|save \S+|\|.*?|"(?:[^"\\]|\\.)*"@\S*[^\s:]|\S*[^\s:])'
    r"(?: \((?P<parent>[^()]*)\))?(?: <(?P<top>[^<>]*)>)?"
    r"(?P<tail>(?: [A-Za-z][A-Za-z0-9]*=| (?:routing )?defer \(| ?: | mua_wrapper|$).*)$"
)
# H=name (helo) [ip]:port, every part but the address optional
_HOST = r"(?:^| )H=(?:(?P<hname>[^\s(\[]\S*) )?(?:\((?P<helo>[^)]*)\) )?\[(?P<ip>[^\]\s]+)\]" \
        r"(?::(?P<port>\d+))?"
# the client of a session line: "H=..." or "for/from [H=]name (helo) [ip]"
_CLIENT = _HOST.replace("(?:^| )H=", r"(?:^H=| H=| (?:from|for) (?:H=)?)")
_DSN = r"(?:^|: )[245]\d\d[ -]([245]\.\d{1,3}\.\d{1,3})\b"  # "550 5.1.1" opening a reply
_NEXT_ID = r"(?:queued as | id=|^id=)([0-9A-Za-z][0-9A-Za-z-]{4,})"
_QT = r"(?:^| )QT=((?:\d+w)?(?:\d+d)?(?:\d+h)?(?:\d+m)?(?:\d+(?:\.\d+)?s)?)"

# "H=name (helo) [ip]:port U=user F=<sender> " in front of the words of many lines
_PREAMBLE = r"^(?:H=(?:[^\s(\[]\S* )?(?:\([^)]*\) )?\[[^\]]*\]\S* |[UFIP]=\S+ )+"


# ---- kinds: one ordered table ---------------------------------------------------------

# The working columns the table tests: ``rest`` (the text after the message id), ``queue_id``
# (the message id, null without one), ``_flag`` (the first three characters of ``rest``)
# and ``_words`` (``rest`` without the "H=host [ip] U=user F=<a> " preamble many lines
# open with; made for the rows by text only, see _with_kinds).
_AT_ID = present("queue_id")
_EXIM_SPEC = "Exim specification, chapter \"Log files\""
_LOGWRITE = ("Exim specification, chapter \"Access control lists\", logwrite: the DATA ACL "
             "recipe in this module's docstring")

# decided by the envelope (``_kind0``) before any test: other programs, continuations
_BY_ENVELOPE: tuple[Kind, ...] = (
    Kind("foreign", "a line of another program in the same syslog file", None, None, (
        Sample("Jan 27 06:36:56 mail dovecot: imap-login: Login: "
               "user=<h-304@h-ffeb17e38996c.com>, method=LOGIN, rip=224.165.23.115, "
               "lip=170.45.1.1, mpid=21711, TLS, session=<UXdX/9u52oxbQgr8>",
               "corpus postfix/lightmeter.log:1"),
    )),
    Kind("exim_continuation", "continuation of a multi-line entry (indented, or syslog [n/m])",
         None, "continuation", (
        Sample("  <u213@shrike.depaul.edu>,",
               "corpus exim/exim-testsuite.log:693",
               before=("1999-03-02 09:44:33 10HmaX-000000005vi-0000 qualify/rewrite: malformed "
                       'address: ">,',)),
    )),
)

# the flag after the message id: the bulk of a log, tested on every line
_BY_FLAG: tuple[Kind, ...] = (
    Kind("exim_autoreply", "=> >address: a reply generated by a filter (not a delivery)",
         (_AT_ID, starts("=> >")), "detail", (
        Sample("1999-03-02 09:44:33 10HmaX-000000005vi-0000 => >CALLER@test.ex <userx@test.ex> "
               "R=forwardfile T=address_reply",
               "corpus exim/exim-testsuite.log:5543"),
    )),
    Kind("received", "<= message arrival (and (= fakereject): sender, size, Message-ID, "
         "subject", (_AT_ID, one_of(("<= ", "(= "), "_flag")), "received", (
        Sample("1999-03-02 09:44:33 10HmaX-000000005vi-0000 <= someone@some.domain U=CALLER "
               "P=local-smtp S=sss",
               "corpus exim/exim-testsuite.log:1"),
        Sample("2020-02-11 17:09:46 1j1Z2g-00Faoy-Uh <= example@strawberry.active-ns.com "
               'U=example P=local T="[Examples Galore] Please moderate: \\"Hello world!\\"" for '
               "admin@example.net",
               "corpus exim/logstash-patterns-core.log:3"),
        Sample("2010-09-13 05:00:13 [1487] 1Ov4tU-0000Nz-Rm <= mailling.list@domain.com "
               "H=mailhost.domain.com [208.42.54.2]:51792 I=[67.215.162.175]:25 P=esmtps "
               "X=TLSv1:AES256-SHA:256 CV=no S=21778 "
               'id=384a86a39e83be0d9b3a94d1feb3119f@domain.com T="Daily List: Chameleon" for '
               "user@example.com",
               "corpus exim/logstash-patterns-core.log:2"),
    )),
    Kind("delivery", "=> -> >> *> delivered, ** failed (bounced), == deferred, => :blackhole: "
         "or an ACL discard (discarded, not delivered): one recipient",
         (_AT_ID, one_of(tuple(_STATUS), "_flag")), "delivery", (
        Sample("1999-03-02 09:44:33 10HmaX-000000005vi-0000 => one@remote <list@test.ex> R=all "
               'T=smtp H=127.0.0.1 [127.0.0.1] C="250 OK"',
               "corpus exim/exim-testsuite.log:254"),
        Sample("1999-03-02 09:44:33 10HmaX-000000005vi-0000 -> two@remote <list@test.ex> R=all "
               'T=smtp H=127.0.0.1 [127.0.0.1] C="250 OK"',
               "corpus exim/exim-testsuite.log:255"),
        Sample("1999-03-02 09:44:33 10HmaX-000000005vi-0000 >> userx@domain.com "
               'P=<CALLER@myhost.test.ex> R=all T=smtp H=127.0.0.1 [127.0.0.1] C="250 OK"',
               "corpus exim/exim-testsuite.log:6872"),
        Sample("1999-03-02 09:44:33 10HmaY-000000005vi-0000 *> accept <accept@y> R=accept "
               "T=appendfile",
               "corpus exim/exim-testsuite.log:101"),
        Sample("1999-03-02 09:44:33 10HmaX-000000005vi-0000 ** userx@mxt1.test.ex R=others : "
               "lowest numbered MX record points to local host",
               "corpus exim/exim-testsuite.log:251"),
        Sample("1999-03-02 09:44:33 10HmaY-000000005vi-0000 == CALLER@two.test.ex defer (-23): "
               "domain is held",
               "corpus exim/exim-testsuite.log:248"),
        Sample("1999-03-02 09:44:33 10HmaX-000000005vi-0000 => :blackhole: "
               "<blackhole@the.local.host.name> R=system_aliases",
               "corpus exim/exim-testsuite.log:13"),
        Sample("2020-02-11 17:09:47 1j1Z2g-00Faoy-Uh ** admin@example.net R=virtual_aliases: No "
               "such person at this address.",
               "corpus exim/logstash-patterns-core.log:6"),
    )),
)

# by the words of the line, tested only on the lines the rows above left
_BY_TEXT: tuple[Kind, ...] = (
    Kind("exim_completed", "Completed: the message leaves the queue",
         (_AT_ID, starts("Completed")), "completed", (
        Sample("1999-03-02 09:44:33 10HmaX-000000005vi-0000 Completed",
               "corpus exim/exim-testsuite.log:3"),
    )),
    Kind("header_subject", "Subject header written to the log by an ACL logwrite",
         (_AT_ID, starts("Subject: ")), "header", (
        Sample("2016-11-14 10:02:11 1cGABC-0005MB-00 Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=",
               _LOGWRITE),
    )),
    Kind("header_in_reply_to", "In-Reply-To header written to the log by an ACL logwrite",
         (_AT_ID, starts("In-Reply-To: ")), "header", (
        Sample("2016-11-14 10:02:11 1cGABC-0005MB-00 In-Reply-To: <CAH+w=7bXk2@mail.example.com>",
               _LOGWRITE),
    )),
    Kind("header_references", "References header written to the log by an ACL logwrite",
         (_AT_ID, starts("References: ")), "header", (
        Sample("2016-11-14 10:02:11 1cGABC-0005MB-00 References: <a1@x.example> <b2@y.example>",
               _LOGWRITE),
    )),
    # log_selector +arguments: "cwd=/var/spool/exim4 3 args: /usr/sbin/exim4 -Mc <id>"
    Kind("exim_arguments", "+arguments: the working directory and command line of an exim "
         "process", (matches(r"^cwd=\S* \d+ args:(?: |$)", "_words"),), "detail", (
        Sample("2016-11-14 10:02:11 cwd=/var/spool/exim4 3 args: /usr/sbin/exim4 -Mc "
               "1cGABC-0005MB-00",
               _EXIM_SPEC + ", log_selector +arguments"),
    )),
    Kind("exim_queue_run", "start or end of a queue run",
         (matches(r"^(?:Start|End) (?:ODMR )?(?:'[^']*' )?queue run", "_words"),), "detail", (
        Sample("1999-03-02 09:44:33 Start queue run: pid=p1234",
               "corpus exim/exim-testsuite.log:8"),
        Sample("1999-03-02 09:44:33 End queue run: pid=p1234",
               "corpus exim/exim-testsuite.log:11"),
    )),
    Kind("exim_daemon", "daemon start, restart (SIGHUP) and configuration notices",
         (matches(r"^(?:exim \S+ daemon|daemon started|pid \S+: SIGHUP|SIGHUP received|"
                  r"exim \S+ (?:started|stopped)|Exim configuration|[Ff]ailed to expand|"
                  r"Expansion of |spool directory space check|bind of |listen backlog)",
                  "_words"),), "detail", (
        Sample("1999-03-02 09:44:33 exim x.yz daemon started: pid=p1234, no queue runs, "
               "listening for SMTP on port PORT_D",
               "corpus exim/exim-testsuite.log:107"),
        Sample("2017-07-30 18:51:05.712 pid p1234: SIGHUP received: re-exec daemon",
               "corpus exim/exim-testsuite.log:3966"),
    )),
    Kind("exim_frozen", "message frozen or unfrozen",
         (matches(r"^(?:[Ff]rozen|Unfrozen|[Mm]essage is frozen)", "_words"),), "detail", (
        Sample("1999-03-02 09:44:33 10HmaY-000000005vi-0000 Frozen (delivery error message)",
               "corpus exim/exim-testsuite.log:675"),
        Sample("1999-03-02 09:44:33 10HmaX-000000005vi-0000 frozen by ACL",
               "corpus exim/exim-testsuite.log:99"),
    )),
    Kind("exim_auth_fail", "SMTP AUTH authenticator failed",
         (matches(r"^\S+ authenticator failed for ", "_words"),), "client", (
        Sample("2022-06-29 16:04:19 dovecot_login authenticator failed for ([1.2.3.5]) "
               "[1.2.3.4]:55379: 535 Incorrect authentication data (set_id=abuse@test.com)",
               "corpus exim/crowdsec-hub.log:1"),
        Sample("May 30 06:10:12 server exim[1234]: login authenticator failed for "
               "no-helo.example.org [192.0.2.11]:5432: 535 Incorrect authentication data "
               "(set_id=user)",
               "corpus exim/crowdsec-hub.syslog.log:10"),
        Sample("2019-10-22 03:39:17 mx1.fqdn.local exim[29786]: dovecot_login authenticator "
               "failed for (User) [192.0.2.37]: 535 Incorrect authentication data "
               "(set_id=test@domain.com)",
               "corpus exim/fail2ban.log:8"),
    )),
    Kind("exim_smtp_error", "SMTP protocol, synchronization or syntax error of a client",
         (matches(r"^SMTP (?:protocol|syntax) (?:synchronization )?error", "_words"),),
         "client", (
        Sample('2016-03-18 00:34:06 [7513] SMTP protocol error in "AUTH LOGIN" H=(ylmf-pc) '
               "[45.32.34.167]:60723 I=[172.89.0.6]:587 AUTH command used when not advertised",
               "corpus exim/fail2ban.log:28"),
        Sample('1999-03-02 09:44:33 SMTP syntax error in "debug" U=CALLER unrecognized command',
               "corpus exim/exim-testsuite.log:34"),
    )),
    # tested on the whole text: "H=... [ip] SMTP connection" must not lose its H= first
    Kind("exim_connection", "SMTP connection opened, closed, lost, dropped or timed out",
         (matches(r"^(?:SMTP connection |SMTP call from |no MAIL in SMTP connection|"
                  r"timed out while reading|ETRN |"
                  r"SMTP command timeout|SMTP data timeout|SMTP connection lost|"
                  r"unexpected disconnection|[Cc]onnection from .* refused|"
                  r"incomplete transaction|NOTQUIT |SMTP incomplete|"
                  r"(?:H=\S+ )?(?:\(\S*\) )?\[[^\]]+\](?::\d+)? \S+ SMTP connection)"),),
         "client", (
        Sample("2017-01-24 03:09:46 SMTP connection from [10.101.1.10]:55010 (TCP/IP connection "
               "count = 1)",
               "corpus exim/wazuh.log:3"),
        Sample("2017-01-24 05:36:23 SMTP call from (000000) [::1]:39480 dropped: too many syntax "
               'or protocol errors (last command was "123")',
               "corpus exim/wazuh.log:5"),
        Sample("1999-03-02 09:44:33 10HmaY-000000005vi-0000 SMTP connection from CALLER lost "
               "while reading message data",
               "corpus exim/exim-testsuite.log:19"),
    )),
    Kind("exim_host_lookup", "no host name / IP address found in DNS for a client",
         (matches(r"^(?:no host name found|no IP address found|host name alias list|"
                  r"[Hh]ost name lookup|.*DNS lookup of )", "_words"),), "detail", (
        Sample("2017-12-03 08:32:00 no host name found for IP address 192.0.2.8",
               "corpus exim/fail2ban.log:12"),
        Sample("2017-12-03 08:51:35 no IP address found for host test.example.com (during SMTP "
               "connection from [192.0.2.9])",
               "corpus exim/fail2ban.log:13"),
    )),
    Kind("exim_tls", "TLS or DANE errors and notices",
         (matches(r"(?:^TLS |^DANE |TLS error|TLS session|SSL verify error|tls_|"
                  r"^(?:our|peer) cert|^cipher\b|^(?:client )?ocsp|STARTTLS)", "_words"),),
         "detail", (
        Sample("1999-03-02 09:44:33 TLS error on connection from (timeout.rhu.barb) [127.0.0.1] "
               "(tls lib accept fn): timed out",
               "corpus exim/exim-testsuite.log:4283"),
        Sample("1999-03-02 09:44:33 10HmbB-000000005vi-0000 H=danelazy.test.ex "
               "[ip4.ip4.ip4.ip4]: DANE error: tlsa lookup DEFER",
               "corpus exim/exim-testsuite.log:7756"),
    )),
    Kind("exim_dkim", "DKIM verification and signing notices",
         (matches(r"^(?:DKIM|dkim|arc_|ARC)", "_words"),), "detail", (
        Sample("1999-03-02 09:44:33 10HmaX-000000005vi-0000 DKIM: d=test.ex s=sel "
               "c=simple/simple a=rsa-sha1 b=1024 [verification succeeded]",
               "corpus exim/exim-testsuite.log:5927"),
    )),
    Kind("exim_verify_fail", "sender or recipient verification failed",
         (matches(r"^(?:sender|recipient) verify (?:fail|defer)|^VRFY failed", "_words"),),
         "client", (
        Sample("2022-06-29 15:47:21 H=tata.test.biz [1.2.3.4]:41584 sender verify fail for "
               "<toto@test.biz>: The mail server does not recognize toto@test.biz as a valid "
               "sender.",
               "corpus exim/crowdsec-hub.log:7"),
        Sample("1999-03-02 09:44:33 VRFY failed for <b@test.ex> H=(test) [V4NET.0.0.0] U=CALLER",
               "corpus exim/exim-testsuite.log:917"),
    )),
    Kind("exim_reject", "rejected connection, MAIL, RCPT or DATA (ACL, local_scan, size)",
         (matches(r"(?:^| )(?:temporarily )?rejected(?:[ :]|$)|discarded by \w+ ACL|"
                  r"dropped by '\w+' ACL|^refused connection from|message abandoned",
                  "_words"),), "reject", (
        Sample("2022-06-29 15:33:46 H=test.com [1.2.3.4]:53343 F=<info@test.com> rejected RCPT "
               '<toto@toto.com>: "JunkMail rejected - test.com [1.2.3.4]:53343 is in an RBL: '
               'https://www.spamhaus.org/sbl/query/SBLCSS"',
               "corpus exim/crowdsec-hub.log:4"),
        Sample("Jun 29 14:33:43 server exim[1234]: H=test.sa.com [1.2.3.4]:18146 temporarily "
               'rejected connection in "connect" ACL: "Host is ratelimited (1.9/1h max:1.2)"',
               "corpus exim/crowdsec-hub.syslog.log:6"),
        Sample("1999-03-02 09:44:33 10HmaY-000000005vi-0000 U=CALLER F=<CALLER@myhost.test.ex> "
               "rejected after DATA",
               "corpus exim/exim-testsuite.log:5143"),
    )),
    Kind("exim_warning", "ACL warn log_message and other warnings",
         (matches(r"(?:^| )(?i:warning): ", "_words"),), "client", (
        Sample("1999-03-02 09:44:33 H=(x.y.z) [10.9.8.10] U=CALLER Warning: This warning is from "
               "a HELO ACL (command helo x.y.z)",
               "corpus exim/exim-testsuite.log:72"),
        Sample("1999-03-02 09:44:33 Warning: No server certificate defined; will use a "
               "selfsigned one.",
               "corpus exim/exim-testsuite.log:4573"),
    )),
    # tested on the whole text: the H= in front is what says a remote host answered
    Kind("exim_remote_error", "a remote host refused or failed during a delivery attempt",
         (matches(r"^(?:H=\S+ \[[^\]]+\]\S* ?:? ?(?:SMTP|LMTP|Connection|Remote|"
                  r"Network|a TLS|TLS)|Failed to connect|SMTP error from remote|"
                  r"LMTP error|Connection refused|Connection timed out)"),), "detail", (
        Sample("1999-03-02 09:44:33 10HmaX-000000005vi-0000 H=thishost.test.ex [127.0.0.1] "
               "Connection refused",
               "corpus exim/exim-testsuite.log:450"),
        Sample("1999-03-02 09:44:33 10HmaX-000000005vi-0000 H=localhost4.test.ex [127.0.0.1]: "
               "SMTP error from remote mail server after HELO the.local.host.name: 450 I'm busy",
               "corpus exim/exim-testsuite.log:890"),
    )),
    Kind("exim_queue_note", "other line about a queued message (spool, retry, ACL notes...)",
         (_AT_ID,), "detail", (
        Sample("1999-03-02 09:44:33 10HmaX-000000005vi-0000 no recipients found in headers",
               "corpus exim/exim-testsuite.log:93"),
        Sample("1999-03-02 09:44:33 10HmbA-000000005vi-0000 PRDR R=<usery@test.ex> temporary "
               "refusal",
               "corpus exim/exim-testsuite.log:6971"),
    )),
    # Exim writes every stamped line itself: what no row above names is free text an
    # ACL's logwrite put there, or a configuration or daemon message, kept as its detail
    Kind("exim_note", "other notice without a message id (an ACL's logwrite text, "
         "configuration and daemon messages)", (), "detail", (
        Sample("1999-03-02 09:44:33 10.9.8.8 accepted by connect ACL",
               "corpus exim/exim-testsuite.log:66"),
        Sample("1999-03-02 09:44:33 Messages received: 1",
               "corpus exim/exim-testsuite.log:2782"),
    )),
    # given by the envelope: a line without Exim's stamp
    Kind("unparsed", "a line without an Exim timestamp (or syslog header)", None, None, (
        Sample("Header1: abc",
               "corpus syslog/lnav.log:36"),
    )),
)

TABLE: tuple[Kind, ...] = (*_BY_ENVELOPE, *_BY_FLAG, *_BY_TEXT)
KINDS: dict[str, str] = descriptions(TABLE)
_FIELDS = field_groups(TABLE)


def sniff(lines: list[str]) -> bool:
    """An Exim main log: most opening lines carry its stamp (or an exim syslog tag), and
    at least one has a shape only Exim writes."""
    text = [line for line in lines if line.strip()]
    if not text:
        return False
    native = [line for line in text if _NATIVE_RE.match(line)]
    if native:
        return len(native) * 2 >= len(text) and any(_STRONG_RE.match(x) for x in native)
    tagged = [line for line in text if _TAGGED_RE.match(line)]
    exim = sum(1 for line in tagged if _EXIM_TAG_RE.match(line))
    return exim > 0 and exim * 2 >= len(tagged)


_NATIVE_RE = re.compile(_NATIVE)
_STRONG_RE = re.compile(
    _NATIVE + r"(?:\[\d+\] )?(?:" + _QID[1:] + r"|Start queue run|End queue run|"
    r"SMTP connection from|SMTP call from|\S+ authenticator failed for|exim \S+ daemon|"
    r"H=\S|U=\S|no host name found|\S+ exim\d*\[\d+\]: )"
)
_TAGGED_RE = re.compile(STAMP_PATTERN + r" \S+ [^\s\[:]+(?:\[\d+\])?: ")
_EXIM_TAG_RE = re.compile(STAMP_PATTERN + r" \S+ exim\d*\[\d+\]: ")


# ---- the envelope: stamp, host, program, text -------------------------------------------

def _iso(stamp: pl.Expr) -> pl.Expr:
    """Exim's stamp ("2003-04-25 11:17:07 +0100 ") as the ISO text add_timestamps reads."""
    return stamp.str.strip_suffix(" ").str.replace(" +", "+", literal=True) \
        .str.replace(" -", "-", literal=True)


def _cut_host_tag(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """host, program and msg from ``column`` = "host exim[pid]: rest" (a syslog host and
    tag in front of Exim's own line)."""
    tag = pl.col(column).str.extract(_HOST_TAG, 0)
    head = tag.str.strip_suffix(": ").str.splitn(" ", 2)
    return frame.with_columns(
        host=head.struct.field("field_0"),
        program=head.struct.field("field_1").str.splitn("[", 2).struct.field("field_0"),
        msg=pl.col(column).str.slice(tag.str.len_bytes()),
    )


def _unwrap(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows whose ``msg`` came out of a syslog wrapper: drop a split marker (a part after
    the first is a continuation) and read Exim's own stamp when syslog_timestamp left it."""
    msg = pl.col("msg")
    mark = msg.str.extract(_SPLIT_MARK, 0)
    frame = frame.with_columns(
        _kind0=pl.when(mark.is_not_null() & ~mark.str.starts_with("[1/")
                       & ~mark.str.starts_with("[1\\")).then(pl.lit("exim_continuation")),
        msg=msg.str.slice(mark.str.len_bytes().fill_null(0)),
    )
    inner = pl.col("msg").str.extract(_NATIVE, 0)
    return frame.with_columns(
        _stamp=pl.when(inner.is_not_null()).then(_iso(inner)).otherwise(pl.col("_stamp")),
        _inner=inner.is_not_null(),
        msg=pl.col("msg").str.slice(inner.str.len_bytes().fill_null(0)),
    )


def _envelope(lines: pl.DataFrame) -> pl.DataFrame:
    """Add _stamp, host, program, msg (the text after stamp and tag) and _kind0 (a kind
    decided by the envelope alone: foreign, unparsed, exim_continuation)."""
    raw = pl.col("raw")
    frame = lines.with_columns(raw.str.extract(_NATIVE, 0).alias("_n"))
    n = pl.col("_n")
    frame = frame.with_columns(
        _stamp=_iso(n),
        msg=raw.str.slice(n.str.len_bytes()),
        host=pl.lit(None, pl.String),
        program=pl.when(n.is_not_null()).then(pl.lit("exim")),
        _kind0=pl.lit(None, pl.String),
        _inner=pl.lit(False),  # the stamp is Exim's own, inside a syslog line
    )
    native = frame["_n"].is_not_null()
    # "2019-10-22 03:39:17 mx1 exim[29786]: ...": a syslog line with an ISO stamp
    iso_syslog = native & frame["msg"].str.contains(_HOST_TAG).fill_null(False)
    if native.all() and not iso_syslog.any():
        return frame.drop("_n")
    plain = frame.filter(native & ~iso_syslog)
    parts = [plain]
    if iso_syslog.any():
        parts.append(_unwrap(_cut_host_tag(frame.filter(iso_syslog), "msg")))
    rest = frame.filter(~native)
    if rest.height:
        parts.extend(_not_native(rest))
    return pl.concat([p.select(plain.columns) for p in parts]).drop("_n")


def _not_native(rest: pl.DataFrame) -> list[pl.DataFrame]:
    """Lines without Exim's stamp in front: syslog lines (exim or foreign), "host
    exim[pid]: <stamp> ..." without a syslog stamp, continuations, junk."""
    cols = rest.columns
    hdr = split_header(rest.select("raw", "line_no", *[c for c in ("_year",) if c in cols]))
    rest = rest.with_columns(
        _sstamp=hdr["_stamp"], _shost=hdr["host"], _sprog=hdr["prog"], _smsg=hdr["msg"])
    prog = pl.col("_sprog")
    is_exim = prog.str.contains(_EXIM_PROG).fill_null(False)
    out = []
    syslog = rest.filter(is_exim).with_columns(
        _stamp=pl.col("_sstamp"), host=pl.col("_shost"), program=prog, msg=pl.col("_smsg"))
    if syslog.height:
        out.append(_unwrap(syslog))
    foreign = rest.filter(prog.is_not_null() & ~is_exim)
    out.append(foreign.with_columns(_stamp=pl.col("_sstamp"), host=pl.col("_shost"),
                                    program=prog, _kind0=pl.lit("foreign")))
    other = rest.filter(prog.is_null())
    tag = pl.col("raw").str.extract(_HOST_TAG, 0)
    wrapped = other.filter(tag.is_not_null())
    if wrapped.height:  # "mail.example.com exim[3751842]: 2021-07-17 23:20:49 ..."
        out.append(_unwrap(_cut_host_tag(wrapped, "raw")))
    junk = other.filter(tag.is_null())
    cont = pl.col("raw").str.contains(r"^[ \t]+\S")
    out.append(junk.with_columns(
        _kind0=pl.when(cont).then(pl.lit("exim_continuation")).otherwise(pl.lit("unparsed")),
        msg=pl.when(cont).then(pl.col("raw").str.strip_chars())))
    return [o.drop("_sstamp", "_shost", "_sprog", "_smsg") for o in out]


def _one_year(frame: pl.DataFrame, years: YearState) -> pl.DataFrame:
    """``_year`` of the syslog stamps, set by Exim's own stamps where lines carry both.

    A syslog stamp has no year: it is inferred from the file (``years``, or ingest's
    ``_year``), which can be a year off, while a line written with ``syslog_timestamp``
    keeps Exim's stamp and its year. Where one line has both for the same month, the
    difference corrects its neighbours (the lines after it, and before the first such
    line), so that a batch mixing the two keeps one year.
    """
    months = months_of_raw(frame["raw"])
    if "_year" not in frame.columns:
        frame = frame.with_columns(assign_years(months, years))
    stamp = pl.col("_stamp")
    both = pl.col("_inner") & (stamp.str.slice(5, 2).cast(pl.Int32, strict=False)
                               == pl.lit(months))
    fix = pl.when(both).then(stamp.str.slice(0, 4).cast(pl.Int64, strict=False)
                             - pl.col("_year"))
    return frame.with_columns(
        _year=pl.col("_year") + fix.forward_fill().backward_fill().fill_null(0))


# ---- each line's kind from the table --------------------------------------------------

_LATER = ""  # not decided by the flag rows: the rows by text decide


def _with_kinds(frame: pl.DataFrame) -> pl.DataFrame:
    """Kind of every line: the envelope's (``_kind0``), else the first row of ``TABLE``
    whose test holds.

    The table is classified in two passes with the same result as one: Polars evaluates
    every branch of a when-chain on every row, and the rows by text are a dozen regexes
    that only the few lines without a flag need. So the flag rows run on every line, the
    rest only on the lines those left (``_LATER``), put back in place (no frame copy). One
    pass over every line doubled the parse time of a 1M-line storm day.
    """
    rest = pl.col("rest")
    frame = frame.with_columns(_flag=rest.str.slice(0, 3))
    frame = frame.with_columns(
        kind=pl.coalesce("_kind0", classifier(_BY_FLAG, default=_LATER)))
    todo = frame["kind"] == _LATER
    if not todo.any():
        return frame
    slow = frame.select("rest", "queue_id").filter(todo).with_columns(
        _words=rest.str.replace(_PREAMBLE, "")).select(kind=classifier(_BY_TEXT))["kind"]
    return frame.with_columns(frame["kind"].scatter(todo.arg_true(), slow))


# ---- fields of each kind ------------------------------------------------------------------

def _unquote(expr: pl.Expr) -> pl.Expr:
    """Undo the backslash before a quote or a backslash (octal escapes are left as they are)."""
    return expr.str.replace_all(r'\\(["\\])', "$1")


def _client(host: pl.Expr) -> pl.Expr:
    """``name[ip]`` (``unknown[ip]`` when only a HELO name was given), like Postfix's client."""
    return pl.when(host.struct.field("ip").is_not_null()).then(pl.concat_str(
        host.struct.field("hname").fill_null("unknown"), pl.lit("["),
        host.struct.field("ip"), pl.lit("]")))


def _seconds(qt: pl.Series) -> pl.Series:
    """Exim's printed times ("1d2h3m4s", "1.578s") in seconds, worked out once per value
    (a log repeats a few hundred of them); null for text of another shape."""
    uniq = qt.drop_nulls().unique()
    parts = uniq.str.extract_groups(
        r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$"
    ).struct.unnest()
    units = dict(zip(parts.columns, (604800, 86400, 3600, 60, 1), strict=True))
    seconds = parts.select(pl.when(pl.any_horizontal(pl.all().is_not_null())).then(
        pl.sum_horizontal(pl.col(c).cast(pl.Float64, strict=False).fill_null(0) * unit
                          for c, unit in units.items())))
    return qt.replace_strict(uniq, seconds.to_series(), default=None, return_dtype=pl.Float64)


def _received_fields(sub: pl.DataFrame) -> pl.DataFrame:
    body = pl.col("rest").str.slice(3)
    sub = sub.with_columns(body.str.extract_groups(_RECEIVED).alias("_r")).unnest("_r")
    fields = pl.col("fields")
    host = fields.str.extract_groups(_HOST)
    sender = pl.col("sender")
    return sub.with_columns(
        sender=pl.when(sender == "<>").then(pl.lit("")).otherwise(sender),
        size=fields.str.extract(r" S=(\d+)", 1),
        message_id=fields.str.extract(r" id\*?=<?([^\s<>]+)>?", 1),
        client=_client(host),
        subject=pl.col("subject"),
        nrcpt=pl.when(pl.col("rcpts").is_not_null())
        .then(pl.col("rcpts").str.strip_chars().str.count_matches(" ") + 1),
        # a bounce Exim made names the message it reports on (R=); fakereject says so
        detail=pl.when(pl.col("_flag") == "(= ").then(pl.lit("fakereject"))
        .otherwise(fields.str.extract(r"(?:^| )R=(\S+)", 1)),
    ).drop("fields", "from", "rcpts")


def _scatter(frame: pl.DataFrame, mask: pl.Series, values: pl.DataFrame) -> pl.DataFrame:
    """Put ``values`` (computed on the rows of ``mask`` only) back in place."""
    idx = mask.arg_true()
    return frame.with_columns(frame[c].scatter(idx, values[c]) for c in values.columns)


def _addresses(sub: pl.DataFrame) -> pl.DataFrame:
    """addr, parent, top and tail (the fields after them) of delivery lines.

    Most lines are ``addr <top> R=...`` or ``addr R=...``: cut with literal splits. A pipe
    command or quoted local part (spaces inside), a parent in parentheses or an error
    right after the address (``addr: text``) take the full pattern, on those rows only.
    """
    split = pl.col("rest").str.splitn(" ", 3)
    sub = sub.with_columns(addr=split.struct.field("field_1"), _rem=split.struct.field("field_2"))
    addr, rem = pl.col("addr"), pl.col("_rem")
    has_top = rem.str.starts_with("<")
    # literal splits, not find + slice: find counts bytes, slice counts characters
    top = rem.str.splitn(">", 2)
    sub = sub.with_columns(
        top=pl.when(has_top).then(top.struct.field("field_0").str.slice(1)),
        parent=pl.lit(None, pl.String),
        tail=pl.when(has_top).then(top.struct.field("field_1")).otherwise(rem),
    )
    odd = sub.select(
        addr.str.starts_with("|") | addr.str.starts_with('"') | (addr == "save")
        | addr.str.ends_with(":") | rem.str.starts_with("(")
        | (has_top & pl.col("tail").is_null())
    ).to_series().fill_null(False)
    if odd.any():
        full = sub.filter(odd).select(
            pl.col("rest").str.slice(3).str.extract_groups(_DELIVERY).alias("_d")).unnest("_d")
        sub = _scatter(sub, odd, full.with_columns(pl.col("tail").fill_null("")))
    return sub.with_columns(pl.col("tail").fill_null("")).drop("_rem")


def _delivery_fields(sub: pl.DataFrame) -> pl.DataFrame:
    """Recipient, list, status, relay, delay, reply of delivery lines (the bulk of a log)."""
    sub = _addresses(sub).with_columns(
        status=pl.col("_flag").replace_strict(_STATUS, default=None, return_dtype=pl.String))
    tail, status = pl.col("tail"), pl.col("status")
    sent = status == "sent"
    # what follows the fields: the confirmation C="..." of a delivery, the error after ": "
    confirmed = tail.str.splitn(' C="', 2)
    conf, error = confirmed.struct.field("field_1"), tail.str.splitn(": ", 2)
    sub = sub.with_columns(
        # up to the closing quote; a reply with an escaped quote takes the full pattern
        detail=pl.when(sent & conf.str.contains("\\", literal=True))
        .then(_unquote(conf.str.extract(rf'^({_QUOTED})"', 1)))
        .when(sent).then(conf.str.splitn('"', 2).struct.field("field_0"))
        .otherwise(pl.coalesce(error.struct.field("field_1"), pl.col("rest").str.slice(3))
                   .str.strip_chars()),
        _tokens=pl.when(sent).then(confirmed.struct.field("field_0"))
        .otherwise(error.struct.field("field_0")).str.split(" "),
    )
    tokens = pl.col("_tokens")

    def value(key: str) -> pl.Expr:
        return tokens.list.eval(pl.element().filter(pl.element().str.starts_with(key))
                                .str.slice(len(key))).list.first()

    # H=name [ip]:port, the address a token of its own ("*": the connection was reused)
    at = tokens.list.eval(pl.element().str.starts_with("H=")).list.arg_max()
    hname, ip = value("H="), tokens.list.get(at + 1, null_on_oob=True).str.strip_suffix("*")
    detail = pl.col("detail")
    sub = sub.with_columns(
        relay=pl.coalesce(pl.when(ip.str.starts_with("[")).then(hname + ip),
                          value("T="), value("R=")),
        # QT= ends the line (before DT=): never a "QT=" inside the quoted reply
        _qt=tail.str.extract(r" QT=([\d.wdhms]+)(?: DT=[\d.wdhms]+)?$", 1),
        dsn=detail.str.extract(_DSN, 1),
        next_queue_id=pl.when(sent).then(detail.str.extract(_NEXT_ID, 1)),
    )
    sub = _recipients(sub.with_columns(
        delay=_seconds(sub["_qt"]),
        detail=pl.when(pl.col("_flag") == "*> ").then(pl.lit("suppressed by -N"))
        .otherwise(detail),
    ))
    # a shape no pattern knows ("** mua_wrapper is set but ..."): the text as detail
    sub = sub.with_columns(detail=pl.coalesce(
        "detail", pl.when(pl.col("recipient").is_null()).then(pl.col("rest").str.slice(3))))
    # thrown away, not delivered: a :blackhole: redirection, or "=> blackhole (RCPT ACL
    # discarded recipients)" for an ACL's discard verb (the Exim specification, "Log files")
    parent = pl.col("parent")
    acl = parent.str.ends_with(" discarded recipients").fill_null(False)
    discard = (pl.col("status") == "sent") & ((pl.col("addr") == ":blackhole:") | acl)
    sub = sub.with_columns(
        status=pl.when(discard).then(pl.lit("discarded")).otherwise("status"),
        detail=pl.when(discard & acl).then(parent).otherwise("detail"),
    )
    return sub.drop("addr", "parent", "top", "tail", "_tokens", "_qt")


def _recipients(sub: pl.DataFrame) -> pl.DataFrame:
    """recipient and orig_to from the logged final, parent and top-level addresses.

    ``a@b <list@b>``: a@b came through list@b. A pipe, file or :blackhole: stands for the
    address that led to it (the parent, else the top one). A bare local part (log_as_local)
    is completed with the top address's domain. Only rows without an ``@`` in the final
    address need the rules; the others are read as they stand.
    """
    addr = pl.col("addr")
    plain = sub.select(addr.str.contains("@", literal=True) & ~addr.str.starts_with("|")
                       & ~addr.str.starts_with("/")).to_series().fill_null(False)
    sub = sub.with_columns(recipient=addr, orig_to=pl.col("top"))
    if plain.all():
        return sub
    top = pl.col("top")
    parent = pl.col("parent").str.split(", ").list.first()
    special = addr.str.contains(r"^(?:[|/]|:blackhole:$|save )") | (
        ~addr.str.contains("@", literal=True) & addr.str.contains("/", literal=True))
    top_local = top.str.extract(r"^(.*)@", 1)
    same = ~special & top_local.str.to_lowercase().eq_missing(addr.str.to_lowercase())
    domain = top.str.extract(r"@([^@]*)$", 1)
    rest = sub.filter(~plain).select(
        recipient=pl.when(addr.is_null()).then(
            pl.col("rest").str.slice(3).str.extract(r"^([^\s:<>]+@[^\s:<>]+)", 1))
        .when(special).then(pl.coalesce(parent, top))
        .when(same).then(top)
        .when(domain.is_not_null()).then(pl.concat_str(addr, pl.lit("@"), domain))
        .otherwise(addr),
        orig_to=pl.when(special).then(pl.when(parent.is_not_null()).then(top))
        .when(same).then(pl.lit(None, pl.String))
        .otherwise(top),
    )
    return _scatter(sub, ~plain, rest)


def _other_fields(sub: pl.DataFrame, group: str | None) -> pl.DataFrame:
    """The fields of a group of kinds (``TABLE``'s ``fields``) other than the message flow."""
    rest = pl.col("rest")
    if group == "header":
        kind = pl.col("kind")
        value = rest.str.splitn(": ", 2).struct.field("field_1").str.strip_chars()
        bare = value.str.strip_prefix("<").str.strip_suffix(">")
        return sub.with_columns(
            subject=pl.when(kind == "header_subject").then(value),
            in_reply_to=pl.when(kind == "header_in_reply_to").then(bare),
            refs=pl.when(kind == "header_references").then(value),
        )
    if group == "completed":
        return sub.with_columns(delay=_seconds(sub.select(rest.str.extract(_QT, 1)).to_series()))
    if group in ("client", "reject"):
        sub = sub.with_columns(client=_client(rest.str.extract_groups(_CLIENT)), detail=rest)
        if group == "reject":
            sub = sub.with_columns(
                sender=pl.coalesce(rest.str.extract(r"(?:^| )F=<([^>]*)>", 1),
                                   rest.str.extract(r"rejected MAIL (?:FROM:)?<([^>]*)>", 1)),
                recipient=rest.str.extract(r"(?:^| )RCPT <([^>]*)>", 1),
            )
        return sub
    if group == "continuation":
        return sub.with_columns(detail=pl.col("msg"))
    if group == "detail":
        return sub.with_columns(detail=rest)
    return sub  # foreign, unparsed: nothing understood, raw is kept


def _with_fields(frame: pl.DataFrame) -> pl.DataFrame:
    """Extract each field group's fields on the rows of its kinds only, then stack them."""
    is_delivery = frame["kind"] == "delivery"
    parts = [_delivery_fields(frame.filter(is_delivery))] if is_delivery.any() else []
    rest = frame.filter(~is_delivery)
    group = rest["kind"].replace_strict(_FIELDS, default=None, return_dtype=pl.String)
    for (name,), sub in rest.group_by(group.alias("_group"), maintain_order=True):
        if name == "received":
            parts.append(_received_fields(sub))
        else:
            parts.append(_other_fields(sub, None if name is None else str(name)))
    return pl.concat(parts, how="diagonal_relaxed") if parts else frame


def _unescape_subjects(subject: pl.Series) -> pl.Series:
    """T= escapes (\\" \\\\ and octal bytes of non-ASCII text), before RFC 2047 words."""
    from detector.model.subjects import map_distinct

    return map_distinct(subject, subject.str.contains("\\", literal=True), _unescape)


_ESCAPE = re.compile(rb"\\([0-7]{3}|.)", re.S)
_NAMED = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"v": b"\v", b"f": b"\f"}


def _unescape(value: str) -> str:
    """A T= value as Exim's string_printing() wrote it, back to text (one distinct value)."""
    def one(m: re.Match[bytes]) -> bytes:
        code = m.group(1)
        if len(code) == 3:
            return bytes([int(code, 8) & 0xFF])
        return _NAMED.get(code, code)

    return _ESCAPE.sub(one, value.encode("utf-8")).decode("utf-8", "replace")


def _columns(lines: pl.DataFrame, ctx: ParseContext) -> pl.DataFrame:
    """The working columns: envelope, ``ts``, ``queue_id`` and ``rest``, ``_kind0``."""
    # back in line order: years are inferred from one line to the next
    frame = _envelope(lines).sort("line_no")
    if frame["host"].null_count() < frame.height:  # syslog lines among them
        frame = _one_year(frame, ctx.years)
    frame = add_timestamps(frame.drop("_inner"), ctx.tz, ctx.years)
    msg = pl.col("msg")
    if frame["msg"].str.starts_with("[").any():  # +pid: "[1234] " after the stamp
        frame = frame.with_columns(
            msg=msg.str.slice(msg.str.extract(_PID, 0).str.len_bytes().fill_null(0)))
    frame = frame.with_columns(queue_id=pl.when(pl.col("_kind0").is_null())
                               .then(msg.str.extract(_QID, 1)))
    frame = frame.with_columns(
        rest=msg.str.slice(pl.col("queue_id").str.len_bytes().fill_null(-1) + 1))
    return frame


def parse(lines: pl.DataFrame, ctx: ParseContext) -> pl.DataFrame:
    """Turn a batch of raw lines (columns raw, line_no) into the events frame."""
    frame = _with_kinds(_columns(lines, ctx))
    # nulled before the per-group copies below (finish keeps raw of the same kinds)
    frame = frame.with_columns(
        raw=pl.when(pl.col("kind").is_in(KEEP_RAW)).then("raw"),
        msg=pl.when(pl.col("kind") == "exim_continuation").then("msg"),
    )
    # a delivery line that names no list says the recipient was addressed directly
    return finish(_with_fields(frame), ctx, direct_orig_to=True, unescape=_unescape_subjects)
