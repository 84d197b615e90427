"""Build the model tables (messages, deliveries, logical_messages, threads...) from events.

The first build reads every event. Later builds are incremental, so that a night costs
what its own lines cost, not what the warehouse has gathered: the events parts not yet
in the model name the messages they touch (their host and queue id), and those grow to
every message the model's statements relate them to (same Message-ID, same thread root,
a hand-over by queue id, one logical message); only their events are read again, the
model's statements run over them in a scratch schema, and their rows replace the old
ones. Relations by Message-ID and thread root are looked for among the messages of the
last ``LOOKBACK`` before the new lines (a queue keeps mail for five days by default); a
queue id's stored messages are all rebuilt, however old. ``threads`` is a view: a thread
is summed when it is read.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import duckdb

from detector.dialect import DUCKDB, Dialect, render_resource, sql_functions
from detector.warehouse import (
    MODEL_PARTS,
    Warehouse,
    database_name,
    dead_table,
    main_tables,
    parquet_scan,
    replace_views,
    set_meta,
    sql_path,
    transaction,
)

#: the model's tables, in the order model.sql makes them; each is written to a Parquet
#: part as it is built and read from it by the later statements and by analysts
#: (Warehouse.write_model_part)
MODEL_TABLES = tuple(MODEL_PARTS)
#: the model's views over those tables (threads.sql)
MODEL_VIEWS = ("threads",)
#: a message's events read again by an incremental build: from this long before the
#: earliest new line (or its first event, if later)
LOOKBACK = timedelta(days=10)
#: the model's meaning of its rows; a build by another version starts afresh
MODEL_VERSION = "5"
_SCRATCH = "_inc"
_DDL = [
    "CREATE TABLE IF NOT EXISTS model_parts (part VARCHAR PRIMARY KEY)",
    *(f"CREATE TABLE IF NOT EXISTS {dead_table(name)} ({part.key} {part.kind}, "
      "build INTEGER)" for name, part in MODEL_PARTS.items()),
]


@dataclass(frozen=True)
class Built:
    """What a build changed: every message (``full``) or those first seen from
    ``since`` on (and a few older ones the new lines relate to); ``messages`` logical
    messages rebuilt."""

    full: bool
    messages: int
    since: datetime | None


_MADE = re.compile(r"CREATE OR REPLACE (TABLE|VIEW) (\w+) AS\s+(.*)", re.IGNORECASE | re.DOTALL)
_DROPPED = re.compile(r"DROP (?:VIEW|TABLE) IF EXISTS (\w+)", re.IGNORECASE)

#: the regex patterns model.sql names (a template never writes a pattern inline: the
#: engines quote backslashes differently)
PATTERNS = {
    # a relay's host without its address or port ("mx.example[192.0.2.1]:25")
    "RELAY_PORT": r"[\[:].*\z",
    # an SMTP client on this host's loopback
    "LOOPBACK_CLIENT": r"(^|\[)(127\.|::1\])",
}


class Statement(NamedTuple):
    """One step of the model: ``kind`` "table" materialises the SELECT ``sql`` as table
    ``name``, "view" makes view ``name`` over it, "drop" drops the view or working table
    ``name`` (``sql`` is its DROP VIEW|TABLE IF EXISTS statement). ``needs``: the line
    kinds without which its SELECT has no rows (model.sql's ``-- needs kinds:`` line above
    it)."""

    name: str | None
    kind: str
    sql: str
    needs: tuple[str, ...] = ()


#: a "-- needs kinds:" line and the statement right below it
_NEEDS = re.compile(r"^-- needs kinds: ([\w, ]+)\nCREATE OR REPLACE (?:TABLE|VIEW) (\w+)",
                    re.MULTILINE | re.IGNORECASE)


def _settled_statement(dialect: Dialect) -> Statement:
    # a full build numbers every queue id's generations from its first use: no use of a
    # queue id is settled (an incremental build makes _settled itself, see _incremental)
    return Statement("_settled", "table", (
        f"SELECT {dialect.cast_string('NULL')} AS host, {dialect.cast_string('NULL')} AS "
        "queue_id, CAST(NULL AS BIGINT) AS first_generation WHERE false"))


def _rendered(name: str, dialect: Dialect) -> list[Statement]:
    out = []
    script = render_resource("detector.model", f"sql/{name}", dialect, **PATTERNS)
    needs = {m.group(2): tuple(k.strip() for k in m.group(1).split(","))
             for m in _NEEDS.finditer(script)}
    if len(needs) != script.count("-- needs kinds:"):
        raise ValueError(f"{name}: a '-- needs kinds:' line not right above its statement")
    for text in statements(script):
        made = _MADE.match(text)
        dropped = _DROPPED.fullmatch(text)
        if made:
            out.append(Statement(made.group(2), made.group(1).lower(), made.group(3),
                                 needs.get(made.group(2), ())))
        elif dropped:
            out.append(Statement(dropped.group(1), "drop", text))
        else:
            raise ValueError(f"{name}: not a model statement: {text[:80]!r}")
    return out


def model_statements(dialect: Dialect, *, settled: bool = True,
                     views: bool = True) -> list[Statement]:
    """The model's statements for ``dialect``, in the order to run them, over a table or
    view ``events`` (detector/schema.py's columns). First (``settled``) the empty
    ``_settled`` of a full build; last (``views``) the ``threads`` view (see
    :func:`view_statements`). The tables named in warehouse.MODEL_PARTS are the model's
    results; those starting with ``_`` but ``_relations`` are working tables."""
    first = [_settled_statement(dialect)] if settled else []
    last = view_statements(dialect) if views else []
    return first + _rendered("model.sql", dialect) + last


def view_statements(dialect: Dialect) -> list[Statement]:
    """The views over the model tables (``threads``), for ``dialect``."""
    return _rendered("threads.sql", dialect)


def create_views(con: duckdb.DuckDBPyConnection) -> None:
    """The views over the model tables (``threads``) in the warehouse; one unchanged is
    left as it is, comments and all (``warehouse.replace_views``)."""
    replace_views(con, {v.name: v.sql for v in view_statements(DUCKDB)
                        if v.kind == "view" and v.name})


def create_macros(con: duckdb.DuckDBPyConnection) -> None:
    """SQL macros of the model's functions in the warehouse, for analysts and the
    incremental build's own SQL (the model's statements expand them inline)."""
    functions = sql_functions(DUCKDB)
    for name in ("thread_subject", "has_reply_prefix", "is_auto_subject", "list_of_copy"):
        con.execute(f"CREATE OR REPLACE MACRO {name}(s) AS {functions[name]('s')}")
    con.execute("CREATE OR REPLACE MACRO root_ref(refs, in_reply_to) AS "
                f"{functions['root_ref']('refs', 'in_reply_to')}")


def statements(sql: str) -> list[str]:
    """Split a SQL script into statements (our scripts hold no ';' or '--' in literals)."""
    body = re.sub(r"--[^\n]*", "", sql)
    return [s.strip() for s in body.split(";") if s.strip()]


def _meta(con: duckdb.DuckDBPyConnection, key: str) -> str | None:
    row = con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
    return None if row is None else str(row[0])


def build_model(wh: Warehouse, *, full: bool = False) -> Built:
    """Bring the model tables up to date with the events, in one transaction: all of them
    (``full``, a first build, or a warehouse whose events lost parts) or the messages the
    events parts added since the last build touch."""
    con = wh.con
    tables = main_tables(con)
    fresh = not all(dead_table(name) in tables for name in MODEL_TABLES)
    with transaction(con):  # one commit for these, not one each
        create_macros(con)
        for name in MODEL_TABLES:  # warehouses from before the model was kept as Parquet
            if name in tables:
                con.execute(f"DROP TABLE {name}")
                fresh = True
            fresh = fresh or not wh.model_files(name)
        for ddl in _DDL:
            con.execute(ddl)
    parts = {r[0] for r in con.execute("SELECT part FROM parts").fetchall()}
    built = {r[0] for r in con.execute("SELECT part FROM model_parts").fetchall()}
    new = sorted(parts - built)
    full = (full or fresh or bool(built - parts)
            or _meta(con, "model_version") != MODEL_VERSION)
    dirty = con.execute("SELECT count(*) FROM model_dirty").fetchone()
    if not full and not new and not (dirty and dirty[0]):
        return Built(full=False, messages=0, since=None)
    build = int(_meta(con, "model_build") or 0) + 1
    written: dict[Path, int] = {}
    try:
        # the rows are built in a scratch database in memory (its working tables never
        # reach the warehouse file) and written as Parquet parts; one transaction then
        # makes the parts visible and hides the rows they replace
        with _scratch(con):
            if full:
                merge = _full(wh, build, written)
            else:
                merge = _incremental(wh, build, written, [wh.parts_dir / n for n in new])
            con.execute("BEGIN TRANSACTION")
            if full:
                _drop_retired(wh)
            result = merge()
            create_views(con)
            con.execute("DELETE FROM model_parts")
            con.execute("INSERT INTO model_parts SELECT part FROM parts")
            con.execute("DELETE FROM model_dirty")
            wh.save_part_times()
            set_meta(con, {"model_build": str(build), "model_version": MODEL_VERSION})
            con.execute("COMMIT")
    except BaseException:
        # after a failed write (a full disk) DuckDB may refuse the rollback too: the first
        # error is the one that says what happened
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        wh.forget_part_times()
        for path in written:
            path.unlink(missing_ok=True)
        raise
    finally:
        with contextlib.suppress(duckdb.Error):  # (after a failure, its error is the one)
            wh.drop_temp_tables()
    wh.tidy_parquet_views()
    return result


def _drop_retired(wh: Warehouse) -> None:
    """Forget the Parquet tables an older model version kept and this one does not (their
    files go with the next tidy)."""
    for name in wh.parquet_tables():
        if name not in MODEL_PARTS:
            wh.set_model_files(name, [])
            wh.con.execute(f"DROP VIEW IF EXISTS main.{name}")
            wh.con.execute(f"DROP TABLE IF EXISTS {dead_table(name)}")


@contextlib.contextmanager
def _scratch(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """An in-memory database ``_inc`` attached for the scratch tables; detached after."""
    main = database_name(con)
    con.execute(f"ATTACH ':memory:' AS {_SCRATCH}")
    try:
        yield
    finally:
        con.execute(f"USE {main}")
        with contextlib.suppress(duckdb.Error):
            con.execute(f"DETACH {_SCRATCH}")


@contextlib.contextmanager
def _in_scratch(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Statements create in the scratch database and read it first, then the warehouse."""
    main = database_name(con)
    con.execute(f"USE {_SCRATCH}")
    con.execute(f"SET search_path = '{_SCRATCH}.main,{main}.main'")
    try:
        yield
    finally:
        con.execute(f"USE {main}")
        con.execute("RESET search_path")


