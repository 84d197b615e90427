"""Sendmail (8.12 and later, syslog) -> events, vectorized.

Sendmail writes one line per envelope event, prefixed with the queue id:
``from=<s>, size=N, class=0, nrcpts=N, msgid=<id>, ..., relay=host [ip]`` when a message
is accepted, and ``to=a,b,c, [ctladdr=<list> (uid/gid), ]delay=hh:mm:ss, xdelay=...,
mailer=esmtp, pri=N, relay=host. [ip], dsn=2.0.0, stat=Sent (reply)`` per delivery
transaction, naming every recipient of the transaction (one events row per recipient).
Header values are not logged by sendmail itself; sites that log them with the ``syslog``
map (``Klog syslog`` + ``HSubject: $>+LogSubject``) write ``QID: Subject: ...`` lines,
read here as the Postfix header kinds. Lines of other programs are ``foreign``; lines
without a syslog header and sendmail lines of an unknown shape are ``unparsed``.
"""

from __future__ import annotations

import re

import polars as pl

from detector.formats.context import ParseContext
from detector.formats.finish import KEEP_RAW, finish
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
    present,
    starts,
)
from detector.formats.syslog import add_timestamps, split_header

NAME = "sendmail"

# sendmail, sm-mta (Debian), sm-msp-queue, and the role names some systems log under
# (sm-acceptingconnections)
SYSLOG_PROGRAM = r"sendmail|sm-[\w.-]+"  # the syslog program names of this format's lines
_PROG = rf"^(?:{SYSLOG_PROGRAM})$"
_SNIFF = re.compile(r"(?:^|\s)(?:sendmail|sm-[\w.-]+)\[\d+\]: ")
# 8.12+: 8 characters of time and sequence, then the pid zero-padded to 6 digits
# (21QBRGdX006005); 8.9-8.11: 7 + 5 (fBKAeuJ15426)
_QID_TOKEN = r"[0-9A-Za-z]{6,9}\d{4,8}"
_QID = rf"^({_QID_TOKEN}|NOQUEUE): "
# "<stamp> <facility.severity> host ..." (some syslog templates): the tag is dropped before
# the header split is retried
_FACILITY = (
    r"^((?:\d{4} )?[A-Z][a-z]{2} {1,2}\d{1,2} \d\d:\d\d:\d\d(?:\.\d+)?|\S+) "
    r"<[a-z0-9]+\.[a-z]+> "
)
_SESSION = (
    r"^(?:lost input channel|.*did not issue (?:MAIL|[A-Z/]+) |timeout waiting for input|"
    r"collect: |rejecting commands from|.*possible SMTP attack|.*: Possible SMTP RCPT flood|"
    r"too many |Too many |.*Connection (?:reset|lost|timed out)|.*Broken pipe|"
    r".*: (?:Syntax error|Bad file number)|.*: ETRN |.*\bsmtp: connection lost)"
)
_DAEMON = (
    r"^(?:starting daemon|alias database|\S*aliases: \d+ aliases|restarting |stopping daemon|"
    r"accepting connections again|rejecting connections on daemon|runqueue|grew WorkList|"
    r"shutting down|sendmail \(|started as:|daemon (?:\S+ )?(?:started|stopped)|"
    r"Authentication-Warning|.*load average)"
)
_FIELDS: dict[str, str] = {
    "notify": (rf"^(?:(?P<next_queue_id>{_QID_TOKEN}): )?(?:DSN|return to sender|sender notify|"
               r"postmaster notify|clone): (?P<detail>.*)$"),
    "rcpt_reject": r"^<?(?P<recipient>[^\s<>]*)>?\.\.\. (?P<detail>.*)$",
    "ruleset_reject": (
        r"^ruleset=(?P<ruleset>\w+), arg1=(?P<arg1>.*?)(?:, arg2=[^,]*)?, "
        r"relay=(?P<client>.*?)(?:, (?P<status>reject|quarantine)=(?P<detail>.*)|, "
        r"(?P<discard>discard))$"
    ),
    "auth_failure": r"^AUTH failure \([^)]*\): (?P<detail>.*?)(?:, relay=(?P<client>[^,]*))?$",
    "connect": r"^connect from (?P<client>.*)$",
    "expansion": r"^alias (?P<orig_to>.*?) => (?P<members>.*)$",
    "detail": r"^(?P<detail>.*)$",
}
# a reply naming the next hop's queue id: Postfix, sendmail and Exim receivers
_NEXT_QID = (
    r"(?:queued as:? ([0-9A-Za-z]{5,})|^([0-9A-Za-z]{8}\d{5,8}) Message accepted for delivery"
    r"|^OK id=([0-9A-Za-z]{6}-[0-9A-Za-z]{6,11}-[0-9A-Za-z]{2,4}))"
)


