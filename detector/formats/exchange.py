"""Exchange Server message tracking logs (MSGTRK, MSGTRKMS, MSGTRKMD, MSGTRKMA) -> events.

A message tracking log is CSV under a W3C-style header (``#Software``, ``#Version``,
``#Log-type: Message Tracking Log``, ``#Date``, ``#Fields``). The ``#Fields`` line names
the columns, and differs by version: Exchange 2010 writes 26 fields, 2013 adds
``network-message-id`` (27), 2016/2019 add ``transport-traffic-type``, ``log-id`` and
``schema-version`` (30). Columns are found by name, from the header in the file's first
lines (``ctx.head``) or from a ``#Fields`` line inside the batch (files concatenated with
``cat`` repeat their headers); rows of a file without a header are read with the field
list whose length matches its first row.

One row is one event of one message on one server. The events the model reads map onto
the shared kinds: RECEIVE and DSN (the creation of a non-delivery report) are
``received``; DELIVER, SEND, SENDEXTERNAL, FAIL and DEFER are ``delivery`` (one row per
recipient: ``recipient-address`` and ``recipient-status`` are ``;``-joined lists);
EXPAND is ``expansion`` (``related-recipient-address`` is the distribution group, one row
per member). Every other event is ``exchange_<event>``.

``internal-message-id`` is per server, so ``queue_id`` is ``<server>:<id>``. A file is
written by one server: the one most of its first rows name as their writer
(``server-hostname`` for most events, the sending side ``client-hostname`` for SEND
events and, in Exchange 2010, for DELIVER), short name in lower case, so that ``EX01``
and ``ex01.contoso.com`` agree. That server is the ``host`` of every row of the file.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import polars as pl

from detector.formats import csvlog
from detector.formats.context import ParseContext
from detector.schema import conform

NAME = "exchange"

FIELDS_2010 = (
    "date-time", "client-ip", "client-hostname", "server-ip", "server-hostname",
    "source-context", "connector-id", "source", "event-id", "internal-message-id",
    "message-id", "recipient-address", "recipient-status", "total-bytes", "recipient-count",
    "related-recipient-address", "reference", "message-subject", "sender-address",
    "return-path", "message-info", "directionality", "tenant-id", "original-client-ip",
    "original-server-ip", "custom-data",
)
FIELDS_2013 = (*FIELDS_2010[:11], "network-message-id", *FIELDS_2010[11:])
FIELDS_2016 = (*FIELDS_2013, "transport-traffic-type", "log-id", "schema-version")
_BY_COUNT = {len(f): f for f in (FIELDS_2010, FIELDS_2013, FIELDS_2016)}

#: event-id -> what Microsoft's "Message tracking" page says it means (2010 to 2019)
EVENTS: dict[str, str] = {
    "AGENTINFO": "a transport agent logged custom data",
    "BADMAIL": "a pickup/replay message that can be neither delivered nor returned",
    "CLIENTSUBMISSION": "a message was submitted from the Outbox of a mailbox",
    "DEFER": "delivery was delayed",
    "DELIVER": "delivered to a local mailbox",
    "DELIVERFAIL": "an agent tried to deliver to a folder that does not exist",
    "DROP": "dropped without a non-delivery report",
    "DSN": "a delivery status notification (bounce) was generated",
    "DUPLICATEDELIVER": "a duplicate copy reached the mailbox (the store removes it)",
    "DUPLICATEEXPAND": "a duplicate recipient was found while expanding a group",
    "DUPLICATEREDIRECT": "an alternate recipient was already a recipient",
    "EXPAND": "a distribution group was expanded",
    "FAIL": "delivery failed",
    "HADISCARD": "a shadow copy was discarded after the primary was delivered",
    "HARECEIVE": "a shadow copy was received",
    "HAREDIRECT": "a shadow copy was created",
    "HAREDIRECTFAIL": "a shadow copy could not be created",
    "INITMESSAGECREATED": "a message to a moderated recipient went to arbitration",
    "LOAD": "a message was loaded from the queue at boot",
    "MODERATIONEXPIRE": "a moderation request expired",
    "MODERATORAPPROVE": "a moderator approved the message",
    "MODERATORREJECT": "a moderator rejected the message",
    "MODERATORSALLNDR": "every moderation request bounced",
    "NOTIFYMAPI": "a message was found in a mailbox Outbox",
    "NOTIFYSHADOW": "a message was found in an Outbox and needs a shadow copy",
    "POISONMESSAGE": "a message entered or left the poison message queue",
    "PROCESS": "the message was processed",
    "PROCESSMEETINGMESSAGE": "a meeting message was processed",
    "RECEIVE": "received over SMTP or from a mailbox (STOREDRIVER)",
    "REDIRECT": "redirected to an alternate recipient",
    "RESOLVE": "a recipient was resolved to another address",
    "RESUBMIT": "resubmitted from Safety Net",
    "RESUBMITDEFER": "a Safety Net resubmission was deferred",
    "RESUBMITFAIL": "a Safety Net resubmission failed",
    "SEND": "sent over SMTP to another server",
    "SENDEXTERNAL": "sent over SMTP outside the organisation",
    "SUBMIT": "the submission service handed the message to transport",
    "SUBMITDEFER": "a hand-off from the submission service was deferred",
    "SUBMITDROP": "the submission service dropped the message",
    "SUBMITFAIL": "a hand-off from the submission service failed",
    "SUPPRESSED": "the transmission was suppressed",
    "THROTTLE": "the message was throttled",
    "TRANSFER": "recipients were moved to a forked copy",
}
# events read as the shared kinds of docs/formats.md; delivery events with their status
_SHARED = {"RECEIVE": "received", "DSN": "received", "EXPAND": "expansion",
           "DELIVER": "delivery", "SEND": "delivery", "SENDEXTERNAL": "delivery",
           "FAIL": "delivery", "DEFER": "delivery"}
_STATUS = {"DELIVER": "sent", "SEND": "sent", "SENDEXTERNAL": "sent", "FAIL": "bounced",
           "DEFER": "deferred"}
# events written by the sending side: client-hostname is the server whose log it is
_SENDING = ("SEND", "SENDEXTERNAL")

KINDS: dict[str, str] = {
    "received": "RECEIVE (SMTP or mailbox submission), or DSN: a message accepted here",
    "delivery": "DELIVER/SEND (sent), FAIL (bounced), DEFER (deferred): one per recipient",
    "expansion": "EXPAND: one member of the distribution group being expanded",
    **{f"exchange_{e.lower()}": d for e, d in EVENTS.items() if e not in _SHARED},
    "exchange_other": "an event-id not in Microsoft's list",
    "exchange_header": "a #Software/#Version/#Log-type/#Date/#Fields header line",
    "unparsed": "a line that is not a well-formed row (or a row cut by a batch boundary)",
}

# the fields read (the CSV reader skips the others: custom-data, log-id...)
_USED = frozenset({
    "date-time", "client-ip", "client-hostname", "server-ip", "server-hostname",
    "source-context", "source", "event-id", "internal-message-id", "message-id",
    "network-message-id", "recipient-address", "recipient-status", "total-bytes",
    "recipient-count", "related-recipient-address", "reference", "message-subject",
    "sender-address", "return-path", "message-info",
})
# a data row starts with its UTC timestamp; a '#' line is a header line
_START = r"^(?:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d|#)"
_STAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%.fZ"
_SOURCES = frozenset({
    "ADMIN", "AGENT", "APPROVAL", "BOOTLOADER", "DNS", "DSN", "GATEWAY", "MAILBOXRULE",
    "MEETINGMESSAGEPROCESSOR", "ORAR", "PICKUP", "POISONMESSAGE", "PUBLICFOLDER", "QUEUE",
    "REDUNDANCY", "ROUTING", "SAFETYNET", "SMTP", "STOREDRIVER",
})


def sniff(lines: list[str]) -> bool:
    """A message tracking header, or (headerless) rows with a source and an event-id."""
    rows = 0
    for line in lines[:50]:
        line = line.lstrip("\ufeff")
        if line.startswith(("#Log-type: Message Tracking Log", "#Fields: date-time,client-ip,")):
            return True
        if line[:4].isdigit() and line[10:11] == "T":
            row = next(csv.reader([line]), [])
            if len(row) >= 26 and row[7] in _SOURCES and row[8].isupper():
                rows += 1
    return rows > 0


@dataclass(frozen=True)
class _Layout:
    """How a file's rows read: field names, Exchange 2010 or later, the writing server."""

    fields: tuple[str, ...]
    v2010: bool
    server: str | None = None


