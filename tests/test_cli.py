"""The mailstorm command end to end, on the bundled sample logs and on small real files."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.quality_matrix import matches
from detector.cli import main
from tests.logsynth import Site, storm, write_log

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_logs"
TRUTH = json.loads((SAMPLES / "truth.json").read_text())


def invoke(*args: str, input: str | None = None):  # noqa: A002 - click's name
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's demo: the sample logs, once for the whole module."""
    out = tmp_path_factory.mktemp("demo")
    res = invoke("run", str(SAMPLES), "--year", "2016", "--tz", "UTC", "--out", str(out), "-q")
    assert res.exit_code == 0, res.output
    assert res.output == ""  # quiet on success
    return out


def _incidents(out: Path) -> list[dict]:
    return json.loads((out / "incidents.json").read_text())["incidents"]


def test_demo_finds_exactly_the_injected_storm(demo: Path) -> None:
    storms = [i for i in _incidents(demo) if i["kind"] == "reply_storm"]
    [truth] = TRUTH
    assert len(storms) == 1
    inc = storms[0]
    assert inc["root_message_id"] == truth["root_message_id"]
    assert inc["list"] == truth["list"]
    assert inc["subject"] == truth["subject"]
    start, expected = (datetime.fromisoformat(x) for x in (inc["start"], truth["start"]))
    assert abs(start - expected) <= timedelta(minutes=2)
    assert inc["messages"] == truth["messages"]
    assert inc["repliers"] == truth["repliers"]


def _delivery_lines_of(log: Path, message_ids: set[str]) -> int:
    """Count, straight from the log text, final delivery lines of the given messages."""
    queue_of: dict[str, str] = {}
    finals = 0
    pending: dict[tuple[str, str, str], str] = {}
    for line in log.read_text().splitlines():
        m = re.search(r" ([0-9A-F]{6,}): message-id=<([^>]+)>", line)
        if m and m.group(2) in message_ids:
            queue_of[m.group(1)] = m.group(2)
        d = re.search(r" ([0-9A-F]{6,}): to=<([^>]*)>,(?: orig_to=<([^>]*)>,)?.* status=(\w+)",
                      line)
        if d and d.group(1) in queue_of:
            pending[(d.group(1), d.group(2), d.group(3) or "")] = d.group(4)
    finals = sum(1 for status in pending.values() if status != "deferred")
    return finals


def test_demo_deliveries_equal_the_count_in_the_log(demo: Path) -> None:
    [truth] = TRUTH
    [inc] = [i for i in _incidents(demo) if i["kind"] == "reply_storm"]
    in_log = _delivery_lines_of(SAMPLES / "mail.log", set(truth["message_ids"]))
    assert inc["deliveries"] == in_log == truth["deliveries"]


def test_demo_report_lists_the_storm(demo: Path) -> None:
    [inc] = [i for i in _incidents(demo) if i["kind"] == "reply_storm"]
    index = (demo / "index.html").read_text()
    assert f'href="incidents/{inc["id"]}.html"' in index
    page = (demo / "incidents" / f"{inc['id']}.html").read_text()
    assert inc["list"] in page and "<svg" in page
    assert "<script" not in index + page and "http://" not in index + page


def test_quiet_day_newsletter_and_small_thread_are_not_storms(tmp_path: Path) -> None:
    res = invoke("run", str(SAMPLES / "mail.log.1.gz"), "--year", "2016", "--tz", "UTC",
                 "--out", str(tmp_path), "-q")
    assert res.exit_code == 0
    assert [i for i in _incidents(tmp_path) if i["severity"] != "info"] == []


def test_rerun_reads_nothing_new_and_keeps_ids(demo: Path, tmp_path: Path) -> None:
    before = [i["id"] for i in _incidents(demo)]
    res = invoke("run", str(SAMPLES), "--year", "2016", "--tz", "UTC", "--out", str(demo))
    assert res.exit_code == 4  # nothing new read: said, and a status of its own
    assert "no new log line was read" in res.output  # a warning: said without a terminal
    assert [i["id"] for i in _incidents(demo)] == before
    res = invoke("run", str(SAMPLES), "--year", "2016", "--tz", "UTC", "--out", str(demo),
                 "--allow-empty")
    assert res.exit_code == 0


