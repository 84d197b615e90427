"""Microsoft 365 (Exchange Online) message trace exports -> events.

Three CSV layouts, told apart by their header row (read from ``ctx.head``, or from a
header row inside the batch when exports are concatenated):

* ``Get-MessageTrace | Export-Csv`` (and the admin center's message trace download):
  ``Received, SenderAddress, RecipientAddress, Subject, Status, ToIP, FromIP, Size,
  MessageId, MessageTraceId...`` after a ``#TYPE`` line, one row per message and
  recipient with that recipient's latest status;
* the historical search summary report: ``origin_timestamp_utc, sender_address,
  recipient_status, message_subject, total_bytes, message_id, network_message_id...``,
  one row per message, ``recipient_status`` holding ``address##Receive, Deliver`` for
  each recipient, ``;``-joined;
* the historical search extended report: message tracking events with ``_`` in the
  field names (``date_time_utc, ..., event_id, ...``), read like Exchange's own log.

The Reporting Web Service's JSON records (one per line, flat, OData ``__metadata`` or a
``{"value": [...]}`` envelope) carry the same fields as the first layout and are read the
same way.

Each recipient row is a ``delivery``; each message also gets one ``received`` row (the
first row of the message in the batch, repeated). Statuses: Delivered -> sent, Failed ->
bounced, Pending and GettingStatus -> deferred (not final yet), Quarantined ->
quarantined, FilteredAsSpam -> filtered, None -> none; Expanded (a distribution group)
and Resolved (an address rewritten) rows are ``m365_expanded`` / ``m365_resolved``, and
the group of an Expanded row becomes ``orig_to`` of the message's other rows in the
batch.

Exports overlap (one per day, or re-run after the fact). Rows carry a stable identity so
the model can count a row seen twice once: ``host`` is always ``exchange-online``,
``queue_id`` the message trace id (network message id), ``message_id`` the Message-ID;
the model counts one delivery per message, recipient and list ("route"), whichever file
it came from. Times are UTC, as Microsoft writes them; Export-Csv writes them in the
exporting machine's culture: ``11/14/2016 9:58:12 AM`` (with AM/PM: month first),
``14/11/2016 09:58:12`` (without: day first), ``14.11.2016 09:58:12``, ISO 8601, or
``/Date(ms)/``.
"""

from __future__ import annotations

import polars as pl

from detector.formats import csvlog, exchange
from detector.formats.context import ParseContext
from detector.formats.finish import KEEP_RAW, finish
from detector.formats.kinds import Kind, Sample, classifier, descriptions, equals, one_of

NAME = "m365"
HOST = "exchange-online"

# ---- samples ---------------------------------------------------------------------------
# The corpus holds only Reporting Web Service JSON records (../shared/corpus/m365). The CSV
# samples follow Microsoft's documentation: Get-MessageTrace's output properties as
# Export-Csv writes them (every field quoted), filled with the values of the corpus
# record elastic-integrations.jsonl:2; the extended report's columns are those of the
# Exchange message tracking log (underscores, date_time_utc), its rows exchange.doc_row().
# A trace row also gives its message's received row when it is the first: the samples of
# the other kinds come after a first row of their message.
_TRACE_DOC = ("Microsoft Learn, 'Get-MessageTrace' (output properties) as Export-Csv "
              "writes them, values of corpus m365/elastic-integrations.jsonl:2")
_EXTENDED_DOC = ("Microsoft Learn, 'Message trace in the modern EAC' (extended report: the "
                 "message tracking log's fields), row in the shape of " + exchange.DOC_PAGE)
_TRACE_HEAD = ('"Organization","MessageId","Received","SenderAddress","RecipientAddress",'
               '"Subject","Status","ToIP","FromIP","Size","MessageTraceId","StartDate",'
               '"EndDate","Index"')
_EXTENDED_HEAD = ",".join("date_time_utc" if f == "date-time" else f.replace("-", "_")
                          for f in exchange.FIELDS_2016)