# the working columns: prog (syslog program), queue_id, rest (the message after it)
_QUEUED = (present("queue_id"), ~equals("NOQUEUE", "queue_id"))  # a real queue id
_H = "Apr  2 00:15:25 mta001 sendmail[32300]:"  # the header of doc-shaped samples


def _queued(*conds: Cond) -> tuple[Cond, ...]:
    return (*_QUEUED, *conds)


def _corpus(ref: str) -> str:
    return f"corpus {ref}"


def _notify(words: str) -> Cond:  # "QID: QID2: DSN: ..." (savemail.c, deliver.c)
    return matches(rf"^(?:{_QID_TOKEN}: )?(?:{words}): ")


_LOG_MAP = ("sendmail cf/README, map type syslog (Klog syslog; HSubject: $>+LogSubject "
            "logging $&{currHeader})")

TABLE: tuple[Kind, ...] = (
    Kind("unparsed", "no syslog header, or a sendmail message of unknown shape",
         (absent("prog"),), samples=(Sample(
             "sm-mta[20900]: k4PK8NYf020900: ruleset=check_mail, arg1=<brbomaquinas@brbom.com>, "
             "relay=200-138-41-205.ctame705.dsl.brasiltelecom.net.br [200.138.41.205] (may be "
             "forged), reject=553 5.1.8 <brbomaquinas@brbom.com>... Domain of sender address "
             "brbomaquinas@brbom.com does not exist",
             _corpus("sendmail/ossec-hids.partial.log:1")),)),
    Kind("foreign", "a line of another program in the same log", (~matches(_PROG, "prog"),),
         samples=(Sample("Nov  3 09:23:38 veridian automount[7998]: lookup(file): lookup for "
                         "foobar failed", _corpus("syslog/lnav.log:1")),)),
    # the common shapes, told by their first word (the fast path reads these rows);
    # envelope lines and header values only with a real queue id
    Kind("delivery",
         "to= line: one row per recipient of a delivery transaction (stat=Sent...)",
         _queued(starts("to=")), samples=(
             Sample("Apr  2 00:15:25 mta001 sendmail[32302]: u31FFPtp032300: "
                    "to=<sent1@example.com>,<sent2@example.com>, delay=00:00:00, "
                    "xdelay=00:00:00, mailer=esmtp, pri=245938, relay=[93.184.216.34] "
                    "[93.184.216.34], dsn=2.0.0, stat=Sent (ok:  Message 40279894 accepted)",
                    _corpus("sendmail/fluent-plugin-sendmail.log:4")),
             Sample("Feb 26 12:27:16 server1 sendmail[6005]: 21QBRGdX006005: to=This, "
                    "ctladdr=root (0/0), delay=00:00:00, xdelay=00:00:00, mailer=relay, "
                    "pri=180030, relay=[127.0.0.1] [127.0.0.1], dsn=5.1.1, stat=User unknown",
                    _corpus("sendmail/postfix-maillog-dump.log:4")))),
    Kind("received",
         "from= line: a message accepted into the queue (sender, size, nrcpts, msgid)",
         _queued(starts("from=")), "received", samples=(Sample(
             "Apr  2 00:15:25 mta001 sendmail[32300]: u31FFPtp032300: "
             "from=<grandeur09@gmail.com>, size=5938, class=0, nrcpts=7, "
             "msgid=<201604011515.u31FFIAj012911@gmail.com>, proto=ESMTP, daemon=MTA, "
             "relay=[64.233.187.27]", _corpus("sendmail/fluent-plugin-sendmail.log:2")),)),
    # a received line's nrcpts=0, read by its extractor
    Kind("aborted", "from= line with nrcpts=0: an envelope dropped before any recipient was "
                    "accepted (all refused, or the client quit); nothing was queued",
         None, samples=(Sample(
             "Nov  3 11:35:30 Microsoft sendmail[26254]: rA37ZTSC026254: "
             "from=<davaojk25@domain.com>, size=0, class=0, nrcpts=0, bodytype=8BITMIME, "
             "proto=ESMTP, daemon=MTA, relay=163.23.32.95.dsl-dynamic.vsi.ru [95.32.23.163]",
             _corpus("sendmail/fail2ban.log:45")),)),
    Kind("header_subject", "Subject header logged by a header-check ruleset (syslog map)",
         _queued(starts("Subject:")), "header", samples=(Sample(
             f"{_H} u31FFPtp032300: Subject: Re: quarterly numbers", _LOG_MAP),)),
    Kind("header_in_reply_to", "In-Reply-To header logged by a header-check ruleset",
         _queued(starts("In-Reply-To:")), "header", samples=(Sample(
             f"{_H} u31FFPtp032300: In-Reply-To: <201604011515.u31FFIAj012911@gmail.com>",
             _LOG_MAP),)),
    Kind("header_references", "References header logged by a header-check ruleset",
         _queued(starts("References:")), "header", samples=(Sample(
             f"{_H} u31FFPtp032300: References: <201604011515.u31FFIAj012911@gmail.com>",
             _LOG_MAP),)),
    Kind("tls", "STARTTLS=server/client session set-up, TLS errors", (starts("STARTTLS="),),
         "tls", samples=(Sample(
             f"{_H} STARTTLS=server, relay=mail.example.com [192.0.2.10], version=TLSv1.2, "
             "verify=NO, cipher=ECDHE-RSA-AES256-GCM-SHA384, bits=256/256",
             "sendmail tls.c tls_get_info() (STARTTLS=%s, relay=, version=, verify=, "
             "cipher=, bits=)"),)),
    Kind("auth", "AUTH=server/client: successful SMTP AUTH", (starts("AUTH="),), "tls",
         samples=(Sample(
             f"{_H} AUTH=server, relay=mail.example.com [192.0.2.10], authid=alice, "
             "mech=PLAIN, bits=0",
             "sendmail srvrsmtp.c (AUTH=server, relay=%s, authid=%.128s, mech=%.16s, "
             "bits=%d)"),)),
    Kind("ruleset_reject", "ruleset=check_*, arg1=..., relay=..., reject=/discard/quarantine",
         (starts("ruleset="),), "ruleset_reject", samples=(Sample(
             "Feb 25 03:01:10 kismet sm-acceptingconnections[27713]: s1P819mk027713: "
             "ruleset=check_rcpt, arg1=<asservnew@freemailhost.ru>, relay=128-68-136-133."
             "broadband.corbina.ru [128.68.136.133], reject=550 5.7.1 "
             "<asservnew@freemailhost.ru>... Relaying denied. Proper authentication required.",
             _corpus("sendmail/fail2ban.log:14")),)),
    # the rest, in order
    Kind("dsn", "QID: QID2: DSN: / return to sender: a bounce message QID2 was created",
         (_notify("DSN|return to sender"),), "notify", samples=(Sample(
             "Feb 26 12:27:16 server1 sendmail[6005]: 21QBRGdX006005: 21QBRGdY006005: DSN: "
             "User unknown", _corpus("sendmail/postfix-maillog-dump.log:10")),)),
    Kind("clone", "QID: QID2: clone: owner=... the envelope was split for a list owner",
         (_notify("clone"),), "notify", samples=(Sample(
             f"{_H} u31FFPtp032300: u31FFPtq032300: clone: owner=owner-staff",
             "sendmail deliver.c sendall() (%s: clone: owner=%s)"),)),
    Kind("dsn_notify", "QID: QID2: sender notify: / postmaster notify: (delay warnings...)",
         (_notify("sender notify|postmaster notify"),), "notify", samples=(Sample(
             f"{_H} u31FFPtp032300: u31FFPtq032300: postmaster notify: see transcript for "
             "details", "sendmail savemail.c returntosender() (QID: QID2: postmaster notify:)"),
         )),
    Kind("expansion", "alias X => Y (LogLevel > 10): one row per member the alias names",
         (starts("alias "), contains(" => ")), "expansion", samples=(Sample(
             f"{_H} u31FFPtp032300: alias staff => alice@example.com,bob@example.com",
             "sendmail alias.c alias() (LogLevel > 10: alias %.100s => %s)"),)),
    Kind("queue_done", "done; delay=..., ntries=N: the envelope left the queue",
         (starts("done; "),), "detail", samples=(Sample(
             "Apr  2 00:15:25 mta001 sendmail[32302]: u31FFPtp032300: done; delay=00:00:00, "
             "ntries=2", _corpus("sendmail/fluent-plugin-sendmail.log:9")),)),
    Kind("queue_done", "", (equals("done"),), "detail"),
    Kind("rcpt_reject", "<addr>... User unknown: an address refused during the SMTP dialogue",
         (matches(r"^<?[^\s<>]*>?\.\.\. "),), "rcpt_reject", samples=(Sample(
             "Nov  3 11:35:30 Microsoft sendmail[26254]: rA37ZTSC026250: <arhipov@domain.com>... "
             "No such user here", _corpus("sendmail/fail2ban.log:40")),)),
    Kind("milter", "Milter actions and notices", (matches(r"^(?:Milter|milter)"),), "detail",
         samples=(Sample("Apr  2 00:15:25 mta001 sendmail[32300]: u31FFPtp032300: Milter: no "
                         "active filter", _corpus("sendmail/fluent-plugin-sendmail.log:1")),)),
    Kind("tls", "", (matches(r"^(?:STARTTLS|TLS|SSL)"),), "tls"),
    Kind("auth_failure", "AUTH failure (mech): failed SMTP AUTH", (starts("AUTH failure"),),
         "auth_failure", samples=(Sample(
             "Feb 25 04:02:27 relay1 sendmail[16664]: 06I02CNi016764: AUTH failure (LOGIN): "
             "authentication failure (-13) SASL(-13): authentication failure: checkpass "
             "failed, user=user@example.com, relay=example.com [192.0.2.3] (may be forged)",
             _corpus("sendmail/fail2ban.log:7")),)),
    Kind("auth", "", (matches(r"^(?:AUTH|SASL)"),), "tls"),
    Kind("expn_vrfy", "EXPN/VRFY request (usually rejected)",
         (matches(r"^(?:.*: )?(?:EXPN|VRFY|expn|vrfy) "),), "detail", samples=(
             Sample("Feb 23 21:18:47 batman sm-mta[93301]: s1NKIkZa093301: [76.72.174.70]: "
                    "EXPN root [rejected]", _corpus("sendmail/fail2ban.log:34")),
             Sample(" Apr 14 21:02:05 mozart sendmail[11675]: NOQUEUE: [192.168.11.200]: "
                    "expn root", _corpus("sendmail/ossec-hids.log:1")))),
    Kind("connect", "NOQUEUE: connect from (LogLevel > 9)", (starts("connect from "),),
         "connect", samples=(Sample(
             f"{_H} NOQUEUE: connect from mail.example.com [192.0.2.10]",
             "sendmail main.c (LogLevel > 9: connect from %.100s, no queue id)"),)),
    Kind("smtp_trace", "--- / <-- / --> SMTP transcript lines (high LogLevel)",
         (matches(r"^(?:---|<--|-->|<<<|>>>) "),), samples=(Sample(
             f"{_H} u31FFPtp032300: <-- MAIL From:<alice@example.com> SIZE=5938",
             "sendmail srvrsmtp.c smtp() (LogLevel > 14: <-- %s, each command read)"),)),
    Kind("syserr", "SYSERR: a system error", (matches(r"^(?:\S+: )?SYSERR"),), "detail",
         samples=(Sample(
             f"{_H} NOQUEUE: SYSERR(nobody): can not write to queue directory "
             "/var/spool/clientmqueue/", _corpus("sendmail/lua_sandbox_extensions.msgonly.log:3")
             + " (message part; syslog header added)"),)),
    Kind("session_error", "lost input channel, did not issue MAIL..., timeouts, collect: "
                          "errors, possible SMTP attack, pre-greeting traffic",
         (matches(_SESSION),), "detail", samples=(
             Sample("Feb 16 23:33:20 smtp1 sm-mta[5133]: s1GNXHYB005133: [190.5.230.178]: "
                    "possible SMTP attack: command=AUTH, count=5",
                    _corpus("sendmail/fail2ban.log:1")),
             Sample("Mar  6 16:55:28 s192-168-0-1 sm-mta[20949]: v26LtRA0020949: "
                    "some-host-24.example.org [192.0.2.194] did not issue MAIL/EXPN/VRFY/ETRN "
                    "during connection to MTA", _corpus("sendmail/fail2ban.log:50")))),
    Kind("warning", "other warnings and errors",
         (matches(r"(?i)^(?:warning|error|Losing |savemail panic|unable to|cannot |can not |"
                  r"\S+: cannot )"),), "detail", samples=(Sample(
             f"{_H} unable to qualify my own domain name (mta001) -- using short name",
             "sendmail main.c (unable to qualify my own domain name (%s) -- using short "
             "name)"),)),
    Kind("daemon", "daemon start/stop, alias database rebuilds, load-average refusals",
         (absent("queue_id"), matches(_DAEMON)), "detail", samples=(Sample(
             "Feb 26 12:27:04 server1 sendmail[5948]: alias database /etc/aliases rebuilt by "
             "root", _corpus("sendmail/postfix-maillog-dump.log:1")),)),
    Kind("daemon", "", (equals("NOQUEUE", "queue_id"), matches(_DAEMON)), "detail"),
    Kind("queue_note", "other queue-id prefixed notice", (present("queue_id"),), "detail",
         samples=(Sample(
             "Apr  2 00:15:25 mta001 sendmail[32302]: u31FFPtp032300: SMTP outgoing connect "
             "on [192.168.198.81]", _corpus("sendmail/fluent-plugin-sendmail.log:3")),)),
)
KINDS = descriptions(TABLE)


