"""One run over a folder mixing Postfix, Exim and Exchange logs from three hosts: each
message is counted once, whichever hosts logged it."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from detector.pipeline import run
from detector.simulate.exchange import write_exchange
from detector.simulate.exim import write_exim
from detector.simulate.postfix import write_postfix
from detector.simulate.samples import STORM_DAY, build
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
        # mainlog names no host, so only two host names are known)
        files = wh.query("SELECT DISTINCT e.source_file FROM events e JOIN logical_messages l "
                         "ON e.message_id = l.message_id WHERE l.message_id = ?",
                         [truth["root_message_id"]])["source_file"].to_list()
        assert sorted(Path(f).name for f in files) == [
            "MSGTRK2016111409-1.LOG", "mail.log", "mainlog"]
        assert wh.query("SELECT hosts FROM logical_messages WHERE message_id = ?",
                        [truth["root_message_id"]]).rows() == [("exch01,mx1",)]
