"""Postfix (and its neighbours in the same syslog file) -> events, vectorized.

One pass splits the syslog header, one anchored pattern peels the queue id, a chain of
literal prefix tests gives every line a kind, and each kind's fields are extracted only
on the rows of that kind with one anchored pattern. Lines of other programs (dovecot,
amavis, opendkim...) are ``foreign``; Postfix lines matching no known shape, and lines
without a syslog header, are ``unparsed``. Both keep their raw text.
"""

from __future__ import annotations

import re

import polars as pl

from detector.formats.context import ParseContext
from detector.formats.syslog import parse_header
from detector.schema import addressed_directly, conform

NAME = "postfix"

KINDS: dict[str, str] = {
    "smtpd_connect": "smtpd: connect from a client",
    "smtpd_disconnect": "smtpd: disconnect, with per-command counters",
    "smtpd_client": "smtpd: message accepted into the queue (client=)",
    "smtpd_reject": "smtpd: reject/warn/hold/discard of a queued message",
    "noqueue": "smtpd: NOQUEUE reject/warn/filter before queueing",
    "milter": "a milter action on a message (milter-reject...)",
    "proxy_reject": "smtpd: before-queue content filter (smtpd_proxy_filter) rejected a message",
    "proxy_accept": "smtpd: before-queue content filter accepted a message (queued as: next id)",
    "pickup": "pickup: locally submitted message (uid= from=)",
    "cleanup_message_id": "cleanup: the Message-ID of a queued message",
    "cleanup_resent_message_id": "cleanup: Resent-Message-ID",
    "header_subject": "header_checks INFO/WARN line logging Subject",
    "header_in_reply_to": "header_checks line logging In-Reply-To",
    "header_references": "header_checks line logging References",
    "header_check": "other header/body_checks action",
    "qmgr_from": "qmgr: sender, size and recipient count (queue active)",
    "qmgr_expired": "qmgr: message expired, returned to sender",
    "queue_removed": "qmgr/postsuper: message removed from the queue",
    "delivery": "smtp/lmtp/local/virtual/pipe/error: one recipient delivery attempt",
    "bounce_notification": "bounce: sender non-delivery/delay/success notification",
    "smtp_session": "smtp: remote host said / lost connection, about a message",
    "queue_note": "other queue-id prefixed notice",
    "connect_failure": "smtp: connect to a remote host failed",
    "session_error": "lost connection / timeout / too many errors after a command",
    "tls": "TLS session set-up, certificates, SSL errors",
    "sasl": "SASL authentication notices and failures",
    "postscreen": "postscreen: CONNECT, PASS, PREGREET, DNSBL, HANGUP...",
    "dnsblog": "dnsblog: address listed by a DNSBL",
    "anvil": "anvil: connection/rate statistics",
    "scache": "scache: connection cache statistics",
    "daemon": "master/postfix-script: start, stop, reload, daemon notices",
    "postsuper": "postsuper: hold, release, requeue, delete",
    "debug": "verbose (-v / debug_peer_list) trace of Postfix internals",
    "warning": "other warning",
    "fatal": "fatal, panic or error",
    "foreign": "a line of another program in the same log (dovecot, amavis...)",
    "unparsed": "no syslog header, or a Postfix message of unknown shape",
}

_PROGRAM = re.compile(r"(?:^|\s)postfix(?:-[^/\s]+)?/[\w/-]+\[\d+\]: ")
# the syslog program names of this format's lines (postfix/smtpd, postfix-out/smtp...)
SYSLOG_PROGRAM = r"postfix[^\s\[:]*"
_QID = r"^(?:[0-9A-F]{5,}X*|[0-9BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz]{10,}|NOQUEUE)$"
# The shapes that make most of a busy log, told apart by their first words in one anchored
# pass; every other line goes through the full chain in _classify().
_FAST_QUEUED = {  # after a queue id
    "to=<": "delivery", "client=": "smtpd_client", "message-id=": "cleanup_message_id",
    "from=<": "qmgr_from", "removed": "queue_removed", "uid=": "pickup",
    "info: header Subject:": "header_subject",
    "info: header In-Reply-To:": "header_in_reply_to",
    "info: header References:": "header_references",
    # also after NOQUEUE: the after-filter Postfix queued it, this smtpd has no queue id
    "proxy-reject: ": "proxy_reject", "proxy-accept: ": "proxy_accept",
}
_FAST_UNQUEUED = {
    "connect from ": "smtpd_connect", "disconnect from ": "smtpd_disconnect",
    "connect to ": "connect_failure",
}
_FAST = "^(" + "|".join(
    re.escape(k) + ("$" if k == "removed" else "") for k in {**_FAST_QUEUED, **_FAST_UNQUEUED}
) + ")"
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
_FIELD_GROUP = {
    "header_subject": "header",
    "header_in_reply_to": "header",
    "header_references": "header",
    "noqueue": "reject",
    "smtpd_reject": "reject",
    "milter": "reject",
    "proxy_reject": "proxy",
    "proxy_accept": "proxy",
    "smtpd_connect": "connect",
    "smtpd_disconnect": "connect",
    "smtp_session": "detail",
    "warning": "detail",
    "fatal": "detail",
    "queue_note": "detail",
    "connect_failure": "detail",
    "session_error": "detail",
}
_KEEP_RAW = ("foreign", "unparsed")
_PROXY_KINDS = ("proxy_reject", "proxy_accept")
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


