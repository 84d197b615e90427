"""Threshold days: storms exactly at a rule's thresholds, and look-alikes just short of them.

The numbers are read from the built-in rules as loaded (``rules/*.yaml``), so the days
move with a changed default. For every condition a storm rule measures there is a day
exactly at the threshold, where the incident must be found, and a day one short of it,
where nothing may be reported above info:

- ``reply_storm_at_threshold``: ``min_senders`` people reply to a list of exactly
  ``min_audience`` members (expected: reply_storm);
- ``reply_storm_one_replier_short``: ``min_senders - 1`` people reply, some twice
  (nothing);
- ``reply_storm_list_one_short``: plenty reply, to ``min_audience - 1`` members (nothing);
- ``reply_storm_spread_inside``: ``min_senders`` replies evenly spread, the first and
  the last a minute less than the window apart (reply_storm);
- ``reply_storm_spread_outside``: the same a minute more than the window apart, so that
  no window holds ``min_senders`` of them (nothing);
- ``auto_storm_*``: the same five for automatic answers (``min_senders``,
  ``min_audience`` of auto_storm);
- ``bounce_storm_at_threshold``: a post to a list with exactly ``min_bounces`` dead
  members (bounce_storm); ``bounce_storm_one_short``: ``min_bounces - 1`` (nothing);
- ``bounce_storm_spread_inside``: two posts, each bouncing half of ``min_bounces``, a
  minute less than the window apart (bounce_storm); ``bounce_storm_spread_outside``: a
  minute more (nothing).

In the reply storm days the author is one of the repliers (answering last): a site that
logs no subjects counts every post to the list, the root too, and this way it sees the
same number of senders as one that logs them. Automatic answers cannot be told from
posts without subjects, so the two auto storm days that expect an incident need them
(``SUBJECTS_ONLY``). ``min_auto_messages`` has no day of its own: with one answer per
sender at least, a day short of it is short of ``min_senders`` too.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from detector.simulate import traffic
from detector.simulate.scenario import Site
from detector.simulate.stream import Messages

Truth = dict[str, object]
Built = tuple[Messages, list[Truth]]
#: how far a "just" is: spread days miss or make the window by this much
MARGIN = timedelta(minutes=1)
#: bursty threshold storms arrive over this long (well inside any window)
BURST = timedelta(minutes=30)


@dataclass(frozen=True)
class Limits:
    """The storm rules' thresholds as loaded."""

    reply_senders: int
    reply_audience: int
    reply_window: timedelta
    auto_senders: int
    auto_messages: int
    auto_audience: int
    auto_window: timedelta
    bounces: int
    bounce_window: timedelta


@lru_cache(maxsize=1)
def limits() -> Limits:
    """The thresholds of the built-in reply_storm, auto_storm and bounce_storm rules."""
    from detector.assets import builtin_rules_dir
    from detector.rules.loader import load_rules

    rules = {r.name: r for r in load_rules(builtin_rules_dir())}
    reply, auto, bounce = rules["reply_storm"], rules["auto_storm"], rules["bounce_storm"]

    def window(name: str) -> timedelta:
        return timedelta(seconds=rules[name].window_seconds or 0)

    return Limits(
        reply_senders=math.ceil(reply.value("min_senders")),
        reply_audience=math.ceil(reply.value("min_audience")),
        reply_window=window("reply_storm"),
        auto_senders=math.ceil(auto.value("min_senders")),
        auto_messages=math.ceil(auto.value("min_auto_messages")),
        auto_audience=math.ceil(auto.value("min_audience")),
        auto_window=window("auto_storm"),
        bounces=math.ceil(bounce.value("min_bounces")),
        bounce_window=window("bounce_storm"),
    )


def _gap(window: timedelta, n: int, wider: bool) -> timedelta:
    """Spacing of ``n`` evenly spread messages whose first and last are ``MARGIN`` more
    (or less) than ``window`` apart."""
    return (window + (MARGIN if wider else -MARGIN)) / max(1, n - 1)


def _reply(site: Site, rng: random.Random, start: datetime, domain: str, *, repliers: int,
           list_size: int, spread: timedelta | None = None) -> Built:
    return traffic.storm(site, rng, start, list_address=f"all.staff@{domain}",
                         list_size=list_size, repliers=repliers, duration=BURST,
                         author_replies=True, spread=spread,
                         double_share=0.0 if spread else 0.1)


def _auto(site: Site, rng: random.Random, start: datetime, *, senders: int, messages: int,
          list_size: int, spread: timedelta | None = None) -> Built:
    return traffic.auto_storm(site, rng, start, list_size=list_size, senders=senders,
                              messages=messages, duration=BURST, spread=spread)


def _bounce(site: Site, rng: random.Random, start: datetime, *, dead: int, posts: int = 1,
            every: timedelta = timedelta(minutes=30)) -> Built:
    # a poster without earlier mail that day: the fanout rule, which compares a post with
    # its sender's usual audience, needs history and stays out of what these days test
    return traffic.bounce_storm(site, rng, start, dead=dead, posts=posts, every=every,
                                history=0)