def _run(wh: Warehouse, script: list[Statement], build: int, written: dict[Path, int]
         ) -> None:
    """Run model statements in the scratch database; a model table becomes this build's
    Parquet part, which the later statements read (not the query again). A statement
    over line kinds no events part holds makes its table empty without reading them."""
    kinds = wh.event_kinds()
    for step in script:
        sql = step.sql
        if step.needs and kinds is not None and not kinds.intersection(step.needs):
            sql = f"SELECT * FROM ({sql}) AS none_of_its_kinds WHERE false"
        if step.kind == "drop":
            wh.con.execute(step.sql)
        elif step.name in MODEL_PARTS:
            files = wh.write_model_part(step.name, sql, build)
            written.update(files)
            wh.con.execute(f"CREATE OR REPLACE VIEW {step.name} AS SELECT * FROM "
                           f"{parquet_scan([p for p, _ in files])}")
        else:
            wh.con.execute(f"CREATE OR REPLACE {step.kind.upper()} {step.name} AS {sql}")


def _parts_of(name: str, written: dict[Path, int], *, keep_empty: bool) -> list[Path]:
    """This build's part of ``name``; an incremental build adds none that is empty (a
    full build keeps it: a table's only part holds its columns)."""
    return [p for p, rows in written.items() if p.name.startswith(f"{name}-")
            and (keep_empty or rows > 0)]


