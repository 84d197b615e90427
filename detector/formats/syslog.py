"""The syslog envelope shared by Postfix, Exim-via-syslog and Sendmail lines.

Splits ``<timestamp> <host> <program>[<pid>]: <message>`` once per line and turns the
timestamp into UTC. Three timestamp shapes are read:

* RFC 3164 ``Nov 14 10:02:11`` (no year, no zone: year from ``YearState``, zone from
  the run's ``--tz``), also with fractions ``10:02:11.123`` and with a year in front
  (``2013 Jun 10 06:27:30.123``, as some log shippers rewrite it);
* RFC 3339 / ISO 8601 ``2016-11-14T10:02:11.123456+00:00``, ``Z``, or journald's
  short-iso ``2016-11-14T10:02:11+0000``; without an offset they are local time.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

# the timestamp at the start of a line, in any of the three shapes
STAMP_PATTERN = (
    r"^(?:(?:\d{4} )?[A-Z][a-z]{2} {1,2}\d{1,2} \d\d:\d\d:\d\d(?:\.\d+)?"
    r"|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)"
)
_RFC5424 = (r"^<\d{1,3}>1 (\S+) (\S+) (\S+) (\S+) \S+ (?:-|(?:\[(?:[^\]\\]|\\.)*\])+)"
            r" (?:\xef\xbb\xbf|\ufeff)?")
# what follows the host: a syslog tag "program[pid]:" or "program:"
_TAG = r"^[^\[:]+(?:\[\d+\])?:$"
_ISO = r"^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|([+-])(\d\d):?(\d\d))?$"
MONTHS = {m: i for i, m in enumerate(
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], start=1)}


@dataclass
class YearState:
    """Carries RFC 3164 year inference across batches and rotated files of one group.

    ``year`` is the year at the current position; a month that drops by six or more
    from one line to the next is a Dec -> Jan rollover, one that jumps up by six or more is
    a straggler from the previous year (syslog lines can arrive slightly out of order).
    """

    year: int
    prev_month: int | None = None


def split_header(frame: pl.DataFrame) -> pl.DataFrame:
    """Add the header fields (host, prog, msg, and the raw timestamp text ``_stamp``).

    One short anchored match finds the timestamp; the rest is cut with literal splits,
    several times faster than one regex with a capture group per field. A line that does
    not fit gets null fields.
    """
    # "<13>Nov 14 ...": a PRI kept by a relay or a listener writing the wire format; RFC
    # 5424 ("<13>1 STAMP HOST APP PROCID MSGID SD MSG", rsyslog's SyslogProtocol23Format)
    # is rewritten into the RFC 3164 shape, its structured data dropped
    line = pl.col("raw")
    raw = pl.when(line.str.starts_with("<")).then(
        line.str.replace(_RFC5424, "$1 $2 $3[$4]: $5")
        .str.replace(r"^(\S+ \S+ [^\s\[]+)\[-\]: ", "$1: ")
        .str.replace(r"^<\d{1,3}>", "")).otherwise(line)
    frame = frame.with_columns(raw.str.extract(STAMP_PATTERN, 0).alias("_stamp"))
    stamp = pl.col("_stamp")
    frame = frame.with_columns(
        raw.str.slice(stamp.str.len_bytes() + 1).str.splitn(" ", 3).alias("_p"),
        (raw.str.slice(stamp.str.len_bytes(), 1) == " ").alias("_sep"),
    ).unnest("_p")
    tag = pl.col("field_1")
    ok = stamp.is_not_null() & pl.col("_sep") & tag.str.contains(_TAG)
    return frame.with_columns(
        _stamp=pl.when(ok).then(stamp),
        host=pl.when(ok).then(pl.col("field_0")),
        prog=pl.when(ok).then(tag.str.strip_suffix(":").str.splitn("[", 2)
                              .struct.field("field_0")),
        msg=pl.when(ok).then(pl.col("field_2").fill_null("")),
    ).drop("_sep", "field_0", "field_1", "field_2")


# Layouts of a whole batch, told from its first line: how many space-separated tokens
# the stamp takes (host, tag and message follow)
_LAYOUTS = {"rfc3164": 3, "padded": 4, "iso": 1}  # "Nov 14 ..", "Nov  4 ..", "2016-11-14T.."
_STAMP_WHOLE = STAMP_PATTERN + "$"


def _layout(first: str | None) -> int | None:
    """Stamp tokens of the batch's layout, from its first line (None: no known layout)."""
    if not first:
        return None
    if first[:1].isdigit():
        return _LAYOUTS["iso"] if first[4:5] == "-" else None
    return _LAYOUTS["padded"] if first[4:5] == " " else _LAYOUTS["rfc3164"]