def sniff(lines: list[str]) -> bool:
    """A syslog file with Postfix lines among its first lines."""
    return any(_PROGRAM.search(line) for line in lines)


def _classify() -> pl.Expr:
    r, dm, qid = pl.col("rest"), pl.col("daemon"), pl.col("queue_id")
    has_qid = qid.is_not_null() & (qid != "NOQUEUE")
    starts = r.str.starts_with
    header_action = r.str.contains(r"^[a-z_]+: (?:header|body) ")
    return (
        pl.when(pl.col("prog").is_null()).then(pl.lit("unparsed"))
        .when(~pl.col("prog").str.starts_with("postfix")).then(pl.lit("foreign"))
        .when(starts("proxy-reject: ")).then(pl.lit("proxy_reject"))
        .when(starts("proxy-accept: ")).then(pl.lit("proxy_accept"))
        .when(qid == "NOQUEUE").then(pl.lit("noqueue"))
        .when(has_qid & starts("to=<")).then(pl.lit("delivery"))
        .when(has_qid & starts("client=")).then(pl.lit("smtpd_client"))
        .when(has_qid & starts("message-id=")).then(pl.lit("cleanup_message_id"))
        .when(has_qid & starts("resent-message-id=")).then(pl.lit("cleanup_resent_message_id"))
        .when(has_qid & starts("from=<") & r.str.contains(", status=(?:force-)?expired"))
        .then(pl.lit("qmgr_expired"))
        .when(has_qid & starts("from=<")).then(pl.lit("qmgr_from"))
        .when(has_qid & (r == "removed")).then(pl.lit("queue_removed"))
        .when(has_qid & header_action & r.str.contains(": header Subject:", literal=True))
        .then(pl.lit("header_subject"))
        .when(has_qid & header_action & r.str.contains(": header In-Reply-To:", literal=True))
        .then(pl.lit("header_in_reply_to"))
        .when(has_qid & header_action & r.str.contains(": header References:", literal=True))
        .then(pl.lit("header_references"))
        .when(has_qid & header_action).then(pl.lit("header_check"))
        .when(has_qid & starts("milter-")).then(pl.lit("milter"))
        .when(has_qid & starts("uid=")).then(pl.lit("pickup"))
        .when(has_qid & r.str.contains(r"^(?:sender|postmaster) [\w-]+(?: [\w-]+)? notification"))
        .then(pl.lit("bounce_notification"))
        .when(has_qid & r.str.contains(r"^(?:reject|reject_warning|warn|hold|discard|filter|"
                                       r"redirect|prepend|replace|bcc): "))
        .then(pl.lit("smtpd_reject"))
        .when(has_qid & r.str.contains(r"^(?:host |lost connection|conversation with |enabling PIX"
                                       r"|Server certificate|Trusted|Untrusted|Verified|"
                                       r"Anonymous TLS)"))
        .then(pl.lit("smtp_session"))
        .when(has_qid & (dm == "postsuper")).then(pl.lit("postsuper"))
        .when(has_qid).then(pl.lit("queue_note"))
        .when(starts("connect from ")).then(pl.lit("smtpd_connect"))
        .when(starts("disconnect from ")).then(pl.lit("smtpd_disconnect"))
        .when(starts("connect to ")).then(pl.lit("connect_failure"))
        .when(r.str.contains(r"^(?:lost connection|timeout|too many errors|improper command "
                             r"pipelining|SSL_accept error|reject: )"))
        .then(pl.lit("session_error"))
        .when(r.str.contains(r"(?i)sasl|authentication fail")).then(pl.lit("sasl"))
        .when(r.str.contains(r"TLS|SSL|certificate|tls_|[Cc]ipher")).then(pl.lit("tls"))
        .when(dm == "postscreen").then(pl.lit("postscreen"))
        .when(dm == "tlsproxy").then(pl.lit("tls"))
        .when(dm == "dnsblog").then(pl.lit("dnsblog"))
        .when(dm == "anvil").then(pl.lit("anvil"))
        .when(dm == "scache").then(pl.lit("scache"))
        .when(dm == "postsuper").then(pl.lit("postsuper"))
        .when(r.str.contains(r"^(?:fatal|panic|error): ")).then(pl.lit("fatal"))
        # before debug: "warning: " would match debug's "<word>: " start
        .when(starts("warning: ")).then(pl.lit("warning"))
        .when(r.str.contains(_DEBUG)).then(pl.lit("debug"))
        .when(dm.is_in(["master", "postfix-script", "postfix", "postlog", "postmulti"])
              | r.str.contains(r"^(?:daemon started|terminating on signal|reload|starting the "
                               r"Postfix|stopping the Postfix|refreshing the Postfix"
                               r"|table \S+ has changed)"))
        .then(pl.lit("daemon"))
        .otherwise(pl.lit("unparsed"))
    )


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
    group = pl.col("kind").replace_strict(
        {k: _FIELD_GROUP.get(k, k) for k in KINDS}, default=None
    )
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
    return (
        pl.when(pl.col("prog").is_null()).then(pl.lit("unparsed"))
        .when(~pl.col("prog").str.starts_with("postfix")).then(pl.lit("foreign"))
        .when((qid == "NOQUEUE") & ~queued.is_in(_PROXY_KINDS)).then(pl.lit("noqueue"))
        .when(qid.is_not_null()).then(
            # "from=<..., status=expired" is qmgr_expired: left to the full chain
            pl.when((queued == "qmgr_from") & pl.col("rest").str.contains(", status=",
                                                                         literal=True))
            .then(None).otherwise(queued))
        .otherwise(token.replace_strict(_FAST_UNQUEUED, default=None, return_dtype=pl.String))
    )


