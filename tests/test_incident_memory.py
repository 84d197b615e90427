"""Incidents remembered across runs: statuses, one alert per incident, stable ids as the
warehouse grows, and --since / --until. CLI end to end on real files."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from detector.cli import main
from tests.logsynth import Mail, Site, storm, write_log

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_logs" / "mail.log"
TRUTH = json.loads((REPO / "sample_logs" / "truth.json").read_text())[0]
RUN = ("--year", "2016", "--tz", "UTC", "-q")


def invoke(*args: str | Path) -> tuple[int, str]:
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return res.exit_code, res.output


def incidents(out: Path) -> list[dict]:
    return json.loads((out / "incidents.json").read_text())["incidents"]


def storms(out: Path) -> list[dict]:
    return [i for i in incidents(out) if i["kind"] == "reply_storm"]


def _split_sample(at: str) -> tuple[list[str], list[str]]:
    """The sample storm day's lines before and from ``at`` (HH:MM:SS), as logged."""
    lines = SAMPLE.read_text().splitlines(keepends=True)
    cut = next(n for n, line in enumerate(lines) if line[7:15] >= at)
    return lines[:cut], lines[cut:]


def test_a_storm_split_over_two_nightly_runs_is_one_incident_new_then_grown(
        tmp_path: Path) -> None:
    before, after = _split_sample("10:30:00")
    log, out = tmp_path / "mail.log", tmp_path / "out"
    log.write_text("".join(before))

    code, _ = invoke("run", log, "--out", out, "--fail-on", "low", *RUN)
    [first] = storms(out)
    assert code == 3 and first["status"] == "new"
    assert first["root_message_id"] == TRUTH["root_message_id"]

    with log.open("a") as fh:  # the live log grew; the next night reads only the rest
        fh.write("".join(after))
    code, _ = invoke("run", log, "--out", out, "--fail-on", "low", *RUN)
    [second] = storms(out)
    assert second["id"] == first["id"]
    assert second["status"] == "grown"
    assert second["messages"] == TRUTH["messages"] > first["messages"]
    assert second["deliveries"] == TRUTH["deliveries"] > first["deliveries"]
    # grown within the severity it was first reported at: no second page
    assert code == (3 if second["severity"] != first["severity"] else 0)

    code, _ = invoke("run", log, "--out", out, "--fail-on", "low", *RUN)
    [third] = storms(out)
    assert code == 4  # nothing new was read: no incident alert, and said so
    assert third["id"] == first["id"] and third["status"] == "ended"

    con = duckdb.connect(str(out / "mailstorm.duckdb"), read_only=True)
    changes = con.execute("SELECT run_id, status FROM incident_changes WHERE incident_id = ? "
                          "ORDER BY run_id", [first["id"]]).fetchall()
    state = con.execute("SELECT first_reported_run, last_changed_run, status FROM "
                        "incident_state WHERE id = ?", [first["id"]]).fetchall()
    con.close()
    assert changes == [(1, "new"), (2, "grown"), (3, "ended")]
    assert state == [(1, 3, "ended")]


def test_report_neither_alerts_again_nor_uses_up_the_alert(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, _ = invoke("run", SAMPLE, "--out", out, "--fail-on", "medium", *RUN)
    assert code == 3
    db = out / "mailstorm.duckdb"
    code, _ = invoke("report", "--db", db, "--out", tmp_path / "r", "--fail-on", "low", "-q")
    assert code == 0
    assert [i["status"] for i in storms(tmp_path / "r")] == ["new"]  # as the run reported
    code, _ = invoke("report", "--db", db, "--out", tmp_path / "r", "--fail-on", "low",
                     "--fail-on-any", "-q")
    assert code == 3  # the old behaviour, on request
    code, _ = invoke("report", "--db", db, "--out", tmp_path / "r", "--fail-on", "critical",
                     "--fail-on-any", "-q")
    assert code == 0


LIST = "all.staff@site.example"


def _site() -> Site:
    return Site(lists={LIST: [f"m{i}@site.example" for i in range(30)]})


def test_the_id_survives_a_second_day_appended(tmp_path: Path) -> None:
    site, log, out = _site(), tmp_path / "mail.log", tmp_path / "out"
    day1 = datetime(2016, 11, 14, 9, 58)
    write_log(log, site, storm(site, list_addr=LIST, start=day1, repliers=12))
    invoke("run", log, "--out", out, "--set", "reply_storm.min_audience=20", *RUN)
    [first] = storms(out)

    # the next day: ordinary mail, and a second storm on the same list
    day2 = day1 + timedelta(days=1)
    second_day = [Mail(day2 + timedelta(minutes=k), f"m{k}@site.example",
                       ["someone@elsewhere.example"], f"note {k}", f"note-{k}@site.example")
                  for k in range(5)]
    for mail in storm(site, list_addr=LIST, start=day2 + timedelta(hours=3), repliers=11,
                      subject="second"):
        mail.message_id = f"d2-{mail.message_id}"
        mail.in_reply_to = f"d2-{mail.in_reply_to}" if mail.in_reply_to else None
        second_day.append(mail)
    day2_log = tmp_path / "day2.log"
    write_log(day2_log, site, second_day)
    with log.open("a") as fh:
        fh.write(day2_log.read_text())

    invoke("run", log, "--out", out, "--set", "reply_storm.min_audience=20", *RUN)
    found = {i["id"]: i for i in storms(out)}
    assert len(found) == 2
    assert first["id"] in found
    assert found[first["id"]]["root_message_id"] == first["root_message_id"]
    assert found[first["id"]]["status"] == "ended"
    [new] = [i for i in found.values() if i["id"] != first["id"]]
    assert new["status"] == "new" and new["root_message_id"] == "d2-root-1@site.example"


@pytest.mark.parametrize("since, until, expected", [
    ("2016-11-14", "2016-11-15", 1),
    ("2016-11-14T11:00:00Z", None, 0),
    (None, "2016-11-14T09:00:00+00:00", 0),
])
def test_since_and_until_limit_what_is_detected(tmp_path: Path, since: str | None,
                                                until: str | None, expected: int) -> None:
    site, log, out = _site(), tmp_path / "mail.log", tmp_path / "out"
    write_log(log, site, storm(site, list_addr=LIST, start=datetime(2016, 11, 14, 9, 58),
                               repliers=12))
    limits = [*(("--since", since) if since else ()), *(("--until", until) if until else ())]
    code, _ = invoke("run", log, "--out", out, "--set", "reply_storm.min_audience=20",
                     *limits, *RUN)
    assert code == 0
    assert len(storms(out)) == expected


def test_since_after_until_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "mail.log").write_text("")
    code, output = invoke("report", "--db", tmp_path / "none.duckdb", "--out", tmp_path,
                          "--since", "2016-11-15", "--until", "2016-11-14")
    assert code == 2 and "--since must be before --until" in output
    code, output = invoke("report", "--db", tmp_path / "none.duckdb", "--out", tmp_path,
                          "--since", "yesterday")
    assert code == 2 and "not an ISO 8601" in output


