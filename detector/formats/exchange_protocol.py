"""Exchange SMTP protocol logs (SmtpReceive RECV*.LOG, SmtpSend SEND*.LOG) -> events.

The same W3C-style header and CSV as message tracking, with other fields:
``date-time, connector-id, session-id, sequence-number, local-endpoint,
remote-endpoint, event, data, context``. One row is one step of an SMTP session:
``+`` connect, ``-`` disconnect, ``<`` a line the remote side sent, ``>`` a line this
server sent, ``*`` information (TLS, authentication...). They show connections and
rejects, not messages, so none of them is a shared kind; the remote endpoint is the
``client`` of a receive log and the ``relay`` of a send log.
"""

from __future__ import annotations

import csv

import polars as pl

from detector.formats import csvlog
from detector.formats.context import ParseContext
from detector.formats.finish import finish
from detector.formats.kinds import Kind, Sample, classifier, descriptions, equals, matches

NAME = "exchange_protocol"
FIELDS = ("date-time", "connector-id", "session-id", "sequence-number", "local-endpoint",
          "remote-endpoint", "event", "data", "context")

# ---- samples: rows of ../shared/corpus/exchange; it has no + or - row, so those follow
# the shape of Microsoft's "Protocol logging" page (event: + Connect, - Disconnect,
# > Send, < Receive, * Information), in the corpus file's session
_HEAD = ("#Software: Microsoft Exchange Server", "#Version: 15.0.0.0",
         "#Log-type: SMTP Receive Protocol Log", "#Date: 2023-01-11T16:00:04.113Z",
         "#Fields: " + ",".join(FIELDS))
_ARTEFACTS = "corpus exchange/artefacts-help.smtp-protocol.log:"
_SESSION = ("SERVER-HOSTNAME\\Default Frontend SERVER-HOSTNAME,123453EC62278461,{seq},"
            "10.10.10.10:25,95.10.20.33:56026,")
_DOC_PAGE = "Microsoft Learn, 'Protocol logging' (fields and event values of the SMTP logs)"


def _row(line: int, stamp: str, seq: int, rest: str) -> Sample:
    return Sample(f"{stamp},{_SESSION.format(seq=seq)}{rest}", _ARTEFACTS + str(line),
                  before=_HEAD)


# the first row that holds wins: a reply is a reject before it is a response
TABLE: tuple[Kind, ...] = (
    Kind("exchange_smtp_connect", "+ : a session opened", (equals("+", "event"),),
         samples=(Sample(f"2023-01-11T15:59:51.401Z,{_SESSION.format(seq=0)}+,,",
                         f"{_DOC_PAGE}: + (Connect)", before=_HEAD),)),
    Kind("exchange_smtp_disconnect", "- : a session closed", (equals("-", "event"),),
         samples=(Sample(f"2023-01-11T16:00:10.650Z,{_SESSION.format(seq=16)}-,,Local",
                         f"{_DOC_PAGE}: - (Disconnect)", before=_HEAD),)),
    Kind("exchange_smtp_command",
         "< : a line the remote side sent (EHLO, MAIL FROM, AUTH...)", (equals("<", "event"),),
         samples=(_row(7, "2023-01-11T15:59:53.909Z", 2, "<,EHLO [95.10.20.33],"),)),
    Kind("exchange_smtp_reject", "> : a 4xx/5xx reply of this server",
         (equals(">", "event"), matches(r"^[45]\d\d[ -]", "text")),
         samples=(Sample(
             "2022-07-20T21:12:06.270Z,EXCHANGE-1\\Default Frontend EXCHANGE-1,08DA4F7C11473A60,"
             "9,192.168.9.241:25,192.168.9.212:53722,>,535 5.7.3 Authentication unsuccessful,",
             "corpus exchange/crowdsec-hub.smtpreceive.log:1"),)),
    Kind("exchange_smtp_response", "> : a line this server sent (220, 250, 5xx replies...)",
         (equals(">", "event"),),
         samples=(_row(10, "2023-01-11T15:59:56.232Z", 5, ">,220 2.0.0 SMTP server ready,"),)),
    Kind("exchange_smtp_auth_failure", "* : an authentication attempt failed",
         (equals("*", "event"), matches(r"(?i)auth\w* .*fail|LogonDenied", "text")),
         samples=(_row(19, "2023-01-11T16:00:10.644Z", 15,
                       "*,,Inbound AUTH LOGIN failed because of LogonDenied"),)),
    Kind("exchange_smtp_info", "* : other information (TLS, certificates, connects)",
         (equals("*", "event"),),
         samples=(_row(15, "2023-01-11T16:00:02.106Z", 10,
                       "*,,TlsDomainCapabilities='None'; Status='NoRemoteCertificate'"),)),
    Kind("exchange_header", "a #Software/#Version/#Log-type/#Date/#Fields header line", None,
         samples=(Sample(_HEAD[-1], _ARTEFACTS + "5", before=_HEAD[:-1]),)),
    # no readable date-time, or an event none of the rows names (the classifier's default),
    # or quotes that do not balance (a row cut by a batch boundary)
    Kind("unparsed",
         "a line that is not a well-formed row (or a row cut by a batch boundary)", None,
         samples=(Sample(
             f"2023-01-11T16:00:01.010Z,{_SESSION.format(seq=7)}*,,\"TLS protocol "
             "SP_PROT_TLS1_2_SERVER negotiation succeeded using bulk encryption algorithm "
             "CALG_AES_128 with strength 128 bits,",
             _ARTEFACTS + "12, cut inside its quoted context", before=_HEAD),)),
)
KINDS: dict[str, str] = descriptions(TABLE)
_KIND = classifier(TABLE)
_EVENT = ("+", "-", "<", ">", "*")  # what sniff() looks for
_START = r"^(?:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d|#)"