Build = Callable[[Site, random.Random, datetime, str], Built]


def _days() -> dict[str, tuple[Build, bool]]:
    """Day name -> (builder, whether an incident is expected)."""
    def reply_at(site: Site, rng: random.Random, t: datetime, dom: str) -> Built:
        x = limits()
        return _reply(site, rng, t, dom, repliers=x.reply_senders, list_size=x.reply_audience)

    def reply_short(site: Site, rng: random.Random, t: datetime, dom: str) -> Built:
        x = limits()
        return _reply(site, rng, t, dom, repliers=x.reply_senders - 1,
                      list_size=x.reply_audience + 100)

    def reply_small(site: Site, rng: random.Random, t: datetime, dom: str) -> Built:
        x = limits()
        return _reply(site, rng, t, dom, repliers=x.reply_senders + 4,
                      list_size=x.reply_audience - 1)

    def reply_spread(wider: bool) -> Build:
        def build(site: Site, rng: random.Random, t: datetime, dom: str) -> Built:
            x = limits()
            return _reply(site, rng, t, dom, repliers=x.reply_senders,
                          list_size=x.reply_audience + 100,
                          spread=_gap(x.reply_window, x.reply_senders, wider))
        return build

    def auto_at(site: Site, rng: random.Random, t: datetime, dom: str) -> Built:
        x = limits()
        return _auto(site, rng, t, senders=x.auto_senders,
                     messages=max(x.auto_senders, x.auto_messages), list_size=x.auto_audience)

    def auto_short(site: Site, rng: random.Random, t: datetime, dom: str) -> Built:
        x = limits()
        return _auto(site, rng, t, senders=x.auto_senders - 1,
                     messages=max(x.auto_senders, x.auto_messages),
                     list_size=x.auto_audience + 100)

    def auto_small(site: Site, rng: random.Random, t: datetime, dom: str) -> Built:
        x = limits()
        return _auto(site, rng, t, senders=x.auto_senders + 4,
                     messages=max(x.auto_senders + 4, x.auto_messages),
                     list_size=x.auto_audience - 1)

    def auto_spread(wider: bool) -> Build:
        def build(site: Site, rng: random.Random, t: datetime, dom: str) -> Built:
            x = limits()
            n = max(x.auto_senders, x.auto_messages)
            return _auto(site, rng, t, senders=n, messages=n, list_size=x.auto_audience + 100,
                         spread=_gap(x.auto_window, n, wider))
        return build

    def bounce_at(site: Site, rng: random.Random, t: datetime, dom: str) -> Built:
        return _bounce(site, rng, t, dead=limits().bounces)

    def bounce_short(site: Site, rng: random.Random, t: datetime, dom: str) -> Built:
        return _bounce(site, rng, t, dead=limits().bounces - 1)

    def bounce_spread(wider: bool) -> Build:
        def build(site: Site, rng: random.Random, t: datetime, dom: str) -> Built:
            x = limits()
            return _bounce(site, rng, t, dead=math.ceil(x.bounces / 2), posts=2,
                           every=_gap(x.bounce_window, 2, wider))
        return build

    return {
        "reply_storm_at_threshold": (reply_at, True),
        "reply_storm_spread_inside": (reply_spread(False), True),
        "auto_storm_at_threshold": (auto_at, True),
        "auto_storm_spread_inside": (auto_spread(False), True),
        "bounce_storm_at_threshold": (bounce_at, True),
        "bounce_storm_spread_inside": (bounce_spread(False), True),
        "reply_storm_one_replier_short": (reply_short, False),
        "reply_storm_list_one_short": (reply_small, False),
        "reply_storm_spread_outside": (reply_spread(True), False),
        "auto_storm_one_sender_short": (auto_short, False),
        "auto_storm_list_one_short": (auto_small, False),
        "auto_storm_spread_outside": (auto_spread(True), False),
        "bounce_storm_one_short": (bounce_short, False),
        "bounce_storm_spread_outside": (bounce_spread(True), False),
    }


DAYS = _days()
#: threshold days where the incident must be found
AT_THRESHOLD = tuple(name for name, (_, hit) in DAYS.items() if hit)
#: threshold days where nothing may be reported above info
SHORT_OF_THRESHOLD = tuple(name for name, (_, hit) in DAYS.items() if not hit)
#: days whose incident cannot be seen in a log without subjects
SUBJECTS_ONLY = ("auto_storm_at_threshold", "auto_storm_spread_inside")


def build(name: str, site: Site, rng: random.Random, start: datetime, domain: str) -> Built:
    """Inject the threshold day ``name``; a day short of a threshold returns no truth."""
    builder, hit = DAYS[name]
    msgs, truth = builder(site, rng, start, domain)
    for t in truth:
        t["threshold_day"] = name
    return msgs, truth if hit else []
