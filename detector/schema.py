"""The one definition of the events frame that every format parser must return.

Every parser in ``detector.formats`` turns raw lines into exactly this schema (same
names, same order, same types); ``conform`` fills the columns a format does not know with
nulls. The warehouse creates its ``events`` table from the same list, so a column is added
here once and reaches parsers, DuckDB and Parquet together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb
import polars as pl

from detector.sqltext import sql_string

UTC_TS = pl.Datetime("us", "UTC")

#: column -> (polars type, description for the README / analysts)
EVENT_COLUMNS: dict[str, tuple[pl.DataType, str]] = {
    "ts": (UTC_TS, "when the line was written, in UTC"),
    "host": (pl.String(), "host that wrote the line (syslog host, Exchange server...)"),
    "source_file": (pl.String(), "path of the log file the line came from"),
    "line_no": (pl.Int64(), "1-based line number in the decompressed file"),
    "program": (pl.String(), "syslog tag without pid (`postfix/smtp`, `dovecot`...)"),
    "kind": (pl.String(), "line kind (README, `mailstorm formats NAME`); `unparsed` and "
                        "`foreign` lines are kept too"),
    "queue_id": (pl.String(), "MTA queue id the line is about, if any"),
    "message_id": (pl.String(), "Message-ID without angle brackets (`cleanup_message_id` lines)"),
    "sender": (pl.String(), "envelope sender (`''` for the null sender `<>`)"),
    "recipient": (pl.String(), "envelope recipient of a delivery or reject"),
    "orig_to": (pl.String(), "original recipient before alias or list expansion; on a "
                "delivery, the recipient itself when it was addressed directly, null when "
                "the log does not say (Exchange, Sendmail without ctladdr)"),
    "size": (pl.Int64(), "message size in bytes"),
    "nrcpt": (pl.Int64(), "number of envelope recipients of the queued message"),
    "relay": (pl.String(), "next hop of a delivery (`host[ip]:port`, `local`, `none`...)"),
    "delay": (pl.Float64(), "seconds from arrival to this delivery attempt"),
    "dsn": (pl.String(), "enhanced status code (`2.0.0`, `5.1.1`...)"),
    "status": (pl.String(), "`sent`, `deferred`, `bounced`, `expired`, `discarded` (Exim "
               "`:blackhole:`, an ACL `discard`: not delivered), or a reject action"),
    "client": (pl.String(), "SMTP client `host[ip]` that submitted the message"),
    "subject": (pl.String(), "Subject header (decoded from RFC 2047), from header_checks lines"),
    "in_reply_to": (pl.String(), "In-Reply-To header message id, without brackets"),
    "refs": (pl.String(), "References header as logged (space separated ids)"),
    "next_queue_id": (pl.String(), "queue id at the next hop (`queued as`, `forwarded as`, "
                      "a bounce's notice)"),
    "detail": (pl.String(), "free text: reply text of a delivery that failed or was deferred, "
               "reject reason, warning text (not kept for a successful delivery: its next "
               "hop's queue id is next_queue_id)"),
    "raw": (pl.String(), "the whole line, kept for `unparsed` and `foreign` lines only"),
}

EVENTS_SCHEMA: pl.Schema = pl.Schema({name: t for name, (t, _) in EVENT_COLUMNS.items()})


#: a successful delivery's reply text ("250 2.0.0 Ok: queued as X") is not kept: it is
#: most of a storm night's lines and a third of the events' bytes, and what anything reads
#: of it is in next_queue_id (the report's reasons are those of failures and deferrals)
SENT = (pl.col("kind") == "delivery") & (pl.col("status") == "sent")


def conform(frame: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Select exactly the events columns in order, adding missing ones as typed nulls;
    a successful delivery's ``detail`` is dropped (``SENT``)."""
    lf = frame.lazy()
    present = set(lf.collect_schema().names())

    def column(name: str, dtype: pl.DataType) -> pl.Expr:
        if name not in present:
            return pl.lit(None, dtype).alias(name)
        if name == "detail" and {"kind", "status"} <= present:
            return pl.when(SENT).then(None).otherwise(pl.col(name)).cast(dtype).alias(name)
        return pl.col(name).cast(dtype)

    return lf.select([column(name, dtype) for name, dtype in EVENTS_SCHEMA.items()])


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