def _trace_row(recipient: str, status: str, index: int) -> str:
    return ('"contoso.com","<GVAP278MB037586A65EF1FB2F844B0258DA2D9@GVAP278MB0375.CHEP278.PR'
            'OD.OUTLOOK.COM>","10/21/2022 5:25:36 PM","noreply@azure.microsoft.com",'
            f'"{recipient}","testmail 2","{status}","","40.107.23.54","22761",'
            '"a5e6dc0f-23df-4b20-d240-08dab38944a1","10/21/2022 9:40:10 AM",'
            f'"10/22/2022 9:40:10 AM","{index}"')


_FIRST = _trace_row("linus@contoso.com", "Delivered", 0)
_JSON = "corpus m365/elastic-integrations.jsonl:"


# the corpus record of line 4 repeats line 1's message (an envelope of the same trace)
_JSON_LINE1 = ('{"EndDate":"2022-09-05T21:46:46.4206759Z","FromIP":"81.2.69.144","Index":0,'
     '"MessageId":"\\u003ca210cf91-4f2e-484c-8ada-3b27064ee5e3@az.uksouth.production.microsoft.co'
     'm\\u003e","MessageTraceId":"cf7a249a-5edd-4350-130a-08da8f69e0f6","Organization":"wildsecur'
     'ity.onmicrosoft.com","Received":"2022-09-05T18:10:13.4907658","RecipientAddress":"linus@wi'
     'ldsecurity.onmicrosoft.com","SenderAddress":"azure-noreply@microsoft.com",'
     '"Size":87891,"StartDate":"2022-09-03T21:46:46.4206759Z","Status":"Delivered",'
     '"Subject":"PIM: A privileged directory role was assigned outside of PIM",'
     '"ToIP":"216.160.83.56"}')
_JSON_LINE4 = ('{"odata.metadata":"https://reports.office365.com/ecp/ReportingWebService/Reporting.svc/$me'
     'tadata#MessageTrace","value":[{"Organization":"wildsecurity.onmicrosoft.com",'
     '"MessageId":"<a210cf91-4f2e-484c-8ada-3b27064ee5e3@az.uksouth.production.microsoft.com>",'
     '"Received":"2022-09-05T18:10:13.4907658","SenderAddress":"azure-noreply@microsoft.com",'
     '"RecipientAddress":"linus@wildsecurity.onmicrosoft.com","Subject":"PIM: '
     'A privileged directory role was assigned outside of PIM","Status":"Delivered",'
     '"ToIP":"192.168.2.2","FromIP":"81.2.69.144","Size":87891,"MessageTraceId":"cf7a249a-5edd-4'
     '350-130a-08da8f69e0f6","StartDate":"2022-09-04T09:01:46.0369423Z","EndDate":"2022-09-06T09'
     ':01:46.0369423Z","Index":0}]}')


def _ext_sample(event: str) -> Sample:
    return Sample(exchange.doc_row(event), f"{_EXTENDED_DOC}: {event}", (_EXTENDED_HEAD,))