@pytest.mark.parametrize("fail_on, code", [("critical", 0), ("medium", 3), ("info", 3)])
def test_fail_on_sets_the_exit_status(demo: Path, tmp_path: Path, fail_on: str,
                                      code: int) -> None:
    assert [i["severity"] for i in _incidents(demo)] == ["medium"]
    # the demo's run recorded the storm: only --fail-on-any alerts on it again
    res = invoke("report", "--db", str(demo / "mailstorm.duckdb"), "--out", str(tmp_path),
                 "--fail-on", fail_on, "--fail-on-any", "-q")
    assert res.exit_code == code
    res = invoke("report", "--db", str(demo / "mailstorm.duckdb"), "--out", str(tmp_path),
                 "--fail-on", fail_on, "-q")
    assert res.exit_code == 0


def test_report_with_override_from_the_warehouse(demo: Path, tmp_path: Path) -> None:
    res = invoke("report", "--db", str(demo / "mailstorm.duckdb"), "--out", str(tmp_path),
                 "--set", "reply_storm.min_senders=30", "-q")
    assert res.exit_code == 0
    found = _incidents(tmp_path)
    assert [i for i in found if i["kind"] == "reply_storm"] == []
    # without the storm, replies from people who usually write to few are fan-outs
    assert {i["kind"] for i in found} <= {"fanout"}
    assert all(i["list"] == TRUTH[0]["list"] for i in found)


def test_sql_outputs_csv_json_and_table(demo: Path) -> None:
    db = str(demo / "mailstorm.duckdb")
    query = "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY n DESC, kind"
    as_csv = list(csv.reader(io.StringIO(invoke("sql", query, "--db", db, "--format",
                                                "csv").output)))
    as_json = json.loads(invoke("sql", query, "--db", db, "--format", "json").output)
    assert as_csv[0] == ["kind", "n"]
    assert [[r["kind"], str(r["n"])] for r in as_json] == as_csv[1:]
    assert as_csv[1][0] == "delivery"
    table = invoke("sql", query, "--db", db).output.splitlines()
    assert table[0].split() == ["kind", "n"] and table[2].split()[0] == "delivery"


def test_sql_error_is_one_line(demo: Path) -> None:
    res = invoke("sql", "SELECT nope FROM events", "--db", str(demo / "mailstorm.duckdb"))
    assert res.exit_code == 1
    assert res.output.startswith("Error: ") and res.output.count("\n") == 1


def test_sql_is_read_only(demo: Path) -> None:
    res = invoke("sql", "DELETE FROM messages", "--db", str(demo / "mailstorm.duckdb"))
    assert res.exit_code == 1
    assert "read-only" in res.output


def test_hostile_subject_and_address_are_escaped(tmp_path: Path) -> None:
    site = Site(lists={"all@x.example": [f"m{i}@x.example" for i in range(30)]})
    mails = storm(site, list_addr="all@x.example", start=datetime(2016, 11, 14, 9),
                  repliers=12, subject="<script>alert(1)</script>")
    mails[1].sender = '"><img src=x onerror=alert(1)>@x.example'
    write_log(tmp_path / "mail.log", site, mails)
    res = invoke("run", str(tmp_path / "mail.log"), "--year", "2016", "--tz", "UTC", "--out",
                 str(tmp_path / "out"), "--set", "reply_storm.min_audience=20", "-q")
    assert res.exit_code == 0
    [inc] = _incidents(tmp_path / "out")
    assert inc["subject"] == "<script>alert(1)</script>"
    pages = [tmp_path / "out" / "index.html", *(tmp_path / "out" / "incidents").glob("*.html")]
    for page in pages:
        text = page.read_text()
        assert "<script" not in text and "<img" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0].read_text()