# --- the registry of analyst tables ----------------------------------------------------

#: portable SQL type -> (DuckDB type as DESCRIBE shows it, Spark SQL type). TIMESTAMP is
#: an instant: DuckDB's TIMESTAMPTZ (shown in the session's zone, UTC in mailstorm),
#: Spark's TIMESTAMP (TIMESTAMP_LTZ, shown in spark.sql.session.timeZone); in Parquet a
#: timestamp[us] adjusted to UTC.
TYPES: dict[str, tuple[str, str]] = {
    "TIMESTAMP": ("TIMESTAMP WITH TIME ZONE", "TIMESTAMP"),
    "STRING": ("VARCHAR", "STRING"),
    "BIGINT": ("BIGINT", "BIGINT"),
    "INTEGER": ("INTEGER", "INT"),
    "DOUBLE": ("DOUBLE", "DOUBLE"),
    "BOOLEAN": ("BOOLEAN", "BOOLEAN"),
}

_PORTABLE: dict[pl.DataType, str] = {
    UTC_TS: "TIMESTAMP", pl.String(): "STRING", pl.Int64(): "BIGINT",
    pl.Float64(): "DOUBLE",
}


@dataclass(frozen=True)
class Column:
    """A column: its portable SQL type (a key of ``TYPES``) and what it means."""

    type: str
    description: str

    @property
    def duckdb_type(self) -> str:
        return TYPES[self.type][0]

    @property
    def spark_type(self) -> str:
        return TYPES[self.type][1]


@dataclass(frozen=True)
class Table:
    """An analyst table: its columns in order, and ``day``, the column whose UTC date
    partitions it in the dataset (None: not partitioned)."""

    name: str
    description: str
    columns: dict[str, Column]
    day: str | None


def _cols(*specs: tuple[str, str, str]) -> dict[str, Column]:
    return {name: Column(kind, text) for name, kind, text in specs}


T, S, B, INT, D, BOOL = "TIMESTAMP", "STRING", "BIGINT", "INTEGER", "DOUBLE", "BOOLEAN"

_MESSAGES = _cols(
    ("message_key", B, "64-bit key of the instance: a hash of host, queue id and "
     "generation (Postfix reuses queue ids; the generation counts earlier `removed` lines "
     "of the same id). Each engine hashes its own way (DuckDB `hash`, Spark `xxhash64`): "
     "join on it within one dataset, never across engines"),
    ("host", S, "host where the message was queued"),
    ("queue_id", S, "queue id on that host"),
    ("message_id", S, "its Message-ID"),
    ("sender", S, "envelope sender"),
    ("subject", S, "Subject as logged (decoded)"),
    ("in_reply_to", S, "In-Reply-To as logged"),
    ("refs", S, "References as logged"),
    ("size", B, "size in bytes, from qmgr (Postfix) or the format's `received` line"),
    ("nrcpt", B, "envelope recipients, from qmgr (Postfix) or the format's `received` line"),
    ("first_seen", T, "first line about it on this host"),
    ("last_seen", T, "last line about it on this host"),
    ("generation", B, "which use of its queue id on its host it is, from 0 (Postfix reuses "
     "a queue id once a message has left the queue)"),
    ("removed_at", T, "when it left the queue (Postfix `removed`), if logged"),
    ("client", S, "the SMTP client that submitted it"),
    ("intake_logged", BOOL, "its arrival is in the log (smtpd client, pickup, cleanup, a "
     "`received` line); Postfix's qmgr `from=` alone is not: it is logged again at every "
     "retry"),
    ("message_uid", S, "the message across hosts: its Message-ID (with sender and size "
     "appended when strangers reuse one id), else the id of the instance it was handed "
     "over from or to on the same host (`queued as`: Sendmail's DSNs into the local "
     "Postfix), else `host queue_id generation`"),
    ("thread_subject", S, "subject without reply/forward prefixes and list tags, lower "
     "case"),
    ("is_reply", BOOL, "has a reply prefix or an In-Reply-To"),
    ("is_auto", BOOL, "automatic: null sender, a bounce created by the MTA, or an "
     "auto-reply/receipt/recall subject (false for an unknown sender: a message queued "
     "before the log starts)"),
    ("is_local_ndr", BOOL, "a non-delivery notice this host's MTA made (Postfix bounce "
     "daemon, Sendmail DSN)"),
)