# ---- the kind table ----------------------------------------------------------------------
# The trace and summary rows' kind is a test on their status word (``_s``: lower case);
# the rest comes from the file's structure (a message's first row, header and JSON lines)
# or from Exchange's own table (the extended report's events).
TABLE: tuple[Kind, ...] = (
    Kind("received", "one per message of the export (its first row, repeated)", None,
         samples=(_ext_sample("RECEIVE"),)),
    Kind("delivery", "one recipient of a message, with its latest status",
         (~one_of(("expanded", "resolved"), "_s"),), "deliveries",
         (Sample(_JSON_LINE4,
                 _JSON + "4 (after line 1: its message's first record)", before=(_JSON_LINE1,)),
          Sample(_trace_row("linus@contoso.com", "Failed", 1), _TRACE_DOC + ", Status Failed",
                 before=(_TRACE_HEAD, _FIRST)))),
    Kind("m365_expanded", "a distribution group that was expanded (status Expanded)",
         (equals("expanded", "_s"),), "deliveries",
         (Sample(_trace_row("it.staff@contoso.com", "Expanded", 1), _TRACE_DOC
                 + ", Status Expanded", before=(_TRACE_HEAD, _FIRST)),)),
    Kind("m365_resolved", "an address resolved to another one (status Resolved)",
         (equals("resolved", "_s"),), "deliveries",
         (Sample(_trace_row("linus.torvalds@contoso.com", "Resolved", 1), _TRACE_DOC
                 + ", Status Resolved", before=(_TRACE_HEAD, _FIRST)),)),
    Kind("m365_header", "the #TYPE line or a CSV header row", None,
         samples=(Sample(_TRACE_HEAD, _TRACE_DOC),
                  Sample(_EXTENDED_HEAD, _EXTENDED_DOC + ": header row"))),
    Kind("m365_json", "a JSON line that is not a message trace record", None,
         samples=(Sample(
             '{"__metadata": {"id": "https://reports.office365.com/ecp/ReportingWebService/Re'
             'porting.svc/MailTrafficSummary(0)", "uri": "https://reports.office365.com/ecp/Rep'
             'ortingWebService/Reporting.svc/MailTrafficSummary(0)", "type": "TenantReporting.M'
             'ailTrafficSummaryReport"}, "C1": "noreply@azure.microsoft.com", "C2": "12", "C3":'
             ' "", "Category": "TopMailSender", "EndDate": "/Date(1666431610000)/", "StartDate"'
             ': "/Date(1666345210000)/"}',
             "Microsoft Learn, Reporting Web Service 'MailTrafficSummary report' (fields C1-C3, "
             "Category, StartDate, EndDate), in the OData verbose shape of corpus "
             "m365/sekoia-intake-formats.jsonl:1"),)),
    # the extended report's message tracking events, kinds of Exchange's table
    *(Kind(k.name, k.description, None, k.fields,
           (_ext_sample(k.name.removeprefix("exchange_").upper()),))
      for k in exchange.TABLE
      if k.name.startswith("exchange_") and k.name not in ("exchange_header", "exchange_other")),
    Kind("exchange_other", exchange.KINDS["exchange_other"], None, "facts",
         (Sample(exchange.doc_row("SUSPEND"), f"{_EXTENDED_DOC}: SUSPEND, an event-id not in "
                 "Microsoft's current list (Exchange 2007's event table has it)",
                 (_EXTENDED_HEAD,)),)),
    Kind("expansion", "EXPAND event of an extended report: one member of the group", None,
         "members", (_ext_sample("EXPAND"),)),
    Kind("unparsed",
         "a line that is not a well-formed row (or a row cut by a batch boundary)", None,
         samples=(Sample(_FIRST[:_FIRST.index("testmail") + 4],
                         _TRACE_DOC + ", cut inside a quoted field", before=(_TRACE_HEAD,)),)),
)
KINDS: dict[str, str] = descriptions(TABLE)
# a trace or summary row: its status word's kind
_KIND = classifier([k for k in TABLE if k.when is not None])

_STATUS = {"delivered": "sent", "failed": "bounced", "pending": "deferred",
           "gettingstatus": "deferred", "quarantined": "quarantined",
           "filteredasspam": "filtered", "none": "none"}
# summary report: the last event of a recipient's history -> the trace's status word
_SUMMARY_WORD = {"deliver": "delivered", "send": "delivered", "fail": "failed",
                 "defer": "pending", "expand": "expanded", "resolve": "resolved",
                 "quarantine": "quarantined"}
# Get-MessageTrace column -> the name used below (the JSON records use the same keys)
_TRACE = {"Received": "received", "SenderAddress": "sender", "RecipientAddress": "recipient",
          "Subject": "subject", "Status": "status", "ToIP": "to_ip", "FromIP": "from_ip",
          "Size": "size", "MessageId": "message_id", "MessageTraceId": "trace_id"}