def test_unknown_format_is_one_clear_line_and_skip_unknown_goes_on(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello\nworld\n")
    (tmp_path / "mail.log").write_text(
        "Nov 14 09:00:00 mx1 postfix/smtpd[1]: connect from a.example[192.0.2.1]\n")
    res = invoke("run", str(tmp_path / "notes.txt"), str(tmp_path / "mail.log"), "--out",
                 str(tmp_path / "o"), "--year", "2016")
    assert res.exit_code == 1
    assert res.output.strip().splitlines()[-1] == (
        f"Error: cannot read 1 of 2 inputs: {tmp_path / 'notes.txt'} (unknown format); "
        "nothing was loaded; use --skip-unknown to load the rest")
    res = invoke("run", str(tmp_path), "--out", str(tmp_path / "o2"), "--year", "2016",
                 "--skip-unknown")
    assert res.exit_code == 0
    assert "skipping" in res.output


def test_missing_input_is_a_usage_error(tmp_path: Path) -> None:
    res = invoke("run", str(tmp_path / "nope.log"), "--out", str(tmp_path / "o"))
    assert res.exit_code == 2
    assert f"no such file, folder or glob match: {tmp_path / 'nope.log'}" in res.output


def test_stdin_is_read(tmp_path: Path) -> None:
    text = (SAMPLES / "mail.log").read_text().splitlines()[:2000]
    res = invoke("run", "-", "--out", str(tmp_path), "--year", "2016", "--tz", "UTC",
                 input="\n".join(text) + "\n")
    assert res.exit_code == 0, res.output
    assert res.output == ""  # no terminal, no warning: nothing to say
    report = (tmp_path / "index.html").read_text()
    assert "2,000 read in this run" in report


def test_rules_list_and_check(tmp_path: Path) -> None:
    listing = invoke("rules", "list").output
    assert "reply_storm.min_senders = 10" in listing and "fanout.min_deliveries" in listing
    assert invoke("rules", "check").exit_code == 0
    (tmp_path / "bad.yaml").write_text("name: bad\nkind: reply_storm\nwindw: 60m\n")
    res = invoke("rules", "check", str(tmp_path))
    assert res.exit_code == 1
    assert f"Error: {tmp_path / 'bad.yaml'}:3: unknown key 'windw'" in res.output


def _commands(group=main, prefix=()):  # noqa: ANN001, ANN202
    import click

    for name, cmd in group.commands.items():
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))


@pytest.mark.parametrize("path", [(), *_commands()], ids=lambda p: " ".join(p) or "main")
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    res = invoke(*path, "--help")
    assert res.exit_code == 0
    assert "Example" in res.output


def test_module_entry_point_and_version() -> None:
    res = subprocess.run([sys.executable, "-m", "detector", "--version"], capture_output=True,
                         text=True, check=True)
    assert res.stdout.strip() == "mailstorm, version 0.1.0"


SNAPSHOT = Path(__file__).parent / "snapshots" / "test_demo_incidents_match_snapshot.json"
# The incidents.json contract (../shared/DESIGN.md), written out rather than imported: a
# field the code stops writing must fail here, not drop out of the comparison.
CONTRACT = ("id", "kind", "severity", "rule", "list", "subject", "root_message_id",
            "start", "end", "peak", "messages", "deliveries", "senders")


def _contract_and_numbers(incident: dict) -> dict:
    """The contract fields and the other top-level numbers of an incident; prose the code
    wrote itself (headline, evidence...) would only prove that it did not change."""
    numbers = {k: v for k, v in incident.items()
               if isinstance(v, int | float) and not isinstance(v, bool)}
    return {k: incident.get(k) for k in CONTRACT} | numbers


def test_demo_incidents_match_snapshot(demo: Path) -> None:
    """Speed work must not change what is found: the sample's incidents, field by field.

    Regenerate deliberately, then review the diff:
    MAILSTORM_UPDATE_SNAPSHOTS=1 pytest tests/test_cli.py -k snapshot
    """
    found = [_contract_and_numbers(i) for i in _incidents(demo)]
    if os.environ.get("MAILSTORM_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(json.dumps(found, indent=2, ensure_ascii=False) + "\n")
    if not SNAPSHOT.exists():
        pytest.fail(f"{SNAPSHOT} is missing: write it with MAILSTORM_UPDATE_SNAPSHOTS=1")
    assert found == json.loads(SNAPSHOT.read_text())


def test_unwritable_output_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "mail.log").write_text(
        "Nov 14 09:00:00 mx1 postfix/smtpd[1]: connect from a.example[192.0.2.1]\n")
    blocker = tmp_path / "out"
    blocker.write_text("a file where a folder should be")
    res = invoke("run", str(tmp_path / "mail.log"), "--out", str(blocker / "report"),
                 "--year", "2016")
    assert res.exit_code == 1
    assert res.output.startswith("Error: ") and res.output.count("\n") == 1
    assert str(blocker) in res.output


def test_missing_rules_folder_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "mail.log").write_text("")
    res = invoke("run", str(tmp_path / "mail.log"), "--out", str(tmp_path / "o"), "--rules",
                 str(tmp_path / "no-rules"))
    assert res.exit_code == 1
    assert res.output.startswith("Error: ") and res.output.count("\n") == 1
    assert "no-rules" in res.output


