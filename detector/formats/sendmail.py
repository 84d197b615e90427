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
from detector.formats.syslog import add_timestamps, split_header
from detector.schema import conform

NAME = "sendmail"

KINDS: dict[str, str] = {
    "received": "from= line: a message accepted into the queue (sender, size, nrcpts, msgid)",
    "aborted": "from= line with nrcpts=0: an envelope dropped before any recipient was "
               "accepted (all refused, or the client quit); nothing was queued",
    "delivery": "to= line: one row per recipient of a delivery transaction (stat=Sent...)",
    "expansion": "alias X => Y (LogLevel > 10): one row per member the alias names",
    "header_subject": "Subject header logged by a header-check ruleset (syslog map)",
    "header_in_reply_to": "In-Reply-To header logged by a header-check ruleset",
    "header_references": "References header logged by a header-check ruleset",
    "dsn": "QID: QID2: DSN: / return to sender: a bounce message QID2 was created",
    "dsn_notify": "QID: QID2: sender notify: / postmaster notify: (delay warnings...)",
    "clone": "QID: QID2: clone: owner=... the envelope was split for a list owner",
    "queue_done": "done; delay=..., ntries=N: the envelope left the queue",
    "rcpt_reject": "<addr>... User unknown: an address refused during the SMTP dialogue",
    "ruleset_reject": "ruleset=check_*, arg1=..., relay=..., reject=/discard/quarantine",
    "milter": "Milter actions and notices",
    "tls": "STARTTLS=server/client session set-up, TLS errors",
    "auth": "AUTH=server/client: successful SMTP AUTH",
    "auth_failure": "AUTH failure (mech): failed SMTP AUTH",
    "session_error": "lost input channel, did not issue MAIL..., timeouts, collect: errors, "
                     "possible SMTP attack, pre-greeting traffic",
    "expn_vrfy": "EXPN/VRFY request (usually rejected)",
    "connect": "NOQUEUE: connect from (LogLevel > 9)",
    "smtp_trace": "--- / <-- / --> SMTP transcript lines (high LogLevel)",
    "syserr": "SYSERR: a system error",
    "warning": "other warnings and errors",
    "daemon": "daemon start/stop, alias database rebuilds, load-average refusals",
    "queue_note": "other queue-id prefixed notice",
    "foreign": "a line of another program in the same log",
    "unparsed": "no syslog header, or a sendmail message of unknown shape",
}

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
_FAST = {
    "to=": "delivery", "from=": "received", "Subject:": "header_subject",
    "In-Reply-To:": "header_in_reply_to", "References:": "header_references",
    "STARTTLS=": "tls", "AUTH=": "auth", "ruleset=": "ruleset_reject",
}
_FAST_PATTERN = "^(" + "|".join(re.escape(k) for k in _FAST) + ")"
_NOTIFY = rf"^(?:({_QID_TOKEN}): )?(DSN|return to sender|sender notify|postmaster notify|clone): "
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
_FIELD_GROUP = {
    "header_subject": "header", "header_in_reply_to": "header",
    "header_references": "header", "auth": "tls", "dsn": "notify", "dsn_notify": "notify",
    "clone": "notify", "session_error": "detail", "syserr": "detail", "warning": "detail",
    "milter": "detail", "queue_note": "detail", "expn_vrfy": "detail",
    "queue_done": "detail", "daemon": "detail",
}
_KEEP_RAW = ("foreign", "unparsed")
# a reply naming the next hop's queue id: Postfix, sendmail and Exim receivers
_NEXT_QID = (
    r"(?:queued as:? ([0-9A-Za-z]{5,})|^([0-9A-Za-z]{8}\d{5,8}) Message accepted for delivery"
    r"|^OK id=([0-9A-Za-z]{6}-[0-9A-Za-z]{6,11}-[0-9A-Za-z]{2,4}))"
)


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