def _with_kinds(frame: pl.DataFrame) -> pl.DataFrame:
    """Kind of every line: the fast path first, the full chain for the rest."""
    # the first words, extracted once (an expression used twice would run twice)
    frame = frame.with_columns(pl.col("rest").str.extract(_FAST, 1).alias("_token"))
    frame = frame.with_columns(kind=_fast_kind()).drop("_token")
    todo = frame["kind"].is_null()
    if not todo.any():
        return frame
    # classify the rest on their own rows and put the kinds back in place (no frame copy)
    slow = frame.select("rest", "queue_id", "prog").filter(todo).with_columns(
        pl.col("prog").str.extract(r"([^/]+)$").alias("daemon")) \
        .select(kind=_classify())["kind"]
    kinds = frame["kind"].scatter(todo.arg_true(), slow)
    return frame.with_columns(kinds)


def parse(lines: pl.DataFrame, ctx: ParseContext) -> pl.DataFrame:
    """Turn a batch of raw lines (columns raw, line_no) into the events frame."""
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
        source_file=pl.lit(ctx.source_file),
        queue_id=pl.when(pl.col("queue_id") != "NOQUEUE").then("queue_id"),
        raw=pl.when(pl.col("kind").is_in(_KEEP_RAW)).then("raw"),
    )
    # a corrupt number (delay=0.1.7, a 30-digit size) must not stop the whole file
    frame = frame.with_columns(
        pl.col(name).cast(dtype, strict=False)
        for name, dtype in (("size", pl.Int64), ("nrcpt", pl.Int64), ("delay", pl.Float64))
        if name in frame.columns
    )
    if "subject" in frame.columns:
        from detector.model.subjects import decode_rfc2047

        frame = frame.with_columns(decode_rfc2047(frame["subject"]).alias("subject"))
    # a delivery line that names no list says the recipient was addressed directly
    return conform(addressed_directly(frame)).collect()
