"""Mailman 2.1 and Mailman 3 logs -> events, vectorized.

Both write ``Nov 14 10:02:11 2016 (1234) message`` (local time with the year, then the
pid). A post to a list gives two lines, one per log in Mailman 2 (``logs/post`` and
``logs/smtp``), both in Mailman 3's ``smtp.log``:

* Mailman 2: ``post to all.staff from a@x, size=4321, message-id=<id>, success`` and
  ``<id> smtp to all.staff for 2600 recips, completed in 3.213 seconds``;
* Mailman 3: ``<id> post to all.staff@dom from a@x, 4321 bytes`` and
  ``<id> smtp to all.staff@dom for 2600 recips, completed in 3.2 seconds``.

Mailman 2 names a list by its internal name (``all.staff``), Mailman 3 by its address; the
name is kept as logged in ``orig_to``. The other logs (smtp-failure, vette, subscribe,
bounce, error, qrunner, the REST access log) get kinds of their own; Python traceback lines
of the error log carry no stamp and are ``traceback``.
"""

from __future__ import annotations

import re

import polars as pl

from detector.formats.context import ParseContext
from detector.formats.syslog import MONTHS, add_timestamps
from detector.schema import conform

NAME = "mailman"

KINDS: dict[str, str] = {
    "list_post": "post to LIST from SENDER: a post delivered to the list (logs/post, smtp.log)",
    "list_smtp": "<id> smtp to LIST for N recips: the list's delivery to its members",
    "list_smtp_failure": "delivery to ADDR failed with code N (smtp-failure), low level errors",
    "list_accept": "ACCEPT: <id>: a post passed the moderation chain (Mailman 3)",
    "list_held": "LIST post from X held, message-id=<id>: reason (vette)",
    "list_moderation": "approved, discarded, rejected or forwarded posts (vette)",
    "list_subscribe": "LIST: new/deleted/pending/changed member (subscribe)",
    "list_bounce": "bounce processing: scores, disabled members, unrecognized bounces",
    "runner": "qrunner/runner and lock notices: started, stopped, restarted",
    "http": "REST API / web access log line",
    "error": "error log entry (uncaught exceptions, configuration problems)",
    "traceback": "a continuation line of a Python traceback (no stamp)",
    "unparsed": "no Mailman stamp, or a message of unknown shape",
}

PROGRAM = "mailman"
_STAMP = r"^([A-Z][a-z]{2}) {1,2}(\d{1,2}) (\d\d:\d\d:\d\d) (\d{4}) \((\d+)\) "
_SNIFF = re.compile(_STAMP[:-1] + r"|^\[\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d[.,\d]*\] \(\d+\) ")
# other stamps seen in Mailman 3 logs: "[2016-11-14 10:02:11] (1234) ...", gunicorn's
# "[2016-11-14 10:02:11 +0000] [1234] [INFO] ..." and the REST access log's
# "[12/Jul/2025:10:31:10 +0000] ..."
_ISO_STAMP = (
    r"^\[(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)([.,]\d+)? ?([+-]\d\d:?\d\d|Z)?\] "
    r"(?:\((\d+)\) |\[(\d+)\] )?"
)
_CLF_STAMP = r"^\[(\d\d)/([A-Z][a-z]{2})/(\d{4}):(\d\d:\d\d:\d\d) ([+-]\d{4})\] "
_MID = r"(?P<message_id><[^>]*>|\S+)"
_FIELDS: dict[str, list[str]] = {  # kind -> patterns tried in order (Mailman 2, then 3)
    "list_post": [
        r"^post to (?P<orig_to>\S+) from (?P<sender>.*), size=(?P<size>\d+), "
        r"message-id=(?P<message_id>.*), (?P<detail>success|\d+ failures?)$",
        rf"^{_MID} post to (?P<orig_to>\S+) from (?P<sender>.*), (?P<size>\d+) bytes"
        r"(?:, (?P<detail>\d+ failures?))?$",
    ],
    "list_smtp": [
        rf"^{_MID} smtp to (?P<orig_to>\S+) for (?P<nrcpt>\d+) recips, completed in "
        r"(?P<delay>[\d.]+) seconds",
    ],
    "list_smtp_failure": [
        rf"^(?:{_MID} )?delivery to (?P<recipient>\S+) failed with code (?P<code>-?\d+)"
        r"[:,] (?P<detail>.*)$",
        r"^(?P<detail>.*?)(?:, msgid: (?P<message_id>\S+))?$",
    ],
    "list_held": [
        r"^(?:HOLD: )?(?P<orig_to>\S+) post from (?P<sender>\S+) held, "
        r"message-id=(?P<message_id>.*?): (?P<detail>.*)$",
    ],
    "list_accept": [r"^ACCEPT: (?P<message_id>.*)$"],
    "list_moderation": [
        r"^(?:(?P<orig_to>[^\s:]+): )?(?P<detail>.*?(?:message-id|msgid)[=:] ?"
        r"(?P<message_id><[^>]*>|\S+).*)$",
        r"^(?:DISCARD|REJECT): (?P<message_id>\S+)",
        r"^(?P<detail>.*)$",
    ],
    "list_subscribe": [
        r"^(?P<orig_to>[^\s:]+): (?P<detail>.*?(?P<recipient>[\w.+=-]+@[\w-]+(?:\.[\w-]+)+).*)$",
        r"^(?:(?P<orig_to>[^\s:]+): )?(?P<detail>.*)$",
    ],
    "list_bounce": [
        r"^(?P<orig_to>[^\s:]+): (?P<recipient>[\w.+=-]+@[\w.-]+) (?P<detail>.*)$",
        r"^(?P<detail>.*?)(?:: (?P<message_id><[^>]*>))?$",
    ],
    "detail": [r"^(?P<detail>.*)$"],
}
_FIELD_GROUP = {"runner": "detail", "error": "detail", "http": "detail", "traceback": "detail"}
_KEEP_RAW = ("unparsed", "traceback")


