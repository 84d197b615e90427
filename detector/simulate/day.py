"""A simulated day with injected incidents, written in any supported log format.

What ``mailstorm simulate`` and the detection-quality matrix run::

    site, messages, truth = build_day(["reply_storm", "mail_loop"], seed=7)
    write_day(Path("logs"), "postfix", site, messages, truth, seed=7)

Every incident builder lives in ``traffic``; this module only picks them, spaces them
through the day and hands the messages to a format's renderer. The truth file lists what
was injected (kind, list, root Message-ID, start, deliveries), so a run can be scored.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from detector.simulate import stories, thresholds, traffic
from detector.simulate.output import set_mtime
from detector.simulate.postfix import write_postfix
from detector.simulate.scenario import Message, Site, make_site
from detector.simulate.stamps import utc
from detector.simulate.stream import Messages, join, span

Truth = dict[str, object]

#: incident kinds that can be injected, in the order the day places them
INCIDENTS = ("reply_storm", "auto_storm", "bounce_storm", "fanout", "mail_loop")
#: days in the shapes real servers write (see ``stories``: nested lists' copies, list
#: bounces, a repeating loop, bounces of mail queued before the log began); each expects
#: the incident kind ``stories.EXPECTED`` names
SHAPES = tuple(stories.EXPECTED)
#: storms exactly at a rule's thresholds (see ``thresholds``): the incident must be found
AT_THRESHOLD = thresholds.AT_THRESHOLD
#: storm look-alikes that must not be reported above info, then storms just short of a
#: rule's threshold, then the ``stories`` days where nothing is the right answer
BENIGN = ("newsletter", "busy_thread", "heavy_day", *thresholds.SHORT_OF_THRESHOLD,
          *stories.NOTHING)
#: every scenario a day can hold
SCENARIOS = INCIDENTS + SHAPES + AT_THRESHOLD + BENIGN


@dataclass(frozen=True)
class Options:
    """How big the injected incidents are."""

    list_size: int = 3000
    repliers: int = 30
    replies: int | None = None  # reply messages in a reply storm (None: repliers + 10%)
    duration: timedelta = timedelta(minutes=45)
    background: int = 1500  # ordinary messages in the day
    domain: str = "nhs.example"


def _inject(kind: str, site: Site, rng: random.Random, start: datetime,
            o: Options) -> tuple[Messages, list[Truth]]:
    if kind == "reply_storm":
        return traffic.storm(site, rng, start, list_address=f"all.staff@{o.domain}",
                             list_size=o.list_size, repliers=o.repliers, replies=o.replies,
                             duration=o.duration)
    if kind == "auto_storm":
        return traffic.auto_storm(site, rng, start, list_size=o.list_size,
                                  senders=o.repliers, duration=o.duration)
    if kind == "bounce_storm":
        return traffic.bounce_storm(site, rng, start, list_size=o.list_size)
    if kind == "fanout":
        size = max(50, o.list_size // 6)
        return traffic.nested_fanout(site, rng, start, sublist_size=size)
    if kind == "mail_loop":
        return traffic.mail_loop(site, rng, start, duration=o.duration)
    if kind == "newsletter":
        return traffic.newsletter(site, rng, start, list_size=o.list_size)
    if kind == "busy_thread":
        return traffic.busy_small_thread(site, rng, start, duration=o.duration)
    if kind == "heavy_day":  # three times the ordinary traffic
        return traffic.background(site, rng, start, o.background * 2)
    if kind in thresholds.DAYS:
        return thresholds.build(kind, site, rng, start, o.domain)
    if kind in stories.DAYS:
        return stories.build(kind, site, rng, start)
    raise ValueError(f"unknown scenario {kind!r} (choose from {', '.join(SCENARIOS)})")


def build_day(kinds: list[str], *, seed: int = 1, day: datetime | None = None,
              options: Options | None = None) -> tuple[Site, Messages, list[Truth]]:
    """Background traffic for one day plus the given incidents (or look-alikes), each
    starting at its own hour from 09:05, so they do not overlap.

    The messages are a list, or a ``Mail`` (iterated in time order, never held whole)
    when a storm is too large to hold (``replies.EAGER_LIMIT``)."""
    o = options or Options()
    day = day or utc(2016, 11, 14)
    rng = random.Random(seed)
    site = make_site(rng, o.domain, lists={"all.staff": o.list_size})
    background, _ = traffic.background(site, rng, day, o.background)
    parts: list[Messages] = [background]
    truth: list[Truth] = []
    for i, kind in enumerate(kinds):
        start = day + timedelta(hours=9 + 2 * i, minutes=5)
        msgs, found = _inject(kind, site, rng, start, o)
        parts.append(msgs)
        truth += found
    return site, join(parts), truth


Writer = Callable[..., int]


def writers() -> dict[str, Writer]:
    """Format name -> ``write_<format>(path, site, messages, *, seed, headers)``."""
    from detector.simulate.exchange import write_exchange, write_m365
    from detector.simulate.exim import write_exim
    from detector.simulate.maillog import write_maillog
    from detector.simulate.mailman import write_mailman
    from detector.simulate.sendmail import write_sendmail

    def sendmail(path: Path, site: Site, messages: Iterable[Message], *, seed: int,
                 headers: bool) -> int:
        return write_sendmail(path, site, messages, seed=seed, log_headers=headers)

    def mailman(path: Path, site: Site, messages: Iterable[Message], *, seed: int,
                headers: bool) -> int:
        """A list server: Sendmail hands list posts to Mailman, whose copies go to each
        member directly (the MTA log alone does not show the list); Mailman's own post
        and smtp logs sit beside it."""
        lines = write_sendmail(path, site, messages, seed=seed, lists="mailman",
                               log_headers=headers)
        return lines + sum(write_mailman(path.parent, site, messages, seed=seed).values())

    def maillog(path: Path, site: Site, messages: Iterable[Message], *, seed: int,
                headers: bool) -> int:
        """One syslog file, two MTAs: Sendmail takes the host's local submissions
        (webmail's PHP mail(), cron) and hands them to the local Postfix."""
        return write_maillog(path, site, messages, seed=seed, headers=headers)

    return {"postfix": write_postfix, "exim": write_exim, "exchange": write_exchange,
            "m365": write_m365, "sendmail": sendmail, "mailman": mailman, "maillog": maillog}


LOG_NAMES = {"postfix": "mail.log", "exim": "mainlog", "exchange": "MSGTRK2016111400-1.LOG",
             "m365": "MessageTrace.csv", "sendmail": "maillog", "mailman": "maillog",
             "maillog": "maillog"}


def write_day(out: Path, fmt: str, site: Site, messages: Messages, truth: list[Truth],
              *, seed: int = 1, subjects: bool = True) -> Path:
    """Render the day as ``fmt`` into ``out/logs/`` and the truth into ``out/truth.json``
    (kept apart, so ``mailstorm run out/logs`` reads only logs); return the log path.

    ``subjects=False`` writes a site that logs no Subject (nor threading headers).
    """
    table = writers()
    if fmt not in table:
        raise ValueError(f"cannot simulate format {fmt!r} (choose from {', '.join(table)})")
    (out / "logs").mkdir(parents=True, exist_ok=True)
    path = out / "logs" / LOG_NAMES.get(fmt, f"{fmt}.log")
    table[fmt](path, site, messages, seed=seed, headers=subjects)
    (out / "truth.json").write_text(json.dumps({"format": fmt, "subjects": subjects,
                                                "incidents": stories.for_format(truth, fmt)},
                                               indent=2) + "\n",
                                    encoding="utf-8")
    times = span(messages)
    last = times[1] if times else utc(2016, 11, 14)
    set_mtime(path, (last + timedelta(hours=6)).timestamp())  # the year is inferred from it
    return path