def _full(wh: Warehouse, build: int, written: dict[Path, int]) -> Callable[[], Built]:
    con = wh.con
    with _in_scratch(con):
        _run(wh, model_statements(DUCKDB, views=False), build, written)
    n = con.execute(f"SELECT count(*), min(first_seen) FROM {_SCRATCH}.main.logical_messages"
                    ).fetchone()

    def merge() -> Built:
        for name in MODEL_TABLES:
            con.execute(f"DELETE FROM {dead_table(name)}")
            wh.set_model_files(name, _parts_of(name, written, keep_empty=True),
                               tombstones=True)  # (made by _DDL)
        return Built(full=True, messages=int(n[0]) if n else 0, since=n[1] if n else None)

    return merge


# Relations that make a message's rows depend on another's, each as SQL over temporary
# tables of hashes (model.sql's _relations): _keys (queue_key of a host's queue id, and
# queue_hash of the queue id alone), _ids (id_hash of Message-IDs), _links (queue id
# hand-overs) and _rel (the stored messages of the last LOOKBACK); every round adds what
# the keys and ids found so far reach, until nothing is added.
_GROW = [
    # every instance of a Message-ID or a logical message, and their queue ids' keys
    """INSERT INTO _keys SELECT DISTINCT r.queue_key, r.queue_hash FROM _rel r
       WHERE (r.id_hash IN (SELECT id_hash FROM _ids)
              OR r.uid_hash IN (SELECT s.uid_hash FROM _rel s
                                WHERE s.queue_key IN (SELECT queue_key FROM _keys)))
         AND r.queue_key NOT IN (SELECT queue_key FROM _keys)""",
    # hand-overs and notices by queue id, both ways ('queued as', a bounce's new queue id)
    """INSERT INTO _keys SELECT DISTINCT l.queue_key, l.queue_hash FROM _links l
       WHERE l.next_hash IN (SELECT queue_hash FROM _keys)
         AND l.queue_key NOT IN (SELECT queue_key FROM _keys)""",
    """INSERT INTO _keys SELECT DISTINCT r.queue_key, r.queue_hash FROM _rel r
       WHERE r.queue_hash IN (SELECT l.next_hash FROM _links l
                              WHERE l.queue_key IN (SELECT queue_key FROM _keys))
         AND r.queue_key NOT IN (SELECT queue_key FROM _keys)""",
    # the ids of the messages found, the roots of their threads, and the replies whose
    # root they are
    """INSERT INTO _ids SELECT DISTINCT x.id_hash FROM (
           SELECT r.id_hash FROM _rel r WHERE r.queue_key IN (SELECT queue_key FROM _keys)
           UNION ALL
           SELECT r.root_hash FROM _rel r WHERE r.uid_hash IN (
               SELECT s.uid_hash FROM _rel s
               WHERE s.queue_key IN (SELECT queue_key FROM _keys))
           UNION ALL
           SELECT r.id_hash FROM _rel r WHERE r.root_hash IN (SELECT id_hash FROM _ids)) x
       WHERE x.id_hash IS NOT NULL AND x.id_hash NOT IN (SELECT id_hash FROM _ids)""",
]