def _fast_tokens(table: tuple[Kind, ...]) -> tuple[dict[str, str], set[str]]:
    """The fast path read off the table: its leading rows (after the program tests) whose
    test is one literal start of ``rest``, alone or after a real queue id. Returns
    start -> kind, and the kinds that need the queue id."""
    fast: dict[str, str] = {}
    queued: set[str] = set()
    n = len(_QUEUED)
    for row in table:
        if row.when is None or all(c.column == "prog" for c in row.when):
            continue  # structural rows; unparsed and foreign, the fast path's own tests
        needs_qid = row.when[:n] == _QUEUED
        test = row.when[n:] if needs_qid else row.when
        if len(test) != 1 or test[0].column != "rest" or test[0].op != "starts" \
                or test[0].negate:
            break
        fast.setdefault(str(test[0].value), row.name)
        if needs_qid:
            queued.add(row.name)
    return fast, queued


_FAST, _FAST_QUEUED = _fast_tokens(TABLE)
_FAST_PATTERN = "^(" + "|".join(re.escape(k) for k in _FAST) + ")"
_FIELD_GROUP = field_groups(TABLE)
_CLASSIFY = classifier(TABLE)


def sniff(lines: list[str]) -> bool:
    """A syslog file with sendmail lines among its first lines."""
    return any(_SNIFF.search(line) for line in lines)