@lru_cache(maxsize=16)  # once per file, not per batch (the head is the same tuple)
def _layout_of(head: tuple[str, ...]) -> _Layout:
    """The layout the file's first lines give: its #Fields and #Version, else (no header)
    the field list whose length fits the first row; and its server."""
    d = csvlog.directives(head)
    fields = tuple(csvlog.header_fields(d["fields"])) if "fields" in d else ()
    if not fields:
        first = next((x for x in head if x[:4].isdigit()), "")
        fields = _BY_COUNT.get(len(next(csv.reader([first]), [])) if first else 0, FIELDS_2016)
    v2010 = d.get("version", "").startswith("14.") or len(fields) == len(FIELDS_2010)
    layout = _Layout(fields, v2010)
    data = [x for x in head if x[:4].isdigit()]
    if data:  # the server most of the first rows name as their writer
        recs = csvlog.records(pl.DataFrame({"raw": data, "line_no": range(1, len(data) + 1)}))
        rows, _ = csvlog.table(recs.filter("ok"), list(fields), _USED)
        names = rows.select(_server(v2010)).to_series().drop_nulls().to_list()
        if names:
            layout = _Layout(fields, v2010, Counter(names).most_common(1)[0][0])
    return layout


def _col(name: str) -> pl.Expr:
    return pl.col(name)


