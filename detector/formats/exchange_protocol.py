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
from detector.schema import conform

NAME = "exchange_protocol"
FIELDS = ("date-time", "connector-id", "session-id", "sequence-number", "local-endpoint",
          "remote-endpoint", "event", "data", "context")

KINDS: dict[str, str] = {
    "exchange_smtp_connect": "+ : a session opened",
    "exchange_smtp_disconnect": "- : a session closed",
    "exchange_smtp_command": "< : a line the remote side sent (EHLO, MAIL FROM, AUTH...)",
    "exchange_smtp_response": "> : a line this server sent (220, 250, 5xx replies...)",
    "exchange_smtp_reject": "> : a 4xx/5xx reply of this server",
    "exchange_smtp_auth_failure": "* : an authentication attempt failed",
    "exchange_smtp_info": "* : other information (TLS, certificates, connects)",
    "exchange_header": "a #Software/#Version/#Log-type/#Date/#Fields header line",
    "unparsed": "a line that is not a well-formed row (or a row cut by a batch boundary)",
}
_EVENT = {"+": "exchange_smtp_connect", "-": "exchange_smtp_disconnect",
          "<": "exchange_smtp_command", ">": "exchange_smtp_response",
          "*": "exchange_smtp_info"}
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
        data = pl.coalesce(pl.col("data"), pl.col("context"))
        event = pl.col("event").str.strip_chars()
        ts = pl.col("date-time").str.strip_chars().str.to_datetime(
            "%Y-%m-%dT%H:%M:%S%.fZ", time_unit="us", strict=False).dt.replace_time_zone("UTC")
        kind = (
            pl.when(ts.is_null() | ~event.is_in(list(_EVENT))).then(pl.lit("unparsed"))
            .when((event == ">") & data.str.contains(r"^[45]\d\d[ -]"))
            .then(pl.lit("exchange_smtp_reject"))
            .when((event == "*") & data.str.contains(r"(?i)auth\w* .*fail|LogonDenied"))
            .then(pl.lit("exchange_smtp_auth_failure"))
            .otherwise(event.replace_strict(_EVENT, default=None))
        )
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
        ).with_columns(pl.when(pl.col("kind") == "unparsed").then("raw").alias("raw")))
    frame = pl.concat(parts, how="diagonal_relaxed").with_columns(
        pl.lit(ctx.source_file).alias("source_file"), pl.lit(NAME).alias("program"))
    return conform(frame).collect()