def sniff(lines: list[str]) -> bool:
    """A Mailman log: its lines start ``Nov 14 10:02:11 2016 (1234)``."""
    return any(_SNIFF.match(line) for line in lines)


def _stamps(frame: pl.DataFrame) -> pl.DataFrame:
    """``_stamp`` in a shape ``add_timestamps`` reads, and ``rest`` after stamp and pid."""
    raw = pl.col("raw")
    a = raw.str.extract_groups(_STAMP)
    frame = frame.with_columns(
        _stamp=pl.concat_str([a.struct.field(str(i)) for i in (4, 1, 2, 3)], separator=" "),
        rest=raw.str.slice(raw.str.extract(_STAMP, 0).str.len_bytes()),
    )
    todo = frame["_stamp"].is_null() & frame["raw"].str.starts_with("[").fill_null(False)
    if not todo.any():
        return frame
    # the bracketed stamps, on their few rows only
    sub = frame.filter(todo)
    iso = raw.str.extract_groups(_ISO_STAMP)
    clf = raw.str.extract_groups(_CLF_STAMP)
    month = clf.struct.field("2").replace_strict(
        {m: f"{n:02d}" for m, n in MONTHS.items()}, default=None, return_dtype=pl.String)
    sub = sub.with_columns(
        _stamp=pl.coalesce(
            pl.concat_str([iso.struct.field("1"), pl.lit("T"), iso.struct.field("2"),
                           iso.struct.field("3").str.replace(",", ".", literal=True)
                           .fill_null(""), iso.struct.field("4").fill_null("")]),
            pl.concat_str([clf.struct.field("3"), pl.lit("-"), month, pl.lit("-"),
                           clf.struct.field("1"), pl.lit("T"), clf.struct.field("4"),
                           clf.struct.field("5")]),
        ),
        _len=pl.coalesce(raw.str.extract(_ISO_STAMP, 0), raw.str.extract(_CLF_STAMP, 0))
        .str.len_bytes(),
    ).with_columns(rest=pl.when(pl.col("_len").is_not_null())
                   .then(raw.str.slice(pl.col("_len"))))
    idx = todo.arg_true()
    return frame.with_columns(
        frame[c].scatter(idx, sub[c]) for c in ("_stamp", "rest"))


def _classify() -> pl.Expr:
    r, raw = pl.col("rest"), pl.col("raw")
    starts = r.str.starts_with
    return (
        pl.when(r.is_null()).then(
            # tracebacks and other multi-line messages continue on unstamped lines
            pl.when(raw.str.contains(r"^(?:Traceback \(most recent call last\)|\s+\S|"
                                     r"[\w.]+(?:Error|Exception|Exit|Interrupt)\b)"))
            .then(pl.lit("traceback")).otherwise(pl.lit("unparsed")))
        .when(r.str.contains(r"^(?:\S+ )?post to \S+ from ")).then(pl.lit("list_post"))
        .when(r.str.contains(r"^\S+ smtp to \S+ for \d+ recips")).then(pl.lit("list_smtp"))
        .when(r.str.contains(r"^(?:\S+ )?delivery to \S+ failed with code |^Low level smtp "
                             r"error|^All recipients refused|^SMTP session failure"))
        .then(pl.lit("list_smtp_failure"))
        .when(r.str.contains(r"^(?:HOLD: )?\S+ post from \S+ held, ")).then(pl.lit("list_held"))
        .when(starts("ACCEPT: ")).then(pl.lit("list_accept"))
        .when(r.str.contains(r"^(?:DISCARD|REJECT|MODERATE|\S+ (?:DISCARD|REJECT)): |"
                             r"(?i)^(?:\S+: )?(?:held message (?:approved|discarded|rejected)|"
                             r"message discarded|discarded|rejected message|"
                             r"forwarding held message|Bouncing message|Discarding message|"
                             r"Message (?:discarded|held|rejected))"))
        .then(pl.lit("list_moderation"))
        .when(r.str.contains(r"^\S+: (?:new|deleted|pending|changed|dropped|unsub|sub|"
                             r"unsubscribe|subscribe|mass |Subscription|bulk )"))
        .then(pl.lit("list_subscribe"))
        .when(r.str.contains(r"(?i)bounce|disabling|re-enabling|residual|score"))
        .then(pl.lit("list_bounce"))
        .when(r.str.contains(r"^\S+ - - |^\"(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) |"
                             r"^\[INFO\] |^\S+ \"(?:GET|POST|PUT|PATCH|DELETE) "))
        .then(pl.lit("http"))
        .when(r.str.contains(r"(?i)uncaught|exception|traceback|\w+Error\b"))
        .then(pl.lit("error"))
        .when(r.str.contains(r"(?i)runner|qrunner|master |<LockFile|lock |Master (?:started|"
                             r"stopped|watcher)|started\.?$|stopped\.?$|restarting|"
                             r"detected subprocess exit|shutting down"))
        .then(pl.lit("runner"))
        .when(r.str.contains(r"(?i)error|failed|warning|cannot|could not|not found"))
        .then(pl.lit("error"))
        .otherwise(pl.lit("unparsed"))
    )