_SUMMARY = {"origin_timestamp_utc": "received", "sender_address": "sender",
            "recipient_status": "recipient_status", "message_subject": "subject",
            "total_bytes": "size", "message_id": "message_id",
            "network_message_id": "trace_id", "original_client_ip": "from_ip"}
_HEADER_FIRST = frozenset({"PSComputerName", "RunspaceId", "PSShowComputerName", "Organization",
                           "MessageId", "Received", "SenderAddress", "origin_timestamp_utc",
                           "date_time_utc", "message_id", "sender_address"})
# a JSON object without nested objects, strings may hold braces
_OBJECT = r'\{(?:[^{}"]|"(?:[^"\\]|\\.)*")*\}'


def _clean(line: str) -> str:
    """A head line without NULs (UTF-16 read as UTF-8) and byte-order marks."""
    return line.replace("\x00", "").lstrip("\ufeff\ufffd\ufffe")


def _layout(names: list[str]) -> str | None:
    """Which export a header row starts: trace, summary, extended, or None."""
    cols = set(names)
    if {"Received", "RecipientAddress"} <= cols and cols & {"MessageTraceId", "MessageId"}:
        return "trace"
    if {"origin_timestamp_utc", "recipient_status"} <= cols:
        return "summary"
    if {"date_time_utc", "event_id"} <= cols:
        return "extended"
    return None


def _header_of(line: str) -> tuple[str, list[str]] | None:
    names = csvlog.header_fields(_clean(line))
    if names and names[0] in _HEADER_FIRST:
        kind = _layout(names)
        if kind:
            return kind, names
    return None


def sniff(lines: list[str]) -> bool:
    """A message trace CSV header (after an optional #TYPE line) or JSON records."""
    for line in lines[:20]:
        line = _clean(line)
        if _header_of(line):
            return True
        if line.startswith("{") and ('"MessageTraceId"' in line
                                     or "TenantReporting.MessageTrace" in line):
            return True
    return False


def _when(text: pl.Expr) -> pl.Expr:
    """UTC timestamp from any of the shapes in the module docstring."""
    t = text.str.strip_chars()
    iso = t.str.strip_suffix("Z").str.replace("T", " ", literal=True)
    ms = t.str.extract(r"^/Date\((-?\d+)\)/$", 1).cast(pl.Int64, strict=False)
    us = pl.coalesce(
        iso.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us", strict=False),
        t.str.to_datetime("%m/%d/%Y %I:%M:%S %p", time_unit="us", strict=False),
        t.str.to_datetime("%d/%m/%Y %H:%M:%S", time_unit="us", strict=False),
        t.str.to_datetime("%d.%m.%Y %H:%M:%S", time_unit="us", strict=False),
        (ms * 1000).cast(pl.Datetime("us")),
    )
    return us.dt.replace_time_zone("UTC")


def _bare(value: pl.Expr) -> pl.Expr:
    v = value.str.strip_chars().str.strip_prefix("<").str.strip_suffix(">")
    return pl.when(v != "").then(v)


