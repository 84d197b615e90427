"""Storms at awkward places: across midnight and New Year in rotated files, and relayed
through an edge MX and a list server whose logs are both read."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path

from detector.pipeline import run
from detector.simulate import make_site, traffic, utc
from detector.simulate.output import set_mtime, write_lines
from detector.simulate.postfix import PostfixRenderer


def _storm_site(seed: int, start):  # noqa: ANN001, ANN202 - test helper
    rng = random.Random(seed)
    site = make_site(rng, "nhs.example", lists={"all.staff": 2600})
    day, _ = traffic.background(site, rng, start - timedelta(hours=2), 150)
    storm, truth = traffic.storm(site, rng, start, list_address="all.staff@nhs.example",
                                 list_size=2600, repliers=14, duration=timedelta(minutes=45))
    return site, day + storm, truth[0]


def _incidents(out: Path) -> list[dict]:
    return json.loads((out / "incidents.json").read_text())["incidents"]


def test_a_storm_across_new_year_in_rotated_files_is_one_incident(tmp_path: Path) -> None:
    start = utc(2016, 12, 31, 23, 40)
    site, messages, truth = _storm_site(11, start)
    midnight = int(utc(2017, 1, 1).timestamp() * 1e6)
    old, new = [], []
    for t0, _, lines in PostfixRenderer(site, seed=11).timed_chunks(messages):
        (old if t0 < midnight else new).append(lines)
    logs = tmp_path / "logs"
    logs.mkdir()
    write_lines(logs / "mail.log.1", old)
    write_lines(logs / "mail.log", new)
    # rotated just after midnight; the current file last written in the morning
    set_mtime(logs / "mail.log.1", utc(2017, 1, 1, 0, 0, 5).timestamp())
    set_mtime(logs / "mail.log", utc(2017, 1, 1, 6).timestamp())
    assert old and new  # the storm really spans both files
    run([str(logs)], tmp_path / "out", tz="UTC")  # no --year: inferred from the files
    [storm] = [i for i in _incidents(tmp_path / "out") if i["kind"] == "reply_storm"]
    assert storm["start"] == truth["start"]
    assert storm["end"] > "2017-01-01"
    assert storm["root_message_id"] == truth["root_message_id"]
    assert storm["deliveries"] == truth["deliveries"]


def test_a_storm_relayed_through_edge_and_list_server_counts_once(tmp_path: Path) -> None:
    site, messages, truth = _storm_site(12, utc(2016, 11, 14, 10))
    lines = [line for chunk in PostfixRenderer(site, seed=12, hosts=("mx1", "lists"))
             .chunks(messages) for line in chunk]
    logs = tmp_path / "logs"
    logs.mkdir()
    for host in ("mx1", "lists"):  # each host writes its own log
        write_lines(logs / f"{host}.log", [[x for x in lines if x.split()[3] == host]])
    assert (logs / "lists.log").stat().st_size > 0
    run([str(logs)], tmp_path / "out", tz="UTC", year=2016)
    [storm] = [i for i in _incidents(tmp_path / "out") if i["kind"] == "reply_storm"]
    assert storm["list"] == truth["list"]
    assert storm["messages"] == truth["messages"]
    assert storm["deliveries"] == truth["deliveries"]
