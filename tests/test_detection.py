"""Rules and incidents end to end on small logs whose every line the test controls."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector import pipeline
from detector.assets import builtin_rules_dir
from detector.incidents import detect
from detector.incidents.execute import ALL_MESSAGES, run_rule, run_rules
from detector.ingest import ingest
from detector.model.build import build_model
from detector.rules.compiler import compile_rule
from detector.rules.loader import load_rules
from detector.rules.overrides import apply_overrides
from detector.sources import discover
from detector.warehouse import Warehouse, table_exists
from tests.logsynth import Mail, Site, storm, write_log

START = datetime(2016, 11, 14, 9, 58)
LIST = "all.staff@site.example"
SMALL = {"reply_storm.min_audience": "20"}


def _site(size: int, name: str = LIST) -> Site:
    return Site(lists={name: [f"m{i}@site.example" for i in range(size)]})


def _run(tmp: Path, mails_by_file: dict[str, list[Mail]], site: Site, **overrides: str):
    files = []
    for name, mails in mails_by_file.items():
        write_log(tmp / name, site, mails)
        files.append(str(tmp / name))
    return pipeline.run(files, tmp / "out", tz="UTC", year=2016, overrides=overrides)


def test_storm_is_one_incident_with_root_list_start_and_deliveries(tmp_path: Path) -> None:
    site = _site(30)
    mails = storm(site, list_addr=LIST, start=START, repliers=12)
    delivery_lines = write_log(tmp_path / "mail.log", site, mails)
    result = pipeline.run([str(tmp_path / "mail.log")], tmp_path / "out", tz="UTC",
                          year=2016, overrides=SMALL)
    storms = [i for i in result.incidents if i.kind == "reply_storm"]
    assert len(storms) == 1
    inc = storms[0]
    assert inc.root_message_id == "root-1@site.example"
    assert inc.list == LIST
    assert inc.subject == "test"
    assert inc.start == datetime(2016, 11, 14, 9, 58, tzinfo=UTC)
    assert inc.deliveries == delivery_lines == 13 * 30
    assert inc.messages == 13 and inc.senders == 13 and inc.repliers == 12
    assert inc.list_size == 30
    assert sum(p.deliveries for p in inc.timeline) == delivery_lines
    on_disk = json.loads((tmp_path / "out" / "incidents.json").read_text())
    assert [i["id"] for i in on_disk["incidents"]] == [inc.id]


def test_too_few_repliers_is_no_storm(tmp_path: Path) -> None:
    site = _site(30)
    result = _run(tmp_path, {"mail.log": storm(site, list_addr=LIST, start=START, repliers=9)},
                  site, **SMALL)
    assert result.incidents == []


def test_replies_spread_over_hours_are_no_storm(tmp_path: Path) -> None:
    site = _site(30)
    mails = storm(site, list_addr=LIST, start=START, repliers=15, gap_s=15 * 60)
    assert _run(tmp_path, {"mail.log": mails}, site, **SMALL).incidents == []


def test_busy_thread_on_small_list_is_no_storm_with_defaults(tmp_path: Path) -> None:
    site = _site(25, "team@site.example")
    mails = storm(site, list_addr="team@site.example", start=START, repliers=24, gap_s=30)
    assert _run(tmp_path, {"mail.log": mails}, site).incidents == []


def test_newsletter_to_large_list_is_no_incident(tmp_path: Path) -> None:
    site = _site(3000, "news@site.example")
    mails = [Mail(START + timedelta(days=d), "editor@site.example", ["news@site.example"],
                  "Weekly news", f"news-{d}@site.example") for d in range(2)]
    assert _run(tmp_path, {"mail.log": mails}, site).incidents == []


def test_subject_drift_and_prefix_variants_stay_in_the_thread(tmp_path: Path) -> None:
    site = _site(30)
    mails = storm(site, list_addr=LIST, start=START, repliers=11)
    mails[3].subject = "please remove me from this list"  # In-Reply-To still names the root
    mails[4].subject = "AW: Re: test"
    mails[5].subject = "=?UTF-8?B?UkU6IHRlc3Q=?="  # "RE: test", RFC 2047 encoded
    result = _run(tmp_path, {"mail.log": mails}, site, **SMALL)
    assert [i.messages for i in result.incidents] == [12]


def test_no_subject_logged_degrades_to_posts_on_one_list(tmp_path: Path) -> None:
    site = _site(30)
    mails = storm(site, list_addr=LIST, start=START, repliers=12)
    for m in mails:
        m.subject = None
        m.in_reply_to = None
    # without subjects or threading headers nothing says "reply": a rule over all
    # messages grouped by list is the degraded-mode storm detector
    rules = tmp_path / "rules"
    rules.mkdir()
    text = (builtin_rules_dir() / "reply_storm.yaml").read_text()
    (rules / "reply_storm.yaml").write_text(text.replace("select: replies", "select: messages"))
    for name, m in [("mail.log", mails)]:
        write_log(tmp_path / name, site, m)
    result = pipeline.run([str(tmp_path / "mail.log")], tmp_path / "out", tz="UTC", year=2016,
                          rules_dir=rules, overrides=SMALL)
    assert len(result.incidents) == 1
    assert result.incidents[0].list == LIST


def test_ids_are_stable_across_reruns_and_new_data(tmp_path: Path) -> None:
    site = _site(30)
    first = _run(tmp_path, {"mail.log": storm(site, list_addr=LIST, start=START,
                                               repliers=12)}, site, **SMALL)
    again = pipeline.report(tmp_path / "out" / "mailstorm.duckdb", tmp_path / "out",
                            overrides=SMALL)
    assert [i.id for i in first.incidents] == [i.id for i in again.incidents]


def test_compiled_sql_binds_every_number() -> None:
    rule = next(r for r in load_rules(builtin_rules_dir()) if r.name == "reply_storm")
    rule = apply_overrides([rule], {"reply_storm.min_senders": "7345"})[0]
    compiled = compile_rule(rule)
    assert compiled.params == [3600, 7345, 2500]
    assert "7345" not in compiled.sql and "3600" not in compiled.sql
    assert compiled.sql.count("?") == 3


def _warehouse_with_storms(tmp_path: Path, repliers: list[int], gap_s: int) -> Warehouse:
    """A warehouse (open: the caller closes it) of storms on lists of 25, one a list."""
    site = Site(lists={f"l{k}@site.example": [f"m{k}.{i}@site.example" for i in range(25)]
                       for k in range(len(repliers))})
    mails: list[Mail] = []
    for k, n in enumerate(repliers):
        thread = storm(site, list_addr=f"l{k}@site.example",
                       start=START + timedelta(minutes=7 * k), repliers=n, gap_s=gap_s,
                       subject=f"topic {k}")
        for m in thread:
            m.message_id = f"{k}-{m.message_id}"
            m.in_reply_to = f"{k}-{m.in_reply_to}" if m.in_reply_to else None
        mails += thread
    write_log(tmp_path / "mail.log", site, mails)
    wh = Warehouse(tmp_path / "w.duckdb")
    ingest(wh, discover([str(tmp_path / "mail.log")]), tz="UTC", year=2016)
    build_model(wh)
    return wh


def _ids(wh: Warehouse, overrides: dict[str, str]) -> set[str]:
    rules = apply_overrides(load_rules(builtin_rules_dir()), overrides)
    return {i.id for i in detect(wh, rules)}


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(repliers=st.lists(st.integers(0, 14), min_size=1, max_size=3),
       gap_s=st.sampled_from([20, 120, 400]),
       low=st.integers(1, 12), raise_by=st.integers(0, 6))
def test_raising_a_threshold_never_adds_an_incident(tmp_path_factory, repliers, gap_s, low,
                                                    raise_by) -> None:
    base = {"reply_storm.min_audience": "10"}
    with _warehouse_with_storms(tmp_path_factory.mktemp("w"), repliers, gap_s) as wh:
        lower = _ids(wh, {**base, "reply_storm.min_senders": str(low)})
        higher = _ids(wh, {**base, "reply_storm.min_senders": str(low + raise_by)})
    assert higher <= lower


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(repliers=st.lists(st.integers(8, 14), min_size=1, max_size=3),
       seed=st.integers(0, 2**32 - 1))
def test_shuffling_event_rows_changes_no_incident(tmp_path_factory, repliers, seed) -> None:
    overrides = {"reply_storm.min_audience": "10", "reply_storm.min_senders": "8"}
    rules = apply_overrides(load_rules(builtin_rules_dir()), overrides)
    with _warehouse_with_storms(tmp_path_factory.mktemp("w"), repliers, 60) as wh:
        before = detect(wh, rules)
        # rewrite the events as one Parquet part with the rows in a random order
        events = wh.query("SELECT * FROM events")
        for part in wh.parts_dir.glob("part-*.parquet"):
            part.unlink()
        events.sample(fraction=1.0, shuffle=True, seed=seed).write_parquet(
            wh.parts_dir / "part-shuffled.parquet")
        wh.refresh_events_view()
        build_model(wh)
        after = detect(wh, rules)
    assert before == after
    assert len(before) == len(repliers)


@pytest.mark.parametrize("key, message", [
    ("reply_storm.nope=1", "rule 'reply_storm' has no param 'nope'"),
    ("nope.x=1", "unknown rule 'nope'"),
])
def test_bad_override_is_a_usage_error(tmp_path: Path, key: str, message: str) -> None:
    from click.testing import CliRunner

    from detector.cli import main

    (tmp_path / "mail.log").write_text("")
    res = CliRunner().invoke(main, ["run", str(tmp_path / "mail.log"), "--out",
                                    str(tmp_path / "o"), "--set", key])
    assert res.exit_code == 2
    assert message in res.output


def test_a_windowed_rule_with_no_message_to_read_is_not_run(tmp_path: Path) -> None:
    """run_rules skips a windowed rule none of whose messages is there, and says so by
    leaving no ``_hits``; every rule it runs finds what run_rule alone finds."""
    site = _site(30)
    mails = storm(site, list_addr=LIST, start=START, repliers=12)  # replies, no auto
    write_log(tmp_path / "mail.log", site, mails)
    rules = apply_overrides(load_rules(builtin_rules_dir()), SMALL)
    with Warehouse(tmp_path / "w.duckdb") as wh:
        ingest(wh, discover([str(tmp_path / "mail.log")]), tz="UTC", year=2016)
        build_model(wh)
        alone = {r.name: run_rule(wh, r, ALL_MESSAGES)[1] for r in rules}
        seen = {}
        for compiled, hits in run_rules(wh, rules, ALL_MESSAGES):
            seen[compiled.rule.name] = (hits, table_exists(wh.con, "_hits"))
    assert {name: hits for name, (hits, _) in seen.items()} == alone
    assert alone["reply_storm"] > 0 and seen["reply_storm"][1]  # its window was run
    # automatic answers: none on this day, so auto_storm's window was never planned
    assert seen["auto_storm"] == (0, False)
