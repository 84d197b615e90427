"""The mailstorm command: a thin click layer over detector.pipeline.

Data goes to stdout, warnings and errors to stderr, and progress too, on a terminal
(``detector.progress``). Exit status: 0 success (incidents
or not), 1 an error (one line on stderr), 2 a usage error, 3 ``--fail-on`` found an
incident at or above its severity that is new or grew past it since the previous run,
4 a run read no new log line, 5 a run read, but some input could not be read (whole or
in part); when several apply, the lowest of 3, 4, 5 wins.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import duckdb

from detector import __version__, fastpath, pipeline, schema
from detector.digest import text_summary
from detector.display import DisplayOptions
from detector.errors import MailstormError, UsageError
from detector.incidents import SEVERITIES, Scope, alerts, severity_rank
from detector.permissions import parse_umask
from detector.progress import Console, is_terminal
from detector.retention import parse_keep
from detector.rules.loader import check_rules
from detector.rules.overrides import parse_overrides
from detector.snapshot import current_snapshot, is_snapshot
from detector.sources import MAX_LINE
from detector.sqlshell import _allowed as check_allowed
from detector.sqlshell import run_query
from detector.times import display_zone
from detector.warehouse import LOCK_TIMEOUT

EXIT_FAIL_ON = 3
#: a run read no new log line (empty inputs, all skipped or read before): broken log
#: shipping must not look like a quiet night
EXIT_NOTHING_READ = 4
#: a run read, but skipped an input it could not read (a truncated .gz, a dangling link,
#: a file it may not open...) or read one only in part; each was a warning line, and the
#: report lists them. 3 and 4 take precedence: a new incident, then nothing read at all
EXIT_SKIPPED = 5
#: simulate's sizes: each person and message is held or written, so a mistyped 10^9 must
#: be refused, not run the machine out of memory (a million replies take ~3 minutes)
MAX_PEOPLE = 1_000_000
MAX_MESSAGES = 10_000_000


class _Time(click.ParamType):
    """An ISO 8601 date or time; UTC when it has no offset."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            ts = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 date or time (e.g. 2016-11-14 or "
                      "2016-11-14T06:00:00+01:00)", param, ctx)
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