def _rows(frame: pl.DataFrame, status: pl.Expr) -> pl.DataFrame:
    """Per-recipient rows (columns received, sender, recipient, subject, size, from_ip,
    to_ip, message_id, trace_id, line_no, and ``status`` as given) -> events, plus one
    received row per message."""
    s = status.str.strip_chars().str.to_lowercase()
    # Export-Csv quotes every field, so a missing value is "" rather than nothing
    frame = frame.with_columns(
        pl.when(pl.col(c).str.strip_chars() != "").then(pl.col(c)).alias(c)
        for c in ("received", "sender", "recipient", "subject", "size", "from_ip", "to_ip",
                  "message_id", "trace_id"))
    frame = frame.with_columns(
        _when(pl.col("received")).alias("ts"),
        pl.coalesce(_bare(pl.col("trace_id")), _bare(pl.col("message_id"))).alias("queue_id"),
        _bare(pl.col("message_id")).alias("message_id"),
        pl.col("recipient").str.strip_chars().alias("recipient"),
        s.alias("_s"),
        status.alias("_stext"),
    ).with_columns(
        pl.when(pl.col("ts").is_null()).then(pl.lit("unparsed")).otherwise(_KIND).alias("kind"),
    )
    groups = frame.filter(pl.col("kind") == "m365_expanded").group_by("queue_id").agg(
        pl.col("recipient").first().alias("_group"), pl.len().alias("_n"))
    frame = frame.join(groups.filter(pl.col("_n") == 1).drop("_n"), on="queue_id",
                       how="left")
    bad = pl.col("kind") == "unparsed"
    unparsed = frame.filter(bad).unique("line_no", keep="first", maintain_order=True) \
        .select("line_no", "kind", pl.col("_raw").alias("raw"))
    frame = frame.filter(~bad)
    common: list[pl.Expr | str] = [pl.col("ts"), pl.lit(HOST).alias("host"), "line_no",
                                   "queue_id", "message_id"]
    deliveries = frame.select(
        *common, "kind", "recipient",
        pl.when(pl.col("kind") == "delivery").then(pl.col("_group")).alias("orig_to"),
        pl.when(pl.col("kind") == "delivery")
        .then(pl.col("_s").replace_strict(_STATUS, default=pl.col("_s"))).alias("status"),
        pl.when(pl.col("kind") == "delivery").then(pl.col("to_ip")).alias("relay"),
        pl.col("_stext").alias("detail"),
    )
    first = frame.filter(pl.col("queue_id").is_first_distinct())
    sender = pl.col("sender").str.strip_chars()
    received = first.select(
        *common, pl.lit("received").alias("kind"),
        # a trace shows no return path: the non-delivery reports Exchange Online makes
        # carry its system sender, the null sender <> of other logs
        pl.when(sender.str.contains(_NDR_SENDER)).then(pl.lit("")).otherwise(sender)
        .alias("sender"),
        pl.col("subject"),
        pl.col("size").str.strip_chars().cast(pl.Int64, strict=False).alias("size"),
        pl.col("from_ip").str.strip_chars().alias("client"),
    )
    return pl.concat([unparsed, deliveries, received], how="diagonal_relaxed")


#: the sender Exchange (Online and Server) gives the non-delivery reports it makes
_NDR_SENDER = r"(?i)^MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@"


def _trace(cols: pl.DataFrame) -> pl.DataFrame:
    cols = cols.rename({k: v for k, v in _TRACE.items() if k in cols.columns})
    for name in _TRACE.values():
        if name not in cols.columns:
            cols = cols.with_columns(pl.lit(None, pl.String).alias(name))
    return _rows(cols, pl.col("status"))


def _summary(cols: pl.DataFrame) -> pl.DataFrame:
    """One row per message: explode ``recipient_status`` into recipients."""
    cols = cols.rename({k: v for k, v in _SUMMARY.items() if k in cols.columns})
    for name in _SUMMARY.values():
        if name not in cols.columns:
            cols = cols.with_columns(pl.lit(None, pl.String).alias(name))
    rows = cols.with_columns(pl.col("recipient_status").str.split(";").alias("_r")) \
        .explode("_r").filter(pl.col("_r").str.strip_chars() != "")
    pair = pl.col("_r").str.split_exact("##", 1)
    last = pair.struct.field("field_1").str.split(",").list.last().str.strip_chars() \
        .str.to_lowercase()
    rows = rows.with_columns(
        pair.struct.field("field_0").alias("recipient"),
        last.replace_strict(_SUMMARY_WORD, default=last).alias("_word"),
        pl.lit(None, pl.String).alias("to_ip"),
    )
    return _rows(rows, pl.col("_word"))


def _extended(cols: pl.DataFrame) -> pl.DataFrame:
    """Message tracking events: Exchange's reading, keyed by the network message id."""
    cols = cols.rename({c: c.replace("_", "-") for c in cols.columns
                        if c not in ("line_no", "_raw")})
    cols = cols.rename({"date-time-utc": "date-time"}, strict=False)
    nid = pl.col("network-message-id") if "network-message-id" in cols.columns else None
    return exchange.tracking_events(cols, server=HOST, queue=nid)