_DELIVERIES = _cols(
    ("message_key", B, "the message instance (join `messages`)"),
    ("host", S, "host that delivered"),
    ("queue_id", S, "queue id on that host"),
    ("ts", T, "when the attempt was logged"),
    ("recipient", S, "final recipient"),
    ("list", S, "the list or alias it came through: Postfix `orig_to` when it differs, "
     "Exim's parent address, an `expansions` row of the same message (Exchange EXPAND), "
     "or the list of a `list_posts` row (Mailman)"),
    ("status", S, "delivery status as logged"),
    ("dsn", S, "enhanced status code as logged"),
    ("relay", S, "next hop as logged"),
    ("delay", D, "seconds from arrival to this attempt, as logged"),
    ("next_queue_id", S, "queue id at the next hop, when the reply named one"),
    ("program", S, "delivering agent (`postfix/lmtp`, `postfix/smtp`...)"),
    ("is_hop", BOOL, "a hand-over to a host or content filter whose log was also read "
     "(`queued as X` and X appears within the hour), or to the list server of a "
     "`list_posts` row: not counted as a delivery"),
    ("source_file", S, "log file of the evidence line"),
    ("line_no", B, "line number of the evidence line"),
)

_LOGICAL = _cols(
    ("message_uid", S, "the Message-ID (as in `messages.message_uid`), or "
     "`host queue_id generation` when none was logged"),
    ("message_id", S, "Message-ID, from the first instance"),
    ("sender", S, "envelope sender, from the first instance"),
    ("subject", S, "Subject, from the first instance"),
    ("thread_subject", S, "normalized subject, from the first instance"),
    ("in_reply_to", S, "In-Reply-To as logged"),
    ("refs", S, "References as logged"),
    ("size", B, "size in bytes as logged"),
    ("nrcpt", B, "envelope recipients as logged"),
    ("is_reply", BOOL, "as in `messages`, true if any instance says so"),
    ("is_auto", BOOL, "as in `messages`, true if any instance says so"),
    ("first_seen", T, "first line about it, over all hosts"),
    ("last_seen", T, "last line about it, over all hosts"),
    ("hops", B, "instances (hosts/queues) it passed"),
    ("hosts", S, "comma-separated hosts"),
    ("recipients", B, "distinct recipients (hops excluded)"),
    ("deliveries", B, "copies delivered: distinct (recipient, list) routes with a final "
     "status (not `deferred`); a route logged on two hosts counts once, a list copy and a "
     "Cc copy count twice"),
    ("bounced", B, "routes with a `bounced` status"),
    ("submitted", B, "distinct addresses the sender wrote (a list counts once)"),
    ("loop_bounces", B, "routes bounced with DSN 5.4.6 (the mail loops)"),
    ("to_address", S, "its recipient, when it has exactly one (hops excluded)"),
    ("max_passes", B, "most instances of it on one host: a message seen again and again "
     "is going round in a loop (a list server's copies are not passes)"),
    ("list", S, "the list most of its recipients came through; for a list server's copy "
     "the list of its `<list>-bounces@` return path; for a returned notice the list it "
     "bounces"),
    ("returned", INT, "1 for a non-delivery notice a remote server sent back to a list's "
     "bounce address (null sender, to `<list>-bounces@`, VERP too): a bounce of that "
     "list's posts"),
    ("prelog_origin", S, "for a message queued before the log starts (its arrival not "
     "logged; its sender too, unless a retry names it): the recipient domain and relay of "
     "its bounces, which group them"),
    ("last_delivery", T, "time of its last delivery"),
    ("root_ref", S, "first id of References, else In-Reply-To"),
    ("thread_id", S, "its thread (join `threads`)"),
)