class _Path(click.Path):
    """click.Path that refuses a NUL byte: os.stat raises ValueError on one, which click
    does not catch (`rules check $'\\0'` was a traceback)."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if "\0" in os.fsdecode(value):
            self.fail(f"{os.fsdecode(value)!r} holds a NUL byte, which no file name can",
                      param, ctx)
        return super().convert(value, param, ctx)


class _Umask(click.ParamType):
    """An octal umask (027, 0o077) that leaves the owner's bits alone."""

    name = "OCTAL"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_umask(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _one_line(message: str) -> str:
    """Line breaks shown as \\n: a file name may hold a newline, and cron mail or a grep
    of the log must still see one line per error."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


def _errors_as_click(func: Callable[..., Any]) -> Callable[..., Any]:
    """Our errors become one 'Error: ...' line and exit 1 (2 for usage), never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UsageError as exc:
            raise click.UsageError(_one_line(str(exc))) from exc
        except MailstormError as exc:
            raise click.ClickException(_one_line(str(exc))) from exc
        except duckdb.Error as exc:
            first = str(exc).splitlines()[0]
            disk = "disk full: " if "No space left on device" in str(exc) else ""
            raise click.ClickException(_one_line(f"{disk}{first}")) from exc
        except OSError as exc:  # an unwritable --out, a full disk...
            where = f"{exc.filename}: " if exc.filename else ""
            disk = "disk full: " if exc.errno == errno.ENOSPC else ""
            raise click.ClickException(_one_line(f"{disk}{where}{exc.strerror or exc}")) from exc
        except ValueError as exc:  # after OSError: io.UnsupportedOperation is both
            if "null byte" not in str(exc):
                raise  # anything else is a bug and keeps its traceback
            # os refuses a path with NUL in it before any file is touched
            raise click.UsageError("a file name holds a NUL byte, which no file name "
                                   "can") from exc

    return wrapper


def _progress(quiet: bool) -> Console:
    """Warnings on stderr always; progress (bytes read of the total, a percentage and the
    time left, then each later stage's time) only on a terminal and without -q."""
    return Console(quiet=quiet, stream=sys.stderr)


def rules_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--rules, --templates, --set, --fail-on... mean the same on run and report."""
    for option in reversed([
        click.option("--rules", "rules_dir", type=_Path(file_okay=False, path_type=Path),
                     help="Folder of rule files to use instead of the built-in rules."),
        click.option("--templates", "templates_dir",
                     type=_Path(exists=True, file_okay=False, path_type=Path),
                     help="Folder of report templates overriding built-in ones by name. "
                          "Templates are trusted code (Jinja can run Python): use only "
                          "your own."),
        click.option("--set", "overrides", multiple=True, metavar="RULE.PARAM=VALUE",
                     help="Override a rule parameter, e.g. reply_storm.min_senders=5."),
        click.option("--fail-on", type=click.Choice(SEVERITIES),
                     help="Exit with status 3 if an incident at or above this severity is "
                          "new, or grew past it, since the previous run (for monitoring: "
                          "one alert per incident)."),
        click.option("--fail-on-any", is_flag=True,
                     help="With --fail-on: exit 3 for any incident at or above the "
                          "severity, new or not."),
        click.option("--since", type=_Time(),
                     help="Detect and report only messages first seen at or after this "
                          "time (ISO 8601, e.g. 2016-11-14 or 2016-11-14T06:00+01:00; "
                          "UTC when no offset). Default: everything the warehouse holds."),
        click.option("--until", type=_Time(),
                     help="Detect and report only messages first seen before this time."),
        click.option("--lock-timeout", type=click.FloatRange(min=0), default=LOCK_TIMEOUT,
                     show_default=True, metavar="SECONDS",
                     help="Wait this long for another process's lock on the warehouse "
                          "(a run still going, an open session) before giving up."),
        click.option("--umask", type=_Umask(), default=None,
                     help="Create the warehouse, its snapshot and the report with this "
                          "umask, e.g. "
                          "027 (default: the process umask, tightened so that no one may "
                          "read them who may not read the logs or warehouse they come "
                          "from)."),
        click.option("-q", "--quiet", is_flag=True, help="No progress: warnings and errors "
                     "only (progress shows only on a terminal anyway)."),
    ]):
        func = option(func)
    return func


def display_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--display-tz, --redact and --summary: how run and report show what they found."""
    for option in reversed([
        click.option("--display-tz", "display_tz", metavar="ZONE",
                     help="Show times in the HTML pages and the text summary in this IANA "
                          "zone, with its abbreviation (BST, GMT...), e.g. Europe/London "
                          "(default: this machine's zone; the pages say which). Stored "
                          "data and incidents.json stay UTC."),
        click.option("--redact", is_flag=True,
                     help="Replace the local part of every address in the report, "
                          "incidents.json and the text summary by a short hash, the same "
                          "for the same address (keyed by the warehouse), keeping domains "
                          "and counts: a report for people who may not see names."),
        click.option("--summary", "summary_format", type=click.Choice(["text"]),
                     help="Also write to stdout the run's headline and one line per "
                          "incident new or changed since the previous run, for cron mail "
                          "(... --summary text | mail -s mailstorm postmaster). Nothing "
                          "else goes to stdout; exit statuses are unchanged."),
    ]):
        func = option(func)
    return func


def _display(display_tz: str | None, redact: bool) -> DisplayOptions:
    """The display zone, checked before anything is read (a typo is a usage error); the
    machine's own when none is given, or UTC when its TZ names no IANA zone ("UTC0")."""
    if display_tz is None:
        try:
            display_tz = _local_zone()
            display_zone(display_tz)
        except UsageError:
            display_tz = "UTC"
    display_zone(display_tz)
    return DisplayOptions(zone=display_tz, redact=redact)


def _print_summary(result: pipeline.RunResult, summary_format: str | None) -> None:
    if summary_format == "text" and result.display is not None:
        click.echo(text_summary(result.incidents, result.summary, result.report,
                                result.display), nl=False)


def _finish(result: pipeline.RunResult, fail_on: str | None, fail_on_any: bool,
            quiet: bool, *, allow_empty: bool = True) -> None:
    if not quiet and is_terminal(sys.stderr):  # no one reads it in cron's mail or a pipe
        counts: dict[str, int] = {}
        for inc in result.incidents:
            counts[inc.severity] = counts.get(inc.severity, 0) + 1
        detail = ", ".join(f"{n} {s}" for s, n in sorted(
            counts.items(), key=lambda kv: -severity_rank(kv[0])))
        changed = sum(1 for i in result.incidents if i.changed)
        click.echo(f"{len(result.incidents)} incident(s){f' ({detail})' if detail else ''}, "
                   f"{changed} new or grown; report: {result.report}", err=True)
    if fail_on and alerts(result.incidents, fail_on, every=fail_on_any):
        sys.exit(EXIT_FAIL_ON)
    if not allow_empty and result.ingested is not None and result.ingested.lines == 0:
        files = result.ingested.files
        click.echo(f"warning: no new log line was read from {len(files)} file(s) (empty, "
                   "skipped or read before); check the log shipping, or pass --allow-empty",
                   err=True)
        sys.exit(EXIT_NOTHING_READ)
    if result.ingested is not None and result.ingested.not_read:
        sys.exit(EXIT_SKIPPED)  # each was a warning line already, and is in the report


def _scope(since: datetime | None, until: datetime | None) -> Scope | None:
    if since and until and since >= until:
        raise UsageError("--since must be before --until")
    return Scope(since, until) if since or until else None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mailstorm")
def main() -> None:
    """Find reply-all storms and fan-out amplification in mail-server logs.

    \b
    Example:
      mailstorm run /var/log/mail.log* --out /srv/mailstorm/report
    """


@main.command()
@click.argument("logs", nargs=-1, required=True)
@click.option("--out", "out_dir", required=True, type=_Path(file_okay=False, path_type=Path),
              help="Folder for index.html, incidents/ and incidents.json.")
@click.option("--db", type=_Path(dir_okay=False, path_type=Path),
              help="Warehouse file (default: OUT/mailstorm.duckdb). Re-runs add only new lines.")
@click.option("--tz", default=None, help="Zone of timestamps without one (default: this "
              "machine's local zone), e.g. Europe/London.")
@click.option("--year", type=click.IntRange(1, 9999),
              help="Year of the first line of RFC 3164 logs (default: "
              "from the newest file's modification time).")
@click.option("--format", "fmt", help="Read every file as this format instead of sniffing.")
@click.option("--skip-unknown", is_flag=True, help="Skip files of unknown format with a "
              "warning each, and load the rest (default: such a file stops the run before "
              "anything loads). Files that cannot be read (a truncated .gz, a dangling link, "
              "no permission) are always skipped with a warning, and the run exits 5.")
@click.option("--memory-limit", help="Memory for the warehouse engine (DuckDB), e.g. 2GB; "
              "default a quarter of RAM, at most 1GB. It spills to disk beyond that.")
@click.option("--host", "host", metavar="NAME", help="Host name for lines that name none (a "
              "native Exim mainlog; default: each file's folder and base name, e.g. "
              "/var/log/exim4/mainlog).")
@click.option("--max-line", type=click.IntRange(min=1), default=MAX_LINE, show_default=True,
              metavar="BYTES", help="Cut lines longer than this (counted and reported): a "
              "runaway line must not take the memory of the run.")
@click.option("--keep", metavar="SPAN", help="Keep this much before the newest line (e.g. "
              "90d, 12h, 8w) and drop older events and model parts, reclaiming their space "
              "(default: keep everything). Parts straddling the cut stay until all of them "
              "is old; files already read are not read again.")
@click.option("--allow-empty", is_flag=True, help="Exit 0 when no new log line was read "
              "(default: exit 4 and say so, as broken log shipping looks like a quiet night).")
@click.option("--engine", type=click.Choice(["duckdb", "spark"]), default="duckdb",
              show_default=True, help="Where logs are parsed, modelled and the rules run: "
              "DuckDB on this machine (incremental), or Apache Spark for a day too large "
              "for one (pip install 'mailstorm[spark]'; not incremental: each run builds "
              "the dataset from the logs it is given; on a cluster the logs and OUT must "
              "be on storage every executor sees).")
@click.option("--spark-master", default="local[*]", show_default=True, metavar="URL",
              help="With --engine spark: local[N], spark://host:port, or Spark Connect "
              "sc://host:port.")
@click.option("--dataset/--no-dataset", default=True, show_default=True,
              help="Keep OUT/dataset: every table as Parquet by day, for Spark, polars, "
              "pandas or any DuckDB (see 'mailstorm schema').")
@rules_options
@display_options
@_errors_as_click
def run(logs: tuple[str, ...], out_dir: Path, db: Path | None, tz: str | None,
        year: int | None, fmt: str | None, skip_unknown: bool, memory_limit: str | None,
        host: str | None, max_line: int, keep: str | None, allow_empty: bool, engine: str,
        spark_master: str, dataset: bool,
        rules_dir: Path | None, templates_dir: Path | None, overrides: tuple[str, ...],
        fail_on: str | None, fail_on_any: bool, since: datetime | None,
        until: datetime | None, lock_timeout: float, umask: int | None, quiet: bool,
        display_tz: str | None, redact: bool, summary_format: str | None) -> None:
    """Read LOGS (files, folders, globs, '-' for stdin; .gz/.bz2/.xz too), detect, report.

    Exit status: 0 done, 1 error, 2 usage error, 3 --fail-on found a new or grown
    incident, 4 no new log line read (not with --allow-empty), 5 some input could not be
    read, whole or in part (one warning line each; the report lists them). When several
    apply: 3, then 4, then 5.

    \b
    Example:
      mailstorm run /var/log/mail.log /var/log/mail.log.1 /var/log/mail.log.*.gz \\
          --out report/ --fail-on high
      mailstorm run /var/log/mail.log --out report/ -q --display-tz Europe/London \\
          --summary text | mail -s "mailstorm $(hostname)" postmaster
    """
    display = _display(display_tz, redact)
    with _progress(quiet) as progress:  # its last stage line ends before any other
        if progress.live and not fastpath.available():
            progress.line("note: the Rust fast path (./fastpath) is not installed: Postfix "
                          "lines take the Polars parser")
        result = pipeline.run(
            logs, out_dir, db=db, tz=tz or _local_zone(), year=year, fmt=fmt,
            skip_unknown=skip_unknown, rules_dir=rules_dir, templates_dir=templates_dir,
            overrides=parse_overrides(overrides), memory_limit=memory_limit,
            scope=_scope(since, until), progress=progress, host=host,
            lock_timeout=lock_timeout, max_line=max_line, umask=umask,
            keep=parse_keep(keep) if keep else None, display=display, dataset=dataset,
            engine=engine, spark_master=spark_master)
    _print_summary(result, summary_format)
    _finish(result, fail_on, fail_on_any, quiet, allow_empty=allow_empty)


@main.command("schema")
@click.argument("table", required=False)
@click.option("--format", "fmt", type=click.Choice(schema.FORMATS), default="text",
              show_default=True, help="markdown: README's tables; sql: DuckDB DDL with "
              "COMMENT ON; json: names, portable, DuckDB and Spark types, descriptions.")
@_errors_as_click
def schema_cmd(table: str | None, fmt: str) -> None:
    """Describe the analyst tables (every table, or TABLE) and their columns.

    \b
    Example:
      mailstorm schema
      mailstorm schema deliveries --format json
    """
    if table is not None and table not in schema.TABLES:
        raise UsageError(f"unknown table {table!r} (choose from {', '.join(schema.TABLES)})")
    click.echo(schema.render([table] if table else list(schema.TABLES), fmt))


@main.command()
@click.option("--db", required=True, type=_Path(dir_okay=False, path_type=Path),
              help="Warehouse written by an earlier 'mailstorm run'.")
@click.option("--out", "out_dir", required=True, type=_Path(file_okay=False, path_type=Path),
              help="Folder for index.html, incidents/ and incidents.json.")
@click.option("--memory-limit", help="Memory for the warehouse engine (DuckDB), e.g. 2GB; "
              "default a quarter of RAM, at most 1GB. It spills to disk beyond that.")
@rules_options
@display_options
@_errors_as_click
def report(db: Path, out_dir: Path, memory_limit: str | None, rules_dir: Path | None,
           templates_dir: Path | None, overrides: tuple[str, ...], fail_on: str | None,
           fail_on_any: bool, since: datetime | None, until: datetime | None,
           lock_timeout: float, umask: int | None, quiet: bool, display_tz: str | None,
           redact: bool, summary_format: str | None) -> None:
    """Detect and write the report again from a warehouse, without reading logs.

    Statuses (new, grown, ongoing, ended) are relative to what the last 'mailstorm run'
    recorded; 'report' records nothing, so it never uses up a nightly alert.

    \b
    Example:
      mailstorm report --db report/mailstorm.duckdb --out report/ \\
          --set reply_storm.min_senders=5
    """
    display = _display(display_tz, redact)
    with _progress(quiet) as progress:
        result = pipeline.report(db, out_dir, rules_dir=rules_dir,
                                 templates_dir=templates_dir,
                                 overrides=parse_overrides(overrides),
                                 memory_limit=memory_limit, scope=_scope(since, until),
                                 progress=progress, lock_timeout=lock_timeout, umask=umask,
                                 display=display)
    _print_summary(result, summary_format)
    _finish(result, fail_on, fail_on_any, quiet)


@main.command("formats")
@click.argument("name", required=False)
@_errors_as_click
def formats_cmd(name: str | None) -> None:
    """List the log formats mailstorm reads, or the line kinds of one format.

    \b
    Example:
      mailstorm formats
      mailstorm formats exim
    """
    from detector.formats import FORMATS

    if name is None:
        for fmt, module in FORMATS.items():
            summary = (module.__doc__ or "").strip().splitlines()[0]
            click.echo(f"{fmt:18s} {summary}")
        return
    if name not in FORMATS:
        raise UsageError(f"unknown format {name!r} (choose from {', '.join(FORMATS)})")
    for kind, description in FORMATS[name].KINDS.items():
        click.echo(f"{kind:28s} {description}")


@main.command()
@click.option("--out", "out_dir", required=True, type=_Path(file_okay=False, path_type=Path),
              help="Folder for the log file and truth.json.")
@click.option("--format", "fmt", default="postfix", show_default=True,
              help="Log format to write (postfix, exim, exchange, m365, sendmail, mailman).")
@click.option("--incident", "incidents", multiple=True, default=("reply_storm",),
              show_default=True, help="What to inject (repeatable): reply_storm, auto_storm, "
              "bounce_storm, fanout, mail_loop; a storm exactly at a rule's threshold: "
              "reply_storm_at_threshold, reply_storm_spread_inside, auto_storm_at_threshold, "
              "auto_storm_spread_inside, bounce_storm_at_threshold, "
              "bounce_storm_spread_inside; or a look-alike that is no incident: newsletter, "
              "busy_thread, heavy_day, and storms just short of a threshold: "
              "reply_storm_one_replier_short, reply_storm_list_one_short, "
              "reply_storm_spread_outside, auto_storm_one_sender_short, "
              "auto_storm_list_one_short, auto_storm_spread_outside, bounce_storm_one_short, "
              "bounce_storm_spread_outside (their sizes come from the built-in rules).")
@click.option("--seed", type=int, default=1, show_default=True,
              help="Same seed, same logs, byte for byte.")
@click.option("--list-size", type=click.IntRange(10, MAX_PEOPLE), default=3000, show_default=True,
              help="Members of the list a storm goes to.")
@click.option("--repliers", type=click.IntRange(1, MAX_PEOPLE), default=30, show_default=True,
              help="Distinct people replying in a reply storm (or clients answering "
              "automatically in an auto storm, at most every member). May exceed the list: "
              "every member but the author replies, and the rest are site people who are "
              "not on the list posting to it (an open list; new site users are made if "
              "needed). truth.json counts them as repliers_on_list and repliers_off_list.")
@click.option("--replies", type=click.IntRange(1, MAX_MESSAGES), default=None,
              help="Reply messages in a reply storm (default: --repliers and a tenth "
              "again, who answer twice). More than --repliers: people reply several times, "
              "at random (repeat_replies in truth.json). Storms of over 10,000 replies are "
              "made while the log is written, never held in memory (a million replies to a "
              "10-member list as Sendmail: about 3 minutes, 9.4M lines); their truth.json "
              "gives message_ids and replier_addresses as null above 10,000.")
@click.option("--duration", type=click.IntRange(1, 7 * 24 * 60), default=45, show_default=True,
              help="Minutes over which the storm's replies arrive.")
@click.option("--background", type=click.IntRange(0, MAX_MESSAGES), default=1500, show_default=True,
              help="Ordinary messages in the simulated day.")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), default="2016-11-14",
              show_default=True, help="The simulated day (UTC).")
