"""The one definition of the events frame that every format parser must return.

Every parser in ``detector.formats`` turns raw lines into exactly this schema (same
names, same order, same types); ``conform`` fills the columns a format does not know with
nulls. The warehouse creates its ``events`` table from the same list, so a column is added
here once and reaches parsers, DuckDB and Parquet together.
"""

from __future__ import annotations

import polars as pl

UTC_TS = pl.Datetime("us", "UTC")

#: column -> (polars type, description for the README / analysts)
EVENT_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "ts": (UTC_TS, "when the line was written, in UTC"),
    "host": (pl.String(), "host that wrote the line (syslog host, Exchange server...)"),
    "source_file": (pl.String(), "path of the log file the line came from"),
    "line_no": (pl.Int64(), "1-based line number in the decompressed file"),
    "program": (pl.String(), "syslog tag without pid (postfix/smtp, dovecot...)"),
    "kind": (pl.String(), "line kind (see README); 'unparsed' and 'foreign' are kept too"),
    "queue_id": (pl.String(), "MTA queue id the line is about, if any"),
    "message_id": (pl.String(), "Message-ID header value without angle brackets"),
    "sender": (pl.String(), "envelope sender ('' for the null sender <>)"),
    "recipient": (pl.String(), "envelope recipient of a delivery or reject"),
    "orig_to": (pl.String(), "original recipient before alias/list expansion (the recipient "
                "itself when addressed directly; null when the log does not say)"),
    "size": (pl.Int64(), "message size in bytes"),
    "nrcpt": (pl.Int64(), "number of envelope recipients of the queued message"),
    "relay": (pl.String(), "next hop of a delivery (host[ip]:port, local, none...)"),
    "delay": (pl.Float64(), "seconds from arrival to this delivery attempt"),
    "dsn": (pl.String(), "enhanced status code (2.0.0, 5.1.1...)"),
    "status": (pl.String(), "delivery status: sent, deferred, bounced, expired..."),
    "client": (pl.String(), "SMTP client host[ip] that submitted the message"),
    "subject": (pl.String(), "Subject header as logged (may be RFC 2047 encoded)"),
    "in_reply_to": (pl.String(), "In-Reply-To header message id, without brackets"),
    "refs": (pl.String(), "References header as logged (space separated ids)"),
    "next_queue_id": (pl.String(), "queue id at the next hop ('queued as', 'forwarded as')"),
    "detail": (pl.String(), "free text of the line: reply text, reject reason..."),
    "raw": (pl.String(), "the whole line, kept for unparsed and foreign lines only"),
}

EVENTS_SCHEMA: pl.Schema = pl.Schema({name: t for name, (t, _) in EVENT_COLUMNS.items()})


def conform(frame: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Select exactly the events columns in order, adding missing ones as typed nulls."""
    lf = frame.lazy()
    present = set(lf.collect_schema().names())
    return lf.select(
        [
            pl.col(name).cast(dtype) if name in present else pl.lit(None, dtype).alias(name)
            for name, dtype in EVENTS_SCHEMA.items()
        ]
    )


def addressed_directly(frame: pl.DataFrame) -> pl.DataFrame:
    """For formats whose delivery lines name the list a recipient came through (Postfix
    orig_to, Exim's parent address): a delivery naming none was addressed directly, so its
    orig_to becomes the recipient. Null stays for "the log does not say", and only then
    does a list expansion logged elsewhere (Exchange EXPAND) name the list."""
    if "orig_to" not in frame.columns:
        return frame
    return frame.with_columns(orig_to=pl.when(
        (pl.col("kind") == "delivery") & pl.col("orig_to").is_null())
        .then(pl.col("recipient")).otherwise(pl.col("orig_to")))