def _split(lines: pl.DataFrame) -> pl.DataFrame:
    """The syslog header; lines it does not fit are retried once normalized (indented,
    or with a ``<mail.info>`` tag after the stamp) and put back in place."""
    frame = split_header(lines)
    bad = frame["prog"].is_null()
    if not bad.any():
        return frame
    retry = frame.filter(bad).select(
        "line_no", raw=pl.col("raw").str.strip_chars_start().str.replace(_FACILITY, "${1} "))
    fixed = split_header(retry)
    idx = bad.arg_true()
    return frame.with_columns(
        frame[c].scatter(idx, fixed[c]) for c in ("_stamp", "host", "prog", "msg"))


def _with_kinds(frame: pl.DataFrame) -> pl.DataFrame:
    """Kind of every line: the common shapes by their first word, the rest by the table."""
    token = pl.col("rest").str.extract(_FAST_PATTERN, 1)
    qid = pl.col("queue_id")
    fast = token.replace_strict(_FAST, default=None, return_dtype=pl.String)
    frame = frame.with_columns(kind=(
        pl.when(pl.col("prog").is_null()).then(pl.lit("unparsed"))
        .when(~pl.col("prog").str.contains(_PROG)).then(pl.lit("foreign"))
        # envelope lines only with a real queue id; header values only of a queued message
        .when(fast.is_in(sorted(_FAST_QUEUED)) & (qid.is_null() | (qid == "NOQUEUE")))
        .then(None)
        .otherwise(fast)
    ))
    todo = frame["kind"].is_null()
    if not todo.any():
        return frame
    slow = frame.select("rest", "queue_id", "prog").filter(todo).select(kind=_CLASSIFY)["kind"]
    return frame.with_columns(frame["kind"].scatter(todo.arg_true(), slow))


