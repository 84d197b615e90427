"""Roots and ids against line order, for any checkout (the before/after of issue 10).

    .venv/bin/python bench/line_order.py .                 # this checkout
    .venv/bin/python bench/line_order.py /tmp/old-checkout # mailstorm as it was

Forty small storms (12 replies to a 30-member list) whose root shares its second with 1-4
unrelated posts to the same list, logged with and without In-Reply-To, each read twice:
in time order, and with its lines shuffled and read in small batches. Counts the storms
whose incidents (id, root) agree between the two readings, and the incidents whose root
is not the storm's root message. The log writer is this checkout's tests/logsynth.py.
"""

from __future__ import annotations

import random
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(sys.argv[1]).resolve()))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from detector.assets import builtin_rules_dir  # noqa: E402 - from the checkout named
from detector.incidents import detect  # noqa: E402
from detector.ingest import ingest  # noqa: E402
from detector.model.build import build_model  # noqa: E402
from detector.rules.loader import load_rules  # noqa: E402
from detector.rules.overrides import apply_overrides  # noqa: E402
from detector.sources import discover  # noqa: E402
from detector.warehouse import Warehouse  # noqa: E402
from tests.logsynth import Mail, Site, storm, write_log  # noqa: E402

LIST = "all.staff@site.example"
ROOT = datetime(2016, 11, 14, 9, 58)
RULES = [r for r in apply_overrides(load_rules(builtin_rules_dir()),
                                    {"reply_storm.min_audience": "20"})
         if r.name == "reply_storm"]


def field(incident: Any, name: str) -> Any:
    """Incidents were dicts before issue 10 and are Incident objects since."""
    return incident[name] if isinstance(incident, dict) else getattr(incident, name)


def found(log: Path, batch_bytes: int) -> list[tuple[str, str]]:
    with Warehouse(log.with_suffix(".duckdb")) as wh:
        ingest(wh, discover([str(log)]), tz="UTC", year=2016, batch_bytes=batch_bytes)
        build_model(wh)
        return [(field(i, "id"), field(i, "root_message_id")) for i in detect(wh, RULES)]


def main() -> None:
    agree = wrong = 0
    for seed in range(20):
        for threading in (True, False):
            tmp = Path(tempfile.mkdtemp())
            site = Site(lists={LIST: [f"m{i}@site.example" for i in range(30)]})
            mails = storm(site, list_addr=LIST, start=ROOT, repliers=12)
            mails += [Mail(ROOT, f"a{k}@site.example", [LIST], f"lunch {k}",
                           f"0-unrelated-{k}@site.example") for k in range(1 + seed % 4)]
            if not threading:
                for mail in mails:
                    mail.in_reply_to = None
            write_log(tmp / "a.log", site, mails)
            lines = (tmp / "a.log").read_text().splitlines(keepends=True)
            random.Random(seed).shuffle(lines)
            (tmp / "b.log").write_text("".join(lines))
            readings = [found(tmp / "a.log", 1 << 24),
                        found(tmp / "b.log", 512 if seed % 2 else 4096)]
            agree += readings[0] == readings[1]
            wrong += sum(1 for r in readings for _, root in r if root != "root-1@site.example")
    print(f"storms read alike in both orders: {agree}/40; "
          f"incidents with a wrong root: {wrong}/80")


if __name__ == "__main__":
    main()