_THREADS = _cols(
    ("thread_id", S, "hash of the thread key (list and normalized subject of the root)"),
    ("list", S, "list of the first message"),
    ("subject", S, "normalized subject of the first message"),
    ("root_message_id", S, "Message-ID of the first message"),
    ("first_ts", T, "first message"),
    ("last_ts", T, "last delivery (or last line) of its messages"),
    ("messages", B, "logical messages in the thread"),
    ("replies", B, "those that are replies"),
    ("senders", B, "distinct senders"),
    ("deliveries", B, "deliveries of its messages"),
)

_EXPANSIONS = _cols(
    ("message_uid", S, "the message expanded (join `logical_messages`)"),
    ("host", S, "host that logged the expansion"),
    ("queue_id", S, "queue id on that host"),
    ("list", S, "the list or alias expanded"),
    ("recipient", S, "a member it expanded to"),
    ("ts", T, "when it was logged"),
)

_LIST_POSTS = _cols(
    ("message_id", S, "Message-ID of the post"),
    ("list", S, "the list's address (Mailman 2 logs only its name, completed from the "
     "`<name>-bounces@domain` sender of the list's own copies)"),
    ("sender", S, "who posted"),
    ("ts", T, "when the list server logged the post"),
    ("nrcpt", B, "recipients the list server sent it to"),
)

_INCIDENTS = _cols(
    ("id", S, "incident id, stable across runs (`<kind>-<hash>`)"),
    ("kind", S, "reply_storm, mail_loop, bounce_storm... (see README: Detection rules)"),
    ("severity", S, "info, low, medium, high or critical"),
    ("rule", S, "the rule that found it"),
    ("list", S, "the list it happened on"),
    ("subject", S, "subject of its thread"),
    ("root_message_id", S, "Message-ID of the message that started it"),
    ("start", T, "its first message"),
    ("end", T, "its last message or delivery"),
    ("peak", T, "the minute with most messages"),
    ("messages", B, "messages in it"),
    ("deliveries", B, "deliveries of those messages"),
    ("senders", B, "distinct senders"),
    ("status", S, "new, grown, ongoing or ended, relative to what earlier runs reported"),
    ("first_reported", T, "when a run first reported it"),
    ("headline", S, "one sentence saying what happened"),
)

_INCIDENT_MESSAGES = _cols(
    ("incident_id", S, "the incident (join `incidents.id`)"),
    ("message_uid", S, "one of its messages (join `logical_messages`)"),
    ("is_root", BOOL, "the message that started it"),
)

TABLES: dict[str, Table] = {t.name: t for t in [
    Table("events", "one row per log line", {
        name: Column(_PORTABLE[dtype], text) for name, (dtype, text) in EVENT_COLUMNS.items()
    }, "ts"),
    Table("messages", "one row per message per host", _MESSAGES, "first_seen"),
    Table("deliveries", "one row per delivery attempt", _DELIVERIES, "ts"),
    Table("logical_messages", "one row per message across hosts", _LOGICAL, "first_seen"),
    Table("threads", "one row per thread of logical messages", _THREADS, "first_ts"),
    Table("expansions", "list and alias expansions logged as lines of their own "
          "(Exchange EXPAND)", _EXPANSIONS, "ts"),
    Table("list_posts", "posts a list server logged (Mailman `post`)", _LIST_POSTS, "ts"),
    Table("incidents", "the incidents the last detection found (the fields of "
          "incidents.json)", _INCIDENTS, "start"),
    Table("incident_messages", "which logical messages each incident holds",
          _INCIDENT_MESSAGES, None),
]}