#: at most this many spans of time are read from older parts; more are read as one
_MAX_SPANS = 16
#: the far end of the span of the new lines
_OPEN_END = datetime(9999, 12, 31, tzinfo=UTC)


def _spans(con: duckdb.DuckDBPyConnection, newest: datetime | None
           ) -> list[tuple[datetime, datetime]]:
    """The spans of time whose lines an incremental build reads from older parts: each
    stored message rebuilt (_old) from an hour before its first line to an hour after its
    last, and the new lines from an hour before the first on; overlapping ones merged."""
    rows = con.execute("""
        WITH r AS (
            SELECT first_seen - INTERVAL 1 HOUR AS a,
                coalesce(last_seen, first_seen) + INTERVAL 1 HOUR AS b
            FROM _old WHERE first_seen IS NOT NULL
            UNION ALL
            SELECT CAST(? AS TIMESTAMPTZ) - INTERVAL 1 HOUR, CAST(? AS TIMESTAMPTZ)
            WHERE CAST(? AS TIMESTAMPTZ) IS NOT NULL
        ), reach AS (
            SELECT a, b, max(b) OVER (ORDER BY a, b ROWS BETWEEN UNBOUNDED PRECEDING
                                      AND 1 PRECEDING) AS before FROM r
        ), islands AS (
            SELECT a, b, sum(CASE WHEN before IS NULL OR a > before THEN 1 ELSE 0 END)
                OVER (ORDER BY a, b ROWS UNBOUNDED PRECEDING) AS island FROM reach
        )
        SELECT min(a), max(b) FROM islands GROUP BY island ORDER BY 1""",
                       [newest, _OPEN_END, newest]).fetchall()
    spans = [(a, b) for a, b in rows]
    if len(spans) > _MAX_SPANS:
        spans = [(spans[0][0], max(b for _, b in spans))]
    return spans


