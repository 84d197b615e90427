"""One run over a folder mixing Postfix, Exim and Exchange logs from three hosts: each
message is counted once, whichever hosts logged it."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from bench.sample_logs import STORM_DAY, build
from detector.pipeline import run
from detector.simulate.exchange import write_exchange
from detector.simulate.exim import write_exim
from detector.simulate.postfix import write_postfix
from detector.warehouse import Warehouse


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    site, _, day, [truth] = build()
    storm_hours = [m for m in day if STORM_DAY + timedelta(hours=9) <= m.time
                   <= STORM_DAY + timedelta(hours=11)]
    logs = tmp_path_factory.mktemp("mixed")
    # the same two hours of traffic, logged by three hosts of three kinds
    write_postfix(logs / "mail.log", site, storm_hours, seed=1, hosts=("mx1",))
    write_exim(logs / "mainlog", site, storm_hours, seed=2, host="exim1")
    write_exchange(logs / "MSGTRK2016111409-1.LOG", site, storm_hours, seed=3,
                   server="EXCH01")
    run([str(logs)], logs / "out", tz="UTC", year=2016)
    return logs / "out", truth


def test_each_format_was_read(mixed: tuple[Path, dict]) -> None:
    out, _ = mixed
    with Warehouse(out / "mailstorm.duckdb") as wh:
        assert sorted(r[0] for r in wh.con.execute("SELECT format FROM files").fetchall()) == [
            "exchange", "exim", "postfix"]


def test_the_storm_is_counted_once_across_three_hosts(mixed: tuple[Path, dict]) -> None:
    out, truth = mixed
    incidents = json.loads((out / "incidents.json").read_text())["incidents"]
    [storm] = [i for i in incidents if i["kind"] == "reply_storm"]
    assert storm["root_message_id"] == truth["root_message_id"]
    assert storm["list"] == truth["list"]
    assert storm["messages"] == truth["messages"]
    assert storm["deliveries"] == truth["deliveries"]  # not three times as many
    with Warehouse(out / "mailstorm.duckdb") as wh:
        # one logical message, whose instances come from all three logs (a native Exim
        # mainlog names no host: its file is its host)
        files = wh.query("SELECT DISTINCT e.source_file FROM events e JOIN logical_messages l "
                         "ON e.message_id = l.message_id WHERE l.message_id = ?",
                         [truth["root_message_id"]])["source_file"].to_list()
        assert sorted(Path(f).name for f in files) == [
            "MSGTRK2016111409-1.LOG", "mail.log", "mainlog"]
        assert wh.query("SELECT hosts FROM logical_messages WHERE message_id = ?",
                        [truth["root_message_id"]]).rows() == [
            (f"{Path(files[0]).parent / 'mainlog'},exch01,mx1",)]


def test_a_message_on_two_exchange_servers_counts_once(tmp_path: Path) -> None:
    site, _, day, [truth] = build()
    storm_hours = [m for m in day if STORM_DAY + timedelta(hours=9) <= m.time
                   <= STORM_DAY + timedelta(hours=11)]
    for n, server in enumerate(("EXCH01", "EXCH02")):  # both log the same traffic
        write_exchange(tmp_path / f"{server}-MSGTRK2016111409-1.LOG", site, storm_hours,
                       seed=n, server=server)
    run([str(tmp_path)], tmp_path / "out", tz="UTC")
    [storm] = [i for i in json.loads((tmp_path / "out" / "incidents.json").read_text())[
        "incidents"] if i["kind"] == "reply_storm"]
    single = tmp_path / "single"
    single.mkdir()
    write_exchange(single / "MSGTRK2016111409-1.LOG", site, storm_hours, seed=0,
                   server="EXCH01")
    run([str(single)], single / "out", tz="UTC")
    [alone] = [i for i in json.loads((single / "out" / "incidents.json").read_text())[
        "incidents"] if i["kind"] == "reply_storm"]
    assert storm["root_message_id"] == alone["root_message_id"] == truth["root_message_id"]
    assert (storm["messages"], storm["deliveries"]) == (alone["messages"], alone["deliveries"])
    with Warehouse(tmp_path / "out" / "mailstorm.duckdb") as wh:
        assert wh.query("SELECT hosts FROM logical_messages WHERE message_id = ?",
                        [truth["root_message_id"]]).rows() == [("exch01,exch02",)]