def _with_fields(frame: pl.DataFrame) -> pl.DataFrame:
    """Each kind's fields on the rows of that kind only; a kind's patterns in order."""
    group = pl.col("kind").replace_strict(
        {k: _FIELD_GROUP.get(k, k) for k in KINDS}, default=None)
    frame = frame.with_columns(group.alias("_group"))
    parts = [frame.filter(~pl.col("_group").is_in(list(_FIELDS)) | pl.col("_group").is_null())]
    for name, patterns in _FIELDS.items():
        sub = frame.filter(pl.col("_group") == name)
        if not sub.height:
            continue
        found = [pl.col("rest").str.extract_groups(p) for p in patterns]
        names = [re.compile(p).groupindex for p in patterns]
        cols = {c for g in names for c in g}
        # the first pattern that matches the row gives all its fields
        hit = [pl.col("rest").str.contains(p) for p in patterns]
        exprs = []
        for col in sorted(cols):
            expr: pl.Expr | None = None
            for pattern_hit, groups, f in zip(hit[::-1], names[::-1], found[::-1], strict=True):
                value = f.struct.field(col) if col in groups else pl.lit(None, pl.String)
                expr = pl.when(pattern_hit).then(value) if expr is None else \
                    pl.when(pattern_hit).then(value).otherwise(expr)
            assert expr is not None  # col is a group of some pattern: the loop ran
            exprs.append(expr.alias(col))
        parts.append(sub.with_columns(exprs))
    out = pl.concat(parts, how="diagonal_relaxed")
    kind = pl.col("kind")
    fixes = []
    if "message_id" in out.columns:
        mid = pl.col("message_id").str.strip_chars().str.strip_prefix("<").str.strip_suffix(">")
        fixes.append(pl.when(mid.is_in(["n/a", ""])).then(None).otherwise(mid)
                     .alias("message_id"))
    if "code" in out.columns:  # the SMTP reply code of a failed member delivery
        code = pl.col("code")
        fixes += [
            pl.when(kind == "list_smtp_failure").then(
                pl.when(code.str.starts_with("5")).then(pl.lit("bounced"))
                .when(code.is_not_null()).then(pl.lit("deferred")))
            .alias("status"),
            pl.when(kind == "list_smtp_failure").then(
                pl.col("detail").str.extract(r"^\(?(\d\.\d{1,3}\.\d{1,3})\b", 1)).alias("dsn"),
        ]
    if "sender" in out.columns:
        fixes.append(pl.col("sender").str.strip_prefix("<").str.strip_suffix(">")
                     .alias("sender"))
    if fixes:
        out = out.with_columns(fixes)
    return out


def parse(lines: pl.DataFrame, ctx: ParseContext) -> pl.DataFrame:
    """Turn a batch of raw lines (columns raw, line_no) into the events frame."""
    frame = _stamps(lines)
    frame = add_timestamps(frame, ctx.tz, ctx.years)
    frame = frame.with_columns(kind=_classify())
    frame = _with_fields(frame).with_columns(
        program=pl.when(pl.col("rest").is_not_null()).then(pl.lit(PROGRAM)),
        source_file=pl.lit(ctx.source_file),
        raw=pl.when(pl.col("kind").is_in(_KEEP_RAW)).then("raw"),
    )
    frame = frame.with_columns(
        pl.col(name).cast(dtype, strict=False)
        for name, dtype in (("size", pl.Int64), ("nrcpt", pl.Int64), ("delay", pl.Float64))
        if name in frame.columns
    )
    return conform(frame).collect()
