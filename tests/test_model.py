"""The model tables built from small hand-written logs: one thing per test."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import duckdb
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.ingest import ingest
from detector.model.build import build_model
from detector.schema import conform
from detector.sources import discover
from detector.warehouse import Warehouse


def _model(tmp_path: Path, *logs: tuple[str, list[str]]) -> Warehouse:
    paths = []
    for name, lines in logs:
        (tmp_path / name).write_text("".join(line + "\n" for line in lines))
        paths.append(str(tmp_path / name))
    wh = Warehouse(tmp_path / "w.duckdb")
    ingest(wh, discover(paths), tz="UTC", year=2016)
    build_model(wh)
    return wh


def _message(host: str, t: str, qid: str, mid: str, rcpts: list[tuple[str, str | None]],
             reply: str = "250 2.0.0 Ok") -> list[str]:
    out = [f"Nov 14 {t} {host} postfix/cleanup[2]: {qid}: message-id=<{mid}>",
           f"Nov 14 {t} {host} postfix/qmgr[3]: {qid}: from=<a@x.example>, size=10, "
           f"nrcpt={len(rcpts)} (queue active)"]
    for rcpt, orig in rcpts:
        via = f" orig_to=<{orig}>," if orig else ""
        out.append(f"Nov 14 {t} {host} postfix/lmtp[4]: {qid}: to=<{rcpt}>,{via} relay=s[10.0.0.1]"
                   f":24, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent ({reply})")
    out.append(f"Nov 14 {t} {host} postfix/qmgr[3]: {qid}: removed")
    return out


def _handover(host: str, t: str, qid: str, rcpt: str, next_qid: str) -> str:
    return (f"Nov 14 {t} {host} postfix/smtp[5]: {qid}: to=<{rcpt}>, relay=next[10.0.0.2]:25, "
            f"delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as "
            f"{next_qid})")


def test_a_reused_queue_id_is_several_messages(tmp_path: Path) -> None:
    lines = (_message("mx1", "09:00:00", "ABCDEF1234", "one@x", [("u1@x", None)])
             + _message("mx1", "10:00:00", "ABCDEF1234", "two@x", [("u2@x", None)])
             + _message("mx1", "11:00:00", "ABCDEF1234", "three@x", [("u3@x", None)]))
    with _model(tmp_path, ("mail.log", lines)) as wh:
        rows = wh.query("SELECT message_id, message_key FROM messages ORDER BY first_seen")
        assert rows["message_id"].to_list() == ["one@x", "two@x", "three@x"]
        assert rows["message_key"].n_unique() == 3
        per = wh.query("SELECT m.message_id, d.recipient FROM deliveries d "
                       "JOIN messages m USING (message_key) ORDER BY d.ts")
        assert per.rows() == [("one@x", "u1@x"), ("two@x", "u2@x"), ("three@x", "u3@x")]


def test_a_message_relayed_between_logged_hosts_counts_once(tmp_path: Path) -> None:
    edge = _message("edge", "09:00:00", "AAAAA11111", "m@x", [("all@x", None)],
                    reply="250 2.0.0 Ok: queued as BBBBB22222")
    lists = _message("lists", "09:00:01", "BBBBB22222", "m@x",
                     [("u1@x", "all@x"), ("u2@x", "all@x"), ("u3@x", "all@x")])
    with _model(tmp_path, ("edge.log", edge), ("lists.log", lists)) as wh:
        assert wh.scalar("SELECT count(*) FROM messages") == 2
        assert wh.query("SELECT hops, deliveries, list FROM logical_messages").rows() == [
            (2, 3, "all@x")]
        assert wh.scalar("SELECT count(*) FROM deliveries WHERE is_hop") == 1


def test_a_copy_by_the_list_and_one_in_cc_are_two_deliveries(tmp_path: Path) -> None:
    lines = _message("mx1", "09:00:00", "CCCCC33333", "m@x",
                     [("u1@x", "all@x"), ("u2@x", "all@x"), ("u1@x", None)])
    with _model(tmp_path, ("mail.log", lines)) as wh:
        assert wh.query("SELECT recipients, deliveries, submitted FROM logical_messages"
                        ).rows() == [(2, 3, 2)]


# The kinds other formats share with the model (docs/formats.md), written as events
# directly: the model must not depend on which parser produced them.
def _events_model(tmp_path: Path, rows: list[dict]) -> Warehouse:

    for i, row in enumerate(rows, start=1):
        row.setdefault("line_no", i)
        row["ts"] = datetime.fromisoformat(row["ts"]).replace(tzinfo=UTC)
    frame = conform(pl.DataFrame(rows).with_columns(source_file=pl.lit("test.log"))).collect()
    wh = Warehouse(tmp_path / "w.duckdb")
    txn = wh.begin_file()
    txn.add(wh.write_part(frame), False)
    wh.commit_file(txn, path="test.log", fmt="test", head=b"x", previous=None,
                   bytes_ingested=1, lines=len(rows))
    build_model(wh)
    return wh


def _received(host: str, qid: str, mid: str, ts: str = "2016-11-14T09:00:00") -> dict:
    return {"ts": ts, "host": host, "kind": "received", "queue_id": qid, "message_id": mid,
            "sender": "a@x", "size": 100, "nrcpt": 1, "subject": "RE: test", "client": "c[1.2.3.4]"}


def _delivery(host: str, qid: str, rcpt: str, status: str = "sent", orig_to: str | None = None,
              ts: str = "2016-11-14T09:00:01") -> dict:
    return {"ts": ts, "host": host, "kind": "delivery", "queue_id": qid, "recipient": rcpt,
            "orig_to": orig_to, "status": status}


def test_a_received_line_gives_the_message_its_facts(tmp_path: Path) -> None:
    rows = [_received("ex1", "Q1", "m@x"), _delivery("ex1", "Q1", "u1@x")]
    with _events_model(tmp_path, rows) as wh:
        assert wh.query("SELECT message_id, sender, size, subject, is_reply, client "
                        "FROM messages").rows() == [("m@x", "a@x", 100, "RE: test", True,
                                                      "c[1.2.3.4]")]


def test_an_expansion_names_the_list_of_deliveries_on_another_host(tmp_path: Path) -> None:
    # Exchange: the hub expands the group, the mailbox server delivers
    # written to all@x and boss@x: two envelope recipients
    rows = [{**_received("hub", "H1", "m@x"), "nrcpt": 2},
            *({"ts": "2016-11-14T09:00:00", "host": "hub", "kind": "expansion", "queue_id": "H1",
               "orig_to": "all@x", "recipient": f"u{i}@x"} for i in range(3)),
            {**_received("mbx", "M1", "m@x"), "nrcpt": 4},
            *(_delivery("mbx", "M1", f"u{i}@x") for i in range(3)),
            _delivery("mbx", "M1", "boss@x")]  # in Cc: no list
    with _events_model(tmp_path, rows) as wh:
        assert wh.query("SELECT recipient, list FROM deliveries ORDER BY recipient").rows() == [
            ("boss@x", None), ("u0@x", "all@x"), ("u1@x", "all@x"), ("u2@x", "all@x")]
        assert wh.query("SELECT deliveries, submitted, list FROM logical_messages").rows() == [
            (4, 2, "all@x")]


def test_the_envelope_count_bounds_what_the_sender_wrote(tmp_path: Path) -> None:
    # Sendmail: a member with a mailbox on the MTA itself shows no list (ctladdr is the
    # user), but the from= line's nrcpts says the sender wrote one address
    rows = [_received("mx", "Q1", "m@x"),
            *(_delivery("mx", "Q1", f"u{i}@x", orig_to="all@x") for i in range(5)),
            _delivery("mx", "Q1", "local.user@x")]
    with _events_model(tmp_path, rows) as wh:
        assert wh.query("SELECT deliveries, submitted FROM logical_messages").rows() == [(6, 1)]


def test_the_same_route_logged_on_two_hosts_is_one_delivery(tmp_path: Path) -> None:
    rows = [_received("hub", "H1", "m@x"), _delivery("hub", "H1", "u1@x", orig_to="all@x"),
            _received("mbx", "M1", "m@x"), _delivery("mbx", "M1", "u1@x", orig_to="all@x"),
            _delivery("mbx", "M1", "u2@x", status="deferred", orig_to="all@x"),
            _delivery("mbx", "M1", "u2@x", orig_to="all@x", ts="2016-11-14T09:30:00")]
    with _events_model(tmp_path, rows) as wh:
        assert wh.query("SELECT hops, recipients, deliveries FROM logical_messages").rows() == [
            (2, 2, 2)]


def test_a_discarded_copy_is_not_a_delivery(tmp_path: Path) -> None:
    # Exim "=> :blackhole: <u@x> R=blackhole_router" (status discarded): thrown away, on
    # the one-list path and on the route-by-route path of a message naming two lists
    rows = [_received("mx", "Q1", "m1@x"),
            _delivery("mx", "Q1", "u1@x", orig_to="all@x"),
            _delivery("mx", "Q1", "u2@x", status="discarded", orig_to="all@x"),
            _delivery("mx", "Q1", "u3@x", status="discarded"),
            _received("mx", "Q2", "m2@x"),
            _delivery("mx", "Q2", "u1@x", orig_to="a@x"),
            _delivery("mx", "Q2", "u1@x", status="discarded", orig_to="b@x"),
            _delivery("mx", "Q2", "u2@x", status="discarded", orig_to="b@x")]
    with _events_model(tmp_path, rows) as wh:
        assert wh.query("SELECT message_id, recipients, deliveries FROM logical_messages "
                        "ORDER BY message_id").rows() == [("m1@x", 3, 1), ("m2@x", 2, 1)]


def test_a_list_post_names_the_list_of_copies_sent_to_members_directly(tmp_path: Path) -> None:
    # Mailman 2 logs the list's name; its copies leave with sender all-bounces@x
    rows = [{"ts": "2016-11-14T09:00:00", "host": "lists", "kind": "list_post",
             "message_id": "m@x", "sender": "a@x", "orig_to": "all"},
            _received("mx", "Q1", "m@x"), _delivery("mx", "Q1", "all@x"),
            {**_received("mx", "Q2", "m@x"), "sender": "all-bounces@x"},
            *(_delivery("mx", "Q2", f"u{i}@x") for i in range(3))]
    with _events_model(tmp_path, rows) as wh:
        assert wh.query("SELECT list FROM list_posts").rows() == [("all@x",)]
        assert wh.scalar("SELECT count(*) FROM deliveries WHERE is_hop") == 1  # into Mailman
        assert wh.query("SELECT sender, deliveries, submitted, list FROM logical_messages"
                        ).rows() == [("a@x", 3, 1, "all@x")]


def test_a_message_to_two_overlapping_lists_is_a_duplicates_fanout(tmp_path: Path) -> None:
    from detector.assets import builtin_rules_dir
    from detector.incidents import detect
    from detector.rules.loader import load_rules

    members = [f"u{i}@x" for i in range(600)]
    rows = [_received("mx", "Q1", "m@x")]
    rows += [_delivery("mx", "Q1", m, orig_to=lst) for lst in ("a@x", "b@x") for m in members]
    with _events_model(tmp_path, rows) as wh:
        assert wh.query("SELECT recipients, deliveries FROM logical_messages").rows() == [
            (600, 1200)]
        rules = [r for r in load_rules(builtin_rules_dir()) if r.name == "fanout_duplicates"]
        [incident] = detect(wh, rules)
        assert (incident.kind, incident.measures["duplicates"]) == ("fanout", 600)


def test_members_of_nested_groups_are_credited_to_the_outer_group(tmp_path: Path) -> None:
    # Exchange expands all@x into two groups, then each group into its members
    def expand(group: str, members: list[str]) -> list[dict]:
        return [{"ts": "2016-11-14T09:00:00", "host": "hub", "kind": "expansion",
                 "queue_id": "H1", "orig_to": group, "recipient": m} for m in members]

    rows = [_received("hub", "H1", "m@x"), *expand("all@x", ["d1@x", "d2@x"]),
            *expand("d1@x", ["u1@x", "u2@x"]), *expand("d2@x", ["u3@x"]),
            *(_delivery("hub", "H1", u) for u in ("u1@x", "u2@x", "u3@x"))]
    with _events_model(tmp_path, rows) as wh:
        assert wh.query("SELECT DISTINCT list FROM deliveries").rows() == [("all@x",)]
        assert wh.query("SELECT deliveries, submitted, list FROM logical_messages").rows() == [
            (3, 1, "all@x")]


# --- deliveries kept as a Parquet file ------------------------------------------------------


def _deliveries_files(wh: Warehouse) -> list[Path]:
    return sorted(wh.parquet_dir.glob("deliveries-*.parquet"))


def test_deliveries_are_a_parquet_file_replaced_on_a_full_rebuild(tmp_path: Path) -> None:
    wh = _model(tmp_path, ("mail.log", _message("mx1", "10:00:00", "AAAAAA1", "m1@x",
                                                [("b@y", None), ("c@y", "l@y")])))
    (first,) = _deliveries_files(wh)
    assert wh.query("SELECT recipient, list FROM deliveries ORDER BY 1").rows() == [
        ("b@y", None), ("c@y", "l@y")]
    build_model(wh)  # nothing new: nothing rebuilt
    assert _deliveries_files(wh) == [first]
    build_model(wh, full=True)  # a full rebuild writes a new file and removes the old one
    (second,) = _deliveries_files(wh)
    assert second != first
    assert wh.scalar("SELECT count(*) FROM deliveries") == 2
    wh.close()


def test_a_failed_rebuild_keeps_the_deliveries_it_had(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    wh = _model(tmp_path, ("mail.log", _message("mx1", "10:00:00", "AAAAAA1", "m1@x",
                                                [("b@y", None)])))
    before = _deliveries_files(wh)
    import detector.model.build as build

    real = build.model_statements
    monkeypatch.setattr(build, "model_statements", lambda *a, **k: [
        *real(*a, **k), build.Statement("_broken", "table", "SELECT broken(")])
    with pytest.raises(duckdb.Error):
        build_model(wh, full=True)
    assert _deliveries_files(wh) == before
    assert wh.scalar("SELECT count(*) FROM deliveries") == 1
    wh.close()


def test_deliveries_view_follows_the_folder_and_old_tables_are_replaced(tmp_path: Path
                                                                        ) -> None:
    import shutil

    wh = _model(tmp_path, ("mail.log", _message("mx1", "10:00:00", "AAAAAA1", "m1@x",
                                                [("b@y", None)])))
    wh.close()
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.move(tmp_path / "w.duckdb", moved / "w.duckdb")
    shutil.move(tmp_path / "w.parquet", moved / "w.parquet")
    with Warehouse(moved / "w.duckdb") as w:
        assert w.scalar("SELECT count(*) FROM deliveries") == 1
        # a warehouse from before deliveries were Parquet held them as a table
        w.con.execute("DROP VIEW deliveries")
        w.con.execute("CREATE TABLE deliveries AS SELECT 1 AS stale")
        build_model(w)
        assert w.scalar("SELECT count(*) FROM deliveries") == 1


def test_threads_kept_as_parquet_by_an_older_model_become_a_view(tmp_path: Path) -> None:
    wh = _model(tmp_path, ("mail.log", _message("mx1", "10:00:00", "AAAAAA1", "m1@x",
                                                [("b@y", None), ("c@y", None)])))
    # model version 1 kept threads as Parquet parts with tombstones, as a view over them
    old = wh.parquet_dir / f"threads-{'0' * 32}.parquet"
    wh.con.execute(f"COPY (SELECT *, 1 AS build FROM threads) TO '{old}' (FORMAT parquet)")
    wh.con.execute("INSERT INTO meta VALUES ('parquet_view:threads', ?)", [old.name])
    wh.con.execute(f"CREATE OR REPLACE VIEW threads AS SELECT * FROM '{old}'")
    wh.con.execute("CREATE TABLE model_dead_threads (thread_id VARCHAR, build INTEGER)")
    wh.con.execute("UPDATE meta SET value = '1' WHERE key = 'model_version'")
    wh.close()
    with Warehouse(tmp_path / "w.duckdb") as w:
        assert build_model(w).full
        assert not old.exists()
        assert not w.scalar("SELECT count(*) FROM duckdb_tables() "
                            "WHERE table_name = 'model_dead_threads'")
        assert w.query("SELECT messages, deliveries, root_message_id FROM threads").rows() == [
            (1, 2, "m1@x")]


def test_ties_are_broken_the_same_way_on_every_run(tmp_path: Path) -> None:
    # two lists reach one recipient each; two hosts log the message in the same second
    # with different envelope senders (mx1 hands it to a forwarder on mx2, which rewrites
    # the sender): a re-run must name the same
    mx1 = _message("mx1", "10:00:00", "AAAAAA1", "m1@x", [("r1@y", "b-list@y"),
                                                         ("r2@y", "a-list@y")])
    mx1[-1:-1] = [_handover("mx1", "10:00:00", "AAAAAA1", "fwd@y", "BBBBBB2")]
    mx2 = [line.replace("from=<a@x.example>", "from=<srs0=a@x.example>")
           for line in _message("mx2", "10:00:00", "BBBBBB2", "m1@x", [("r3@y", None)])]
    wh = _model(tmp_path, ("mx1.log", mx1), ("mx2.log", mx2))
    rows = wh.query("SELECT list, sender, hops FROM logical_messages").rows()
    assert rows == [("a-list@y", "a@x.example", 2)]
    wh.close()


# --- message identity: a Message-ID reused by strangers -------------------------------------


def _from(lines: list[str], sender: str, size: int) -> list[str]:
    """The same lines with another envelope sender and size on the qmgr line."""
    return [line.replace("from=<a@x.example>, size=10,", f"from=<{sender}>, size={size},")
            for line in lines]


def test_strangers_reusing_one_message_id_are_different_messages(tmp_path: Path) -> None:
    # a monitoring script and an appliance both send with a fixed Message-ID
    lines = (_from(_message("mx1", "09:00:00", "AAAAA11111", "fixed@x", [("u1@x", None)]),
                   "nagios@x.example", 812)
             + _from(_message("mx1", "09:05:00", "BBBBB22222", "fixed@x", [("u2@x", None)]),
                     "printer@x.example", 40211)
             + _from(_message("mx1", "09:10:00", "CCCCC33333", "fixed@x", [("u3@x", None)]),
                     "nagios@x.example", 812))
    with _model(tmp_path, ("mail.log", lines)) as wh:
        rows = wh.query("SELECT message_id, sender, hops, max_passes, deliveries "
                        "FROM logical_messages ORDER BY first_seen").rows()
        assert rows == [("fixed@x", "nagios@x.example", 2, 2, 2),
                        ("fixed@x", "printer@x.example", 1, 1, 1)]
        assert wh.scalar("SELECT count(DISTINCT message_uid) FROM messages") == 2
        # the first to use the id keeps it as its key
        assert wh.scalar("SELECT message_uid FROM logical_messages "
                         "WHERE sender = 'nagios@x.example'") == "fixed@x"


def test_a_relay_chain_is_one_message_whatever_its_hops_rewrite(tmp_path: Path) -> None:
    # mx adds headers (a larger size) and a forwarder rewrites the sender (SRS): linked by
    # 'queued as', one message
    mx = _from(_message("mx", "09:00:00", "AAAAA11111", "m@x", [("u1@x", None)]),
               "a@x.example", 1000)
    mx[-1:-1] = [_handover("mx", "09:00:00", "AAAAA11111", "u2@x", "BBBBB22222")]
    store = _from(_message("store", "09:00:01", "BBBBB22222", "m@x", [("u2@x", None)]),
                  "srs0=a@x.example", 1450)
    with _model(tmp_path, ("mx.log", mx), ("store.log", store)) as wh:
        assert wh.query("SELECT sender, hops, max_passes, deliveries, hosts "
                        "FROM logical_messages").rows() == [
            ("a@x.example", 2, 1, 2, "mx,store")]


def test_a_message_passing_one_host_again_and_again_is_a_loop(tmp_path: Path) -> None:
    lines = [line for i in range(5)
             for line in _message("mx1", f"09:0{i}:00", f"AAAAA1111{i}", "loop@x",
                                  [("u1@x", None)])]
    with _model(tmp_path, ("mail.log", lines)) as wh:
        assert wh.query("SELECT hops, max_passes FROM logical_messages").rows() == [(5, 5)]


def test_a_loop_through_another_server_is_one_message_growing_at_each_pass(
        tmp_path: Path) -> None:
    # the message comes back from a server whose log is not read (no 'queued as' links
    # the passes), a Received header larger at each pass; sender and logged subject agree
    def one_pass(i: int) -> list[str]:
        lines = _from(_message("mx1", f"09:0{i}:00", f"AAAAA1111{i}", "loop@x",
                               [("u1@x", None)]), "alert@x.example", 2000 + 640 * i)
        subject = (f"Nov 14 09:0{i}:00 mx1 postfix/cleanup[2]: AAAAA1111{i}: info: header"
                   " Subject: PROBLEM: disk full from a.example[192.0.2.1]; from=<alert@x.example>"
                   " to=<u1@x> proto=ESMTP helo=<a.example>")
        return [lines[0], subject, *lines[1:]]

    lines = [line for i in range(6) for line in one_pass(i)]
    with _model(tmp_path, ("mail.log", lines)) as wh:
        assert wh.query("SELECT hops, max_passes FROM logical_messages").rows() == [(6, 6)]
    # the same, but each pass a different alert (a script's fixed Message-ID): six messages
    other = [line.replace("PROBLEM: disk full", f"PROBLEM: disk {i} full")
             for i in range(6) for line in one_pass(i)]
    (tmp_path / "x").mkdir()
    with _model(tmp_path / "x", ("mail.log", other)) as wh:
        assert wh.scalar("SELECT count(*) FROM logical_messages") == 6


def _exim(t: str, qid: str, sender: str, rcpt: str) -> list[str]:
    """A native Exim mainlog message: no host name on the lines, no Message-ID logged."""
    return [f"2016-11-14 {t} {qid} <= {sender} H=c.example [192.0.2.1] P=esmtp S=1000",
            f"2016-11-14 {t} {qid} => {rcpt} R=localuser T=local_delivery",
            f"2016-11-14 {t} {qid} Completed"]


def test_messages_without_host_or_message_id_stay_their_own(tmp_path: Path) -> None:
    # two servers' native mainlogs in one run, and Exim's own bounce ('<= <>'), none
    # naming a host or a Message-ID: three messages, not one row gathering them. Each
    # file's lines get its rotation group as their host.
    one = _exim("09:00:00", "1cB7aA-0001aB-Xy", "a@x.example", "u1@x")
    two = (_exim("09:00:05", "1cB7aB-0002cD-Zz", "b@y.example", "u2@y")
           + [line.replace("<= b@y.example", "<= <> R=1cB7aB-0002cD-Zz U=Debian-exim")
              for line in _exim("09:00:06", "1cB7aC-0003eF-Qq", "b@y.example", "b@y")])
    with _model(tmp_path, ("mainlog", one), ("mainlog2", two)) as wh:
        assert wh.query("SELECT host, message_id FROM messages").unique().sort("host").rows() \
            == [(str(tmp_path / "mainlog"), None), (str(tmp_path / "mainlog2"), None)]
        rows = wh.query("SELECT sender, hops, deliveries FROM logical_messages "
                        "ORDER BY first_seen").rows()
        assert rows == [("a@x.example", 1, 1), ("b@y.example", 1, 1), ("", 1, 1)]
        assert wh.scalar("SELECT count(*) FROM logical_messages WHERE message_uid IS NULL") == 0


def test_an_empty_message_id_is_no_message_id(tmp_path: Path) -> None:
    # Postfix logs message-id=<> for a message without one: two such are two messages
    lines = (_message("mx1", "09:00:00", "AAAAA11111", "", [("u1@x", None)])
             + _message("mx1", "09:05:00", "BBBBB22222", "", [("u2@x", None)]))
    with _model(tmp_path, ("mail.log", lines)) as wh:
        assert wh.query("SELECT message_id, hops, max_passes FROM logical_messages").rows() == [
            ("", 1, 1), ("", 1, 1)]


def test_copies_through_nested_lists_on_one_host_are_each_a_delivery(tmp_path: Path) -> None:
    # Bedlam DL3: all@x holds the groups d1@x and d2@x, and u1@x is in both; the host
    # delivers u1@x twice (a second later). The same copy logged on two hosts counts once
    # (test above).
    def expand(group: str, members: list[str]) -> list[dict]:
        return [{"ts": "2016-11-14T09:00:00", "host": "hub", "kind": "expansion",
                 "queue_id": "H1", "orig_to": group, "recipient": m} for m in members]

    rows = [_received("hub", "H1", "m@x"), *expand("all@x", ["d1@x", "d2@x"]),
            *expand("d1@x", ["u1@x", "u2@x"]), *expand("d2@x", ["u1@x", "u3@x"]),
            *(_delivery("hub", "H1", u) for u in ("u1@x", "u2@x", "u3@x")),
            _delivery("hub", "H1", "u1@x", ts="2016-11-14T09:00:02")]
    with _events_model(tmp_path, rows) as wh:
        assert wh.query("SELECT recipients, deliveries, list FROM logical_messages").rows() == [
            (3, 4, "all@x")]


def test_postfix_delivering_one_member_twice_is_two_deliveries(tmp_path: Path) -> None:
    # one host, one queue file, u1@x reached twice through all@x (orig_to names the outer
    # list), once more through two lists at once (the route-by-route path)
    def again(lines: list[str], n: int) -> list[str]:  # the n-th line, delivered again
        return [*lines[:-1], lines[n].replace("delay=1,", "delay=2,"), lines[-1]]

    one = again(_message("mx1", "09:00:00", "AAAAA11111", "m1@x",
                         [("u1@x", "all@x"), ("u2@x", "all@x")]), 2)
    two = again(_message("mx1", "09:01:00", "BBBBB22222", "m2@x",
                         [("u1@x", "a@x"), ("u1@x", "b@x")]), 2)
    with _model(tmp_path, ("mail.log", one + two)) as wh:
        assert wh.query("SELECT message_id, recipients, deliveries FROM logical_messages "
                        "ORDER BY message_id").rows() == [("m1@x", 2, 3), ("m2@x", 1, 3)]


def test_the_same_delivery_line_twice_in_one_file_is_one_copy(tmp_path: Path) -> None:
    # a syslog stream written twice into one file
    lines = _message("mx1", "09:00:00", "AAAAA11111", "m1@x", [("u1@x", "all@x")])
    lines = [*lines[:-1], lines[2], lines[-1]]
    with _model(tmp_path, ("mail.log", lines)) as wh:
        assert wh.query("SELECT recipients, deliveries FROM logical_messages").rows() == [
            (1, 1)]


def test_each_sub_lists_copy_on_one_host_is_a_delivery(tmp_path: Path) -> None:
    # Bedlam DL3 through a list server: each sub-list sends its own copy of the post
    # (same Message-ID, an envelope of its own from <sub>-bounces@), and u1@x is on both
    ward1 = _from(_message("mx1", "09:05:30", "AAAAA11111", "post@x",
                           [("u1@x", None), ("u2@x", None)]), "ward1-bounces@lists.x", 900)
    ward2 = _from(_message("mx1", "09:05:34", "BBBBB22222", "post@x",
                           [("u1@x", None), ("u3@x", None)]), "ward2-bounces@lists.x", 900)
    with _model(tmp_path, ("mail.log", ward1 + ward2)) as wh:
        assert wh.query("SELECT recipients, deliveries FROM logical_messages").rows() == [
            (3, 4)]


def test_statements_over_kinds_no_part_holds_are_skipped_and_change_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """model.sql's "-- needs kinds:" statements (Exchange's expansions, Mailman's posts)
    make empty tables without reading the events when no part holds those kinds: the
    tables are those of the statements run in full."""
    log = tmp_path / "logs" / "mail.log"
    log.parent.mkdir()
    sample = Path(__file__).parents[1] / "sample_logs" / "mail.log"
    log.write_text("".join(sample.read_text().splitlines(keepends=True)[:6000]))
    ran: list[str] = []
    write = Warehouse.write_model_part

    def recorded(self: Warehouse, name: str, select: str, build: int
                 ) -> list[tuple[Path, int]]:
        ran.append(name + (" skipped" if "none_of_its_kinds" in select else ""))
        return write(self, name, select, build)

    monkeypatch.setattr(Warehouse, "write_model_part", recorded)
    rows = {}
    for mode in ("skipping", "full"):
        if mode == "full":  # as for parts written before their kinds were recorded
            monkeypatch.setattr(Warehouse, "event_kinds", lambda self: None)
        ran.clear()
        with Warehouse(tmp_path / f"{mode}.duckdb") as wh:
            ingest(wh, discover([str(log)]), tz="UTC", year=2016)
            if mode == "skipping":
                kinds = wh.event_kinds()
                assert kinds is not None and "delivery" in kinds and "expansion" not in kinds
            build_model(wh)
            rows[mode] = {t: sorted(map(str, wh.query(f"SELECT * FROM {t}")
                                        .rows()))
                          for t in ("messages", "deliveries", "logical_messages", "threads",
                                    "expansions", "list_posts")}
        assert ("expansions skipped" in ran) == (mode == "skipping"), ran
        assert "deliveries" in ran
    assert rows["skipping"] == rows["full"]
    assert rows["full"]["deliveries"] and rows["full"]["logical_messages"]


def test_each_model_part_records_its_newest_row_time(tmp_path: Path) -> None:
    """Retention drops whole model parts by the newest time recorded as each is written
    (from the write's own statistics, or read back for an expression's time): the
    newest time its rows hold, null for a part without rows."""
    from detector.warehouse import MODEL_PARTS

    lines = (_message("mx1", "09:00:00", "ABCDEF1234", "one@x", [("u1@x", "all@x")])
             + _message("mx1", "10:30:00", "BCDEF12345", "two@x", [("u2@x", None)]))
    with _model(tmp_path, ("mail.log", lines)) as wh:
        recorded = dict(wh.con.execute("SELECT part, last_ts FROM model_part_times").fetchall())
        assert recorded
        for name, part in MODEL_PARTS.items():
            for path in wh.model_files(name):
                newest = wh.scalar(f"SELECT max({part.time}) FROM read_parquet('{path}')")
                assert recorded[path.name] == newest, (name, path.name)
        assert any(v is None for v in recorded.values())  # expansions: no rows


@pytest.fixture(scope="module")
def daily_wh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    """One warehouse for every example (a new one is ~40 ms of DuckDB before a query)."""
    with Warehouse(tmp_path_factory.mktemp("daily") / "w.duckdb") as wh:
        yield wh


@settings(max_examples=30, deadline=None)
@given(st.lists(st.one_of(st.none(), st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999),
    timezones=st.just(UTC))), min_size=0, max_size=12), st.integers(1, 3))
def test_a_daily_part_has_a_file_per_big_utc_day_and_loses_no_row(
        daily_wh: Warehouse, times: list[datetime | None], at_least: int) -> None:
    """deliveries is written a file per UTC day with at least DAILY_MIN_EVENTS events
    (their days found by integer arithmetic, before 1970 and at 9999-12-31 too) and one
    for the rest: every row is in exactly one file, a big day's file holds that day's
    rows, the other file none of a big day, and a part without rows is one empty file."""
    days = Counter(t.date() for t in times if t is not None)
    big = {day for day, n in days.items() if n >= at_least}
    wh = daily_wh
    with mock.patch("detector.warehouse.DAILY_MIN_EVENTS", at_least):
        wh.con.execute("CREATE OR REPLACE TEMP TABLE events (ts TIMESTAMPTZ, n INTEGER)")
        if times:
            wh.con.executemany("INSERT INTO temp.events VALUES (?, ?)",
                               [[t, i] for i, t in enumerate(times)])
        files = wh.write_model_part("deliveries", "SELECT ts, n FROM temp.events", 1)
        assert files and all(path.is_file() for path, _ in files)
        seen: list[int] = []
        held = []
        for path, rows in files:
            read = duckdb.sql(f"SELECT n, CAST(timezone('UTC', ts) AS DATE) AS day "
                              f"FROM read_parquet('{path}')").fetchall()
            assert len(read) == rows
            seen += [n for n, _ in read]
            held.append({day for _, day in read})
        assert sorted(seen) == list(range(len(times)))
        for day in big:  # alone in one file
            assert [h for h in held if day in h] == [{day}]
        rest = len(times) > sum(days[day] for day in big)
        assert len(files) == len(big) + rest or (len(files) == 1 and not times)
