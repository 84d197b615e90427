"""Merge per-message event lists into one time-ordered stream with bounded memory.

Any renderer turns one message into (POSIX microseconds, text) events, which may reach
far ahead (retries). Messages are rendered in arrival order; their events go into
10-second buckets, and a bucket is sorted and released once no message still to come
can add to it. Memory holds a few seconds of lines plus pending retries, whatever the
length of the day. Ties keep message order, then the order a message emitted them.
"""

from __future__ import annotations

import gc
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from operator import itemgetter

from detector.simulate.scenario import Message

WINDOW_US = 10_000_000
_T = itemgetter(0)
Event = tuple[int, str]


def sweep(messages: Iterable[Message], render: Callable[[Message, list[Event]], None],
          lead_us: int) -> Iterator[list[Event]]:
    """Time-sorted events of all messages, one 10-second bucket at a time.

    ``render(message, events)`` appends the message's events; none may be earlier than
    ``lead_us`` before the message's time.
    """
    msgs = sorted(messages, key=lambda m: m.time)  # stable: input order breaks ties
    starts = [m.time_us - lead_us for m in msgs]
    buckets: dict[int, list[list[Event]]] = {}
    # Millions of short-lived tuples and no reference cycles: the cyclic collector would
    # only rescan the long-lived scenario over and over (a third of the run time).
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield from _run(msgs, starts, buckets, render)
    finally:
        if enabled:
            gc.enable()


def _run(msgs: list[Message], starts: list[int], buckets: dict[int, list[list[Event]]],
         render: Callable[[Message, list[Event]], None]) -> Iterator[list[Event]]:
    i, n = 0, len(msgs)
    while i < n or buckets:
        w = min(buckets) if buckets else starts[i] // WINDOW_US
        if i < n:
            w = min(w, starts[i] // WINDOW_US)
        limit = (w + 1) * WINDOW_US
        while i < n and starts[i] < limit:
            ev: list[Event] = []
            render(msgs[i], ev)
            _bucket(ev, buckets)
            i += 1
        parts = buckets.pop(w, None)
        if parts:
            flat = parts[0] if len(parts) == 1 else list(chain.from_iterable(parts))
            flat.sort(key=_T)
            yield flat


def _bucket(ev: list[Event], buckets: dict[int, list[list[Event]]]) -> None:
    if not ev:
        return
    ev.sort(key=_T)
    lo, n = 0, len(ev)
    while lo < n:
        w = ev[lo][0] // WINDOW_US
        end = (w + 1) * WINDOW_US
        hi = n if ev[-1][0] < end else bisect_left(ev, end, lo, key=_T)
        part = ev if lo == 0 and hi == n else ev[lo:hi]
        b = buckets.get(w)
        if b is None:
            buckets[w] = [part]
        else:
            b.append(part)
        lo = hi