def _address(col: pl.Expr) -> pl.Expr:
    """``<a@b>`` -> ``a@b``; bare names stay as written."""
    return col.str.strip_chars(" ").str.strip_prefix("<").str.strip_suffix(">")


def _host(col: pl.Expr) -> pl.Expr:
    """``host. [ip] (may be forged)`` -> ``host[ip]``, the shape the other formats use; a
    client without a name (``[ip] [ip]``) is ``[ip]``. Literal edits: this runs per line."""
    col = col.str.strip_suffix(" (may be forged)")
    return pl.when(col.str.starts_with("[")).then(
        col.str.slice(0, col.str.find("]", literal=True) + 1)
    ).otherwise(col.str.replace(". [", "[", literal=True).str.replace(" [", "[", literal=True)
                .str.strip_suffix("."))


def _seconds(col: pl.Expr) -> pl.Expr:
    """Sendmail's pintvl ``[d+]hh:mm:ss`` -> seconds (hh is below 24)."""
    hms = col.str.slice(-8).str.to_time("%H:%M:%S", strict=False).cast(pl.Int64) // 1_000_000_000
    days = col.str.slice(0, (col.str.len_bytes() - 9).clip(0)).cast(pl.Int64, strict=False)
    return (days.fill_null(0) * 86400 + hms).cast(pl.Float64)