def _short(host: pl.Expr) -> pl.Expr:
    """Lower-case first label of a host name (an IP address whole); null for none."""
    host = host.str.strip_chars().str.to_lowercase()
    ip = host.str.contains(r"^[\d.]+$|:")
    short = pl.when(ip).then(host).otherwise(host.str.extract(r"^([^.\s]+)", 1))
    return pl.when(short != "").then(short)


def _server(v2010: bool) -> pl.Expr:
    """The server that wrote the row (see the module docstring)."""
    event = _col("event-id").str.to_uppercase()
    sending = event.is_in(_SENDING) | ((event == "DELIVER") if v2010 else pl.lit(False))
    here = pl.when(sending).then(_col("client-hostname")).otherwise(_col("server-hostname"))
    return pl.coalesce(_short(here), _short(_col("client-hostname"))).alias("host")


def _endpoint(name: pl.Expr, ip: pl.Expr) -> pl.Expr:
    """host[ip] (Postfix's shape), or whichever of the two is known."""
    return (pl.when(name.is_not_null() & ip.is_not_null()).then(name + "[" + ip + "]")
            .otherwise(pl.coalesce(name, ip)))


def _bare_id(value: pl.Expr) -> pl.Expr:
    return value.str.strip_chars().str.strip_prefix("<").str.strip_suffix(">")


def tracking_events(rows: pl.DataFrame, *, v2010: bool = False, server: str | None = None,
                    queue: pl.Expr | None = None) -> pl.DataFrame:
    """Named string columns of message tracking rows (plus line_no and ``_raw``) -> events.

    ``server``: the host of every row (else the server most rows name as their writer);
    ``queue``: the queue id (else ``<host>:<internal-message-id>``). Microsoft 365's
    extended report, read by the m365 format, passes its own.
    """
    for name in set(FIELDS_2016) - set(rows.columns):  # a short header: absent fields
        rows = rows.with_columns(pl.lit(None, pl.String).alias(name))
    event = _col("event-id").str.strip_chars().str.to_uppercase()
    kind = event.replace_strict(
        {e: _SHARED.get(e, f"exchange_{e.lower()}") for e in EVENTS}, default="exchange_other")
    # one server writes a file: the server most rows name (per file, from its first
    # lines), so that every row of a message on it has the same host and queue id
    if server is None and rows.height:
        server = rows.select(_server(v2010).drop_nulls().mode().sort().first()).item()
    host = pl.lit(server, pl.String).alias("host") if server else _server(v2010)
    if queue is None:
        queue = pl.col("host") + ":" + _col("internal-message-id").str.strip_chars()
    frame = rows.with_columns(
        _col("date-time").str.strip_chars()
        .str.to_datetime(_STAMP_FORMAT, time_unit="us", strict=False)
        .dt.replace_time_zone("UTC").alias("ts"),
        kind.alias("kind"),
        event.alias("_event"),
        host,
        _col("source").str.strip_chars().alias("program"),
    ).with_columns(
        # a row without a readable time or event is no row (a damaged or foreign line)
        pl.when(pl.col("ts").is_null() | pl.col("_event").is_null())
        .then(pl.lit("unparsed")).otherwise("kind").alias("kind"),
        queue.alias("queue_id"),
        _bare_id(_col("message-id")).alias("message_id"),
    )
    kind_col = frame["kind"]
    parts = [frame.filter(kind_col == "unparsed").select("line_no", "kind",
                                                         pl.col("_raw").alias("raw")),
             _facts(frame.filter(~kind_col.is_in(["delivery", "expansion", "unparsed"]))),
             _deliveries(frame.filter(kind_col == "delivery")),
             _members(frame.filter(kind_col == "expansion"))]
    # each part in the events schema, so that stacking them copies nothing
    return pl.concat([conform(p).collect() for p in parts], rechunk=False)


