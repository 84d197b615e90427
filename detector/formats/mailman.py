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
from detector.formats.finish import finish
from detector.formats.kinds import (
    Kind,
    Sample,
    absent,
    classifier,
    descriptions,
    field_groups,
    matches,
    starts,
)
from detector.formats.syslog import MONTHS, add_timestamps

NAME = "mailman"

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
_KEEP_RAW = ("unparsed", "traceback")  # nothing understood, or a traceback: the line is all

# Where a kind has no line in ../shared/corpus, its sample is written in the exact shape
# of the Mailman source that logs it (format string and log file named as the source).
_MM2 = "Mailman 2.1 "
_MM3 = "Mailman 3 "

# The rows test ``rest`` (the text after stamp and pid; null without a Mailman stamp).
TABLE: tuple[Kind, ...] = (
    Kind("list_post", "post to LIST from SENDER: a post delivered to the list (logs/post, "
         "smtp.log)", (matches(r"^(?:\S+ )?post to \S+ from "),), "list_post", (
        Sample("Jul 12 10:31:12 2025 (2895922) "
               "<175231627036.2895954.10009667988468073605@mseibert.mailman> post to "
               "testlist-2@mailman.ckn.li from i@ckn.li, 333 bytes",
               "corpus mailman/bundlewrap-repo-mirror.log:4"),
        Sample("Feb 14 06:27:16 2018 (35) <151858963240.37.15946946832395135811@mailman-core> "
               "post to si@servicesinnovations.org from si-request@servicesinnovations.org, 935 "
               "bytes",
               "corpus mailman/docker-mailman-issue-214.log:1"),
        Sample("Nov 14 10:02:11 2016 (4521) post to all.staff from alice@nhs.example, size=4321, "
               "message-id=<CAH+w=7bXk2@mail.gmail.com>, success",
               _MM2 + "Mailman/Defaults.py.in SMTP_LOG_SUCCESS (logs/post)"),
    )),
    Kind("list_smtp", "<id> smtp to LIST for N recips: the list's delivery to its members",
         (matches(r"^\S+ smtp to \S+ for \d+ recips"),), "list_smtp", (
        Sample("Jul 12 10:31:12 2025 (2895922) "
               "<175231627036.2895954.10009667988468073605@mseibert.mailman> smtp to "
               "testlist-2@mailman.ckn.li for 1 recips, completed in 0.059294939041137695 seconds",
               "corpus mailman/bundlewrap-repo-mirror.log:3"),
        Sample("Feb 14 06:33:43 2018 (35) <151859002252.37.9692589526521043763@mailman-core> "
               "smtp to si@servicesinnovations.org for 1 recips, completed in 0.6159064769744873 "
               "seconds",
               "corpus mailman/docker-mailman-issue-214.log:2"),
        Sample("Nov 14 10:02:11 2016 (4521) <CAH+w=7bXk2@mail.gmail.com> smtp to all.staff for "
               "2600 recips, completed in 3.213 seconds",
               _MM2 + "Mailman/Defaults.py.in SMTP_LOG_EVERY_MESSAGE (logs/smtp)"),
    )),
    Kind("list_smtp_failure", "delivery to ADDR failed with code N (smtp-failure), low level "
         "errors", (matches(r"^(?:\S+ )?delivery to \S+ failed with code |^Low level smtp "
                            r"error|^All recipients refused|^SMTP session failure"),),
         "list_smtp_failure", (
        Sample("Nov 14 10:02:11 2016 (4521) delivery to bob@example.org failed with code 550: "
               "5.1.1 <bob@example.org>... User unknown",
               _MM2 + "Mailman/Defaults.py.in SMTP_LOG_EACH_FAILURE (logs/smtp-failure)"),
        Sample("Nov 14 10:02:11 2016 (4521) <CAH+w=7bXk2@mail.gmail.com> delivery to "
               "bob@example.org failed with code 451, 4.3.0 try again later",
               _MM3 + "src/mailman/config/schema.cfg [logging.smtp] failure (smtp.log)"),
        Sample("Nov 14 10:02:11 2016 (4521) Low level smtp error: (111, 'Connection refused'), "
               "msgid: <CAH+w=7bXk2@mail.gmail.com>",
               _MM2 + "Mailman/Handlers/SMTPDirect.py (logs/smtp-failure)"),
    )),
    Kind("list_held", "LIST post from X held, message-id=<id>: reason (vette)",
         (matches(r"^(?:HOLD: )?\S+ post from \S+ held, "),), "list_held", (
        Sample("Nov 14 10:02:11 2016 (4521) all.staff post from eve@x.example held, "
               "message-id=<CAH+w=7bXk2@mail.gmail.com>: Post by non-member to a members-only "
               "list",
               _MM2 + "Mailman/Handlers/Hold.py (logs/vette)"),
        Sample("Nov 14 10:02:11 2016 (4521) HOLD: all.staff@nhs.example post from eve@x.example "
               "held, message-id=<CAH+w=7bXk2@mail.gmail.com>: The message is not from a list "
               "member",
               _MM3 + "src/mailman/chains/hold.py (vette.log)"),
    )),
    Kind("list_accept", "ACCEPT: <id>: a post passed the moderation chain (Mailman 3)",
         (starts("ACCEPT: "),), "list_accept", (
        Sample("Jul 12 10:31:10 2025 (2895919) ACCEPT: "
               "<175231627036.2895954.10009667988468073605@mseibert.mailman>",
               "corpus mailman/bundlewrap-repo-mirror.log:2"),
    )),
    Kind("list_moderation", "approved, discarded, rejected or forwarded posts (vette)",
         (matches(r"^(?:DISCARD|REJECT|MODERATE|\S+ (?:DISCARD|REJECT)): |"
                  r"(?i)^(?:\S+: )?(?:held message (?:approved|discarded|rejected)|"
                  r"message discarded|discarded|rejected message|"
                  r"forwarding held message|Bouncing message|Discarding message|"
                  r"Message (?:discarded|held|rejected))"),), "list_moderation", (
        Sample("Nov 14 10:02:11 2016 (4521) all.staff: held message approved, message-id: "
               "<CAH+w=7bXk2@mail.gmail.com>",
               _MM2 + "Mailman/ListAdmin.py (logs/vette)"),
        Sample("Nov 14 10:02:11 2016 (4521) DISCARD: <CAH+w=7bXk2@mail.gmail.com>",
               _MM3 + "src/mailman/chains/discard.py (vette.log)"),
    )),
    Kind("list_subscribe", "LIST: new/deleted/pending/changed member (subscribe)",
         (matches(r"^\S+: (?:new|deleted|pending|changed|dropped|unsub|sub|"
                  r"unsubscribe|subscribe|mass |Subscription|bulk )"),), "list_subscribe", (
        Sample("Nov 14 10:02:11 2016 (4521) all.staff: new bob@example.org, admin mass sub",
               _MM2 + "Mailman/MailList.py ApprovedAddMember (logs/subscribe)"),
    )),
    Kind("list_bounce", "bounce processing: scores, disabled members, unrecognized bounces",
         (matches(r"(?i)bounce|disabling|re-enabling|residual|score"),), "list_bounce", (
        Sample("Nov 14 10:02:11 2016 (4521) all.staff: bob@example.org bounce score: 1.0",
               _MM2 + "Mailman/Bouncer.py registerBounce (logs/bounce)"),
    )),
    Kind("http", "REST API / web access log line",
         (matches(r"^\S+ - - |^\"(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) |"
                  r"^\[INFO\] |^\S+ \"(?:GET|POST|PUT|PATCH|DELETE) "),), "detail", (
        Sample('[12/Jul/2025:10:31:10 +0000] "POST /3.1/queues/in HTTP/1.1" 201 0 "-" '
               '"curl/7.88.1"',
               "corpus mailman/bundlewrap-repo-mirror.log:1"),
    )),
    Kind("error", "error log entry (uncaught exceptions, configuration problems)",
         (matches(r"(?i)uncaught|exception|traceback|\w+Error\b"),), "detail", (
        Sample("Nov 14 10:02:11 2016 (4521) Uncaught runner exception: unknown encoding: "
               "x-unknown",
               _MM2 + "Mailman/Queue/Runner.py _log (logs/error)"),
    )),
    Kind("runner", "qrunner/runner and lock notices: started, stopped, restarted",
         (matches(r"(?i)runner|qrunner|master |<LockFile|lock |Master (?:started|"
                  r"stopped|watcher)|started\.?$|stopped\.?$|restarting|"
                  r"detected subprocess exit|shutting down"),), "detail", (
        Sample("Nov 14 10:02:11 2016 (4521) OutgoingRunner qrunner started.",
               _MM2 + "bin/qrunner (logs/qrunner)"),
    )),
    # after the runner row: "runner ... failed" is a runner notice
    Kind("error", "", (matches(r"(?i)error|failed|warning|cannot|could not|not found"),),
         "detail", (
        Sample("Nov 14 10:02:11 2016 (4521) error opening list: all.staff",
               _MM2 + "Mailman/Queue/Runner.py _open_list (logs/error)"),
    )),
    # no stamp (every test on rest above fails): the unstamped lines of a multi-line
    # message, as a Python traceback logged after "Uncaught runner exception"
    Kind("traceback", "a continuation line of a Python traceback (no stamp)",
         (absent("rest"), matches(r"^(?:Traceback \(most recent call last\)|\s+\S|"
                                  r"[\w.]+(?:Error|Exception|Exit|Interrupt)\b)", "raw")),
         "detail", (
        Sample('  File "/usr/lib/mailman/Mailman/Queue/Runner.py", line 120, in _oneloop',
               _MM2 + "Mailman/Queue/Runner.py _log (logs/error): traceback.print_exc",
               before=("Nov 14 10:02:11 2016 (4521) Traceback (most recent call last):",)),
        Sample("LookupError: unknown encoding: x-unknown",
               _MM2 + "Mailman/Queue/Runner.py _log (logs/error): traceback.print_exc",
               before=("    self._onefile(msg, msgdata)",)),
    )),
    Kind("unparsed", "no Mailman stamp, or a message of unknown shape", (), None, (
        Sample("Header1: abc",
               "corpus syslog/lnav.log:36"),
        Sample("Nov  3 09:23:38 veridian automount[7998]: lookup(file): lookup for foobar failed",
               "corpus syslog/lnav.log:1"),
    )),
)
KINDS: dict[str, str] = descriptions(TABLE)
_FIELD_GROUP = field_groups(TABLE)


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


def _with_fields(frame: pl.DataFrame) -> pl.DataFrame:
    """Each kind's fields on the rows of that kind only; a kind's patterns in order."""
    group = pl.col("kind").replace_strict(_FIELD_GROUP, default=None, return_dtype=pl.String)
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
    frame = frame.with_columns(kind=classifier(TABLE))
    frame = _with_fields(frame).with_columns(
        program=pl.when(pl.col("rest").is_not_null()).then(pl.lit(PROGRAM)))
    return finish(frame, ctx, keep_raw=_KEEP_RAW)