def _json(lines: pl.DataFrame) -> pl.DataFrame:
    """JSON records (flat, OData verbose, or a {"value": [...]} envelope) -> events."""
    raw = pl.col("raw")
    objs = lines.with_columns(
        pl.when(raw.str.contains('"value"\\s*:\\s*\\[')).then(
            raw.str.json_path_match("$.value").str.extract_all(_OBJECT))
        .otherwise(pl.concat_list(raw)).alias("_obj"),
    ).explode("_obj")
    obj = pl.col("_obj")
    fields = {v: obj.str.json_path_match(f"$.{k}") for k, v in _TRACE.items()}
    objs = objs.with_columns(**fields).with_columns(pl.col("raw").alias("_raw"))
    is_trace = pl.col("trace_id").is_not_null() | pl.col("received").is_not_null()
    parts = [_rows(objs.filter(is_trace), pl.col("status"))]
    other = objs.filter(~is_trace).unique("line_no", keep="first")
    parts.append(other.select("line_no", "raw", pl.lit("m365_json").alias("kind")))
    return pl.concat(parts, how="diagonal_relaxed")


_READERS = {"trace": _trace, "summary": _summary, "extended": _extended}


def _head_layout(head: tuple[str, ...] | list[str]) -> tuple[str, list[str]] | None:
    for line in head:
        found = _header_of(line)
        if found:
            return found
    return None


def parse(lines: pl.DataFrame, ctx: ParseContext) -> pl.DataFrame:
    """Turn a batch of raw lines (columns raw, line_no) into the events frame."""
    # the reader drops NULs (a UTF-16 export read as UTF-8); a byte-order mark remains
    lines = lines.select(pl.col("raw").fill_null("").str.strip_chars_start("\ufeff\ufffd\ufffe"),
                         "line_no")
    layout = _head_layout(ctx.head or lines["raw"].head(20).to_list())
    raw = pl.col("raw")
    is_json = raw.str.starts_with("{")
    parts = [_json(lines.filter(is_json))] if lines.filter(is_json).height else []
    recs = csvlog.records(lines.filter(~is_json))
    first = raw.str.extract(r'^"?([A-Za-z_]+)"?,', 1)
    header = (raw.str.starts_with("#TYPE") | first.is_in(_HEADER_FIRST).fill_null(False)) \
        & (pl.col("lines") == 1)
    recs = recs.with_columns(header.alias("_h"))
    parts.append(recs.filter("_h").select(
        "line_no", pl.lit("m365_header").alias("kind"), raw.alias("detail")))
    parts.append(recs.filter(~pl.col("_h") & ~pl.col("ok")).select(
        "line_no", "raw", pl.lit("unparsed").alias("kind")))
    heads = recs.filter(pl.col("_h") & ~raw.str.starts_with("#")).select("line_no", "raw")
    good = recs.filter(~pl.col("_h") & pl.col("ok"))
    seg = heads["line_no"].search_sorted(good["line_no"], side="right")
    for i in range(heads.height + 1):
        part = good.filter(seg == i)
        if not part.height:
            continue
        found = layout if i == 0 else _header_of(heads["raw"][i - 1])
        if found is None:  # rows without a header we know
            parts.append(part.select("line_no", "raw", pl.lit("unparsed").alias("kind")))
            continue
        kind, names = found
        cols, bad = csvlog.table(part, names)
        parts.append(bad.with_columns(pl.lit("unparsed").alias("kind")))
        parts.append(_READERS[kind](cols))
    frame = pl.concat([p for p in parts if p.height] or parts[:1], how="diagonal_relaxed")
    # a JSON line that is no trace record is kept whole: its text is all there is of it
    return finish(frame.with_columns(pl.lit(NAME).alias("program")), ctx,
                  keep_raw=(*KEEP_RAW, "m365_json"))