def parse_header(lines: pl.DataFrame, tz: str, years: YearState) -> pl.DataFrame:
    """``ts`` (UTC), host, prog and msg of every line.

    The fast path splits each line once on single spaces, in the layout of the batch's
    first line (a stamp is three tokens, four with a padded day, one in ISO form), and
    checks and converts the stamp once per run of equal stamps. Lines it cannot vouch
    for (another layout, an odd tag, no header at all) take the general path, which
    gives the same fields; the two agree on every line the fast path accepts.
    """
    k = _layout(lines["raw"][0]) if lines.height else None
    if k is None:
        return add_timestamps(split_header(lines), tz, years)
    before = (years.year, years.prev_month)  # to undo if the batch goes the general way
    names = [f"_h{i}" for i in range(k + 3)]
    frame = lines.with_columns(
        pl.col("raw").str.splitn(" ", k + 3).struct.rename_fields(names).alias("_h")
    ).unnest("_h")
    stamp_tokens, (host, tag, msg) = names[:k], names[k:]
    # a run of equal stamps: every stamp token equal to the line before's
    # (and, with years assigned ahead, the same year: equal stamps a year apart meet when
    # the fast path took the lines between them)
    keys = [*stamp_tokens, *(["_year"] if "_year" in frame.columns else [])]
    changed = pl.any_horizontal(pl.col(c).ne_missing(pl.col(c).shift(1)) for c in keys)
    first = frame.select(changed.fill_null(True).alias("first"))["first"]
    first[0] = True
    run = first.cast(pl.Int64).cum_sum() - 1
    keep = ["_year"] if "_year" in frame.columns else []
    runs = frame.filter(first).select(
        pl.concat_str(stamp_tokens, separator=" ").alias("_stamp"), *keep)
    runs = runs.with_columns(
        pl.col("_stamp").str.contains(_STAMP_WHOLE).fill_null(False).alias("_ok"))
    runs = runs.with_columns(_stamp=pl.when("_ok").then("_stamp"))  # no garbage to convert
    runs = _run_timestamps(runs.with_columns(_stamp_parts(pl.col("_stamp"))), tz, years)
    frame = frame.with_columns(runs["ts"].gather(run), runs["_ok"].gather(run)).with_columns(
        _ok=pl.col("_ok") & pl.col(tag).str.contains(_TAG).fill_null(False))
    frame = frame.select(
        *lines.columns, "ts", "_ok",
        pl.col(host).alias("host"),
        pl.col(tag).str.strip_suffix(":").str.splitn("[", 2).struct.field("field_0")
        .alias("prog"),
        pl.col(msg).fill_null("").alias("msg"),
    )
    ok = frame["_ok"]
    if ok.all():
        return frame.drop("_ok", "_year", strict=False)
    if "_year" not in lines.columns:
        # years inferred here advance with the lines: a batch split in two would count a
        # rollover twice, so the whole batch goes the general way (ingest always passes
        # _year; this is for callers that parse on their own)
        years.year, years.prev_month = before
        return add_timestamps(split_header(lines), tz, years)
    slow = add_timestamps(split_header(lines.filter(~ok)), tz, years)
    return pl.concat([frame.filter(ok).drop("_ok", "_year", strict=False), slow],
                     how="diagonal_relaxed").sort("line_no")