def _facts(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows that stay one row: received (RECEIVE, DSN) and the exchange_* events."""
    received = pl.col("kind") == "received"
    ret = _col("return-path").str.strip_chars()
    sender = pl.when(ret == "<>").then(pl.lit("")).otherwise(
        pl.coalesce(_bare_id(ret), _col("sender-address").str.strip_chars()))
    ref = _col("reference").str.strip_chars()
    rcpt = _col("recipient-address").str.strip_chars()
    return frame.select(
        "ts", "host", "line_no", "kind", "queue_id", "message_id", "program",
        sender.alias("sender"),
        # RESOLVE, REDIRECT... name one recipient and the address it came from
        pl.when(~received & ~rcpt.str.contains(";", literal=True)).then(rcpt)
        .alias("recipient"),
        pl.when(~received).then(_col("related-recipient-address")).alias("orig_to"),
        _col("total-bytes").cast(pl.Int64, strict=False).alias("size"),
        _col("recipient-count").cast(pl.Int64, strict=False).alias("nrcpt"),
        pl.when(received).then(_endpoint(_col("client-hostname"), _col("client-ip")))
        .alias("client"),
        _col("message-subject").alias("subject"),
        # a RECEIVE made by an inbox rule or journaling names the message it came from;
        # a DSN names the message it reports on (kept as text: it is no reply)
        pl.when(received & (pl.col("_event") == "RECEIVE") & ref.str.contains(r"^<[^<>]+>$"))
        .then(ref).alias("refs"),
        pl.when(~received).then(_col("source-context"))
        .when(pl.col("_event") == "DSN").then(ref).alias("detail"),
    )


_COMMON = ("ts", "host", "line_no", "kind", "queue_id", "message_id", "program")


def _members(frame: pl.DataFrame) -> pl.DataFrame:
    """EXPAND: one expansion row per member of the group (a group may have thousands)."""
    members = frame.select(
        *_COMMON, _col("related-recipient-address").str.strip_chars().alias("orig_to"),
        _col("recipient-address").str.split(";").alias("recipient"),
    ).explode("recipient")
    return _tidy_recipients(members, frame["recipient-address"])


def _tidy_recipients(rows: pl.DataFrame, lists: pl.Series) -> pl.DataFrame:
    """Drop empty recipients, and strip spaces only when the lists hold any: a group of
    thousands explodes into thousands of rows, a pass over them is worth saving."""
    if lists.str.contains(" ", literal=True).any():
        rows = rows.with_columns(pl.col("recipient").str.strip_chars())
    return rows.filter(pl.col("recipient") != "")


def _deliveries(frame: pl.DataFrame) -> pl.DataFrame:
    """DELIVER, SEND, FAIL, DEFER: one delivery row per recipient of the ';'-joined list.

    A status list that does not pair one to one with the recipients (a reply text with a
    ';' of its own) is given whole to each recipient.
    """
    status_text = _col("recipient-status").str.strip_chars()
    # both lists split once into columns (an expression used twice would run twice);
    # the status list only before an SMTP reply code: "550 4.4.7 QUEUE.Expired;text" and
    # "...RecipNotFound; not found" are one status each
    frame = frame.with_columns(
        status_text.str.replace_all(r";\s*([245]\d\d[ -])", "\x1f${1}").str.split("\x1f")
        .alias("_sts"),
        _col("recipient-address").str.split(";").alias("_rcpts"))
    statuses, rcpts = pl.col("_sts"), pl.col("_rcpts")
    paired = statuses.list.len() == rcpts.list.len()
    source = _col("source-context")
    hop = pl.coalesce(
        source.str.extract(r"(?:queued as|Queued as) ([0-9A-Za-z]{5,})", 1),
        _short(source.str.extract(r"InternalId=\d+, Hostname=([^\],\s]+)", 1)) + ":"
        + source.str.extract(r"InternalId=(\d+)", 1),
    )
    origin = _col("message-info").str.extract(r"^(\d{4}-\d\d-\d\dT[\d:.]+Z)", 1) \
        .str.to_datetime(_STAMP_FORMAT, time_unit="us", strict=False) \
        .dt.replace_time_zone("UTC")
    expired = status_text.str.contains("QUEUE.Expired", literal=True).fill_null(False)
    rows = frame.select(
        *_COMMON,
        rcpts.alias("recipient"),
        statuses.alias("_st"),
        paired.fill_null(False).alias("_paired"),
        status_text.alias("detail"),
        pl.when(expired).then(pl.lit("expired"))
        .otherwise(pl.col("_event").replace_strict(_STATUS, default=None)).alias("status"),
        _endpoint(_col("server-hostname"), _col("server-ip")).alias("relay"),
        pl.when(pl.col("_event").is_in(_SENDING)).then(hop).alias("next_queue_id"),
        ((pl.col("ts") - origin).dt.total_microseconds() / 1e6).alias("delay"),
    )
    # rows whose statuses pair with the recipients explode both lists; the others (most
    # DELIVER rows have no status) give the whole status text to every recipient, so its
    # code is read once per row, before the explode
    mask = rows["_paired"]
    paired_rows = rows.filter(mask).drop("detail").explode(["recipient", "_st"]) \
        .rename({"_st": "detail"}).with_columns(pl.col("detail").str.strip_chars()) \
        .with_columns(_dsn(pl.col("detail")))
    other_rows = rows.filter(~mask).drop("_st").with_columns(_dsn(pl.col("detail"))) \
        .explode("recipient")
    sub = pl.concat([paired_rows.drop("_paired"), other_rows.drop("_paired")],
                    how="vertical", rechunk=False)
    return _tidy_recipients(sub, frame["recipient-address"])


def _dsn(reply: pl.Expr) -> pl.Expr:
    """The enhanced status code in an SMTP reply ("550 5.1.1 ..." -> 5.1.1)."""
    return reply.str.extract(r"(?:^|\s)([245]\.\d{1,3}\.\d{1,3})(?:\s|$|[^\d.])", 1).alias("dsn")


def _segments(frame: pl.DataFrame, layout: _Layout) -> list[tuple[pl.DataFrame, _Layout]]:
    """Records grouped by the #Fields line in force (the header's, then any in the batch)."""
    fields = frame.filter(pl.col("raw").str.starts_with("#Fields:")).select("line_no", "raw")
    if not fields.height:
        return [(frame, layout)]
    cuts = fields["line_no"]
    seg = cuts.search_sorted(frame["line_no"], side="right")
    out = []
    for i in range(fields.height + 1):
        part = frame.filter(seg == i)
        if not part.height:
            continue
        if i == 0:
            out.append((part, layout))
            continue
        names = csvlog.header_fields(fields["raw"][i - 1][len("#Fields:"):].strip())
        own = _Layout(tuple(names), len(names) == len(FIELDS_2010))
        out.append((part, own))
    return out


def parse(lines: pl.DataFrame, ctx: ParseContext) -> pl.DataFrame:
    """Turn a batch of raw lines (columns raw, line_no) into the events frame."""
    lines = lines.select(pl.col("raw").fill_null("").str.strip_prefix("\ufeff"), "line_no")
    layout = _layout_of(tuple(ctx.head) or tuple(lines["raw"].head(200).to_list()))
    recs = csvlog.records(lines, start=pl.col("raw").str.contains(_START))
    header = csvlog.HEADER_RECORD
    parts = csvlog.side_parts(recs, "exchange_header")
    for part, seg_layout in _segments(recs.filter(header | pl.col("ok")), layout):
        rows = part.filter(~header)
        if rows.height:
            cols, bad = csvlog.table(rows, list(seg_layout.fields), _USED)
            parts.append(bad.with_columns(pl.lit("unparsed").alias("kind")))
            parts.append(tracking_events(cols, v2010=seg_layout.v2010,
                                         server=seg_layout.server))
    frame = pl.concat([conform(p).collect() for p in parts], rechunk=False)
    # Exchange logs subjects decoded; a client's encoded-word one is decoded here
    from detector.model.subjects import decode_rfc2047

    return frame.with_columns(pl.lit(ctx.source_file).alias("source_file"),
                              decode_rfc2047(frame["subject"]).alias("subject"))