def _after(text: pl.Expr, key: str) -> pl.Expr:
    """The value of ``key`` in a ", "-separated list: from the first ``key`` to the next
    ", " (null without the key). Literal finds: far cheaper than a pattern per line."""
    # literal splits, not find + slice: find counts bytes and slice characters, which
    # disagree on a non-ASCII address
    after = text.str.splitn(key, 2).struct.field("field_1")
    return after.str.splitn(", ", 2).struct.field("field_0")


def _received(sub: pl.DataFrame) -> pl.DataFrame:
    """``from=<s>, size=N, class=N, [pri=N, ]nrcpts=N[, msgid=<id>][, ...], relay=R``.

    The Message-ID is taken to its closing ">", and the client from the ", relay=" after
    it, so a Message-ID holding ", relay=" cannot pose as the client.
    """
    rest = pl.col("rest")
    # literal splits (see _after): the Message-ID, then what follows it
    sub = sub.with_columns(_after_mid=rest.str.splitn(", msgid=", 2).struct.field("field_1"))
    after_mid = pl.col("_after_mid")
    bracketed = after_mid.str.starts_with("<")
    by_bracket = after_mid.str.splitn(">", 2)
    by_comma = after_mid.str.splitn(", ", 2)
    sub = sub.with_columns(
        _mid=pl.when(bracketed).then(by_bracket.struct.field("field_0") + ">")
        .otherwise(by_comma.struct.field("field_0")),
        _tail=pl.when(after_mid.is_null()).then(rest)
        .when(bracketed).then(by_bracket.struct.field("field_1"))
        .otherwise(pl.lit(", ") + by_comma.struct.field("field_1")),
    )
    nrcpt = _after(rest, ", nrcpts=")
    return sub.with_columns(
        kind=pl.when(nrcpt == "0").then(pl.lit("aborted")).otherwise("kind"),
        sender=_address(rest.str.splitn(", size=", 2).struct.field("field_0").str.slice(5)),
        size=_after(rest, ", size="),
        nrcpt=nrcpt,
        message_id=_address(pl.col("_mid")),
        client=_host(pl.col("_tail").str.splitn(", relay=", 2).struct.field("field_1")),
    ).drop("_mid", "_tail", "_after_mid")


def _header(sub: pl.DataFrame) -> pl.DataFrame:
    """``Subject: value`` (also In-Reply-To, References), the value as logged."""
    rest, kind = pl.col("rest"), pl.col("kind")
    value = rest.str.slice(rest.str.find(":", literal=True) + 1).str.strip_prefix(" ")
    # ${currHeader} arrives in double quotes
    quoted = value.str.starts_with('"') & value.str.ends_with('"') & (value.str.len_chars() > 1)
    value = pl.when(quoted).then(value.str.slice(1, value.str.len_chars() - 2)).otherwise(value)
    return sub.with_columns(
        subject=pl.when(kind == "header_subject").then(value),
        in_reply_to=pl.when(kind == "header_in_reply_to").then(_address(value)),
        refs=pl.when(kind == "header_references").then(value),
    )


def _session(sub: pl.DataFrame) -> pl.DataFrame:
    """``STARTTLS=server, relay=host [ip], ...`` / ``AUTH=server, relay=...``; on the
    client side (STARTTLS=client) sendmail is the client and relay= names the next hop."""
    host = _host(_after(pl.col("rest"), ", relay="))
    outbound = pl.col("rest").str.contains(r"^(?:STARTTLS|AUTH)=client")
    return sub.with_columns(client=pl.when(~outbound).then(host),
                            relay=pl.when(outbound).then(host))


