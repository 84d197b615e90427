"""Generate a realistic day of Postfix mail.log of about N lines, plus its truth.

    python bench/generate.py --lines 1000000 --kind storm --seed 1 --out bench/data/storm-1M.log
    python bench/generate.py --lines 10000000 --kind quiet --out bench/data/quiet-10M.log --gzip

A "storm" day is background traffic plus an NHS-style reply-all storm at 09:58 whose list
and reply count grow with the size (10M lines: ~48,000 members, 150 repliers; the storm is
about four fifths of the lines). A "quiet" day has background, a newsletter to a large
list and a busy thread on a small team list, and no incident. Writes ``<out>`` (gzip with
--gzip or a .gz name) and ``<out>.truth.json``; lines written and lines/s go to stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import random
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from detector.simulate import traffic  # noqa: E402
from detector.simulate.output import write_lines  # noqa: E402
from detector.simulate.postfix import PostfixRenderer  # noqa: E402
from detector.simulate.scenario import Message, Site, make_site  # noqa: E402
from detector.simulate.stamps import utc  # noqa: E402

DAY = utc(2016, 11, 14)
LINES_PER_MESSAGE = 10.3  # measured mean of background traffic, rejects included
THREAD_LINES = 23 * 36  # busy_small_thread: ~23 messages to 25 members (+ overhead)


def storm_shape(lines: int) -> tuple[int, int]:
    """(list size, repliers) so the storm is ~80% of ``lines`` (10M -> ~48k, 150)."""
    repliers = max(10, round(150 * math.sqrt(lines / 10_000_000)))
    messages = 1 + repliers + max(1, int(repliers * 0.1))
    return max(300, int(0.8 * lines / messages)), repliers


def build(lines: int, kind: str, seed: int, day: datetime = DAY
          ) -> tuple[Site, list[Message], list[dict]]:
    """Site, messages and truth for a day of about ``lines`` log lines. Another ``day``
    keeps the site (its people and lists come from ``seed``) and draws that day's traffic
    afresh, so that days in a row are one site's nights."""
    rng = random.Random(seed)
    news = max(200, min(int(lines * (0.01 if kind == "storm" else 0.02)), 50_000))
    lists = {"news.letter": news, "team.radiology": 25}
    budget = lines - news - THREAD_LINES
    if kind == "storm":
        staff, repliers = storm_shape(lines)
        lists["all.staff"] = staff
        budget -= int(staff * (1 + repliers + max(1, int(repliers * 0.1))) * 1.004)
    site = make_site(rng, lists=lists)
    if day != DAY:
        rng = random.Random(f"{seed} {day:%Y-%m-%d}")
    messages, _ = traffic.background(site, rng, day, max(50, int(budget / LINES_PER_MESSAGE)),
                                     newsletter_list=f"news.letter@{site.domain}",
                                     newsletter_size=news)
    messages += traffic.busy_small_thread(site, rng, day + timedelta(hours=14))[0]
    truth: list[dict] = []
    if kind == "storm":
        storm, truth = traffic.storm(site, rng, day + timedelta(hours=9, minutes=58),
                                     list_size=staff, repliers=repliers)
        messages += storm
    return site, messages, truth


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000, help="about this many lines")
    ap.add_argument("--kind", choices=("storm", "quiet"), default="storm")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True, help="log path (.gz: compressed)")
    ap.add_argument("--gzip", action="store_true", help="gzip the log (adds .gz if missing)")
    ap.add_argument("--compresslevel", type=int, default=6)
    ap.add_argument("--timestamps", choices=("rfc3164", "rfc3339"), default="rfc3164")
    ap.add_argument("--tz", default=None, help="zoneinfo name for local time (default UTC)")
    ap.add_argument("--long-queue-ids", action="store_true")
    ap.add_argument("--inodes", type=int, default=0xEFFFF,
                    help="short queue ids' inode numbers drawn from this many (a busy "
                         "queue reuses a few thousand: ids come back days later)")
    ap.add_argument("--date", type=date.fromisoformat, default=DAY.date(),
                    help="the day (UTC) to simulate; the site stays that of --seed")
    args = ap.parse_args(argv)
    out: Path = args.out
    if args.gzip and out.suffix != ".gz":
        out = out.with_name(out.name + ".gz")

    # a million long-lived Message objects and no reference cycles: the cyclic collector
    # would only rescan them over and over
    gc.disable()
    t0 = time.perf_counter()
    site, messages, truth = build(args.lines, args.kind, args.seed,
                                   utc(args.date.year, args.date.month, args.date.day))
    t1 = time.perf_counter()
    # another day's queue ids and process ids are its own, as a real server's would be
    render_seed = args.seed if args.date == DAY.date() else args.seed * 100_000 + \
        args.date.toordinal()
    renderer = PostfixRenderer(site, seed=render_seed, timestamps=args.timestamps, tz=args.tz,
                               long_queue_ids=args.long_queue_ids, inodes=args.inodes)
    n = write_lines(out, renderer.chunks(messages), args.compresslevel)
    t2 = time.perf_counter()
    Path(f"{out}.truth.json").write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    print(f"{out}: {n:,} lines ({len(messages):,} messages) | scenario {t1 - t0:.1f} s, "
          f"render+write {t2 - t1:.1f} s = {n / (t2 - t1):,.0f} lines/s "
          f"({n / (t2 - t0):,.0f} lines/s overall)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
