"""Regenerate ``sample_logs/``: two rotated days of mx1's mail.log with a reply-all storm.

    .venv/bin/python bench/sample_logs.py [OUT_DIR]     # or: python -m bench.sample_logs

Deterministic: the same code writes byte-identical files (fixed seed, gzip without name
or timestamp). Both days are rendered by one renderer, so pids and queue ids continue
across the rotation, and lines are split at midnight like a nightly logrotate would
(late retries of the first day land in the second file, as on a real server).
"""

from __future__ import annotations

import json
import random
import sys
from datetime import datetime, timedelta
from pathlib import Path

from detector.simulate import traffic
from detector.simulate.output import set_mtime, write_lines
from detector.simulate.postfix import PostfixRenderer
from detector.simulate.scenario import Message, Site, make_site
from detector.simulate.stamps import utc

SEED = 20161114
DOMAIN = "nhs.example"
QUIET_DAY = utc(2016, 11, 13)
STORM_DAY = utc(2016, 11, 14)
# all.staff size and reply count are what keeps the plain mail.log near 15 MB
STAFF, REPLIERS = 2_600, 14
QUIET_MESSAGES, STORM_DAY_MESSAGES = 2_200, 1_400
OUT = Path(__file__).resolve().parents[1] / "sample_logs"


def build(seed: int = SEED) -> tuple[Site, list[Message], list[Message], list[dict]]:
    """The site, the two days' messages and the storm's truth."""
    rng = random.Random(seed)
    site = make_site(rng, DOMAIN, lists={"all.staff": STAFF, "news.letter": 2_000,
                                         "team.radiology": 25})
    news = f"news.letter@{DOMAIN}"
    day1, _ = traffic.background(site, rng, QUIET_DAY, QUIET_MESSAGES, newsletter_list=news)
    day1 += traffic.busy_small_thread(site, rng, QUIET_DAY + timedelta(hours=14, minutes=5),
                                      list_address=f"team.radiology@{DOMAIN}",
                                      subject="Reporting rota over Christmas")[0]
    day2, _ = traffic.background(site, rng, STORM_DAY, STORM_DAY_MESSAGES, newsletter_list=news)
    storm, truth = traffic.storm(site, rng, STORM_DAY + timedelta(hours=9, minutes=58),
                                 list_address=f"all.staff@{DOMAIN}", list_size=STAFF,
                                 repliers=REPLIERS, duration=timedelta(minutes=60))
    day2 += storm
    day2 += traffic.busy_small_thread(site, rng, STORM_DAY + timedelta(hours=13, minutes=40),
                                      list_address=f"team.radiology@{DOMAIN}",
                                      subject="MRI list for tomorrow")[0]
    return site, day1, day2, truth


def write(out: Path = OUT, seed: int = SEED) -> dict[str, int]:
    """Write mail.log.1.gz, mail.log and truth.json into ``out``; return lines per file."""
    site, day1, day2, truth = build(seed)
    renderer = PostfixRenderer(site, seed=seed, hosts=("mx1",), tz="Europe/London")
    split = int(STORM_DAY.timestamp()) * 1_000_000
    first: list[list[str]] = []
    second: list[list[str]] = []
    last = {"first": 0, "second": 0}
    for t0, t1, lines in renderer.timed_chunks(day1 + day2):
        key = "first" if t0 < split else "second"
        (first if key == "first" else second).append(lines)
        last[key] = t1
    out.mkdir(parents=True, exist_ok=True)
    counts = {
        "mail.log.1.gz": write_lines(out / "mail.log.1.gz", first, compresslevel=9),
        "mail.log": write_lines(out / "mail.log", second),
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    set_mtime(out / "mail.log.1.gz", last["first"] / 1e6)
    set_mtime(out / "mail.log", last["second"] / 1e6)
    set_mtime(out / "truth.json", last["second"] / 1e6)
    return counts


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else OUT
    started = datetime.now()
    for name, n in write(out).items():
        size = (out / name).stat().st_size
        print(f"{out / name}: {n} lines, {size / 1e6:.1f} MB", file=sys.stderr)
    print(f"done in {(datetime.now() - started).total_seconds():.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