@click.option("--no-subjects", is_flag=True,
              help="Write a site that logs no subjects (degraded mode).")
@_errors_as_click
def simulate(out_dir: Path, fmt: str, incidents: tuple[str, ...], seed: int, list_size: int,
             repliers: int, replies: int | None, duration: int, background: int, day: Any,
             no_subjects: bool) -> None:
    """Write a realistic simulated day of mail logs with injected incidents.

    Background traffic (day/night cycle, team threads, newsletters, deferrals, rejects)
    plus the incidents asked for, one every two hours from 09:05 UTC. The log goes to
    OUT/logs/ and OUT/truth.json lists what was injected. Use it to rehearse rule
    settings before a real storm.

    \b
    Example:
      mailstorm simulate --out sim/ --incident reply_storm --incident mail_loop \\
          --list-size 5000 --repliers 60
      mailstorm run sim/logs --out sim/report
      mailstorm simulate --out big/ --format sendmail --list-size 10 \\
          --repliers 25000 --replies 100000 --duration 60
    """
    from datetime import UTC, timedelta

    from detector.simulate.day import SCENARIOS, Options, build_day, write_day

    unknown = [k for k in incidents if k not in SCENARIOS]
    if unknown:
        raise UsageError(f"unknown incident {unknown[0]!r} (choose from "
                         f"{', '.join(SCENARIOS)})")
    if day.year >= 9999:  # the day and a week-long storm must fit in the calendar
        raise UsageError(f"--date {day:%Y-%m-%d} is too late: the last simulated day is "
                         "9998-12-31")
    if replies is not None and replies < repliers:
        raise UsageError(f"--replies {replies} is fewer than --repliers {repliers}: each "
                         "replier sends at least one reply")
    options = Options(list_size=list_size, repliers=repliers, replies=replies,
                      duration=timedelta(minutes=duration), background=background)
    site, messages, truth = build_day(list(incidents), seed=seed,
                                      day=day.replace(tzinfo=UTC), options=options)
    try:
        path = write_day(out_dir, fmt, site, messages, truth, seed=seed,
                         subjects=not no_subjects)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    click.echo(f"wrote {path} and {out_dir / 'truth.json'}: {len(truth)} incident(s) "
               f"injected", err=True)