def _ruleset(sub: pl.DataFrame) -> pl.DataFrame:
    """``ruleset=check_rcpt, arg1=<a>, relay=R, reject=550 5.7.1 ...``: check_rcpt names
    a recipient, check_mail a sender; the reply's enhanced code is the dsn."""
    sub = sub.with_columns(pl.col("rest").str.extract_groups(_FIELDS["ruleset_reject"])
                           .alias("_f")).unnest("_f")
    rs, arg1 = pl.col("ruleset"), _address(pl.col("arg1"))
    return sub.with_columns(
        recipient=pl.when(rs == "check_rcpt").then(arg1),
        sender=pl.when(rs == "check_mail").then(arg1),
        status=pl.coalesce("status", "discard"),
        client=_host(pl.col("client")),
        dsn=pl.col("detail").str.extract(r"^\d{3}[ -](\d\.\d{1,3}\.\d{1,3})\b", 1),
    ).drop("ruleset", "arg1", "discard")


def _delivery(frame: pl.DataFrame) -> pl.DataFrame:
    """to= lines, one row per recipient, by literal splits.

    ``to=LIST[, [more]][, ctladdr=C (u/g)], delay=..., ..., stat=TEXT``: the recipient list
    ends at the first ", ctladdr=" or ", delay="; ", stat=" starts the free text; between
    them are ", "-separated key=value pairs found by key. Every field is taken per line;
    only the few output columns are repeated per recipient.
    """
    # literal splits, not find + slice: find counts bytes and slice characters, which
    # disagree on a non-ASCII address
    parts = pl.col("rest").str.splitn(", delay=", 2)
    frame = frame.select("ts", "host", "line_no", "prog", "kind", "queue_id",
                         _head=parts.struct.field("field_0").str.strip_prefix("to="),
                         _tail=pl.lit("delay=") + parts.struct.field("field_1"))
    head = pl.col("_head").str.splitn(", ctladdr=", 2)
    tail = pl.col("_tail").str.splitn(", stat=", 2)
    frame = frame.with_columns(
        _to=head.struct.field("field_0").str.strip_suffix(" [more]").str.strip_suffix(","),
        _ctl=head.struct.field("field_1").fill_null(""),
        _kv=tail.struct.field("field_0"),
        _stat=tail.struct.field("field_1"),
    )
    kv, stat, to = pl.col("_kv"), pl.col("_stat"), pl.col("_to")

    def value(key: str) -> pl.Expr:  # to the next ", ": robust to keys added in between
        after = kv.str.splitn(key, 2).struct.field("field_1")
        return after.str.splitn(", ", 2).struct.field("field_0")

    detail = (
        pl.when(stat.str.starts_with("Sent (")).then(stat.str.slice(6).str.strip_suffix(")"))
        .when(stat.str.starts_with("Deferred: ")).then(stat.str.slice(10))
        .when(stat.is_in(["Sent", "Deferred", "queued"])).then(None)
        .otherwise(stat)
    )
    # programs and files are quoted: commas inside them are not separators
    quoted = to.str.starts_with('"')
    mailer = value(", mailer=")
    frame = frame.select(
        "ts", "host", "line_no", "kind", "queue_id", program="prog",
        delay=_seconds(kv.str.splitn(",", 2).struct.field("field_0").str.slice(6)),  # first
        # local, prog and the like deliver on this host: their mailer is the relay
        relay=pl.coalesce(_host(value(", relay=")), pl.when(
            ~mailer.is_in(["esmtp", "smtp", "smtp8", "dsmtp", "relay"])).then(mailer)),
        dsn=value(", dsn="),
        status=pl.when(stat.str.starts_with("Sent")).then(pl.lit("sent"))
        .when(stat.str.starts_with("Deferred") | stat.str.starts_with("queued"))
        .then(pl.lit("deferred"))
        .when(stat.str.starts_with("Cannot send message")).then(pl.lit("expired"))
        .otherwise(pl.lit("bounced")),
        detail=detail,
        # a list or alias shows as the controlling address (<list@dom> (8/0)) or as an
        # :include: file; a bare name (root (0/0)) is the local submitter, not a list
        orig_to=pl.col("_ctl").str.extract(r"^<([^<>]+)>(?: \(|$)", 1)
        .fill_null(pl.col("_ctl").str.extract(r"^(:include:\S*)", 1)),
        recipient=pl.when(quoted).then(pl.concat_list(to))
        .otherwise(to.str.replace_all("[<>]", "").str.split(",")),
    )
    # the groups extracted once into a column (an expression used thrice runs thrice)
    frame = frame.with_columns(pl.col("detail").str.extract_groups(_NEXT_QID).alias("_hop"))
    hop = pl.col("_hop")
    frame = frame.with_columns(next_queue_id=pl.when(pl.col("status") == "sent").then(
        pl.coalesce(hop.struct.field("1"), hop.struct.field("2"), hop.struct.field("3")))
    ).drop("_hop")
    rcpt, orig = pl.col("recipient"), pl.col("orig_to")
    return frame.explode("recipient").with_columns(
        recipient=pl.when(rcpt.str.len_bytes() > 0).then(rcpt.str.strip_chars(" ")),
        orig_to=pl.when(orig != rcpt).then(orig),  # the member's own address is no list
    )