def _stamp_parts(stamp: pl.Expr) -> list[pl.Expr]:
    """y, b, d, t (RFC 3164, y only when written) and iso, as strings, from the stamp."""
    iso = stamp.str.slice(4, 1) == "-"
    has_year = (stamp.str.slice(0, 1) <= "9") & (stamp.str.slice(4, 1) == " ")
    # "Nov  4 10:02:11" (padded day) and "Nov 4 10:02:11" split alike once de-doubled
    bsd = pl.when(has_year).then(stamp.str.slice(5)).otherwise(stamp) \
        .str.replace("  ", " ", literal=True).str.splitn(" ", 3)
    bsd = pl.when(~iso).then(bsd)
    return [
        pl.when(has_year).then(stamp.str.slice(0, 4)).alias("y"),
        bsd.struct.field("field_0").alias("b"),
        bsd.struct.field("field_1").alias("d"),
        bsd.struct.field("field_2").alias("t"),
        pl.when(iso).then(stamp).alias("iso"),
    ]


def _micros(frac: pl.Expr) -> pl.Expr:
    return frac.str.slice(0, 6).str.pad_end(6, "0").cast(pl.Int64).fill_null(0)


def _naive_datetime(
    y: pl.Expr, m: pl.Expr, d: pl.Expr, hh: pl.Expr, mm: pl.Expr, ss: pl.Expr, us: pl.Expr
) -> pl.Expr:
    """Naive datetime from integer parts, null for impossible dates (Feb 30).

    Integer arithmetic (days-from-civil, H. Hinnant) rather than ``pl.datetime`` because
    that raises on one bad line; a log must not stop on a corrupt timestamp.
    """
    y = y.cast(pl.Int64) - (m <= 2).cast(pl.Int64)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m.cast(pl.Int64) + pl.when(m > 2).then(-3).otherwise(9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    micros = (days * 86400 + hh * 3600 + mm * 60 + ss) * 1_000_000 + us
    dt = micros.cast(pl.Datetime("us"))
    return pl.when((dt.dt.day() == d) & (hh < 24) & (mm < 60) & (ss < 61)).then(dt)


def _localize(naive: pl.Expr, tz: str) -> pl.Expr:
    if tz == "UTC":
        return naive.dt.replace_time_zone("UTC")
    return naive.dt.replace_time_zone(
        tz, ambiguous="earliest", non_existent="null"
    ).dt.convert_time_zone("UTC")


def assign_years(months: pl.Series, years: YearState) -> pl.Series:
    """The year of each line from its month (null where the line has none), continuing
    ``years`` and advancing it past these lines. Sequential by nature, and cheap: ingest
    runs it ahead of the parallel parse so that batches can be parsed in any order."""
    known = months.fill_null(strategy="forward")
    if years.prev_month is not None:
        known = known.fill_null(years.prev_month)
    prev = known.shift(1, fill_value=years.prev_month if years.prev_month else None)
    delta = known - prev
    step = (delta <= -6).cast(pl.Int32).fill_null(0) - (delta >= 6).cast(pl.Int32).fill_null(0)
    year = (years.year + step.cum_sum()).cast(pl.Int64)
    if known.drop_nulls().len():
        years.prev_month = int(known.drop_nulls()[-1])
        years.year = int(year[-1])
    return year.alias("_year")


def months_of_raw(raw: pl.Series) -> pl.Series:
    """Month number of each RFC 3164 line ("Nov 14 ..."), from its first three bytes."""
    return raw.to_frame("raw").select(_MONTH_OF_RAW).to_series().alias(raw.name)


def _month_of_raw() -> pl.Expr:
    # twelve prefix tests, not a slice and a lookup: no three-letter string is made per
    # line (half the time, on ingest's main thread)
    month = pl.lit(None, pl.Int32)
    for name, number in MONTHS.items():
        month = pl.when(pl.col("raw").str.starts_with(name)).then(pl.lit(number, pl.Int32)) \
            .otherwise(month)
    return month


_MONTH_OF_RAW = _month_of_raw()


def add_timestamps(frame: pl.DataFrame, tz: str, years: YearState) -> pl.DataFrame:
    """Compute ``ts`` (UTC) from the ``_stamp`` text of each line.

    A busy log writes many lines per second, so the work is done once per run of equal
    stamps and gathered back. The year comes from a ``_year`` column when ingest
    computed it ahead; otherwise it is inferred here from ``years``, which advances.
    """
    stamp = frame["_stamp"]
    first = stamp.ne_missing(stamp.shift(1)).fill_null(True)
    if "_year" in frame.columns:  # a run is one stamp of one year (see parse_header)
        first = first | frame["_year"].ne_missing(frame["_year"].shift(1)).fill_null(True)
    if frame.height:
        first[0] = True
    run = (first.cast(pl.Int64).cum_sum() - 1).alias("_run")
    keep = ["_stamp", "_year"] if "_year" in frame.columns else ["_stamp"]
    runs = frame.select(keep).filter(first).with_columns(_stamp_parts(pl.col("_stamp")))
    runs = _run_timestamps(runs, tz, years)
    return frame.with_columns(runs["ts"].gather(run)).drop(
        ["_stamp", "_year"], strict=False)


def _run_timestamps(frame: pl.DataFrame, tz: str, years: YearState) -> pl.DataFrame:
    month = pl.col("b").replace_strict(MONTHS, default=None, return_dtype=pl.Int32)
    frame = frame.with_columns(month.alias("_mon"))
    if "_year" in frame.columns:
        year = frame["_year"]
    else:  # only year-less lines take part in rollover detection
        year = assign_years(
            frame.select(pl.when(pl.col("y").is_null()).then("_mon")).to_series(), years)

    t = pl.col("t")
    rfc3164 = _naive_datetime(
        pl.coalesce(pl.col("y").cast(pl.Int64), pl.lit(year.alias("_year"))),
        pl.col("_mon"),
        pl.col("d").cast(pl.Int64),
        t.str.slice(0, 2).cast(pl.Int64),
        t.str.slice(3, 2).cast(pl.Int64),
        t.str.slice(6, 2).cast(pl.Int64),
        _micros(t.str.slice(9)),
    )
    if frame["iso"].null_count() == frame.height:  # no ISO stamps: skip their parsing
        return frame.with_columns(_localize(rfc3164, tz).alias("ts")).drop(
            ["_mon", "_year"], strict=False)
    # the ISO groups are extracted once into a column: an expression re-used six times
    # would run the pattern six times
    frame = frame.with_columns(pl.col("iso").str.extract_groups(_ISO).alias("_iso"))
    parts = [pl.col("_iso").struct.field(str(i)) for i in range(1, 12)]
    ymdhms = [p.cast(pl.Int64) for p in parts[:6]]
    iso_naive = _naive_datetime(ymdhms[0], ymdhms[1], ymdhms[2], ymdhms[3], ymdhms[4],
                                ymdhms[5], _micros(parts[6]))
    sign = pl.when(parts[8] == "-").then(-1).otherwise(1)
    offset_min = pl.when(parts[7] == "Z").then(0).otherwise(
        sign * (parts[9].cast(pl.Int32) * 60 + parts[10].cast(pl.Int32))
    )
    iso_utc = pl.when(offset_min.is_not_null()).then(
        (iso_naive - pl.duration(minutes=offset_min)).dt.replace_time_zone("UTC")
    ).otherwise(_localize(iso_naive, tz))
    return frame.with_columns(
        pl.when(pl.col("_mon").is_not_null())
        .then(_localize(rfc3164, tz))
        .otherwise(iso_utc)
        .alias("ts")
    ).drop(["_mon", "_year", "_iso"], strict=False)


def sniff_rfc3164(line: str) -> tuple[int, int, str] | None:
    """(month, day, time) of an RFC 3164 line, or None: used to anchor the year."""
    parts = line.split(None, 3)
    if len(parts) >= 3 and parts[0] in MONTHS and parts[1].isdigit():
        return MONTHS[parts[0]], int(parts[1]), parts[2]
    return None