def sniff(lines: list[str]) -> bool:
    """A protocol log header, or rows with a session id, a sequence number and an event."""
    for line in lines[:50]:
        line = line.lstrip("\ufeff")
        if line.startswith(("#Log-type: SMTP Receive Protocol Log",
                            "#Log-type: SMTP Send Protocol Log",
                            "#Fields: date-time,connector-id,session-id,")):
            return True
        if line[:4].isdigit() and line[10:11] == "T":
            row = next(csv.reader([line]), [])
            if (len(row) >= 8 and len(row[2]) == 16 and row[3].isdigit()
                    and row[6] in _EVENT):
                return True
    return False


def parse(lines: pl.DataFrame, ctx: ParseContext) -> pl.DataFrame:
    """Turn a batch of raw lines (columns raw, line_no) into the events frame."""
    lines = lines.select(pl.col("raw").fill_null("").str.strip_prefix("\ufeff"), "line_no")
    head = csvlog.directives(ctx.head or lines["raw"].head(50).to_list())
    fields = csvlog.header_fields(head["fields"]) if "fields" in head else list(FIELDS)
    sending = "send" in head.get("log-type", "").lower()
    recs = csvlog.records(lines, start=pl.col("raw").str.contains(_START))
    header = csvlog.HEADER_RECORD
    parts = csvlog.side_parts(recs, "exchange_header")
    rows = recs.filter(~header & pl.col("ok"))
    if rows.height:
        cols, bad = csvlog.table(rows, fields)
        parts.append(bad.with_columns(pl.lit("unparsed").alias("kind")))
        for name in set(FIELDS) - set(cols.columns):
            cols = cols.with_columns(pl.lit(None, pl.String).alias(name))
        ts = pl.col("date-time").str.strip_chars().str.to_datetime(
            "%Y-%m-%dT%H:%M:%S%.fZ", time_unit="us", strict=False).dt.replace_time_zone("UTC")
        # the table's working columns: the event stripped, the text in data or context
        cols = cols.with_columns(pl.col("event").str.strip_chars().alias("event"),
                                 pl.coalesce(pl.col("data"), pl.col("context")).alias("text"))
        kind = pl.when(ts.is_null()).then(pl.lit("unparsed")).otherwise(_KIND)
        # the server is named in the receive connector: "EX01\Default Frontend EX01"
        server = pl.col("connector-id").str.extract(r"^([^\\\s]+)\\", 1).str.to_lowercase()
        remote = pl.col("remote-endpoint").str.strip_chars()
        parts.append(cols.select(
            "line_no", ts.alias("ts"), kind.alias("kind"), server.alias("host"),
            (pl.lit(None, pl.String) if sending else remote).alias("client"),
            (remote if sending else pl.lit(None, pl.String)).alias("relay"),
            pl.concat_str([pl.col("data"), pl.col("context")], separator=" | ",
                          ignore_nulls=True)
            .alias("detail"),
            pl.col("_raw").alias("raw"),
        ))
    frame = pl.concat(parts, how="diagonal_relaxed").with_columns(pl.lit(NAME).alias("program"))
    return finish(frame, ctx)
