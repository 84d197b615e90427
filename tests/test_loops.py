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