def _expansion(sub: pl.DataFrame) -> pl.DataFrame:
    """``alias <list@dom> => a,b,c``: one row per member. Sendmail shortens a long member
    list to its head and tail around "..."; the cut-off names are left out."""
    sub = sub.with_columns(pl.col("rest").str.extract_groups(_FIELDS["expansion"]).alias("_f")) \
        .unnest("_f")
    members = pl.col("members")
    sub = sub.with_columns(
        orig_to=_address(pl.col("orig_to")),
        recipient=pl.when(members.str.starts_with('"')).then(pl.concat_list(members))
        .otherwise(members.str.split(",")),
    ).drop("members").explode("recipient")
    rcpt = _address(pl.col("recipient"))
    sub = sub.with_columns(recipient=pl.when(
        ~rcpt.str.contains("...", literal=True) & (rcpt.str.len_bytes() > 0)).then(rcpt))
    # drop the cut-off names, but keep one row for a line that has no whole name
    named = pl.col("recipient").is_not_null()
    return sub.filter(named | (named.sum().over("line_no") == 0)).unique(
        ["line_no", "recipient"], keep="first", maintain_order=True)


def _with_fields(frame: pl.DataFrame) -> pl.DataFrame:
    """Extract each kind's fields on the rows of that kind only, then stack them."""
    group = pl.col("kind").replace_strict(_FIELD_GROUP, default=None, return_dtype=pl.String)
    frame = frame.with_columns(group.alias("_group"))
    # delivery lines are parsed apart (see parse); these have extractors of their own
    special = {"expansion": _expansion, "received": _received, "header": _header,
               "tls": _session, "ruleset_reject": _ruleset}
    extracted = [*_FIELDS, *(k for k in special if k not in _FIELDS)]
    parts = [frame.filter(~pl.col("_group").is_in(extracted) | pl.col("_group").is_null())]
    for name in extracted:
        sub = frame.filter(pl.col("_group") == name)
        if not sub.height:
            continue
        if name in special:
            parts.append(special[name](sub))
        else:
            sub = sub.with_columns(
                pl.col("rest").str.extract_groups(_FIELDS[name]).alias("_f")).unnest("_f")
            if "client" in sub.columns:
                sub = sub.with_columns(client=_host(pl.col("client")))
            parts.append(sub)
    return pl.concat(parts, how="diagonal_relaxed")


def _working_columns(lines: pl.DataFrame, ctx: ParseContext) -> pl.DataFrame:
    """The header split, and the columns the kind table tests: prog, queue_id, rest."""
    frame = add_timestamps(_split(lines), ctx.tz, ctx.years)
    if frame["msg"].str.starts_with("[ID ").any():  # Solaris: "[ID 801593 mail.info] "
        frame = frame.with_columns(pl.col("msg").str.replace(r"^\[ID \d+ [\w.]+\] ", ""))
    frame = frame.with_columns(queue_id=pl.col("msg").str.extract(_QID, 1))
    frame = frame.with_columns(
        rest=pl.when(pl.col("queue_id").is_null()).then(pl.col("msg"))
        .otherwise(pl.col("msg").str.slice(pl.col("queue_id").str.len_bytes() + 2)),
    )
    return frame


def parse(lines: pl.DataFrame, ctx: ParseContext) -> pl.DataFrame:
    """Turn a batch of raw lines (columns raw, line_no) into the events frame."""
    frame = _with_kinds(_working_columns(lines, ctx))
    # delivery lines, the bulk of a log, become one row per recipient: parsed on their own
    # into a slim frame, so the other lines' columns are not repeated per recipient
    is_delivery = frame["kind"] == "delivery"
    deliveries = _delivery(frame.filter(is_delivery))
    # only what the fields are taken from travels on: raw only where it is kept
    others = frame.filter(~is_delivery).select(
        "ts", "host", "line_no", "kind", "rest", program="prog",
        queue_id=pl.when(pl.col("queue_id") != "NOQUEUE").then("queue_id"),
        raw=pl.when(pl.col("kind").is_in(KEEP_RAW)).then("raw"),
    )
    return pl.concat([finish(_with_fields(others), ctx), finish(deliveries, ctx)])