def test_a_storm_across_midnight_and_a_log_rotation_is_one_incident(tmp_path: Path) -> None:
    site, out = _site(), tmp_path / "out"
    logs = tmp_path / "logs"
    logs.mkdir()
    whole = tmp_path / "whole.log"
    # replies a minute apart from 23:49 to 00:04: eleven before midnight, five after
    write_log(whole, site, storm(site, list_addr=LIST, start=datetime(2016, 11, 14, 23, 48),
                                 repliers=16, gap_s=60))
    lines = whole.read_text().splitlines(keepends=True)
    tonight = [line for line in lines if line.startswith("Nov 14")]
    assert 0 < len(tonight) < len(lines)
    (logs / "mail.log").write_text("".join(tonight))
    args = ("--out", out, "--set", "reply_storm.min_audience=20", "--fail-on", "low", *RUN)

    code, _ = invoke("run", logs, *args)
    [first] = storms(out)
    assert code == 3 and first["status"] == "new"

    # logrotate at midnight: yesterday's file renamed, today's written anew
    (logs / "mail.log").rename(logs / "mail.log.1")
    (logs / "mail.log").write_text("".join(lines[len(tonight):]))
    code, _ = invoke("run", logs, *args)
    [second] = storms(out)
    assert (second["id"], second["status"]) == (first["id"], "grown")
    assert second["messages"] == 17 and first["messages"] == 12
    assert code == 0  # grown, but not past the severity it was announced at


def test_nights_read_one_by_one_report_what_one_run_over_all_finds(tmp_path: Path) -> None:
    """The oracle is a fresh run over every file at once: the quiet day, then the storm
    day in three nights (cut in the storm and in its tail), each run building and
    detecting only what its lines touched, leave a warehouse whose full report names the
    same incidents, with the same counts and times."""
    lines = SAMPLE.read_text().splitlines(keepends=True)
    n = len(lines)
    logs = tmp_path / "logs"
    logs.mkdir()
    quiet = logs / "mail.log.1.gz"
    quiet.write_bytes((REPO / "sample_logs" / "mail.log.1.gz").read_bytes())
    live = logs / "mail.log"
    out = tmp_path / "nightly"
    invoke("run", quiet, "--out", out, *RUN)
    for a, b in ((0, n // 3), (n // 3, 2 * n // 3), (2 * n // 3, n)):
        with live.open("a") as fh:
            fh.write("".join(lines[a:b]))
        invoke("run", live, "--out", out, *RUN)
    code, _ = invoke("report", "--db", out / "mailstorm.duckdb", "--out", tmp_path / "all",
                     "-q")
    assert code == 0
    once = tmp_path / "once"
    invoke("run", logs, "--out", once, *RUN)
    fields = ("id", "kind", "rule", "severity", "start", "end", "messages", "deliveries",
              "senders", "root_message_id", "list")
    got = sorted(tuple(i.get(f) for f in fields) for i in incidents(tmp_path / "all"))
    want = sorted(tuple(i.get(f) for f in fields) for i in incidents(once))
    assert got == want and any(i[1] == "reply_storm" for i in want)


def test_a_nightly_run_counts_the_messages_of_the_span_it_looked_at(tmp_path: Path) -> None:
    from detector.pipeline import run

    out = tmp_path / "out"
    run([str(REPO / "sample_logs" / "mail.log.1.gz")], out, year=2016)  # the day before
    night = run([str(SAMPLE)], out, year=2016)
    since = night.summary["detected_since"]
    assert since is not None  # the second night looked only from its own messages on
    con = duckdb.connect(str(out / "mailstorm.duckdb"), read_only=True)
    total, = con.execute("SELECT count(*) FROM logical_messages").fetchone() or (0,)
    scoped, deliveries = con.execute(
        "SELECT count(*), sum(deliveries) FROM logical_messages WHERE first_seen >= ?",
        [datetime.fromisoformat(since)]).fetchone() or (0, 0)
    con.close()
    assert night.summary["messages"] == scoped < total
    assert night.summary["deliveries"] == deliveries
    page = (out / "index.html").read_text()
    assert f"{scoped:,} messages, {deliveries:,} deliveries from " in page