def test_memory_limit_small_or_bad(tmp_path: Path) -> None:
    res = invoke("run", str(SAMPLES / "mail.log.1.gz"), "--year", "2016", "--tz", "UTC",
                 "--out", str(tmp_path / "a"), "--memory-limit", "lots")
    assert res.exit_code == 2
    assert "bad --memory-limit 'lots': use a size like 2GB or 500MB" in res.output
    # a small limit means small batches and spilling, not a different answer
    res = invoke("run", str(SAMPLES / "mail.log.1.gz"), "--year", "2016", "--tz", "UTC",
                 "--out", str(tmp_path / "b"), "--memory-limit", "128MB", "-q")
    assert res.exit_code == 0
    db = str(tmp_path / "b" / "mailstorm.duckdb")
    counts = invoke("sql", "SELECT count(*), sum(deliveries) FROM logical_messages", "--db",
                    db, "--format", "csv").output
    res = invoke("run", str(SAMPLES / "mail.log.1.gz"), "--year", "2016", "--tz", "UTC",
                 "--out", str(tmp_path / "c"), "-q")
    assert invoke("sql", "SELECT count(*), sum(deliveries) FROM logical_messages", "--db",
                  str(tmp_path / "c" / "mailstorm.duckdb"), "--format", "csv").output == counts


def test_report_takes_a_memory_limit(demo: Path, tmp_path: Path) -> None:
    db = str(demo / "mailstorm.duckdb")
    res = invoke("report", "--db", db, "--out", str(tmp_path / "a"), "--memory-limit", "lots")
    assert res.exit_code == 2
    assert "bad --memory-limit 'lots'" in res.output
    res = invoke("report", "--db", db, "--out", str(tmp_path / "b"), "--memory-limit", "128MB",
                 "-q")
    assert res.exit_code == 0
    assert _incidents(tmp_path / "b") == _incidents(demo)


def test_sql_works_after_the_output_folder_moved(demo: Path, tmp_path: Path) -> None:
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(demo, moved)  # a copy in a new place: its view names the old place
    shutil.rmtree(demo / "mailstorm.parquet", ignore_errors=False)
    try:
        res = invoke("sql", "SELECT (SELECT count(*) FROM events), count(*) FROM deliveries",
                     "--db", str(moved / "mailstorm.duckdb"), "--format", "csv")
        assert res.exit_code == 0, res.output
        events, deliveries = map(int, res.output.splitlines()[1].split(","))
        assert events > 80_000 and deliveries > 40_000
    finally:  # put the module's demo back for the tests after this one
        shutil.copytree(moved / "mailstorm.parquet", demo / "mailstorm.parquet")


def test_formats_lists_every_format_and_its_kinds() -> None:
    from detector.formats import FORMATS

    listed = invoke("formats")
    assert listed.exit_code == 0
    assert [line.split()[0] for line in listed.output.splitlines()] == list(FORMATS)
    kinds = invoke("formats", "exim")
    assert {line.split()[0] for line in kinds.output.splitlines()} == set(FORMATS["exim"].KINDS)
    unknown = invoke("formats", "qmail")
    assert unknown.exit_code == 2 and "unknown format 'qmail'" in unknown.output


@pytest.mark.parametrize("fmt", ["postfix", "sendmail"])
def test_simulate_then_run_finds_what_was_injected(tmp_path: Path, fmt: str) -> None:
    sim = invoke("simulate", "--out", str(tmp_path / "sim"), "--format", fmt,
                 "--incident", "mail_loop", "--incident", "newsletter", "--background", "200",
                 "--seed", "3")
    assert sim.exit_code == 0, sim.output
    truth = json.loads((tmp_path / "sim" / "truth.json").read_text())
    assert [t["kind"] for t in truth["incidents"]] == ["mail_loop"]
    again = tmp_path / "again"
    invoke("simulate", "--out", str(again), "--format", fmt, "--incident", "mail_loop",
           "--incident", "newsletter", "--background", "200", "--seed", "3")
    logs = sorted(p.name for p in (tmp_path / "sim" / "logs").iterdir())
    for name in logs:  # the same seed writes the same bytes
        assert (again / "logs" / name).read_bytes() == (tmp_path / "sim" / "logs" / name
                                                         ).read_bytes()
    run = invoke("run", str(tmp_path / "sim" / "logs"), "--out", str(tmp_path / "out"), "-q")
    assert run.exit_code == 0, run.output
    found = json.loads((tmp_path / "out" / "incidents.json").read_text())["incidents"]
    assert [i["kind"] for i in found] == ["mail_loop"]
    # within seconds: Sendmail logs a session's first lines before the message is queued
    assert matches(truth["incidents"][0], found[0], subjects=True)


def test_simulate_refuses_an_unknown_incident(tmp_path: Path) -> None:
    result = invoke("simulate", "--out", str(tmp_path), "--incident", "meteor")
    assert result.exit_code == 2 and "unknown incident 'meteor'" in result.output
