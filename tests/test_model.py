"""The model tables built from small hand-written logs: one thing per test."""

from __future__ import annotations

from pathlib import Path

from detector.ingest import ingest
from detector.model.build import build_model
from detector.sources import discover
from detector.warehouse import Warehouse


def _model(tmp_path: Path, *logs: tuple[str, list[str]]) -> Warehouse:
    paths = []
    for name, lines in logs:
        (tmp_path / name).write_text("".join(line + "\n" for line in lines))
        paths.append(str(tmp_path / name))
    wh = Warehouse(tmp_path / "w.duckdb")
    ingest(wh, discover(paths), tz="UTC", year=2016)
    build_model(wh.con)
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
