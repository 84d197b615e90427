"""Mail loops seen through the model: a message passing one host again and again, and
deliveries bounced as a forwarding loop (5.4.6)."""

from __future__ import annotations

from pathlib import Path

from detector.assets import builtin_rules_dir
from detector.incidents import detect
from detector.rules.loader import load_rules
from tests.test_model import _delivery, _events_model, _received


def _rules(*names: str) -> list:
    return [r for r in load_rules(builtin_rules_dir()) if r.name in names]


def test_a_message_passing_one_host_again_and_again_is_a_loop(tmp_path: Path) -> None:
    rows = []
    for i in range(6):  # forwarded out and back six times: six queue ids, one Message-ID
        ts = f"2016-11-14T09:{i:02d}:00"
        rows += [_received("mx1", f"Q{i}", "loop@x", ts=ts),
                 _delivery("mx1", f"Q{i}", "fwd@elsewhere.example", ts=ts)]
    rows += [_received("mx1", "OK1", "fine@x"), _delivery("mx1", "OK1", "u@x")]
    with _events_model(tmp_path, rows) as wh:
        [incident] = detect(wh, _rules("mail_loop_hops", "mail_loop_bounces"))
        assert incident.kind == "mail_loop"
        assert incident.root_message_id == "loop@x"
        assert incident.measures["passes"] == 6
        assert incident.cause == "a message forwarded round in a loop"


def test_a_forwarding_loop_bounce_is_a_loop(tmp_path: Path) -> None:
    bounced = {**_delivery("mx1", "Q1", "a@x", status="bounced"), "dsn": "5.4.6"}
    rows = [_received("mx1", "Q1", "m@x"), bounced,
            _received("mx1", "Q2", "n@x"),
            {**_delivery("mx1", "Q2", "b@x", status="bounced"), "dsn": "5.1.1"}]
    with _events_model(tmp_path, rows) as wh:
        [incident] = detect(wh, _rules("mail_loop_hops", "mail_loop_bounces"))
        assert (incident.rule, incident.root_message_id) == ("mail_loop_bounces", "m@x")


def _alert(n: int, minute: int, sender: str = "monitor@x", to: str = "oncall@x",
           hour: int = 9) -> list[dict]:
    """One alert from a monitoring system, bounced as a forwarding loop (5.4.6), as
    Postfix logs it: "mail forwarding loop for oncall@x" (status=bounced, dsn=5.4.6)."""
    ts = f"2016-11-14T{hour:02d}:{minute:02d}:00"
    received = {**_received("mx1", f"A{sender[0]}{hour}{n}", f"alert-{sender[0]}-{hour}-{n}@x",
                            ts=ts), "sender": sender}
    bounced = {**_delivery("mx1", received["queue_id"], to, status="bounced", ts=ts),
               "dsn": "5.4.6"}
    return [received, bounced]


def test_an_alert_looping_every_few_minutes_is_one_incident(tmp_path: Path) -> None:
    rows = [r for n in range(20) for r in _alert(n, 3 * n)]  # 09:00 .. 09:57
    rows += [r for n in range(2) for r in _alert(n, 10 * n, sender="backup@x", to="ops@x")]
    rows += [r for n in range(3) for r in _alert(n, 5 * n, hour=13)]  # a new episode
    with _events_model(tmp_path, rows) as wh:
        found = detect(wh, _rules("mail_loop_bounces"))
        episodes = sorted((i.root_message_id, i.occurrences, i.messages) for i in found)
        assert episodes == [("alert-b-9-0@x", 2, 2), ("alert-m-13-0@x", 3, 3),
                            ("alert-m-9-0@x", 20, 20)]
        morning = next(i for i in found if i.root_message_id == "alert-m-9-0@x")
        assert "came back 20 times" in morning.headline
        members = wh.con.execute("SELECT count(*) FROM incident_messages WHERE incident_id = ?",
                                 [morning.id]).fetchone()
        assert members == (20,)
        # the same episode read with only its first alerts keeps its id as it grows
    first_rows = [r for n in range(5) for r in _alert(n, 3 * n)]
    (tmp_path / "early").mkdir()
    with _events_model(tmp_path / "early", first_rows) as wh:
        [early] = detect(wh, _rules("mail_loop_bounces"))
    assert early.id == morning.id and early.occurrences == 5