def _classify() -> pl.Expr:
    r, qid = pl.col("rest"), pl.col("queue_id")
    has_qid = qid.is_not_null() & (qid != "NOQUEUE")
    starts = r.str.starts_with
    notify = r.str.extract(_NOTIFY, 2)
    return (
        pl.when(notify.is_in(["DSN", "return to sender"])).then(pl.lit("dsn"))
        .when(notify == "clone").then(pl.lit("clone"))
        .when(notify.is_not_null()).then(pl.lit("dsn_notify"))
        .when(starts("alias ") & r.str.contains(" => ", literal=True))
        .then(pl.lit("expansion"))
        .when(starts("done; ") | (r == "done")).then(pl.lit("queue_done"))
        .when(r.str.contains(r"^<?[^\s<>]*>?\.\.\. ")).then(pl.lit("rcpt_reject"))
        .when(r.str.contains(r"^(?:Milter|milter)")).then(pl.lit("milter"))
        .when(r.str.contains(r"^(?:STARTTLS|TLS|SSL)")).then(pl.lit("tls"))
        .when(starts("AUTH failure")).then(pl.lit("auth_failure"))
        .when(r.str.contains(r"^(?:AUTH|SASL)")).then(pl.lit("auth"))
        .when(r.str.contains(r"^(?:.*: )?(?:EXPN|VRFY|expn|vrfy) ")).then(pl.lit("expn_vrfy"))
        .when(starts("connect from ")).then(pl.lit("connect"))
        .when(r.str.contains(r"^(?:---|<--|-->|<<<|>>>) ")).then(pl.lit("smtp_trace"))
        .when(r.str.contains(r"^(?:\S+: )?SYSERR")).then(pl.lit("syserr"))
        .when(r.str.contains(_SESSION)).then(pl.lit("session_error"))
        .when(r.str.contains(r"(?i)^(?:warning|error|Losing |savemail panic|unable to|"
                             r"cannot |can not |\S+: cannot )")).then(pl.lit("warning"))
        .when(~has_qid & r.str.contains(_DAEMON)).then(pl.lit("daemon"))
        .when(has_qid | (qid == "NOQUEUE")).then(pl.lit("queue_note"))
        .otherwise(pl.lit("unparsed"))
    )


def _with_kinds(frame: pl.DataFrame) -> pl.DataFrame:
    """Kind of every line: the common shapes by their first word, the rest by the chain."""
    token = pl.col("rest").str.extract(_FAST_PATTERN, 1)
    qid = pl.col("queue_id")
    fast = token.replace_strict(_FAST, default=None, return_dtype=pl.String)
    frame = frame.with_columns(kind=(
        pl.when(pl.col("prog").is_null()).then(pl.lit("unparsed"))
        .when(~pl.col("prog").str.contains(_PROG)).then(pl.lit("foreign"))
        # envelope lines only with a real queue id; header values only of a queued message
        .when(fast.is_in(["delivery", "received", "header_subject", "header_in_reply_to",
                          "header_references"]) & (qid.is_null() | (qid == "NOQUEUE")))
        .then(None)
        .otherwise(fast)
    ))
    todo = frame["kind"].is_null()
    if not todo.any():
        return frame
    slow = frame.select("rest", "queue_id").filter(todo).select(kind=_classify())["kind"]
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
    group = pl.col("kind").replace_strict(
        {k: _FIELD_GROUP.get(k, k) for k in KINDS}, default=None)
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


def parse(lines: pl.DataFrame, ctx: ParseContext) -> pl.DataFrame:
    """Turn a batch of raw lines (columns raw, line_no) into the events frame."""
    frame = add_timestamps(_split(lines), ctx.tz, ctx.years)
    if frame["msg"].str.starts_with("[ID ").any():  # Solaris: "[ID 801593 mail.info] "
        frame = frame.with_columns(pl.col("msg").str.replace(r"^\[ID \d+ [\w.]+\] ", ""))
    frame = frame.with_columns(queue_id=pl.col("msg").str.extract(_QID, 1))
    frame = frame.with_columns(
        rest=pl.when(pl.col("queue_id").is_null()).then(pl.col("msg"))
        .otherwise(pl.col("msg").str.slice(pl.col("queue_id").str.len_bytes() + 2)),
    )
    frame = _with_kinds(frame)
    # delivery lines, the bulk of a log, become one row per recipient: parsed on their own
    # into a slim frame, so the other lines' columns are not repeated per recipient
    is_delivery = frame["kind"] == "delivery"
    deliveries = _delivery(frame.filter(is_delivery)).with_columns(
        source_file=pl.lit(ctx.source_file))
    # only what the fields are taken from travels on: raw is kept for two kinds only
    others = frame.filter(~is_delivery).select(
        "ts", "host", "line_no", "kind", "rest", program="prog",
        queue_id=pl.when(pl.col("queue_id") != "NOQUEUE").then("queue_id"),
        raw=pl.when(pl.col("kind").is_in(_KEEP_RAW)).then("raw"),
    )
    frame = _with_fields(others).with_columns(source_file=pl.lit(ctx.source_file))
    # a corrupt number (a 30-digit size) must not stop the whole file
    frame = frame.with_columns(
        pl.col(name).cast(dtype, strict=False)
        for name, dtype in (("size", pl.Int64), ("nrcpt", pl.Int64))
        if name in frame.columns
    )
    if "subject" in frame.columns:
        from detector.model.subjects import decode_rfc2047

        frame = frame.with_columns(decode_rfc2047(frame["subject"]).alias("subject"))
    return pl.concat([conform(frame).collect(), conform(deliveries).collect()])