#: what ``mailstorm schema --format`` can print
FORMATS = ("text", "markdown", "json", "sql")


def markdown_columns(table: Table) -> str:
    """The README's table of ``table``'s columns."""
    rows = [f"| {name} | {col.type} | {col.description} |"
            for name, col in table.columns.items()]
    return "\n".join(["| column | type | meaning |", "| --- | --- | --- |", *rows])


def _comments(table: Table) -> list[tuple[str | None, str]]:
    """(column, or None for the table itself; its text) of ``table``."""
    return [(None, table.description),
            *((name, col.description) for name, col in table.columns.items())]


def _comment_statement(table: Table, kind: str, column: str | None, text: str) -> str:
    target = f'COLUMN {table.name}."{column}"' if column else f"{kind} {table.name}"
    return f"COMMENT ON {target} IS {sql_string(text)}"


def comment_statements(table: Table, kind: str = "VIEW") -> list[str]:
    """``COMMENT ON`` for ``table`` (a ``kind``: VIEW or TABLE) and each of its columns.
    The texts are the registry's own, never data: quoted, not bound (DuckDB binds no
    parameter in COMMENT)."""
    return [_comment_statement(table, kind, column, text) for column, text in _comments(table)]


def comment_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Give the registry's tables in ``con``'s main schema the comments they lack (a view
    made again loses them), in one transaction."""
    where = "schema_name = 'main' AND database_name = current_database()"
    kinds: dict[str, str] = {}
    have = set()
    for name, column, kind, comment in con.execute(
            f"SELECT table_name, NULL, 'TABLE', comment FROM duckdb_tables() WHERE {where} "
            f"UNION ALL SELECT view_name, NULL, 'VIEW', comment FROM duckdb_views() "
            f"WHERE {where} UNION ALL SELECT table_name, column_name, NULL, comment "
            f"FROM duckdb_columns() WHERE {where}").fetchall():
        if name in TABLES:
            have.add((name, column, comment))
            if kind:
                kinds[name] = kind
    statements = [_comment_statement(TABLES[name], kind, column, text)
                  for name, kind in kinds.items() for column, text in _comments(TABLES[name])
                  if (name, column, text) not in have]
    if not statements:
        return
    con.execute("BEGIN TRANSACTION")
    try:
        for statement in statements:
            con.execute(statement)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def create_statement(table: Table) -> str:
    """DuckDB's ``CREATE TABLE`` for ``table`` (its comments: ``comment_statements``)."""
    cols = ",\n".join(f'    "{name}" {col.duckdb_type}' for name, col in table.columns.items())
    return f"CREATE TABLE {table.name} (\n{cols}\n)"


def render(names: list[str], fmt: str) -> str:
    """The registry's tables ``names`` as text, markdown, JSON or SQL (DuckDB DDL with
    its comments)."""
    tables = [TABLES[n] for n in names]
    if fmt == "json":
        return json.dumps({t.name: {
            "description": t.description, "day": t.day,
            "columns": [{"name": n, "type": c.type, "duckdb_type": c.duckdb_type,
                         "spark_type": c.spark_type, "description": c.description}
                        for n, c in t.columns.items()]} for t in tables}, indent=2)
    if fmt == "markdown":
        return "\n\n".join(f"### `{t.name}`: {t.description}\n\n{markdown_columns(t)}"
                           for t in tables)
    if fmt == "sql":
        return "\n\n".join(";\n".join([create_statement(t), *comment_statements(t, "TABLE")])
                           + ";" for t in tables)
    width = max(len(n) for t in tables for n in t.columns)
    out = []
    for t in tables:
        day = f" (partitioned by the UTC day of {t.day})" if t.day else ""
        out.append(f"{t.name}: {t.description}{day}")
        out += [f"  {n:<{width}}  {c.type:<9}  {c.description}" for n, c in t.columns.items()]
        out.append("")
    return "\n".join(out).rstrip("\n")