def _incremental(wh: Warehouse, build: int, written: dict[Path, int],
                 new_parts: list[Path]) -> Callable[[], Built]:
    """Build the touched messages' rows in the scratch database; return the step that
    makes them replace the old rows (in the caller's transaction)."""
    con = wh.con
    main = database_name(con)
    columns = "host, queue_id, message_id, refs, in_reply_to, ts"
    files = "[" + ", ".join(sql_path(p) for p in new_parts) + "]"
    con.execute(f"CREATE OR REPLACE TEMP TABLE _new AS SELECT {columns} FROM "
                + (f"read_parquet({files})" if new_parts else "events WHERE false"))
    # each new key and the time of its first new line (see _over below)
    con.execute("""CREATE OR REPLACE TEMP TABLE _knew AS
        SELECT hash(coalesce(host, ''), queue_id) AS queue_key, hash(queue_id) AS queue_hash,
            min(ts) AS t
        FROM _new WHERE queue_id IS NOT NULL GROUP BY ALL""")
    con.execute("""CREATE OR REPLACE TEMP TABLE _keys AS
        SELECT queue_key, queue_hash FROM _knew
        UNION SELECT hash(coalesce(host, ''), queue_id), hash(queue_id) FROM model_dirty
        WHERE queue_id IS NOT NULL""")
    con.execute("""CREATE OR REPLACE TEMP TABLE _ids AS
        SELECT DISTINCT hash(id) AS id_hash FROM (
            SELECT message_id AS id FROM _new
            UNION ALL SELECT root_ref(refs, in_reply_to) FROM _new
            UNION ALL SELECT in_reply_to FROM _new
            UNION ALL SELECT message_id FROM model_dirty)
        WHERE id IS NOT NULL AND id <> ''""")
    row = con.execute("SELECT min(ts) FROM _new").fetchone()
    newest: datetime | None = row[0] if row else None
    since = None if newest is None else newest - LOOKBACK
    recent = "(CAST(? AS TIMESTAMPTZ) IS NULL OR {0} >= ? OR {0} IS NULL)"
    # what the new lines can relate to: the model's messages of the last LOOKBACK, and
    # hand-overs and notices by queue id from a day before the new lines on
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _rel AS
        SELECT message_key, queue_key, queue_hash, id_hash, uid_hash, root_hash, removed_at
        FROM main._relations WHERE {recent.format('last_seen')}""", [since, since])
    # a use of a queue id that left the queue an hour before the new lines of its key is
    # over: it is set aside, and followed only if what the new lines reach relates to it
    # (below). Postfix's short queue ids come back within days on a busy host.
    con.execute("""CREATE OR REPLACE TEMP TABLE _over AS
        SELECT r.* FROM _rel r JOIN _knew n USING (queue_key)
        WHERE r.removed_at < n.t - INTERVAL 1 HOUR""")
    con.execute("DELETE FROM _rel WHERE message_key IN (SELECT message_key FROM _over)")
    day = None if newest is None else newest - timedelta(days=1)
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _links AS
        SELECT DISTINCT hash(coalesce(host, ''), queue_id) AS queue_key,
            hash(queue_id) AS queue_hash, hash(next_queue_id) AS next_hash, ts
        FROM events
        WHERE next_queue_id IS NOT NULL AND queue_id IS NOT NULL
          AND {recent.format('ts')}""", [day, day])
    while True:
        before = -1
        while True:
            for statement in _GROW:
                con.execute(statement)
            size = con.execute("SELECT (SELECT count(*) FROM _keys) + "
                               "(SELECT count(*) FROM _ids)").fetchone()
            if size is None or size[0] == before:
                break
            before = size[0]
        # a use set aside that the closure reaches after all (by its Message-ID, its
        # logical message, or its thread's root) is followed as any other
        con.execute("""CREATE OR REPLACE TEMP TABLE _back AS SELECT * FROM _over
            WHERE id_hash IN (SELECT id_hash FROM _ids)
               OR root_hash IN (SELECT id_hash FROM _ids)
               OR uid_hash IN (SELECT s.uid_hash FROM _rel s
                               WHERE s.queue_key IN (SELECT queue_key FROM _keys))
               -- a hand-over or notice by queue id, to or from it, before it was removed
               OR message_key IN (
                   SELECT o.message_key FROM _over o
                   JOIN _links l ON l.queue_key = o.queue_key AND l.ts <= o.removed_at
                   WHERE l.next_hash IN (SELECT queue_hash FROM _keys)
                   UNION ALL
                   SELECT o.message_key FROM _over o
                   JOIN _links l ON l.next_hash = o.queue_hash AND l.ts <= o.removed_at
                   WHERE l.queue_key IN (SELECT queue_key FROM _keys))""")
        if not (con.execute("SELECT count(*) FROM _back").fetchone() or (0,))[0]:
            break
        con.execute("INSERT INTO _rel SELECT * FROM _back")
        con.execute("DELETE FROM _over WHERE message_key IN (SELECT message_key FROM _back)")
    # every stored message of those queue ids is rebuilt, however old (a message deferred
    # for days), but for the uses of a queue id that are over: set aside above, or left
    # the queue before LOOKBACK and before the new lines of their key, sharing no
    # Message-ID with what the closure reached. The generations after the last of those
    # are read from its removal on and numbered from the one after it (model.sql's
    # _settled): a night does not read a queue id's history again.
    con.execute("""CREATE OR REPLACE TEMP TABLE _stored AS
        SELECT message_key, queue_key, id_hash, uid_hash, generation, removed_at, first_seen,
            last_seen
        FROM main._relations WHERE queue_key IN (SELECT queue_key FROM _keys)""")
    con.execute("""CREATE OR REPLACE TEMP TABLE _settled_keys AS
        WITH s AS (
            SELECT s.queue_key, s.generation, s.removed_at,
                coalesce(s.message_key IN (SELECT message_key FROM _over)
                    OR (s.message_key NOT IN (SELECT message_key FROM _rel)
                        AND s.removed_at < least(coalesce(n.t, ?), ?) - INTERVAL 1 HOUR
                        AND (s.id_hash IS NULL
                             OR s.id_hash NOT IN (SELECT id_hash FROM _ids))), false) AS over
            FROM _stored s LEFT JOIN _knew n USING (queue_key)
        ), open AS (  -- the first use not over: none before it is followed
            SELECT queue_key, min(generation) FILTER (WHERE NOT over) AS generation
            FROM s GROUP BY queue_key
        )
        SELECT s.queue_key, max(s.generation) AS generation,
            arg_max(s.removed_at, s.generation) AS removed_at
        FROM s JOIN open o USING (queue_key)
        WHERE s.over AND (o.generation IS NULL OR s.generation < o.generation)
        GROUP BY s.queue_key""", [since, since])
    # the stored messages rebuilt
    con.execute("""CREATE OR REPLACE TEMP TABLE _old AS
        SELECT s.message_key, s.uid_hash, s.first_seen, s.last_seen FROM _stored s
        LEFT JOIN _settled_keys x USING (queue_key)
        WHERE x.generation IS NULL OR s.generation > x.generation""")
    # the events of those messages: every keyed line of the new parts (their keys and ids
    # began the closure), read where they lie, as a full build reads them, and the lines
    # of older parts the closure reached, copied
    earlier = sorted(set(wh.parts_dir.glob("part-*.parquet")) - set(new_parts))
    keyed = "(queue_id IS NOT NULL OR kind = 'list_post')"
    with _in_scratch(con):
        if earlier:
            listed = "[" + ", ".join(sql_path(p) for p in earlier) + "]"
            # the stored messages' own spans of time, and the hour before the new lines:
            # a span each, so that a part's row groups outside them are never read (a
            # queue id used again reaches back days, to one message)
            spans: list[tuple[str, list[datetime]]] = [("e.ts IS NULL", [])] + [
                ("e.ts BETWEEN ? AND ?", [a, b]) for a, b in _spans(con, newest)]
            con.execute("CREATE TABLE _earlier AS " + " UNION ALL ".join(f"""
                SELECT e.* FROM read_parquet({listed}) e
                LEFT JOIN _settled_keys x
                    ON x.queue_key = hash(coalesce(e.host, ''), e.queue_id)
                WHERE ({span})
                  AND ((e.queue_id IS NOT NULL AND hash(coalesce(e.host, ''), e.queue_id)
                        IN (SELECT queue_key FROM _keys))
                       OR (e.kind = 'list_post'
                           AND hash(e.message_id) IN (SELECT id_hash FROM _ids)))
                  AND (x.removed_at IS NULL OR e.ts > x.removed_at OR e.ts IS NULL)"""
                for span, _ in spans), [v for _, values in spans for v in values])
        con.execute("CREATE VIEW events AS " + " UNION ALL ".join(
            ([f"SELECT * FROM read_parquet({files}) WHERE {keyed}"] if new_parts else [])
            + (["SELECT * FROM _earlier"] if earlier else [])
            or [f"SELECT * FROM {main}.main.events WHERE false"]))
        con.execute("""CREATE TABLE _settled AS
            SELECT DISTINCT e.host, e.queue_id, x.generation + 1 AS first_generation
            FROM events e
            JOIN _settled_keys x ON x.queue_key = hash(coalesce(e.host, ''), e.queue_id)
            WHERE e.host IS NOT NULL AND e.queue_id IS NOT NULL""")
        _run(wh, model_statements(DUCKDB, settled=False, views=False), build, written)
    s = f"{_SCRATCH}.main"
    # what the new rows replace (tombstones only for rows stored before: most rebuilt
    # messages are new, and every read of a table pays for its tombstones): by instance,
    # by logical message, by list post's id
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _dead_keys AS
        SELECT message_key FROM _old UNION SELECT message_key FROM {s}.messages
        WHERE message_key IN (SELECT message_key FROM _rel)""")
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _dead_uids AS
        SELECT message_uid FROM {s}.logical_messages
        WHERE hash(message_uid) IN (SELECT uid_hash FROM _rel
                                    UNION ALL SELECT uid_hash FROM _old)""")
    # a stored logical message the rebuild did not make again (its instances now make
    # another): its id is read from the table, where the hashes cannot give it
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _lost AS
        SELECT DISTINCT uid_hash FROM _old WHERE uid_hash NOT IN
            (SELECT hash(message_uid) FROM {s}.logical_messages)""")
    if (con.execute("SELECT count(*) FROM _lost").fetchone() or (0,))[0]:
        con.execute("""INSERT INTO _dead_uids SELECT DISTINCT message_uid
            FROM main.logical_messages
            WHERE hash(message_uid) IN (SELECT uid_hash FROM _lost)""")
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _post_ids AS
        SELECT message_id FROM main.list_posts
        WHERE hash(message_id) IN (SELECT id_hash FROM _ids)
           OR message_id IN (SELECT message_id FROM {s}.list_posts)""")
    n = con.execute(f"SELECT count(*), min(first_seen) FROM {s}.logical_messages").fetchone()
    # detection looks again from the first message that changed: a stored message read
    # again (its queue id used again, a relation) whose row came out the same changes
    # no incident, and may be days older than the new lines
    changed = con.execute(f"""
        WITH again AS (
            SELECT * FROM {s}.logical_messages
            WHERE message_uid IN (SELECT message_uid FROM _dead_uids))
        SELECT min(first_seen) FROM (
            SELECT first_seen FROM {s}.logical_messages
            WHERE message_uid NOT IN (SELECT message_uid FROM _dead_uids)
            UNION ALL
            SELECT first_seen FROM (
                SELECT * FROM again
                EXCEPT
                SELECT * FROM main.logical_messages
                WHERE first_seen >= (SELECT min(first_seen) FROM again)
                  AND message_uid IN (SELECT message_uid FROM _dead_uids)))""").fetchone()
    if n and changed and changed[0] is not None:
        n = (n[0], changed[0])
    replaced = {"messages": "SELECT message_key, ? FROM _dead_keys",
                "deliveries": "SELECT message_key, ? FROM _dead_keys",
                "expansions": "SELECT message_uid, ? FROM _dead_uids",
                "logical_messages": "SELECT message_uid, ? FROM _dead_uids",
                "list_posts": "SELECT message_id, ? FROM _post_ids",
                "_relations": "SELECT message_key, ? FROM _dead_keys"}

    def merge() -> Built:
        for name in MODEL_TABLES:
            con.execute(f"INSERT INTO {dead_table(name)} {replaced[name]}", [build])
            wh.set_model_files(name, wh.model_files(name)
                               + _parts_of(name, written, keep_empty=False), tombstones=True)
        return Built(full=False, messages=int(n[0]) if n else 0, since=n[1] if n else None)

    return merge