@main.command()
@click.argument("query")
@click.option("--db", required=True, type=_Path(exists=True, dir_okay=False, path_type=Path),
              help="Warehouse to query (its snapshot, opened read-only).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True, help="Output format.")
@click.option("--allow-files", "allow_files", multiple=True,
              type=_Path(path_type=Path), metavar="PATH",
              help="Let the query read and write PATH (a file, or a folder and all under "
                   "it), and run COPY and EXPORT DATABASE. Repeatable.")
@click.option("--live", is_flag=True,
              help="Read the warehouse itself, not the snapshot the last run published "
                   "(a run waits for the query to end).")
@_errors_as_click
def sql(query: str, db: Path, fmt: str, allow_files: tuple[Path, ...], live: bool) -> None:
    """Run a read-only SQL QUERY on the warehouse and print the rows.

    It reads the snapshot the last 'mailstorm run' published beside the warehouse
    (DB.snapshot/current/): a query never makes a run wait, and a run never changes
    what a query sees.

    Rows print as they come. The query reads the warehouse's tables and views
    (events, deliveries, messages, incidents...) and nothing else: no other file,
    no network, no extension, no write, within the default memory limit, and it
    cannot SET any of that back. --allow-files opens the paths it names (e.g. for
    COPY ... TO). Output stops quietly when the reader does (| head).

    \b
    Example:
      mailstorm sql "SELECT list, count(*) FROM deliveries GROUP BY list" --db out/mailstorm.duckdb
      mailstorm sql "COPY incidents TO 'inc.csv'" --db out/w.duckdb --allow-files inc.csv
    """
    snapshot = None if live else current_snapshot(db)
    if snapshot is None and not live and not is_snapshot(db):
        click.echo(f"note: {db} has no snapshot yet (each 'mailstorm run' publishes one); "
                   "reading the warehouse itself, which makes a run wait", err=True)
    if snapshot is not None:  # the warehouse's own files stay out of reach too
        check_allowed(allow_files, db)
    try:
        run_query(snapshot or db, query, sys.stdout, fmt=fmt, allow_files=allow_files)
    except BrokenPipeError:
        # the reader left (| head): not an error. Point stdout at /dev/null so the
        # interpreter's final flush does not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)


@main.group()
def rules() -> None:
    """List, show and check detection rules.

    \b
    Example:
      mailstorm rules list
      mailstorm rules show reply_storm
    """


@rules.command("list")
@click.option("--rules", "rules_dir", type=_Path(file_okay=False, path_type=Path),
              help="Folder of rule files (default: the built-in rules).")
@_errors_as_click
def rules_list(rules_dir: Path | None) -> None:
    """Show each rule with its parameters and current values.

    \b
    Example:
      mailstorm rules list --rules /etc/mailstorm/rules
    """
    from detector.rules.vocabulary import MEASURES

    for rule in pipeline.load_ruleset(rules_dir, {}):
        window = f", window {rule.window}" if rule.window else ""
        click.echo(f"{rule.name} ({rule.kind}, by {rule.group_by}{window})")
        click.echo(f"  {rule.description}")
        for param in rule.params:
            click.echo(f"  {rule.name}.{param.name} = {rule.value(param.name)}  "
                       f"# {param.description}")
        measure = MEASURES[rule.severity.measure].description
        levels = ", ".join(f"{lvl} >= {v:,}" for lvl, v in rule.severity.levels)
        click.echo(f"  severity by {rule.severity.measure} ({measure}): {levels}")


@rules.command("show")
@click.argument("name")
@click.option("--rules", "rules_dir", type=_Path(file_okay=False, path_type=Path),
              help="Folder of rule files (default: the built-in rules).")
@click.option("--set", "overrides", multiple=True, metavar="RULE.PARAM=VALUE",
              help="Override a rule parameter, e.g. reply_storm.min_senders=5.")
@_errors_as_click
def rules_show(name: str, rules_dir: Path | None, overrides: tuple[str, ...]) -> None:
    """Show rule NAME: what it reads, its parameters, conditions and severity, and the
    SQL it compiles to with its bound parameters in order.

    \b
    Example:
      mailstorm rules show reply_storm --set reply_storm.min_senders=5
    """
    from detector.rules.show import describe_rule, find_rule

    rules = pipeline.load_ruleset(rules_dir, parse_overrides(overrides))
    click.echo(describe_rule(find_rule(rules, name)), nl=False)


@rules.command("check")
@click.argument("directory", required=False, type=_Path(file_okay=False, path_type=Path))
@_errors_as_click
def rules_check(directory: Path | None) -> None:
    """Validate every rule file in DIRECTORY (default: built-in), reporting all errors.

    \b
    Example:
      mailstorm rules check /etc/mailstorm/rules
    """
    from detector.assets import builtin_rules_dir

    errors = check_rules(directory or builtin_rules_dir())
    for error in errors:
        click.echo(f"Error: {_one_line(str(error))}", err=True)
    if errors:
        sys.exit(1)
    click.echo("rules ok", err=True)


def _local_zone() -> str:
    """The machine's IANA zone name, from TZ or /etc/localtime; UTC if unknown."""
    import os

    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        return name
    try:
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
        tz = Path("/etc/timezone")
        if tz.exists():
            return tz.read_text().strip() or "UTC"
    except OSError:
        pass
    return "UTC"
